//! The wall clock, read in one place: the receive time every source stamps on its events.

/// Now, epoch milliseconds (1 if the clock is before 1970, so a time is never zero).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as i64)
}
