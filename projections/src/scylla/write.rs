//! `apply`: facts first, then one `LOGGED` commit batch (see the module docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use scylla::policies::timestamp_generator::TimestampGenerator;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::statement::prepared::PreparedStatement;
use tokio::task::JoinSet;

use super::codec::{self, day_of};
use super::{Inner, db};
use crate::{HistoryPoint, LatestProbe, ProjectionBatch, ProjectionError};

/// Fact writes in flight at once per `apply`.
const MAX_IN_FLIGHT: usize = 32;

/// History rows per `UNLOGGED` single-partition batch (about 100 bytes each).
const HISTORY_CHUNK: usize = 256;

/// One row of `history`: device, probe, day, event time, receive time, temperature, TTL.
type HistoryRow = (String, String, i64, i64, i64, Option<f64>, i32);

/// A row of values for the commit batch.
type Row = Box<dyn SerializeRow + Send + Sync>;

/// A write of step 1; each is idempotent on its own.
enum Fact {
    /// One probe's latest value, at its event time as write timestamp.
    Latest {
        device: String,
        probe: String,
        cell: Vec<u8>,
        timestamp: i64,
    },
    /// History rows of one partition.
    History(Vec<HistoryRow>),
    /// That a history partition exists.
    Day {
        device: String,
        probe: String,
        day: i64,
    },
}

/// Writes `batch`: its facts, then its commit batch.
pub(super) async fn apply(
    inner: &Arc<Inner>,
    batch: ProjectionBatch,
) -> Result<(), ProjectionError> {
    // Encode and look up everything before writing anything.
    let facts = facts(&batch, inner.history_ttl)?;
    let commit = commit(inner, &batch).await?;
    write_facts(inner, facts).await?;
    commit.run(inner).await
}

/// Step 1 of `batch`, coalesced: one latest write per probe (the superseding value, the
/// later one on ties, as the embedded store keeps), one history row per (probe, event time)
/// (the last one).
fn facts(batch: &ProjectionBatch, ttl: i32) -> Result<Vec<Fact>, ProjectionError> {
    let mut out = Vec::new();
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
    for ((device, probe), value) in newest {
        out.push(Fact::Latest {
            device: device.to_owned(),
            probe: probe.to_owned(),
            cell: codec::encode_latest(value)?,
            timestamp: codec::latest_write_timestamp(value.event_time),
        });
    }
    let mut points: BTreeMap<(&str, &str, i64), &HistoryPoint> = BTreeMap::new();
    for point in &batch.history {
        points.insert(
            (
                point.device_id.as_str(),
                point.probe_id.as_str(),
                point.event_time,
            ),
            point,
        );
    }
    let mut partitions: BTreeMap<(&str, &str, i64), Vec<HistoryRow>> = BTreeMap::new();
    for ((device, probe, time), point) in points {
        let day = day_of(time);
        partitions.entry((device, probe, day)).or_default().push((
            device.to_owned(),
            probe.to_owned(),
            day,
            time,
            point.received_time,
            point.temperature_c,
            ttl,
        ));
    }
    let days: BTreeSet<(&str, &str, i64)> = partitions.keys().copied().collect();
    for mut rows in partitions.into_values() {
        while rows.len() > HISTORY_CHUNK {
            let rest = rows.split_off(HISTORY_CHUNK);
            out.push(Fact::History(std::mem::replace(&mut rows, rest)));
        }
        out.push(Fact::History(rows));
    }
    for (device, probe, day) in days {
        out.push(Fact::Day {
            device: device.to_owned(),
            probe: probe.to_owned(),
            day,
        });
    }
    Ok(out)
}

