//! Delivering one notice through one channel: shaping the payload, signing, sending.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

use crate::config::{ChannelConfig, ChannelKind, WebhookFormat};
use crate::error::DeliveryError;
use crate::notice::Notice;

/// The webhook signature of `body` sent at `timestamp` (Unix seconds, as sent in
/// `X-Emberline-Timestamp`): `sha256=` and the hex HMAC-SHA256 of `timestamp.body`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The webhook body for `format`.
pub(crate) fn webhook_body(notice: &Notice, format: WebhookFormat) -> Vec<u8> {
    let value = match format {
        WebhookFormat::Json => serde_json::json!({
            "delivery_id": notice.delivery_id,
            "alert_id": notice.alert_id,
            "kind": notice.kind,
            "device_id": notice.device_id,
            "probe_id": notice.probe_id,
            "raised": notice.raised,
            "repeat": notice.repeat,
            "time_ms": notice.time_ms,
            "value": notice.value,
            "threshold": notice.threshold,
            "title": notice.title(),
            "message": notice.message,
        }),
        WebhookFormat::Slack => serde_json::json!({
            "text": format!("*{}*\n{}", notice.title(), notice.message),
        }),
        WebhookFormat::Discord => serde_json::json!({
            "content": format!("**{}**\n{}", notice.title(), notice.message),
        }),
    };
    value.to_string().into_bytes()
}

fn unix_seconds() -> String {
    (emberline_common::clock::now_ms() / 1_000).to_string()
}

fn http_error(e: &reqwest::Error) -> DeliveryError {
    if e.is_timeout() {
        DeliveryError("timed out".into())
    } else if e.is_connect() {
        DeliveryError(format!("cannot connect: {e}"))
    } else {
        DeliveryError(e.to_string())
    }
}

async fn check(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), DeliveryError> {
    let response = response.map_err(|e| http_error(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError(format!("the server answered HTTP {status}")))
    }
}

/// One attempt to deliver `notice` through `channel`.
pub(crate) async fn deliver(
    channel: &ChannelConfig,
    notice: &Notice,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    match &channel.kind {
        ChannelKind::Webhook {
            url,
            secret,
            format,
        } => {
            let body = webhook_body(notice, *format);
            let timestamp = unix_seconds();
            let mut request = http
                .post(url)
                .timeout(timeout)
                .header("content-type", "application/json")
                .header("idempotency-key", &notice.delivery_id)
                .header("x-emberline-delivery", &notice.delivery_id)
                .header("x-emberline-timestamp", &timestamp);
            if let Some(secret) = secret {
                request = request.header(
                    "x-emberline-signature",
                    signature(secret.expose().as_bytes(), &timestamp, &body),
                );
            }
            check(request.body(body).send().await).await
        }
        ChannelKind::Sms {
            api_url,
            account_sid,
            auth_token,
            from,
            to,
        } => {
            let url = format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                api_url.trim_end_matches('/')
            );
            let body = sms_body(notice);
            let answer = http
                .post(&url)
                .timeout(timeout)
                .basic_auth(account_sid, Some(auth_token.expose()))
                .form(&[
                    ("To", to.as_str()),
                    ("From", from.as_str()),
                    ("Body", body.as_str()),
                ])
                .send()
                .await
                .map_err(|e| DeliveryError(format!("SMS API: {e}")))?;
            let status = answer.status();
            if status.is_success() {
                return Ok(());
            }
            // The API says why in JSON: {"code": 21211, "message": "…", "status": 400}.
            let why = answer
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| {
                    let message = v["message"].as_str()?.to_owned();
                    Some(match v["code"].as_i64() {
                        Some(code) => format!("{message} (code {code})"),
                        None => message,
                    })
                })
                .unwrap_or_default();
            Err(DeliveryError(format!(
                "the SMS API answered HTTP {status}{}{why}",
                if why.is_empty() { "" } else { ": " }
            )))
        }
        ChannelKind::Ntfy { url, token } => {
            let mut request = http
                .post(url)
                .timeout(timeout)
                .header("title", notice.title())
                .header("priority", if notice.raised { "high" } else { "default" })
                .header(
                    "tags",
                    if notice.raised {
                        "fire"
                    } else {
                        "white_check_mark"
                    },
                )
                .header("x-emberline-delivery", &notice.delivery_id);
            if let Some(token) = token {
                request = request.bearer_auth(token.expose());
            }
            check(request.body(notice.message.clone()).send().await).await
        }
        ChannelKind::Email {
            smtp_url,
            from,
            to,
            username,
            password,
        } => {
            let message = email(notice, from, to)?;
            let mut transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
                .map_err(|e| DeliveryError(format!("SMTP URL {smtp_url:?}: {e}")))?
                .timeout(Some(timeout));
            if let Some(user) = username {
                let pass = password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default();
                transport = transport.credentials(Credentials::new(user.clone(), pass));
            }
            let transport = transport.build();
            match tokio::time::timeout(timeout, transport.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(DeliveryError(format!("SMTP: {e}"))),
                Err(_) => Err(DeliveryError("SMTP: timed out".into())),
            }
        }
    }
}

