//! The authenticator against both identity stores — a real identities file and the
//! `identities` topic of a real (embedded) log: sign-in, rotation and reuse of refresh
//! tokens, sign-out, API tokens, share links, and tokens that must prove nothing. Every
//! case runs on each store (`file::…` and `log::…`).

use std::net::IpAddr;
use std::sync::Arc;

use emberline_auth::identity_log::IdentityLog;
use emberline_auth::store::IdentityStore;
use emberline_auth::users::{self, NewUser};
use emberline_auth::{AuthError, AuthSettings, Authenticator, Grant, Permission, Role, Scope};
use emberline_log::{EmbeddedLog, EventLog, topics};

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 20));

/// Which store a case runs on.
#[derive(Clone, Copy)]
enum Kind {
    File,
    Log,
}

/// An authenticator, where its store keeps its bytes, and the key it signs with.
struct Fixture {
    dir: tempfile::TempDir,
    auth: Authenticator,
    log: Option<Arc<dyn EventLog>>,
    key: Vec<u8>,
}

impl Fixture {
    async fn empty(kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        match kind {
            Kind::File => {
                let auth = Authenticator::open(dir.path(), AuthSettings::default()).expect("open");
                let key = std::fs::read(dir.path().join("auth.key")).expect("key");
                Self {
                    dir,
                    auth,
                    log: None,
                    key,
                }
            }
            Kind::Log => {
                let log: Arc<dyn EventLog> =
                    Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
                let store = IdentityLog::open(log.clone()).await.expect("identities");
                let key = b"a key shared by every replica, 32+ bytes".to_vec();
                let auth =
                    Authenticator::new(IdentityStore::Log(store), &key, AuthSettings::default())
                        .expect("open");
                Self {
                    dir,
                    auth,
                    log: Some(log),
                    key,
                }
            }
        }
    }

    async fn with_users(kind: Kind) -> Self {
        let fixture = Self::empty(kind).await;
        for (name, role) in [("pat", Role::Owner), ("viewer", Role::Viewer)] {
            users::add(
                fixture.auth.identities(),
                NewUser {
                    name,
                    password: "correct horse",
                    role,
                    tenant: "default",
                },
                false,
            )
            .await
            .expect("add");
        }
        fixture
    }

    /// Everything the store has written, as text.
    async fn stored(&self) -> String {
        match &self.log {
            None => std::fs::read_to_string(self.dir.path().join("auth.json")).expect("file"),
            Some(log) => {
                let end = log.end_offset(topics::IDENTITIES, 0).await.expect("end");
                let mut reader = log.reader(topics::IDENTITIES, 0, 0).await.expect("reader");
                let mut text = String::new();
                while reader.position() < end {
                    for r in reader
                        .next_batch(1_000, std::time::Duration::from_secs(10))
                        .await
                        .expect("read")
                    {
                        text.push_str(&String::from_utf8_lossy(&r.value));
                    }
                }
                assert!(!text.is_empty(), "the log holds the identities");
                text
            }
        }
    }
}

/// Runs each `async fn case(kind)` on both stores.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod file {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Kind::File).await;
            })*
        }
        mod log {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Kind::Log).await;
            })*
        }
    };
}

on_both_stores!(
    a_password_signs_in_and_the_access_token_names_the_user_and_role,
    a_refresh_token_works_once_and_its_reuse_ends_the_family,
    signing_out_ends_the_session_and_other_sessions_stay,
    removing_a_user_or_changing_a_role_takes_effect_at_once,
    tokens_from_another_key_expired_or_malformed_prove_nothing,
    api_tokens_are_scoped_expire_and_revoke,
    setup_creates_the_first_owner_once,
    a_share_link_reads_one_cook_and_is_revocable,
);

fn unauthenticated(result: Result<impl std::fmt::Debug, AuthError>) -> String {
    match result {
        Err(AuthError::Unauthenticated(why)) => why,
        other => panic!("expected unauthenticated, got {other:?}"),
    }
}

async fn a_password_signs_in_and_the_access_token_names_the_user_and_role(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let session = auth
        .sign_in("Pat", "correct horse", HOME)
        .await
        .expect("sign in");
    let caller = auth.verify(&session.access_token).expect("verify");
    assert_eq!(caller.name, "pat");
    assert_eq!(caller.tenant, "default");
    assert_eq!(caller.grant, Grant::User(Role::Owner));
    let why = unauthenticated(auth.sign_in("pat", "wrong horse", HOME).await);
    assert_eq!(why, "wrong user name or password");
    let why = unauthenticated(auth.sign_in("nobody", "correct horse", HOME).await);
    assert_eq!(
        why, "wrong user name or password",
        "an unknown name reads the same"
    );
}

