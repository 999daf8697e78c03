//! The route table: which backends serve which API package, as immutable data.
//!
//! A table is validated once, when it is built, and never changed afterwards; runtime changes
//! build a new table from the old one and swap it in (see `RouterHandle`). Lookups on the hot
//! path are a hash lookup and a scan of a short list already sorted newest first.

use crate::catalog::{ApiCatalog, CatalogError};
use crate::inflight::InFlight;
use crate::requirement::API_VERSION_HEADER;
use crate::{Backend, GrpcPath};
use http::HeaderValue;
use semver::{Version, VersionReq};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::Status;

/// Why a route table could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The API catalog could not be read.
    #[error("the API catalog is unusable: {0}")]
    Catalog(#[from] CatalogError),
    /// Two backends share a name.
    #[error("a backend named {0:?} is already in the route table")]
    DuplicateName(String),
    /// No backend has the name.
    #[error("no backend named {0:?} is in the route table")]
    UnknownBackend(String),
    /// A backend speaks or is routed for a package the catalog does not manage.
    #[error(
        "backend {backend:?}: package {package} is not managed by this router (managed: {managed})"
    )]
    UnmanagedPackage {
        /// The backend's name.
        backend: String,
        /// The package it named.
        package: String,
        /// The packages the catalog manages.
        managed: String,
    },
    /// A backend is routed for a package its own API cannot serve without answering wrongly.
    #[error("backend {backend:?} cannot serve {package} requests: {reason}")]
    Incompatible {
        /// The backend's name.
        backend: String,
        /// The package it was to serve.
        package: String,
        /// What the descriptors disagree on.
        reason: CatalogError,
    },
    /// Two active backends with the same version serve one package, so the choice is ambiguous.
    /// Versions are compared by semver precedence: build metadata does not count, so `2.0.0`
    /// and `2.0.0+build5` are the same version.
    #[error(
        "backends {first:?} and {second:?} both serve {package} at version {version}{}",
        if *.build_metadata_differs {
            " (versions that differ only in build metadata, after '+', are the same version)"
        } else {
            ""
        }
    )]
    AmbiguousVersion {
        /// The package.
        package: String,
        /// The shared version, as the first backend gives it (boxed: keeps the error small).
        version: Box<Version>,
        /// Whether the second backend gives it with other build metadata.
        build_metadata_differs: bool,
        /// One backend.
        first: String,
        /// The other backend.
        second: String,
    },
}

/// A backend as the table holds it, with the state the router needs on the hot path.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) backend: Backend,
    /// The `x-api-version` response header value, formatted once.
    pub(crate) version_header: HeaderValue,
    /// State shared by every table that holds this backend (under this name, since it was added).
    pub(crate) state: Arc<BackendState>,
    pub(crate) draining: bool,
}

/// What one backend's entries in successive tables share: its in-flight count and whether the
/// router has stopped routing to it. (Whether it is reachable is kept by its connection pool.)
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    pub(crate) in_flight: Arc<InFlight>,
    /// Set (once, never cleared) by `RouterHandle` after it stored a table in which this backend
    /// is draining or absent. A request that selected the backend from an older table checks it
    /// after counting itself in flight, and selects again if it is set; see
    /// `VersionRouter::call` for why that closes the drain race.
    closed: AtomicBool,
}

impl BackendState {
    /// Whether the router has stopped routing new requests to this backend.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// A snapshot of one backend's state, for status output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// The backend's name.
    pub name: String,
    /// Its version.
    pub version: Version,
    /// The package it implements.
    pub api: String,
    /// The packages routed to it.
    pub serves: Vec<String>,
    /// Whether it is draining (gets no new requests).
    pub draining: bool,
    /// Requests (and streams) in flight on it now.
    pub in_flight: usize,
    /// Whether it answered the last reachability check (see `UpstreamProbe`) and no call to it
    /// failed in transport since. Always `true` for in-process backends, and for remote ones
    /// until a check or a call has found them unreachable.
    pub reachable: bool,
    /// Whether its connection pool is full (every connection at its stream limit): it answers,
    /// but new calls wait or get `RESOURCE_EXHAUSTED`. Always `false` for in-process backends.
    pub saturated: bool,
}

