//! Load through a proxy: h2load (nghttp2's client) sending gRPC unary calls. The bench's
//! `proxies` row runs it through each proxy and charges each hop's CPU time from `/proc`.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use tokio::process::Command;

/// One gRPC frame: not compressed, 2-byte `increment.v1.IncrementRequest { value: 41 }`.
const FRAME: [u8; 7] = [0, 0, 0, 0, 2, 0x08, 41];

/// One h2load run's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Requests in all (`-n`).
    pub requests: u64,
    /// Connections (`-c`).
    pub connections: u32,
    /// Streams in flight per connection (`-m`).
    pub streams: u32,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The load.
    pub load: Load,
    /// Requests h2load counted as succeeded (HTTP status only: it does not read gRPC status).
    pub succeeded: u64,
    /// Requests that failed (for example after a GOAWAY, which h2load does not recover from).
    pub failed: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Mean time per request, µs.
    pub mean_request_us: f64,
}

/// Runs h2load with `load` against `addr`'s `increment.v1.Incrementer/Increment`. A missing
/// h2load is a [`crate::MissingTool`] error.
pub async fn h2load(addr: SocketAddr, load: Load) -> anyhow::Result<Measured> {
    let h2load = client::tools::h2load()?;
    let body = tempfile::Builder::new()
        .prefix("testbed-h2load-")
        .tempfile()
        .context("cannot create h2load's body file")?;
    std::fs::write(body.path(), FRAME).context("cannot write h2load's body file")?;
    let output = Command::new(&h2load)
        .args(["-n", &load.requests.to_string()])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &load.streams.to_string()])
        .arg(format!("--data={}", body.path().display()))
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("http://{addr}/increment.v1.Incrementer/Increment"))
        .output()
        .await
        .with_context(|| format!("cannot run {}", h2load.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "h2load failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdout
        );
    }
    parse(&stdout, load)
}

/// Reads h2load's summary: `finished in 1.23s, 40000.00 req/s, ...` and `requests: N total, N
/// started, N done, N succeeded, N failed, ...`.
fn parse(stdout: &str, load: Load) -> anyhow::Result<Measured> {
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|line| line.trim_start().starts_with(prefix))
            .with_context(|| format!("h2load printed no `{prefix}` line:\n{stdout}"))
    };
    let finished = line("finished in")?;
    let requests_per_s: f64 = finished
        .split(',')
        .nth(1)
        .and_then(|part| part.trim().strip_suffix(" req/s"))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("cannot read req/s from {finished:?}"))?;
    let requests = line("requests:")?;
    let count = |what: &str| -> anyhow::Result<u64> {
        requests
            .split(',')
            .find_map(|part| part.trim().strip_suffix(what))
            .and_then(|n| n.trim().rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("cannot read `{what}` from {requests:?}"))
    };
    let succeeded = count(" succeeded")?;
    let failed = count(" failed")?;
    let concurrency = f64::from(load.connections) * f64::from(load.streams);
    Ok(Measured {
        load,
        succeeded,
        failed,
        requests_per_s,
        mean_request_us: if requests_per_s > 0.0 {
            concurrency * 1e6 / requests_per_s
        } else {
            f64::NAN
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2loads_summary() {
        let out = "starting benchmark...\n\nfinished in 1.21s, 41322.31 req/s, 2.00MB/s\nrequests: 50000 total, 50000 started, 50000 done, 49000 succeeded, 1000 failed, 1000 errored, 0 timeout\n";
        let load = Load {
            requests: 50_000,
            connections: 10,
            streams: 10,
        };
        let m = parse(out, load).unwrap();
        assert_eq!((m.succeeded, m.failed), (49_000, 1_000));
        assert!((m.requests_per_s - 41322.31).abs() < 1e-6);
        assert!((m.mean_request_us - 100.0 * 1e6 / 41322.31).abs() < 1e-6);
    }
}
