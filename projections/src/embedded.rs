//! The embedded projection store: redb on local disk, beside the embedded log.
//!
//! Tables:
//! * `proj.latest`: (device, probe) → latest reading and trend;
//! * `proj.history`: (device, probe, start of a minute of event time) → the probe's points in
//!   that minute, as one [`history_block`](crate::history_block);
//! * `proj.state`: key → processor state;
//! * `proj.devices`: device → [`DeviceInfo`] (names, health, targets, removal);
//! * `proj.cooks`: cook id → [`CookSession`];
//! * `proj.predictions`: `device/probe` → the probe's latest [`ProbePrediction`];
//! * `proj.alerts`: alert id → [`AlertRecord`] (one per alert episode);
//! * `proj.alert_rules`: rule id → [`AlertRuleRecord`];
//! * `proj.applied`: (topic, partition) → next offset covered.
//!
//! * `proj.meta`: `history_retained_from` → the cut-off of the last history retention run;
//!   `format_version` → [`FORMAT_VERSION`], the layout of the values.
//!
//! Values are postcard-encoded, history blocks excepted. One [`ProjectionBatch`] (or the
//! batches of one [`ProjectionStore::apply_all`]) is one fsynced write transaction.
//!
//! The file is kept in a [`ReopeningDatabase`]: after an I/O error (a full disk) the next
//! operation reopens it, so the store carries on once space is freed. History points older
//! than the retention (event time) are removed by [`EmbeddedStore::run_history_retention`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use emberline_common::redb_file::{NOT_CLOSED_CLEANLY, ReopeningDatabase};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};

use crate::history_block::{self, BUCKET_MS, Point, bucket_of};
use crate::{
    AlertRecord, AlertRuleRecord, CookSession, DeviceInfo, DeviceSummary, Downsampler,
    HistoryPoint, HistoryStep, LatestProbe, ProbePrediction, ProjectionBatch, ProjectionError,
    ProjectionStore,
};

/// Page cache of the store file (the OS page cache holds the rest).
const CACHE_BYTES: usize = 64 << 20;

const LATEST: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("proj.latest");
const HISTORY: TableDefinition<(&str, &str, i64), &[u8]> = TableDefinition::new("proj.history");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("proj.state");
const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("proj.devices");
const COOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("proj.cooks");
const APPLIED: TableDefinition<(&str, u32), u64> = TableDefinition::new("proj.applied");
const PREDICTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("proj.predictions");
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("proj.alerts");
const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("proj.alert_rules");
const META: TableDefinition<&str, i64> = TableDefinition::new("proj.meta");

/// Key of the history retention's cut-off in `proj.meta`.
const HISTORY_RETAINED_FROM: &str = "history_retained_from";
/// Key of the store's format version in `proj.meta`.
const FORMAT_VERSION_KEY: &str = "format_version";

/// The layout of the stored values. Postcard has no field defaults, so adding a field to a
/// stored type makes older values unreadable: bump this with every such change, and stores
/// of another version are refused on open ([`ProjectionError::OutdatedFormat`]) instead of
/// failing value by value. A store from before versions were recorded is version 1.
///
/// 2: a cook carries its plan (`CookSession::meat`, `weight_kg`, `serve_at_ms`, `rest_min`).
/// 3: the cook processor's device state carries the profile learnt from the device's
/// completed cooks, and each probe what its cook has shown so far.
/// 4: history is kept in blocks of a minute per probe instead of one key per point.
pub const FORMAT_VERSION: i64 = 4;

/// History points removed per write transaction by retention (whole blocks: a transaction
/// may take a block beyond it): few, so batches wait little.
const EXPIRE_POINTS_PER_TXN: u64 = 2_000;

/// Writes `items` as postcard values into a string-keyed table.
fn put_all<'a, T: serde::Serialize + 'a>(
    txn: &redb::WriteTransaction,
    def: TableDefinition<'static, &'static str, &'static [u8]>,
    name: &'static str,
    items: impl Iterator<Item = (String, &'a T)>,
) -> ReadResult<()> {
    let mut table = txn.open_table(def)?;
    for (key, item) in items {
        let bytes = match postcard::to_allocvec(item) {
            Ok(b) => b,
            Err(e) => return Ok(Err(corrupt(name)(e))),
        };
        table.insert(key.as_str(), bytes.as_slice())?;
    }
    Ok(Ok(()))
}

/// A [`ProjectionStore`] in one redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<ReopeningDatabase>,
}

