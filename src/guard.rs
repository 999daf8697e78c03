//! The port's first layer: turns requests that are not gRPC into clear errors, enforces
//! deadlines over whole responses (streams included), and counts what is open.
//!
//! - HTTP/1.x on the gRPC port: HTTP 505 with a plain-text explanation (without this layer the
//!   client would get raw HTTP/2 bytes back).
//! - A content-type other than `application/grpc[+...]`: HTTP 415 with `INVALID_ARGUMENT`
//!   naming it (tonic alone would serve `application/json` requests as if they were gRPC).
//! - Deadline: the sooner of the client's `grpc-timeout` and the server's request timeout. When
//!   it passes, the call ends with `DEADLINE_EXCEEDED`, even a stream whose headers are already
//!   sent (tonic's own timeout covers only the headers, and reports `CANCELLED`).
//! - A request message larger than the limit: `RESOURCE_EXHAUSTED` naming both sizes, read from
//!   the gRPC frame header before the message is buffered (tonic alone says `OUT_OF_RANGE`).
//! - Every request counts as open from arrival until its response body ends or is dropped, so a
//!   cancelled stream is visibly freed.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Frame;
use router::{CountedBody, InFlight};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tonic::{Status, body::Body};
use tower::{Layer, Service, ServiceExt};

/// Adds the [`Guard`] to a port's service.
#[derive(Clone)]
pub struct GuardLayer {
    request_timeout: Option<Duration>,
    max_message_bytes: usize,
    open: Arc<InFlight>,
}

impl GuardLayer {
    /// A guard with the server's `request_timeout` (if any) and message limit, counting open
    /// requests in `open`.
    pub fn new(
        request_timeout: Option<Duration>,
        max_message_bytes: usize,
        open: Arc<InFlight>,
    ) -> Self {
        Self {
            request_timeout,
            max_message_bytes,
            open,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            request_timeout: self.request_timeout,
            max_message_bytes: self.max_message_bytes,
            open: self.open.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    request_timeout: Option<Duration>,
    max_message_bytes: usize,
    open: Arc<InFlight>,
}

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if let Err(response) = check(&request) {
            return Box::pin(std::future::ready(Ok(*response)));
        }
        let client_timeout = match request.headers_mut().remove("grpc-timeout") {
            None => None,
            Some(value) => match parse_grpc_timeout(&value) {
                Some(timeout) => Some(timeout),
                None => {
                    let status = Status::invalid_argument(format!(
                        "grpc-timeout header {value:?} is malformed: expected up to 8 digits and a unit (H, M, S, m, u, n)"
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            },
        };
        let timeout = match (client_timeout, self.request_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        let guard = self.open.enter();
        let limit = self.max_message_bytes;
        let request = request.map(|body| Body::new(SizeLimitedBody::new(body, limit)));
        let response = self.inner.clone().oneshot(request);
        Box::pin(async move {
            let response = match deadline {
                None => response.await?,
                Some((at, timeout)) => match tokio::time::timeout_at(at, response).await {
                    Ok(response) => response?,
                    Err(_) => return Ok(exceeded(timeout).into_http()),
                },
            };
            Ok(response.map(|body| {
                // A finished body (a trailers-only error reply) must stay finished, so that the
                // status goes out with the headers: gRPC clients read it from there.
                if http_body::Body::is_end_stream(&body) {
                    return body;
                }
                let body = match deadline {
                    Some((at, timeout)) => Body::new(DeadlineBody::new(body, at, timeout)),
                    None => body,
                };
                Body::new(CountedBody::new(body, guard))
            }))
        })
    }
}

/// Answers what is not gRPC over HTTP/2 before it reaches tonic.
fn check(request: &Request<Body>) -> Result<(), Box<Response<Body>>> {
    if request.version() != Version::HTTP_2 {
        let text = format!(
            "this port serves gRPC over HTTP/2 (h2c, prior knowledge); {:?} requests are not supported\n",
            request.version()
        );
        let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(text))));
        *response.status_mut() = StatusCode::HTTP_VERSION_NOT_SUPPORTED;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Err(Box::new(response));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_grpc = content_type == "application/grpc"
        || (content_type.starts_with("application/grpc+")
            && !content_type.starts_with("application/grpc-web"));
    if !is_grpc {
        let status = Status::invalid_argument(format!(
            "content-type {content_type:?} is not gRPC; expected application/grpc or application/grpc+proto"
        ));
        let mut response = status.into_http::<Body>();
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(Box::new(response));
    }
    Ok(())
}

fn exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "deadline of {timeout:?} exceeded before the call finished"
    ))
}

/// Parses a `grpc-timeout` value such as `100m` (100 ms) or `5S`.
fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A request body that fails with `RESOURCE_EXHAUSTED` as soon as a gRPC frame header
/// announces a message over the limit. Frame headers are 5 bytes: a flag, then a big-endian
/// u32 length; they may be split across data chunks.
struct SizeLimitedBody {
    inner: Body,
    limit: usize,
    header: [u8; 5],
    header_len: usize,
    payload_left: usize,
}

impl SizeLimitedBody {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
        }
    }

    /// Walks the frame headers in `chunk`; the first oversized message is an error.
    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), Status> {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(chunk.len());
                self.payload_left -= skip;
                chunk = &chunk[skip..];
                continue;
            }
            let take = (5 - self.header_len).min(chunk.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
            self.header_len += take;
            chunk = &chunk[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "request message of {len} bytes is over this server's limit of {} bytes",
                        self.limit
                    )));
                }
                self.payload_left = len;
            }
        }
        Ok(())
    }
}

impl http_body::Body for SizeLimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let data = data.clone();
            if let Err(status) = self.scan(&data) {
                return Poll::Ready(Some(Err(status)));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// A response body that ends with `DEADLINE_EXCEEDED` trailers once its deadline passes.
struct DeadlineBody {
    inner: Option<Body>,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, at: Instant, timeout: Duration) -> Self {
        Self {
            inner: Some(inner),
            sleep: Box::pin(tokio::time::sleep_until(at)),
            timeout,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                self.inner = None;
            }
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Dropping the inner body ends the handler's stream and frees what it held.
        self.inner = None;
        Poll::Ready(Some(router::status_trailers(exceeded(self.timeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_reads_frame_headers_split_across_chunks() {
        let mut body = SizeLimitedBody::new(Body::empty(), 10);
        let mut stream = vec![0u8, 0, 0, 0, 3, 1, 2, 3];
        stream.extend_from_slice(&[0, 0, 0, 0, 10]);
        stream.extend_from_slice(&[7; 10]);
        for chunk in stream.chunks(3) {
            assert!(body.scan(chunk).is_ok());
        }
        let status = body
            .scan(&[0, 0, 0, 0])
            .and_then(|()| body.scan(&[11]))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("11 bytes") && status.message().contains("10 bytes"));
    }

    #[test]
    fn parses_grpc_timeouts() {
        let parse = |s: &'static str| parse_grpc_timeout(&HeaderValue::from_static(s));
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "100", "100x", "123456789m", "-5m", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
