//! A client of the admin API: what `testbed route` and `testbed rollout --processes` use. It
//! reaches a plaintext admin API (`HOST:PORT`) or one over TLS (`https://HOST:PORT`, trusting
//! the CA given, with a client certificate when the server takes them: compat's
//! [`ClientTls`], as `testbed probe`), and sends the bearer token, when there is one, with
//! every call.

use super::pb::routes_client::RoutesClient;
use anyhow::{Context, bail};
use compat::connect::ClientTls;
use std::net::SocketAddr;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer TOKEN` to every call, when there is a token.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        match self.0 {
            Some(_) => f.write_str("Bearer(..)"),
            None => f.write_str("Bearer(none)"),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The generated `Routes` client, every call carrying the token.
pub type AdminClient = RoutesClient<InterceptedService<Channel, Bearer>>;

/// Where the admin API is: `HOST:PORT` in plaintext (h2c), as `serve --admin-addr` serves it
/// by default, or `https://HOST:PORT` over TLS (`serve --admin-tls-cert`); HOST is then the
/// name the server's certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddress {
    /// Plaintext h2c to this address.
    Plain(SocketAddr),
    /// TLS to `host:port`.
    Https {
        /// A DNS name or an IP address (IPv6 without brackets).
        host: String,
        /// The port.
        port: u16,
    },
}

impl std::str::FromStr for AdminAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix("https://") else {
            if text.contains("://") {
                return Err(format!(
                    "{text:?}: give HOST:PORT (plaintext) or https://HOST:PORT (TLS)"
                ));
            }
            return crate::server::parse_addr(text).map(AdminAddress::Plain);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} names no port: give https://HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || ServerName::try_from(host).is_err() {
            return Err(format!(
                "{text:?}: {host:?} is neither a DNS name nor an IP address"
            ));
        }
        Ok(AdminAddress::Https {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for AdminAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddress::Plain(addr) => write!(f, "{addr}"),
            AdminAddress::Https { host, port } if host.contains(':') => {
                write!(f, "https://[{host}]:{port}")
            }
            AdminAddress::Https { host, port } => write!(f, "https://{host}:{port}"),
        }
    }
}

/// Connects to the plaintext admin API at `addr` (within 2 s) with `token`.
pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<AdminClient> {
    connect_to(&AdminAddress::Plain(addr), None, Some(token)).await
}

/// Connects to the admin API at `address` (within 2 s): over TLS with `tls` for an https
/// address (which needs it), sending `token` with every call when there is one.
pub async fn connect_to(
    address: &AdminAddress,
    tls: Option<&ClientTls>,
    token: Option<&str>,
) -> anyhow::Result<AdminClient> {
    let bearer = match token.map(str::trim) {
        None => None,
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<AsciiMetadataValue>()
                .context("the admin token must be visible ASCII characters")?,
        ),
    };
    let endpoint = match (address, tls) {
        (AdminAddress::Plain(addr), None) => Endpoint::from_shared(format!("http://{addr}"))?,
        (AdminAddress::Https { .. }, Some(tls)) => Endpoint::from_shared(address.to_string())?
            .tls_config(tls.config())
            .context("the TLS settings for the admin API are not usable")?,
        (AdminAddress::Plain(_), Some(_)) => {
            bail!("{address} is a plaintext address: TLS needs https://HOST:PORT")
        }
        (AdminAddress::Https { .. }, None) => {
            bail!("{address}: TLS needs the CA that signed the admin API's certificate")
        }
    };
    let channel = endpoint
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .map_err(|err| {
            let error = compat::connect::chain(&err);
            let why = tls
                .and_then(|tls| tls.explain(&address.to_string(), &error))
                .unwrap_or(error);
            anyhow::anyhow!("cannot connect to the admin API at {address}: {why}")
        })?;
    Ok(RoutesClient::with_interceptor(channel, Bearer(bearer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_are_plain_host_port_or_https() {
        assert_eq!(
            "127.0.0.1:7009".parse(),
            Ok(AdminAddress::Plain("127.0.0.1:7009".parse().unwrap()))
        );
        let https = |host: &str, port| AdminAddress::Https {
            host: host.into(),
            port,
        };
        assert_eq!(
            "https://localhost:7009".parse(),
            Ok(https("localhost", 7009))
        );
        assert_eq!("https://[::1]:7009/".parse(), Ok(https("::1", 7009)));
        assert_eq!(https("::1", 7009).to_string(), "https://[::1]:7009");
        for bad in [
            "https://localhost",
            "https://:7009",
            "https://localhost:http",
            "http://127.0.0.1:7009",
            "https://bad host:7009",
        ] {
            assert!(bad.parse::<AdminAddress>().is_err(), "{bad}");
        }
    }
}
