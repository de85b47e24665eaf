//! The wall clock, read in one place: every event time and receive time the system stamps,
//! every heartbeat and every retry schedule that must survive a restart comes from here.
//! (Elapsed time within a process uses `Instant`, which is monotonic and not the wall clock.)
//!
//! For fault drills the clock can be moved: with `EMBERLINE_CLOCK_OFFSET_FILE` set to a
//! file holding a signed number of milliseconds, that offset is added to the system clock,
//! and re-read a few times a second, so a test can jump a running process's clock by an
//! hour either way. Unset (always, in normal use), the system clock is read as it is.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Environment variable naming the offset file (see the module docs).
pub const OFFSET_FILE_VAR: &str = "EMBERLINE_CLOCK_OFFSET_FILE";

/// How often the offset file is read again.
const REFRESH: Duration = Duration::from_millis(200);

struct Offset {
    path: std::path::PathBuf,
    ms: AtomicI64,
    read_at: std::sync::Mutex<Instant>,
}

impl Offset {
    fn current(&self) -> i64 {
        if let Ok(mut read_at) = self.read_at.try_lock()
            && read_at.elapsed() >= REFRESH
        {
            *read_at = Instant::now();
            if let Some(ms) = read_offset(&self.path) {
                self.ms.store(ms, Ordering::Relaxed);
            }
        }
        self.ms.load(Ordering::Relaxed)
    }
}

fn read_offset(path: &std::path::Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn offset() -> Option<&'static Offset> {
    static OFFSET: OnceLock<Option<Offset>> = OnceLock::new();
    OFFSET
        .get_or_init(|| {
            let path = std::path::PathBuf::from(std::env::var_os(OFFSET_FILE_VAR)?);
            let ms = read_offset(&path).unwrap_or(0);
            Some(Offset {
                path,
                ms: AtomicI64::new(ms),
                read_at: std::sync::Mutex::new(Instant::now()),
            })
        })
        .as_ref()
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as i64)
}

/// Now, epoch milliseconds (1 if the clock is before 1970, so a time is never zero).
pub fn now_ms() -> i64 {
    let ms = system_ms();
    match offset() {
        Some(o) => (ms + o.current()).max(1),
        None => ms,
    }
}

/// Now, epoch nanoseconds (0 before 1970): for names that must differ between runs, such
/// as a test's topics on a shared broker. Never offset.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_after_2020_and_never_goes_far_back() {
        let a = now_ms();
        let b = now_ms();
        assert!(a > 1_577_836_800_000, "{a} is before 2020");
        assert!(b >= a - 1_000);
    }

    #[test]
    fn an_offset_file_moves_the_clock_and_is_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("offset");
        std::fs::write(&path, "3600000\n").expect("write");
        let o = Offset {
            path: path.clone(),
            ms: AtomicI64::new(read_offset(&path).unwrap_or(0)),
            read_at: std::sync::Mutex::new(Instant::now()),
        };
        assert_eq!(o.current(), 3_600_000);
        std::fs::write(&path, "-3600000").expect("write");
        // Not re-read before the refresh interval has passed…
        assert_eq!(o.current(), 3_600_000);
        // …then read again.
        if let Ok(mut t) = o.read_at.lock() {
            *t = Instant::now() - REFRESH;
        }
        assert_eq!(o.current(), -3_600_000);
        std::fs::write(&path, "garbage").expect("write");
        if let Ok(mut t) = o.read_at.lock() {
            *t = Instant::now() - REFRESH;
        }
        assert_eq!(o.current(), -3_600_000, "a bad file keeps the last offset");
    }
}
