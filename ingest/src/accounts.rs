//! Thermometer-cloud accounts as forms: the kinds a user may add while Emberline runs, the
//! fields each asks for, a form turned into a [`SourceConfig`] (checked by the same code a
//! config file's `[[sources]]` entry goes through), what may be shown of one (never its
//! password), and a test sign-in that reports the devices the account has.
//!
//! The cloud kinds are offered, which need nothing but credentials, and an MQTT broker
//! (ESPHome's topic convention; other mappings are the configuration file's). A password
//! from a form is always the password itself — a form may not name an environment variable
//! or a file of the server, whose contents would otherwise be sent wherever `base_url` or
//! `url` points.

use std::collections::BTreeMap;
use std::time::Duration;

use emberline_common::Secret;
use serde_json::{Map, Value};

use crate::SourceConfig;
use crate::cloud::fireboard::Fireboard;
use crate::cloud::meater::Meater;
use crate::cloud::thermoworks::Thermoworks;
use crate::cloud::{CloudAdapter, CloudError};
use crate::mqtt::MqttSource;

/// How long a test of an MQTT broker listens for devices.
const MQTT_LISTEN: Duration = Duration::from_secs(3);

/// How a field is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Free text.
    Text,
    /// A secret: never shown again once saved.
    Secret,
    /// A whole number.
    Number,
    /// One of [`AccountField::choices`].
    Choice,
}

/// One field of an account form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountField {
    /// The setting's name (as in a config file).
    pub name: &'static str,
    /// What a form calls it.
    pub label: &'static str,
    /// How it is entered.
    pub kind: FieldType,
    /// Whether it must be given (a secret: for a new account).
    pub required: bool,
    /// A word of help for the form.
    pub help: &'static str,
    /// The values a [`FieldType::Choice`] takes, the default first.
    pub choices: &'static [&'static str],
}

/// One kind of account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountKind {
    /// The source kind (`thermoworks`).
    pub kind: &'static str,
    /// Its brand name.
    pub label: &'static str,
    /// What the form asks for.
    pub fields: Vec<AccountField>,
}

const fn field(
    name: &'static str,
    label: &'static str,
    kind: FieldType,
    required: bool,
    help: &'static str,
) -> AccountField {
    AccountField {
        name,
        label,
        kind,
        required,
        help,
        choices: &[],
    }
}

fn common_fields(interval_help: &'static str) -> Vec<AccountField> {
    vec![
        field(
            "username",
            "E-mail",
            FieldType::Text,
            true,
            "the e-mail you sign in to the app with",
        ),
        field("password", "Password", FieldType::Secret, true, ""),
        field(
            "poll_interval_s",
            "Seconds between polls",
            FieldType::Number,
            false,
            interval_help,
        ),
        field(
            "base_url",
            "Server",
            FieldType::Text,
            false,
            "leave empty for the brand's own cloud",
        ),
    ]
}

/// The kinds of account a user may add, with their forms.
pub fn kinds() -> Vec<AccountKind> {
    let mut thermoworks = common_fields("at least 5; 60 if empty");
    thermoworks.insert(
        2,
        AccountField {
            choices: &["thermoworks", "eti"],
            ..field(
                "brand",
                "Cloud",
                FieldType::Choice,
                false,
                "ThermoWorks Cloud, or ETI Cloud",
            )
        },
    );
    vec![
        AccountKind {
            kind: "thermoworks",
            label: "ThermoWorks",
            fields: thermoworks,
        },
        AccountKind {
            kind: "meater",
            label: "MEATER",
            fields: common_fields("at least 30; 30 if empty"),
        },
        AccountKind {
            kind: "fireboard",
            label: "FireBoard",
            fields: common_fields("60 if empty; calls stay within FireBoard's hourly budget"),
        },
        AccountKind {
            kind: "mqtt",
            label: "MQTT broker (ESPHome)",
            fields: vec![
                field(
                    "url",
                    "Broker",
                    FieldType::Text,
                    true,
                    "mqtt://host[:port]; readings on <node>/sensor/<name>/state",
                ),
                field(
                    "username",
                    "User name",
                    FieldType::Text,
                    false,
                    "if the broker wants one",
                ),
                field("password", "Password", FieldType::Secret, false, ""),
            ],
        },
    ]
}

/// Why a form is refused: the field at fault first (`poll_interval_s: …`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormError(pub String);