/// Runs the facts, at most [`MAX_IN_FLIGHT`] at once; the first failure fails the batch
/// (what was written stays: it is rewritten identically on retry).
async fn write_facts(inner: &Arc<Inner>, facts: Vec<Fact>) -> Result<(), ProjectionError> {
    let mut tasks: JoinSet<Result<(), ProjectionError>> = JoinSet::new();
    for fact in facts {
        if tasks.len() >= MAX_IN_FLIGHT {
            join_one(&mut tasks).await?;
        }
        let inner = inner.clone();
        tasks.spawn(async move { inner.write_fact(fact).await });
    }
    while !tasks.is_empty() {
        join_one(&mut tasks).await?;
    }
    Ok(())
}

async fn join_one(tasks: &mut JoinSet<Result<(), ProjectionError>>) -> Result<(), ProjectionError> {
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(ProjectionError::Task(e.to_string())),
        None => Ok(()),
    }
}

impl Inner {
    async fn write_fact(&self, fact: Fact) -> Result<(), ProjectionError> {
        const ACTION: &str = "writing history and latest values";
        let st = &self.statements;
        match fact {
            Fact::Latest {
                device,
                probe,
                cell,
                timestamp,
            } => {
                self.session
                    .execute_unpaged(&st.insert_latest, (device, probe, cell, timestamp))
                    .await
                    .map_err(db(ACTION))?;
            }
            Fact::History(rows) => {
                let statements = std::iter::repeat_n(&st.insert_history, rows.len())
                    .map(|s| BatchStatement::from(s.clone()))
                    .collect();
                let mut batch = Batch::new_with_statements(BatchType::Unlogged, statements);
                batch.set_is_idempotent(true);
                self.session
                    .batch(&batch, &rows)
                    .await
                    .map_err(db(ACTION))?;
            }
            Fact::Day { device, probe, day } => {
                self.session
                    .execute_unpaged(
                        &st.insert_history_day,
                        (device, probe, day, self.history_ttl),
                    )
                    .await
                    .map_err(db(ACTION))?;
            }
        }
        Ok(())
    }

    /// A timestamp for a commit covering `applied`: from the clock, and greater than the write
    /// time of every stored position it replaces (whichever process wrote it).
    async fn commit_timestamp(
        &self,
        applied: &[(String, u32, u64)],
    ) -> Result<i64, ProjectionError> {
        let mut partitions: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for (topic, partition, _) in applied {
            partitions.entry(topic).or_default().insert(*partition);
        }
        let mut floor = i64::MIN;
        for (topic, covered) in partitions {
            let rows: Vec<(i32, Option<i64>)> = self
                .rows(
                    "reading the write times of applied positions",
                    &self.statements.applied_write_times,
                    (topic,),
                )
                .await?;
            for (partition, written) in rows {
                if let Some(written) = written
                    && covered.contains(&codec::partition_from_cql(partition))
                {
                    floor = floor.max(written);
                }
            }
        }
        Ok(later_timestamp(self.clock.next_timestamp(), floor))
    }

    /// The device an entity is stored under, from a `SELECT device_id ... WHERE id = ?`.
    async fn stored_device(
        &self,
        statement: &PreparedStatement,
        id: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let row: Option<(Option<String>,)> = self
            .first_row("reading the device of an entity", statement, (id,))
            .await?;
        Ok(row.and_then(|(device,)| device))
    }
}

/// Step 2: the rows a processor reads back, and the positions, in one `LOGGED` batch.
#[derive(Default)]
struct Commit {
    statements: Vec<BatchStatement>,
    values: Vec<Row>,
    /// Write timestamp of every row, microseconds.
    timestamp: i64,
}

impl Commit {
    fn push(
        &mut self,
        statement: &PreparedStatement,
        row: impl SerializeRow + Send + Sync + 'static,
    ) {
        self.statements.push(statement.clone().into());
        self.values.push(Box::new(row));
    }

    async fn run(self, inner: &Inner) -> Result<(), ProjectionError> {
        if self.statements.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new_with_statements(BatchType::Logged, self.statements);
        batch.set_is_idempotent(true);
        batch.set_timestamp(Some(self.timestamp));
        inner
            .session
            .batch(&batch, &self.values)
            .await
            .map_err(db("committing state, positions and descriptions"))?;
        Ok(())
    }
}

