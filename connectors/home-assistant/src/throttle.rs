//! Per-entity rate limiting of state messages, without losing the newest value.
//!
//! A value offered sooner than `min_interval` after the last one sent for its topic is held;
//! a newer offer replaces it; when the interval is up the held value is sent. So a 1 Hz probe
//! reaches Home Assistant's recorder at most once per interval, and the last change always
//! arrives. Each held value remembers the log position of the oldest update folded into it,
//! so the connector never checkpoints past an update that has not reached the broker.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A log position: (partition, offset).
pub type Position = (u32, u64);

#[derive(Debug, Default)]
struct Entry {
    last_sent: Option<Instant>,
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    payload: String,
    oldest: Option<Position>,
}

/// The rate limiter. Time is passed in, so tests drive it without sleeping.
#[derive(Debug)]
pub struct Throttle {
    min_interval: Duration,
    entries: HashMap<String, Entry>,
}

impl Throttle {
    /// At most one message per topic per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            entries: HashMap::new(),
        }
    }

    /// Offers a new value for `topic`. Returns the payload to send now, or `None` when it is
    /// held for later.
    pub fn offer(
        &mut self,
        topic: &str,
        payload: String,
        position: Option<Position>,
        now: Instant,
    ) -> Option<String> {
        let entry = self.entries.entry(topic.to_owned()).or_default();
        let free = entry
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if free && entry.held.is_none() {
            entry.last_sent = Some(now);
            return Some(payload);
        }
        let oldest = match &entry.held {
            Some(held) => held.oldest.or(position),
            None => position,
        };
        entry.held = Some(Held { payload, oldest });
        None
    }

    /// Held values whose interval is up, to send now, as (topic, payload).
    pub fn due(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (topic, entry) in &mut self.entries {
            let ready = entry
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
            if ready && let Some(held) = entry.held.take() {
                entry.last_sent = Some(now);
                out.push((topic.clone(), held.payload));
            }
        }
        out.sort();
        out
    }

    /// Every held value, regardless of interval (after a reconnect everything is resent).
    pub fn drain(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (topic, entry) in &mut self.entries {
            if let Some(held) = entry.held.take() {
                entry.last_sent = Some(now);
                out.push((topic.clone(), held.payload));
            }
        }
        out.sort();
        out
    }

    /// When the next held value becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.held.is_some())
            .map(|e| {
                e.last_sent
                    .map_or_else(Instant::now, |t| t + self.min_interval)
            })
            .min()
    }

    /// Per partition, the oldest position some held value covers: a checkpoint must not
    /// pass it.
    pub fn held_positions(&self) -> BTreeMap<u32, u64> {
        let mut out: BTreeMap<u32, u64> = BTreeMap::new();
        for (partition, offset) in self
            .entries
            .values()
            .filter_map(|e| e.held.as_ref()?.oldest)
        {
            let slot = out.entry(partition).or_insert(offset);
            *slot = (*slot).min(offset);
        }
        out
    }

    /// Forgets a topic (its device was removed).
    pub fn forget(&mut self, topic: &str) {
        self.entries.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn holds_within_the_interval_and_sends_the_newest_when_due() {
        let t0 = Instant::now();
        let mut th = Throttle::new(Duration::from_secs(5));
        assert_eq!(
            th.offer("a", "1".into(), Some((0, 1)), t0).as_deref(),
            Some("1")
        );
        assert_eq!(
            th.offer("a", "2".into(), Some((0, 2)), t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            th.offer("a", "3".into(), Some((0, 3)), t0 + Duration::from_secs(2)),
            None
        );
        assert_eq!(th.held_positions(), BTreeMap::from([(0, 2)]));
        assert!(th.due(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(th.next_due(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            th.due(t0 + Duration::from_secs(5)),
            vec![("a".to_owned(), "3".to_owned())]
        );
        assert!(th.held_positions().is_empty());
    }

    proptest! {
        /// Whatever the offers, a topic never gets two sends closer than the interval, and
        /// after the last offer plus one interval the last payload sent is the last offered.
        #[test]
        fn never_faster_than_the_interval_and_never_loses_the_newest(
            offers in prop::collection::vec((0usize..3, 0u64..3_000), 1..60),
            interval_ms in 0u64..2_000,
        ) {
            let t0 = Instant::now();
            let interval = Duration::from_millis(interval_ms);
            let mut th = Throttle::new(interval);
            let mut now = t0;
            let mut sent: Vec<(usize, Instant, String)> = Vec::new();
            let mut last_offered: HashMap<usize, String> = HashMap::new();
            for (i, (topic, gap)) in offers.iter().enumerate() {
                // Flush what is due at every step, as the connector's timer does.
                let step = now + Duration::from_millis(*gap);
                while let Some(due) = th.next_due().filter(|d| *d <= step) {
                    now = due.max(now);
                    for (t, p) in th.due(now) {
                        sent.push((t.parse().expect("topic"), now, p));
                    }
                }
                now = step;
                let payload = format!("v{i}");
                last_offered.insert(*topic, payload.clone());
                if let Some(p) = th.offer(&topic.to_string(), payload, Some((0, i as u64)), now) {
                    sent.push((*topic, now, p));
                }
            }
            now += interval;
            for (t, p) in th.due(now) {
                sent.push((t.parse().expect("topic"), now, p));
            }
            for topic in 0..3 {
                let times: Vec<Instant> = sent.iter().filter(|s| s.0 == topic).map(|s| s.1).collect();
                for pair in times.windows(2) {
                    prop_assert!(pair[1] - pair[0] >= interval);
                }
                if let Some(last) = last_offered.get(&topic) {
                    let last_sent = sent.iter().rev().find(|s| s.0 == topic).map(|s| &s.2);
                    prop_assert_eq!(last_sent, Some(last));
                }
            }
            prop_assert!(th.held_positions().is_empty());
        }
    }
}
