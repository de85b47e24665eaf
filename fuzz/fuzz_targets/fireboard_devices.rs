//! FireBoard `devices.json` and `drivelog.json` answers.
#![no_main]

use std::sync::{Mutex, OnceLock};

use emberline_ingest::cloud::Credentials;
use emberline_ingest::cloud::fireboard::{Fireboard, FireboardConfig, apply_drivelog};
use libfuzzer_sys::fuzz_target;

fn adapter() -> &'static Mutex<Fireboard> {
    static ADAPTER: OnceLock<Mutex<Fireboard>> = OnceLock::new();
    ADAPTER.get_or_init(|| {
        let config = FireboardConfig { credentials: Credentials::with_password("fuzz", ""), ..FireboardConfig::default() };
        Mutex::new(Fireboard::new(config).expect("valid config"))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fireboard = adapter().lock().unwrap_or_else(|p| p.into_inner());
    if let Ok((mut out, drives)) = fireboard.digest(data, 1_795_000_000_000) {
        for uuid in drives {
            let _ = apply_drivelog(&mut out, &uuid, data);
        }
    }
});
