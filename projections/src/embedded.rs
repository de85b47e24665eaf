//! The embedded projection store: redb on local disk, beside the embedded log.
//!
//! Tables:
//! * `proj.latest`: (device, probe) → latest reading and trend;
//! * `proj.history`: (device, probe, event time) → (receive time, temperature);
//! * `proj.state`: key → processor state;
//! * `proj.devices`: device → [`DeviceInfo`] (names, health, targets, removal);
//! * `proj.cooks`: cook id → [`CookSession`];
//! * `proj.predictions`: `device/probe` → the probe's latest [`ProbePrediction`];
//! * `proj.alerts`: alert id → [`AlertRecord`] (one per alert episode);
//! * `proj.alert_rules`: rule id → [`AlertRuleRecord`];
//! * `proj.applied`: (topic, partition) → next offset covered.
//!
//! Values are postcard-encoded. One [`ProjectionBatch`] is one fsynced write transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::{
    AlertRecord, AlertRuleRecord, CookSession, DeviceInfo, DeviceSummary, HistoryPoint,
    LatestProbe, ProbePrediction, ProjectionBatch, ProjectionError, ProjectionStore,
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

/// History value: (received time, temperature).
type HistoryValue = (i64, Option<f64>);

/// A [`ProjectionStore`] in one redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn storage(action: &'static str) -> impl Fn(redb::Error) -> ProjectionError {
    move |e| ProjectionError::Storage {
        action,
        source: Box::new(e),
    }
}

fn corrupt(table: &'static str) -> impl Fn(postcard::Error) -> ProjectionError {
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
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => ProjectionError::InUse {
                    path: path.to_owned(),
                },
                e => ProjectionError::Storage {
                    action: "opening the projection store",
                    source: format!("{}: {e}", path.display()).into(),
                },
            })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The redb database, for taking backups of it (`emberline backup`).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Database) -> ReadResult<T> + Send + 'static,
    ) -> Result<T, ProjectionError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
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

    fn apply_blocking(db: &Database, batch: &ProjectionBatch) -> ReadResult<()> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
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
            let mut history = txn.open_table(HISTORY)?;
            for point in &batch.history {
                let value: HistoryValue = (point.received_time, point.temperature_c);
                let bytes = match postcard::to_allocvec(&value) {
                    Ok(b) => b,
                    Err(e) => return Ok(Err(corrupt("proj.history")(e))),
                };
                history.insert(
                    (
                        point.device_id.as_str(),
                        point.probe_id.as_str(),
                        point.event_time,
                    ),
                    bytes.as_slice(),
                )?;
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
            if let Err(e) = put_all(&txn, PREDICTIONS, "proj.predictions", predictions)? {
                return Ok(Err(e));
            }
            let alerts = batch.alerts.iter().map(|a| (a.alert_id.clone(), a));
            if let Err(e) = put_all(&txn, ALERTS, "proj.alerts", alerts)? {
                return Ok(Err(e));
            }
            let rules = batch.alert_rules.iter().map(|r| (r.rule_id.clone(), r));
            if let Err(e) = put_all(&txn, RULES, "proj.alert_rules", rules)? {
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
        txn.commit()?;
        Ok(Ok(()))
    }
}

#[async_trait]
impl ProjectionStore for EmbeddedStore {
    async fn apply(&self, batch: ProjectionBatch) -> Result<(), ProjectionError> {
        self.blocking("applying a batch", move |db| {
            Self::apply_blocking(db, &batch)
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
            let txn = db.begin_read()?;
            let table = read_table!(txn, HISTORY, Vec::new());
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(Ok(out));
            }
            let (d, p) = (device.as_str(), probe.as_str());
            for entry in table.range((d, p, from_ms)..(d, p, to_ms))? {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = entry?;
                let (received_time, temperature_c): HistoryValue =
                    match postcard::from_bytes(value.value()) {
                        Ok(v) => v,
                        Err(e) => return Ok(Err(corrupt("proj.history")(e))),
                    };
                out.push(HistoryPoint {
                    device_id: device.clone(),
                    probe_id: probe.clone(),
                    event_time: key.value().2,
                    received_time,
                    temperature_c,
                });
            }
            Ok(Ok(out))
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
                    let (d, p, ts) = k.value();
                    out.push((
                        HISTORY.name().to_owned(),
                        format!("{d}/{p}/{ts}").into_bytes(),
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
