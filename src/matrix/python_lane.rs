//! The matrix's Python client for any API: `client/python/dynamic_client.py`, a grpcio client
//! whose message classes are built at run time from the caller's own descriptors (as a Python
//! team's generated stubs would be), kept running for the whole matrix and sent one call per
//! line. Requests go to it as protobuf JSON; replies come back as the bytes Python's protobuf
//! serialized, so that `compat`'s replay compares its answers exactly as it compares the
//! testbed client's.

use super::outside_client::{Failures, failed, method_at, requests_json};
use base64::Engine as _;
use compat::probe::{Answer, Header, ReplyLimits};
use compat::replay::Lane;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;
use tonic::Code;

/// What the worker may print past a call's reply cap (base64 and the status around it).
const LINE_SLACK: usize = 64 << 10;

/// The running worker process.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One version's Python client: the worker (started on first use, again after it failed) and
/// the descriptors it was given.
#[derive(Debug)]
pub(super) struct PythonClient {
    python: PathBuf,
    script: PathBuf,
    protoset: Arc<PathBuf>,
    pool: DescriptorPool,
    worker: Mutex<Option<Worker>>,
    /// Calls the client itself could not make (not a server's answer).
    pub(super) failures: Failures,
}

/// What the worker answers for one call.
#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(default)]
    code: i32,
    #[serde(default)]
    message: String,
    #[serde(default)]
    served_by: Option<String>,
    #[serde(default)]
    replies: Vec<String>,
    #[serde(default)]
    capped: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl PythonClient {
    /// `python` running `script` with the descriptors `pool`, written to `protoset`.
    pub(super) fn new(
        python: PathBuf,
        script: PathBuf,
        pool: DescriptorPool,
        protoset: Arc<PathBuf>,
    ) -> Self {
        Self {
            python,
            script,
            protoset,
            pool,
            worker: Mutex::new(None),
            failures: Failures::default(),
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut child = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .arg("--protoset")
            .arg(self.protoset.as_ref())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.python.display()))?;
        let stdin = child.stdin.take().ok_or("the worker's stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("the worker's stdout")?);
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one call to the worker and reads its answer line, within `limit`.
    async fn exchange(&self, command: &str, cap: usize, limit: Duration) -> Result<Reply, String> {
        let mut guard = self.worker.lock().await;
        if guard.is_none() {
            *guard = Some(self.spawn()?);
        }
        let worker = guard.as_mut().ok_or("no worker")?;
        let talk = async {
            worker
                .stdin
                .write_all(command.as_bytes())
                .await
                .map_err(|e| format!("cannot write to the worker: {e}"))?;
            worker
                .stdin
                .flush()
                .await
                .map_err(|e| format!("cannot write to the worker: {e}"))?;
            read_line(&mut worker.stdout, cap).await
        };
        let line = match tokio::time::timeout(limit, talk).await {
            Ok(Ok(line)) => line,
            failure => {
                // A worker that failed once is not trusted with the next call: a new one is.
                if let Some(mut dead) = guard.take() {
                    let _ = dead.child.kill().await;
                }
                return Err(match failure {
                    Ok(Err(why)) => why,
                    _ => format!("the worker did not answer within {limit:?}"),
                });
            }
        };
        serde_json::from_slice(&line).map_err(|e| format!("the worker printed no answer: {e}"))
    }
}

/// Reads one line of at most `cap` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, cap: usize) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    loop {
        let buffer = reader
            .fill_buf()
            .await
            .map_err(|e| format!("cannot read the worker's answer: {e}"))?;
        if buffer.is_empty() {
            return Err("the worker exited".to_string());
        }
        let (taken, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        line.extend_from_slice(&buffer[..taken]);
        reader.consume(taken);
        if line.len() > cap {
            return Err(format!("the worker's answer is longer than {cap} bytes"));
        }
        if done {
            return Ok(line);
        }
    }
}

/// The Python client calling one server.
#[derive(Debug, Clone)]
pub(super) struct PythonLane {
    client: Arc<PythonClient>,
    addr: String,
}

impl PythonLane {
    /// `client` calling `addr` (`HOST:PORT`, plaintext).
    pub(super) fn new(client: Arc<PythonClient>, addr: &str) -> Self {
        Self {
            client,
            addr: addr.to_string(),
        }
    }

    async fn run(
        &self,
        m: &MethodDescriptor,
        messages: Vec<Vec<u8>>,
        (timeout, limits): (Duration, ReplyLimits),
        headers: &[Header],
    ) -> Result<Answer, String> {
        let requests = requests_json(m, &messages)?;
        let headers: Vec<[&str; 2]> = headers.iter().map(|h| [h.name(), h.value()]).collect();
        let command = serde_json::json!({
            "addr": self.addr,
            "method": format!("{}/{}", m.parent_service().full_name(), m.name()),
            "requests": requests,
            "timeout": timeout.as_secs_f64(),
            "headers": headers,
            "max_replies": limits.max_replies,
            "max_reply_bytes": limits.max_reply_bytes,
        });
        let cap = (limits.max_reply_bytes / 3 + 1) * 4 + LINE_SLACK;
        let reply = self
            .client
            .exchange(
                &format!("{command}\n"),
                cap,
                timeout + Duration::from_secs(5),
            )
            .await?;
        if let Some(why) = reply.error {
            return Err(why);
        }
        let mut replies = Vec::new();
        for encoded in &reply.replies {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("a reply that is not base64: {e}"))?;
            replies.push(bytes);
        }
        Ok(Answer {
            code: Code::from(reply.code),
            message: reply.message,
            replies,
            capped: reply.capped,
            served_by: reply.served_by,
        })
    }
}

impl Lane for PythonLane {
    async fn call(
        &self,
        path: &str,
        messages: Vec<Vec<u8>>,
        within: (Duration, ReplyLimits),
        headers: &[Header],
    ) -> Answer {
        let Some(m) = method_at(&self.client.pool, path) else {
            return failed(
                Code::Internal,
                format!("the caller's descriptors declare no {path}"),
            );
        };
        self.run(&m, messages, within, headers)
            .await
            .unwrap_or_else(|why| self.client.failures.answer("Python", path, why))
    }
}

/// The worker script, unpacked from the binary.
pub(super) fn script() -> Result<PathBuf, client::tools::MissingTool> {
    client::tools::python_client("dynamic_client.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_longer_than_the_cap_is_refused_and_one_within_it_read() {
        let mut short: &[u8] = b"{\"code\": 0}\nrest";
        assert_eq!(
            read_line(&mut short, 64).await.unwrap(),
            b"{\"code\": 0}\n".to_vec()
        );
        let long = vec![b'x'; 200];
        let mut reader: &[u8] = &long;
        assert!(
            read_line(&mut reader, 64)
                .await
                .unwrap_err()
                .contains("longer")
        );
        let mut cut: &[u8] = b"{\"co";
        assert_eq!(
            read_line(&mut cut, 64).await.unwrap_err(),
            "the worker exited"
        );
    }

    #[test]
    fn the_script_is_unpacked_where_the_lane_runs_it() {
        let path = script().unwrap();
        assert!(path.is_file());
    }
}
