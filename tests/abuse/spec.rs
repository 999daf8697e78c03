//! The answers the gRPC specification fixes, against raw HTTP/2: unary cardinality, methods,
//! encodings, timeouts, sizes, client input quoted in errors cut short, a repeated
//! `x-api-version`, and the interop cases that apply to this API.

use super::*;

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
