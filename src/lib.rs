//! The testbed: v1 and v2 of the Incrementer API served side by side behind a version router,
//! exercised by every client version (the compatibility matrix) and measured hop by hop.
//!
//! - [`deployment`]: the server arrangements under test (side by side, v1 retired, ...).
//! - [`guard`]: the port's first layer: non-gRPC requests, deadlines, open-request count.
//! - [`server`]: assembles one arrangement with health and reflection on one port.
//! - [`clients`]: the client kinds of the matrix, Rust and external (Python grpcio, grpcurl).
//! - [`load`]: mixed-version client load with every reply verified.
//! - [`rollout`]: a zero-downtime v1 → v2 rollout under that load.
//! - [`matrix`]: runs every client against every deployment and reports each cell.
//! - [`stream_client`]: request/reply calls over one v2 stream, matched by `request_id`.
//! - [`bench`]: the latency runs (10,000 sequential dependent increments per row).
//! - [`upstream`]: `--upstream` specs, backends in other processes.
//! - [`process`]: servers in child processes (latency runs, multi-process rollout).
//! - [`tools`]: finds the external tools (the venv's Python, grpcurl).

pub mod bench;
pub mod clients;
pub mod deployment;
pub mod guard;
pub mod load;
pub mod matrix;
pub mod process;
pub mod rollout;
pub mod server;
pub mod stream_client;
pub mod tools;
pub mod upstream;

/// Version of the v1 implementation as the router knows it.
pub const V1_VERSION: semver::Version = semver::Version::new(1, 0, 0);
/// Version of the v2 implementation as the router knows it, and as v2 replies report it.
pub const V2_VERSION: semver::Version = semver::Version::new(2, 0, 0);
/// The API packages the router manages.
pub const API_PACKAGES: [&str; 2] = ["increment.v1", "increment.v2"];
