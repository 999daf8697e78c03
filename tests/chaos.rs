//! The chaos test: a gateway and three backends as `testbed serve` processes under mixed
//! v1/v2 load, each backend fault of `testbed chaos` injected once (kill+restart,
//! stop+continue, drain+remove+add, replace), a few seconds each. No reply may be wrong, calls
//! may fail only inside a fault's window, and the gateway's health must agree with what calls
//! see. The real health target (200 ms) is measured by `testbed chaos`, not asserted here: the
//! bound below is generous, since tests never assert timings on shared machines, yet shorter
//! than a fault, so that health which never notices a fault fails it. The gateway runs with its
//! defaults: the load's clients send no deadline, so a stopped backend's calls hang as long as it
//! is stopped, and the run's fresh callers (`chaos::fresh`) tell what a new call sees meanwhile.

use std::path::Path;
use std::time::Duration;
use testbed::chaos::{self, ChaosArgs};

/// Longest health may disagree with calls here; each fault lasts longer than this.
const HEALTH_PATIENCE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_fail_calls_only_while_they_last_and_health_tells_the_truth() {
    let args = ChaosArgs {
        v1_clients: 2,
        v2_clients: 2,
        fault_ms: 3000,
        settle_ms: 2000,
        steady_ms: 500,
        ..ChaosArgs::defaults()
    };
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let report = chaos::run(&args, exe, |_, _| {}).await.unwrap();
    let summary = report.render();
    assert_eq!(report.windows.len(), 6, "{summary}");
    let (requests, wrong) = report.requests_and_wrong();
    assert!(requests > 0, "{summary}");
    assert_eq!(wrong, 0, "{summary}");
    assert_eq!(
        report.stray_failures, 0,
        "calls failed outside the fault windows: {:?}\n{summary}",
        report.stray_examples
    );
    let late: Vec<_> = report
        .disagreements
        .iter()
        .filter(|d| d.ms > HEALTH_PATIENCE.as_secs_f64() * 1e3)
        .collect();
    assert!(
        late.is_empty(),
        "health disagreed with calls for longer than {HEALTH_PATIENCE:?}: {late:?}\n{summary}"
    );
}

#[tokio::test]
async fn fresh_callers_record_what_a_new_call_sees() {
    use testbed::chaos::fresh::FreshCallers;
    use testbed::load::{CallLog, CallOutcome};
    let server = crate::common::start(port::deployment::Deployment::SideBySide).await;
    let log = CallLog::new(Duration::from_secs(5));
    let origin = std::time::Instant::now();
    let callers = FreshCallers::start(
        server.addr,
        &"^2".parse().unwrap(),
        Duration::from_secs(1),
        origin,
        log.clone(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for api in services::Api::ALL {
        let verified: u32 = log.verified_per_tick(api).iter().sum();
        assert!(verified >= 3, "{api}: {verified} fresh calls verified");
    }
    assert!(log.calls().is_empty(), "{:?}", log.calls());
    server.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    callers.stop();
    let failed: Vec<_> = log
        .calls()
        .into_iter()
        .filter(|c| matches!(c.outcome, CallOutcome::Failed(_)))
        .collect();
    assert!(
        !failed.is_empty(),
        "calls to a stopped server were not noted as failed"
    );
}
