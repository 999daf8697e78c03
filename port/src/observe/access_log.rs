//! The access log: one JSON line per call, written by [`super::writer`]'s thread from a bounded
//! queue, so that a slow disk or a full pipe never holds a call up. A line that finds the queue
//! full is dropped and counted (`testbed_access_log_dropped_total`), and the writer warns with
//! the count when it catches up.

use super::record::{CallRecord, code_name};
use super::writer::{Queue, Sink};
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use time::format_description::well_known::Rfc3339;

/// Lines waiting for the writer at most, by default (`--access-log-queue`).
pub const DEFAULT_QUEUE: usize = 4096;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output (`-`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

impl std::str::FromStr for Destination {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "-" => Self::Stdout,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

/// The sending side: what the observer holds.
#[derive(Debug)]
pub(crate) struct AccessLog(Queue<CallRecord>);

impl AccessLog {
    /// Opens `destination` (a file is created if missing, appended to) and starts the writer;
    /// at most `queue` lines wait for it.
    pub(crate) fn start(destination: &Destination, queue: usize) -> anyhow::Result<Self> {
        let out: Box<dyn Write + Send> = match destination {
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("--access-log: cannot open {}", path.display()))?,
            ),
        };
        let name = match destination {
            Destination::Stdout => "stdout".to_string(),
            Destination::File(path) => path.display().to_string(),
        };
        let sink = Sink {
            what: "access log",
            queue_flag: "--access-log-queue",
        };
        let render = |call: CallRecord| line(&call).map(Some).map_err(std::io::Error::other);
        Queue::start(sink, name, queue, std::io::BufWriter::new(out), render)
            .context("--access-log")
            .map(Self)
    }

    /// Queues `call`'s line; returns false when the queue was full and the line dropped.
    pub(crate) fn log(&self, call: CallRecord) -> bool {
        self.0.push(call)
    }
}

/// One line of the log.
#[derive(Debug, Serialize)]
struct Line<'a> {
    time: String,
    peer: Option<String>,
    user_agent: Option<&'a str>,
    authority: Option<&'a str>,
    method: Option<&'a str>,
    requirement: Option<&'a str>,
    backend: Option<&'a str>,
    version: Option<&'a str>,
    status: &'static str,
    code: i32,
    duration_ms: f64,
    bytes_in: u64,
    bytes_out: u64,
    messages_in: u64,
    messages_out: u64,
}

/// A header's value as text (not visible ASCII: replaced, lossily, as serde_json needs UTF-8).
fn text(value: Option<&http::HeaderValue>) -> Option<std::borrow::Cow<'_, str>> {
    value.map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// The line of `call`, as JSON.
pub(crate) fn line(call: &CallRecord) -> serde_json::Result<Vec<u8>> {
    let user_agent = text(call.user_agent.as_ref());
    let requirement = text(call.requirement.as_ref());
    let time = time::OffsetDateTime::from(call.start)
        .format(&Rfc3339)
        .unwrap_or_default();
    let line = Line {
        time,
        peer: call.peer.map(|p| p.to_string()),
        user_agent: user_agent.as_deref(),
        authority: call.authority.as_deref(),
        method: call.path.as_ref().map(|p| p.path()),
        requirement: requirement.as_deref(),
        backend: call.routed.as_ref().map(|r| &*r.backend),
        version: call.routed.as_ref().map(|r| &*r.version),
        status: code_name(call.code),
        code: call.code as i32,
        // Whole microseconds: a float of milliseconds with no binary noise in its digits.
        duration_ms: call.duration.as_micros() as f64 / 1e3,
        bytes_in: call.bytes_in,
        bytes_out: call.bytes_out,
        messages_in: call.messages_in,
        messages_out: call.messages_out,
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    Ok(bytes)
}
