//! Changes the route table at runtime and keeps health statuses in step with it.

use crate::probe;
use crate::service::VersionRouterLayer;
use crate::table::RouteTable;
use crate::table::error::TableError;
use crate::table::state::BackendState;
use crate::{ApiCatalog, Backend};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Shared control of one router's table. Cloning it shares the same table.
///
/// Readers (the router) never lock; writers are serialized so each change builds on the last
/// and health updates are published in the order the changes happened.
#[derive(Clone)]
pub struct RouterHandle {
    table: Arc<ArcSwap<RouteTable>>,
    health: Option<HealthReporter>,
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for RouterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterHandle")
            .field("table", &self.table.load())
            .field("publishes_health", &self.health.is_some())
            .finish()
    }
}

/// Why [`RouterHandle::drain_within`] did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The drain could not start (no backend has the name).
    #[error(transparent)]
    Table(#[from] TableError),
    /// The time ran out with requests or streams still open on the backend. It stays draining:
    /// it gets no new requests, and the open ones may still finish.
    #[error(
        "backend {backend:?} still has {open} request(s) or stream(s) open after {waited:?}; \
         it stays draining"
    )]
    StillOpen {
        /// The backend's name.
        backend: String,
        /// Requests and streams open on it when the time ran out.
        open: usize,
        /// How long the drain waited.
        waited: Duration,
    },
}

/// What [`RouterHandle::drain_counting`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainCount {
    /// Requests and streams open on the backend when it stopped getting new ones.
    pub open_at_start: usize,
    /// Requests and streams still open on it when the wait ended: 0 when the drain completed.
    pub still_open: usize,
    /// How long the drain waited.
    pub waited: Duration,
}

impl RouterHandle {
    /// Takes charge of `table`; with `health`, every managed service's status follows the table
    /// (SERVING while some active, reachable backend serves its package, NOT_SERVING otherwise).
    ///
    /// The handle keeps its own in-flight counts and drain state for the table's backends, even
    /// if `table` was taken from another handle.
    pub async fn new(table: RouteTable, health: Option<HealthReporter>) -> Self {
        let handle = Self {
            table: Arc::new(ArcSwap::from_pointee(table.detached())),
            health,
            writer: Arc::default(),
        };
        handle.publish_health().await;
        handle
    }

