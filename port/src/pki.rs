//! `testbed pki DIR`: the certificates the TLS recipes use, made with rcgen: a CA, a server
//! certificate for the given names, and client certificates named by their subject CN (which
//! `serve --admin-client-name` and the port's mutual TLS match).
//!
//! Meant for trying the TLS set-ups on one machine and in tests, not as a production CA: the
//! CA key is written beside the certificates, unencrypted (readable by its owner only).

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::path::{Path, PathBuf};

/// `testbed pki`.
#[derive(Debug, Clone, clap::Args)]
pub struct PkiArgs {
    /// The folder to write into (created if missing).
    pub dir: PathBuf,
    /// A name the server certificate carries, besides localhost, 127.0.0.1 and ::1 (a DNS name
    /// or an IP address; repeatable).
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_names: Vec<String>,
    /// A client certificate to make, NAME.pem and NAME.key, with subject CN=NAME (repeatable;
    /// default: one named `client`).
    #[arg(long = "client", value_name = "NAME", value_parser = parse_client_name)]
    pub clients: Vec<String>,
    /// Days the certificates are valid for, from now.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Overwrite files already in DIR (else an existing file is an error).
    #[arg(long)]
    pub force: bool,
}

/// A client certificate's name: it becomes a file name and the CN the admin API logs.
fn parse_client_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{name:?}: a client name is 1 to 64 of letters, digits and . _ @ - (not starting with .)"
        ))
    }
}

/// What [`run`] wrote, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written(pub Vec<PathBuf>);

/// Makes the CA (`ca.pem`, `ca.key`), the server's certificate (`server.pem`, `server.key`)
/// and each client's (`NAME.pem`, `NAME.key`) in `args.dir`. Keys are written readable by
/// their owner only.
pub fn run(args: &PkiArgs) -> anyhow::Result<Written> {
    let clients = if args.clients.is_empty() {
        vec!["client".to_string()]
    } else {
        args.clients.clone()
    };
    let mut names = vec!["ca".to_string(), "server".to_string()];
    names.extend(clients.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = names.iter().find(|name| !seen.insert(name.as_str())) {
        bail!("{twice:?} is named twice (ca and server are taken by the CA and the server)");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    if !args.force {
        for name in &names {
            for ext in ["pem", "key"] {
                let path = args.dir.join(format!("{name}.{ext}"));
                if path.exists() {
                    bail!(
                        "{} exists already: pass --force to overwrite it",
                        path.display()
                    );
                }
            }
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(args.days));
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "testbed CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    (ca_params.not_before, ca_params.not_after) = (now, until);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut written = Vec::new();
    let mut write = |name: &str, cert: String, key: String| -> anyhow::Result<()> {
        written.push(write_file(
            &args.dir.join(format!("{name}.pem")),
            &cert,
            false,
        )?);
        written.push(write_file(
            &args.dir.join(format!("{name}.key")),
            &key,
            true,
        )?);
        Ok(())
    };
    write("ca", ca_cert.pem(), ca_key.serialize_pem())?;
    let ca = Issuer::new(ca_params, ca_key);
    let leaf = |common_name: &str,
                alt_names: Vec<String>,
                usage: ExtendedKeyUsagePurpose|
     -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(alt_names)
            .with_context(|| format!("a name of {common_name}'s certificate is not valid"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        (params.not_before, params.not_after) = (now, until);
        let cert = params.signed_by(&key, &ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let mut server_names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    server_names.extend(args.server_names.iter().cloned());
    let (cert, key) = leaf(
        "localhost",
        server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    write("server", cert, key)?;
    for client in &clients {
        let (cert, key) = leaf(client, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        write(client, cert, key)?;
    }
    Ok(Written(written))
}

/// Writes `text` to `path`, a key readable by its owner only (set before the first byte).
fn write_file(path: &Path, text: &str, secret: bool) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if secret {
        // An existing file (--force) keeps its mode on open: narrow it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}
