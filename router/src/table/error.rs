//! Why a route table could not be built or changed: each refusal with what it names.

use crate::catalog::CatalogError;
use semver::Version;

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
    /// A pinned-only backend (its build breaks an older one it runs beside) was to get a weight.
    #[error(
        "backend {backend:?} is pinned-only: its build breaks {breaks}; it takes only the calls \
         whose x-api-version nothing else satisfies, so its weight stays 0 (give it a new major \
         package, or a build that does not break, to move unpinned traffic to it)"
    )]
    PinnedOnly {
        /// The backend's name.
        backend: String,
        /// What its build breaks.
        breaks: String,
    },
    /// A change read from an earlier table finds a backend replaced or removed since.
    #[error("backend {0:?} changed since the change was prepared; it was not applied")]
    ChangedMeanwhile(String),
}
