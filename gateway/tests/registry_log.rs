//! The log-backed schema registry: replicas over one log agree on every id and version,
//! a restarted replica rebuilds the same ids, incompatible versions are refused everywhere,
//! and the REST API over it answers as it does over the embedded registry.
//!
//! Every test runs on the embedded log, and on Kafka when `EMBERLINE_TEST_KAFKA` names a
//! broker (see `log/tests/conformance.rs`), each in a topic of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use apache_avro::Schema;
use emberline_gateway::{LogRegistry, RestRegistry, SCHEMAS_TOPIC};
use emberline_log::{EmbeddedLog, EventLog, KafkaConfig, KafkaLog, NewRecord};
use emberline_schemas::events::ProbeReading;
use emberline_schemas::{
    ConfluentRegistry, EmbeddedRegistry, EventCodec, EventKind, RegisteredVersion, RegistryError,
    SchemaRegistry, canonical_text,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One test's log and topic.
struct Harness {
    topic: String,
    kind: Kind,
}

enum Kind {
    Embedded {
        _dir: tempfile::TempDir,
        path: PathBuf,
        /// The open log, shared by the replicas of this process.
        open: Option<Arc<EmbeddedLog>>,
    },
    Kafka(KafkaConfig),
}

static TOPIC_SEQ: AtomicU64 = AtomicU64::new(0);

impl Harness {
    fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self {
            topic: SCHEMAS_TOPIC.to_owned(),
            kind: Kind::Embedded {
                path: dir.path().join("log.redb"),
                _dir: dir,
                open: None,
            },
        }
    }

    fn kafka() -> Option<Self> {
        let config = emberline_log::conformance::kafka_from_env()?;
        // Topics of earlier runs stay on the broker: make this one's name unique.
        let run = emberline_common::clock::now_nanos();
        let seq = TOPIC_SEQ.fetch_add(1, Ordering::Relaxed);
        Some(Self {
            topic: format!("_schemas.test.{run}.{seq}"),
            kind: Kind::Kafka(config),
        })
    }

    /// A log handle as one more replica would have it: the process's open log on the
    /// embedded backend, a connection of its own on Kafka.
    fn log(&mut self) -> Arc<dyn EventLog> {
        match &mut self.kind {
            Kind::Embedded { path, open, .. } => open
                .get_or_insert_with(|| Arc::new(EmbeddedLog::open(path).expect("open log")))
                .clone(),
            Kind::Kafka(config) => {
                Arc::new(KafkaLog::connect(config.clone()).expect("connect")) as Arc<dyn EventLog>
            }
        }
    }

    /// Forgets the open embedded log, so the next replica reopens it from disk (every
    /// replica on it must have been dropped).
    fn restart(&mut self) {
        if let Kind::Embedded { open, .. } = &mut self.kind {
            let log = open.take().expect("log open");
            assert_eq!(Arc::strong_count(&log), 1, "a replica still holds the log");
        }
    }

    async fn replica(&mut self) -> LogRegistry {
        let log = self.log();
        LogRegistry::open_topic(log, &self.topic)
            .await
            .expect("open registry")
    }

    async fn end(&mut self) -> u64 {
        let log = self.log();
        log.end_offset(&self.topic, 0).await.expect("end offset")
    }

    /// Appends raw record values, as another replica (or another tool) would.
    async fn append_raw(&mut self, values: Vec<Vec<u8>>) {
        let log = self.log();
        let records = values
            .into_iter()
            .map(|value| NewRecord {
                key: b"raw".to_vec(),
                value,
                timestamp_ms: 1,
            })
            .collect();
        log.append_to(&self.topic, 0, records)
            .await
            .expect("append");
    }
}

/// Runs each named `async fn(Harness)` on the embedded log and on Kafka.
macro_rules! on_both_logs {
    ($($name:ident),* $(,)?) => {
        mod embedded_log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Harness::embedded()).await;
                }
            )*
        }
        mod kafka_log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(harness) = super::Harness::kafka() {
                        super::$name(harness).await;
                    }
                }
            )*
        }
    };
}

on_both_logs!(
    replicas_agree_under_concurrent_registration_and_after_a_restart,
    a_known_schema_appends_nothing,
    incompatible_versions_are_refused_on_every_replica,
    rest_api_over_log_replicas_answers_as_the_embedded_one,
);

fn record_schema(name: &str, fields: Vec<Value>) -> Schema {
    let json = json!({"type": "record", "name": name, "namespace": "test", "fields": fields});
    Schema::parse_str(&json.to_string()).expect("schema")
}

/// Version `n` of record `name`: fields `f1..=fn`, all with defaults, so every version can
/// read every other's data whatever order they are registered in.
fn evolving(name: &str, n: usize) -> Schema {
    let fields = (1..=n)
        .map(|i| json!({"name": format!("f{i}"), "type": "long", "default": 0}))
        .collect();
    record_schema(name, fields)
}