async fn a_refresh_token_works_once_and_its_reuse_ends_the_family(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let first = auth
        .sign_in("pat", "correct horse", HOME)
        .await
        .expect("sign in");
    let second = auth.refresh(&first.refresh_token).await.expect("refresh");
    assert_ne!(second.refresh_token, first.refresh_token);
    let third = auth
        .refresh(&second.refresh_token)
        .await
        .expect("refresh again");
    // Inside the grace a second tab's refresh with the same token still works…
    auth.refresh(&second.refresh_token)
        .await
        .expect("concurrent refresh within grace");
    // …but after it, reuse is theft: the whole family ends, the newest token included.
    let spent_long_ago = auth
        .identities()
        .update(0, |doc| {
            for s in doc.sessions.iter_mut().filter(|s| s.spent_at_ms.is_some()) {
                s.spent_at_ms = Some(s.spent_at_ms.unwrap_or(0) - 60_000);
            }
            Ok(())
        })
        .await;
    spent_long_ago.expect("age the spent tokens");
    let why = unauthenticated(auth.refresh(&first.refresh_token).await);
    assert!(why.contains("used already"), "{why}");
    let why = unauthenticated(auth.refresh(&third.refresh_token).await);
    assert!(why.contains("unknown, expired or revoked"), "{why}");
}

async fn signing_out_ends_the_session_and_other_sessions_stay(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let phone = auth
        .sign_in("pat", "correct horse", HOME)
        .await
        .expect("phone");
    let laptop = auth
        .sign_in("pat", "correct horse", HOME)
        .await
        .expect("laptop");
    auth.sign_out(&phone.refresh_token).await.expect("sign out");
    unauthenticated(auth.refresh(&phone.refresh_token).await);
    let why = unauthenticated(auth.verify(&phone.access_token));
    assert!(
        why.contains("session was ended"),
        "its access token ends at once: {why}"
    );
    auth.verify(&laptop.access_token)
        .expect("the other session's access token lives");
    auth.refresh(&laptop.refresh_token)
        .await
        .expect("the other session lives");
}

async fn removing_a_user_or_changing_a_role_takes_effect_at_once(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let session = auth
        .sign_in("viewer", "correct horse", HOME)
        .await
        .expect("sign in");
    let caller = auth.verify(&session.access_token).expect("verify");
    assert!(caller.allows(Permission::Read) && !caller.allows(Permission::Control));
    auth.identities()
        .update(0, |doc| {
            for u in doc.users.iter_mut().filter(|u| u.name == "viewer") {
                u.role = Role::Cook;
            }
            Ok(())
        })
        .await
        .expect("promote");
    assert!(
        auth.verify(&session.access_token)
            .expect("verify")
            .allows(Permission::Control)
    );
    users::remove(auth.identities(), "viewer")
        .await
        .expect("remove");
    let why = unauthenticated(auth.verify(&session.access_token));
    assert!(why.contains("no longer exists"), "{why}");
    unauthenticated(auth.refresh(&session.refresh_token).await);
    let err = users::remove(auth.identities(), "pat")
        .await
        .expect_err("last owner");
    assert!(err.to_string().contains("last owner"), "{err}");
}

async fn tokens_from_another_key_expired_or_malformed_prove_nothing(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Authenticator::open(other_dir.path(), AuthSettings::default()).expect("open");
    users::add(
        other.identities(),
        NewUser {
            name: "pat",
            password: "correct horse",
            role: Role::Owner,
            tenant: "default",
        },
        false,
    )
    .await
    .expect("add");
    let foreign = other
        .sign_in("pat", "correct horse", HOME)
        .await
        .expect("sign in");
    let why = unauthenticated(auth.verify(&foreign.access_token));
    assert!(why.contains("not signed by this server"), "{why}");

    let key = &fixture.key;
    let now = emberline_common_now_s();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss": "emberline", "sub": "pat", "ten": "default",
            "iat": now - 3600, "nbf": now - 3600, "exp": now - 600}),
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("sign");
    let why = unauthenticated(auth.verify(&expired));
    assert!(why.contains("expired"), "{why}");
    let none_alg = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJwYXQifQ.";
    unauthenticated(auth.verify(none_alg));
    unauthenticated(auth.verify(""));
}

