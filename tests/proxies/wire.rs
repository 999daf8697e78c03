//! What each proxy does to gRPC on the wire, checked with raw HTTP/2 and real clients:
//! trailers-only errors, a 2 MiB request, large request headers, `grpc-timeout`, a backend
//! down, health and reflection, many requests on one connection.

use super::*;

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
