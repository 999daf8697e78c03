//! File descriptors and the admin listener's connection caps (issue 22, cases 5 and 7).
//!
//! - A `testbed serve` gateway given a low open-files limit clamps `--max-connections` to what
//!   the limit leaves after its reserve, says so in its log, closes idle connections past that
//!   cap at once, logs no flood of accept warnings, still probes its upstream (a restarted
//!   backend is seen again) and serves a new client once the idle ones are gone. Without a
//!   reserve accept runs out of descriptors: it backs off, with one warning for the burst.
//! - Idle connections that never authenticate never lock an operator out of the admin API:
//!   past a peer's share its own oldest of them is closed to make room, past the listener's
//!   cap one of the peer holding the most; a connection that authenticated is never closed so,
//!   and a peer whose whole share authenticated is refused. A connect flood from other
//!   addresses never fails an operator's call.
//! - `--admin-token-file` must name a small regular file owned by the user or root and closed
//!   to group and others; /dev/zero, a FIFO, a directory, an open file, another user's file and
//!   a huge file are each refused at once with a message naming the file and what is wrong.

use crate::common::credentials::{token_file, token_file_named};
use crate::common::frames::{self, RawConn};
use crate::common::{kill_keeping_port, start, temp_dir};
use port::admin::pb::ListRequest;
use port::admin::{AdminConfig, RunningAdmin, Tokens};
use port::child::ChildServer;
use port::deployment::Deployment;
use port::server::RunningServer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

const TOKEN: &str = "alice-token-0123456789";
/// The longest a test waits for what should happen at once or within a probe round or two.
const PATIENCE: Duration = Duration::from_secs(30);
/// The open-files limit (soft and hard) of the gateway under test, and the connections held
/// against it: more than the limit, so that without the clamp accept runs out of descriptors.
const OPEN_FILES: u64 = 400;
const IDLE: usize = 500;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

/// `testbed serve ARGS...` whose open-files limit is `open_files` (soft and hard, so that it
/// cannot raise it), logging at info to `log`.
async fn serve_with_open_files(args: &[&str], open_files: u64, log: &Path) -> ChildServer {
    let mut command = tokio::process::Command::new(exe());
    command
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(log).unwrap());
    let limit = move || {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            open_files,
            open_files,
        )
        .map_err(std::io::Error::from)
    };
    // SAFETY: between fork and exec the closure only makes the setrlimit system call, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(limit);
    }
    ChildServer::spawn(command, "testbed serve (low open-files limit)")
        .await
        .expect("the gateway starts")
}