fn storage(action: &'static str) -> impl Fn(redb::Error) -> ProjectionError {
    move |e| ProjectionError::Storage {
        action,
        source: Box::new(e),
    }
}

fn corrupt<E: std::fmt::Display>(table: &'static str) -> impl Fn(E) -> ProjectionError {
    move |e| ProjectionError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

/// Internal result of a read: storage errors and decode errors kept apart.
type ReadResult<T> = Result<Result<T, ProjectionError>, redb::Error>;

macro_rules! read_table {
    ($txn:expr, $def:expr, $empty:expr) => {
        match $txn.open_table($def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Ok($empty)),
            Err(e) => return Err(redb::Error::from(e)),
        }
    };
}

/// Hands `visit` the stored points of one probe with `from_ms <= event_time < to_ms`, oldest
/// first, until it returns `false`.
fn visit_history(
    db: &Database,
    device: &str,
    probe: &str,
    from_ms: i64,
    to_ms: i64,
    mut visit: impl FnMut(Point) -> bool,
) -> ReadResult<()> {
    let txn = db.begin_read()?;
    let table = read_table!(txn, HISTORY, ());
    if from_ms >= to_ms {
        return Ok(Ok(()));
    }
    // The block holding `from_ms` starts before it; none from `to_ms` on holds any.
    for entry in table.range((device, probe, bucket_of(from_ms))..(device, probe, to_ms))? {
        let (_, value) = entry?;
        let points = match history_block::decode(value.value()) {
            Ok(points) => points,
            Err(e) => return Ok(Err(corrupt("proj.history")(e))),
        };
        for point in points {
            if point.event_time < from_ms {
                continue;
            }
            if point.event_time >= to_ms || !visit(point) {
                return Ok(Ok(()));
            }
        }
    }
    Ok(Ok(()))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, ProjectionError> {
        emberline_common::data_dir::note_file(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ProjectionError::Storage {
                action: "creating the data directory",
                source: format!("{}: {e}", parent.display()).into(),
            })?;
        }
        let db = ReopeningDatabase::open(path, CACHE_BYTES).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => ProjectionError::InUse {
                path: path.to_owned(),
            },
            e => ProjectionError::Storage {
                action: "opening the projection store",
                source: format!("{}: {e}", path.display()).into(),
            },
        })?;
        let found = db
            .run(check_format)
            .map_err(storage("checking the projection store's format"))?;
        if found != FORMAT_VERSION {
            return Err(ProjectionError::OutdatedFormat {
                path: path.to_owned(),
                found,
                expected: FORMAT_VERSION,
            });
        }
        Ok(Self { db })
    }

    /// The redb database, for taking backups of it (`emberline backup`).
    pub fn database(&self) -> Arc<ReopeningDatabase> {
        self.handle()
    }

    /// The reopening database underneath: take the current database from it per use, so
    /// the store can reopen the file after an I/O error.
    pub fn handle(&self) -> Arc<ReopeningDatabase> {
        self.db.clone()
    }

    /// Removes history points with an event time before `before_ms`, a few thousand per
    /// write transaction, and records `before_ms` as where history is retained from.
    /// Returns how many points were removed.
    pub async fn expire_history(&self, before_ms: i64) -> Result<u64, ProjectionError> {
        let mut removed = 0;
        loop {
            let (n, done) = self
                .blocking("removing expired history", move |db| {
                    expire_history_some(db, before_ms)
                })
                .await?;
            removed += n;
            if done {
                return Ok(removed);
            }
        }
    }

    /// Runs [`expire_history`](Self::expire_history) every `every` with the cut-off
    /// `retention` before the clock, forever; failures are logged and retried next round.
    pub async fn run_history_retention(
        &self,
        retention: std::time::Duration,
        every: std::time::Duration,
    ) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let cutoff = emberline_common::clock::now_ms() - retention.as_millis() as i64;
            match self.expire_history(cutoff).await {
                Ok(0) => {}
                Ok(points) => tracing::info!(
                    points,
                    cutoff_ms = cutoff,
                    "history retention removed expired points"
                ),
                Err(e) => {
                    tracing::warn!(error = %emberline_common::error::chain(&e), "history retention failed; trying again later")
                }
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Database) -> ReadResult<T> + Send + 'static,
    ) -> Result<T, ProjectionError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            // `run` may call the operation twice (once more after reopening the file).
            let mut f = Some(f);
            db.run(|d| match f.take() {
                Some(f) => f(d),
                None => Err(redb::Error::PreviousIo),
            })
        })
        .await
        .map_err(|e| ProjectionError::Task(e.to_string()))?
        .map_err(storage(action))?
    }

    /// The postcard value under `key` in a table keyed by string.
    async fn get_decoded<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        action: &'static str,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, ProjectionError> {
        let key = key.to_owned();
        self.blocking(action, move |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, def, None);
            let Some(value) = table.get(key.as_str())? else {
                return Ok(Ok(None));
            };
            Ok(postcard::from_bytes(value.value())
                .map(Some)
                .map_err(corrupt(name)))
        })
        .await
    }

    /// Every postcard value of a string-keyed table that passes `keep`, in key order.
    async fn list<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        action: &'static str,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &'static str,
        keep: impl Fn(&T) -> bool + Send + 'static,
    ) -> Result<Vec<T>, ProjectionError> {
        self.blocking(action, move |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, def, Vec::new());
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                match postcard::from_bytes::<T>(value.value()) {
                    Ok(v) if keep(&v) => out.push(v),
                    Ok(_) => {}
                    Err(e) => return Ok(Err(corrupt(name)(e))),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    /// Applies `batches` in order in one write transaction.
    fn apply_blocking(db: &Database, batches: &[ProjectionBatch]) -> ReadResult<()> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        for batch in batches {
            if let Err(e) = Self::write_batch(&txn, batch)? {
                return Ok(Err(e));
            }
        }
        let points = batches.iter().flat_map(|b| &b.history);
        if let Err(e) = Self::write_history(&txn, points)? {
            return Ok(Err(e));
        }
        txn.commit()?;
        Ok(Ok(()))
    }

    /// Adds `points`, in the order they were applied, to their blocks: one read and one
    /// write per probe and minute.
    fn write_history<'a>(
        txn: &redb::WriteTransaction,
        points: impl Iterator<Item = &'a HistoryPoint>,
    ) -> ReadResult<()> {
        let mut blocks: BTreeMap<(&str, &str, i64), Vec<Point>> = BTreeMap::new();
        for p in points {
            let key = (
                p.device_id.as_str(),
                p.probe_id.as_str(),
                bucket_of(p.event_time),
            );
            blocks.entry(key).or_default().push(Point {
                event_time: p.event_time,
                received_time: p.received_time,
                temperature_c: p.temperature_c,
            });
        }
        if blocks.is_empty() {
            return Ok(Ok(()));
        }
        let mut history = txn.open_table(HISTORY)?;
        for (key, new) in blocks {
            let stored = history.get(key)?.map(|g| history_block::decode(g.value()));
            let mut points = match stored {
                Some(Ok(points)) => points,
                Some(Err(e)) => return Ok(Err(corrupt("proj.history")(e))),
                None => Vec::new(),
            };
            history_block::merge(&mut points, new);
            history.insert(key, history_block::encode(&points).as_slice())?;
        }
        Ok(Ok(()))
    }

    fn write_batch(txn: &redb::WriteTransaction, batch: &ProjectionBatch) -> ReadResult<()> {
        {
            let mut latest = txn.open_table(LATEST)?;
            // Coalesce within the batch first: one write per probe.
            let mut newest: BTreeMap<(&str, &str), &LatestProbe> = BTreeMap::new();
            for value in &batch.latest {
                let key = (value.device_id.as_str(), value.probe_id.as_str());
                match newest.get(&key) {
                    Some(old) if !value.supersedes(old) => {}
                    _ => {
                        newest.insert(key, value);
                    }
                }
            }
            for (key, value) in newest {
                let stored = latest
                    .get(key)?
                    .map(|g| postcard::from_bytes::<LatestProbe>(g.value()));
                let keep_stored = match stored {
                    Some(Ok(old)) => !value.supersedes(&old),
                    Some(Err(e)) => return Ok(Err(corrupt("proj.latest")(e))),
                    None => false,
                };
                if !keep_stored {
                    let bytes = match postcard::to_allocvec(value) {
                        Ok(b) => b,
                        Err(e) => return Ok(Err(corrupt("proj.latest")(e))),
                    };
                    latest.insert(key, bytes.as_slice())?;
                }
            }
            let mut state = txn.open_table(STATE)?;
            for (key, value) in &batch.state {
                state.insert(key.as_str(), value.as_slice())?;
            }
            let mut devices = txn.open_table(DEVICES)?;
            for info in &batch.devices {
                let bytes = match postcard::to_allocvec(info) {
                    Ok(b) => b,
                    Err(e) => return Ok(Err(corrupt("proj.devices")(e))),
                };
                devices.insert(info.device_id.as_str(), bytes.as_slice())?;
            }
            let mut cooks = txn.open_table(COOKS)?;
            for cook in &batch.cooks {
                let bytes = match postcard::to_allocvec(cook) {
                    Ok(b) => b,
                    Err(e) => return Ok(Err(corrupt("proj.cooks")(e))),
                };
                cooks.insert(cook.cook_id.as_str(), bytes.as_slice())?;
            }
            let predictions = batch
                .predictions
                .iter()
                .map(|p| (format!("{}/{}", p.device_id, p.probe_id), p));
            if let Err(e) = put_all(txn, PREDICTIONS, "proj.predictions", predictions)? {
                return Ok(Err(e));
            }
            let alerts = batch.alerts.iter().map(|a| (a.alert_id.clone(), a));
            if let Err(e) = put_all(txn, ALERTS, "proj.alerts", alerts)? {
                return Ok(Err(e));
            }
            let rules = batch.alert_rules.iter().map(|r| (r.rule_id.clone(), r));
            if let Err(e) = put_all(txn, RULES, "proj.alert_rules", rules)? {
                return Ok(Err(e));
            }
            let mut rules = txn.open_table(RULES)?;
            for id in &batch.removed_rules {
                rules.remove(id.as_str())?;
            }
            let mut applied = txn.open_table(APPLIED)?;
            for (topic, partition, next) in &batch.applied {
                applied.insert((topic.as_str(), *partition), *next)?;
            }
        }
        Ok(Ok(()))
    }
}

