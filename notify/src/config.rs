//! Channel settings (per user, in the configuration file for now).

use emberline_ingest::cloud::Secret;
use serde::{Deserialize, Serialize};

/// The notification role's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Where alerts go.
    pub channels: Vec<ChannelConfig>,
    /// Also notify when an alert clears.
    pub notify_cleared: bool,
    /// First retry delay, ms; doubled per failure.
    pub retry_initial_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// Time allowed for one delivery, ms.
    pub timeout_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            notify_cleared: false,
            retry_initial_ms: 1_000,
            retry_max_ms: 600_000,
            timeout_ms: 10_000,
        }
    }
}

/// One channel of one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name (outbox entries are kept per channel name).
    pub name: String,
    /// Whose channel it is (shown in logs).
    #[serde(default)]
    pub user: Option<String>,
    /// Only alerts of these devices; empty for all.
    #[serde(default)]
    pub devices: Vec<String>,
    /// How to deliver.
    #[serde(flatten)]
    pub kind: ChannelKind,
}

/// How a channel delivers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelKind {
    /// An HTTP POST of JSON, signed with HMAC-SHA256 when a secret is set
    /// (`X-Emberline-Signature: sha256=<hex of HMAC(secret, timestamp + "." + body)>`).
    Webhook {
        /// URL to POST to.
        url: String,
        /// Signing secret.
        #[serde(default)]
        secret: Option<Secret>,
        /// Payload shape.
        #[serde(default)]
        format: WebhookFormat,
    },
    /// E-mail over SMTP.
    Email {
        /// `smtp://host:port` (plain, or STARTTLS when offered), `smtps://host:port` (TLS),
        /// or `smtp://host:port?tls=required`.
        smtp_url: String,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
        /// Login, if the server wants one.
        #[serde(default)]
        username: Option<String>,
        /// Password for the login.
        #[serde(default)]
        password: Option<Secret>,
    },
    /// An ntfy-compatible topic URL (`https://ntfy.sh/<topic>` or a self-hosted one).
    Ntfy {
        /// Topic URL.
        url: String,
        /// Access token, if the topic is protected.
        #[serde(default)]
        token: Option<Secret>,
    },
}

/// Webhook payload shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The alert as JSON.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text": …}`).
    Slack,
    /// A Discord webhook message (`{"content": …}`).
    Discord,
}

impl ChannelConfig {
    /// Whether this channel takes alerts of `device`.
    pub fn wants(&self, device: &str) -> bool {
        self.devices.is_empty() || self.devices.iter().any(|d| d == device)
    }
}
