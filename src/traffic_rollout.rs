//! `testbed rollout --traffic`: the zero-downtime rollout for any API, old build to new build of
//! one package. A gateway process (`testbed serve --upstream old=OLD_VERSION@OLD`, its admin
//! API on, a token made for the run) stands in front of the user's OLD server; the traffic's
//! clients ([`crate::traffic_load`]) send through it while this process moves it to NEW
//! through the admin API:
//!
//! 1. `old only`: OLD serves everything.
//! 2. `new added`: NEW joins as `new=NEW_VERSION`; its packages are read by reflection, and as
//!    the higher version of the same package it takes the unpinned calls.
//! 3. `old removed`: OLD is drained (bounded, what was in flight finishes) and removed.
//!
//! Every reply through the gateway is compared with OLD's own answer to the same call (OLD
//! keeps running: it is the user's server, only leaving the gateway). Before any load, NEW and
//! then the gateway are each sent the traffic once and must serve every method of it.

use crate::rollout::gateway_process;
use crate::traffic_load::{Pace, TrafficArgs, TrafficLoad, TrafficLoadReport, check_serves};
use anyhow::Context;
use compat::replay::{ReplayOptions, Replayer};
use port::admin::pb::{AddRequest, DrainRequest, RemoveRequest};
use semver::Version;
use std::path::Path;
use std::time::Duration;

/// How long OLD's in-flight calls may take to finish before it is removed anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The flags of `rollout --traffic` besides the traffic's own.
#[derive(Debug, Clone, clap::Args)]
pub struct TrafficRolloutArgs {
    /// The traffic, its clients and OLD.
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// With --traffic: the new build's server the gateway is rolled out to (grpc://HOST:PORT or
    /// https://HOST:PORT); it must serve the traffic's methods at the same paths.
    #[arg(long, value_parser = compat::cli::parse_server, requires = "files")]
    pub new: Option<String>,
    /// With --traffic: the version OLD is routed as.
    #[arg(long, default_value = "1.0.0", requires = "files")]
    pub old_version: Version,
    /// With --traffic: the version NEW is routed as; higher than --old-version, so that it
    /// takes the unpinned calls once added.
    #[arg(long, default_value = "1.1.0", requires = "files")]
    pub new_version: Version,
}

/// The phases' names, in order.
pub const PHASES: [&str; 3] = ["old only", "new added", "old removed"];

/// Runs the rollout of `args` with `phase` per phase and `pace`'s clients, the gateway a
/// `testbed_exe serve` process; `progress` is told the phase and the calls completed.
pub async fn run(
    args: &TrafficRolloutArgs,
    phase: Duration,
    rate_per_client: Option<f64>,
    testbed_exe: &Path,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> anyhow::Result<TrafficLoadReport> {
    let new = args
        .new
        .as_deref()
        .context("rollout --traffic needs --new: the new build's server to roll out to")?;
    let old = args
        .traffic
        .old
        .as_deref()
        .context("rollout --traffic needs --old: the old build's server, the baseline")?;
    anyhow::ensure!(
        args.new_version > args.old_version,
        "--new-version {} must be higher than --old-version {}: the gateway sends unpinned calls to the highest version",
        args.new_version,
        args.old_version
    );
    anyhow::ensure!(
        args.traffic.baseline.map.is_empty(),
        "rollout --traffic moves the traffic's own package from OLD to NEW; --map (NEW serving another package) is not supported yet"
    );
    let (lines, direct_options) = args.traffic.load(new).await?;
    let direct = Replayer::new(&lines, &direct_options)?;
    check_serves(&direct, &format!("NEW {new}")).await?;
    let mut extra = Vec::new();
    if let Some(ca) = &args.traffic.baseline.tls.ca {
        extra.extend(["--upstream-ca".to_string(), ca.display().to_string()]);
    }
    // OLD's descriptors given rather than reflected: the gateway gets them too (NEW, added
    // later, is read by reflection).
    let descriptors = match &args.traffic.baseline.descriptors {
        Some(_) => {
            let file = tempfile::Builder::new()
                .prefix("testbed-rollout-old-")
                .suffix(".binpb")
                .tempfile()
                .context("a file for OLD's descriptors")?;
            std::fs::write(file.path(), direct_options.api.pool.encode_to_vec())
                .with_context(|| format!("writing {}", file.path().display()))?;
            extra.extend([
                "--descriptors".to_string(),
                format!("old={}", file.path().display()),
            ]);
            Some(file)
        }
        None => None,
    };
    let (gateway, mut admin, _) = gateway_process(
        testbed_exe,
        &[format!("old={}@{old}", args.old_version)],
        &extra,
    )
    .await?;
    let target = gateway.addr.to_string();
    let options = ReplayOptions {
        new: target.clone(),
        ..direct_options
    };
    let replayer = Replayer::new(&lines, &options)?;
    check_serves(&replayer, &format!("the gateway {target} in front of OLD")).await?;
    let pace = Pace {
        clients: args.traffic.traffic_clients,
        calls_per_client: None,
        rate_per_client,
    };
    let mut notes = vec![format!(
        "gateway process on {target} in front of OLD as old={}; every route change went through its admin API",
        args.old_version
    )];
    let mut load = TrafficLoad::start(replayer, pace, PHASES[0]).await?;
    hold(PHASES[0], &load, phase, progress).await;
    // Each phase begins just before its change, so that no call of a phase predates it.
    load.next_phase(PHASES[1])?;
    admin
        .add(AddRequest {
            upstream: format!("new={}@{new}", args.new_version),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("the gateway refused adding NEW: {}", s.message()))?;
    hold(PHASES[1], &load, phase, progress).await;
    load.next_phase(PHASES[2])?;
    let drained = admin
        .drain(DrainRequest {
            name: "old".to_string(),
            timeout_ms: u32::try_from(DRAIN_LIMIT.as_millis()).unwrap_or(u32::MAX),
            force: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the gateway refused draining OLD: {}", s.message()))?
        .into_inner();
    notes.push(format!(
        "drain of OLD: {} call(s) in flight when it began, {} finished, {} still open after {} ms",
        drained.open_at_start, drained.finished, drained.still_open, drained.waited_ms
    ));
    admin
        .remove(RemoveRequest {
            name: "old".to_string(),
            force: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the gateway refused removing OLD: {}", s.message()))?;
    hold(PHASES[2], &load, phase, progress).await;
    let (phases, seconds) = load.stop(&options).await?;
    if let Some(added) = phases.get(1) {
        let by_new = added
            .served_by
            .get(&args.new_version.to_string())
            .copied()
            .unwrap_or(0);
        if added.answered > 0 && by_new == 0 {
            notes.push(format!(
                "NEW served none of the {} answered calls of `{}`: the gateway kept the unpinned calls on OLD (does NEW serve the traffic's package under the same name?)",
                added.answered, PHASES[1]
            ));
        }
    }
    let status = gateway.terminate().await?;
    drop(descriptors);
    notes.push(format!("gateway process stopped: {status}"));
    Ok(TrafficLoadReport::new(
        &args.traffic,
        &options,
        &target,
        pace,
        seconds,
        phases,
        notes,
    ))
}

/// Lets the load run for `phase`, telling `progress` every 50 ms.
async fn hold(
    name: &str,
    load: &TrafficLoad,
    phase: Duration,
    progress: &(dyn Fn(&str, u64) + Sync),
) {
    let until = tokio::time::Instant::now() + phase;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress(name, load.completed());
    }
}
