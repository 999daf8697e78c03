//! The port as an attacker would try it, with hand-made HTTP/2 frames: each flood or slow
//! client meets a limit (a GOAWAY, a refused stream, a closed connection) and a new client is
//! served afterwards. The floods run here against `testbed serve` in a child process, whose peak
//! resident memory (`VmHWM`) is asserted to stay under [`MEMORY_BOUND_KIB`]; the connection and
//! stream limits are in [`connections`], and the answers the gRPC specification fixes (unary
//! cardinality, methods, encodings, timeouts, sizes, client input quoted in errors cut short,
//! the interop cases) in [`spec`].

mod connections;
mod spec;

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
