//! One round of the trend operator: the records that travel through the trend dataflow,
//! and how a round of readings updates the probes' states.

use std::collections::{HashMap, HashSet};

use emberline_projections::ProjectionStore;
use emberline_schemas::events::ProbeReading;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::trend::{TrendFigures, TrendState};

/// A reading as it travels through the dataflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Reading {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    /// `None` when the record was rejected (dead-lettered): it only advances positions.
    pub(crate) event: Option<ProbeReading>,
}

/// A reading with the trend after it and the probe's state to persist.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Updated {
    pub(crate) reading: Reading,
    pub(crate) figures: Option<TrendFigures>,
    /// Postcard-encoded [`TrendState`] after this reading.
    pub(crate) state: Vec<u8>,
}

/// The key that owns a probe's state.
pub(crate) fn state_key(device: &str, probe: &str) -> String {
    format!("trend/{device}/{probe}")
}

/// The probes' trend states, by device and then probe (looked up by `&str`: a reading's
/// names are not copied to find its state).
pub(crate) type States = HashMap<String, HashMap<String, TrendState>>;

/// Applies one round of readings to the probes' states, in log order (by partition and
/// offset: one probe's readings all come from one partition). `load` supplies the state of
/// a probe seen for the first time. Only a probe's last update in the round carries its
/// serialised state — the sink persists the last one anyway.
pub(crate) fn trend_round(
    states: &mut States,
    mut items: Vec<Reading>,
    mut load: impl FnMut(&str, &str) -> TrendState,
) -> Vec<Updated> {
    items.sort_by_key(|r| (r.partition, r.offset));
    let mut updates = Vec::with_capacity(items.len());
    for reading in items {
        let figures = reading.event.as_ref().and_then(|event| {
            let (device, probe) = (event.device_id.as_str(), event.probe_id.as_str());
            let (time, temperature) = (event.event_time, event.temperature_c);
            if let Some(state) = states.get_mut(device).and_then(|p| p.get_mut(probe)) {
                return state.update(time, temperature);
            }
            let mut state = load(device, probe);
            let figures = state.update(time, temperature);
            states
                .entry(device.to_owned())
                .or_default()
                .insert(probe.to_owned(), state);
            figures
        });
        updates.push(Updated {
            reading,
            figures,
            state: Vec::new(),
        });
    }
    // Each probe's last update, found from the end.
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut last = Vec::new();
    for (index, update) in updates.iter().enumerate().rev() {
        if let Some(e) = &update.reading.event
            && seen.insert((e.device_id.as_str(), e.probe_id.as_str()))
        {
            let state = states.get(&e.device_id).and_then(|p| p.get(&e.probe_id));
            last.push((
                index,
                state.map(|s| postcard::to_allocvec(s).unwrap_or_default()),
            ));
        }
    }
    drop(seen);
    for (index, state) in last {
        if let Some(state) = state {
            updates[index].state = state;
        }
    }
    updates
}

/// The state persisted for a probe, or a fresh one. A state that cannot be read is a bug
/// or corruption: it is reported and the probe starts afresh rather than stopping the cook.
pub(crate) fn load_state(
    runtime: &Handle,
    store: &dyn ProjectionStore,
    device: &str,
    probe: &str,
) -> TrendState {
    let key = state_key(device, probe);
    match runtime.block_on(store.state(&key)) {
        Ok(Some(bytes)) => postcard::from_bytes(&bytes).unwrap_or_else(|e| {
            tracing::error!(%key, error = %e, "unreadable trend state; starting afresh");
            TrendState::default()
        }),
        Ok(None) => TrendState::default(),
        Err(e) => {
            tracing::error!(%key, error = %e, "could not load trend state; starting afresh");
            TrendState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(offset: u64, probe: &str, t: i64, temp: Option<f64>) -> Reading {
        Reading {
            partition: 0,
            offset,
            event: Some(ProbeReading {
                device_id: "d".into(),
                probe_id: probe.into(),
                event_time: t,
                received_time: t,
                temperature_c: temp,
                source: "test".into(),
            }),
        }
    }

    #[test]
    fn a_round_runs_in_log_order_and_ships_each_probes_state_once() {
        let mut states = HashMap::new();
        let mut loads = Vec::new();
        // Arrives shuffled, as an exchange may deliver it; offset 2 was rejected.
        let items = vec![
            reading(3, "a", 3_000, Some(12.0)),
            Reading {
                partition: 0,
                offset: 2,
                event: None,
            },
            reading(0, "a", 1_000, Some(10.0)),
            reading(1, "b", 1_000, Some(50.0)),
            reading(4, "b", 4_000, None),
        ];
        let updates = trend_round(&mut states, items, |d, p| {
            loads.push(format!("{d}/{p}"));
            TrendState::default()
        });
        let offsets: Vec<u64> = updates.iter().map(|u| u.reading.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4]);
        assert_eq!(loads, ["d/a", "d/b"], "each probe's state is loaded once");
        let with_state: Vec<u64> = updates
            .iter()
            .filter(|u| !u.state.is_empty())
            .map(|u| u.reading.offset)
            .collect();
        assert_eq!(
            with_state,
            [3, 4],
            "only each probe's last update carries state"
        );
        let a: TrendState = postcard::from_bytes(&updates[3].state).expect("state");
        assert_eq!(&a, &states["d"]["a"]);
        assert_eq!(updates[3].figures.as_ref().map(|f| f.samples), Some(2));
        assert!(updates[4].figures.is_none(), "unplugged: no trend");
        assert!(updates[2].figures.is_none() && updates[2].reading.event.is_none());
    }
}
