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
//!
//! # Which backend serves a request
//!
//! Among the active backends serving the request's package:
//!
//! - with an `x-api-version` requirement, the highest version that satisfies it
//!   ([`semver::VersionReq::matches`]): prereleases such as `2.1.0-rc.1` only when the
//!   requirement names a prerelease of the same version (`>=2.1.0-rc.1`), never for `*` or `^2`;
//! - without one, the highest stable version; a prerelease only when no stable backend serves
//!   the package.
//!
//! Every reply a backend produced carries an `x-api-version` response header naming the version
//! that served it. Replies the router makes itself (no backend matches, a remote backend is
//! unreachable) carry none.
//!
//! # Runtime changes
//!
//! [`RouterHandle::drain`] stops new requests to a backend and waits for the ones in flight
//! (responses and streams) to finish; once it returns, no request reaches that backend, even one
//! that had read the table before the drain. [`RouterHandle::drain_within`] gives up waiting
//! after a timeout and says how many requests are still open. An [`UpstreamProbe`] checks remote
//! backends periodically so health reports `NOT_SERVING` for a package whose only backends do
//! not answer; a call that fails in transport marks its backend unreachable at once, and
//! selection prefers reachable backends (see [`RouteTable`]'s `select`).
//!
//! # Example
//!
//! ```
//! use router::{API_VERSION_HEADER, ApiCatalog, Backend, RouteTable, RouterHandle};
//! use std::convert::Infallible;
//! use tonic::body::Body;
//! use tower::{Layer, ServiceExt};
//! # use prost::Message;
//! # use prost_types::{
//! #     DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
//! #     ServiceDescriptorProto,
//! # };
//! # /// `demo.v1`: `service Greeter { rpc Hello(HelloRequest) returns (HelloReply); }`
//! # fn descriptors() -> Vec<u8> {
//! #     let message = |name: &str| DescriptorProto { name: Some(name.into()), ..Default::default() };
//! #     let hello = MethodDescriptorProto {
//! #         name: Some("Hello".into()),
//! #         input_type: Some(".demo.v1.HelloRequest".into()),
//! #         output_type: Some(".demo.v1.HelloReply".into()),
//! #         ..Default::default()
//! #     };
//! #     let file = FileDescriptorProto {
//! #         name: Some("demo/v1.proto".into()),
//! #         package: Some("demo.v1".into()),
//! #         message_type: vec![message("HelloRequest"), message("HelloReply")],
//! #         service: vec![ServiceDescriptorProto {
//! #             name: Some("Greeter".into()),
//! #             method: vec![hello],
//! #             ..Default::default()
//! #         }],
//! #         ..Default::default()
//! #     };
//! #     FileDescriptorSet { file: vec![file] }.encode_to_vec()
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The packages the router manages, from their encoded descriptors (what tonic-prost-build
//! // writes with `file_descriptor_set_path`).
//! let catalog = ApiCatalog::from_encoded(&descriptors(), &["demo.v1"])?;
//!
//! // A backend is any tower service of HTTP requests: a generated tonic server, or this.
//! let v1 = tower::service_fn(|_request: http::Request<Body>| async {
//!     Ok::<_, Infallible>(tonic::Status::ok("hello").into_http())
//! });
//! let v1 = Backend::in_process("v1", "1.2.0".parse()?, "demo.v1", v1);
//! let handle = RouterHandle::new(RouteTable::new(catalog, vec![v1])?, None).await;
//!
//! // Whatever the table does not manage goes to the inner service.
//! let inner = tower::service_fn(|_request: http::Request<Body>| async {
//!     Ok::<_, Infallible>(tonic::Status::unimplemented("not here").into_http())
//! });
//! let router = handle.layer().layer(inner);
//!
//! let request = http::Request::post("/demo.v1.Greeter/Hello")
//!     .header(API_VERSION_HEADER, "^1.1")
//!     .body(Body::empty())?;
//! let response = router.oneshot(request).await?;
//! assert_eq!(response.headers()[API_VERSION_HEADER], "1.2.0");
//! # Ok(())
//! # }
//! ```

mod backend;
mod body;
mod build;
mod catalog;
mod encoding;
mod handle;
mod inflight;
mod path;
mod pool;
mod probe;
mod quote;
mod replicas;
mod requirement;
mod routed;
mod service;
mod table;
#[cfg(test)]
mod testing;
mod trailers;
mod weights;

pub use backend::{Backend, BackendService, Methods};
pub use body::{Inspect, InspectedBody};
pub use build::Build;
pub use catalog::{ApiCatalog, CatalogError, MethodServed, release_freed_memory};
pub use handle::{DrainCount, DrainError, RouterHandle};
pub use inflight::{CountedBody, InFlight, InFlightGuard};
pub use path::GrpcPath;
pub use pool::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING, DEFAULT_STREAMS_PER_CONNECTION,
    DEFAULT_UPSTREAM_TIMEOUT, PoolLimits, UpstreamPool,
};
pub use probe::{DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_TIMEOUT, ProbeConfig, UpstreamProbe};
pub use quote::{MAX_QUOTE_BYTES, quote};
pub use replicas::Replicas;
pub use requirement::{API_VERSION_HEADER, parse_requirement};
pub use routed::Routed;
pub use service::{VersionRouter, VersionRouterLayer, readdress};
pub use table::RouteTable;
pub use table::error::TableError;
pub use table::state::BackendInfo;
pub use trailers::status_trailers;
pub use weights::{ChoicePoint, MAX_WEIGHT, shares};

/// A boxed, sendable future: what the router's services return.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
