//! HTTP push bodies: the batch, each reading in it, and the validation gate.
#![no_main]

use emberline_ingest::http_push::{parse_batch, split_batch};
use emberline_ingest::validate::Gate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = parse_batch(data) {
        let (raws, rejected) = split_batch(&batch);
        assert_eq!(raws.len() + rejected.len(), batch.readings.len());
        let mut gate = Gate::new("fuzz", 30 * 86_400_000);
        let n = raws.len();
        let out = gate.admit(raws.into_iter().map(|(_, r)| r).collect(), 1_795_000_000_000);
        assert_eq!(out.readings.len() + out.rejected.len() + out.duplicates, n);
    }
});
