//! TLS on the port (rustls, ALPN `h2`), optionally mutual: `--tls-cert` and `--tls-key` turn
//! it on, `--tls-client-ca` also requires every client to present a certificate signed by
//! that CA. A client without one, with one from another CA, or with an expired one is refused
//! during the handshake, and so is plaintext sent to a TLS port; the server keeps serving.
//!
//! Also here: [`channel`], a tonic channel over TLS for the testbed's own clients (and
//! `https://` upstreams), and [`TestPki`], certificates made on the fly for tests and
//! benchmarks.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tonic::transport::{Channel, Endpoint};

/// The TLS flags of `testbed serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsOptions {
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS. Needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// CA certificate (PEM) that `https://` upstreams are verified against.
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
}

impl TlsOptions {
    /// The acceptor these options describe, or `None` for plaintext h2c.
    pub(crate) fn acceptor(&self) -> anyhow::Result<Option<TlsAcceptor>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let config = server_config(cert, key, self.tls_client_ca.as_deref())?;
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds a malformed PEM certificate", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// The rustls server configuration: ALPN `h2` only, client certificates required when
/// `client_ca` is given.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerConfig> {
    server_config_with(cert, key, client_ca, false)
}

/// [`server_config`], where `clients_optional` lets a client without a certificate finish the
/// handshake (one that presents a certificate must still present a good one): for a listener
/// that also accepts another credential, as the admin API accepts bearer tokens.
pub fn server_config_with(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    clients_optional: bool,
) -> anyhow::Result<ServerConfig> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version available")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("{} is not a usable CA", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider());
            let verifier = match clients_optional {
                true => verifier.allow_unauthenticated(),
                false => verifier,
            }
            .build()
            .context("cannot build the client-certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("the certificate and key do not make a usable identity")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

pub use compat::connect::ClientTls;

/// A tonic channel to the TLS port at `addr`, Nagle off as every testbed client.
pub async fn channel(
    addr: SocketAddr,
    tls: &ClientTls,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://{addr}"))?
        .tcp_nodelay(true)
        .tls_config(tls.config())?
        .connect()
        .await
}

/// A throwaway public-key infrastructure made on the fly: a CA, a server certificate for
/// `localhost` and 127.0.0.1, a client certificate from the same CA, one from another CA and
/// an expired one. All PEM.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate.
    pub ca_cert: String,
    /// The server's certificate, signed by the CA.
    pub server_cert: String,
    /// The server's key.
    pub server_key: String,
    /// A client certificate signed by the CA.
    pub client_cert: String,
    /// Its key.
    pub client_key: String,
    /// A client certificate signed by another CA.
    pub stranger_cert: String,
    /// Its key.
    pub stranger_key: String,
    /// A client certificate signed by the CA that expired in 2001.
    pub expired_cert: String,
    /// Its key.
    pub expired_key: String,
}

/// Paths of a [`TestPki`] written to a folder.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// The folder.
    pub dir: PathBuf,
    /// `ca.pem`.
    pub ca_cert: PathBuf,
    /// `server.pem`.
    pub server_cert: PathBuf,
    /// `server.key`.
    pub server_key: PathBuf,
    /// `client.pem`.
    pub client_cert: PathBuf,
    /// `client.key`.
    pub client_key: PathBuf,
    /// `stranger.pem`.
    pub stranger_cert: PathBuf,
    /// `stranger.key`.
    pub stranger_key: PathBuf,
    /// `expired.pem`.
    pub expired_cert: PathBuf,
    /// `expired.key`.
    pub expired_key: PathBuf,
}

impl TestPki {
    /// Makes every certificate (a few milliseconds).
    pub fn generate() -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let make_ca = |name: &str| -> anyhow::Result<CertificateParams> {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            Ok(params)
        };
        let ca_key = KeyPair::generate()?;
        let ca_params = make_ca("testbed test CA")?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);
        let other = Issuer::new(make_ca("some other CA")?, KeyPair::generate()?);

        let leaf = |names: Vec<String>,
                    usage: rcgen::ExtendedKeyUsagePurpose,
                    issuer: &Issuer<'_, KeyPair>,
                    expired: bool|
         -> anyhow::Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names)?;
            params
                .distinguished_name
                .push(DnType::CommonName, "testbed");
            params.extended_key_usages = vec![usage];
            if expired {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
            let cert = params.signed_by(&key, issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let server_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (server_cert, server_key) = leaf(server_names, ServerAuth, &ca, false)?;
        let client = || vec!["client.testbed".to_string()];
        let (client_cert, client_key) = leaf(client(), ClientAuth, &ca, false)?;
        let (stranger_cert, stranger_key) = leaf(client(), ClientAuth, &other, false)?;
        let (expired_cert, expired_key) = leaf(client(), ClientAuth, &ca, true)?;
        Ok(Self {
            ca_cert: ca_cert.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
            stranger_cert,
            stranger_key,
            expired_cert,
            expired_key,
        })
    }

    /// Writes every certificate and key into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<PkiFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        Ok(PkiFiles {
            dir: dir.to_path_buf(),
            ca_cert: write("ca.pem", &self.ca_cert)?,
            server_cert: write("server.pem", &self.server_cert)?,
            server_key: write("server.key", &self.server_key)?,
            client_cert: write("client.pem", &self.client_cert)?,
            client_key: write("client.key", &self.client_key)?,
            stranger_cert: write("stranger.pem", &self.stranger_cert)?,
            stranger_key: write("stranger.key", &self.stranger_key)?,
            expired_cert: write("expired.pem", &self.expired_cert)?,
            expired_key: write("expired.key", &self.expired_key)?,
        })
    }

    /// How a client trusting this CA reaches the server, with `identity` for mutual TLS.
    pub fn client(&self, identity: Option<(&str, &str)>) -> ClientTls {
        ClientTls::from_pem(&self.ca_cert, identity)
    }

    /// [`TlsOptions`] serving these files, requiring client certificates when `mutual`.
    pub fn options(files: &PkiFiles, mutual: bool) -> TlsOptions {
        TlsOptions {
            tls_cert: Some(files.server_cert.clone()),
            tls_key: Some(files.server_key.clone()),
            tls_client_ca: mutual.then(|| files.ca_cert.clone()),
            upstream_ca: None,
        }
    }
}
