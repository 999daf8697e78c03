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
        self.update(|table| {
            let mut next = match catalog {
                Some(catalog) => table.with_catalog(catalog)?,
                None => table.clone(),
            };
            for backend in backends {
                next = next.with_replaced(backend)?;
            }
            Ok((next, ()))
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
            let Some(pool) = route.backend.pool.clone() else {
                continue;
            };
            if pool.take_passive_change() {
                changed += 1;
                tracing::warn!(backend = %route.backend.name, "remote backend is unreachable (a call failed)");
            }
            if only_unreachable && pool.is_reachable() {
                continue;
            }
            let services = table.catalog().service_names(&route.backend.api);
            let name = route.backend.name.clone();
            checks.spawn(async move {
                let reachable = probe::answers(pool.probe_channel(), services, timeout).await;
                (name, reachable, pool.set_reachable(reachable))
            });
        }
        while let Some(outcome) = checks.join_next().await {
            let Ok((name, reachable, true)) = outcome else {
                continue;
            };
            changed += 1;
            if reachable {
                tracing::info!(backend = %name, "remote backend is reachable again");
            } else {
                tracing::warn!(backend = %name, "remote backend is unreachable");
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
            let status = if table.is_available(package) {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in table.catalog().service_names(package) {
                health.set_service_status(service, status).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        TestRouter, V1, V2, backend, counting, info, inner, reply_body, request, router, send,
        served_by,
    };
    use http::Response;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use tonic::body::Body;
    use tower::Layer;

    /// One round of the drain race: two tasks send requests in a loop while backend `a` is
    /// drained. Returns how many requests reached `a` after `drain("a")` returned.
    async fn drain_round() -> usize {
        let drained = Arc::new(AtomicBool::new(false));
        let (calls, late) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let service = tower::service_fn({
            let (drained, calls, late) = (drained.clone(), calls.clone(), late.clone());
            move |_request| {
                calls.fetch_add(1, SeqCst);
                if drained.load(SeqCst) {
                    late.fetch_add(1, SeqCst);
                }
                async { Ok::<_, Infallible>(Response::new(reply_body())) }
            }
        });
        let a = Backend::in_process("a", "2.0.0".parse().unwrap(), V1, service);
        let b_calls = Arc::new(AtomicUsize::new(0));
        let b = counting("b", "1.0.0", V1, b_calls.clone());
        let (handle, router) = router(vec![a, b]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (router, stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(SeqCst) {
                        drop(send(&router, request("/demo.v1.Counter/Add", None)).await);
                    }
                })
            })
            .collect();
        while calls.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        handle.drain("a").await.unwrap();
        drained.store(true, SeqCst);
        // Let the senders go on for a while on the fresh table.
        let b_before = b_calls.load(SeqCst);
        while b_calls.load(SeqCst) < b_before + 10 {
            tokio::task::yield_now().await;
        }
        stop.store(true, SeqCst);
        for sender in senders {
            sender.await.unwrap();
        }
        late.load(SeqCst)
    }

    #[test]
    fn no_request_reaches_a_backend_once_its_drain_returned() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .enable_all()
            .build()
            .unwrap();
        let rounds = 1_000;
        let (mut bad_rounds, mut late) = (0, 0);
        runtime.block_on(async {
            for _ in 0..rounds {
                let n = drain_round().await;
                late += n;
                bad_rounds += usize::from(n > 0);
            }
        });
        assert_eq!(
            (bad_rounds, late),
            (0, 0),
            "in {bad_rounds} of {rounds} rounds, {late} requests reached a drained backend"
        );
    }

    /// A handle over backends `a` (2.0.0) and `b` (1.0.0), both serving `demo.v1`, and its router.
    async fn a_and_b() -> (RouterHandle, TestRouter) {
        router(vec![backend("a", "2.0.0", V1), backend("b", "1.0.0", V1)]).await
    }

    /// A `demo.v1` request, whose reply is in flight until dropped.
    async fn add(router: &TestRouter) -> Response<Body> {
        send(router, request("/demo.v1.Counter/Add", None)).await
    }

    #[tokio::test]
    async fn drain_within_reports_the_requests_still_open_and_leaves_the_backend_draining() {
        let (handle, router) = a_and_b().await;
        // Two replies from `a` whose bodies are not finished: two requests in flight.
        let open = [add(&router).await, add(&router).await];
        assert!(open.iter().all(|r| served_by(r) == "a"));

        let err = handle
            .drain_within("a", Duration::from_millis(50))
            .await
            .unwrap_err();
        let DrainError::StillOpen {
            ref backend,
            open: still_open,
            waited,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (backend.as_str(), still_open, waited),
            ("a", 2, Duration::from_millis(50))
        );
        assert_eq!(
            err.to_string(),
            "backend \"a\" still has 2 request(s) or stream(s) open after 50ms; it stays draining"
        );
        assert!(info(&handle, "a").draining);
        assert_eq!(served_by(&add(&router).await), "b");

        // Once the open requests end, the drain completes.
        drop(open);
        handle
            .drain_within("a", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(
            handle.drain_within("nope", Duration::from_secs(1)).await,
            Err(DrainError::Table(TableError::UnknownBackend(name))) if name == "nope"
        ));
    }

    #[tokio::test]
    async fn drain_counting_reports_what_was_open_and_what_still_is() {
        let (handle, router) = a_and_b().await;
        let open = [add(&router).await, add(&router).await];
        let count = handle
            .drain_counting("a", Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!((count.open_at_start, count.still_open), (2, 2));
        drop(open);
        let count = handle
            .drain_counting("a", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((count.open_at_start, count.still_open), (0, 0));
        assert!(matches!(
            handle.drain_counting("nope", Duration::from_secs(1)).await,
            Err(TableError::UnknownBackend(name)) if name == "nope"
        ));
    }

    #[tokio::test]
    async fn add_all_adds_every_backend_or_none() {
        let (handle, router) = a_and_b().await;
        let clash = handle
            .add_all(
                None,
                vec![backend("c", "3.0.0", V1), backend("a", "4.0.0", V1)],
            )
            .await
            .unwrap_err();
        assert!(matches!(clash, TableError::DuplicateName(ref name) if name == "a"));
        assert_eq!(handle.table().backends().len(), 2, "c was not added");
        // A catalog that forgets a package the router manages is refused.
        let narrower = ApiCatalog::from_encoded(&crate::testing::descriptors(), &[V1]).unwrap();
        let forgets = handle.add_all(Some(narrower), Vec::new()).await;
        assert!(forgets.is_err(), "{forgets:?}");
        handle
            .add_all(
                Some(crate::testing::catalog()),
                vec![backend("c", "3.0.0", V1)],
            )
            .await
            .unwrap();
        assert_eq!(served_by(&add(&router).await), "c");
    }

    #[tokio::test]
    async fn drain_without_limit_still_waits_for_requests_in_flight() {
        let (handle, router) = a_and_b().await;
        let open = add(&router).await;
        let drain = tokio::spawn({
            let handle = handle.clone();
            async move { handle.drain("a").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!drain.is_finished(), "the request on `a` is still open");
        drop(open);
        drain.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn replacing_a_draining_backend_keeps_it_draining() {
        let (handle, router) = a_and_b().await;
        handle.drain("a").await.unwrap();
        handle
            .replace(backend("a", "2.0.0", V2).also_serving(V1))
            .await
            .unwrap();
        let a = info(&handle, "a");
        assert!(a.draining, "{a:?}");
        assert_eq!(a.serves, [V2, V1]);
        assert_eq!(served_by(&add(&router).await), "b");
    }

    /// `drain` and `remove` of the same backend at once, while a request is in flight on it:
    /// the drain either fails (the removal came first) or returns only after the request ended.
    /// (Before the fix the drain looked the backend up again after its update, and returned Ok
    /// at once when the removal had slipped in between; that window is two statements wide, so
    /// this test guards the fix rather than reproducing the old failure reliably.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_racing_remove_never_returns_ok_while_a_request_is_in_flight() {
        for _ in 0..200 {
            let (handle, router) = a_and_b().await;
            let open = add(&router).await;
            let released = Arc::new(AtomicBool::new(false));
            let drain = tokio::spawn({
                let (handle, released) = (handle.clone(), released.clone());
                async move {
                    let drained = handle.drain("a").await;
                    (drained, released.load(SeqCst))
                }
            });
            let remove = tokio::spawn({
                let handle = handle.clone();
                async move { handle.remove("a").await }
            });
            remove.await.unwrap().unwrap();
            tokio::task::yield_now().await;
            released.store(true, SeqCst);
            drop(open);
            match drain.await.unwrap() {
                (Ok(()), released) => assert!(released, "drain returned with `a` busy"),
                (Err(err), _) => assert!(matches!(err, TableError::UnknownBackend(_)), "{err}"),
            }
        }
    }

    #[tokio::test]
    async fn a_table_taken_from_another_handle_gets_its_own_drain_state() {
        let (first, _router) = a_and_b().await;
        let second = RouterHandle::new(RouteTable::clone(&first.table()), None).await;
        let router = second.layer().layer(inner());
        first.drain("a").await.unwrap();
        // The second router still routes to `a`: the first handle's drain is not its business.
        assert_eq!(served_by(&add(&router).await), "a");
    }
}
