//! The clients of the compatibility matrix: Rust v1 and v2 (with and without an
//! `x-api-version` requirement), the Python grpcio clients in `clients/python/`, and grpcurl
//! driven by server reflection alone. Each sends the same probe and returns the replies or the
//! status it got, so the matrix can compare them with what the API promises.

use crate::tools::{self, MissingTool};
use serde::Serialize;
use services::pb::{v1, v2};
use std::net::SocketAddr;
use tokio::process::Command;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// The step v2 clients send, so a reply computed by v1 (which ignores it) is visibly wrong.
pub const STEP: i64 = 5;
/// The value a unary probe sends.
pub const UNARY_VALUE: i64 = 41;
/// The values a stream probe sends, in one stream.
pub const STREAM_VALUES: [i64; 3] = [10, 20, 30];

/// Which API version a client speaks (or a backend implements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `increment.v1`: `value + 1`.
    V1,
    /// `increment.v2`: `value + step`, here with step [`STEP`].
    V2,
}

/// Unary call or bidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One `Increment` call per value.
    Unary,
    /// All values on one `IncrementStream`.
    Stream,
}

impl Mode {
    /// The values this mode's probe sends.
    pub fn values(self) -> &'static [i64] {
        match self {
            Mode::Unary => std::slice::from_ref(&UNARY_VALUE),
            Mode::Stream => &STREAM_VALUES,
        }
    }
}

impl Api {
    /// The step the API applies to the probe's values.
    pub fn step(self) -> i64 {
        match self {
            Api::V1 => 1,
            Api::V2 => STEP,
        }
    }

    /// What a correct server answers to `mode`'s probe.
    pub fn expected(self, mode: Mode) -> Vec<i64> {
        mode.values().iter().map(|v| v + self.step()).collect()
    }
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
}

/// One reply as the client decoded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// The incremented value.
    pub value: i64,
    /// The echoed request id (0 from v1 clients and v1 servers).
    pub request_id: u64,
    /// `served_by_version` from the reply body (empty from v1).
    pub served_by_version: String,
}