/// An immutable, validated set of backends and the index used to pick one per request.
#[derive(Clone)]
pub struct RouteTable {
    catalog: Arc<ApiCatalog>,
    routes: Vec<Route>,
    /// Package → indices into `routes` of its active backends, highest version first.
    by_package: HashMap<String, Vec<usize>>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.backends()).finish()
    }
}

impl RouteTable {
    /// Builds and validates a table of `backends` for the APIs in `catalog`.
    pub fn new(catalog: ApiCatalog, backends: Vec<Backend>) -> Result<Self, TableError> {
        let routes = backends.into_iter().map(Route::new).collect();
        Self::from_routes(Arc::new(catalog), routes)
    }

    fn from_routes(catalog: Arc<ApiCatalog>, routes: Vec<Route>) -> Result<Self, TableError> {
        for (i, route) in routes.iter().enumerate() {
            if routes[..i]
                .iter()
                .any(|r| r.backend.name == route.backend.name)
            {
                return Err(TableError::DuplicateName(route.backend.name.clone()));
            }
            check_backend(&catalog, &route.backend)?;
        }
        let mut by_package: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, route) in routes.iter().enumerate().filter(|(_, r)| !r.draining) {
            for package in &route.backend.serves {
                by_package.entry(package.clone()).or_default().push(i);
            }
        }
        // Semver precedence, not `Ord`: build metadata (`2.0.0+build5`) is no part of a
        // version's identity (semver 2.0.0, item 10), so `2.0.0` and `2.0.0+build5` are one
        // version and two active backends of one package that differ only in it are refused.
        let precedence = |i: usize, j: usize| {
            routes[i]
                .backend
                .version
                .cmp_precedence(&routes[j].backend.version)
        };
        for (package, indices) in &mut by_package {
            indices.sort_by(|a, b| precedence(*b, *a));
            if let Some(pair) = indices
                .windows(2)
                .find(|pair| precedence(pair[0], pair[1]).is_eq())
            {
                return Err(TableError::AmbiguousVersion {
                    package: package.clone(),
                    version: Box::new(routes[pair[0]].backend.version.clone()),
                    build_metadata_differs: routes[pair[0]].backend.version.build
                        != routes[pair[1]].backend.version.build,
                    first: routes[pair[0]].backend.name.clone(),
                    second: routes[pair[1]].backend.name.clone(),
                });
            }
        }
        Ok(Self {
            catalog,
            routes,
            by_package,
        })
    }

    /// The catalog of managed APIs.
    pub fn catalog(&self) -> &ApiCatalog {
        &self.catalog
    }

    /// Every backend in the table, draining ones included.
    pub fn backends(&self) -> Vec<BackendInfo> {
        self.routes
            .iter()
            .map(|r| BackendInfo {
                name: r.backend.name.clone(),
                version: r.backend.version.clone(),
                api: r.backend.api.clone(),
                serves: r.backend.serves.clone(),
                draining: r.draining,
                in_flight: r.state.in_flight.current(),
                reachable: r.is_reachable(),
                saturated: r.backend.is_saturated(),
            })
            .collect()
    }

    /// Whether some active backend serves `package`.
    pub fn is_served(&self, package: &str) -> bool {
        self.by_package.get(package).is_some_and(|v| !v.is_empty())
    }

    /// Whether some active backend that is reachable (as far as the last check knows) serves
    /// `package`: what its health status reports.
    pub fn is_available(&self, package: &str) -> bool {
        self.by_package
            .get(package)
            .is_some_and(|v| v.iter().any(|&i| self.routes[i].is_reachable()))
    }

    /// Picks the backend for a request to `path`'s package with the `x-api-version`
    /// `requirement`, among the active (not draining) backends serving that package, or
    /// `UNIMPLEMENTED` naming the requirement and the versions available.
    ///
    /// A backend marked unreachable (by the probe, or by a call that failed in transport) is
    /// skipped when a reachable one satisfies the request too: the highest satisfying reachable
    /// version wins. When none of the satisfying backends is reachable, the choice is made as if
    /// all were, so the caller gets the `UNAVAILABLE` that names the backend.
    ///
    /// Prereleases follow semver's convention:
    /// - With a requirement, the highest version for which [`VersionReq::matches`] holds wins.
    ///   That excludes prereleases such as `2.1.0-rc.1` unless the requirement itself names a
    ///   prerelease of the same `major.minor.patch` (`>=2.1.0-rc.1`, `=2.1.0-rc.1`); `*` and
    ///   `^2` do not.
    /// - Without one, the highest stable (non-prerelease) version wins; a prerelease is chosen
    ///   only when no stable backend serves the package at all. So adding a release candidate
    ///   beside `2.0.0` sends it only the requests that ask for it.
    pub(crate) fn select(
        &self,
        path: &GrpcPath<'_>,
        requirement: Option<&VersionReq>,
    ) -> Result<&Route, Status> {
        let candidates = self
            .by_package
            .get(path.package)
            .map_or(&[][..], Vec::as_slice);
        let routes = candidates.iter().map(|&i| &self.routes[i]);
        // Highest first, so the first that satisfies is the highest that does.
        let best = |satisfies: &dyn Fn(&Route) -> bool| {
            routes
                .clone()
                .find(|r| satisfies(r) && r.is_reachable())
                .or_else(|| routes.clone().find(|r| satisfies(r)))
        };
        let chosen = match requirement {
            Some(req) => best(&|r| req.matches(&r.backend.version)),
            // The highest stable version; failing any stable one, the highest prerelease.
            None => best(&|r| r.backend.version.pre.is_empty()).or_else(|| best(&|_| true)),
        };
        chosen.ok_or_else(|| {
            let available: Vec<String> = candidates
                .iter()
                .map(|&i| self.routes[i].backend.version.to_string())
                .collect();
            let available = if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            };
            let wanted = requirement.map_or_else(
                || "any version".to_string(),
                |req| format!("{API_VERSION_HEADER} {req}"),
            );
            Status::unimplemented(format!(
                "no backend serves {} with {wanted}; versions serving {}: {available}",
                path.package, path.package
            ))
        })
    }

    /// A new table with `backend` added.
    pub fn with_backend(&self, backend: Backend) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        routes.push(Route::new(backend));
        Self::from_routes(self.catalog.clone(), routes)
    }

    /// A new table with the same backends (sharing their state) over `catalog`, which must
    /// manage every package this table's catalog does: the table of a router that learned new
    /// packages at runtime.
    pub fn with_catalog(&self, catalog: ApiCatalog) -> Result<Self, TableError> {
        if let Some(missing) = self
            .catalog
            .packages()
            .into_iter()
            .find(|package| !catalog.manages(package))
        {
            return Err(CatalogError::UnknownPackage(missing.to_string()).into());
        }
        Self::from_routes(Arc::new(catalog), self.routes.clone())
    }

    /// A new table in which `backend` takes the place of the backend with the same name (to route
    /// more packages to it, say). Requests in flight on the old one keep being counted.
    ///
    /// A draining backend stays draining: replacing it does not make it eligible for new
    /// requests again (the drain that is waiting for it would otherwise wait on a backend that
    /// is taking new requests). To bring it back, remove it and add it again.
    pub fn with_replaced(&self, backend: Backend) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        let i = self
            .position(&backend.name)
            .ok_or_else(|| TableError::UnknownBackend(backend.name.clone()))?;
        routes[i] = Route {
            state: routes[i].state.clone(),
            draining: routes[i].draining,
            ..Route::new(backend)
        };
        Self::from_routes(self.catalog_for(&routes)?, routes)
    }

    /// A new table in which backend `name` is draining: it keeps its in-flight requests but is
    /// chosen for no new ones.
    pub fn with_draining(&self, name: &str) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        self.position(name)
            .map(|i| routes[i].draining = true)
            .ok_or_else(|| TableError::UnknownBackend(name.to_string()))?;
        Self::from_routes(self.catalog.clone(), routes)
    }

    /// A new table without backend `name`. Requests already routed to it still finish, since
    /// each holds its own handle to the backend's service. A package added to the catalog at
    /// runtime that no backend is routed any more leaves the catalog with it.
    pub fn without(&self, name: &str) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        let i = self
            .position(name)
            .ok_or_else(|| TableError::UnknownBackend(name.to_string()))?;
        routes.remove(i);
        Self::from_routes(self.catalog_for(&routes)?, routes)
    }

    /// The catalog for a table of `routes`: this one, less the packages added at runtime that
    /// none of them is routed any more and the files only those needed (see
    /// [`ApiCatalog::retaining`]), so that removing a backend frees what only it brought.
    fn catalog_for(&self, routes: &[Route]) -> Result<Arc<ApiCatalog>, TableError> {
        let routed = routes
            .iter()
            .flat_map(|r| r.backend.serves.iter().map(String::as_str));
        Ok(match self.catalog.retaining(routed)? {
            Some(smaller) => Arc::new(smaller),
            None => self.catalog.clone(),
        })
    }

    /// This table with new shared state for every backend (nothing in flight, reachable, closed
    /// when draining), so that the handle taking charge of it shares none with another handle.
    pub(crate) fn detached(&self) -> Self {
        let mut table = self.clone();
        for route in &mut table.routes {
            route.state = Arc::default();
            if route.draining {
                route.state.close();
            }
        }
        table
    }

    /// The shared state of backend `name`.
    pub(crate) fn state_of(&self, name: &str) -> Option<Arc<BackendState>> {
        self.position(name).map(|i| self.routes[i].state.clone())
    }

    /// The routes of this table, draining ones included.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether `state`'s backend is active (in the table and not draining) here.
    pub(crate) fn is_active(&self, state: &Arc<BackendState>) -> bool {
        self.routes
            .iter()
            .any(|r| !r.draining && Arc::ptr_eq(&r.state, state))
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.backend.name == name)
    }
}

