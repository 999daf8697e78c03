//! A version router for gRPC: one port, several versioned implementations behind it.
//!
//! Each request is steered by its gRPC path (`/increment.v1.Incrementer/Increment` names the API
//! package `increment.v1`) and an optional `x-api-version` header holding a semver requirement.
//! The [`RouteTable`] is plain data; the [`VersionRouter`] tower service reads it with one atomic
//! load per request; a [`RouterHandle`] swaps in a new table at runtime (add, drain, remove a
//! backend) and keeps gRPC health statuses in step with it.
//!
//! Packages the table does not manage go to the inner service (in the testbed: health and
//! reflection), so the router is an ordinary [`tower::Layer`] over whatever else the port serves.

mod backend;
mod catalog;
mod handle;
mod inflight;
mod path;
mod requirement;
mod service;
mod table;
mod trailers;

pub use backend::{Backend, BackendService};
pub use catalog::{ApiCatalog, CatalogError};
pub use handle::RouterHandle;
pub use inflight::{CountedBody, InFlight, InFlightGuard};
pub use path::GrpcPath;
pub use requirement::{API_VERSION_HEADER, parse_requirement};
pub use service::{VersionRouter, VersionRouterLayer, readdress};
pub use table::{BackendInfo, RouteTable, TableError};
pub use trailers::status_trailers;
