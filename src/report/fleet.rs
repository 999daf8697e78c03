//! The main job's fleet drill ([`crate::xds::drill`]): a v1 → v2 rollout through three Envoys
//! the gateway steers over xDS, under load through each; each admin change's time until every
//! Envoy acknowledged it, and per node and phase what the v1 and v2 clients saw. Checked as
//! the drill promises: every call answered, none wrong, v1's calls served by v2 at the end.

use crate::load::{LoadReport, Tally};
use crate::xds::drill::{self, FleetDrill};
use std::path::Path;
use std::time::Duration;

/// The drill, or why it did not run (no Envoy, outside CI).
pub(crate) async fn run(exe: &Path, phase: Duration) -> anyhow::Result<Option<FleetDrill>> {
    if let Err(missing) = proxy::ProxyKind::Envoy.find() {
        if std::env::var("CI").as_deref() == Ok("true") {
            anyhow::bail!("{missing}");
        }
        return Ok(None);
    }
    // Long enough for every client to make calls in each phase.
    let fleet = drill::run(exe, phase.max(Duration::from_millis(500))).await?;
    for node in &fleet.nodes {
        for (api, load) in [("v1", &node.v1), ("v2", &node.v2)] {
            for (phase, tally) in load.phases.iter().zip(tallies(load, api)) {
                anyhow::ensure!(
                    tally.requests > 0 && tally.failed() == 0 && tally.wrong == 0,
                    "the fleet drill through {}, {phase}, {api}: {} calls, {} failed {:?}, {} wrong",
                    node.node,
                    tally.requests,
                    tally.failed(),
                    tally.errors,
                    tally.wrong
                );
            }
        }
        let last = node.v1.tallies.last().map(|t| &t[0]);
        anyhow::ensure!(
            last.is_some_and(|t| t.served_by.keys().eq(["2.0.0"])),
            "through {}, v1's calls were not all served by 2.0.0 once v1 was removed: {:?}",
            node.node,
            last.map(|t| &t.served_by)
        );
    }
    Ok(Some(fleet))
}

/// The tallies of `api`'s clients in `load`, phase by phase.
fn tallies<'a>(load: &'a LoadReport, api: &str) -> impl Iterator<Item = &'a Tally> {
    let i = usize::from(api == "v2");
    load.tallies.iter().map(move |t| &t[i])
}

/// One tally as a table cell: calls, failed, wrong, who served.
fn cell(tally: &Tally) -> String {
    let served: Vec<String> = tally
        .served_by
        .iter()
        .map(|(version, n)| format!("{n} × {version}"))
        .collect();
    format!(
        "{} calls, {} failed, {} wrong ({})",
        tally.requests,
        tally.failed(),
        tally.wrong,
        served.join(", ")
    )
}

/// The drill for the terminal.
pub(crate) fn render(fleet: &FleetDrill) -> String {
    let mut out = format!(
        "\n### A v1 → v2 rollout through {} Envoys steered over xDS (serve --xds-addr)\n\n\
         Each change is one `testbed route` command, answered once every Envoy acknowledged it:\n\n",
        fleet.nodes.len()
    );
    for change in &fleet.changes {
        out.push_str(&format!(
            "- [{}] `{}`: {:.0} ms\n",
            change.phase, change.command, change.took_ms
        ));
    }
    out.push_str("\n| node | phase | v1 clients | v2 clients |\n|---|---|---|---|\n");
    for node in &fleet.nodes {
        let v2_phases: Vec<&String> = node.v2.phases.iter().collect();
        for (i, (phase, v1)) in node
            .v1
            .phases
            .iter()
            .zip(tallies(&node.v1, "v1"))
            .enumerate()
        {
            let v2 = v2_phases
                .iter()
                .position(|p| *p == phase)
                .and_then(|j| node.v2.tallies.get(j))
                .map_or("not started".to_string(), |t| cell(&t[1]));
            let name = if i == 0 { node.node.as_str() } else { "" };
            out.push_str(&format!("| {name} | {phase} | {} | {v2} |\n", cell(v1)));
        }
    }
    out
}
