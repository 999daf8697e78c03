//! Turns the measured chains into the latency table: medians over the repeats, ratios to the raw
//! TCP floor, to gRPC unary and (for the TLS rows) to the same row over plaintext, as a terminal
//! table, JSON, or an SVG figure.

use super::chains::{self, Chain};
use super::h2load::H2loadResult;
use super::handshake::HandshakeResult;
use super::proxies::ProxiesResult;
use super::{BenchOptions, CpuList, Flavor, Row};
use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
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

/// The percentiles each row records, in %: from the fastest call (0) through a ladder that
/// closes in on the tail in steps of 1, 2 and 5 in the share of calls slower (50 %, 25 %,
/// 20 %, 10 %, 5 %, 2 %, 1 %, 0.5 % ... 0.01 %), to the slowest call (100).
pub const PERCENTILES: [f64; 16] = [
    0.0, 25.0, 50.0, 75.0, 80.0, 90.0, 95.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99,
    100.0,
];

/// One point of a row's latency distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentile {
    /// The percentile, in % (100: the slowest call).
    pub percentile: f64,
    /// The per-call latency at it, µs.
    pub us: f64,
}

/// The latency at each of [`PERCENTILES`] of `histogram` (per-call nanoseconds), in µs: the
/// histogram's value at each quantile (so within its three significant digits of the exact
/// order statistic), and its maximum for 100.
pub fn percentiles(histogram: &hdrhistogram::Histogram<u64>) -> Vec<Percentile> {
    PERCENTILES
        .iter()
        .map(|&percentile| {
            let ns = if percentile >= 100.0 {
                histogram.max()
            } else {
                histogram.value_at_quantile(percentile / 100.0)
            };
            Percentile {
                percentile,
                us: ns as f64 / 1e3,
            }
        })
        .collect()
}

