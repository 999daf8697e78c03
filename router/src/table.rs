//! The route table: which backends serve which API package, as immutable data.
//!
//! A table is validated once, when it is built, and never changed afterwards; runtime changes
//! build a new table from the old one and swap it in (see `RouterHandle`). Lookups on the hot
//! path are a hash lookup and a scan of a short list already sorted newest first.

pub(crate) mod error;
pub(crate) mod state;

use crate::catalog::{ApiCatalog, CatalogError};
use crate::replicas::Replicas;
use crate::requirement::API_VERSION_HEADER;
use crate::weights::{self, ChoicePoint};
use crate::{Backend, GrpcPath, Methods};
use error::TableError;
use http::{HeaderName, HeaderValue};
use semver::VersionReq;
use state::{BackendInfo, BackendState};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tonic::Status;

/// A backend as the table holds it, with the state the router needs on the hot path.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) backend: Backend,
    /// The `x-api-version` response header value, formatted once.
    pub(crate) version_header: HeaderValue,
    /// The backend's name and version, shared by the [`crate::Routed`] of every response it
    /// gets.
    pub(crate) name: Arc<str>,
    pub(crate) version: Arc<str>,
    /// State shared by every table that holds this backend (under this name, since it was added).
    pub(crate) state: Arc<BackendState>,
    pub(crate) draining: bool,
    /// Of the older packages routed to it, those it takes only some methods of: package →
    /// `Service/Method`s, resolved from [`Backend::partial`] when the table was built.
    pub(crate) allowed: HashMap<String, Arc<BTreeSet<String>>>,
}

/// An immutable, validated set of backends and the index used to pick one per request.
#[derive(Clone)]
pub struct RouteTable {
    catalog: Arc<ApiCatalog>,
    routes: Vec<Route>,
    /// Package → indices into `routes` of its active backends, highest version first.
    by_package: HashMap<String, Vec<usize>>,
    /// Packages of which some active backend has a weight: only their requests are split.
    weighted: std::collections::HashSet<String>,
    /// The request header whose value decides a request's share of the split, if any.
    sticky_header: Option<HeaderName>,
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

