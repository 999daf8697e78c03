//! Partial request bodies (issue 22, case 2): one connection opens many streams, each declaring a
//! large message and sending all of it but its last byte. The port holds such bytes only within
//! its body budgets (`--body-budget-bytes`, `--connection-body-budget-bytes`): streams past a
//! budget get `RESOURCE_EXHAUSTED` naming it, the child's peak resident memory (`VmHWM`) stays
//! within a bound over its idle baseline, and a new client is served afterwards. Both the
//! gateway (`serve --upstream`) and the in-process side-by-side router are attacked, since the
//! guard is in front of both.

use crate::common::frames::resident_kib;
use crate::common::raw::{frame, grpc_request};
use crate::common::{probe, until_idle};
use bytes::Bytes;
use port::child::ChildServer;
use port::deployment::Deployment;
use port::guard::BodyLimits;
use port::server::{self, RunningServer, ServeOptions};
use services::pb::v2;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tonic::Code;

const UNARY_V1: &str = "/increment.v1.Incrementer/Increment";
const UNARY_V2: &str = "/increment.v2.Incrementer/Increment";
const STREAM_V2: &str = "/increment.v2.Incrementer/IncrementStream";
/// Streams opened on the one attacking connection (the port's default stream limit).
const STREAMS: usize = 200;
/// The size each stream declares: the default message limit, so the size check lets it in.
const DECLARED: usize = 4 * 1024 * 1024;
/// How far the child's peak resident memory may rise over its idle baseline: 64 MiB. Without
/// the budgets, 200 such streams took the gateway from 15.8 MB to 846 MB.
const GROWTH_BOUND_KIB: u64 = 64 * 1024;
/// Generous bound for the server to answer or take every byte; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// How one stream of the attack ended.
#[derive(Debug)]
enum Ending {
    /// Every byte but the last went out (the server took them all in).
    Sent,
    /// The server answered first, with this status and message.
    Answered(Option<i32>, String),
    /// The stream was reset before all was out.
    Reset(String),
}

/// The gRPC status of a reply, from its trailers-only headers.
fn status_of(response: &http::Response<h2::RecvStream>) -> (Option<i32>, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    (
        header("grpc-status").and_then(|v| v.parse().ok()),
        header("grpc-message").unwrap_or_default(),
    )
}

/// A stream left open by the attack: dropping it resets the stream.
type Held = (h2::SendStream<Bytes>, Pin<Box<h2::client::ResponseFuture>>);

/// Sends `payload` on `send` as the server's flow control lets it through, until all of it is
/// out or the reply comes; a stream whose bytes are all out is handed back, still open.
async fn drive(
    mut send: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
    mut payload: Bytes,
) -> (Ending, Option<Held>) {
    let mut response = Box::pin(response);
    while !payload.is_empty() {
        send.reserve_capacity(payload.len());
        tokio::select! {
            capacity = std::future::poll_fn(|cx| send.poll_capacity(cx)) => match capacity {
                Some(Ok(n)) => {
                    let chunk = payload.split_to(n.min(payload.len()));
                    // The stream may have ended since its capacity came ("inactive stream"):
                    // the server's response says whether it answered or reset it.
                    if send.send_data(chunk, false).is_err() {
                        return (answered_with(response.await), None);
                    }
                }
                Some(Err(_)) => return (answered_with(response.await), None),
                // Closed for sending: the server answered (and stopped reading).
                None => return (answered_with(response.await), None),
            },
            answered = &mut response => return (answered_with(answered), None),
        }
    }
    // All is out: a reply may still come (a refusal racing the last chunk), else the server
    // holds the stream open for the missing byte.
    match tokio::time::timeout(Duration::from_millis(500), &mut response).await {
        Ok(answered) => (answered_with(answered), None),
        Err(_) => (Ending::Sent, Some((send, response))),
    }
}

fn answered_with(answered: Result<http::Response<h2::RecvStream>, h2::Error>) -> Ending {
    match answered {
        Ok(response) => {
            let (code, message) = status_of(&response);
            Ending::Answered(code, message)
        }
        Err(err) => Ending::Reset(err.to_string()),
    }
}

/// Opens [`STREAMS`] streams to `path` on one connection, each declaring a [`DECLARED`]-byte
/// message and sending all of it but the last byte; returns how each ended and the connection
/// with the streams that wait for their last byte (open until dropped).
async fn partial_bodies(
    addr: SocketAddr,
    path: &str,
) -> (Vec<Ending>, (h2::client::SendRequest<Bytes>, Vec<Held>)) {
    let mut h2 = connect(addr).await;
    // One shared buffer: every stream sends slices of it, so this process stays small.
    let mut body = frame(false, DECLARED as u32, &[]);
    body.resize(5 + DECLARED - 1, b'p');
    let body = Bytes::from(body);
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..STREAMS {
        h2 = h2.ready().await.unwrap();
        let (response, send) = h2.send_request(grpc_request(addr, path), false).unwrap();
        streams.spawn(drive(send, response, body.clone()));
    }
    let ended = tokio::time::timeout(PATIENCE, streams.join_all())
        .await
        .expect("every stream is answered or takes its bytes: none hangs");
    let (endings, held): (Vec<_>, Vec<_>) = ended.into_iter().unzip();
    (endings, (h2, held.into_iter().flatten().collect()))
}

