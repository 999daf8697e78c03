//! The clients the testbed drives but does not implement: the Python grpcio client in
//! `client/python/` and grpcurl, which knows the API only from the server's reflection. Each
//! sends values in one [`Mode`] and returns the [`Reply`]s it decoded, or the status it got.

use crate::tools::{self, MissingTool};
use crate::{Mode, Reply};
use services::Api;
use std::net::SocketAddr;
use tokio::process::Command;
use tonic::{Code, Status};

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

/// Sends `values` in `mode` with the Python grpcio client of `api` (v2 with `step`).
pub async fn python(
    api: Api,
    addr: SocketAddr,
    mode: Mode,
    values: &[i64],
    step: Option<i64>,
) -> Result<Vec<Reply>, CallError> {
    let python = tools::python()?;
    let script = tools::python_client("increment_client.py")?;
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(["--addr", &addr.to_string(), "--api", api.name()])
        .args(["--mode", mode.name()]);
    if let Some(step) = step.filter(|_| api == Api::V2) {
        command.args(["--step", &step.to_string()]);
    }
    command.args(values.iter().map(i64::to_string));
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
        served_by: Option<String>,
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
                served_by: r.served_by,
            })
            .collect()),
        (None, None) => Err(CallError::Failed("python client printed no result".into())),
    }
}

/// Sends `values` in `mode` with grpcurl to `api`'s service, using server reflection only.
pub async fn grpcurl(
    api: Api,
    addr: SocketAddr,
    mode: Mode,
    values: &[i64],
    step: Option<i64>,
) -> Result<Vec<Reply>, CallError> {
    let grpcurl = tools::grpcurl()?;
    let data: String = values
        .iter()
        .zip(1..)
        .map(|(value, id)| match (api, step) {
            (Api::V1, _) => format!(r#"{{"value": {value}}}"#),
            (Api::V2, None) => format!(r#"{{"value": {value}, "request_id": {id}}}"#),
            (Api::V2, Some(step)) => {
                format!(r#"{{"value": {value}, "step": {step}, "request_id": {id}}}"#)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let method = match mode {
        Mode::Unary => "Increment",
        Mode::Stream => "IncrementStream",
    };
    let output = Command::new(&grpcurl)
        // -v prints the response headers too, where a router names the version that served.
        .args(["-plaintext", "-v", "-max-time", "10", "-d", &data])
        .arg(addr.to_string())
        .arg(format!("{}/{method}", api.service()))
        .output()
        .await
        .map_err(|e| CallError::Failed(format!("cannot run {}: {e}", grpcurl.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(parse_grpcurl_error(&stderr)
            .unwrap_or_else(|| CallError::Failed(format!("grpcurl failed: {}", stderr.trim()))));
    }
    let verbose = parse_verbose(&String::from_utf8_lossy(&output.stdout));
    verbose
        .contents
        .iter()
        .map(|text| {
            let json: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| CallError::Failed(format!("grpcurl output {text:?}: {e}")))?;
            Ok(Reply {
                value: json_int(&json, "value")?.unwrap_or(0),
                request_id: json_int(&json, "requestId")?.map_or(0, |id| id as u64),
                served_by: verbose
                    .version_header
                    .clone()
                    .or_else(|| json["servedByVersion"].as_str().map(str::to_string)),
            })
        })
        .collect()
}

/// What `grpcurl -v` printed: the `x-api-version` response header, if any, and each response
/// message's JSON.
#[derive(Debug, Default, PartialEq)]
struct Verbose {
    version_header: Option<String>,
    contents: Vec<String>,
}

/// Reads `grpcurl -v` output: sections start with a line such as `Response headers received:`
/// or `Response contents:` and end at a blank line (a message's JSON has no blank lines).
fn parse_verbose(stdout: &str) -> Verbose {
    let mut verbose = Verbose::default();
    let mut section = "";
    for line in stdout.lines() {
        if line.trim().is_empty() {
            section = "";
            continue;
        }
        match line {
            "Response headers received:" | "Response contents:" | "Response trailers received:" => {
                section = line;
                if line == "Response contents:" {
                    verbose.contents.push(String::new());
                }
                continue;
            }
            _ => {}
        }
        match section {
            "Response headers received:" => {
                if let Some(value) = line.strip_prefix("x-api-version: ") {
                    verbose.version_header = Some(value.trim().to_string());
                }
            }
            "Response contents:" => {
                if let Some(message) = verbose.contents.last_mut() {
                    message.push_str(line);
                    message.push('\n');
                }
            }
            _ => {}
        }
    }
    verbose
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_header_and_every_message_of_grpcurl_verbose_output() {
        let stdout = "\nResolved method descriptor:\nrpc IncrementStream ( stream .a ) returns ( stream .b );\n\n\
            Request metadata to send:\n(empty)\n\nResponse headers received:\ncontent-type: application/grpc\n\
            x-api-version: 2.0.0\n\nResponse contents:\n{\n  \"value\": \"11\"\n}\n\n\
            Response contents:\n{\n  \"value\": \"21\"\n}\n\nResponse trailers received:\n(empty)\n\
            Sent 2 requests and received 2 responses\n";
        let verbose = parse_verbose(stdout);
        assert_eq!(verbose.version_header.as_deref(), Some("2.0.0"));
        assert_eq!(verbose.contents.len(), 2);
        assert!(verbose.contents[1].contains("\"21\""));
        let without =
            parse_verbose("Response headers received:\n(empty)\n\nResponse contents:\n{}\n");
        assert_eq!(without.version_header, None);
        assert_eq!(without.contents, ["{}\n"]);
    }
}
