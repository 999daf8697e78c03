//! The v1 → v2 rollout of [`crate::rollout`], done by a real proxy instead of the testbed's
//! router (`testbed rollout --proxy nginx|haproxy|envoy`): the same phases under the same
//! mixed-version load ([`crate::load`]), every request verified and counted per phase, so that
//! each proxy's failed and wrong requests stand beside the router's zero.
//!
//! v1 and v2 are `testbed serve --backend v1|v2` processes; the proxy is started by the `proxy`
//! crate and changed between phases the proxy's own way ([`RunningProxy::reconfigure`]: nginx
//! `-s reload`, HAProxy's runtime API (a map and server states, no reload), Envoy's filesystem
//! xDS):
//!
//! 1. `v1 only`: the proxy sends everything to v1 ([`Arrangement::V1Only`]); v1 clients run.
//! 2. `v2 added`: the v2 process starts, the proxy routes `/increment.v2.` (and health,
//!    reflection) to it, and the v2 clients start. A proxy has no health service of its own to
//!    tell them when v2 is routed (the router's `Watch`), so they start once the proxy has
//!    confirmed the change.
//! 3. `v1 retired`: the proxy rewrites `/increment.v1.` to `/increment.v2.` and sends it to v2.
//! 4. `v1 removed`: once the proxy runs only its steady processes (no old nginx worker left
//!    routing to v1 by the configuration it started with), the v1 process is stopped with
//!    SIGTERM (it finishes what it has in flight).
//!    Nothing routes to it by then: the proxy confirmed the previous change a phase earlier,
//!    and nginx's old workers closed their connections at the reload (the report counts the
//!    proxy's processes after each change); HAProxy put v1's server in maintenance.

use crate::load::{Load, LoadOptions, LoadReport, Point};
use crate::rollout::RolloutOptions;
use anyhow::Context;
use port::child::ChildServer;
use proxy::{Arrangement, ProxyKind, RunningProxy};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The phases, in order.
pub const PHASES: [&str; 4] = ["v1 only", "v2 added", "v1 retired", "v1 removed"];

/// How long the proxy may take, before v1 is stopped, to have no old worker left (nginx closes
/// an old worker's connections after its `worker_shutdown_timeout`, 5 s here).
const SETTLE_WITHIN: Duration = Duration::from_secs(15);

/// One configuration change and how the proxy took it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The phase it began.
    pub phase: String,
    /// The arrangement applied (`version-routing`, ...).
    pub arrangement: String,
    /// How it was applied, in the proxy's terms.
    pub how: String,
    /// From replacing the configuration until the proxy confirmed it, ms.
    pub applied_ms: f64,
    /// How many processes the proxy ran just after confirming it (old workers included).
    pub processes_after: Option<usize>,
}

/// What a proxy rollout saw.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRolloutReport {
    /// `nginx`, `haproxy` or `envoy`.
    pub proxy: String,
    /// Requests per phase and client version.
    pub load: LoadReport,
    /// Each configuration change.
    pub changes: Vec<Change>,
    /// What happened to the backend processes and the proxy's workers.
    pub notes: Vec<String>,
}

impl ProxyRolloutReport {
    /// The report for the terminal.
    pub fn render(&self) -> String {
        let mut out = format!("rollout through {}\n", self.proxy);
        out.push_str(&self.load.render());
        for change in &self.changes {
            out.push_str(&format!(
                "[{}] {} applied in {:.1} ms by {}{}\n",
                change.phase,
                change.arrangement,
                change.applied_ms,
                change.how,
                change
                    .processes_after
                    .map_or_else(String::new, |n| format!("; {n} proxy processes just after"))
            ));
        }
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        out
    }
}

