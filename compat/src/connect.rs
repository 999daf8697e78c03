//! How the testbed's command-line clients reach a server (`testbed probe`, `testbed route`):
//! plaintext HTTP/2 for `grpc://HOST:PORT` and `HOST:PORT`, TLS for `https://HOST:PORT` (the
//! server's certificate checked against `--ca`, and a client certificate from `--cert`/`--key`
//! for servers that require mutual TLS: [`TlsArgs`]). The PEM files are read and checked before
//! any connection, and a failed TLS connection is explained in words (the certificate, not the
//! network, is the problem: [`ClientTls::explain`]). It lives in this crate, the lowest one,
//! so that the probe and the admin client (in `port`) share it.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The TLS flags of a command that reaches `https://` servers.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// The CA certificate(s) (PEM) that https:// servers' certificates must be signed by;
    /// required for https:// (the system's roots are not used).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for https:// servers that require mutual TLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    /// How to reach `servers` (as given: `https://HOST:PORT` is TLS): `None` when none is
    /// `https://`, and then these flags must not be given; else the files read and checked
    /// (`--ca` required).
    pub fn client_tls<'a>(
        &self,
        servers: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Option<ClientTls>> {
        let servers: Vec<&str> = servers.into_iter().collect();
        let https = servers.iter().find(|server| is_tls(server));
        match (&self.ca, https) {
            (Some(ca), Some(_)) => {
                let identity = self.cert.as_deref().zip(self.key.as_deref());
                Ok(Some(ClientTls::load(ca, identity)?))
            }
            (None, Some(server)) => bail!(
                "{server}: an https:// server needs --ca FILE, the CA certificate (PEM) that \
                 signed its certificate (the system's roots are not used)"
            ),
            (_, None) if self.ca.is_some() || self.cert.is_some() => bail!(
                "--ca, --cert and --key are for https:// servers; {} is plaintext (write \
                 https://HOST:PORT)",
                servers.join(", ")
            ),
            (_, None) => Ok(None),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a client reaches `https://` servers: the CA that signs their certificates and, for
/// servers that require mutual TLS, a client certificate.
#[derive(Clone)]
pub struct ClientTls {
    ca: Certificate,
    /// Where the CA came from, for messages (`--ca FILE`).
    ca_source: String,
    identity: Option<Identity>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_source)
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Trusting the CA certificate(s) in `ca_pem`, presenting the client certificate chain and
    /// key `identity` (PEM) when given: for PEM held in memory, such as certificates made for
    /// a test. tonic parses the PEM when it connects.
    pub fn from_pem(ca_pem: &str, identity: Option<(&str, &str)>) -> ClientTls {
        ClientTls {
            ca: Certificate::from_pem(ca_pem),
            ca_source: "the CA given".to_string(),
            identity: identity.map(|(cert, key)| Identity::from_pem(cert, key)),
        }
    }

    /// Reads the CA certificate(s) from `ca` and the client certificate chain and key from
    /// `identity`, all PEM. A file that cannot be read or holds no usable PEM is an error that
    /// names it.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> anyhow::Result<ClientTls> {
        let ca_pem = read_pem(ca, "--ca", "CERTIFICATE")?;
        let ca_cert = Certificate::from_pem(&ca_pem);
        // tonic parses the PEM when it builds the connector: try that now, on no address, so a
        // file it cannot read is refused before any connection, naming the file. (A CA block
        // whose certificate does not parse is skipped by tonic; it shows at the handshake as a
        // server certificate not accepted with --ca.)
        check(
            ClientTlsConfig::new().ca_certificate(ca_cert.clone()),
            || format!("--ca {}: not a PEM certificate", ca.display()),
        )?;
        let identity = match identity {
            None => None,
            Some((cert, key)) => {
                let cert_pem = read_pem(cert, "--cert", "CERTIFICATE")?;
                let key_pem = read_pem(key, "--key", "PRIVATE KEY")?;
                let identity = Identity::from_pem(&cert_pem, &key_pem);
                check(ClientTlsConfig::new().identity(identity.clone()), || {
                    format!(
                        "--cert {} / --key {}: not a usable certificate and private key",
                        cert.display(),
                        key.display()
                    )
                })?;
                Some(identity)
            }
        };
        Ok(ClientTls {
            ca: ca_cert,
            ca_source: format!("--ca {}", ca.display()),
            identity,
        })
    }

    /// The tonic TLS settings: the CA, and the client certificate when there is one.
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(self.ca.clone());
        match &self.identity {
            Some(identity) => config.identity(identity.clone()),
            None => config,
        }
    }

    /// What a TLS failure at `addr` (`HOST:PORT` or `https://HOST:PORT`) means, when `error`
    /// (a connection error or a call's status, with its sources) is one; `None` when it is not
    /// about TLS.
    pub fn explain(&self, addr: &str, error: &str) -> Option<String> {
        let addr = host_port(addr);
        let lower = error.to_ascii_lowercase();
        let ca = &self.ca_source;
        if lower.contains("invalid peer certificate") || lower.contains("unknownissuer") {
            return Some(format!(
                "TLS handshake with {addr} failed: the server's certificate is not accepted with {ca} (is it signed by another CA, or issued for another name?): {error}"
            ));
        }
        let refused_ours = [
            "badcertificate",
            "unknownca",
            "certificateunknown",
            "certificateexpired",
        ]
        .iter()
        .any(|alert| lower.contains(alert));
        if lower.contains("certificaterequired") || (refused_ours && self.identity.is_none()) {
            return Some(match self.identity {
                None => format!(
                    "TLS handshake with {addr} failed: the server requires a client certificate (mutual TLS): give --cert FILE --key FILE ({error})"
                ),
                Some(_) => format!(
                    "TLS handshake with {addr} failed: the server did not accept the client certificate of --cert: {error}"
                ),
            });
        }
        if refused_ours {
            return Some(format!(
                "TLS handshake with {addr} failed: the server refused the client certificate of --cert (not signed by a CA it trusts, or expired): {error}"
            ));
        }
        if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
            return Some(format!(
                "TLS handshake with {addr} failed: the server does not speak TLS there (a plaintext server? name it {addr}, without https://): {error}"
            ));
        }
        None
    }
}

