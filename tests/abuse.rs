//! The port as an attacker would try it, with hand-made HTTP/2 frames: each flood or slow
//! client meets a limit (a GOAWAY, a refused stream, a closed connection) and a new client is
//! served afterwards. The floods run against `testbed serve` in a child process, whose peak
//! resident memory (`VmHWM`) is asserted to stay under [`MEMORY_BOUND_KIB`]. Then the answers
//! the gRPC specification fixes: unary cardinality, methods, encodings, timeouts, sizes, and
//! client input quoted in errors cut short.

use crate::common::frames::{self, RawConn, grpc_headers, header_block, resident_kib};
use crate::common::raw::{frame, send, send_method, send_with};
use crate::common::{probe, probe_addr, start, until_idle, v1_client};
use port::child::ChildServer;
use port::deployment::Deployment;
use port::server::{self, RunningServer, ServeOptions};
use services::pb::v1;
use std::time::Duration;
use tonic::Code;

const UNARY_V1: &str = "/increment.v1.Incrementer/Increment";
const STREAM_V2: &str = "/increment.v2.Incrementer/IncrementStream";
/// `IncrementRequest { value: 41 }`.
const VALUE_41: [u8; 2] = [0x08, 41];

/// Peak resident memory a flooded `testbed serve` may reach: 64 MiB. It starts at about
/// 9 MiB; without the limits, the malformed-request flood below took it past 100 MiB.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

/// Generous bound for the server to act (GOAWAY, close); never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// `testbed serve` (side by side, default limits unless `extra` says) in a child process.
async fn child(extra: &[&str]) -> ChildServer {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = ChildServer::testbed(exe, &args)
        .await
        .expect("testbed serve starts");
    let (now, _) = resident_kib(server.pid().expect("the server runs"));
    eprintln!("testbed serve {extra:?}: resident {now} KiB at start");
    server
}

/// Asserts the child's peak memory stayed under the bound, and prints both figures.
fn assert_memory(server: &ChildServer, case: &str) {
    let (now, peak) = resident_kib(server.pid().expect("the server runs"));
    eprintln!("{case}: resident {now} KiB, peak {peak} KiB");
    assert!(
        peak < MEMORY_BOUND_KIB,
        "{case}: peak resident memory {peak} KiB is over the bound of {MEMORY_BOUND_KIB} KiB"
    );
}

/// Writes `frames` (each already encoded) without reading anything back, in batches, for at
/// most `PATIENCE`; stops early when the server closes the connection.
async fn flood(conn: &mut RawConn, frames: impl Iterator<Item = Vec<u8>>) -> usize {
    let mut sent = 0;
    let mut batch = Vec::with_capacity(64 * 1024);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for one in frames {
        batch.extend_from_slice(&one);
        sent += 1;
        if batch.len() >= 32 * 1024 {
            let write = tokio::time::timeout_at(deadline, conn.send(&batch)).await;
            if !matches!(write, Ok(Ok(()))) {
                return sent;
            }
            batch.clear();
        }
    }
    let _ = tokio::time::timeout_at(deadline, conn.send(&batch)).await;
    sent
}

