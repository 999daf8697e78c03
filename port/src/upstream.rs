//! `--upstream NAME=VERSION@ADDR[+PACKAGE...]`: a backend in another process, for the router.
//!
//! The API package is `increment.v{MAJOR}` of VERSION; `+increment.v1` also routes v1 requests
//! to it (checked for wire compatibility when the table is built). Example:
//! `--upstream v1=1.0.0@127.0.0.1:7001 --upstream v2=2.0.0@127.0.0.1:7002+increment.v1`.
//! `ADDR` may start with `https://` (TLS, the upstream's certificate checked against
//! `--upstream-ca`) or `http://` (plaintext h2c, the default).

use anyhow::Context;
use router::Backend;
use semver::Version;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// How long connecting to an upstream may take before the call fails `UNAVAILABLE`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval of the HTTP/2 pings that find an upstream that stopped answering (a stopped or
/// partitioned process keeps its connection open, so without them a call would wait forever).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may go unanswered before the upstream connection is given up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed `--upstream` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// Backend name in the route table.
    pub name: String,
    /// The backend's version.
    pub version: Version,
    /// Where it listens: `HOST:PORT`, the host a name or an address; `https://HOST:PORT` for
    /// an upstream that speaks TLS.
    pub addr: String,
    /// Older packages also routed to it.
    pub also_serving: Vec<String>,
}

impl FromStr for UpstreamSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected NAME=VERSION@HOST:PORT[+PACKAGE...], e.g. v2=2.0.0@127.0.0.1:7002+increment.v1";
        let (name, rest) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: {usage}"))?;
        let (version, rest) = rest
            .split_once('@')
            .ok_or_else(|| format!("{text:?}: {usage}"))?;
        let mut parts = rest.split('+');
        let addr = parts.next().unwrap_or_default();
        let (scheme, addr) = match (addr.strip_prefix("https://"), addr.strip_prefix("http://")) {
            (Some(addr), _) => ("https://", addr),
            (None, Some(addr)) => ("", addr),
            (None, None) => ("", addr),
        };
        if name.is_empty() {
            return Err(format!("{text:?}: the name is empty; {usage}"));
        }
        Ok(Self {
            name: name.to_string(),
            version: version
                .parse()
                .map_err(|err| format!("{text:?}: version {version:?} is not semver ({err})"))?,
            addr: scheme.to_string()
                + &host_port(addr).map_err(|why| format!("{text:?}: address {addr:?} {why}"))?,
            also_serving: parts.map(str::to_string).collect(),
        })
    }
}

impl UpstreamSpec {
    /// Whether the upstream speaks TLS (its address starts with `https://`).
    pub fn tls(&self) -> bool {
        self.addr.starts_with("https://")
    }

    /// The API package this upstream implements.
    pub fn api(&self) -> String {
        format!("increment.v{}", self.version.major)
    }

    /// The router backend forwarding to it. The connection is made on first use, so the router
    /// can start before its upstreams; an unreachable upstream answers `UNAVAILABLE`. An
    /// `https://` upstream is trusted only with a CA: see [`backend_with_ca`].
    ///
    /// [`backend_with_ca`]: Self::backend_with_ca
    pub fn backend(&self) -> Result<Backend, tonic::transport::Error> {
        self.backend_with(None)
    }

    /// [`backend`](Self::backend), an `https://` upstream's certificate checked against the
    /// CA certificate (PEM) in `ca` (`--upstream-ca`).
    pub fn backend_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Backend> {
        let ca = match ca {
            None => None,
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read the upstream CA {}", path.display()))?,
            ),
        };
        anyhow::ensure!(
            !self.tls() || ca.is_some(),
            "upstream {} is https:// and needs --upstream-ca to be trusted",
            self.name
        );
        self.backend_with(ca.map(Certificate::from_pem))
            .with_context(|| format!("bad upstream address {}", self.addr))
    }

    fn backend_with(&self, ca: Option<Certificate>) -> Result<Backend, tonic::transport::Error> {
        let url = match self.tls() {
            true => self.addr.clone(),
            false => format!("http://{}", self.addr),
        };
        let mut endpoint = Endpoint::from_shared(url)?;
        if self.tls() {
            let config = ca
                .into_iter()
                .fold(ClientTlsConfig::new(), ClientTlsConfig::ca_certificate);
            endpoint = endpoint.tls_config(config)?;
        }
        let channel = endpoint
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        let backend = Backend::remote(&self.name, self.version.clone(), &self.api(), channel);
        Ok(self
            .also_serving
            .iter()
            .fold(backend, |backend, package| backend.also_serving(package)))
    }
}

/// Checks that `addr` is `HOST:PORT` (an IPv6 host in brackets), with a port number.
fn host_port(addr: &str) -> Result<String, String> {
    let (host, port) = addr.rsplit_once(':').ok_or("is not HOST:PORT (no port)")?;
    if host.is_empty() {
        return Err("is not HOST:PORT (no host)".into());
    }
    port.parse::<u16>()
        .map_err(|err| format!("is not HOST:PORT (port {port:?}: {err})"))?;
    Ok(addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_version_address_and_extra_packages() {
        let spec: UpstreamSpec = "v2=2.1.0@127.0.0.1:7002+increment.v1".parse().unwrap();
        assert_eq!(spec.name, "v2");
        assert_eq!(spec.version, Version::new(2, 1, 0));
        assert_eq!(spec.addr, "127.0.0.1:7002");
        let named: UpstreamSpec = "v1=1.0.0@localhost:7001".parse().unwrap();
        assert_eq!(named.addr, "localhost:7001");
        assert_eq!(spec.also_serving, ["increment.v1"]);
        assert_eq!(spec.api(), "increment.v2");
        assert!(!spec.tls());
        let tls: UpstreamSpec = "v2=2.0.0@https://localhost:7002".parse().unwrap();
        assert!(tls.tls());
        assert_eq!(tls.addr, "https://localhost:7002");
        let err = tls.backend_with_ca(None).unwrap_err().to_string();
        assert!(err.contains("--upstream-ca"), "{err}");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (bad, says) in [
            ("v1", "expected"),
            ("v1=1.0@127.0.0.1:1", "not semver"),
            ("v1=1.0.0@localhost", "not HOST:PORT"),
            ("v1=1.0.0@:7001", "no host"),
            ("v1=1.0.0@localhost:http", "port"),
            ("=1.0.0@127.0.0.1:1", "name is empty"),
        ] {
            let err = bad.parse::<UpstreamSpec>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
