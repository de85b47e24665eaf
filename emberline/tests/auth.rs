//! Access to `emberline up` with sign-in on (the default): every RPC the server lists
//! through reflection is called without credentials, with an expired token, with a token
//! signed by another key, as a viewer, and through grpc-web; another tenant's owner finds
//! nothing of this tenant; the
//! sign-in throttle is driven from two addresses; the web UI's cookie session is checked.
//! The list of methods comes from reflection, so a new RPC without an access rule fails here.

mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use bytes::{Buf, BufMut};
use emberline_auth::Permission;
use emberline_gateway::Rule;
use emberline_proto::v1::SignInRequest;
use emberline_proto::v1::auth_service_client::AuthServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::{GetLatestRequest, ListDevicesRequest};
use prost::Message;
use support::{Up, bearer, free_port};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const PASSWORD: &str = "grill-master-9";

/// Passes message bytes through untouched: calls any method without knowing its types.
#[derive(Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// One method the server lists.
#[derive(Clone, Debug)]
struct Method {
    path: String,
    streaming: bool,
    /// The request's identifier fields, by name: (number, name, nested fields of a message).
    ids: Vec<IdField>,
}

/// A string field naming something (a device, cook, rule, alert, token or link), or a
/// message field holding such fields.
#[derive(Clone, Debug)]
struct IdField {
    number: u32,
    name: String,
    nested: Vec<IdField>,
}

/// The id fields of message `type_name` (`.emberline.v1.X`), one level of nesting deep.
fn id_fields(file: &prost_types::FileDescriptorProto, type_name: &str, depth: u32) -> Vec<IdField> {
    use prost_types::field_descriptor_proto::Type;
    let short = type_name.rsplit('.').next().unwrap_or_default();
    let Some(message) = file.message_type.iter().find(|m| m.name() == short) else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    for f in &message.field {
        let named = ["device_id", "cook_id", "alert_id", "rule_id", "id"].contains(&f.name());
        if f.r#type() == Type::String && named {
            fields.push(IdField {
                number: f.number() as u32,
                name: f.name().to_owned(),
                nested: Vec::new(),
            });
        } else if f.r#type() == Type::Message && depth == 0 {
            let nested = id_fields(file, f.type_name(), 1);
            if !nested.is_empty() {
                fields.push(IdField {
                    number: f.number() as u32,
                    name: f.name().to_owned(),
                    nested,
                });
            }
        }
    }
    fields
}

/// A protobuf message setting each of `fields` to the value `value_of` gives its name.
fn encode_ids(fields: &[IdField], value_of: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for f in fields {
        let bytes = if f.nested.is_empty() {
            match value_of(&f.name) {
                Some(v) => v.into_bytes(),
                None => continue,
            }
        } else {
            encode_ids(&f.nested, value_of)
        };
        varint(u64::from(f.number) << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(&bytes);
    }
    out
}

/// Every `emberline.v1` method, from reflection.
async fn methods(channel: Channel) -> Vec<Method> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let client = ServerReflectionClient::new(channel);
    let answer = |r: ServerReflectionRequest| {
        let mut client = client.clone();
        async move {
            let mut stream = client
                .server_reflection_info(tokio_stream::iter([r]))
                .await
                .expect("reflection (open to anyone)")
                .into_inner();
            stream
                .next()
                .await
                .expect("an answer")
                .expect("ok")
                .message_response
                .expect("a message")
        }
    };
    let MessageResponse::ListServicesResponse(list) =
        answer(ask(MessageRequest::ListServices(String::new()))).await
    else {
        panic!("no service list");
    };
    let mut found = Vec::new();
    for service in list
        .service
        .iter()
        .filter(|s| s.name.starts_with("emberline."))
    {
        let MessageResponse::FileDescriptorResponse(files) = answer(ask(
            MessageRequest::FileContainingSymbol(service.name.clone()),
        ))
        .await
        else {
            panic!("no descriptor for {}", service.name);
        };
        for bytes in files.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("file");
            for s in &file.service {
                let full = format!("{}.{}", file.package(), s.name());
                if full != service.name {
                    continue;
                }
                for m in &s.method {
                    found.push(Method {
                        path: format!("/{full}/{}", m.name()),
                        streaming: m.server_streaming(),
                        ids: id_fields(&file, m.input_type(), 0),
                    });
                }
            }
        }
    }
    assert!(found.len() >= 25, "reflection listed only {found:?}");
    found
}

