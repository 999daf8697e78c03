//! The tower service that routes each gRPC request to a versioned backend.

use crate::backend::RouterMade;
use crate::inflight::CountedBody;
use crate::requirement::{API_VERSION_HEADER, parse_requirement};
use crate::routed::Routed;
use crate::table::RouteTable;
use crate::{BoxFuture, GrpcPath};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, Request, Response, Uri};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::{Status, body::Body};
use tower::{Layer, Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps an inner service with a [`VersionRouter`] reading the shared route table.
#[derive(Clone)]
pub struct VersionRouterLayer {
    table: Arc<ArcSwap<RouteTable>>,
}

impl std::fmt::Debug for VersionRouterLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRouterLayer")
            .field("table", &self.table.load())
            .finish()
    }
}

impl VersionRouterLayer {
    pub(crate) fn new(table: Arc<ArcSwap<RouteTable>>) -> Self {
        Self { table }
    }
}

impl<S> Layer<S> for VersionRouterLayer {
    type Service = VersionRouter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VersionRouter {
            table: self.table.clone(),
            inner,
        }
    }
}

/// Routes requests for managed API packages to backends; passes everything else to `inner`.
///
/// Per request: one atomic load of the table, a path split, a header parse when the header is
/// present, a lookup in a list already sorted newest first, and the in-flight count plus one
/// atomic load to make sure the chosen backend is not being drained meanwhile.
#[derive(Clone)]
pub struct VersionRouter<S> {
    table: Arc<ArcSwap<RouteTable>>,
    inner: S,
}

impl<S> std::fmt::Debug for VersionRouter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRouter")
            .field("table", &self.table.load())
            .finish_non_exhaustive()
    }
}

/// A reply the router makes itself, without asking any backend.
fn reply(status: Status) -> BoxFuture<Result<Response<Body>, Infallible>> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}

impl<S, B> Service<Request<B>> for VersionRouter<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call drives its own clone of the chosen service to readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut table = self.table.load();
        let path = request.uri().path();
        let Some(grpc_path) = GrpcPath::parse(path).filter(|p| table.catalog().manages(p.package))
        else {
            return Box::pin(self.inner.clone().oneshot(request));
        };
        if !table.catalog().has_method(path) {
            return reply(Status::unimplemented(format!(
                "{} is not a method of {}; its methods: {}",
                crate::quote(path.trim_start_matches('/')),
                grpc_path.package,
                table.catalog().methods_of(grpc_path.package).join(", ")
            )));
        }
        let requirement = match parse_requirement(request.headers()) {
            Ok(requirement) => requirement,
            Err(status) => return reply(status),
        };
        // The table may be swapped between the load above and the count below, by a drain that
        // then waits for the backend's count to reach zero. So: count first, then check that
        // the backend still takes requests; when it does not, select again from the new table.
        // The drainer does the mirror image (store the table, mark the backend closed, then
        // read its count), all SeqCst, so at least one side sees the other: either this request
        // sees "closed" and goes elsewhere, or the drain sees it counted and waits for it.
        // A closed backend is never active again in a later table, so this loops at most once
        // per drain or removal that overlaps the call.
        let (guard, version, routed, service, new_path) = loop {
            let point = table.choice_point(grpc_path.package, request.headers());
            let route = match table.select(&grpc_path, requirement.as_ref(), point) {
                Ok(route) => route,
                Err(status) => return reply(status),
            };
            let guard = route.state.in_flight.enter();
            if !route.state.is_closed() {
                let new_path = (route.backend.api != grpc_path.package).then(|| {
                    format!(
                        "/{}.{}/{}",
                        route.backend.api, grpc_path.service, grpc_path.method
                    )
                });
                break (
                    guard,
                    route.version_header.clone(),
                    (route.name.clone(), route.version.clone()),
                    route.backend.service.clone(),
                    new_path,
                );
            }
            drop(guard);
            table = self.table.load();
        };
        let request = match new_path {
            None => request.map(Body::new),
            Some(new_path) => match readdress(request, &new_path) {
                Ok(request) => request,
                Err(status) => return reply(status),
            },
        };
        Box::pin(async move {
            let response = service.oneshot(request).await?;
            let (mut parts, body) = response.into_parts();
            // A reply the backend's own plumbing made up (its upstream is unreachable, say) was
            // not served by `version`, so it is not labelled with it.
            let answered = parts.extensions.get::<RouterMade>().is_none();
            if answered {
                parts
                    .headers
                    .insert(HeaderName::from_static(API_VERSION_HEADER), version);
            }
            parts.extensions.insert(Routed {
                backend: routed.0,
                version: routed.1,
                answered,
            });
            Ok(Response::from_parts(
                parts,
                Body::new(CountedBody::new(body, guard)),
            ))
        })
    }
}

