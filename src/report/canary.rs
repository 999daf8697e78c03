//! The main job's canary drills: `testbed canary` run on the shop example's two v2 builds
//! behind a gateway ([`crate::canary::drill`]), once with a good build (promoted) and once with
//! a build failing a fifth of its calls (rolled back), under unpinned load; each interval's
//! figures and decision, and every call the load made, counted by the version that answered.

use crate::canary::drill::{ShopLoad, Stage};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The steps of each drill, in percent of the unpinned calls.
const STEPS: [u8; 3] = [10, 50, 100];
/// How long each step is watched.
const INTERVAL: Duration = Duration::from_secs(2);
/// Calls the new build must serve in an interval to be judged.
const MIN_CALLS: u64 = 20;

/// One drill.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    /// What it shows.
    pub name: String,
    /// The share of its calls the new build fails on purpose.
    pub fail_percent: u32,
    /// The canary's exit code (0 promoted, 100 rolled back, 3 too few calls).
    pub exit_code: i32,
    /// The canary's events, as `testbed canary --json` prints them.
    pub events: Vec<Value>,
    /// The load's calls: (version that answered, `OK` or the status) and how many.
    pub calls: Vec<(String, String, u64)>,
}

impl Drill {
    /// Calls that did not succeed, by the version that answered.
    pub fn failed(&self, version: &str) -> u64 {
        self.calls
            .iter()
            .filter(|(v, code, _)| v == version && code != "OK")
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// The section: both drills, or why they did not run.
#[derive(Debug, Clone, Serialize)]
pub struct CanarySection {
    /// The drills that ran.
    pub drills: Vec<Drill>,
    /// Why none ran (no Python with grpcio, no shop example), if so.
    pub skipped: Option<String>,
}

async fn drill(python: &Path, exe: &Path, name: &str, fail_percent: u32) -> anyhow::Result<Drill> {
    let stage = Stage::start(python, exe, fail_percent).await?;
    let load = ShopLoad::start(stage.gateway.addr).await?;
    let args = stage.canary_args(&STEPS, INTERVAL, MIN_CALLS);
    let outcome = crate::canary::drive(&args, false).await;
    let counts = load.stop().await?;
    let outcome = outcome?;
    Ok(Drill {
        name: name.to_string(),
        fail_percent,
        exit_code: outcome.code,
        events: outcome.events,
        calls: counts.into_iter().map(|((v, c), n)| (v, c, n)).collect(),
    })
}

/// Runs both drills with the testbed binary `exe`, and checks what the canary promised: the
/// good build promoted with no call failed, the bad one rolled back with only its own
/// failures.
pub async fn run(exe: &Path) -> anyhow::Result<CanarySection> {
    let python = match client::tools::python() {
        Ok(python) => python,
        Err(missing) if std::env::var_os("CI").is_none() => {
            return Ok(CanarySection {
                drills: Vec::new(),
                skipped: Some(missing.to_string()),
            });
        }
        Err(missing) => anyhow::bail!("{missing}"),
    };
    let good = drill(&python, exe, "a good build, promoted", 0).await?;
    anyhow::ensure!(
        good.exit_code == 0 && good.calls.iter().all(|(_, code, _)| code == "OK"),
        "the good build's canary did not promote it cleanly: exit {}, calls {:?}",
        good.exit_code,
        good.calls
    );
    let bad = drill(
        &python,
        exe,
        "a build failing 20 % of its calls, rolled back",
        20,
    )
    .await?;
    anyhow::ensure!(
        bad.exit_code == 100 && bad.failed("2.0.0") == 0 && bad.failed("none") == 0,
        "the bad build's canary did not roll it back cleanly: exit {}, calls {:?}",
        bad.exit_code,
        bad.calls
    );
    Ok(CanarySection {
        drills: vec![good, bad],
        skipped: None,
    })
}

/// One interval of a drill (a `canary --json` `interval` event) as the terminal table and the
/// HTML page both show it: the step (%), the canary's calls, errors, error rate (%) and p99
/// (ms), and the old backend's calls and errors.
pub(crate) fn interval_figures(event: &Value) -> [String; 7] {
    [
        figure(&event["step"], 1.0, 0),
        figure(&event["canary"]["calls"], 1.0, 0),
        figure(&event["canary"]["errors"], 1.0, 0),
        figure(&event["canary"]["error_rate"], 100.0, 1),
        figure(&event["canary"]["p99_seconds"], 1000.0, 1),
        figure(&event["old"]["calls"], 1.0, 0),
        figure(&event["old"]["errors"], 1.0, 0),
    ]
}

/// `value × scale` with `digits` decimals, `–` when the JSON has no number there.
pub(crate) fn figure(value: &Value, scale: f64, digits: usize) -> String {
    value
        .as_f64()
        .map_or("–".to_string(), |v| format!("{:.digits$}", v * scale))
}

impl CanarySection {
    /// The section for the terminal: per drill, a line per interval and the decision.
    pub fn render(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("Not run: {why}\n");
        }
        let mut out = format!(
            "`testbed canary --from v2a --to v2b --steps {} --interval {}s` on two builds of the \
             shop's v2 (Python grpcio) behind the gateway, two loops of unpinned calls running.\n",
            STEPS.map(|s| s.to_string()).join(","),
            INTERVAL.as_secs()
        );
        for drill in &self.drills {
            out.push_str(&format!("\n### {}\n\n", drill.name));
            out.push_str("| step | v2b calls | v2b errors | v2b p99 ms | v2a calls | v2a errors | decision |\n");
            out.push_str("|---|---|---|---|---|---|---|\n");
            for event in drill.events.iter().filter(|e| e["event"] == "interval") {
                let [step, calls, errors, rate, p99, old_calls, old_errors] =
                    interval_figures(event);
                out.push_str(&format!(
                    "| {step} % | {calls} | {errors} ({rate} %) | {p99} | {old_calls} | \
                     {old_errors} | {} |\n",
                    event["verdict"].as_str().unwrap_or("?"),
                ));
            }
            if let Some(last) = drill.events.last() {
                let why = last["why"]
                    .as_str()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "\n{} (exit {}){why}.\n",
                    last["event"].as_str().unwrap_or("?"),
                    drill.exit_code
                ));
            }
            let calls: Vec<String> = drill
                .calls
                .iter()
                .map(|(v, code, n)| format!("{n} × {v} {code}"))
                .collect();
            out.push_str(&format!("The load's calls: {}.\n", calls.join("; ")));
        }
        out
    }
}
