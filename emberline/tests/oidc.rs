//! Bearer tokens of a real OpenID provider (`oidc-provider`, the certified Node.js
//! implementation, from `emberline/tests/oidc/`) accepted by `emberline up`: tenant and
//! role from the token's claims, a tampered token and an unknown role refused, and the
//! provider rotating its keys — a token signed with the new key is accepted once Emberline
//! has fetched the new key set, and one signed before still is.
//!
//! Needs `node` and `npm ci` in `emberline/tests/oidc` (the test command does both);
//! without them the test is skipped, unless `EMBERLINE_REQUIRE_OIDC=1`.
#![allow(clippy::print_stderr)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::{GetLatestRequest, ListDevicesRequest, StartCookRequest};
use support::{PATIENCE, Up, bearer, eventually, free_port};
use tonic::Code;

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Whether the provider can run here; `false` skips (or fails, when required).
fn provider_available() -> bool {
    let installed = provider_dir().join("node_modules/oidc-provider").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !installed {
        assert!(
            std::env::var_os("EMBERLINE_REQUIRE_OIDC").is_none(),
            "EMBERLINE_REQUIRE_OIDC is set but node or emberline/tests/oidc/node_modules is missing (npm ci there)"
        );
        eprintln!("skipped: no node, or no `npm ci` in emberline/tests/oidc");
    }
    installed
}

/// The provider, running until dropped.
struct Provider(Child);

impl Provider {
    /// Starts the provider; `web_redirect` adds the web UI's client returning there.
    fn start(port: u16, keys: &Path, rotate: bool, web_redirect: Option<String>) -> Self {
        let mut command = Command::new("node");
        command
            .arg(provider_dir().join("provider.mjs"))
            .arg(port.to_string())
            .arg(keys);
        if rotate {
            command.arg("rotate");
        }
        if let Some(redirect) = web_redirect {
            command.env("EMBERLINE_WEB_REDIRECT", redirect);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the OpenID provider");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("its first line");
        assert!(line.contains("listening"), "the provider said {line:?}");
        eprintln!("[provider] {}", line.trim());
        // Keep reading: the provider logs more, and a closed pipe would stop it.
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                eprintln!("[provider] {line}");
            }
        });
        Self(child)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An access token for `client` (`<tenant>.<role>`) by the client-credentials grant.
