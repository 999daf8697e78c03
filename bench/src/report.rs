//! The latency run's report: each row's figures, medians over the repeats, ratios to the raw
//! TCP floor, to gRPC unary and (for the TLS rows) to the same row over plaintext, and where the
//! report is written (JSON). The terminal table, the SVG figures and the percentile ladder are
//! in the submodules.

mod axis;
#[cfg(test)]
mod fixtures;
pub(crate) mod percentile_plot;
pub(crate) mod percentiles;
mod plot;
mod table;

use super::chains::{self, Chain};
use super::h2load::H2loadResult;
use super::handshake::HandshakeResult;
use super::proxies::ProxiesResult;
use super::{BenchOptions, CpuList, Flavor, Row};
use anyhow::Context;
use percentiles::{Percentile, median_percentiles, percentiles};
use plot::check_svg_path;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// One row's figures (per-call latencies in µs).
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// Which row.
    pub row: Row,
    /// Its label.
    pub label: &'static str,
    /// Calls measured, over all chains.
    pub calls: u64,
    /// The value the (first) chain ended at: it must equal the calls per chain.
    pub final_value: i64,
    /// Wall time of the measured calls (all chains at once; no warm-up call), ms.
    pub total_ms: f64,
    /// Each chain's time per call (its measured calls' time over their count), over all chains,
    /// µs (for the in-process rows, the honest per-call cost: there the timer itself dominates
    /// the percentiles). For one sequential chain, 10⁶ / `calls_per_s`.
    pub mean_us: f64,
    /// Median call, µs (absent for the pipelined row: its calls do not wait for each other).
    pub p50_us: Option<f64>,
    /// 90th percentile, µs.
    pub p90_us: Option<f64>,
    /// 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Slowest call, µs.
    pub max_us: Option<f64>,
    /// The latency distribution at each of [`PERCENTILES`] (the 50th is `p50_us`, the 100th
    /// `max_us`); empty for the pipelined row, like its percentiles.
    pub percentiles: Vec<Percentile>,
    /// Calls per second over all chains: `calls` over the wall time of the measured calls
    /// (`total_ms`); warm-up calls count in neither.
    pub calls_per_s: f64,
    /// p50 (or mean) divided by the raw TCP row's p50.
    pub ratio_to_tcp: Option<f64>,
    /// p50 (or mean) divided by the gRPC unary v1 row's p50.
    pub ratio_to_unary: Option<f64>,
    /// For a TLS row, its p50 divided by the p50 of the same client over plaintext
    /// ([`Row::plaintext_partner`], measured in alternation with it); `None` for other rows.
    pub ratio_to_plaintext: Option<f64>,
}

impl RowResult {
    /// One row's figures from its chains, run at once: calls per second over all of them
    /// against the wall time of their measured calls ([`chains::measured_wall`]; warm-up calls
    /// never count), so that for one sequential chain calls/s × mean µs = 10⁶.
    pub(super) fn from_chains(row: Row, chains: &[Chain]) -> anyhow::Result<Self> {
        let first = chains.first().context("a row ran no chain")?;
        let mut histogram = first.histogram.clone();
        for chain in &chains[1..] {
            histogram
                .add(&chain.histogram)
                .context("merging histograms")?;
        }
        let calls = histogram.len();
        let wall = chains::measured_wall(chains);
        // Each chain's own time per call, over all chains.
        let chain_time: Duration = chains.iter().map(|chain| chain.total).sum();
        let percentiles = percentiles(&histogram);
        let at = |p: f64| {
            percentiles
                .iter()
                .find(|point| point.percentile == p)
                .map(|point| point.us)
        };
        Ok(Self {
            row,
            label: row.label(),
            calls,
            final_value: first.final_value,
            total_ms: wall.as_secs_f64() * 1e3,
            mean_us: chain_time.as_secs_f64() * 1e6 / calls.max(1) as f64,
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            max_us: at(100.0),
            percentiles,
            calls_per_s: calls as f64 / wall.as_secs_f64(),
            ratio_to_tcp: None,
            ratio_to_unary: None,
            ratio_to_plaintext: None,
        })
    }

