//! The report's summary: each of the testbed's targets, measured where it is defined against
//! the anchor it names in the same run, with its value and whether it was met; and the run's
//! metadata (commit, date, machine, placements).

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

/// One of the testbed's targets, the one list the report and docs/results.md judge.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Short name.
    pub name: &'static str,
    /// The target in words, e.g. "≤ 1.03 × direct unary p50".
    pub goal: &'static str,
    /// How the value is computed.
    pub measure: &'static str,
    /// What the value is measured against, in the same run and placement.
    pub anchor: &'static str,
    /// The placements where the target is defined.
    pub defined_in: &'static str,
    /// The value in each placement where it is defined and both sides ran.
    pub measured: Vec<Measured>,
    /// The value the verdict rests on: the worst placement's (`None`: not measured).
    pub headline: Option<f64>,
    /// Whether the target is met (`None`: not measured).
    pub met: Option<bool>,
    /// "met", "not met", "met in 1 of 4 placements" or "not measured …" with where it is
    /// defined.
    pub verdict: String,
}

fn p50(report: &BenchReport, row: Row) -> Option<f64> {
    report
        .rows
        .iter()
        .find(|r| r.row == row)
        .and_then(|r| r.p50_us)
}

/// Where a target is defined.
#[derive(Clone, Copy)]
enum Defined {
    /// In every placement: a ratio of two rows measured in alternation, each seeing what the
    /// other sees.
    Everywhere,
    /// Only with client and servers on vCPUs of their own and idle vCPUs polling before they
    /// halt: elsewhere a vCPU's wake-up (or a shared vCPU) dominates the round trip being
    /// compared (docs/results.md, "Where the unary time goes").
    ApartHaltPolling,
}

impl Defined {
    fn words(self) -> &'static str {
        match self {
            Defined::Everywhere => "every placement",
            Defined::ApartHaltPolling => "client and servers apart, with halt polling",
        }
    }

    fn holds(self, report: &BenchReport) -> bool {
        match self {
            Defined::Everywhere => true,
            Defined::ApartHaltPolling => {
                report.server_cpus.is_some() && report.halt_poll_ns.is_some()
            }
        }
    }
}

/// A target's words: name, goal, how it is measured, its anchor.
struct Words {
    name: &'static str,
    goal: &'static str,
    measure: &'static str,
    anchor: &'static str,
}

fn target(
    words: Words,
    defined: Defined,
    latency: &[Placement],
    value: impl Fn(&BenchReport) -> Option<f64>,
    meets: impl Fn(f64) -> bool,
    lower_is_better: bool,
) -> Target {
    let measured: Vec<Measured> = latency
        .iter()
        .filter(|p| defined.holds(&p.report))
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
    let worse = |a: f64, b: f64| if lower_is_better { a.max(b) } else { a.min(b) };
    let headline = measured.iter().map(|m| m.value).reduce(worse);
    let met_count = measured.iter().filter(|m| m.met).count();
    let (met, verdict) = if measured.is_empty() {
        let verdict = match defined {
            Defined::Everywhere => "not measured".to_string(),
            Defined::ApartHaltPolling if !latency.iter().any(|p| defined.holds(&p.report)) => {
                format!(
                    "not measured: defined {} (`testbed report --full`, as root, where guest halt polling can be set)",
                    defined.words()
                )
            }
            Defined::ApartHaltPolling => "not measured".to_string(),
        };
        (None, verdict)
    } else {
        let met = met_count == measured.len();
        let verdict = match (met, measured.len()) {
            (true, _) => "met".to_string(),
            (false, n) if n > 1 && met_count > 0 => {
                format!("met in {met_count} of {n} placements")
            }
            (false, _) => "not met".to_string(),
        };
        (Some(met), verdict)
    };
    Target {
        name: words.name,
        goal: words.goal,
        measure: words.measure,
        anchor: words.anchor,
        defined_in: defined.words(),
        measured,
        headline,
        met,
        verdict,
    }
}

