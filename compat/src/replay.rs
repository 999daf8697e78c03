//! `testbed replay`: recorded traffic or a scenario ([`crate::traffic`]) sent to the old
//! server, to a second old instance (or the old server again) and to the new server, call by
//! call in the file's order; every reply is decoded with the old version's descriptors (the
//! caller's) and compared field by field ([`compare`]). What differs between the two old
//! answers is noise and not compared; `--ignore` rules ([`Ignore`]) leave out more. Per method
//! the report counts the calls, the statuses, the differing fields with examples, the noise,
//! and gives a verdict ([`Verdict`]): the shape of Twitter's Diffy (primary, secondary,
//! candidate), for gRPC with the schema in hand.
//!
//! Everything the file says is checked before the first call: every method must be one OLD's
//! descriptors declare, every request must be protobuf JSON of its input type (those with
//! references to earlier replies once resolved), every metadata entry must be sendable.

mod compare;
mod ignore;
mod render;
mod report;
mod template;
#[cfg(test)]
mod test_method;

pub use compare::{Answers, Tally};
pub use ignore::Ignore;
pub use render::{render_methods, render_text};
pub use report::{
    Difference, Example, MethodReplay, PathCount, ReplayReport, StatusCount, Verdict,
};

use crate::connect::{ClientTls, reach};
use crate::probe::calling::exchange;
use crate::probe::{Answer, Header, ReplyLimits, code_name};
use crate::source::Api;
use crate::traffic::Line;
use anyhow::{Context, bail};
use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor, SerializeOptions};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use template::Replies;
use tonic::transport::Channel;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The old server (the baseline): `HOST:PORT` or `https://HOST:PORT`.
    pub old: String,
    /// The new server (the candidate).
    pub new: String,
    /// A second old server for the noise; without it OLD is asked twice.
    pub secondary: Option<String>,
    /// The old version's descriptors: requests are encoded and every reply decoded with them.
    pub api: Api,
    /// Call package NEW on the new server for the traffic's package OLD.
    pub map: Vec<(String, String)>,
    /// Each call's deadline.
    pub timeout: Duration,
    /// How much of each call's replies is read.
    pub limits: ReplyLimits,
    /// Metadata sent with every call, besides (and replacing same-named) recorded metadata.
    pub headers: Vec<Header>,
    /// How to reach `https://` servers.
    pub tls: Option<ClientTls>,
    /// Reply fields not compared.
    pub ignore: Vec<Ignore>,
    /// Inconclusive methods do not make the exit code 3.
    pub allow_inconclusive: bool,
}

/// One call of the traffic, checked against the descriptors.
#[derive(Debug)]
struct Planned {
    line: Line,
    method: MethodDescriptor,
    /// Its method's place in [`Replayer::tallies`].
    tally: usize,
    headers: Vec<Header>,
    /// The names of earlier calls, which the requests may refer to.
    known: BTreeSet<String>,
}

/// How one call of the traffic went.
#[derive(Debug)]
pub enum Outcome {
    /// It was not sent, and why (a reference that did not resolve, a truncated recording).
    Unsent(String),
    /// The three answers, and how long NEW took to give its own.
    Answered(Box<Answers>, Duration),
}

impl Outcome {
    /// Counts this outcome of a call made at `at` in `tally`.
    pub fn count(&self, tally: &mut Tally, at: &str) {
        match self {
            Outcome::Unsent(why) => tally.unsent(at, why.clone()),
            Outcome::Answered(answers, _) => tally.add(at, answers),
        }
    }
}

/// How one client reaches one server: a gRPC channel, or a program that makes the call (the
/// matrix's grpcurl client).
pub trait Lane: Sync {
    /// Sends `messages` on one call to `path` and reads the replies, within the deadline and
    /// the caps, as [`exchange`] does.
    fn call(
        &self,
        path: &str,
        messages: Vec<Vec<u8>>,
        within: (Duration, ReplyLimits),
        headers: &[Header],
    ) -> impl std::future::Future<Output = Answer> + Send;
}

impl Lane for Channel {
    async fn call(
        &self,
        path: &str,
        messages: Vec<Vec<u8>>,
        within: (Duration, ReplyLimits),
        headers: &[Header],
    ) -> Answer {
        exchange(self, path, messages, within, headers).await
    }
}

/// The lanes one client sends the traffic on: OLD, the second OLD (OLD again without
/// `--secondary`) and NEW.
#[derive(Debug, Clone)]
pub struct Lanes<L = Channel>(pub [L; 3]);

/// Traffic checked against OLD's descriptors, ready to be sent once (`testbed replay`) or over
/// and over by many clients at once (`testbed mixed --traffic`, `testbed rollout --traffic`).
#[derive(Debug)]
pub struct Replayer {
    planned: Vec<Planned>,
    options: ReplayOptions,
}

impl Replayer {
    /// Checks every line of `lines` against OLD's descriptors, before any call.
    pub fn new(lines: &[Line], options: &ReplayOptions) -> anyhow::Result<Replayer> {
        Ok(Replayer {
            planned: plan(lines, options)?,
            options: options.clone(),
        })
    }