    pub(super) fn throughput_only(row: Row, calls: u64, total: Duration) -> Self {
        Self {
            row,
            label: row.label(),
            calls,
            final_value: calls as i64,
            total_ms: total.as_secs_f64() * 1e3,
            mean_us: total.as_secs_f64() * 1e6 / calls.max(1) as f64,
            p50_us: None,
            p90_us: None,
            p99_us: None,
            max_us: None,
            percentiles: Vec::new(),
            calls_per_s: calls as f64 / total.as_secs_f64(),
            ratio_to_tcp: None,
            ratio_to_unary: None,
            ratio_to_plaintext: None,
        }
    }

    /// The figure ratios compare: the median call, or the mean where there is no median.
    pub fn typical_us(&self) -> f64 {
        self.p50_us.unwrap_or(self.mean_us)
    }
}

/// The whole latency run, with the settings it ran with.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Measured calls per chain.
    pub requests: u64,
    /// Unmeasured calls per chain before the measured ones.
    pub warmup: u64,
    /// Rounds through the rows; figures are medians over them.
    pub repeat: usize,
    /// Chains at once on the Rust-client network rows.
    pub concurrency: usize,
    /// Runtime flavour of the Rust sides.
    pub runtime: Flavor,
    /// The CPUs client and servers were pinned to (`None`: wherever the scheduler put them).
    pub cpus: Option<CpuList>,
    /// The CPUs the servers were pinned to, when apart from the client.
    pub server_cpus: Option<CpuList>,
    /// Guest halt polling during the run, ns (`None`: the machine's own setting).
    pub halt_poll_ns: Option<u64>,
    /// The rows asked for with `--row`, in order (`None`: every row, the default).
    pub requested_rows: Option<Vec<Row>>,
    /// The rows that ran.
    pub rows: Vec<RowResult>,
    /// Rows skipped, with the reason and the fix.
    pub skipped: Vec<(Row, String)>,
    /// The h2load runs (medians of requests/s over the repeats).
    pub h2load: Vec<H2loadResult>,
    /// Router requests/s as a share of direct, at -c 10 -m 10.
    pub h2load_router_share: Option<f64>,
    /// Direct-over-TLS requests/s as a share of direct plaintext, at -c 10 -m 10.
    pub h2load_tls_share: Option<f64>,
    /// What a new connection costs, plaintext and TLS (medians over the repeats); `None` when
    /// the `handshake` row did not run.
    pub handshake: Option<HandshakeResult>,
    /// The same backend directly, through the router as a proxy and through each real proxy
    /// (medians over the repeats); `None` when the `proxies` row did not run.
    pub proxies: Option<ProxiesResult>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_opt(values: Vec<Option<f64>>) -> Option<f64> {
    values
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
        .map(median)
}

