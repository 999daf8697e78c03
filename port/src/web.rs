//! gRPC-Web on the port (`testbed serve --grpc-web`): browsers' calls, over HTTP/1.1 or HTTP/2,
//! in `application/grpc-web(+proto)` or `application/grpc-web-text(+proto)`, translated to gRPC
//! by tonic-web's `GrpcWebLayer` in front of everything the port runs. So the port's own
//! services and, through the gateway, any upstream answer them, and every check behind
//! (the guard's limits and budgets, the router's `x-api-version` steering, metrics) treats a
//! gRPC-Web call as the gRPC call it becomes.
//!
//! In front of the translation: CORS ([`cors`]; preflights answered, a call from an origin not
//! allowed refused), and what the translation does not check itself, each answered as a
//! trailers-only gRPC-Web reply naming the problem: a method other than POST, a gRPC-Web
//! content-type tonic-web does not speak (`+json`), and, over HTTP/1.1 (where hyper has no
//! header-list limit of its own), a header block past `--max-header-list-bytes`.
//! Everything that is not gRPC-Web goes past untouched, so plain gRPC over HTTP/1.1 still gets
//! the guard's HTTP 505.

pub mod cors;
mod drain;
pub mod json;

use crate::server::PortService;
use cors::Origins;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use router::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use tonic::Status;
use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

/// gRPC-Web and its CORS, as `testbed serve` takes them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebOptions {
    /// Also answer gRPC-Web calls (browsers: application/grpc-web and grpc-web-text, over
    /// HTTP/1.1 or HTTP/2), translated to gRPC for the port's services and every upstream.
    /// Off by default: plain gRPC ports take no HTTP/1.1 calls.
    #[arg(long)]
    pub grpc_web: bool,
    /// A browser origin allowed to call over gRPC-Web (SCHEME://HOST[:PORT], or `*` for any);
    /// repeatable. Without one, calls that carry an Origin header are refused.
    #[arg(
        long = "cors-allow-origin",
        value_name = "ORIGIN",
        requires = "grpc_web"
    )]
    pub cors_allow_origins: Vec<String>,
    /// A request header (custom metadata) that preflights allow, besides x-grpc-web,
    /// x-user-agent, content-type, x-api-version, authorization, grpc-timeout and
    /// grpc-accept-encoding; repeatable.
    #[arg(long = "cors-allow-header", value_name = "NAME", requires = "grpc_web")]
    pub cors_allow_headers: Vec<String>,
}

/// The four content types tonic-web translates.
const WEB_CONTENT_TYPES: [&str; 4] = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
];

/// Whether `content_type` says gRPC-Web (any of its variants, supported or not).
pub(crate) fn is_web_content_type(content_type: &[u8]) -> bool {
    content_type.starts_with(b"application/grpc-web")
}

/// `service` with gRPC-Web in front when `options` turn it on; `service` itself otherwise.
/// `max_header_list_bytes` bounds HTTP/1.1 header blocks as the HTTP/2 setting bounds others;
/// a refused HTTP/1.1 call's unread rest is read (and dropped) up to twice `max_message_bytes`.
pub(crate) fn layer(
    options: &WebOptions,
    max_header_list_bytes: u32,
    max_message_bytes: usize,
    service: PortService,
) -> anyhow::Result<PortService> {
    if !options.grpc_web {
        return Ok(service);
    }
    let origins = Arc::new(Origins::parse(&options.cors_allow_origins)?);
    tracing::info!(
        cors_allow_origins = ?options.cors_allow_origins,
        "gRPC-Web on: application/grpc-web and grpc-web-text over HTTP/1.1 and HTTP/2"
    );
    let cors = cors::layer(&origins, &options.cors_allow_headers)?;
    let inner = service.clone();
    let as_http2 = tower::service_fn(move |request| inner.clone().oneshot(as_http2(request)));
    let translated = tonic_web::GrpcWebLayer::new().layer(as_http2);
    let checks = Arc::new(WebChecks {
        origins,
        max_header_list_bytes: max_header_list_bytes as usize,
        drain_limit: max_message_bytes.saturating_mul(2),
    });
    let checked = tower::service_fn(move |request| checks.serve(translated.clone(), request));
    let web = BoxCloneSyncService::new(cors.layer(checked));
    Ok(BoxCloneSyncService::new(tower::service_fn(
        move |request: Request<Body>| {
            let next = if is_web(&request) { &web } else { &service };
            next.clone().oneshot(request)
        },
    )))
}

/// Whether `request` goes the web way: a gRPC-Web call, or a preflight (any OPTIONS request).
fn is_web(request: &Request<Body>) -> bool {
    request.method() == Method::OPTIONS
        || request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| is_web_content_type(value.as_bytes()))
}

/// What tonic-web leaves unchecked, answered before it translates (see the module
/// documentation).
struct WebChecks {
    origins: Arc<Origins>,
    max_header_list_bytes: usize,
    /// Bytes of an HTTP/1.x request left unread by a refusal that are read before it goes out.
    drain_limit: usize,
}

