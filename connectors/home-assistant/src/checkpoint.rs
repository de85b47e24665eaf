//! The subscription position kept between runs of the connector.
//!
//! The file is written only for positions whose state messages the broker has received:
//! the bridge publishes a checkpoint marker to a topic it subscribes to itself, and MQTT
//! delivers a client's messages in order, so when the marker comes back every state sent
//! before it has arrived. A killed connector therefore resumes at or before the first
//! update Home Assistant has not seen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::ConnectorError;

/// Positions waiting for their marker to come back, and the file they go to.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    pending: VecDeque<(u64, BTreeMap<u32, u64>)>,
    next_seq: u64,
    saved: Option<BTreeMap<u32, u64>>,
}

impl Checkpoints {
    /// Checkpoints kept in `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            pending: VecDeque::new(),
            next_seq: 1,
            saved: None,
        }
    }

    /// The positions saved by an earlier run (empty when none or unreadable).
    pub fn load(&mut self) -> HashMap<u32, u64> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the saved subscription position; starting from now");
                return HashMap::new();
            }
        };
        match serde_json::from_str::<BTreeMap<u32, u64>>(&text) {
            Ok(positions) => {
                self.saved = Some(positions.clone());
                positions.into_iter().collect()
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "the saved subscription position is unreadable; starting from now");
                HashMap::new()
            }
        }
    }

    /// Registers `positions` for a marker; returns the marker's sequence number, or `None`
    /// when they equal what is saved or already pending.
    pub fn propose(&mut self, positions: BTreeMap<u32, u64>) -> Option<u64> {
        let latest = self.pending.back().map(|(_, p)| p).or(self.saved.as_ref());
        if positions.is_empty() || latest == Some(&positions) {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, positions));
        Some(seq)
    }

    /// The marker `seq` came back: saves the newest positions it covers.
    pub fn confirmed(&mut self, seq: u64) -> Result<(), ConnectorError> {
        let mut newest = None;
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            newest = self.pending.pop_front().map(|(_, p)| p);
        }
        let Some(positions) = newest else {
            return Ok(());
        };
        write_atomically(&self.path, &positions)?;
        self.saved = Some(positions);
        Ok(())
    }

    /// The connection dropped: markers in flight will not come back.
    pub fn abandon(&mut self) {
        self.pending.clear();
    }
}

fn write_atomically(path: &Path, positions: &BTreeMap<u32, u64>) -> Result<(), ConnectorError> {
    let err = |e: std::io::Error| ConnectorError::State {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(positions).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_confirmed_positions_are_saved_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("emberline-ha-{}", std::process::id()));
        let path = dir.join("positions.json");
        let _ = std::fs::remove_file(&path);
        let mut c = Checkpoints::new(path.clone());
        assert!(c.load().is_empty());
        let a = c.propose(BTreeMap::from([(0, 5)])).expect("new");
        assert_eq!(c.propose(BTreeMap::from([(0, 5)])), None, "same as pending");
        let b = c.propose(BTreeMap::from([(0, 9), (1, 2)])).expect("new");
        c.abandon();
        c.confirmed(b).expect("confirm");
        assert!(
            Checkpoints::new(path.clone()).load().is_empty(),
            "abandoned marker saved"
        );
        let a2 = c.propose(BTreeMap::from([(0, 5)])).expect("new");
        assert!(a2 > a);
        c.confirmed(a2).expect("confirm");
        assert_eq!(
            Checkpoints::new(path.clone()).load(),
            HashMap::from([(0, 5)])
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