impl BenchReport {
    pub(super) fn from_runs(
        options: &BenchOptions,
        rows: &[Row],
        runs: Vec<(Row, Result<RowResult, String>)>,
        h2load_runs: Vec<Vec<H2loadResult>>,
        h2load_skipped: Option<String>,
    ) -> Self {
        let mut results = Vec::new();
        let mut skipped = Vec::new();
        for &row in rows.iter().filter(|r| !r.runs_apart()) {
            let ok: Vec<&RowResult> = runs
                .iter()
                .filter(|(r, _)| *r == row)
                .filter_map(|(_, result)| result.as_ref().ok())
                .collect();
            let Some(first) = ok.first() else {
                if let Some((_, Err(reason))) = runs.iter().find(|(r, _)| *r == row) {
                    skipped.push((row, reason.clone()));
                }
                continue;
            };
            let pick = |f: fn(&RowResult) -> f64| median(ok.iter().map(|r| f(r)).collect());
            let pick_opt =
                |f: fn(&RowResult) -> Option<f64>| median_opt(ok.iter().map(|r| f(r)).collect());
            let total_ms = pick(|r| r.total_ms);
            results.push(RowResult {
                total_ms,
                mean_us: pick(|r| r.mean_us),
                p50_us: pick_opt(|r| r.p50_us),
                p90_us: pick_opt(|r| r.p90_us),
                p99_us: pick_opt(|r| r.p99_us),
                max_us: pick_opt(|r| r.max_us),
                percentiles: median_percentiles(&ok),
                // From the median total, not a median of its own: the two figures printed side
                // by side must agree (medians of each may come from different rounds).
                calls_per_s: first.calls as f64 / (total_ms / 1e3),
                ..(*first).clone()
            });
        }
        let typical = |row: Row| {
            results
                .iter()
                .find(|r| r.row == row)
                .map(RowResult::typical_us)
        };
        let (tcp, unary) = (typical(Row::Tcp), typical(Row::UnaryV1));
        let plaintext: Vec<Option<f64>> = results
            .iter()
            .map(|r| r.row.plaintext_partner().and_then(typical))
            .collect();
        for (result, plaintext) in results.iter_mut().zip(plaintext) {
            result.ratio_to_tcp = tcp.map(|t| result.typical_us() / t);
            result.ratio_to_unary = unary.map(|u| result.typical_us() / u);
            result.ratio_to_plaintext = plaintext.map(|p| result.typical_us() / p);
        }
        if let Some(reason) = h2load_skipped {
            skipped.push((Row::H2load, reason));
        }
        let h2load = h2load_medians(h2load_runs);
        let rps = |target: &str| h2load_rps(&h2load, target, 10);
        let h2load_router_share = rps("router").zip(rps("direct")).map(|(r, d)| r / d);
        let h2load_tls_share = rps("direct-tls").zip(rps("direct")).map(|(t, d)| t / d);
        Self {
            requests: options.requests,
            warmup: options.warmup,
            repeat: options.repeat,
            concurrency: options.concurrency,
            runtime: options.flavor,
            cpus: options.cpus.clone(),
            server_cpus: options.server_cpus.clone(),
            halt_poll_ns: options.halt_poll_ns,
            requested_rows: (!options.rows.is_empty()).then(|| options.rows.clone()),
            rows: results,
            skipped,
            h2load,
            h2load_router_share,
            h2load_tls_share,
            handshake: None,
            proxies: None,
        }
    }

    /// This report with the through-each-proxy figures of each round (their medians).
    pub(super) fn with_proxies(self, rounds: Vec<ProxiesResult>) -> Self {
        Self {
            proxies: ProxiesResult::median(&rounds),
            ..self
        }
    }

    /// This report with the new-connection figures of each round (their medians).
    pub(super) fn with_handshake(self, rounds: Vec<HandshakeResult>) -> Self {
        Self {
            handshake: HandshakeResult::median(&rounds),
            ..self
        }
    }

    /// Checks, before a run, that its report can be written where the command line asks: each
    /// path can be opened for writing, and the plot's ends in `.svg` (the figure is SVG
    /// whatever the name). Run first, so that a bad path fails in a moment, not after the run.
    pub fn check_outputs(json: Option<&Path>, plot: Option<&Path>) -> anyhow::Result<()> {
        if let Some(plot) = plot {
            check_svg_path(plot)?;
        }
        if let (Some(json), Some(plot)) = (json, plot) {
            anyhow::ensure!(
                json != plot,
                "--json and --plot both name {}: give each its own file",
                json.display()
            );
        }
        for path in json.into_iter().chain(plot) {
            check_writable(path)?;
        }
        Ok(())
    }

    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Checks that `path` can be written, as a run's output will be later: opens it for writing
/// without changing it, or creates it and removes it again if it did not exist. The error names
/// the path and the system's reason.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let cannot = |err: std::io::Error| anyhow::anyhow!("cannot write {}: {err}", path.display());
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => {
            drop(file);
            std::fs::remove_file(path).map_err(cannot)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(cannot),
        Err(err) => Err(cannot(err)),
    }
}

/// Rows asked for by name (`--row`) that were skipped because a tool they need is missing: the
/// run fails, and this error carries the report of the rows that did run, for the caller to
/// show.
#[derive(Debug)]
pub struct RowsSkipped {
    /// The run's report; its `skipped` names each row and the fix.
    pub report: Box<BenchReport>,
}

