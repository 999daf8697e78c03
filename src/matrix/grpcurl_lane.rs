//! The matrix's grpcurl client for any API: each call of the traffic made by running grpcurl
//! with the caller's own descriptors (`-protoset`, so that it is a client of that version
//! whatever the server's reflection says), the request given as the protobuf JSON grpcurl
//! reads and its output read back into messages, so that `compat`'s replay compares its
//! answers exactly as it compares the testbed client's.

use super::outside_client::{Failures, failed, method_at, requests_json};
use compat::probe::{Answer, Header, ReplyLimits};
use compat::replay::Lane;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// grpcurl against one plaintext server, as a client of one version.
#[derive(Debug, Clone)]
pub(super) struct GrpcurlLane {
    grpcurl: PathBuf,
    addr: String,
    /// The caller's descriptors: written to `protoset` for grpcurl, read here to turn the
    /// messages into JSON and back.
    pool: DescriptorPool,
    protoset: Arc<PathBuf>,
    /// Where the calls grpcurl could not make are recorded (shared by a row's lanes).
    failures: Arc<Failures>,
}

impl GrpcurlLane {
    /// grpcurl (`grpcurl`) calling `addr` (`HOST:PORT`, plaintext) with `pool`'s descriptors,
    /// written to `protoset`; the calls it cannot make recorded in `failures`.
    pub(super) fn new(
        grpcurl: PathBuf,
        addr: &str,
        pool: DescriptorPool,
        protoset: Arc<PathBuf>,
        failures: Arc<Failures>,
    ) -> Self {
        Self {
            grpcurl,
            addr: addr.to_string(),
            pool,
            protoset,
            failures,
        }
    }

    async fn run(
        &self,
        m: &MethodDescriptor,
        messages: Vec<Vec<u8>>,
        (timeout, limits): (Duration, ReplyLimits),
        headers: &[Header],
    ) -> Result<Answer, String> {
        let mut input = String::new();
        for json in requests_json(m, &messages)? {
            input.push_str(&json.to_string());
            input.push('\n');
        }
        let mut command = tokio::process::Command::new(&self.grpcurl);
        command
            .arg("-plaintext")
            .arg("-protoset")
            .arg(self.protoset.as_ref())
            .args(["-format", "json", "-max-time"])
            .arg(format!("{:.3}", timeout.as_secs_f64()));
        for header in headers {
            command
                .arg("-H")
                .arg(format!("{}: {}", header.name(), header.value()));
        }
        command
            .args(["-d", "@", &self.addr])
            .arg(format!("{}/{}", m.parent_service().full_name(), m.name()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.grpcurl.display()))?;
        let mut stdin = child.stdin.take().ok_or("grpcurl's stdin")?;
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("cannot write grpcurl's input: {e}"))?;
        drop(stdin);
        // Read at most one byte past the cap: what is past it is not kept.
        let cap = u64::try_from(limits.max_reply_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let mut stdout = child.stdout.take().ok_or("grpcurl's stdout")?.take(cap);
        let mut stderr = child
            .stderr
            .take()
            .ok_or("grpcurl's stderr")?
            .take(64 << 10);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read = async {
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err),);
            a.and(b).map_err(|e| e.to_string())?;
            child.wait().await.map_err(|e| e.to_string())
        };
        let status = match tokio::time::timeout(timeout + Duration::from_secs(5), read).await {
            Ok(status) => status?,
            Err(_) => {
                return Ok(failed(
                    Code::DeadlineExceeded,
                    format!("grpcurl did not end within {timeout:?}"),
                ));
            }
        };
        let err = String::from_utf8_lossy(&err);
        if !status.success() {
            return Ok(parse_error(&err));
        }
        let mut replies = Vec::new();
        let mut capped = None;
        if out.len() as u64 >= cap {
            capped = Some(format!(
                "grpcurl printed more than --max-reply-bytes {}",
                limits.max_reply_bytes
            ));
        }
        for value in serde_json::Deserializer::from_slice(&out).into_iter::<serde_json::Value>() {
            let Ok(value) = value else {
                // The cut end of a capped output.
                break;
            };
            if replies.len() >= limits.max_replies {
                capped = Some(format!("more than --max-replies {}", limits.max_replies));
                break;
            }
            let message = DynamicMessage::deserialize(m.output(), value).map_err(|e| {
                format!(
                    "grpcurl printed a reply that is not a {}: {e}",
                    m.output().full_name()
                )
            })?;
            replies.push(message.encode_to_vec());
        }
        Ok(Answer {
            code: Code::Ok,
            message: String::new(),
            replies,
            capped,
            served_by: None,
        })
    }
}

impl Lane for GrpcurlLane {
    async fn call(
        &self,
        path: &str,
        messages: Vec<Vec<u8>>,
        within: (Duration, ReplyLimits),
        headers: &[Header],
    ) -> Answer {
        let Some(m) = method_at(&self.pool, path) else {
            return failed(
                Code::Internal,
                format!("the caller's descriptors declare no {path}"),
            );
        };
        self.run(&m, messages, within, headers)
            .await
            .unwrap_or_else(|why| self.failures.answer("grpcurl", path, why))
    }
}

/// grpcurl's error output (`ERROR:\n  Code: NotFound\n  Message: ...`) as a status; a failure
/// without one (it could not connect) as UNAVAILABLE with what it said.
fn parse_error(stderr: &str) -> Answer {
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix(name).map(str::trim))
    };
    match field("Code:") {
        Some(code) => failed(
            code_of(code),
            field("Message:").unwrap_or_default().to_string(),
        ),
        None => failed(Code::Unavailable, stderr.trim().to_string()),
    }
}

/// A gRPC code from the name grpcurl prints (Go's `codes.Code` names).
fn code_of(name: &str) -> Code {
    const NAMES: [(&str, Code); 17] = [
        ("OK", Code::Ok),
        ("Canceled", Code::Cancelled),
        ("Unknown", Code::Unknown),
        ("InvalidArgument", Code::InvalidArgument),
        ("DeadlineExceeded", Code::DeadlineExceeded),
        ("NotFound", Code::NotFound),
        ("AlreadyExists", Code::AlreadyExists),
        ("PermissionDenied", Code::PermissionDenied),
        ("ResourceExhausted", Code::ResourceExhausted),
        ("FailedPrecondition", Code::FailedPrecondition),
        ("Aborted", Code::Aborted),
        ("OutOfRange", Code::OutOfRange),
        ("Unimplemented", Code::Unimplemented),
        ("Internal", Code::Internal),
        ("Unavailable", Code::Unavailable),
        ("DataLoss", Code::DataLoss),
        ("Unauthenticated", Code::Unauthenticated),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Code::Unknown, |(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpcurls_error_output_becomes_the_status_it_names() {
        let answer = parse_error("ERROR:\n  Code: NotFound\n  Message: no product 'x'\n");
        assert_eq!(answer.code, Code::NotFound);
        assert_eq!(answer.message, "no product 'x'");
        assert_eq!(
            parse_error("ERROR:\n  Code: Unimplemented\n").code,
            Code::Unimplemented
        );
        let unreachable = parse_error("Failed to dial target host \"127.0.0.1:1\": refused\n");
        assert_eq!(unreachable.code, Code::Unavailable);
        assert!(unreachable.message.contains("Failed to dial"));
        assert_eq!(code_of("Canceled"), Code::Cancelled);
        assert_eq!(code_of("Nonsense"), Code::Unknown);
    }
}
