//! The report's summary: each target the README sets, with its measured value and whether it
//! was met, and the run's metadata (commit, date, machine, placements).

use super::{Placement, ReportOptions};
use bench::{BenchReport, Row};
use serde::Serialize;

/// One placement's value of a target.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// The placement it was measured in.
    pub placement: String,
    /// The value (a ratio; a share for h2load).
    pub value: f64,
    /// Whether it meets the target.
    pub met: bool,
}

/// One of the README's targets.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Short name.
    pub name: &'static str,
    /// The target in words, e.g. "≤ 1.03 × direct unary p50".
    pub goal: &'static str,
    /// How the value is computed.
    pub measure: &'static str,
    /// The value in each placement where both rows ran.
    pub measured: Vec<Measured>,
    /// The value the verdict rests on: the worst placement, or for "best unary" the best one
    /// (`None`: not measured).
    pub headline: Option<f64>,
    /// Whether the target is met (`None`: not measured).
    pub met: Option<bool>,
    /// "met", "not met", "met in 1 of 4 placements" or "not measured".
    pub verdict: String,
}

fn p50(report: &BenchReport, row: Row) -> Option<f64> {
    report
        .rows
        .iter()
        .find(|r| r.row == row)
        .and_then(|r| r.p50_us)
}

/// How the placements combine into a verdict.
#[derive(Clone, Copy)]
enum Over {
    /// Every placement must meet it; the headline is the worst.
    All,
    /// The best configuration must meet it; the headline is the best.
    Best,
}

