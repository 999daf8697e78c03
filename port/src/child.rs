//! Servers in child processes: the testbed itself (`serve`, `serve --backend`, or a baseline
//! with `bench-target`) or any server that prints its address first (the Python grpcio
//! server). Used by the latency runs and the multi-process rollout. A child is killed when
//! dropped.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The signals [`ChildServer::signal`] sends.
pub use nix::sys::signal::Signal;

/// A server process and the address it listens on.
#[derive(Debug)]
pub struct ChildServer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    // Kept open so the child never writes into a closed pipe; `next_line` reads on from it.
    stdout: BufReader<ChildStdout>,
}

impl ChildServer {
    /// Runs the testbed executable `exe` with `args` (`serve` or `bench-target` on port 0).
    pub async fn testbed(exe: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command.args(args).env("RUST_LOG", "warn");
        Self::spawn(command, &format!("testbed {}", args.join(" "))).await
    }

    /// Starts `command` and reads its first line, which must end with the address it listens
    /// on (`testbed serving WHAT on ADDR`; the Python server prints the same). `what` names it
    /// in errors.
    pub async fn spawn(mut command: Command, what: &str) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let stdout = child.stdout.take().context("child has no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => bail!("{what} exited before it listened"),
            Ok(Err(err)) => bail!("cannot read from {what}: {err}"),
            Err(_) => bail!("{what} did not listen within 60 s"),
        }
        let addr = line
            .split_whitespace()
            .last()
            .and_then(|word| word.parse().ok())
            .with_context(|| format!("{what} printed {line:?}, not its address"))?;
        Ok(Self {
            addr,
            child,
            stdout,
        })
    }

    /// The next line the server printed after the first (the admin API's address, say),
    /// without its line end; waits at most 60 s.
    pub async fn next_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(60), self.stdout.read_line(&mut line)).await
        {
            Ok(Ok(n)) if n > 0 => Ok(line.trim_end().to_string()),
            Ok(Ok(_)) => bail!("the server closed its output"),
            Ok(Err(err)) => bail!("cannot read the server's output: {err}"),
            Err(_) => bail!("the server printed no further line within 60 s"),
        }
    }

    /// The server's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `signal` to the server: SIGSTOP freezes it as a hung host would (its sockets stay
    /// open, nothing answers), SIGCONT lets it go on.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.child.id().context("the child already exited")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        nix::sys::signal::kill(pid, signal)
            .with_context(|| format!("cannot send {signal} to {pid}"))
    }

    /// Asks the server to stop (SIGTERM: in-flight requests finish) and waits for it to exit.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        Ok(self.child.wait().await?)
    }

    /// Kills the server at once (SIGKILL), as a crash would, and reaps it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot kill the child")
    }
}
