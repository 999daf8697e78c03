//! CORS for gRPC-Web (`--cors-allow-origin`, `--cors-allow-header`): which browser origins may
//! call the port, which request headers a preflight allows, and which reply headers a page may
//! read. Built on tower-http's `CorsLayer`; the port refuses a gRPC-Web call from an origin it
//! does not list, so that a page never gets an answer the browser would only hide from it.

use http::{HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers every preflight allows: what the `grpc-web` and Connect clients send, the
/// testbed's version requirement, and a bearer token.
pub const ALLOWED_REQUEST_HEADERS: [&str; 7] = [
    "x-grpc-web",
    "x-user-agent",
    "content-type",
    "x-api-version",
    "authorization",
    "grpc-timeout",
    "grpc-accept-encoding",
];

/// Reply headers a page may read: the status (a trailers-only reply carries it in the
/// headers), the version that served the call, and the retirement headers of `--deprecation`
/// and `--sunset`.
pub const EXPOSED_HEADERS: [&str; 7] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-api-version",
    "deprecation",
    "sunset",
    "link",
];

/// How long a browser may cache a preflight's answer (Chromium caps it at 2 hours).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(2 * 3600);

/// The origins allowed to call: any (`*`), or a list.
#[derive(Debug, Clone)]
pub(crate) enum Origins {
    Any,
    List(Vec<HeaderValue>),
}

impl Origins {
    /// From the `--cors-allow-origin` values: `*`, or origins such as `http://localhost:8080`
    /// (scheme, host and an optional port; no path).
    pub(crate) fn parse(values: &[String]) -> anyhow::Result<Self> {
        if values.iter().any(|value| value == "*") {
            return Ok(Self::Any);
        }
        let mut list = Vec::new();
        for value in values {
            let trimmed = value.trim_end_matches('/');
            let rest = trimmed
                .strip_prefix("http://")
                .or_else(|| trimmed.strip_prefix("https://"));
            let valid = rest.is_some_and(|host| {
                !host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace)
            });
            if !valid {
                anyhow::bail!(
                    "--cors-allow-origin {value:?} is not an origin: expected `*` or \
                     SCHEME://HOST[:PORT] such as http://localhost:8080 (no path)"
                );
            }
            list.push(HeaderValue::from_str(trimmed).map_err(|err| {
                anyhow::anyhow!("--cors-allow-origin {value:?} is not a header value: {err}")
            })?);
        }
        Ok(Self::List(list))
    }

    /// Whether a request with this `origin` header may be answered.
    pub(crate) fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.contains(origin),
        }
    }

    /// The flag to add so that `origin` is allowed, for error messages.
    pub(crate) fn hint(&self) -> &'static str {
        match self {
            Self::List(list) if list.is_empty() => {
                "no origin is allowed: start testbed serve with --cors-allow-origin ORIGIN \
                 (or `*`)"
            }
            _ => "it is not one of the --cors-allow-origin values",
        }
    }
}

/// The CORS layer for `origins`, allowing the [`ALLOWED_REQUEST_HEADERS`] and `extra` request
/// headers and exposing the [`EXPOSED_HEADERS`].
pub(crate) fn layer(origins: &Origins, extra: &[String]) -> anyhow::Result<CorsLayer> {
    let mut allowed = Vec::new();
    for name in ALLOWED_REQUEST_HEADERS
        .iter()
        .map(|name| name.to_string())
        .chain(extra.iter().map(|name| name.to_ascii_lowercase()))
    {
        allowed.push(HeaderName::from_bytes(name.as_bytes()).map_err(|err| {
            anyhow::anyhow!("--cors-allow-header {name:?} is not a header name: {err}")
        })?);
    }
    let exposed = EXPOSED_HEADERS.map(HeaderName::from_static);
    let allow_origin = match origins {
        Origins::Any => AllowOrigin::any(),
        Origins::List(list) => AllowOrigin::list(list.clone()),
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST])
        .allow_headers(allowed)
        .expose_headers(exposed)
        .max_age(PREFLIGHT_MAX_AGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_a_star_or_scheme_host_and_port() {
        assert!(matches!(
            Origins::parse(&["http://a".into(), "*".into()]).unwrap(),
            Origins::Any
        ));
        let list = Origins::parse(&["http://localhost:8080/".into()]).unwrap();
        assert!(list.allows(&HeaderValue::from_static("http://localhost:8080")));
        assert!(!list.allows(&HeaderValue::from_static("http://localhost:8081")));
        for bad in [
            "localhost:8080",
            "http://",
            "http://a/b",
            "ftp://a",
            "http://a b",
        ] {
            let err = Origins::parse(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("is not an origin"), "{bad}: {err}");
        }
        assert!(layer(&Origins::Any, &["bad name".into()]).is_err());
    }
}
