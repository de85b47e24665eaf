//! Queries and `dump`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;

use super::Inner;
use super::codec::{self, day_of};
use crate::{
    AlertRecord, AlertRuleRecord, CookSession, DeviceInfo, DeviceSummary, HistoryPoint,
    LatestProbe, ProbePrediction, ProjectionError,
};

/// A `(key, value blob)` row.
type KeyValue = (String, Vec<u8>);

/// The embedded store's key of a prediction (and its listing order).
fn prediction_key(device: &str, probe: &str) -> String {
    format!("{device}/{probe}")
}

/// Cooks newest first (ties by id, descending), as the embedded store lists them.
fn sort_cooks(cooks: &mut [CookSession]) {
    cooks.sort_by(|a, b| (b.started_time, &b.cook_id).cmp(&(a.started_time, &a.cook_id)));
}

/// Alerts newest first (ties by id, descending), as the embedded store lists them.
fn sort_alerts(alerts: &mut [AlertRecord]) {
    alerts.sort_by(|a, b| (b.raised_time, &b.alert_id).cmp(&(a.raised_time, &a.alert_id)));
}

impl Inner {
    /// Decodes the value of each `(key, blob)` row of `statement`, in key order.
    async fn decoded_by_key<T: DeserializeOwned + Send>(
        &self,
        action: &'static str,
        table: &'static str,
        statement: &scylla::statement::prepared::PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow + Send + Sync,
    ) -> Result<Vec<T>, ProjectionError> {
        let mut rows: Vec<KeyValue> = self.rows(action, statement, values).await?;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.iter().map(|(_, v)| codec::decode(table, v)).collect()
    }

    /// The postcard value of the first row of a one-column `SELECT value ...`.
    async fn decoded_one<T: DeserializeOwned>(
        &self,
        action: &'static str,
        table: &'static str,
        statement: &scylla::statement::prepared::PreparedStatement,
        key: &str,
    ) -> Result<Option<T>, ProjectionError> {
        let row: Option<(Vec<u8>,)> = self.first_row(action, statement, (key,)).await?;
        row.map(|(v,)| codec::decode(table, &v)).transpose()
    }

    pub(super) async fn devices(&self) -> Result<Vec<DeviceSummary>, ProjectionError> {
        let mut out: BTreeMap<String, DeviceSummary> = BTreeMap::new();
        self.for_each_row(
            "listing devices",
            &self.statements.all_latest,
            (),
            |(device, _probe, cell): (String, String, Vec<u8>)| {
                let latest = codec::decode_latest(&cell)?;
                let summary = out.entry(device.clone()).or_insert(DeviceSummary {
                    device_id: device,
                    probes: 0,
                    last_event_time: latest.event_time,
                    last_received_time: latest.received_time,
                });
                summary.probes += 1;
                summary.last_event_time = summary.last_event_time.max(latest.event_time);
                summary.last_received_time = summary.last_received_time.max(latest.received_time);
                Ok(ControlFlow::Continue(()))
            },
        )
        .await?;
        Ok(out.into_values().collect())
    }

    pub(super) async fn device_infos(&self) -> Result<Vec<DeviceInfo>, ProjectionError> {
        self.decoded_by_key(
            "reading device descriptions",
            "devices",
            &self.statements.all_devices,
            (),
        )
        .await
    }

    pub(super) async fn device_info(
        &self,
        device_id: &str,
    ) -> Result<Option<DeviceInfo>, ProjectionError> {
        self.decoded_one(
            "reading a device description",
            "devices",
            &self.statements.device,
            device_id,
        )
        .await
    }

