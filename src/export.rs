//! `testbed route export`: the live route table as mesh configuration, an Istio VirtualService
//! with DestinationRules or Gateway API GRPCRoutes, equal in meaning to the table for every
//! request the mesh can tell apart, and an error naming whatever it cannot express.
//!
//! The table is read through the admin API (`List`) and turned into a [`MeshPlan`]: for each
//! package, the rules a first-match router applies, in order. Each rule is one case the
//! router decides the same way for every request that falls in it:
//! - `x-api-version: =X.Y.Z` (an exact pin): the backend of that version;
//! - `x-api-version` pinning a major (`2`, `^2`, `~2`, `=2`, `2.x`, `2.*`...), as a regular
//!   expression: the highest stable version of that major, or the weighted split among them;
//! - any other `x-api-version` value: refused, because a mesh cannot evaluate a semver
//!   requirement (the router would; the mesh never routes it somewhere else instead);
//! - no header: the highest stable version, or the weighted split.
//!
//! [`istio`] and [`gateway_api`] render the plan; each refuses what its API cannot say (a
//! retired package's path rewrite in a GRPCRoute, a split Istio's whole percentages cannot
//! hold). Draining backends get no new requests, so they get no routes.

pub mod gateway_api;
pub mod istio;

use anyhow::{Context, bail};
use port::admin::pb::Backend;
use semver::{Version, VersionReq};
use std::collections::BTreeSet;

/// The header carrying a request's semver requirement.
pub const HEADER: &str = router::API_VERSION_HEADER;

/// Which mesh's configuration to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Istio: a VirtualService (networking.istio.io/v1) and a DestinationRule per Service.
    Istio,
    /// Gateway API: a GRPCRoute (gateway.networking.k8s.io/v1, standard channel) per package.
    GatewayApi,
    /// The gateway's own: the upstreams as `testbed serve --config` YAML (what `--state-file`
    /// keeps, less the descriptor files of upstreams that serve no reflection).
    Config,
}

/// `testbed route export`'s own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The configuration to write.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The Kubernetes namespace of the objects written (left out: the one they are applied in).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The Service clients call (the gateway's place): the VirtualService's host, the
    /// GRPCRoutes' parent Service, and the objects' name prefix.
    #[arg(long, value_name = "NAME", default_value = "testbed", value_parser = dns_name)]
    pub host: String,
    /// The Kubernetes Service of a backend (or of an upstream's NAME/PACKAGE backends):
    /// NAME=HOST, repeatable. Default: the upstream's name as a DNS label (`v2` for `v2` and
    /// `v2/increment.v1`). Istio tells versions on one Service apart by subset (pods labelled
    /// `version: X.Y.Z`); Gateway API needs a Service per version.
    #[arg(long, value_name = "NAME=HOST")]
    pub service_host: Vec<ServiceHost>,
    /// The port of every backend Service.
    #[arg(long, value_name = "PORT", default_value_t = 50051)]
    pub service_port: u16,
}

/// One `--service-host NAME=HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHost {
    /// A backend's or an upstream's name.
    pub name: String,
    /// Its Service.
    pub host: String,
}

impl std::str::FromStr for ServiceHost {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('=') {
            Some((name, host)) if !name.is_empty() && is_dns_name(host) => Ok(Self {
                name: name.to_string(),
                host: host.to_string(),
            }),
            _ => Err(format!(
                "{text:?} is not NAME=HOST (HOST a DNS name: lowercase letters, digits, '-' and '.')"
            )),
        }
    }
}

/// `--host`'s parser: a DNS name, as a Service's name or host must be.
fn dns_name(text: &str) -> Result<String, String> {
    if is_dns_name(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a DNS name (lowercase letters, digits, '-' and '.')"
        ))
    }
}

fn is_dns_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A backend as the mesh sees it: a version of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The backend's name in the route table.
    pub backend: String,
    /// Its version.
    pub version: Version,
    /// The package it implements: a request for an older package it serves is rewritten to it.
    pub api: String,
    /// Its Kubernetes Service.
    pub host: String,
}

impl Destination {
    /// The Istio subset of this version: `v` and the version, dots and the like as `-`.
    pub fn subset(&self) -> String {
        let plain = Version {
            build: semver::BuildMetadata::EMPTY,
            ..self.version.clone()
        };
        let name: String = format!("v{plain}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        name.to_ascii_lowercase()
    }

    /// The `version` label of its pods: the version without build metadata (which no label
    /// value may hold, and which is no part of a version's identity).
    pub fn label(&self) -> String {
        Version {
            build: semver::BuildMetadata::EMPTY,
            ..self.version.clone()
        }
        .to_string()
    }
}

/// Which requests a rule takes, by their `x-api-version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// This exact value.
    Exact(String),
    /// Values matching this regular expression (RE2 syntax, the whole value).
    Regex(String),
    /// Any value: what the rules before did not take.
    Any,
    /// No header (what every header rule before left).
    Absent,
}

