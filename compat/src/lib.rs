//! Compares two versions of a gRPC API, the one place in the testbed where that happens.
//!
//! * Inputs ([`Source`]): a directory of `.proto` files (compiled with protox), one `.proto`
//!   file, a binary `FileDescriptorSet` (a buf `.binpb` image works), a git revision in buf's
//!   syntax ([`git`]), or `grpc://HOST:PORT` / `https://HOST:PORT` (a running server read by
//!   reflection, `grpc.reflection.v1` then `v1alpha`; [`load_over`] reads one over a channel
//!   of the caller's, such as a TLS one).
//! * buf's breaking configuration ([`config`]): `buf.yaml` or `--config`.
//! * Package pairing ([`Pairing`]): `--map OLD=NEW`, and automatically when two packages differ
//!   only in a trailing `.vN` (`increment.v1` → `increment.v2`).
//! * Rules ([`rules::RULES`]): buf's rule ids and categories (`WIRE`, `WIRE_JSON`, `PACKAGE`,
//!   `FILE`) plus this crate's `GRPC` category (what a live client notices that buf's WIRE does
//!   not report: deleted services and methods, streaming shape, request/response types that
//!   differ on the wire, narrowing and sign changes, enum values renumbered, changed defaults).
//! * A semver verdict: breaking findings need a major version, additions a minor one,
//!   everything else (comments, findings outside the selected categories) a patch.
//! * Wire confirmation: every finding is tried with real bytes (prost + prost-reflect dynamic
//!   messages, both directions, then JSON); `confirmed`, `JSON only` or `refuted`.
//! * A live probe ([`probe`], `testbed probe`): two running servers, each called by the other
//!   version's clients with generated requests, replies read with the caller's descriptors.
//!
//! # Rules and syntaxes
//! All 64 of buf's rules are implemented; buf's `CSR` category is not offered. proto2, proto3
//! and editions 2023 / 2024 files are read: editions files are compiled with protoc
//! ([`protoc`]), their features resolved per element and the files lowered to proto2 for
//! prost-reflect ([`editions`]).
//!
//! # Where this crate and buf disagree
//! See [`ALLOWED_DIFFERENCES`]: a type renamed to a structurally identical one (same numbers,
//! encodings and cardinalities, recursively; for WIRE_JSON also the same JSON names) is not a
//! WIRE/WIRE_JSON break here; buf reports it (`RPC_SAME_REQUEST_TYPE`,
//! `RPC_SAME_RESPONSE_TYPE`, `FIELD_WIRE_COMPATIBLE_TYPE`, `FIELD_WIRE_JSON_COMPATIBLE_TYPE`).
//! A map entry and an ordinary message are never identical: repeated entries with one key
//! collapse in a map (the wire confirmation of the `map_to_repeated_entry` case shows it).
//! The wire confirmation shows that such samples decode identically.

pub mod accept;
pub mod budget;
pub mod cli;
pub mod columns;
mod compression;
pub mod config;
mod confirm;
pub mod connect;
pub mod editions;
pub mod git;
pub mod ignores;
pub mod methods;
pub mod model;
pub mod probe;
pub mod protoc;
mod reflection;
pub mod render;
pub mod replay;
pub mod rules;
pub mod sarif;
pub mod source;
pub mod traffic;

pub use budget::MAX_SAMPLE_NODES;
pub use model::{Bump, Category, Confirmation, Finding, Outcome, Report};
pub use reflection::{RawCodec, RawCoder, ReflectOptions, load_over, load_over_with};
pub use rules::{Pairing, RULES, RuleInfo};
pub use source::{Api, LoadError, Remote, Source};

use prost_reflect::DescriptorPool;

/// The categories used when none are given: `WIRE_JSON` (binary and JSON clients; it holds
/// every WIRE rule except the two that WIRE_JSON replaces with stricter ones) and `GRPC`.
pub const DEFAULT_CATEGORIES: [Category; 2] = [Category::WireJson, Category::Grpc];

