//! The ScyllaDB projection store, for the distributed deployment (feature `scylla`).
//!
//! [`ScyllaStore::connect`] creates the keyspace and tables if missing (`IF NOT EXISTS`),
//! prepares every statement once and routes each request to a replica of its partition (the
//! driver's default load balancing, token-aware). Reads and writes use `LOCAL_QUORUM`, so a
//! processor that restarts elsewhere reads what its predecessor wrote.
//!
//! Write timestamps decide which write wins. Ordinary writes take them from the client
//! (monotonic per process), so coordinators' clocks do not matter; a commit batch (below)
//! additionally takes one greater than the write time of the `applied` rows it replaces, so
//! when an input partition moves to a processor on a host whose clock is behind, the new
//! owner's writes still win over its predecessor's. Rows written from several input
//! partitions are ordered per partition only: keep processor hosts' clocks synchronised, as
//! for any Cassandra-family client.
//!
//! # Tables and the queries they serve
//!
//! | table | partition key | clustering | serves |
//! |---|---|---|---|
//! | `latest` | `device_id` | `probe_id` | `latest(device)`, `devices()` (scan) |
//! | `history` | `(device_id, probe_id, day)` | `event_time` | `history(..)` |
//! | `history_days` | `(device_id, probe_id)` | `day` | which `history` partitions exist |
//! | `state` | `state_key` | — | `state(key)` |
//! | `devices` | `device_id` | — | `device_info`, `device_infos` (scan) |
//! | `cooks` | `cook_id` | — | `cook(id)`, `cooks(None)` (scan) |
//! | `cooks_by_device` | `device_id` | `cook_id` | `cooks(Some(device))` |
//! | `predictions` | `device_id` | `probe_id` | `predictions(..)` |
//! | `alerts` | `alert_id` | — | `alert(id)`, `alerts(None, ..)` (scan) |
//! | `alerts_by_device` | `device_id` | `alert_id` | `alerts(Some(device), ..)` |
//! | `alert_rules` | `rule_id` | — | removal by id, `alert_rules(None)` (scan) |
//! | `alert_rules_by_device` | `device_id` | `rule_id` | `alert_rules(Some(device))` |
//! | `applied` | `topic` | `partition_id` | `applied_positions(topic)` |
//!
//! `day` is whole UTC days since the epoch. Raw history rows (and their `history_days` rows)
//! are written `USING TTL` [`ScyllaConfig::history_ttl_s`]; nothing else expires. Listings
//! without a device scan their table (as the embedded store does) and sort in memory, so they
//! come back in the embedded store's order. A `*_by_device` row holds a copy of the value; a
//! write reads the entity's stored device first and deletes the old index row when the
//! device changed (and a rule removal deletes both rows).
//!
//! Values: structs are postcard blobs, the bytes the embedded store keeps; history uses typed
//! columns; positions are `int`/`bigint` holding the same bits as the `u32`/`u64`. `dump()`
//! returns the embedded store's (table, key, value) shape — `proj.*` table names, its key
//! spellings, its value bytes, its order — so the two stores compare equal for equal
//! content (expired history aside).
//!
//! # How `apply` keeps the contract
//!
//! ScyllaDB has no multi-partition transactions, so a batch is written in two steps:
//!
//! 1. **Facts first**: history (one `UNLOGGED` batch per partition, i.e. one atomic mutation
//!    each), `history_days`, and latest values, concurrently. These are pure functions of
//!    log records, no processor reads them back as input, and writing them again is a no-op:
//!    history is keyed by (probe, event time); latest is forward-only by construction (below).
//! 2. **Commit**: everything a processor reads back to resume — its state, the applied
//!    positions, and devices, cooks, predictions, alerts, rules (the device projector folds
//!    events into the stored cook, the cook processor into the stored alert) — in **one
//!    `LOGGED` batch**. The batch log makes it all-or-nothing: once any of it is applied, all
//!    of it will be, even if the coordinator dies. Building it takes a few point reads (the
//!    stored device of each cook, alert and rule it replaces; the write times of the
//!    positions it replaces), all before anything is written.
//!
//! A crash (or an error) before the commit leaves the old positions and the old state with
//! some newer facts already visible; the processor resumes from those positions, computes
//! the same facts again and rewrites them unchanged, so the end state is the one a single
//! atomic write gives. Putting the read-back rows in step 1 instead would not be safe:
//! re-folding a cook note into a cook already written would add the note twice. What the
//! store does not give: isolation. A reader may see facts before their positions, or part of
//! a committing batch for a few milliseconds (longer only if the coordinator dies and the
//! batch log replays it). "Durable" means acknowledged by a local quorum of replicas; each
//! replica's fsync follows its `commitlog_sync` setting (`batch` for fsync-per-write).
//!
//! The commit batch must stay below the server's `batch_size_fail_threshold_in_kb` (1 MiB by
//! default on ScyllaDB, 50 KiB on Cassandra); its rows are per changed entity, not per
//! reading, so it is small for the processors here. A larger one fails with an error and
//! nothing of it is applied.
//!
//! # Latest only moves forward — without reads or LWT
//!
//! Each latest row is written `USING TIMESTAMP` its event time in microseconds, and its
//! `value` cell starts with the source offset as ten big-endian 7-bit digits, followed by
//! the postcard `LatestProbe`. The server keeps the cell with the greater write timestamp,
//! and for equal timestamps the greater value, i.e. the greater offset: exactly the
//! (event time, offset) order, decided on every replica and at every compaction, whatever the
//! order or number of writers. That is idempotent, commutative, needs no read, and works
//! where lightweight transactions are unavailable or costly (Paxos round trips per probe;
//! tablet keyspaces in some ScyllaDB versions). Consequences: never write these rows
//! with another timestamp or delete them with `DELETE` (a tombstone at "now" would shadow
//! every reading older than it); two different values with the same (event time, offset)
//! keep the greater byte string, where the embedded store keeps the last one written (the
//! log does not produce that: a probe's readings share one partition, where an offset names
//! one record).
//!
//! # Schema changes
//!
//! `CREATE ... IF NOT EXISTS` from several processes at once is safe on ScyllaDB with
//! Raft-managed schema (`consistent_cluster_management`, the default on recent versions); on
//! older clusters, and on Cassandra, let one process create the schema first.