/// Runs the attack against the child `server` on `path`, asserts its bounds and prints the
/// figures; `served` checks that a new client is served afterwards.
async fn attack_child(server: &ChildServer, path: &str, case: &str) {
    let pid = server.pid().expect("the server runs");
    let (idle, _) = resident_kib(pid);
    let (endings, connection) = partial_bodies(server.addr, path).await;
    let sent = endings.iter().filter(|e| matches!(e, Ending::Sent)).count();
    let (now, peak) = resident_kib(pid);
    eprintln!(
        "{case}: {sent} of {STREAMS} streams sent all but their last byte; resident {idle} KiB idle, {now} KiB now, peak {peak} KiB"
    );
    for ending in &endings {
        match ending {
            Ending::Sent => {}
            Ending::Answered(code, message) => {
                assert_eq!(
                    *code,
                    Some(Code::ResourceExhausted as i32),
                    "{case}: {ending:?}"
                );
                assert!(message.contains("body-budget-bytes"), "{case}: {ending:?}");
            }
            Ending::Reset(err) => panic!("{case}: a stream was reset, not answered: {err}"),
        }
    }
    drop(connection);
    // The client's side of the connection closes once every stream handle is gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = resident_kib(pid);
    eprintln!("{case}: resident {after} KiB after the connection closed");
    assert!(
        peak.saturating_sub(idle) <= GROWTH_BOUND_KIB,
        "{case}: peak resident memory {peak} KiB is more than {GROWTH_BOUND_KIB} KiB over the idle {idle} KiB"
    );
}

/// The `testbed` executable the attacks run: this build's, or the one `TESTBED_BODIES_EXE`
/// names (to measure a release build, or another commit's, with the same attack).
fn testbed_exe() -> std::path::PathBuf {
    std::env::var_os("TESTBED_BODIES_EXE")
        .map_or_else(|| env!("CARGO_BIN_EXE_testbed").into(), Into::into)
}