/// Record `name` with required fields `fields` (no defaults): a version with a field the
/// latest lacks cannot read the latest's data.
fn rigid(name: &str, fields: &[&str]) -> Schema {
    let fields = fields
        .iter()
        .map(|f| json!({"name": f, "type": "long"}))
        .collect();
    record_schema(name, fields)
}

fn text(schema: &Schema) -> String {
    canonical_text(schema).expect("canonical text")
}

fn registration(subject: &str, schema: &Schema) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"emberline_registry": 1, "subject": subject, "schema": text(schema)}),
    )
    .expect("json")
}

/// Every subject with its versions.
async fn snapshot(registry: &LogRegistry) -> BTreeMap<String, Vec<RegisteredVersion>> {
    let mut out = BTreeMap::new();
    for subject in registry.subjects().await.expect("subjects") {
        let versions = registry.versions(&subject).await.expect("versions");
        out.insert(subject, versions);
    }
    out
}

async fn replicas_agree_under_concurrent_registration_and_after_a_restart(mut h: Harness) {
    let a = h.replica().await;
    let b = h.replica().await;
    // Distinct schemas under three subjects ("shared" reuses alpha's first schema, which
    // keeps its id), each registered by both replicas at once.
    let mut wanted: Vec<(String, Schema)> = Vec::new();
    for n in 1..=4 {
        wanted.push(("alpha".into(), evolving("Alpha", n)));
    }
    for n in 1..=3 {
        wanted.push(("beta".into(), evolving("Beta", n)));
    }
    wanted.push(("shared".into(), evolving("Alpha", 1)));
    let mut tasks = JoinSet::new();
    for (subject, schema) in &wanted {
        for (name, replica) in [("a", a.clone()), ("b", b.clone())] {
            let (subject, schema) = (subject.clone(), schema.clone());
            tasks.spawn(async move {
                let id = replica.register(&subject, &schema).await;
                (name, subject, text(&schema), id)
            });
        }
    }
    let mut ids: BTreeMap<(String, String), BTreeMap<&str, u32>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, subject, text, id) = joined.expect("task");
        let id = id.unwrap_or_else(|e| panic!("{name} registering under {subject}: {e}"));
        ids.entry((subject, text)).or_default().insert(name, id);
    }
    // Both replicas got the same id for every registration.
    for ((subject, _), by_replica) in &ids {
        assert_eq!(by_replica.len(), 2, "{subject}: {by_replica:?}");
        assert_eq!(
            by_replica["a"], by_replica["b"],
            "{subject}: {by_replica:?}"
        );
    }
    // One id per distinct text, dense from 1 (alpha's 4 and beta's 3; shared reuses one).
    let by_text: BTreeMap<&String, u32> = ids.iter().map(|((_, t), r)| (t, r["a"])).collect();
    let distinct: BTreeSet<u32> = by_text.values().copied().collect();
    assert_eq!(distinct, (1..=7).collect::<BTreeSet<u32>>(), "{by_text:?}");
    // The same subjects and versions everywhere; each subject holds exactly its schemas, once.
    let seen = snapshot(&a).await;
    assert_eq!(seen, snapshot(&b).await);
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["alpha", "beta", "shared"]
    );
    for (subject, versions) in &seen {
        let expected: BTreeSet<String> = wanted
            .iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, schema)| text(schema))
            .collect();
        let got: BTreeSet<String> = versions.iter().map(|v| v.schema.clone()).collect();
        assert_eq!(got, expected, "{subject}");
        assert_eq!(versions.len(), expected.len(), "{subject}: {versions:?}");
        let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, (1..=versions.len() as u32).collect::<Vec<_>>());
        for v in versions {
            assert_eq!(ids[&(subject.clone(), v.schema.clone())]["a"], v.id);
        }
    }
    for (text, id) in &by_text {
        assert_eq!(&a.schema_by_id(*id).await.expect("by id"), *text);
        assert_eq!(&b.schema_by_id(*id).await.expect("by id"), *text);
    }
    // A restarted replica (a fresh process: the log reopened) rebuilds the same state.
    drop((a, b));
    h.restart();
    let c = h.replica().await;
    assert_eq!(snapshot(&c).await, seen);
    for (text, id) in &by_text {
        assert_eq!(&c.schema_by_id(*id).await.expect("by id"), *text);
    }
    assert!(matches!(
        c.schema_by_id(8).await,
        Err(RegistryError::UnknownId(8))
    ));
    // And it goes on from there: the next schema gets the next id, seen by a new replica too.
    let next = c
        .register("alpha", &evolving("Alpha", 5))
        .await
        .expect("register");
    assert_eq!(next, 8);
    let d = h.replica().await;
    let latest = d.latest("alpha").await.expect("latest");
    assert_eq!((latest.id, latest.version), (8, 5));
}