/// Rounds' percentiles, point by point, as the median of the rounds' values at each (as the
/// other figures are): each round's ladder rises, so the medians rise too. Empty when any round
/// has none.
fn median_percentiles(rounds: &[&RowResult]) -> Vec<Percentile> {
    if rounds
        .iter()
        .any(|r| r.percentiles.len() != PERCENTILES.len())
    {
        return Vec::new();
    }
    PERCENTILES
        .iter()
        .enumerate()
        .map(|(i, &percentile)| Percentile {
            percentile,
            us: median(rounds.iter().map(|r| r.percentiles[i].us).collect()),
        })
        .collect()
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

    /// The report as plain-text tables: no colour or terminal styling, whether stdout is a
    /// terminal or not. A figure nothing measured (the percentiles of the throughput-only row, a
    /// ratio to a row that did not run, every figure of a skipped row) is `–`, never `0.0`.
    pub fn render(&self) -> String {
        let mut table = plain_table();
        table.set_header([
            "row",
            "total ms",
            "mean µs",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "calls/s",
            "× TCP p50",
            "× unary p50",
        ]);
        for r in &self.rows {
            table.add_row([
                r.label.to_string(),
                figure(Some(r.total_ms), 1),
                figure(Some(r.mean_us), 3),
                figure(r.p50_us, 1),
                figure(r.p90_us, 1),
                figure(r.p99_us, 1),
                figure(r.max_us, 1),
                figure(Some(r.calls_per_s), 0),
                figure(r.ratio_to_tcp, 2),
                figure(r.ratio_to_unary, 2),
            ]);
        }
        for (row, _) in self.skipped.iter().filter(|(row, _)| !row.runs_apart()) {
            let mut cells = vec![format!("{} (skipped)", row.label())];
            cells.extend(std::iter::repeat_n(NOTHING.to_string(), 9));
            table.add_row(cells);
        }
        // Only rows measured apart (h2load, new connections, proxies) ran: no empty table.
        let table = if self.rows.is_empty() && self.skipped.is_empty() {
            String::new()
        } else {
            format!("{table}\n")
        };
        let mut out = format!(
            "{} sequential dependent increments per chain after {} unmeasured, {} chain(s) at once, runtime {}, {}{}, median of {} round(s)\n{table}",
            self.requests,
            self.warmup,
            self.concurrency,
            self.runtime.name(),
            self.placement(),
            self.halt_poll_ns.map_or(String::new(), |ns| format!(
                ", guest halt polling {} µs",
                ns as f64 / 1e3
            )),
            self.repeat
        );
        if !self.h2load.is_empty() {
            let mut h2 = plain_table();
            h2.set_header([
                "h2load → Rust server",
                "-c",
                "-m",
                "req/s",
                "mean µs/request",
            ]);
            for r in &self.h2load {
                h2.add_row([
                    r.target.to_string(),
                    r.connections.to_string(),
                    r.streams.to_string(),
                    format!("{:.0}", r.requests_per_s),
                    format!("{:.1}", r.mean_request_us),
                ]);
            }
            out.push_str(&format!("{h2}\n"));
            if let Some(share) = self.h2load_router_share {
                out.push_str(&format!(
                    "h2load -c 10 -m 10: router reaches {:.1} % of direct requests/s\n",
                    share * 100.0
                ));
            }
            let tls_share = |c: u32| {
                let rps = |target| h2load_rps(&self.h2load, target, c);
                rps("direct-tls").zip(rps("direct")).map(|(t, d)| t / d)
            };
            if let Some((one, ten)) = tls_share(1).zip(tls_share(10)) {
                out.push_str(&format!(
                    "h2load over TLS: direct-tls reaches {:.1} % of direct plaintext requests/s at -c 10 -m 10, {:.1} % at -c 1 -m 1\n",
                    ten * 100.0,
                    one * 100.0
                ));
            }
        }
        if let Some(h) = &self.handshake {
            let mut table = plain_table();
            table.set_header([
                format!("new connection + first call ({} each)", h.connections),
                "p50 µs".to_string(),
                "p90 µs".to_string(),
                "mean µs".to_string(),
                "max µs".to_string(),
            ]);
            for (name, f) in [
                ("plaintext (h2c)", &h.plaintext),
                ("TLS (rustls, h2)", &h.tls),
            ] {
                table.add_row([
                    name.to_string(),
                    figure(Some(f.p50_us), 1),
                    figure(Some(f.p90_us), 1),
                    figure(Some(f.mean_us), 1),
                    figure(Some(f.max_us), 1),
                ]);
            }
            out.push_str(&format!(
                "{table}\nnew connection + first call, TLS / plaintext, measured in alternation: p50 {:.2}, p90 {:.2}\n",
                h.p50_ratio, h.p90_ratio
            ));
        }
        if let Some(proxies) = &self.proxies {
            out.push_str(&proxies.render());
        }
        let ratio = |a: Row, b: Row| {
            let p50 = |row| {
                self.rows
                    .iter()
                    .find(|r| r.row == row)
                    .map(RowResult::typical_us)
            };
            p50(a).zip(p50(b)).map(|(a, b)| a / b)
        };
        if let Some((stock, best)) =
            ratio(Row::UnaryV1, Row::Tcp).zip(ratio(Row::UnaryH2, Row::Tcp))
        {
            out.push_str(&format!(
                "gRPC unary p50 / raw TCP p50: {stock:.2} stock tonic client, {best:.2} one-write h2 client\n"
            ));
        }
        if let Some(r) = ratio(Row::UnaryH2, Row::UnaryH2StockServer) {
            out.push_str(&format!(
                "testbed port (guard, reflection, health) / stock tonic server, h2 client p50, measured in alternation: {r:.3}\n"
            ));
        }
        if let Some(r) = ratio(Row::UnaryRouter, Row::UnaryV2) {
            out.push_str(&format!(
                "router p50 / direct v2 unary p50, measured in alternation: {r:.3}\n"
            ));
        }
        for r in &self.rows {
            if let (Some(plaintext), Some(p50)) = (r.row.plaintext_partner(), r.ratio_to_plaintext)
            {
                let percentile = |row: Row, f: fn(&RowResult) -> Option<f64>| {
                    self.rows.iter().find(|r| r.row == row).and_then(f)
                };
                let p99 = percentile(r.row, |r| r.p99_us)
                    .zip(percentile(plaintext, |r| r.p99_us))
                    .map(|(tls, plain)| tls / plain);
                out.push_str(&format!(
                    "{} / plaintext, measured in alternation: p50 {p50:.3}, p99 {}\n",
                    r.label,
                    figure(p99, 3)
                ));
            }
        }
        if let Some(r) = ratio(Row::RustToPython, Row::UnaryV1) {
            out.push_str(&format!(
                "Rust client: Python server p50 / Rust server p50: {r:.2}\n"
            ));
        }
        if let Some(r) = ratio(Row::RustToPythonViaGateway, Row::RustToPython) {
            out.push_str(&format!(
                "gateway (serve --upstream) in front of the Python server / the Python server direct, p50, measured in alternation: {r:.3}\n"
            ));
        }
        for (row, reason) in &self.skipped {
            out.push_str(&format!("skipped {}: {reason}\n", row.label()));
        }
        out
    }

    /// Where client and servers ran, in words.
    fn placement(&self) -> String {
        match (&self.cpus, &self.server_cpus) {
            (None, None) => "unpinned".to_string(),
            (Some(cpus), None) => format!("all processes pinned to CPU {cpus}"),
            (client, Some(servers)) => format!(
                "client on CPU {}, servers on CPU {servers}",
                client
                    .as_ref()
                    .map_or("any".to_string(), ToString::to_string)
            ),
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

    /// Draws the per-call latency of each row to an SVG at `path` (which must end in `.svg`):
    /// see [`BenchReport::plot_svg`].
    pub fn plot(&self, path: &Path) -> anyhow::Result<()> {
        check_svg_path(path)?;
        let svg = self.plot_svg()?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The per-call latency of each row (but the harness) as an SVG figure: one horizontal bar
    /// per row at its median call, with a whisker from p90 to p99, on a log axis of µs with
    /// ticks at 1, 2, 5, 10, 20, 50 ...; beside each bar its median and its ratio to the raw TCP
    /// floor. The throughput-only row has no percentiles: its bar is its mean, without whisker.
    /// Below it, the percentile plot of the main rows that ran ([`percentile_svg`]'s chart).
    pub fn plot_svg(&self) -> anyhow::Result<String> {
        use plotters::coord::combinators::BindKeyPoints;
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};

        let rows: Vec<&RowResult> = self.rows.iter().filter(|r| r.row != Row::Harness).collect();
        anyhow::ensure!(!rows.is_empty(), "no row to plot");
        let n = rows.len();
        let (width, height) = (1200u32, 110 + 30 * n as u32);
        // The chart's layout (and so the width of its plotting area, roughly).
        let (margin, label_area, x_label_area) = (14u32, 290u32, 50u32);
        let plot_width = f64::from(width - 2 * margin - label_area);
        // How far right each row's marks reach, and how much room its text needs after them.
        let reach = |r: &RowResult| r.p99_us.unwrap_or(0.0).max(r.typical_us());
        let text_px = 170.0;
        // A log axis has no zero: the smallest figure above it sets the axis's start.
        let smallest = rows
            .iter()
            .map(|r| r.typical_us())
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let largest = rows.iter().map(|r| reach(r)).fold(0.0, f64::max);
        anyhow::ensure!(
            smallest.is_finite() && smallest > 0.0 && largest.is_finite(),
            "nothing measured to plot"
        );
        let lo = tick_at_or_below(smallest / 1.5);
        // Far enough right that the text after the longest marks fits inside the plot.
        let decades = (largest.log10() - lo.log10()) / (1.0 - text_px / plot_width);
        let hi = 10f64.powf(lo.log10() + decades);
        // Ticks (and grid lines) up to the data; the room after it is for the text.
        let ticks = log_ticks(lo, tick_at_or_above(largest).min(hi));
        // Label 2 and 5 too where a decade is wide enough for their labels not to run into
        // each other; otherwise the powers of ten alone.
        let every_tick = plot_width / decades >= 110.0;
        let x_label = |v: &f64| {
            let label = tick_label(*v);
            if every_tick || label.trim_start_matches(['0', '.']).starts_with('1') {
                label
            } else {
                String::new()
            }
        };
        // Each row a band of BAND units on the y axis, the first at the top; its bar and
        // whisker and its label sit at the band's centre.
        const BAND: i32 = 10;
        let n_bands = i32::try_from(n).context("too many rows to plot")?;
        let center = |i: usize| (n_bands - i as i32) * BAND - BAND / 2;
        let centers: Vec<i32> = (0..n).map(center).collect();
        let row_at = |y: i32| {
            let i = (n_bands * BAND - BAND / 2 - y) / BAND;
            usize::try_from(i).ok().and_then(|i| rows.get(i))
        };

        let lines = self.percentile_lines();
        let below = if lines.is_empty() { 0 } else { 440 };
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (width, height + below)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let (bars, percentiles) = root.split_vertically(height);
            let mut chart = ChartBuilder::on(&bars)
                .caption(
                    format!(
                        "per-call latency: bar p50, whisker p90–p99; {} dependent calls, runtime {}, {}",
                        self.requests,
                        self.runtime.name(),
                        self.placement()
                    ),
                    ("sans-serif", 17),
                )
                .margin(margin)
                .x_label_area_size(x_label_area)
                .y_label_area_size(label_area)
                .build_cartesian_2d(
                    (lo..hi).log_scale().with_key_points(ticks),
                    (0..n_bands * BAND).with_key_points(centers),
                )
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc("µs per call (log scale)")
                .x_label_formatter(&x_label)
                .y_label_formatter(&|y| row_at(*y).map_or(String::new(), |r| r.label.to_string()))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(plot_error)?;
            let bar = RGBColor(70, 120, 190).filled();
            let half = 3;
            chart
                .draw_series(rows.iter().enumerate().map(|(i, r)| {
                    let c = center(i);
                    Rectangle::new([(lo, c - half), (r.typical_us().max(lo), c + half)], bar)
                }))
                .map_err(plot_error)?;
            let whisker = BLACK.stroke_width(2);
            let cap = 2;
            for (i, r) in rows.iter().enumerate() {
                let c = center(i);
                let Some((p90, p99)) = r.p90_us.zip(r.p99_us) else {
                    continue;
                };
                let (p90, p99) = (p90.max(lo), p99.max(lo));
                if p99 <= lo {
                    continue;
                }
                let lines = [
                    vec![(p90, c), (p99, c)],
                    vec![(p90, c - cap), (p90, c + cap)],
                    vec![(p99, c - cap), (p99, c + cap)],
                ];
                chart
                    .draw_series(lines.into_iter().map(|l| PathElement::new(l, whisker)))
                    .map_err(plot_error)?;
            }
            let text = ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(rows.iter().enumerate().map(|(i, r)| {
                    Text::new(
                        bar_note(r),
                        (reach(r).max(lo) * 1.12, center(i)),
                        text.clone(),
                    )
                }))
                .map_err(plot_error)?;
            if !lines.is_empty() {
                let caption = format!(
                    "per-call latency by percentile, main rows (the slowest call is in the table); runtime {}, {}",
                    self.runtime.name(),
                    self.placement()
                );
                draw_percentiles(&percentiles, &lines, &caption)?;
            }
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }

    /// The percentile plot's lines: the [`MAIN_ROWS`] that ran and recorded percentiles.
    pub fn percentile_lines(&self) -> Vec<PercentileLine> {
        MAIN_ROWS
            .iter()
            .filter_map(|row| self.rows.iter().find(|r| r.row == *row))
            .filter(|r| !r.percentiles.is_empty())
            .map(|r| PercentileLine {
                label: r.label.to_string(),
                points: r.percentiles.clone(),
            })
            .collect()
    }
}

/// The rows whose distributions the percentile plot draws, in its legend's order.
pub const MAIN_ROWS: [Row; 6] = [
    Row::Tcp,
    Row::Rest,
    Row::UnaryV1,
    Row::UnaryRouter,
    Row::PythonToRust,
    Row::RustToPython,
];

/// The colours of the percentile plot's lines, by line, as RGB.
pub const PERCENTILE_COLORS: [(u8, u8, u8); 6] = [
    (87, 96, 106),
    (130, 80, 223),
    (9, 105, 218),
    (26, 127, 55),
    (191, 87, 0),
    (207, 34, 46),
];

/// One line of the percentile plot: a row's label and its [`percentiles`].
#[derive(Debug, Clone)]
pub struct PercentileLine {
    /// The row's label, for the legend.
    pub label: String,
    /// Its points; the 100th (the slowest call) is not drawn: it has no place on the axis.
    pub points: Vec<Percentile>,
}

/// Where percentile `p` (%) sits on the plot's x axis: log10(1 / (1 − p)), so 90 % is 1, 99 % is
/// 2, 99.9 % is 3 (`None` for 100).
pub fn percentile_x(p: f64) -> Option<f64> {
    (p < 100.0).then(|| (100.0 / (100.0 - p)).log10())
}

/// The percentile plot alone as an SVG figure, `width` by `height`: see [`draw_percentiles`].
pub fn percentile_svg(
    lines: &[PercentileLine],
    caption: &str,
    (width, height): (u32, u32),
) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw_percentiles(&root, lines, caption)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Draws the percentile plot on `area`: one line per row, with a dot at each recorded
/// percentile (x: the percentile on the usual log10(1 / (1 − p)) scale, labelled 0 %, 50 %,
/// 75 %, 90 %, 99 %, 99.9 %, 99.99 %; y: µs per call on a log axis with ticks at 1, 2, 5 × 10ⁿ),
/// and a legend. The one chart function of both `bench --plot` and the HTML report.
fn draw_percentiles(
    area: &plotters::drawing::DrawingArea<
        plotters::backend::SVGBackend<'_>,
        plotters::coord::Shift,
    >,
    lines: &[PercentileLine],
    caption: &str,
) -> anyhow::Result<()> {
    use plotters::coord::combinators::BindKeyPoints;
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    // x in thousandths of the axis unit (an integer axis, so that its ticks can be chosen).
    let milli = |p: f64| percentile_x(p).map(|x| (x * 1000.0).round() as i32);
    let drawn = |line: &PercentileLine| -> Vec<(i32, f64)> {
        line.points
            .iter()
            .filter(|p| p.us > 0.0)
            .filter_map(|p| milli(p.percentile).map(|x| (x, p.us)))
            .collect()
    };
    let values: Vec<f64> = lines
        .iter()
        .flat_map(|line| drawn(line).into_iter().map(|(_, us)| us))
        .collect();
    let smallest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let largest = values.iter().copied().fold(0.0, f64::max);
    anyhow::ensure!(
        smallest.is_finite() && smallest > 0.0,
        "no percentiles to plot"
    );
    let (lo, hi) = (
        tick_at_or_below(smallest / 1.2),
        tick_at_or_above(largest * 1.2),
    );
    // Over more than four decades 2 and 5 would crowd the axis: powers of ten only.
    let y_ticks: Vec<f64> = log_ticks(lo, hi)
        .into_iter()
        .filter(|t| {
            hi / lo <= 1e4
                || tick_label(*t)
                    .trim_start_matches(['0', '.'])
                    .starts_with('1')
        })
        .collect();
    let x_end = milli(PERCENTILES[PERCENTILES.len() - 2]).unwrap_or(4000);
    let x_ticks: Vec<i32> = [0.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99]
        .into_iter()
        .filter_map(milli)
        .collect();
    let x_label = |x: &i32| {
        let p = 100.0 * (1.0 - 10f64.powf(-f64::from(*x) / 1000.0));
        let text = format!("{p:.2}");
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    };
    // The legend gets a column of its own on the right, so that it never hides a line.
    let area = area
        .titled(caption, ("sans-serif", 17))
        .map_err(plot_error)?;
    let (width, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(width.saturating_sub(270));
    let mut chart = ChartBuilder::on(&plot)
        .margin(14)
        // Room for the last label (99.99%), centred on the axis's end.
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..x_end).with_key_points(x_ticks),
            (lo..hi).log_scale().with_key_points(y_ticks),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1 / (1 − p))")
        .y_desc("µs per call (log scale)")
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| tick_label(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(plot_error)?;
    let legend_text = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, line) in lines.iter().enumerate() {
        let (r, g, b) = PERCENTILE_COLORS[i % PERCENTILE_COLORS.len()];
        let color = RGBColor(r, g, b);
        let points = drawn(line);
        chart
            .draw_series(std::iter::once(PathElement::new(
                points.clone(),
                color.stroke_width(2),
            )))
            .map_err(plot_error)?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(plot_error)?;
        let y = 24 + 22 * i as i32;
        legend
            .draw(&PathElement::new(
                vec![(4, y), (26, y)],
                color.stroke_width(3),
            ))
            .map_err(plot_error)?;
        legend
            .draw(&Text::new(line.label.clone(), (32, y), legend_text.clone()))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// What the plot writes beside a row's bar: the figure the bar shows, and its ratio to the raw
/// TCP floor.
fn bar_note(r: &RowResult) -> String {
    let value = match r.p50_us {
        Some(p50) => format!("{} µs", short(p50)),
        None => format!("{} µs mean", short(r.mean_us)),
    };
    match (r.row, r.ratio_to_tcp) {
        (Row::Tcp, _) => format!("{value} · TCP floor"),
        (_, Some(ratio)) => format!("{value} · {}× TCP", short(ratio)),
        (_, None) => value,
    }
}

/// `v` to three significant digits, no more decimals than that needs (240, 28.6, 0.042).
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return figure(Some(v), 0);
    }
    let digits = (2.0 - v.abs().log10().floor()).clamp(0.0, 9.0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The largest of 1, 2, 5 times a power of ten at or below `v`.
fn tick_at_or_below(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|t| *t <= v * (1.0 + 1e-9))
        .unwrap_or(decade)
}

/// The smallest of 1, 2, 5 times a power of ten at or above `v`.
fn tick_at_or_above(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|t| *t >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * decade)
}

/// The ticks of a log axis from `lo` to `hi`: 1, 2 and 5 times each power of ten.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut exponent = lo.log10().floor() as i32;
    while 10f64.powi(exponent) <= hi {
        for m in [1.0, 2.0, 5.0] {
            // 10^e as a literal, not repeated multiplication: 0.05, not 0.05000000000000001.
            let tick = format!("{m}e{exponent}").parse::<f64>().unwrap_or(f64::NAN);
            if tick >= lo * (1.0 - 1e-9) && tick <= hi {
                ticks.push(tick);
            }
        }
        exponent += 1;
    }
    ticks
}

