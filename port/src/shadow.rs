//! Shadow traffic (`serve --shadow NAME`, or the admin API's `Shadow` call): a sample of the
//! live unpinned calls (no `x-api-version`) of methods safe to repeat is copied to a candidate
//! backend and to a second backend of the primary's version (`--shadow-secondary`; else the
//! primary's backend again), and their replies are compared with the primary's as
//! `testbed replay` compares them ([`compat::replay::Tally`]): field by field with the
//! gateway's descriptors, what differs between the two old answers being noise.
//!
//! The primary reply is never delayed or changed: the [`ObserveLayer`](crate::observe) keeps a
//! chosen call's messages as they pass (within `--shadow-max-call-bytes` and
//! `--shadow-max-messages`), and only once the call has ended is a copy queued for the
//! [`worker`]. At most `--shadow-held` calls are held at once, from the first byte kept to the
//! comparison; a call chosen while that many are is dropped and counted, and so is a call past
//! a cap. Safe to repeat means `idempotency_level` `NO_SIDE_EFFECTS` or `IDEMPOTENT`, or named
//! by `--shadow-method`; `--shadow-unsafe` copies every method (the candidate and the secondary
//! then execute writes too).

pub(crate) mod metrics;
mod report;
mod worker;

pub use report::{MethodCount, ShadowReport, render};

use crate::observe::{Capture, Ended, Method, decompress};
use compat::probe::{Answer, Header, MethodPattern, safe_to_repeat};
use compat::replay::{Ignore, Tally};
use http::HeaderMap;
use prost_reflect::MethodDescriptor;
use router::RouterHandle;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

/// The flags of `testbed serve` for shadow traffic.
#[derive(Debug, Clone, clap::Args)]
pub struct ShadowOptions {
    /// Copy a sample of live unpinned calls of methods safe to repeat to backend NAME (an
    /// upstream's name; give it `;weight=0` so that it takes no live calls itself) and compare
    /// its replies with the primary's; `testbed route shadow-report` reads what differs. Off
    /// by default; the admin API's `route shadow` starts, changes or stops it at runtime.
    #[arg(long, value_name = "NAME")]
    pub shadow: Option<String>,
    /// A second backend of the primary's version, asked too: what differs between its reply
    /// and the primary's is noise. Without it the primary's backend is asked again.
    #[arg(long, value_name = "NAME", requires = "shadow")]
    pub shadow_secondary: Option<String>,
    /// The share of eligible calls copied, above 0 and at most 1 (evenly spread).
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT_RATE, value_parser = crate::observe::parse_rate)]
    pub shadow_rate: f64,
    /// Copy calls of methods matching PATTERN too (repeatable; pkg.Service/Method or
    /// Service/Method, globs allowed), though they do not declare themselves safe to repeat.
    #[arg(long, value_name = "PATTERN", value_parser = MethodPattern::parse)]
    pub shadow_method: Vec<MethodPattern>,
    /// Copy calls of every method, those that may change state too: the candidate and the
    /// secondary then execute them as well.
    #[arg(long)]
    pub shadow_unsafe: bool,
    /// Reply fields not compared: [METHOD:]PATH, PATH a glob over field paths without indices
    /// (`created_at`, `lines[].id`, `*.updated_at`), as `testbed replay --ignore`.
    #[arg(long, value_name = "[METHOD:]PATH", value_parser = Ignore::parse)]
    pub shadow_ignore: Vec<Ignore>,
    /// Calls held for shadowing at once, from the first message kept until the comparison
    /// ends; a call chosen while that many are is not copied (counted as busy).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::server::at_least_one)]
    pub shadow_held: usize,
    /// Copies sent at once (to the candidate and the secondary each).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = crate::server::at_least_one)]
    pub shadow_concurrent: usize,
    /// Message bytes kept per call and direction; a call with more is not copied (counted as
    /// too large).
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 10, value_parser = crate::server::at_least_one)]
    pub shadow_max_call_bytes: usize,
    /// Messages kept per call and direction; a call with more is not copied.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = crate::server::at_least_one)]
    pub shadow_max_messages: usize,
    /// Each copy's deadline, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = crate::server::at_least_one)]
    pub shadow_timeout_ms: usize,
}

/// The share of eligible calls copied when nothing says otherwise.
pub const DEFAULT_RATE: f64 = 0.1;

impl Default for ShadowOptions {
    fn default() -> Self {
        ShadowOptions {
            shadow: None,
            shadow_secondary: None,
            shadow_rate: DEFAULT_RATE,
            shadow_method: Vec::new(),
            shadow_unsafe: false,
            shadow_ignore: Vec::new(),
            shadow_held: 64,
            shadow_concurrent: 8,
            shadow_max_call_bytes: 256 << 10,
            shadow_max_messages: 64,
            shadow_timeout_ms: 5000,
        }
    }
}

