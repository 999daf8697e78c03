//! A proxy running as a child process of the testbed.

use crate::ProxyKind;
use crate::config::{self, Tuning};
use crate::plan::{Arrangement, RoutePlan};
use crate::ports::free_loopback_port;
use anyhow::{Context, bail};
use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

mod haproxy_runtime;
mod reload;
pub use reload::Reconfigured;

/// How long a proxy may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long `stop` waits for a graceful exit before killing.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Attempts at binding a free port (another socket can take it between the check and the bind).
const PORT_ATTEMPTS: usize = 4;
/// The log lines quoted in errors.
const LOG_TAIL_LINES: usize = 20;
/// Linux reports CPU times in /proc in units of USER_HZ, which is 100 on every architecture.
const USER_HZ: u64 = 100;

/// A proxy process (and, for nginx, its workers: all in one process group of their own) on a
/// 127.0.0.1 port, its configuration and log in a temporary directory that is removed with it.
/// Dropping it kills the whole process group.
#[derive(Debug)]
pub struct RunningProxy {
    kind: ProxyKind,
    addr: SocketAddr,
    child: Child,
    /// The process group: the child's pid, since it leads a group of its own.
    group: Pid,
    /// Set once the child has been reaped, after which its pid may be reused and the group must
    /// not be signalled.
    reaped: bool,
    /// The configuration files as last written.
    files: Vec<config::ConfigFile>,
    /// The route plan they render.
    plan: RoutePlan,
    /// What differs from the proxy's defaults.
    tuning: Tuning,
    dir: tempfile::TempDir,
}

/// Why one attempt at starting failed.
enum Attempt {
    /// The port was taken before the proxy bound it: try another.
    PortTaken(anyhow::Error),
    /// Anything else.
    Failed(anyhow::Error),
}

impl RunningProxy {
    /// Writes `kind`'s configuration for `arrangement` into a new temporary directory, starts
    /// the proxy on a free 127.0.0.1 port and waits until it answers an HTTP/2 request (a gRPC
    /// health check, whatever its answer; the backends need not be up). Fails with the binary's
    /// [`crate::MissingTool`] when the proxy is not installed, and with the tail of the proxy's
    /// log when it exits or does not answer within 30 s.
    pub async fn start(kind: ProxyKind, arrangement: &Arrangement) -> anyhow::Result<Self> {
        Self::start_tuned(kind, arrangement, Tuning::default()).await
    }

    /// [`start`](Self::start) with `tuning` changed from the proxy's defaults. Fails at once
    /// when the proxy cannot express it (HAProxy 2.6 has no limit of requests per client
    /// connection).
    pub async fn start_tuned(
        kind: ProxyKind,
        arrangement: &Arrangement,
        tuning: Tuning,
    ) -> anyhow::Result<Self> {
        if kind == ProxyKind::Haproxy && tuning.requests_per_connection.is_some() {
            bail!("HAProxy 2.6 has no setting for the requests per client connection");
        }
        let binary = kind.find()?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::attempt(kind, &binary, arrangement, tuning).await {
                Ok(proxy) => return Ok(proxy),
                Err(Attempt::PortTaken(err)) => last = Some(err),
                Err(Attempt::Failed(err)) => return Err(err),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context(format!(
                "{kind} could not bind a free port in {PORT_ATTEMPTS} attempts"
            )))
    }

