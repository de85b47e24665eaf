//! The embedded store records the format of its values and refuses a store of another
//! format on open, naming the fix (`emberline rebuild`), instead of failing value by value.

use emberline_projections::{
    CookSession, EmbeddedStore, FORMAT_VERSION, ProjectionBatch, ProjectionError, ProjectionStore,
};

use redb::ReadableDatabase;

const META: redb::TableDefinition<&str, i64> = redb::TableDefinition::new("proj.meta");
const COOKS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("proj.cooks");

/// `CookSession` as stores before format version 2 kept it.
#[derive(serde::Serialize)]
struct CookSessionV1 {
    cook_id: String,
    device_id: String,
    what: Option<String>,
    started_time: i64,
    ended_time: Option<i64>,
    targets_c: std::collections::BTreeMap<String, f64>,
    pit_min_c: Option<f64>,
    pit_max_c: Option<f64>,
    notes: Vec<(i64, String)>,
}

fn cook() -> CookSession {
    CookSession {
        cook_id: "c1".into(),
        device_id: "d1".into(),
        what: Some("pork shoulder".into()),
        started_time: 1_000,
        ended_time: None,
        targets_c: [("meat-1".to_string(), 95.0)].into(),
        pit_min_c: None,
        pit_max_c: None,
        notes: Vec::new(),
        meat: Some("pork_shoulder".into()),
        weight_kg: Some(4.0),
        serve_at_ms: Some(50_000_000),
        rest_min: Some(60.0),
    }
}

#[tokio::test]
async fn a_new_store_records_its_format_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.redb");
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store
            .apply(ProjectionBatch {
                cooks: vec![cook()],
                ..Default::default()
            })
            .await
            .expect("apply");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.cook("c1").await.expect("read"), Some(cook()));
    drop(store);
    let db = redb::Database::open(&path).expect("raw");
    let txn = db.begin_read().expect("read");
    let version = txn
        .open_table(META)
        .expect("meta")
        .get("format_version")
        .expect("get")
        .map(|v| v.value());
    assert_eq!(version, Some(FORMAT_VERSION));
}

#[test]
fn a_store_from_before_versions_is_refused_with_the_rebuild_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.redb");
    // What an older Emberline left: a cook in the old layout, no format version.
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let old = CookSessionV1 {
                cook_id: "c1".into(),
                device_id: "d1".into(),
                what: None,
                started_time: 1_000,
                ended_time: Some(2_000),
                targets_c: Default::default(),
                pit_min_c: None,
                pit_max_c: None,
                notes: vec![(1_500, "wrapped".into())],
            };
            let bytes = postcard::to_allocvec(&old).expect("encode");
            txn.open_table(COOKS)
                .expect("cooks")
                .insert("c1", bytes.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = EmbeddedStore::open(&path)
        .err()
        .expect("an old store is refused");
    assert!(
        matches!(
            err,
            ProjectionError::OutdatedFormat {
                found: 1,
                expected: FORMAT_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("run `emberline rebuild`"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    // Refusing changed nothing: it stays refused, and is not stamped as current.
    assert!(matches!(
        EmbeddedStore::open(&path),
        Err(ProjectionError::OutdatedFormat { found: 1, .. })
    ));
}

#[test]
fn a_store_from_a_newer_format_is_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert("format_version", FORMAT_VERSION + 1)
            .expect("insert");
        txn.commit().expect("commit");
    }
    assert!(matches!(
        EmbeddedStore::open(&path),
        Err(ProjectionError::OutdatedFormat { found, .. }) if found == FORMAT_VERSION + 1
    ));
}