impl WebChecks {
    /// Answers `request` itself when a check refuses it, else passes it to `inner`.
    fn serve<S>(
        &self,
        inner: S,
        request: Request<Body>,
    ) -> BoxFuture<Result<Response<Body>, Infallible>>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let checked = self.check(&request);
        if request.version() == Version::HTTP_2 {
            return match checked {
                Err(response) => Box::pin(std::future::ready(Ok(*response))),
                Ok(()) => Box::pin(inner.oneshot(request)),
            };
        }
        // Over HTTP/1.x a reply decided before the request was read waits for its rest.
        let (parts, body) = request.into_parts();
        let (body, rest) = drain::drainable(body);
        let request = Request::from_parts(parts, Body::new(body));
        let limit = self.drain_limit;
        let call = checked.map(|()| inner.oneshot(request));
        Box::pin(async move {
            let response = match call {
                Err(response) => *response,
                Ok(call) => call.await?,
            };
            if http_body::Body::is_end_stream(response.body()) {
                rest.drain(limit).await;
            }
            Ok(response)
        })
    }

    fn check(&self, request: &Request<Body>) -> Result<(), Box<Response<Body>>> {
        let headers = request.headers();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        if request.method() != Method::POST {
            let status = Status::internal(format!(
                "HTTP method {} is not allowed: gRPC-Web requests are POST",
                crate::guard::quote(request.method().as_str())
            ));
            return Err(Box::new(refusal(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                &content_type,
            )));
        }
        if !WEB_CONTENT_TYPES.contains(&content_type.as_str()) {
            let status = Status::invalid_argument(format!(
                "content-type {} is not a gRPC-Web type served here; expected \
                 application/grpc-web(+proto) or application/grpc-web-text(+proto)",
                crate::guard::quote(&content_type)
            ));
            return Err(Box::new(refusal(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &content_type,
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN)
            && !self.origins.allows(origin)
        {
            let status = Status::permission_denied(format!(
                "origin {} may not call this port: {}",
                crate::guard::quote(&String::from_utf8_lossy(origin.as_bytes())),
                self.origins.hint()
            ));
            return Err(Box::new(refusal(
                status,
                StatusCode::FORBIDDEN,
                &content_type,
            )));
        }
        if request.version() != Version::HTTP_2 {
            let size = header_list_size(headers);
            if size > self.max_header_list_bytes {
                let status = Status::resource_exhausted(format!(
                    "request headers of {size} bytes are over this port's limit of {} bytes \
                     (--max-header-list-bytes)",
                    self.max_header_list_bytes
                ));
                return Err(Box::new(refusal(
                    status,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    &content_type,
                )));
            }
        }
        Ok(())
    }
}

/// A header block's size as HTTP/2 counts it for `SETTINGS_MAX_HEADER_LIST_SIZE`: each field's
/// name and value plus 32 bytes.
fn header_list_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// `status` as a trailers-only gRPC-Web reply (the status in its headers, no body) with HTTP
/// status `code`, in the content type the client asked in (`+proto` added).
fn refusal(status: Status, code: StatusCode, content_type: &str) -> Response<Body> {
    let mut response = status.into_http::<Body>();
    *response.status_mut() = code;
    let reply_type = if content_type.starts_with("application/grpc-web-text") {
        "application/grpc-web-text+proto"
    } else {
        "application/grpc-web+proto"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(reply_type));
    crate::guard::cap_message(response.headers_mut());
    response
}

/// Headers of HTTP/1.1 that belong to one connection (RFC 9110 §7.6.1) and that HTTP/2 forbids:
/// a translated call passed on to an upstream must not carry them.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// A translated call as the HTTP/2 request it now is: what comes after (the guard, the router,
/// a remote upstream's connection) serves gRPC over HTTP/2 only. Headers of one HTTP/1.1
/// connection are dropped, with those its `connection` header names.
pub(crate) fn as_http2(mut request: Request<Body>) -> Request<Body> {
    if request.version() != Version::HTTP_2 {
        let headers = request.headers_mut();
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        *request.version_mut() = Version::HTTP_2;
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_list_size_counts_32_bytes_a_field() {
        let mut headers = HeaderMap::new();
        headers.insert("ab", HeaderValue::from_static("cde"));
        headers.append("ab", HeaderValue::from_static("f"));
        assert_eq!(header_list_size(&headers), 2 + 3 + 32 + 2 + 1 + 32);
    }

    #[test]
    fn refusals_are_trailers_only_in_the_clients_content_type() {
        let response = refusal(
            Status::permission_denied("no"),
            StatusCode::FORBIDDEN,
            "application/grpc-web-text",
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/grpc-web-text+proto"
        );
        assert_eq!(response.headers()["grpc-status"], "7");
        assert!(http_body::Body::is_end_stream(response.body()));
    }
}
