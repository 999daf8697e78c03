//! The gateway's connection pool to each upstream: idle streams leave room for other calls,
//! a full pool and queue refuse calls at once, a saturated upstream stays reachable (and
//! `route list` says "saturated"), a stopped upstream's calls end at the upstream timeout, a
//! killed upstream is skipped after the call that found it dead.

use crate::common::{open_v2_stream, v2_client, v2_request};
use port::child::ChildServer;
use port::server::{self, RunningServer};
use router::{Backend, PoolLimits, RouteTable, UpstreamPool};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Endpoint;

/// How long any one step may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// `testbed serve --backend v2` in a child process, and a gateway in this process reaching it
/// through a pool with `limits`.
async fn gateway_over_v2(limits: PoolLimits) -> (ChildServer, RunningServer) {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = ["serve", "--backend", "v2", "--addr", "127.0.0.1:0"];
    let backend = ChildServer::testbed(exe, &args).await.unwrap();
    let endpoint = Endpoint::try_from(format!("http://{}", backend.addr)).unwrap();
    let pool = UpstreamPool::new(endpoint, limits);
    let v2 = Backend::remote("v2", "2.0.0".parse().unwrap(), "increment.v2", pool);
    let table = RouteTable::new(port::deployment::catalog().unwrap(), vec![v2]).unwrap();
    let layout = port::Layout::Routed(table);
    let server = server::start_layout("127.0.0.1:0".parse().unwrap(), layout, "router")
        .await
        .unwrap();
    (backend, server)
}

