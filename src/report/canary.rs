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
    /// The gateway's usage table after the drill: who called which version.
    pub usage: Vec<UsageLine>,
}

/// One row of the gateway's usage table (`testbed route usage`), as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UsageLine {
    /// The caller's `x-client-id`.
    pub caller: String,
    /// `/package.Service/Method`.
    pub method: String,
    /// The backend that served its calls, and its version.
    pub backend: String,
    /// See `backend`.
    pub version: String,
    /// Calls counted.
    pub calls: u64,
    /// From its last call until the table was read, in milliseconds.
    pub last_seen_ms_before: u64,
}

/// The usage table's rows for the load's method, checked against the load's own count: each
/// caller's calls answered by each version, as the gateway counted them and as the callers did.
fn usage_lines(
    table: &Value,
    by_caller: &std::collections::BTreeMap<&'static str, crate::canary::drill::Counts>,
) -> anyhow::Result<Vec<UsageLine>> {
    let read_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut lines = Vec::new();
    for row in table["rows"].as_array().into_iter().flatten() {
        let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
        lines.push(UsageLine {
            caller: text("identity"),
            method: format!("/{}/{}", text("service"), text("method")),
            backend: text("backend"),
            version: text("version"),
            calls: row["calls"].as_u64().unwrap_or(0),
            last_seen_ms_before: read_at
                .saturating_sub(row["last_seen_unix_ms"].as_u64().unwrap_or(read_at)),
        });
    }
    for (caller, counts) in by_caller {
        let mut made = std::collections::BTreeMap::<&str, u64>::new();
        for ((version, _), n) in counts {
            *made.entry(version).or_default() += n;
        }
        for (version, made) in made {
            let counted: u64 = lines
                .iter()
                .filter(|l| l.caller == *caller && l.version == version)
                .map(|l| l.calls)
                .sum();
            anyhow::ensure!(
                counted == made,
                "the usage table counts {counted} calls of {caller} answered by {version}; the \
                 caller counted {made}"
            );
        }
    }
    let callers: u64 = by_caller.values().flat_map(|c| c.values()).sum();
    let counted: u64 = lines.iter().map(|l| l.calls).sum();
    anyhow::ensure!(
        counted == callers,
        "the usage table counts {counted} calls in all, the callers made {callers}"
    );
    lines.sort_by(|a, b| (&a.caller, &a.version).cmp(&(&b.caller, &b.version)));
    Ok(lines)
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
    let by_caller = load.stop_by_caller().await?;
    let outcome = outcome?;
    let usage = usage_lines(&stage.usage().await?, &by_caller)?;
    let mut counts = crate::canary::drill::Counts::new();
    for (key, n) in by_caller.into_values().flatten() {
        *counts.entry(key).or_default() += n;
    }
    Ok(Drill {
        name: name.to_string(),
        fail_percent,
        exit_code: outcome.code,
        events: outcome.events,
        calls: counts.into_iter().map(|((v, c), n)| (v, c, n)).collect(),
        usage,
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
            out.push_str(
                "\nWho called what, by the gateway's usage table (`testbed route usage`), each \
                 row equal to the callers' own count:\n\n| caller | method | backend | version | \
                 calls | last seen |\n|---|---|---|---|---|---|\n",
            );
            for line in &drill.usage {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {:.1} s before the table was read |\n",
                    line.caller,
                    line.method,
                    line.backend,
                    line.version,
                    line.calls,
                    line.last_seen_ms_before as f64 / 1000.0
                ));
            }
        }
        out
    }
}