async fn a_known_schema_appends_nothing(mut h: Harness) {
    let a = h.replica().await;
    let b = h.replica().await;
    let v1 = evolving("Known", 1);
    let id = a.register("known", &v1).await.expect("register");
    let end = h.end().await;
    assert!(end >= 1);
    // Known to the other replica (after catching up) and to this one: same id, no record.
    assert_eq!(b.register("known", &v1).await.expect("again"), id);
    assert_eq!(a.register("known", &v1).await.expect("again"), id);
    assert_eq!(h.end().await, end);
    // Under another subject the same schema is a new version (one record) with the same id.
    assert_eq!(b.register("other", &v1).await.expect("other"), id);
    assert_eq!(h.end().await, end + 1);
    // Without a topic name, the registry is kept in `_schemas` (the embedded harness's topic).
    if matches!(h.kind, Kind::Embedded { .. }) {
        let default = LogRegistry::open(h.log()).await.expect("open");
        assert_eq!(default.topic(), SCHEMAS_TOPIC);
        assert_eq!(default.latest("known").await.expect("latest").id, id);
    }
}

async fn incompatible_versions_are_refused_on_every_replica(mut h: Harness) {
    let a = h.replica().await;
    let b = h.replica().await;
    // What the embedded registry says to the same requests.
    let oracle = EmbeddedRegistry::in_memory().expect("registry");
    let first = rigid("Gamma", &["a"]);
    let id = a.register("gamma", &first).await.expect("register");
    assert_eq!(oracle.register("gamma", &first).await.expect("oracle"), id);
    let end = h.end().await;
    let incompatible = rigid("Gamma", &["b"]);
    let expected = oracle
        .register("gamma", &incompatible)
        .await
        .expect_err("refused by the embedded registry")
        .to_string();
    for replica in [&a, &b] {
        let refused = replica.register("gamma", &incompatible).await;
        assert!(
            matches!(&refused, Err(RegistryError::Incompatible { subject, version: 1, .. }) if subject == "gamma"),
            "{refused:?}"
        );
        assert_eq!(refused.expect_err("refused").to_string(), expected);
        assert!(
            !replica
                .is_compatible("gamma", &incompatible)
                .await
                .expect("check")
        );
    }
    // Refused before appending.
    assert_eq!(h.end().await, end);

    // A registration that raced another replica's reaches the log and is refused when
    // applied, by every replica alike; so is anything that is not a registration.
    let second = rigid("Gamma", &["a", "c"]); // no default for c: incompatible
    let compatible = record_schema(
        "Gamma",
        vec![
            json!({"name": "a", "type": "long"}),
            json!({"name": "c", "type": "long", "default": 7}),
        ],
    );
    h.append_raw(vec![
        b"not json".to_vec(),
        br#"{"keytype": "NOOP", "magic": 0}"#.to_vec(),
        registration("gamma", &second),
        registration("gamma", &compatible),
    ])
    .await;
    let fresh = h.replica().await;
    let gamma = a.versions("gamma").await.expect("versions");
    assert_eq!(gamma, b.versions("gamma").await.expect("versions"));
    assert_eq!(gamma, fresh.versions("gamma").await.expect("versions"));
    let summary: Vec<(u32, u32, String)> = gamma
        .iter()
        .map(|v| (v.version, v.id, v.schema.clone()))
        .collect();
    assert_eq!(
        summary,
        [(1, id, text(&first)), (2, id + 1, text(&compatible))]
    );

    // Conflicting first versions registered at once through both replicas: one wins, in log
    // order, and every other attempt is refused, whichever replica it went through.
    let mut tasks = JoinSet::new();
    for i in 0..6 {
        let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
        let schema = rigid("Delta", &[&format!("only{i}")]);
        tasks.spawn(async move { (text(&schema), replica.register("delta", &schema).await) });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            (text, Ok(id)) => winners.push((text, id)),
            (
                _,
                Err(RegistryError::Incompatible {
                    subject, version, ..
                }),
            ) => {
                assert_eq!((subject.as_str(), version), ("delta", 1));
            }
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let (winner, winner_id) = &winners[0];
    for replica in [&a, &b, &h.replica().await] {
        let delta = replica.versions("delta").await.expect("versions");
        assert_eq!(delta.len(), 1, "{delta:?}");
        assert_eq!((&delta[0].schema, delta[0].id), (winner, *winner_id));
    }

    // A record of a newer format stops a replica instead of being skipped.
    h.append_raw(vec![
        serde_json::to_vec(&json!({"emberline_registry": 2, "subject": "x", "schema": "{}"}))
            .expect("json"),
    ])
    .await;
    let stopped = a.latest("gamma").await;
    assert!(
        matches!(&stopped, Err(RegistryError::Remote { retriable: false, reason, .. }) if reason.contains("format version 2")),
        "{stopped:?}"
    );
}

/// A REST server over `registry`.
async fn serve(registry: impl RestRegistry, shutdown: &CancellationToken) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    tokio::spawn(emberline_gateway::serve_registry(
        registry,
        addr,
        shutdown.clone(),
        Some(tx),
        emberline_gateway::AuthMode::Unchecked,
    ));
    format!("http://{}", rx.await.expect("bound"))
}

