//! The settings store on a real (embedded) log: channels saved by one process are seen,
//! opened, by another and by the live set the notifier follows; nothing confidential is in
//! the log in clear; tenants see only their own; the configuration file's names are
//! read-only.

use std::sync::Arc;
use std::time::Duration;

use emberline_common::Secret;
use emberline_log::{EmbeddedLog, EventLog, topics};
use emberline_notify::{ChannelConfig, ChannelKind, WebhookFormat};
use emberline_settings::{SettingsError, SettingsKey, SettingsStore};

const KEY: &str = "the settings key of this test, 32+ chars";
const URL: &str = "https://hooks.example/services/T0/B0/very-secret-path";

fn hook(name: &str, secret: Option<&str>) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        user: None,
        devices: Vec::new(),
        tenant: "ignored: the store sets it".into(),
        kind: ChannelKind::Webhook {
            url: URL.into(),
            secret: secret.map(Secret::new),
            format: WebhookFormat::Json,
        },
    }
}

async fn store(log: &Arc<dyn EventLog>, file: Vec<ChannelConfig>) -> Arc<SettingsStore> {
    Arc::new(
        SettingsStore::open(
            log.clone(),
            SettingsKey::from_text(KEY, &[]).expect("key"),
            file,
        )
        .await
        .expect("open"),
    )
}

async fn topic_text(log: &Arc<dyn EventLog>) -> String {
    let end = log.end_offset(topics::SETTINGS, 0).await.expect("end");
    let mut reader = log.reader(topics::SETTINGS, 0, 0).await.expect("reader");
    let mut text = String::new();
    while reader.position() < end {
        for r in reader
            .next_batch(100, Duration::from_secs(10))
            .await
            .expect("read")
        {
            text.push_str(&String::from_utf8_lossy(&r.value));
        }
    }
    text
}

#[tokio::test]
async fn channels_are_sealed_in_the_log_shared_live_and_kept_per_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
    let mut file_channel = hook("from-file", None);
    file_channel.tenant = "default".into();
    let gateway = store(&log, vec![file_channel.clone()]).await;
    let notifier = store(&log, vec![file_channel]).await;
    let mut live = notifier.live_channels();
    assert!(live.borrow_and_update().is_empty());

    gateway
        .set_channel("default", hook("phone", Some("signing-secret-1")), 1)
        .await
        .expect("save");
    let text = topic_text(&log).await;
    for clear in ["very-secret-path", "hooks.example", "signing-secret-1"] {
        assert!(!text.contains(clear), "{clear} in the log: {text}");
    }

    live.changed().await.expect("live set");
    let opened = live.borrow_and_update().clone();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].name, "phone");
    let ChannelKind::Webhook { url, secret, .. } = &opened[0].kind else {
        panic!("kind")
    };
    assert_eq!(url, URL);
    assert_eq!(
        secret.as_ref().map(Secret::expose),
        Some("signing-secret-1")
    );

    // Saved again from a form that cannot show the secret: it stays.
    gateway
        .set_channel("default", hook("phone", None), 2)
        .await
        .expect("save again");
    let kept = notifier.channel("default", "phone");
    let kept = match kept {
        Ok(c) => c,
        // The notifier's store may not have read the second save yet.
        Err(_) => gateway.channel("default", "phone").expect("channel"),
    };
    let ChannelKind::Webhook { secret, .. } = &kept.kind else {
        panic!("kind")
    };
    assert_eq!(
        secret.as_ref().map(Secret::expose),
        Some("signing-secret-1")
    );

    let views = gateway.channels("default").expect("views");
    let names: Vec<_> = views
        .iter()
        .map(|v| (v.name.as_str(), v.from_config_file))
        .collect();
    assert_eq!(names, [("from-file", true), ("phone", false)]);
    assert!(!format!("{views:?}").contains("very-secret-path"));

    assert!(
        gateway.channels("acme").expect("views").is_empty(),
        "another tenant's"
    );
    assert!(matches!(
        gateway.channel("acme", "phone"),
        Err(SettingsError::NotFound(_))
    ));
    assert!(matches!(
        gateway.delete_channel("acme", "phone", 3).await,
        Err(SettingsError::NotFound(_))
    ));
    gateway
        .set_channel("acme", hook("phone", None), 3)
        .await
        .expect("acme's own phone, same name");
    assert_eq!(gateway.channels("acme").expect("views").len(), 1);

    let refused = gateway
        .set_channel("default", hook("from-file", None), 4)
        .await
        .expect_err("the file's name");
    assert!(refused.to_string().starts_with("name:"), "{refused}");
    let mut bad = hook("bad", None);
    bad.kind = ChannelKind::Webhook {
        url: "ftp://x".into(),
        secret: None,
        format: WebhookFormat::Json,
    };
    let refused = gateway
        .set_channel("default", bad, 4)
        .await
        .expect_err("bad url");
    assert!(refused.to_string().starts_with("url:"), "{refused}");

    gateway
        .delete_channel("default", "phone", 5)
        .await
        .expect("delete");
    loop {
        live.changed().await.expect("live set");
        let names: Vec<String> = live
            .borrow_and_update()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        if names == ["acme/phone"] {
            break;
        }
    }

    // A process started later, on the same log, has the same settings.
    let late = store(&log, Vec::new()).await;
    assert_eq!(late.channels("acme").expect("views").len(), 1);
    // And a process without the key cannot open them.
    let wrong = SettingsStore::open(
        log.clone(),
        SettingsKey::from_text("another key of thirty-two characters!!", &[]).expect("key"),
        Vec::new(),
    )
    .await
    .expect("open");
    assert!(wrong.channel("acme", "phone").is_err());
}
