//! Deprecation and sunset metadata on the replies of methods being retired: `--deprecation
//! TARGET=DATE` adds the IETF `deprecation: @EPOCH` header (RFC 9745), `--sunset TARGET=DATE`
//! RFC 8594's `sunset: HTTP-DATE` (with `--sunset-link URL`, `link: <URL>; rel="sunset"`),
//! TARGET being a method (`/package.Service/Method`) or a whole service (`package.Service`).
//! Callers' libraries and gateways read these headers; `testbed route usage` shows who still
//! calls the method meanwhile.

use http::{HeaderName, HeaderValue, Request, Response};
use router::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tower::{Layer, Service};

/// `TARGET=DATE`: which method or service, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedTarget {
    /// `/package.Service/Method`, or `package.Service` for all of its methods.
    pub target: String,
    /// The date (midnight UTC of a `YYYY-MM-DD`, or an RFC 3339 time).
    pub at: SystemTime,
}

impl std::str::FromStr for DatedTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (target, date) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected TARGET=DATE, e.g. /shop.v1.Shop/GetProduct=2027-06-30")
        })?;
        let method = target.strip_prefix('/').map(|rest| rest.split_once('/'));
        let valid = match method {
            Some(Some((service, name))) => {
                service.contains('.') && !name.is_empty() && !name.contains('/')
            }
            Some(None) => false,
            None => target.contains('.') && !target.contains('/'),
        };
        if !valid {
            return Err(format!(
                "{target:?} is neither /package.Service/Method nor package.Service"
            ));
        }
        let full = if date.len() == 10 {
            format!("{date}T00:00:00Z")
        } else {
            date.to_string()
        };
        let at = humantime::parse_rfc3339(&full)
            .map_err(|err| format!("{date:?} is not YYYY-MM-DD or an RFC 3339 time: {err}"))?;
        Ok(Self {
            target: target.to_string(),
            at,
        })
    }
}

impl DatedTarget {
    fn covers(&self, path: &str) -> bool {
        if self.target.starts_with('/') {
            return path == self.target;
        }
        path.strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(self.target.as_str()))
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The flags of `testbed serve` for deprecation and sunset metadata.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SunsetOptions {
    /// TARGET=DATE (repeatable): replies of TARGET (/package.Service/Method or
    /// package.Service) carry `deprecation: @EPOCH` (RFC 9745), deprecated since DATE
    /// (YYYY-MM-DD or RFC 3339).
    #[arg(long = "deprecation", value_name = "TARGET=DATE")]
    pub deprecations: Vec<DatedTarget>,
    /// TARGET=DATE (repeatable): replies of TARGET carry `sunset: HTTP-DATE` (RFC 8594), the
    /// date it stops being served.
    #[arg(long = "sunset", value_name = "TARGET=DATE")]
    pub sunsets: Vec<DatedTarget>,
    /// With --sunset: a page about it, sent as `link: <URL>; rel="sunset"`.
    #[arg(long, value_name = "URL", requires = "sunsets")]
    pub sunset_link: Option<String>,
}

impl SunsetOptions {
    /// The layer these flags ask for, or `None` when they ask for nothing; an error for a link
    /// that cannot be a header value.
    pub fn layer(&self) -> anyhow::Result<Option<SunsetLayer>> {
        if self.deprecations.is_empty() && self.sunsets.is_empty() {
            return Ok(None);
        }
        let link = match &self.sunset_link {
            Some(url) => Some(
                HeaderValue::try_from(format!("<{url}>; rel=\"sunset\"")).map_err(|_| {
                    anyhow::anyhow!("--sunset-link {url:?} cannot be sent in a header")
                })?,
            ),
            None => None,
        };
        let mut rules = Vec::new();
        for dated in &self.deprecations {
            let epoch = dated
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let value = HeaderValue::try_from(format!("@{epoch}"))?;
            rules.push((dated.clone(), HeaderName::from_static("deprecation"), value));
        }
        for dated in &self.sunsets {
            let value = HeaderValue::try_from(httpdate::fmt_http_date(dated.at))?;
            rules.push((
                dated.clone(),
                HeaderName::from_static("sunset"),
                value.clone(),
            ));
            if let Some(link) = &link {
                rules.push((dated.clone(), http::header::LINK, link.clone()));
            }
        }
        Ok(Some(SunsetLayer {
            rules: Arc::new(rules),
        }))
    }
}

/// Adds the configured headers to the replies of the methods they name.
#[derive(Debug, Clone)]
pub struct SunsetLayer {
    rules: Arc<Vec<(DatedTarget, HeaderName, HeaderValue)>>,
}

impl<S> Layer<S> for SunsetLayer {
    type Service = Sunset<S>;

    fn layer(&self, inner: S) -> Sunset<S> {
        Sunset {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// See [`SunsetLayer`].
#[derive(Debug, Clone)]
pub struct Sunset<S> {
    inner: S,
    rules: Arc<Vec<(DatedTarget, HeaderName, HeaderValue)>>,
}

impl<S, B, R> Service<Request<B>> for Sunset<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let headers: Vec<(HeaderName, HeaderValue)> = self
            .rules
            .iter()
            .filter(|(dated, _, _)| dated.covers(path))
            .map(|(_, name, value)| (name.clone(), value.clone()))
            .collect();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            for (name, value) in headers {
                response.headers_mut().append(name, value);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_dates_are_read_or_refused() {
        let method: DatedTarget = "/shop.v1.Shop/GetProduct=2027-06-30".parse().unwrap();
        assert!(method.covers("/shop.v1.Shop/GetProduct"));
        assert!(!method.covers("/shop.v1.Shop/PlaceOrder"));
        assert_eq!(
            httpdate::fmt_http_date(method.at),
            "Wed, 30 Jun 2027 00:00:00 GMT"
        );
        let service: DatedTarget = "shop.v1.Shop=2027-06-30T12:00:00Z".parse().unwrap();
        assert!(service.covers("/shop.v1.Shop/PlaceOrder"));
        assert!(!service.covers("/shop.v1.ShopAdmin/X"));
        for bad in [
            "shop.v1.Shop",
            "/shop.v1.Shop=2027-06-30",
            "Shop=2027-06-30",
            "shop.v1.Shop=June",
        ] {
            assert!(bad.parse::<DatedTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn deprecation_is_an_epoch_and_a_sunset_an_http_date() {
        let options = SunsetOptions {
            deprecations: vec!["shop.v1.Shop=1970-01-02".parse().unwrap()],
            sunsets: vec!["shop.v1.Shop=2027-06-30".parse().unwrap()],
            sunset_link: Some("https://example.com/v1".into()),
        };
        let layer = options.layer().unwrap().expect("a layer");
        let values: Vec<(&str, &str)> = layer
            .rules
            .iter()
            .map(|(_, name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            values,
            [
                ("deprecation", "@86400"),
                ("sunset", "Wed, 30 Jun 2027 00:00:00 GMT"),
                ("link", "<https://example.com/v1>; rel=\"sunset\""),
            ]
        );
        assert!(SunsetOptions::default().layer().unwrap().is_none());
    }
}
