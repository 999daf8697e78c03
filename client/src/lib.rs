//! The clients of the Incrementer API, in one place.
//!
//! - [`IncrementerClient`]: the one Rust client, speaking v1 or v2, with an optional
//!   `x-api-version` requirement; every reply is a [`Reply`] that names the version that served
//!   it. The matrix, the mixed load, the rollout, the latency rows that use tonic and the tests
//!   all call through it.
//! - [`stream`]: request/reply calls over one long-lived v2 stream.
//! - [`external`]: the clients the testbed does not implement: Python grpcio and grpcurl.
//! - [`tools`]: where those external programs are found.

pub mod external;
mod incrementer;
pub mod stream;
pub mod tools;

pub use incrementer::{IncrementerClient, Mode, Reply, connect};
