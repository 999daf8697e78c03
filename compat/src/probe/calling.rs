//! One call on the wire: the raw request bytes sent on one stream to a path, half-closed, the
//! replies read (gzip, zstd or deflate compressed ones too) within the deadline and the
//! [`ReplyLimits`] caps, and how the call ended.

use super::Header;
use super::report::Ending;
use crate::reflection::RawCodec;
use bytes::Bytes;
use http_body::Body as HttpBody;
use std::time::Duration;
use tonic::Code;
use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::codec::CompressionEncoding;

/// The response header naming the version that served a call (the testbed's gateway sets it).
const SERVED_BY: &str = "x-api-version";

/// How much of one call's replies the probe reads and keeps: a stream past either cap is cut
/// there (the call cancelled) and reported as capped, not as a failure of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ReplyLimits {
    /// Most reply messages read per call.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_replies: usize,
    /// Most reply bytes (all messages together) read per call.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_reply_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_replies: 100,
            max_reply_bytes: 16 << 20,
        }
    }
}

/// What came back from one call, undecoded.
#[derive(Debug, Clone)]
pub struct Answer {
    /// How the call ended.
    pub code: Code,
    /// Its status message.
    pub message: String,
    /// The reply messages read, uncompressed.
    pub replies: Vec<Vec<u8>>,
    /// Why reading stopped before the stream ended (a cap), if it did: `replies` is then not
    /// the whole stream.
    pub capped: Option<String>,
    /// The `x-api-version` response header, when the reply had one.
    pub served_by: Option<String>,
}

impl Answer {
    pub(super) fn ending(&self) -> Ending {
        Ending {
            code: code_name(self.code),
            message: self.message.clone(),
            replies: self.replies.len(),
            capped: self.capped.clone(),
            served_by: self.served_by.clone(),
        }
    }
}

/// Sends `messages` on one call to `path` over `channel` (a tonic `Channel`, or any HTTP
/// service that speaks gRPC, such as a gateway's backend), half-closes, and reads the replies, within the
/// deadline (a stream that does not end is cut there and reported as DEADLINE_EXCEEDED) and
/// the caps of `limits` (a stream past one is cut there and reported as capped).
pub async fn exchange<T>(
    channel: &T,
    path: &str,
    messages: Vec<Vec<u8>>,
    (timeout, limits): (Duration, ReplyLimits),
    headers: &[Header],
) -> Answer
where
    T: GrpcService<Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: HttpBody<Data = Bytes> + Send + 'static,
    <T::ResponseBody as HttpBody>::Error: Into<tonic::codegen::StdError>,
{
    let mut replies = Replies {
        kept: Vec::new(),
        bytes: 0,
        capped: None,
        limits,
    };
    let mut served_by = None;
    let call = call(
        channel.clone(),
        path,
        messages,
        timeout,
        headers,
        &mut replies,
        &mut served_by,
    );
    let (code, message) = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Ok(Ok(())) => (Code::Ok, String::new()),
        Ok(Err(status)) => {
            if served_by.is_none() {
                served_by = header(status.metadata());
            }
            (status.code(), status.message().to_string())
        }
        Err(_) => (
            Code::DeadlineExceeded,
            format!("the call did not end within the probe's deadline of {timeout:?}"),
        ),
    };
    Answer {
        code,
        message,
        replies: replies.kept,
        capped: replies.capped,
        served_by,
    }
}

/// The replies of one call read so far, within `limits`.
struct Replies {
    kept: Vec<Vec<u8>>,
    bytes: usize,
    capped: Option<String>,
    limits: ReplyLimits,
}

impl Replies {
    /// Keeps `reply`; `false` once a cap is reached (the caller stops reading).
    fn keep(&mut self, reply: Vec<u8>) -> bool {
        self.bytes = self.bytes.saturating_add(reply.len());
        self.kept.push(reply);
        let l = self.limits;
        self.capped = if self.kept.len() >= l.max_replies {
            Some(format!(
                "the probe stopped reading at {} replies (--max-replies {})",
                self.kept.len(),
                l.max_replies
            ))
        } else if self.bytes >= l.max_reply_bytes {
            Some(format!(
                "the probe stopped reading at {} reply bytes (--max-reply-bytes {})",
                self.bytes, l.max_reply_bytes
            ))
        } else {
            None
        };
        self.capped.is_none()
    }
}

async fn call<T>(
    channel: T,
    path: &str,
    messages: Vec<Vec<u8>>,
    timeout: Duration,
    headers: &[Header],
    replies: &mut Replies,
    served_by: &mut Option<String>,
) -> Result<(), tonic::Status>
where
    T: GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: HttpBody<Data = Bytes> + Send + 'static,
    <T::ResponseBody as HttpBody>::Error: Into<tonic::codegen::StdError>,
{
    let path: http::uri::PathAndQuery = path
        .parse()
        .map_err(|e| tonic::Status::internal(format!("{path:?} is not a gRPC path: {e}")))?;
    // Replies may come compressed in any encoding gRPC servers commonly use; requests go
    // uncompressed, which every server takes.
    let mut grpc = tonic::client::Grpc::new(channel)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Deflate);
    grpc.ready().await.map_err(|e| {
        let e: tonic::codegen::StdError = e.into();
        tonic::Status::unavailable(format!("the connection is not ready: {e}"))
    })?;
    let mut request = tonic::Request::new(tokio_stream::iter(messages));
    request.set_timeout(timeout);
    for header in headers {
        header.add_to(request.metadata_mut());
    }
    let response = grpc.streaming(request, path, RawCodec).await?;
    *served_by = header(response.metadata());
    let mut stream = response.into_inner();
    while let Some(reply) = stream.message().await? {
        if !replies.keep(reply) {
            // Dropping the stream cancels the call (RST_STREAM), so the server stops sending.
            break;
        }
    }
    Ok(())
}

