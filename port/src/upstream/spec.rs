//! The `--upstream` and `--descriptors` values: their grammar ([`UPSTREAM_SPEC_HELP`]), parsing,
//! and the backend and connection an upstream spec makes.

use super::{CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::route_checks::{check_name, check_package, host_port};
use anyhow::Context;
use router::{Backend, UpstreamPool, quote};
use semver::Version;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

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
    /// Its share of the requests it can serve, in percent (`;weight=N`; see `router`'s
    /// weights); `None`: the highest version without a weight takes what weighted ones leave.
    pub weight: Option<u8>,
}

/// The upstream grammar with examples: the one description `serve --upstream`, `route add` and
/// `route replace` show in their help.
pub const UPSTREAM_SPEC_HELP: &str = "\
Upstream: NAME=VERSION@ADDRESS[+PACKAGE...][;weight=N]
  NAME      the backend's name in `route list`, logs and replies: [A-Za-z0-9._-], at most 64 bytes
  VERSION   the semver release it runs (1.0.0, 2.1.0-rc.1); x-api-version requirements match it
  ADDRESS   HOST:PORT or http://HOST:PORT (plaintext HTTP/2), https://HOST:PORT (TLS, trusted
            with --upstream-ca)
  +PACKAGE  also route this (older) package's calls to it, allowed only when compat finds no
            breaking wire change: the older package is retired onto it
  ;weight=N the percentage (0-100) of the requests it can serve that it takes; the highest
            version without a weight takes the rest (a canary: v2b=2.1.0@HOST:PORT;weight=5)
The packages it implements are read from it by gRPC reflection, or from --descriptors NAME=FILE.
Examples:
  v1=1.0.0@127.0.0.1:7001
  v2=2.0.0@https://payments-v2.internal:8443
  v2=2.0.0@127.0.0.1:7002+increment.v1   v2 also serves v1's calls (v1 retired)";

impl FromStr for UpstreamSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected NAME=VERSION@HOST:PORT[+PACKAGE...][;weight=N], e.g. v2=2.0.0@127.0.0.1:7002+increment.v1";
        let (spec, options) = text.split_once(';').unwrap_or((text, ""));
        let weight = parse_options(options).map_err(|why| format!("{}: {why}", quote(text)))?;
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("{}: {usage}", quote(text)))?;
        let (version, rest) = rest
            .split_once('@')
            .ok_or_else(|| format!("{}: {usage}", quote(text)))?;
        let mut parts = rest.split('+');
        let addr = parts.next().unwrap_or_default();
        let (scheme, addr) = match (addr.strip_prefix("https://"), addr.strip_prefix("http://")) {
            (Some(addr), _) => ("https://", addr),
            (None, Some(addr)) => ("", addr),
            (None, None) => ("", addr),
        };
        check_name(name).map_err(|why| format!("{}: {why}; {usage}", quote(text)))?;
        let also_serving: Vec<String> = parts.map(str::to_string).collect();
        for package in &also_serving {
            check_package(package).map_err(|why| format!("{}: {why}", quote(text)))?;
        }
        Ok(Self {
            name: name.to_string(),
            version: version.parse().map_err(|err| {
                format!(
                    "{}: version {} is not semver ({err})",
                    quote(text),
                    quote(version)
                )
            })?,
            addr: scheme.to_string()
                + &host_port(addr)
                    .map_err(|why| format!("{}: address {} {why}", quote(text), quote(addr)))?,
            also_serving,
            weight,
        })
    }
}

/// The `;key=value` options after an upstream's address: only `weight` so far.
fn parse_options(options: &str) -> Result<Option<u8>, String> {
    let mut weight = None;
    for option in options.split(';').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("weight", value)) => {
                let parsed = value
                    .parse::<u8>()
                    .ok()
                    .filter(|w| *w <= router::MAX_WEIGHT)
                    .ok_or_else(|| {
                        format!(
                            "weight {} is not a whole number from 0 to {}",
                            quote(value),
                            router::MAX_WEIGHT
                        )
                    })?;
                if weight.replace(parsed).is_some() {
                    return Err("weight is given twice".to_string());
                }
            }
            _ => {
                return Err(format!(
                    "unknown option {} after the address (known: ;weight=N)",
                    quote(option)
                ));
            }
        }
    }
    Ok(weight)
}

