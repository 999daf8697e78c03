//! Where a canary's figures come from: the gateway's own `/metrics` (`serve --metrics-addr`),
//! scraped at the start and the end of each interval, or a Prometheus server asked PromQL
//! queries over the interval (the same gate in front of any proxy whose metrics Prometheus
//! holds). Each HTTP reply is bounded in time and size.

use super::figures::{Counters, Figures};
use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeSet;
use std::time::Duration;

/// The largest HTTP reply read (a metrics page or a query's answer).
const MAX_REPLY_BYTES: usize = 16 << 20;

/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The PromQL queries of `--prometheus`, with `$backend` (a regex matching the backend's series),
/// `$interval` (e.g. `30s`) and `$codes` (the error codes, `Unknown|Internal|...`) filled in.
#[derive(Debug, Clone)]
pub(super) struct Queries {
    /// Calls that ended in the interval.
    pub(super) calls: String,
    /// Of those, the ones that count as errors.
    pub(super) errors: String,
    /// Their p99 handling time in seconds.
    pub(super) p99: String,
}

/// The default `--calls-query`.
pub(super) const CALLS_QUERY: &str =
    r#"sum(increase(grpc_server_handled_total{backend=~"$backend"}[$interval]))"#;
/// The default `--errors-query`.
pub(super) const ERRORS_QUERY: &str = r#"sum(increase(grpc_server_handled_total{backend=~"$backend",grpc_code=~"$codes"}[$interval]))"#;
/// The default `--p99-query`.
pub(super) const P99_QUERY: &str = r#"histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{backend=~"$backend"}[$interval])))"#;

/// Where the figures are read.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// The gateway's metrics page (`http://HOST:PORT/metrics`).
    Scrape(hyper::Uri),
    /// A Prometheus server's base URL and the queries to ask it.
    Prometheus(hyper::Uri, Queries),
}

/// What a source holds at the start of an interval.
#[derive(Debug)]
pub(super) enum Start {
    /// The two backends' counters then.
    Scraped(Box<[Counters; 2]>),
    /// Nothing: Prometheus is asked over the interval's window.
    Window,
}

/// `HOST:PORT` or `http://HOST:PORT[/PATH]` as a URI, `path` when none is given.
pub(super) fn http_uri(text: &str, path: &str) -> anyhow::Result<hyper::Uri> {
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let uri: hyper::Uri = full
        .parse()
        .with_context(|| format!("{text:?} is not HOST:PORT or an http:// URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{text:?}: only http:// is supported here");
    }
    if uri.path() == "/" && !full.ends_with('/') {
        return Ok(format!("{full}{path}").parse()?);
    }
    Ok(uri)
}

/// The body of a GET of `uri`, which must answer 200.
async fn get(uri: hyper::Uri) -> anyhow::Result<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<hyper::body::Bytes>>();
    let fetch = async {
        let reply = client.get(uri.clone()).await?;
        let status = reply.status();
        let body = Limited::new(reply.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(HTTP_TIMEOUT, fetch)
        .await
        .with_context(|| format!("GET {uri}: no reply within {HTTP_TIMEOUT:?}"))?
        .with_context(|| format!("GET {uri}"))?;
    let text = String::from_utf8(body.to_vec()).with_context(|| format!("GET {uri}: not text"))?;
    if !status.is_success() {
        bail!("GET {uri} answered {status}: {}", text.trim());
    }
    Ok(text)
}

/// The regex matching `backend`'s series: the upstream and its `NAME/PACKAGE` backends.
fn backend_regex(backend: &str) -> String {
    let mut quoted = String::new();
    for c in backend.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            // PromQL strings unescape once, RE2 once more.
            quoted.push_str("\\\\");
        }
        quoted.push(c);
    }
    format!("{quoted}(/.*)?")
}

impl Source {
    /// Reads what the interval starts from.
    pub(super) async fn start(&self, backends: [&str; 2]) -> anyhow::Result<Start> {
        match self {
            Source::Scrape(uri) => {
                let text = get(uri.clone()).await?;
                let read = |backend| Counters::read(&text, backend);
                Ok(Start::Scraped(Box::new([
                    read(backends[0])?,
                    read(backends[1])?,
                ])))
            }
            Source::Prometheus(..) => Ok(Start::Window),
        }
    }

