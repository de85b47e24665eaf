//! Two tenants in one `emberline up`: users `pat` (tenant `default`) and `ace` (tenant
//! `acme`), each with an HTTP push source; the default tenant has a device `grill`, acme a
//! `grill` and a `smoker`. Pushed temperatures stay in a band per tenant, so an answer holding
//! the other's data shows.

use std::net::SocketAddr;
use std::path::Path;

use emberline_proto::v1::SignInRequest;
use emberline_proto::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

use super::free_port;
use super::roles::Role;

/// The users' password.
pub const PASSWORD: &str = "grill-master-9";
/// The users, their tenants, and the band their devices' temperatures lie in.
pub const TENANTS: [(&str, &str, std::ops::Range<f64>); 2] = [
    ("pat", "default", 40.0..60.0),
    ("ace", "acme", 140.0..160.0),
];

/// A running `up` with both tenants.
pub struct TwoTenants {
    /// The process.
    pub up: Role,
    /// A connection to its gRPC port.
    pub channel: Channel,
    /// The default tenant's HTTP push source (`grill`, token `home-grill`).
    pub home_push: SocketAddr,
    /// Acme's (`grill` and `smoker`, tokens `acme-grill` and `acme-smoker`).
    pub acme_push: SocketAddr,
    /// Access tokens of `pat` and `ace`, in [`TENANTS`] order.
    pub tokens: [String; 2],
}

/// Starts `up` in `dir` with both tenants' users (of `role`), their sources, and `extra`
/// appended to the configuration; signs both users in.
pub async fn start(dir: &Path, role: emberline_auth::Role, extra: &str) -> TwoTenants {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let identities = emberline_auth::store::IdentityStore::file(&data);
    for (name, tenant, _) in &TENANTS {
        emberline_auth::users::add(
            &identities,
            emberline_auth::users::NewUser {
                name,
                password: PASSWORD,
                role,
                tenant,
            },
            false,
        )
        .await
        .expect("user");
    }
    let (home_push, acme_push, grpc) = (free_port(), free_port(), free_port());
    let config_path = dir.join("emberline.toml");
    let config = format!(
        r#"[[sources]]
kind = "http_push"
name = "home-push"
listen = "{home_push}"
tokens = {{ grill = "home-grill" }}

[[sources]]
kind = "http_push"
name = "acme-push"
tenant = "acme"
listen = "{acme_push}"
tokens = {{ grill = "acme-grill", smoker = "acme-smoker" }}

{extra}
"#
    );
    std::fs::write(&config_path, config).expect("config");
    let mut up = Role::start(
        "up",
        &config_path,
        &data,
        &[
            "up",
            "--grpc-addr",
            &grpc.to_string(),
            "--web-addr",
            "127.0.0.1:0",
        ],
        &[("EMBERLINE__AUTH__MODE", "password".to_owned())],
    );
    up.ready().await;
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut tokens: [String; 2] = Default::default();
    for (token, (user, _, _)) in tokens.iter_mut().zip(&TENANTS) {
        *token = AuthServiceClient::new(channel.clone())
            .sign_in(SignInRequest {
                user: (*user).into(),
                password: PASSWORD.into(),
                cookie: false,
            })
            .await
            .expect("sign in")
            .into_inner()
            .access_token;
    }
    emberline_common::http::install_crypto_provider();
    TwoTenants {
        up,
        channel,
        home_push,
        acme_push,
        tokens,
    }
}

/// Pushes 60 readings of probes `pit` and `meat-1`, one a second up to now, every one
/// inside `band`: from `band.start + 1` (the pit's first) to `band.start + 3 + 59 × 0.05`
/// (the meat's last).
pub async fn push(
    http: &reqwest::Client,
    addr: SocketAddr,
    device: &str,
    token: &str,
    band: &std::ops::Range<f64>,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut readings = Vec::new();
    for i in 0..60 {
        for (p, probe) in ["pit", "meat-1"].iter().enumerate() {
            let value = band.start + 1.0 + p as f64 * 2.0 + f64::from(i) * 0.05;
            readings.push(serde_json::json!({
                "probe_id": probe, "value": value, "time": now - (60 - i64::from(i)) * 1000
            }));
        }
    }
    let (status, answer) = super::push::push(http, addr, device, token, readings).await;
    assert_eq!(status, 200, "{answer}");
}

/// Pushes the three devices' readings.
pub async fn push_all(t: &TwoTenants) {
    let http = reqwest::Client::new();
    let (home, acme) = (&TENANTS[0].2, &TENANTS[1].2);
    push(&http, t.home_push, "grill", "home-grill", home).await;
    push(&http, t.acme_push, "grill", "acme-grill", acme).await;
    push(&http, t.acme_push, "smoker", "acme-smoker", acme).await;
}
