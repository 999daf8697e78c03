//! `testbed route list|add|replace|weight|usage|shadow|shadow-report|drain|remove|export
//! --admin ADDR`: change the routes of a running `testbed serve` through its admin API
//! (`serve --admin-addr`), as a table or as JSON (`export`: as mesh configuration, see [`crate::export`]). The
//! bearer token comes from `--token-file FILE` (the file holds just the token) or the
//! `TESTBED_ADMIN_TOKEN` environment variable. An admin API over TLS is named
//! `--admin https://HOST:PORT` with `--ca FILE` (the CA that signed its certificate);
//! `--cert FILE --key FILE` present a client certificate, which stands in for the token when
//! the server takes client certificates. A refused call exits non-zero with its gRPC status
//! and message; so does a drain that left requests open.

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use port::admin::pb::{
    AddRequest, Backend, DrainRequest, ListRequest, RemoveRequest, ReplaceRequest,
    SetWeightRequest, UsageRequest,
};
use port::admin::{AdminAddress, AdminClient};
use port::route_checks::escape_controls;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

mod shadow;
mod token;
mod usage;
mod xds;
pub use usage::to_json as usage_json;

/// The environment variable holding the admin token when no `--token-file` is given.
pub const TOKEN_ENV: &str = "TESTBED_ADMIN_TOKEN";

/// `testbed route`.
#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: RouteAction,
}

/// Where the admin API is, how to authenticate, and how to present the answer: every `route`
/// subcommand takes these.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The admin API's address (`testbed serve --admin-addr`): HOST:PORT in plaintext, or
    /// https://HOST:PORT over TLS (`serve --admin-tls-cert`; needs --ca).
    #[arg(long, value_name = "[https://]HOST:PORT", default_value = port::admin::DEFAULT_ADMIN_ADDR)]
    pub admin: AdminAddress,
    /// A file holding the bearer token: just the token, or `serve --admin-token-file`'s
    /// `NAME TOKEN` lines (then --token-name picks one when there are several). Else the
    /// TESTBED_ADMIN_TOKEN variable; neither is needed with --cert.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Which `NAME TOKEN` line of --token-file to send, when it holds several.
    #[arg(long, value_name = "NAME", requires = "token_file")]
    pub token_name: Option<String>,
    /// TLS for an https admin API (--cert/--key: a client certificate, for one that takes
    /// them with `serve --admin-client-ca`).
    #[command(flatten)]
    pub tls: compat::connect::TlsArgs,
    /// Print the reply as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One admin call.