    fn from_routes(catalog: Arc<ApiCatalog>, mut routes: Vec<Route>) -> Result<Self, TableError> {
        for i in 0..routes.len() {
            if routes[..i]
                .iter()
                .any(|r| r.backend.name == routes[i].backend.name)
            {
                return Err(TableError::DuplicateName(routes[i].backend.name.clone()));
            }
            routes[i].allowed = check_backend(&catalog, &routes[i].backend)?;
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
        let weighted = by_package
            .iter()
            .filter(|(_, indices)| indices.iter().any(|&i| routes[i].backend.weight.is_some()))
            .map(|(package, _)| package.clone())
            .collect();
        Ok(Self {
            catalog,
            routes,
            by_package,
            weighted,
            sticky_header: None,
        })
    }

    /// [`from_routes`](Self::from_routes) keeping this table's settings.
    fn rebuilt(&self, catalog: Arc<ApiCatalog>, routes: Vec<Route>) -> Result<Self, TableError> {
        Ok(Self {
            sticky_header: self.sticky_header.clone(),
            ..Self::from_routes(catalog, routes)?
        })
    }

    /// This table with requests' shares of a weighted split decided by the value of `header`
    /// (the same value, the same backend while the weights hold), or at random without it.
    pub fn with_sticky_header(mut self, header: Option<HeaderName>) -> Self {
        self.sticky_header = header;
        self
    }

    /// Whether requests for `package` are split by weights.
    fn is_weighted(&self, package: &str) -> bool {
        !self.weighted.is_empty() && self.weighted.contains(package)
    }

    /// Where a request for `package` with `headers` falls in its weighted split; nothing is
    /// drawn or read for a package without weights, whose selection ignores the point.
    pub(crate) fn choice_point(&self, package: &str, headers: &http::HeaderMap) -> ChoicePoint {
        if !self.is_weighted(package) {
            return ChoicePoint::UNUSED;
        }
        match self
            .sticky_header
            .as_ref()
            .and_then(|name| headers.get(name))
        {
            Some(value) => ChoicePoint::sticky(value.as_bytes()),
            None => ChoicePoint::random(),
        }
    }

    /// A new table in which backend `name` has `weight` (`None` clears it).
    pub fn with_weight(&self, name: &str, weight: Option<u8>) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        let i = self
            .position(name)
            .ok_or_else(|| TableError::UnknownBackend(name.to_string()))?;
        if let Some(breaks) = routes[i].backend.breaks().filter(|_| weight != Some(0)) {
            return Err(TableError::PinnedOnly {
                backend: name.to_string(),
                breaks,
            });
        }
        routes[i].backend.weight = weight;
        self.rebuilt(self.catalog.clone(), routes)
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
                weight: r.backend.weight,
                breaks: r.backend.breaks(),
                drifted: r.backend.is_drifted(),
                partial: r
                    .allowed
                    .iter()
                    .map(|(package, methods)| (package.clone(), methods.iter().cloned().collect()))
                    .collect(),
                connections: r.backend.replicas.as_ref().map_or(0, Replicas::connections),
            })
            .collect()
    }

    /// The build whose descriptors describe the API for a caller with the `x-api-version`
    /// `requirement`, with its backend's name: of the active backends that carry a build, the
    /// highest version that satisfies it (without one, the highest stable version, as for
    /// calls), a pinned-only breaking build only when no other satisfies it. `None` when no
    /// such backend carries a build (the catalog then describes the API alone).
    pub fn build_for(&self, requirement: Option<&VersionReq>) -> Option<(&str, &crate::Build)> {
        let with_build = || {
            self.routes
                .iter()
                .filter(|r| !r.draining)
                .filter_map(|r| r.backend.build.as_ref().map(|build| (r, build)))
        };
        let highest = |satisfies: &dyn Fn(&Route) -> bool| {
            let candidates = || with_build().filter(|(r, _)| satisfies(r));
            candidates()
                .filter(|(_, build)| build.pinned_only_because().is_none())
                .max_by(|(a, _), (b, _)| a.backend.version.cmp_precedence(&b.backend.version))
                .or_else(|| {
                    candidates().max_by(|(a, _), (b, _)| {
                        a.backend.version.cmp_precedence(&b.backend.version)
                    })
                })
        };
        let chosen = match requirement {
            Some(req) => highest(&|r| req.matches(&r.backend.version)),
            None => highest(&|r| r.backend.version.pre.is_empty()).or_else(|| highest(&|_| true)),
        };
        chosen.map(|(r, build)| (r.backend.name.as_str(), build))
    }

    /// Whether some active backend serves `package`.
    pub fn is_served(&self, package: &str) -> bool {
        self.by_package.get(package).is_some_and(|v| !v.is_empty())
    }

    /// Whether some active, reachable backend serves `service` of `package` (its build
    /// declares it; see [`Backend::declares`]): what the service's health status reports.
    pub fn is_service_available(&self, package: &str, service: &str) -> bool {
        self.by_package.get(package).is_some_and(|v| {
            v.iter().any(|&i| {
                let route = &self.routes[i];
                route.is_reachable() && route.backend.declares(package, service)
            })
        })
    }

    /// Whether this table holds backend `name` as `other` does: the same entry (its state
    /// shared since it was added) with the same build.
    pub(crate) fn holds_same_backend(&self, other: &RouteTable, name: &str) -> bool {
        fn entry<'t>(table: &'t RouteTable, name: &str) -> Option<&'t Route> {
            table.position(name).map(|i| &table.routes[i])
        }
        match (entry(self, name), entry(other, name)) {
            (Some(a), Some(b)) => {
                let build = |r: &Route| r.backend.build.as_ref().map(|b| b.descriptors.as_ptr());
                Arc::ptr_eq(&a.state, &b.state) && build(a) == build(b)
            }
            _ => false,
        }
    }

    /// The builds of the backends that carry one (draining ones included).
    pub fn builds(&self) -> impl Iterator<Item = &crate::Build> {
        self.routes.iter().filter_map(|r| r.backend.build.as_ref())
    }

    /// The backend named `name`, if the table holds it (draining or not).
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.position(name).map(|i| &self.routes[i].backend)
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
    ///
    /// When some backend of the package has a weight, the request's `point` picks among the
    /// satisfying backends (reachable ones, if any) as [`weights`] describes, instead of the
    /// highest alone.
    pub(crate) fn select(
        &self,
        path: &GrpcPath<'_>,
        requirement: Option<&VersionReq>,
        point: ChoicePoint,
    ) -> Result<&Route, Status> {
        let candidates = self
            .by_package
            .get(path.package)
            .map_or(&[][..], Vec::as_slice);
        let routes = candidates
            .iter()
            .map(|&i| &self.routes[i])
            .filter(|r| r.takes(path));
        let weighted = self.is_weighted(path.package);
        // Highest first, so the first that satisfies is the highest that does.
        let best = |satisfies: &dyn Fn(&Route) -> bool| {
            if weighted {
                let split = |reachable_only: bool| -> Vec<(&Route, Option<u8>)> {
                    routes
                        .clone()
                        .filter(|r| satisfies(r) && (!reachable_only || r.is_reachable()))
                        .map(|r| (r, r.backend.weight))
                        .collect()
                };
                let reachable = split(true);
                let split = if reachable.is_empty() {
                    split(false)
                } else {
                    reachable
                };
                return weights::pick(&split, point).copied();
            }
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
            if let Some(partial) = candidates
                .iter()
                .map(|&i| &self.routes[i])
                .find(|r| !r.takes(path))
                && routes.clone().next().is_none()
            {
                let takes = partial
                    .allowed
                    .get(path.package)
                    .map_or_else(String::new, |set| {
                        set.iter().cloned().collect::<Vec<_>>().join(", ")
                    });
                return Status::unimplemented(format!(
                    "no backend serves {}.{}/{}: backend {} ({}) takes only {takes} of {} \
                     (compat finds it cannot serve the others), and no backend of {} itself \
                     is left",
                    path.package,
                    path.service,
                    path.method,
                    partial.backend.name,
                    partial.backend.version,
                    path.package,
                    path.package
                ));
            }
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
        self.rebuilt(self.catalog.clone(), routes)
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
        self.rebuilt(Arc::new(catalog), self.routes.clone())
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
        self.rebuilt(self.catalog_for(&routes)?, routes)
    }

    /// A new table in which backend `name` is draining: it keeps its in-flight requests but is
    /// chosen for no new ones.
    pub fn with_draining(&self, name: &str) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        self.position(name)
            .map(|i| routes[i].draining = true)
            .ok_or_else(|| TableError::UnknownBackend(name.to_string()))?;
        self.rebuilt(self.catalog.clone(), routes)
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
        self.rebuilt(self.catalog_for(&routes)?, routes)
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
            name: Arc::from(backend.name.as_str()),
            version: Arc::from(backend.version.to_string()),
            backend,
            version_header,
            state: Arc::default(),
            draining: false,
            allowed: HashMap::new(),
        }
    }

    /// Whether it takes calls to `path` (every method of a package routed to it, or the ones
    /// [`Route::allowed`] lists).
    pub(crate) fn takes(&self, path: &GrpcPath<'_>) -> bool {
        self.allowed.is_empty()
            || self
                .allowed
                .get(path.package)
                .is_none_or(|set| set.contains(&format!("{}/{}", path.service, path.method)))
    }

    /// In-process backends are always reachable; remote ones unless the last check or a call
    /// since failed.
    pub(crate) fn is_reachable(&self) -> bool {
        self.backend
            .replicas
            .as_ref()
            .is_none_or(Replicas::is_reachable)
    }
}

