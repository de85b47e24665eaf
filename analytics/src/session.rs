//! [`Analytics`]: a DataFusion session with every table of the log and the views over them.

use std::sync::Arc;

use datafusion::arrow::array::{Array as _, AsArray as _};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{cast, col, lit};
use emberline_log::EventLog;
use emberline_schemas::EventCodec;

use crate::AnalyticsError;
use crate::archive::Archive;
use crate::columns::UTC;
use crate::provider::LogTable;
use crate::tables::{DEVICE_COLUMN, TABLES};

/// `cooks`: one row per cook, from its `CookStarted` and (once it ended) `CookEnded`
/// commands, with what its predictions saw. `targets_c` are the targets the cook started
/// with (JSON, probe → °C); later `TargetSet` commands are in `cook_commands`.
/// `duration_min` is null while a cook runs. `stall_min` is, for the probe that stalled
/// longest, the minutes from its first prediction flagged as in the stall to its last (0 when
/// no prediction was; null when the cook has no predictions); `max_pit_c` is the highest
/// smoothed pit temperature its predictions carried.
const COOKS_VIEW: &str = "CREATE VIEW cooks AS
SELECT s.tenant, s.device_id, s.cook_id, s.what, s.meat, s.weight_kg,
       s.event_time AS started, e.ended, s.targets_c, s.pit_min_c, s.pit_max_c,
       (CAST(e.ended AS BIGINT) - CAST(s.event_time AS BIGINT)) / 60000.0 AS duration_min,
       p.stall_min, p.max_pit_c
FROM cook_commands s
LEFT JOIN (
    SELECT device_id, cook_id, max(event_time) AS ended
    FROM cook_commands WHERE event_type = 'CookEnded'
    GROUP BY device_id, cook_id
) e ON s.device_id = e.device_id AND s.cook_id = e.cook_id
LEFT JOIN (
    SELECT device_id, cook_id, max(stall_min) AS stall_min, max(max_pit_c) AS max_pit_c
    FROM (
        SELECT device_id, cook_id, probe_id, max(pit_c) AS max_pit_c,
               coalesce((CAST(max(CASE WHEN stall THEN event_time END) AS BIGINT)
                         - CAST(min(CASE WHEN stall THEN event_time END) AS BIGINT)) / 60000.0,
                        0.0) AS stall_min
        FROM predictions GROUP BY device_id, cook_id, probe_id
    ) GROUP BY device_id, cook_id
) p ON s.device_id = p.device_id AND s.cook_id = p.cook_id
WHERE s.event_type = 'CookStarted'";

/// `cook_readings`: every reading of a cook's device from its start to its end (to now while
/// it runs), with the cook and the minutes since it started.
const COOK_READINGS_VIEW: &str = "CREATE VIEW cook_readings AS
SELECT c.tenant, c.device_id, c.cook_id, c.what, c.meat, r.probe_id, r.event_time,
       (CAST(r.event_time AS BIGINT) - CAST(c.started AS BIGINT)) / 60000.0 AS minutes,
       r.temperature_c
FROM cooks c
JOIN probe_readings r ON r.device_id = c.device_id
WHERE r.event_time >= c.started AND (c.ended IS NULL OR r.event_time <= c.ended)";

/// `alerts_history`: one row per alert, from its first raise: how often it was raised again
/// for want of an acknowledgement (`repeats`), when it was first acknowledged and when it
/// cleared (null while it has not), and for how long it was up.
const ALERTS_HISTORY_VIEW: &str = "CREATE VIEW alerts_history AS
SELECT r.tenant, r.device_id, r.alert_id, r.rule_id, r.kind, r.probe_id, r.cook_id,
       r.event_time AS raised, r.value, r.threshold, r.message, n.repeats,
       a.acknowledged, c.cleared, c.reason AS cleared_reason,
       (CAST(c.cleared AS BIGINT) - CAST(r.event_time AS BIGINT)) / 60000.0 AS duration_min
FROM alerts r
JOIN (
    SELECT device_id, alert_id, max(coalesce(repeat, 0)) AS repeats
    FROM alerts WHERE event_type = 'AlertRaised' GROUP BY device_id, alert_id
) n ON n.device_id = r.device_id AND n.alert_id = r.alert_id
LEFT JOIN (
    SELECT device_id, alert_id, min(event_time) AS acknowledged
    FROM cook_commands WHERE event_type = 'AlertAcknowledged' GROUP BY device_id, alert_id
) a ON a.device_id = r.device_id AND a.alert_id = r.alert_id
LEFT JOIN (
    SELECT device_id, alert_id, min(event_time) AS cleared, min(reason) AS reason
    FROM alerts WHERE event_type = 'AlertCleared' GROUP BY device_id, alert_id
) c ON c.device_id = r.device_id AND c.alert_id = r.alert_id
WHERE r.event_type = 'AlertRaised' AND coalesce(r.repeat, 0) = 0";

/// The views, by name, with the statement that creates each.
pub const VIEWS: [(&str, &str); 3] = [
    ("cooks", COOKS_VIEW),
    ("cook_readings", COOK_READINGS_VIEW),
    ("alerts_history", ALERTS_HISTORY_VIEW),
];

