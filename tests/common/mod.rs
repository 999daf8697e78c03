//! Helpers shared by the integration tests: start a deployment on a free loopback port,
//! build clients, and find external tools (a missing tool fails under CI=true, else skips).

pub(crate) mod credentials;
pub(crate) mod frames;
pub(crate) mod prometheus;
pub(crate) mod raw;
pub(crate) mod served;
pub(crate) mod shop;

use client::tools::MissingTool;
use port::deployment::Deployment;
use port::server::{self, RunningServer};
use services::pb::{v1, v2};
use std::path::PathBuf;
use tonic::transport::Channel;

/// Starts `deployment` on 127.0.0.1 with an OS-chosen port.
pub(crate) async fn start(deployment: Deployment) -> RunningServer {
    server::start("127.0.0.1:0".parse().unwrap(), deployment)
        .await
        .expect("test server starts")
}

/// A channel to a running server.
pub(crate) async fn channel(server: &RunningServer) -> Channel {
    client::connect(server.addr)
        .await
        .expect("test client connects")
}

/// A v1 client of a running server.
pub(crate) async fn v1_client(
    server: &RunningServer,
) -> v1::incrementer_client::IncrementerClient<Channel> {
    v1::incrementer_client::IncrementerClient::new(channel(server).await)
}

/// A v2 client of a running server.
pub(crate) async fn v2_client(
    server: &RunningServer,
) -> v2::incrementer_client::IncrementerClient<Channel> {
    v2::incrementer_client::IncrementerClient::new(channel(server).await)
}

/// A v2 request.
pub(crate) fn v2_request(value: i64, step: Option<i64>, request_id: u64) -> v2::IncrementRequest {
    v2::IncrementRequest {
        value,
        step,
        request_id,
    }
}

/// The tool, or `None` (with a note) when it is missing outside CI. Under `CI=true` a missing
/// tool fails the test: CI must run the external-client tests, never skip them.
pub(crate) fn tool(found: Result<PathBuf, MissingTool>) -> Option<PathBuf> {
    match found {
        Ok(path) => Some(path),
        Err(missing) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and a required tool is missing: {missing}")
        }
        Err(missing) => {
            eprintln!("skipping: {missing}");
            None
        }
    }
}

/// A v2 `IncrementStream` kept open: requests go in through the sender, replies come out of the
/// stream. The stream has already answered one request (value 1 → 2), so it is surely in flight.
pub(crate) async fn open_v2_stream(
    server: &RunningServer,
) -> (
    tokio::sync::mpsc::Sender<v2::IncrementRequest>,
    tonic::Streaming<v2::IncrementReply>,
) {
    let (send, outbound) = tokio::sync::mpsc::channel(4);
    let mut client = v2_client(server).await;
    let mut replies = client
        .increment_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect("the stream opens")
        .into_inner();
    send.send(v2_request(1, None, 1)).await.unwrap();
    let first = replies.message().await.unwrap().expect("a first reply");
    assert_eq!(first.value, 2);
    (send, replies)
}

/// `testbed serve --backend v2` in a child process, and a router on this process's port that
/// reaches it as a remote upstream.
pub(crate) async fn router_over_v2_process() -> (port::child::ChildServer, RunningServer) {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = ["serve", "--backend", "v2", "--addr", "127.0.0.1:0"];
    let backend = port::child::ChildServer::testbed(exe, &args)
        .await
        .expect("the backend process starts");
    let upstream: port::upstream::UpstreamSpec = format!("v2=2.0.0@{}", backend.addr)
        .parse()
        .expect("a valid upstream spec");
    let table = router::RouteTable::new(
        port::deployment::catalog().expect("the catalog builds"),
        vec![upstream.backend().expect("an upstream backend")],
    )
    .expect("a valid route table");
    let layout = port::Layout::Routed(table);
    let server = server::start_layout("127.0.0.1:0".parse().unwrap(), layout, "router")
        .await
        .expect("the router starts");
    (backend, server)
}

/// A new empty folder under the system's temporary folder, for files a test writes; removed when
/// the returned guard drops.
pub(crate) fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("testbed-{label}-"))
        .tempdir()
        .expect("a temporary folder")
}

/// Runs `testbed COMMAND ARGS --json FILE` (within two minutes): the exit code, stdout, stderr
/// and the JSON it wrote (`None` when it wrote none).
pub(crate) async fn testbed_json(
    command: &str,
    args: &[String],
) -> (i32, String, String, Option<serde_json::Value>) {
    let dir = temp_dir(command);
    let json = dir.path().join(format!("{command}.json"));
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg(command)
        .args(args)
        .arg("--json")
        .arg(&json)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("testbed {command} ends"))
        .unwrap_or_else(|e| panic!("testbed {command} runs: {e}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    eprintln!(
        "testbed {command} {}\n{}",
        args.join(" "),
        text(&out.stdout)
    );
    let report = std::fs::read(&json)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).expect("the JSON parses"));
    let code = out.status.code().expect("an exit code");
    (code, text(&out.stdout), text(&out.stderr), report)
}

/// Calls v1 at `addr` from a new client and checks the answer: the server still serves.
pub(crate) async fn probe_addr(addr: std::net::SocketAddr) {
    let mut client = v1::incrementer_client::IncrementerClient::new(
        client::connect(addr).await.expect("a new client connects"),
    );
    let reply = client.increment(v1::IncrementRequest { value: 41 }).await;
    assert_eq!(
        reply.expect("the server still serves").into_inner().value,
        42
    );
}

/// [`probe_addr`] on a running server.
pub(crate) async fn probe(server: &RunningServer) {
    probe_addr(server.addr).await;
}

/// Waits, for at most `patience`, until the server has no open request.
pub(crate) async fn until_idle(server: &RunningServer, patience: std::time::Duration) {
    tokio::time::timeout(patience, async {
        while server.open_requests() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} requests still open", server.open_requests()));
}

/// Kills `child` and keeps its port bound (not listening) while the returned socket lives:
/// connections to the port are then refused, and no other test's server, given the freed port
/// by the OS, can answer in the dead server's place.
pub(crate) async fn kill_keeping_port(child: port::child::ChildServer) -> tokio::net::TcpSocket {
    let addr = child.addr;
    child.kill().await.expect("the child is killed");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(addr)
        .expect("the dead server's port is still free to hold");
    socket
}

/// The admin API's address a starting `testbed serve` names on its next line (`testbed admin
/// API on ADDR`), as printed: `HOST:PORT`, or `https://HOST:PORT` over TLS.
pub(crate) async fn admin_address(server: &mut port::child::ChildServer) -> String {
    let line = server
        .next_line()
        .await
        .expect("the server names its admin API");
    match line.strip_prefix("testbed admin API on ") {
        Some(addr) => addr.to_string(),
        None => panic!("no admin address in {line:?}"),
    }
}
