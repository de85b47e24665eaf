//! Every statement the store runs, prepared once per session.
//!
//! Names are keyspace-qualified so the prepared metadata carries the partition key and the
//! driver routes each request to a replica that owns it (token awareness). Every statement
//! is marked idempotent: all writes are keyed upserts or deletes, so the driver may retry
//! them after a timeout.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::db;
use crate::ProjectionError;

/// The prepared statements of one keyspace.
pub(super) struct Statements {
    // latest
    pub(super) insert_latest: PreparedStatement,
    pub(super) latest_of_device: PreparedStatement,
    pub(super) all_latest: PreparedStatement,
    // history
    pub(super) insert_history: PreparedStatement,
    pub(super) insert_history_day: PreparedStatement,
    pub(super) history_days: PreparedStatement,
    pub(super) history_range: PreparedStatement,
    pub(super) all_history: PreparedStatement,
    // processor state
    pub(super) insert_state: PreparedStatement,
    pub(super) state: PreparedStatement,
    pub(super) all_state: PreparedStatement,
    // devices
    pub(super) insert_device: PreparedStatement,
    pub(super) device: PreparedStatement,
    pub(super) all_devices: PreparedStatement,
    // cooks
    pub(super) insert_cook: PreparedStatement,
    pub(super) insert_cook_by_device: PreparedStatement,
    pub(super) delete_cook_by_device: PreparedStatement,
    pub(super) cook: PreparedStatement,
    pub(super) cook_device: PreparedStatement,
    pub(super) cooks_of_device: PreparedStatement,
    pub(super) all_cooks: PreparedStatement,
    // predictions
    pub(super) insert_prediction: PreparedStatement,
    pub(super) predictions_of_device: PreparedStatement,
    pub(super) all_predictions: PreparedStatement,
    // alerts
    pub(super) insert_alert: PreparedStatement,
    pub(super) insert_alert_by_device: PreparedStatement,
    pub(super) delete_alert_by_device: PreparedStatement,
    pub(super) alert: PreparedStatement,
    pub(super) alert_device: PreparedStatement,
    pub(super) alerts_of_device: PreparedStatement,
    pub(super) all_alerts: PreparedStatement,
    // alert rules
    pub(super) insert_rule: PreparedStatement,
    pub(super) insert_rule_by_device: PreparedStatement,
    pub(super) delete_rule: PreparedStatement,
    pub(super) delete_rule_by_device: PreparedStatement,
    pub(super) rule_device: PreparedStatement,
    pub(super) rules_of_device: PreparedStatement,
    pub(super) all_rules: PreparedStatement,
    // applied positions
    pub(super) insert_applied: PreparedStatement,
    pub(super) applied_of_topic: PreparedStatement,
    pub(super) applied_write_times: PreparedStatement,
    pub(super) all_applied: PreparedStatement,
}