async fn rest_api_over_log_replicas_answers_as_the_embedded_one(mut h: Harness) {
    emberline_common::http::install_crypto_provider();
    let shutdown = CancellationToken::new();
    let embedded = serve(EmbeddedRegistry::in_memory().expect("registry"), &shutdown).await;
    let replicas = [
        serve(h.replica().await, &shutdown).await,
        serve(h.replica().await, &shutdown).await,
    ];
    let http = reqwest::Client::new();
    let body = |schema: &Schema| json!({"schema": text(schema)});
    let requests: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/subjects".into(), None),
        (
            "POST",
            "/subjects/alpha/versions".into(),
            Some(body(&evolving("Alpha", 1))),
        ),
        (
            "POST",
            "/subjects/alpha/versions".into(),
            Some(body(&evolving("Alpha", 2))),
        ),
        (
            "POST",
            "/subjects/alpha/versions".into(),
            Some(body(&evolving("Alpha", 1))),
        ),
        (
            "POST",
            "/subjects/beta/versions".into(),
            Some(body(&rigid("Beta", &["a"]))),
        ),
        (
            "POST",
            "/subjects/beta/versions".into(),
            Some(body(&rigid("Beta", &["b"]))),
        ),
        (
            "POST",
            "/subjects/beta/versions".into(),
            Some(json!({"schema": "{\"type\": \"recrd\"}"})),
        ),
        (
            "POST",
            "/subjects/gamma/versions".into(),
            Some(body(&evolving("Alpha", 2))),
        ),
        ("GET", "/subjects".into(), None),
        ("GET", "/subjects/alpha/versions".into(), None),
        ("GET", "/subjects/alpha/versions/latest".into(), None),
        ("GET", "/subjects/alpha/versions/1".into(), None),
        ("GET", "/subjects/alpha/versions/3".into(), None),
        ("GET", "/subjects/nope/versions".into(), None),
        ("GET", "/schemas/ids/1".into(), None),
        ("GET", "/schemas/ids/2".into(), None),
        ("GET", "/schemas/ids/3".into(), None),
        ("GET", "/schemas/ids/4".into(), None),
        (
            "POST",
            "/subjects/alpha".into(),
            Some(body(&evolving("Alpha", 2))),
        ),
        (
            "POST",
            "/compatibility/subjects/beta/versions/latest".into(),
            Some(body(&rigid("Beta", &["b"]))),
        ),
    ];
    let send = |base: &str, method: &str, path: &str, json: &Option<Value>| {
        let url = format!("{base}{path}");
        let request = match method {
            "GET" => http.get(url),
            _ => http
                .post(url)
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(json.as_ref().map(Value::to_string).unwrap_or_default()),
        };
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json body"))
        }
    };
    let mut statuses = Vec::new();
    for (i, (method, path, json)) in requests.iter().enumerate() {
        // Alternate replicas, so what one registered is read through the other.
        let expected = send(&embedded, method, path, json).await;
        let got = send(&replicas[i % 2], method, path, json).await;
        assert_eq!(got, expected, "{method} {path}");
        statuses.push(expected.0);
    }
    // The script exercised successes and each error kind.
    for status in [200, 404, 409, 422] {
        assert!(statuses.contains(&status), "{statuses:?}");
    }

    // schema_registry_converter against both replicas at once: the same ids, and a payload
    // written through one decodes through the other.
    let (one, two) = tokio::join!(
        EventCodec::connect(Arc::new(ConfluentRegistry::new(&replicas[0]))),
        EventCodec::connect(Arc::new(ConfluentRegistry::new(&replicas[1]))),
    );
    let (one, two) = (one.expect("codec"), two.expect("codec"));
    for kind in EventKind::ALL {
        assert_eq!(one.schema_id(kind), two.schema_id(kind), "{kind:?}");
    }
    let reading = ProbeReading {
        device_id: "dev".into(),
        probe_id: "p".into(),
        event_time: 1,
        received_time: 2,
        temperature_c: Some(93.5),
        source: "test".into(),
    };
    let bytes = one.encode(&reading).expect("encode");
    assert_eq!(
        two.decode::<ProbeReading>(&bytes).await.expect("decode"),
        reading
    );
    shutdown.cancel();
}