/// Where copies go now.
#[derive(Debug, Clone)]
pub struct ShadowTarget {
    /// The candidate backend (an upstream's name).
    pub candidate: String,
    /// The second old backend, if one is named.
    pub secondary: Option<String>,
    /// The share of eligible calls copied.
    pub rate: f64,
}

/// What happened to the calls shadowing saw, counted.
#[derive(Debug, Default)]
struct Counts {
    eligible: AtomicU64,
    sampled: AtomicU64,
    busy: AtomicU64,
    too_large: AtomicU64,
    not_served: AtomicU64,
    served_by_candidate: AtomicU64,
    cancelled: AtomicU64,
    binary_metadata: AtomicU64,
    compared: AtomicU64,
}

/// One shadowing session: its target, counts and tallies; a new target starts a new one.
#[derive(Debug)]
struct Session {
    target: ShadowTarget,
    since: SystemTime,
    counts: Counts,
    /// Calls of methods not safe to repeat, not copied, by method.
    not_safe: Mutex<BTreeMap<String, u64>>,
    tallies: Mutex<Vec<Tally>>,
}

/// Shadowing on one gateway: what the observe layer asks and the worker's queue.
#[derive(Debug)]
pub struct Shadow {
    options: ShadowOptions,
    router: RouterHandle,
    session: RwLock<Option<Arc<Session>>>,
    /// Eligible calls seen, for the rate's even spread.
    seen: AtomicU64,
    /// Calls held now (see `--shadow-held`).
    held: Arc<AtomicUsize>,
    jobs: mpsc::UnboundedSender<worker::Job>,
}

/// A call chosen for shadowing, while it runs; its slot is given back when the comparison ends
/// (or the call is dropped).
#[derive(Debug)]
pub(crate) struct Shadowing {
    session: Arc<Session>,
    descriptor: MethodDescriptor,
    headers: Vec<Header>,
    request_encoding: Option<String>,
    _slot: Slot,
}

/// One of `--shadow-held`, given back when dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Request headers not copied: the transport's, gRPC's own, and the version pin.
const NOT_COPIED: [&str; 7] = [
    "te",
    "content-type",
    "user-agent",
    "host",
    "content-length",
    "connection",
    router::API_VERSION_HEADER,
];

impl Shadow {
    /// Shadowing over `router`'s table, started on `options.shadow` if it names a candidate
    /// (an error when the table has no such backend); the worker runs on the current tokio
    /// runtime.
    pub(crate) fn start(
        options: &ShadowOptions,
        router: RouterHandle,
    ) -> anyhow::Result<Arc<Self>> {
        let (jobs, queue) = mpsc::unbounded_channel();
        let shadow = Arc::new(Shadow {
            options: options.clone(),
            router,
            session: RwLock::new(None),
            seen: AtomicU64::new(0),
            held: Arc::new(AtomicUsize::new(0)),
            jobs,
        });
        if let Some(candidate) = &options.shadow {
            let target = ShadowTarget {
                candidate: candidate.clone(),
                secondary: options.shadow_secondary.clone(),
                rate: options.shadow_rate,
            };
            shadow
                .set(Some(target))
                .map_err(|why| anyhow::anyhow!("--shadow: {why}"))?;
        }
        worker::start(Arc::downgrade(&shadow), queue, options.shadow_concurrent);
        Ok(shadow)
    }

    /// Starts shadowing to `target` (clearing what an earlier one found), or stops it; an
    /// error, and nothing changed, when a backend it names is not in the table or the rate is
    /// not a share.
    pub fn set(&self, target: Option<ShadowTarget>) -> Result<(), String> {
        if let Some(target) = &target {
            self.check(target)?;
        }
        let session = target.map(|target| {
            Arc::new(Session {
                target,
                since: SystemTime::now(),
                counts: Counts::default(),
                not_safe: Mutex::new(BTreeMap::new()),
                tallies: Mutex::new(Vec::new()),
            })
        });
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = session;
        Ok(())
    }

    /// Whether `target` names backends of the table, two different ones, and a share.
    fn check(&self, target: &ShadowTarget) -> Result<(), String> {
        if !(target.rate > 0.0 && target.rate <= 1.0) {
            return Err(format!(
                "the rate must be above 0 and at most 1, not {}",
                target.rate
            ));
        }
        let table = self.router.table();
        let names: Vec<String> = table.backends().into_iter().map(|b| b.name).collect();
        let known = |name: &str| {
            names
                .iter()
                .any(|b| crate::route_checks::belongs_to(b, name))
        };
        for name in std::iter::once(&target.candidate).chain(&target.secondary) {
            if !known(name) {
                return Err(format!(
                    "no backend {} in the route table (its backends: {})",
                    router::quote(name),
                    names.join(", ")
                ));
            }
        }
        if target.secondary.as_ref() == Some(&target.candidate) {
            return Err(format!(
                "{} is both the candidate and the secondary; the secondary is a second backend of the primary's version",
                router::quote(&target.candidate)
            ));
        }
        Ok(())
    }

    /// Where copies go now, if anywhere.
    pub fn target(&self) -> Option<ShadowTarget> {
        self.current().map(|s| s.target.clone())
    }