#[derive(Debug, clap::Subcommand)]
pub enum RouteAction {
    /// The backends in the route table and the packages the router manages.
    List(Target),
    /// Add an upstream, as `serve --upstream` does at start (descriptors read by reflection
    /// or sent with --descriptors, `+PACKAGE` checked by compat).
    #[command(after_help = port::upstream::UPSTREAM_SPEC_HELP)]
    Add {
        /// The upstream.
        #[command(flatten)]
        upstream: UpstreamArgs,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// Put an upstream in the place of the backend of the same name (e.g. to retire an older
    /// package onto it: v2=2.0.0@127.0.0.1:7002+increment.v1).
    #[command(after_help = port::upstream::UPSTREAM_SPEC_HELP)]
    Replace {
        /// The upstream.
        #[command(flatten)]
        upstream: UpstreamArgs,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// Set a backend's weight: the percentage (0-100) of the calls it can serve that it takes,
    /// the highest version without a weight taking the rest; `none` clears it. A canary's
    /// steps: `route weight v2b 5`, then 25, then 100.
    Weight {
        /// The backend's name (an upstream's name sets all of its NAME/PACKAGE backends).
        name: String,
        /// 0 to 100, or `none`.
        weight: WeightArg,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// Who still calls what: per caller (address, user agent, `serve --usage-identity-header`
    /// or the client certificate's name)
    /// and per method, backend and version, the calls and when the last came.
    Usage {
        /// Only the calls served by this backend (an upstream's name: all of its backends).
        #[arg(long)]
        backend: Option<String>,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// Copy a sample of live unpinned calls of methods safe to repeat to a candidate backend
    /// and compare its replies with the primary's (never delaying them); --off stops.
    Shadow {
        /// The target.
        #[command(flatten)]
        shadow: shadow::ShadowArgs,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// What shadowing found: calls copied and compared, per method the differing fields with
    /// examples, the noise and a verdict. Exit code 0: the candidate answers as the primary;
    /// 100: a method broken or degraded; 3: nothing compared for some method.
    ShadowReport(Target),
    /// Stop routing new requests to a backend and wait for its in-flight requests.
    Drain {
        /// The backend's name.
        name: String,
        /// Drain even if it served callers within the gateway's quiet period whom no other
        /// backend serves (`serve --quiet-period-secs`).
        #[arg(long)]
        force: bool,
        /// Wait at most this many seconds (the server's default: 10; at most 600).
        #[arg(long = "timeout-secs", value_parser = crate::load::positive)]
        timeout: Option<f64>,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// Print the route table as mesh configuration: Istio (VirtualService and
    /// DestinationRules) or Gateway API (GRPCRoutes), YAML (--json: a JSON list). What the
    /// mesh cannot express is an error naming it. See docs/mesh.md.
    Export {
        /// What to write.
        #[command(flatten)]
        export: crate::export::ExportArgs,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
    /// Remove a backend (requests already routed to it finish).
    Remove {
        /// The backend's name.
        name: String,
        /// Remove even if it served callers within the gateway's quiet period whom no other
        /// backend serves (`serve --quiet-period-secs`).
        #[arg(long)]
        force: bool,
        /// The admin API.
        #[command(flatten)]
        target: Target,
    },
}

/// The upstream an Add or Replace names, and where its descriptors come from.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// NAME=VERSION@HOST:PORT[+PACKAGE...], e.g. v2=2.0.0@127.0.0.1:7002 (HOST:PORT may start
    /// with https://: the router then needs `serve --upstream-ca`).
    pub upstream: String,
    /// The upstream's descriptors, for one that serves no reflection: a FileDescriptorSet
    /// (`buf build -o FILE`, `protoc --include_imports -o FILE`) or a directory of .proto
    /// files, read here and sent with the call.
    #[arg(long, value_name = "FILE|DIR")]
    pub descriptors: Option<PathBuf>,
    /// Extra import path for a --descriptors directory (repeatable).
    #[arg(short = 'I', long, requires = "descriptors")]
    pub include: Vec<PathBuf>,
}

impl UpstreamArgs {
    /// The serialized `FileDescriptorSet` to send (empty: the router reads reflection).
    async fn descriptor_set(&self) -> anyhow::Result<Vec<u8>> {
        let Some(path) = &self.descriptors else {
            return Ok(Vec::new());
        };
        let pool = port::upstream::read_descriptors(path, &self.include)
            .await
            .context("--descriptors")?;
        Ok(pool.encode_to_vec())
    }
}

impl RouteAction {
    fn target(&self) -> &Target {
        match self {
            RouteAction::List(target)
            | RouteAction::Add { target, .. }
            | RouteAction::Replace { target, .. }
            | RouteAction::Weight { target, .. }
            | RouteAction::Usage { target, .. }
            | RouteAction::Shadow { target, .. }
            | RouteAction::ShadowReport(target)
            | RouteAction::Drain { target, .. }
            | RouteAction::Export { target, .. }
            | RouteAction::Remove { target, .. } => target,
        }
    }
}

/// `testbed route weight`'s value: a whole number from 0 to 100, or `none` (no weight).
#[derive(Debug, Clone, Copy)]
pub struct WeightArg(pub Option<u8>);

impl std::str::FromStr for WeightArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Self(None)),
            _ => text
                .parse::<u8>()
                .ok()
                .filter(|w| *w <= router::MAX_WEIGHT)
                .map(|w| Self(Some(w)))
                .ok_or_else(|| format!("{text:?} is not a weight: give 0 to 100, or none")),
        }
    }
}

/// The token in a `--token-file`'s `text`: the whole file when it is one word, else the
impl Target {
    /// A client of the admin API these flags name; a missing or malformed file, or TLS files
    /// with a plaintext address, are refused before connecting.
    pub(crate) async fn connect(&self) -> anyhow::Result<AdminClient> {
        let tls = self.tls.client_tls([self.admin.to_string().as_str()])?;
        let token = token::token(self)?;
        port::admin::connect_to(&self.admin, tls.as_ref(), token.as_deref()).await
    }

    /// A refused call as an error naming its status.
    pub(crate) fn refused(&self, status: tonic::Status) -> anyhow::Error {
        // A status the client made up from a broken connection says why only in its sources
        // (over TLS: the server's alert when it refused the client certificate).
        let mut text = compat::connect::status_chain(&status);
        let broken =
            std::error::Error::source(&status).is_some() || status.code() == tonic::Code::Cancelled;
        if broken && matches!(self.admin, AdminAddress::Https { .. }) {
            text += " (the connection broke: an https admin API refuses this way a client \
                     certificate from another CA, an expired one, or none where it requires one)";
        } else if broken {
            text += " (the connection broke: the admin API closes a new connection when every \
                     slot (--admin-max-connections) or its address's share \
                     (--admin-max-connections-per-peer) is held by authenticated callers)";
        }
        let token_left_out = self.tls.cert.is_some()
            && self.token_file.is_none()
            && std::env::var_os(TOKEN_ENV).is_some();
        if status.code() == tonic::Code::Unauthenticated && token_left_out {
            text += &format!(
                " ({TOKEN_ENV} is not sent beside --cert; give the token with --token-file FILE)"
            );
        }
        anyhow::anyhow!(
            "the admin API answered {:?}: {}",
            status.code(),
            escape_controls(&text)
        )
    }
}

/// Runs one `route` subcommand and prints its answer; the exit code (`shadow-report`'s
/// verdict, else 0).
pub async fn run(args: &RouteArgs) -> anyhow::Result<i32> {
    // Read before connecting: a bad file is reported without touching the router.
    let descriptor_set = match &args.action {
        RouteAction::Add { upstream, .. } | RouteAction::Replace { upstream, .. } => {
            Some(upstream.descriptor_set().await?)
        }
        _ => None,
    };
    let target = args.action.target();
    let mut client = target.connect().await?;
    let mut code = 0;
    let (text, value, failed) = match &args.action {
        RouteAction::Shadow { shadow, .. } => {
            let (text, value) = shadow::set(&mut client, target, shadow).await?;
            (text, value, None)
        }
        RouteAction::ShadowReport(_) => {
            let (text, value, exit) = shadow::read(&mut client, target).await?;
            code = exit;
            (text, value, None)
        }
        RouteAction::List(_) => {
            let reply = client
                .list(ListRequest {})
                .await
                .map_err(|status| target.refused(status))?
                .into_inner();
            let text = format!(
                "{}packages managed: {}\ncatalog: {} bytes of descriptors (encoded), at most {} \
                 (--max-catalog-bytes)\n",
                render(&reply.backends),
                escape_controls(&reply.packages.join(", ")),
                reply.catalog_bytes,
                reply.max_catalog_bytes
            );
            let mut value = json!({
                "backends": reply.backends.iter().map(backend_json).collect::<Vec<_>>(),
                "packages": reply.packages,
                "catalog_bytes": reply.catalog_bytes,
                "max_catalog_bytes": reply.max_catalog_bytes,
            });
            let mut text = text;
            if let Some(status) = &reply.xds {
                text += &xds::text(status);
                value["xds"] = xds::json(status);
            }
            (text, value, None)
        }
        RouteAction::Add { upstream, .. } | RouteAction::Replace { upstream, .. } => {
            let descriptor_set = descriptor_set.unwrap_or_default();
            let (verb, reply) = match &args.action {
                RouteAction::Add { .. } => (
                    "added",
                    client
                        .add(AddRequest {
                            upstream: upstream.upstream.clone(),
                            descriptor_set,
                        })
                        .await,
                ),
                _ => (
                    "replaced",
                    client
                        .replace(ReplaceRequest {
                            upstream: upstream.upstream.clone(),
                            descriptor_set,
                        })
                        .await,
                ),
            };
            let reply = reply.map_err(|status| target.refused(status))?.into_inner();
            let names: Vec<&str> = reply.changed.iter().map(|b| b.name.as_str()).collect();
            let mut text = format!(
                "{verb} {}\n{}",
                escape_controls(&names.join(", ")),
                render(&reply.backends)
            );
            for warning in &reply.warnings {
                text += &format!("warning: {}\n", escape_controls(warning));
            }
            let mut value = change_json(verb, &reply.changed, &reply.backends);
            value["warnings"] = json!(reply.warnings);
            (text, value, None)
        }
        RouteAction::Usage { backend, .. } => {
            let reply = client
                .usage(UsageRequest {
                    backend: backend.clone().unwrap_or_default(),
                })
                .await
                .map_err(|status| target.refused(status))?
                .into_inner();
            (usage::render(&reply), usage::to_json(&reply), None)
        }
        RouteAction::Drain {
            name,
            timeout,
            force,
            ..
        } => {
            let timeout_ms = match timeout {
                None => 0,
                Some(secs) => Duration::try_from_secs_f64(*secs)
                    .ok()
                    .and_then(|timeout| u32::try_from(timeout.as_millis()).ok())
                    .with_context(|| format!("--timeout-secs {secs} is too large"))?
                    .max(1),
            };
            let reply = client
                .drain(DrainRequest {
                    name: name.clone(),
                    timeout_ms,
                    force: *force,
                })
                .await
                .map_err(|status| target.refused(status))?
                .into_inner();
            let text = format!(
                "{} is draining: {} request(s) or stream(s) in flight when it began, {} finished, \
                 {} still open after {} ms\n{}",
                escape_controls(&reply.name),
                reply.open_at_start,
                reply.finished,
                reply.still_open,
                reply.waited_ms,
                render(&reply.backends)
            );
            let value = json!({
                "drained": reply.name,
                "open_at_start": reply.open_at_start,
                "finished": reply.finished,
                "still_open": reply.still_open,
                "waited_ms": reply.waited_ms,
                "backends": reply.backends.iter().map(backend_json).collect::<Vec<_>>(),
            });
            let failed = (reply.still_open > 0).then(|| {
                format!(
                    "the drain of {} did not complete: {} still open after {} ms (it stays \
                     draining)",
                    escape_controls(&reply.name),
                    reply.still_open,
                    reply.waited_ms
                )
            });
            (text, value, failed)
        }
        RouteAction::Weight {
            name,
            weight: WeightArg(weight),
            ..
        } => {
            let reply = client
                .set_weight(SetWeightRequest {
                    name: name.clone(),
                    weight: weight.map(u32::from),
                })
                .await
                .map_err(|status| target.refused(status))?
                .into_inner();
            let set = match weight {
                Some(weight) => format!("weight {weight}"),
                None => "no weight".to_string(),
            };
            let names: Vec<&str> = reply.changed.iter().map(|b| b.name.as_str()).collect();
            let text = format!(
                "{} now has {set}\n{}",
                escape_controls(&names.join(", ")),
                render(&reply.backends)
            );
            (
                text,
                change_json("weighted", &reply.changed, &reply.backends),
                None,
            )
        }
        RouteAction::Export { export, .. } => {
            let reply = client
                .list(ListRequest {})
                .await
                .map_err(|status| target.refused(status))?
                .into_inner();
            let (text, json) = crate::export::export(&reply.backends, export)?;
            (text, json, None)
        }
        RouteAction::Remove { name, force, .. } => {
            let reply = client
                .remove(RemoveRequest {
                    name: name.clone(),
                    force: *force,
                })
                .await
                .map_err(|status| target.refused(status))?
                .into_inner();
            let text = format!(
                "removed {}\n{}",
                escape_controls(name),
                render(&reply.backends)
            );
            (
                text,
                change_json("removed", &reply.changed, &reply.backends),
                None,
            )
        }
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{text}");
    }
    match failed {
        Some(why) => bail!(why),
        None => Ok(code),
    }
}

fn backend_json(backend: &Backend) -> Value {
    json!({
        "name": backend.name,
        "version": backend.version,
        "api": backend.api,
        "address": backend.address,
        "serves": backend.serves,
        "draining": backend.draining,
        "in_flight": backend.in_flight,
        "reachable": backend.reachable,
        "saturated": backend.saturated,
        "weight": backend.weight,
        "breaks": (!backend.breaks.is_empty()).then_some(&backend.breaks),
        "drifted": backend.drifted,
        "partial_methods": backend.partial_methods,
    })
}

fn change_json(verb: &str, changed: &[Backend], backends: &[Backend]) -> Value {
    json!({
        verb: changed.iter().map(backend_json).collect::<Vec<_>>(),
        "backends": backends.iter().map(backend_json).collect::<Vec<_>>(),
    })
}

/// The route table as a terminal table, control characters in what the server sent escaped
/// (a name must not move the cursor or color the terminal).
fn render(backends: &[Backend]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "backend",
        "version",
        "api",
        "address",
        "serves",
        "state",
        "weight",
        "in flight",
    ]);
    for backend in backends {
        let state = match (backend.draining, backend.reachable, backend.saturated) {
            (true, _, _) => "draining",
            (false, false, _) => "unreachable",
            (false, true, true) => "saturated",
            (false, true, false) if backend.drifted => "drifted",
            (false, true, false) => "active",
        };
        let address = match backend.address.as_str() {
            "" => "in-process",
            address => address,
        };
        table.add_row(
            [
                backend.name.as_str(),
                &backend.version,
                &backend.api,
                address,
                &serves(backend),
                state,
                &match (backend.weight, backend.breaks.is_empty()) {
                    (_, false) => "pinned-only".to_string(),
                    (Some(w), true) => format!("{w} %"),
                    (None, true) => "–".to_string(),
                },
                &backend.in_flight.to_string(),
            ]
            .map(escape_controls),
        );
    }
    let notes: String = backends
        .iter()
        .filter(|b| !b.breaks.is_empty())
        .map(|b| {
            let note = format!(
                "{} is pinned-only (calls whose x-api-version only it satisfies): its build \
                 breaks {}",
                b.name, b.breaks
            );
            escape_controls(&note) + "\n"
        })
        .collect();
    format!("{table}\n{notes}")
}

/// The packages routed to `backend`, each taken in part followed by the methods it takes.
fn serves(backend: &Backend) -> String {
    backend
        .serves
        .iter()
        .map(|package| {
            let prefix = format!("{package}/");
            let methods: Vec<&str> = backend
                .partial_methods
                .iter()
                .filter_map(|m| m.strip_prefix(&prefix))
                .collect();
            match methods.is_empty() {
                true => package.clone(),
                false => format!("{package} ({} only)", methods.join(", ")),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
