//! The wall clock, read in one place: every event time and receive time the system stamps,
//! every heartbeat and every retry schedule that must survive a restart comes from here.
//! (Elapsed time within a process uses `Instant`, which is monotonic and not the wall clock.)

/// Now, epoch milliseconds (1 if the clock is before 1970, so a time is never zero).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as i64)
}

/// Now, epoch nanoseconds (0 before 1970): for names that must differ between runs, such
/// as a test's topics on a shared broker.
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
}