    /// One empty tally per method of the traffic, in the order it first calls them; a
    /// [`session`](Self::session) names each call's by its place here.
    pub fn tallies(&self) -> Vec<Tally> {
        let mut out: Vec<Tally> = Vec::new();
        for call in &self.planned {
            if out.len() == call.tally {
                out.push(Tally::new(
                    call.method.clone(),
                    called(&call.method, &self.options.map),
                ));
            }
        }
        out
    }

    /// New connections to OLD, the second OLD and NEW.
    pub async fn connect(&self) -> anyhow::Result<Lanes> {
        self.connect_naming("the NEW server").await
    }

    /// [`connect`](Self::connect), naming the target `target` when it cannot be reached (a
    /// load's target is a gateway, not NEW).
    pub async fn connect_naming(&self, target: &str) -> anyhow::Result<Lanes> {
        let options = &self.options;
        let channel_timeout = options.timeout + Duration::from_secs(2);
        let tls = options.tls.as_ref();
        let old = reach("the OLD server", &options.old, tls, channel_timeout).await?;
        let new = reach(target, &options.new, tls, channel_timeout).await?;
        let second = match &options.secondary {
            Some(addr) => reach("the --secondary server", addr, tls, channel_timeout).await?,
            None => old.clone(),
        };
        Ok(Lanes([old, second, new]))
    }

    /// Sends the traffic once on `lanes`: per method the result (judged with the ignore
    /// rules), and the calls sent.
    pub async fn once<L: Lane>(&self, lanes: &Lanes<L>) -> (Vec<MethodReplay>, usize) {
        let mut tallies = self.tallies();
        let mut sent = 0;
        let mut session = self.session(lanes);
        while let Some((tally, at, outcome)) = session.next().await {
            if matches!(outcome, Outcome::Answered(..)) {
                sent += 1;
            }
            outcome.count(&mut tallies[tally], at);
        }
        let methods = tallies
            .iter()
            .map(|t| t.report(&self.options.ignore))
            .collect();
        (methods, sent)
    }

    /// A pass over the traffic on `lanes`: each [`Session::next`] sends the next call.
    pub fn session<'r, L: Lane>(&'r self, lanes: &'r Lanes<L>) -> Session<'r, L> {
        Session {
            replayer: self,
            lanes,
            replies: Default::default(),
            next: 0,
        }
    }

    async fn send<L: Lane>(
        &self,
        call: &Planned,
        lanes: &Lanes<L>,
        replies: &mut [Replies; 3],
    ) -> Outcome {
        if let Some(why) = &call.line.call.truncated {
            forget(replies, &call.line.call.name, "was recorded truncated");
            return Outcome::Unsent(format!("recorded truncated: {why}"));
        }
        let mut bodies: Vec<Vec<Vec<u8>>> = Vec::new();
        for (lane, label) in replies.iter().zip(["OLD", "the second OLD", "NEW"]) {
            match encode(call, lane) {
                Ok(body) => bodies.push(body),
                Err(why) => {
                    forget(replies, &call.line.call.name, "was not sent");
                    return Outcome::Unsent(format!("not sent: on {label}, {why}"));
                }
            }
        }
        let own_path = format!(
            "/{}/{}",
            call.method.parent_service().full_name(),
            call.method.name()
        );
        let new_path = format!("/{}", called(&call.method, &self.options.map));
        let within = (self.options.timeout, self.options.limits);
        let [b0, b1, b2]: [Vec<Vec<u8>>; 3] = match bodies.try_into() {
            Ok(bodies) => bodies,
            Err(_) => return Outcome::Unsent("not encoded for every server".to_string()),
        };
        let [l0, l1, l2] = &lanes.0;
        let timed_new = async {
            let started = Instant::now();
            let answer = l2.call(&new_path, b2, within, &call.headers).await;
            (answer, started.elapsed())
        };
        let (a0, a1, (a2, took)) = tokio::join!(
            l0.call(&own_path, b0, within, &call.headers),
            l1.call(&own_path, b1, within, &call.headers),
            timed_new,
        );
        let answers = Answers {
            old: a0,
            second: a1,
            new: a2,
        };
        if let Some(name) = &call.line.call.name {
            for (lane, answer) in
                replies
                    .iter_mut()
                    .zip([&answers.old, &answers.second, &answers.new])
            {
                lane.insert(name.clone(), first_reply(&call.method, answer));
            }
        }
        Outcome::Answered(Box::new(answers), took)
    }
}

/// One pass over the traffic, call by call in order, each server's replies feeding its own
/// later references (each server's own order id, not OLD's).
#[derive(Debug)]
pub struct Session<'r, L = Channel> {
    replayer: &'r Replayer,
    lanes: &'r Lanes<L>,
    replies: [Replies; 3],
    next: usize,
}

