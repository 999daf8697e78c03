//! One gRPC port, assembled: the [`guard`] layer first (what is not gRPC, deadlines, message
//! limits, open requests), then the version router or the services mounted directly, with
//! gRPC health and reflection beside them.
//!
//! - [`deployment`]: the server arrangements the testbed compares, as data.
//! - [`server`]: starts one arrangement on one port and stops it gracefully.
//! - [`upstream`]: `--upstream` specs, backends in other processes.
//! - [`route_checks`]: upstream names and addresses checked, and checked against reality.
//! - [`loop_guard`]: the instance mark on forwarded requests that refuses routing loops.
//! - [`pool`]: the flags bounding each upstream's connection pool.
//! - [`child`]: servers in child processes (latency runs, multi-process rollout).
//! - [`tls`]: TLS and mutual TLS on the port, TLS clients, certificates made for tests.
//! - [`fds`]: the file-descriptor budget (the open-files limit raised, connection caps clamped).
//! - [`observe`]: Prometheus metrics (`--metrics-addr`) and the access log (`--access-log`).
//! - [`shadow`]: live calls copied to a candidate backend and its replies compared (`--shadow`).
//! - [`admin`]: the admin API, changing a running router's routes from another process.
//! - [`web`]: gRPC-Web for browsers (`--grpc-web`) and its CORS, translated by tonic-web.
//! - [`signal`]: the shutdown signal (Ctrl-C or SIGTERM) a long-running command waits for.

mod accept;
pub mod admin;
pub mod child;
mod connections;
pub mod deployment;
pub mod drift;
pub mod fds;
pub mod guard;
pub mod loop_guard;
pub mod observe;
mod peer;
pub mod pki;
pub mod pool;
mod reflection;
pub mod route_checks;
pub mod server;
pub mod shadow;
pub mod signal;
pub mod sunset;
pub mod tls;
pub mod upstream;
pub mod web;

pub use deployment::Deployment;
pub use peer::PeerInfo;
pub use server::{Layout, RunningServer, ServeOptions};