    async fn attempt(
        kind: ProxyKind,
        binary: &Path,
        arrangement: &Arrangement,
        tuning: Tuning,
    ) -> Result<Self, Attempt> {
        let failed = Attempt::Failed;
        let dir = tempfile::Builder::new()
            .prefix(&format!("testbed-{kind}-"))
            .tempdir()
            .context("cannot create the proxy's temporary directory")
            .map_err(failed)?;
        let addr = free_loopback_port()
            .context("cannot find a free port on 127.0.0.1")
            .map_err(failed)?;
        let plan = arrangement.plan();
        let files = config::render(kind, &plan, addr, dir.path(), &tuning);
        for file in &files {
            write_atomically(dir.path(), file).map_err(failed)?;
        }
        let config_path = dir.path().join(config::file_name(kind));
        let log_path = dir.path().join("proxy.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))
            .map_err(failed)?;
        let log_err = log
            .try_clone()
            .context("cannot share the log file")
            .map_err(failed)?;
        let child = Command::new(binary)
            .args(config::args(kind, &config_path, dir.path()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))
            .map_err(failed)?;
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .context("the proxy has no pid")
            .map_err(failed)?;
        let mut proxy = RunningProxy {
            kind,
            addr,
            child,
            group: Pid::from_raw(pid),
            reaped: false,
            files,
            plan,
            tuning,
            dir,
        };
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    async fn wait_ready(&mut self) -> Result<(), Attempt> {
        let started = Instant::now();
        let mut last_error = String::from("no attempt yet");
        while started.elapsed() < READY_WITHIN {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    let log = self.log();
                    let err = anyhow::anyhow!(
                        "{} exited with {status} before it answered on {}; its log ends:\n{}",
                        self.kind,
                        self.addr,
                        tail(&log)
                    );
                    let lower = log.to_lowercase();
                    return Err(
                        if lower.contains("address already in use") || lower.contains("cannot bind")
                        {
                            Attempt::PortTaken(err)
                        } else {
                            Attempt::Failed(err)
                        },
                    );
                }
                Ok(None) => {}
                Err(err) => {
                    return Err(Attempt::Failed(anyhow::anyhow!(
                        "cannot check on {}: {err}",
                        self.kind
                    )));
                }
            }
            match tokio::time::timeout(Duration::from_secs(2), http2_probe(self.addr)).await {
                Ok(Ok(_status)) => return Ok(()),
                Ok(Err(err)) => last_error = format!("{err:#}"),
                Err(_) => last_error = "no answer within 2 s".to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Attempt::Failed(anyhow::anyhow!(
            "{} did not answer on {} within {} s (last: {last_error}); its log ends:\n{}",
            self.kind,
            self.addr,
            READY_WITHIN.as_secs(),
            tail(&self.log())
        )))
    }

    /// Which proxy this is.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// Where it listens (h2c, prior knowledge).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The main process's id (nginx's master; its workers are in the same process group).
    pub fn pid(&self) -> Option<u32> {
        if self.reaped { None } else { self.child.id() }
    }

    /// Its configuration as now written: every file, each after a `# NAME` line (Envoy's
    /// routes and clusters are files of their own).
    pub fn config(&self) -> String {
        config::joined(&self.files)
    }

    /// The temporary directory holding its configuration, log and (nginx) pid file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("proxy.log")
    }

    /// CPU time (user + system) used so far by every process of the proxy's process group
    /// (nginx's master and workers), from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let ticks: u64 = self.group_processes()?.iter().map(|(_, ticks)| ticks).sum();
        Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
    }

    /// How many processes the proxy has now: its main process and every worker, old workers
    /// still finishing their connections after a reload included (nginx runs a master and two
    /// workers, HAProxy and Envoy one process each).
    pub fn process_count(&self) -> anyhow::Result<usize> {
        Ok(self.group_processes()?.len())
    }

    /// Waits until the proxy runs only its steady processes (nginx: the master and its
    /// [`WORKERS`](config::nginx::WORKERS); HAProxy and Envoy: one), so that no old worker is
    /// left serving the routes of a configuration it replaced; at most `within`. How long that
    /// took.
    pub async fn wait_settled(&self, within: Duration) -> anyhow::Result<Duration> {
        let steady = match self.kind {
            ProxyKind::Nginx => 1 + config::nginx::WORKERS,
            ProxyKind::Haproxy | ProxyKind::Envoy => 1,
        };
        let started = std::time::Instant::now();
        loop {
            let now = self.process_count()?;
            if now <= steady {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!(
                    "{} still runs {now} processes after {within:?} (steady: {steady}): an old \
                     worker still holds connections",
                    self.kind
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pids of every process of the proxy now (to pin them to CPUs, say).
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .group_processes()?
            .into_iter()
            .map(|(pid, _)| pid)
            .collect())
    }

    /// The pid and the user + system ticks of each process in the proxy's process group.
    fn group_processes(&self) -> anyhow::Result<Vec<(u32, u64)>> {
        if self.reaped {
            bail!("{} has exited", self.kind);
        }
        let group = self.group.as_raw();
        let mut processes = Vec::new();
        for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
            let Ok(entry) = entry else { continue };
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            // A process may exit between the listing and the read: skip it.
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((pgrp, used)) = parse_stat(&stat)
                && pgrp == group
            {
                processes.push((pid, used));
            }
        }
        Ok(processes)
    }

    /// Stops the proxy: SIGTERM to its process group (nginx's fast shutdown; HAProxy and Envoy
    /// exit), then SIGKILL if it has not exited within 10 s. Returns the main process's status.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let status = match tokio::time::timeout(STOP_WITHIN, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.signal(Signal::SIGKILL);
                self.child.wait().await
            }
        };
        self.reaped = true;
        status.with_context(|| format!("cannot wait for {}", self.kind))
    }

    fn signal(&self, signal: Signal) {
        if !self.reaped {
            // The group may already be gone; nothing to do then.
            let _ = killpg(self.group, signal);
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        // Unreaped, the leader's pid (the group id) cannot have been reused.
        self.signal(Signal::SIGKILL);
    }
}