/// Asserts that the connection gets a GOAWAY with `ENHANCE_YOUR_CALM` and then ends.
async fn assert_goaway_calm(conn: &mut RawConn, case: &str) {
    let goaway = conn
        .until_goaway(PATIENCE)
        .await
        .unwrap_or_else(|| panic!("{case}: the connection ended without a GOAWAY"));
    assert_eq!(
        goaway.error_code(),
        Some(frames::ENHANCE_YOUR_CALM),
        "{case}: {goaway:?}"
    );
    assert!(
        conn.closed_within(PATIENCE).await,
        "{case}: still open after the GOAWAY"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_requests_gets_goaway_and_memory_stays_bounded() {
    let server = child(&[]).await;
    let mut conn = RawConn::open(server.addr).await;
    // No :path: each one is malformed, and h2 resets it with PROTOCOL_ERROR.
    let malformed = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
    ]);
    let requests = (0..200_000u32).map(|i| {
        frames::frame(
            frames::HEADERS,
            frames::END_HEADERS | frames::END_STREAM,
            2 * i + 1,
            &malformed,
        )
    });
    let sent = flood(&mut conn, requests).await;
    let (now, peak) = resident_kib(server.pid().expect("the server runs"));
    eprintln!("{sent} malformed requests sent; server resident {now} KiB, peak {peak} KiB");
    assert_goaway_calm(&mut conn, "malformed requests").await;
    assert_memory(&server, "malformed-request flood");
    probe_addr(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway() {
    let server = child(&[]).await;
    let mut conn = RawConn::open(server.addr).await;
    let headers = grpc_headers(STREAM_V2);
    let requests = (0..100_000u32).map(|i| {
        let id = 2 * i + 1;
        let mut bytes = frames::frame(frames::HEADERS, frames::END_HEADERS, id, &headers);
        bytes.extend(frames::rst_stream(id, frames::CANCEL));
        bytes
    });
    flood(&mut conn, requests).await;
    assert_goaway_calm(&mut conn, "rapid reset").await;
    assert_memory(&server, "rapid-reset flood");
    probe_addr(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_gets_goaway() {
    let server = child(&[]).await;
    let mut conn = RawConn::open(server.addr).await;
    let headers = grpc_headers(STREAM_V2);
    let first = frames::frame(frames::HEADERS, 0, 1, &headers);
    // Each CONTINUATION adds one small header; END_HEADERS never comes.
    let more = header_block(&[("x-pad", "0123456789")]);
    let continuations = std::iter::once(first)
        .chain((0..200_000).map(|_| frames::frame(frames::CONTINUATION, 0, 1, &more)));
    flood(&mut conn, continuations).await;
    let goaway = conn
        .until_goaway(PATIENCE)
        .await
        .expect("the CONTINUATION flood ends with a GOAWAY");
    assert!(
        matches!(goaway.error_code(), Some(frames::ENHANCE_YOUR_CALM | 0x9)),
        "ENHANCE_YOUR_CALM or COMPRESSION_ERROR, got {goaway:?}"
    );
    assert!(conn.closed_within(PATIENCE).await);
    assert_memory(&server, "CONTINUATION flood");
    probe_addr(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_data_flood_leaves_memory_flat() {
    let server = child(&[]).await;
    let mut conn = RawConn::open(server.addr).await;
    let open = frames::frame(
        frames::HEADERS,
        frames::END_HEADERS,
        1,
        &grpc_headers(STREAM_V2),
    );
    let empties =
        std::iter::once(open).chain((0..500_000).map(|_| frames::frame(frames::DATA, 0, 1, &[])));
    flood(&mut conn, empties).await;
    assert_memory(&server, "empty-DATA flood");
    probe_addr(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_million_pings_without_reading_leave_memory_flat() {
    let server = child(&[]).await;
    let mut conn = RawConn::open(server.addr).await;
    let pings = (0..500_000u64).map(|i| frames::frame(frames::PING, 0, 0, &i.to_be_bytes()));
    flood(&mut conn, pings).await;
    assert_memory(&server, "ping flood");
    probe_addr(server.addr).await;
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

/// The server's first SETTINGS frame on a new connection.
async fn server_settings(conn: &mut RawConn) -> Vec<(u16, u32)> {
    loop {
        let frame = conn
            .next_frame(PATIENCE)
            .await
            .expect("the server sends its SETTINGS");
        if frame.kind == frames::SETTINGS && frame.flags & frames::ACK == 0 {
            return frame.settings();
        }
    }
}

#[tokio::test]
async fn streams_past_the_advertised_limit_are_refused() {
    let server = start(Deployment::SideBySide).await;
    let mut conn = RawConn::open(server.addr).await;
    let settings = server_settings(&mut conn).await;
    let advertised = settings
        .iter()
        .find(|(id, _)| *id == frames::SETTINGS_MAX_CONCURRENT_STREAMS)
        .map(|(_, value)| *value);
    assert_eq!(
        advertised,
        Some(port::server::DEFAULT_MAX_CONCURRENT_STREAMS),
        "{settings:?}"
    );
    let limit = advertised.unwrap_or_default();
    // Streams that stay open: IncrementStream with the request side left open.
    let headers = grpc_headers(STREAM_V2);
    let over = 50;
    let mut bytes = Vec::new();
    for i in 0..limit + over {
        bytes.extend(frames::frame(
            frames::HEADERS,
            frames::END_HEADERS,
            2 * i + 1,
            &headers,
        ));
    }
    conn.send(&bytes).await.unwrap();
    let mut refused = 0;
    while refused < over {
        let Some(frame) = conn.next_frame(PATIENCE).await else {
            break;
        };
        if frame.kind == frames::RST_STREAM {
            assert_eq!(
                frame.error_code(),
                Some(frames::REFUSED_STREAM),
                "{frame:?}"
            );
            assert!(frame.stream > 2 * (limit - 1) + 1, "{frame:?}");
            refused += 1;
        }
    }
    assert_eq!(refused, over, "every stream past {limit} is refused");
    probe(&server).await;
    drop(conn);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_header_block_gets_431_and_a_huge_one_goaway() {
    let server = start(Deployment::SideBySide).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut h2 = h2.ready().await.unwrap();
    // Over the 16 KiB limit: the stream is refused with 431 and the connection kept (RFC 9113
    // section 10.5.1).
    let big = "x".repeat(20 * 1024);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{UNARY_V1}", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-big", big.as_str())
        .body(())
        .unwrap();
    let (response, _send) = h2.send_request(request, true).unwrap();
    let response = response.await.expect("an HTTP answer, not a reset");
    assert_eq!(response.status(), 431);

    // The same connection still serves a call.
    let mut h2 = h2.ready().await.expect("the connection is kept");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{UNARY_V1}", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = h2.send_request(request, false).unwrap();
    send.send_data(frame(false, 2, &VALUE_41).into(), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let data = body.data().await.unwrap().unwrap();
    assert_eq!(&data[5..], &[0x08, 42]);
    let trailers = body.trailers().await.unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0");

    // Far over it (100 KiB, over four times the limit): h2 calls it abuse, GOAWAY
    // ENHANCE_YOUR_CALM, and closes the connection, which the spec allows.
    let mut conn = RawConn::open(server.addr).await;
    let mut headers = grpc_headers(UNARY_V1);
    headers.extend(header_block(&[("x-big", &"x".repeat(100 * 1024))]));
    let mut bytes = Vec::new();
    let mut chunks = headers.chunks(16 * 1024).peekable();
    let mut kind = frames::HEADERS;
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            frames::END_HEADERS | frames::END_STREAM
        } else {
            0
        };
        bytes.extend(frames::frame(kind, flags, 1, chunk));
        kind = frames::CONTINUATION;
    }
    let _ = conn.send(&bytes).await;
    assert_goaway_calm(&mut conn, "100 KiB of headers").await;
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_header_list_limit_is_advertised_and_configurable() {
    let options = ServeOptions {
        max_header_list_bytes: 4096,
        ..ServeOptions::default()
    };
    let server = start_with(Deployment::SideBySide, options).await;
    let mut conn = RawConn::open(server.addr).await;
    let settings = server_settings(&mut conn).await;
    assert!(
        settings.contains(&(frames::SETTINGS_MAX_HEADER_LIST_SIZE, 4096)),
        "{settings:?}"
    );
    let reply = send_with(
        server.addr,
        UNARY_V1,
        &[
            ("content-type", "application/grpc"),
            ("x-pad", &"y".repeat(5000)),
        ],
        frame(false, 2, &VALUE_41),
    )
    .await;
    assert_eq!(reply.http_status, 431, "{reply:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_at_once_and_the_rest_served() {
    let options = ServeOptions {
        max_connections: 4,
        ..ServeOptions::default()
    };
    let server = start_with(Deployment::SideBySide, options).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let channel = client::connect(server.addr).await.unwrap();
        let mut client = v1::incrementer_client::IncrementerClient::new(channel);
        client
            .increment(v1::IncrementRequest { value: 1 })
            .await
            .unwrap();
        clients.push(client);
    }
    for _ in 0..3 {
        let mut extra = RawConn::open(server.addr).await;
        assert!(
            extra.closed_within(PATIENCE).await,
            "a connection past the limit is closed"
        );
    }
    for client in &mut clients {
        let reply = client
            .increment(v1::IncrementRequest { value: 41 })
            .await
            .expect("the connections within the limit are served");
        assert_eq!(reply.into_inner().value, 42);
    }
    drop(clients);
    tokio::time::timeout(PATIENCE, async {
        while server.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed clients' connections are gone");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_the_handshake_are_closed() {
    let options = ServeOptions {
        handshake_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let server = start_with(Deployment::SideBySide, options).await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut conn = RawConn::connect(server.addr).await;
        match i % 3 {
            0 => {}                                                // silent
            1 => conn.send(&frames::PREFACE[..10]).await.unwrap(), // half a preface
            _ => conn.send(frames::PREFACE).await.unwrap(),        // preface, no SETTINGS
        }
        slow.push(conn);
    }
    // Served meanwhile.
    probe(&server).await;
    for (i, conn) in slow.iter_mut().enumerate() {
        assert!(
            conn.closed_within(PATIENCE).await,
            "slow connection {i} is still open"
        );
    }
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_goes_silent_is_closed_by_keepalive() {
    let options = ServeOptions {
        keepalive_interval: Some(Duration::from_secs(1)),
        keepalive_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let server = start_with(Deployment::SideBySide, options).await;
    // A finished handshake, then silence: the server's pings go unanswered.
    let mut conn = RawConn::open(server.addr).await;
    conn.send(&frames::settings_ack()).await.unwrap();
    assert!(conn.closed_within(PATIENCE).await, "still open");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_sends_goaway_ping_goaway() {
    let server = start(Deployment::SideBySide).await;
    let mut conn = RawConn::open(server.addr).await;
    conn.send(&frames::settings_ack()).await.unwrap();
    server_settings(&mut conn).await;
    let stopping = tokio::spawn(server.shutdown());
    let mut seen = Vec::new();
    while let Some(frame) = conn.next_frame(PATIENCE).await {
        match frame.kind {
            frames::GOAWAY => seen.push("GOAWAY"),
            frames::PING if frame.flags & frames::ACK == 0 => {
                seen.push("PING");
                let ack = frames::frame(frames::PING, frames::ACK, 0, &frame.payload);
                conn.send(&ack).await.unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["GOAWAY", "PING", "GOAWAY"]);
    stopping.await.unwrap().unwrap();
}

// ---- Answers the gRPC specification fixes ----

#[tokio::test]
async fn a_unary_call_with_zero_or_two_messages_is_internal() {
    for deployment in [Deployment::SideBySide, Deployment::Direct] {
        let server = start(deployment).await;
        let mut two = frame(false, 2, &VALUE_41);
        two.extend(frame(false, 2, &VALUE_41));
        for (case, body) in [("two messages", two), ("no message", Vec::new())] {
            let reply = send(server.addr, UNARY_V1, "application/grpc", body).await;
            assert_eq!(
                reply.grpc_status,
                Some(Code::Internal as i32),
                "{deployment}: {case}: {reply:?}"
            );
            assert!(
                reply.grpc_message.contains("unary"),
                "{deployment}: {case}: {reply:?}"
            );
        }
        probe(&server).await;
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_method_other_than_post_is_405() {
    let server = start(Deployment::SideBySide).await;
    for method in ["GET", "PUT"] {
        let reply = send_method(
            server.addr,
            method,
            UNARY_V1,
            &[("content-type", "application/grpc")],
            frame(false, 2, &VALUE_41),
        )
        .await;
        assert_eq!(reply.http_status, 405, "{method}: {reply:?}");
        assert_eq!(reply.grpc_status, Some(Code::Internal as i32), "{reply:?}");
        assert!(reply.grpc_message.contains(method), "{reply:?}");
    }
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unsupported_grpc_encoding_is_unimplemented_with_the_accepted_ones() {
    for deployment in [Deployment::SideBySide, Deployment::Direct] {
        let server = start(deployment).await;
        let reply = send_with(
            server.addr,
            UNARY_V1,
            &[
                ("content-type", "application/grpc"),
                ("grpc-encoding", "snappy"),
            ],
            frame(true, 2, &VALUE_41),
        )
        .await;
        assert_eq!(
            reply.grpc_status,
            Some(Code::Unimplemented as i32),
            "{deployment}: {reply:?}"
        );
        assert!(reply.grpc_message.contains("snappy"), "{reply:?}");
        let accepted = reply
            .headers
            .get("grpc-accept-encoding")
            .or(reply.trailers.get("grpc-accept-encoding"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut names: Vec<&str> = accepted.split(',').map(str::trim).collect();
        names.sort_unstable();
        // What tonic decodes for the port's own services, and nothing else.
        assert_eq!(
            names,
            ["deflate", "gzip", "identity", "zstd"],
            "{deployment}: {reply:?}"
        );
        // identity is the absence of compression: served.
        let reply = send_with(
            server.addr,
            UNARY_V1,
            &[
                ("content-type", "application/grpc"),
                ("grpc-encoding", "identity"),
            ],
            frame(false, 2, &VALUE_41),
        )
        .await;
        assert_eq!(reply.grpc_status, Some(0), "{deployment}: {reply:?}");
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_http_400_and_internal() {
    let server = start(Deployment::SideBySide).await;
    for bad in ["soon", "123456789m", "5x"] {
        let reply = send_with(
            server.addr,
            UNARY_V1,
            &[("content-type", "application/grpc"), ("grpc-timeout", bad)],
            frame(false, 2, &VALUE_41),
        )
        .await;
        assert_eq!(reply.http_status, 400, "{bad}: {reply:?}");
        assert_eq!(reply.grpc_status, Some(Code::Internal as i32), "{reply:?}");
        assert!(reply.grpc_message.contains("grpc-timeout"), "{reply:?}");
    }
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_of_exactly_the_limit_passes_and_one_byte_more_fails() {
    for deployment in [Deployment::SideBySide, Deployment::Direct] {
        let limit = 64;
        let options = ServeOptions {
            max_message_bytes: limit,
            ..ServeOptions::default()
        };
        let server = start_with(deployment, options).await;
        // value 41, then an unknown bytes field (number 3) padding the message to `size`.
        let message = |size: usize| {
            let mut m = VALUE_41.to_vec();
            m.extend([0x1a, (size - 4) as u8]);
            m.resize(size, b'p');
            m
        };
        let exact = message(limit);
        let reply = send(
            server.addr,
            UNARY_V1,
            "application/grpc",
            frame(false, exact.len() as u32, &exact),
        )
        .await;
        assert_eq!(reply.grpc_status, Some(0), "{deployment}: {reply:?}");
        let over = message(limit + 1);
        let reply = send(
            server.addr,
            UNARY_V1,
            "application/grpc",
            frame(false, over.len() as u32, &over),
        )
        .await;
        assert_eq!(
            reply.grpc_status,
            Some(Code::ResourceExhausted as i32),
            "{deployment}: {reply:?}"
        );
        probe(&server).await;
        server.shutdown().await.unwrap();
    }
}

/// Longest `grpc-message` any answer may carry here, percent-encoded: well under every
/// client's metadata limit (grpcio's is 8 KiB).
const MESSAGE_BOUND: usize = 1024;

#[tokio::test]
async fn client_input_quoted_in_errors_is_cut_short() {
    let server = start(Deployment::SideBySide).await;
    let long = "9".repeat(10_000);
    let long_path = format!("/{}/Method", "a".repeat(10_000));
    let long_type = format!("text/{long}");
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Code);
    let cases: [Case; 4] = [
        (
            "long x-api-version",
            UNARY_V1,
            vec![("x-api-version", long.as_str())],
            Code::InvalidArgument,
        ),
        (
            "long content-type",
            UNARY_V1,
            vec![("content-type", long_type.as_str())],
            Code::InvalidArgument,
        ),
        (
            "long grpc-timeout",
            UNARY_V1,
            vec![("grpc-timeout", long.as_str())],
            Code::Internal,
        ),
        ("long path", long_path.as_str(), vec![], Code::Unimplemented),
    ];
    for (case, path, extra, code) in cases {
        let mut headers = vec![("content-type", "application/grpc")];
        headers.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
        headers.extend(extra.iter().copied());
        let reply = send_with(server.addr, path, &headers, frame(false, 2, &VALUE_41)).await;
        assert_eq!(reply.grpc_status, Some(code as i32), "{case}: {reply:?}");
        let raw = reply
            .trailers
            .get("grpc-message")
            .or(reply.headers.get("grpc-message"))
            .map_or(0, |v| v.len());
        assert!(
            raw <= MESSAGE_BOUND,
            "{case}: grpc-message of {raw} bytes: {:?}",
            &reply.grpc_message[..200]
        );
    }
    // Through a real client too: the tonic client sees the status, not a transport error.
    let mut client = v1_client(&server).await;
    let mut request = tonic::Request::new(v1::IncrementRequest { value: 1 });
    request
        .metadata_mut()
        .insert("x-api-version", long.parse().unwrap());
    let status = client.increment(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() <= MESSAGE_BOUND, "{status:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_repeated_x_api_version_is_invalid_argument() {
    let server = start(Deployment::SideBySide).await;
    let reply = send_with(
        server.addr,
        UNARY_V1,
        &[
            ("content-type", "application/grpc"),
            ("x-api-version", "^1"),
            ("x-api-version", "^2"),
        ],
        frame(false, 2, &VALUE_41),
    )
    .await;
    assert_eq!(
        reply.grpc_status,
        Some(Code::InvalidArgument as i32),
        "{reply:?}"
    );
    assert!(reply.grpc_message.contains("x-api-version"), "{reply:?}");
    probe(&server).await;
    server.shutdown().await.unwrap();
}

// ---- The interop cases (grpc's interop-test-descriptions) that apply to this API ----
// cancel_after_first_response and timeout_on_sleeping_server are in tests/hardening.rs (a
// client that cancels mid-stream; a deadline shorter than the work). status_code_and_message
// and custom_metadata need grpc.testing.TestService (`serve --interop`): tests/interop.rs.

#[tokio::test]
async fn interop_empty_stream() {
    let server = start(Deployment::SideBySide).await;
    for api in [services::Api::V1, services::Api::V2] {
        let client = client::IncrementerClient::connect(api, server.addr)
            .await
            .unwrap();
        let replies = client.increment_stream(&[], None).await;
        assert_eq!(replies.expect("an empty stream ends OK"), []);
    }
    until_idle(&server, PATIENCE).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn interop_cancel_after_begin() {
    let server = start(Deployment::SideBySide).await;
    let (mut send, _replies) = crate::common::raw::open_call(server.addr, STREAM_V2).await;
    assert_eq!(server.open_requests(), 1);
    send.send_reset(h2::Reason::CANCEL);
    until_idle(&server, PATIENCE).await;
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn interop_unimplemented_service_and_method() {
    let server = start(Deployment::SideBySide).await;
    for path in [
        "/grpc.testing.UnimplementedService/UnimplementedCall",
        "/increment.v1.Incrementer/UnimplementedCall",
    ] {
        let reply = send(server.addr, path, "application/grpc", frame(false, 0, &[])).await;
        assert_eq!(
            reply.grpc_status,
            Some(Code::Unimplemented as i32),
            "{path}: {reply:?}"
        );
    }
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_concurrent_calls_on_one_channel() {
    let server = start(Deployment::SideBySide).await;
    let channel = crate::common::channel(&server).await;
    let v2 = client::IncrementerClient::new(services::Api::V2, channel.clone());
    let v1 = client::IncrementerClient::new(services::Api::V1, channel);
    // More calls than the per-connection stream limit: the client queues the rest.
    let calls: Vec<_> = (0..300i64)
        .map(|i| {
            let (v1, v2) = (v1.clone(), v2.clone());
            tokio::spawn(async move {
                if i % 3 == 0 {
                    let replies = v2.increment_stream(&[i, i + 1], Some(2)).await.unwrap();
                    assert_eq!(
                        replies.iter().map(|r| r.value).collect::<Vec<_>>(),
                        [i + 2, i + 3]
                    );
                } else if i % 3 == 1 {
                    let reply = v2.increment(i, Some(3), i as u64).await.unwrap();
                    assert_eq!((reply.value, reply.request_id), (i + 3, i as u64));
                } else {
                    assert_eq!(v1.increment(i, None, 0).await.unwrap().value, i + 1);
                }
            })
        })
        .collect();
    for call in calls {
        call.await
            .expect("every concurrent call is answered correctly");
    }
    assert_eq!(server.open_connections(), 1);
    until_idle(&server, PATIENCE).await;
    server.shutdown().await.unwrap();
}