async fn token(http: &reqwest::Client, issuer: &str, client: &str) -> String {
    let answer: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .basic_auth(client, Some(format!("secret-of-{client}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&resource=https%3A%2F%2Femberline.test%2Fapi")
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("json");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {answer}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_an_openid_provider_sign_in_by_their_claims_through_key_rotation() {
    if !provider_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.json");
    let port = free_port().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let provider = Provider::start(port, &keys, false, None);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let up = Up::start_with(
        &data,
        free_port(),
        &[
            ("EMBERLINE__AUTH__MODE", "password"),
            ("EMBERLINE__AUTH__OIDC__ISSUER", &issuer),
        ],
    );
    let channel = up.channel().await;
    emberline_common::http::install_crypto_provider();
    let http = reqwest::Client::new();
    let owner = token(&http, &issuer, "default.owner").await;
    let devices = DeviceServiceClient::new(channel.clone());
    eventually(
        "the provider's owner sees sim-1",
        PATIENCE,
        std::time::Duration::from_millis(100),
        || {
            let (mut devices, request) = (
                devices.clone(),
                bearer(&owner, ListDevicesRequest::default()),
            );
            async move {
                let listed = devices
                    .list_devices(request)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                listed
                    .devices
                    .iter()
                    .any(|d| d.device_id == "sim-1")
                    .then_some(())
                    .ok_or(format!("{listed:?}"))
            }
        },
    )
    .await;

    // The role claim: a viewer may not start a cook.
    let viewer = token(&http, &issuer, "default.viewer").await;
    let refused = CookServiceClient::new(channel.clone())
        .start_cook(bearer(
            &viewer,
            StartCookRequest {
                device_id: "sim-1".into(),
                ..StartCookRequest::default()
            },
        ))
        .await
        .expect_err("a viewer");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The tenant claim: another tenant's owner finds nothing.
    let neighbour = token(&http, &issuer, "next-door.owner").await;
    let hidden = devices
        .clone()
        .get_latest(bearer(
            &neighbour,
            GetLatestRequest {
                device_id: "sim-1".into(),
            },
        ))
        .await
        .expect_err("another tenant");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    // An unknown role, and a tampered signature, prove nothing.
    let nonsense = token(&http, &issuer, "default.nonsense").await;
    let bad = devices
        .clone()
        .list_devices(bearer(&nonsense, ListDevicesRequest::default()))
        .await
        .expect_err("an unknown role");
    assert_eq!(bad.code(), Code::Unauthenticated, "{bad:?}");
    let mut tampered = owner.clone();
    let last = tampered.pop().expect("a character");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let bad = devices
        .clone()
        .list_devices(bearer(&tampered, ListDevicesRequest::default()))
        .await
        .expect_err("a tampered token");
    assert_eq!(bad.code(), Code::Unauthenticated, "{bad:?}");

    // The provider rotates its keys (a restart signing with a new key, the old one still
    // published): new tokens are accepted once the new key set is fetched; old ones still are.
    drop(provider);
    let _rotated = Provider::start(port, &keys, true, None);
    let rotated = token(&http, &issuer, "default.owner").await;
    assert_ne!(
        jsonwebtoken::decode_header(&rotated).expect("header").kid,
        jsonwebtoken::decode_header(&owner).expect("header").kid,
        "the new token is signed with the new key"
    );
    eventually(
        "a token of the rotated key",
        PATIENCE,
        std::time::Duration::from_millis(250),
        || {
            let (mut devices, request) = (
                devices.clone(),
                bearer(&rotated, ListDevicesRequest::default()),
            );
            async move {
                devices
                    .list_devices(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    devices
        .clone()
        .list_devices(bearer(&owner, ListDevicesRequest::default()))
        .await
        .expect("a token of the old key, still published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_signs_in_through_the_provider_with_pkce() {
    if !provider_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, web, grpc) = (free_port().port(), free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port}");
    let _provider = Provider::start(
        port,
        &dir.path().join("keys.json"),
        false,
        Some(format!("http://{web}/auth/oidc/callback")),
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let up = Up::start_full(
        &data,
        grpc,
        web,
        &[
            ("EMBERLINE__AUTH__MODE", "password"),
            ("EMBERLINE__AUTH__OIDC__ISSUER", &issuer),
            ("EMBERLINE__AUTH__OIDC__CLIENT_ID", "emberline-web"),
            ("EMBERLINE__AUTH__OIDC__SCOPE", "openid api"),
            (
                "EMBERLINE__AUTH__OIDC__RESOURCE",
                "https://emberline.test/api",
            ),
        ],
    );
    up.channel().await;
    emberline_common::http::install_crypto_provider();
    // A browser: cookies kept, redirects followed.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let info: serde_json::Value = browser
        .get(format!("http://{web}/auth/oidc/info"))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["available"], true, "{info}");

    // The button's link leads to the provider's login page.
    let login_page = browser
        .get(format!("http://{web}/auth/oidc/login"))
        .send()
        .await
        .expect("to the provider");
    let form_url = login_page.url().clone();
    assert_eq!(form_url.port(), Some(port), "at the provider: {form_url}");
    let html = login_page.text().await.expect("login page");
    assert!(html.contains(r#"name="login""#), "{html}");
    // Signing in there comes back to the dashboard with a session.
    let back = browser
        .post(form_url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("prompt=login&login=default.viewer&password=anything")
        .send()
        .await
        .expect("back from the provider");
    assert_eq!(
        back.url().port(),
        Some(web.port()),
        "back at the web UI: {}",
        back.url()
    );
    let status = back.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        back.text().await.unwrap_or_default()
    );
    let who = browser
        .post(format!("http://{web}/emberline.v1.AuthService/WhoAmI"))
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("who am i");
    let body = who.bytes().await.expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("grpc-status:0")
            && text.contains("default.viewer")
            && text.contains("viewer"),
        "{text}"
    );

    // A callback this browser did not begin is refused.
    let forged = reqwest::Client::new()
        .get(format!("http://{web}/auth/oidc/callback?code=x&state=y"))
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status(), 401);
}
