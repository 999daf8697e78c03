//! The v1 → v2 rollout through each proxy, reconfigured its own way between phases: nothing
//! fails through Envoy or HAProxy (neither reloads); through nginx only requests racing a
//! reload.

use super::*;

/// The v1 → v2 rollout through `kind` (`testbed rollout --proxy`): 2 v1 + 2 v2 clients back to
/// back, 1 s phases, the proxy changed its own way between them. `None` when the proxy is not
/// installed outside CI.
async fn rollout_through(kind: ProxyKind) -> Option<testbed::proxy_rollout::ProxyRolloutReport> {
    use clap::Parser;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        rollout: testbed::rollout::RolloutOptions,
    }
    tool(kind.find())?;
    let flags = Flags::parse_from(["rollout", "--v1-clients", "2", "--v2-clients", "2"]);
    let options = testbed::rollout::RolloutOptions {
        phase: Duration::from_secs(1),
        ..flags.rollout
    };
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let report = testbed::proxy_rollout::run(kind, &options, exe, &|_, _| {})
        .await
        .unwrap_or_else(|err| panic!("the rollout through {kind} runs: {err:#}"));
    eprintln!("OBSERVED {}", report.render());
    let phases = &report.load.phases;
    assert_eq!(phases, &testbed::proxy_rollout::PHASES, "{kind}");
    assert_eq!(report.changes.len(), 2, "{kind}: {:?}", report.changes);
    for (phase, [v1, v2]) in phases.iter().zip(&report.load.tallies) {
        // Never a wrong answer, in any phase, through any proxy.
        assert_eq!((v1.wrong, v2.wrong), (0, 0), "{kind} [{phase}]");
        assert!(v1.requests > 0, "{kind} [{phase}]: no v1 requests");
        // v2 clients start once v2 is routed; v1 replies name no version (nothing adds the
        // router's header), v2's name 2.0.0, also once v1 is retired onto v2.
        assert_eq!(v2.requests > 0, phase != "v1 only", "{kind} [{phase}]");
        assert!(
            v1.served_by
                .keys()
                .all(|k| k == testbed::load::NO_VERSION_HEADER),
            "{kind} [{phase}]"
        );
        assert!(
            v2.served_by.keys().all(|k| k == "2.0.0"),
            "{kind} [{phase}]"
        );
    }
    Some(report)
}

/// Failed requests per phase, v1 and v2 clients together, with their codes.
fn failures(report: &testbed::proxy_rollout::ProxyRolloutReport) -> Vec<(String, Vec<String>)> {
    let phases = report.load.phases.iter();
    phases
        .zip(&report.load.tallies)
        .map(|(phase, tallies)| {
            let codes = tallies
                .iter()
                .flat_map(|t| t.errors.iter().map(|(code, (n, _))| format!("{n} {code}")))
                .collect();
            (phase.clone(), codes)
        })
        .collect()
}

/// Envoy's routes and clusters change through filesystem xDS without touching a connection:
/// no request fails in any phase.
#[tokio::test]
async fn rollout_through_envoy_fails_nothing() {
    let Some(report) = rollout_through(ProxyKind::Envoy).await else {
        return;
    };
    assert!(report.load.clean(), "{:?}", failures(&report));
}

/// What nginx loses at a reload: its old workers close the client connections they
/// hold (HTTP/2 GOAWAY, then the close), and a tonic request sent on such a connection as the
/// GOAWAY and the close arrive fails, `INTERNAL` "h2 protocol error" or `CANCELLED` "operation
/// was canceled"; tonic does not resend it. Zero to a few per reload. So failures happen only
/// in the phases that begin with a reload (`v2 added`, `v1 retired`), only so, and never in
/// `v1 only` or `v1 removed` (stopping v1 loses nothing: no connection routes to it any more).
fn only_requests_racing_the_reload(report: &testbed::proxy_rollout::ProxyRolloutReport) {
    let kind = &report.proxy;
    for (phase, [v1, v2]) in report.load.phases.iter().zip(&report.load.tallies) {
        let reload = phase == "v2 added" || phase == "v1 retired";
        for (code, (count, message)) in v1.errors.iter().chain(&v2.errors) {
            let racing = match code.as_str() {
                "INTERNAL" => message.contains("h2 protocol error"),
                "CANCELLED" => message.contains("operation was canceled"),
                _ => false,
            };
            assert!(
                reload && racing,
                "{kind} [{phase}]: {count} {code} {message:?}"
            );
        }
    }
}