/// A text message of a notice: its title and message, at most two SMS segments long.
pub(crate) fn sms_body(notice: &Notice) -> String {
    let text = format!("{}: {}", notice.title(), notice.message);
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The e-mail of a notice; its `Message-ID` is derived from the delivery id.
pub(crate) fn email(notice: &Notice, from: &str, to: &[String]) -> Result<Message, DeliveryError> {
    let parse = |a: &str| {
        a.parse()
            .map_err(|e| DeliveryError(format!("address {a:?}: {e}")))
    };
    let id: String = notice
        .delivery_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut builder = Message::builder()
        .from(parse(from)?)
        .subject(notice.title())
        .message_id(Some(format!("<{id}@emberline.invalid>")))
        .header(ContentType::TEXT_PLAIN);
    if to.is_empty() {
        return Err(DeliveryError("no recipients".into()));
    }
    for recipient in to {
        builder = builder.to(parse(recipient)?);
    }
    builder
        .body(format!(
            "{}\n\nAlert {} at {} ms.\n",
            notice.message, notice.alert_id, notice.time_ms
        ))
        .map_err(|e| DeliveryError(format!("building the e-mail: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            delivery_id: "r#1/0/raised".into(),
            alert_id: "r#1".into(),
            kind: "target_reached".into(),
            device_id: "sim-1".into(),
            probe_id: Some("meat-1".into()),
            raised: true,
            repeat: 0,
            time_ms: 1_000,
            value: Some(93.2),
            threshold: Some(93.0),
            message: "Meat 1 on sim-1 reached its target".into(),
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_and_body() {
        // Python's hmac.new(b"Jefe", b"what do ya want.for nothing?", sha256).
        assert_eq!(
            signature(b"Jefe", "what do ya want", b"for nothing?"),
            "sha256=e33f91577b90d4b3bbd73cb61803074f1965d27701b5527942dd9ea9443af37c"
        );
        assert_ne!(signature(b"a", "1", b"x"), signature(b"b", "1", b"x"));
    }

    #[test]
    fn payloads_take_the_shape_their_receiver_expects() {
        let n = notice();
        let json: serde_json::Value =
            serde_json::from_slice(&webhook_body(&n, WebhookFormat::Json)).expect("json");
        assert_eq!(json["delivery_id"], "r#1/0/raised");
        assert_eq!(json["value"], 93.2);
        let slack: serde_json::Value =
            serde_json::from_slice(&webhook_body(&n, WebhookFormat::Slack)).expect("json");
        assert!(
            slack["text"]
                .as_str()
                .is_some_and(|t| t.contains("reached its target"))
        );
        let discord: serde_json::Value =
            serde_json::from_slice(&webhook_body(&n, WebhookFormat::Discord)).expect("json");
        assert!(
            discord["content"]
                .as_str()
                .is_some_and(|t| t.starts_with("**Emberline"))
        );
        let mail = email(&n, "grill@example.com", &["me@example.com".into()]).expect("mail");
        let text = String::from_utf8(mail.formatted()).expect("utf-8");
        assert!(
            text.contains("Message-ID: <r_1_0_raised@emberline.invalid>"),
            "{text}"
        );
        assert!(email(&n, "not an address", &["me@example.com".into()]).is_err());
    }
}
