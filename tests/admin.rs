//! The admin API (`testbed.admin.v1.Routes`) and `testbed route`: a missing token is
//! UNAUTHENTICATED, a wrong one PERMISSION_DENIED, and neither changes what the port serves;
//! `serve` refuses to start the API without a token; routes added, retired, drained and removed
//! through the CLI change what a running `testbed serve` answers; the API is never on the
//! public port. Over TLS: a client certificate from `--admin-client-ca` changes routes (also
//! through `testbed route --admin https://...`) and is logged as `cert:NAME`, one not named by
//! `--admin-client-name` is PERMISSION_DENIED, another CA's or an expired one is refused at the
//! handshake (logged at debug), neither certificate nor token is UNAUTHENTICATED, a token still
//! works (and one sent to an API that takes certificates only is refused, saying so).
//! Connections that stay silent before or after the TLS handshake are closed at the handshake
//! deadline; past the listener's limit a connection that never authenticated makes room, and
//! when every one did, new connections are closed at once (more in `tests/limits.rs`).

use crate::common::credentials::{pki, tls_handshake, token_file, token_file_named};
use crate::common::frames::{self, RawConn};
use crate::common::{probe, start, temp_dir};
use port::admin::pb::routes_client::RoutesClient;
use port::admin::pb::{AddRequest, DrainRequest, ListRequest, RemoveRequest, ReplaceRequest};
use port::admin::{AdminConfig, RunningAdmin, Tokens};
use port::child::ChildServer;
use port::deployment::Deployment;
use port::server::RunningServer;
use services::pb::{v1, v2};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tonic::Code;

pub(crate) const TOKEN: &str = "alice-token-0123456789";
/// The longest a test waits for what should happen at once or by a deadline of a second or so.
const PATIENCE: Duration = Duration::from_secs(30);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

/// A v1-only router in this process, with the admin API on its own port for [`TOKEN`].
pub(crate) async fn router_with_admin() -> (RunningServer, RunningAdmin) {
    let server = start(Deployment::V1Only).await;
    let handle = server.router.clone().expect("a routed deployment");
    let tokens = Tokens::single("alice", TOKEN).expect("a valid token");
    let config = AdminConfig::plaintext("127.0.0.1:0".parse().unwrap(), tokens);
    let admin = port::admin::start(config, handle, HashMap::new(), None)
        .await
        .expect("the admin API starts");
    (server, admin)
}

/// The `(name, draining)` of each backend, listed with the right token.
async fn listed(admin: SocketAddr) -> Vec<(String, bool)> {
    let mut client = port::admin::connect(admin, TOKEN).await.unwrap();
    let reply = client.list(ListRequest {}).await.unwrap().into_inner();
    reply
        .backends
        .into_iter()
        .map(|b| (b.name, b.draining))
        .collect()
}