/// Gives `request` a new path, e.g. `/increment.v1.Incrementer/Increment` →
/// `/increment.v2.Incrementer/Increment`, keeping everything else. The router only does this for
/// package pairs the route table proved wire-compatible.
pub fn readdress<B>(request: Request<B>, new_path: &str) -> Result<Request<Body>, Status>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let mut uri = parts.uri.into_parts();
    uri.path_and_query = Some(
        PathAndQuery::try_from(new_path)
            .map_err(|err| Status::internal(format!("cannot re-address to {new_path}: {err}")))?,
    );
    parts.uri = Uri::from_parts(uri)
        .map_err(|err| Status::internal(format!("cannot re-address to {new_path}: {err}")))?;
    Ok(Request::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use crate::testing::{
        V1, V2, backend, dead_port, grpc_status, remote, reply_body, request, router, send,
        served_by,
    };
    use crate::{API_VERSION_HEADER, Backend};
    use semver::Version;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use tonic::Code;
    use tonic::body::Body;

    #[tokio::test]
    async fn unknown_method_lists_only_the_methods_of_the_asked_package() {
        let (_handle, router) = router(vec![backend("v2", "2.0.0", V2)]).await;
        // Reset exists in demo.v2 only.
        let response = send(&router, request("/demo.v1.Counter/Reset", None)).await;
        let status = grpc_status(&response).unwrap();
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(
            status.message(),
            "\"demo.v1.Counter/Reset\" is not a method of demo.v1; its methods: demo.v1.Counter/Add"
        );
    }

    #[tokio::test]
    async fn unreachable_remote_reply_names_no_version() {
        let (_handle, router) = router(vec![remote("gone", V1, dead_port())]).await;
        let response = send(&router, request("/demo.v1.Counter/Add", None)).await;
        let status = grpc_status(&response).expect("a trailers-only UNAVAILABLE reply");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("backend gone"), "{status:?}");
        assert_eq!(
            response.headers().get(API_VERSION_HEADER),
            None,
            "1.0.0 did not serve this reply"
        );
    }

    #[tokio::test]
    async fn answered_reply_names_the_version_that_served_it() {
        let (_handle, router) = router(vec![backend("v1", "1.0.0", V1)]).await;
        let response = send(&router, request("/demo.v1.Counter/Add", None)).await;
        assert_eq!(served_by(&response), "v1");
        assert_eq!(response.headers()[API_VERSION_HEADER], "1.0.0");
    }

    #[tokio::test]
    async fn a_retired_package_is_readdressed_to_the_backend_that_serves_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let service = tower::service_fn({
            let seen = seen.clone();
            move |request: http::Request<Body>| {
                seen.lock().unwrap().push(request.uri().path().to_string());
                async { Ok::<_, Infallible>(http::Response::new(reply_body())) }
            }
        });
        let v2 = Backend::in_process("v2", Version::new(2, 0, 0), V2, service).also_serving(V1);
        let (_handle, router) = router(vec![v2]).await;
        let response = send(&router, request("/demo.v1.Counter/Add", Some("^2"))).await;
        assert_eq!(response.headers()[API_VERSION_HEADER], "2.0.0");
        assert_eq!(*seen.lock().unwrap(), ["/demo.v2.Counter/Add"]);
        // Unmanaged packages go to the inner service, untouched.
        let response = send(&router, request("/grpc.health.v1.Health/Check", None)).await;
        assert_eq!(served_by(&response), "inner");
    }

    #[tokio::test]
    async fn a_requirement_nobody_satisfies_is_unimplemented_and_garbage_is_invalid() {
        let (_handle, router) = router(vec![backend("v1", "1.0.0", V1)]).await;
        let response = send(&router, request("/demo.v1.Counter/Add", Some("^2"))).await;
        assert_eq!(grpc_status(&response).unwrap().code(), Code::Unimplemented);
        assert_eq!(response.headers().get(API_VERSION_HEADER), None);
        let response = send(&router, request("/demo.v1.Counter/Add", Some("banana"))).await;
        let status = grpc_status(&response).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
