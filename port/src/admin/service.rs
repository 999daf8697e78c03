//! The `testbed.admin.v1.Routes` service over one router's [`RouterHandle`], and the listener
//! of its own it runs on. That listener goes through the port's accept loop
//! (`crate::accept`): at most [`super::ADMIN_MAX_CONNECTIONS`] connections at once and
//! [`super::ADMIN_MAX_CONNECTIONS_PER_PEER`] from one IP address (unless the flags say
//! otherwise; a connection that never authenticated makes room for a new one), and
//! [`super::ADMIN_HANDSHAKE_TIMEOUT`] for the TLS handshake and the HTTP/2 preface, after which
//! a silent connection is closed; HTTP/2 keep-alive pings close one that goes silent later.
//!
//! Add and Replace do what `serve --upstream` does at start: read the upstream's descriptors by
//! reflection, learn its packages, let the table check a `+PACKAGE` retirement with compat.
//! An Add whose upstream implements packages the router does not manage yet extends the
//! router's catalog with them in the same table change (health, reflection and the port's
//! unary-message check follow); the catalog may hold `--max-catalog-bytes` of encoded
//! descriptors (`super::catalog`), and a Remove (or Replace) that leaves such a package routed
//! by no backend drops it from the catalog again, freeing its descriptors. Replace changes
//! existing backends only,
//! so it refuses an upstream that brings new packages. Before reading anything, Add and
//! Replace check the upstream against reality (`crate::route_checks`): its address must not be
//! one of the gateway's own listeners, and something must accept a connection there (unlike
//! `--upstream` at start, which may name an upstream not up yet). Replace keeps the package a
//! backend serves; a version whose major disagrees with its package's `vN` is accepted with a
//! warning in the reply and the log. Add, Replace and Remove are serialized, so concurrent
//! Adds that each bring a new package both succeed. Statuses:
//! bad input INVALID_ARGUMENT, an unknown backend NOT_FOUND, a name already taken
//! ALREADY_EXISTS, an unreachable upstream, the gateway's own address, a package change or a
//! change the table or the descriptors refuse FAILED_PRECONDITION with the reason (compat's
//! findings quoted). Each change is logged with the caller's name and its target quoted.

