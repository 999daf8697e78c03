//! The Incrementer implementations behind the testbed: v1 (`value + 1`) and v2 (`value + step`,
//! with a request id and the serving version in the reply), plus the protobuf code generated
//! from `proto/` at build time and the encoded descriptor set that reflection serves.
//!
//! Both versions share one arithmetic rule ([`arithmetic`]) so they can only differ where their
//! APIs differ. [`Api`] names a version: its package, service and the version it reports.
//! [`interop`] is gRPC's interop test service, mounted only by `testbed serve --interop`.

mod api;
pub mod arithmetic;
pub mod interop;
mod stream;
pub mod v1;
pub mod v2;

/// Code generated from `proto/v1` and `proto/v2` by tonic-prost-build.
pub mod pb {
    /// `increment.v1`: messages, client and server.
    pub mod v1 {
        tonic::include_proto!("increment.v1");
    }
    /// `increment.v2`: messages, client and server.
    pub mod v2 {
        tonic::include_proto!("increment.v2");
    }
}

/// The encoded `FileDescriptorSet` of both API versions, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/increment_descriptor.bin"));

/// Full gRPC service name of the v1 API, as used in paths and health checks.
pub const V1_SERVICE: &str = "increment.v1.Incrementer";
/// Full gRPC service name of the v2 API, as used in paths and health checks.
pub const V2_SERVICE: &str = "increment.v2.Incrementer";

pub use api::{API_PACKAGES, Api, V1_VERSION, V2_VERSION};
pub use v1::IncrementerV1;
pub use v2::IncrementerV2;
