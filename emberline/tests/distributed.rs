//! The distributed deployment, as separate OS processes on a real Kafka-protocol broker:
//! the registry, an ingest role (the simulator, eight grills at a few hundred readings a
//! second), three processor replicas in one consumer group and two gateways, each process
//! with its own data directory (no file is shared between two processes).
//!
//! Mid-stream one processor is killed with `kill -9` (its partitions move to the others),
//! a fourth joins (it takes partitions without a restart of the others), and the gateway a
//! client is subscribed through is killed (the client resumes on the other with the
//! positions it holds). At the end:
//!
//! * `derived.trends` equals, partition by partition and byte for byte, a single-process
//!   replay of the same readings: each source offset exactly once, in order; the cook
//!   processor's outputs carry strictly increasing input sequence numbers per partition;
//! * both gateways — and a third started late, from nothing — answer every query alike,
//!   and their devices, latest values, history and cooks equal those of the replay;
//! * the client received every trend update exactly once.
//!
//! Needs `EMBERLINE_TEST_KAFKA` (the test script starts Tansu).

#![allow(clippy::print_stderr)] // the test reports the rebalance and catch-up times it measures

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emberline_log::{EventLog, KafkaLog, Record, topics};
use emberline_processors::changelog;
use emberline_processors::cook::run::output_seq;
use emberline_processors::{Mode, TrendConfig, catch_up, run_cook, run_devices};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{StartFrom, SubscribeTrendsRequest, TrendEvent};
use emberline_schemas::{ConfluentRegistry, EventCodec};
use support::answers::{Answers, answers};
use support::roles::{Role, kafka_roles_config, read_until};
use support::{PATIENCE, eventually, free_port};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 8;
/// How often a wait looks again.
const TICK: Duration = Duration::from_millis(100);

