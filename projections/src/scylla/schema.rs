//! The keyspace and tables, created if missing.
//!
//! Every table is keyed for the queries the store answers; the module docs of
//! [`super`] say which query reads which table.

use scylla::client::session::Session;

use super::{ScyllaConfig, db};
use crate::ProjectionError;

/// Longest keyspace name ScyllaDB accepts.
const MAX_KEYSPACE_LEN: usize = 48;

/// Whether `name` is a keyspace name that needs no quoting: a letter, then letters, digits
/// or underscores (CQL folds unquoted names to lower case).
pub(super) fn valid_keyspace(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_KEYSPACE_LEN
}

/// Whether `map` looks like a CQL map literal (it is written into the DDL as given).
pub(super) fn valid_replication(map: &str) -> bool {
    let map = map.trim();
    map.starts_with('{') && map.ends_with('}') && !map.contains(';')
}

/// `CREATE KEYSPACE`, then one `CREATE TABLE` per table, all `IF NOT EXISTS`.
pub(super) fn ddl(keyspace: &str, replication: &str) -> Vec<String> {
    let ks = keyspace;
    vec![
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"),
        // Latest reading per probe: one partition per device, a row per probe. Written with
        // the event time as write timestamp, so a cell only ever moves forward.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.latest (\
             device_id text, probe_id text, value blob, \
             PRIMARY KEY ((device_id), probe_id))"
        ),
        // Raw history: a partition per probe and UTC day, rows by event time.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.history (\
             device_id text, probe_id text, day bigint, event_time bigint, \
             received_time bigint, temperature_c double, \
             PRIMARY KEY ((device_id, probe_id, day), event_time)) \
             WITH CLUSTERING ORDER BY (event_time ASC)"
        ),
        // Which history partitions a probe has, so a range query visits only those.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.history_days (\
             device_id text, probe_id text, day bigint, \
             PRIMARY KEY ((device_id, probe_id), day)) \
             WITH CLUSTERING ORDER BY (day ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.state (\
             state_key text PRIMARY KEY, value blob)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.devices (\
             device_id text PRIMARY KEY, value blob)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.cooks (\
             cook_id text PRIMARY KEY, device_id text, value blob)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.cooks_by_device (\
             device_id text, cook_id text, value blob, \
             PRIMARY KEY ((device_id), cook_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.predictions (\
             device_id text, probe_id text, value blob, \
             PRIMARY KEY ((device_id), probe_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.alerts (\
             alert_id text PRIMARY KEY, device_id text, value blob)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.alerts_by_device (\
             device_id text, alert_id text, value blob, \
             PRIMARY KEY ((device_id), alert_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.alert_rules (\
             rule_id text PRIMARY KEY, device_id text, value blob)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.alert_rules_by_device (\
             device_id text, rule_id text, value blob, \
             PRIMARY KEY ((device_id), rule_id))"
        ),
        // Applied positions: a partition per input topic, a row per partition.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.applied (\
             topic text, partition_id int, next_offset bigint, \
             PRIMARY KEY ((topic), partition_id))"
        ),
    ]
}

/// Creates the keyspace and tables that are missing. The driver waits for schema agreement
/// after each statement.
pub(super) async fn create(
    session: &Session,
    config: &ScyllaConfig,
) -> Result<(), ProjectionError> {
    for statement in ddl(&config.keyspace, config.replication.trim()) {
        session
            .query_unpaged(statement, ())
            .await
            .map_err(db("creating the keyspace and tables"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_need_no_quoting() {
        assert!(valid_keyspace("emberline"));
        assert!(valid_keyspace("emberline_test_0f3a"));
        for bad in ["", "1x", "_x", "a-b", "a.b", "a b", &"x".repeat(49)] {
            assert!(!valid_keyspace(bad), "{bad:?}");
        }
    }

    #[test]
    fn replication_is_a_map_literal() {
        assert!(valid_replication(
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        ));
        assert!(valid_replication(
            " {'class': 'NetworkTopologyStrategy', 'dc1': 3} "
        ));
        assert!(!valid_replication("'SimpleStrategy'"));
        assert!(!valid_replication("{}; DROP KEYSPACE x; {}"));
    }

    #[test]
    fn every_table_is_created_in_the_keyspace() {
        let ddl = ddl("ks", "{'class': 'SimpleStrategy', 'replication_factor': 1}");
        assert!(ddl[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {"));
        for statement in &ddl[1..] {
            assert!(
                statement.starts_with("CREATE TABLE IF NOT EXISTS ks."),
                "{statement}"
            );
            assert_eq!(
                statement.matches('(').count(),
                statement.matches(')').count(),
                "{statement}"
            );
        }
        assert_eq!(ddl.len(), 14);
    }
}