fn header(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(SERVED_BY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `s`, cut at 80 characters (status messages in tables and reasons).
pub(crate) fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

/// gRPC's canonical name of a code (`NOT_FOUND`), from tonic's variant name (`NotFound`).
pub fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, ch) in format!("{code:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(ch.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::transport::Channel;

    /// Serves `router` on a free loopback port: the server's task and a channel to it.
    async fn serve(
        router: tonic::transport::server::Router,
    ) -> (
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
        Channel,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        let server = tokio::spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = crate::connect::connect(&addr.to_string(), None, Duration::from_secs(5))
            .await
            .expect("it connects");
        (server, channel)
    }

    /// Serves `health` on a free loopback port: the server's task and a channel to it.
    async fn serve_health(
        health: tonic_health::pb::health_server::HealthServer<
            impl tonic_health::pb::health_server::Health,
        >,
    ) -> (
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
        Channel,
    ) {
        serve(tonic::transport::Server::builder().add_service(health)).await
    }

    #[tokio::test]
    async fn a_stream_that_never_ends_is_cut_at_the_deadline_with_its_replies_kept() {
        // grpc.health.v1.Health/Watch sends the status, then waits for changes forever.
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (server, channel) = serve_health(health).await;
        let deadline = Duration::from_millis(200);
        let watch = "/grpc.health.v1.Health/Watch";
        let within = (deadline, ReplyLimits::default());
        let call = exchange(&channel, watch, vec![Vec::new()], within, &[]);
        let answer = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("the probe gives up at its deadline, not never");
        assert_eq!(answer.code, Code::DeadlineExceeded, "{}", answer.message);
        assert_eq!(
            answer.replies.len(),
            1,
            "the first status arrived before the cut"
        );
        server.abort();
    }

    #[tokio::test]
    async fn an_endless_stream_is_cut_at_the_reply_caps_and_reported_as_capped() {
        // Watch sends a message per status change; a task changes it without end.
        let (reporter, health) = tonic_health::server::health_reporter();
        let flip = tokio::spawn(async move {
            loop {
                reporter
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                tokio::task::yield_now().await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                tokio::task::yield_now().await;
            }
        });
        let (server, channel) = serve_health(health).await;
        let watch = "/grpc.health.v1.Health/Watch";
        let caps = [
            (5, usize::MAX, 5, "--max-replies 5"),
            (usize::MAX, 7, 4, "--max-reply-bytes 7"),
        ];
        for (max_replies, max_reply_bytes, kept, says) in caps {
            let limits = ReplyLimits {
                max_replies,
                max_reply_bytes,
            };
            // A deadline the caps must come well before.
            let within = (Duration::from_secs(600), limits);
            let call = exchange(&channel, watch, vec![Vec::new()], within, &[]);
            let answer = tokio::time::timeout(Duration::from_secs(60), call)
                .await
                .expect("the probe stops at its caps, not at the deadline");
            assert_eq!(answer.code, Code::Ok, "{}", answer.message);
            assert_eq!(answer.replies.len(), kept);
            let capped = answer.ending().capped.unwrap_or_default();
            assert!(capped.contains(says), "{capped}");
        }
        flip.abort();
        server.abort();
    }

    #[tokio::test]
    async fn compressed_replies_are_accepted_in_each_encoding() {
        for (encoding, name) in [
            (CompressionEncoding::Gzip, "gzip"),
            (CompressionEncoding::Zstd, "zstd"),
            (CompressionEncoding::Deflate, "deflate"),
        ] {
            // A server that compresses its replies with `encoding` when the client accepts it,
            // recording what the client said it accepts.
            let (_reporter, health) = tonic_health::server::health_reporter();
            let accepted = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let seen = accepted.clone();
            let record = move |request: tonic::Request<()>| {
                let header = request.metadata().get("grpc-accept-encoding");
                let text = header.and_then(|v| v.to_str().ok()).unwrap_or_default();
                *seen.lock().expect("not poisoned") = text.to_string();
                Ok(request)
            };
            let service = tonic::service::interceptor::InterceptedService::new(
                health.send_compressed(encoding),
                record,
            );
            let (server, channel) =
                serve(tonic::transport::Server::builder().add_service(service)).await;
            let check = "/grpc.health.v1.Health/Check";
            let within = (Duration::from_secs(30), ReplyLimits::default());
            let answer = exchange(&channel, check, vec![Vec::new()], within, &[]).await;
            assert_eq!(answer.code, Code::Ok, "{name}: {}", answer.message);
            // HealthCheckResponse { status: SERVING }, decompressed.
            assert_eq!(answer.replies, [vec![0x08, 0x01]], "{name}");
            let accepted = accepted.lock().expect("not poisoned").clone();
            assert!(
                accepted.split(',').any(|e| e.trim() == name),
                "{name} not in grpc-accept-encoding {accepted:?}"
            );
            server.abort();
        }
    }
}