impl Statements {
    /// Prepares every statement against `keyspace`.
    pub(super) async fn prepare(
        session: &Session,
        keyspace: &str,
    ) -> Result<Self, ProjectionError> {
        let p = Preparer {
            session,
            ks: keyspace,
        };
        Ok(Self {
            insert_latest: p
                .prepare(
                    "INSERT INTO {ks}.latest (device_id, probe_id, value) VALUES (?, ?, ?) \
                     USING TIMESTAMP ?",
                )
                .await?,
            latest_of_device: p
                .prepare("SELECT probe_id, value FROM {ks}.latest WHERE device_id = ?")
                .await?,
            all_latest: p
                .prepare("SELECT device_id, probe_id, value FROM {ks}.latest")
                .await?,

            insert_history: p
                .prepare(
                    "INSERT INTO {ks}.history \
                     (device_id, probe_id, day, event_time, received_time, temperature_c) \
                     VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
                )
                .await?,
            insert_history_day: p
                .prepare(
                    "INSERT INTO {ks}.history_days (device_id, probe_id, day) VALUES (?, ?, ?) \
                     USING TTL ?",
                )
                .await?,
            history_days: p
                .prepare(
                    "SELECT day FROM {ks}.history_days \
                     WHERE device_id = ? AND probe_id = ? AND day >= ? AND day <= ?",
                )
                .await?,
            history_range: p
                .prepare(
                    "SELECT event_time, received_time, temperature_c FROM {ks}.history \
                     WHERE device_id = ? AND probe_id = ? AND day = ? \
                     AND event_time >= ? AND event_time < ? LIMIT ?",
                )
                .await?,
            all_history: p
                .prepare(
                    "SELECT device_id, probe_id, event_time, received_time, temperature_c \
                     FROM {ks}.history",
                )
                .await?,

            insert_state: p
                .prepare("INSERT INTO {ks}.state (state_key, value) VALUES (?, ?)")
                .await?,
            state: p
                .prepare("SELECT value FROM {ks}.state WHERE state_key = ?")
                .await?,
            all_state: p.prepare("SELECT state_key, value FROM {ks}.state").await?,

            insert_device: p
                .prepare("INSERT INTO {ks}.devices (device_id, value) VALUES (?, ?)")
                .await?,
            device: p
                .prepare("SELECT value FROM {ks}.devices WHERE device_id = ?")
                .await?,
            all_devices: p
                .prepare("SELECT device_id, value FROM {ks}.devices")
                .await?,

            insert_cook: p
                .prepare("INSERT INTO {ks}.cooks (cook_id, device_id, value) VALUES (?, ?, ?)")
                .await?,
            insert_cook_by_device: p
                .prepare(
                    "INSERT INTO {ks}.cooks_by_device (device_id, cook_id, value) \
                     VALUES (?, ?, ?)",
                )
                .await?,
            delete_cook_by_device: p
                .prepare("DELETE FROM {ks}.cooks_by_device WHERE device_id = ? AND cook_id = ?")
                .await?,
            cook: p
                .prepare("SELECT value FROM {ks}.cooks WHERE cook_id = ?")
                .await?,
            cook_device: p
                .prepare("SELECT device_id FROM {ks}.cooks WHERE cook_id = ?")
                .await?,
            cooks_of_device: p
                .prepare("SELECT value FROM {ks}.cooks_by_device WHERE device_id = ?")
                .await?,
            all_cooks: p.prepare("SELECT cook_id, value FROM {ks}.cooks").await?,

            insert_prediction: p
                .prepare(
                    "INSERT INTO {ks}.predictions (device_id, probe_id, value) VALUES (?, ?, ?)",
                )
                .await?,
            predictions_of_device: p
                .prepare("SELECT probe_id, value FROM {ks}.predictions WHERE device_id = ?")
                .await?,
            all_predictions: p
                .prepare("SELECT device_id, probe_id, value FROM {ks}.predictions")
                .await?,

            insert_alert: p
                .prepare("INSERT INTO {ks}.alerts (alert_id, device_id, value) VALUES (?, ?, ?)")
                .await?,
            insert_alert_by_device: p
                .prepare(
                    "INSERT INTO {ks}.alerts_by_device (device_id, alert_id, value) \
                     VALUES (?, ?, ?)",
                )
                .await?,
            delete_alert_by_device: p
                .prepare("DELETE FROM {ks}.alerts_by_device WHERE device_id = ? AND alert_id = ?")
                .await?,
            alert: p
                .prepare("SELECT value FROM {ks}.alerts WHERE alert_id = ?")
                .await?,
            alert_device: p
                .prepare("SELECT device_id FROM {ks}.alerts WHERE alert_id = ?")
                .await?,
            alerts_of_device: p
                .prepare("SELECT alert_id, value FROM {ks}.alerts_by_device WHERE device_id = ?")
                .await?,
            all_alerts: p.prepare("SELECT alert_id, value FROM {ks}.alerts").await?,

            insert_rule: p
                .prepare(
                    "INSERT INTO {ks}.alert_rules (rule_id, device_id, value) VALUES (?, ?, ?)",
                )
                .await?,
            insert_rule_by_device: p
                .prepare(
                    "INSERT INTO {ks}.alert_rules_by_device (device_id, rule_id, value) \
                     VALUES (?, ?, ?)",
                )
                .await?,
            delete_rule: p
                .prepare("DELETE FROM {ks}.alert_rules WHERE rule_id = ?")
                .await?,
            delete_rule_by_device: p
                .prepare(
                    "DELETE FROM {ks}.alert_rules_by_device WHERE device_id = ? AND rule_id = ?",
                )
                .await?,
            rule_device: p
                .prepare("SELECT device_id FROM {ks}.alert_rules WHERE rule_id = ?")
                .await?,
            rules_of_device: p
                .prepare(
                    "SELECT rule_id, value FROM {ks}.alert_rules_by_device WHERE device_id = ?",
                )
                .await?,
            all_rules: p
                .prepare("SELECT rule_id, value FROM {ks}.alert_rules")
                .await?,

            insert_applied: p
                .prepare(
                    "INSERT INTO {ks}.applied (topic, partition_id, next_offset) VALUES (?, ?, ?)",
                )
                .await?,
            applied_of_topic: p
                .prepare("SELECT partition_id, next_offset FROM {ks}.applied WHERE topic = ?")
                .await?,
            applied_write_times: p
                .prepare(
                    "SELECT partition_id, WRITETIME(next_offset) FROM {ks}.applied \
                     WHERE topic = ?",
                )
                .await?,
            all_applied: p
                .prepare("SELECT topic, partition_id, next_offset FROM {ks}.applied")
                .await?,
        })
    }
}

struct Preparer<'a> {
    session: &'a Session,
    ks: &'a str,
}

impl Preparer<'_> {
    /// Prepares `template` with `{ks}` replaced by the keyspace.
    async fn prepare(&self, template: &str) -> Result<PreparedStatement, ProjectionError> {
        let text = template.replace("{ks}", self.ks);
        let mut statement = self
            .session
            .prepare(text)
            .await
            .map_err(db("preparing statements"))?;
        statement.set_is_idempotent(true);
        Ok(statement)
    }
}