/// Calls v2's Increment through `addr`: the port still serves a new client.
async fn increment_v2(addr: SocketAddr) {
    let channel = client::connect(addr).await.expect("a new client connects");
    let mut client = v2::incrementer_client::IncrementerClient::new(channel);
    let reply = client
        .increment(v2::IncrementRequest {
            value: 41,
            step: None,
            request_id: 7,
        })
        .await
        .expect("the port still serves");
    assert_eq!(reply.into_inner().value, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_bodies_through_the_gateway_stay_within_the_budget() {
    let exe = testbed_exe();
    let backend =
        ChildServer::testbed(&exe, &["serve", "--backend", "v2", "--addr", "127.0.0.1:0"])
            .await
            .expect("the v2 backend starts");
    let upstream = format!("v2=2.0.0@{}", backend.addr);
    let gateway = ChildServer::testbed(
        &exe,
        &["serve", "--addr", "127.0.0.1:0", "--upstream", &upstream],
    )
    .await
    .expect("the gateway starts");
    increment_v2(gateway.addr).await;
    attack_child(&gateway, UNARY_V2, "gateway").await;
    increment_v2(gateway.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_bodies_to_the_side_by_side_router_stay_within_the_budget() {
    let exe = testbed_exe();
    let server = ChildServer::testbed(&exe, &["serve", "--addr", "127.0.0.1:0"])
        .await
        .expect("testbed serve starts");
    crate::common::probe_addr(server.addr).await;
    attack_child(&server, UNARY_V1, "side by side").await;
    crate::common::probe_addr(server.addr).await;
}

/// `IncrementRequest { value: 41 }` padded with an unknown bytes field to `size` bytes (at most
/// 129), framed.
fn padded_request(size: usize) -> Vec<u8> {
    let mut message = vec![0x08, 41, 0x1a, (size - 4) as u8];
    message.resize(size, b'p');
    frame(false, size as u32, &message)
}

/// An h2 connection to `addr`.
async fn connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    h2.ready().await.unwrap()
}

/// Opens a call to `path` on `h2` (connected to `addr`) and sends `bytes`, ending the request
/// if `end`.
async fn open_call(
    h2: &mut h2::client::SendRequest<Bytes>,
    (addr, path): (SocketAddr, &str),
    bytes: Vec<u8>,
    end: bool,
) -> (h2::SendStream<Bytes>, h2::client::ResponseFuture) {
    let ready = h2.clone().ready().await.unwrap();
    *h2 = ready;
    let (response, mut send) = h2.send_request(grpc_request(addr, path), false).unwrap();
    send.send_data(Bytes::from(bytes), end).unwrap();
    (send, response)
}

/// The gRPC status and message of a whole reply (trailers-only or not).
async fn reply(response: h2::client::ResponseFuture) -> (Option<i32>, String) {
    let response = response.await.expect("an answer, not a reset");
    let (code, message) = status_of(&response);
    if code.is_some() {
        return (code, message);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let field = |name: &str| trailers.get(name).and_then(|v| v.to_str().ok());
    (
        field("grpc-status").and_then(|v| v.parse().ok()),
        field("grpc-message").unwrap_or_default().to_string(),
    )
}

/// A whole 80-byte call on `h2`, sent until the server refuses it (the half-sent message on the
/// same connection or another one must be charged first); every earlier attempt is served.
async fn refused_while_held(h2: &mut h2::client::SendRequest<Bytes>, addr: SocketAddr, flag: &str) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (_send, response) = open_call(h2, (addr, UNARY_V1), padded_request(80), true).await;
            match reply(response).await {
                (Some(0), _) => tokio::time::sleep(Duration::from_millis(20)).await,
                (code, message) => {
                    assert_eq!(code, Some(Code::ResourceExhausted as i32), "{message}");
                    assert!(message.contains(flag), "{message}");
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never refused by {flag}"));
}

async fn start_with_budgets(connection: u64, total: u64) -> RunningServer {
    let options = ServeOptions {
        bodies: BodyLimits {
            body_budget_bytes: total,
            connection_body_budget_bytes: connection,
        },
        ..ServeOptions::default()
    };
    let deployment = Deployment::SideBySide;
    let layout = deployment.layout(options.max_message_bytes).unwrap();
    server::start_with("127.0.0.1:0".parse().unwrap(), layout, "budgets", &options)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_a_body_budget_is_resource_exhausted_naming_its_flag() {
    let server = start_with_budgets(100, 150).await;
    // 10 of 80 declared bytes: the connection's share holds 80 until the rest comes.
    let mut a = connect(server.addr).await;
    let whole = padded_request(80);
    let (mut held, response) =
        open_call(&mut a, (server.addr, UNARY_V1), whole[..15].to_vec(), false).await;
    refused_while_held(&mut a, server.addr, "--connection-body-budget-bytes").await;
    // Another connection has a share of its own, but the port's budget is 150 bytes.
    let mut b = connect(server.addr).await;
    refused_while_held(&mut b, server.addr, "--body-budget-bytes").await;
    // The rest of the held message: served, and its bytes are free again.
    held.send_data(Bytes::copy_from_slice(&whole[15..]), true)
        .unwrap();
    assert_eq!(reply(response).await.0, Some(0));
    let (_send, response) =
        open_call(&mut b, (server.addr, UNARY_V1), padded_request(80), true).await;
    assert_eq!(reply(response).await.0, Some(0));
    let (_send, response) =
        open_call(&mut a, (server.addr, UNARY_V1), padded_request(80), true).await;
    assert_eq!(reply(response).await.0, Some(0));
    until_idle(&server, PATIENCE).await;
    probe(&server).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_the_budget_mid_call_ends_with_resource_exhausted() {
    let server = start_with_budgets(100, 1000).await;
    let mut h2 = connect(server.addr).await;
    // A held message on a bidi stream whose reply is under way, then a second stream's message
    // would go over: the second stream's reply ends with the refusal.
    let (_held, _first) = open_call(
        &mut h2,
        (server.addr, UNARY_V1),
        padded_request(80)[..15].to_vec(),
        false,
    )
    .await;
    // IncrementRequest { value: 1 }: answered, so the reply's headers are out.
    let stream = (server.addr, STREAM_V2);
    let (mut send, response) = open_call(&mut h2, stream, frame(false, 2, &[0x08, 1]), false).await;
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.data().await.unwrap().unwrap();
    let _ = body.flow_control().release_capacity(first.len());
    let mut over = frame(false, 80, &[0x08, 2]);
    over.truncate(10);
    send.send_data(Bytes::from(over), false).unwrap();
    let trailers = tokio::time::timeout(PATIENCE, async {
        while let Some(chunk) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.unwrap().len());
        }
        body.trailers().await.unwrap().unwrap_or_default()
    })
    .await
    .expect("the stream ends, not hangs");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("8"),
        "{trailers:?}"
    );
    let message = trailers["grpc-message"].to_str().unwrap();
    assert!(
        message.contains("--connection-body-budget-bytes"),
        "{message}"
    );
    probe(&server).await;
}
