//! Real proxies (nginx, HAProxy, Envoy) in front of the testbed, each started by the `proxy`
//! crate as a child process with a generated configuration. Two arrangements per proxy: in
//! front of the testbed's version router, and doing the version routing itself in front of
//! separate v1 and v2 backend processes (with v1 live, and with v1 retired by a path rewrite).
//! Every matrix client runs through each, unary and streaming, and each cell is checked against
//! the expectation `testbed::matrix::proxies` holds (the one `testbed matrix --proxy` checks);
//! the other cases check what really happens, including where a proxy breaks something. The v1
//! → v2 rollout runs through each proxy, reconfigured its own way between phases.

use crate::common::tool;
use bytes::Bytes;
use client::Mode;
use port::child::ChildServer;
use proxy::{Arrangement, ProxyKind, RunningProxy};
use services::Api;
use std::net::SocketAddr;
use std::time::Duration;
use testbed::matrix::ClientKind::{self, *};
use testbed::matrix::proxies::{PROXY_REJECTS, ProxyColumn, Stack};
use testbed::matrix::{Expect, Outcome};
use tonic::Code;

use ProxyColumn::*;

async fn serve(args: &[&str]) -> ChildServer {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--addr", "127.0.0.1:0"]);
    ChildServer::testbed(exe, &all)
        .await
        .expect("a testbed server process starts")
}

/// Starts `column`'s backends and `kind` in front of them, or `None` (with a note) when the
/// proxy is not installed outside CI.
async fn start_stack(kind: ProxyKind, column: ProxyColumn) -> Option<Stack> {
    tool(kind.find())?;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let stack = Stack::start(kind, column, exe)
        .await
        .unwrap_or_else(|err| panic!("{kind} starts in front of {column}: {err:#}"));
    Some(stack)
}

fn external_tools_present(client: ClientKind) -> bool {
    match client {
        PythonV1 | PythonV2 => tool(client::tools::python()).is_some(),
        GrpcurlV1 | GrpcurlV2 => tool(client::tools::grpcurl()).is_some(),
        _ => true,
    }
}

#[allow(non_snake_case)]
const fn Ok(version: Option<&'static str>) -> Expect {
    match version {
        Some(version) => Expect::Served { version },
        None => Expect::Unlabelled,
    }
}

#[allow(non_snake_case)]
const fn Fails(code: Code) -> Expect {
    Expect::Fails { code }
}

