//! What the access check adds to each call: verifying an access token (HS256 signature,
//! claims, the user's current role) and an API token (digest and look-up), against an
//! identities file with a realistic number of users and tokens. A password sign-in
//! (Argon2id) is measured too: that is the cost a guesser pays per try.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use emberline_auth::users::{self, NewUser};
use emberline_auth::{AuthSettings, Authenticator, Role, Scope};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = Authenticator::open(dir.path(), AuthSettings::default()).expect("open");
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
        .expect("add");
    }
    let mut token = String::new();
    for i in 0..20 {
        token = auth
            .create_token("default", &format!("script {i}"), Scope::Read, None)
            .expect("token")
            .0;
    }
    let home = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let session = auth
        .sign_in("user3", "correct horse", home)
        .expect("sign in");
    let mut group = c.benchmark_group("auth");
    group.bench_function("verify access token", |b| {
        b.iter(|| auth.verify(&session.access_token).expect("valid"))
    });
    group.bench_function("verify API token", |b| {
        b.iter(|| auth.verify(&token).expect("valid"))
    });
    group.sample_size(10);
    group.bench_function("password sign-in (Argon2id)", |b| {
        b.iter(|| {
            auth.sign_in("user5", "correct horse", home)
                .expect("sign in")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