fn v2_info(server: &RunningServer) -> router::BackendInfo {
    let router = server.router.as_ref().unwrap();
    router.table().backends().remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_and_ten_idle_streams_leave_room_for_unary_calls() {
    let (_backend, server) = gateway_over_v2(PoolLimits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..210 {
        idle.push(open_v2_stream(&server).await);
    }
    let mut client = v2_client(&server).await;
    for i in 0..20 {
        let call = client.increment(v2_request(i, None, i as u64));
        let reply = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("a unary call is not stuck behind the idle streams")
            .unwrap();
        assert_eq!(reply.into_inner().value, i + 1);
    }
    let info = v2_info(&server);
    assert!(info.reachable && !info.saturated, "{info:?}");
    drop(idle);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_and_queue_refuse_the_next_call_at_once_naming_the_limit() {
    let limits = PoolLimits {
        streams_per_connection: 2,
        max_connections: 1,
        max_pending: 1,
        ..PoolLimits::default()
    };
    let (_backend, server) = gateway_over_v2(limits).await;
    let held = [open_v2_stream(&server).await, open_v2_stream(&server).await];
    let info = v2_info(&server);
    assert!(info.saturated && info.reachable, "{info:?}");
    assert_eq!(route_list_state(&server).await, "saturated");
    // Two more calls: one waits for a stream, the other finds the queue full and is refused at
    // once (which is which depends on who comes first).
    let mut calls = tokio::task::JoinSet::new();
    for i in [7, 9] {
        let mut client = v2_client(&server).await;
        calls.spawn(async move { client.increment(v2_request(i, None, i as u64)).await });
    }
    let first = tokio::time::timeout(PATIENCE, calls.join_next())
        .await
        .expect("one call is refused, not queued")
        .unwrap()
        .unwrap();
    let refused = first.expect_err("nothing is served while the pool is full");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    for named in [
        "--upstream-max-connections",
        "--upstream-max-pending",
        "backend v2",
    ] {
        assert!(refused.message().contains(named), "{refused:?}");
    }
    // A stream ends: the waiting call is served.
    drop(held);
    let served = tokio::time::timeout(PATIENCE, calls.join_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(!v2_info(&server).saturated);
    assert_eq!(route_list_state(&server).await, "active");
    server.shutdown().await.unwrap();
}

/// The state `testbed route list` gives the only backend of `server`, through an admin
/// API started on it for this: its List reply's fields as `route list` tells them apart.
async fn route_list_state(server: &RunningServer) -> &'static str {
    const TOKEN: &str = "pool-token-0123456789";
    let tokens = port::admin::Tokens::single("pool", TOKEN).unwrap();
    let config = port::admin::AdminConfig::plaintext("127.0.0.1:0".parse().unwrap(), tokens);
    let handle = server.router.clone().unwrap();
    let admin = port::admin::start(config, handle, Default::default(), None)
        .await
        .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["route", "list", "--admin", &admin.address()])
        .env("TESTBED_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    admin.shutdown().await.unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    ["saturated", "unreachable", "active"]
        .into_iter()
        .find(|state| table.contains(state))
        .unwrap_or_else(|| panic!("no state in {table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstreams_call_ends_at_the_upstream_timeout() {
    let limits = PoolLimits {
        timeout: Duration::from_millis(500),
        ..PoolLimits::default()
    };
    let (backend, server) = gateway_over_v2(limits).await;
    let pid = backend.pid().unwrap().to_string();
    let mut client = v2_client(&server).await;
    client.increment(v2_request(1, None, 1)).await.unwrap();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(stop.unwrap().success());
    let call = client.increment(v2_request(2, None, 2));
    let status = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call ends by itself")
        .unwrap_err();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("--upstream-timeout-ms"),
        "{status:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_is_skipped_at_once_and_health_follows_when_none_is_left() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = ["serve", "--backend", "v2", "--addr", "127.0.0.1:0"];
    let newer = ChildServer::testbed(exe, &args).await.unwrap();
    let older = ChildServer::testbed(exe, &args).await.unwrap();
    let remote = |name: &str, version: &str, addr| {
        let endpoint = Endpoint::try_from(format!("http://{addr}")).unwrap();
        let pool = UpstreamPool::new(endpoint, PoolLimits::default());
        Backend::remote(name, version.parse().unwrap(), "increment.v2", pool)
    };
    let backends = vec![
        remote("newer", "2.1.0", newer.addr),
        remote("older", "2.0.0", older.addr),
    ];
    let table = RouteTable::new(port::deployment::catalog().unwrap(), backends).unwrap();
    let layout = port::Layout::Routed(table);
    let server = server::start_layout("127.0.0.1:0".parse().unwrap(), layout, "router")
        .await
        .unwrap();
    let mut client = v2_client(&server).await;
    let served_by = |reply: &tonic::Response<_>| {
        let header = reply.metadata().get(router::API_VERSION_HEADER).unwrap();
        header.to_str().unwrap().to_string()
    };
    let reply = client.increment(v2_request(1, None, 1)).await.unwrap();
    assert_eq!(served_by(&reply), "2.1.0");

    let _held = crate::common::kill_keeping_port(newer).await;
    // At most a call or two fail (those already on the dead connection); then 2.0.0 serves.
    let mut failed = 0;
    loop {
        match client.increment(v2_request(1, None, 1)).await {
            Ok(reply) => {
                assert_eq!(served_by(&reply), "2.0.0");
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(status.message().contains("backend newer"), "{status:?}");
                failed += 1;
                assert!(failed < 5, "calls keep going to the dead backend");
            }
        }
    }
    let router = server.router.as_ref().unwrap();
    let newer_info = router.table().backends().remove(0);
    assert!(!newer_info.reachable, "{newer_info:?}");

    // The last one dies too: health says so.
    let _held_too = crate::common::kill_keeping_port(older).await;
    let mut health = HealthClient::new(crate::common::channel(&server).await);
    let mut updates = health
        .watch(HealthCheckRequest {
            service: "increment.v2.Incrementer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let _ = client.increment(v2_request(1, None, 1)).await;
    let not_serving = tokio::time::timeout(PATIENCE, async {
        while let Some(update) = updates.message().await.unwrap() {
            if update.status() == ServingStatus::NotServing {
                return;
            }
        }
    })
    .await;
    assert!(not_serving.is_ok(), "health kept saying SERVING");
    server.shutdown().await.unwrap();
}
