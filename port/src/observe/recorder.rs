//! The traffic recorder (`serve --record FILE`): a sample of the calls written as a traffic file
//! that `testbed replay` reads ([`compat::traffic`]). The [`ObserveLayer`](super::ObserveLayer)
//! keeps a chosen call's messages as they pass (within caps), the call's metadata with secrets
//! left out, how it ended and who served it; the writer thread decodes the messages with the
//! method's descriptors (decompressing gzip, deflate and zstd ones) into protobuf JSON and
//! writes one line per call, rotating the file by size.
//!
//! Every resource is bounded: calls being recorded at once (`--record-concurrent`), bytes kept
//! per call and direction (`--record-max-call-bytes`) and messages (`--record-max-messages`),
//! bytes waiting for the writer (`--record-queue-bytes`), the files on disk
//! (`--record-max-bytes` × `--record-files`). A call past a cap is not held up: it is recorded
//! as truncated (replay skips it) or not at all, and counted.

use super::message_json::{encoding, json};
use super::methods::Method;
use super::record::Capture;
use super::rotating::Rotating;
use super::writer::{Queue, Sink};
use anyhow::Context;
use compat::probe::MethodPattern;
use compat::traffic::Call;
use http::HeaderMap;
use prost_reflect::{MessageDescriptor, MethodDescriptor};
use router::Routed;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use time::format_description::well_known::Rfc3339;

/// The flags of `testbed serve` for recording traffic.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordOptions {
    /// Record calls to FILE (appended to) as a traffic file for `testbed replay`: one JSON line
    /// per call with its method, metadata (secrets left out), request and reply messages as
    /// protobuf JSON, status, duration and the version that served it. Off by default. Only
    /// methods the gateway knows the descriptors of are recorded (not grpc.* services).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// The share of calls recorded, above 0 and at most 1 (0.01: one call in 100, evenly
    /// spread).
    #[arg(long, value_name = "SHARE", default_value_t = 1.0, value_parser = parse_rate)]
    pub record_rate: f64,
    /// Record only methods matching PATTERN (repeatable): pkg.Service/Method or
    /// Service/Method, globs allowed (Shop/Get*).
    #[arg(long, value_name = "PATTERN", value_parser = MethodPattern::parse)]
    pub record_method: Vec<MethodPattern>,
    /// Never record methods matching PATTERN (repeatable; as --record-method).
    #[arg(long, value_name = "PATTERN", value_parser = MethodPattern::parse)]
    pub record_skip: Vec<MethodPattern>,
    /// Record this metadata entry's value although its name looks like a secret (repeatable).
    /// By default names containing authorization, cookie, token, secret, key or password are
    /// left out (listed under "redacted"), and so are binary (-bin) values.
    #[arg(long, value_name = "NAME", value_parser = super::header_name)]
    pub record_keep: Vec<http::HeaderName>,
    /// Leave this metadata entry out too (repeatable).
    #[arg(long, value_name = "NAME", value_parser = super::header_name)]
    pub record_redact: Vec<http::HeaderName>,
    /// Bytes per recording file: the line that would pass it goes to a new FILE, the old one
    /// becoming FILE.1 (FILE.1 FILE.2, ...).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = bytes_at_least_one)]
    pub record_max_bytes: u64,
    /// Recording files kept, FILE included; at a rotation the oldest is deleted.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = crate::server::at_least_one)]
    pub record_files: usize,
    /// Message bytes kept per call and direction (after decompression); a call with more is
    /// recorded as truncated, which replay does not send.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 10, value_parser = crate::server::at_least_one)]
    pub record_max_call_bytes: usize,
    /// Messages kept per call and direction; a call with more is recorded as truncated.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::server::at_least_one)]
    pub record_max_messages: usize,
    /// Calls being recorded at once; a call chosen while that many are is not recorded (and
    /// counted).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::server::at_least_one)]
    pub record_concurrent: usize,
    /// Message bytes of finished calls waiting for the writer at most; a call that finds no
    /// room is not recorded (counted and warned about).
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20, value_parser = crate::server::at_least_one)]
    pub record_queue_bytes: usize,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            record: None,
            record_rate: 1.0,
            record_method: Vec::new(),
            record_skip: Vec::new(),
            record_keep: Vec::new(),
            record_redact: Vec::new(),
            record_max_bytes: 64 << 20,
            record_files: 4,
            record_max_call_bytes: 256 << 10,
            record_max_messages: 64,
            record_concurrent: 64,
            record_queue_bytes: 32 << 20,
        }
    }
}

pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1.0 => Ok(rate),
        _ => Err(format!(
            "expected a share above 0 and at most 1 (0.01), got {text:?}"
        )),
    }
}

fn bytes_at_least_one(text: &str) -> Result<u64, String> {
    crate::server::at_least_one(text).map(|n| n as u64)
}

/// Parts of metadata names that mark their values as secrets.
const SECRET: [&str; 6] = [
    "authorization",
    "cookie",
    "token",
    "secret",
    "key",
    "password",
];

/// Request headers that are the transport's, not the caller's metadata.
const TRANSPORT: [&str; 10] = [
    "te",
    "content-type",
    "user-agent",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// What the recorder has done, for the log.
#[derive(Debug, Default)]
struct Counts {
    /// Calls not recorded because `--record-concurrent` were being recorded.
    busy: AtomicU64,
}

/// The recorder the observer holds.
#[derive(Debug)]
pub(crate) struct Recorder {
    options: RecordOptions,
    /// Calls seen that could be recorded, for the rate's even spread.
    seen: AtomicU64,
    /// Calls being recorded now.
    in_flight: Arc<AtomicUsize>,
    /// Message bytes of finished calls waiting for the writer.
    queued: Arc<AtomicUsize>,
    counts: Counts,
    queue: Queue<Finished>,
}

/// A call chosen for recording, while it runs; its slot is given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Recording {
    descriptor: MethodDescriptor,
    metadata: BTreeMap<String, String>,
    redacted: Vec<String>,
    request_encoding: Option<String>,
    slot: Arc<AtomicUsize>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.slot.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a recorded call ended, as the layer saw it.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) start: SystemTime,
    pub(crate) duration: Duration,
    pub(crate) code: tonic::Code,
    pub(crate) message: Option<String>,
    pub(crate) routed: Option<Routed>,
    pub(crate) request: Option<Capture>,
    pub(crate) reply: Option<Capture>,
    pub(crate) reply_encoding: Option<String>,
}

/// A finished call waiting for the writer.
#[derive(Debug)]
struct Finished {
    descriptor: MethodDescriptor,
    metadata: BTreeMap<String, String>,
    redacted: Vec<String>,
    request_encoding: Option<String>,
    ended: Ended,
    bytes: usize,
}

impl Recorder {
    /// Opens `options.record` (created if missing, appended to) and starts the writer.
    pub(crate) fn start(options: &RecordOptions) -> anyhow::Result<Option<Self>> {
        let Some(path) = &options.record else {
            return Ok(None);
        };
        let out = Rotating::open(path.clone(), options.record_max_bytes, options.record_files)
            .with_context(|| format!("--record: cannot open {}", path.display()))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let drained = queued.clone();
        let cap = options.record_max_call_bytes;
        let render = move |call: Finished| {
            drained.fetch_sub(call.bytes, Ordering::Relaxed);
            let mut line = traffic_call(call, cap).to_line().into_bytes();
            line.push(b'\n');
            Ok(Some(line))
        };
        let sink = Sink {
            what: "recording",
            queue_flag: "--record-queue-bytes",
        };
        let queue = Queue::start(
            sink,
            path.display().to_string(),
            // Bytes bound the queue; this only keeps empty calls from piling up without end.
            options.record_queue_bytes.clamp(1, 1 << 16),
            out,
            render,
        )
        .context("--record")?;
        Ok(Some(Recorder {
            options: options.clone(),
            seen: AtomicU64::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            queued,
            counts: Counts::default(),
            queue,
        }))
    }