use super::audit::{Made, log_change};
use super::auth::Caller;
use super::pb::routes_server::Routes;
use super::pb::{
    AddRequest, Backend as BackendReply, ChangeReply, DrainReply, DrainRequest, ListReply,
    ListRequest, RemoveRequest, ReplaceRequest, SetWeightRequest, ShadowReply, ShadowReportRequest,
    ShadowRequest, UsageReply, UsageRequest,
};
use crate::route_checks;
use crate::upstream::Gateway;
use router::{BackendInfo, RouterHandle, TableError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// How long a Drain waits when the request names no limit.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait a Drain may ask for.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a route change waits for another to finish (changes are serialized, and none
/// holds the lock across a network wait, so this is a bound on a stuck change, not a queue).
pub const CHANGE_WAIT: Duration = Duration::from_secs(30);

/// The address of every backend of `gateway`'s table, by backend name (`NAME`, or
/// `NAME/PACKAGE` for an upstream implementing several packages), for the admin API's listings.
pub fn addresses(gateway: &Gateway) -> HashMap<String, String> {
    let mut addresses = HashMap::new();
    for backend in gateway.table.backends() {
        let upstream = gateway
            .upstreams
            .iter()
            .find(|u| route_checks::belongs_to(&backend.name, &u.spec.name));
        if let Some(upstream) = upstream {
            addresses.insert(backend.name, upstream.spec.address());
        }
    }
    addresses
}

/// The Routes service over one router's table (built by the admin listener).
#[derive(Debug)]
pub(super) struct RoutesService {
    pub(super) handle: RouterHandle,
    /// Where each remote backend is, by name: what the table itself does not keep.
    pub(super) addresses: Mutex<HashMap<String, String>>,
    pub(super) upstream_ca: Option<PathBuf>,
    /// The gateway's own listening addresses (the port's, the admin listener's), refused as
    /// upstreams.
    pub(super) own: Vec<SocketAddr>,
    /// Upstreams the table may hold (`--max-upstreams`); an Add past it is refused.
    pub(super) max_upstreams: usize,
    /// Encoded descriptor bytes the catalog may hold (`--max-catalog-bytes`); an Add or
    /// Replace that would take it past them is refused.
    pub(super) max_catalog_bytes: usize,
    /// Replicas one upstream may list (`--max-replicas`); an Add or Replace with more is
    /// refused.
    pub(super) max_replicas: usize,
    /// Held by each Add, Replace and Remove from reading the table until the new one is
    /// stored: an Add extends the catalog it read, so two at once would each extend the same
    /// one and the second would drop the first's packages (and be refused for it). Never held
    /// across a network wait: an upstream is reached and read before it is taken.
    pub(super) changes: tokio::sync::Mutex<()>,
    /// The port's metrics, counting each change.
    pub(super) metrics: Option<Arc<crate::observe::Metrics>>,
    /// The port's usage table, when it keeps one.
    pub(super) usage: Option<Arc<crate::observe::Usage>>,
    /// The port's shadowing, when it can shadow.
    pub(super) shadow: Option<Arc<crate::shadow::Shadow>>,
    /// See [`AdminConfig::with_quiet_period`](super::AdminConfig::with_quiet_period).
    pub(super) quiet_period: Duration,
    /// Where the table is written after each change (`--state-file`).
    pub(super) state_file: Option<PathBuf>,
    /// The proxies each change must reach before it is answered (`--xds-addr`).
    pub(super) fleet: Option<Arc<dyn super::fleet::Fleet>>,
}

/// Hands `routes`' table to its fleet every [`super::fleet::REPUBLISH_EVERY`], for changes
/// that did not come through the admin API; what cannot be served is logged.
pub(super) fn republish(routes: &Arc<RoutesService>) -> tokio::task::JoinHandle<()> {
    let routes = Arc::downgrade(routes);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(super::fleet::REPUBLISH_EVERY);
        let mut last_error = None;
        loop {
            ticks.tick().await;
            let Some(routes) = routes.upgrade() else {
                return;
            };
            let Some(fleet) = &routes.fleet else { return };
            let outcome = fleet.publish(&|| routes.backends()).err();
            if outcome != last_error {
                if let Some(err) = &outcome {
                    tracing::error!(reason = %err, "the xDS control plane cannot serve the table");
                }
                last_error = outcome;
            }
        }
    })
}

/// Who made `request`, as the interceptor authenticated it.
fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("the call was not authenticated"))
}

impl RoutesService {
    /// Logs a change with who asked for it (quoted, as every field from a caller), what it
    /// was, and how it ended, and counts it in the metrics.
    fn log_change(
        &self,
        who: &Caller,
        action: &'static str,
        target: &str,
        outcome: Result<&str, &Status>,
        made: Made,
    ) {
        if let Some(metrics) = &self.metrics {
            metrics.admin_change(action, super::audit::result(outcome, made));
        }
        log_change(who, action, target, outcome, made);
    }
}

/// The status for a change the table refused.
pub(super) fn table_status(err: &TableError) -> Status {
    let message = err.to_string();
    match err {
        TableError::UnknownBackend(_) => Status::not_found(message),
        TableError::DuplicateName(_) => Status::already_exists(message),
        _ => Status::failed_precondition(message),
    }
}

pub(super) fn required<'a>(what: &str, text: &'a str, example: &str) -> Result<&'a str, Status> {
    match text.trim() {
        "" => Err(Status::invalid_argument(format!(
            "{what} is empty; expected {example}"
        ))),
        text => Ok(text),
    }
}

pub(super) const UPSTREAM_EXAMPLE: &str =
    "NAME=VERSION@HOST:PORT[+PACKAGE...], e.g. v2=2.0.0@127.0.0.1:7002+increment.v1";

