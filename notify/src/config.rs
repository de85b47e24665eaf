//! Channel settings (per user, in the configuration file for now).

use emberline_common::Secret;
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
///
/// Read through `RawChannel`: serde cannot refuse unknown keys of a struct that flattens
/// an internally tagged enum (it refuses the tag itself), so the common keys are taken
/// first and the rest must be exactly the keys of the channel's `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawChannel")]
pub struct ChannelConfig {
    /// Unique name (outbox entries are kept per channel name).
    pub name: String,
    /// Whose channel it is (shown in logs).
    #[serde(default)]
    pub user: Option<String>,
    /// Only alerts of these devices; empty for all (of the channel's tenant).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Whose alerts it takes: only devices of this tenant (`default` for a household).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// How to deliver.
    #[serde(flatten)]
    pub kind: ChannelKind,
}

/// A channel as written: the common keys, and the rest for its `kind`.
#[derive(Deserialize)]
#[serde(rename = "ChannelConfig")]
struct RawChannel {
    name: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

fn default_tenant() -> String {
    emberline_common::tenant::DEFAULT_TENANT.to_owned()
}

impl TryFrom<RawChannel> for ChannelConfig {
    type Error = String;

    fn try_from(raw: RawChannel) -> Result<Self, String> {
        let kind = ChannelKind::deserialize(serde_json::Value::Object(raw.rest))
            .map_err(|e| format!("notification channel {:?}: {e}", raw.name))?;
        Ok(Self {
            name: raw.name,
            user: raw.user,
            devices: raw.devices,
            tenant: raw.tenant,
            kind,
        })
    }
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
    /// A text message through a Twilio-compatible API: `POST {api_url}/2010-04-01/Accounts/
    /// {account_sid}/Messages.json` with the form fields `To`, `From` and `Body`, and HTTP
    /// basic authentication with the account SID and its auth token.
    Sms {
        /// The API's base URL.
        #[serde(default = "default_sms_api")]
        api_url: String,
        /// The account SID (`AC…`).
        account_sid: String,
        /// The account's auth token.
        auth_token: Secret,
        /// The sending number (E.164, `+15005550006`) or messaging service.
        from: String,
        /// The phone to text (E.164).
        to: String,
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

impl ChannelKind {
    /// The kind's name as configured (`webhook`, `email`, `sms`, `ntfy`), for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Sms { .. } => "sms",
            ChannelKind::Ntfy { .. } => "ntfy",
        }
    }
}

fn default_sms_api() -> String {
    "https://api.twilio.com".to_owned()
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
    /// Whether this channel takes alerts of `device` (a qualified id): a device of the
    /// channel's tenant, and one of its `devices` when it lists any.
    pub fn wants(&self, device: &str) -> bool {
        let Some(own) = emberline_common::tenant::within(&self.tenant, device) else {
            return false;
        };
        self.devices.is_empty() || self.devices.iter().any(|d| d == own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(toml_text: &str) -> Result<Vec<ChannelConfig>, String> {
        #[derive(Deserialize)]
        struct File {
            notifications: NotifyConfig,
        }
        toml::from_str::<File>(toml_text)
            .map(|f| f.notifications.channels)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_loads_with_its_own_keys_and_the_common_ones() {
        let got = channels(
            r#"
            [[notifications.channels]]
            name = "phone"
            kind = "ntfy"
            url = "https://ntfy.example/grill"

            [[notifications.channels]]
            name = "team"
            kind = "webhook"
            url = "https://hooks.example/x"
            format = "slack"
            secret = "s"
            devices = ["sim-1"]

            [[notifications.channels]]
            name = "mail"
            user = "me"
            kind = "email"
            smtp_url = "smtp://127.0.0.1:2525"
            from = "grill@example.com"
            to = ["me@example.com"]
            "#,
        )
        .expect("load");
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0].kind, ChannelKind::Ntfy { url, token: None } if url == "https://ntfy.example/grill")
        );
        assert!(matches!(
            &got[1].kind,
            ChannelKind::Webhook { format: WebhookFormat::Slack, secret: Some(s), .. } if s.expose() == "s"
        ));
        assert_eq!(got[1].devices, vec!["sim-1".to_owned()]);
        assert!(matches!(&got[2].kind, ChannelKind::Email { to, .. } if to.len() == 1));
        assert_eq!(got[2].user.as_deref(), Some("me"));
    }

    #[test]
    fn unknown_keys_kinds_and_missing_keys_are_named() {
        for (text, needle) in [
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"u\"\nfromat = \"slack\"",
                "fromat",
            ),
            ("name = \"a\"\nkind = \"pager\"\nurl = \"u\"", "pager"),
            ("name = \"a\"\nkind = \"email\"\nsmtp_url = \"u\"", "from"),
            ("name = \"a\"\nurl = \"u\"", "kind"),
            (
                "name = \"a\"\nkind = \"ntfy\"\nurl = \"u\"\nformat = \"json\"",
                "format",
            ),
        ] {
            let err = channels(&format!("[[notifications.channels]]\n{text}\n")).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn a_channel_takes_only_its_tenants_devices() {
        let got = channels(
            "[[notifications.channels]]\nname = \"home\"\nkind = \"ntfy\"\nurl = \"u\"\n\
             [[notifications.channels]]\nname = \"acme\"\ntenant = \"acme\"\nkind = \"ntfy\"\n\
             url = \"u\"\ndevices = [\"grill\"]\n",
        )
        .expect("channels");
        let (home, acme) = (&got[0], &got[1]);
        assert!(home.wants("grill") && !home.wants("acme/grill"));
        assert!(acme.wants("acme/grill") && !acme.wants("grill") && !acme.wants("acme/smoker"));
    }

    #[test]
    fn a_channel_prints_and_loads_back_unchanged() {
        let config = NotifyConfig {
            channels: vec![ChannelConfig {
                name: "team".into(),
                user: None,
                devices: vec!["d".into()],
                tenant: "default".into(),
                kind: ChannelKind::Webhook {
                    url: "https://hooks.example/x".into(),
                    secret: None,
                    format: WebhookFormat::Discord,
                },
            }],
            ..NotifyConfig::default()
        };
        #[derive(Serialize, Deserialize)]
        struct File {
            notifications: NotifyConfig,
        }
        let text = toml::to_string(&File {
            notifications: config.clone(),
        })
        .expect("print");
        let back: File = toml::from_str(&text).expect("load");
        assert_eq!(back.notifications, config);
    }
}
