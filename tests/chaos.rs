//! The chaos test: a gateway and three backends as `testbed serve` processes under mixed
//! v1/v2 load, each backend fault of `testbed chaos` injected once (kill+restart,
//! stop+continue, drain+remove+add, replace), a few seconds each. No reply may be wrong, calls
//! may fail only inside a fault's window, and the gateway's health must agree with what calls
//! see. The real health target (200 ms) is measured by `testbed chaos`, not asserted here: the
//! bound below is generous, since tests never assert timings on shared machines, yet shorter
//! than a fault, so that health which never notices a fault fails it.

use std::path::Path;
use std::time::Duration;
use testbed::chaos::{self, ChaosArgs};

/// Longest health may disagree with calls here; each fault lasts longer than this.
const HEALTH_PATIENCE: Duration = Duration::from_secs(2);

/// The gateway's per-upstream timeout here (`serve --upstream-timeout-ms`): the load's clients
/// send no deadline, so without it a stopped backend's calls would hang as long as it is
/// stopped (the default timeout is 30 s) while health rightly says SERVING for new calls.
const UPSTREAM_TIMEOUT_MS: &str = "1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_fail_calls_only_while_they_last_and_health_tells_the_truth() {
    let args = ChaosArgs {
        v1_clients: 2,
        v2_clients: 2,
        fault_ms: 3000,
        settle_ms: 2000,
        steady_ms: 500,
        gateway_args: vec![format!("--upstream-timeout-ms={UPSTREAM_TIMEOUT_MS}")],
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