/// HAProxy's routes are a map and server states changed through its runtime API: no worker is
/// replaced, no connection closed, and no request fails in any phase.
#[tokio::test]
async fn rollout_through_haproxy_fails_nothing() {
    let Some(report) = rollout_through(ProxyKind::Haproxy).await else {
        return;
    };
    assert!(report.load.clean(), "{:?}", failures(&report));
    for change in &report.changes {
        assert!(change.how.contains("runtime API"), "{change:?}");
        assert_eq!(change.processes_after, Some(1), "{change:?}");
    }
}

/// nginx's `-s reload`: new workers take new connections, the old ones close theirs as
/// described above.
#[tokio::test]
async fn rollout_through_nginx_fails_only_requests_racing_its_reload() {
    if let Some(report) = rollout_through(ProxyKind::Nginx).await {
        only_requests_racing_the_reload(&report);
    }
}

/// HAProxy's own runtime API, asked by the test, shows each change `reconfigure` made: the map
/// entries (backend, rewrite, allowed majors) and the servers' addresses and states, the same
/// process throughout, and a change back as well. Only v1 runs (HAProxy's start is confirmed by
/// a request through it); v2's address is never called.
#[tokio::test]
async fn haproxy_shows_each_change_through_its_own_runtime_api() {
    async fn ask(proxy: &RunningProxy, command: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = proxy.dir().join("haproxy.sock");
        let mut stream = tokio::net::UnixStream::connect(&socket)
            .await
            .expect("HAProxy's runtime API socket");
        stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("a command written");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("a reply");
        reply
    }
    /// `BACKEND ADDR:PORT ADMIN_STATE` per server, from `show servers state`.
    async fn servers(proxy: &RunningProxy) -> Vec<String> {
        let reply = ask(proxy, "show servers state").await;
        reply
            .lines()
            .filter(|line| !line.starts_with('#') && line.split_whitespace().count() > 18)
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                format!("{} {}:{} {}", f[1], f[4], f[18], f[6])
            })
            .collect()
    }
    if tool(ProxyKind::Haproxy.find()).is_none() {
        return;
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    let args = ["serve", "--backend", "v1", "--addr", "127.0.0.1:0"];
    let v1_server = ChildServer::testbed(exe, &args).await.expect("v1 starts");
    let (v1, v2) = (v1_server.addr, SocketAddr::from(([127, 0, 0, 1], 7)));
    let (v1_at, v2_at) = (v1.to_string(), v2.to_string());
    let mut proxy = RunningProxy::start(ProxyKind::Haproxy, &Arrangement::V1Only { v1 })
        .await
        .expect("HAProxy starts");
    let pid = proxy.pid();
    let map = format!("show map {}", proxy.dir().join("routes.map").display());
    let retired = Arrangement::VersionRouting {
        v1,
        v2,
        retire_v1: true,
    };
    proxy.reconfigure(&retired).await.expect("v1 retired");
    let shown = ask(&proxy, &map).await;
    eprintln!("OBSERVED show map after v1 retired:\n{shown}");
    let entries: Vec<&str> = shown
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, entry)| entry))
        .collect();
    assert_eq!(entries.len(), 3, "{shown}");
    assert!(
        entries[0].starts_with("/increment.v1. v2|/increment.v2.|,2,|/increment.v1.|"),
        "{shown}"
    );
    assert!(
        entries[1].starts_with("/increment.v2. v2|-|,2,|"),
        "{shown}"
    );
    assert_eq!(entries[2], "/ v2|-|-|/|-", "{shown}");
    // Admin state 5: forced maintenance (1) on top of the configuration's `disabled` mark (4);
    // 4 alone: ready again. v1's slot is in maintenance, v2's has its address.
    let after = servers(&proxy).await;
    eprintln!("OBSERVED servers after v1 retired: {after:?}");
    assert!(after.contains(&format!("v1 {v1_at} 1")), "{after:?}");
    assert!(after.contains(&format!("v2 {v2_at} 4")), "{after:?}");
    assert!(proxy.config().contains("/increment.v1. v2|/increment.v2.|"));

    proxy
        .reconfigure(&Arrangement::V1Only { v1 })
        .await
        .expect("back to v1 only");
    let shown = ask(&proxy, &map).await;
    assert!(shown.contains(" /increment.v1. v1|-|,1,|"), "{shown}");
    assert!(shown.contains(" / v1|-|-|/|-"), "{shown}");
    assert!(!shown.contains("/increment.v2."), "{shown}");
    let back = servers(&proxy).await;
    assert!(back.contains(&format!("v1 {v1_at} 0")), "{back:?}");
    assert!(
        back.iter()
            .any(|s| s.starts_with("v2 ") && s.ends_with(" 5")),
        "{back:?}"
    );
    assert_eq!(proxy.pid(), pid, "the same HAProxy process throughout");
    assert_eq!(proxy.process_count().ok(), Some(1));
    proxy.stop().await.expect("HAProxy stops");
    drop(v1_server);
}
