//! Each proxy with its timeouts and limits tuned: an idle bidi stream cut at the idle timeout,
//! and every client reconnecting after a GOAWAY sent after a few requests.

use super::*;

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
