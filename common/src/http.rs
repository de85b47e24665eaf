//! The outbound HTTP client: TLS with rustls (ring) and the system's roots, bounded
//! connect and request times, and an `emberline/<version>` user agent.

use std::time::Duration;

/// Installs rustls' ring crypto provider for the process (idempotent). Every TLS client
/// and server in Emberline calls this first, so no two providers ever compete.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client whose requests time out after `timeout` (connecting after at most 10 s).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .user_agent(concat!("emberline/", env!("CARGO_PKG_VERSION")))
        .build()
}