#[async_trait]
impl ProjectionStore for EmbeddedStore {
    async fn apply(&self, batch: ProjectionBatch) -> Result<(), ProjectionError> {
        self.blocking("applying a batch", move |db| {
            Self::apply_blocking(db, std::slice::from_ref(&batch))
        })
        .await
    }

    async fn apply_all(
        &self,
        batches: std::sync::Arc<Vec<ProjectionBatch>>,
    ) -> Result<(), ProjectionError> {
        if batches.is_empty() {
            return Ok(());
        }
        self.blocking("applying batches", move |db| {
            Self::apply_blocking(db, &batches)
        })
        .await
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>, ProjectionError> {
        self.blocking("listing devices", |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, LATEST, Vec::new());
            let mut out: Vec<DeviceSummary> = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                let latest: LatestProbe = match postcard::from_bytes(value.value()) {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(corrupt("proj.latest")(e))),
                };
                match out.last_mut() {
                    Some(d) if d.device_id == latest.device_id => {
                        d.probes += 1;
                        d.last_event_time = d.last_event_time.max(latest.event_time);
                        d.last_received_time = d.last_received_time.max(latest.received_time);
                    }
                    _ => out.push(DeviceSummary {
                        device_id: latest.device_id,
                        probes: 1,
                        last_event_time: latest.event_time,
                        last_received_time: latest.received_time,
                    }),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn device_infos(&self) -> Result<Vec<DeviceInfo>, ProjectionError> {
        self.blocking("reading device descriptions", |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, DEVICES, Vec::new());
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                match postcard::from_bytes(value.value()) {
                    Ok(info) => out.push(info),
                    Err(e) => return Ok(Err(corrupt("proj.devices")(e))),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn device_info(&self, device_id: &str) -> Result<Option<DeviceInfo>, ProjectionError> {
        self.get_decoded(
            "reading a device description",
            DEVICES,
            "proj.devices",
            device_id,
        )
        .await
    }

    async fn cooks(&self, device_id: Option<&str>) -> Result<Vec<CookSession>, ProjectionError> {
        let device = device_id.map(str::to_owned);
        self.blocking("listing cooks", move |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, COOKS, Vec::new());
            let mut out: Vec<CookSession> = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                match postcard::from_bytes::<CookSession>(value.value()) {
                    Ok(c) if device.as_deref().is_none_or(|d| d == c.device_id) => out.push(c),
                    Ok(_) => {}
                    Err(e) => return Ok(Err(corrupt("proj.cooks")(e))),
                }
            }
            out.sort_by(|a, b| (b.started_time, &b.cook_id).cmp(&(a.started_time, &a.cook_id)));
            Ok(Ok(out))
        })
        .await
    }

    async fn cook(&self, cook_id: &str) -> Result<Option<CookSession>, ProjectionError> {
        self.get_decoded("reading a cook", COOKS, "proj.cooks", cook_id)
            .await
    }

    async fn predictions(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<ProbePrediction>, ProjectionError> {
        let device = device_id.map(str::to_owned);
        self.list(
            "listing predictions",
            PREDICTIONS,
            "proj.predictions",
            move |p: &ProbePrediction| device.as_deref().is_none_or(|d| d == p.device_id),
        )
        .await
    }

    async fn alerts(
        &self,
        device_id: Option<&str>,
        active_only: bool,
    ) -> Result<Vec<AlertRecord>, ProjectionError> {
        let device = device_id.map(str::to_owned);
        let mut out = self
            .list(
                "listing alerts",
                ALERTS,
                "proj.alerts",
                move |a: &AlertRecord| {
                    device.as_deref().is_none_or(|d| d == a.device_id)
                        && (!active_only || a.is_active())
                },
            )
            .await?;
        out.sort_by(|a, b| (b.raised_time, &b.alert_id).cmp(&(a.raised_time, &a.alert_id)));
        Ok(out)
    }

    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, ProjectionError> {
        self.get_decoded("reading an alert", ALERTS, "proj.alerts", alert_id)
            .await
    }

    async fn alert_rules(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<AlertRuleRecord>, ProjectionError> {
        let device = device_id.map(str::to_owned);
        self.list(
            "listing alert rules",
            RULES,
            "proj.alert_rules",
            move |r: &AlertRuleRecord| device.as_deref().is_none_or(|d| d == r.device_id),
        )
        .await
    }

    async fn latest(&self, device_id: &str) -> Result<Vec<LatestProbe>, ProjectionError> {
        let device = device_id.to_owned();
        self.blocking("reading latest values", move |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, LATEST, Vec::new());
            let mut out = Vec::new();
            let d = device.as_str();
            for entry in table.range((d, "")..)? {
                let (key, value) = entry?;
                if key.value().0 != d {
                    break;
                }
                match postcard::from_bytes(value.value()) {
                    Ok(l) => out.push(l),
                    Err(e) => return Ok(Err(corrupt("proj.latest")(e))),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn history(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, ProjectionError> {
        let (device, probe) = (device_id.to_owned(), probe_id.to_owned());
        self.blocking("reading history", move |db| {
            let mut out = Vec::new();
            let visited = visit_history(db, &device, &probe, from_ms, to_ms, |point| {
                if out.len() >= limit {
                    return false;
                }
                out.push(HistoryPoint {
                    device_id: device.clone(),
                    probe_id: probe.clone(),
                    event_time: point.event_time,
                    received_time: point.received_time,
                    temperature_c: point.temperature_c,
                });
                true
            })?;
            Ok(visited.map(|()| out))
        })
        .await
    }

    async fn history_steps(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryStep>, ProjectionError> {
        let (device, probe) = (device_id.to_owned(), probe_id.to_owned());
        self.blocking("reading history steps", move |db| {
            let mut steps = Downsampler::new(step_ms, limit);
            let visited = visit_history(db, &device, &probe, from_ms, to_ms, |point| {
                steps.push(point.event_time, point.temperature_c)
            })?;
            Ok(visited.map(|()| steps.finish()))
        })
        .await
    }

    async fn applied_positions(&self, topic: &str) -> Result<BTreeMap<u32, u64>, ProjectionError> {
        let topic = topic.to_owned();
        self.blocking("reading applied positions", move |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, APPLIED, BTreeMap::new());
            let t = topic.as_str();
            let mut out = BTreeMap::new();
            for entry in table.range((t, 0)..=(t, u32::MAX))? {
                let (key, next) = entry?;
                out.insert(key.value().1, next.value());
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn state(&self, key: &str) -> Result<Option<Vec<u8>>, ProjectionError> {
        let key = key.to_owned();
        self.blocking("reading processor state", move |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, STATE, None);
            Ok(Ok(table.get(key.as_str())?.map(|g| g.value().to_vec())))
        })
        .await
    }

    async fn history_retained_from(&self) -> Result<Option<i64>, ProjectionError> {
        self.blocking("reading the history retention", |db| {
            let txn = db.begin_read()?;
            let table = read_table!(txn, META, None);
            Ok(Ok(table.get(HISTORY_RETAINED_FROM)?.map(|g| g.value())))
        })
        .await
    }

    async fn dump(&self) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, ProjectionError> {
        self.blocking("dumping", |db| {
            let txn = db.begin_read()?;
            let mut out = Vec::new();
            if let Ok(t) = txn.open_table(LATEST) {
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (d, p) = k.value();
                    out.push((
                        LATEST.name().to_owned(),
                        format!("{d}/{p}").into_bytes(),
                        v.value().to_vec(),
                    ));
                }
            }
            if let Ok(t) = txn.open_table(HISTORY) {
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (d, p, bucket) = k.value();
                    out.push((
                        HISTORY.name().to_owned(),
                        format!("{d}/{p}/{bucket}").into_bytes(),
                        v.value().to_vec(),
                    ));
                }
            }
            for def in [STATE, DEVICES, COOKS, PREDICTIONS, ALERTS, RULES] {
                if let Ok(t) = txn.open_table(def) {
                    for e in t.iter()? {
                        let (k, v) = e?;
                        out.push((
                            def.name().to_owned(),
                            k.value().as_bytes().to_vec(),
                            v.value().to_vec(),
                        ));
                    }
                }
            }
            if let Ok(t) = txn.open_table(APPLIED) {
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (topic, p) = k.value();
                    out.push((
                        APPLIED.name().to_owned(),
                        format!("{topic}/{p}").into_bytes(),
                        v.value().to_le_bytes().to_vec(),
                    ));
                }
            }
            Ok(Ok(out))
        })
        .await
    }
}

/// Removes up to [`EXPIRE_POINTS_PER_TXN`] history points older than `before_ms`; returns
/// how many and whether none older is left.
fn expire_history_some(db: &Database, before_ms: i64) -> ReadResult<(u64, bool)> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut removed = 0u64;
    let mut done = true;
    {
        let mut history = txn.open_table(HISTORY)?;
        // Every probe with history has a latest value: look up each probe's old points
        // instead of walking the history that is kept.
        let mut probes: Vec<(String, String)> = Vec::new();
        for entry in txn.open_table(LATEST)?.iter()? {
            let (k, _) = entry?;
            let (d, p) = k.value();
            probes.push((d.to_owned(), p.to_owned()));
        }
        // Each block that holds an expired point: removed whole, or written again with the
        // points that stay.
        let mut doomed: Vec<(String, String, i64, Option<Vec<u8>>)> = Vec::new();
        'probes: for (d, p) in &probes {
            let range = (d.as_str(), p.as_str(), i64::MIN)..(d.as_str(), p.as_str(), before_ms);
            for entry in history.range(range)? {
                let (k, v) = entry?;
                let bucket = k.value().2;
                let (gone, kept) = if bucket.saturating_add(BUCKET_MS) <= before_ms {
                    match history_block::count(v.value()) {
                        Ok(n) => (n, None),
                        Err(e) => return Ok(Err(corrupt("proj.history")(e))),
                    }
                } else {
                    let mut points = match history_block::decode(v.value()) {
                        Ok(points) => points,
                        Err(e) => return Ok(Err(corrupt("proj.history")(e))),
                    };
                    let before = points.len();
                    points.retain(|q| q.event_time >= before_ms);
                    let gone = (before - points.len()) as u64;
                    if gone == 0 {
                        continue;
                    }
                    (
                        gone,
                        (!points.is_empty()).then(|| history_block::encode(&points)),
                    )
                };
                removed += gone;
                doomed.push((d.clone(), p.clone(), bucket, kept));
                if removed >= EXPIRE_POINTS_PER_TXN {
                    done = false;
                    break 'probes;
                }
            }
        }
        for (d, p, bucket, kept) in &doomed {
            let key = (d.as_str(), p.as_str(), *bucket);
            match kept {
                Some(block) => history.insert(key, block.as_slice())?,
                None => history.remove(key)?,
            };
        }
        let mut meta = txn.open_table(META)?;
        let old = meta.get(HISTORY_RETAINED_FROM)?.map(|g| g.value());
        if old.is_none_or(|o| o < before_ms) {
            meta.insert(HISTORY_RETAINED_FROM, before_ms)?;
        }
    }
    txn.commit()?;
    Ok(Ok((removed, done)))
}

/// The store's format version: the recorded one; for a store with no tables yet, the
/// current one, recorded now; for tables without a record, 1 (from before versions).
fn check_format(db: &Database) -> Result<i64, redb::Error> {
    {
        let txn = db.begin_read()?;
        match txn.open_table(META) {
            Ok(meta) => {
                if let Some(v) = meta.get(FORMAT_VERSION_KEY)? {
                    return Ok(v.value());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if txn.list_tables()?.next().is_some() {
            return Ok(1);
        }
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.open_table(META)?
        .insert(FORMAT_VERSION_KEY, FORMAT_VERSION)?;
    txn.commit()?;
    Ok(FORMAT_VERSION)
}

/// Entries and stored bytes of one table of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStats {
    /// The table's name (`proj.history`, …).
    pub table: String,
    /// Entries.
    pub entries: u64,
    /// Bytes of keys and values stored (redb's `stored_bytes`).
    pub stored_bytes: u64,
    /// Bytes of the table's B-tree pages beyond that (metadata and fragmentation).
    pub overhead_bytes: u64,
}

/// Statistics of every table in the store file at `path`, opened read-only: works while
/// another process (`emberline up`) writes it.
pub fn table_stats_read_only(path: &Path) -> Result<Vec<TableStats>, ProjectionError> {
    let fail = |e: redb::Error| ProjectionError::Storage {
        action: "reading table statistics",
        source: Box::new(e),
    };
    let db = Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open_read_only(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => ProjectionError::InUse {
                path: path.to_owned(),
            },
            redb::DatabaseError::RepairAborted => ProjectionError::Storage {
                action: "opening the projection store read-only",
                source: format!("{}: {NOT_CLOSED_CLEANLY}", path.display()).into(),
            },
            e => ProjectionError::Storage {
                action: "opening the projection store read-only",
                source: format!("{}: {e}", path.display()).into(),
            },
        })?;
    let txn = db.begin_read().map_err(|e| fail(e.into()))?;
    let mut out = Vec::new();
    let mut add = |table: &str, len: u64, stats: redb::TableStats| {
        out.push(TableStats {
            table: table.to_owned(),
            entries: len,
            stored_bytes: stats.stored_bytes(),
            overhead_bytes: stats.metadata_bytes() + stats.fragmented_bytes(),
        });
    };
    macro_rules! stat {
        ($def:expr) => {
            if let Ok(t) = txn.open_table($def) {
                let len = t.len().map_err(|e| fail(e.into()))?;
                let stats = t.stats().map_err(|e| fail(e.into()))?;
                add($def.name(), len, stats);
            }
        };
    }
    stat!(LATEST);
    stat!(HISTORY);
    stat!(STATE);
    stat!(DEVICES);
    stat!(COOKS);
    stat!(APPLIED);
    stat!(PREDICTIONS);
    stat!(ALERTS);
    stat!(RULES);
    stat!(META);
    Ok(out)
}
