//! Credentials for tests: a throwaway PKI written to files ([`pki`]), admin token files
//! ([`token_file`]), and a bare TLS connection that finishes its handshake and sends nothing
//! ([`tls_handshake`]), for the TLS tests of the port and of the admin API.

use crate::common::temp_dir;
use port::tls::{PkiFiles, TestPki};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Fresh certificates, written to a temporary folder that lives as long as the returned guard.
pub(crate) fn pki() -> (TestPki, PkiFiles, tempfile::TempDir) {
    let pki = TestPki::generate().expect("certificates are made");
    let dir = temp_dir("tls");
    let files = pki.write_to(dir.path()).expect("written");
    (pki, files, dir)
}

/// A `--admin-token-file` holding `text` in `dir`, readable by its owner only (the server
/// refuses any other).
pub(crate) fn token_file(dir: &Path, text: &str) -> PathBuf {
    token_file_named(dir, "tokens", text)
}

/// [`token_file`] under the name `name`.
pub(crate) fn token_file_named(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A TLS connection to `addr` (a server certificate for `localhost` from the CA `ca_pem`),
/// ALPN h2, without a client certificate, whose handshake is done and which has sent nothing.
pub(crate) async fn tls_handshake(addr: SocketAddr, ca_pem: &str) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("the CA is PEM"))
            .expect("the CA is usable");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let name = ServerName::try_from("localhost").expect("a server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake succeeds")
}

/// `testbed route ARGS --admin ADMIN --token-file TOKEN`, run to its end.
pub(crate) async fn route_cli(admin: &str, token: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["route"];
    all.extend(args);
    all.extend(["--admin", admin, "--token-file"]);
    let token = token.to_str().expect("a UTF-8 path");
    all.push(token);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(&all)
        .output()
        .await
        .expect("testbed runs")
}
