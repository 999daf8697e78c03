//! Test fixtures shared by the router's unit tests: a small API in two versions, described by a
//! `FileDescriptorSet` built here (the router crate has no protos of its own), in-process
//! backends that count their calls, and requests.
//!
//! The API: package `demo.v1` has service `Counter` with `Add(AddRequest) → AddReply`, where
//! `AddRequest` has field 1 `value`. Package `demo.v2` adds field 2 `step` to `AddRequest` and a
//! method `Reset`. So v2 can serve v1 requests, but v1 cannot serve v2 requests (it lacks `step`).

use crate::{ApiCatalog, Backend, BackendInfo, RouteTable, RouterHandle, VersionRouter};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};
use semver::Version;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

/// The older package.
pub(crate) const V1: &str = "demo.v1";
/// The newer package, a wire-compatible superset of [`V1`].
pub(crate) const V2: &str = "demo.v2";

/// The encoded descriptors of `demo.v1` and `demo.v2`.
pub(crate) fn descriptors() -> Vec<u8> {
    FileDescriptorSet {
        file: vec![file(V1, false), file(V2, true)],
    }
    .encode_to_vec()
}

/// A catalog managing both packages.
pub(crate) fn catalog() -> ApiCatalog {
    ApiCatalog::from_encoded(&descriptors(), &[V1, V2]).unwrap()
}

fn file(package: &str, newer: bool) -> FileDescriptorProto {
    let field = |name: &str, number: i32| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional.into()),
        r#type: Some(Type::Int64.into()),
        json_name: Some(name.into()),
        ..Default::default()
    };
    let mut request_fields = vec![field("value", 1)];
    if newer {
        request_fields.push(field("step", 2));
    }
    let method = |name: &str| MethodDescriptorProto {
        name: Some(name.into()),
        input_type: Some(format!(".{package}.AddRequest")),
        output_type: Some(format!(".{package}.AddReply")),
        ..Default::default()
    };
    let mut methods = vec![method("Add")];
    if newer {
        methods.push(method("Reset"));
    }
    FileDescriptorProto {
        name: Some(format!("{}.proto", package.replace('.', "/"))),
        package: Some(package.into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            DescriptorProto {
                name: Some("AddRequest".into()),
                field: request_fields,
                ..Default::default()
            },
            DescriptorProto {
                name: Some("AddReply".into()),
                field: vec![field("value", 1)],
                ..Default::default()
            },
        ],
        service: vec![ServiceDescriptorProto {
            name: Some("Counter".into()),
            method: methods,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Header on every reply of a [`counting`] backend naming the backend, so tests can tell who
/// answered.
pub(crate) const SERVED_BY: &str = "x-served-by";

/// An in-process backend for `api` at `version` that answers OK, naming itself in [`SERVED_BY`],
/// and counts its calls in `calls`.
pub(crate) fn counting(name: &str, version: &str, api: &str, calls: Arc<AtomicUsize>) -> Backend {
    let label: Arc<str> = name.into();
    let service = tower::service_fn(move |_request: Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let label = label.clone();
        async move {
            let mut response = Response::new(reply_body());
            response
                .headers_mut()
                .insert(SERVED_BY, label.parse().unwrap());
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("0"));
            Ok::<_, Infallible>(response)
        }
    });
    Backend::in_process(name, Version::parse(version).unwrap(), api, service)
}

/// A unary reply's body: one empty message, then the `OK` trailers. Not empty, so a reply counts
/// as in flight until its body is read or dropped (`tonic::body::Body::new` drops a body that is
/// already at its end at once, guard and all).
pub(crate) fn reply_body() -> Body {
    struct Unary(u8);
    impl http_body::Body for Unary {
        type Data = Bytes;
        type Error = tonic::Status;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
            self.0 += 1;
            Poll::Ready(match self.0 {
                1 => Some(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])))),
                2 => Some(crate::status_trailers(tonic::Status::ok(""))),
                _ => None,
            })
        }
    }
    Body::new(Unary(0))
}

/// [`counting`] without anyone reading the count.
pub(crate) fn backend(name: &str, version: &str, api: &str) -> Backend {
    counting(name, version, api, Arc::default())
}

/// A table of `backends` over [`catalog`].
pub(crate) fn table(backends: Vec<Backend>) -> RouteTable {
    RouteTable::new(catalog(), backends).unwrap()
}

/// A gRPC request to `path`, with `x-api-version: requirement` when given.
pub(crate) fn request(path: &str, requirement: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .method("POST")
        .uri(format!("http://router.test{path}"))
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    if let Some(requirement) = requirement {
        request
            .headers_mut()
            .insert(crate::API_VERSION_HEADER, requirement.parse().unwrap());
    }
    request
}

/// The inner service of the routers under test.
pub(crate) type Inner = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A router under test.
pub(crate) type TestRouter = VersionRouter<Inner>;

/// The inner service the router passes unmanaged requests to: answers with [`SERVED_BY`]
/// `inner`.
pub(crate) fn inner() -> Inner {
    BoxCloneSyncService::new(tower::service_fn(|_request: Request<Body>| async {
        let mut response = Response::new(reply_body());
        response
            .headers_mut()
            .insert(SERVED_BY, http::HeaderValue::from_static("inner"));
        Ok::<_, Infallible>(response)
    }))
}

/// A handle over a table of `backends` (without health), and a router using it.
pub(crate) async fn router(backends: Vec<Backend>) -> (RouterHandle, TestRouter) {
    let handle = RouterHandle::new(table(backends), None).await;
    let router = handle.layer().layer(inner());
    (handle, router)
}

/// Sends `request` through `router`.
pub(crate) async fn send(router: &TestRouter, request: Request<Body>) -> Response<Body> {
    let Ok(response) = router.clone().oneshot(request).await;
    response
}

/// `handle`'s current view of backend `name`.
pub(crate) fn info(handle: &RouterHandle, name: &str) -> BackendInfo {
    handle
        .table()
        .backends()
        .into_iter()
        .find(|b| b.name == name)
        .unwrap()
}

/// A port on 127.0.0.1 with no listener (bound, then let go).
pub(crate) fn dead_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A remote backend at version 1.0.0 for `api`, over a lazy channel to `addr`.
pub(crate) fn remote(name: &str, api: &str, addr: SocketAddr) -> Backend {
    let endpoint = Endpoint::try_from(format!("http://{addr}")).unwrap();
    let pool = crate::UpstreamPool::new(endpoint, crate::PoolLimits::default());
    Backend::remote(name, Version::new(1, 0, 0), api, pool)
}

/// Who answered `response`: a backend's name, `inner`, or `router` when nobody did (the router's
/// own replies carry no [`SERVED_BY`]).
pub(crate) fn served_by(response: &Response<Body>) -> &str {
    response
        .headers()
        .get(SERVED_BY)
        .map_or("router", |v| v.to_str().unwrap())
}

/// The gRPC status of a trailers-only reply: the router's own refusals and failures, or `None`
/// for a reply with a body.
pub(crate) fn grpc_status(response: &Response<Body>) -> Option<tonic::Status> {
    tonic::Status::from_header_map(response.headers())
}