/// A query session over the log: every table of [`TABLES`](crate::TABLES) and the
/// [`VIEWS`].
pub struct Analytics {
    ctx: SessionContext,
}

impl Analytics {
    /// A session over `log`, decoding with `codec`, with DataFusion's default settings
    /// (as many target partitions as cores).
    pub async fn new(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
    ) -> Result<Self, AnalyticsError> {
        Self::with_config(log, codec, None, SessionConfig::new()).await
    }

    /// A session with `config`, reading `archive` too when given.
    pub async fn with_config(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        archive: Option<Arc<Archive>>,
        config: SessionConfig,
    ) -> Result<Self, AnalyticsError> {
        let ctx = SessionContext::new_with_config(config);
        Self::build(log, codec, archive, ctx, None).await
    }

    /// A session that sees only `tenant`'s devices (every table and view), reading
    /// `archive` too when given, with `config` and `runtime` (its memory pool bounds what a
    /// query may hold).
    pub async fn of_tenant(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        archive: Option<Arc<Archive>>,
        config: SessionConfig,
        runtime: Arc<RuntimeEnv>,
        tenant: &str,
    ) -> Result<Self, AnalyticsError> {
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        Self::build(log, codec, archive, ctx, Some(tenant)).await
    }

    async fn build(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        archive: Option<Arc<Archive>>,
        ctx: SessionContext,
        tenant: Option<&str>,
    ) -> Result<Self, AnalyticsError> {
        for def in &TABLES {
            let mut table = LogTable::new(def, log.clone(), codec.clone());
            if let Some(tenant) = tenant {
                table = table.of_tenant(tenant);
            }
            if let Some(archive) = &archive {
                table = table.with_archive(archive.clone());
            }
            ctx.register_table(def.name, Arc::new(table))?;
        }
        for (_, statement) in VIEWS {
            ctx.sql(statement).await?;
        }
        Ok(Self { ctx })
    }

    /// The DataFusion session, for callers that build plans themselves.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans a read-only query: `SELECT`, `WITH`, `EXPLAIN`, `SHOW`/`DESCRIBE`. Statements
    /// that would change the session or write files (`CREATE`, `COPY`, `INSERT`, `SET`) are
    /// refused.
    pub async fn query(&self, sql: &str) -> Result<DataFrame, AnalyticsError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        Ok(self.ctx.sql_with_options(sql, options).await?)
    }

    /// The readings of `device` (its qualified id) with `from <= event_time < to` (epoch
    /// ms; either bound optional), in log order when the session has one target partition.
    pub async fn readings(
        &self,
        device: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<DataFrame, AnalyticsError> {
        self.device_rows("probe_readings", device, from_ms, to_ms)
            .await
    }

    /// The rows of `table` for `device` (its qualified id) with `from <= event_time < to`
    /// (epoch ms; either bound optional), in log order when the session has one target
    /// partition. Both filters are pushed down to what is read.
    pub async fn device_rows(
        &self,
        table: &str,
        device: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<DataFrame, AnalyticsError> {
        let time = |ms: i64| {
            lit(ScalarValue::TimestampMillisecond(
                Some(ms),
                Some(UTC.into()),
            ))
        };
        let mut df = self
            .ctx
            .table(table)
            .await?
            .filter(col(DEVICE_COLUMN).eq(lit(device)))?;
        if let Some(from) = from_ms {
            df = df.filter(col("event_time").gt_eq(time(from)))?;
        }
        if let Some(to) = to_ms {
            df = df.filter(col("event_time").lt(time(to)))?;
        }
        Ok(df)
    }

    /// Where and when cook `cook_id` ran, from the `cooks` view; `device` (qualified)
    /// narrows it when several devices have a cook of that id.
    pub async fn cook_span(
        &self,
        cook_id: &str,
        device: Option<&str>,
    ) -> Result<CookSpan, AnalyticsError> {
        let mut df = self
            .ctx
            .table("cooks")
            .await?
            .filter(col("cook_id").eq(lit(cook_id)))?;
        if let Some(device) = device {
            df = df.filter(col(DEVICE_COLUMN).eq(lit(device)))?;
        }
        let df = df.select(vec![
            col(DEVICE_COLUMN),
            cast(col("started"), DataType::Int64),
            cast(col("ended"), DataType::Int64),
        ])?;
        let mut spans = Vec::new();
        for batch in df.collect().await? {
            let devices = batch.column(0).as_string::<i32>();
            let started = batch.column(1).as_primitive::<Int64Type>();
            let ended = batch.column(2).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                spans.push(CookSpan {
                    device: devices.value(i).to_owned(),
                    started_ms: started.value(i),
                    ended_ms: ended.is_valid(i).then(|| ended.value(i)),
                });
            }
        }
        match spans.len() {
            0 => Err(AnalyticsError::NoSuchCook {
                cook: cook_id.to_owned(),
            }),
            1 => Ok(spans.remove(0)),
            _ => Err(AnalyticsError::AmbiguousCook {
                cook: cook_id.to_owned(),
                devices: spans
                    .iter()
                    .map(|s| s.device.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Where and when a cook ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookSpan {
    /// Its device (qualified id).
    pub device: String,
    /// Its start, epoch ms.
    pub started_ms: i64,
    /// Its end, epoch ms; `None` while it runs.
    pub ended_ms: Option<i64>,
}