impl<'r, L: Lane> Session<'r, L> {
    /// Sends the next call: its tally's place in [`Replayer::tallies`], where it came from
    /// (`FILE:LINE`) and how it went; `None` at the end of the traffic.
    pub async fn next(&mut self) -> Option<(usize, &'r str, Outcome)> {
        let replayer = self.replayer;
        let call = replayer.planned.get(self.next)?;
        self.next += 1;
        let outcome = replayer.send(call, self.lanes, &mut self.replies).await;
        Some((call.tally, call.line.at.as_str(), outcome))
    }
}

/// Replays `lines` (read from `files`) once; errors: a line that does not fit OLD's
/// descriptors, a server that cannot be reached.
pub async fn replay(
    files: &[String],
    lines: &[Line],
    options: &ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let replayer = Replayer::new(lines, options)?;
    let lanes = replayer.connect().await?;
    let (methods, sent) = replayer.once(&lanes).await;
    Ok(ReplayReport {
        files: files.to_vec(),
        old: options.old.clone(),
        new: options.new.clone(),
        secondary: options.secondary.clone(),
        calls: lines.len(),
        sent,
        methods,
        ignore: options.ignore.iter().map(ToString::to_string).collect(),
        allow_inconclusive: options.allow_inconclusive,
    })
}

/// Checks every line against OLD's descriptors before any call.
fn plan(lines: &[Line], options: &ReplayOptions) -> anyhow::Result<Vec<Planned>> {
    let mut known = BTreeSet::new();
    let mut methods: Vec<String> = Vec::new();
    let mut out: Vec<Planned> = Vec::new();
    for line in lines {
        let call = &line.call;
        let at = &line.at;
        let (service, method) = call
            .method_name()
            .split_once('/')
            .context("checked when read")?;
        let m = options
            .api
            .pool
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|x| x.name() == method))
            .with_context(|| {
                format!(
                    "{at}: OLD ({}) declares no method {}; replay traffic of the API OLD serves (or give its descriptors with --descriptors)",
                    options.api.label,
                    call.method_name()
                )
            })?;
        if !m.is_client_streaming() && call.requests.len() != 1 {
            bail!(
                "{at}: {} takes one request message, the line has {}",
                call.method_name(),
                call.requests.len()
            );
        }
        for request in &call.requests {
            if !template::refers(request, &known) {
                DynamicMessage::deserialize(m.input(), request.clone()).with_context(|| {
                    format!(
                        "{at}: {request} is not protobuf JSON of {}",
                        m.input().full_name()
                    )
                })?;
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &call.metadata {
            if options
                .headers
                .iter()
                .any(|h| h.name() == name.to_ascii_lowercase())
            {
                continue;
            }
            let header = Header::parse(&format!("{name}: {value}"))
                .map_err(|e| anyhow::anyhow!("{at}: metadata {e}"))?;
            headers.push(header);
        }
        headers.extend(options.headers.iter().cloned());
        let name = m.full_name().to_string();
        let tally = methods.iter().position(|n| *n == name).unwrap_or_else(|| {
            methods.push(name);
            methods.len() - 1
        });
        out.push(Planned {
            line: line.clone(),
            method: m,
            tally,
            headers,
            known: known.clone(),
        });
        if let Some(name) = &call.name {
            known.insert(name.clone());
        }
    }
    Ok(out)
}

/// The requests of `call` for one server, references resolved from its replies, encoded.
fn encode(call: &Planned, replies: &Replies) -> Result<Vec<Vec<u8>>, String> {
    call.line
        .call
        .requests
        .iter()
        .map(|request| {
            let resolved = template::resolve(request, &call.known, replies)?;
            DynamicMessage::deserialize(call.method.input(), resolved.clone())
                .map(|msg| msg.encode_to_vec())
                .map_err(|e| {
                    format!(
                        "{resolved} is not protobuf JSON of {}: {e}",
                        call.method.input().full_name()
                    )
                })
        })
        .collect()
}

/// A named call's first reply as protobuf JSON, for references; how it ended otherwise.
fn first_reply(
    m: &MethodDescriptor,
    answer: &crate::probe::Answer,
) -> Result<serde_json::Value, String> {
    if answer.code != tonic::Code::Ok {
        return Err(format!("ended {}", code_name(answer.code)));
    }
    let bytes = answer.replies.first().ok_or("sent no reply")?;
    let msg = DynamicMessage::decode(m.output(), bytes.as_slice())
        .map_err(|e| format!("sent a reply that is not a {}: {e}", m.output().full_name()))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("sent a reply that has no JSON form: {e}"))
}

/// A named call that was not made: later references to it say so.
fn forget(replies: &mut [Replies; 3], name: &Option<String>, why: &str) {
    if let Some(name) = name {
        for lane in replies.iter_mut() {
            lane.insert(name.clone(), Err(why.to_string()));
        }
    }
}

/// The path NEW is called at: `pkg.Service/Method`, the package mapped by `map`.
fn called(m: &MethodDescriptor, map: &[(String, String)]) -> String {
    let service = m.parent_service();
    let package = service.package_name();
    let full = service.full_name();
    let mapped = map
        .iter()
        .find(|(old, _)| old == package)
        .map(|(_, new)| format!("{new}{}", &full[package.len()..]))
        .unwrap_or_else(|| full.to_string());
    format!("{mapped}/{}", m.name())
}