/// Whether the server closed `conn`, looking without waiting for more (what it sent is read
/// and skipped).
async fn closed_now(conn: &mut RawConn) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), conn.read.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// How many of `conns` the server closed, once at least `expected` are (or `PATIENCE` passed).
async fn closed_count(conns: &mut [RawConn], expected: usize) -> usize {
    let mut closed = vec![false; conns.len()];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        for (conn, closed) in conns.iter_mut().zip(closed.iter_mut()) {
            if !*closed {
                *closed = closed_now(conn).await;
            }
        }
        let count = closed.iter().filter(|c| **c).count();
        if count >= expected || tokio::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The health status the server at `addr` gives `service` over `client`'s connection.
async fn health_of(
    client: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Option<i32> {
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    client
        .check(request)
        .await
        .ok()
        .map(|reply| reply.into_inner().status)
}

/// Waits, for at most [`PATIENCE`], until `service`'s health is `wanted` (SERVING is 1).
async fn until_health(
    client: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    service: &str,
    wanted: i32,
) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if health_of(client, service).await == Some(wanted) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `testbed serve --backend v2` on `addr`.
async fn v2_backend(addr: &str) -> ChildServer {
    ChildServer::testbed(exe(), &["serve", "--backend", "v2", "--addr", addr])
        .await
        .expect("the backend starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_open_files_limit_clamps_the_port_which_still_probes_its_upstream_and_serves() {
    let dir = temp_dir("fds");
    let log = dir.path().join("gateway.log");
    let backend = v2_backend("127.0.0.1:0").await;
    let backend_addr = backend.addr;
    let upstream = format!("v2=2.0.0@{backend_addr}");
    let gateway = serve_with_open_files(
        &["--addr", "127.0.0.1:0", "--upstream", &upstream],
        OPEN_FILES,
        &log,
    )
    .await;
    let service = "increment.v2.Incrementer";
    let channel = client::connect(gateway.addr).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    assert!(until_health(&mut health, service, 1).await, "never SERVING");

    // Each sends the preface and SETTINGS, so that the handshake deadline closes none; one
    // closed before its preface is sent is counted below.
    let mut hello = frames::PREFACE.to_vec();
    hello.extend(frames::settings(&[]));
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let mut conn = RawConn::connect(gateway.addr).await;
        let _ = conn.send(&hello).await;
        idle.push(conn);
    }
    // The health client holds one of the 144 slots; every idle one past the rest is closed.
    let closed = closed_count(&mut idle, IDLE - 143).await;
    assert!(
        (IDLE - 143..IDLE).contains(&closed),
        "{closed} of {IDLE} idle connections closed; expected {} (the cap is 144)",
        IDLE - 143
    );

    // The probe still opens connections: a backend killed and started again is seen again.
    let held = kill_keeping_port(backend).await;
    assert!(
        until_health(&mut health, service, 2).await,
        "never NOT_SERVING"
    );
    drop(held);
    let _backend = v2_backend(&backend_addr.to_string()).await;
    assert!(
        until_health(&mut health, service, 1).await,
        "the restarted backend was not seen again while {IDLE} idle connections were held"
    );

    // Once the idle connections are gone, a new client is served.
    drop(idle);
    let mut fresh = tonic_health::pb::health_client::HealthClient::new(
        client::connect(gateway.addr).await.unwrap(),
    );
    assert!(
        until_health(&mut fresh, service, 1).await,
        "a new client is not served"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.lines().filter(|l| l.contains("accept failed")).count();
    assert!(warnings <= 1, "{warnings} accept warnings:\n{text}");
    // The default reserve (256) left 144 of the 400 descriptors to client connections.
    for says in ["limit_after=400", "reserve=256", "max_connections=144"] {
        assert!(
            text.contains(says),
            "no {says:?} in the gateway's log:\n{text}"
        );
    }
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_for_want_of_descriptors_back_off_with_one_warning_a_burst() {
    let dir = temp_dir("emfile");
    let log = dir.path().join("serve.log");
    // No reserve: the cap (200) is above what the process has left, so accept runs out.
    let server =
        serve_with_open_files(&["--addr", "127.0.0.1:0", "--fd-reserve", "0"], 200, &log).await;
    let mut hello = frames::PREFACE.to_vec();
    hello.extend(frames::settings(&[]));
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut conn = RawConn::connect(server.addr).await;
        let _ = conn.send(&hello).await;
        idle.push(conn);
    }
    let failed = |text: &str| text.lines().filter(|l| l.contains("accept failed")).count();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while failed(&std::fs::read_to_string(&log).unwrap()) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "accept never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Accept keeps failing while the connections are held: still one warning.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(idle);
    crate::common::probe_addr(server.addr).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(failed(&text), 1, "one warning for one burst:\n{text}");
    assert!(text.contains("accepting again"), "{text}");
}

/// A v1-only router in this process with its admin API (plaintext, for [`TOKEN`]) at most
/// `max` connections at once and `per_peer` from one address.
async fn router_with_admin(max: usize, per_peer: usize) -> (RunningServer, RunningAdmin) {
    let server = start(Deployment::V1Only).await;
    let handle = server.router.clone().expect("a routed deployment");
    let tokens = Tokens::single("alice", TOKEN).expect("a valid token");
    let config = AdminConfig::plaintext("127.0.0.1:0".parse().unwrap(), tokens)
        .with_limits(max, Duration::from_secs(300))
        .with_peer_limit(per_peer);
    let admin = port::admin::start(config, handle, HashMap::new(), None)
        .await
        .expect("the admin API starts");
    (server, admin)
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2, ...) that sends
/// nothing.
async fn idle_from(from: &str, addr: SocketAddr) -> RawConn {
    let socket = TcpSocket::new_v4().unwrap();
    let from: IpAddr = from.parse().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (read, write) = tcp.into_split();
    RawConn { read, write }
}

/// Whether the server closes `conn` within [`PATIENCE`].
async fn closed(conn: &mut RawConn) -> bool {
    conn.closed_within(PATIENCE).await
}

/// Whether `conn` is still open after a moment in which a close would have arrived.
async fn still_open(conn: &mut RawConn) -> bool {
    !conn.closed_within(Duration::from_millis(300)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_admin_connections_never_lock_out_an_operator() {
    let dir = temp_dir("admin-flood");
    let tokens = token_file(dir.path(), &format!("alice {TOKEN}\n"));
    let token = token_file_named(dir.path(), "token", TOKEN);
    let (_gateway, admin) = v1_with_admin(&tokens).await;
    let admin_addr: SocketAddr = admin.parse().unwrap();
    // An operator's connection that authenticated before the flood is kept through it.
    let mut kept = port::admin::connect(admin_addr, TOKEN).await.unwrap();
    kept.list(ListRequest {}).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(RawConn::connect(admin_addr).await);
    }
    let output = tokio::process::Command::new(exe())
        .args(["route", "list", "--admin", &admin, "--token-file"])
        .arg(&token)
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("route list ends")
        .unwrap();
    assert!(
        output.status.success(),
        "route list failed past 100 idle connections: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("v1"));
    kept.list(ListRequest {})
        .await
        .expect("the authenticated connection is kept");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_its_share_loses_its_own_idle_connections_and_a_full_share_is_refused() {
    let (server, admin) = router_with_admin(4, 2).await;
    let addr = admin.addr;
    // Peer 127.0.0.2 at its share of 2: its third connection closes its own oldest.
    let mut a1 = idle_from("127.0.0.2", addr).await;
    let mut a2 = idle_from("127.0.0.2", addr).await;
    let mut a3 = idle_from("127.0.0.2", addr).await;
    assert!(
        closed(&mut a1).await,
        "the peer's oldest idle connection is open"
    );
    assert!(still_open(&mut a2).await && still_open(&mut a3).await);
    // Another peer fills the listener (4); an operator still gets in, closing the oldest idle.
    let mut b1 = idle_from("127.0.0.3", addr).await;
    let mut b2 = idle_from("127.0.0.3", addr).await;
    let mut operator = port::admin::connect(addr, TOKEN).await.unwrap();
    operator
        .list(ListRequest {})
        .await
        .expect("the operator is served");
    assert!(closed(&mut a2).await, "the oldest idle connection is open");
    assert!(still_open(&mut a3).await && still_open(&mut b1).await && still_open(&mut b2).await);
    // A second authenticated connection from the operator's address closes an idle one of the
    // peer holding the most (127.0.0.3, two); then the operator's whole share has
    // authenticated, and a third connection from it is refused.
    let mut second = port::admin::connect(addr, TOKEN).await.unwrap();
    second.list(ListRequest {}).await.expect("served");
    assert!(
        closed(&mut b1).await,
        "the largest peer's oldest idle connection is open"
    );
    assert!(still_open(&mut a3).await && still_open(&mut b2).await);
    let mut third = RawConn::connect(addr).await;
    assert!(
        closed(&mut third).await,
        "a connection past a full share is open"
    );
    operator.list(ListRequest {}).await.expect("still served");
    second.list(ListRequest {}).await.expect("still served");
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_flood_from_other_addresses_never_fails_an_operators_call() {
    let (server, admin) = router_with_admin(8, 4).await;
    let addr = admin.addr;
    // Four peers connect in a loop, each holding its last connections: together they keep the
    // listener full, so every connect has to make room.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut flood = Vec::new();
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let (stop, connects) = (stop.clone(), connects.clone());
        flood.push(tokio::spawn(async move {
            let mut held = std::collections::VecDeque::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                held.push_back(idle_from(from, addr).await);
                if held.len() > 8 {
                    held.pop_front();
                }
                connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for call in 0..20 {
        let mut operator = port::admin::connect(addr, TOKEN)
            .await
            .unwrap_or_else(|err| panic!("call {call}: connect failed: {err}"));
        operator
            .list(ListRequest {})
            .await
            .unwrap_or_else(|status| panic!("call {call} of 20 failed: {status}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let connects = connects.load(std::sync::atomic::Ordering::Relaxed);
    assert!(connects > 100, "the flood made only {connects} connections");
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// `testbed serve` of v1 alone, with its admin API taking the tokens of `token_file`.
fn serve_v1_with_admin(token_file: &Path) -> Vec<String> {
    let args = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--deployment",
        "v1-only",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
    ];
    let file = token_file.to_string_lossy().into_owned();
    args.into_iter().map(String::from).chain([file]).collect()
}

/// [`serve_v1_with_admin`] started, and its admin API's address.
async fn v1_with_admin(token_file: &Path) -> (ChildServer, String) {
    let args = serve_v1_with_admin(token_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts");
    let line = gateway.next_line().await.unwrap();
    assert!(line.starts_with("testbed admin API on "), "{line}");
    let admin = line.split_whitespace().last().unwrap().to_string();
    (gateway, admin)
}

/// Runs [`serve_v1_with_admin`] (ends within [`PATIENCE`], or fails the test).
async fn serve_with_token_file(file: &Path) -> Output {
    let output = tokio::process::Command::new(exe())
        .args(serve_v1_with_admin(file))
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(PATIENCE, output)
        .await
        .unwrap_or_else(|_| panic!("serve with the token file {} did not end", file.display()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_files_that_are_not_small_private_regular_files_are_refused_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("token-files");
    let good = token_file(dir.path(), &format!("alice {TOKEN}\n"));
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let open = dir.path().join("open");
    std::fs::write(&open, format!("alice {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o604)).unwrap();
    let huge = token_file_named(
        dir.path(),
        "huge",
        &format!("alice {TOKEN}\n{}", "#\n".repeat(40_000)),
    );
    let huge_says = format!(
        "is {} bytes, over the 65536",
        std::fs::metadata(&huge).unwrap().len()
    );
    let link_to_open = dir.path().join("link-to-open");
    std::os::unix::fs::symlink(&open, &link_to_open).unwrap();
    let subdir = dir.path().join("dir");
    std::fs::create_dir(&subdir).unwrap();
    std::fs::set_permissions(&subdir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cases = vec![
        (
            Path::new("/dev/zero").to_path_buf(),
            "is a character device",
        ),
        (fifo, "is a FIFO"),
        (subdir, "is a directory"),
        (open, "open to its group or others (mode 604)"),
        (link_to_open, "open to its group or others (mode 604)"),
        (huge, huge_says.as_str()),
    ];
    // Another user's file, when this test may give one away (as root).
    let theirs = token_file(&dir.path().join("dir"), &format!("alice {TOKEN}\n"));
    if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok() {
        cases.push((theirs, "is owned by uid 65534"));
    } else {
        eprintln!("not root: the case of another user's token file is skipped");
    }
    for (file, says) in cases {
        let output = serve_with_token_file(&file).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{} was accepted", file.display());
        assert!(
            stderr.contains(says) && stderr.contains(&*file.to_string_lossy()),
            "{}: {stderr}",
            file.display()
        );
        assert!(
            output.stdout.is_empty(),
            "{} started a server",
            file.display()
        );
    }
    // A symbolic link to a good file is followed (secrets are often mounted so).
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let (_gateway, admin) = v1_with_admin(&link).await;
    assert!(admin.parse::<SocketAddr>().is_ok(), "{admin}");
}

/// Makes a FIFO (named pipe) at `path`, readable and writable by its owner only.
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}
