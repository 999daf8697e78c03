//! The main job (`testbed report`): the compatibility matrix, a rollout (closed and open loop),
//! the same through real proxies, a canary and a replay on the shop example, and the latency
//! runs, gathered into one [`Report`]: printed for the terminal (a summary of
//! the testbed's targets first, then the machine, then each section), written as JSON
//! (`--json`), and drawn as one self-contained HTML page built from that JSON (`--html`, see
//! [`html`]).
//!
//! By default the latency runs are quick: one round where the scheduler puts things. `--full`
//! runs the complete study the README's results come from: three rounds in each of four
//! placements (see [`placements`]).

pub mod api;
pub mod canary;
mod fleet;
pub mod html;
pub mod proxies;
pub mod summary;
pub mod traffic;

use crate::matrix::{self, Cell, ClientKind};
use crate::rollout::{self, RolloutOptions, RolloutReport};
use bench::{BenchOptions, BenchReport, CpuList, Flavor, HaltPoll, Progress};
use port::Deployment;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
pub use summary::{Metadata, Target};

/// Rounds of each latency run in the full report; medians are shown.
const FULL_REPEAT: usize = 3;
/// Rounds of the latency run in the quick (default) report.
const QUICK_REPEAT: usize = 1;
/// Guest halt polling in the full report's third latency run: longer than any round trip
/// measured here, so a vCPU waiting for a reply never halts.
const REPORT_HALT_POLL_NS: u64 = 200_000;
/// Requests per second per client of the open-loop rollout: about a tenth of what the clients
/// manage back to back on a 2-vCPU machine, so that latencies show the service, not a queue.
pub const OPEN_LOOP_RATE: f64 = 500.0;
/// Clients of each version in the report's rollouts.
const ROLLOUT_CLIENTS: usize = 4;

/// How to run the report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Measured calls per latency row.
    pub requests: u64,
    /// The complete study (four placements, three rounds each) instead of the quick one.
    pub full: bool,
    /// Length of each rollout phase.
    pub rollout_phase: Duration,
    /// Runtime flavour of this process, and of the unpinned latency run.
    pub flavor: Flavor,
    /// The binary that serves the latency runs' targets and the rollout's processes.
    pub testbed_exe: PathBuf,
}

/// How the callers of [`run`] follow its progress.
#[derive(Debug, Clone)]
pub struct Watchers {
    /// Told the rollout's phase and the requests completed so far.
    pub rollout: fn(&str, u64),
    /// Told each step of the latency runs.
    pub bench: Option<Progress>,
}

/// The matrix as the report holds it.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixSection {
    /// Every cell, clients × deployments.
    pub cells: Vec<Cell>,
    /// Cells that differ from what the API promises (empty when the matrix holds).
    pub mismatches: Vec<String>,
}

/// The two rollouts of the report: the same phases, clients back to back (closed loop) and on
/// a fixed schedule (open loop, latencies from the intended send time).
#[derive(Debug, Clone, Serialize)]
pub struct RolloutSection {
    /// 4 + 4 clients back to back.
    pub closed_loop: RolloutReport,
    /// 4 + 4 clients at [`OPEN_LOOP_RATE`] each, open loop.
    pub open_loop: RolloutReport,
}

/// One latency run and where it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    /// Where client and servers ran, e.g. "unpinned, multi-thread".
    pub name: String,
    /// What was measured.
    pub report: BenchReport,
}

/// Everything the main job measured. `report --json` writes this; the HTML page is drawn from
/// that JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The testbed's targets, each with its measured value and verdict.
    pub summary: Vec<Target>,
    /// The machine and the run.
    pub metadata: Metadata,
    /// The compatibility matrix.
    pub matrix: MatrixSection,
    /// The rollouts.
    pub rollout: RolloutSection,
    /// The matrix's proxy columns and the rollout through each proxy, for those installed.
    pub proxies: proxies::ProxySection,
    /// `testbed canary` on two builds of the shop example: promoted, and rolled back.
    pub canary: canary::CanarySection,
    /// `testbed replay` and `rollout --traffic` on builds of the shop example.
    pub traffic: traffic::TrafficSection,
    /// The latency runs, one per placement.
    pub latency: Vec<Placement>,
    /// The API's versions as their protos declare them, and the changelog from v1 to v2.
    pub api: api::ApiSection,
    /// What the run left out and why (e.g. no halt-polling placement without root).
    pub notes: Vec<String>,
}

/// Runs the whole experiment. Nothing is printed: the caller renders the [`Report`].
pub async fn run(options: &ReportOptions, watchers: &Watchers) -> anyhow::Result<Report> {
    anyhow::ensure!(options.requests > 0, "--requests must be at least 1");
    let cells = matrix::run(&ClientKind::ALL, &Deployment::ALL).await?;
    let mismatches = matrix::mismatches(&cells);
    let closed_options = RolloutOptions {
        v1_clients: ROLLOUT_CLIENTS,
        v2_clients: ROLLOUT_CLIENTS,
        phase: options.rollout_phase,
        rate_per_client: None,
        open_loop: false,
        processes: false,
        kill_v1: false,
    };
    let exe = &options.testbed_exe;
    let closed_loop = rollout::run(&closed_options, exe, &watchers.rollout).await?;
    let open_options = RolloutOptions {
        rate_per_client: Some(OPEN_LOOP_RATE),
        open_loop: true,
        ..closed_options
    };
    let open_loop = rollout::run(&open_options, exe, &watchers.rollout).await?;
    for (name, rollout) in [("closed-loop", &closed_loop), ("open-loop", &open_loop)] {
        anyhow::ensure!(
            rollout.load.clean(),
            "the {name} rollout failed or misanswered some requests:\n{}",
            rollout.render()
        );
    }
    let proxies = proxies::run(options.rollout_phase, exe, &watchers.rollout).await?;
    let canary = canary::run(exe).await?;
    let traffic = traffic::run_section(exe).await?;
    let mut notes = Vec::new();
    let mut latency = Vec::new();
    for bench_options in placements(options, watchers, &mut notes)? {
        let name = placement_name(&bench_options);
        let report = bench::run_until(bench_options, port::signal::shutdown()).await?;
        latency.push(Placement { name, report });
    }
    Ok(Report {
        summary: summary::targets(&latency),
        metadata: Metadata::gather(options, &latency),
        matrix: MatrixSection { cells, mismatches },
        rollout: RolloutSection {
            closed_loop,
            open_loop,
        },
        proxies,
        canary,
        traffic,
        latency,
        api: api::section()?,
        notes,
    })
}

