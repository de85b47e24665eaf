//! Talking to an `http_push` source as a device would.

use std::net::SocketAddr;
use std::time::Duration;

/// The `[[sources]]` section of an `http_push` source named `push` listening on `listen`
/// that takes `device`'s readings with `token`.
pub fn source(listen: SocketAddr, device: &str, token: &str) -> String {
    format!(
        r#"[[sources]]
kind = "http_push"
name = "push"
listen = "{listen}"
tokens = {{ {device} = "{token}" }}
"#
    )
}

/// One push of `readings` (JSON objects) for `device` to the source at `addr`; the status
/// and the answer's text, or 0 and the error when there was no answer.
pub async fn push(
    client: &reqwest::Client,
    addr: SocketAddr,
    device: &str,
    token: &str,
    readings: Vec<serde_json::Value>,
) -> (u16, String) {
    let body = serde_json::json!({"device_id": device, "readings": readings});
    match client
        .post(format!("http://{addr}/v1/readings"))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}