/// One rule of a package: its requests go to `split`, or are refused when it is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which requests.
    pub header: HeaderMatch,
    /// Where they go: each destination with its share, numerators over `scale`; none: refused.
    pub split: Vec<(Destination, u64)>,
    /// The denominator of the shares.
    pub scale: u64,
    /// Why this rule exists, for a comment and for error messages.
    pub why: String,
}

/// The rules of one package, first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRoutes {
    /// The package (`increment.v1`).
    pub package: String,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// The whole table as rules, proxy-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshPlan {
    /// Every active backend, as a destination.
    pub destinations: Vec<Destination>,
    /// The packages, sorted.
    pub packages: Vec<PackageRoutes>,
}

/// A regular expression for the `x-api-version` values that pin `major` and nothing finer:
/// an optional `^`, `~` or `=`, the major, and up to two wildcard parts (`2`, `^2`, `~2.x`,
/// `=2.*.*`). Each means `>=M.0.0, <M+1.0.0`; `^2.1` or `~2.0` do not, and are left out.
pub fn major_pin_regex(major: u64) -> String {
    format!(r"^[\^~=]?{major}(\.[xX*](\.[xX*])?)?$")
}

/// The plan of the active backends in `backends` (the admin API's List), with the Services
/// `args` names.
pub fn plan(backends: &[Backend], args: &ExportArgs) -> anyhow::Result<MeshPlan> {
    let mut destinations = Vec::new();
    let mut served: Vec<(Destination, Vec<String>, Option<u8>)> = Vec::new();
    for backend in backends.iter().filter(|b| !b.draining) {
        let version = Version::parse(&backend.version).with_context(|| {
            format!(
                "backend {} has version {:?}, not semver",
                backend.name, backend.version
            )
        })?;
        let weight = backend
            .weight
            .map(|w| u8::try_from(w).ok().filter(|w| *w <= router::MAX_WEIGHT))
            .map(|w| {
                w.with_context(|| {
                    format!("backend {} has weight {:?}", backend.name, backend.weight)
                })
            })
            .transpose()?;
        let destination = Destination {
            backend: backend.name.clone(),
            version,
            api: backend.api.clone(),
            host: service_host(&backend.name, args)?,
        };
        // A label value holds at most 63 characters.
        if destination.label().len() > 63 {
            bail!(
                "backend {}'s version {} is longer than the 63 characters of a Kubernetes \
                 label value (its pods' `version` label)",
                backend.name,
                destination.label()
            );
        }
        destinations.push(destination.clone());
        served.push((destination, backend.serves.clone(), weight));
    }
    // Highest version first, as the router sorts the backends of a package.
    served.sort_by(|a, b| b.0.version.cmp_precedence(&a.0.version));
    let packages: BTreeSet<&String> = served.iter().flat_map(|(_, serves, _)| serves).collect();
    let packages = packages
        .into_iter()
        .map(|package| {
            let candidates: Vec<(&Destination, Option<u8>)> = served
                .iter()
                .filter(|(_, serves, _)| serves.contains(package))
                .map(|(d, _, w)| (d, *w))
                .collect();
            package_routes(package, &candidates)
        })
        .collect();
    Ok(MeshPlan {
        destinations,
        packages,
    })
}

/// The Service of backend `name`: a `--service-host` for it or its upstream, else the
/// upstream's name as a DNS label.
fn service_host(name: &str, args: &ExportArgs) -> anyhow::Result<String> {
    let upstream = name.split_once('/').map_or(name, |(upstream, _)| upstream);
    if let Some(given) = args
        .service_host
        .iter()
        .find(|s| s.name == name)
        .or_else(|| args.service_host.iter().find(|s| s.name == upstream))
    {
        return Ok(given.host.clone());
    }
    let label: String = upstream
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let label = label.trim_matches('-').to_string();
    if label.is_empty() || label.len() > 63 || !label.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!(
            "backend {name:?} has no name usable as a Kubernetes Service: give \
             --service-host {upstream}=HOST"
        );
    }
    Ok(label)
}

