//! Row 12: h2load (nghttp2's load generator, a client nobody here wrote) sending gRPC unary
//! calls to the Rust server, direct and through the router, at `-c 1 -m 1` and `-c 10 -m 10`.
//! h2load checks HTTP status only, so this row measures capacity, not answers.

use super::{BenchOptions, Target, Targets};
use anyhow::{Context, bail};
use client::tools;
use port::Deployment;
use serde::Serialize;
use tokio::process::Command;

/// One h2load run (`-c 1 -m 1` sends `requests` calls, `-c 10 -m 10` ten times as many).
#[derive(Debug, Clone, Serialize)]
pub struct H2loadResult {
    /// `direct` or `router`.
    pub target: &'static str,
    /// Connections (`-c`).
    pub connections: u32,
    /// Streams in flight per connection (`-m`).
    pub streams: u32,
    /// Requests completed.
    pub succeeded: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Mean time per request, µs.
    pub mean_request_us: f64,
}

/// One gRPC frame: not compressed, 2-byte `IncrementRequest { value: 41 }`.
const FRAME: [u8; 7] = [0, 0, 0, 0, 2, 0x08, 41];

/// Runs the four h2load settings; a missing h2load is a `MissingTool` error.
pub(crate) async fn run(
    targets: &mut Targets,
    options: &BenchOptions,
) -> anyhow::Result<Vec<H2loadResult>> {
    let h2load = tools::h2load()?;
    let body = std::env::temp_dir().join(format!("testbed-h2load-{}.bin", std::process::id()));
    std::fs::write(&body, FRAME).with_context(|| format!("cannot write {}", body.display()))?;
    let mut results = Vec::new();
    for (target, deployment) in [
        ("direct", Deployment::Direct),
        ("router", Deployment::SideBySide),
    ] {
        let addr = targets.addr(Target::Port(deployment), options).await?;
        // With 100 calls in flight a run of `requests` calls is over too soon to measure.
        for (connections, streams, calls) in [
            (1u32, 1u32, options.requests),
            (10, 10, options.requests * 10),
        ] {
            let output = Command::new(&h2load)
                .args(["-n", &calls.to_string()])
                .args(["-c", &connections.to_string(), "-m", &streams.to_string()])
                .arg(format!("--data={}", body.display()))
                .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
                .arg(format!("http://{addr}/increment.v1.Incrementer/Increment"))
                .output()
                .await
                .with_context(|| format!("cannot run {}", h2load.display()))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                bail!("h2load failed ({}): {stdout}", output.status);
            }
            results.push(parse(&stdout, target, connections, streams)?);
        }
    }
    let _ = std::fs::remove_file(&body);
    Ok(results)
}

fn parse(
    stdout: &str,
    target: &'static str,
    connections: u32,
    streams: u32,
) -> anyhow::Result<H2loadResult> {
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .with_context(|| format!("h2load printed no {prefix:?} line:\n{stdout}"))
    };
    // "finished in 1.23s, 8123.45 req/s, 1.23MB/s"
    let requests_per_s = line("finished in")?
        .split(',')
        .nth(1)
        .and_then(|part| part.trim().strip_suffix(" req/s"))
        .and_then(|n| n.parse().ok())
        .context("h2load's req/s did not parse")?;
    // "requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed, 0 errored, 0 timeout"
    let requests = line("requests:")?;
    let count = |what: &str| -> Option<u64> {
        requests
            .split(',')
            .find(|part| part.trim().ends_with(what))
            .and_then(|part| part.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
    };
    let succeeded = count("succeeded").context("h2load's succeeded count did not parse")?;
    if count("failed") != Some(0) || count("errored") != Some(0) {
        bail!("h2load saw failed requests: {requests}");
    }
    // "time for request:     38us      1.29ms      74us     24us    97.30%": min max mean sd
    let mean = line("time for request:")?
        .split_whitespace()
        .nth(5)
        .and_then(duration_us)
        .context("h2load's mean request time did not parse")?;
    Ok(H2loadResult {
        target,
        connections,
        streams,
        succeeded,
        requests_per_s,
        mean_request_us: mean,
    })
}

fn duration_us(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_h2load_output() {
        let out = "finished in 121.91ms, 82028.80 req/s, 2.82MB/s\n\
                   requests: 10000 total, 10000 started, 10000 done, 10000 succeeded, 0 failed, 0 errored, 0 timeout\n\
                   time for request:       38us      1.29ms       112us        24us    97.30%\n";
        let result = parse(out, "direct", 10, 10).unwrap();
        assert_eq!(result.succeeded, 10000);
        assert!((result.requests_per_s - 82028.8).abs() < 1e-6);
        assert!((result.mean_request_us - 112.0).abs() < 1e-9);
        assert_eq!(duration_us("1.29ms"), Some(1290.0));
    }

    #[test]
    fn failed_requests_fail_the_row() {
        let out = "finished in 1s, 10.00 req/s, 1KB/s\n\
                   requests: 10 total, 10 started, 10 done, 8 succeeded, 2 failed, 0 errored, 0 timeout\n\
                   time for request: 1us 2us 3us 1us 50%\n";
        assert!(parse(out, "router", 1, 1).is_err());
    }
}