/// The account `fields` describe, as source `source_name` of `tenant`. Empty fields take
/// their defaults; an empty password is left unset (see [`keep_password`]).
pub fn config_of(
    kind: &str,
    tenant: &str,
    source_name: &str,
    fields: &BTreeMap<String, String>,
) -> Result<SourceConfig, FormError> {
    let Some(form) = kinds().into_iter().find(|k| k.kind == kind) else {
        let offered: Vec<_> = kinds().iter().map(|k| k.kind).collect();
        return Err(FormError(format!(
            "kind: {kind:?} is not one of {}",
            offered.join(", ")
        )));
    };
    let mut object = Map::new();
    object.insert("kind".into(), kind.into());
    object.insert("tenant".into(), tenant.into());
    object.insert("name".into(), source_name.into());
    if kind == "mqtt" {
        // Its own broker session, kept across restarts (see `crate::mqtt`).
        let id = format!("emberline-{}", source_name.replace(['/', '@'], "-"));
        object.insert("client_id".into(), id.into());
    }
    for (name, value) in fields {
        let Some(f) = form.fields.iter().find(|f| f.name == name.as_str()) else {
            return Err(FormError(format!(
                "{name}: not a setting of a {} account",
                form.label
            )));
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let json = match f.kind {
            FieldType::Number => value
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| FormError(format!("{name}: {value:?} is not a whole number")))?,
            FieldType::Choice if !f.choices.contains(&value) => {
                return Err(FormError(format!(
                    "{name}: {value:?} is not one of {}",
                    f.choices.join(", ")
                )));
            }
            FieldType::Text if name == "base_url" => {
                let parsed =
                    reqwest::Url::parse(value).map_err(|e| FormError(format!("{name}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(FormError(format!("{name}: not an http(s) URL")));
                }
                Value::from(value)
            }
            _ => Value::from(value),
        };
        object.insert(name.clone(), json);
    }
    if let Some(missing) = form.fields.iter().find(|f| {
        f.required
            && f.kind != FieldType::Secret
            && fields.get(f.name).is_none_or(|v| v.trim().is_empty())
    }) {
        return Err(FormError(format!("{}: required", missing.name)));
    }
    let config: SourceConfig = serde_json::from_value(Value::Object(object))
        .map_err(|e| FormError(format!("{kind}: {e}")))?;
    Ok(config)
}

/// The password stored in `config`, if its kind has one.
fn stored_password(config: &SourceConfig) -> Option<&Secret> {
    match config {
        SourceConfig::Thermoworks(c) => c.credentials.password.as_ref(),
        SourceConfig::Meater(c) => c.credentials.password.as_ref(),
        SourceConfig::Fireboard(c) => c.credentials.password.as_ref(),
        SourceConfig::Mqtt(c) => c.password.as_ref(),
        _ => None,
    }
    .filter(|p| !p.is_empty())
}

fn password_slot(config: &mut SourceConfig) -> Option<&mut Option<Secret>> {
    match config {
        SourceConfig::Thermoworks(c) => Some(&mut c.credentials.password),
        SourceConfig::Meater(c) => Some(&mut c.credentials.password),
        SourceConfig::Fireboard(c) => Some(&mut c.credentials.password),
        SourceConfig::Mqtt(c) => Some(&mut c.password),
        _ => None,
    }
}

/// Whether `config` takes its password from the server's environment or files.
fn password_from_server(config: &SourceConfig) -> bool {
    match config {
        SourceConfig::Thermoworks(c) => {
            c.credentials.password_env.is_some() || c.credentials.password_file.is_some()
        }
        SourceConfig::Meater(c) => {
            c.credentials.password_env.is_some() || c.credentials.password_file.is_some()
        }
        SourceConfig::Fireboard(c) => {
            c.credentials.password_env.is_some() || c.credentials.password_file.is_some()
        }
        SourceConfig::Mqtt(c) => c.password_file.is_some(),
        _ => false,
    }
}

/// Gives `new` the password of `old` when it has none (an edit that leaves the password
/// field empty: forms never see a stored password, so cannot send it back).
pub fn keep_password(old: &SourceConfig, new: &mut SourceConfig) {
    let kept = stored_password(old).cloned();
    if stored_password(new).is_none()
        && let Some(slot) = password_slot(new)
    {
        *slot = kept;
    }
}

/// Checks `config` as an account a form may store: a kind the forms offer, a password
/// given in it (never from the server's environment or files) where the kind needs one,
/// and settings its source accepts.
pub fn check(config: &SourceConfig) -> Result<(), FormError> {
    let Some(form) = kinds().into_iter().find(|k| k.kind == config.kind()) else {
        return Err(FormError(format!(
            "kind: a {} source is set in the configuration file, not here",
            config.kind()
        )));
    };
    if password_from_server(config) {
        return Err(FormError(
            "password: give the password itself; the server's environment and files are \
             not offered here"
                .into(),
        ));
    }
    let needs_password = form
        .fields
        .iter()
        .any(|f| f.name == "password" && f.required);
    if needs_password && stored_password(config).is_none() {
        return Err(FormError("password: required".into()));
    }
    match config {
        SourceConfig::Mqtt(c) => MqttSource::new(c.clone())
            .check()
            .map_err(|e| FormError(naming_the_field("mqtt", &config_reason(e)))),
        _ => adapter(config).map(drop),
    }
}

/// The reason of a configuration error, without the source's name.
fn config_reason(e: crate::IngestError) -> String {
    match e {
        crate::IngestError::Config { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// What a form may show of `config`: its fields, without the password.
pub fn shown_fields(config: &SourceConfig) -> BTreeMap<String, String> {
    let Ok(Value::Object(all)) = serde_json::to_value(config) else {
        return BTreeMap::new();
    };
    let offered: Vec<&str> = kinds()
        .iter()
        .find(|k| k.kind == config.kind())
        .map(|k| {
            k.fields
                .iter()
                .filter(|f| f.kind != FieldType::Secret)
                .map(|f| f.name)
                .collect()
        })
        .unwrap_or_default();
    all.into_iter()
        .filter(|(name, _)| offered.contains(&name.as_str()))
        .filter_map(|(name, value)| match value {
            Value::String(s) => Some((name, s)),
            Value::Number(n) => Some((name, n.to_string())),
            _ => None,
        })
        .collect()
}

/// Whether a password is stored in `config`.
pub fn password_set(config: &SourceConfig) -> bool {
    stored_password(config).is_some()
}

/// `text` with the field it begins with followed by a colon (`poll_interval_s must be …` →
/// `poll_interval_s: must be …`), so a form can show it next to that field.
fn naming_the_field(kind: &str, text: &str) -> String {
    let fields = kinds()
        .into_iter()
        .find(|k| k.kind == kind)
        .map(|k| k.fields)
        .unwrap_or_default();
    for f in fields {
        if let Some(rest) = text.strip_prefix(f.name).and_then(|r| r.strip_prefix(' ')) {
            return format!("{}: {rest}", f.name);
        }
    }
    text.to_owned()
}

fn adapter(config: &SourceConfig) -> Result<Box<dyn CloudAdapter>, FormError> {
    let refused = |e: CloudError| {
        let text = e.to_string();
        FormError(naming_the_field(
            config.kind(),
            text.strip_prefix("configuration: ").unwrap_or(&text),
        ))
    };
    Ok(match config {
        SourceConfig::Thermoworks(c) => Box::new(Thermoworks::new(c.clone()).map_err(refused)?),
        SourceConfig::Meater(c) => Box::new(Meater::new(c.clone()).map_err(refused)?),
        SourceConfig::Fireboard(c) => Box::new(Fireboard::new(c.clone()).map_err(refused)?),
        other => {
            return Err(FormError(format!(
                "kind: a {} source is set in the configuration file, not here",
                other.kind()
            )));
        }
    })
}

/// A device an account reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDevice {
    /// Its id (as on its readings).
    pub device_id: String,
    /// Its name in the brand's app.
    pub name: String,
    /// Its probes' labels, by probe id.
    pub probes: BTreeMap<String, String>,
}

/// Signs in to the account and polls it once, without appending anything: the devices it
/// has, or why it failed (`credentials rejected: …`, `upstream failure: …`).
pub async fn test(config: &SourceConfig, now_ms: i64) -> Result<Vec<FoundDevice>, FormError> {
    if let SourceConfig::Mqtt(c) = config {
        let heard = MqttSource::new(c.clone())
            .probe(MQTT_LISTEN)
            .await
            .map_err(FormError)?;
        let mut found: BTreeMap<String, FoundDevice> = BTreeMap::new();
        for (device_id, probe_id) in heard {
            found
                .entry(device_id.clone())
                .or_insert_with(|| FoundDevice {
                    name: device_id.clone(),
                    device_id,
                    probes: BTreeMap::new(),
                })
                .probes
                .insert(probe_id.clone(), probe_id);
        }
        return Ok(found.into_values().collect());
    }
    let mut adapter = adapter(config)?;
    let out = adapter
        .poll(now_ms)
        .await
        .map_err(|e| FormError(e.to_string()))?;
    let mut found: BTreeMap<String, FoundDevice> = out
        .registrations
        .into_iter()
        .map(|r| {
            (
                r.device_id.clone(),
                FoundDevice {
                    device_id: r.device_id,
                    name: r.name,
                    probes: r.probe_labels,
                },
            )
        })
        .collect();
    for reading in out.readings {
        found
            .entry(reading.device_id.clone())
            .or_insert_with(|| FoundDevice {
                device_id: reading.device_id.clone(),
                name: reading.device_id.clone(),
                probes: BTreeMap::new(),
            })
            .probes
            .entry(reading.probe_id.clone())
            .or_insert_with(|| reading.probe_id.clone());
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_form_becomes_the_config_a_file_would_give() {
        let config = config_of(
            "thermoworks",
            "smiths",
            "smiths/garage",
            &form(&[
                ("username", "cook@example.com"),
                ("password", "hunter2"),
                ("poll_interval_s", "15"),
                ("brand", "eti"),
                ("base_url", ""),
            ]),
        )
        .expect("valid");
        let SourceConfig::Thermoworks(t) = &config else {
            panic!("{config:?}")
        };
        assert_eq!(
            (t.tenant.as_str(), t.name.as_str(), t.poll_interval_s),
            ("smiths", "smiths/garage", 15)
        );
        assert_eq!(
            t.credentials.password.as_ref().map(|p| p.expose()),
            Some("hunter2")
        );
        assert_eq!(t.base_url, None);
        check(&config).expect("acceptable");
        let shown = shown_fields(&config);
        assert_eq!(
            shown.get("username").map(String::as_str),
            Some("cook@example.com")
        );
        assert_eq!(shown.get("poll_interval_s").map(String::as_str), Some("15"));
        assert_eq!(shown.get("brand").map(String::as_str), Some("eti"));
        assert!(!shown.contains_key("password"), "{shown:?}");
        assert!(!format!("{shown:?}").contains("hunter2"));
        assert!(password_set(&config));
    }

    #[test]
    fn mistakes_are_refused_naming_the_field() {
        let refused = |kind: &str, pairs: &[(&str, &str)]| {
            config_of(kind, "default", "a", &form(pairs))
                .and_then(|c| check(&c))
                .expect_err("refused")
                .0
        };
        assert!(refused("pigeon", &[]).starts_with("kind:"));
        assert!(refused("http_push", &[]).starts_with("kind:"));
        assert_eq!(refused("mqtt", &[]), "url: required");
        assert!(
            refused("thermoworks", &[("password_file", "/etc/shadow")])
                .starts_with("password_file:")
        );
        assert!(
            refused("thermoworks", &[("poll_interval_s", "soon")]).starts_with("poll_interval_s:")
        );
        assert!(
            refused(
                "thermoworks",
                &[
                    ("username", "a@b"),
                    ("password", "p"),
                    ("poll_interval_s", "1")
                ]
            )
            .starts_with("poll_interval_s: must be at least 5")
        );
        assert!(refused("thermoworks", &[("username", "a@b")]).starts_with("password:"));
        assert!(refused("thermoworks", &[("password", "p")]).starts_with("username: "));
        assert!(refused("meater", &[("base_url", "file:///etc/passwd")]).starts_with("base_url:"));
        assert!(refused("thermoworks", &[("brand", "acme")]).starts_with("brand:"));
    }

    #[test]
    fn a_broker_needs_only_its_url_and_gets_a_session_of_its_own() {
        let config = config_of(
            "mqtt",
            "smiths",
            "smiths/shed",
            &form(&[("url", "mqtt://10.0.0.2:1883"), ("username", "grill")]),
        )
        .expect("valid");
        check(&config).expect("no password needed");
        let SourceConfig::Mqtt(m) = &config else {
            panic!("{config:?}")
        };
        assert_eq!(m.client_id, "emberline-smiths-shed");
        assert!(!password_set(&config));
        assert!(!shown_fields(&config).contains_key("client_id"));
        let refused = config_of("mqtt", "default", "b", &form(&[("url", "http://x")]))
            .and_then(|c| check(&c))
            .expect_err("not mqtt://")
            .0;
        assert!(refused.starts_with("url: "), "{refused}");
    }

    #[test]
    fn an_edit_without_a_password_keeps_the_stored_one() {
        let old = config_of(
            "meater",
            "default",
            "m",
            &form(&[("username", "a@b"), ("password", "old")]),
        )
        .expect("valid");
        let mut new = config_of(
            "meater",
            "default",
            "m",
            &form(&[
                ("username", "a@b"),
                ("password", ""),
                ("poll_interval_s", "60"),
            ]),
        )
        .expect("valid");
        assert!(!password_set(&new));
        keep_password(&old, &mut new);
        assert!(password_set(&new));
        let mut changed = config_of(
            "meater",
            "default",
            "m",
            &form(&[("username", "a@b"), ("password", "new")]),
        )
        .expect("valid");
        keep_password(&old, &mut changed);
        let SourceConfig::Meater(m) = changed else {
            panic!()
        };
        assert_eq!(
            m.credentials
                .password
                .map(|p| p.expose().to_owned())
                .as_deref(),
            Some("new")
        );
    }
}
