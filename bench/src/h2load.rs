//! Row 12: h2load (nghttp2's load generator, a client nobody here wrote) sending gRPC unary
//! calls to the Rust server, direct over TLS, direct and through the router, at `-c 1 -m 1` and
//! `-c 10 -m 10`. Over TLS h2load speaks TLS with ALPN `h2` to a TLS port that is otherwise the
//! same direct server (it does not verify the certificate; it must negotiate `h2`). h2load
//! checks HTTP status only, so this row measures capacity, not answers.

use super::BenchOptions;
use super::targets::{Target, Targets};
use anyhow::{Context, bail};
use client::tools;
use port::Deployment;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use tokio::process::Command;

/// One h2load run (`-c 1 -m 1` sends `requests` calls, `-c 10 -m 10` ten times as many).
#[derive(Debug, Clone, Serialize)]
pub struct H2loadResult {
    /// `direct`, `direct-tls` or `router`.
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

/// Runs the six h2load settings; a missing h2load is a `MissingTool` error.
pub(crate) async fn run(
    targets: &mut Targets,
    options: &BenchOptions,
) -> anyhow::Result<Vec<H2loadResult>> {
    let h2load = tools::h2load()?;
    let body = std::env::temp_dir().join(format!("testbed-h2load-{}.bin", std::process::id()));
    std::fs::write(&body, FRAME).with_context(|| format!("cannot write {}", body.display()))?;
    let results = run_all(targets, options, &h2load, &body).await;
    let _ = std::fs::remove_file(&body);
    results
}

async fn run_all(
    targets: &mut Targets,
    options: &BenchOptions,
    h2load: &Path,
    body: &Path,
) -> anyhow::Result<Vec<H2loadResult>> {
    let mut results = Vec::new();
    // TLS first, then plaintext direct, then the router: each comparison (TLS / direct, router /
    // direct) is of runs close together in time.
    for (target, server) in [
        ("direct-tls", Target::TlsPort),
        ("direct", Target::Port(Deployment::Direct)),
        ("router", Target::Port(Deployment::SideBySide)),
    ] {
        let addr = targets.addr(server, options).await?;
        // With 100 calls in flight a run of `requests` calls is over too soon to measure.
        for (connections, streams, calls) in [
            (1u32, 1u32, options.requests),
            (10, 10, options.requests * 10),
        ] {
            let run = Load {
                calls,
                connections,
                streams,
            };
            results.push(run.against(h2load, body, addr, target).await?);
        }
    }
    Ok(results)
}

/// One h2load invocation's load.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Requests in all (`-n`).
    calls: u64,
    /// Connections (`-c`).
    connections: u32,
    /// Streams in flight per connection (`-m`).
    streams: u32,
}

impl Load {
    /// Runs `h2load` with this load, posting the frame in `body` to `addr`'s v1 increment (over
    /// TLS for a `-tls` target).
    async fn against(
        self,
        h2load: &Path,
        body: &Path,
        addr: SocketAddr,
        target: &'static str,
    ) -> anyhow::Result<H2loadResult> {
        let tls = target.ends_with("-tls");
        let scheme = if tls { "https" } else { "http" };
        let mut command = Command::new(h2load);
        command
            .args(["-n", &self.calls.to_string()])
            .args(["-c", &self.connections.to_string()])
            .args(["-m", &self.streams.to_string()])
            .arg(format!("--data={}", body.display()))
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg(format!(
                "{scheme}://{addr}/increment.v1.Incrementer/Increment"
            ));
        let stdout = output_of(&mut command).await?;
        if tls
            && !stdout
                .lines()
                .any(|l| l.trim() == "Application protocol: h2")
        {
            bail!("h2load did not negotiate h2 over TLS with {addr}:\n{stdout}");
        }
        parse(&stdout, target, self.connections, self.streams)
    }
}

/// Lines of a failed tool's output kept in its error.
const TAIL_LINES: usize = 20;

/// Runs `command` and returns its stdout; if it fails, an error with the command line, the exit
/// status and the tail of what it printed on stderr and stdout (h2load explains bad arguments
/// on stderr and prints nothing on stdout).
async fn output_of(command: &mut Command) -> anyhow::Result<String> {
    let std_command = command.as_std();
    let line = std::iter::once(std_command.get_program())
        .chain(std_command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {line}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut said = String::new();
    for (name, text) in [("stderr", stderr.as_ref()), ("stdout", stdout.as_str())] {
        let tail = tail(text, TAIL_LINES);
        if !tail.is_empty() {
            said.push_str(&format!("\n{name}:\n{tail}"));
        }
    }
    if said.is_empty() {
        said.push_str(", and it printed nothing");
    }
    bail!("`{line}` failed: {}{said}", output.status)
}

/// The last `lines` non-blank lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
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

    #[tokio::test]
    async fn a_failing_tool_says_why_with_its_status_and_output() {
        let mut noisy = Command::new("sh");
        noisy.args([
            "-c",
            "echo 'some progress'; echo '-n: must be > 0' >&2; exit 3",
        ]);
        let err = output_of(&mut noisy).await.unwrap_err().to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("stderr:\n-n: must be > 0"), "{err}");
        assert!(err.contains("stdout:\nsome progress"), "{err}");
        assert!(err.contains("`sh -c "), "{err}");

        let mut silent = Command::new("sh");
        silent.args(["-c", "exit 1"]);
        let err = output_of(&mut silent).await.unwrap_err().to_string();
        assert!(
            err.contains("exit status: 1, and it printed nothing"),
            "{err}"
        );

        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
    }

    #[tokio::test]
    async fn h2load_refusing_its_arguments_is_an_error_that_says_why() {
        let h2load = match tools::h2load() {
            Ok(path) => path,
            Err(missing) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{missing}"),
            Err(missing) => return eprintln!("skipped: {missing}"),
        };
        let body =
            std::env::temp_dir().join(format!("bench-h2load-test-{}.bin", std::process::id()));
        std::fs::write(&body, FRAME).unwrap();
        // h2load refuses -n 0 on stderr and prints nothing on stdout.
        let none = Load {
            calls: 0,
            connections: 1,
            streams: 1,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let result = none.against(&h2load, &body, addr, "direct").await;
        std::fs::remove_file(&body).unwrap();
        let err = result.unwrap_err().to_string();
        assert!(err.contains("exit status: 1"), "{err}");
        assert!(err.contains("stderr:\n-n:"), "{err}");
    }
}
