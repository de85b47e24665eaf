//! What the access check adds to each call: verifying an access token (HS256 signature,
//! claims, the user's current role and session) and an API token (digest and look-up),
//! against identities with a realistic number of users and tokens — in the identities file
//! (the embedded default) and followed from the log's `identities` topic (gateway
//! replicas). A password sign-in (Argon2id) is measured too: that is the cost a guesser
//! pays per try, and it includes storing the new session in the store.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use emberline_auth::identity_log::IdentityLog;
use emberline_auth::store::IdentityStore;
use emberline_auth::users::{self, NewUser};
use emberline_auth::{AuthSettings, Authenticator, Role, Scope, SignedIn};
use emberline_log::{EmbeddedLog, EventLog};

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An authenticator over `store` with 10 users and 20 API tokens; one token and one
/// session to verify.
async fn populated(store: IdentityStore) -> (Authenticator, String, SignedIn) {
    let key = b"a key of the benchmark, 32 bytes or more".to_vec();
    let auth = Authenticator::new(store, &key, AuthSettings::default()).expect("open");
    for i in 0..10 {
        users::add(
            auth.identities(),
            NewUser {
                name: &format!("user{i}"),
                password: "correct horse",
                role: Role::Cook,
                tenant: "default",
            },
            false,
        )
        .await
        .expect("add");
    }
    let mut token = String::new();
    for i in 0..20 {
        token = auth
            .create_token(
                "bench",
                "default",
                &format!("script {i}"),
                Scope::Read,
                None,
            )
            .await
            .expect("token")
            .0;
    }
    let session = auth
        .sign_in("user3", "correct horse", HOME)
        .await
        .expect("sign in");
    (auth, token, session)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
    let stores = [
        ("file", IdentityStore::file(dir.path())),
        (
            "log",
            IdentityStore::Log(
                runtime
                    .block_on(IdentityLog::open(log))
                    .expect("identities"),
            ),
        ),
    ];
    let mut group = c.benchmark_group("auth");
    for (name, store) in stores {
        let (auth, token, session) = runtime.block_on(populated(store));
        group.sample_size(100);
        group.bench_function(format!("verify access token ({name})"), |b| {
            b.iter(|| auth.verify(&session.access_token).expect("valid"))
        });
        group.bench_function(format!("verify API token ({name})"), |b| {
            b.iter(|| auth.verify(&token).expect("valid"))
        });
        group.sample_size(10);
        group.bench_function(format!("password sign-in, Argon2id ({name})"), |b| {
            b.iter(|| {
                runtime
                    .block_on(auth.sign_in("user5", "correct horse", HOME))
                    .expect("sign in")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