fn target(
    [name, goal, measure]: [&'static str; 3],
    latency: &[Placement],
    value: impl Fn(&BenchReport) -> Option<f64>,
    meets: impl Fn(f64) -> bool,
    lower_is_better: bool,
    over: Over,
) -> Target {
    let measured: Vec<Measured> = latency
        .iter()
        .filter_map(|p| {
            value(&p.report)
                .filter(|v| v.is_finite())
                .map(|value| Measured {
                    placement: p.name.clone(),
                    value,
                    met: meets(value),
                })
        })
        .collect();
    let better = |a: f64, b: f64| if lower_is_better { a < b } else { a > b };
    let pick = |want_best: bool| {
        measured
            .iter()
            .map(|m| m.value)
            .reduce(|a, b| if better(a, b) == want_best { a } else { b })
    };
    let headline = match over {
        Over::All => pick(false),
        Over::Best => pick(true),
    };
    let met_count = measured.iter().filter(|m| m.met).count();
    let (met, verdict) = if measured.is_empty() {
        (None, "not measured".to_string())
    } else {
        let met = match over {
            Over::All => met_count == measured.len(),
            Over::Best => met_count > 0,
        };
        let verdict = match (met, measured.len()) {
            (true, _) => "met".to_string(),
            (false, 1) => "not met".to_string(),
            (false, n) if met_count > 0 => format!("met in {met_count} of {n} placements"),
            (false, _) => "not met".to_string(),
        };
        (Some(met), verdict)
    };
    Target {
        name,
        goal,
        measure,
        measured,
        headline,
        met,
        verdict,
    }
}

/// The README's targets, from the latency runs.
pub fn targets(latency: &[Placement]) -> Vec<Target> {
    let unary = [
        Row::UnaryV1,
        Row::UnaryUnbuffered,
        Row::UnaryH2,
        Row::UnaryV2,
        Row::UnaryRouter,
    ];
    vec![
        target(
            [
                "router overhead",
                "≤ 1.03 × direct unary p50",
                "p50 of gRPC unary v2 via router / v2 direct, measured in alternation",
            ],
            latency,
            |r| Some(p50(r, Row::UnaryRouter)? / p50(r, Row::UnaryV2)?),
            |v| v <= 1.03,
            true,
            Over::All,
        ),
        target(
            [
                "best unary against the floor",
                "≤ 3 × raw TCP p50",
                "lowest p50 of the gRPC unary rows against the testbed's server / raw TCP p50",
            ],
            latency,
            |r| {
                let best = unary
                    .iter()
                    .filter_map(|&row| p50(r, row))
                    .reduce(f64::min)?;
                Some(best / p50(r, Row::Tcp)?)
            },
            |v| v <= 3.0,
            true,
            Over::Best,
        ),
        target(
            [
                "Rust server against Python",
                "Rust server ≥ 4 × faster than the Python grpcio server",
                "p50 of Rust tonic → Python server / Rust tonic → Rust server (unary v1, direct)",
            ],
            latency,
            |r| Some(p50(r, Row::RustToPython)? / p50(r, Row::UnaryV1)?),
            |v| v >= 4.0,
            false,
            Over::All,
        ),
        target(
            [
                "h2load through the router",
                "≥ 90 % of direct requests/s",
                "h2load -c 10 -m 10: router requests/s / direct requests/s",
            ],
            latency,
            |r| r.h2load_router_share,
            |v| v >= 0.9,
            false,
            Over::All,
        ),
        target(
            [
                "gateway overhead",
                "≤ 1.05 × direct unary p50",
                "p50 of unary v1 through `serve --upstream` (router as a proxy in its own process) / the same backend direct, measured in alternation",
            ],
            latency,
            |r| Some(path(r, bench::proxies::ROUTER_PATH)?.p50_ratio_to_direct),
            |v| v <= 1.05,
            true,
            Over::All,
        ),
        target(
            [
                "gateway in front of a Python server",
                "≤ 1.05 × direct unary p50",
                "p50 of Rust tonic → gateway → Python grpcio server / Rust tonic → the same Python server, measured in alternation",
            ],
            latency,
            |r| Some(p50(r, Row::RustToPythonViaGateway)? / p50(r, Row::RustToPython)?),
            |v| v <= 1.05,
            true,
            Over::All,
        ),
        target(
            [
                "router as a proxy against HAProxy, throughput",
                "≥ 1 × HAProxy's requests/s",
                "h2load -c 10 -m 10 and -c 100 -m 10 to the same backend: router-as-proxy requests/s / HAProxy's, the lower of the two",
            ],
            latency,
            |r| against_haproxy(r, |load| Some(load.requests_per_s)).map(|(lo, _)| lo),
            |v| v >= 1.0,
            false,
            Over::All,
        ),
        target(
            [
                "router as a proxy against HAProxy, CPU",
                "≤ 1 × HAProxy's CPU per request",
                "CPU time of the hop's processes per request under h2load: router-as-proxy / HAProxy, the higher of the two loads",
            ],
            latency,
            |r| against_haproxy(r, |load| load.hop_cpu_s_per_10k).map(|(_, hi)| hi),
            |v| v <= 1.0,
            true,
            Over::All,
        ),
    ]
}

/// One path of the `proxies` row, if it ran.
fn path<'r>(report: &'r BenchReport, name: &str) -> Option<&'r bench::PathFigures> {
    report
        .proxies
        .as_ref()?
        .paths
        .iter()
        .find(|p| p.path == name)
}

/// Router-as-proxy over HAProxy of `figure` at each h2load load: the lowest and the highest
/// ratio (`None` unless both paths ran and measured it at every load).
fn against_haproxy(
    report: &BenchReport,
    figure: impl Fn(&bench::LoadFigures) -> Option<f64>,
) -> Option<(f64, f64)> {
    let router = path(report, bench::proxies::ROUTER_PATH)?;
    let haproxy = path(report, proxy::ProxyKind::Haproxy.name())?;
    let ratios: Option<Vec<f64>> = router
        .loads
        .iter()
        .zip(&haproxy.loads)
        .map(|(r, h)| Some(figure(r)? / figure(h)?))
        .collect();
    let ratios = ratios.filter(|r| !r.is_empty())?;
    Some((
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ))
}