impl Report {
    /// The report for the terminal: the summary and the machine first, then each section.
    pub fn render(&self) -> String {
        let mut out = String::from("# gRPC version-compatibility testbed report\n\n");
        out.push_str("## Summary: the testbed's targets\n\n");
        out.push_str(&summary::render_targets(&self.summary));
        out.push_str("\n## The run\n\n");
        out.push_str(&self.metadata.render());
        out.push_str("\n## Compatibility matrix\n\n");
        out.push_str(
            "Rows are clients, columns deployments. ✓ shows the values returned (unary: 41 → 42 \
             for v1, 41 + step 5 → 46 for v2; stream: 10,20,30) and the version that served \
             them, ✗ a silently wrong answer, otherwise the gRPC status.\n\n",
        );
        out.push_str(&matrix::render(&self.matrix.cells));
        out.push_str(&format!(
            "\n## Zero-downtime v1 → v2 rollout ({ROLLOUT_CLIENTS} v1 + {ROLLOUT_CLIENTS} v2 \
             clients, {} s phases)\n\n",
            self.metadata.rollout_phase_seconds
        ));
        out.push_str("### Closed loop\n\n");
        out.push_str(&self.rollout.closed_loop.render());
        out.push_str("\n### Open loop\n\n");
        out.push_str(&self.rollout.open_loop.render());
        out.push_str("\n## Through real proxies (nginx, HAProxy, Envoy)\n\n");
        out.push_str(&self.proxies.render());
        out.push_str("\n## A canary that reads gRPC\n\n");
        out.push_str(&self.canary.render());
        out.push_str("\n## Your API's traffic: replay and rollout\n\n");
        out.push_str(&self.traffic.render());
        out.push_str("\n## Latency runs\n\n");
        for note in &self.notes {
            out.push_str(&format!("{note}\n\n"));
        }
        for placement in &self.latency {
            out.push_str(&format!("### {}\n\n", placement.name));
            if let Some(ns) = placement.report.halt_poll_ns {
                out.push_str(&format!(
                    "Guest halt polling set to {ns} ns for this run, then put back as it was.\n\n"
                ));
            }
            out.push_str(&placement.report.render());
            out.push('\n');
        }
        let changelog = &self.api.changelog;
        out.push_str(&format!(
            "## The API: v1 → v2 is a {} change ({} findings; `testbed check proto/v1 proto/v2` \
             lists them)\n",
            changelog.verdict.map_or("no", |bump| bump.as_str()),
            changelog.findings.len()
        ));
        out
    }
}

/// Where a latency run puts client and servers, in words.
pub fn placement_name(options: &BenchOptions) -> String {
    let flavor = options.flavor.name();
    match (&options.cpus, &options.server_cpus, options.halt_poll_ns) {
        (None, _, _) => format!("unpinned, {flavor}"),
        (Some(client), Some(servers), None) => {
            format!("apart (client on CPU {client}, servers on CPU {servers}), {flavor}")
        }
        (Some(client), Some(servers), Some(ns)) => format!(
            "apart (client on CPU {client}, servers on CPU {servers}), halt polling {} µs, {flavor}",
            ns / 1_000
        ),
        (Some(cpus), None, _) => format!("together on CPU {cpus}, {flavor}"),
    }
}

/// The latency runs of the report. Quick (the default): one round where the scheduler puts
/// things, what a user gets by default. Full: three rounds there, then placements held fixed,
/// since unpinned the scheduler may put one server beside the client and the next not (see
/// docs/results.md, "Where the unary time goes"): client and servers on vCPUs of their own, the
/// same with idle vCPUs polling before they halt, and everything on one vCPU. What cannot run
/// here is noted in `notes`.
pub fn placements(
    options: &ReportOptions,
    watchers: &Watchers,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<BenchOptions>> {
    let requests = options.requests;
    let base = BenchOptions {
        requests,
        warmup: (requests / 10).min(1_000),
        repeat: if options.full {
            FULL_REPEAT
        } else {
            QUICK_REPEAT
        },
        concurrency: 1,
        rows: Vec::new(),
        cpus: None,
        server_cpus: None,
        halt_poll_ns: None,
        flavor: options.flavor,
        progress: watchers.bench.clone(),
        testbed_exe: options.testbed_exe.clone(),
    };
    if !options.full {
        notes.push(
            "Quick run: one round, unpinned. `testbed report --full` runs three rounds in each \
             of four placements (the study docs/results.md reports)."
                .to_string(),
        );
        return Ok(vec![base]);
    }
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
                Some(reason) => notes.push(format!("No run with guest halt polling: {reason}.")),
            }
        }
        None => notes
            .push("Only one CPU may be used: no run with client and servers apart.".to_string()),
    }
    runs.push(together);
    Ok(runs)
}