    pub(super) async fn cooks(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<CookSession>, ProjectionError> {
        const ACTION: &str = "listing cooks";
        let st = &self.statements;
        let mut cooks: Vec<CookSession> = match device_id {
            None => {
                self.decoded_by_key(ACTION, "cooks", &st.all_cooks, ())
                    .await?
            }
            Some(device) => {
                let rows: Vec<(Vec<u8>,)> =
                    self.rows(ACTION, &st.cooks_of_device, (device,)).await?;
                let mut cooks = Vec::with_capacity(rows.len());
                for (value,) in rows {
                    let cook: CookSession = codec::decode("cooks_by_device", &value)?;
                    if cook.device_id == device {
                        cooks.push(cook);
                    }
                }
                cooks
            }
        };
        sort_cooks(&mut cooks);
        Ok(cooks)
    }

    pub(super) async fn cook(&self, cook_id: &str) -> Result<Option<CookSession>, ProjectionError> {
        self.decoded_one("reading a cook", "cooks", &self.statements.cook, cook_id)
            .await
    }

    pub(super) async fn latest(
        &self,
        device_id: &str,
    ) -> Result<Vec<LatestProbe>, ProjectionError> {
        let mut rows: Vec<KeyValue> = self
            .rows(
                "reading latest values",
                &self.statements.latest_of_device,
                (device_id,),
            )
            .await?;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.iter()
            .map(|(_, cell)| codec::decode_latest(cell))
            .collect()
    }

    pub(super) async fn predictions(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<ProbePrediction>, ProjectionError> {
        const ACTION: &str = "listing predictions";
        let st = &self.statements;
        let rows: Vec<(String, String, Vec<u8>)> = match device_id {
            None => self.rows(ACTION, &st.all_predictions, ()).await?,
            Some(device) => {
                let rows: Vec<KeyValue> = self
                    .rows(ACTION, &st.predictions_of_device, (device,))
                    .await?;
                rows.into_iter()
                    .map(|(probe, value)| (device.to_owned(), probe, value))
                    .collect()
            }
        };
        let mut keyed = rows
            .iter()
            .map(|(d, p, v)| Ok((prediction_key(d, p), codec::decode("predictions", v)?)))
            .collect::<Result<Vec<(String, ProbePrediction)>, ProjectionError>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keyed.into_iter().map(|(_, p)| p).collect())
    }

    pub(super) async fn alerts(
        &self,
        device_id: Option<&str>,
        active_only: bool,
    ) -> Result<Vec<AlertRecord>, ProjectionError> {
        const ACTION: &str = "listing alerts";
        let st = &self.statements;
        let alerts: Vec<AlertRecord> = match device_id {
            None => {
                self.decoded_by_key(ACTION, "alerts", &st.all_alerts, ())
                    .await?
            }
            Some(device) => {
                self.decoded_by_key(ACTION, "alerts_by_device", &st.alerts_of_device, (device,))
                    .await?
            }
        };
        let mut alerts: Vec<AlertRecord> = alerts
            .into_iter()
            .filter(|a| device_id.is_none_or(|d| d == a.device_id))
            .filter(|a| !active_only || a.is_active())
            .collect();
        sort_alerts(&mut alerts);
        Ok(alerts)
    }

    pub(super) async fn alert(
        &self,
        alert_id: &str,
    ) -> Result<Option<AlertRecord>, ProjectionError> {
        self.decoded_one(
            "reading an alert",
            "alerts",
            &self.statements.alert,
            alert_id,
        )
        .await
    }

    pub(super) async fn alert_rules(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<AlertRuleRecord>, ProjectionError> {
        const ACTION: &str = "listing alert rules";
        let st = &self.statements;
        let rules: Vec<AlertRuleRecord> = match device_id {
            None => {
                self.decoded_by_key(ACTION, "alert_rules", &st.all_rules, ())
                    .await?
            }
            Some(device) => {
                self.decoded_by_key(
                    ACTION,
                    "alert_rules_by_device",
                    &st.rules_of_device,
                    (device,),
                )
                .await?
            }
        };
        Ok(rules
            .into_iter()
            .filter(|r| device_id.is_none_or(|d| d == r.device_id))
            .collect())
    }

    pub(super) async fn history(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, ProjectionError> {
        const ACTION: &str = "reading history";
        let mut out = Vec::new();
        if from_ms >= to_ms || limit == 0 {
            return Ok(out);
        }
        let st = &self.statements;
        let days: Vec<(i64,)> = self
            .rows(
                ACTION,
                &st.history_days,
                (device_id, probe_id, day_of(from_ms), day_of(to_ms - 1)),
            )
            .await?;
        for (day,) in days {
            let remaining = limit - out.len();
            if remaining == 0 {
                break;
            }
            let cql_limit = i32::try_from(remaining).unwrap_or(i32::MAX);
            self.for_each_row(
                ACTION,
                &st.history_range,
                (device_id, probe_id, day, from_ms, to_ms, cql_limit),
                |(event_time, received_time, temperature_c): (i64, Option<i64>, Option<f64>)| {
                    out.push(HistoryPoint {
                        device_id: device_id.to_owned(),
                        probe_id: probe_id.to_owned(),
                        event_time,
                        received_time: received_time.unwrap_or_default(),
                        temperature_c,
                    });
                    Ok(if out.len() >= limit {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    })
                },
            )
            .await?;
        }
        Ok(out)
    }

    pub(super) async fn applied_positions(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, ProjectionError> {
        let rows: Vec<(i32, Option<i64>)> = self
            .rows(
                "reading applied positions",
                &self.statements.applied_of_topic,
                (topic,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(p, next)| {
                Some((codec::partition_from_cql(p), codec::offset_from_cql(next?)))
            })
            .collect())
    }

    pub(super) async fn state(&self, key: &str) -> Result<Option<Vec<u8>>, ProjectionError> {
        let row: Option<(Option<Vec<u8>>,)> = self
            .first_row("reading processor state", &self.statements.state, (key,))
            .await?;
        Ok(row.and_then(|(v,)| v))
    }

    /// Every entry in the embedded store's shape: its table names, key spellings, value
    /// bytes and order.
    pub(super) async fn dump(&self) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, ProjectionError> {
        const ACTION: &str = "dumping";
        let st = &self.statements;
        let mut out = Vec::new();

        let mut latest: Vec<(String, String, Vec<u8>)> =
            self.rows(ACTION, &st.all_latest, ()).await?;
        latest.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (device, probe, cell) in latest {
            let (body, _) = codec::latest_body(&cell)?;
            out.push((
                "proj.latest".to_owned(),
                format!("{device}/{probe}").into_bytes(),
                body.to_vec(),
            ));
        }

        type HistoryScan = (String, String, i64, Option<i64>, Option<f64>);
        let mut history: Vec<HistoryScan> = self.rows(ACTION, &st.all_history, ()).await?;
        history.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        for (device, probe, time, received, temperature) in history {
            out.push((
                "proj.history".to_owned(),
                format!("{device}/{probe}/{time}").into_bytes(),
                codec::history_value(received.unwrap_or_default(), temperature)?,
            ));
        }

        let mut predictions: Vec<(String, String, Vec<u8>)> =
            self.rows(ACTION, &st.all_predictions, ()).await?;
        let predictions: Vec<KeyValue> = predictions
            .drain(..)
            .map(|(d, p, v)| (prediction_key(&d, &p), v))
            .collect();
        let tables = [
            ("proj.state", self.rows(ACTION, &st.all_state, ()).await?),
            (
                "proj.devices",
                self.rows(ACTION, &st.all_devices, ()).await?,
            ),
            ("proj.cooks", self.rows(ACTION, &st.all_cooks, ()).await?),
            ("proj.predictions", predictions),
            ("proj.alerts", self.rows(ACTION, &st.all_alerts, ()).await?),
            (
                "proj.alert_rules",
                self.rows(ACTION, &st.all_rules, ()).await?,
            ),
        ];
        for (table, mut rows) in tables {
            rows.sort_by(|a: &KeyValue, b: &KeyValue| a.0.cmp(&b.0));
            out.extend(
                rows.into_iter()
                    .map(|(k, v)| (table.to_owned(), k.into_bytes(), v)),
            );
        }

        let mut applied: Vec<(String, i32, Option<i64>)> =
            self.rows(ACTION, &st.all_applied, ()).await?;
        applied.sort_by_key(|(topic, p, _)| (topic.clone(), codec::partition_from_cql(*p)));
        for (topic, p, next) in applied {
            let Some(next) = next else { continue };
            out.push((
                "proj.applied".to_owned(),
                format!("{topic}/{}", codec::partition_from_cql(p)).into_bytes(),
                codec::offset_from_cql(next).to_le_bytes().to_vec(),
            ));
        }
        Ok(out)
    }
}