/// The status code of each change attempted with `client`.
async fn attempt_changes<T>(client: &mut RoutesClient<T>) -> Vec<Code>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let upstream = "v2=2.0.0@127.0.0.1:1".to_string();
    vec![
        client
            .add(AddRequest {
                upstream: upstream.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        client
            .replace(ReplaceRequest {
                upstream,
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        client
            .drain(DrainRequest {
                name: "v1".into(),
                timeout_ms: 0,
            })
            .await
            .unwrap_err()
            .code(),
        client
            .remove(RemoveRequest { name: "v1".into() })
            .await
            .unwrap_err()
            .code(),
        client.list(ListRequest {}).await.unwrap_err().code(),
    ]
}

/// Every change attempted with `client`, and a List, are refused with `code`; the List's
/// message says `says`.
async fn assert_all_refused<T>(client: &mut RoutesClient<T>, code: Code, says: &str)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    assert_eq!(attempt_changes(client).await, [code; 5]);
    let status = client.list(ListRequest {}).await.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{status:?}");
}

#[tokio::test]
async fn a_missing_token_is_unauthenticated_a_wrong_one_denied_and_nothing_changes() {
    let (server, admin) = router_with_admin().await;
    let before = listed(admin.addr).await;
    assert_eq!(before, [("v1".to_string(), false)]);

    let mut anonymous = RoutesClient::new(client::connect(admin.addr).await.unwrap());
    assert_all_refused(
        &mut anonymous,
        Code::Unauthenticated,
        "missing `authorization",
    )
    .await;
    let mut wrong = port::admin::connect(admin.addr, "mallory-token-0123456789")
        .await
        .unwrap();
    assert_all_refused(
        &mut wrong,
        Code::PermissionDenied,
        "not one this admin API accepts",
    )
    .await;

    assert_eq!(listed(admin.addr).await, before, "the table is unchanged");
    // And the port still serves v1 from v1, not drained, not removed.
    probe(&server).await;
    let mut v1 =
        v1::incrementer_client::IncrementerClient::new(client::connect(server.addr).await.unwrap());
    let reply = v1
        .increment(v1::IncrementRequest { value: 1 })
        .await
        .unwrap();
    assert_eq!(reply.metadata().get("x-api-version").unwrap(), "1.0.0");
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_admin_api_is_not_served_on_the_public_port() {
    let (server, admin) = router_with_admin().await;
    let mut on_port = port::admin::connect(server.addr, TOKEN).await.unwrap();
    let status = on_port.list(ListRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let status = on_port
        .remove(RemoveRequest { name: "v1".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(listed(admin.addr).await, [("v1".to_string(), false)]);
    probe(&server).await;
}

#[tokio::test]
async fn bad_admin_requests_get_invalid_argument_or_not_found() {
    let (_server, admin) = router_with_admin().await;
    let mut client = port::admin::connect(admin.addr, TOKEN).await.unwrap();
    for (upstream, code, says) in [
        ("", Code::InvalidArgument, "empty"),
        (
            "v2",
            Code::InvalidArgument,
            "expected NAME=VERSION@HOST:PORT",
        ),
        ("v2=two@127.0.0.1:1", Code::InvalidArgument, "not semver"),
        (
            "v1=1.0.0@127.0.0.1:1",
            Code::AlreadyExists,
            "already in the route table",
        ),
    ] {
        let status = client
            .add(AddRequest {
                upstream: upstream.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{upstream:?}: {status:?}");
        assert!(status.message().contains(says), "{upstream:?}: {status:?}");
    }
    let status = client
        .replace(ReplaceRequest {
            upstream: "v9=2.0.0@127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    for name in ["nope", ""] {
        let drained = client
            .drain(DrainRequest {
                name: name.into(),
                timeout_ms: 0,
            })
            .await
            .unwrap_err();
        let removed = client
            .remove(RemoveRequest { name: name.into() })
            .await
            .unwrap_err();
        let want = match name {
            "" => Code::InvalidArgument,
            _ => Code::NotFound,
        };
        assert_eq!((drained.code(), removed.code()), (want, want), "{name:?}");
    }
    let status = client
        .drain(DrainRequest {
            name: "v1".into(),
            timeout_ms: 600_001,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(listed(admin.addr).await, [("v1".to_string(), false)]);
}

/// Runs `testbed ARGS...` to completion with `env`.
async fn testbed(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(exe())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("the testbed binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn serve_refuses_to_start_the_admin_api_without_a_usable_token() {
    let dir = temp_dir("admin-refusal");
    let weak = token_file_named(dir.path(), "weak", "alice short\n");
    let good = token_file_named(dir.path(), "good", &format!("alice {TOKEN}\n"));
    let open = dir.path().join("open");
    std::fs::write(&open, format!("alice {TOKEN}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (weak, good, open) = (
        weak.to_str().unwrap(),
        good.to_str().unwrap(),
        open.to_str().unwrap(),
    );
    let serve = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    for (extra, env, says) in [
        (&[][..], &[][..], "the admin API needs a token"),
        (
            &["--admin-token-env", "TESTBED_TEST_UNSET_TOKEN"][..],
            &[][..],
            "unset or empty",
        ),
        (
            &["--admin-token-env", "TESTBED_TEST_TOKEN"][..],
            &[("TESTBED_TEST_TOKEN", "")][..],
            "unset or empty",
        ),
        (
            &["--admin-token-file", weak][..],
            &[][..],
            "must be 16 to 256",
        ),
        (
            &["--admin-token-file", open][..],
            &[][..],
            "open to its group or others (mode 644)",
        ),
        (
            &["--admin-token-file", "/nonexistent/tokens"][..],
            &[][..],
            "cannot read the admin tokens",
        ),
        (
            &["--admin-token-file", good, "--admin-client-ca", good][..],
            &[][..],
            "--admin-tls-cert",
        ),
        (
            &["--admin-token-file", good, "--backend", "v1"][..],
            &[][..],
            "has no route table",
        ),
    ] {
        let mut args = serve.to_vec();
        args.extend(extra);
        let output = testbed(&args, env).await;
        assert!(!output.status.success(), "{extra:?} started");
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{extra:?} printed that it serves");
    }
}

/// `testbed serve --backend API` on a free port.
async fn backend(api: &str) -> ChildServer {
    ChildServer::testbed(exe(), &["serve", "--backend", api, "--addr", "127.0.0.1:0"])
        .await
        .expect("the backend process starts")
}

/// A v1 call through `addr`: the value and the version that served it, or the status.
async fn call_v1(addr: SocketAddr) -> Result<(i64, String), Code> {
    let mut client =
        v1::incrementer_client::IncrementerClient::new(client::connect(addr).await.unwrap());
    let reply = client
        .increment(v1::IncrementRequest { value: 41 })
        .await
        .map_err(|status| status.code())?;
    let version = served_by(reply.metadata());
    Ok((reply.into_inner().value, version))
}

/// The version the router says served a reply (`x-api-version`).
fn served_by(metadata: &tonic::metadata::MetadataMap) -> String {
    let version = metadata
        .get("x-api-version")
        .expect("the router names the version");
    version.to_str().expect("a version is ASCII").to_string()
}

/// A v2 call (step 5) through `addr`, as [`call_v1`].
async fn call_v2(addr: SocketAddr) -> Result<(i64, String), Code> {
    let mut client =
        v2::incrementer_client::IncrementerClient::new(client::connect(addr).await.unwrap());
    let request = crate::common::v2_request(41, Some(5), 1);
    let reply = client
        .increment(request)
        .await
        .map_err(|status| status.code())?;
    let version = served_by(reply.metadata());
    Ok((reply.into_inner().value, version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_added_retired_drained_and_removed_with_testbed_route_change_what_is_served() {
    let (v1_process, v2_process) = (backend("v1").await, backend("v2").await);
    let dir = temp_dir("admin-cli");
    let tokens = token_file(
        dir.path(),
        &format!("# who may change routes\nci {TOKEN}\n"),
    );
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let upstream_v1 = format!("v1=1.0.0@{}", v1_process.addr);
    let mut router = ChildServer::testbed(
        exe(),
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--upstream",
            &upstream_v1,
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-token-file",
            tokens.to_str().unwrap(),
        ],
    )
    .await
    .expect("the router starts");
    let line = router.next_line().await.unwrap();
    let admin = line.rsplit(' ').next().unwrap().to_string();
    assert!(line.starts_with("testbed admin API on "), "{line}");
    let port = router.addr;
    let token = token_file.to_str().unwrap();
    let route = |args: &[&str]| {
        let mut all = vec!["route"];
        all.extend(args);
        all.extend(["--admin", &admin, "--token-file", token]);
        let all: Vec<String> = all.into_iter().map(str::to_string).collect();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            testbed(&all, &[]).await
        }
    };
    let ok = |output: Output| {
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    assert_eq!(call_v1(port).await, Ok((42, "1.0.0".into())));
    assert_eq!(call_v2(port).await, Err(Code::Unimplemented));
    let listed = ok(route(&["list"]).await);
    assert!(listed.contains(&v1_process.addr.to_string()), "{listed}");

    let upstream_v2 = format!("v2=2.0.0@{}", v2_process.addr);
    let added = ok(route(&["add", &upstream_v2]).await);
    assert!(added.starts_with("added v2"), "{added}");
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));
    assert_eq!(call_v1(port).await, Ok((42, "1.0.0".into())));

    // Refusals exit non-zero with the status, and change nothing.
    let again = route(&["add", &upstream_v2]).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("AlreadyExists"),
        "{}",
        stderr(&again)
    );
    let backwards = route(&["replace", &format!("{upstream_v1}+increment.v2")]).await;
    assert!(!backwards.status.success());
    let why = stderr(&backwards);
    assert!(
        why.contains("FailedPrecondition")
            && why.contains("FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED"),
        "{why}"
    );
    assert_eq!(call_v1(port).await, Ok((42, "1.0.0".into())));

    // v1 retired onto v2: v1 clients are answered by 2.0.0.
    ok(route(&["replace", &format!("{upstream_v2}+increment.v1")]).await);
    assert_eq!(call_v1(port).await, Ok((42, "2.0.0".into())));

    let drained = ok(route(&["drain", "v1", "--timeout-secs", "5"]).await);
    assert!(drained.contains("v1 is draining"), "{drained}");
    let removed = ok(route(&["remove", "v1"]).await);
    assert!(removed.starts_with("removed v1"), "{removed}");

    // The token from the environment instead of a file; JSON out.
    let output = testbed(
        &["route", "list", "--admin", &admin, "--json"],
        &[("TESTBED_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&ok(output).into_bytes()).unwrap();
    let backends = listed["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{listed}");
    assert_eq!(backends[0]["name"], "v2");
    assert_eq!(
        backends[0]["serves"],
        serde_json::json!(["increment.v2", "increment.v1"])
    );
    assert_eq!(backends[0]["address"], v2_process.addr.to_string());
    assert_eq!(call_v1(port).await, Ok((42, "2.0.0".into())));
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));

    // No token at all, and a wrong one.
    let output = testbed(&["route", "list", "--admin", &admin], &[]).await;
    assert!(
        stderr(&output).contains("no admin token"),
        "{}",
        stderr(&output)
    );
    let output = testbed(
        &["route", "remove", "v2", "--admin", &admin],
        &[("TESTBED_ADMIN_TOKEN", "mallory-token-0123456789")],
    )
    .await;
    assert!(
        stderr(&output).contains("PermissionDenied"),
        "{}",
        stderr(&output)
    );
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));
    router.terminate().await.unwrap();
}

/// The health status of `service` through `addr`.
async fn health(addr: SocketAddr, service: &str) -> Result<i32, Code> {
    let mut client =
        tonic_health::pb::health_client::HealthClient::new(client::connect(addr).await.unwrap());
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    match client.check(request).await {
        Ok(reply) => Ok(reply.into_inner().status),
        Err(status) => Err(status.code()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_with_an_api_the_router_never_saw_extends_its_catalog_at_runtime() {
    use crate::common::shop::{gateway_with_admin, shop, shop_python};
    use tonic_health::ServingStatus;
    let (Some(python), Some(grpcurl)) =
        (shop_python(), crate::common::tool(client::tools::grpcurl()))
    else {
        return;
    };
    let (v1, v2) = (
        shop(&python, "v1", &[]).await,
        shop(&python, "v2", &[]).await,
    );
    let dir = temp_dir("admin-shop");
    let (gw, admin_addr) =
        gateway_with_admin(format!("v1=1.0.0@{}", v1.addr), dir.path(), "ci", TOKEN).await;
    let mut admin = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    let packages = |reply: port::admin::pb::ListReply| reply.packages;
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1"]);
    assert_eq!(health(gw.addr, "shop.v2.Shop").await, Err(Code::NotFound));

    // Retiring v1 onto v2 is refused with compat's finding, and the catalog stays as it was.
    let status = admin
        .add(AddRequest {
            upstream: format!("v2=2.0.0@{}+shop.v1", v2.addr),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("GRPC_FIELD_SAME_VALUE_RANGE"),
        "{status:?}"
    );
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1"]);

    // Added as itself, shop.v2 becomes routed, healthy, listed and describable.
    admin
        .add(AddRequest {
            upstream: format!("v2=2.0.0@{}", v2.addr),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1", "shop.v2"]);
    let serving = ServingStatus::Serving as i32;
    assert_eq!(health(gw.addr, "shop.v2.Shop").await, Ok(serving));
    let addr = gw.addr.to_string();
    // grpcurl FLAGS... ADDR REST...: its output, which must be a success.
    let run = |flags: &[&str], rest: &[&str]| {
        let out = std::process::Command::new(&grpcurl)
            .arg("-plaintext")
            .args(flags)
            .arg(&addr)
            .args(rest)
            .output()
            .expect("grpcurl runs");
        assert!(out.status.success(), "{rest:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    tokio::task::block_in_place(|| {
        let list = run(&[], &["list"]);
        assert!(list.lines().any(|l| l == "shop.v2.Shop"), "{list}");
        let described = run(&[], &["describe", "shop.v2.Product"]);
        assert!(described.contains("int32 stock = 6;"), "{described}");
        let book = r#"{"sku": "book-1"}"#;
        let reply = run(&["-v", "-d", book], &["shop.v2.Shop/GetProduct"]);
        assert!(reply.contains("x-api-version: 2.0.0"), "{reply}");
        assert!(reply.contains(r#""stock": 12"#), "{reply}");
    });

    admin
        .remove(RemoveRequest { name: "v2".into() })
        .await
        .unwrap();
    // Its last backend gone, the package it brought leaves the catalog: health no longer
    // knows the service (the packages managed at start stay, NOT_SERVING when unrouted).
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(packages(list), ["shop.v1"]);
    assert_eq!(health(gw.addr, "shop.v2.Shop").await, Err(Code::NotFound));
}

/// The admin API over TLS (`pki`'s server certificate) on a free loopback port, set up from
/// the flags `serve` would have been given: `--admin-client-ca` the PKI's CA, and `tweak` adds
/// the rest (tokens, client names).
fn tls_admin_config(
    files: &port::tls::PkiFiles,
    tweak: impl FnOnce(&mut port::admin::AdminOptions),
) -> AdminConfig {
    let mut options = port::admin::AdminOptions {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_tls_cert: Some(files.server_cert.clone()),
        admin_tls_key: Some(files.server_key.clone()),
        admin_client_ca: Some(files.ca_cert.clone()),
        ..Default::default()
    };
    tweak(&mut options);
    options.config().expect("usable flags").expect("enabled")
}

/// The admin API of `config` over `server`'s router.
async fn start_admin(server: &RunningServer, config: AdminConfig) -> RunningAdmin {
    let handle = server.router.clone().expect("a routed deployment");
    port::admin::start(config, handle, HashMap::new(), None)
        .await
        .expect("the admin API starts")
}

/// A v1-only router in this process with its admin API over TLS ([`tls_admin_config`]).
async fn router_with_tls_admin(
    files: &port::tls::PkiFiles,
    tweak: impl FnOnce(&mut port::admin::AdminOptions),
) -> (RunningServer, RunningAdmin) {
    let server = start(Deployment::V1Only).await;
    let admin = start_admin(&server, tls_admin_config(files, tweak)).await;
    assert!(
        admin.address().starts_with("https://"),
        "{}",
        admin.address()
    );
    (server, admin)
}

/// A client of the TLS admin API at `admin` trusting `pki`'s CA, presenting the client
/// certificate `identity` and sending `token` when given.
async fn tls_admin(
    admin: SocketAddr,
    pki: &port::tls::TestPki,
    identity: Option<(&str, &str)>,
    token: Option<&str>,
) -> anyhow::Result<port::admin::AdminClient> {
    let address = port::admin::AdminAddress::Https {
        host: "localhost".into(),
        port: admin.port(),
    };
    port::admin::connect_to(&address, Some(&pki.client(identity)), token).await
}

/// The `(name, draining)` of each backend in `server`'s route table, read in this process.
fn table(server: &RunningServer) -> Vec<(String, bool)> {
    let router = server.router.as_ref().expect("a routed deployment");
    router
        .table()
        .backends()
        .into_iter()
        .map(|b| (b.name, b.draining))
        .collect()
}

/// Checks that a client presenting `identity` is kept from removing v1 at the handshake: the
/// connection fails, or its first call fails as a transport failure (UNAVAILABLE, or a status
/// carrying the connection's error as its source), never with a status of the admin API.
async fn assert_refused_at_handshake(
    admin: SocketAddr,
    pki: &port::tls::TestPki,
    identity: Option<(&str, &str)>,
) {
    let Ok(mut client) = tls_admin(admin, pki, identity, Some(TOKEN)).await else {
        return;
    };
    let removed =
        tokio::time::timeout(PATIENCE, client.remove(RemoveRequest { name: "v1".into() }))
            .await
            .expect("the refusal is prompt, not a hang");
    match removed {
        Ok(reply) => panic!("served: {reply:?}"),
        Err(status) => assert!(
            status.code() == Code::Unavailable || std::error::Error::source(&status).is_some(),
            "not a transport failure: {status:?}"
        ),
    }
}

#[tokio::test]
async fn over_tls_no_certificate_and_no_token_is_unauthenticated_and_a_token_still_works() {
    let (pki, files, _dir) = pki();
    let dir = temp_dir("admin-tls-token");
    let tokens = token_file(dir.path(), &format!("alice {TOKEN}\n"));
    let (server, admin) = router_with_tls_admin(&files, |options| {
        options.admin_token_file = Some(tokens);
    })
    .await;
    let v1_only = [("v1".to_string(), false)];
    assert_eq!(table(&server), v1_only);

    // Tokens and certificates together: a certificate is optional at the handshake, but a
    // call with neither gets nowhere.
    let mut anonymous = tls_admin(admin.addr, &pki, None, None).await.unwrap();
    assert_all_refused(
        &mut anonymous,
        Code::Unauthenticated,
        "no client certificate",
    )
    .await;

    // A token over TLS, without a certificate, still works; a wrong one is denied.
    let mut by_token = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    let listed = by_token.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.backends.len(), 1, "{listed:?}");
    let status = by_token
        .remove(RemoveRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let mut wrong = tls_admin(admin.addr, &pki, None, Some("mallory-token-0123456789"))
        .await
        .unwrap();
    assert_all_refused(
        &mut wrong,
        Code::PermissionDenied,
        "not one this admin API accepts",
    )
    .await;

    // A certificate from another CA, or an expired one, is refused at the handshake, even
    // with a good token; so is plaintext.
    let stranger = (pki.stranger_cert.as_str(), pki.stranger_key.as_str());
    assert_refused_at_handshake(admin.addr, &pki, Some(stranger)).await;
    let expired = (pki.expired_cert.as_str(), pki.expired_key.as_str());
    assert_refused_at_handshake(admin.addr, &pki, Some(expired)).await;
    let plaintext = match port::admin::connect(admin.addr, TOKEN).await {
        Err(_) => true,
        Ok(mut client) => client.list(ListRequest {}).await.is_err(),
    };
    assert!(plaintext, "plaintext was served on the TLS admin listener");

    // The certificate from the CA is served, and nothing refused changed the table.
    let good = (pki.client_cert.as_str(), pki.client_key.as_str());
    let mut by_cert = tls_admin(admin.addr, &pki, Some(good), None).await.unwrap();
    let listed = by_cert.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.backends.len(), 1, "{listed:?}");
    assert_eq!(table(&server), v1_only);
    assert_eq!(call_v1(server.addr).await, Ok((42, "1.0.0".into())));
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_certificate_not_named_by_admin_client_name_is_permission_denied() {
    let (pki, files, _dir) = pki();
    // The PKI's client certificate names "testbed" (its CN; its DNS name is client.testbed).
    let (server, admin) = router_with_tls_admin(&files, |options| {
        options.admin_client_names = vec!["alice".into()];
    })
    .await;
    let good = (pki.client_cert.as_str(), pki.client_key.as_str());
    let mut not_alice = tls_admin(admin.addr, &pki, Some(good), None).await.unwrap();
    assert_all_refused(&mut not_alice, Code::PermissionDenied, r#""testbed""#).await;
    // Without tokens every client must present a certificate: none is refused at the handshake.
    assert_refused_at_handshake(admin.addr, &pki, None).await;
    assert_eq!(table(&server), [("v1".to_string(), false)]);
    admin.shutdown().await.unwrap();

    // Named, the same certificate is let in.
    let config = tls_admin_config(&files, |options| {
        options.admin_client_names = vec!["alice".into(), "testbed".into()];
    });
    let admin = start_admin(&server, config).await;
    let mut testbed = tls_admin(admin.addr, &pki, Some(good), None).await.unwrap();
    let listed = testbed.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.backends.len(), 1, "{listed:?}");
    // This API takes no tokens: one sent with the certificate is refused, and told so.
    let mut with_token = tls_admin(admin.addr, &pki, Some(good), Some(TOKEN))
        .await
        .unwrap();
    let status = with_token.list(ListRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("this admin API accepts no bearer tokens (it takes client certificates)"),
        "{status:?}"
    );
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// The TLS admin API taking tokens too (so a client without a certificate finishes its
/// handshake), with its listener's limits set to `max_connections` and `handshake_timeout`.
async fn router_with_limited_tls_admin(
    files: &port::tls::PkiFiles,
    max_connections: usize,
    handshake_timeout: Duration,
) -> (RunningServer, RunningAdmin, tempfile::TempDir) {
    let dir = temp_dir("admin-limits");
    let tokens = token_file(dir.path(), &format!("alice {TOKEN}\n"));
    let config = tls_admin_config(files, |options| options.admin_token_file = Some(tokens))
        .with_limits(max_connections, handshake_timeout);
    let server = start(Deployment::V1Only).await;
    let admin = start_admin(&server, config).await;
    (server, admin, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_tls_admin_api_are_closed_at_the_handshake_deadline() {
    let (pki, files, _dir) = pki();
    let (server, admin, _tokens) =
        router_with_limited_tls_admin(&files, 64, Duration::from_secs(1)).await;
    // Silent before the TLS handshake, silent after it, and a preface cut short after it.
    let mut silent_tcp = RawConn::connect(admin.addr).await;
    let mut silent_tls = tls_handshake(admin.addr, &pki.ca_cert).await;
    let mut half_preface = tls_handshake(admin.addr, &pki.ca_cert).await;
    half_preface
        .write_all(&frames::PREFACE[..10])
        .await
        .unwrap();
    half_preface.flush().await.unwrap();
    // A client that speaks in time is served meanwhile.
    let mut client = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    client.list(ListRequest {}).await.unwrap();
    assert!(
        silent_tcp.closed_within(PATIENCE).await,
        "a connection that never started its TLS handshake is still open"
    );
    assert!(
        frames::closed_within(&mut silent_tls, PATIENCE).await,
        "a TLS connection that never sent the HTTP/2 preface is still open"
    );
    assert!(
        frames::closed_within(&mut half_preface, PATIENCE).await,
        "a TLS connection that sent half the HTTP/2 preface is still open"
    );
    client
        .list(ListRequest {})
        .await
        .expect("the client that spoke in time is still served");
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn past_the_tls_admin_apis_limit_an_idle_connection_makes_room_and_then_new_ones_are_closed()
{
    let (pki, files, _dir) = pki();
    // A handshake deadline far off: only the limit can close a connection here.
    let (server, admin, _tokens) =
        router_with_limited_tls_admin(&files, 2, Duration::from_secs(300)).await;
    let mut idle = RawConn::connect(admin.addr).await;
    let mut client = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    client.list(ListRequest {}).await.unwrap();
    // The listener is full: a new connection closes the one that never authenticated.
    let mut second = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    assert!(
        idle.closed_within(PATIENCE).await,
        "the idle connection is still open past the limit of 2"
    );
    second.list(ListRequest {}).await.unwrap();
    // Both slots are held by connections that authenticated: new ones are closed at once.
    for i in 0..3 {
        let mut extra = RawConn::connect(admin.addr).await;
        assert!(
            extra.closed_within(PATIENCE).await,
            "connection {i} past the limit of 2 is still open"
        );
    }
    for client in [&mut client, &mut second] {
        client
            .list(ListRequest {})
            .await
            .expect("a connection that authenticated is still served");
    }
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_route_over_https_with_a_client_certificate_changes_routes_and_logs_its_name() {
    let (_pki, files, _pki_dir) = pki();
    let v2_process = backend("v2").await;
    let dir = temp_dir("admin-mtls-cli");
    let log_path = dir.path().join("router.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut command = tokio::process::Command::new(exe());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--deployment", "v1-only"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .args(["--admin-tls-cert", &path(&files.server_cert)])
        .args(["--admin-tls-key", &path(&files.server_key)])
        .args(["--admin-client-ca", &path(&files.ca_cert)])
        // Refused handshakes are logged at debug only (anyone may connect): ask for them.
        .env("RUST_LOG", "info,port::accept=debug")
        // Plain text, so that a field reads `name="value"` in the log.
        .env("NO_COLOR", "1")
        .stderr(log);
    let mut router = ChildServer::spawn(command, "the router")
        .await
        .expect("the router starts with client certificates and no token");
    let line = router.next_line().await.unwrap();
    let admin = line.rsplit(' ').next().unwrap().to_string();
    assert!(
        line.starts_with("testbed admin API on https://127.0.0.1:"),
        "{line}"
    );
    let port = router.addr;
    let (ca, cert, key) = (
        path(&files.ca_cert),
        path(&files.client_cert),
        path(&files.client_key),
    );
    // testbed route ARGS... --admin ADMIN --ca CA EXTRA...: its output.
    let route = |args: &[&str], extra: &[&str]| {
        let mut all = vec!["route"];
        all.extend(args);
        all.extend(["--admin", &admin, "--ca", &ca]);
        all.extend(extra);
        let all: Vec<String> = all.into_iter().map(str::to_string).collect();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            testbed(&all, &[]).await
        }
    };
    let identity = ["--cert", cert.as_str(), "--key", key.as_str()];
    let ok = |output: Output| {
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let upstream_v2 = format!("v2=2.0.0@{}", v2_process.addr);
    assert_eq!(call_v2(port).await, Err(Code::Unimplemented));
    let added = ok(route(&["add", &upstream_v2], &identity).await);
    assert!(added.starts_with("added v2"), "{added}");
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));

    // Without a certificate or token, and with another CA's certificate: refused, no change.
    let bare = route(&["remove", "v2"], &[]).await;
    assert!(!bare.status.success());
    assert!(
        stderr(&bare).contains("no admin token"),
        "{}",
        stderr(&bare)
    );
    let (stranger_cert, stranger_key) = (path(&files.stranger_cert), path(&files.stranger_key));
    let stranger = route(
        &["remove", "v2"],
        &["--cert", &stranger_cert, "--key", &stranger_key],
    )
    .await;
    assert!(!stranger.status.success(), "a stranger removed v2");
    assert!(
        stderr(&stranger).contains("the connection broke")
            || stderr(&stranger).contains("cannot connect to the admin API"),
        "{}",
        stderr(&stranger)
    );
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));

    let listed = ok(route(&["list", "--json"], &identity).await);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v2"], "{listed}");
    // A token left in the environment (as the README's walk-through leaves it) is not sent
    // beside --cert: this admin API takes no tokens and would refuse the call.
    let mut all = vec!["route", "list", "--admin", &admin, "--ca", &ca];
    all.extend(identity);
    let with_env_token = testbed(&all, &[("TESTBED_ADMIN_TOKEN", TOKEN)]).await;
    assert!(
        with_env_token.status.success(),
        "{}",
        stderr(&with_env_token)
    );
    let removed = ok(route(&["remove", "v2"], &identity).await);
    assert!(removed.starts_with("removed v2"), "{removed}");
    assert_eq!(call_v2(port).await, Err(Code::Unimplemented));
    assert_eq!(call_v1(port).await, Ok((42, "1.0.0".into())));
    router.terminate().await.unwrap();

    // Each change is logged with the certificate's holder (its CN), marked as a certificate
    // and quoted.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let logged = |action: &str| {
        log.lines().any(|line| {
            line.contains("admin change")
                && line.contains(r#"who="cert:testbed""#)
                && line.contains(action)
                && line.contains("v2")
        })
    };
    assert!(logged("\"add\"") && logged("\"remove\""), "{log}");
    // The stranger's refused handshake: logged, at debug, naming the listener.
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("TLS handshake refused"))
        .collect();
    assert!(!refused.is_empty(), "{log}");
    assert!(
        refused
            .iter()
            .all(|line| line.contains("DEBUG") && line.contains(r#"listener="admin API""#)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn testbed_route_over_https_says_what_is_missing_before_connecting() {
    let (_pki, files, _dir) = pki();
    let junk = files.dir.join("junk.pem");
    std::fs::write(&junk, "not PEM at all\n").unwrap();
    let (ca, cert, key, junk) = (
        files.ca_cert.to_str().unwrap(),
        files.client_cert.to_str().unwrap(),
        files.client_key.to_str().unwrap(),
        junk.to_str().unwrap(),
    );
    // Port 1: nothing listens there, so any of these that connected would fail differently.
    let https = "https://127.0.0.1:1";
    for (args, says) in [
        (
            &["--admin", https][..],
            "an https:// server needs --ca FILE",
        ),
        (
            &["--admin", https, "--ca", "/nonexistent/ca.pem"][..],
            "--ca /nonexistent/ca.pem: cannot read the file",
        ),
        (
            &["--admin", https, "--ca", junk][..],
            "holds no PEM certificate",
        ),
        (
            &["--admin", https, "--ca", ca, "--cert", junk, "--key", key][..],
            "holds no PEM certificate",
        ),
        (
            &["--admin", https, "--ca", ca, "--cert", cert, "--key", junk][..],
            "holds no PEM private key",
        ),
        (
            &["--admin", "127.0.0.1:1", "--ca", ca][..],
            "are for https:// servers",
        ),
        (&["--admin", https, "--ca", ca, "--cert", cert][..], "--key"),
        (&["--admin", "ftp://127.0.0.1:1"][..], "https://HOST:PORT"),
        (&["--admin", "https://127.0.0.1"][..], "names no port"),
    ] {
        let mut all = vec!["route", "list"];
        all.extend(args);
        let output = testbed(&all, &[("TESTBED_ADMIN_TOKEN", TOKEN)]).await;
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("panicked"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn serve_refuses_admin_tls_files_and_flags_it_cannot_use() {
    let (_pki, files, _dir) = pki();
    let dir = temp_dir("admin-tls-refusal");
    let good = token_file_named(dir.path(), "good", &format!("alice {TOKEN}\n"));
    let (cert, key, ca, other_key, good) = (
        files.server_cert.to_str().unwrap(),
        files.server_key.to_str().unwrap(),
        files.ca_cert.to_str().unwrap(),
        files.client_key.to_str().unwrap(),
        good.to_str().unwrap(),
    );
    let serve = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    for (extra, says) in [
        (
            &["--admin-token-file", good, "--admin-tls-cert", cert][..],
            "--admin-tls-key",
        ),
        (
            &["--admin-client-ca", ca, "--admin-client-name", "alice"][..],
            "--admin-tls-cert",
        ),
        (
            &["--admin-token-file", good, "--admin-client-name", "alice"][..],
            "--admin-client-ca",
        ),
        (
            &[
                "--admin-tls-cert",
                "/nonexistent/c.pem",
                "--admin-tls-key",
                key,
                "--admin-token-file",
                good,
            ][..],
            "cannot read certificates from /nonexistent/c.pem",
        ),
        (
            &[
                "--admin-tls-cert",
                cert,
                "--admin-tls-key",
                other_key,
                "--admin-client-ca",
                ca,
            ][..],
            "do not make a usable identity",
        ),
        (
            &[
                "--admin-tls-cert",
                cert,
                "--admin-tls-key",
                key,
                "--admin-client-ca",
                key,
            ][..],
            "holds no PEM certificate",
        ),
        (
            &["--admin-tls-cert", cert, "--admin-tls-key", key][..],
            "the admin API needs a token",
        ),
    ] {
        let mut args = serve.to_vec();
        args.extend(extra);
        let output = testbed(&args, &[]).await;
        assert!(!output.status.success(), "{extra:?} started");
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{extra:?} printed that it serves");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_route_over_https_to_a_plaintext_admin_api_says_how_to_name_it() {
    let (_server, admin) = router_with_admin().await;
    let (_pki, files, _dir) = pki();
    let https = format!("https://{}", admin.addr);
    let ca = files.ca_cert.to_str().unwrap();
    let output = testbed(
        &["route", "list", "--admin", &https, "--ca", ca],
        &[("TESTBED_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.contains("does not speak TLS"), "{said}");
    assert!(
        said.contains(&format!("name it {}, without https://", admin.addr)),
        "{said}"
    );
    assert!(!said.contains("grpc://"), "{said}");
}