impl RoutesService {
    /// `info` as the admin API reports it.
    fn reply(&self, info: BackendInfo) -> BackendReply {
        let address = self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&info.name)
            .cloned()
            .unwrap_or_default();
        let partial_methods = info.partial_methods();
        BackendReply {
            name: info.name,
            version: info.version.to_string(),
            api: info.api,
            address,
            serves: info.serves,
            draining: info.draining,
            in_flight: info.in_flight as u64,
            reachable: info.reachable,
            saturated: info.saturated,
            weight: info.weight.map(u32::from),
            breaks: info.breaks.unwrap_or_default(),
            drifted: info.drifted,
            partial_methods,
        }
    }

    /// Once a change is made: the fleet serves it, and every connected proxy acknowledged it
    /// (bounded by the fleet's own wait), or the status saying which did not and why.
    async fn fleet_applied(&self) -> Result<(), Status> {
        let Some(fleet) = &self.fleet else {
            return Ok(());
        };
        let version = fleet.publish(&|| self.backends()).map_err(|err| {
            Status::failed_precondition(format!(
                "the route table changed, but the xDS control plane cannot serve it (the \
                 proxies keep their previous routes): {err}"
            ))
        })?;
        fleet.applied(version).await
    }

    /// Hands the table to the fleet once it shows backend `name` draining (a drain's first
    /// step), for at most a second; nothing without a fleet. The caller stops polling it once
    /// the drain itself ends (a refused drain never shows it draining).
    async fn publish_once_draining(&self, name: &str) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        let until = tokio::time::Instant::now() + super::fleet::REPUBLISH_EVERY;
        while tokio::time::Instant::now() < until {
            if self.backends().iter().any(|b| b.name == name && b.draining) {
                // Read again under the fleet's lock: a later change may be made by then.
                if let Err(err) = fleet.publish(&|| self.backends()) {
                    tracing::error!(reason = %err, "the xDS control plane cannot serve the table");
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// `result` of a change, once the fleet applied it, and whether the table holds it (a
    /// change made that the fleet did not take is an error too).
    async fn applied<T>(&self, result: Result<T, Status>) -> (Result<T, Status>, Made) {
        let reply = match result {
            Ok(reply) => reply,
            Err(status) => return (Err(status), Made::No),
        };
        match self.fleet_applied().await {
            Ok(()) => (Ok(reply), Made::Yes),
            Err(status) => (Err(status), Made::Yes),
        }
    }

    /// The whole table now.
    fn backends(&self) -> Vec<BackendReply> {
        let table = self.handle.table();
        table
            .backends()
            .into_iter()
            .map(|info| self.reply(info))
            .collect()
    }

    /// The table now, the backends named `changed` in it, and `warnings`.
    /// Writes the table to the state file, if there is one; what went wrong, if anything, logged
    /// and as a warning for the reply (the change itself stands).
    pub(super) fn persist(&self) -> Option<String> {
        let path = self.state_file.as_ref()?;
        // Held while writing, so that two changes' writes cannot land out of order: each
        // writes the table as it is once it holds the lock.
        let addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let table = self.handle.table();
        let dir = super::state::descriptors_dir(path);
        let written =
            super::state::State::of(&table, &addresses, &dir).and_then(|state| state.save(path));
        let err = written.err()?;
        let warning = format!(
            "the change is made, but the state file {} was not written: {err:#}",
            path.display()
        );
        tracing::error!("{warning}");
        Some(warning)
    }

    /// The reply to a change that was made, once the state file (if any) holds it.
    pub(super) fn change_reply(
        &self,
        changed: &[String],
        mut warnings: Vec<String>,
    ) -> ChangeReply {
        warnings.extend(self.persist());
        let backends = self.backends();
        ChangeReply {
            warnings,
            changed: backends
                .iter()
                .filter(|b| changed.contains(&b.name))
                .cloned()
                .collect(),
            backends,
        }
    }

    async fn drain_backend(&self, request: &DrainRequest) -> Result<DrainReply, Status> {
        let name = required("name", &request.name, "a backend's name")?;
        route_checks::check_backend_name(name).map_err(Status::invalid_argument)?;
        let timeout = match request.timeout_ms {
            0 => DEFAULT_DRAIN_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if timeout > MAX_DRAIN_TIMEOUT {
            return Err(Status::invalid_argument(format!(
                "timeout_ms {} is more than the most a drain may wait ({} ms)",
                request.timeout_ms,
                MAX_DRAIN_TIMEOUT.as_millis()
            )));
        }
        if !request.force {
            self.check_quiet_period(name, "drain")?;
        }
        let count = self
            .handle
            .drain_counting(name, timeout)
            .await
            .map_err(|err| table_status(&err))?;
        Ok(DrainReply {
            name: name.to_string(),
            open_at_start: count.open_at_start as u64,
            finished: count.open_at_start.saturating_sub(count.still_open) as u64,
            still_open: count.still_open as u64,
            waited_ms: u64::try_from(count.waited.as_millis()).unwrap_or(u64::MAX),
            backends: self.backends(),
        })
    }

    async fn set_weight_of(&self, request: &SetWeightRequest) -> Result<ChangeReply, Status> {
        let name = required("name", &request.name, "a backend's name")?;
        route_checks::check_backend_name(name).map_err(Status::invalid_argument)?;
        let weight = match request.weight {
            None => None,
            Some(weight) => Some(
                u8::try_from(weight)
                    .ok()
                    .filter(|w| *w <= router::MAX_WEIGHT)
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "weight {weight} is not from 0 to {}",
                            router::MAX_WEIGHT
                        ))
                    })?,
            ),
        };
        let _change = self.lock_changes().await?;
        self.handle
            .set_weight(name, weight)
            .await
            .map_err(|err| table_status(&err))?;
        let prefix = format!("{name}/");
        let backends = self.backends();
        Ok(ChangeReply {
            changed: backends
                .iter()
                .filter(|b| b.name == name || b.name.starts_with(&prefix))
                .cloned()
                .collect(),
            backends,
            warnings: self.persist().into_iter().collect(),
        })
    }

    /// Refuses taking `name` out of the table when the quiet period says callers would be
    /// stranded.
    fn check_quiet_period(&self, name: &str, action: &str) -> Result<(), Status> {
        let Some(usage) = &self.usage else {
            return Ok(());
        };
        let backends = self.handle.table().backends();
        super::usage::check_quiet_period(
            usage,
            &backends,
            name,
            action,
            self.quiet_period,
            std::time::SystemTime::now(),
        )
    }

    async fn remove_backend(&self, request: &RemoveRequest) -> Result<ChangeReply, Status> {
        let name = required("name", &request.name, "a backend's name")?;
        route_checks::check_backend_name(name).map_err(Status::invalid_argument)?;
        let _change = self.lock_changes().await?;
        if !request.force {
            self.check_quiet_period(name, "remove")?;
        }
        let before = self
            .handle
            .table()
            .backends()
            .into_iter()
            .find(|b| b.name == name);
        // A package only this backend was routed leaves the catalog; the heap is trimmed when
        // the last holder of the old catalog (a probe in progress, say) lets it go.
        self.handle
            .remove(name)
            .await
            .map_err(|err| table_status(&err))?;
        let changed = before.map(|info| self.reply(info)).into_iter().collect();
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(ChangeReply {
            changed,
            backends: self.backends(),
            warnings: self.persist().into_iter().collect(),
        })
    }
}

