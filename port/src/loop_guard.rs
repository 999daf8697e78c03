//! Routing loops refused at the port: each running port has an instance mark (a random id
//! made when it starts) that it appends to every request it passes on, in the
//! [`GATEWAY_HEADER`] header, so that an upstream forwarding the request carries the mark
//! further. A request that arrives already carrying this port's own mark went round a loop
//! (an upstream that is, or routes back to, this gateway) and is answered at once with
//! `FAILED_PRECONDITION`, instead of being forwarded again until every deadline-less call
//! nests without end. Marks of other gateways are kept: a chain of distinct gateways is
//! not a loop.

use http::{HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// The request header carrying the marks of the gateways a request went through.
pub const GATEWAY_HEADER: &str = "x-testbed-gateway";

/// Adds a [`LoopGuard`] with one instance mark to a port's service.
#[derive(Debug, Clone)]
pub struct LoopGuardLayer {
    mark: HeaderValue,
}

impl LoopGuardLayer {
    /// A layer with a fresh random instance mark (16 hex digits).
    pub fn new() -> Self {
        // std's RandomState is keyed from the OS's random source, so no two processes (nor
        // two ports of one process) share a mark; the time and the process id only add to it.
        let seed = (
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let id = std::hash::RandomState::new().hash_one(seed);
        Self {
            mark: HeaderValue::from_str(&format!("{id:016x}"))
                .unwrap_or_else(|_| HeaderValue::from_static("0")),
        }
    }

    /// This port's instance mark, as [`GATEWAY_HEADER`] carries it.
    pub fn mark(&self) -> &str {
        self.mark.to_str().unwrap_or_default()
    }
}

impl Default for LoopGuardLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for LoopGuardLayer {
    type Service = LoopGuard<S>;

    fn layer(&self, inner: S) -> LoopGuard<S> {
        LoopGuard {
            inner,
            mark: self.mark.clone(),
        }
    }
}

/// Answers a request carrying its own mark with `FAILED_PRECONDITION`; marks every other one
/// and passes it on.
#[derive(Debug, Clone)]
pub struct LoopGuard<S> {
    inner: S,
    mark: HeaderValue,
}

impl<S> Service<Request<Body>> for LoopGuard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let looped = request
            .headers()
            .get_all(GATEWAY_HEADER)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .any(|mark| mark.trim_ascii() == self.mark.as_bytes());
        if looped {
            let status = Status::failed_precondition(format!(
                "routing loop: this request already passed through this gateway (instance {}, \
                 header {GATEWAY_HEADER}); one of its upstreams routes back to it: see `testbed \
                 route list` and give that backend its own address",
                self.mark.to_str().unwrap_or_default()
            ));
            tracing::warn!(path = ?request.uri().path(), "routing loop refused");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        request
            .headers_mut()
            .append(GATEWAY_HEADER, self.mark.clone());
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn echo_marks() -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone {
        tower::service_fn(|request: Request<Body>| async move {
            let marks = request.headers().get_all(GATEWAY_HEADER).iter().count();
            let mut response = Response::new(Body::empty());
            response
                .headers_mut()
                .insert("marks", HeaderValue::from(marks));
            Ok::<_, Infallible>(response)
        })
    }

    #[tokio::test]
    async fn marks_passing_requests_and_refuses_its_own_mark() {
        let layer = LoopGuardLayer::new();
        let other = LoopGuardLayer::new();
        assert_ne!(layer.mark(), other.mark());
        let service = layer.layer(echo_marks());
        let mut request = Request::new(Body::empty());
        request
            .headers_mut()
            .append(GATEWAY_HEADER, other.mark().parse().unwrap());
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()["marks"], "2");
        assert_eq!(response.headers().get("grpc-status"), None);

        let mut request = Request::new(Body::empty());
        let listed = format!("{}, {}", other.mark(), layer.mark());
        request
            .headers_mut()
            .insert(GATEWAY_HEADER, listed.parse().unwrap());
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "9");
        assert_eq!(response.headers().get("marks"), None);
    }
}