/// A tick's label: 0.05, 1, 20, 5000.
fn tick_label(v: f64) -> String {
    let text = format!("{v:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// The plot is SVG: a path that names another format is refused rather than given SVG.
fn check_svg_path(path: &Path) -> anyhow::Result<()> {
    let svg = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("svg"));
    anyhow::ensure!(
        svg,
        "--plot writes SVG; give a path ending in .svg (not {})",
        path.display()
    );
    Ok(())
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

/// What the table shows where nothing was measured.
const NOTHING: &str = "–";

/// A table of plain text: box-drawing borders, but no colour or other terminal styling, and
/// laid out the same whether stdout is a terminal or not (comfy-table would ask it otherwise).
fn plain_table() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).force_no_tty();
    table
}

/// A figure to `digits` decimals, or as many more as it takes to show two significant digits
/// (a harness call of 0.03 µs is not `0.0`); `–` where nothing was measured.
fn figure(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let needed = if v == 0.0 {
                0
            } else {
                (1.0 - v.abs().log10().floor()).clamp(0.0, 9.0) as usize
            };
            let digits = digits.max(needed);
            format!("{v:.digits$}")
        }
        _ => NOTHING.to_string(),
    }
}

fn plot_error<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {err}")
}

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
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn options(rows: Vec<Row>) -> BenchOptions {
        BenchOptions {
            requests: 100,
            warmup: 7,
            repeat: 1,
            concurrency: 1,
            rows,
            cpus: None,
            server_cpus: None,
            halt_poll_ns: None,
            flavor: Flavor::CurrentThread,
            progress: None,
            testbed_exe: PathBuf::new(),
        }
    }

    /// A row measured call by call, with the given per-call figures in µs.
    fn measured(row: Row, p50_us: f64, mean_us: f64) -> RowResult {
        RowResult {
            row,
            label: row.label(),
            calls: 100,
            final_value: 100,
            total_ms: mean_us * 100.0 / 1e3,
            mean_us,
            p50_us: Some(p50_us),
            p90_us: Some(p50_us * 1.2),
            p99_us: Some(p50_us * 2.0),
            max_us: Some(p50_us * 5.0),
            percentiles: Vec::new(),
            calls_per_s: 1e6 / mean_us,
            ratio_to_tcp: None,
            ratio_to_unary: None,
            ratio_to_plaintext: None,
        }
    }

    /// Harness (tiny figures), TCP, the throughput-only pipelined row and a skipped Python
    /// row; no gRPC unary row, so no ratio to it.
    fn report() -> BenchReport {
        let rows = vec![
            Row::Harness,
            Row::Tcp,
            Row::StreamPipelined,
            Row::PythonToRust,
        ];
        BenchReport::from_runs(
            &options(rows.clone()),
            &rows,
            vec![
                (Row::Harness, Ok(measured(Row::Harness, 0.03, 0.085))),
                (Row::Tcp, Ok(measured(Row::Tcp, 28.6, 30.0))),
                (
                    Row::StreamPipelined,
                    Ok(RowResult::throughput_only(
                        Row::StreamPipelined,
                        100,
                        Duration::from_micros(400),
                    )),
                ),
                (Row::PythonToRust, Err("python not found".to_string())),
            ],
            Vec::new(),
            None,
        )
    }

    /// The cells of the table line that starts with `label`.
    fn cells<'a>(rendered: &'a str, label: &str) -> Vec<&'a str> {
        let line = rendered
            .lines()
            .find(|line| line.trim_start_matches('│').trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no line for {label} in\n{rendered}"));
        line.trim_matches('│').split('┆').map(str::trim).collect()
    }

    #[test]
    fn nothing_measured_is_a_dash_in_the_table_and_null_in_json() {
        let report = report();
        let rendered = report.render();
        // The pipelined row has no percentiles, and no row has a ratio to gRPC unary.
        let pipelined = cells(&rendered, "gRPC bidi stream pipelined");
        assert_eq!(&pipelined[3..7], ["–"; 4], "{rendered}");
        assert_eq!(pipelined[9], "–", "{rendered}");
        assert!(
            !rendered.contains(" - "),
            "an ASCII hyphen for nothing:\n{rendered}"
        );
        // The skipped row is listed, with nothing measured.
        let skipped = cells(&rendered, "Python grpcio → Rust server (skipped)");
        assert_eq!(&skipped[1..], ["–"; 9], "{rendered}");
        // The harness's figures are measured, and small: they show, not as 0.0 or 0.00.
        let harness = cells(&rendered, "harness");
        assert_eq!(harness[3], "0.030", "{rendered}");
        assert_eq!(harness[8], "0.0010", "{rendered}");
        assert!(
            harness[1..]
                .iter()
                .all(|cell| !cell.trim_matches(['0', '.']).is_empty()),
            "a measured figure shown as zero:\n{rendered}"
        );

        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        let pipelined = &json["rows"][2];
        assert_eq!(pipelined["row"], "stream-pipelined");
        for key in ["p50_us", "p90_us", "p99_us", "max_us", "ratio_to_unary"] {
            assert!(pipelined[key].is_null(), "{key}: {pipelined}");
        }
        assert!(json["rows"][0]["ratio_to_unary"].is_null());
    }

    fn h2load_run(target: &'static str, connections: u32, requests_per_s: f64) -> H2loadResult {
        H2loadResult {
            target,
            connections,
            streams: connections,
            succeeded: 100,
            requests_per_s,
            mean_request_us: 1e6 / requests_per_s,
        }
    }

    #[test]
    fn tls_rows_are_compared_with_plaintext_and_so_are_h2load_and_new_connections() {
        let rows = vec![
            Row::UnaryV1,
            Row::UnaryTls,
            Row::StreamPingPong,
            Row::StreamPingPongTls,
            Row::H2load,
            Row::Handshake,
        ];
        let runs = [
            (Row::UnaryV1, 100.0),
            (Row::UnaryTls, 110.0),
            (Row::StreamPingPong, 80.0),
            (Row::StreamPingPongTls, 84.0),
        ]
        .into_iter()
        .map(|(row, p50)| (row, Ok(measured(row, p50, p50))))
        .collect();
        let h2load = vec![
            h2load_run("direct-tls", 1, 900.0),
            h2load_run("direct-tls", 10, 8000.0),
            h2load_run("direct", 1, 1000.0),
            h2load_run("direct", 10, 10000.0),
        ];
        let plain = crate::ConnectFigures {
            p50_us: 200.0,
            p90_us: 250.0,
            mean_us: 210.0,
            max_us: 400.0,
        };
        let tls = crate::ConnectFigures {
            p50_us: 600.0,
            p90_us: 1000.0,
            mean_us: 700.0,
            max_us: 2000.0,
        };
        let handshake = HandshakeResult::new(50, 50, plain, tls);
        let report =
            BenchReport::from_runs(&options(rows.clone()), &rows, runs, vec![h2load], None)
                .with_handshake(vec![handshake]);
        // Only the rows measured in the table are in it; h2load and new connections apart.
        assert_eq!(report.rows.len(), 4);
        let ratio = |row: Row| {
            report
                .rows
                .iter()
                .find(|r| r.row == row)
                .unwrap()
                .ratio_to_plaintext
        };
        assert!((ratio(Row::UnaryTls).unwrap() - 1.1).abs() < 1e-9);
        assert!((ratio(Row::StreamPingPongTls).unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(ratio(Row::UnaryV1), None);
        assert!((report.h2load_tls_share.unwrap() - 0.8).abs() < 1e-9);

        let rendered = report.render();
        for line in [
            "gRPC unary v1, direct, TLS / plaintext, measured in alternation: p50 1.100, p99 1.100",
            "gRPC bidi stream ping-pong, TLS / plaintext, measured in alternation: p50 1.050",
            "direct-tls reaches 80.0 % of direct plaintext requests/s at -c 10 -m 10, 90.0 % at -c 1 -m 1",
            "new connection + first call, TLS / plaintext, measured in alternation: p50 3.00, p90 4.00",
        ] {
            assert!(rendered.contains(line), "no {line:?} in\n{rendered}");
        }
        assert_eq!(
            cells(&rendered, "TLS (rustls, h2)"),
            ["TLS (rustls, h2)", "600.0", "1000.0", "700.0", "2000.0"],
            "{rendered}"
        );
        assert_eq!(
            cells(&rendered, "plaintext (h2c)")[1],
            "200.0",
            "{rendered}"
        );

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][1]["row"], "unary-tls");
        assert!((json["rows"][1]["ratio_to_plaintext"].as_f64().unwrap() - 1.1).abs() < 1e-9);
        assert!(json["rows"][0]["ratio_to_plaintext"].is_null());
        assert_eq!(json["handshake"]["connections"], 50);
        assert_eq!(json["handshake"]["tls"]["p50_us"], 600.0);
        assert_eq!(json["handshake"]["p50_ratio"], 3.0);
        assert!((json["h2load_tls_share"].as_f64().unwrap() - 0.8).abs() < 1e-9);
        assert!(serde_json::to_value(self::report()).unwrap()["handshake"].is_null());
    }

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
    fn tables_are_plain_text() {
        let rendered = report().render();
        assert!(
            !rendered.contains('\u{1b}'),
            "terminal escapes in:\n{rendered:?}"
        );
        assert!(rendered.contains("after 7 unmeasured"), "{rendered}");
    }

    #[test]
    fn figures_keep_two_significant_digits() {
        assert_eq!(figure(Some(28.63), 1), "28.6");
        assert_eq!(figure(Some(0.03), 1), "0.030");
        assert_eq!(figure(Some(0.00105), 2), "0.0010");
        assert_eq!(figure(Some(11733876.0), 0), "11733876");
        assert_eq!(figure(Some(0.0), 1), "0.0");
        assert_eq!(figure(None, 1), "–");
        assert_eq!(figure(Some(f64::NAN), 1), "–");
        assert_eq!(figure(Some(f64::INFINITY), 1), "–");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bench-report-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
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

    #[test]
    fn the_plot_is_svg_and_a_path_naming_another_format_is_refused() {
        let dir = scratch("plot");
        let png = dir.join("bench.png");
        let err = BenchReport::check_outputs(None, Some(&png)).unwrap_err();
        assert!(
            err.to_string()
                .contains("--plot writes SVG; give a path ending in .svg"),
            "{err}"
        );
        assert!(BenchReport::check_outputs(None, Some(&dir.join("bench"))).is_err());
        let report = report();
        assert!(report.plot(&png).is_err());
        assert!(!png.exists(), "an SVG written under a .png name");
        report.plot(&dir.join("bench.SVG")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Per-call latencies in ns with a long tail, from a fixed-seed generator: mostly 20-60 µs,
    /// one in fifty up to 2 ms, one in a thousand up to 20 ms.
    fn latencies(n: usize, seed: u64) -> Vec<u64> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        (0..n)
            .map(|_| {
                let base = 20_000 + next() % 40_000;
                match next() % 1000 {
                    0 => base + next() % 20_000_000,
                    1..=20 => base + next() % 2_000_000,
                    _ => base,
                }
            })
            .collect()
    }

    fn histogram_of(values: &[u64]) -> hdrhistogram::Histogram<u64> {
        let mut histogram = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for &v in values {
            histogram.record(v).unwrap();
        }
        histogram
    }

    #[test]
    fn the_percentile_ladder_matches_the_order_statistics_of_the_recorded_calls() {
        let mut values = latencies(20_000, 7);
        let ladder = percentiles(&histogram_of(&values));
        values.sort_unstable();
        assert_eq!(
            ladder.iter().map(|p| p.percentile).collect::<Vec<_>>(),
            PERCENTILES
        );
        for point in &ladder {
            // Nearest rank: the smallest value with at least p % of the calls at or below it.
            let rank = ((point.percentile / 100.0) * values.len() as f64).ceil() as usize;
            let exact = values[rank.clamp(1, values.len()) - 1] as f64 / 1e3;
            // The histogram keeps three significant digits.
            assert!(
                (point.us - exact).abs() <= exact * 1e-3,
                "{point:?}: exact {exact} µs"
            );
        }
        assert!(ladder.windows(2).all(|w| w[0].us <= w[1].us), "{ladder:?}");
        assert!(
            ladder[14].us < ladder[15].us,
            "the tail reaches past 99.99 %"
        );
    }

    #[test]
    fn a_rows_percentiles_are_its_p50_p90_p99_and_max_and_stay_so_over_rounds() {
        let chain = |seed| Chain {
            histogram: histogram_of(&latencies(5_000, seed)),
            total: Duration::from_millis(300),
            span: None,
            final_value: 5_000,
        };
        let rounds: Vec<RowResult> = [1, 2, 3]
            .into_iter()
            .map(|seed| RowResult::from_chains(Row::Tcp, &[chain(seed)]).unwrap())
            .collect();
        let rows = vec![Row::Tcp];
        let runs = rounds.iter().map(|r| (Row::Tcp, Ok(r.clone()))).collect();
        let report = BenchReport::from_runs(&options(rows.clone()), &rows, runs, Vec::new(), None);
        for r in rounds.iter().chain(&report.rows) {
            let at = |p: f64| r.percentiles.iter().find(|x| x.percentile == p).unwrap().us;
            assert_eq!(
                [
                    Some(at(50.0)),
                    Some(at(90.0)),
                    Some(at(99.0)),
                    Some(at(100.0))
                ],
                [r.p50_us, r.p90_us, r.p99_us, r.max_us]
            );
            assert!(r.percentiles.windows(2).all(|w| w[0].us <= w[1].us));
        }
        // Each point is the median of the rounds' values there, as p50_us is.
        for (i, point) in report.rows[0].percentiles.iter().enumerate() {
            let mut seen: Vec<f64> = rounds.iter().map(|r| r.percentiles[i].us).collect();
            seen.sort_by(f64::total_cmp);
            assert_eq!(point.us, seen[1]);
        }
        // Without percentiles (the pipelined row) the ladder is empty and nothing is plotted.
        let throughput =
            RowResult::throughput_only(Row::StreamPipelined, 10, Duration::from_millis(1));
        assert!(throughput.percentiles.is_empty());
    }

    #[test]
    fn the_percentile_plot_puts_each_point_where_the_axes_ticks_say_its_value_is() {
        let line = |label: &str, seed| PercentileLine {
            label: label.to_string(),
            points: percentiles(&histogram_of(&latencies(20_000, seed))),
        };
        let mut slow = line("slow", 9);
        for point in &mut slow.points {
            point.us *= 7.0;
        }
        let lines = [line("fast", 8), slow];
        let svg = percentile_svg(&lines, "test", (1000, 420)).unwrap();
        let texts = elements(&svg, "text");
        // The axes' own ticks: x labels sit at their x, y labels at their y.
        let x_tick = |label: &str| {
            let (a, _) = texts.iter().find(|(_, t)| t == label).unwrap();
            number(a, "x")
        };
        let y_ticks: Vec<(f64, f64)> = texts
            .iter()
            .filter(|(a, _)| a.get("dy").is_some_and(|dy| dy == "0.5ex"))
            .filter_map(|(a, t)| Some((t.parse::<f64>().ok()?, number(a, "y"))))
            .collect();
        assert!(y_ticks.len() >= 2, "{svg}");
        let ((v1, y1), (v2, y2)) = (y_ticks[0], y_ticks[y_ticks.len() - 1]);
        let y_of = |us: f64| y1 + (y2 - y1) * (us / v1).log10() / (v2 / v1).log10();
        let x_of = |p: f64| {
            let (x0, x99) = (x_tick("0%"), x_tick("99%"));
            x0 + (x99 - x0) * percentile_x(p).unwrap() / 2.0
        };
        for label in ["fast", "slow"] {
            assert!(
                texts.iter().any(|(_, t)| t == label),
                "no legend entry {label}"
            );
        }
        let circles = elements(&svg, "circle");
        for (i, line) in lines.iter().enumerate() {
            let (r, g, b) = PERCENTILE_COLORS[i];
            let fill = format!("#{r:02X}{g:02X}{b:02X}");
            let dots: Vec<(f64, f64)> = circles
                .iter()
                .filter(|(a, _)| a["fill"] == fill)
                .map(|(a, _)| (number(a, "cx"), number(a, "cy")))
                .collect();
            // Every point but the slowest call (100 %), in order.
            assert_eq!(dots.len(), PERCENTILES.len() - 1, "{}", line.label);
            for (point, (x, y)) in line.points.iter().zip(&dots) {
                assert!(
                    (x - x_of(point.percentile)).abs() <= 1.5,
                    "{point:?} at x {x}"
                );
                assert!((y - y_of(point.us)).abs() <= 1.5, "{point:?} at y {y}");
            }
            assert_eq!(
                x_tick("99%"),
                dots[8].0,
                "the 99th percentile sits on its tick"
            );
            assert!(
                dots.windows(2).all(|w| w[0].1 >= w[1].1),
                "rising to the right"
            );
        }
    }

    #[test]
    fn a_row_measured_at_zero_still_plots_on_the_log_axis() {
        let rows = vec![Row::InProcess, Row::Tcp];
        let runs = vec![
            (Row::InProcess, Ok(measured(Row::InProcess, 0.0, 0.0))),
            (Row::Tcp, Ok(measured(Row::Tcp, 28.6, 30.0))),
        ];
        let report = BenchReport::from_runs(&options(rows.clone()), &rows, runs, Vec::new(), None);
        let svg = report.plot_svg().unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("28.6 µs · TCP floor"), "{svg}");
    }

    /// The SVG elements named `tag` (`<tag ...>` up to `</tag>` or `/>`): their attributes and
    /// their text.
    fn elements(svg: &str, tag: &str) -> Vec<(HashMap<String, String>, String)> {
        let open = format!("<{tag} ");
        svg.split(&open)
            .skip(1)
            .map(|rest| {
                let end = rest.find('>').unwrap();
                let head = rest[..end].trim_end_matches('/');
                let mut attributes = HashMap::new();
                for pair in head.split("\" ") {
                    if let Some((key, value)) = pair.split_once("=\"") {
                        let value = value.trim_end().trim_end_matches('"');
                        attributes.insert(key.trim().to_string(), value.to_string());
                    }
                }
                let body = &rest[end + 1..];
                let text = body.split('<').next().unwrap_or("").trim().to_string();
                (attributes, text)
            })
            .collect()
    }

    fn number(attributes: &HashMap<String, String>, key: &str) -> f64 {
        attributes[key].parse().unwrap()
    }

    #[test]
    fn the_plot_has_gapped_bars_at_their_labels_with_whiskers_ticks_and_ratios() {
        let rows = vec![
            Row::Harness,
            Row::Tcp,
            Row::Rest,
            Row::UnaryV1,
            Row::StreamPipelined,
        ];
        let runs = vec![
            (Row::Harness, Ok(measured(Row::Harness, 0.03, 0.085))),
            (Row::Tcp, Ok(measured(Row::Tcp, 28.6, 30.0))),
            (Row::Rest, Ok(measured(Row::Rest, 83.4, 90.0))),
            (Row::UnaryV1, Ok(measured(Row::UnaryV1, 240.0, 260.0))),
            (
                Row::StreamPipelined,
                Ok(RowResult::throughput_only(
                    Row::StreamPipelined,
                    100,
                    Duration::from_micros(232),
                )),
            ),
        ];
        let report = BenchReport::from_runs(&options(rows.clone()), &rows, runs, Vec::new(), None);
        let svg = report.plot_svg().unwrap();
        let texts = elements(&svg, "text");
        let text = |content: &str| texts.iter().find(|(_, t)| t == content);

        // The axis: its title, and ticks 1, 2, 5 times each power of ten over the data.
        assert!(text("µs per call (log scale)").is_some(), "{svg}");
        let tick_x = |label: &str| -> f64 {
            let (a, _) = text(label).unwrap_or_else(|| panic!("no tick {label}:\n{svg}"));
            number(a, "x")
        };
        for tick in ["1", "2", "5", "10", "20", "50", "100", "200", "500"] {
            tick_x(tick);
        }
        // Where a value sits on the axis, from the ticks' own positions.
        let per_decade = tick_x("100") - tick_x("10");
        let x_of = |us: f64| tick_x("10") + per_decade * (us / 10.0).log10();
        assert!((tick_x("2") - x_of(2.0)).abs() < 1.5, "{svg}");

        let bars: Vec<_> = elements(&svg, "rect")
            .into_iter()
            .filter(|(a, _)| a["fill"] != "#FFFFFF")
            .map(|(a, _)| a)
            .collect();
        let whiskers: Vec<_> = elements(&svg, "polyline")
            .into_iter()
            .filter(|(a, _)| a["stroke-width"] == "2")
            .map(|(a, _)| {
                let points: Vec<(f64, f64)> = a["points"]
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                points
            })
            .collect();
        let plotted: Vec<&RowResult> = report
            .rows
            .iter()
            .filter(|r| r.row != Row::Harness)
            .collect();
        assert_eq!(
            bars.len(),
            plotted.len(),
            "the harness is not plotted:\n{svg}"
        );
        let label_y: Vec<f64> = plotted
            .iter()
            .map(|r| {
                number(
                    &text(r.label).unwrap_or_else(|| panic!("no {}", r.label)).0,
                    "y",
                )
            })
            .collect();
        let spacing = (label_y[1] - label_y[0]).abs();
        let notes = [
            "28.6 µs · TCP floor",
            "83.4 µs · 2.92× TCP",
            "240 µs · 8.39× TCP",
            "2.32 µs mean · 0.0811× TCP",
        ];
        for ((r, (bar, y)), note) in plotted.iter().zip(bars.iter().zip(&label_y)).zip(notes) {
            // Each bar is centred on its label, with a gap to the next band.
            let (top, height) = (number(bar, "y"), number(bar, "height"));
            assert!(
                (top + height / 2.0 - y).abs() <= 1.5,
                "{} off its label:\n{svg}",
                r.label
            );
            assert!(
                height <= 0.75 * spacing,
                "{} fills its band:\n{svg}",
                r.label
            );
            // It ends at its value on the axis.
            let end = number(bar, "x") + number(bar, "width");
            assert!(
                (end - x_of(r.typical_us())).abs() < 2.0,
                "{} ends at {end}:\n{svg}",
                r.label
            );
            // Its whisker spans p90 to p99, at the label's height.
            if let Some((p90, p99)) = r.p90_us.zip(r.p99_us) {
                let found = whiskers.iter().any(|w| {
                    w.len() == 2
                        && w.iter().all(|(_, wy)| (wy - y).abs() <= 1.5)
                        && (w[0].0 - x_of(p90)).abs() < 2.0
                        && (w[1].0 - x_of(p99)).abs() < 2.0
                });
                assert!(found, "no p90-p99 whisker for {}:\n{svg}", r.label);
            }
            // Its figure and its ratio to the TCP floor are written beside it.
            let (a, _) = text(note).unwrap_or_else(|| panic!("no {note:?}:\n{svg}"));
            assert!((number(a, "y") - y).abs() <= 1.5, "{note} off its bar");
            assert!(number(a, "x") > end, "{note} not after its bar");
        }
    }
}
