//! The tower service that routes each gRPC request to a versioned backend.

use crate::GrpcPath;
use crate::inflight::CountedBody;
use crate::requirement::{API_VERSION_HEADER, parse_requirement};
use crate::table::RouteTable;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, Request, Response, Uri};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
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
/// present, and a lookup in a list already sorted newest first.
#[derive(Clone)]
pub struct VersionRouter<S> {
    table: Arc<ArcSwap<RouteTable>>,
    inner: S,
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
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call drives its own clone of the chosen service to readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let table = self.table.load();
        let path = request.uri().path();
        let Some(grpc_path) = GrpcPath::parse(path).filter(|p| table.catalog().manages(p.package))
        else {
            return Box::pin(self.inner.clone().oneshot(request));
        };
        if !table.catalog().has_method(path) {
            let status = Status::unimplemented(format!(
                "{} is not a method of {}; its methods: {}",
                path.trim_start_matches('/'),
                grpc_path.package,
                table.catalog().methods().join(", ")
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let route = parse_requirement(request.headers())
            .and_then(|requirement| table.select(&grpc_path, requirement.as_ref()));
        let route = match route {
            Ok(route) => route,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        let request = if route.backend.api == grpc_path.package {
            request.map(Body::new)
        } else {
            let new_path = format!(
                "/{}.{}/{}",
                route.backend.api, grpc_path.service, grpc_path.method
            );
            match readdress(request, &new_path) {
                Ok(request) => request,
                Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
            }
        };
        let guard = route.in_flight.enter();
        let version = route.version_header.clone();
        let service = route.backend.service.clone();
        Box::pin(async move {
            let response = service.oneshot(request).await?;
            let (mut parts, body) = response.into_parts();
            parts
                .headers
                .insert(HeaderName::from_static(API_VERSION_HEADER), version);
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
