//! The admin API (`testbed.admin.v1.Routes`) and `testbed route`: a missing token is
//! UNAUTHENTICATED, a wrong one PERMISSION_DENIED, and neither changes what the port serves;
//! `serve` refuses to start the API without a token; routes added, retired, drained and removed
//! through the CLI change what a running `testbed serve` answers; the API is never on the
//! public port. An Add that brings a package the router never saw is in [`catalog`]. The admin API over TLS is in [`tls`], and `testbed route` over https and
//! `serve`'s admin TLS flags in [`tls_cli`].

mod catalog;
mod tls;
mod tls_cli;

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
                force: false,
            })
            .await
            .unwrap_err()
            .code(),
        client
            .remove(RemoveRequest {
                name: "v1".into(),
                force: false,
            })
            .await
            .unwrap_err()
            .code(),
        client.list(ListRequest {}).await.unwrap_err().code(),
        client
            .usage(port::admin::pb::UsageRequest::default())
            .await
            .unwrap_err()
            .code(),
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
    assert_eq!(attempt_changes(client).await, [code; 6]);
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
        .remove(RemoveRequest {
            name: "v1".into(),
            force: false,
        })
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
                force: false,
            })
            .await
            .unwrap_err();
        let removed = client
            .remove(RemoveRequest {
                name: name.into(),
                force: false,
            })
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
            force: false,
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
