//! The projection-store conformance suite against the ScyllaDB store.
//!
//! Runs only when `EMBERLINE_TEST_SCYLLA=host:port` names a ScyllaDB (or Cassandra) node;
//! otherwise every test returns at once. When the variable is set but the node cannot be
//! reached, every test panics, so the run fails instead of silently passing. Each test gets
//! a fresh keyspace `emberline_test_<random>`, dropped when the test ends.
#![cfg(feature = "scylla")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use emberline_projections::conformance::{Backend, BoxFuture};
use emberline_projections::{ProjectionStore, ScyllaConfig, ScyllaStore};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const ENV: &str = "EMBERLINE_TEST_SCYLLA";

struct Scylla {
    node: String,
    keyspace: String,
    /// Drops the keyspace when the test ends.
    admin: Session,
}

impl Backend for Scylla {
    fn open(&self) -> BoxFuture<'_, Arc<dyn ProjectionStore>> {
        Box::pin(async move {
            let config = ScyllaConfig {
                keyspace: self.keyspace.clone(),
                history_ttl_s: Some(7 * 24 * 3_600),
                ..ScyllaConfig::new([self.node.clone()])
            };
            let store = ScyllaStore::connect(config).await.unwrap_or_else(|e| {
                panic!("{ENV}={}: connecting the store failed: {e}", self.node)
            });
            Arc::new(store) as Arc<dyn ProjectionStore>
        })
    }
}

impl Drop for Scylla {
    fn drop(&mut self) {
        // Best effort: a keyspace left behind by a failure is harmless (names are unique).
        let drop = format!("DROP KEYSPACE IF EXISTS {}", self.keyspace);
        let admin = &self.admin;
        tokio::task::block_in_place(|| {
            let _ = tokio::runtime::Handle::current().block_on(admin.query_unpaged(drop, ()));
        });
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A keyspace name no other test (or earlier run) uses.
fn fresh_keyspace() -> String {
    let nanos = emberline_common::clock::now_nanos() as u64;
    let mixed = nanos
        ^ u64::from(std::process::id()).rotate_left(40)
        ^ SEQ
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("emberline_test_{mixed:016x}")
}

/// The node from `EMBERLINE_TEST_SCYLLA`, or `None` to skip; panics if it is unreachable.
async fn scylla() -> Option<Scylla> {
    let node = match std::env::var(ENV) {
        Ok(node) if !node.trim().is_empty() => node.trim().to_owned(),
        _ => return None,
    };
    let admin = SessionBuilder::new()
        .known_node(&node)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap_or_else(|e| panic!("{ENV}={node} is set but the node is unreachable: {e}"));
    Some(Scylla {
        node,
        keyspace: fresh_keyspace(),
        admin,
    })
}

emberline_projections::projection_suite!(scylla_store, scylla());
