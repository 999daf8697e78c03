//! The Python rows' client side: bench client processes at once, their per-call latencies
//! read back as chains.

use crate::BenchOptions;
use crate::chains::Chain;
use crate::concurrent::at_once;
use anyhow::Context;
use client::tools;
use std::net::SocketAddr;
use std::time::Duration;

/// Runs `options.concurrency` Python bench clients at once against `addr`, each a process of its
/// own (so the GIL does not serialise them), and reads their per-call latencies.
///
/// Each client times its own measured calls (after its own warm-up); the processes start at
/// once, so their measured stretches overlap and the row's wall time is the longest of them.
pub(crate) async fn python_chains(
    addr: SocketAddr,
    options: &BenchOptions,
) -> anyhow::Result<Vec<Chain>> {
    let python = tools::python()?;
    let script = tools::python_client("bench_client.py")?;
    let (requests, warmup) = (options.requests, options.warmup);
    at_once(vec![(); options.concurrency], move |()| {
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(&script)
            .args(["--addr", &addr.to_string()])
            .args(["--requests", &requests.to_string()])
            .args(["--warmup", &warmup.to_string()]);
        let python = python.clone();
        async move {
            let output = command
                .output()
                .await
                .with_context(|| format!("cannot run {}", python.display()))?;
            python_chain(&output, requests)
        }
    })
    .await
}

/// One Python bench client's run, from its output.
fn python_chain(output: &std::process::Output, requests: u64) -> anyhow::Result<Chain> {
    if !output.status.success() {
        anyhow::bail!(
            "python bench client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    #[derive(serde::Deserialize)]
    struct PythonRun {
        latencies_ns: Vec<u64>,
        #[serde(rename = "final")]
        final_value: i64,
        total_ns: u64,
    }
    let run: PythonRun =
        serde_json::from_slice(&output.stdout).context("python bench client output")?;
    if run.final_value != requests as i64 {
        anyhow::bail!("python chain ended at {}, not {requests}", run.final_value);
    }
    let mut histogram = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)?;
    for latency in run.latencies_ns {
        histogram.saturating_record(latency);
    }
    Ok(Chain {
        histogram,
        total: Duration::from_nanos(run.total_ns),
        span: None,
        final_value: run.final_value,
    })
}