impl UpstreamSpec {
    /// Whether the upstream speaks TLS (its address starts with `https://`).
    pub fn tls(&self) -> bool {
        self.addr.starts_with("https://")
    }

    /// `HOST:PORT` of its address, without the scheme.
    pub fn host_port(&self) -> &str {
        self.addr.strip_prefix("https://").unwrap_or(&self.addr)
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
        Ok(self.backend_over(self.pool_with_ca(ca)?))
    }

    fn backend_with(&self, ca: Option<Certificate>) -> Result<Backend, tonic::transport::Error> {
        let pool = UpstreamPool::new(self.endpoint_with(ca)?, crate::pool::limits());
        Ok(self.backend_over(pool))
    }

    /// The backend forwarding to this upstream over `pool`, with its weight and packages.
    fn backend_over(&self, pool: UpstreamPool) -> Backend {
        let backend = Backend::remote(&self.name, self.version.clone(), &self.api(), pool)
            .with_weight(self.weight);
        self.also_serving
            .iter()
            .fold(backend, |backend, package| backend.also_serving(package))
    }

    /// The (lazy) channel to the upstream, with the CA certificate `ca` read from `path`.
    pub(super) fn channel_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Channel> {
        Ok(self.endpoint_with_ca(ca)?.connect_lazy())
    }

    /// The connection pool to the upstream (within [`crate::pool::limits`]), with the CA
    /// certificate `ca` read from `path`.
    pub(super) fn pool_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<UpstreamPool> {
        Ok(UpstreamPool::new(
            self.endpoint_with_ca(ca)?,
            crate::pool::limits(),
        ))
    }

    fn endpoint_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Endpoint> {
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
        self.endpoint_with(ca.map(Certificate::from_pem))
            .with_context(|| format!("bad upstream address {}", self.addr))
    }

    /// Where the upstream is and how to connect to it; every `connect_lazy` of it is a
    /// connection of its own.
    fn endpoint_with(&self, ca: Option<Certificate>) -> Result<Endpoint, tonic::transport::Error> {
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
        Ok(endpoint
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true))
    }
}

/// A parsed `--descriptors NAME=FILE` value: the descriptors of upstream NAME, read from FILE
/// (a binary `FileDescriptorSet`, as `protoc --include_imports -o` or `buf build -o` write, or
/// a directory of `.proto` files) instead of by reflection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorsSpec {
    /// The upstream's name.
    pub name: String,
    /// Where its descriptors are.
    pub path: PathBuf,
}

impl FromStr for DescriptorsSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('=') {
            Some((name, path)) if check_name(name).is_ok() && !path.is_empty() => Ok(Self {
                name: name.to_string(),
                path: PathBuf::from(path),
            }),
            _ => Err(format!(
                "{}: expected NAME=FILE, NAME an upstream's name, e.g. v2=shop-v2.binpb (a \
                 FileDescriptorSet or a directory of .proto files)",
                quote(text)
            )),
        }
    }
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
        assert_eq!(spec.weight, None);
        let canary: UpstreamSpec = "v2b=2.1.0@127.0.0.1:7003+increment.v1;weight=5"
            .parse()
            .unwrap();
        assert_eq!(canary.weight, Some(5));
        assert_eq!(canary.also_serving, ["increment.v1"]);
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
            ("v1=1.0.0@127.0.0.1:1;weight=101", "from 0 to 100"),
            ("v1=1.0.0@127.0.0.1:1;weight=-1", "from 0 to 100"),
            ("v1=1.0.0@127.0.0.1:1;weight=5;weight=6", "twice"),
            ("v1=1.0.0@127.0.0.1:1;canary", "unknown option"),
        ] {
            let err = bad.parse::<UpstreamSpec>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