/// Runs the rollout through `kind` on 127.0.0.1, with `testbed_exe serve --backend` processes
/// behind it. `progress` is told the phase and the requests completed so far, every 50 ms.
/// Fails when the proxy is not installed (naming the command that installs it), or refuses a
/// configuration; failed and wrong requests are counted in the report, not errors.
pub async fn run(
    kind: ProxyKind,
    options: &RolloutOptions,
    testbed_exe: &Path,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<ProxyRolloutReport> {
    kind.find()?;
    let backend = |api: &'static str| async move {
        let args = ["serve", "--backend", api, "--addr", "127.0.0.1:0"];
        ChildServer::testbed(testbed_exe, &args).await
    };
    let mut notes = Vec::new();
    let v1 = backend("v1").await?;
    notes.push(format!("v1 process listening on {}", v1.addr));
    let mut proxy = RunningProxy::start(kind, &Arrangement::V1Only { v1: v1.addr }).await?;
    notes.push(format!("{kind} listening on {}", proxy.addr()));
    let v2_requirement: semver::VersionReq = "^2".parse()?;
    let load_options = |v1_clients, v2_clients| LoadOptions {
        v1_clients,
        v2_clients,
        requests_per_client: None,
        rate_per_client: options.rate_per_client,
        open_loop: options.open_loop,
        v1_requirement: None,
        v2_requirement: Some(v2_requirement.clone()),
        v2_waits_for_health: false,
        call_log: None,
    };
    let started = Instant::now();
    let mut loads = Loads {
        v1: Load::start(
            proxy.addr(),
            &load_options(options.v1_clients, 0),
            PHASES[0],
        )
        .await?,
        v2: None,
        phase: PHASES[0],
        progress,
        length: options.phase,
    };
    let mut changes = Vec::new();
    loads.hold().await;

    loads.begin(PHASES[1]);
    let v2 = backend("v2").await?;
    notes.push(format!("v2 process listening on {}", v2.addr));
    let routing = |retire_v1| Arrangement::VersionRouting {
        v1: v1.addr,
        v2: v2.addr,
        retire_v1,
    };
    changes.push(change(&mut proxy, PHASES[1], &routing(false)).await?);
    let v2_started = started.elapsed();
    loads.v2 = Some(
        Load::start(
            proxy.addr(),
            &load_options(0, options.v2_clients),
            PHASES[1],
        )
        .await?,
    );
    loads.hold().await;

    loads.begin(PHASES[2]);
    changes.push(change(&mut proxy, PHASES[2], &routing(true)).await?);
    loads.hold().await;

    // v1 is stopped only once no old worker of the proxy still routes to it; what closing an
    // old worker's connections costs belongs to the reload's phase.
    let settled = proxy.wait_settled(SETTLE_WITHIN).await?;
    notes.push(format!(
        "{} ran only its steady processes {:.0} ms after the v1-retired phase's end",
        proxy.kind(),
        settled.as_secs_f64() * 1e3
    ));
    loads.begin(PHASES[3]);
    let status = v1.terminate().await?;
    notes.push(format!("v1 process stopped by SIGTERM: {status}"));
    loads.hold().await;

    let v1_report = loads.v1.stop().await?;
    let v2_report = match loads.v2 {
        Some(load) => Some(load.stop().await?),
        None => None,
    };
    let log_lines = proxy.log().lines().count();
    proxy.stop().await.context("cannot stop the proxy")?;
    drop(v2);
    notes.push(format!("{kind} logged {log_lines} lines"));
    Ok(ProxyRolloutReport {
        proxy: kind.to_string(),
        load: combine(options, v1_report, v2_report, 1, v2_started),
        changes,
        notes,
    })
}

/// Applies `arrangement` at the start of `phase`.
async fn change(
    proxy: &mut RunningProxy,
    phase: &str,
    arrangement: &Arrangement,
) -> anyhow::Result<Change> {
    let done = proxy
        .reconfigure(arrangement)
        .await
        .with_context(|| format!("{} could not apply {}", proxy.kind(), arrangement.name()))?;
    Ok(Change {
        phase: phase.to_string(),
        arrangement: arrangement.name().to_string(),
        how: done.how,
        applied_ms: done.took.as_secs_f64() * 1e3,
        processes_after: proxy.process_count().ok(),
    })
}

/// The v1 load (from the first phase) and the v2 load (from `v2 added`), moved through the
/// phases together.
struct Loads<'a> {
    v1: Load,
    v2: Option<Load>,
    phase: &'static str,
    progress: &'a (dyn Fn(&str, u64) + Sync),
    length: Duration,
}

impl Loads<'_> {
    fn completed(&self) -> u64 {
        self.v1.completed() + self.v2.as_ref().map_or(0, Load::completed)
    }

    fn begin(&mut self, phase: &'static str) {
        self.v1.next_phase(phase);
        if let Some(v2) = &mut self.v2 {
            v2.next_phase(phase);
        }
        self.phase = phase;
        (self.progress)(phase, self.completed());
    }

    async fn hold(&self) {
        let deadline = tokio::time::Instant::now() + self.length;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50).min(self.length)).await;
            (self.progress)(self.phase, self.completed());
        }
    }
}

/// One report from the v1 load and the v2 load, which started `v2_started` after the v1 load,
/// at phase number `v2_first_phase`.
fn combine(
    options: &RolloutOptions,
    v1: LoadReport,
    v2: Option<LoadReport>,
    v2_first_phase: usize,
    v2_started: Duration,
) -> LoadReport {
    let mut combined = v1;
    combined.settings.v2_clients = options.v2_clients;
    let Some(v2) = v2 else {
        return combined;
    };
    for (phase, tallies) in v2.tallies.into_iter().enumerate() {
        if let Some(slot) = combined.tallies.get_mut(phase + v2_first_phase) {
            let [_, v2_tally] = tallies;
            slot[1] = v2_tally;
        }
    }
    let skipped = (v2_started.as_millis() / u128::from(combined.series.bucket_ms.max(1))) as usize;
    let mut series: Vec<Point> = vec![Point::default(); skipped];
    series.extend(v2.series.v2);
    let length = series.len().max(combined.series.v1.len());
    series.resize(length, Point::default());
    combined.series.v1.resize(length, Point::default());
    combined.series.v2 = series;
    combined
}