    /// The two backends' figures over the interval `start` began, `interval` long.
    pub(super) async fn finish(
        &self,
        start: Start,
        backends: [&str; 2],
        interval: Duration,
        errors: &BTreeSet<String>,
    ) -> anyhow::Result<[Figures; 2]> {
        match (self, start) {
            (Source::Scrape(uri), Start::Scraped(before)) => {
                let text = get(uri.clone()).await?;
                let mut figures = [Figures::default(); 2];
                for (index, backend) in backends.iter().enumerate() {
                    figures[index] =
                        before[index].until(&Counters::read(&text, backend)?, errors)?;
                }
                Ok(figures)
            }
            (Source::Prometheus(base, queries), _) => {
                let codes = errors.iter().cloned().collect::<Vec<_>>().join("|");
                let window = format!("{}ms", interval.as_millis().max(1));
                let mut figures = [Figures::default(); 2];
                for (index, backend) in backends.iter().enumerate() {
                    let fill = |query: &str| {
                        query
                            .replace("$backend", &backend_regex(backend))
                            .replace("$interval", &window)
                            .replace("$codes", &codes)
                    };
                    figures[index] = Figures {
                        calls: scalar(base, &fill(&queries.calls)).await?.unwrap_or(0.0),
                        errors: scalar(base, &fill(&queries.errors)).await?.unwrap_or(0.0),
                        p99: scalar(base, &fill(&queries.p99))
                            .await?
                            .filter(|p99| p99.is_finite()),
                    };
                }
                Ok(figures)
            }
            (Source::Scrape(_), Start::Window) => bail!("a scrape interval began without a scrape"),
        }
    }
}

/// The single value of an instant query, `None` for an empty result; an error when the
/// query fails or answers several series.
async fn scalar(base: &hyper::Uri, promql: &str) -> anyhow::Result<Option<f64>> {
    let encoded = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
    let root = base.to_string();
    let uri: hyper::Uri = format!(
        "{}/api/v1/query?query={encoded}",
        root.trim_end_matches('/')
    )
    .parse()
    .context("the Prometheus query's URL")?;
    let text = get(uri).await?;
    let reply: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("Prometheus' answer to {promql} is not JSON"))?;
    if reply["status"] != "success" {
        bail!("Prometheus refused {promql}: {}", reply["error"]);
    }
    let value = |sample: &serde_json::Value| -> anyhow::Result<f64> {
        let text = sample[1].as_str().context("a sample without a value")?;
        match text {
            "NaN" => Ok(f64::NAN),
            "+Inf" => Ok(f64::INFINITY),
            other => other
                .parse()
                .with_context(|| format!("the value {other:?}")),
        }
    };
    match reply["data"]["resultType"].as_str() {
        Some("scalar") => Ok(Some(value(&reply["data"]["result"])?)),
        Some("vector") => match reply["data"]["result"].as_array().map(Vec::as_slice) {
            Some([]) | None => Ok(None),
            Some([one]) => Ok(Some(value(&one["value"])?)),
            Some(many) => bail!(
                "{promql} answered {} series; a canary query must answer one (sum it)",
                many.len()
            ),
        },
        other => bail!("{promql} answered a {other:?}; a canary query must answer one number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_urls_and_backend_names_regexes() {
        assert_eq!(
            http_uri("127.0.0.1:9100", "/metrics").unwrap().to_string(),
            "http://127.0.0.1:9100/metrics"
        );
        assert_eq!(
            http_uri("http://h:1/other", "/metrics")
                .unwrap()
                .to_string(),
            "http://h:1/other"
        );
        assert!(http_uri("https://h:1", "/metrics").is_err());
        assert_eq!(backend_regex("v2b"), "v2b(/.*)?");
        assert_eq!(backend_regex("a.b"), "a\\\\.b(/.*)?");
    }
}