impl std::fmt::Display for RowsSkipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rows asked for with --row did not run:")?;
        for (row, reason) in &self.report.skipped {
            write!(f, "\n  --row {} ({}): {reason}", row.flag(), row.label())?;
        }
        Ok(())
    }
}

impl std::error::Error for RowsSkipped {}

/// The requests/s of the h2load run against `target` with `connections` connections.
fn h2load_rps(runs: &[H2loadResult], target: &str, connections: u32) -> Option<f64> {
    runs.iter()
        .find(|r| r.target == target && r.connections == connections)
        .map(|r| r.requests_per_s)
}

fn h2load_medians(runs: Vec<Vec<H2loadResult>>) -> Vec<H2loadResult> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, template)| {
            let same: Vec<&H2loadResult> = runs.iter().filter_map(|run| run.get(i)).collect();
            H2loadResult {
                requests_per_s: median(same.iter().map(|r| r.requests_per_s).collect()),
                mean_request_us: median(same.iter().map(|r| r.mean_request_us).collect()),
                ..template.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::fixtures::{measured, options, report, scratch};
    use super::*;

    #[test]
    fn calls_per_s_over_rounds_agrees_with_the_total_printed_beside_it() {
        let rounds = [(Row::Tcp, 30.0), (Row::Tcp, 10.0)]
            .into_iter()
            .map(|(row, mean)| (row, Ok(measured(row, mean, mean))))
            .collect();
        let report = BenchReport::from_runs(
            &options(vec![Row::Tcp]),
            &[Row::Tcp],
            rounds,
            Vec::new(),
            None,
        );
        let tcp = &report.rows[0];
        let per_s = tcp.calls as f64 / (tcp.total_ms / 1e3);
        assert!((tcp.calls_per_s - per_s).abs() < 1e-6 * per_s, "{tcp:?}");
        assert!(
            (tcp.calls_per_s - 1e6 / tcp.mean_us).abs() < 1e-6 * per_s,
            "{tcp:?}"
        );
    }

    #[test]
    fn json_records_the_settings_of_the_run() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["requests"], 100);
        assert_eq!(json["warmup"], 7);
        assert_eq!(json["repeat"], 1);
        assert_eq!(json["concurrency"], 1);
        assert_eq!(json["runtime"], "current-thread");
        assert!(json["cpus"].is_null() && json["server_cpus"].is_null());
        assert!(json["halt_poll_ns"].is_null());
        assert_eq!(
            json["requested_rows"],
            serde_json::json!(["harness", "tcp", "stream-pipelined", "python-to-rust"])
        );
        let all = BenchReport::from_runs(&options(Vec::new()), &[], Vec::new(), Vec::new(), None);
        assert!(serde_json::to_value(all).unwrap()["requested_rows"].is_null());
    }

    #[test]
    fn outputs_that_cannot_be_written_are_found_before_the_run() {
        let dir = scratch("outputs");
        // A new file: fine, and not left behind.
        let json = dir.join("bench.json");
        BenchReport::check_outputs(Some(&json), Some(&dir.join("bench.svg"))).unwrap();
        assert!(!json.exists() && !dir.join("bench.svg").exists());
        // An existing file: fine, and left as it was.
        std::fs::write(&json, "kept").unwrap();
        BenchReport::check_outputs(Some(&json), None).unwrap();
        assert_eq!(std::fs::read_to_string(&json).unwrap(), "kept");
        // A folder that is not there, and a folder: the path and the system's reason.
        let nowhere = dir.join("no-such-folder").join("bench.json");
        let err = BenchReport::check_outputs(Some(&nowhere), None).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&nowhere.display().to_string()),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
        let err = check_writable(&dir).unwrap_err().to_string();
        assert!(err.contains("Is a directory"), "{err}");
        // The same file twice.
        let same = dir.join("both.svg");
        assert!(BenchReport::check_outputs(Some(&same), Some(&same)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
