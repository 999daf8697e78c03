//! A v1 → v2 rollout through three Envoys under mixed-version load: v1 (with a patch release
//! 1.1.0 taking v1's calls) and v2 side by side, then 1.1.0 removed while it takes calls (its
//! cluster dropped only once every Envoy routes away from it), then v1's package retired onto
//! v2 (its calls rewritten), then v1 removed, each step one
//! admin change that answers once every Envoy acknowledged it; every call through every Envoy
//! is checked (value, request id, and the version that served it) and none may fail.

use super::bed::Bed;
use super::envoy_present;
use std::time::Duration;
use testbed::load::{Load, LoadOptions};

/// How long each phase runs under load.
const PHASE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_rollout_through_three_envoys_under_load_fails_nothing() {
    if !envoy_present() {
        return;
    }
    let ids = ["envoy-a", "envoy-b", "envoy-c"];
    let mut bed = Bed::side_by_side(&ids).await;
    let patch = format!("v1b=1.1.0@{}", bed.add_backend("v1", "1.1.0").await);
    bed.change(&["add", &patch]).await;
    bed.wait_current(&ids).await;
    let options = LoadOptions {
        v1_clients: 2,
        v2_clients: 2,
        requests_per_client: None,
        rate_per_client: Some(100.0),
        open_loop: false,
        v1_requirement: None,
        v2_requirement: Some("^2".parse().expect("a requirement")),
        v2_waits_for_health: false,
        call_log: None,
    };
    let mut loads = Vec::new();
    for envoy in &bed.envoys {
        loads.push(
            Load::start(envoy.listen, &options, "v1 and v2")
                .await
                .expect("the load starts"),
        );
    }
    tokio::time::sleep(PHASE).await;
    for load in &mut loads {
        load.next_phase("1.1.0 removed");
    }
    bed.change(&["remove", "v1b", "--force"]).await;
    tokio::time::sleep(PHASE).await;
    let retired = format!("v2=2.0.0@{}+increment.v1", bed.v2);
    for load in &mut loads {
        load.next_phase("v1 retired onto v2");
    }
    bed.change(&["replace", &retired]).await;
    tokio::time::sleep(PHASE).await;
    for load in &mut loads {
        load.next_phase("v1 removed");
    }
    bed.change(&["remove", "v1", "--force"]).await;
    tokio::time::sleep(PHASE).await;
    for (envoy, load) in bed.envoys.iter().zip(loads) {
        let report = load.stop().await.expect("the load stops");
        for (phase, tallies) in report.phases.iter().zip(&report.tallies) {
            for (api, tally) in ["v1", "v2"].iter().zip(tallies) {
                eprintln!(
                    "{} {phase} {api}: {} calls, {} failed, {} wrong, served by {:?}",
                    envoy.id,
                    tally.requests,
                    tally.failed(),
                    tally.wrong,
                    tally.served_by
                );
                assert!(tally.requests > 0, "{} {phase} {api}: no calls", envoy.id);
                assert_eq!(
                    (tally.failed(), tally.wrong),
                    (0, 0),
                    "{} {phase} {api}: {:?} {:?}",
                    envoy.id,
                    tally.errors,
                    tally.wrong_examples
                );
            }
        }
        // v1's clients moved from 1.1.0 to 1.0.0, then to 2.0.0.
        let last = report.tallies.last().expect("a phase");
        assert_eq!(
            last[0].served_by.keys().collect::<Vec<_>>(),
            ["2.0.0"],
            "{}",
            envoy.id
        );
        assert_eq!(
            report.tallies[0][0].served_by.keys().collect::<Vec<_>>(),
            ["1.1.0"]
        );
        assert!(report.tallies[1][0].served_by.contains_key("1.0.0"));
    }
}
