//! Mixed-version load and the zero-downtime rollout: every reply verified, every request
//! counted. Small counts; no timings asserted.

use crate::common::start;
use port::deployment::Deployment;
use std::time::Duration;
use testbed::load::{Load, LoadOptions};
use testbed::rollout::{self, RolloutOptions};

fn options() -> LoadOptions {
    LoadOptions {
        v1_clients: 2,
        v2_clients: 2,
        requests_per_client: Some(200),
        rate_per_client: None,
        open_loop: false,
        v1_requirement: None,
        v2_requirement: Some("^2".parse().unwrap()),
        v2_waits_for_health: false,
        call_log: None,
    }
}

async fn run_to_completion(load: Load) -> testbed::load::LoadReport {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !load.finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the clients finish their requests");
    load.stop().await.unwrap()
}

/// Runs a short rollout (2 + 2 clients, 400 ms phases), in-process or across processes.
async fn run_rollout(processes: bool, kill_v1: bool) -> rollout::RolloutReport {
    let options = RolloutOptions {
        v1_clients: 2,
        v2_clients: 2,
        phase: Duration::from_millis(400),
        rate_per_client: None,
        open_loop: false,
        processes,
        kill_v1,
    };
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_testbed"));
    rollout::run(&options, exe, &|_, _| {}).await.unwrap()
}

#[tokio::test]
async fn mixed_clients_against_the_router_are_all_answered_correctly() {
    let server = start(Deployment::SideBySide).await;
    let load = Load::start(server.addr, &options(), "mixed").await.unwrap();
    let report = run_to_completion(load).await;
    let [v1, v2] = report.totals();
    assert_eq!((v1.requests, v1.ok), (400, 400));
    assert_eq!((v2.requests, v2.ok), (400, 400));
    assert!(report.clean());
    assert_eq!(v1.served_by.get("1.0.0"), Some(&400));
    assert_eq!(v2.served_by.get("2.0.0"), Some(&400));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_answers_are_caught_and_fail_the_run() {
    let server = start(Deployment::NaiveProxyToV1).await;
    let load = Load::start(server.addr, &options(), "naive").await.unwrap();
    let report = run_to_completion(load).await;
    let [v1, v2] = report.totals();
    assert_eq!(v1.ok, 400, "v1 clients are served correctly by v1");
    assert_eq!(v2.wrong, 400, "v1 ignores step: every v2 reply is wrong");
    assert!(
        v2.wrong_examples[0].contains("instead of"),
        "{:?}",
        v2.wrong_examples
    );
    assert!(!report.clean());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn requirements_outside_what_serves_are_refused_not_misanswered() {
    let server = start(Deployment::SideBySide).await;
    let mut options = options();
    options.v2_requirement = Some("^3".parse().unwrap());
    let report =
        run_to_completion(Load::start(server.addr, &options, "pinned").await.unwrap()).await;
    let [_, v2] = report.totals();
    assert_eq!(v2.errors.get("UNIMPLEMENTED").map(|(n, _)| *n), Some(400));
    assert_eq!(v2.wrong, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_from_v1_to_v2_loses_no_request_and_health_follows() {
    let report = run_rollout(false, false).await;
    let load = &report.load;
    assert_eq!(
        load.phases,
        ["v1 only", "v2 added", "v1 retired", "v1 removed"]
    );
    assert!(load.clean(), "{}", load.render());
    let [v1_first, v2_first] = &load.tallies[0];
    assert!(v1_first.requests > 0);
    assert_eq!(v2_first.requests, 0, "v2 clients wait until v2 is SERVING");
    assert_eq!(v1_first.served_by.keys().collect::<Vec<_>>(), ["1.0.0"]);
    for [v1, v2] in &load.tallies[1..] {
        assert!(v1.requests > 0 && v2.requests > 0, "{}", load.render());
    }
    let [v1_last, _] = &load.tallies[3];
    assert_eq!(
        v1_last.served_by.keys().collect::<Vec<_>>(),
        ["2.0.0"],
        "v1 is gone"
    );

    let statuses = |service: &str| -> Vec<&str> {
        report
            .health
            .iter()
            .filter(|e| e.service == service)
            .map(|e| e.status.as_str())
            .collect()
    };
    assert_eq!(
        statuses("increment.v2.Incrementer"),
        ["NOT_SERVING", "SERVING"]
    );
    assert_eq!(
        statuses("increment.v1.Incrementer"),
        ["SERVING"],
        "v1 clients never lose service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_across_processes_drains_and_sigterms_v1_with_no_failure() {
    let report = run_rollout(true, false).await;
    let load = &report.load;
    assert_eq!(
        load.phases,
        ["v1 only", "v2 added", "v1 retired", "v1 removed"]
    );
    assert!(load.clean(), "{}", report.render());
    let [v1_last, v2_last] = &load.tallies[3];
    assert!(
        v1_last.requests > 0 && v2_last.requests > 0,
        "{}",
        report.render()
    );
    assert_eq!(v1_last.served_by.keys().collect::<Vec<_>>(), ["2.0.0"]);
    // Four processes: the router's routes were changed through its admin API from this one.
    let noted = |start: &str| report.notes.iter().any(|n| n.starts_with(start));
    assert!(noted("router process listening on"), "{}", report.render());
    assert!(noted("drain of v1: "), "{}", report.render());
    let stopped = report
        .notes
        .iter()
        .find(|n| n.contains("SIGTERM"))
        .expect("v1 was stopped");
    assert!(stopped.ends_with("exit status: 0"), "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_v1_without_draining_fails_its_requests_with_unavailable_and_nothing_else() {
    let report = run_rollout(true, true).await;
    // A load balancer watching health is told about the crash.
    assert!(
        report.health.iter().any(|event| event.phase == "v1 killed"
            && event.service == "increment.v1.Incrementer"
            && event.status == "NOT_SERVING"),
        "{}",
        report.render()
    );
    let load = &report.load;
    assert_eq!(
        load.phases,
        ["v1 only", "v2 added", "v1 killed", "v1 retired"]
    );
    for (phase, [v1, v2]) in load.phases.iter().zip(&load.tallies) {
        for tally in [v1, v2] {
            assert_eq!(tally.wrong, 0, "{phase}: {}", report.render());
            assert_eq!(
                tally.ok + tally.failed(),
                tally.requests,
                "{phase}: every request accounted for"
            );
        }
        assert_eq!(v2.failed(), 0, "{phase}: v2 clients are unaffected");
        let codes: Vec<&String> = v1.errors.keys().collect();
        match phase.as_str() {
            "v1 killed" => {
                assert_eq!(codes, ["UNAVAILABLE"], "{}", report.render());
                assert!(v1.failed() > 0);
            }
            // A request counts in the phase it started in: the ones in flight when v1 died
            // (at most one per v1 client) fail there.
            "v2 added" => {
                assert!(
                    codes.iter().all(|c| *c == "UNAVAILABLE"),
                    "{}",
                    report.render()
                );
                assert!(v1.failed() <= 2, "{}", report.render());
            }
            _ => assert!(codes.is_empty(), "{phase}: {}", report.render()),
        }
    }
}
