//! The latency runs: what each hop costs, from a function call to REST to gRPC unary and
//! streams, and from Python to Rust, measured side by side in one run.
//!
//! Every row runs the same workload: `requests` sequential dependent increments (each request
//! sent only after the previous reply, starting from 0); the final value must equal the request
//! count or the run fails. Servers of network rows run in their own processes on 127.0.0.1.

pub mod baseline;
mod chains;
mod concurrent;
#[cfg(test)]
mod fixtures;
mod h2load;
mod halt_poll;
mod handshake;
pub mod on_port;
mod placement;
pub mod proxies;
mod python;
mod report;
mod row;
mod run;
pub mod samples;
mod targets;
mod tuned;

pub use halt_poll::HaltPoll;
pub use handshake::{ConnectFigures, HandshakeResult};
pub use placement::CpuList;
pub use proxies::{LoadFigures, PathFigures, ProxiesResult};
pub use report::percentile_plot::{
    MAIN_ROWS, PERCENTILE_COLORS, PercentileLine, percentile_svg, percentile_x,
};
pub use report::percentiles::{PERCENTILES, Percentile, percentiles};
pub use report::{BenchReport, RowResult, RowsSkipped, check_writable};
pub use row::Row;
pub use run::{run, run_until};

use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Which tokio runtime the Rust sides (client and servers) use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Flavor {
    /// One thread: no cross-thread wake-ups.
    CurrentThread,
    /// tokio's default work-stealing pool.
    #[default]
    MultiThread,
}

impl Flavor {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current-thread",
            Flavor::MultiThread => "multi-thread",
        }
    }

    /// Builds a runtime of this flavour.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        }
        .enable_all()
        .build()
    }
}

/// How to run the latency runs; `testbed bench` takes these as flags. The fields marked
/// "set by the caller" are not flags: the command line fills them in.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Sequential dependent calls per chain (the final value must equal it).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Unmeasured calls per chain before measuring.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Alternate through the rows this many times and report medians.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub repeat: usize,
    /// Independent chains at once on the network rows (Python clients: one process each).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub concurrency: usize,
    /// Only these rows (repeatable; default all).
    #[arg(long = "row", value_enum)]
    pub rows: Vec<Row>,
    /// Pin the client and every server process to these CPUs (taskset -c syntax: 0, 0,1, 0-3).
    /// On small VMs one shared CPU removes the cross-CPU wake-up that dominates a round trip.
    #[arg(long)]
    pub cpus: Option<CpuList>,
    /// Pin the server processes to these CPUs instead of --cpus: client and servers on CPUs of
    /// their own, e.g. --cpus 0 --server-cpus 1.
    #[arg(long)]
    pub server_cpus: Option<CpuList>,
    /// Let an idle vCPU poll this long before it halts, for this run only (root, on a KVM guest
    /// with the cpuidle-haltpoll driver; the old value is put back afterwards). Shows what
    /// waking a halted vCPU costs a round trip.
    #[arg(long)]
    pub halt_poll_ns: Option<u64>,
    /// The runtime flavour of the Rust sides (set by the caller: the global `--runtime`).
    #[arg(skip)]
    pub flavor: Flavor,
    /// Told after each row (set by the caller; `None`: nobody is told).
    #[arg(skip)]
    pub progress: Option<Progress>,
    /// The `testbed` executable that serves the Rust targets (set by the caller: this one, from
    /// the command line; `CARGO_BIN_EXE_testbed` in tests).
    #[arg(skip)]
    pub testbed_exe: PathBuf,
}

impl BenchOptions {
    /// The rows this run is to run, in order: those asked for, or every row.
    pub fn rows_to_run(&self) -> Vec<Row> {
        if self.rows.is_empty() {
            Row::ALL.to_vec()
        } else {
            self.rows.clone()
        }
    }

    /// Checks the options before any work starts (a run checks them first; the command line may
    /// call this earlier still): the counts are at least 1, and every row that must run can. A
    /// row must run when it was asked for by name with `--row`, or under `CI=true`; the tools it
    /// needs (Python with grpcio, h2load) are looked for now, so that a missing one fails the
    /// run in a moment rather than after it, with the fix.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.requests >= 1,
            "--requests must be at least 1 (got {}): each chain must make a call to measure",
            self.requests
        );
        anyhow::ensure!(self.repeat >= 1, "--repeat must be at least 1 (got 0)");
        anyhow::ensure!(
            self.concurrency >= 1,
            "--concurrency must be at least 1 (got 0)"
        );
        if self.rows.is_empty() && !in_ci() {
            return Ok(());
        }
        let why = if self.rows.is_empty() {
            "under CI=true every row must run"
        } else {
            "it was asked for with --row"
        };
        for row in self.rows_to_run() {
            if let Err(missing) = row.tools() {
                anyhow::bail!(
                    "row {} ({}) cannot run, and {why}: {missing}",
                    row.flag(),
                    row.label()
                );
            }
        }
        Ok(())
    }
}

/// Whether this is a CI run (`CI=true`), where every row must run.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(format!("{text:?} is not a whole number: {err}")),
    }
}

/// Where a run has got to: `done` of `total` rows (over all rounds), and what runs now.
#[derive(Debug, Clone)]
pub struct Step {
    /// Rows finished.
    pub done: usize,
    /// Rows in the whole run.
    pub total: usize,
    /// What runs next, e.g. "round 2 raw TCP ping-pong (floor)"; empty when finished.
    pub message: String,
}

/// A callback told each [`Step`] of a run. The library draws nothing itself: the command line
/// renders it as a progress bar, tests ignore it.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(Step) + Send + Sync>);

impl Progress {
    /// Calls `report` with every step.
    pub fn new(report: impl Fn(Step) + Send + Sync + 'static) -> Self {
        Self(Arc::new(report))
    }

    pub(crate) fn tell(&self, done: usize, total: usize, message: String) {
        (self.0)(Step {
            done,
            total,
            message,
        })
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}
