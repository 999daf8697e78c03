//! What the report's tests share: options, rows with chosen figures, a sample report, a
//! long-tailed latency sample, and readers of the rendered table and SVG.

use super::{BenchReport, RowResult};
use crate::h2load::H2loadResult;
use crate::{BenchOptions, Flavor, Row};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn options(rows: Vec<Row>) -> BenchOptions {
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
pub(super) fn measured(row: Row, p50_us: f64, mean_us: f64) -> RowResult {
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
pub(super) fn report() -> BenchReport {
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
pub(super) fn cells<'a>(rendered: &'a str, label: &str) -> Vec<&'a str> {
    let line = rendered
        .lines()
        .find(|line| line.trim_start_matches('│').trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line for {label} in\n{rendered}"));
    line.trim_matches('│').split('┆').map(str::trim).collect()
}

pub(super) fn h2load_run(
    target: &'static str,
    connections: u32,
    requests_per_s: f64,
) -> H2loadResult {
    H2loadResult {
        target,
        connections,
        streams: connections,
        succeeded: 100,
        requests_per_s,
        mean_request_us: 1e6 / requests_per_s,
    }
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bench-report-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Per-call latencies in ns with a long tail, from a fixed-seed generator: mostly 20-60 µs,
/// one in fifty up to 2 ms, one in a thousand up to 20 ms.
pub(super) fn latencies(n: usize, seed: u64) -> Vec<u64> {
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

pub(super) fn histogram_of(values: &[u64]) -> hdrhistogram::Histogram<u64> {
    let mut histogram = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for &v in values {
        histogram.record(v).unwrap();
    }
    histogram
}

/// The SVG elements named `tag` (`<tag ...>` up to `</tag>` or `/>`): their attributes and
/// their text.
pub(super) fn elements(svg: &str, tag: &str) -> Vec<(HashMap<String, String>, String)> {
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

pub(super) fn number(attributes: &HashMap<String, String>, key: &str) -> f64 {
    attributes[key].parse().unwrap()
}