/// How long reading a server's descriptors by reflection may take, all round trips together
/// (`grpc://` and `https://` inputs, the probe, the gateway's upstreams).
pub const REFLECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where this crate's verdict and `buf breaking`'s differ on purpose: (category, rule, corpus
/// case, reason). The buf comparison test accepts exactly these differences, and each case
/// carries a wire confirmation showing who is right.
pub const ALLOWED_DIFFERENCES: &[(&str, &str, &str, &str)] = &[
    (
        "WIRE",
        "RPC_SAME_REQUEST_TYPE",
        "rpc_request_type_renamed_identical",
        "Req renamed to Request with the same fields: the bytes are identical, so a renamed but identical type is not a wire break (the confirmation decodes a full sample both ways: refuted)",
    ),
    (
        "WIRE_JSON",
        "RPC_SAME_REQUEST_TYPE",
        "rpc_request_type_renamed_identical",
        "same rename; the JSON form (field names) is identical too",
    ),
    (
        "WIRE",
        "RPC_SAME_RESPONSE_TYPE",
        "rpc_response_type_renamed_identical",
        "Reply renamed to Answer with the same fields, for a unary and a server-streaming method: identical bytes (refuted both ways)",
    ),
    (
        "WIRE_JSON",
        "RPC_SAME_RESPONSE_TYPE",
        "rpc_response_type_renamed_identical",
        "same rename; identical JSON form too",
    ),
];

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The categories whose rules break; findings of other rules are reported as patch-level
    /// changes.
    pub categories: Vec<Category>,
    /// Explicit old → new package pairs.
    pub map: Vec<(String, String)>,
    /// Pair packages differing only in a trailing `.vN`.
    pub auto_pair: bool,
    /// Try every finding on the wire.
    pub confirm: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            categories: DEFAULT_CATEGORIES.to_vec(),
            map: Vec::new(),
            auto_pair: true,
            confirm: true,
        }
    }
}

/// The ids of the non-rule entries: additions (minor), comment edits and other descriptor
/// changes (patch).
pub fn is_change_rule(rule: &str) -> bool {
    rule.ends_with("_ADDED") || rule == "COMMENT_CHANGED" || rule == "FILE_CHANGED"
}

/// Compares `old` with `new` (without live calls; see [`check_live`]).
pub fn check(old: &Api, new: &Api, options: &CheckOptions) -> Report {
    check_inner(old, new, options).0
}

fn check_inner(old: &Api, new: &Api, options: &CheckOptions) -> (Report, Vec<rules::Subject>) {
    let pairing = Pairing::new(&options.map, old, new, options.auto_pair);
    let raws = rules::evaluate(old, new, &pairing);
    let mut classified = rules::classify(raws, &options.categories);
    if options.confirm {
        for (f, subject) in &mut classified {
            if f.category == Category::Change && is_change_rule(&f.rule) {
                continue;
            }
            f.confirmation = Some(confirm::confirm(subject, &pairing));
        }
    }
    classified.sort_by(|(a, _), (b, _)| {
        (!a.breaking, &a.element, &a.rule, &a.path, a.line).cmp(&(
            !b.breaking,
            &b.element,
            &b.rule,
            &b.path,
            b.line,
        ))
    });
    let verdict = classified.iter().map(|(f, _)| f.semver).max();
    let (findings, subjects): (Vec<Finding>, Vec<rules::Subject>) = classified.into_iter().unzip();
    (
        Report {
            findings,
            verdict,
            pairs: pairing.pairs(),
            warnings: Vec::new(),
        },
        subjects,
    )
}

/// Like [`check`]; when NEW is a running server, method-level findings (deleted services and
/// methods, changed streaming shapes) are confirmed by calling the server with the old
/// client's path and an encoded sample of the old request.
pub async fn check_live(old: &Api, new: &Api, options: &CheckOptions) -> Report {
    check_live_with(old, new, options, &[]).await
}

