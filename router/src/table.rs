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
    #[error("backends {first:?} and {second:?} both serve {package} at version {version}")]
    AmbiguousVersion {
        /// The package.
        package: String,
        /// The shared version.
        version: Version,
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
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) draining: bool,
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
        for (package, indices) in &mut by_package {
            indices.sort_by(|a, b| routes[*b].backend.version.cmp(&routes[*a].backend.version));
            if let Some(pair) = indices
                .windows(2)
                .find(|pair| routes[pair[0]].backend.version == routes[pair[1]].backend.version)
            {
                return Err(TableError::AmbiguousVersion {
                    package: package.clone(),
                    version: routes[pair[0]].backend.version.clone(),
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
                in_flight: r.in_flight.current(),
            })
            .collect()
    }

    /// Whether some active backend serves `package`.
    pub fn is_served(&self, package: &str) -> bool {
        self.by_package.get(package).is_some_and(|v| !v.is_empty())
    }

    /// Picks the highest-versioned active backend serving `path`'s package that satisfies
    /// `requirement`, or `UNIMPLEMENTED` naming the requirement and the versions available.
    pub(crate) fn select(
        &self,
        path: &GrpcPath<'_>,
        requirement: Option<&VersionReq>,
    ) -> Result<&Route, Status> {
        let candidates = self
            .by_package
            .get(path.package)
            .map_or(&[][..], Vec::as_slice);
        candidates
            .iter()
            .map(|&i| &self.routes[i])
            .find(|r| requirement.is_none_or(|req| req.matches(&r.backend.version)))
            .ok_or_else(|| {
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

    /// A new table in which `backend` takes the place of the backend with the same name (to route
    /// more packages to it, say). Requests in flight on the old one keep being counted.
    pub fn with_replaced(&self, backend: Backend) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        let i = self
            .position(&backend.name)
            .ok_or_else(|| TableError::UnknownBackend(backend.name.clone()))?;
        let in_flight = routes[i].in_flight.clone();
        routes[i] = Route {
            in_flight,
            ..Route::new(backend)
        };
        Self::from_routes(self.catalog.clone(), routes)
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
    /// each holds its own handle to the backend's service.
    pub fn without(&self, name: &str) -> Result<Self, TableError> {
        let mut routes = self.routes.clone();
        let i = self
            .position(name)
            .ok_or_else(|| TableError::UnknownBackend(name.to_string()))?;
        routes.remove(i);
        Self::from_routes(self.catalog.clone(), routes)
    }

    pub(crate) fn in_flight_of(&self, name: &str) -> Option<Arc<InFlight>> {
        self.position(name)
            .map(|i| self.routes[i].in_flight.clone())
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
            in_flight: Arc::default(),
            draining: false,
        }
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