/// The process group and user + system ticks from the text of `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(i32, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state, ppid, pgrp (field 5), ..., utime (field 14), stime (field 15).
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

/// Replaces `file` in `dir` by writing it beside its final name and renaming it over it, so that
/// a reader (Envoy watches for exactly this move) never sees half a file.
fn write_atomically(dir: &Path, file: &config::ConfigFile) -> anyhow::Result<()> {
    let path = dir.join(file.name);
    let staging = dir.join(format!(".{}.new", file.name));
    std::fs::write(&staging, &file.text)
        .with_context(|| format!("cannot write {}", staging.display()))?;
    std::fs::rename(&staging, &path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// The longest reply read from a proxy's admin socket (a map or a stats page of a few routes
/// is a few KiB).
const MAX_ADMIN_REPLY_BYTES: u64 = 16 * 1024 * 1024;

/// Sends `request` on a new connection to the Unix socket `socket` and reads the reply until
/// the peer closes (both proxies' admin interfaces answer one request per connection); `who`
/// names the interface in errors.
async fn unix_exchange(socket: &Path, request: &[u8], who: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot reach {who} at {}", socket.display()))?;
    stream
        .write_all(request)
        .await
        .with_context(|| format!("cannot write to {who}"))?;
    let mut reply = String::new();
    let read = (&mut stream)
        .take(MAX_ADMIN_REPLY_BYTES + 1)
        .read_to_string(&mut reply)
        .await
        .with_context(|| format!("cannot read {who}'s reply"))?;
    if read as u64 > MAX_ADMIN_REPLY_BYTES {
        bail!("{who}'s reply is over {MAX_ADMIN_REPLY_BYTES} bytes; not read further");
    }
    Ok(reply)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    if lines.is_empty() {
        "(empty)".to_string()
    } else {
        lines[start..].join("\n")
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/2 request to `addr` (prior knowledge): a gRPC health check. Any response proves
/// the proxy is listening and speaks HTTP/2; its HTTP status is returned.
async fn http2_probe(addr: SocketAddr) -> anyhow::Result<http::StatusCode> {
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    let (send, connection) = h2::client::handshake(tcp)
        .await
        .context("HTTP/2 handshake")?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut send = send.ready().await.context("HTTP/2 connection")?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .context("build the probe request")?;
    let (response, mut body) = send.send_request(request, false).context("send headers")?;
    // An empty HealthCheckRequest: service "" (the server as a whole).
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .context("send the message")?;
    let response = response.await.context("response headers")?;
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "1234 (nginx: worker (x)) S 1 1230 1230 0 -1 4194624 100 0 0 0 7 3 0 0 20 0 1";
        assert_eq!(parse_stat(stat), Some((1230, 10)));
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines() {
        let log: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let tail = tail(&log);
        assert!(tail.starts_with("line 10"));
        assert!(tail.ends_with("line 29"));
    }
}
