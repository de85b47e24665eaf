//! `emberline up` with `[gateway.tls]`: gRPC and the web origin answer over TLS with the
//! configured certificate (a self-signed one, as the README's recipe makes), refuse plain
//! text, and mark the web session's cookies `Secure`.

mod support;

use emberline_proto::v1::SignInRequest;
use emberline_proto::v1::auth_service_client::AuthServiceClient;
use prost::Message;
use support::{Up, free_port};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const PASSWORD: &str = "grill-master-9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_the_web_origin_speak_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    let admin = dir.path().join("admin.password");
    std::fs::write(&admin, PASSWORD).expect("password");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let (grpc, web) = (free_port(), free_port());
    let up = Up::start_full(
        &data,
        grpc,
        web,
        &[
            ("EMBERLINE__AUTH__MODE", "password"),
            (
                "EMBERLINE__AUTH__ADMIN_PASSWORD_FILE",
                admin.to_str().expect("utf-8"),
            ),
            (
                "EMBERLINE__GATEWAY__TLS__CERT_FILE",
                cert.to_str().expect("utf-8"),
            ),
            (
                "EMBERLINE__GATEWAY__TLS__KEY_FILE",
                key.to_str().expect("utf-8"),
            ),
        ],
    );
    // Wait for the listening line (the harness's own channel is plain text).
    let mut ready = up.ready.clone();
    tokio::time::timeout(support::PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("listening in time")
        .expect("up running");

    // gRPC over TLS, the certificate checked against itself as the root.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(certified.cert.pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", grpc.port()))
        .expect("url")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("TLS connection");
    let signed = AuthServiceClient::new(channel)
        .sign_in(SignInRequest {
            user: "admin".into(),
            password: PASSWORD.into(),
            cookie: false,
        })
        .await
        .expect("sign in over TLS")
        .into_inner();
    assert!(!signed.access_token.is_empty());

    // Plain text to the same port is not served.
    let plain = Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await;
    if let Ok(plain) = plain {
        let refused = AuthServiceClient::new(plain)
            .sign_in(SignInRequest::default())
            .await
            .expect_err("plain text on a TLS port");
        assert_ne!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    }

    // The web origin: the page and grpc-web over HTTPS; the session cookies are Secure.
    emberline_common::http::install_crypto_provider();
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("root"),
        )
        .resolve("localhost", web)
        .build()
        .expect("client");
    let page = https
        .get(format!("https://localhost:{}/", web.port()))
        .send()
        .await
        .expect("the page over HTTPS");
    assert!(page.status().is_success(), "{page:?}");
    let body = SignInRequest {
        user: "admin".into(),
        password: PASSWORD.into(),
        cookie: true,
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    let answer = https
        .post(format!(
            "https://localhost:{}/emberline.v1.AuthService/SignIn",
            web.port()
        ))
        .header("content-type", "application/grpc-web+proto")
        .body(framed)
        .send()
        .await
        .expect("grpc-web over HTTPS");
    let cookies: Vec<String> = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    let plain_web = reqwest::Client::new()
        .get(format!("http://{web}/"))
        .send()
        .await;
    assert!(
        plain_web.is_err() || !plain_web.as_ref().is_ok_and(|r| r.status().is_success()),
        "plain HTTP to the TLS web origin: {plain_web:?}"
    );
}

#[test]
fn an_unusable_certificate_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate").expect("cert");
    std::fs::write(&key, "not a key").expect("key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "up",
            "--grpc-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
        ])
        .env("EMBERLINE__GATEWAY__TLS__CERT_FILE", &cert)
        .env("EMBERLINE__GATEWAY__TLS__KEY_FILE", &key)
        .env("EMBERLINE__OPS__ADDR", "127.0.0.1:0")
        .env("EMBERLINE__GATEWAY__REGISTRY_ADDR", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run up");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cert.pem") && err.contains("gateway.tls"),
        "{err}"
    );
}