/// The rules of `package`, whose active backends are `candidates`, highest version first.
fn package_routes(package: &str, candidates: &[(&Destination, Option<u8>)]) -> PackageRoutes {
    let weighted = candidates.iter().any(|(_, w)| w.is_some());
    // What the router picks among the candidates `satisfies` lets through: the highest, or
    // the weighted split among them.
    let pick = |satisfies: &dyn Fn(&Version) -> bool| -> (Vec<(Destination, u64)>, u64) {
        let chosen: Vec<&(&Destination, Option<u8>)> = candidates
            .iter()
            .filter(|(d, _)| satisfies(&d.version))
            .collect();
        if chosen.is_empty() {
            return (Vec::new(), 1);
        }
        if !weighted {
            return (vec![(chosen[0].0.clone(), 1)], 1);
        }
        let weights: Vec<Option<u8>> = chosen.iter().map(|(_, w)| *w).collect();
        let (shares, scale) = router::shares(&weights);
        let split = chosen
            .iter()
            .zip(shares)
            .filter(|(_, share)| *share > 0)
            .map(|((d, _), share)| ((*d).clone(), share))
            .collect();
        (split, scale)
    };
    let rule = |header, (split, scale): (Vec<(Destination, u64)>, u64), why: String| Rule {
        header,
        split,
        scale,
        why,
    };
    let mut rules = Vec::new();
    for (destination, _) in candidates {
        let plain = destination.label();
        let exact = VersionReq::parse(&format!("={plain}")).ok();
        let Some(exact) = exact else { continue };
        rules.push(rule(
            HeaderMatch::Exact(format!("={plain}")),
            pick(&|v| exact.matches(v)),
            format!("{HEADER} ={plain}"),
        ));
    }
    let majors: BTreeSet<u64> = candidates.iter().map(|(d, _)| d.version.major).collect();
    for major in majors.into_iter().rev() {
        let req = VersionReq {
            comparators: vec![semver::Comparator {
                op: semver::Op::Caret,
                major,
                minor: None,
                patch: None,
                pre: semver::Prerelease::EMPTY,
            }],
        };
        let (split, scale) = pick(&|v| req.matches(v));
        // A major only prereleases have: the router refuses it, as the catch-all does.
        if !split.is_empty() {
            rules.push(rule(
                HeaderMatch::Regex(major_pin_regex(major)),
                (split, scale),
                format!("{HEADER} pinning major {major}"),
            ));
        }
    }
    rules.push(rule(
        HeaderMatch::Any,
        (Vec::new(), 1),
        format!("any other {HEADER}: a semver requirement the mesh cannot evaluate"),
    ));
    let stable = pick(&|v| v.pre.is_empty());
    let default = if stable.0.is_empty() {
        pick(&|_| true)
    } else {
        stable
    };
    rules.push(rule(HeaderMatch::Absent, default, format!("no {HEADER}")));
    PackageRoutes {
        package: package.to_string(),
        rules,
    }
}

/// The table of `backends` (as the admin API lists them) in `args.format`: the YAML text and
/// the same as JSON, or what the format cannot express.
pub fn export(
    backends: &[Backend],
    args: &ExportArgs,
) -> anyhow::Result<(String, serde_json::Value)> {
    let documents = match args.format {
        Format::Config => {
            let state = config_of(backends);
            let json = serde_json::json!({ "upstream": state.upstream });
            return Ok((state.to_yaml()?, json));
        }
        Format::Istio | Format::GatewayApi => documents(&plan(backends, args)?, args)?,
    };
    Ok((to_yaml(&documents)?, serde_json::Value::Array(documents)))
}

/// The mesh's YAML documents of `plan`, or what it cannot express (`Config` is no mesh's:
/// [`export`] writes it without a plan).
fn documents(plan: &MeshPlan, args: &ExportArgs) -> anyhow::Result<Vec<serde_json::Value>> {
    match args.format {
        Format::GatewayApi => gateway_api::documents(plan, args),
        Format::Istio | Format::Config => istio::documents(plan, args),
    }
}

/// `documents` as one YAML stream.
fn to_yaml(documents: &[serde_json::Value]) -> anyhow::Result<String> {
    let mut text = String::new();
    for document in documents {
        text += "---\n";
        text += &serde_norway::to_string(document).context("writing YAML")?;
    }
    Ok(text)
}

/// The metadata of an object named `name`.
fn metadata(name: &str, args: &ExportArgs) -> serde_json::Value {
    let mut metadata = serde_json::json!({
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "testbed"},
    });
    if let Some(namespace) = &args.namespace {
        metadata["namespace"] = namespace.clone().into();
    }
    metadata
}

/// `package` as part of an object's name: `increment-v1`.
fn dns_part(package: &str) -> String {
    package
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The rule's destinations rewrite the path to a package other than `package` (a retired
/// package): that other package, if all agree; an error if some rewrite and some do not.
pub(crate) fn rewrite_of(package: &str, rule: &Rule) -> anyhow::Result<Option<String>> {
    let apis: BTreeSet<&str> = rule.split.iter().map(|(d, _)| d.api.as_str()).collect();
    match apis.into_iter().collect::<Vec<_>>().as_slice() {
        [] => Ok(None),
        [api] if *api == package => Ok(None),
        [api] => Ok(Some((*api).to_string())),
        several => bail!(
            "{package}, {}: the split goes to backends implementing {}, which needs a \
             different path rewrite per destination; a route has one",
            rule.why,
            several.join(" and ")
        ),
    }
}

#[cfg(test)]
mod tests;

/// The gateway's upstreams as a `serve --config` file, from what the admin API lists (a
/// pinned-only build's weight is the gateway's own doing, so it is left out).
fn config_of(backends: &[Backend]) -> port::admin::state::State {
    let rows = backends.iter().map(|b| port::admin::state::Row {
        name: &b.name,
        version: b.version.clone(),
        address: &b.address,
        api: &b.api,
        serves: &b.serves,
        weight: b.weight.filter(|_| b.breaks.is_empty()),
        partial: b.partial_methods.clone(),
    });
    port::admin::state::State {
        upstream: port::admin::state::upstream_values(rows),
        descriptors: Vec::new(),
    }
}