/// [`check_live`] with `headers` sent on the confirming calls.
pub async fn check_live_with(
    old: &Api,
    new: &Api,
    options: &CheckOptions,
    headers: &[probe::Header],
) -> Report {
    let (mut report, subjects) = check_inner(old, new, options);
    let Some(addr) = new.live.clone() else {
        return report;
    };
    if !options.confirm {
        return report;
    }
    for (f, subject) in report.findings.iter_mut().zip(subjects) {
        if let rules::Subject::Method { old: m, .. } = subject {
            use prost::Message;
            let path = format!("/{}/{}", m.parent_service().full_name(), m.name());
            let request = confirm::sample(&m.input(), 0).encode_to_vec();
            let effect = match reflection::call(&addr, &path, request, headers).await {
                Ok(e) | Err(e) => e,
            };
            let outcome = if effect.contains("answered OK") {
                Outcome::Refuted
            } else {
                Outcome::Confirmed
            };
            f.confirmation = Some(Confirmation {
                outcome,
                effect,
                runtime: format!("live server grpc://{addr} (tonic)"),
            });
        }
    }
    report
}

/// Rules that say nothing about whether a newer implementation can serve older requests
/// (they guard future edits or client retry policy); [`wire_compatible`] ignores them.
const NOT_ABOUT_SERVING: &[&str] = &[
    "RESERVED_ENUM_NO_DELETE",
    "RESERVED_MESSAGE_NO_DELETE",
    "RPC_SAME_IDEMPOTENCY_LEVEL",
];

/// May a server of package `newer` serve requests addressed to package `older`? Both
/// packages are read from `pool` (the router's catalog). `Ok` when every service, method and
/// field of `older` exists in `newer` with the same numbers, wire types, cardinalities, enum
/// numbering and streaming shapes (recursion-safe); otherwise the breaking `WIRE` and `GRPC`
/// findings, each with its wire confirmation, for the refusal to quote.
pub fn wire_compatible(
    pool: &DescriptorPool,
    older: &str,
    newer: &str,
) -> Result<(), Vec<Finding>> {
    serving_refusals(
        &Api::package_view(pool, older),
        &Api::package_view(pool, newer),
        older,
        newer,
    )
}

/// May a server of `newer_build`'s `package` serve requests written against `older_build`'s,
/// two builds of one package (`payments.v1` at 1.0.0 and at 1.1.0, say) whose files share
/// names but not contents? The question [`wire_compatible`] answers within one pool, asked
/// across two, with the same rules and the same answer.
pub fn build_compatible(
    older_build: &DescriptorPool,
    newer_build: &DescriptorPool,
    package: &str,
) -> Result<(), Vec<Finding>> {
    serving_refusals(
        &Api::package_view(older_build, package),
        &Api::package_view(newer_build, package),
        package,
        package,
    )
}

/// The breaking `WIRE` and `GRPC` findings from `old` (package `older`) to `new` (package
/// `newer`) that bear on serving, confirmed on the wire.
fn serving_refusals(old: &Api, new: &Api, older: &str, newer: &str) -> Result<(), Vec<Finding>> {
    let options = CheckOptions {
        categories: vec![Category::Wire, Category::Grpc],
        map: if older == newer {
            Vec::new()
        } else {
            vec![(older.to_string(), newer.to_string())]
        },
        auto_pair: false,
        confirm: true,
    };
    let report = check(old, new, &options);
    let refusals: Vec<Finding> = report
        .findings
        .into_iter()
        .filter(|f| f.breaking && !NOT_ABOUT_SERVING.contains(&f.rule.as_str()))
        .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}

/// What [`wire_compatible`]'s or [`build_compatible`]'s refusal says, one finding after
/// another (`RULE: message [outcome by runtime: effect]`), for an error or a log line.
pub fn refusal_text(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|finding| {
            let evidence = finding.confirmation.as_ref().map_or_else(String::new, |c| {
                format!(" [{} by {}: {}]", c.outcome.as_str(), c.runtime, c.effect)
            });
            format!("{}: {}{evidence}", finding.rule, finding.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// [`wire_compatible`] for an encoded `FileDescriptorSet`.
pub fn wire_compatible_encoded(
    fds: &[u8],
    older: &str,
    newer: &str,
) -> Result<Result<(), Vec<Finding>>, LoadError> {
    let api = Api::from_descriptor_set_bytes(fds, "descriptor set")?;
    Ok(wire_compatible(&api.pool, older, newer))
}
