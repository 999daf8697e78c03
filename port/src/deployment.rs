//! The server arrangements the testbed compares, as data: which implementation serves which
//! API package, and whether the version router sits in front.

use crate::server::Layout;
use router::{ApiCatalog, Backend, CatalogError, RouteTable, TableError};
use serde::Serialize;
use services::pb::v1::incrementer_server::IncrementerServer as IncrementerServer1;
use services::pb::v2::incrementer_server::IncrementerServer as IncrementerServer2;
use services::{API_PACKAGES, Api, V1_VERSION, V2_VERSION};
use services::{IncrementerV1, IncrementerV2};

/// One way of deploying the two API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Deployment {
    /// Router with v1@1.0.0 serving increment.v1 and v2@2.0.0 serving increment.v2.
    SideBySide,
    /// Router with v2@2.0.0 serving both packages: v1 is retired, v1 clients still work.
    V1Retired,
    /// Router with only v1@1.0.0: the state before v2 ships.
    V1Only,
    /// Router with only v2@2.0.0 serving increment.v2: v1 clients are turned away.
    V2Only,
    /// Both tonic services mounted directly on the server, no router in front.
    Direct,
    /// What the router refuses to build: a proxy that rewrites v2 paths to the v1
    /// implementation. Kept to show the silently wrong answers it gives.
    NaiveProxyToV1,
}

impl Deployment {
    /// Every deployment, in the order reports list them.
    pub const ALL: [Deployment; 6] = [
        Deployment::SideBySide,
        Deployment::V1Retired,
        Deployment::V1Only,
        Deployment::V2Only,
        Deployment::Direct,
        Deployment::NaiveProxyToV1,
    ];

    /// Short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Deployment::SideBySide => "side-by-side",
            Deployment::V1Retired => "v1-retired",
            Deployment::V1Only => "v1-only",
            Deployment::V2Only => "v2-only",
            Deployment::Direct => "direct",
            Deployment::NaiveProxyToV1 => "naive-proxy-to-v1",
        }
    }

    /// The router's backends for this deployment (their servers refusing messages over
    /// `max_message_bytes`), or `None` when no router is used.
    pub fn backends(self, max_message_bytes: usize) -> Option<Vec<Backend>> {
        let v1 = || v1_backend_limited(max_message_bytes);
        let v2 = || v2_backend_limited(max_message_bytes);
        match self {
            Deployment::SideBySide => Some(vec![v1(), v2()]),
            Deployment::V1Retired => Some(vec![v2().also_serving("increment.v1")]),
            Deployment::V1Only => Some(vec![v1()]),
            Deployment::V2Only => Some(vec![v2()]),
            Deployment::Direct | Deployment::NaiveProxyToV1 => None,
        }
    }

    /// What the server mounts for this deployment, with its route table validated.
    pub fn layout(self, max_message_bytes: usize) -> Result<Layout, TableError> {
        Ok(match self.backends(max_message_bytes) {
            Some(backends) => Layout::Routed(RouteTable::new(catalog()?, backends)?),
            None if self == Deployment::NaiveProxyToV1 => Layout::NaiveProxyToV1,
            None => Layout::Direct(vec![Api::V1, Api::V2]),
        })
    }
}

impl std::fmt::Display for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The catalog of both API versions, read from the embedded descriptors.
pub fn catalog() -> Result<ApiCatalog, CatalogError> {
    ApiCatalog::from_encoded(services::FILE_DESCRIPTOR_SET, &API_PACKAGES)
}

/// The largest message a server accepts or sends unless told otherwise (gRPC's usual 4 MiB);
/// a larger one is refused with `RESOURCE_EXHAUSTED`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The v1 tonic server, limited to messages of `max_message_bytes` (compressed requests: the
/// compressed size at the guard, the decompressed size here), decoding gzip, zstd and deflate. (The port's guard refuses
/// larger requests first, with `RESOURCE_EXHAUSTED`; tonic's own check would say `OUT_OF_RANGE`.)
pub fn v1_server(max_message_bytes: usize) -> IncrementerServer1<IncrementerV1> {
    compat::accept_compressed!(IncrementerV1::server())
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// The v2 tonic server (version [`V2_VERSION`]), limited like [`v1_server`].
pub fn v2_server(max_message_bytes: usize) -> IncrementerServer2<IncrementerV2> {
    compat::accept_compressed!(IncrementerV2::server(&V2_VERSION))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// The v1 implementation as a router backend named `v1`, with the default message limit.
pub fn v1_backend() -> Backend {
    v1_backend_limited(DEFAULT_MAX_MESSAGE_BYTES)
}

/// The v1 implementation as a router backend named `v1`, refusing messages over the limit.
pub fn v1_backend_limited(max_message_bytes: usize) -> Backend {
    let server = v1_server(max_message_bytes);
    Backend::in_process("v1", V1_VERSION, "increment.v1", server)
}

/// The v2 implementation as a router backend named `v2`, with the default message limit.
pub fn v2_backend() -> Backend {
    v2_backend_limited(DEFAULT_MAX_MESSAGE_BYTES)
}

/// The v2 implementation as a router backend named `v2`, refusing messages over the limit.
pub fn v2_backend_limited(max_message_bytes: usize) -> Backend {
    let server = v2_server(max_message_bytes);
    Backend::in_process("v2", V2_VERSION, "increment.v2", server)
}