    /// The share copied when an admin call names none: `--shadow-rate`.
    pub fn default_rate(&self) -> f64 {
        self.options.shadow_rate
    }

    /// The router whose backends copies go to.
    pub fn router(&self) -> &RouterHandle {
        &self.router
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the call of `method` arriving now with `headers` is copied: its shadowing.
    pub(crate) fn begin(&self, method: &Method, headers: &HeaderMap) -> Option<Shadowing> {
        let session = self.current()?;
        let descriptor = method.descriptor.as_ref()?;
        if descriptor.parent_service().full_name().starts_with("grpc.")
            || headers.contains_key(router::API_VERSION_HEADER)
        {
            return None;
        }
        let counts = &session.counts;
        counts.eligible.fetch_add(1, Ordering::Relaxed);
        let o = &self.options;
        if !o.shadow_unsafe
            && safe_to_repeat(descriptor).is_err()
            && !o.shadow_method.iter().any(|p| p.matches(descriptor))
        {
            let mut not_safe = session.not_safe.lock().unwrap_or_else(|e| e.into_inner());
            *not_safe.entry(method_name(descriptor)).or_insert(0) += 1;
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let rate = session.target.rate;
        // Call n is chosen when n × rate crosses a whole number: an even spread.
        if rate < 1.0 && ((n + 1) as f64 * rate).floor() == (n as f64 * rate).floor() {
            return None;
        }
        counts.sampled.fetch_add(1, Ordering::Relaxed);
        if headers.keys().any(|name| name.as_str().ends_with("-bin")) {
            counts.binary_metadata.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self.held.fetch_add(1, Ordering::Relaxed) >= o.shadow_held {
            self.held.fetch_sub(1, Ordering::Relaxed);
            counts.busy.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let slot = Slot(self.held.clone());
        let copied = headers
            .iter()
            .filter(|(name, _)| {
                !NOT_COPIED.contains(&name.as_str()) && !name.as_str().starts_with("grpc-")
            })
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                Header::parse(&format!("{name}: {value}")).ok()
            })
            .collect();
        Some(Shadowing {
            session,
            descriptor: descriptor.clone(),
            headers: copied,
            request_encoding: crate::observe::encoding(headers),
            _slot: slot,
        })
    }

    /// The caps of a shadowed call's captures: bytes and messages per direction.
    pub(crate) fn caps(&self) -> (usize, usize) {
        (
            self.options.shadow_max_call_bytes,
            self.options.shadow_max_messages,
        )
    }

    /// A shadowed call ended: a copy is queued for the worker, unless it cannot be compared.
    pub(crate) fn finish(&self, shadowing: Shadowing, ended: &Ended) {
        let counts = &shadowing.session.counts;
        let Some(routed) = ended.routed.as_ref().filter(|r| r.answered) else {
            counts.not_served.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let target = &shadowing.session.target;
        if crate::route_checks::belongs_to(&routed.backend, &target.candidate) {
            counts.served_by_candidate.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if ended.code == tonic::Code::Cancelled {
            counts.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let cap = self.options.shadow_max_call_bytes;
        let requests = plain(ended.request.as_ref(), &shadowing.request_encoding, cap);
        let replies = plain(ended.reply.as_ref(), &ended.reply_encoding, cap);
        let (Ok(requests), Ok(replies)) = (requests, replies) else {
            counts.too_large.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let at = time::OffsetDateTime::from(ended.start)
            .format(&Rfc3339)
            .unwrap_or_default();
        let job = worker::Job {
            at,
            primary: Answer {
                code: ended.code,
                message: ended.message.clone().unwrap_or_default(),
                replies,
                capped: None,
                served_by: Some(routed.version.to_string()),
            },
            primary_backend: routed.backend.to_string(),
            requests,
            shadowing,
        };
        // The worker lives as long as the shadow; a job it cannot take frees its slot here.
        let _ = self.jobs.send(job);
    }

    /// What shadowing has found since its target was set.
    pub fn report(&self) -> ShadowReport {
        report::of(self.current().as_deref(), &self.options, self.held())
    }

    /// Calls held now.
    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Each copy's deadline.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.options.shadow_timeout_ms as u64)
    }
}

/// `pkg.Service/Method`.
fn method_name(m: &MethodDescriptor) -> String {
    format!("{}/{}", m.parent_service().full_name(), m.name())
}

/// A capture's messages, decompressed; an error when it is not whole or does not decompress
/// within `cap`.
fn plain(
    capture: Option<&Capture>,
    encoding: &Option<String>,
    cap: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let capture = capture.ok_or("not kept")?;
    if let Some(cut) = &capture.cut {
        return Err(cut.clone());
    }
    capture
        .messages
        .iter()
        .map(|(payload, compressed)| {
            if *compressed {
                decompress(payload, encoding.as_deref(), cap)
            } else {
                Ok(payload.clone())
            }
        })
        .collect()
}
