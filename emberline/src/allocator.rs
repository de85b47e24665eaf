//! The process's memory allocator: jemalloc on Unix.
//!
//! With glibc's allocator, a long `emberline up` kept growing its resident memory while
//! what it held stayed flat: dozens of threads (the blocking pool runs every store
//! transaction) each got an arena, and freed pages stayed in them. jemalloc returns unused
//! pages to the system on a timer, and it reports what the program holds and what it keeps
//! resident, which the metrics expose (`emberline_memory_*_bytes`) so a leak can be told
//! from fragmentation. Its options are compiled in (`.cargo/config.toml`): two arenas, and
//! a background thread returning freed pages within a second.

#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Heap figures from the allocator, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeapStats {
    /// Held by the program.
    pub(crate) allocated: u64,
    /// Resident in pages the allocator maps (held, free but not yet returned, metadata).
    pub(crate) resident: u64,
}

/// The allocator's current figures (`None` where it cannot tell).
#[cfg(unix)]
pub(crate) fn stats() -> Option<HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The figures are cached; advancing the epoch refreshes them.
    epoch::advance().ok()?;
    Some(HeapStats {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}

/// The allocator's current figures (`None` where it cannot tell).
#[cfg(not(unix))]
pub(crate) fn stats() -> Option<HeapStats> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_options_are_in_force() {
        use tikv_jemalloc_ctl::{background_thread, opt};
        assert_eq!(opt::narenas::read().expect("narenas"), 2);
        assert!(background_thread::read().expect("background_thread"));
    }

    #[test]
    fn holding_memory_shows_in_the_allocated_figure() {
        let before = stats().expect("jemalloc reports");
        let held: Vec<u8> = vec![1; 64 << 20];
        let during = stats().expect("jemalloc reports");
        assert!(
            during.allocated >= before.allocated + (60 << 20),
            "{before:?} → {during:?}"
        );
        assert!(during.resident >= during.allocated);
        drop(held);
        let after = stats().expect("jemalloc reports");
        assert!(
            after.allocated + (60 << 20) <= during.allocated,
            "{after:?}"
        );
    }
}
