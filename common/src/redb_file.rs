//! A redb database file that reopens itself after an I/O error.
//!
//! redb refuses every operation after a failed write ("Previous I/O error occurred. Please
//! close and re-open the database") until the database is closed and opened again — found
//! by filling a size-limited tmpfs under it. A full disk is a passing condition: once space
//! is freed, the log and the projection store must carry on by themselves. So stores keep
//! their database in a [`ReopeningDatabase`] and run each operation through
//! [`ReopeningDatabase::run`]: an operation that fails with an I/O error closes the
//! database, and the next operation opens it again (retrying at once when the failure was
//! only the left-over refusal of another operation's error). Callers see the I/O error of the failed
//! operation and nothing else.
//!
//! Every holder of the database must take it through [`ReopeningDatabase::current`] per
//! operation and drop it afterwards: the file can be opened again only once every handle to
//! the failed one is gone.
//!
//! Files are opened in redb's `SingleWriter` mode: one process writes, and other processes
//! (`emberline status`) may open the file read-only at the same time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{ConcurrencyMode, Database, DatabaseError};

/// Why a read-only open of a file fails when the file was left needing a repair: what a
/// user reads, and what to do.
pub const NOT_CLOSED_CLEANLY: &str = "it was not closed cleanly (the process writing it \
     was killed or crashed), and a read-only open cannot repair it; the next process that \
     opens it for writing (`emberline up`, or the role that owns it) repairs it";

/// How many times an operation refused only because of another's I/O error is tried again.
const STALE_RETRIES: u64 = 20;

/// How long reopening waits for the operations still holding the failed database.
const REOPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A redb database that is closed after an I/O error and opened again on next use.
pub struct ReopeningDatabase {
    path: Option<PathBuf>,
    cache_bytes: usize,
    current: RwLock<Option<Arc<Database>>>,
    reopened: AtomicU64,
}

impl std::fmt::Debug for ReopeningDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReopeningDatabase")
            .field("path", &self.path)
            .field("reopened", &self.reopens())
            .finish()
    }
}

/// Whether `e` leaves the database refusing work until it is reopened.
pub fn needs_reopen(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
    )
}

fn open_file(path: &Path, cache_bytes: usize) -> Result<Database, DatabaseError> {
    Database::builder()
        .set_cache_size(cache_bytes)
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .create(path)
}

impl ReopeningDatabase {
    /// Opens (or creates) the file at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Arc<Self>, DatabaseError> {
        let db = open_file(path, cache_bytes)?;
        Ok(Arc::new(Self {
            path: Some(path.to_owned()),
            cache_bytes,
            current: RwLock::new(Some(Arc::new(db))),
            reopened: AtomicU64::new(0),
        }))
    }

    /// An already open database (in memory, or opened elsewhere). It cannot be reopened:
    /// after an I/O error it keeps failing.
    pub fn from_database(db: Arc<Database>) -> Arc<Self> {
        Arc::new(Self {
            path: None,
            cache_bytes: 0,
            current: RwLock::new(Some(db)),
            reopened: AtomicU64::new(0),
        })
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many times the database was opened again after an I/O error.
    pub fn reopens(&self) -> u64 {
        self.reopened.load(Ordering::Relaxed)
    }

    /// The open database, opening the file again if an I/O error closed it.
    ///
    /// Opening fails with `DatabaseAlreadyOpen` while an operation still holds the failed
    /// database. Operations are short (one transaction each), so this waits for them to let
    /// go — without holding the lock they need to report their own failure — rather than
    /// fail: a read failing here would stop a processor.
    pub fn current(&self) -> Result<Arc<Database>, redb::Error> {
        let deadline = std::time::Instant::now() + REOPEN_PATIENCE;
        loop {
            if let Some(db) = self
                .current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                return Ok(db.clone());
            }
            {
                let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
                if let Some(db) = slot.as_ref() {
                    return Ok(db.clone());
                }
                let Some(path) = &self.path else {
                    return Err(redb::Error::DatabaseClosed);
                };
                match open_file(path, self.cache_bytes) {
                    Ok(db) => {
                        let db = Arc::new(db);
                        self.reopened.fetch_add(1, Ordering::Relaxed);
                        *slot = Some(db.clone());
                        return Ok(db);
                    }
                    Err(DatabaseError::DatabaseAlreadyOpen)
                        if std::time::Instant::now() < deadline => {}
                    Err(e) => return Err(e.into()),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Closes `failed` (if it is still the current database) so the next use reopens the file.
    fn close(&self, failed: *const Database) {
        if self.path.is_none() {
            return;
        }
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        if slot
            .as_ref()
            .is_some_and(|db| std::ptr::eq(Arc::as_ptr(db), failed))
        {
            *slot = None;
        }
    }

    /// Runs `op` on the database. An I/O error closes it so that the next call reopens it;
    /// when the error was only the refusal left by an earlier one, `op` runs once more on
    /// the reopened database.
    pub fn run<T>(
        &self,
        mut op: impl FnMut(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let mut stale_refusals = 0;
        loop {
            let db = self.current()?;
            match op(&db) {
                Err(e) if needs_reopen(&e) => {
                    // Let go of the failed database first: a reopen elsewhere waits for it.
                    let failed = Arc::as_ptr(&db);
                    drop(db);
                    self.close(failed);
                    // A refusal left by another operation's I/O error says nothing about this
                    // one: try again on the reopened file. While the disk stays full, writes
                    // elsewhere can poison each new handle before this operation runs, so
                    // allow a few rounds (a read must not fail because a write did).
                    let stale = matches!(e, redb::Error::PreviousIo | redb::Error::DatabaseClosed);
                    if stale && stale_refusals < STALE_RETRIES && self.path.is_some() {
                        stale_refusals += 1;
                        std::thread::sleep(std::time::Duration::from_millis(2 * stale_refusals));
                        continue;
                    }
                    return Err(e);
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[test]
    fn a_closed_database_is_opened_again_on_next_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = ReopeningDatabase::open(&dir.path().join("x.redb"), 1 << 20).expect("open");
        db.run(|d| {
            let txn = d.begin_write()?;
            txn.open_table(T)?.insert(1, 2)?;
            txn.commit()?;
            Ok(())
        })
        .expect("write");
        // An operation reporting a left-over I/O refusal makes the next attempt reopen.
        let mut calls = 0;
        let value = db
            .run(|d| {
                calls += 1;
                if calls == 1 {
                    return Err(redb::Error::PreviousIo);
                }
                let txn = d.begin_read()?;
                Ok(txn.open_table(T)?.get(1)?.map(|g| g.value()))
            })
            .expect("read after reopening");
        assert_eq!((value, calls, db.reopens()), (Some(2), 2, 1));
    }
}