/// Every RPC, called by another tenant's owner with this tenant's ids (its device, cook,
/// alert rule, API token and share link): nothing that changes things is done, and no
/// answer holds any of those ids.
async fn neighbour_finds_nothing(
    channel: &Channel,
    methods: &[Method],
    owner: &str,
    neighbour: &str,
) {
    use emberline_proto::v1::alert_service_client::AlertServiceClient;
    use emberline_proto::v1::cook_service_client::CookServiceClient;
    use emberline_proto::v1::share_service_client::ShareServiceClient;
    use emberline_proto::v1::token_service_client::TokenServiceClient;
    use emberline_proto::v1::{
        AlertRule, CreateShareLinkRequest, CreateTokenRequest, SetAlertRuleRequest,
        StartCookRequest,
    };
    let cook_id = CookServiceClient::new(channel.clone())
        .start_cook(bearer(
            owner,
            StartCookRequest {
                device_id: "sim-1".into(),
                ..StartCookRequest::default()
            },
        ))
        .await
        .expect("a cook")
        .into_inner()
        .cook_id;
    cook_shown(channel, owner, &cook_id).await;
    let rule_id = AlertServiceClient::new(channel.clone())
        .set_alert_rule(bearer(
            owner,
            SetAlertRuleRequest {
                rule: Some(AlertRule {
                    device_id: "sim-1".into(),
                    probe_id: Some("pit".into()),
                    kind: "above".into(),
                    threshold: Some(400.0),
                    ..AlertRule::default()
                }),
            },
        ))
        .await
        .expect("a rule")
        .into_inner()
        .rule_id;
    let token_id = TokenServiceClient::new(channel.clone())
        .create_token(bearer(
            owner,
            CreateTokenRequest {
                name: "mine".into(),
                scope: "read".into(),
                expires_at_ms: None,
            },
        ))
        .await
        .expect("a token")
        .into_inner()
        .info
        .expect("info")
        .id;
    let share_id = ShareServiceClient::new(channel.clone())
        .create_share_link(bearer(
            owner,
            CreateShareLinkRequest {
                cook_id: cook_id.clone(),
                expires_at_ms: None,
            },
        ))
        .await
        .expect("a link")
        .into_inner()
        .link
        .expect("link")
        .id;
    let ours = [
        "sim-1".to_owned(),
        cook_id.clone(),
        rule_id.clone(),
        token_id.clone(),
        share_id.clone(),
    ];
    let mut named = 0;
    for m in methods
        .iter()
        .filter(|m| !is_public(m) && !m.ids.is_empty())
    {
        let value_of = |field: &str| -> Option<String> {
            Some(match field {
                "device_id" => "sim-1".into(),
                "cook_id" => cook_id.clone(),
                "rule_id" => rule_id.clone(),
                "alert_id" => format!("{rule_id}#1"),
                "id" if m.path.contains("ShareService") => share_id.clone(),
                "id" => token_id.clone(),
                _ => return None,
            })
        };
        let request = bearer(neighbour, encode_ids(&m.ids, &value_of));
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let path = m.path.parse().expect("path");
        let answers: Result<Vec<Vec<u8>>, tonic::Status> = if m.streaming {
            match grpc.server_streaming(request, path, Raw).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    let first =
                        tokio::time::timeout(std::time::Duration::from_secs(2), stream.next())
                            .await;
                    Ok(match first {
                        Ok(Some(Ok(message))) => vec![message],
                        _ => Vec::new(),
                    })
                }
                Err(status) => Err(status),
            }
        } else {
            grpc.unary(request, path, Raw)
                .await
                .map(|r| vec![r.into_inner()])
        };
        match answers {
            Ok(messages) => {
                assert!(
                    !changes(m) || m.path.ends_with("/CreateToken"),
                    "{} did something for another tenant",
                    m.path
                );
                for message in messages {
                    for id in &ours {
                        let leaked = message.windows(id.len()).any(|w| w == id.as_bytes());
                        assert!(!leaked, "{} answered another tenant with {id:?}", m.path);
                    }
                }
            }
            Err(status) => assert!(
                matches!(
                    status.code(),
                    Code::NotFound
                        | Code::InvalidArgument
                        | Code::FailedPrecondition
                        | Code::PermissionDenied
                ),
                "{} as another tenant: {status:?}",
                m.path
            ),
        }
        named += 1;
    }
    assert!(named >= 20, "only {named} methods take an id");
}

/// The status `method` answers an empty request with, as `token`.
async fn call(channel: &Channel, method: &Method, token: Option<&str>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(Vec::new());
    if let Some(t) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let path = method.path.parse().expect("path");
    let result = if method.streaming {
        grpc.server_streaming(request, path, Raw).await.map(|_| ())
    } else {
        grpc.unary(request, path, Raw).await.map(|_| ())
    };
    result.err().unwrap_or_else(|| tonic::Status::ok(""))
}

fn is_public(method: &Method) -> bool {
    ["Setup", "SignIn", "Refresh", "SignOut"]
        .iter()
        .any(|m| method.path == format!("/emberline.v1.AuthService/{m}"))
}