fn config_file(dir: &Path, bootstrap: &str, prefix: &str, registry: &str) -> std::path::PathBuf {
    let path = dir.join("emberline.toml");
    let text = format!(
        r#"{}
[simulator]
devices = 8
probes = 4
interval_ms = 100
start_cook = true
"#,
        kafka_roles_config(PARTITIONS, bootstrap, prefix, registry, 1)
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Every record of every partition of `topic`, up to its current end.
async fn read_all(log: &dyn EventLog, topic: &str) -> BTreeMap<u32, Vec<Record>> {
    let mut out = BTreeMap::new();
    for p in 0..log.partitions(topic).await.expect("partitions") {
        let end = log.end_offset(topic, p).await.expect("end");
        out.insert(p, read_until(log, topic, p, end).await);
    }
    out
}

/// The client: one trend subscription that moves to the other gateway when its gateway
/// dies, resuming from the positions it holds.
#[derive(Clone, Default)]
struct Client {
    seen: Arc<Mutex<Vec<(Instant, TrendEvent)>>>,
    reconnects: Arc<Mutex<u32>>,
}

impl Client {
    fn spawn(&self, gateways: Vec<std::net::SocketAddr>, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut at = 0;
            loop {
                let resume: BTreeMap<u32, u64> = {
                    let seen = this.seen.lock().expect("seen");
                    let mut r = BTreeMap::new();
                    for (_, e) in seen.iter() {
                        r.insert(e.partition, e.offset + 1);
                    }
                    r
                };
                let url = format!("http://{}", gateways[at % gateways.len()]);
                let stream = async {
                    let mut client = TrendServiceClient::connect(url).await.ok()?;
                    client
                        .subscribe_trends(SubscribeTrendsRequest {
                            device_id: String::new(),
                            resume: resume.into_iter().collect(),
                            start: StartFrom::Earliest as i32,
                        })
                        .await
                        .ok()
                        .map(tonic::Response::into_inner)
                };
                if let Some(mut stream) = stream.await {
                    loop {
                        tokio::select! {
                            item = stream.next() => match item {
                                Some(Ok(e)) => this.seen.lock().expect("seen").push((Instant::now(), e)),
                                _ => break,
                            },
                            () = stop.cancelled() => return,
                        }
                    }
                }
                if stop.is_cancelled() {
                    return;
                }
                // This gateway is gone (or not up): the next one.
                at += 1;
                *this.reconnects.lock().expect("reconnects") += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    async fn wait_for_partitions(&self, partitions: &BTreeSet<u32>) {
        eventually(
            "every busy partition streams",
            PATIENCE * 2,
            TICK,
            || async {
                let seen: BTreeSet<u32> = self
                    .seen
                    .lock()
                    .expect("seen")
                    .iter()
                    .map(|(_, e)| e.partition)
                    .collect();
                if partitions.is_subset(&seen) {
                    Ok(())
                } else {
                    Err(format!("{partitions:?} wanted, {seen:?} seen"))
                }
            },
        )
        .await;
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }

    async fn wait_for(&self, n: usize, what: &str) {
        eventually(what, PATIENCE * 2, TICK, || async {
            let count = self.count();
            if count >= n {
                Ok(())
            } else {
                Err(format!("only {count} of {n} trend updates"))
            }
        })
        .await;
    }

    /// How long after `since` every partition that had streamed before it streamed again
    /// (partitions without a device never stream). A silent partition is reported with the
    /// derived topic's end and the last offset received, to tell a stalled processor from a
    /// stalled subscription.
    async fn all_partitions_stream_after(&self, log: &dyn EventLog, since: Instant) -> Duration {
        let active: BTreeSet<u32> = self
            .seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|(t, _)| *t <= since)
            .map(|(_, e)| e.partition)
            .collect();
        assert!(!active.is_empty(), "no partition streams");
        let since_ms = emberline_common::clock::now_ms() - since.elapsed().as_millis() as i64;
        eventually(
            "every partition streams again",
            PATIENCE * 2,
            TICK,
            || async {
                // A trend of a reading taken after `since`: its partition has an owner again.
                let latest: BTreeMap<u32, Instant> = {
                    let seen = self.seen.lock().expect("seen");
                    let mut m = BTreeMap::new();
                    for (t, e) in seen.iter().filter(|(_, e)| e.event_time_ms > since_ms) {
                        m.entry(e.partition).or_insert(*t);
                    }
                    m
                };
                let silent: Vec<u32> = active
                    .iter()
                    .filter(|p| !latest.contains_key(p))
                    .copied()
                    .collect();
                if silent.is_empty() {
                    return Ok(latest
                        .values()
                        .max()
                        .map(|t| *t - since)
                        .unwrap_or_default());
                }
                let mut why = Vec::new();
                for p in silent {
                    let last = self
                        .seen
                        .lock()
                        .expect("seen")
                        .iter()
                        .filter(|(_, e)| e.partition == p)
                        .map(|(_, e)| e.offset)
                        .max();
                    let end = log.end_offset(topics::DERIVED_TRENDS, p).await.ok();
                    why.push(format!(
                        "partition {p} (last offset received {last:?}, derived topic ends at {end:?})"
                    ));
                }
                Err(format!("silent: {}", why.join("; ")))
            },
        )
        .await
    }
}

/// The partitions a processor says it works on, by its latest log line about them.
fn owned_by(role: &Role) -> BTreeSet<u32> {
    let lines = role.lines.lock().expect("lines");
    let Some(line) = lines
        .iter()
        .rev()
        .find(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
    else {
        return BTreeSet::new();
    };
    let Some(rest) = line.split("owned={").nth(1) else {
        return BTreeSet::new();
    };
    rest.split('}')
        .next()
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Waits until every gateway answers the same (they follow the changelog on their own).
async fn settled_answers(gateways: &[std::net::SocketAddr]) -> Answers {
    eventually("the gateways agree", PATIENCE * 2, TICK, || async {
        let mut dumps = Vec::new();
        for g in gateways {
            dumps.push(answers(*g).await);
        }
        let first = dumps.remove(0);
        let differences: Vec<String> = dumps
            .iter()
            .filter(|d| **d != first)
            .map(|d| first.difference(d))
            .collect();
        if differences.is_empty() {
            Ok(first)
        } else {
            Err(differences.join("; "))
        }
    })
    .await
}

/// How far the processors' durable batches in the changelog cover `key` (an applied-
/// positions key), per partition.
async fn covered(log: &dyn EventLog, key: &str) -> BTreeMap<u32, u64> {
    let mut out: BTreeMap<u32, u64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for (p, records) in read_all(log, topics::PROJECTIONS_CHANGELOG).await {
        for r in records {
            let Some(batch) = changelog::decode(&r.value).expect("changelog record") else {
                continue; // a claim
            };
            for (topic, partition, next) in batch.applied {
                if topic == key {
                    assert_eq!(
                        partition, p,
                        "a batch in the changelog of another partition"
                    );
                    let e = out.entry(p).or_insert(0);
                    *e = (*e).max(next);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_apart_survive_kills_rebalances_and_a_gateway_failover() {
    let Some(kafka) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let run = emberline_common::clock::now_nanos();
    let prefix = format!("dist.{run}.");
    let registry_addr = free_port();
    let config = config_file(
        root.path(),
        &kafka.bootstrap_servers,
        &prefix,
        &registry_addr.to_string(),
    );
    let dir = |name: &str| root.path().join(name);

    let mut registry = Role::registry(&config, &dir("registry"), registry_addr);
    registry.ready().await;
    let mut ingest = Role::start("ingest", &config, &dir("ingest"), &["ingest"], &[]);
    let mut processors: Vec<Role> = (1..=3)
        .map(|i| {
            let name = format!("processor-{i}");
            Role::start(&name, &config, &dir(&name), &["process"], &[])
        })
        .collect();
    let (g1, g2) = (free_port(), free_port());
    let mut gateway_1 = Role::gateway("gateway-1", &config, &dir("gateway-1"), g1);
    let mut gateway_2 = Role::gateway("gateway-2", &config, &dir("gateway-2"), g2);
    ingest.ready().await;
    for p in &mut processors {
        p.ready().await;
    }
    gateway_1.ready().await;
    gateway_2.ready().await;

    let client = Client::default();
    let stop_client = CancellationToken::new();
    client.spawn(vec![g1, g2], stop_client.clone());
    client.wait_for(300, "before the first kill").await;
    // Every partition with a grill streams before anything is killed.
    let log: Arc<dyn EventLog> = {
        let mut k = emberline_log::KafkaConfig::new(kafka.bootstrap_servers.clone());
        k.topic_prefix = prefix.clone();
        Arc::new(KafkaLog::connect(k).expect("connect"))
    };
    let mut busy = BTreeSet::new();
    for p in 0..PARTITIONS {
        if log
            .end_offset(topics::PROBE_READINGS, p)
            .await
            .expect("end")
            > 0
        {
            busy.insert(p);
        }
    }
    client.wait_for_partitions(&busy).await;
    for role in [&registry, &ingest, &processors[0], &gateway_1] {
        eprintln!("MEASURED: RSS of {}: {:?} KiB", role.name, role.rss_kib());
    }

    // A processor dies: its partitions move to the others.
    let orphaned = owned_by(&processors[0]);
    assert!(!orphaned.is_empty(), "the first processor owned nothing");
    let killed = Instant::now();
    processors[0].kill_9();
    eventually(
        "the killed processor's partitions are taken over",
        PATIENCE,
        TICK,
        || async {
            let taken: BTreeSet<u32> = processors[1..].iter().flat_map(owned_by).collect();
            if orphaned.is_subset(&taken) {
                Ok(())
            } else {
                Err(format!("{orphaned:?} orphaned, {taken:?} taken"))
            }
        },
    )
    .await;
    eprintln!(
        "MEASURED: partitions {orphaned:?} taken over {:?} after kill -9 of their processor",
        killed.elapsed()
    );
    let rebalance = client
        .all_partitions_stream_after(log.as_ref(), killed)
        .await;
    eprintln!("MEASURED: every partition streamed again {rebalance:?} after the kill");

    // A fourth joins without a restart of the others.
    let mut fourth = Role::start(
        "processor-4",
        &config,
        &dir("processor-4"),
        &["process"],
        &[],
    );
    fourth.ready().await;
    let joined = Instant::now();
    let after_join = client
        .all_partitions_stream_after(log.as_ref(), joined)
        .await;
    eprintln!("MEASURED: every partition streamed again {after_join:?} after a processor joined");
    let fourth_took = fourth
        .lines
        .lock()
        .expect("lines")
        .iter()
        .any(|l| l.contains("partitions assigned") && !l.contains("owned={}"));
    assert!(fourth_took, "the fourth processor took no partition");
    processors.push(fourth);

    // The client's gateway dies: it resumes on the other.
    let before = client.count();
    gateway_1.kill_9();
    client
        .wait_for(before + 300, "after the gateway failover")
        .await;
    assert!(*client.reconnects.lock().expect("reconnects") >= 1);

    // The input stops; the processors finish it.
    ingest.interrupt();
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        ends.insert(
            p,
            log.end_offset(topics::PROBE_READINGS, p)
                .await
                .expect("end"),
        );
    }
    let readings: u64 = ends.values().sum();
    eventually(
        "the processors finish the input",
        PATIENCE * 3,
        TICK * 5,
        || async {
            let trends = covered(log.as_ref(), topics::PROBE_READINGS).await;
            let cooks = covered(log.as_ref(), &format!("cook/{}", topics::PROBE_READINGS)).await;
            if trends == ends && cooks == ends {
                Ok(())
            } else {
                Err(format!("{trends:?} {cooks:?} of {ends:?}"))
            }
        },
    )
    .await;
    for p in &mut processors[1..] {
        p.interrupt();
    }

    // The client has every trend update exactly once, in the log's order.
    let derived = read_all(log.as_ref(), topics::DERIVED_TRENDS).await;
    let total: usize = derived.values().map(Vec::len).sum();
    client.wait_for(total, "the whole derived topic").await;
    stop_client.cancel();
    let mut received: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (_, e) in client.seen.lock().expect("seen").iter() {
        received.entry(e.partition).or_default().push(e.offset);
    }
    for (p, records) in &derived {
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(
            received.get(p).cloned().unwrap_or_default(),
            offsets,
            "partition {p}"
        );
    }

    // A replay of the same readings in one process gives the same derived topic.
    let codec = Arc::new(
        EventCodec::connect(Arc::new(ConfluentRegistry::new(&format!(
            "http://{registry_addr}"
        ))))
        .await
        .expect("codec"),
    );
    let replay_dir = dir("replay");
    std::fs::create_dir_all(&replay_dir).expect("replay dir");
    {
        let store: Arc<dyn ProjectionStore> =
            Arc::new(EmbeddedStore::open(&replay_dir.join("projections.redb")).expect("store"));
        catch_up(
            log.clone(),
            store.clone(),
            codec.clone(),
            TrendConfig {
                output_topic: "replay.trends".into(),
                consumer: "replay.trends".into(),
                ..TrendConfig::default()
            },
        )
        .await
        .expect("replay trends");
        run_devices(
            log.clone(),
            store.clone(),
            codec.clone(),
            Mode::CatchUp,
            CancellationToken::new(),
        )
        .await
        .expect("replay devices");
        run_cook(
            log.clone(),
            store,
            codec.clone(),
            Mode::CatchUp,
            CancellationToken::new(),
        )
        .await
        .expect("replay cooks");
    }
    let replayed = read_all(log.as_ref(), "replay.trends").await;
    for p in 0..PARTITIONS {
        let live: Vec<&[u8]> = derived[&p].iter().map(|r| r.value.as_slice()).collect();
        let again: Vec<&[u8]> = replayed[&p].iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(live.len(), again.len(), "partition {p}: trend count");
        assert!(
            live == again,
            "partition {p}: trends differ from the replay"
        );
    }
    // The cook processor's outputs: strictly increasing input numbers per partition.
    for topic in [topics::DERIVED_PREDICTIONS, topics::ALERTS] {
        for (p, records) in read_all(log.as_ref(), topic).await {
            let mut last = i64::MIN;
            for r in records {
                let seq = output_seq(&codec, &r.value)
                    .await
                    .expect("decode")
                    .unwrap_or_else(|| {
                        panic!("{topic}/{p} offset {}: not a cook output", r.offset)
                    });
                assert!(
                    seq > last,
                    "{topic}/{p} offset {}: input {seq} after {last}",
                    r.offset
                );
                last = seq;
            }
        }
    }

    // Gateways: the survivor, the killed one restarted, and one started late from nothing
    // all answer alike; the late one's catch-up rate is reported.
    let mut gateway_1 = Role::gateway("gateway-1", &config, &dir("gateway-1"), g1);
    let g3 = free_port();
    let late = Instant::now();
    let mut gateway_3 = Role::gateway("gateway-3", &config, &dir("gateway-3"), g3);
    gateway_3.ready().await;
    let caught_up = late.elapsed();
    eprintln!(
        "MEASURED: a late gateway caught up with {readings} readings' projections in {caught_up:?} ({:.0} readings/s)",
        readings as f64 / caught_up.as_secs_f64()
    );
    gateway_1.ready().await;
    let agreed = settled_answers(&[g1, g2, g3]).await;
    assert!(agreed.devices.len() >= 8, "{:?}", agreed.devices);
    assert!(!agreed.predictions.is_empty());

    // And what the trend processor and the device projector derive equals the replay.
    let replay_grpc = free_port();
    let embedded = root.path().join("replay.toml");
    std::fs::write(&embedded, "[simulator]\nenabled = false\n").expect("replay config");
    let mut replay_gateway = Role::gateway("replay-gateway", &embedded, &replay_dir, replay_grpc);
    replay_gateway.ready().await;
    let replay = answers(replay_grpc).await;
    assert_eq!(agreed.devices, replay.devices);
    assert_eq!(agreed.latest, replay.latest);
    assert_eq!(agreed.history, replay.history);
    assert_eq!(agreed.cooks, replay.cooks);
    assert_eq!(agreed.predictions, replay.predictions);
    assert_eq!(agreed.alerts, replay.alerts);

    // No file was shared: every process wrote only under its own directory.
    let own: BTreeSet<String> = std::fs::read_dir(root.path())
        .expect("root")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        own.contains("processor-2") && own.contains("gateway-2"),
        "{own:?}"
    );
    for role in [
        &mut gateway_1,
        &mut gateway_2,
        &mut gateway_3,
        &mut replay_gateway,
        &mut registry,
    ] {
        role.interrupt();
    }
}

/// A key every gateway replica of the identities test shares.
const SIGNING_KEY: &str = "0123456789abcdef0123456789abcdef-shared";

/// A gateway replica with sign-in on, signing with `key` (none: its own).
fn signing_gateway(name: &str, config: &Path, data: &Path, grpc: std::net::SocketAddr) -> Role {
    Role::start(
        name,
        config,
        data,
        &["gateway"],
        &[
            ("EMBERLINE__GATEWAY__GRPC_ADDR", grpc.to_string()),
            ("EMBERLINE__GATEWAY__WEB_ADDR", "127.0.0.1:0".to_owned()),
            ("EMBERLINE__AUTH__MODE", "password".to_owned()),
            ("EMBERLINE__AUTH__SIGNING_KEY", SIGNING_KEY.to_owned()),
        ],
    )
}

async fn channel_to(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Users, sessions, API tokens and the audit trail are one set for every gateway replica:
/// the command adds the first owner to the log before any gateway runs; a session signed
/// in on one replica is refreshed on the other and signed out on the first, and its access
/// token stops working on both; an API token made on one works on the other until it is
/// revoked; a replica started late on an empty data directory knows everyone; the
/// command's change is in the audit trail once, not once per replica. A gateway without
/// the shared signing key refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_replicas_share_users_sessions_and_tokens_through_the_log() {
    use emberline_proto::v1::audit_service_client::AuditServiceClient;
    use emberline_proto::v1::auth_service_client::AuthServiceClient;
    use emberline_proto::v1::device_service_client::DeviceServiceClient;
    use emberline_proto::v1::token_service_client::TokenServiceClient;
    use emberline_proto::v1::{
        CreateTokenRequest, ListAuditEventsRequest, ListDevicesRequest, ListTokensRequest,
        RefreshRequest, RevokeTokenRequest, SignInRequest, SignOutRequest, WhoAmIRequest,
    };
    use support::bearer;
    use tonic::Code;

    let Some(kafka) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let prefix = format!("ids.{}.", emberline_common::clock::now_nanos());
    let registry_addr = free_port();
    let config = root.path().join("emberline.toml");
    std::fs::write(
        &config,
        kafka_roles_config(1, &kafka.bootstrap_servers, &prefix, registry_addr, 1),
    )
    .expect("config");
    let dir = |name: &str| root.path().join(name);
    let mut registry = Role::registry(&config, &dir("registry"), registry_addr);
    registry.ready().await;

    let password = dir("password");
    std::fs::write(&password, "grill-master-9\n").expect("password file");
    let emberline = |data: &Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_emberline"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env("EMBERLINE__AUTH__MODE", "password")
            .output()
            .expect("run emberline")
    };
    let added = emberline(
        &dir("command"),
        &["user", "add", "pat", "--role", "owner", "--password-file"]
            .into_iter()
            .chain([password.to_str().expect("utf-8")])
            .collect::<Vec<_>>(),
    );
    assert!(added.status.success(), "user add: {added:?}");
    let unkeyed = emberline(&dir("unkeyed"), &["gateway"]);
    assert!(
        !unkeyed.status.success(),
        "a gateway without the shared key"
    );
    assert!(
        String::from_utf8_lossy(&unkeyed.stderr).contains("auth.signing_key"),
        "says which setting is missing: {unkeyed:?}"
    );

    let (g1, g2) = (free_port(), free_port());
    let mut gateway_1 = signing_gateway("gateway-1", &config, &dir("gateway-1"), g1);
    let mut gateway_2 = signing_gateway("gateway-2", &config, &dir("gateway-2"), g2);
    gateway_1.ready().await;
    gateway_2.ready().await;
    let (one, two) = (channel_to(g1).await, channel_to(g2).await);

    let first = AuthServiceClient::new(one.clone())
        .sign_in(SignInRequest {
            user: "pat".into(),
            password: "grill-master-9".into(),
            cookie: false,
        })
        .await
        .expect("sign in on gateway 1, as the command added pat")
        .into_inner();
    let me = AuthServiceClient::new(two.clone())
        .who_am_i(bearer(&first.access_token, WhoAmIRequest {}))
        .await
        .expect("gateway 2 accepts gateway 1's access token")
        .into_inner();
    assert_eq!((me.name.as_str(), me.role.as_str()), ("pat", "owner"));

    let made = TokenServiceClient::new(two.clone())
        .create_token(bearer(
            &first.access_token,
            CreateTokenRequest {
                name: "scripts".into(),
                scope: "read".into(),
                expires_at_ms: None,
            },
        ))
        .await
        .expect("token made on gateway 2")
        .into_inner();
    DeviceServiceClient::new(one.clone())
        .list_devices(bearer(&made.token, ListDevicesRequest::default()))
        .await
        .expect("gateway 1 accepts gateway 2's API token");

    let second = AuthServiceClient::new(two.clone())
        .refresh(RefreshRequest {
            refresh_token: first.refresh_token.clone(),
            cookie: false,
        })
        .await
        .expect("gateway 2 trades gateway 1's refresh token")
        .into_inner();
    AuthServiceClient::new(one.clone())
        .sign_out(SignOutRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .expect("sign out on gateway 1");
    let ended = AuthServiceClient::new(one.clone())
        .who_am_i(bearer(&second.access_token, WhoAmIRequest {}))
        .await
        .expect_err("signed out");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let who_am_i = |channel: &tonic::transport::Channel, token: &str| {
        let (mut client, request) = (
            AuthServiceClient::new(channel.clone()),
            bearer(token, WhoAmIRequest {}),
        );
        async move { client.who_am_i(request).await.map(|_| ()) }
    };
    eventually(
        "gateway 2 ends the signed-out session",
        PATIENCE,
        TICK,
        || async {
            match who_am_i(&two, &second.access_token).await {
                Err(s) if s.code() == Code::Unauthenticated => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    let owner = AuthServiceClient::new(two.clone())
        .sign_in(SignInRequest {
            user: "pat".into(),
            password: "grill-master-9".into(),
            cookie: false,
        })
        .await
        .expect("sign in again on gateway 2")
        .into_inner()
        .access_token;
    TokenServiceClient::new(one.clone())
        .revoke_token(bearer(
            &owner,
            RevokeTokenRequest {
                id: made.info.expect("info").id,
            },
        ))
        .await
        .expect("revoke on gateway 1");
    eventually(
        "gateway 2 refuses the revoked token",
        PATIENCE,
        TICK,
        || async {
            let mut devices = DeviceServiceClient::new(two.clone());
            match devices
                .list_devices(bearer(&made.token, ListDevicesRequest::default()))
                .await
            {
                Err(s) if s.code() == Code::Unauthenticated => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // A replica started late, on an empty data directory, reads everyone from the log.
    let g3 = free_port();
    let mut gateway_3 = signing_gateway("gateway-3", &config, &dir("gateway-3"), g3);
    gateway_3.ready().await;
    let three = channel_to(g3).await;
    who_am_i(&three, &owner)
        .await
        .expect("gateway 3 accepts a session signed in on gateway 2");
    let tokens = TokenServiceClient::new(three.clone())
        .list_tokens(bearer(&owner, ListTokensRequest {}))
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    assert!(tokens.is_empty(), "the revoked token is gone: {tokens:?}");
    let trail = eventually(
        "the audit trail has the command's change and gateway 1's revocation",
        PATIENCE,
        TICK,
        || async {
            let entries = AuditServiceClient::new(three.clone())
                .list_audit_events(bearer(
                    &owner,
                    ListAuditEventsRequest {
                        since_ms: 0,
                        limit: 1_000,
                    },
                ))
                .await
                .map_err(|s| s.to_string())?
                .into_inner()
                .events;
            if entries.iter().any(|e| e.kind == "token_revoked") {
                Ok(entries)
            } else {
                Err(format!("{entries:?}"))
            }
        },
    )
    .await;
    let added: Vec<_> = trail
        .iter()
        .filter(|e| e.kind == "user_added" && e.subject.as_deref() == Some("pat"))
        .collect();
    assert_eq!(added.len(), 1, "once, by the command: {trail:?}");
    assert_eq!(added[0].actor, "command line");
    for e in ["token_created", "token_revoked", "signed_out"] {
        assert_eq!(
            trail.iter().filter(|t| t.kind == e).count(),
            1,
            "{e} once, by the replica that did it: {trail:?}"
        );
    }
    for g in [
        &mut gateway_1,
        &mut gateway_2,
        &mut gateway_3,
        &mut registry,
    ] {
        g.interrupt();
    }
}

/// Settings made on one gateway are the deployment's: a ThermoWorks account added on
/// gateway 1 is run by the separate ingest role (its readings reach the log), and a
/// gateway started afterwards on an empty data directory lists the account and a channel
/// as they were left — every process reads them from the `settings` topic, opened with
/// the one `settings.key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_made_on_one_gateway_run_on_the_ingest_role_and_reach_a_late_gateway() {
    use emberline_ingest::testing::thermoworks::{self, FakeThermoworks};
    use emberline_proto::v1::settings_service_client::SettingsServiceClient;
    use emberline_proto::v1::source_service_client::SourceServiceClient;
    use emberline_proto::v1::{
        ListChannelsRequest, ListSourcesRequest, NotificationChannel, SetChannelRequest,
        SetSourceRequest,
    };
    use emberline_schemas::events::ProbeReading;

    let Some(kafka) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    const KEY: &str = "settings-key-of-the-distributed-test-0123456789";
    let cloud = FakeThermoworks::start(
        "127.0.0.1:0".parse().expect("addr"),
        "s3cret",
        emberline_common::clock::now_ms() - 60_000,
    )
    .await
    .expect("cloud");
    let root = tempfile::tempdir().expect("tempdir");
    let prefix = format!("settings.{}.", emberline_common::clock::now_nanos());
    let registry_addr = free_port();
    let config = root.path().join("emberline.toml");
    std::fs::write(
        &config,
        // No simulator: the account is the only source.
        format!(
            "sources = []\n{}",
            kafka_roles_config(2, &kafka.bootstrap_servers, &prefix, registry_addr, 1)
        ),
    )
    .expect("config");
    let dir = |name: &str| root.path().join(name);
    let keyed = || vec![("EMBERLINE__SETTINGS__KEY", KEY.to_owned())];
    let mut registry = Role::registry(&config, &dir("registry"), registry_addr);
    registry.ready().await;
    let mut ingest = Role::start("ingest", &config, &dir("ingest"), &["ingest"], &keyed());
    let g1 = free_port();
    let mut env = keyed();
    env.extend([
        ("EMBERLINE__GATEWAY__GRPC_ADDR", g1.to_string()),
        ("EMBERLINE__GATEWAY__WEB_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let mut gateway_1 = Role::start("gateway-1", &config, &dir("gateway-1"), &["gateway"], &env);
    ingest.ready().await;
    gateway_1.ready().await;
    let one = channel_to(g1).await;

    SourceServiceClient::new(one.clone())
        .set_source(SetSourceRequest {
            name: "garage".into(),
            kind: "thermoworks".into(),
            fields: [
                ("username", thermoworks::EMAIL),
                ("password", "s3cret"),
                ("poll_interval_s", "5"),
                ("base_url", cloud.url.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        })
        .await
        .expect("account added on gateway 1");
    SettingsServiceClient::new(one.clone())
        .set_channel(SetChannelRequest {
            channel: Some(NotificationChannel {
                name: "phone".into(),
                kind: "webhook".into(),
                ..Default::default()
            }),
            url: "http://127.0.0.1:9/hook".into(),
            ..Default::default()
        })
        .await
        .expect("channel added on gateway 1");

    // The ingest role runs the account: the Node's readings reach the log.
    let log: Arc<dyn EventLog> = {
        let mut k = emberline_log::KafkaConfig::new(kafka.bootstrap_servers.clone());
        k.topic_prefix = prefix.clone();
        Arc::new(KafkaLog::connect(k).expect("connect"))
    };
    let codec = EventCodec::connect(Arc::new(ConfluentRegistry::new(&format!(
        "http://{registry_addr}"
    ))))
    .await
    .expect("codec");
    eventually(
        "the ingest role appends the account's readings",
        PATIENCE,
        TICK,
        || async {
            let mut devices = BTreeSet::new();
            for p in 0..2 {
                let end = log
                    .end_offset(topics::PROBE_READINGS, p)
                    .await
                    .map_err(|e| e.to_string())?;
                for r in read_until(log.as_ref(), topics::PROBE_READINGS, p, end).await {
                    let reading: ProbeReading =
                        codec.decode(&r.value).await.map_err(|e| e.to_string())?;
                    devices.insert(reading.device_id);
                }
            }
            if devices.contains("A1") {
                Ok(())
            } else {
                Err(format!("devices {devices:?}"))
            }
        },
    )
    .await;

    // A gateway started now, on an empty data directory, has every setting.
    let g2 = free_port();
    let mut env = keyed();
    env.extend([
        ("EMBERLINE__GATEWAY__GRPC_ADDR", g2.to_string()),
        ("EMBERLINE__GATEWAY__WEB_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let mut gateway_2 = Role::start("gateway-2", &config, &dir("gateway-2"), &["gateway"], &env);
    gateway_2.ready().await;
    let two = channel_to(g2).await;
    let sources = SourceServiceClient::new(two.clone())
        .list_sources(ListSourcesRequest {})
        .await
        .expect("sources")
        .into_inner()
        .sources;
    assert!(
        sources
            .iter()
            .any(|s| s.name == "garage" && s.kind == "thermoworks" && s.secret_set),
        "{sources:?}"
    );
    let channels = SettingsServiceClient::new(two)
        .list_channels(ListChannelsRequest {})
        .await
        .expect("channels")
        .into_inner()
        .channels;
    assert_eq!(
        channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["phone"]
    );
    for role in [&mut gateway_2, &mut gateway_1, &mut ingest, &mut registry] {
        role.interrupt();
    }
}