    /// Whether the call of `method` arriving now with `headers` is recorded: its recording.
    pub(crate) fn begin(&self, method: &Method, headers: &HeaderMap) -> Option<Recording> {
        let descriptor = method.descriptor.as_ref()?;
        let o = &self.options;
        if descriptor.parent_service().full_name().starts_with("grpc.")
            || (!o.record_method.is_empty()
                && !o.record_method.iter().any(|p| p.matches(descriptor)))
            || o.record_skip.iter().any(|p| p.matches(descriptor))
        {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        // Call n is chosen when n × rate crosses a whole number: an even spread.
        let rate = o.record_rate;
        if o.record_rate < 1.0 && ((n + 1) as f64 * rate).floor() == (n as f64 * rate).floor() {
            return None;
        }
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= o.record_concurrent {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let busy = self.counts.busy.fetch_add(1, Ordering::Relaxed) + 1;
            if busy.is_power_of_two() {
                tracing::warn!(
                    calls = busy,
                    "recording: calls not recorded, --record-concurrent were being recorded"
                );
            }
            return None;
        }
        let (metadata, redacted) = self.metadata(headers);
        Some(Recording {
            descriptor: descriptor.clone(),
            metadata,
            redacted,
            request_encoding: encoding(headers),
            slot: self.in_flight.clone(),
        })
    }

    /// The caps of a recorded call's captures: bytes and messages per direction.
    pub(crate) fn caps(&self) -> (usize, usize) {
        (
            self.options.record_max_call_bytes,
            self.options.record_max_messages,
        )
    }

    /// The call's metadata to record, and the names left out.
    fn metadata(&self, headers: &HeaderMap) -> (BTreeMap<String, String>, Vec<String>) {
        let (mut kept, mut redacted) = (BTreeMap::new(), Vec::new());
        for (name, value) in headers {
            let name = name.as_str();
            if TRANSPORT.contains(&name) || name.starts_with("grpc-") {
                continue;
            }
            let secret = self.options.record_redact.iter().any(|n| n == name)
                || (SECRET.iter().any(|s| name.contains(s))
                    && !self.options.record_keep.iter().any(|n| n == name));
            match value.to_str() {
                Ok(text) if !secret && !name.ends_with("-bin") && !kept.contains_key(name) => {
                    kept.insert(name.to_string(), text.to_string());
                }
                _ => {
                    if !redacted.iter().any(|r| r == name) {
                        redacted.push(name.to_string());
                    }
                }
            }
        }
        (kept, redacted)
    }

    /// A recorded call ended: queued for the writer, unless the queue is full.
    pub(crate) fn finish(&self, recording: Recording, ended: Ended) -> bool {
        let size = |c: &Option<Capture>| {
            c.as_ref().map_or(0, |c| {
                c.messages.iter().map(|(p, _)| p.len()).sum::<usize>()
            })
        };
        let bytes = size(&ended.request) + size(&ended.reply);
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.options.record_queue_bytes && before > 0 {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            return self.queue.push_dropped();
        }
        let finished = Finished {
            descriptor: recording.descriptor.clone(),
            metadata: recording.metadata.clone(),
            redacted: recording.redacted.clone(),
            request_encoding: recording.request_encoding.clone(),
            ended,
            bytes,
        };
        drop(recording);
        if self.queue.push(finished) {
            true
        } else {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            false
        }
    }
}

/// The traffic-file line of a finished call (in the writer thread).
fn traffic_call(call: Finished, cap: usize) -> Call {
    let Finished {
        descriptor: m,
        metadata,
        redacted,
        request_encoding,
        ended,
        ..
    } = call;
    let mut truncated = None;
    let mut messages = |capture: Option<Capture>,
                        encoding: &Option<String>,
                        what: &str,
                        desc: MessageDescriptor| {
        let Some(capture) = capture else {
            return Vec::new();
        };
        if let Some(cut) = &capture.cut {
            truncated.get_or_insert_with(|| format!("{what}: {cut}"));
        }
        let mut out = Vec::new();
        for (i, (payload, compressed)) in capture.messages.into_iter().enumerate() {
            match json(&payload, compressed, encoding.as_deref(), &desc, cap) {
                Ok(value) => out.push(value),
                Err(why) => {
                    truncated.get_or_insert_with(|| format!("{what} {}: {why}", i + 1));
                    break;
                }
            }
        }
        out
    };
    let requests = messages(ended.request, &request_encoding, "request", m.input());
    let responses = messages(ended.reply, &ended.reply_encoding, "reply", m.output());
    Call {
        name: None,
        method: format!("{}/{}", m.parent_service().full_name(), m.name()),
        metadata,
        redacted,
        requests,
        code: Some(compat::probe::code_name(ended.code)),
        message: ended.message.filter(|m| !m.is_empty()),
        responses,
        at: time::OffsetDateTime::from(ended.start)
            .format(&Rfc3339)
            .ok(),
        // Whole microseconds: a float of milliseconds with no binary noise in its digits.
        duration_ms: Some(ended.duration.as_micros() as f64 / 1e3),
        version: ended.routed.as_ref().map(|r| r.version.to_string()),
        backend: ended.routed.as_ref().map(|r| r.backend.to_string()),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::methods::MethodLabels;

    /// A method `a.v1.S/M` of a small pool, as the observer knows it.
    fn method() -> Method {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(
            dir.path().join("a.proto"),
            "syntax = \"proto3\"; package a.v1; message E { string s = 1; }
             service S { rpc M(E) returns (E); }",
        )
        .expect("a proto");
        let fds = protox::compile(["a.proto"], [dir.path()]).expect("it compiles");
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(fds).expect("a pool");
        let descriptor = pool
            .get_service_by_name("a.v1.S")
            .and_then(|s| s.methods().next());
        Method {
            labels: MethodLabels::unknown(),
            deprecated: false,
            descriptor,
        }
    }

    fn ended(payload: Vec<u8>) -> Ended {
        let mut request = crate::observe::record::Framing::capturing(1 << 20, 4);
        let mut framed = vec![0];
        framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        framed.extend_from_slice(&payload);
        request.feed(&framed);
        Ended {
            start: SystemTime::now(),
            duration: Duration::from_millis(1),
            code: tonic::Code::Ok,
            message: None,
            routed: None,
            request: request.capture,
            reply: None,
            reply_encoding: None,
        }
    }

    #[test]
    fn calls_recorded_at_once_and_bytes_waiting_are_capped() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let options = RecordOptions {
            record: Some(dir.path().join("t.jsonl")),
            record_concurrent: 1,
            record_queue_bytes: 100,
            ..RecordOptions::default()
        };
        let recorder = Recorder::start(&options)
            .expect("it starts")
            .expect("a recorder");
        let m = method();
        let headers = HeaderMap::new();
        let first = recorder
            .begin(&m, &headers)
            .expect("the first call is recorded");
        assert!(
            recorder.begin(&m, &headers).is_none(),
            "one at a time (--record-concurrent 1)"
        );
        drop(first);
        assert!(recorder.begin(&m, &headers).is_some(), "its slot came back");
        let two = RecordOptions {
            record_concurrent: 2,
            ..options
        };
        let recorder = Recorder::start(&two)
            .expect("it starts")
            .expect("a recorder");
        let (a, b) = (recorder.begin(&m, &headers), recorder.begin(&m, &headers));
        let (a, b) = (a.expect("recorded"), b.expect("recorded"));
        // Two calls finished at once: the second would pass the 100 bytes waiting.
        assert!(recorder.finish(a, ended(vec![b'x'; 80])));
        assert!(
            !recorder.finish(b, ended(vec![b'y'; 80])),
            "--record-queue-bytes 100"
        );
        assert_eq!(
            recorder.in_flight.load(Ordering::Relaxed),
            0,
            "both slots given back"
        );
    }

    #[test]
    fn secrets_and_transport_headers_are_left_out_of_the_metadata() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let options = RecordOptions {
            record: Some(dir.path().join("t.jsonl")),
            record_keep: vec![http::HeaderName::from_static("x-api-key")],
            record_redact: vec![http::HeaderName::from_static("x-tenant")],
            ..RecordOptions::default()
        };
        let recorder = Recorder::start(&options)
            .expect("it starts")
            .expect("a recorder");
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer s"),
            ("cookie", "c=1"),
            ("x-session-token", "t"),
            ("x-api-key", "k"),
            ("x-tenant", "a"),
            ("x-trace-bin", "AAA="),
            ("x-region", "eu"),
            ("te", "trailers"),
            ("grpc-timeout", "1S"),
            ("user-agent", "grpc-go"),
        ] {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        let (kept, mut redacted) = recorder.metadata(&headers);
        redacted.sort();
        assert_eq!(
            kept,
            BTreeMap::from([
                ("x-api-key".to_string(), "k".to_string()),
                ("x-region".to_string(), "eu".to_string())
            ])
        );
        assert_eq!(
            redacted,
            [
                "authorization",
                "cookie",
                "x-session-token",
                "x-tenant",
                "x-trace-bin"
            ]
        );
    }
}