/// Whether the method changes something (control or manage), by its name.
fn changes(method: &Method) -> bool {
    let name = method.path.rsplit('/').next().unwrap_or_default();
    // Changes only the caller's own choices (°C/°F, theme), which any reader may make.
    let own_only = method.path.ends_with("SettingsService/SetPreferences");
    // Runs queries only: statements that would create or write anything are refused.
    let query = method.path.ends_with("QueryService/Sql");
    !own_only
        && !query
        && !["List", "Get", "Subscribe", "WhoAmI", "Plan"]
            .iter()
            .any(|p| name.starts_with(p))
}

fn add_user(dir: &std::path::Path, name: &str, role: &str) {
    let file = dir.join(format!("{name}.password"));
    std::fs::write(&file, format!("{PASSWORD}\n")).expect("password file");
    let out = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--data-dir")
        .arg(dir)
        .args(["user", "add", name, "--role", role, "--password-file"])
        .arg(&file)
        .output()
        .expect("emberline user add");
    assert!(out.status.success(), "{out:?}");
}

/// Adds `neighbour`, the owner of another tenant, `next-door`.
async fn add_neighbour(data: &std::path::Path) {
    emberline_auth::users::add(
        &emberline_auth::store::IdentityStore::file(data),
        emberline_auth::users::NewUser {
            name: "neighbour",
            password: PASSWORD,
            role: emberline_auth::Role::Owner,
            tenant: "next-door",
        },
        false,
    )
    .await
    .expect("another tenant's owner");
}

