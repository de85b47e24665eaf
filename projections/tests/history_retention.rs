//! History retention in the embedded store: old points go in small transactions, the rest
//! stay, and the store says from when history is retained.

use emberline_projections::{
    EmbeddedStore, HistoryPoint, LatestProbe, ProjectionBatch, ProjectionStore,
};

fn point(probe: &str, t: i64) -> HistoryPoint {
    HistoryPoint {
        device_id: "grill".into(),
        probe_id: probe.into(),
        event_time: t,
        received_time: t,
        temperature_c: Some(20.0),
    }
}

fn latest(probe: &str, t: i64) -> LatestProbe {
    LatestProbe {
        device_id: "grill".into(),
        probe_id: probe.into(),
        event_time: t,
        received_time: t,
        temperature_c: Some(20.0),
        source: "test".into(),
        trend: None,
        source_partition: 0,
        source_offset: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_history_goes_and_the_store_says_from_when_it_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("projections.redb")).expect("open");
    assert_eq!(store.history_retained_from().await.expect("read"), None);
    // 5 000 points per probe (more than one retention transaction), t = 0..5000.
    for probe in ["a", "b"] {
        let history = (0..5_000).map(|t| point(probe, t)).collect();
        let batch = ProjectionBatch {
            latest: vec![latest(probe, 4_999)],
            history,
            ..ProjectionBatch::default()
        };
        store.apply(batch).await.expect("apply");
    }
    let removed = store.expire_history(3_000).await.expect("expire");
    assert_eq!(removed, 6_000);
    assert_eq!(
        store.history_retained_from().await.expect("read"),
        Some(3_000)
    );
    for probe in ["a", "b"] {
        let left = store
            .history("grill", probe, i64::MIN, i64::MAX, 100_000)
            .await
            .expect("history");
        assert_eq!(left.len(), 2_000, "{probe}");
        assert_eq!(left.first().map(|p| p.event_time), Some(3_000));
    }
    // The cut-off never moves back.
    store.expire_history(10).await.expect("expire");
    assert_eq!(
        store.history_retained_from().await.expect("read"),
        Some(3_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_cuts_through_minutes_and_keeps_every_later_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("projections.redb")).expect("open");
    // A point a second for 20 minutes, from half a minute past a minute.
    let t0 = 1_790_000_010_000 + 30_000;
    let times: Vec<i64> = (0..1_200).map(|i| t0 + i * 1_000).collect();
    for probe in ["a", "b"] {
        let batch = ProjectionBatch {
            latest: vec![latest(probe, *times.last().expect("times"))],
            history: times.iter().map(|&t| point(probe, t)).collect(),
            ..ProjectionBatch::default()
        };
        store.apply(batch).await.expect("apply");
    }
    // Seven and a half minutes in: whole minutes go, and the one it cuts is cut in two.
    let cutoff = t0 + 450_500;
    let gone = times.iter().filter(|&&t| t < cutoff).count() as u64;
    assert_eq!(
        store.expire_history(cutoff).await.expect("expire"),
        2 * gone
    );
    for probe in ["a", "b"] {
        let left: Vec<i64> = store
            .history("grill", probe, i64::MIN, i64::MAX, 100_000)
            .await
            .expect("history")
            .iter()
            .map(|p| p.event_time)
            .collect();
        let want: Vec<i64> = times.iter().copied().filter(|&t| t >= cutoff).collect();
        assert_eq!(left, want, "{probe}");
    }
    assert_eq!(store.expire_history(cutoff).await.expect("again"), 0);
}
