//! JSON over HTTP on the port (`testbed serve --json`): any method the port or its router serves,
//! called with protobuf JSON over HTTP/1.1 or HTTP/2, from its descriptors. A method's
//! `google.api.http` rule binds it to paths ([`template`], [`rules`]); every method is also
//! `POST /package.Service/Method` with the request as its JSON body. The call is translated to a
//! gRPC call ([`request`]) sent through everything else the port runs (the guard, the router and
//! its `x-api-version` steering, metrics), and its reply back to JSON ([`reply`]), errors as
//! `google.rpc.Status` JSON with grpc-gateway's HTTP codes ([`status`]). Which descriptors read
//! and answer a call: [`apis`].
//!
//! Requests whose content-type is gRPC's (or gRPC-Web's) go past untouched, so gRPC and gRPC-Web
//! on the same port are served as without `--json`.

mod apis;
mod body;
mod reply;
mod request;
mod rules;
mod status;
mod template;

use crate::guard::BodyBudget;
use crate::server::PortService;
use apis::{Apis, Found};
use body::BodyBounds;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use reply::{Framing, Shape};
use router::RouterHandle;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use tonic::body::Body;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// Largest JSON request body read by default (`--json-max-body-bytes`).
pub const DEFAULT_JSON_MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a JSON request body may take to arrive by default (`--json-body-timeout-ms`).
pub const DEFAULT_JSON_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// JSON over HTTP, as `testbed serve` takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct JsonOptions {
    /// Also answer JSON over HTTP/1.1 and HTTP/2 for every method served (its google.api.http
    /// bindings, and POST /package.Service/Method with a protobuf-JSON body). Off by default.
    #[arg(long)]
    pub json: bool,
    /// Largest JSON request body read, in bytes; a larger one gets HTTP 413.
    #[arg(long, default_value_t = DEFAULT_JSON_MAX_BODY_BYTES, requires = "json", value_parser = crate::server::at_least_one)]
    pub json_max_body_bytes: usize,
    /// Milliseconds a JSON request body may take to arrive whole (it is read before the call
    /// starts); a slower one gets HTTP 408.
    #[arg(long = "json-body-timeout-ms", default_value = "10000", requires = "json", value_parser = crate::server::millis)]
    pub json_body_timeout: Duration,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            json: false,
            json_max_body_bytes: DEFAULT_JSON_MAX_BODY_BYTES,
            json_body_timeout: DEFAULT_JSON_BODY_TIMEOUT,
        }
    }
}

/// `service` with JSON transcoding in front when `options` turn it on; `service` itself
/// otherwise. `descriptors` are the port's own services', `router` its router if it routes,
/// `budget` the body budgets the guard charges (request bodies read here are charged to it).
pub(crate) fn layer(
    options: &JsonOptions,
    descriptors: &[&[u8]],
    router: Option<RouterHandle>,
    max_message_bytes: usize,
    budget: Arc<BodyBudget>,
    service: PortService,
) -> anyhow::Result<PortService> {
    if !options.json {
        return Ok(service);
    }
    let json = Arc::new(Transcoder {
        apis: Apis::new(descriptors, router)?,
        body: BodyBounds {
            max_bytes: options.json_max_body_bytes,
            timeout: options.json_body_timeout,
            budget,
        },
        max_message_bytes,
    });
    tracing::info!(
        max_body_bytes = options.json_max_body_bytes,
        body_timeout_ms = options.json_body_timeout.as_millis(),
        "JSON over HTTP on: google.api.http bindings and POST /package.Service/Method"
    );
    Ok(BoxCloneSyncService::new(tower::service_fn(
        move |request: Request<Body>| {
            let (json, service) = (json.clone(), service.clone());
            async move {
                if is_grpc(&request) {
                    return service.oneshot(request).await;
                }
                Ok(json.serve(service, request).await)
            }
        },
    )))
}

