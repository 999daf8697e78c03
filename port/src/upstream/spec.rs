//! The `--upstream` and `--descriptors` values: their grammar ([`UPSTREAM_SPEC_HELP`]), parsing,
//! and the backend and connection an upstream spec makes.

use super::{CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::route_checks::{check_name, check_package, host_port};
use anyhow::Context;
use router::{Backend, Methods, Replicas, UpstreamPool, quote};
use semver::Version;
use std::collections::{BTreeMap, BTreeSet};
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
    /// an upstream that speaks TLS. The first of `endpoints`.
    pub addr: String,
    /// Every replica's address, `addr` first (`v2=2.0.0@HOST1:PORT,HOST2:PORT`): calls are
    /// balanced over those that answer (see `router::Replicas`).
    pub endpoints: Vec<String>,
    /// Older packages also routed to it.
    pub also_serving: Vec<String>,
    /// Of those, the ones it takes only some methods of (`+PACKAGE/*`, `+PACKAGE/Service.Method`).
    pub partial: BTreeMap<String, Methods>,
    /// Its share of the requests it can serve, in percent (`;weight=N`; see `router`'s
    /// weights); `None`: the highest version without a weight takes what weighted ones leave.
    pub weight: Option<u8>,
}

/// The upstream grammar with examples: the one description `serve --upstream`, `route add` and
/// `route replace` show in their help.
pub const UPSTREAM_SPEC_HELP: &str = "\
Upstream: NAME=VERSION@ADDRESS[,ADDRESS...][+PACKAGE...][;weight=N]
  NAME      the backend's name in `route list`, logs and replies: [A-Za-z0-9._-], at most 64 bytes
  VERSION   the semver release it runs (1.0.0, 2.1.0-rc.1); x-api-version requirements match it
  ADDRESS   HOST:PORT or http://HOST:PORT (plaintext HTTP/2), https://HOST:PORT (TLS, trusted
            with --upstream-ca); several, comma-separated, are replicas of one build: each call
            goes to the less loaded of two that answer, one that fails is skipped until its
            health checks pass again
  +PACKAGE  also route this (older) package's calls to it, allowed only when compat finds no
            breaking wire change: the older package is retired onto it
  +PACKAGE/*  only the methods of PACKAGE compat finds it can serve; the others stay with
            PACKAGE's own backends (retirement method by method)
  +PACKAGE/Service.Method  that method (repeatable), each checked by compat
  ;weight=N the percentage (0-100) of the requests it can serve that it takes; the highest
            version without a weight takes the rest (a canary: v2b=2.1.0@HOST:PORT;weight=5)
The packages it implements are read from it by gRPC reflection, or from --descriptors NAME=FILE.
Examples:
  v1=1.0.0@127.0.0.1:7001
  v2=2.0.0@https://payments-v2.internal:8443
  v2=2.0.0@10.0.0.5:7002,10.0.0.6:7002   two replicas
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
        let addresses = parts.next().unwrap_or_default();
        check_name(name).map_err(|why| format!("{}: {why}; {usage}", quote(text)))?;
        let mut endpoints: Vec<String> = Vec::new();
        for addr in addresses.split(',') {
            let (scheme, addr) = match (addr.strip_prefix("https://"), addr.strip_prefix("http://"))
            {
                (Some(addr), _) => ("https://", addr),
                (None, Some(addr)) => ("", addr),
                (None, None) => ("", addr),
            };
            let endpoint = scheme.to_string()
                + &host_port(addr)
                    .map_err(|why| format!("{}: address {} {why}", quote(text), quote(addr)))?;
            if endpoints.contains(&endpoint) {
                return Err(format!(
                    "{}: address {} is given twice",
                    quote(text),
                    quote(addr)
                ));
            }
            endpoints.push(endpoint);
        }
        let tls = |e: &String| e.starts_with("https://");
        if endpoints.iter().any(tls) && !endpoints.iter().all(tls) {
            return Err(format!(
                "{}: its replicas are all https:// or none is",
                quote(text)
            ));
        }
        let (also_serving, partial) =
            retired(parts).map_err(|why| format!("{}: {why}", quote(text)))?;
        Ok(Self {
            name: name.to_string(),
            version: version.parse().map_err(|err| {
                format!(
                    "{}: version {} is not semver ({err})",
                    quote(text),
                    quote(version)
                )
            })?,
            addr: endpoints[0].clone(),
            endpoints,
            also_serving,
            partial,
            weight,
        })
    }
}

/// The `+PACKAGE`, `+PACKAGE/*` and `+PACKAGE/Service.Method` parts: the older packages, and
/// of those the ones taken only in part.
fn retired<'a>(
    parts: impl Iterator<Item = &'a str>,
) -> Result<(Vec<String>, BTreeMap<String, Methods>), String> {
    let mut packages: Vec<String> = Vec::new();
    let mut whole: Vec<String> = Vec::new();
    let mut partial: BTreeMap<String, Methods> = BTreeMap::new();
    for part in parts {
        let (package, methods) = match part.split_once('/') {
            None => (part, None),
            Some((package, "*")) => (package, Some(Methods::Safe)),
            Some((package, method)) => {
                let (service, name) = method
                    .rsplit_once('.')
                    .filter(|(s, m)| check_package(s).is_ok() && !m.is_empty() && !s.contains('.'))
                    .ok_or_else(|| {
                        format!(
                            "+{part}: after the package comes * or Service.Method \
                             (+shop.v1/Shop.PlaceOrder)"
                        )
                    })?;
                let only = BTreeSet::from([format!("{service}/{name}")]);
                (package, Some(Methods::Only(only)))
            }
        };
        check_package(package)?;
        if !packages.iter().any(|p| p == package) {
            packages.push(package.to_string());
        }
        match (methods, partial.get_mut(package)) {
            (None, _) => whole.push(package.to_string()),
            (Some(Methods::Only(more)), Some(Methods::Only(known))) => known.extend(more),
            (Some(methods), None) => {
                partial.insert(package.to_string(), methods);
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "+{package}/* and +{package}/Service.Method do not go together"
                ));
            }
        }
    }
    if let Some(package) = whole.iter().find(|p| partial.contains_key(*p)) {
        return Err(format!(
            "+{package} (every method) and +{package}/... (some) do not go together"
        ));
    }
    Ok((packages, partial))
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

/// Replicas one upstream may list at most by default (`--max-replicas`): each has its own
/// connection pool and health checks (and its share of `--fd-reserve`).
pub const MAX_REPLICAS: usize = 16;

impl UpstreamSpec {
    /// `Err` naming the upstream and the flag when it lists more than `max` replicas.
    pub fn within_replicas(&self, max: usize) -> Result<(), String> {
        if self.endpoints.len() > max {
            return Err(format!(
                "upstream {}: {} addresses; an upstream lists at most {max} replicas \
                 (--max-replicas {max}): give fewer, or raise --max-replicas (and --fd-reserve \
                 with it)",
                self.name,
                self.endpoints.len()
            ));
        }
        Ok(())
    }

    /// Every replica's `HOST:PORT`, without the scheme.
    pub fn host_ports(&self) -> impl Iterator<Item = &str> {
        self.endpoints
            .iter()
            .map(|e| e.strip_prefix("https://").unwrap_or(e))
    }

    /// Its addresses as given: the endpoints, comma-separated.
    pub fn address(&self) -> String {
        self.endpoints.join(",")
    }

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
    pub fn backend(&self) -> anyhow::Result<Backend> {
        self.backend_with(None)
    }

    /// [`backend`](Self::backend), an `https://` upstream's certificate checked against the
    /// CA certificate (PEM) in `ca` (`--upstream-ca`).
    pub fn backend_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Backend> {
        Ok(self.backend_over(self.replicas_with_ca(ca)?))
    }

    fn backend_with(&self, ca: Option<Certificate>) -> anyhow::Result<Backend> {
        let pools = self
            .endpoints
            .iter()
            .map(|e| {
                Ok(UpstreamPool::new(
                    self.endpoint_with(e, ca.clone())?,
                    crate::pool::limits(),
                ))
            })
            .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
        Ok(self.backend_over(replicas(&self.name, pools)?))
    }

    /// The backend forwarding to this upstream over `replicas`, with its weight and packages.
    fn backend_over(&self, replicas: Replicas) -> Backend {
        let backend = Backend::replicated(&self.name, self.version.clone(), &self.api(), replicas)
            .with_weight(self.weight);
        self.also_serving
            .iter()
            .fold(backend, |backend, package| self.retire(backend, package))
    }

    /// `backend` also routed `package`'s calls: all of them, or the methods `+PACKAGE/...`
    /// names.
    pub(crate) fn retire(&self, backend: Backend, package: &str) -> Backend {
        match self.partial.get(package) {
            Some(methods) => backend.also_serving_methods(package, methods.clone()),
            None => backend.also_serving(package),
        }
    }

    /// The (lazy) channel to each replica, in order, with the CA certificate `ca` read from
    /// `path`.
    pub(super) fn channels_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Vec<Channel>> {
        Ok(self
            .endpoints_with_ca(ca)?
            .into_iter()
            .map(|e| e.connect_lazy())
            .collect())
    }

    /// The connection pools to the replicas (each within [`crate::pool::limits`]), with the CA
    /// certificate `ca` read from `path`.
    pub(super) fn replicas_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Replicas> {
        let pools = self
            .endpoints_with_ca(ca)?
            .into_iter()
            .map(|e| UpstreamPool::new(e, crate::pool::limits()))
            .collect();
        replicas(&self.name, pools)
    }

    fn endpoints_with_ca(&self, ca: Option<&Path>) -> anyhow::Result<Vec<Endpoint>> {
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
        let ca = ca.map(Certificate::from_pem);
        self.endpoints
            .iter()
            .map(|e| {
                self.endpoint_with(e, ca.clone())
                    .with_context(|| format!("bad upstream address {e}"))
            })
            .collect()
    }

    /// Where replica `endpoint` is and how to connect to it; every `connect_lazy` of it is a
    /// connection of its own.
    fn endpoint_with(
        &self,
        endpoint: &str,
        ca: Option<Certificate>,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let url = match self.tls() {
            true => endpoint.to_string(),
            false => format!("http://{endpoint}"),
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

/// `pools` as the replicas of upstream `name`.
fn replicas(name: &str, pools: Vec<UpstreamPool>) -> anyhow::Result<Replicas> {
    Replicas::new(pools).with_context(|| format!("upstream {name} has no address"))
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
        assert_eq!(canary.endpoints, ["127.0.0.1:7003"]);
    }

    #[test]
    fn some_methods_of_an_older_package_are_retired_with_a_slash() {
        let spec: UpstreamSpec =
            "v2=2.0.0@127.0.0.1:1+shop.v1/Shop.PlaceOrder+shop.v1/Shop.WatchOrder+shop.v0/*"
                .parse()
                .unwrap();
        assert_eq!(spec.also_serving, ["shop.v1", "shop.v0"]);
        let only = BTreeSet::from(["Shop/PlaceOrder".to_string(), "Shop/WatchOrder".to_string()]);
        assert_eq!(spec.partial.get("shop.v1"), Some(&Methods::Only(only)));
        assert_eq!(spec.partial.get("shop.v0"), Some(&Methods::Safe));
    }

    #[tokio::test]
    async fn replicas_are_comma_separated_and_bounded() {
        let spec: UpstreamSpec = "v2=2.0.0@127.0.0.1:7002,localhost:7003+increment.v1;weight=5"
            .parse()
            .unwrap();
        assert_eq!(spec.endpoints, ["127.0.0.1:7002", "localhost:7003"]);
        assert_eq!(spec.addr, "127.0.0.1:7002");
        assert_eq!(spec.address(), "127.0.0.1:7002,localhost:7003");
        assert_eq!(spec.also_serving, ["increment.v1"]);
        assert_eq!(spec.weight, Some(5));
        let backend = spec.backend().unwrap();
        assert_eq!(backend.replicas().map(|r| r.pools().len()), Some(2));
        let tls: UpstreamSpec = "v2=2.0.0@https://a:1,https://b:1".parse().unwrap();
        assert_eq!(tls.host_ports().collect::<Vec<_>>(), ["a:1", "b:1"]);
        let many = (0..=MAX_REPLICAS)
            .map(|i| format!("127.0.0.1:{}", 7000 + i))
            .collect::<Vec<_>>()
            .join(",");
        let spec = format!("v2=2.0.0@{many}").parse::<UpstreamSpec>().unwrap();
        assert_eq!(spec.within_replicas(MAX_REPLICAS + 1), Ok(()));
        let err = spec.within_replicas(MAX_REPLICAS).unwrap_err();
        assert!(err.contains("upstream v2: 17 addresses"), "{err}");
        assert!(err.contains("--max-replicas 16"), "{err}");
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
            ("v2=2.0.0@127.0.0.1:1,127.0.0.1:1", "given twice"),
            ("v2=2.0.0@127.0.0.1:1,", "address \"\" is not HOST:PORT"),
            ("v2=2.0.0@https://a:1,b:2", "all https:// or none"),
            ("v2=2.0.0@127.0.0.1:1+shop.v1/Get", "* or Service.Method"),
            ("v2=2.0.0@127.0.0.1:1+shop.v1/a.b.C", "* or Service.Method"),
            (
                "v2=2.0.0@127.0.0.1:1+shop.v1+shop.v1/*",
                "do not go together",
            ),
            (
                "v2=2.0.0@127.0.0.1:1+shop.v1/*+shop.v1/Shop.Get",
                "do not go together",
            ),
        ] {
            let err = bad.parse::<UpstreamSpec>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
