//! `--upstream NAME=VERSION@ADDR[+PACKAGE...]`: a backend in another process, for the router.
//!
//! The API package is `increment.v{MAJOR}` of VERSION; `+increment.v1` also routes v1 requests
//! to it (checked for wire compatibility when the table is built). Example:
//! `--upstream v1=1.0.0@127.0.0.1:7001 --upstream v2=2.0.0@127.0.0.1:7002+increment.v1`.

use router::Backend;
use semver::Version;
use std::net::SocketAddr;
use std::str::FromStr;
use tonic::transport::Endpoint;

/// A parsed `--upstream` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// Backend name in the route table.
    pub name: String,
    /// The backend's version.
    pub version: Version,
    /// Where it listens.
    pub addr: SocketAddr,
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
        if name.is_empty() {
            return Err(format!("{text:?}: the name is empty; {usage}"));
        }
        Ok(Self {
            name: name.to_string(),
            version: version
                .parse()
                .map_err(|err| format!("{text:?}: version {version:?} is not semver ({err})"))?,
            addr: addr
                .parse()
                .map_err(|err| format!("{text:?}: address {addr:?} is not HOST:PORT ({err})"))?,
            also_serving: parts.map(str::to_string).collect(),
        })
    }
}

impl UpstreamSpec {
    /// The API package this upstream implements.
    pub fn api(&self) -> String {
        format!("increment.v{}", self.version.major)
    }

    /// The router backend forwarding to it. The connection is made on first use, so the router
    /// can start before its upstreams; an unreachable upstream answers `UNAVAILABLE`.
    pub fn backend(&self) -> Result<Backend, tonic::transport::Error> {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect_lazy();
        let backend = Backend::remote(&self.name, self.version.clone(), &self.api(), channel);
        Ok(self
            .also_serving
            .iter()
            .fold(backend, |backend, package| backend.also_serving(package)))
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
        assert_eq!(spec.addr, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(spec.also_serving, ["increment.v1"]);
        assert_eq!(spec.api(), "increment.v2");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (bad, says) in [
            ("v1", "expected"),
            ("v1=1.0@127.0.0.1:1", "not semver"),
            ("v1=1.0.0@localhost", "not HOST:PORT"),
            ("=1.0.0@127.0.0.1:1", "name is empty"),
        ] {
            let err = bad.parse::<UpstreamSpec>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
