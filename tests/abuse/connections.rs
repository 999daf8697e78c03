//! The port's connection and stream limits against raw HTTP/2: streams past the advertised
//! limit refused, oversized header blocks, the header list limit, connections past the limit,
//! handshakes never finished and silent connections closed, and graceful shutdown's GOAWAY,
//! PING, GOAWAY.

use super::*;

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
