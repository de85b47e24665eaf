//! MEATER `/devices` answers.
#![no_main]

use std::sync::{Mutex, OnceLock};

use emberline_ingest::cloud::Credentials;
use emberline_ingest::cloud::meater::{Meater, MeaterConfig};
use libfuzzer_sys::fuzz_target;

fn adapter() -> &'static Mutex<Meater> {
    static ADAPTER: OnceLock<Mutex<Meater>> = OnceLock::new();
    ADAPTER.get_or_init(|| {
        let config = MeaterConfig { credentials: Credentials::with_password("fuzz@example.com", ""), ..MeaterConfig::default() };
        Mutex::new(Meater::new(config).expect("valid config"))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut meater = adapter().lock().unwrap_or_else(|p| p.into_inner());
    let _ = meater.digest(data, 1_795_000_000_000);
});
