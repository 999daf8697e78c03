//! The report's proxy section: the matrix's proxy columns (every client through nginx, HAProxy
//! and Envoy in three arrangements, [`crate::matrix::proxies`]) and the v1 → v2 rollout through
//! each proxy ([`crate::proxy_rollout`]), for the proxies that are installed (in CI all three:
//! `scripts/setup` runs `scripts/setup-proxies`). A proxy that is not installed is listed with
//! the command that installs it (under `CI=true` that is an error).

use crate::matrix::{self, Cell, ClientKind};
use crate::proxy_rollout::{self, ProxyRolloutReport};
use crate::rollout::RolloutOptions;
use proxy::ProxyKind;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Clients of each version in the proxy rollouts (fewer than the router's: three proxies run
/// one after another, and the figures that matter are failures, not throughput).
const CLIENTS: usize = 2;

/// Everything the report ran through real proxies.
#[derive(Debug, Clone, Serialize)]
pub struct ProxySection {
    /// The proxies run, in order.
    pub proxies: Vec<String>,
    /// Proxies not installed, each with the command that installs it.
    pub skipped: Vec<String>,
    /// The proxy columns of the matrix.
    pub matrix: super::MatrixSection,
    /// The rollout through each proxy.
    pub rollouts: Vec<ProxyRolloutReport>,
    /// The rollout through a fleet of Envoys steered over xDS (`None`: no Envoy, outside CI).
    pub fleet: Option<crate::xds::drill::FleetDrill>,
}

/// Runs the proxy columns and the proxy rollouts (phases of `phase`) through every installed
/// proxy, with `testbed_exe serve` processes behind them. `progress` is told each rollout's
/// phase and requests completed.
pub async fn run(
    phase: Duration,
    testbed_exe: &Path,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<ProxySection> {
    let (kinds, skipped) = matrix::proxies::installed(&ProxyKind::ALL)?;
    let mut cells: Vec<Cell> = Vec::new();
    for &kind in &kinds {
        cells.extend(matrix::proxies::run(&ClientKind::ALL, kind, testbed_exe).await?);
    }
    let options = RolloutOptions {
        v1_clients: CLIENTS,
        v2_clients: CLIENTS,
        phase,
        rate_per_client: None,
        open_loop: false,
        processes: false,
        kill_v1: false,
    };
    let mut rollouts = Vec::new();
    for &kind in &kinds {
        let report = proxy_rollout::run(kind, &options, testbed_exe, progress).await?;
        let [v1, v2] = report.load.totals();
        // Failures are a proxy's finding, shown in the report; a wrong answer is a fault.
        anyhow::ensure!(
            v1.wrong + v2.wrong == 0,
            "the rollout through {kind} answered some requests wrongly:\n{}",
            report.render()
        );
        rollouts.push(report);
    }
    Ok(ProxySection {
        proxies: kinds.iter().map(|k| k.to_string()).collect(),
        skipped,
        matrix: super::MatrixSection {
            mismatches: matrix::mismatches(&cells),
            cells,
        },
        rollouts,
        fleet: super::fleet::run(testbed_exe, phase).await?,
    })
}

impl ProxySection {
    /// The section for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for note in &self.skipped {
            out.push_str(&format!("{note}\n"));
        }
        if self.proxies.is_empty() {
            return out;
        }
        out.push_str(
            "Every client through each proxy: in front of the router (front-of-router), routing \
             by path itself to v1 and v2 processes (version-routing), and with v1 retired by a \
             path rewrite (v1-retired).\n\n",
        );
        out.push_str(&matrix::render(&self.matrix.cells));
        for rollout in &self.rollouts {
            out.push_str(&format!(
                "\n### The v1 → v2 rollout through {} ({CLIENTS} v1 + {CLIENTS} v2 clients)\n\n",
                rollout.proxy
            ));
            out.push_str(&rollout.render());
        }
        if let Some(fleet) = &self.fleet {
            out.push_str(&super::fleet::render(fleet));
        }
        out
    }
}