/// Whether `request` is gRPC or gRPC-Web (left to the port), or a CORS preflight.
fn is_grpc(request: &Request<Body>) -> bool {
    request.method() == Method::OPTIONS
        || request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// Request headers not passed on as metadata besides HTTP/1.1's connection headers (which
/// [`crate::web::as_http2`] drops): HTTP's own, and gRPC's, which the translation sets itself
/// (a JSON caller cannot ask for a compressed reply it could not read).
const NOT_METADATA: [&str; 7] = [
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "expect",
    "grpc-encoding",
    "grpc-accept-encoding",
];

struct Transcoder {
    apis: Apis,
    body: BodyBounds,
    max_message_bytes: usize,
}

impl Transcoder {
    async fn serve(&self, inner: PortService, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let connection = parts
            .extensions
            .get::<crate::PeerInfo>()
            .and_then(crate::PeerInfo::remote_addr);
        // Read before any answer, so that an HTTP/1.1 client reads the answer, not a broken pipe.
        let read = match body::read(body, &self.body, connection).await {
            Ok(read) => read,
            Err(answer) => return answer,
        };
        let body = &read.bytes;
        // A malformed x-api-version is the router's to refuse (INVALID_ARGUMENT, as for gRPC).
        let requirement = router::parse_requirement(&parts.headers).ok().flatten();
        let path = parts.uri.path();
        let (binding, variables) = match self.apis.find(&parts.method, path, requirement.as_ref()) {
            Found::Binding(binding, variables) => (binding, variables),
            Found::WrongVerb => {
                let status = Status::unimplemented(format!(
                    "{} is not bound to HTTP method {}",
                    crate::guard::quote(path),
                    parts.method
                ));
                return status::reply(&status, Some(StatusCode::METHOD_NOT_ALLOWED));
            }
            Found::Nothing => {
                let status = Status::not_found(format!(
                    "no method is bound to {} {}: use a google.api.http binding, or POST \
                     /package.Service/Method with a JSON body",
                    parts.method,
                    crate::guard::quote(path)
                ));
                return status::reply(&status, None);
            }
        };
        let method = binding.method.clone();
        if method.is_client_streaming() {
            let status = Status::unimplemented(format!(
                "{} is a {} method, which JSON over HTTP does not call (one request body is one \
                 message); call it over gRPC",
                method.full_name(),
                if method.is_server_streaming() {
                    "bidi-streaming"
                } else {
                    "client-streaming"
                }
            ));
            return status::reply(&status, None);
        }
        if !body.is_empty() && !is_json(parts.headers.get(header::CONTENT_TYPE)) {
            let status = Status::invalid_argument(format!(
                "content-type {} is not JSON; send application/json",
                crate::guard::quote(&String::from_utf8_lossy(
                    parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .map_or(&b""[..], |v| v.as_bytes())
                ))
            ));
            return status::reply(&status, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let message = match request::message(&binding, &variables, parts.uri.query(), body) {
            Ok(message) => message,
            Err(why) => return status::reply(&Status::invalid_argument(why), None),
        };
        let framing = if !method.is_server_streaming() {
            Framing::Unary
        } else if accepts_events(&parts.headers) {
            Framing::Events
        } else {
            Framing::Lines
        };
        // The connection's own (its addresses, its client certificate's name), for the guard's
        // per-connection budget, the access log and the usage table to read as for gRPC.
        let extensions = std::mem::take(&mut parts.extensions);
        let grpc = match grpc_request(&parts, extensions, &method, &message) {
            Ok(grpc) => grpc,
            Err(status) => return status::reply(&status, None),
        };
        // The guard charges the gRPC message in the JSON body's place.
        drop((message, read));
        let response = match inner.oneshot(grpc).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let version = response
            .headers()
            .get(router::API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let shape = Shape {
            output: self.apis.reply_type(&method, version.as_deref()),
            response_body: binding.response_body.clone(),
            framing,
            max_message_bytes: self.max_message_bytes,
        };
        reply::translate(response, shape).await
    }
}

/// The gRPC call for `message` to `method`, with the JSON request's headers as its metadata
/// and its `extensions`.
fn grpc_request(
    parts: &http::request::Parts,
    extensions: http::Extensions,
    method: &prost_reflect::MethodDescriptor,
    message: &prost_reflect::DynamicMessage,
) -> Result<Request<Body>, Status> {
    use prost::Message;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let mut uri = Uri::builder().path_and_query(path.as_str());
    if let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority()) {
        uri = uri.scheme(scheme.clone()).authority(authority.clone());
    }
    let uri = uri
        .build()
        .map_err(|err| Status::internal(format!("no gRPC path for {path}: {err}")))?;
    let encoded = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + encoded.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).map_err(|_| {
        Status::resource_exhausted("the request message is over 4 GiB, which gRPC cannot frame")
    })?);
    frame.put_slice(&encoded);
    let mut request = Request::new(Body::new(http_body_util::Full::new(Bytes::from(frame))));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = extensions;
    let mut request = crate::web::as_http2(request);
    let headers = request.headers_mut();
    for name in NOT_METADATA {
        headers.remove(name);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    Ok(request)
}

/// Whether a content-type is JSON (`application/json`, any parameters).
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the client asks for Server-Sent Events.
fn accepts_events(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "text/event-stream")
        })
}