/// Waits until `cook_id` is projected: `GetCook` finds it for `token`.
async fn cook_shown(channel: &Channel, token: &str, cook_id: &str) {
    let cooks = emberline_proto::v1::cook_service_client::CookServiceClient::new(channel.clone());
    support::eventually(
        "the cook projected",
        support::PATIENCE,
        std::time::Duration::from_millis(50),
        || {
            let (mut cooks, request) = (
                cooks.clone(),
                bearer(
                    token,
                    emberline_proto::v1::GetCookRequest {
                        cook_id: cook_id.to_owned(),
                    },
                ),
            );
            async move {
                cooks
                    .get_cook(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
}

async fn sign_in(channel: &Channel, user: &str) -> String {
    AuthServiceClient::new(channel.clone())
        .sign_in(SignInRequest {
            user: user.into(),
            password: PASSWORD.into(),
            cookie: false,
        })
        .await
        .expect("sign in")
        .into_inner()
        .access_token
}

/// An access token made outside the server, for the admin's session `sid`.
fn forged(key: &[u8], exp_offset_s: i64, sid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss": "emberline", "sub": "admin", "ten": "default", "sid": sid,
            "iat": now - 7200, "nbf": now - 7200, "exp": now + exp_offset_s}),
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("sign")
}

fn start(dir: &std::path::Path) -> Up {
    let admin = dir.join("admin.password");
    std::fs::write(&admin, PASSWORD).expect("admin password");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    Up::start_with(
        &data,
        free_port(),
        &[
            ("EMBERLINE__AUTH__MODE", "password"),
            (
                "EMBERLINE__AUTH__ADMIN_PASSWORD_FILE",
                admin.to_str().expect("utf-8 path"),
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_who_may_not_call_it_on_grpc_and_grpc_web() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start(dir.path());
    let data = dir.path().join("data");
    let channel = up.channel().await;
    let methods = methods(channel.clone()).await;

    // Users made by the command while the server runs, and one of another tenant.
    add_user(&data, "viewer", "viewer");
    add_neighbour(&data).await;
    let owner = sign_in(&channel, "admin").await;
    let viewer = sign_in(&channel, "viewer").await;
    let neighbour = sign_in(&channel, "neighbour").await;
    let key = std::fs::read(data.join("auth.key")).expect("signing key");
    // The admin's session, as the identities file has it.
    let identities: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("auth.json")).expect("identities"))
            .expect("json");
    let sid = identities["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["user"] == "admin"))
        .and_then(|s| s["family"].as_str())
        .expect("the admin's session")
        .to_owned();
    let expired = forged(&key, -600, &sid);
    let foreign = forged(&[7u8; 32], 600, &sid);
    let valid_forgery_check = forged(&key, 600, &sid);

    let mut checked = 0;
    for m in &methods {
        if is_public(m) {
            continue;
        }
        for (who, token, expected) in [
            ("no credentials", None, Code::Unauthenticated),
            (
                "an expired token",
                Some(expired.as_str()),
                Code::Unauthenticated,
            ),
            (
                "another key's token",
                Some(foreign.as_str()),
                Code::Unauthenticated,
            ),
            (
                "a malformed token",
                Some("not-a-token"),
                Code::Unauthenticated,
            ),
            (
                "a revoked-looking API token",
                Some("emt_nope"),
                Code::Unauthenticated,
            ),
        ] {
            let status = call(&channel, m, token).await;
            assert_eq!(status.code(), expected, "{} with {who}: {status:?}", m.path);
        }
        let as_viewer = call(&channel, m, Some(&viewer)).await.code();
        let read_only = emberline_gateway::rule(&m.path) == Rule::Needs(Permission::Read);
        assert!(
            !(changes(m) && read_only),
            "{} changes things but needs only Read",
            m.path
        );
        if !read_only {
            assert_eq!(as_viewer, Code::PermissionDenied, "{} as a viewer", m.path);
        } else {
            assert!(
                !matches!(as_viewer, Code::Unauthenticated | Code::PermissionDenied),
                "{} refused a viewer: {as_viewer:?}",
                m.path
            );
        }
        for token in [&owner, &valid_forgery_check] {
            let as_owner = call(&channel, m, Some(token)).await;
            assert!(
                !matches!(
                    as_owner.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                "{} refused the owner: {as_owner:?}",
                m.path
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        methods.len() - 4,
        "every method but the four sign-in calls"
    );

    // Another tenant's owner is let in, and finds nothing of this tenant: sim-1 is this
    // tenant's device, and to the neighbour it does not exist.
    let latest = |token: &str| {
        bearer(
            token,
            GetLatestRequest {
                device_id: "sim-1".into(),
            },
        )
    };
    let devices = DeviceServiceClient::new(channel.clone());
    support::eventually(
        "sim-1 projected",
        support::PATIENCE,
        std::time::Duration::from_millis(100),
        || {
            let (mut devices, request) = (devices.clone(), latest(&owner));
            async move {
                devices
                    .get_latest(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    let hidden = devices
        .clone()
        .get_latest(latest(&neighbour))
        .await
        .expect_err("another tenant's device");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    neighbour_finds_nothing(&channel, &methods, &owner, &neighbour).await;

    // grpc-web on the web origin: the same layer answers.
    emberline_common::http::install_crypto_provider();
    let web = reqwest::Client::new();
    for m in methods.iter().filter(|m| !is_public(m)) {
        let (code, _) = grpc_web(&web, &up, &m.path, Vec::new(), None).await;
        assert_eq!(
            code,
            Some(16),
            "{} over grpc-web without credentials",
            m.path
        );
        if emberline_gateway::rule(&m.path) != Rule::Needs(Permission::Read) {
            let (code, _) = grpc_web(&web, &up, &m.path, Vec::new(), Some(&viewer)).await;
            assert_eq!(code, Some(7), "{} over grpc-web as a viewer", m.path);
        }
    }
}

/// Calls `path` over grpc-web with `message`; the grpc-status and the response headers.
async fn grpc_web(
    client: &reqwest::Client,
    up: &Up,
    path: &str,
    message: Vec<u8>,
    token: Option<&str>,
) -> (Option<u32>, reqwest::header::HeaderMap) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut request = client
        .post(format!("http://{}{path}", up.web))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = request.send().await.expect("grpc-web call");
    let headers = response.headers().clone();
    let in_headers = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if in_headers.is_some() {
        return (in_headers, headers);
    }
    let bytes = response.bytes().await.expect("body");
    let text = String::from_utf8_lossy(&bytes);
    let code = text
        .split("grpc-status:")
        .nth(1)
        .and_then(|rest| rest.trim_start().split(['\r', '\n']).next())
        .and_then(|v| v.trim().parse().ok());
    (code, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_password_is_slowed_without_locking_out_the_owner_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start(dir.path());
    up.channel().await;
    emberline_common::http::install_crypto_provider();
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .build()
            .expect("client")
    };
    let attacker = from(1);
    let owner = from(2);
    let wrong = SignInRequest {
        user: "admin".into(),
        password: "not-the-password".into(),
        cookie: false,
    }
    .encode_to_vec();
    let right = SignInRequest {
        user: "admin".into(),
        password: PASSWORD.into(),
        cookie: false,
    }
    .encode_to_vec();
    let path = "/emberline.v1.AuthService/SignIn";
    let mut refused = [0u32; 2];
    let started = std::time::Instant::now();
    for attempt in 0..1_000 {
        let (code, _) = grpc_web(&attacker, &up, path, wrong.clone(), None).await;
        match code {
            Some(16) => refused[0] += 1,
            Some(8) => refused[1] += 1,
            other => panic!("attempt {attempt}: unexpected status {other:?}"),
        }
    }
    // Five wrong passwords are free, the sixth starts a delay of 1 s that doubles with each
    // further failure (up to 15 min): in t seconds of guessing at most log2(t + 1) + 1 more
    // guesses are checked; every other one is refused unchecked.
    let elapsed = started.elapsed().as_secs_f64();
    let most = 6 + (elapsed + 1.0).log2().ceil() as u32 + 1;
    assert!(
        (6..=most).contains(&refused[0]) && refused[0] + refused[1] == 1_000,
        "[checked, throttled] = {refused:?} in {elapsed:.1} s (at most {most} checked)"
    );
    let (code, _) = grpc_web(&attacker, &up, path, right.clone(), None).await;
    assert_eq!(
        code,
        Some(8),
        "the guessing address waits even with the right password"
    );
    let (code, _) = grpc_web(&owner, &up, path, right, None).await;
    assert_eq!(code, Some(0), "the owner signs in from another address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_session_lives_in_http_only_cookies_and_ends_on_sign_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start(dir.path());
    let channel = up.channel().await;
    emberline_common::http::install_crypto_provider();
    let web = reqwest::Client::new();
    let sign_in = SignInRequest {
        user: "admin".into(),
        password: PASSWORD.into(),
        cookie: true,
    }
    .encode_to_vec();
    let (code, headers) =
        grpc_web(&web, &up, "/emberline.v1.AuthService/SignIn", sign_in, None).await;
    assert_eq!(code, Some(0));
    let cookies: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
    let pair = |c: &str| c.split(';').next().unwrap_or_default().to_owned();
    let access = pair(
        cookies
            .iter()
            .find(|c| c.starts_with("emberline_access="))
            .expect("access"),
    );
    let refresh = pair(
        cookies
            .iter()
            .find(|c| c.starts_with("emberline_refresh="))
            .expect("refresh"),
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("emberline_refresh=")
            && c.contains("Path=/emberline.v1.AuthService/"))
    );

    // The cookie is a credential on the web origin…
    let who = web
        .post(format!("http://{}/emberline.v1.AuthService/WhoAmI", up.web))
        .header("content-type", "application/grpc-web+proto")
        .header("cookie", &access)
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("who am i");
    let body = who.bytes().await.expect("body");
    assert!(
        String::from_utf8_lossy(&body).contains("grpc-status:0"),
        "{body:?}"
    );

    // …and signing out with the refresh cookie ends the session for good.
    let out = web
        .post(format!(
            "http://{}/emberline.v1.AuthService/SignOut",
            up.web
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("cookie", format!("{access}; {refresh}"))
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("sign out");
    let cleared: Vec<String> = out
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")) && cleared.len() == 2,
        "{cleared:?}"
    );
    let refresh_token = refresh.trim_start_matches("emberline_refresh=").to_owned();
    let again = AuthServiceClient::new(channel.clone())
        .refresh(emberline_proto::v1::RefreshRequest {
            refresh_token,
            cookie: false,
        })
        .await
        .expect_err("a signed-out session does not refresh");
    assert_eq!(again.code(), Code::Unauthenticated);
    // A copy of the access cookie kept from before is worthless at once, not in 15 minutes.
    let stale = web
        .post(format!("http://{}/emberline.v1.AuthService/WhoAmI", up.web))
        .header("content-type", "application/grpc-web+proto")
        .header("cookie", &access)
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("who am i");
    let status = stale
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(status.as_deref(), Some("16"), "{stale:?}");
}

#[test]
fn auth_mode_none_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "up",
            "--grpc-addr",
            "0.0.0.0:0",
            "--web-addr",
            "127.0.0.1:0",
        ])
        .env("EMBERLINE__AUTH__MODE", "none")
        .env("EMBERLINE__OPS__ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("run up");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allowed only on loopback addresses"), "{err}");
    let _ = std::io::stdout().flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_shows_one_cook_live_and_nothing_else() {
    use emberline_proto::v1::cook_service_client::CookServiceClient;
    use emberline_proto::v1::reading_service_client::ReadingServiceClient;
    use emberline_proto::v1::share_service_client::ShareServiceClient;
    use emberline_proto::v1::trend_service_client::TrendServiceClient;
    use emberline_proto::v1::{
        CreateShareLinkRequest, GetCookRequest, GetHistoryRequest, RevokeShareLinkRequest,
        StartCookRequest, StartFrom, SubscribeTrendsRequest,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.password");
    std::fs::write(&admin, PASSWORD).expect("admin password");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let up = Up::start_with(
        &data,
        free_port(),
        &[
            ("EMBERLINE__AUTH__MODE", "password"),
            (
                "EMBERLINE__AUTH__ADMIN_PASSWORD_FILE",
                admin.to_str().expect("utf-8 path"),
            ),
            ("EMBERLINE__SIMULATOR__DEVICES", "2"),
        ],
    );
    let channel = up.channel().await;
    let owner = sign_in(&channel, "admin").await;
    let devices = DeviceServiceClient::new(channel.clone());
    support::eventually(
        "both simulated grills projected",
        support::PATIENCE,
        std::time::Duration::from_millis(100),
        || {
            let mut devices = devices.clone();
            let request = bearer(&owner, ListDevicesRequest::default());
            async move {
                let listed = devices
                    .list_devices(request)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .devices;
                (listed.iter().filter(|d| d.probe_count > 0).count() == 2)
                    .then_some(())
                    .ok_or(format!("{listed:?}"))
            }
        },
    )
    .await;
    let mut cooks = CookServiceClient::new(channel.clone());
    let start = |device: &str| {
        bearer(
            &owner,
            StartCookRequest {
                device_id: device.into(),
                what: "ribs".into(),
                ..StartCookRequest::default()
            },
        )
    };
    let shared = cooks
        .start_cook(start("sim-1"))
        .await
        .expect("cook")
        .into_inner()
        .cook_id;
    let other = cooks
        .start_cook(start("sim-2"))
        .await
        .expect("cook")
        .into_inner()
        .cook_id;
    // As the page does, share a cook once it is shown: a cook started a moment ago is not
    // projected yet, and sharing it is NOT_FOUND until it is.
    cook_shown(&channel, &owner, &shared).await;
    let mut shares = ShareServiceClient::new(channel.clone());
    let created = shares
        .create_share_link(bearer(
            &owner,
            CreateShareLinkRequest {
                cook_id: shared.clone(),
                expires_at_ms: None,
            },
        ))
        .await
        .expect("share")
        .into_inner();
    let link = created.token.clone();
    assert_eq!(created.path, format!("/s/{link}"));

    // The shared cook (once projected), and nothing else.
    let cook = support::eventually(
        "the shared cook readable through its link",
        support::PATIENCE,
        std::time::Duration::from_millis(100),
        || {
            let (mut cooks, request) = (
                cooks.clone(),
                bearer(
                    &link,
                    GetCookRequest {
                        cook_id: shared.clone(),
                    },
                ),
            );
            async move { cooks.get_cook(request).await.map_err(|e| e.to_string()) }
        },
    )
    .await
    .into_inner()
    .cook
    .expect("cook");
    assert_eq!(cook.device_id, "sim-1");
    let hidden = cooks
        .get_cook(bearer(&link, GetCookRequest { cook_id: other }))
        .await
        .expect_err("the other cook");
    assert_eq!(hidden.code(), Code::NotFound);
    let listed = devices
        .clone()
        .list_devices(bearer(&link, ListDevicesRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .devices;
    let ids: Vec<&str> = listed.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["sim-1"]);
    // The page's device feed starts from the same one device.
    let snapshot = devices
        .clone()
        .subscribe_devices(bearer(
            &link,
            emberline_proto::v1::SubscribeDevicesRequest::default(),
        ))
        .await
        .expect("device feed")
        .into_inner()
        .next()
        .await
        .expect("a snapshot")
        .expect("ok");
    assert!(snapshot.snapshot);
    let fed: Vec<&str> = snapshot
        .devices
        .iter()
        .map(|d| d.device_id.as_str())
        .collect();
    assert_eq!(fed, ["sim-1"]);
    let hidden = devices
        .clone()
        .get_latest(bearer(
            &link,
            GetLatestRequest {
                device_id: "sim-2".into(),
            },
        ))
        .await
        .expect_err("another device");
    assert_eq!(hidden.code(), Code::NotFound);
    let history = ReadingServiceClient::new(channel.clone())
        .get_history(bearer(
            &link,
            GetHistoryRequest {
                device_id: "sim-1".into(),
                probe_id: "pit".into(),
                from_ms: 0,
                to_ms: i64::MAX,
                limit: 0,
                step_ms: 0,
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .points;
    assert!(
        history.iter().all(|p| p.event_time_ms >= cook.started_ms),
        "readings before the cook are not shown"
    );
    let mut trends = TrendServiceClient::new(channel.clone())
        .subscribe_trends(bearer(
            &link,
            SubscribeTrendsRequest {
                device_id: String::new(),
                resume: Default::default(),
                start: StartFrom::Earliest as i32,
            },
        ))
        .await
        .expect("live trends")
        .into_inner();
    for _ in 0..8 {
        let event = trends.next().await.expect("an update").expect("ok");
        assert_eq!(event.device_id, "sim-1");
        assert!(event.event_time_ms >= cook.started_ms, "{event:?}");
    }

    // Every other call is refused to the link, whatever it asks.
    let share_reads = [
        "/emberline.v1.AuthService/WhoAmI",
        "/emberline.v1.DeviceService/ListDevices",
        "/emberline.v1.DeviceService/GetLatest",
        "/emberline.v1.DeviceService/SubscribeDevices",
        "/emberline.v1.ReadingService/GetHistory",
        "/emberline.v1.TrendService/SubscribeTrends",
        "/emberline.v1.CookService/GetCook",
        "/emberline.v1.CookService/ListCooks",
        "/emberline.v1.PredictionService/ListPredictions",
        "/emberline.v1.PredictionService/SubscribePredictions",
        "/emberline.v1.AlertService/ListAlerts",
        "/emberline.v1.AlertService/SubscribeAlerts",
    ];
    for m in methods(channel.clone())
        .await
        .iter()
        .filter(|m| !is_public(m))
    {
        let code = call(&channel, m, Some(&link)).await.code();
        if share_reads.contains(&m.path.as_str()) {
            assert!(
                !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                "{} refused a share link: {code:?}",
                m.path
            );
        } else {
            assert_eq!(code, Code::PermissionDenied, "{} as a share link", m.path);
        }
    }

    // Revoked, the link shows nothing: an open stream ends too.
    let mut open = TrendServiceClient::new(channel.clone())
        .subscribe_trends(bearer(
            &link,
            SubscribeTrendsRequest {
                device_id: "sim-1".into(),
                resume: Default::default(),
                start: StartFrom::Latest as i32,
            },
        ))
        .await
        .expect("a stream before revoking")
        .into_inner();
    shares
        .revoke_share_link(bearer(
            &owner,
            RevokeShareLinkRequest {
                id: created.link.expect("link").id,
            },
        ))
        .await
        .expect("revoke");
    let gone = cooks
        .get_cook(bearer(&link, GetCookRequest { cook_id: shared }))
        .await
        .expect_err("revoked");
    assert_eq!(gone.code(), Code::Unauthenticated);
    let ended = tokio::time::timeout(support::PATIENCE, async {
        loop {
            match open.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the open stream ends after the link is revoked")
    .expect("with a status");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_and_callers_over_budget_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start(dir.path());
    let channel = up.channel().await;
    let owner = sign_in(&channel, "admin").await;

    // A request above the size limit is refused before it is decoded.
    let add_note = Method {
        path: "/emberline.v1.CookService/AddNote".into(),
        streaming: false,
        ids: Vec::new(),
    };
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let big = bearer(&owner, vec![0u8; emberline_gateway::MAX_REQUEST_BYTES + 1]);
    let refused = grpc
        .unary(big, add_note.path.parse().expect("path"), Raw)
        .await
        .expect_err("too large");
    assert!(
        matches!(refused.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{refused:?}"
    );

    // One caller's burst is spent, then refused with the wait; another caller is not.
    let list = Method {
        path: "/emberline.v1.DeviceService/ListDevices".into(),
        streaming: false,
        ids: Vec::new(),
    };
    // Calls go out 50 at a time, so even a slow, loaded machine spends the budget faster
    // than it refills; the bound only stops a budget that never runs out.
    let burst = emberline_gateway::rate::BURST as usize;
    let (mut granted, mut over) = (0, None);
    for _ in 0..burst * 20 / 50 {
        let calls = (0..50).map(|_| call(&channel, &list, Some(&owner)));
        for status in futures::future::join_all(calls).await {
            match status.code() {
                Code::Ok => granted += 1,
                Code::ResourceExhausted => over = over.or(Some(status)),
                _ => panic!("{status:?}"),
            }
        }
        if over.is_some() {
            break;
        }
    }
    let status = over.expect("the budget ran out");
    assert!(granted >= burst, "refused after only {granted} calls");
    assert!(status.message().contains("retry in"), "{status:?}");
    add_user(&dir.path().join("data"), "viewer", "viewer");
    let viewer = sign_in(&channel, "viewer").await;
    assert_eq!(call(&channel, &list, Some(&viewer)).await.code(), Code::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_read_their_tenants_audit_trail_and_nobody_elses() {
    use emberline_proto::v1::audit_service_client::AuditServiceClient;
    use emberline_proto::v1::token_service_client::TokenServiceClient;
    use emberline_proto::v1::{CreateTokenRequest, ListAuditEventsRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start(dir.path());
    let data = dir.path().join("data");
    let channel = up.channel().await;
    let owner = sign_in(&channel, "admin").await;
    let wrong = AuthServiceClient::new(channel.clone())
        .sign_in(SignInRequest {
            user: "admin".into(),
            password: "not the password".into(),
            cookie: false,
        })
        .await
        .expect_err("wrong password");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    TokenServiceClient::new(channel.clone())
        .create_token(bearer(
            &owner,
            CreateTokenRequest {
                name: "scripts".into(),
                scope: "read".into(),
                expires_at_ms: None,
            },
        ))
        .await
        .expect("token");
    // Changes made with the command while the server runs are in the trail too.
    add_user(&data, "sam", "viewer");
    add_neighbour(&data).await;
    let viewer = sign_in(&channel, "sam").await;
    let neighbour = sign_in(&channel, "neighbour").await;

    let audit = AuditServiceClient::new(channel.clone());
    let trail = audit_trail_until(&channel, &owner, "the trail has every event", |events| {
        let has = |kind: &str, who: &str| {
            events
                .iter()
                .any(|e| e.kind == kind && (e.actor == who || e.subject.as_deref() == Some(who)))
        };
        has("signed_in", "admin")
            && has("sign_in_failed", "admin")
            && has("token_created", "admin")
            && has("user_added", "sam")
            && has("signed_in", "sam")
    })
    .await;
    assert!(
        trail
            .iter()
            .all(|e| e.actor != "neighbour" && e.subject.as_deref() != Some("neighbour")),
        "another tenant's events: {trail:?}"
    );
    assert!(
        trail
            .iter()
            .filter(|e| e.kind == "sign_in_failed")
            .all(|e| e.address.is_some()),
        "failed sign-ins carry the address"
    );
    let theirs = audit
        .clone()
        .list_audit_events(bearer(&neighbour, ListAuditEventsRequest::default()))
        .await
        .expect("the neighbour's trail")
        .into_inner()
        .events;
    assert!(
        theirs
            .iter()
            .all(|e| e.actor != "admin" && e.subject.as_deref() != Some("sam")),
        "{theirs:?}"
    );
    let denied = audit
        .clone()
        .list_audit_events(bearer(&viewer, ListAuditEventsRequest::default()))
        .await
        .expect_err("a viewer reads no trail");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

/// An owner manages the tenant's users through `UserService`: a user added with a role
/// signs in with it, each change is in the audit trail once and by the owner (not also by
/// "command line"), the owner cannot remove another tenant's user or the last owner, and a
/// removed user's session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_add_and_remove_their_tenants_users_through_the_api() {
    use emberline_proto::v1::user_service_client::UserServiceClient;
    use emberline_proto::v1::{AddUserRequest, ListUsersRequest, RemoveUserRequest, WhoAmIRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start(dir.path());
    let channel = up.channel().await;
    add_neighbour(&dir.path().join("data")).await;
    let owner = sign_in(&channel, "admin").await;
    let mut users = UserServiceClient::new(channel.clone());

    let short = users
        .add_user(bearer(
            &owner,
            AddUserRequest {
                name: "sam".into(),
                role: "cook".into(),
                password: "short".into(),
            },
        ))
        .await
        .expect_err("too short");
    assert!(short.message().starts_with("password:"), "{short:?}");
    let added = users
        .add_user(bearer(
            &owner,
            AddUserRequest {
                name: "sam".into(),
                role: "cook".into(),
                password: PASSWORD.into(),
            },
        ))
        .await
        .expect("added")
        .into_inner()
        .user
        .expect("the user");
    assert_eq!((added.name.as_str(), added.role.as_str()), ("sam", "cook"));
    let listed = users
        .list_users(bearer(&owner, ListUsersRequest {}))
        .await
        .expect("list")
        .into_inner()
        .users;
    assert_eq!(
        listed.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["admin", "sam"],
        "the tenant's users only"
    );
    let sam = sign_in(&channel, "sam").await;
    let me = AuthServiceClient::new(channel.clone())
        .who_am_i(bearer(&sam, WhoAmIRequest {}))
        .await
        .expect("sam is signed in")
        .into_inner();
    assert_eq!(me.role, "cook");

    for (name, code) in [
        ("neighbour", Code::NotFound),
        ("admin", Code::InvalidArgument),
    ] {
        let refused = users
            .remove_user(bearer(&owner, RemoveUserRequest { name: name.into() }))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), code, "{name}: {refused:?}");
    }
    users
        .remove_user(bearer(&owner, RemoveUserRequest { name: "sam".into() }))
        .await
        .expect("removed");
    let ended = AuthServiceClient::new(channel.clone())
        .who_am_i(bearer(&sam, WhoAmIRequest {}))
        .await
        .expect_err("sam's session ended");
    assert_eq!(ended.code(), Code::Unauthenticated);

    let trail = audit_trail_until(&channel, &owner, "the removal is in the trail", |events| {
        events.iter().any(|e| e.kind == "user_removed")
    })
    .await;
    let about_sam = |kind: &str| {
        trail
            .iter()
            .filter(|e| e.kind == kind && e.subject.as_deref() == Some("sam"))
            .map(|e| e.actor.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(about_sam("user_added"), ["admin"], "{trail:?}");
    assert_eq!(about_sam("user_removed"), ["admin"], "{trail:?}");
}

/// The owner's audit trail once `done` holds for it (waiting for the events in flight).
async fn audit_trail_until(
    channel: &Channel,
    owner: &str,
    what: &str,
    done: impl Fn(&[emberline_proto::v1::AuditEntry]) -> bool,
) -> Vec<emberline_proto::v1::AuditEntry> {
    use emberline_proto::v1::ListAuditEventsRequest;
    use emberline_proto::v1::audit_service_client::AuditServiceClient;
    let audit = AuditServiceClient::new(channel.clone());
    support::eventually(
        what,
        support::PATIENCE,
        std::time::Duration::from_millis(100),
        || {
            let (mut audit, request) = (
                audit.clone(),
                bearer(owner, ListAuditEventsRequest::default()),
            );
            let done = &done;
            async move {
                let events = audit
                    .list_audit_events(request)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .events;
                if done(&events) {
                    Ok(events)
                } else {
                    Err(format!("{events:?}"))
                }
            }
        },
    )
    .await
}