/// The summary table for the terminal.
pub fn render_targets(targets: &[Target]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["target", "goal", "measured", "verdict"]);
    for t in targets {
        let measured: Vec<String> = t
            .measured
            .iter()
            .map(|m| format!("{} ({})", value_text(t, m.value), m.placement))
            .collect();
        table.add_row([
            t.name.to_string(),
            t.goal.to_string(),
            if measured.is_empty() {
                "–".to_string()
            } else {
                measured.join("\n")
            },
            t.verdict.clone(),
        ]);
    }
    format!("{table}\n")
}

/// A target's value as the report writes it: a share as a percentage, a ratio with three
/// decimals.
pub fn value_text(target: &Target, value: f64) -> String {
    if target.goal.contains('%') {
        format!("{:.1} %", value * 100.0)
    } else {
        format!("{value:.3} ×")
    }
}

/// The run and the machine it was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// `git rev-parse HEAD` of the clone, or "unknown".
    pub commit: String,
    /// When the report was made, UTC (ISO 8601).
    pub date: String,
    /// CPU model from /proc/cpuinfo, or "unknown".
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cores: usize,
    /// Kernel release (/proc/sys/kernel/osrelease), or "unknown".
    pub kernel: String,
    /// "quick" or "full".
    pub mode: &'static str,
    /// Measured calls per latency row.
    pub requests: u64,
    /// Rounds of each latency run.
    pub rounds: usize,
    /// Each rollout phase, s.
    pub rollout_phase_seconds: f64,
    /// Requests per second per client of the open-loop rollout.
    pub open_loop_rate_per_client: f64,
    /// Runtime flavours of the latency runs, in order.
    pub runtime_flavours: Vec<String>,
    /// The latency runs' placements, in order.
    pub placements: Vec<String>,
    /// Guest halt polling set for a run, ns (`None`: the machine's setting was left alone).
    pub halt_polling_changed_ns: Option<u64>,
}

impl Metadata {
    /// Reads the machine and the clone.
    pub fn gather(options: &ReportOptions, latency: &[Placement]) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Self {
            commit: commit(),
            date: utc_now(),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            mode: if options.full { "full" } else { "quick" },
            requests: options.requests,
            rounds: latency.first().map_or(0, |p| p.report.repeat),
            rollout_phase_seconds: options.rollout_phase.as_secs_f64(),
            open_loop_rate_per_client: super::OPEN_LOOP_RATE,
            runtime_flavours: latency
                .iter()
                .map(|p| p.report.runtime.name().to_string())
                .collect(),
            placements: latency.iter().map(|p| p.name.clone()).collect(),
            halt_polling_changed_ns: latency.iter().find_map(|p| p.report.halt_poll_ns),
        }
    }

    /// The metadata for the terminal, one fact a line.
    pub fn render(&self) -> String {
        let halt = self.halt_polling_changed_ns.map_or_else(
            || "not changed".to_string(),
            |ns| format!("set to {ns} ns for one run, then put back"),
        );
        [
            ("commit", self.commit.clone()),
            ("date", self.date.clone()),
            ("CPU", self.cpu_model.clone()),
            ("cores", self.cores.to_string()),
            ("kernel", self.kernel.clone()),
            (
                "latency runs",
                format!(
                    "{} ({} round(s), {} calls per row)",
                    self.mode, self.rounds, self.requests
                ),
            ),
            ("runtime flavours", self.runtime_flavours.join(", ")),
            ("placements", self.placements.join("; ")),
            ("guest halt polling", halt),
        ]
        .iter()
        .map(|(key, value)| format!("- {key}: {value}\n"))
        .collect()
    }
}

/// The clone's commit, or "unknown" (no git, or not a clone).
fn commit() -> String {
    let run = |dir: &str| {
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(dir)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    run(".")
        .or_else(|| run(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil(secs)
}

/// Seconds since the Unix epoch as an ISO 8601 UTC date and time (Howard Hinnant's
/// days-to-civil).
fn civil(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_utc() {
        assert_eq!(civil(0), "1970-01-01T00:00:00Z");
        assert_eq!(civil(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(civil(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
