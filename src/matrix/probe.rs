//! The matrix's clients and the probe each one sends: Rust v1 and v2 (with and without an
//! `x-api-version` requirement), Python grpcio and grpcurl. Every probe goes through the
//! `client` crate, so the matrix only decides what to send and how to judge it.

use client::external::{self, CallError};
use client::{IncrementerClient, Mode, Reply};
use serde::Serialize;
use services::Api;
use std::net::SocketAddr;

/// The step v2 clients send, so a reply computed by v1 (which ignores it) is visibly wrong.
pub const STEP: i64 = 5;
/// The value a unary probe sends.
pub const UNARY_VALUE: i64 = 41;
/// The values a stream probe sends, in one stream.
pub const STREAM_VALUES: [i64; 3] = [10, 20, 30];

/// The values `mode`'s probe sends.
pub(super) fn values(mode: Mode) -> &'static [i64] {
    match mode {
        Mode::Unary => std::slice::from_ref(&UNARY_VALUE),
        Mode::Stream => &STREAM_VALUES,
    }
}

/// The step a client of `api` sends (`None`: the field does not exist, or is left unset).
pub(super) fn step(api: Api) -> Option<i64> {
    match api {
        Api::V1 => None,
        Api::V2 => Some(STEP),
    }
}

/// What a correct server answers to `mode`'s probe from a client of `api`.
pub(crate) fn expected_values(api: Api, mode: Mode) -> Vec<i64> {
    let step = step(api).unwrap_or(1);
    values(mode).iter().map(|v| v + step).collect()
}

/// One client of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// tonic client generated from proto/v1.
    RustV1,
    /// tonic v1 client sending `x-api-version: ^1`.
    RustV1Pinned,
    /// tonic client generated from proto/v2, sending `step` and `request_id`.
    RustV2,
    /// tonic v2 client sending `x-api-version: =2.0.0`.
    RustV2Pinned,
    /// Python grpcio client generated from proto/v1.
    PythonV1,
    /// Python grpcio client generated from proto/v2, sending `step` and `request_id`.
    PythonV2,
    /// grpcurl calling increment.v1 using server reflection only.
    GrpcurlV1,
    /// grpcurl calling increment.v2 (with `step`) using server reflection only.
    GrpcurlV2,
}

impl ClientKind {
    /// Every client, in the order reports list them.
    pub const ALL: [ClientKind; 8] = [
        ClientKind::RustV1,
        ClientKind::RustV1Pinned,
        ClientKind::RustV2,
        ClientKind::RustV2Pinned,
        ClientKind::PythonV1,
        ClientKind::PythonV2,
        ClientKind::GrpcurlV1,
        ClientKind::GrpcurlV2,
    ];

    /// The API version it speaks.
    pub fn api(self) -> Api {
        match self {
            ClientKind::RustV1
            | ClientKind::RustV1Pinned
            | ClientKind::PythonV1
            | ClientKind::GrpcurlV1 => Api::V1,
            _ => Api::V2,
        }
    }

    /// The `x-api-version` requirement it sends, if any.
    pub fn requirement(self) -> Option<&'static str> {
        match self {
            ClientKind::RustV1Pinned => Some("^1"),
            ClientKind::RustV2Pinned => Some("=2.0.0"),
            _ => None,
        }
    }

    /// Row label for reports.
    pub fn label(self) -> String {
        let name = match self {
            ClientKind::RustV1 | ClientKind::RustV1Pinned => "rust v1",
            ClientKind::RustV2 | ClientKind::RustV2Pinned => "rust v2",
            ClientKind::PythonV1 => "python v1",
            ClientKind::PythonV2 => "python v2",
            ClientKind::GrpcurlV1 => "grpcurl v1",
            ClientKind::GrpcurlV2 => "grpcurl v2",
        };
        match self.requirement() {
            Some(req) => format!("{name} (x-api-version {req})"),
            None => name.to_string(),
        }
    }

    /// Runs this client's probe in `mode` against the server at `addr`.
    pub async fn call(self, addr: SocketAddr, mode: Mode) -> Result<Vec<Reply>, CallError> {
        let (api, values) = (self.api(), values(mode));
        match self {
            ClientKind::PythonV1 | ClientKind::PythonV2 => {
                external::python(api, addr, mode, values, step(api)).await
            }
            ClientKind::GrpcurlV1 | ClientKind::GrpcurlV2 => {
                external::grpcurl(api, addr, mode, values, step(api)).await
            }
            _ => self.rust(addr, mode).await,
        }
    }

    async fn rust(self, addr: SocketAddr, mode: Mode) -> Result<Vec<Reply>, CallError> {
        let api = self.api();
        let mut client = IncrementerClient::connect(api, addr)
            .await
            .map_err(|e| CallError::Failed(format!("cannot connect to {addr}: {e}")))?;
        if let Some(requirement) = self.requirement() {
            let requirement = requirement
                .parse()
                .map_err(|e| CallError::Failed(format!("bad requirement {requirement}: {e}")))?;
            client = client.with_requirement(&requirement);
        }
        Ok(match mode {
            Mode::Unary => {
                let mut replies = Vec::new();
                for (&value, request_id) in values(mode).iter().zip(1..) {
                    replies.push(client.increment(value, step(api), request_id).await?);
                }
                replies
            }
            Mode::Stream => client.increment_stream(values(mode), step(api)).await?,
        })
    }
}