    /// The layer that routes requests with this handle's table.
    pub fn layer(&self) -> VersionRouterLayer {
        VersionRouterLayer::new(self.table.clone())
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Adds `backend`; new requests may go to it at once.
    pub async fn add(&self, backend: Backend) -> Result<(), TableError> {
        self.update(|table| Ok((table.with_backend(backend)?, ())))
            .await
    }

    /// Adds `backends` in one change, all or none. With `catalog`, the table's catalog is first
    /// replaced by it (it must manage every package the current one does): how an upstream
    /// bringing packages the router did not manage yet joins a running router. Health then
    /// reports the new packages' services too.
    pub async fn add_all(
        &self,
        catalog: Option<ApiCatalog>,
        backends: Vec<Backend>,
    ) -> Result<(), TableError> {
        self.update(|table| {
            let mut next = match catalog {
                Some(catalog) => table.with_catalog(catalog)?,
                None => table.clone(),
            };
            for backend in backends {
                next = next.with_backend(backend)?;
            }
            Ok((next, ()))
        })
        .await
    }

    /// Puts `backend` in the place of the backend with the same name, e.g. the same v2 service now
    /// also routed `increment.v1` requests. Validated like any table change. A draining backend
    /// stays draining (see [`RouteTable::with_replaced`]).
    pub async fn replace(&self, backend: Backend) -> Result<(), TableError> {
        self.update(|table| Ok((table.with_replaced(backend)?, ())))
            .await
    }

    /// Replaces `backends` (each the backend of the same name) in one change, all or none, as
    /// [`replace`](Self::replace) replaces one: an upstream split into one backend per package
    /// changes as a whole. With `catalog`, over that catalog (holding the new backends' build).
    pub async fn replace_all(
        &self,
        catalog: Option<ApiCatalog>,
        backends: Vec<Backend>,
    ) -> Result<(), TableError> {
        self.update(|table| Ok((replacing(table, catalog, backends)?, ())))
            .await
    }

    /// Puts `table` in place of the whole table, in one change: the backends of the old one
    /// take no new calls (those in flight finish), health follows the new one.
    pub async fn replace_table(&self, table: RouteTable) -> Result<(), TableError> {
        self.update(|_| Ok((table, ()))).await
    }

    /// [`replace_all`](Self::replace_all), refused with [`TableError::ChangedMeanwhile`] when a
    /// backend of `backends` is no longer the one `seen` (an earlier table) held: a change made
    /// from what was read then (the drift watch's) never undoes one made since (an admin
    /// Replace).
    pub async fn replace_all_since(
        &self,
        seen: &RouteTable,
        catalog: Option<ApiCatalog>,
        backends: Vec<Backend>,
    ) -> Result<(), TableError> {
        self.update(|table| {
            for backend in &backends {
                if !table.holds_same_backend(seen, &backend.name) {
                    return Err(TableError::ChangedMeanwhile(backend.name.clone()));
                }
            }
            Ok((replacing(table, catalog, backends)?, ()))
        })
        .await
    }

    /// Stops routing new requests to backend `name` and waits, without a limit, until its
    /// in-flight requests and streams have finished. The backend stays in the table (as
    /// draining) until removed.
    ///
    /// Once this returns, no request reaches the backend any more, including requests that had
    /// already read the previous table when the drain began.
    pub async fn drain(&self, name: &str) -> Result<(), TableError> {
        let state = self.start_drain(name).await?;
        state.in_flight.idle().await;
        Ok(())
    }

    /// Like [`drain`](Self::drain), but gives up waiting after `timeout` with
    /// [`DrainError::StillOpen`], saying how many requests and streams are still open. The backend
    /// stays draining either way.
    pub async fn drain_within(&self, name: &str, timeout: Duration) -> Result<(), DrainError> {
        let state = self.start_drain(name).await?;
        if tokio::time::timeout(timeout, state.in_flight.idle())
            .await
            .is_ok()
        {
            return Ok(());
        }
        match state.in_flight.current() {
            0 => Ok(()),
            open => Err(DrainError::StillOpen {
                backend: name.to_string(),
                open,
                waited: timeout,
            }),
        }
    }

    /// Like [`drain_within`](Self::drain_within), but says what it saw either way: how many
    /// requests and streams were open when the backend stopped getting new ones, and how many
    /// still are when the wait ended (after `timeout` at most). The backend stays draining.
    pub async fn drain_counting(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<DrainCount, TableError> {
        let state = self.start_drain(name).await?;
        let open_at_start = state.in_flight.current();
        let started = tokio::time::Instant::now();
        // Timing out is an outcome here, reported through `still_open`.
        let _ = tokio::time::timeout(timeout, state.in_flight.idle()).await;
        Ok(DrainCount {
            open_at_start,
            still_open: state.in_flight.current(),
            waited: started.elapsed(),
        })
    }

    /// Marks `name` draining and returns its state, taken in the same locked update, so that a
    /// concurrent `remove` cannot make the drain lose track of the requests still in flight.
    async fn start_drain(&self, name: &str) -> Result<Arc<BackendState>, TableError> {
        self.update(|table| {
            let next = table.with_draining(name)?;
            let state = next
                .state_of(name)
                .ok_or_else(|| TableError::UnknownBackend(name.to_string()))?;
            Ok((next, state))
        })
        .await
    }

    /// Removes backend `name`. Requests already routed to it still finish; none is routed to it
    /// once this returns.
    pub async fn remove(&self, name: &str) -> Result<(), TableError> {
        self.update(|table| Ok((table.without(name)?, ()))).await
    }

    /// Gives backend `name` `weight` (`None` clears it), or every backend of an upstream named
    /// `name` (`name/PACKAGE`); returns how many backends it set.
    pub async fn set_weight(&self, name: &str, weight: Option<u8>) -> Result<usize, TableError> {
        self.update(|table| {
            let prefix = format!("{name}/");
            let names: Vec<String> = table
                .backends()
                .into_iter()
                .map(|b| b.name)
                .filter(|b| b == name || b.starts_with(&prefix))
                .collect();
            if names.is_empty() {
                return Err(TableError::UnknownBackend(name.to_string()));
            }
            let mut next = table.clone();
            for backend in &names {
                next = next.with_weight(backend, weight)?;
            }
            Ok((next, names.len()))
        })
        .await
    }

    /// Checks every remote backend once, as an [`UpstreamProbe`](crate::UpstreamProbe) does
    /// periodically, with `timeout` for each check, and republishes health when a backend's
    /// reachability changed (by this check, or by a call that failed since). Returns how many
    /// backends changed.
    pub async fn check_upstreams(&self, timeout: Duration) -> usize {
        self.check(timeout, false).await
    }

    /// Like [`check_upstreams`](Self::check_upstreams), but checks only the backends marked
    /// unreachable (what the probe does often, to see a recovery soon), and republishes health
    /// when a call marked a backend unreachable since the last check.
    pub async fn check_unreachable(&self, timeout: Duration) -> usize {
        self.check(timeout, true).await
    }

    async fn check(&self, timeout: Duration, only_unreachable: bool) -> usize {
        let table = self.table();
        let mut checks = tokio::task::JoinSet::new();
        let mut changed = 0;
        for route in table.routes() {
            let Some(replicas) = route.backend.replicas.as_ref() else {
                continue;
            };
            let several = replicas.pools().len() > 1;
            for pool in replicas.pools() {
                // A replica is named by its address beside the backend's name.
                let who = match several {
                    true => format!("{} (replica {})", route.backend.name, pool.uri()),
                    false => route.backend.name.clone(),
                };
                if pool.take_passive_change() {
                    changed += 1;
                    tracing::warn!(backend = %who, "remote backend is unreachable (a call failed)");
                }
                if only_unreachable && pool.is_reachable() {
                    continue;
                }
                let services = table.catalog().service_names(&route.backend.api);
                let pool = pool.clone();
                checks.spawn(async move {
                    let reachable = probe::answers(pool.probe_channel(), services, timeout).await;
                    (who, reachable, pool.set_reachable(reachable))
                });
            }
        }
        while let Some(outcome) = checks.join_next().await {
            let Ok((who, reachable, true)) = outcome else {
                continue;
            };
            changed += 1;
            if reachable {
                tracing::info!(backend = %who, "remote backend is reachable again");
            } else {
                tracing::warn!(backend = %who, "remote backend is unreachable");
            }
        }
        if changed > 0 {
            let _writer = self.writer.lock().await;
            self.publish_health().await;
        }
        changed
    }

    /// Swaps in the table `change` makes from the current one. Backends active before and not
    /// after (drained or removed) are then marked closed, so requests that read the old table
    /// select again instead of reaching them.
    async fn update<R>(
        &self,
        change: impl FnOnce(&RouteTable) -> Result<(RouteTable, R), TableError>,
    ) -> Result<R, TableError> {
        let _writer = self.writer.lock().await;
        let previous = self.table.load_full();
        let (next, out) = change(&previous)?;
        let next = Arc::new(next);
        self.table.store(next.clone());
        // After the store, so a request that sees a backend closed finds the new table when it
        // loads the table again.
        for route in previous.routes() {
            if !route.draining && !next.is_active(&route.state) {
                route.state.close();
            }
        }
        self.forget_health(&previous, &next).await;
        self.publish_health().await;
        Ok(out)
    }

    /// Clears the health status of the services of packages `previous` managed and `next` no
    /// longer does (added at runtime, their last backend gone), so that health answers
    /// `NOT_FOUND` for them as for any service it never knew.
    async fn forget_health(&self, previous: &RouteTable, next: &RouteTable) {
        let Some(health) = &self.health else { return };
        let mut health = health.clone();
        for package in previous.catalog().packages() {
            if next.catalog().manages(package) {
                continue;
            }
            for service in previous.catalog().service_names(package) {
                health.clear_service_status(&service).await;
            }
        }
    }

    async fn publish_health(&self) {
        let Some(health) = &self.health else { return };
        let table = self.table.load();
        for package in table.catalog().packages() {
            for service in table.catalog().service_names(package) {
                let status = if table.is_service_available(package, &service) {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status(service, status).await;
            }
        }
    }
}

/// `table` over `catalog` (when given) with each of `backends` in the place of the backend of
/// its name.
fn replacing(
    table: &RouteTable,
    catalog: Option<ApiCatalog>,
    backends: Vec<Backend>,
) -> Result<RouteTable, TableError> {
    let mut next = match catalog {
        Some(catalog) => table.with_catalog(catalog)?,
        None => table.clone(),
    };
    for backend in backends {
        next = next.with_replaced(backend)?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests;