mod codec;
mod read;
mod schema;
mod statements;
mod write;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::Compression;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::{MonotonicTimestampGenerator, TimestampGenerator};
use scylla::response::PagingState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use serde::{Deserialize, Serialize};

use crate::{
    AlertRecord, AlertRuleRecord, CookSession, DeviceInfo, DeviceSummary, HistoryPoint,
    LatestProbe, ProbePrediction, ProjectionBatch, ProjectionError, ProjectionStore,
};
use statements::Statements;

/// Longest TTL ScyllaDB and Cassandra accept: 20 years.
const MAX_TTL_S: u64 = 630_720_000;

/// Client-side limit of one request, retries included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed to open a connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the ScyllaDB store connects and what it creates. Embeddable in a TOML file; every
/// field but `nodes` has a default.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (e.g. `10.0.0.5:9042`); the driver discovers the rest.
    pub nodes: Vec<String>,
    /// Keyspace of the projection tables: a letter, then letters, digits or underscores.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// CQL replication map used when the keyspace is created (an existing keyspace keeps its
    /// own), e.g. `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`.
    #[serde(default = "default_replication")]
    pub replication: String,
    /// Time to live of raw history rows, seconds (from the retention settings); `None` or 0
    /// keeps them forever. At most 630 720 000 (20 years).
    #[serde(default)]
    pub history_ttl_s: Option<u64>,
    /// User name, when the cluster authenticates (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username`.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_keyspace() -> String {
    "emberline".to_owned()
}

fn default_replication() -> String {
    "{'class': 'SimpleStrategy', 'replication_factor': 1}".to_owned()
}

impl ScyllaConfig {
    /// Defaults for a cluster reached through `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            keyspace: default_keyspace(),
            replication: default_replication(),
            history_ttl_s: None,
            username: None,
            password: None,
        }
    }

    /// The TTL bound to history writes: seconds, 0 for none.
    fn history_ttl(&self) -> Result<i32, ProjectionError> {
        match self.history_ttl_s {
            None => Ok(0),
            Some(ttl) if ttl <= MAX_TTL_S => i32::try_from(ttl).map_err(invalid),
            Some(ttl) => Err(invalid(format!(
                "history_ttl_s = {ttl} exceeds the 20-year limit of {MAX_TTL_S} s"
            ))),
        }
    }

    fn validate(&self) -> Result<(), ProjectionError> {
        if self.nodes.is_empty() {
            return Err(invalid("no nodes configured"));
        }
        if !schema::valid_keyspace(&self.keyspace) {
            return Err(invalid(format!(
                "keyspace {:?} must be a letter followed by at most 47 letters, digits or \
                 underscores",
                self.keyspace
            )));
        }
        if !schema::valid_replication(&self.replication) {
            return Err(invalid(format!(
                "replication {:?} is not a CQL map literal",
                self.replication
            )));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid("username and password go together"));
        }
        self.history_ttl().map(|_| ())
    }
}

