//! Bad input and faults: each gets a defined gRPC status with a message that says what was
//! wrong, and a probe from a fresh client afterwards proves the server still serves.

use crate::common::raw::{frame, send};
use crate::common::{probe, start, until_idle, v1_client, v2_client, v2_request};
use port::deployment::Deployment;
use port::server::{self, RunningServer, ServeOptions};
use services::pb::v1;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const UNARY_V1: &str = "/increment.v1.Incrementer/Increment";
/// `IncrementRequest { value: 41 }`.
const VALUE_41: [u8; 2] = [0x08, 41];

/// Both ways a request can reach an implementation: behind the router, and mounted directly.
const DEPLOYMENTS: [Deployment; 2] = [Deployment::SideBySide, Deployment::Direct];

#[tokio::test]
async fn malformed_frames_and_messages_get_internal_with_the_reason() {
    for deployment in DEPLOYMENTS {
        let server = start(deployment).await;
        let cases: [(&str, Vec<u8>, &str); 4] = [
            (
                "bytes that are not protobuf",
                frame(false, 3, &[0xff, 0xff, 0xff]),
                "decode",
            ),
            (
                "frame declaring 10 bytes, carrying 2",
                frame(false, 10, &VALUE_41),
                "EOF",
            ),
            ("frame header cut short", vec![0, 0], "EOF"),
            (
                "compressed flag, no grpc-encoding",
                frame(true, 2, &VALUE_41),
                "compress",
            ),
        ];
        for (case, body, says) in cases {
            let reply = send(server.addr, UNARY_V1, "application/grpc", body).await;
            assert_eq!(
                reply.grpc_status,
                Some(Code::Internal as i32),
                "{deployment}: {case}: {reply:?}"
            );
            assert!(
                reply.grpc_message.contains(says),
                "{deployment}: {case}: {reply:?}"
            );
            probe(&server).await;
        }
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_wrong_content_type_is_refused_not_served() {
    for deployment in DEPLOYMENTS {
        let server = start(deployment).await;
        for content_type in ["application/json", "text/plain", "application/grpc-web", ""] {
            let reply = send(
                server.addr,
                UNARY_V1,
                content_type,
                frame(false, 2, &VALUE_41),
            )
            .await;
            assert_eq!(reply.http_status, 415, "{content_type:?}: {reply:?}");
            assert_eq!(reply.grpc_status, Some(Code::InvalidArgument as i32));
            assert!(reply.grpc_message.contains("content-type"), "{reply:?}");
        }
        let ok = send(
            server.addr,
            UNARY_V1,
            "application/grpc+proto",
            frame(false, 2, &VALUE_41),
        )
        .await;
        assert_eq!(ok.grpc_status, Some(0), "{ok:?}");
        probe(&server).await;
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn http1_on_the_grpc_port_gets_505_in_words() {
    let server = start(Deployment::SideBySide).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST {UNARY_V1} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut reply))
        .await
        .expect("the server answers and closes")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 505"), "{reply}");
    assert!(reply.contains("gRPC over HTTP/2"), "{reply}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

async fn start_with(deployment: Deployment, options: ServeOptions) -> RunningServer {
    let layout = deployment.layout(options.max_message_bytes).unwrap();
    server::start_with(
        "127.0.0.1:0".parse().unwrap(),
        layout,
        deployment.name(),
        &options,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn messages_over_the_limit_are_resource_exhausted_and_the_limit_is_configurable() {
    // The default limit is 4 MiB.
    let server = start(Deployment::SideBySide).await;
    let mut big = vec![0x0a, 0x80, 0x80, 0x40]; // field 1, length-delimited, 1 MiB varint...
    big.resize(5 * 1024 * 1024, 0);
    let reply = send(
        server.addr,
        UNARY_V1,
        "application/grpc",
        frame(false, big.len() as u32, &big),
    )
    .await;
    assert_eq!(
        reply.grpc_status,
        Some(Code::ResourceExhausted as i32),
        "{reply:?}"
    );
    assert!(reply.grpc_message.contains("4194304"), "{reply:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();

    for deployment in DEPLOYMENTS {
        let options = ServeOptions {
            max_message_bytes: 64,
            ..ServeOptions::default()
        };
        let server = start_with(deployment, options).await;
        let mut client = v2_client(&server).await;
        let mut request = v2_request(1, None, 1);
        request.request_id = u64::MAX; // still small: 10 bytes
        assert!(client.increment(request).await.is_ok());
        let padded = frame(false, 100, &[0u8; 100]);
        let reply = send(server.addr, UNARY_V1, "application/grpc", padded).await;
        assert_eq!(
            reply.grpc_status,
            Some(Code::ResourceExhausted as i32),
            "{deployment}: {reply:?}"
        );
        assert!(reply.grpc_message.contains("64"), "{reply:?}");
        probe(&server).await;
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_deadline_shorter_than_the_work_is_deadline_exceeded_and_frees_the_stream() {
    // The client's deadline (grpc-timeout), on a stream that waits for requests that never come.
    let server = start(Deployment::SideBySide).await;
    let (_keep_open, outbound) = tokio::sync::mpsc::channel::<v1::IncrementRequest>(1);
    let mut request = tonic::Request::new(ReceiverStream::new(outbound));
    request.set_timeout(Duration::from_millis(100));
    let mut client = v1_client(&server).await;
    let mut replies = client.increment_stream(request).await.unwrap().into_inner();
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("100ms"), "{status:?}");
    until_idle(&server, Duration::from_secs(10)).await;
    probe(&server).await;
    server.shutdown().await.unwrap();

    // The server's request timeout, with no client deadline at all.
    let options = ServeOptions {
        request_timeout: Some(Duration::from_millis(100)),
        ..ServeOptions::default()
    };
    let server = start_with(Deployment::Direct, options).await;
    let (_keep_open, outbound) = tokio::sync::mpsc::channel::<v1::IncrementRequest>(1);
    let mut client = v1_client(&server).await;
    let mut replies = client
        .increment_stream(ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        replies.message().await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
    until_idle(&server, Duration::from_secs(10)).await;
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn error_replies_stay_trailers_only_when_the_client_sets_a_deadline() {
    // grpcurl and Python grpcio read the status of an error reply from its headers only when
    // the reply ends there; with a deadline the guard must not turn it into headers + data.
    let server = start(Deployment::V1Only).await;
    let headers = [
        ("content-type", "application/grpc"),
        ("grpc-timeout", "10S"),
    ];
    let body = frame(false, 2, &VALUE_41);
    let path = "/increment.v2.Incrementer/Increment";
    let reply = crate::common::raw::send_with(server.addr, path, &headers, body).await;
    assert_eq!(
        reply.grpc_status,
        Some(Code::Unimplemented as i32),
        "{reply:?}"
    );
    assert!(reply.ended_on_headers, "{reply:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_internal_as_grpc_go_answers() {
    let server = start(Deployment::SideBySide).await;
    let mut client = v1_client(&server).await;
    let mut request = tonic::Request::new(v1::IncrementRequest { value: 1 });
    request
        .metadata_mut()
        .insert("grpc-timeout", "soon".parse().unwrap());
    let status = client.increment(request).await.unwrap_err();
    // The spec is silent; grpc-go answers HTTP 400, which a client reads as INTERNAL.
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("grpc-timeout"), "{status:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_cancels_mid_stream_frees_it_on_the_server() {
    let server = start(Deployment::SideBySide).await;
    let router = server.router.clone().unwrap();
    let in_flight = |name: &str| {
        router
            .table()
            .backends()
            .into_iter()
            .find(|b| b.name == name)
            .map(|b| b.in_flight)
    };
    assert_eq!((server.open_requests(), in_flight("v2")), (0, Some(0)));
    // One message answered, the request side still open, then RST_STREAM(CANCEL).
    let (mut send, mut replies) =
        crate::common::raw::open_call(server.addr, "/increment.v2.Incrementer/IncrementStream")
            .await;
    send.send_data(frame(false, 2, &VALUE_41).into(), false)
        .unwrap();
    let reply = replies.data().await.unwrap().unwrap();
    assert_eq!(
        &reply[5..],
        &[0x08, 42, 0x1a, 5, b'2', b'.', b'0', b'.', b'0']
    );
    assert_eq!((server.open_requests(), in_flight("v2")), (1, Some(1)));
    send.send_reset(h2::Reason::CANCEL);
    until_idle(&server, Duration::from_secs(10)).await;
    assert_eq!(in_flight("v2"), Some(0));
    probe(&server).await;

    // A client that goes away entirely (its connection closes mid-stream) is freed too.
    let (send_tx, stream) = crate::common::open_v2_stream(&server).await;
    assert_eq!(server.open_requests(), 1);
    drop((stream, send_tx));
    until_idle(&server, Duration::from_secs(10)).await;
    assert_eq!(in_flight("v2"), Some(0));
    probe(&server).await;
    server.shutdown().await.unwrap();
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_streams_opened_and_dropped_leave_nothing_behind() {
    let server = start(Deployment::SideBySide).await;
    let channel = crate::common::channel(&server).await;
    let one_stream = |channel: tonic::transport::Channel| async move {
        let mut client = services::pb::v2::incrementer_client::IncrementerClient::new(channel);
        let (send, outbound) = tokio::sync::mpsc::channel(1);
        let mut replies = client
            .increment_stream(ReceiverStream::new(outbound))
            .await
            .unwrap()
            .into_inner();
        send.send(v2_request(1, None, 1)).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().value, 2);
    };
    // Warm up allocator pools and connection buffers before taking the baseline.
    for _ in 0..200 {
        one_stream(channel.clone()).await;
    }
    until_idle(&server, Duration::from_secs(10)).await;
    let baseline = resident_kib();
    for _ in 0..100 {
        let batch: Vec<_> = (0..100)
            .map(|_| tokio::spawn(one_stream(channel.clone())))
            .collect();
        for task in batch {
            task.await.unwrap();
        }
    }
    until_idle(&server, Duration::from_secs(10)).await;
    let grown = resident_kib().saturating_sub(baseline);
    assert!(
        grown < 32 * 1024,
        "resident memory grew by {grown} KiB over 10,000 streams"
    );
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_mid_stream_gives_unavailable_not_a_hang() {
    let (backend, server) = crate::common::router_over_v2_process().await;

    let (send, mut replies) = crate::common::open_v2_stream(&server).await;

    let _held = crate::common::kill_keeping_port(backend).await;
    // The stream may take the next request into a buffer before noticing; it must then fail.
    let _ = send.send(v2_request(2, None, 2)).await;
    let status = tokio::time::timeout(Duration::from_secs(10), replies.message())
        .await
        .expect("the client is told, not left hanging")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // New calls to the dead backend fail fast with UNAVAILABLE naming it.
    let mut client = v2_client(&server).await;
    let status = client.increment(v2_request(1, None, 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("backend v2"), "{status:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_streams_still_open_after_the_grace_period() {
    let server = start(Deployment::SideBySide).await;
    let (send, mut replies) = crate::common::open_v2_stream(&server).await;
    assert_eq!(server.open_connections(), 1);
    server
        .shutdown_within(Duration::from_millis(200))
        .await
        .unwrap();
    // Once shutdown has returned nothing is served: the open stream ends (with an error or
    // closed), it is not answered.
    let _ = send.send(v2_request(2, None, 2)).await;
    let after = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("the stream ends promptly instead of being served or left hanging");
    assert!(
        !matches!(after, Ok(Some(_))),
        "a stream was still served after shutdown returned: {after:?}"
    );
}

#[tokio::test]
async fn a_dropped_server_closes_its_connections() {
    let server = start(Deployment::SideBySide).await;
    let (send, mut replies) = crate::common::open_v2_stream(&server).await;
    drop(server);
    let _ = send.send(v2_request(2, None, 2)).await;
    let after = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("the stream ends promptly");
    assert!(
        !matches!(after, Ok(Some(_))),
        "served after drop: {after:?}"
    );
}

/// A backend that answers every call with the `grpc-timeout` it received, as a status message.
fn timeout_echo_backend() -> router::Backend {
    let echo = tower::service_fn(|request: http::Request<tonic::body::Body>| async move {
        let seen = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        Ok::<_, std::convert::Infallible>(
            tonic::Status::unavailable(format!("grpc-timeout={seen}")).into_http(),
        )
    });
    router::Backend::in_process("echo", services::V1_VERSION, "increment.v1", echo)
}

#[tokio::test]
async fn the_remaining_deadline_is_passed_on_to_the_backend() {
    let table = router::RouteTable::new(
        port::deployment::catalog().unwrap(),
        vec![timeout_echo_backend()],
    )
    .unwrap();
    let options = ServeOptions {
        request_timeout: Some(Duration::from_secs(30)),
        ..ServeOptions::default()
    };
    let server = server::start_with(
        "127.0.0.1:0".parse().unwrap(),
        port::Layout::Routed(table),
        "echo",
        &options,
    )
    .await
    .unwrap();
    let mut client = v1_client(&server).await;
    let seen = |status: tonic::Status| status.message().to_string();

    // The client's deadline (2 s) is shorter than the server's: the backend is told about 2 s.
    let mut request = tonic::Request::new(v1::IncrementRequest { value: 1 });
    request.set_timeout(Duration::from_secs(2));
    let told = seen(client.increment(request).await.unwrap_err());
    let millis: u64 = told
        .strip_prefix("grpc-timeout=")
        .and_then(|t| t.strip_suffix('m'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("backend saw {told:?}"));
    assert!((1..=2000).contains(&millis), "backend saw {told:?}");

    // Without a client deadline, the server's own request timeout is passed on.
    let told = seen(
        client
            .increment(v1::IncrementRequest { value: 1 })
            .await
            .unwrap_err(),
    );
    assert_eq!(told, "grpc-timeout=30000m");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_backend_fails_calls_instead_of_hanging_them() {
    let (backend, server) = crate::common::router_over_v2_process().await;
    let pid = backend.pid().unwrap().to_string();
    let mut client = v2_client(&server).await;
    assert_eq!(
        client
            .increment(v2_request(1, None, 1))
            .await
            .unwrap()
            .into_inner()
            .value,
        2
    );
    // Stopped, not dead: its connection stays open and nothing answers on it.
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(stop.unwrap().success());
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        client.increment(v2_request(2, None, 2)),
    )
    .await
    .expect("a call to a stalled upstream without a client deadline ends by itself")
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    server.shutdown().await.unwrap();
}