fn read_pem(path: &Path, flag: &str, label: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read the file", path.display()))?;
    if !text.contains("-----BEGIN ") || !text.contains(&format!("{label}-----")) {
        bail!(
            "{flag} {}: holds no PEM {} (a -----BEGIN {label}----- block)",
            path.display(),
            label.to_ascii_lowercase()
        );
    }
    Ok(text)
}

/// Builds a connector from `config` without connecting, so tonic parses the PEM in it.
fn check(config: ClientTlsConfig, what: impl Fn() -> String) -> anyhow::Result<()> {
    Endpoint::from_static("https://localhost")
        .tls_config(config)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{}: {}", what(), chain(&e)))
}

/// An error and its sources, `: `-joined (tonic's transport errors say little at the top).
pub fn chain(error: &dyn std::error::Error) -> String {
    with_sources(error.to_string(), error.source())
}

/// A call's status message and its sources (the cause of a `transport error`).
pub fn status_chain(status: &tonic::Status) -> String {
    with_sources(
        status.message().to_string(),
        std::error::Error::source(status),
    )
}

fn with_sources(
    mut text: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// `HOST:PORT` of a server given as `https://HOST:PORT` or `HOST:PORT`.
pub(crate) fn host_port(server: &str) -> &str {
    server.strip_prefix("https://").unwrap_or(server)
}

/// Whether `server` (`https://HOST:PORT` or `HOST:PORT`) speaks TLS.
pub(crate) fn is_tls(server: &str) -> bool {
    server.starts_with("https://")
}

/// [`connect`], an error naming the server as `what` (`OLD`, `--via`) calls it.
pub(crate) async fn reach(
    what: &str,
    server: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> anyhow::Result<Channel> {
    connect(server, tls, timeout)
        .await
        .with_context(|| format!("cannot reach {what}"))
}

/// A channel to `server`, connected now; every call on it ends after `timeout`. `https://`
/// servers need `tls`.
pub(crate) async fn connect(
    server: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> anyhow::Result<Channel> {
    if !is_tls(server) {
        return Ok(crate::reflection::connect(server, timeout).await?);
    }
    let Some(tls) = tls else {
        bail!("{server} is https:// and needs --ca FILE, the CA certificate (PEM) to trust it");
    };
    let addr = host_port(server);
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .with_context(|| format!("{server}: not an https://HOST:PORT address"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true)
        .tls_config(tls.config())
        .map_err(|e| anyhow::anyhow!("{server}: cannot set up TLS: {}", chain(&e)))?;
    let channel = endpoint.connect().await.map_err(|e| {
        let error = chain(&e);
        let text = tls.explain(addr, &error).unwrap_or_else(|| {
            format!("cannot connect to {server} ({error}); is the server running and serving TLS at {addr}?")
        });
        anyhow::anyhow!(text)
    })?;
    first_call(&channel, addr, tls).await?;
    Ok(channel)
}

/// Makes one call (a health check; any gRPC answer will do) on a new TLS channel. Under TLS 1.3
/// a server that refuses the client's certificate, or wants one, says so only after the
/// client's side of the handshake is done: the connection then closes under the first call,
/// which would otherwise show up as every probe call failing.
async fn first_call(channel: &Channel, addr: &str, tls: &ClientTls) -> anyhow::Result<()> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::from_error(e.into()))?;
        let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        grpc.unary(
            tonic::Request::new(Vec::new()),
            path,
            crate::reflection::RawCodec,
        )
        .await
    };
    let status = match tokio::time::timeout(CONNECT_TIMEOUT, call).await {
        Ok(Err(status)) => status,
        // Answered (whatever it said), or slow: the connection works as far as TLS goes.
        Ok(Ok(_)) | Err(_) => return Ok(()),
    };
    // A server's own answer carries response headers, and one tonic made from a bare HTTP
    // status (a proxy's 503) has no cause; a connection that died has no headers and a cause
    // (or was cancelled under the call).
    let died = status.metadata().is_empty()
        && (std::error::Error::source(&status).is_some()
            || status.code() == tonic::Code::Cancelled);
    if !died {
        return Ok(());
    }
    let error = status_chain(&status);
    if let Some(text) = tls.explain(addr, &error) {
        bail!(text);
    }
    match tls.identity {
        None => bail!(
            "TLS with {addr} failed: the server closed the connection right after the handshake; it probably requires a client certificate (mutual TLS): give --cert FILE --key FILE ({error})"
        ),
        Some(_) => bail!(
            "TLS with {addr} failed: the server closed the connection right after the handshake; it probably refused the client certificate of --cert (not signed by a CA it trusts, or expired) ({error})"
        ),
    }
}

/// Reads `server`'s descriptors by gRPC reflection: over plaintext as `testbed check` does, or
/// over TLS for `https://` servers (then with the TLS failure explained).
pub async fn reflect(server: &str, tls: Option<&ClientTls>) -> anyhow::Result<crate::Api> {
    reflect_with(server, tls, &crate::reflection::ReflectOptions::default()).await
}

/// [`reflect`] with metadata on the reflection calls and the `grpc.*` choice of `options`.
pub async fn reflect_with(
    server: &str,
    tls: Option<&ClientTls>,
    options: &crate::reflection::ReflectOptions,
) -> anyhow::Result<crate::Api> {
    if !is_tls(server) {
        let addr = server.strip_prefix("grpc://").unwrap_or(server);
        return Ok(crate::reflection::load(addr, options).await?);
    }
    let channel = connect(server, tls, CONNECT_TIMEOUT).await?;
    crate::reflection::load_over_with(&channel, server, crate::REFLECTION_TIMEOUT, options)
        .await
        .map_err(|e| {
            let error = e.to_string();
            match tls.and_then(|t| t.explain(host_port(server), &error)) {
                Some(text) => anyhow::anyhow!(text),
                None => e.into(),
            }
        })
}