/// `now`, or just after `floor` if that is not earlier.
fn later_timestamp(now: i64, floor: i64) -> i64 {
    now.max(floor.saturating_add(1))
}

/// Keeps the last item per key (a later one replaces an earlier one, as in the embedded
/// store; within one CQL batch all writes share a timestamp, so duplicates must not reach it).
fn last_by<'a, T, K: Ord>(items: &'a [T], key: impl Fn(&'a T) -> K) -> BTreeMap<K, &'a T> {
    items.iter().map(|item| (key(item), item)).collect()
}

/// Builds the commit batch of `batch`, reading the stored device of each cook, alert and rule
/// it replaces or removes so a stale `*_by_device` row is deleted with it.
async fn commit(inner: &Inner, batch: &ProjectionBatch) -> Result<Commit, ProjectionError> {
    let st = &inner.statements;
    let mut commit = Commit {
        timestamp: inner.commit_timestamp(&batch.applied).await?,
        ..Commit::default()
    };

    for (key, value) in last_by(&batch.state, |(k, _)| k.as_str()) {
        commit.push(&st.insert_state, (key.to_owned(), value.1.clone()));
    }
    for (id, info) in last_by(&batch.devices, |d| d.device_id.as_str()) {
        commit.push(
            &st.insert_device,
            (id.to_owned(), codec::encode("devices", info)?),
        );
    }
    for (id, cook) in last_by(&batch.cooks, |c| c.cook_id.as_str()) {
        let value = codec::encode("cooks", cook)?;
        let device = cook.device_id.clone();
        if let Some(old) = inner.stored_device(&st.cook_device, id).await?
            && old != device
        {
            commit.push(&st.delete_cook_by_device, (old, id.to_owned()));
        }
        commit.push(
            &st.insert_cook,
            (id.to_owned(), device.clone(), value.clone()),
        );
        commit.push(&st.insert_cook_by_device, (device, id.to_owned(), value));
    }
    for ((device, probe), prediction) in last_by(&batch.predictions, |p| {
        (p.device_id.as_str(), p.probe_id.as_str())
    }) {
        commit.push(
            &st.insert_prediction,
            (
                device.to_owned(),
                probe.to_owned(),
                codec::encode("predictions", prediction)?,
            ),
        );
    }
    for (id, alert) in last_by(&batch.alerts, |a| a.alert_id.as_str()) {
        let value = codec::encode("alerts", alert)?;
        let device = alert.device_id.clone();
        if let Some(old) = inner.stored_device(&st.alert_device, id).await?
            && old != device
        {
            commit.push(&st.delete_alert_by_device, (old, id.to_owned()));
        }
        commit.push(
            &st.insert_alert,
            (id.to_owned(), device.clone(), value.clone()),
        );
        commit.push(&st.insert_alert_by_device, (device, id.to_owned(), value));
    }
    let rules = last_by(&batch.alert_rules, |r| r.rule_id.as_str());
    for (id, rule) in &rules {
        let value = codec::encode("alert_rules", rule)?;
        let device = rule.device_id.clone();
        if let Some(old) = inner.stored_device(&st.rule_device, id).await?
            && old != device
        {
            commit.push(&st.delete_rule_by_device, (old, (*id).to_owned()));
        }
        commit.push(
            &st.insert_rule,
            (id.to_string(), device.clone(), value.clone()),
        );
        commit.push(&st.insert_rule_by_device, (device, (*id).to_owned(), value));
    }
    // Removals win over upserts of the same rule in this batch (as in the embedded store):
    // in one batch a tombstone beats a write with the same timestamp.
    let removed: BTreeSet<&str> = batch.removed_rules.iter().map(String::as_str).collect();
    for id in removed {
        let mut devices = BTreeSet::new();
        devices.extend(inner.stored_device(&st.rule_device, id).await?);
        devices.extend(rules.get(id).map(|r| r.device_id.clone()));
        commit.push(&st.delete_rule, (id.to_owned(),));
        for device in devices {
            commit.push(&st.delete_rule_by_device, (device, id.to_owned()));
        }
    }
    for ((topic, partition), (_, _, next)) in last_by(&batch.applied, |(t, p, _)| (t.as_str(), *p))
    {
        commit.push(
            &st.insert_applied,
            (
                topic.to_owned(),
                codec::partition_to_cql(partition),
                codec::offset_to_cql(*next),
            ),
        );
    }
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(t: i64, offset: u64, temp: f64) -> LatestProbe {
        LatestProbe {
            device_id: "d".into(),
            probe_id: "p".into(),
            event_time: t,
            received_time: t,
            temperature_c: Some(temp),
            source: "test".into(),
            trend: None,
            source_partition: 0,
            source_offset: offset,
        }
    }

    fn point(probe: &str, t: i64, temp: f64) -> HistoryPoint {
        HistoryPoint {
            device_id: "d".into(),
            probe_id: probe.into(),
            event_time: t,
            received_time: t + 1,
            temperature_c: Some(temp),
        }
    }

    #[test]
    fn facts_coalesce_latest_and_history_and_split_partitions() {
        let day = 86_400_000;
        let mut history: Vec<HistoryPoint> = (0..600).map(|i| point("p", i, 1.0)).collect();
        history.push(point("p", 5, 2.0)); // replaces the first (p, 5)
        history.push(point("p", day + 1, 3.0));
        history.push(point("q", 7, 4.0));
        let batch = ProjectionBatch {
            latest: vec![
                latest(2_000, 2, 50.0),
                latest(1_000, 1, 40.0),
                latest(2_000, 2, 52.0),
            ],
            history,
            ..Default::default()
        };
        let facts = facts(&batch, 60).expect("facts");
        let mut latest_cells = Vec::new();
        let mut history_rows = Vec::new();
        let mut days = Vec::new();
        for fact in facts {
            match fact {
                Fact::Latest {
                    cell, timestamp, ..
                } => latest_cells.push((codec::decode_latest(&cell).expect("decode"), timestamp)),
                Fact::History(rows) => {
                    assert!(rows.len() <= HISTORY_CHUNK);
                    let first = (&rows[0].0, &rows[0].1, rows[0].2);
                    assert!(
                        rows.iter().all(|r| (&r.0, &r.1, r.2) == first),
                        "one partition"
                    );
                    history_rows.extend(rows);
                }
                Fact::Day { probe, day, .. } => days.push((probe, day)),
            }
        }
        assert_eq!(latest_cells, [(latest(2_000, 2, 52.0), 2_000_000)]);
        assert_eq!(history_rows.len(), 602);
        let five = history_rows
            .iter()
            .find(|r| r.1 == "p" && r.3 == 5)
            .expect("point 5");
        assert_eq!(five.5, Some(2.0));
        assert!(history_rows.iter().all(|r| r.6 == 60));
        assert_eq!(days, [("p".into(), 0), ("p".into(), 1), ("q".into(), 0)]);
    }

    #[test]
    fn commit_timestamps_pass_the_stored_ones() {
        assert_eq!(later_timestamp(100, i64::MIN), 100);
        assert_eq!(later_timestamp(100, 50), 100);
        assert_eq!(later_timestamp(100, 100), 101);
        assert_eq!(later_timestamp(100, 5_000), 5_001);
        assert_eq!(later_timestamp(100, i64::MAX), i64::MAX);
    }

    #[test]
    fn the_last_of_equal_keys_is_kept() {
        let items = [("a", 1), ("b", 2), ("a", 3)];
        let kept = last_by(&items, |(k, _)| *k);
        assert_eq!(kept.values().map(|(_, v)| *v).collect::<Vec<_>>(), [3, 2]);
    }
}