impl Route {
    fn new(backend: Backend) -> Self {
        let version_header = HeaderValue::from_str(&backend.version.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Self {
            backend,
            version_header,
            state: Arc::default(),
            draining: false,
        }
    }

    /// In-process backends are always reachable; remote ones unless the last check or a call
    /// since failed.
    pub(crate) fn is_reachable(&self) -> bool {
        self.backend
            .pool
            .as_ref()
            .is_none_or(crate::UpstreamPool::is_reachable)
    }
}

fn check_backend(catalog: &ApiCatalog, backend: &Backend) -> Result<(), TableError> {
    let unmanaged = |package: &str| TableError::UnmanagedPackage {
        backend: backend.name.clone(),
        package: package.to_string(),
        managed: catalog.packages().join(", "),
    };
    if !catalog.manages(&backend.api) {
        return Err(unmanaged(&backend.api));
    }
    for package in backend.serves.iter().filter(|p| **p != backend.api) {
        if !catalog.manages(package) {
            return Err(unmanaged(package));
        }
        catalog
            .check_superset(&backend.api, package)
            .map_err(|reason| TableError::Incompatible {
                backend: backend.name.clone(),
                package: package.clone(),
                reason,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{RouteTable, TableError};
    use crate::GrpcPath;
    use crate::testing::{V1, V2, backend, catalog, descriptors, table};
    use crate::{ApiCatalog, CatalogError};
    use semver::VersionReq;

    /// The name of the backend `table` picks for a `demo.v2` request with `requirement`.
    fn pick(table: &RouteTable, requirement: Option<&str>) -> Result<String, tonic::Code> {
        pick_for(table, V2, requirement).map_err(|status| status.code())
    }

    fn pick_for(
        table: &RouteTable,
        package: &str,
        requirement: Option<&str>,
    ) -> Result<String, tonic::Status> {
        let path = format!("/{package}.Counter/Add");
        let path = GrpcPath::parse(&path).unwrap();
        let requirement = requirement.map(|r| VersionReq::parse(r).unwrap());
        table
            .select(&path, requirement.as_ref())
            .map(|route| route.backend.name.clone())
    }

    #[test]
    fn duplicate_backend_names_are_refused() {
        let err = RouteTable::new(
            catalog(),
            vec![backend("a", "1.0.0", V1), backend("a", "2.0.0", V2)],
        )
        .unwrap_err();
        assert!(
            matches!(&err, TableError::DuplicateName(name) if name == "a"),
            "{err}"
        );
        let err = table(vec![backend("a", "1.0.0", V1)])
            .with_backend(backend("a", "1.1.0", V1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a backend named \"a\" is already in the route table"
        );
    }

    #[test]
    fn unmanaged_packages_are_refused() {
        // A package the descriptors do not have at all cannot even be in the catalog.
        assert!(matches!(
            ApiCatalog::from_encoded(&descriptors(), &[V1, "demo.v3"]),
            Err(CatalogError::UnknownPackage(p)) if p == "demo.v3"
        ));
        // A backend implementing a package the catalog does not manage.
        let v1_only = ApiCatalog::from_encoded(&descriptors(), &[V1]).unwrap();
        let err = RouteTable::new(v1_only.clone(), vec![backend("v2", "2.0.0", V2)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "backend \"v2\": package demo.v2 is not managed by this router (managed: demo.v1)"
        );
        // A backend routed a package the catalog does not manage.
        let err = RouteTable::new(
            catalog(),
            vec![backend("v2", "2.0.0", V2).also_serving("other.v1")],
        )
        .unwrap_err();
        assert!(
            matches!(&err, TableError::UnmanagedPackage { backend, package, .. }
                if backend == "v2" && package == "other.v1"),
            "{err}"
        );
    }

    #[test]
    fn two_active_backends_of_one_version_are_refused_but_a_draining_one_may_share_it() {
        let err = RouteTable::new(
            catalog(),
            vec![backend("a", "1.0.0", V1), backend("b", "1.0.0", V1)],
        )
        .unwrap_err();
        assert!(matches!(err, TableError::AmbiguousVersion { .. }), "{err}");
        assert!(!err.to_string().contains("build metadata"), "{err}");
        let err = RouteTable::new(
            catalog(),
            vec![backend("a", "1.0.0", V1), backend("b", "1.0.0+build5", V1)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("build metadata"), "{err}");
        let t = table(vec![backend("a", "1.0.0", V1)])
            .with_draining("a")
            .unwrap()
            .with_backend(backend("b", "1.0.0", V1))
            .unwrap();
        assert_eq!(pick_for(&t, V1, None).unwrap(), "b");
    }

    #[test]
    fn the_highest_satisfying_version_is_selected() {
        let t = table(vec![
            backend("old", "1.0.0", V2),
            backend("new", "2.0.0", V2),
            backend("mid", "1.2.0", V2),
        ]);
        assert_eq!(pick(&t, None).unwrap(), "new");
        assert_eq!(pick(&t, Some("*")).unwrap(), "new");
        assert_eq!(pick(&t, Some("^1")).unwrap(), "mid");
        assert_eq!(pick(&t, Some("^1.1")).unwrap(), "mid");
        assert_eq!(pick(&t, Some("~1.0")).unwrap(), "old");
        assert_eq!(pick(&t, Some(">=1, <2")).unwrap(), "mid");
        let refused = pick_for(&t, V2, Some(">=3")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert_eq!(
            refused.message(),
            "no backend serves demo.v2 with x-api-version >=3; \
             versions serving demo.v2: 2.0.0, 1.2.0, 1.0.0"
        );
    }

    #[test]
    fn a_draining_backend_is_not_selected() {
        let t = table(vec![backend("a", "2.0.0", V1), backend("b", "1.0.0", V1)]);
        let t = t.with_draining("a").unwrap();
        assert_eq!(pick_for(&t, V1, None).unwrap(), "b");
        assert_eq!(
            pick_for(&t, V1, Some("^2")).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let t = t.with_draining("b").unwrap();
        assert!(!t.is_served(V1));
        assert_eq!(
            pick_for(&t, V1, None).unwrap_err().message(),
            "no backend serves demo.v1 with any version; versions serving demo.v1: none"
        );
        // Still in the table, as draining, until removed.
        let names: Vec<(String, bool)> = t
            .backends()
            .into_iter()
            .map(|b| (b.name, b.draining))
            .collect();
        assert_eq!(names, [("a".into(), true), ("b".into(), true)]);
        assert_eq!(t.without("a").unwrap().backends().len(), 1);
    }

    #[test]
    fn an_older_package_is_refused_to_a_backend_lacking_its_fields() {
        // demo.v1 requests lack nothing demo.v2 has: v2 may serve them.
        let t = table(vec![backend("v2", "2.0.0", V2).also_serving(V1)]);
        assert_eq!(pick_for(&t, V1, None).unwrap(), "v2");
        // The reverse would drop `step` on the floor.
        let err = RouteTable::new(catalog(), vec![backend("v1", "1.0.0", V1).also_serving(V2)])
            .unwrap_err();
        let err = err.to_string();
        assert!(
            err.starts_with(
                "backend \"v1\" cannot serve demo.v2 requests: demo.v1 is not a wire-compatible \
                 superset of demo.v2: "
            ),
            "{err}"
        );
        // The refusal quotes compat's findings with what they do on the wire.
        for says in [
            "\"step\"",
            "confirmed by prost",
            "kept as unknown",
            "GRPC_RPC_NO_DELETE",
        ] {
            assert!(err.contains(says), "{says}: {err}");
        }
        // Also when it comes as a replacement.
        let err = table(vec![backend("v1", "1.0.0", V1)])
            .with_replaced(backend("v1", "1.0.0", V1).also_serving(V2))
            .unwrap_err();
        assert!(matches!(err, TableError::Incompatible { .. }), "{err}");
    }

    #[test]
    fn changes_to_unknown_backends_are_refused() {
        let t = table(vec![backend("a", "1.0.0", V1)]);
        for err in [
            t.with_draining("x").unwrap_err(),
            t.without("x").unwrap_err(),
            t.with_replaced(backend("x", "1.0.0", V1)).unwrap_err(),
        ] {
            assert!(
                matches!(&err, TableError::UnknownBackend(n) if n == "x"),
                "{err}"
            );
        }
    }

    #[test]
    fn without_a_requirement_a_prerelease_is_chosen_only_when_nothing_stable_serves() {
        let both = table(vec![
            backend("stable", "2.0.0", V2),
            backend("rc", "2.1.0-rc.1", V2),
        ]);
        assert_eq!(pick(&both, None).unwrap(), "stable");
        assert_eq!(pick(&both, Some("*")).unwrap(), "stable");
        assert_eq!(pick(&both, Some("^2")).unwrap(), "stable");
        // A requirement that names the prerelease opts in to it.
        assert_eq!(pick(&both, Some(">=2.1.0-rc.1")).unwrap(), "rc");
        assert_eq!(pick(&both, Some("=2.1.0-rc.1")).unwrap(), "rc");

        let only_rc = table(vec![backend("rc", "2.1.0-rc.1", V2)]);
        assert_eq!(pick(&only_rc, None).unwrap(), "rc");
        assert_eq!(
            pick(&only_rc, Some("^2")).unwrap_err(),
            tonic::Code::Unimplemented
        );
    }

    #[test]
    fn a_newer_stable_release_beats_an_older_prerelease_and_vice_versa() {
        let t = table(vec![
            backend("rc", "2.1.0-rc.1", V2),
            backend("next", "2.1.0", V2),
        ]);
        assert_eq!(pick(&t, None).unwrap(), "next");
        let t = table(vec![
            backend("old", "1.9.0", V2),
            backend("rc", "2.0.0-rc.1", V2),
        ]);
        assert_eq!(pick(&t, None).unwrap(), "old");
    }
}
