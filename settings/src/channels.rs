//! Notification channels set up while running: the `settings` document's part that the
//! notifier follows.
//!
//! A channel is stored under its qualified name (`tenant/name`; plain for the default
//! tenant), with everything but its name and tenant sealed — a Slack or Discord webhook
//! URL is itself a credential. Saving a channel without a secret keeps the one stored
//! (forms never see a stored secret, so they cannot send it back).

use std::collections::BTreeMap;

use emberline_common::tenant;
use emberline_notify::{ChannelConfig, ChannelKind};
use serde::{Deserialize, Serialize};

/// One stored channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChannel {
    /// Whose it is.
    pub tenant: String,
    /// Its name in the tenant.
    pub name: String,
    /// The sealed [`ChannelConfig`] (JSON).
    pub sealed: String,
    /// When it was last saved, epoch ms.
    pub updated_at_ms: i64,
}

/// The channels, by qualified name.
pub type Channels = BTreeMap<String, StoredChannel>;

/// The key a tenant's channel `name` is stored under (and the notifier knows it by).
pub fn qualified(tenant_name: &str, name: &str) -> String {
    tenant::qualify(tenant_name, name)
}

/// Keeps `old`'s secrets where `new` has none (same kind only).
pub fn keep_secrets(old: &ChannelKind, new: &mut ChannelKind) {
    match (old, new) {
        (ChannelKind::Webhook { secret: kept, .. }, ChannelKind::Webhook { secret, .. })
            if secret.is_none() =>
        {
            secret.clone_from(kept)
        }
        (ChannelKind::Email { password: kept, .. }, ChannelKind::Email { password, .. })
            if password.is_none() =>
        {
            password.clone_from(kept)
        }
        (ChannelKind::Ntfy { token: kept, .. }, ChannelKind::Ntfy { token, .. })
            if token.is_none() =>
        {
            token.clone_from(kept)
        }
        (
            ChannelKind::Sms {
                auth_token: kept, ..
            },
            ChannelKind::Sms { auth_token, .. },
        ) if auth_token.is_empty() => auth_token.clone_from(kept),
        _ => {}
    }
}

/// What a channel looks like to someone who may manage it: no secret, and of a URL only
/// where it goes (scheme and host), since the rest may be the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelView {
    /// Name in its tenant.
    pub name: String,
    /// `webhook`, `email` or `ntfy`.
    pub kind: &'static str,
    /// Where it delivers: `https://hooks.slack.com/…`, `smtp://mail.example:587 → a@b`.
    pub target: String,
    /// Whether a secret (signing secret, password, token) is set.
    pub secret_set: bool,
    /// Only these devices (empty: all of the tenant's).
    pub devices: Vec<String>,
    /// The webhook payload shape (`json`, `slack`, `discord`), else empty.
    pub format: String,
    /// From the configuration file: read-only here.
    pub from_config_file: bool,
}

impl ChannelView {
    /// The view of `channel`, named `name` in its tenant.
    pub fn of(name: &str, channel: &ChannelConfig, from_config_file: bool) -> Self {
        let host_of = |url: &str| match reqwest_like_host(url) {
            Some(h) => format!("{h}/…"),
            None => "(unparsable URL)".to_owned(),
        };
        let (target, secret_set, format) = match &channel.kind {
            ChannelKind::Webhook {
                url,
                secret,
                format,
            } => (
                host_of(url),
                secret.is_some(),
                serde_json::to_value(format)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ),
            ChannelKind::Ntfy { url, token } => (host_of(url), token.is_some(), String::new()),
            ChannelKind::Sms {
                api_url,
                to,
                auth_token,
                ..
            } => (
                format!(
                    "{} → {}",
                    host_of(api_url).trim_end_matches("/…"),
                    masked(to)
                ),
                !auth_token.is_empty(),
                String::new(),
            ),
            ChannelKind::Email {
                smtp_url,
                to,
                password,
                ..
            } => (
                format!(
                    "{} → {}",
                    host_of(smtp_url).trim_end_matches("/…"),
                    to.join(", ")
                ),
                password.is_some(),
                String::new(),
            ),
        };
        Self {
            name: name.to_owned(),
            kind: channel.kind.name(),
            target,
            secret_set,
            devices: channel.devices.clone(),
            format,
            from_config_file,
        }
    }
}

/// A phone number with all but its last three digits hidden.
fn masked(number: &str) -> String {
    let digits = number.chars().count();
    number
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i + 3 < digits && c.is_ascii_digit() {
                '•'
            } else {
                c
            }
        })
        .collect()
}

/// `scheme://host[:port]` of a URL, without path, query or credentials.
fn reqwest_like_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use emberline_common::Secret;
    use emberline_notify::WebhookFormat;

    fn hook(url: &str, secret: Option<&str>) -> ChannelConfig {
        ChannelConfig {
            name: "phone".into(),
            user: None,
            devices: vec!["grill".into()],
            tenant: "default".into(),
            kind: ChannelKind::Webhook {
                url: url.into(),
                secret: secret.map(Secret::new),
                format: WebhookFormat::Slack,
            },
        }
    }

    #[test]
    fn a_view_shows_where_a_channel_goes_and_no_credential() {
        let view = ChannelView::of(
            "phone",
            &hook(
                "https://user:pw@hooks.slack.com/services/T0/B0/XYZ?x=1",
                Some("s"),
            ),
            false,
        );
        assert_eq!(view.target, "https://hooks.slack.com/…");
        assert!(view.secret_set);
        assert_eq!(view.format, "slack");
        let text = format!("{view:?}");
        for secret in ["XYZ", "pw", "services"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn saving_without_a_secret_keeps_the_stored_one() {
        let old = hook("https://a.example/h", Some("kept"));
        let mut new = hook("https://b.example/h", None);
        keep_secrets(&old.kind, &mut new.kind);
        let ChannelKind::Webhook { secret, url, .. } = &new.kind else {
            panic!("kind")
        };
        assert_eq!(secret.as_ref().map(Secret::expose), Some("kept"));
        assert_eq!(url, "https://b.example/h", "the rest is the new one's");
    }
}