/// Checks that `backend` may serve every package routed to it; returns, of the older packages
/// it takes only some methods of, which ones.
fn check_backend(
    catalog: &ApiCatalog,
    backend: &Backend,
) -> Result<HashMap<String, Arc<BTreeSet<String>>>, TableError> {
    let unmanaged = |package: &str| TableError::UnmanagedPackage {
        backend: backend.name.clone(),
        package: package.to_string(),
        managed: catalog.packages().join(", "),
    };
    if !catalog.manages(&backend.api) {
        return Err(unmanaged(&backend.api));
    }
    let mut allowed = HashMap::new();
    for package in backend.serves.iter().filter(|p| **p != backend.api) {
        if !catalog.manages(package) {
            return Err(unmanaged(package));
        }
        let incompatible = |reason| TableError::Incompatible {
            backend: backend.name.clone(),
            package: package.clone(),
            reason,
        };
        let Some(methods) = backend.partial.get(package) else {
            catalog
                .check_superset(&backend.api, package)
                .map_err(incompatible)?;
            continue;
        };
        let verdicts = catalog
            .methods_served(&backend.api, package)
            .map_err(incompatible)?;
        let refused = |reason: String| {
            incompatible(CatalogError::Incompatible {
                newer: backend.api.clone(),
                older: package.clone(),
                reason,
            })
        };
        let taken: BTreeSet<String> = match methods {
            Methods::Safe => verdicts
                .iter()
                .filter(|(_, outcome)| outcome.is_ok())
                .map(|(method, _)| method.clone())
                .collect(),
            Methods::Only(wanted) => {
                for method in wanted {
                    match verdicts.iter().find(|(m, _)| m == method) {
                        None => return Err(refused(format!("{package} has no method {method}"))),
                        Some((_, Err(findings))) => {
                            return Err(refused(format!("{method}: {findings}")));
                        }
                        Some((_, Ok(()))) => {}
                    }
                }
                wanted.clone()
            }
        };
        if taken.is_empty() {
            let why: Vec<String> = verdicts
                .iter()
                .filter_map(|(m, outcome)| outcome.as_ref().err().map(|f| format!("{m}: {f}")))
                .collect();
            return Err(refused(format!("none of its methods: {}", why.join("; "))));
        }
        allowed.insert(package.clone(), Arc::new(taken));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests;
