//! The outbox: every notification owed, per channel, in one redb file, with the alert
//! positions it covers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::NotifyError;
use crate::notice::Notice;

/// Entries still owed; the delivery loop scans only these.
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox.pending");
/// Entries delivered, kept as the record that they must not be sent again.
const DELIVERED: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox.delivered");
const POSITIONS: TableDefinition<u32, u64> = TableDefinition::new("outbox.positions");

/// One notification owed to one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Channel name.
    pub channel: String,
    /// What to say.
    pub notice: Notice,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before, epoch ms.
    pub next_attempt_ms: i64,
    /// When it was delivered; never attempted again after.
    pub delivered_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The outbox file.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
}

fn key(channel: &str, delivery_id: &str) -> String {
    format!("{channel}\u{1f}{delivery_id}")
}

fn storage<E: std::error::Error + Send + Sync + 'static>(e: E) -> NotifyError {
    NotifyError::Outbox(Box::new(e))
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`.
    pub fn open(path: &Path) -> Result<Self, NotifyError> {
        emberline_common::data_dir::note_file(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(storage)?;
        }
        let db = Database::create(path)
            .map_err(|e| NotifyError::Outbox(format!("{}: {e}", path.display()).into()))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The redb database, for taking backups of it (`emberline backup`).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// Next offset to read per partition of `alerts`.
    pub fn positions(&self) -> Result<BTreeMap<u32, u64>, NotifyError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(POSITIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(storage)? {
            let (p, o) = entry.map_err(storage)?;
            out.insert(p.value(), o.value());
        }
        Ok(out)
    }

    /// Adds `entries` and moves `partition`'s position to `next_offset`, atomically and
    /// durably. An entry already present (same channel and delivery id) is kept as it is.
    pub fn enqueue(
        &self,
        partition: u32,
        next_offset: u64,
        entries: &[(String, Notice)],
        now_ms: i64,
    ) -> Result<usize, NotifyError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        let mut added = 0;
        {
            let mut table = txn.open_table(PENDING).map_err(storage)?;
            let delivered = txn.open_table(DELIVERED).map_err(storage)?;
            for (channel, notice) in entries {
                let k = key(channel, &notice.delivery_id);
                if table.get(k.as_str()).map_err(storage)?.is_some()
                    || delivered.get(k.as_str()).map_err(storage)?.is_some()
                {
                    continue;
                }
                let entry = OutboxEntry {
                    channel: channel.clone(),
                    notice: notice.clone(),
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    delivered_ms: None,
                    last_error: None,
                };
                let bytes = postcard::to_allocvec(&entry).map_err(storage)?;
                table
                    .insert(k.as_str(), bytes.as_slice())
                    .map_err(storage)?;
                added += 1;
            }
            let mut positions = txn.open_table(POSITIONS).map_err(storage)?;
            positions.insert(partition, next_offset).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(added)
    }

    /// Every entry of one table.
    fn read_all(
        &self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<Vec<OutboxEntry>, NotifyError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            out.push(postcard::from_bytes(v.value()).map_err(storage)?);
        }
        Ok(out)
    }

    /// Every entry, delivered or not: delivered ones first, each group by key.
    pub fn entries(&self) -> Result<Vec<OutboxEntry>, NotifyError> {
        let mut all = self.read_all(DELIVERED)?;
        all.extend(self.read_all(PENDING)?);
        Ok(all)
    }

    /// Undelivered entries: those due at `now_ms`, and the earliest time of the others.
    pub fn due(&self, now_ms: i64) -> Result<(Vec<OutboxEntry>, Option<i64>), NotifyError> {
        let mut due = Vec::new();
        let mut next = None::<i64>;
        let pending = self.read_all(PENDING)?;
        let oldest = pending.iter().map(|e| e.notice.time_ms).min();
        metrics::gauge!("emberline_notify_outbox_pending").set(pending.len() as f64);
        metrics::gauge!("emberline_notify_outbox_oldest_pending_age_seconds")
            .set(oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0));
        for e in pending {
            if e.next_attempt_ms <= now_ms {
                due.push(e);
            } else {
                next = Some(next.map_or(e.next_attempt_ms, |n| n.min(e.next_attempt_ms)));
            }
        }
        due.sort_by_key(|e| (e.next_attempt_ms, e.notice.time_ms));
        Ok((due, next))
    }

    /// Records the outcome of an attempt: delivered at `now_ms`, or failed with a retry at
    /// `retry_at`.
    pub fn record(
        &self,
        entry: &OutboxEntry,
        now_ms: i64,
        outcome: Result<(), (String, i64)>,
    ) -> Result<(), NotifyError> {
        let mut updated = entry.clone();
        let delivered = outcome.is_ok();
        match outcome {
            Ok(()) => updated.delivered_ms = Some(now_ms),
            Err((reason, retry_at)) => {
                updated.attempts += 1;
                updated.next_attempt_ms = retry_at;
                updated.last_error = Some(reason);
            }
        }
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        {
            let bytes = postcard::to_allocvec(&updated).map_err(storage)?;
            let k = key(&entry.channel, &entry.notice.delivery_id);
            let mut pending = txn.open_table(PENDING).map_err(storage)?;
            if delivered {
                pending.remove(k.as_str()).map_err(storage)?;
                let mut done = txn.open_table(DELIVERED).map_err(storage)?;
                done.insert(k.as_str(), bytes.as_slice()).map_err(storage)?;
            } else {
                pending
                    .insert(k.as_str(), bytes.as_slice())
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }
}