#[tonic::async_trait]
impl Routes for RoutesService {
    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        caller(&request)?;
        let table = self.handle.table();
        Ok(Response::new(ListReply {
            backends: self.backends(),
            packages: table
                .catalog()
                .packages()
                .into_iter()
                .map(str::to_string)
                .collect(),
            catalog_bytes: table.catalog().encoded_len() as u64,
            max_catalog_bytes: self.max_catalog_bytes as u64,
            xds: self.fleet.as_ref().map(|fleet| fleet.status()),
        }))
    }

    async fn add(&self, request: Request<AddRequest>) -> Result<Response<ChangeReply>, Status> {
        let who = caller(&request)?;
        let request = request.into_inner();
        let (result, made) = self.applied(self.add_upstream(&request).await).await;
        self.log_change(
            &who,
            "add",
            &request.upstream,
            result.as_ref().map(|_| "added"),
            made,
        );
        result.map(Response::new)
    }

    async fn replace(
        &self,
        request: Request<ReplaceRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        let who = caller(&request)?;
        let request = request.into_inner();
        let (result, made) = self.applied(self.replace_upstream(&request).await).await;
        self.log_change(
            &who,
            "replace",
            &request.upstream,
            result.as_ref().map(|_| "replaced"),
            made,
        );
        result.map(Response::new)
    }

    async fn drain(&self, request: Request<DrainRequest>) -> Result<Response<DrainReply>, Status> {
        let who = caller(&request)?;
        let request = request.into_inner();
        // The fleet stops sending it new calls as the drain begins, not once its wait ends;
        // once the drain ends (a refused one at once) the polling for its start stops.
        let drain = self.drain_backend(&request);
        tokio::pin!(drain);
        let drained = tokio::select! {
            drained = &mut drain => drained,
            () = self.publish_once_draining(&request.name) => drain.await,
        };
        let (result, made) = self.applied(drained).await;
        let summary = result.as_ref().map(|reply| {
            format!(
                "draining; {} in flight at start, {} finished, {} still open after {} ms",
                reply.open_at_start, reply.finished, reply.still_open, reply.waited_ms
            )
        });
        self.log_change(
            &who,
            "drain",
            &request.name,
            summary.as_deref().map_err(|s| *s),
            made,
        );
        result.map(Response::new)
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        let who = caller(&request)?;
        let request = request.into_inner();
        let (result, made) = self.applied(self.remove_backend(&request).await).await;
        let outcome = if request.force {
            "removed (forced)"
        } else {
            "removed"
        };
        self.log_change(
            &who,
            "remove",
            &request.name,
            result.as_ref().map(|_| outcome),
            made,
        );
        result.map(Response::new)
    }

    async fn usage(&self, request: Request<UsageRequest>) -> Result<Response<UsageReply>, Status> {
        caller(&request)?;
        let filter = request.into_inner().backend;
        Ok(Response::new(super::usage::reply(
            self.usage.as_deref(),
            &filter,
            self.quiet_period,
        )))
    }

    async fn shadow(
        &self,
        request: Request<ShadowRequest>,
    ) -> Result<Response<ShadowReply>, Status> {
        let who = caller(&request)?;
        let request = request.into_inner();
        let target = request.candidate.clone();
        let outcome = super::shadow::of(self.shadow.as_deref())
            .and_then(|shadow| super::shadow::set(shadow, &request).map(|text| (shadow, text)));
        match outcome {
            Ok((shadow, text)) => {
                self.log_change(&who, "shadow", &target, Ok(&text), Made::Yes);
                Ok(Response::new(super::shadow::reply(shadow)?))
            }
            Err(status) => {
                self.log_change(&who, "shadow", &target, Err(&status), Made::No);
                Err(status)
            }
        }
    }

    async fn shadow_report(
        &self,
        request: Request<ShadowReportRequest>,
    ) -> Result<Response<ShadowReply>, Status> {
        caller(&request)?;
        let shadow = super::shadow::of(self.shadow.as_deref())?;
        Ok(Response::new(super::shadow::reply(shadow)?))
    }

    async fn set_weight(
        &self,
        request: Request<SetWeightRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        let who = caller(&request)?;
        let request = request.into_inner();
        let (result, made) = self.applied(self.set_weight_of(&request).await).await;
        let outcome = match request.weight {
            Some(weight) => format!("weight {weight}"),
            None => "weight cleared".to_string(),
        };
        log_change(
            &who,
            "set-weight",
            &request.name,
            result.as_ref().map(|_| outcome.as_str()),
            made,
        );
        result.map(Response::new)
    }
}