impl std::fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("replication", &self.replication)
            .field("history_ttl_s", &self.history_ttl_s)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Maps a driver error to [`ProjectionError::Database`], keeping it as the source.
fn db<E: StdError + Send + Sync + 'static>(action: &'static str) -> impl Fn(E) -> ProjectionError {
    move |e| ProjectionError::Database {
        action,
        source: Box::new(e),
    }
}

/// A configuration error, as a [`ProjectionError::Database`] while validating the settings.
fn invalid(reason: impl Into<Box<dyn StdError + Send + Sync>>) -> ProjectionError {
    ProjectionError::Database {
        action: "checking the ScyllaDB settings",
        source: reason.into(),
    }
}

/// A [`ProjectionStore`] on a ScyllaDB (or Cassandra) cluster. Cheap to clone; clones share
/// one session. See the module docs for the data layout and the write protocol.
#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    statements: Statements,
    /// The session's timestamp generator, also read by commits.
    clock: Arc<MonotonicTimestampGenerator>,
    /// TTL of history writes, seconds; 0 for none.
    history_ttl: i32,
}

impl ScyllaStore {
    /// Connects, creates the keyspace and tables that are missing, and prepares statements.
    pub async fn connect(config: ScyllaConfig) -> Result<Self, ProjectionError> {
        config.validate()?;
        let history_ttl = config.history_ttl()?;
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .load_balancing_policy(DefaultPolicy::builder().token_aware(true).build())
            .request_timeout(Some(REQUEST_TIMEOUT))
            .build();
        let clock = Arc::new(MonotonicTimestampGenerator::new());
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .default_execution_profile_handle(profile.into_handle())
            .timestamp_generator(clock.clone() as Arc<dyn TimestampGenerator>)
            .compression(Some(Compression::Lz4))
            .keyspaces_to_fetch([config.keyspace.clone()]);
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.user(user, password);
        }
        let session = builder
            .build()
            .await
            .map_err(db("connecting to ScyllaDB"))?;
        schema::create(&session, &config).await?;
        let statements = Statements::prepare(&session, &config.keyspace).await?;
        tracing::info!(
            nodes = ?config.nodes,
            keyspace = %config.keyspace,
            "connected the ScyllaDB projection store"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                statements,
                clock,
                history_ttl,
            }),
        })
    }
}

impl Inner {
    /// Runs `statement` page by page, handing each row to `f` until it breaks.
    async fn for_each_row<R, F>(
        &self,
        action: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow + Send + Sync,
        mut f: F,
    ) -> Result<(), ProjectionError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
        F: FnMut(R) -> Result<ControlFlow<()>, ProjectionError> + Send,
    {
        let mut paging = PagingState::start();
        loop {
            let (result, response) = self
                .session
                .execute_single_page(statement, &values, paging)
                .await
                .map_err(db(action))?;
            let rows = result.into_rows_result().map_err(db(action))?;
            for row in rows.rows::<R>().map_err(db(action))? {
                if f(row.map_err(db(action))?)?.is_break() {
                    return Ok(());
                }
            }
            match response.into_paging_control_flow() {
                ControlFlow::Break(()) => return Ok(()),
                ControlFlow::Continue(next) => paging = next,
            }
        }
    }