/// The targets, from the latency runs.
pub fn targets(latency: &[Placement]) -> Vec<Target> {
    let unary = [
        Row::UnaryV1,
        Row::UnaryUnbuffered,
        Row::UnaryH2,
        Row::UnaryV2,
        Row::UnaryRouter,
    ];
    let haproxy = proxy::ProxyKind::Haproxy.name();
    let gateway = bench::proxies::ROUTER_PATH;
    vec![
        target(
            Words {
                name: "router overhead",
                goal: "≤ 1.03 × direct unary p50",
                measure: "p50 of gRPC unary v2 via the in-process router / v2 direct, measured in alternation",
                anchor: "the same server without the router",
            },
            Defined::Everywhere,
            latency,
            |r| Some(p50(r, Row::UnaryRouter)? / p50(r, Row::UnaryV2)?),
            |v| v <= 1.03,
            true,
        ),
        target(
            Words {
                name: "best unary against the floor",
                goal: "≤ 3 × raw TCP p50",
                measure: "lowest p50 of the gRPC unary rows against the testbed's server / raw TCP p50",
                anchor: "raw TCP ping-pong between the same vCPUs",
            },
            Defined::ApartHaltPolling,
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
        ),
        target(
            Words {
                name: "Rust server against Python",
                goal: "Rust server ≥ 4 × faster than the Python grpcio server",
                measure: "p50 of Rust tonic → Python server / Rust tonic → Rust server (unary v1, direct)",
                anchor: "the Python grpcio server, same client",
            },
            Defined::ApartHaltPolling,
            latency,
            |r| Some(p50(r, Row::RustToPython)? / p50(r, Row::UnaryV1)?),
            |v| v >= 4.0,
            false,
        ),
        target(
            Words {
                name: "h2load through the router",
                goal: "≥ 90 % of direct requests/s",
                measure: "h2load -c 10 -m 10: router requests/s / direct requests/s",
                anchor: "h2load to the same server directly",
            },
            Defined::Everywhere,
            latency,
            |r| r.h2load_router_share,
            |v| v >= 0.9,
            false,
        ),
        target(
            Words {
                name: "gateway hop against HAProxy, latency",
                goal: "≤ 1 × HAProxy's added p50",
                measure: "µs a unary call through `serve --upstream` adds to the direct p50 / µs HAProxy adds, the same backend, measured in alternation",
                anchor: "HAProxy in front of the same backend",
            },
            Defined::Everywhere,
            latency,
            |r| added_against(r, gateway, haproxy),
            |v| v <= 1.0,
            true,
        ),
        target(
            Words {
                name: "gateway in front of a Python server",
                goal: "≤ 1 × HAProxy's added p50",
                measure: "µs the gateway adds in front of the Python grpcio server (Rust tonic → gateway → Python, less Rust tonic → Python) / µs HAProxy adds in front of the Rust backend",
                anchor: "HAProxy's hop, same run",
            },
            Defined::Everywhere,
            latency,
            |r| {
                let added = p50(r, Row::RustToPythonViaGateway)? - p50(r, Row::RustToPython)?;
                let anchor = path(r, haproxy)?.added_p50_us;
                (anchor > 0.0).then_some(added / anchor)
            },
            |v| v <= 1.0,
            true,
        ),
        target(
            Words {
                name: "gateway hop against HAProxy, throughput",
                goal: "≥ 1 × HAProxy's requests/s",
                measure: "h2load -c 100 -m 10 to the same backend: `serve --upstream` requests/s / HAProxy's",
                anchor: "HAProxy in front of the same backend",
            },
            Defined::Everywhere,
            latency,
            |r| {
                let at = |name: &str| {
                    path(r, name)?
                        .loads
                        .iter()
                        .find(|load| (load.connections, load.streams) == (100, 10))
                        .map(|load| load.requests_per_s)
                };
                Some(at(gateway)? / at(haproxy)?)
            },
            |v| v >= 1.0,
            false,
        ),
        target(
            Words {
                name: "gateway hop against HAProxy, CPU",
                goal: "≤ 1.3 × HAProxy's CPU per request",
                measure: "CPU time of the hop's processes per request under h2load: `serve --upstream` / HAProxy, the higher of the two loads",
                anchor: "HAProxy in front of the same backend",
            },
            Defined::Everywhere,
            latency,
            |r| against_haproxy(r, |load| load.hop_cpu_s_per_10k).map(|(_, hi)| hi),
            |v| v <= 1.3,
            true,
        ),
    ]
}

/// What path `name` adds to the direct p50 over what path `anchor` adds (`None` unless both
/// ran and the anchor adds something: an anchor within noise of zero judges nothing).
fn added_against(report: &BenchReport, name: &str, anchor: &str) -> Option<f64> {
    let anchor = path(report, anchor)?.added_p50_us;
    (anchor > 0.0).then_some(path(report, name)?.added_p50_us / anchor)
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
        .map(|r| {
            let h = haproxy
                .loads
                .iter()
                .find(|h| (h.connections, h.streams) == (r.connections, r.streams))?;
            Some(figure(r)? / figure(h)?)
        })
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
    table.set_header(["target", "goal (against)", "measured", "verdict"]);
    for t in targets {
        let measured: Vec<String> = t
            .measured
            .iter()
            .map(|m| format!("{} ({})", value_text(t, m.value), m.placement))
            .collect();
        table.add_row([
            t.name.to_string(),
            format!("{}\n({})", t.goal, t.anchor),
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
