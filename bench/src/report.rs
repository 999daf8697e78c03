//! Turns the measured chains into the latency table: medians over the repeats, ratios to the raw
//! TCP floor and to gRPC unary, as a terminal table, JSON, or an SVG figure.

use super::chains::Chain;
use super::h2load::H2loadResult;
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
    /// Wall time of the measured calls, ms.
    pub total_ms: f64,
    /// Wall time per call of one chain, µs (for the in-process rows, the honest per-call cost:
    /// there the timer itself dominates the percentiles).
    pub mean_us: f64,
    /// Median call, µs (absent for the pipelined row: its calls do not wait for each other).
    pub p50_us: Option<f64>,
    /// 90th percentile, µs.
    pub p90_us: Option<f64>,
    /// 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Slowest call, µs.
    pub max_us: Option<f64>,
    /// Calls per second over all chains.
    pub calls_per_s: f64,
    /// p50 (or mean) divided by the raw TCP row's p50.
    pub ratio_to_tcp: Option<f64>,
    /// p50 (or mean) divided by the gRPC unary v1 row's p50.
    pub ratio_to_unary: Option<f64>,
}

impl RowResult {
    pub(super) fn from_chains(row: Row, chains: &[(Chain, Duration)]) -> anyhow::Result<Self> {
        let (first, wall) = chains.first().context("a row ran no chain")?;
        let mut histogram = first.histogram.clone();
        for (chain, _) in &chains[1..] {
            histogram
                .add(&chain.histogram)
                .context("merging histograms")?;
        }
        let calls = histogram.len();
        let per_chain = first.histogram.len().max(1);
        let us = |ns: u64| ns as f64 / 1e3;
        Ok(Self {
            row,
            label: row.label(),
            calls,
            final_value: first.final_value,
            total_ms: wall.as_secs_f64() * 1e3,
            mean_us: first.total.as_secs_f64() * 1e6 / per_chain as f64,
            p50_us: Some(us(histogram.value_at_quantile(0.50))),
            p90_us: Some(us(histogram.value_at_quantile(0.90))),
            p99_us: Some(us(histogram.value_at_quantile(0.99))),
            max_us: Some(us(histogram.max())),
            calls_per_s: calls as f64 / wall.as_secs_f64(),
            ratio_to_tcp: None,
            ratio_to_unary: None,
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
            calls_per_s: calls as f64 / total.as_secs_f64(),
            ratio_to_tcp: None,
            ratio_to_unary: None,
        }
    }

    /// The figure ratios compare: the median call, or the mean where there is no median.
    pub fn typical_us(&self) -> f64 {
        self.p50_us.unwrap_or(self.mean_us)
    }
}

/// The whole latency run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Measured calls per chain.
    pub requests: u64,
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
    /// The rows that ran.
    pub rows: Vec<RowResult>,
    /// Rows skipped, with the reason and the fix.
    pub skipped: Vec<(Row, String)>,
    /// The h2load runs (medians of requests/s over the repeats).
    pub h2load: Vec<H2loadResult>,
    /// Router requests/s as a share of direct, at -c 10 -m 10.
    pub h2load_router_share: Option<f64>,
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
        for &row in rows.iter().filter(|r| **r != Row::H2load) {
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
            results.push(RowResult {
                total_ms: pick(|r| r.total_ms),
                mean_us: pick(|r| r.mean_us),
                p50_us: pick_opt(|r| r.p50_us),
                p90_us: pick_opt(|r| r.p90_us),
                p99_us: pick_opt(|r| r.p99_us),
                max_us: pick_opt(|r| r.max_us),
                calls_per_s: pick(|r| r.calls_per_s),
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
        for result in &mut results {
            result.ratio_to_tcp = tcp.map(|t| result.typical_us() / t);
            result.ratio_to_unary = unary.map(|u| result.typical_us() / u);
        }
        if let Some(reason) = h2load_skipped {
            skipped.push((Row::H2load, reason));
        }
        let h2load = h2load_medians(h2load_runs);
        let rps = |target: &str| {
            h2load
                .iter()
                .find(|r| r.target == target && r.connections == 10)
                .map(|r| r.requests_per_s)
        };
        let h2load_router_share = rps("router").zip(rps("direct")).map(|(r, d)| r / d);
        Self {
            requests: options.requests,
            repeat: options.repeat,
            concurrency: options.concurrency,
            runtime: options.flavor,
            cpus: options.cpus.clone(),
            server_cpus: options.server_cpus.clone(),
            halt_poll_ns: options.halt_poll_ns,
            rows: results,
            skipped,
            h2load,
            h2load_router_share,
        }
    }

    /// The report as terminal tables.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
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
        let fixed =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        for r in &self.rows {
            table.add_row([
                r.label.to_string(),
                fixed(Some(r.total_ms), 1),
                fixed(Some(r.mean_us), 3),
                fixed(r.p50_us, 1),
                fixed(r.p90_us, 1),
                fixed(r.p99_us, 1),
                fixed(r.max_us, 1),
                fixed(Some(r.calls_per_s), 0),
                fixed(r.ratio_to_tcp, 2),
                fixed(r.ratio_to_unary, 2),
            ]);
        }
        let mut out = format!(
            "{} sequential dependent increments per chain, {} chain(s) at once, runtime {}, {}{}, median of {} round(s)\n{table}\n",
            self.requests,
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
            let mut h2 = Table::new();
            h2.load_preset(UTF8_FULL_CONDENSED);
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
        if let Some(r) = ratio(Row::RustToPython, Row::UnaryV1) {
            out.push_str(&format!(
                "Rust client: Python server p50 / Rust server p50: {r:.2}\n"
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

    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Draws the typical per-call latency of each row as horizontal bars (log scale) to an SVG.
    pub fn plot(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let rows: Vec<&RowResult> = self.rows.iter().filter(|r| r.row != Row::Harness).collect();
        let height = 80 + 34 * rows.len() as u32;
        let root = SVGBackend::new(path, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let max = rows.iter().map(|r| r.typical_us()).fold(1.0, f64::max) * 2.0;
        let min = rows
            .iter()
            .map(|r| r.typical_us())
            .fold(max, f64::min)
            .max(1e-4)
            / 2.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "per-call latency, p50 (µs, log scale): {} dependent calls, runtime {}",
                    self.requests,
                    self.runtime.name()
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(300)
            .build_cartesian_2d((min..max).log_scale(), 0..rows.len())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len() + 1)
            .y_label_formatter(&|i| rows.get(*i).map_or(String::new(), |r| r.label.to_string()))
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                Rectangle::new([(min, i), (r.typical_us(), i + 1)], BLUE.mix(0.6).filled())
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
        Ok(())
    }
}

fn plot_error<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {err}")
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
