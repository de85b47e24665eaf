//! The embedded registry's REST API, driven through `schema_registry_converter` (the client
//! Kafka-mode deployments use) and plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use apache_avro::Schema;
use emberline_schemas::events::{EventKind, ProbeReading};
use emberline_schemas::{
    ConfluentRegistry, EmbeddedRegistry, Event, EventCodec, RegistryError, SchemaRegistry,
};
use tokio_util::sync::CancellationToken;

struct Server {
    _dir: tempfile::TempDir,
    url: String,
    embedded: EmbeddedRegistry,
    shutdown: CancellationToken,
}

async fn start() -> Server {
    start_with(|_| emberline_gateway::AuthMode::Unchecked).await
}

/// A server whose callers are checked as `access` (given the registry's directory) says.
async fn start_with(
    access: impl FnOnce(&std::path::Path) -> emberline_gateway::AuthMode,
) -> Server {
    emberline_common::http::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("r.redb")).expect("db");
    let embedded = EmbeddedRegistry::new(Arc::new(db));
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    tokio::spawn(emberline_gateway::serve_registry(
        embedded.clone(),
        addr,
        shutdown.clone(),
        Some(tx),
        access(dir.path()),
    ));
    let bound = rx.await.expect("bound");
    Server {
        _dir: dir,
        url: format!("http://{bound}"),
        embedded,
        shutdown,
    }
}

#[tokio::test]
async fn schema_registry_converter_registers_and_resolves_through_the_rest_api() {
    let server = start().await;
    let remote = Arc::new(ConfluentRegistry::new(&server.url));
    // Registering every event schema over HTTP gives the ids the embedded registry holds.
    let codec = EventCodec::connect(remote.clone())
        .await
        .expect("codec over REST");
    let id = codec.schema_id(EventKind::ProbeReading).expect("id");
    let local = server
        .embedded
        .latest(ProbeReading::FULL_NAME)
        .await
        .expect("latest");
    assert_eq!((local.id, local.version), (id, 1));
    // Latest by subject and schema by id over HTTP.
    let latest = remote
        .latest(ProbeReading::FULL_NAME)
        .await
        .expect("latest over REST");
    assert_eq!((latest.id, latest.version), (id, 1));
    let text = remote.schema_by_id(id).await.expect("by id");
    assert_eq!(
        Schema::parse_str(&text).expect("parse"),
        *EventKind::ProbeReading.schema()
    );
    assert!(matches!(
        remote.schema_by_id(9_999).await,
        Err(RegistryError::UnknownId(9_999))
    ));
    assert!(matches!(
        remote.latest("no.such.Subject").await,
        Err(RegistryError::UnknownSubject(_))
    ));
    // A payload written by the REST-backed codec decodes with a codec on the embedded store.
    let direct = EventCodec::connect(Arc::new(server.embedded.clone()))
        .await
        .expect("codec");
    let reading = ProbeReading {
        device_id: "dev".into(),
        probe_id: "p".into(),
        event_time: 1,
        received_time: 2,
        temperature_c: Some(71.5),
        source: "test".into(),
    };
    let bytes = codec.encode(&reading).expect("encode");
    assert_eq!(
        direct.decode::<ProbeReading>(&bytes).await.expect("decode"),
        reading
    );
    // Compatibility: the same schema is compatible; a required new field is not, and
    // registering it is refused with 409.
    assert!(
        remote
            .is_compatible(ProbeReading::FULL_NAME, EventKind::ProbeReading.schema())
            .await
            .expect("check")
    );
    let mut json: serde_json::Value =
        serde_json::from_str(EventKind::ProbeReading.schema_text()).expect("json");
    json["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "calibration", "type": "double"}));
    let incompatible = Schema::parse_str(&json.to_string()).expect("schema");
    assert!(
        !remote
            .is_compatible(ProbeReading::FULL_NAME, &incompatible)
            .await
            .expect("check")
    );
    let refused = remote
        .register(ProbeReading::FULL_NAME, &incompatible)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::Incompatible { .. })),
        "{refused:?}"
    );
    server.shutdown.cancel();
}

#[tokio::test]
async fn rest_errors_use_confluent_codes() {
    let server = start().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.url)).send();
    let body = |r: reqwest::Response| async move {
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.expect("json"),
        )
    };
    let (status, json) = body(get("/schemas/ids/42").await.expect("get")).await;
    assert_eq!((status, json["error_code"].as_u64()), (404, Some(40403)));
    let (status, json) = body(get("/subjects/nope/versions/latest").await.expect("get")).await;
    assert_eq!((status, json["error_code"].as_u64()), (404, Some(40401)));
    let bad = http
        .post(format!("{}/subjects/x/versions", server.url))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"schema": "{\"type\": \"recrd\"}"}"#)
        .send()
        .await
        .expect("post");
    let (status, json) = body(bad).await;
    assert_eq!((status, json["error_code"].as_u64()), (422, Some(42201)));
    let (status, json) = body(get("/subjects").await.expect("get")).await;
    assert_eq!((status, json), (200, serde_json::json!([])));
    server.shutdown.cancel();
}

#[tokio::test]
async fn with_sign_in_on_reads_need_a_credential_and_registering_the_ingest_scope() {
    use emberline_auth::{AuthSettings, Authenticator, Scope};
    let mut tokens = Vec::new();
    let server = start_with(|dir| {
        let auth = Authenticator::open(dir, AuthSettings::default()).expect("identities");
        for scope in [Scope::Read, Scope::Ingest] {
            // The identities file answers without waiting on anything.
            let (token, _) = futures::executor::block_on(auth.create_token(
                "test",
                "default",
                scope.as_str(),
                scope,
                None,
            ))
            .expect("token");
            tokens.push(token);
        }
        emberline_gateway::AuthMode::Checked(Arc::new(auth))
    })
    .await;
    let (read, ingest) = (&tokens[0], &tokens[1]);
    let http = reqwest::Client::new();
    let subjects = format!("{}/subjects", server.url);
    let refused = http.get(&subjects).send().await.expect("answer");
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error_code"], 40101, "{body}");
    let listed = http
        .get(&subjects)
        .bearer_auth(read)
        .send()
        .await
        .expect("answer");
    assert_eq!(listed.status(), 200);

    // Registering: refused to a read token, through the client too; allowed with ingest.
    let forbidden = Arc::new(ConfluentRegistry::with_token(&server.url, read).expect("client"));
    let err = EventCodec::connect(forbidden)
        .await
        .err()
        .expect("a read token registers nothing");
    assert!(
        err.to_string().contains("40301") || err.to_string().contains("403"),
        "{err}"
    );
    let writer = Arc::new(ConfluentRegistry::with_token(&server.url, ingest).expect("client"));
    let codec = EventCodec::connect(writer)
        .await
        .expect("registered with ingest");
    codec.schema_id(EventKind::ProbeReading).expect("an id");
    let anonymous = Arc::new(ConfluentRegistry::new(&server.url));
    assert!(
        EventCodec::connect(anonymous).await.is_err(),
        "no token, no schema"
    );
    server.shutdown.cancel();
}