fn emberline_common_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn api_tokens_are_scoped_expire_and_revoke(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let (token, info) = auth
        .create_token("pat", "default", "home assistant", Scope::Control, None)
        .await
        .expect("create");
    let caller = auth.verify(&token).expect("verify");
    assert_eq!(caller.grant, Grant::Token(Scope::Control));
    assert!(caller.allows(Permission::Control) && !caller.allows(Permission::Manage));
    let stored = fixture.stored().await;
    assert!(!stored.contains(&token), "the token itself is never stored");
    assert!(!stored.contains("correct horse"), "nor a password");
    assert_eq!(
        auth.list_tokens("default").expect("list"),
        vec![info.clone()]
    );
    assert!(auth.list_tokens("other").expect("list").is_empty());
    let err = auth
        .revoke_token("pat", "other", &info.id)
        .await
        .expect_err("another tenant's");
    assert!(matches!(err, AuthError::NotFound(_)));
    auth.revoke_token("pat", "default", &info.id)
        .await
        .expect("revoke");
    unauthenticated(auth.verify(&token));

    let (soon, _) = auth
        .create_token("pat", "default", "ci", Scope::Read, Some(i64::MAX))
        .await
        .expect("create");
    auth.identities()
        .update(0, |doc| {
            for t in &mut doc.tokens {
                t.expires_at_ms = Some(1);
            }
            Ok(())
        })
        .await
        .expect("expire");
    let why = unauthenticated(auth.verify(&soon));
    assert!(why.contains("expired"), "{why}");
}

async fn setup_creates_the_first_owner_once(kind: Kind) {
    let fixture = Fixture::empty(kind).await;
    let auth = &fixture.auth;
    let code = auth.setup_code().expect("code").expect("no users yet");
    unauthenticated(auth.setup("wrong", "pat", "correct horse").await);
    let session = auth
        .setup(&code, "pat", "correct horse")
        .await
        .expect("setup");
    assert_eq!(session.caller.grant, Grant::User(Role::Owner));
    assert_eq!(auth.setup_code().expect("code"), None);
    unauthenticated(auth.setup(&code, "sam", "correct horse").await);
}

async fn a_share_link_reads_one_cook_and_is_revocable(kind: Kind) {
    let fixture = Fixture::with_users(kind).await;
    let auth = &fixture.auth;
    let (token, link) = auth
        .create_share("pat", "default", "grill-1", "grill", None)
        .await
        .expect("share");
    let caller = auth.verify(&token).expect("verify");
    assert_eq!(
        caller.grant,
        Grant::Share {
            cook_id: "grill-1".into(),
            device: "grill".into()
        }
    );
    assert!(caller.allows(Permission::Read) && !caller.allows(Permission::Control));
    let stored = fixture.stored().await;
    assert!(!stored.contains(&token));
    assert_eq!(
        auth.list_shares("default", Some("grill-1")).expect("list"),
        vec![link.clone()]
    );
    assert!(auth.list_shares("other", None).expect("list").is_empty());
    assert!(matches!(
        auth.revoke_share("pat", "other", &link.id).await,
        Err(AuthError::NotFound(_))
    ));
    auth.revoke_share("pat", "default", &link.id)
        .await
        .expect("revoke");
    let why = unauthenticated(auth.verify(&token));
    assert!(why.contains("share link"), "{why}");
}

#[tokio::test]
async fn the_service_token_reads_and_registers_only_and_must_be_long() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = Authenticator::open(dir.path(), AuthSettings::default())
        .expect("open")
        .with_service_token("too short");
    assert!(matches!(short, Err(AuthError::InvalidArgument(_))));
    let token = "0123456789abcdef0123456789abcdef";
    let auth = Authenticator::open(dir.path(), AuthSettings::default())
        .expect("open")
        .with_service_token(token)
        .expect("long enough");
    let caller = auth.verify(token).expect("the service");
    assert_eq!(caller.grant, Grant::Token(Scope::Ingest));
    assert!(caller.allows(Permission::Ingest) && !caller.allows(Permission::Read));
    unauthenticated(auth.verify("0123456789abcdef0123456789abcdeX"));
}
