//! The main job (`testbed report`): the compatibility matrix, a rollout and the latency runs in
//! several CPU placements, printed as one report.

use crate::matrix::{self, ClientKind};
use crate::rollout::{self, RolloutOptions};
use bench::{BenchOptions, CpuList, Flavor, HaltPoll, Progress};
use port::Deployment;
use std::path::Path;
use std::time::Duration;

/// Rounds of each latency run in the report; medians are shown.
const REPORT_REPEAT: usize = 3;
/// Guest halt polling in the report's last latency run: longer than any round trip measured
/// here, so a vCPU waiting for a reply never halts.
const REPORT_HALT_POLL_NS: u64 = 200_000;

/// How the callers of [`run`] follow its progress.
#[derive(Debug, Clone)]
pub struct Watchers {
    /// Told the rollout's phase and the requests completed so far.
    pub rollout: fn(&str, u64),
    /// Told each step of the latency runs.
    pub bench: Option<Progress>,
}

/// Runs the whole experiment and prints it to stdout as it goes. `requests` is the measured
/// calls per latency row; `flavor` the runtime of the unpinned run; `testbed_exe` the binary
/// that serves the latency runs' targets.
pub async fn run(
    requests: u64,
    flavor: Flavor,
    testbed_exe: &Path,
    watchers: &Watchers,
) -> anyhow::Result<()> {
    anyhow::ensure!(requests > 0, "--requests must be at least 1");
    println!("# gRPC version-compatibility testbed report\n");
    println!("## Compatibility matrix\n");
    println!(
        "Rows are clients, columns deployments. ✓ shows the values returned (unary: 41 → 42 for v1, \
         41 + step 5 → 46 for v2; stream: 10,20,30) and the version that served them, ✗ a silently \
         wrong answer, otherwise the gRPC status.\n"
    );
    let cells = matrix::run(&ClientKind::ALL, &Deployment::ALL).await?;
    print!("{}", matrix::render(&cells));
    println!("\n## Zero-downtime v1 → v2 rollout (4 v1 + 4 v2 clients, 2 s phases)\n");
    let rollout_options = RolloutOptions {
        v1_clients: 4,
        v2_clients: 4,
        phase: Duration::from_secs(2),
        rate_per_client: None,
        processes: false,
        kill_v1: false,
    };
    let rollout = rollout::run(&rollout_options, testbed_exe, &watchers.rollout).await?;
    print!("{}", rollout.render());
    anyhow::ensure!(
        rollout.load.clean(),
        "the rollout failed or misanswered some requests"
    );
    println!("\n## Latency runs\n");
    for options in placements(requests, flavor, testbed_exe, watchers)? {
        if let Some(ns) = options.halt_poll_ns {
            println!(
                "Guest halt polling set to {ns} ns for the next run, then put back as it was.\n"
            );
        }
        println!(
            "{}",
            bench::run_until(options, port::signal::shutdown())
                .await?
                .render()
        );
    }
    Ok(())
}

/// The latency runs of the report. First where the scheduler puts things (what a user gets by
/// default); then placements held fixed, since unpinned the scheduler may put one server beside
/// the client and the next not (see docs/results.md, "Where the unary time goes"): client and
/// servers on vCPUs of their own, the same with idle vCPUs polling before they halt, and
/// everything on one vCPU.
fn placements(
    requests: u64,
    flavor: Flavor,
    testbed_exe: &Path,
    watchers: &Watchers,
) -> anyhow::Result<Vec<BenchOptions>> {
    let base = BenchOptions {
        requests,
        warmup: (requests / 10).min(1_000),
        repeat: REPORT_REPEAT,
        concurrency: 1,
        rows: Vec::new(),
        cpus: None,
        server_cpus: None,
        halt_poll_ns: None,
        flavor,
        progress: watchers.bench.clone(),
        testbed_exe: testbed_exe.to_path_buf(),
    };
    let together = BenchOptions {
        flavor: Flavor::CurrentThread,
        cpus: Some(CpuList::first_allowed()?),
        ..base.clone()
    };
    let mut runs = vec![base.clone()];
    match CpuList::first_two_allowed()? {
        Some((client, servers)) => {
            let apart = BenchOptions {
                flavor: Flavor::CurrentThread,
                cpus: Some(client),
                server_cpus: Some(servers),
                ..base.clone()
            };
            runs.push(apart.clone());
            match HaltPoll::unavailable() {
                None => runs.push(BenchOptions {
                    halt_poll_ns: Some(REPORT_HALT_POLL_NS),
                    ..apart
                }),
                Some(reason) => println!("No run with guest halt polling: {reason}.\n"),
            }
        }
        None => println!("Only one CPU may be used: no run with client and servers apart.\n"),
    }
    runs.push(together);
    Ok(runs)
}
