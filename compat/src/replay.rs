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

pub use compare::{Answers, Tally};
pub use ignore::Ignore;
pub use render::{render_methods, render_text};
pub use report::{
    Difference, Example, MethodReplay, PathCount, ReplayReport, StatusCount, Verdict,
};

use crate::connect::{ClientTls, reach};
use crate::probe::calling::exchange;
use crate::probe::{Header, ReplyLimits, code_name};
use crate::source::Api;
use crate::traffic::Line;
use anyhow::{Context, bail};
use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor, SerializeOptions};
use std::collections::BTreeSet;
use std::time::Duration;
use template::Replies;

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
struct Planned<'a> {
    line: &'a Line,
    method: MethodDescriptor,
    headers: Vec<Header>,
    /// The names of earlier calls, which the requests may refer to.
    known: BTreeSet<String>,
}

/// Replays `lines` (read from `files`); errors: a line that does not fit OLD's descriptors, a
/// server that cannot be reached.
pub async fn replay(
    files: &[String],
    lines: &[Line],
    options: &ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let planned = plan(lines, options)?;
    let channel_timeout = options.timeout + Duration::from_secs(2);
    let tls = options.tls.as_ref();
    let old = reach("OLD", &options.old, tls, channel_timeout).await?;
    let new = reach("NEW", &options.new, tls, channel_timeout).await?;
    let second = match &options.secondary {
        Some(addr) => reach("--secondary", addr, tls, channel_timeout).await?,
        None => old.clone(),
    };
    let lanes = [old, second, new];
    let mut replies: [Replies; 3] = Default::default();
    let mut tallies: Vec<Tally> = Vec::new();
    let mut sent = 0;
    for call in &planned {
        let name = call.method.full_name().to_string();
        let index = match tallies.iter().position(|t| t.method() == name) {
            Some(i) => i,
            None => {
                tallies.push(Tally::new(
                    call.method.clone(),
                    called(&call.method, &options.map),
                ));
                tallies.len() - 1
            }
        };
        let tally = &mut tallies[index];
        let at = &call.line.at;
        if let Some(why) = &call.line.call.truncated {
            tally.unsent(at, format!("recorded truncated: {why}"));
            forget(&mut replies, &call.line.call.name, "was recorded truncated");
            continue;
        }
        let mut bodies: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut failure = None;
        for (lane, label) in replies.iter().zip(["OLD", "the second OLD", "NEW"]) {
            match encode(call, lane) {
                Ok(body) => bodies.push(body),
                Err(why) => {
                    failure = Some(format!("not sent: on {label}, {why}"));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            tally.unsent(at, why);
            forget(&mut replies, &call.line.call.name, "was not sent");
            continue;
        }
        let own_path = format!(
            "/{}/{}",
            call.method.parent_service().full_name(),
            call.method.name()
        );
        let paths = [own_path.clone(), own_path, format!("/{}", tally.called())];
        let within = (options.timeout, options.limits);
        let [b0, b1, b2]: [Vec<Vec<u8>>; 3] = bodies
            .try_into()
            .map_err(|_| anyhow::anyhow!("three lanes"))?;
        let (a0, a1, a2) = tokio::join!(
            exchange(&lanes[0], &paths[0], b0, within, &call.headers),
            exchange(&lanes[1], &paths[1], b1, within, &call.headers),
            exchange(&lanes[2], &paths[2], b2, within, &call.headers),
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
        tally.add(at, &answers);
        sent += 1;
    }
    Ok(ReplayReport {
        files: files.to_vec(),
        old: options.old.clone(),
        new: options.new.clone(),
        secondary: options.secondary.clone(),
        calls: lines.len(),
        sent,
        methods: tallies
            .into_iter()
            .map(|t| t.report(&options.ignore))
            .collect(),
        ignore: options.ignore.iter().map(ToString::to_string).collect(),
        allow_inconclusive: options.allow_inconclusive,
    })
}

/// Checks every line against OLD's descriptors before any call.
fn plan<'a>(lines: &'a [Line], options: &ReplayOptions) -> anyhow::Result<Vec<Planned<'a>>> {
    let mut known = BTreeSet::new();
    let mut out = Vec::new();
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
        out.push(Planned {
            line,
            method: m,
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
