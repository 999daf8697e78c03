//! The [`Guard`] service: checks each request before the port's own service sees it, and
//! wraps the bodies that enforce the message limit, the deadline and the open-request count.

use super::body::{CheckedBody, MessageCheck, Refusal, ReplyBody, cardinality, exceeded};
use super::budget::BodyBudget;
use super::layer::UnaryMethods;
use crate::PeerInfo;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use router::{BoxFuture, CountedBody, InFlight};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    request_timeout: Option<Duration>,
    max_message_bytes: usize,
    open: Arc<InFlight>,
    unary: UnaryMethods,
    budget: Arc<BodyBudget>,
}

impl<S> Guard<S> {
    pub(super) fn new(
        inner: S,
        request_timeout: Option<Duration>,
        max_message_bytes: usize,
        open: Arc<InFlight>,
        unary: UnaryMethods,
        budget: Arc<BodyBudget>,
    ) -> Self {
        Self {
            inner,
            request_timeout,
            max_message_bytes,
            open,
            unary,
            budget,
        }
    }
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
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

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
                    // As grpc-go: HTTP 400 with INTERNAL (the spec names no status for it).
                    let status = Status::internal(format!(
                        "grpc-timeout header {} is malformed: expected up to 8 digits and a unit (H, M, S, m, u, n)",
                        super::quote(&String::from_utf8_lossy(value.as_bytes()))
                    ));
                    return ready(with_http_status(status, StatusCode::BAD_REQUEST));
                }
            },
        };
        let timeout = match (client_timeout, self.request_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        if let Some(timeout) = timeout {
            // Passed on, so that a backend in another process stops working when the client
            // stops waiting; the header was taken off above so that it is read only here.
            request
                .headers_mut()
                .insert("grpc-timeout", grpc_timeout_header(timeout));
        }
        let path = request.uri().path();
        let unary = self.unary.contains(path).then(|| Arc::<str>::from(path));
        if let Some(path) = &unary
            && http_body::Body::is_end_stream(request.body())
        {
            return ready(cardinality(path, "none").into_http());
        }
        let guard = self.open.enter();
        let connection = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(PeerInfo::remote_addr);
        let check = MessageCheck::new(
            self.max_message_bytes,
            unary,
            self.budget.clone(),
            connection,
        );
        let (refused, refusal) = oneshot::channel();
        let mut refusal = Refusal::new(refusal);
        // The payload goes on as it arrives; a refusal (two messages, none, over a limit or a
        // budget) answers the call at once, whatever the inner service made of the failed body.
        let request = request.map(|body| Body::new(CheckedBody::new(body, check, refused)));
        let call = self.inner.clone().oneshot(request);
        let response = async move {
            tokio::pin!(call);
            let response = tokio::select! {
                biased;
                status = std::future::poll_fn(|cx| refusal.poll_refused(cx)) => {
                    return Ok((status.into_http(), None));
                }
                response = &mut call => response?,
            };
            if let Some(status) = refusal.try_refused() {
                return Ok((status.into_http(), None));
            }
            Ok::<_, Infallible>((response, Some(refusal)))
        };
        Box::pin(async move {
            let (mut response, refusal) = match deadline {
                None => response.await?,
                Some((at, timeout)) => match tokio::time::timeout_at(at, response).await {
                    Ok(response) => response?,
                    Err(_) => return Ok(exceeded(timeout).into_http()),
                },
            };
            super::cap_message(response.headers_mut());
            let Some(refusal) = refusal else {
                return Ok(response);
            };
            Ok(response.map(|body| {
                // A finished body (a trailers-only error reply) must stay finished, so that the
                // status goes out with the headers: gRPC clients read it from there.
                if http_body::Body::is_end_stream(&body) {
                    return body;
                }
                let body = Body::new(ReplyBody::new(body, refusal, deadline));
                Body::new(CountedBody::new(body, guard))
            }))
        })
    }
}

fn ready(response: Response<Body>) -> BoxFuture<Result<Response<Body>, Infallible>> {
    Box::pin(std::future::ready(Ok(response)))
}

/// `status` as a trailers-only reply with this HTTP status instead of 200.
fn with_http_status(status: Status, code: StatusCode) -> Response<Body> {
    let mut response = status.into_http::<Body>();
    *response.status_mut() = code;
    response
}

/// Answers what is not gRPC over HTTP/2 before it reaches tonic.
fn check(request: &Request<Body>) -> Result<(), Box<Response<Body>>> {
    if let Some(web) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .filter(|value| crate::web::is_web_content_type(value.as_bytes()))
    {
        // gRPC-Web reaches the guard untranslated only when `--grpc-web` is off.
        let status = Status::invalid_argument(format!(
            "content-type {} is gRPC-Web, which is off on this port: start testbed serve with \
             --grpc-web (and --cors-allow-origin ORIGIN for browsers)",
            super::quote(&String::from_utf8_lossy(web.as_bytes()))
        ));
        return Err(Box::new(with_http_status(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )));
    }
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
    if request.method() != http::Method::POST {
        // As grpc-go: HTTP 405 with INTERNAL (PROTOCOL-HTTP2.md allows only POST).
        let status = Status::internal(format!(
            "HTTP method {} is not allowed: gRPC requests are POST",
            super::quote(request.method().as_str())
        ));
        return Err(Box::new(with_http_status(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
        )));
    }
    let headers = request.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    let is_grpc = content_type == "application/grpc"
        || (content_type.starts_with("application/grpc+")
            && !content_type.starts_with("application/grpc-web"));
    if !is_grpc {
        let status = Status::invalid_argument(format!(
            "content-type {} is not gRPC; expected application/grpc or application/grpc+proto",
            super::quote(&content_type)
        ));
        return Err(Box::new(with_http_status(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )));
    }
    // A `grpc-encoding` is left to what reads the messages: the port's own tonic services
    // decode gzip, zstd and deflate, and a remote backend gets them as they are (the router
    // refuses an encoding the backend has said it does not accept). The checks here read
    // only frame headers, which compression leaves as they are.
    let versions = headers.get_all(router::API_VERSION_HEADER);
    let count = versions.iter().count();
    if count > 1 {
        let status = Status::invalid_argument(format!(
            "{} appears {count} times; send one requirement (several conditions go in one value, as in \">=1.1, <3\")",
            router::API_VERSION_HEADER
        ));
        return Err(Box::new(status.into_http()));
    }
    if let Some(value) = versions.iter().next()
        && value.len() > super::MAX_QUOTE_BYTES
    {
        let status = Status::invalid_argument(format!(
            "{} header of {} bytes is longer than the {} allowed: {}; expected a semver requirement such as ^1.1",
            router::API_VERSION_HEADER,
            value.len(),
            super::MAX_QUOTE_BYTES,
            super::quote(&String::from_utf8_lossy(value.as_bytes()))
        ));
        return Err(Box::new(status.into_http()));
    }
    Ok(())
}

/// `timeout` as a `grpc-timeout` value: whole milliseconds rounded up (so a deadline is never
/// shortened to zero), or seconds when the milliseconds need more than the 8 digits allowed.
fn grpc_timeout_header(timeout: Duration) -> HeaderValue {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    let text = if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    };
    HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("99999999S"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_timeouts_parse_back_and_never_shrink() {
        for timeout in [
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_secs(5),
            Duration::from_secs(200_000),
        ] {
            let header = grpc_timeout_header(timeout);
            let parsed = parse_grpc_timeout(&header).unwrap();
            assert!(parsed >= timeout, "{timeout:?} sent as {header:?}");
        }
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
