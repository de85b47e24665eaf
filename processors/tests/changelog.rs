//! The projection changelog on a real (embedded) log: batches reach the changelog and the
//! local store together, a second writer's claim fences the first, and a restore or a
//! follower rebuilds exactly what the writers' accepted batches say.

use std::collections::BTreeSet;
use std::sync::Arc;

use emberline_log::{EmbeddedLog, EventLog, topics};
use emberline_processors::changelog::{self, ChangelogStore};
use emberline_projections::{EmbeddedStore, ProjectionBatch, ProjectionError, ProjectionStore};
use tokio_util::sync::CancellationToken;

fn batch(partition: u32, next: u64, state: u8) -> ProjectionBatch {
    ProjectionBatch {
        state: vec![(format!("s/{partition}"), vec![state])],
        applied: vec![("in".into(), partition, next)],
        ..Default::default()
    }
}

fn store(dir: &std::path::Path, name: &str) -> Arc<dyn ProjectionStore> {
    Arc::new(EmbeddedStore::open(&dir.join(name)).expect("store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_fences_the_old_writer_and_a_restore_sees_only_accepted_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
    log.ensure_topic(topics::PROJECTIONS_CHANGELOG, 2)
        .await
        .expect("topic");
    let (local_a, local_b) = (store(dir.path(), "a.redb"), store(dir.path(), "b.redb"));
    let a = ChangelogStore::new(log.clone(), local_a.clone(), "a".into());
    let b = ChangelogStore::new(log.clone(), local_b.clone(), "b".into());

    a.claim(&BTreeSet::from([0, 1])).await.expect("claim");
    a.apply(batch(0, 10, 1)).await.expect("a writes 0");
    a.apply(batch(1, 4, 1)).await.expect("a writes 1");
    assert_eq!(local_a.state("s/0").await.expect("state"), Some(vec![1]));

    // b takes partition 0 over: a's next write there is refused, its partition 1 is not.
    b.claim(&BTreeSet::from([0])).await.expect("claim");
    let err = a.apply(batch(0, 11, 2)).await.expect_err("fenced");
    assert!(
        matches!(err, ProjectionError::Fenced { partition: 0 }),
        "{err}"
    );
    assert!(a.fenced().is_cancelled());
    a.apply(batch(1, 5, 2)).await.expect("a still owns 1");
    // Giving partition 0 up ends the alarm: a keeps working on 1.
    a.release(&BTreeSet::from([0]));
    assert!(!a.fenced().is_cancelled());
    assert!(matches!(
        a.apply(batch(0, 11, 2)).await,
        Err(ProjectionError::Fenced { partition: 0 })
    ));
    assert!(
        !a.fenced().is_cancelled(),
        "a write to a released partition is refused quietly"
    );
    // A partition nobody claimed takes no writes from a claiming writer.
    let err = b.apply(batch(1, 6, 9)).await.expect_err("unclaimed");
    assert!(
        matches!(err, ProjectionError::Fenced { partition: 1 }),
        "{err}"
    );

    // b restores partition 0 and continues where a's accepted batches end.
    let restored = changelog::restore(
        log.as_ref(),
        local_b.as_ref(),
        [0],
        &CancellationToken::new(),
    )
    .await
    .expect("restore");
    assert_eq!(
        restored, 3,
        "two claims and the batch of a that was accepted"
    );
    assert_eq!(local_b.state("s/0").await.expect("state"), Some(vec![1]));
    assert_eq!(
        local_b
            .applied_positions("in")
            .await
            .expect("positions")
            .get(&0),
        Some(&10)
    );
    b.apply(batch(0, 12, 3)).await.expect("b writes 0");

    // A follower from nothing sees what every accepted batch says, and nothing refused.
    let follower = store(dir.path(), "f.redb");
    changelog::restore(
        log.as_ref(),
        follower.as_ref(),
        [0, 1],
        &CancellationToken::new(),
    )
    .await
    .expect("follow");
    assert_eq!(follower.state("s/0").await.expect("state"), Some(vec![3]));
    assert_eq!(follower.state("s/1").await.expect("state"), Some(vec![2]));
    let positions = follower.applied_positions("in").await.expect("positions");
    assert_eq!(
        (positions.get(&0), positions.get(&1)),
        (Some(&12), Some(&5))
    );
}