/// Every client through `kind` in each column, judged against the matrix's proxy expectations
/// (`testbed::matrix::proxies`, the same table `testbed matrix --proxy` checks).
async fn matrix_through(kind: ProxyKind) {
    if tool(kind.find()).is_none() {
        return;
    }
    let clients: Vec<ClientKind> = ClientKind::ALL
        .into_iter()
        .filter(|client| external_tools_present(*client))
        .collect();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let cells = testbed::matrix::proxies::run(&clients, kind, exe)
        .await
        .expect("the proxy's columns run");
    assert_eq!(cells.len(), clients.len() * ProxyColumn::ALL.len());
    let mismatches = testbed::matrix::mismatches(&cells);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

async fn stop(stack: Stack) {
    stack.stop().await.expect("the proxy stops");
}

#[tokio::test]
async fn matrix_through_nginx() {
    matrix_through(ProxyKind::Nginx).await;
}

#[tokio::test]
async fn matrix_through_haproxy() {
    matrix_through(ProxyKind::Haproxy).await;
}

#[tokio::test]
async fn matrix_through_envoy() {
    matrix_through(ProxyKind::Envoy).await;
}

/// One call of a Rust client sending `requirement` as `x-api-version`.
async fn call_with(addr: SocketAddr, api: Api, requirement: &str) -> Outcome {
    let mode = Mode::Unary;
    let result = async {
        let channel = client::connect(addr)
            .await
            .map_err(|e| client::external::CallError::Failed(e.to_string()))?;
        // Sent as raw metadata, so that values that are no semver requirement go out too.
        let value = tonic::metadata::MetadataValue::try_from(requirement)
            .map_err(|e| client::external::CallError::Failed(e.to_string()))?;
        let reply = match api {
            Api::V1 => {
                let mut raw =
                    services::pb::v1::incrementer_client::IncrementerClient::new(channel.clone());
                let mut request =
                    tonic::Request::new(services::pb::v1::IncrementRequest { value: 41 });
                request.metadata_mut().insert("x-api-version", value);
                let response = raw.increment(request).await?;
                client::Reply {
                    value: response.into_inner().value,
                    request_id: 1,
                    served_by: None,
                }
            }
            Api::V2 => {
                let mut raw =
                    services::pb::v2::incrementer_client::IncrementerClient::new(channel.clone());
                let mut request = tonic::Request::new(services::pb::v2::IncrementRequest {
                    value: 41,
                    step: Some(testbed::matrix::STEP),
                    request_id: 1,
                });
                request.metadata_mut().insert("x-api-version", value);
                let reply = raw.increment(request).await?.into_inner();
                client::Reply {
                    value: reply.value,
                    request_id: reply.request_id,
                    served_by: Some(reply.served_by_version),
                }
            }
        };
        Result::<_, client::external::CallError>::Ok(vec![reply])
    }
    .await;
    Outcome::judge(api, mode, result)
}

/// `x-api-version` values beyond the matrix's two, and what happens to them. In front of the
/// router the header passes through and the router decides. Routing by itself, each proxy reads
/// only a single pinned major with a regular expression: a range (`>=2, <3`) or a value that
/// is no requirement at all is ignored and the request is routed by its path, and `=2.1.0` is
/// read as "major 2" and served by 2.0.0. The three proxies agree on every row.
const HEADER_CASES: [(Api, &str, [Expect; 2]); 5] = [
    // Columns: front of router (the router's answer), version routing (the proxy's).
    (Api::V1, ">=2, <3", [Fails(Code::Unimplemented), Ok(None)]),
    (
        Api::V1,
        "=2.0.0",
        [Fails(Code::Unimplemented), PROXY_REJECTS],
    ),
    (Api::V2, "^3", [Fails(Code::Unimplemented), PROXY_REJECTS]),
    (
        Api::V2,
        "=2.1.0",
        [Fails(Code::Unimplemented), Ok(Some("2.0.0"))],
    ),
    (Api::V1, "banana", [Fails(Code::InvalidArgument), Ok(None)]),
];

#[tokio::test]
async fn x_api_version_rules_as_far_as_each_proxy_can_read_them() {
    let mut mismatches = Vec::new();
    for kind in ProxyKind::ALL {
        for (i, column) in [FrontOfRouter, VersionRouting].into_iter().enumerate() {
            let Some(stack) = start_stack(kind, column).await else {
                continue;
            };
            for (api, requirement, row) in HEADER_CASES {
                let outcome = call_with(stack.proxy.addr(), api, requirement).await;
                let outcome = match outcome {
                    // v1 replies carry no version: only the v2 rows name one.
                    Outcome::Correct { values, served_by } if api == Api::V1 => Outcome::Correct {
                        values,
                        served_by: served_by.filter(|_| false),
                    },
                    other => other,
                };
                if !row[i].fits(&outcome) {
                    mismatches.push(format!(
                        "{kind} {column:?}, {api} x-api-version {requirement:?}: expected {:?}, got {outcome:?}",
                        row[i]
                    ));
                }
            }
            stop(stack).await;
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// What came back for one raw HTTP/2 request.
#[derive(Debug)]
struct Raw {
    http_status: u16,
    grpc_status: Option<i32>,
    grpc_message: String,
    content_type: Option<String>,
    /// Whether the reply ended with its headers (trailers-only).
    trailers_only: bool,
}

/// One gRPC request with raw HTTP/2 (prior knowledge): `headers` plus content-type and `te`,
/// `message` in one frame. Errors are reported, not unwrapped: proxies reset streams.
async fn raw_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &[u8],
    half_close: bool,
) -> Result<Raw, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (send, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let mut send = send.ready().await.map_err(|e| format!("ready: {e}"))?;
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).map_err(|e| e.to_string())?;
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(|e| format!("send: {e}"))?;
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        body.send_data(Bytes::from(frame), half_close)
            .map_err(|e| format!("send data: {e}"))?;
        let response = response.await.map_err(|e| format!("response: {e}"))?;
        // Keep the request open (when not half-closed) until the reply ends.
        let _body = body;
        let http_status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = response.into_body();
        let trailers_only = body.is_end_stream();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("body: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| format!("trailers: {e}"))?
            .unwrap_or_default();
        let get = |name: &str| {
            trailers
                .get(name)
                .or_else(|| headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Result::<_, String>::Ok(Raw {
            http_status,
            grpc_status: get("grpc-status").and_then(|s| s.parse().ok()),
            grpc_message: get("grpc-message").unwrap_or_default(),
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            trailers_only,
        })
    }
    .await;
    driver.abort();
    result
}

const UNARY_V1: &str = "/increment.v1.Incrementer/Increment";
const UNARY_V2: &str = "/increment.v2.Incrementer/Increment";

/// A v1 request for `value 41`, padded with an unknown length-delimited field (number 15) to
/// about `size` bytes: the service ignores the padding and answers 42.
fn padded_v1_request(size: usize) -> Vec<u8> {
    let mut message = vec![0x08, 41, 0x7a];
    let padding = size.saturating_sub(8);
    let mut len = padding as u64;
    while len >= 0x80 {
        message.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    message.push(len as u8);
    message.resize(message.len() + padding, 0);
    message
}

fn observed(kind: ProxyKind, what: &str, raw: &Result<Raw, String>) {
    eprintln!("OBSERVED {kind} {what}: {raw:?}");
}

/// The proxy's own rejection, and the router's error through the proxy, are trailers-only
/// replies that every gRPC client can read: HTTP 200, `content-type: application/grpc`,
/// `grpc-status` in the headers.
/// A v2 call pinned to `^3` (which nothing serves) through `stack`'s proxy, raw: it must end
/// `UNIMPLEMENTED`; `what` names whose refusal it is in the observation printed.
async fn unimplemented_for_v3(kind: ProxyKind, stack: &Stack, what: &str) -> Raw {
    let raw = raw_call(
        stack.proxy.addr(),
        UNARY_V2,
        &[("x-api-version", "^3")],
        &[],
        true,
    )
    .await;
    observed(kind, what, &raw);
    let raw = raw.expect("a reply");
    assert_eq!(
        raw.grpc_status,
        Some(Code::Unimplemented as i32),
        "{kind}: {raw:?}"
    );
    raw
}

#[tokio::test]
async fn trailers_only_errors_pass_through_and_the_proxies_own_are_well_formed() {
    for kind in ProxyKind::ALL {
        // The router's UNIMPLEMENTED (trailers-only from tonic) through the proxy.
        let Some(stack) = start_stack(kind, FrontOfRouter).await else {
            continue;
        };
        let raw = unimplemented_for_v3(kind, &stack, "router's UNIMPLEMENTED").await;
        assert!(
            raw.grpc_message.contains("%5E3") || raw.grpc_message.contains("^3"),
            "{kind}: {raw:?}"
        );
        assert_eq!(raw.http_status, 200, "{kind}: {raw:?}");
        assert!(raw.trailers_only, "{kind}: {raw:?}");
        stop(stack).await;

        // The proxy's own.
        let Some(stack) = start_stack(kind, VersionRouting).await else {
            continue;
        };
        let raw = unimplemented_for_v3(kind, &stack, "proxy's own UNIMPLEMENTED").await;
        assert_eq!(raw.http_status, 200, "{kind}: {raw:?}");
        assert_eq!(
            raw.content_type.as_deref(),
            Some("application/grpc"),
            "{kind}: {raw:?}"
        );
        assert!(raw.trailers_only, "{kind}: {raw:?}");
        stop(stack).await;
    }
}

/// Every matrix client's unary probe at `addr`.
async fn every_client(addr: SocketAddr) -> Vec<(ClientKind, Outcome)> {
    let mut outcomes = Vec::new();
    for client in ClientKind::ALL {
        if external_tools_present(client) {
            let result = client.call(addr, Mode::Unary).await;
            outcomes.push((client, Outcome::judge(client.api(), Mode::Unary, result)));
        }
    }
    outcomes
}

/// `increment.v1.IncrementRequest` with an unknown bytes field: the padding makes a large
/// message the service decodes and ignores.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedV1Request {
    #[prost(int64, tag = "1")]
    value: i64,
    #[prost(bytes = "vec", tag = "15")]
    padding: Vec<u8>,
}

/// A tonic client's unary v1 call of about `size` bytes.
async fn tonic_padded_call(addr: SocketAddr, size: usize) -> Result<i64, (Code, String)> {
    let channel = client::connect(addr)
        .await
        .map_err(|e| (Code::Unavailable, e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| (Code::Unavailable, e.to_string()))?;
    let request = tonic::Request::new(PaddedV1Request {
        value: 41,
        padding: vec![0; size],
    });
    let path = http::uri::PathAndQuery::from_static(UNARY_V1);
    let codec =
        tonic_prost::ProstCodec::<PaddedV1Request, services::pb::v1::IncrementReply>::default();
    grpc.unary(request, path, codec)
        .await
        .map(|reply| reply.into_inner().value)
        .map_err(|status| (status.code(), status.message().to_string()))
}

/// A 2 MiB request (the testbed's limit is 4 MiB) through each proxy's defaults. nginx refuses
/// it (`client_max_body_size` is 1 MiB by default) with an HTTP 413 and an HTML body, no
/// `grpc-status`; a tonic client then reads the HTML as a gRPC frame and reports `INTERNAL`
/// ("invalid compression flag: 60", the `<`). HAProxy and Envoy stream it through.
#[tokio::test]
async fn a_2_mib_request_through_each_proxy() {
    const SIZE: usize = 2 * 1024 * 1024;
    for kind in ProxyKind::ALL {
        let Some(stack) = start_stack(kind, FrontOfRouter).await else {
            continue;
        };
        let raw = raw_call(
            stack.proxy.addr(),
            UNARY_V1,
            &[],
            &padded_v1_request(SIZE),
            true,
        )
        .await
        .expect("a reply");
        let tonic = tonic_padded_call(stack.proxy.addr(), SIZE).await;
        eprintln!("OBSERVED {kind} 2 MiB: raw {raw:?}, tonic {tonic:?}");
        match kind {
            ProxyKind::Nginx => {
                assert_eq!((raw.http_status, raw.grpc_status), (413, None), "{raw:?}");
                assert_eq!(raw.content_type.as_deref(), Some("text/html"), "{raw:?}");
                assert!(matches!(&tonic, Err((Code::Internal, _))), "{tonic:?}");
            }
            ProxyKind::Haproxy | ProxyKind::Envoy => {
                assert_eq!(
                    (raw.http_status, raw.grpc_status),
                    (200, Some(0)),
                    "{raw:?}"
                );
                assert_eq!(tonic, Result::Ok(42));
            }
        }
        // The connection and the proxy stay usable.
        let after = RustV1.call(stack.proxy.addr(), Mode::Unary).await;
        assert!(after.is_ok(), "{kind}: {after:?}");
        stop(stack).await;
    }
}

/// Request headers of 8 and 16 KiB. Directly, the router (hyper) takes 8 KiB and answers 16 KiB
/// with HTTP 431 (tonic: `UNKNOWN`, "mapped from HTTP status code 431"). Through the proxies,
/// 8 KiB passes everywhere; at 16 KiB nginx closes the connection (tonic: `UNKNOWN`
/// "transport error"), HAProxy breaks the connection with an HTTP/2 compression error (tonic:
/// `INTERNAL`), and Envoy passes the request on and the router's 431 back.
#[tokio::test]
async fn large_request_headers_through_each_proxy() {
    async fn tonic_call(addr: SocketAddr, size: usize) -> Result<i64, Code> {
        let channel = client::connect(addr).await.map_err(|_| Code::Unavailable)?;
        let mut v1 = services::pb::v1::incrementer_client::IncrementerClient::new(channel);
        let mut request = tonic::Request::new(services::pb::v1::IncrementRequest { value: 41 });
        let big = tonic::metadata::MetadataValue::try_from("a".repeat(size))
            .map_err(|_| Code::Internal)?;
        request.metadata_mut().insert("x-big", big);
        v1.increment(request)
            .await
            .map(|reply| reply.into_inner().value)
            .map_err(|status| status.code())
    }
    for kind in ProxyKind::ALL {
        let Some(stack) = start_stack(kind, FrontOfRouter).await else {
            continue;
        };
        let direct = stack.servers[0].addr;
        assert_eq!(tonic_call(direct, 8 * 1024).await, Result::Ok(42));
        assert_eq!(tonic_call(direct, 16 * 1024).await, Err(Code::Unknown));
        let proxy = stack.proxy.addr();
        assert_eq!(tonic_call(proxy, 8 * 1024).await, Result::Ok(42), "{kind}");
        let big = tonic_call(proxy, 16 * 1024).await;
        let want = match kind {
            ProxyKind::Nginx => Code::Unknown,
            ProxyKind::Haproxy => Code::Internal,
            ProxyKind::Envoy => Code::Unknown,
        };
        assert_eq!(big, Err(want), "{kind}");
        let raw = raw_call(
            proxy,
            UNARY_V1,
            &[("x-big", &"a".repeat(16 * 1024))],
            &[0x08, 41],
            true,
        )
        .await;
        eprintln!("OBSERVED {kind} 16 KiB header: tonic {big:?}, raw {raw:?}");
        if kind == ProxyKind::Envoy {
            // The router's 431, passed back.
            assert_eq!(raw.map(|r| r.http_status), Result::Ok(431));
        } else {
            assert!(
                raw.is_err(),
                "{kind}: the connection or stream is broken: {raw:?}"
            );
        }
        stop(stack).await;
    }
}

/// `grpc-timeout` passes through every proxy unchanged: a bidi stream left open with
/// `grpc-timeout: 300m` ends with the router's DEADLINE_EXCEEDED, through each proxy as
/// directly.
#[tokio::test]
async fn grpc_timeout_reaches_the_backend_through_each_proxy() {
    for kind in ProxyKind::ALL {
        let Some(stack) = start_stack(kind, FrontOfRouter).await else {
            continue;
        };
        for addr in [stack.servers[0].addr, stack.proxy.addr()] {
            let open = raw_call(
                addr,
                "/increment.v1.Incrementer/IncrementStream",
                &[("grpc-timeout", "300m")],
                &[0x08, 41],
                false,
            );
            // Not a timing assertion: a generous bound so that a proxy that drops the header
            // fails the test instead of hanging it.
            let raw = tokio::time::timeout(Duration::from_secs(30), open)
                .await
                .unwrap_or_else(|_| panic!("{kind}: the stream outlived its grpc-timeout"))
                .expect("a reply");
            assert_eq!(
                raw.grpc_status,
                Some(Code::DeadlineExceeded as i32),
                "{kind}: {raw:?}"
            );
        }
        stop(stack).await;
    }
}

/// The router behind the proxy is killed: what each client sees. Envoy answers a gRPC request
/// itself with a trailers-only `UNAVAILABLE`, which every client reads. nginx (502) and HAProxy
/// (503) answer with an HTML error page and no `grpc-status`: Python grpcio and grpcurl map the
/// HTTP status to `UNAVAILABLE`, but tonic reads the HTML as a gRPC frame and reports
/// `INTERNAL` "invalid compression flag: 60" (the `<`), so a tonic client would not retry it as
/// it would `UNAVAILABLE`. (grpcurl fails before the call, on its reflection request, with
/// `Unavailable` in its message: the matrix counts that as "client failed".)
#[tokio::test]
async fn backend_down_through_each_proxy() {
    for kind in ProxyKind::ALL {
        let Some(mut stack) = start_stack(kind, FrontOfRouter).await else {
            continue;
        };
        let _held = crate::common::kill_keeping_port(stack.servers.remove(0)).await;
        for (client, outcome) in every_client(stack.proxy.addr()).await {
            let fits = match (kind, client, &outcome) {
                (_, GrpcurlV1 | GrpcurlV2, Outcome::Failed { reason }) => {
                    reason.contains("Unavailable")
                }
                (ProxyKind::Envoy, _, Outcome::Status { code, .. })
                | (_, PythonV1 | PythonV2, Outcome::Status { code, .. }) => {
                    *code == Code::Unavailable
                }
                (_, _, Outcome::Status { code, message }) => {
                    *code == Code::Internal && message.contains("compression flag")
                }
                _ => false,
            };
            assert!(
                fits,
                "{kind}, router down: {} got {outcome:?}",
                client.label()
            );
        }
        let raw = raw_call(stack.proxy.addr(), UNARY_V1, &[], &[0x08, 41], true)
            .await
            .expect("a reply");
        let want = match kind {
            ProxyKind::Nginx => (502, None),
            ProxyKind::Haproxy => (503, None),
            ProxyKind::Envoy => (200, Some(Code::Unavailable as i32)),
        };
        assert_eq!((raw.http_status, raw.grpc_status), want, "{kind}: {raw:?}");
        stop(stack).await;
    }
}

/// Health and reflection through each proxy. In front of the router they pass through. Routing
/// by itself, the proxy sends them to v2's process (they match no API prefix), so health knows
/// only v2's services and reflection lists only v2's: `increment.v1.Incrementer` is
/// NOT_FOUND by health, though v1 serves it, behind the same address.
#[tokio::test]
async fn health_and_reflection_through_each_proxy() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    for kind in ProxyKind::ALL {
        for column in [FrontOfRouter, VersionRouting] {
            let Some(stack) = start_stack(kind, column).await else {
                continue;
            };
            let channel = client::connect(stack.proxy.addr()).await.expect("connects");
            let mut health = HealthClient::new(channel);
            let mut statuses = Vec::new();
            for service in ["", "increment.v1.Incrementer", "increment.v2.Incrementer"] {
                let request = HealthCheckRequest {
                    service: service.to_string(),
                };
                statuses.push(match health.check(request).await {
                    Result::Ok(reply) => format!("{:?}", reply.into_inner().status()),
                    Err(status) => format!("{:?}", status.code()),
                });
            }
            let want = match column {
                FrontOfRouter => ["Serving", "Serving", "Serving"],
                _ => ["Serving", "NotFound", "Serving"],
            };
            assert_eq!(statuses, want, "{kind} {column:?}");
            if let Some(grpcurl) = tool(client::tools::grpcurl()) {
                let output = tokio::process::Command::new(grpcurl)
                    .args(["-plaintext", &stack.proxy.addr().to_string(), "list"])
                    .output()
                    .await
                    .expect("grpcurl runs");
                let listed = String::from_utf8_lossy(&output.stdout);
                eprintln!("OBSERVED {kind} {column:?} grpcurl list: {listed:?}");
                assert!(output.status.success(), "{kind} {column:?}: {output:?}");
                assert!(listed.contains("increment.v2.Incrementer"), "{listed}");
                assert_eq!(
                    listed.contains("increment.v1.Incrementer"),
                    column == FrontOfRouter,
                    "{kind} {column:?}: {listed}"
                );
            }
            stop(stack).await;
        }
    }
}

/// nginx closes a client connection after 1,000 requests (`keepalive_requests`, announced with
/// GOAWAY); HAProxy and Envoy set no such limit by default. 1,100 sequential calls on one tonic
/// channel: tonic finishes the call in flight, reconnects, and none fail. (h2load, which does
/// not reconnect, fails every request after the 1,000th through nginx.)
#[tokio::test]
async fn many_requests_on_one_connection_through_each_proxy() {
    for kind in ProxyKind::ALL {
        let Some(stack) = start_stack(kind, FrontOfRouter).await else {
            continue;
        };
        let client = client::IncrementerClient::connect(Api::V1, stack.proxy.addr())
            .await
            .expect("the client connects");
        let mut failed = Vec::new();
        for i in 0..1100 {
            if let Err(status) = client.increment(i, None, 0).await {
                failed.push((i, status.code()));
            }
        }
        assert!(failed.is_empty(), "{kind}: {failed:?}");
        stop(stack).await;
    }
}

/// The v1 → v2 rollout through `kind` (`testbed rollout --proxy`): 2 v1 + 2 v2 clients back to
/// back, 1 s phases, the proxy changed its own way between them. `None` when the proxy is not
/// installed outside CI.
async fn rollout_through(kind: ProxyKind) -> Option<testbed::proxy_rollout::ProxyRolloutReport> {
    use clap::Parser;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        rollout: testbed::rollout::RolloutOptions,
    }
    tool(kind.find())?;
    let flags = Flags::parse_from(["rollout", "--v1-clients", "2", "--v2-clients", "2"]);
    let options = testbed::rollout::RolloutOptions {
        phase: Duration::from_secs(1),
        ..flags.rollout
    };
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let report = testbed::proxy_rollout::run(kind, &options, exe, &|_, _| {})
        .await
        .unwrap_or_else(|err| panic!("the rollout through {kind} runs: {err:#}"));
    eprintln!("OBSERVED {}", report.render());
    let phases = &report.load.phases;
    assert_eq!(phases, &testbed::proxy_rollout::PHASES, "{kind}");
    assert_eq!(report.changes.len(), 2, "{kind}: {:?}", report.changes);
    for (phase, [v1, v2]) in phases.iter().zip(&report.load.tallies) {
        // Never a wrong answer, in any phase, through any proxy.
        assert_eq!((v1.wrong, v2.wrong), (0, 0), "{kind} [{phase}]");
        assert!(v1.requests > 0, "{kind} [{phase}]: no v1 requests");
        // v2 clients start once v2 is routed; v1 replies name no version (nothing adds the
        // router's header), v2's name 2.0.0, also once v1 is retired onto v2.
        assert_eq!(v2.requests > 0, phase != "v1 only", "{kind} [{phase}]");
        assert!(
            v1.served_by
                .keys()
                .all(|k| k == testbed::load::NO_VERSION_HEADER),
            "{kind} [{phase}]"
        );
        assert!(
            v2.served_by.keys().all(|k| k == "2.0.0"),
            "{kind} [{phase}]"
        );
    }
    Some(report)
}

/// Failed requests per phase, v1 and v2 clients together, with their codes.
fn failures(report: &testbed::proxy_rollout::ProxyRolloutReport) -> Vec<(String, Vec<String>)> {
    let phases = report.load.phases.iter();
    phases
        .zip(&report.load.tallies)
        .map(|(phase, tallies)| {
            let codes = tallies
                .iter()
                .flat_map(|t| t.errors.iter().map(|(code, (n, _))| format!("{n} {code}")))
                .collect();
            (phase.clone(), codes)
        })
        .collect()
}

/// Envoy's routes and clusters change through filesystem xDS without touching a connection:
/// no request fails in any phase.
#[tokio::test]
async fn rollout_through_envoy_fails_nothing() {
    let Some(report) = rollout_through(ProxyKind::Envoy).await else {
        return;
    };
    assert!(report.load.clean(), "{:?}", failures(&report));
}

/// What nginx and HAProxy lose at a reload: their old workers close the client connections they
/// hold (HTTP/2 GOAWAY, then the close), and a tonic request sent on such a connection as the
/// GOAWAY and the close arrive fails, `INTERNAL` "h2 protocol error" or `CANCELLED` "operation
/// was canceled"; tonic does not resend it. Zero to a few per reload. So failures happen only
/// in the phases that begin with a reload (`v2 added`, `v1 retired`), only so, and never in
/// `v1 only` or `v1 removed` (stopping v1 loses nothing: no connection routes to it any more).
fn only_requests_racing_the_reload(report: &testbed::proxy_rollout::ProxyRolloutReport) {
    let kind = &report.proxy;
    for (phase, [v1, v2]) in report.load.phases.iter().zip(&report.load.tallies) {
        let reload = phase == "v2 added" || phase == "v1 retired";
        for (code, (count, message)) in v1.errors.iter().chain(&v2.errors) {
            let racing = match code.as_str() {
                "INTERNAL" => message.contains("h2 protocol error"),
                "CANCELLED" => message.contains("operation was canceled"),
                _ => false,
            };
            assert!(
                reload && racing,
                "{kind} [{phase}]: {count} {code} {message:?}"
            );
        }
    }
}

/// HAProxy's master-worker reload (SIGUSR2): the new worker receives the listening sockets, so
/// no connection is refused; the old worker's connections close as described above.
#[tokio::test]
async fn rollout_through_haproxy_fails_only_requests_racing_its_reload() {
    if let Some(report) = rollout_through(ProxyKind::Haproxy).await {
        only_requests_racing_the_reload(&report);
    }
}

/// nginx's `-s reload`: new workers take new connections, the old ones close theirs as
/// described above.
#[tokio::test]
async fn rollout_through_nginx_fails_only_requests_racing_its_reload() {
    if let Some(report) = rollout_through(ProxyKind::Nginx).await {
        only_requests_racing_the_reload(&report);
    }
}

/// Starts `kind` in front of a side-by-side router with `tuning` changed from its defaults, or
/// `None` (with a note) when the proxy is not installed outside CI.
async fn tuned(kind: ProxyKind, tuning: proxy::Tuning) -> Option<(RunningProxy, ChildServer)> {
    tool(kind.find())?;
    let router = serve(&["--deployment", "side-by-side"]).await;
    let arrangement = Arrangement::FrontOfRouter {
        router: router.addr,
    };
    let proxy = RunningProxy::start_tuned(kind, &arrangement, tuning)
        .await
        .unwrap_or_else(|err| panic!("{kind} starts: {err:#}"));
    Some((proxy, router))
}

/// A v1 bidi stream through each proxy, left idle after its first reply, with the proxy's idle
/// timeout set to 1 s in its configuration (nginx `grpc_read_timeout` and friends, HAProxy
/// `timeout client`/`server`, Envoy `stream_idle_timeout`; the defaults are 60 s, 50 s and 5
/// minutes). Every proxy cuts the stream (observed after about 1 s; printed, not asserted), and
/// none with a gRPC status: nginx resets it with `PROTOCOL_ERROR` and Envoy with
/// `INTERNAL_ERROR` (tonic: `INTERNAL` "h2 protocol error"), HAProxy ends it without trailers
/// (tonic: `UNKNOWN` "missing grpc-status trailer"). So a client cannot tell the proxy's idle
/// timeout from a broken server.
#[tokio::test]
async fn an_idle_bidi_stream_is_cut_by_each_proxys_idle_timeout() {
    use services::pb::v1::{IncrementRequest, incrementer_client::IncrementerClient};
    let tuning = proxy::Tuning {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    for kind in ProxyKind::ALL {
        let Some((proxy, _router)) = tuned(kind, tuning).await else {
            continue;
        };
        let channel = client::connect(proxy.addr()).await.expect("connects");
        let (send, outbound) = tokio::sync::mpsc::channel(4);
        let mut replies = IncrementerClient::new(channel)
            .increment_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await
            .expect("the stream opens")
            .into_inner();
        send.send(IncrementRequest { value: 1 }).await.unwrap();
        let first = replies.message().await.expect("a first reply");
        assert_eq!(first.map(|r| r.value), Some(2), "{kind}");
        let started = std::time::Instant::now();
        // Not a timing assertion: a bound so that a proxy that never cuts fails, not hangs.
        let end = tokio::time::timeout(Duration::from_secs(60), replies.message())
            .await
            .unwrap_or_else(|_| panic!("{kind} left the idle stream open for 60 s"));
        eprintln!(
            "OBSERVED {kind} idle stream ended after {:?}: {end:?}",
            started.elapsed()
        );
        let status = end.expect_err("the stream ends with an error, not a reply or OK");
        let want = match kind {
            ProxyKind::Nginx | ProxyKind::Envoy => (Code::Internal, "h2 protocol error"),
            ProxyKind::Haproxy => (Code::Unknown, "missing grpc-status trailer"),
        };
        assert_eq!(status.code(), want.0, "{kind}: {status:?}");
        assert!(status.message().contains(want.1), "{kind}: {status:?}");
        drop(send);
        proxy.stop().await.expect("the proxy stops");
    }
}

/// How many gRPC requests one HTTP/2 connection to `addr` carries, sent one after another,
/// before the server refuses more (GOAWAY) or `most` is reached.
async fn requests_on_one_connection(addr: SocketAddr, most: usize) -> usize {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let (mut send, connection) = h2::client::handshake(tcp).await.expect("handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut answered = 0;
    while answered < most {
        let Result::Ok(ready) = send.clone().ready().await else {
            break;
        };
        send = ready;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{UNARY_V1}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let Result::Ok((response, mut body)) = send.send_request(request, false) else {
            break;
        };
        if body
            .send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 41]), true)
            .is_err()
        {
            break;
        }
        let Result::Ok(response) = response.await else {
            break;
        };
        let mut body = response.into_body();
        while let Some(Result::Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        if !matches!(body.trailers().await, Result::Ok(Some(t)) if t.get("grpc-status").is_some_and(|s| s == "0"))
        {
            break;
        }
        answered += 1;
    }
    driver.abort();
    answered
}

/// What each client does when the proxy sends GOAWAY after a few requests on a connection
/// (nginx `keepalive_requests`, default 1,000; Envoy `max_requests_per_connection`, default no
/// limit; HAProxy 2.6 has no such setting), here 1 and 5. One raw HTTP/2 connection carries
/// exactly that many requests, so the GOAWAY is real; then tonic (12 calls on one channel),
/// Python grpcio (12 calls on one channel) and grpcurl (reflection, then the call) each
/// reconnect and lose nothing.
#[tokio::test]
async fn each_client_reconnects_after_a_goaway_after_a_few_requests() {
    const CALLS: i64 = 12;
    for kind in [ProxyKind::Nginx, ProxyKind::Envoy] {
        for limit in [1, 5] {
            let tuning = proxy::Tuning {
                requests_per_connection: Some(limit),
                ..Default::default()
            };
            let Some((proxy, _router)) = tuned(kind, tuning).await else {
                continue;
            };
            let addr = proxy.addr();
            assert_eq!(
                requests_on_one_connection(addr, 20).await,
                limit as usize,
                "{kind} limit {limit}"
            );
            let tonic = client::IncrementerClient::connect(Api::V1, addr)
                .await
                .expect("connects");
            for i in 0..CALLS {
                let reply = tonic.increment(i, None, 0).await;
                assert_eq!(
                    reply.map(|r| r.value).ok(),
                    Some(i + 1),
                    "{kind} limit {limit}"
                );
            }
            let values: Vec<i64> = (0..CALLS).collect();
            let want: Vec<i64> = (1..=CALLS).collect();
            if tool(client::tools::python()).is_some() {
                let python = client::external::python(Api::V1, addr, Mode::Unary, &values, None)
                    .await
                    .map(|replies| replies.iter().map(|r| r.value).collect::<Vec<_>>());
                assert_eq!(python.ok(), Some(want.clone()), "{kind} limit {limit}");
            }
            if tool(client::tools::grpcurl()).is_some() {
                let grpcurl = client::external::grpcurl(Api::V1, addr, Mode::Unary, &[41], None)
                    .await
                    .map(|replies| replies.iter().map(|r| r.value).collect::<Vec<_>>());
                assert_eq!(grpcurl.ok(), Some(vec![42]), "{kind} limit {limit}");
            }
            proxy.stop().await.expect("the proxy stops");
        }
    }
}

/// The commands: `testbed matrix --proxy` adds the proxy's three columns to the JSON (and exits
/// 0 when they hold), `testbed rollout --proxy envoy` rolls out through Envoy (exit 0: nothing
/// failed), and bad `--proxy` uses are refused as usage errors.
#[tokio::test]
async fn matrix_and_rollout_commands_take_a_proxy() {
    let exe = env!("CARGO_BIN_EXE_testbed");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(exe)
            .args(args)
            .output()
            .expect("testbed runs");
        let json = serde_json::from_slice::<serde_json::Value>(&output.stdout).ok();
        (output.status.code(), json, output.stderr)
    };
    for bad in [
        &["rollout", "--proxy", "caddy"][..],
        &["rollout", "--proxy", "nginx", "--processes"],
        &["matrix", "--proxy", "caddy"],
    ] {
        assert_eq!(run(bad).0, Some(2), "{bad:?}");
    }
    if tool(ProxyKind::Envoy.find()).is_none() {
        return;
    }
    let matrix = [
        "matrix",
        "--proxy",
        "envoy",
        "--deployment",
        "side-by-side",
        "--client",
        "rust-v1-pinned",
        "--json",
        "-",
    ];
    let (code, json, stderr) = run(&matrix);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&stderr));
    let json = json.expect("JSON on stdout");
    let columns: Vec<&str> = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["deployment"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "side-by-side",
            "envoy front-of-router",
            "envoy version-routing",
            "envoy v1-retired"
        ]
    );
    assert_eq!(json["cells"][3]["unary"]["code"], "UNIMPLEMENTED");
    assert_eq!(json["settings"]["proxies"][0], "envoy");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("rollout.json");
    let rollout = [
        "rollout",
        "--proxy",
        "envoy",
        "--phase-seconds",
        "0.5",
        "--v1-clients",
        "1",
        "--v2-clients",
        "1",
        "--json",
        file.to_str().unwrap(),
    ];
    let (code, _, stderr) = run(&rollout);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("valid JSON");
    assert_eq!(json["proxy"], "envoy");
    assert_eq!(json["load"]["phases"].as_array().unwrap().len(), 4);
    assert_eq!(json["changes"].as_array().unwrap().len(), 2);
}