    /// Every row of `statement`.
    async fn rows<R>(
        &self,
        action: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow + Send + Sync,
    ) -> Result<Vec<R>, ProjectionError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame> + Send,
    {
        let mut out = Vec::new();
        self.for_each_row(action, statement, values, |row| {
            out.push(row);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    /// The first row of `statement`, if any.
    async fn first_row<R>(
        &self,
        action: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow + Send + Sync,
    ) -> Result<Option<R>, ProjectionError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
    {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(db(action))?;
        let rows = result.into_rows_result().map_err(db(action))?;
        rows.maybe_first_row::<R>().map_err(db(action))
    }
}

#[async_trait]
impl ProjectionStore for ScyllaStore {
    async fn apply(&self, batch: ProjectionBatch) -> Result<(), ProjectionError> {
        write::apply(&self.inner, batch).await
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>, ProjectionError> {
        self.inner.devices().await
    }

    async fn device_infos(&self) -> Result<Vec<DeviceInfo>, ProjectionError> {
        self.inner.device_infos().await
    }

    async fn device_info(&self, device_id: &str) -> Result<Option<DeviceInfo>, ProjectionError> {
        self.inner.device_info(device_id).await
    }

    async fn cooks(&self, device_id: Option<&str>) -> Result<Vec<CookSession>, ProjectionError> {
        self.inner.cooks(device_id).await
    }

    async fn cook(&self, cook_id: &str) -> Result<Option<CookSession>, ProjectionError> {
        self.inner.cook(cook_id).await
    }

    async fn latest(&self, device_id: &str) -> Result<Vec<LatestProbe>, ProjectionError> {
        self.inner.latest(device_id).await
    }

    async fn predictions(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<ProbePrediction>, ProjectionError> {
        self.inner.predictions(device_id).await
    }

    async fn alerts(
        &self,
        device_id: Option<&str>,
        active_only: bool,
    ) -> Result<Vec<AlertRecord>, ProjectionError> {
        self.inner.alerts(device_id, active_only).await
    }

    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, ProjectionError> {
        self.inner.alert(alert_id).await
    }

    async fn alert_rules(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<AlertRuleRecord>, ProjectionError> {
        self.inner.alert_rules(device_id).await
    }

    async fn history(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, ProjectionError> {
        self.inner
            .history(device_id, probe_id, from_ms, to_ms, limit)
            .await
    }

    async fn applied_positions(&self, topic: &str) -> Result<BTreeMap<u32, u64>, ProjectionError> {
        self.inner.applied_positions(topic).await
    }

    async fn state(&self, key: &str) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.inner.state(key).await
    }

    async fn dump(&self) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, ProjectionError> {
        self.inner.dump().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        scylla: ScyllaConfig,
    }

    fn parse(text: &str) -> Result<ScyllaConfig, toml::de::Error> {
        toml::from_str::<File>(text).map(|f| f.scylla)
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let config = parse("[scylla]\nnodes = [\"10.0.0.5:9042\"]").expect("parse");
        assert_eq!(config, ScyllaConfig::new(["10.0.0.5:9042"]));
        assert_eq!(config.keyspace, "emberline");
        assert_eq!(
            config.replication,
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert!(config.validate().is_ok());
        let full = parse(
            "[scylla]\nnodes = [\"a:9042\", \"b:9042\"]\nkeyspace = \"grill\"\n\
             replication = \"{'class': 'NetworkTopologyStrategy', 'dc1': 3}\"\n\
             history_ttl_s = 86400\nusername = \"u\"\npassword = \"secret\"",
        )
        .expect("parse");
        assert!(full.validate().is_ok());
        assert_eq!(full.history_ttl().expect("ttl"), 86_400);
        assert!(!format!("{full:?}").contains("secret"));
        assert!(
            parse("[scylla]\nnodes = [\"a\"]\nport = 9042").is_err(),
            "unknown field"
        );
        assert!(
            parse("[scylla]\nkeyspace = \"x\"").is_err(),
            "nodes are required"
        );
    }

    #[test]
    fn invalid_settings_are_refused_before_connecting() {
        let base = ScyllaConfig::new(["127.0.0.1:9042"]);
        let refused = |c: ScyllaConfig| c.validate().is_err();
        assert!(refused(ScyllaConfig::new(Vec::<String>::new())));
        assert!(refused(ScyllaConfig {
            keyspace: "bad-name".into(),
            ..base.clone()
        }));
        assert!(refused(ScyllaConfig {
            replication: "SimpleStrategy".into(),
            ..base.clone()
        }));
        assert!(refused(ScyllaConfig {
            username: Some("u".into()),
            ..base.clone()
        }));
        assert!(refused(ScyllaConfig {
            history_ttl_s: Some(MAX_TTL_S + 1),
            ..base.clone()
        }));
        let forever = ScyllaConfig {
            history_ttl_s: Some(0),
            ..base
        };
        assert_eq!(forever.history_ttl().expect("ttl"), 0);
    }
}