/// Why a call produced no replies to compare.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with a gRPC status.
    #[error("{code:?}: {message}")]
    Status {
        /// The status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// The client's tool is not installed.
    #[error(transparent)]
    Missing(#[from] MissingTool),
    /// The client itself failed (could not connect, bad output, ...).
    #[error("{0}")]
    Failed(String),
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        CallError::Status {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// A channel to `addr` with Nagle off, as every testbed client uses.
pub async fn connect(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
}

/// Runs `kind`'s probe in `mode` against the server at `addr`.
pub async fn call(kind: ClientKind, addr: SocketAddr, mode: Mode) -> Result<Vec<Reply>, CallError> {
    match kind {
        ClientKind::RustV1 | ClientKind::RustV1Pinned => {
            rust_v1(addr, mode, kind.requirement()).await
        }
        ClientKind::RustV2 | ClientKind::RustV2Pinned => {
            rust_v2(addr, mode, kind.requirement()).await
        }
        ClientKind::PythonV1 | ClientKind::PythonV2 => python(kind.api(), addr, mode).await,
        ClientKind::GrpcurlV1 | ClientKind::GrpcurlV2 => grpcurl(kind.api(), addr, mode).await,
    }
}

fn with_requirement<T>(message: T, requirement: Option<&'static str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(requirement) = requirement {
        request.metadata_mut().insert(
            router::API_VERSION_HEADER,
            MetadataValue::from_static(requirement),
        );
    }
    request
}

/// Sends `mode`'s probe through a generated client. The v1 and v2 clients share no trait, so a
/// macro lets one body serve both.
macro_rules! probe {
    ($client:expr, $requests:expr, $to_reply:expr, $mode:expr, $requirement:expr) => {{
        let mut client = $client;
        let mut replies = Vec::new();
        match $mode {
            Mode::Unary => {
                for request in $requests {
                    let reply = client
                        .increment(with_requirement(request, $requirement))
                        .await?;
                    replies.push($to_reply(reply.into_inner()));
                }
            }
            Mode::Stream => {
                let outbound = tokio_stream::iter($requests.collect::<Vec<_>>());
                let mut inbound = client
                    .increment_stream(with_requirement(outbound, $requirement))
                    .await?
                    .into_inner();
                while let Some(reply) = inbound.message().await? {
                    replies.push($to_reply(reply));
                }
            }
        }
        Ok(replies)
    }};
}

async fn rust_v1(
    addr: SocketAddr,
    mode: Mode,
    requirement: Option<&'static str>,
) -> Result<Vec<Reply>, CallError> {
    let channel = connect(addr)
        .await
        .map_err(|e| CallError::Failed(e.to_string()))?;
    let requests = mode
        .values()
        .iter()
        .map(|&value| v1::IncrementRequest { value });
    let to_reply = |r: v1::IncrementReply| Reply {
        value: r.value,
        request_id: 0,
        served_by_version: String::new(),
    };
    let client = v1::incrementer_client::IncrementerClient::new(channel);
    probe!(client, requests, to_reply, mode, requirement)
}

async fn rust_v2(
    addr: SocketAddr,
    mode: Mode,
    requirement: Option<&'static str>,
) -> Result<Vec<Reply>, CallError> {
    let channel = connect(addr)
        .await
        .map_err(|e| CallError::Failed(e.to_string()))?;
    let requests = mode
        .values()
        .iter()
        .zip(1..)
        .map(|(&value, request_id)| v2::IncrementRequest {
            value,
            step: Some(STEP),
            request_id,
        });
    let to_reply = |r: v2::IncrementReply| Reply {
        value: r.value,
        request_id: r.request_id,
        served_by_version: r.served_by_version,
    };
    let client = v2::incrementer_client::IncrementerClient::new(channel);
    probe!(client, requests, to_reply, mode, requirement)
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::V1 => "v1",
        Api::V2 => "v2",
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Unary => "unary",
        Mode::Stream => "stream",
    }
}

async fn python(api: Api, addr: SocketAddr, mode: Mode) -> Result<Vec<Reply>, CallError> {
    let python = tools::python()?;
    let script = tools::repo_root().join("clients/python/increment_client.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(["--addr", &addr.to_string(), "--api", api_name(api)])
        .args(["--mode", mode_name(mode)]);
    if api == Api::V2 {
        command.args(["--step", &STEP.to_string()]);
    }
    command.args(mode.values().iter().map(i64::to_string));
    let output = command
        .output()
        .await
        .map_err(|e| CallError::Failed(format!("cannot run {}: {e}", python.display())))?;
    if !output.status.success() {
        return Err(CallError::Failed(format!(
            "python client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct PythonOutput {
        replies: Option<Vec<PythonReply>>,
        code: Option<i32>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct PythonReply {
        value: i64,
        request_id: u64,
        served_by_version: String,
    }
    let parsed: PythonOutput = serde_json::from_slice(&output.stdout).map_err(|e| {
        CallError::Failed(format!(
            "python client printed something other than its JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })?;
    match (parsed.replies, parsed.code) {
        (_, Some(code)) => Err(CallError::Status {
            code: Code::from_i32(code),
            message: parsed.message.unwrap_or_default(),
        }),
        (Some(replies), None) => Ok(replies
            .into_iter()
            .map(|r| Reply {
                value: r.value,
                request_id: r.request_id,
                served_by_version: r.served_by_version,
            })
            .collect()),
        (None, None) => Err(CallError::Failed("python client printed no result".into())),
    }
}

async fn grpcurl(api: Api, addr: SocketAddr, mode: Mode) -> Result<Vec<Reply>, CallError> {
    let grpcurl = tools::grpcurl()?;
    let data: String = mode
        .values()
        .iter()
        .zip(1..)
        .map(|(value, id)| match api {
            Api::V1 => format!(r#"{{"value": {value}}}"#),
            Api::V2 => format!(r#"{{"value": {value}, "step": {STEP}, "request_id": {id}}}"#),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let method = match mode {
        Mode::Unary => "Increment",
        Mode::Stream => "IncrementStream",
    };
    let output = Command::new(&grpcurl)
        .args(["-plaintext", "-max-time", "10", "-d", &data])
        .arg(addr.to_string())
        .arg(format!("increment.{}.Incrementer/{method}", api_name(api)))
        .output()
        .await
        .map_err(|e| CallError::Failed(format!("cannot run {}: {e}", grpcurl.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(parse_grpcurl_error(&stderr)
            .unwrap_or_else(|| CallError::Failed(format!("grpcurl failed: {}", stderr.trim()))));
    }
    serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<serde_json::Value>()
        .map(|json| {
            let json = json.map_err(|e| CallError::Failed(format!("grpcurl output: {e}")))?;
            Ok(Reply {
                value: json_int(&json, "value")?.unwrap_or(0),
                request_id: json_int(&json, "requestId")?.map_or(0, |id| id as u64),
                served_by_version: json["servedByVersion"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// protobuf JSON prints 64-bit integers as strings and leaves zero values out.
fn json_int(json: &serde_json::Value, field: &str) -> Result<Option<i64>, CallError> {
    match &json[field] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|e| CallError::Failed(format!("grpcurl printed {field}={s:?}: {e}"))),
        value => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| CallError::Failed(format!("grpcurl printed {field}={value}"))),
    }
}

/// grpcurl reports a failed call as `ERROR:\n  Code: Unimplemented\n  Message: ...`.
fn parse_grpcurl_error(stderr: &str) -> Option<CallError> {
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix(name).map(str::trim))
    };
    let name = field("Code:")?;
    let code = (0..=16)
        .map(Code::from_i32)
        .find(|code| format!("{code:?}") == name)?;
    Some(CallError::Status {
        code,
        message: field("Message:").unwrap_or("").to_string(),
    })
}
