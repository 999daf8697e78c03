//! Who may call the admin API: holders of bearer tokens, of client certificates, or both.
//!
//! Tokens come from a file (`NAME TOKEN` a line) or an environment variable (named "env"). A
//! call's `authorization: Bearer TOKEN` is compared with every token in constant time (the
//! comparison takes as long whichever byte differs), and the holder's name goes into the
//! request's extensions as a [`Caller`], so each change is logged with who made it. A call
//! without the header gets UNAUTHENTICATED, one with a token nobody holds PERMISSION_DENIED;
//! either way the call never reaches the route table.
//!
//! Over TLS with `--admin-client-ca`, a client certificate the handshake verified against that
//! CA authenticates a call too ([`Access`]): its holder is the certificate's subject common
//! name (`alice`), or, for a certificate without one, its first DNS subject alternative name
//! marked as such (`dns:alice`), so that the two never pass for each other; the call is logged
//! as `cert:` and that name, so that a log reader tells it from a token holder. With
//! `--admin-client-name` only the certificates naming one of those holders are accepted
//! ([`CertificateHolders`]); another one from the CA gets PERMISSION_DENIED. A certificate
//! from another CA, or an expired one, never gets this far: the handshake refuses it. Every
//! credential a call presents must be good: a call with an accepted certificate and a token
//! nobody holds is refused too.
//!
//! Every name, a token holder's or a certificate's, is made of letters, digits and `. _ @ -`
//! only ([`safe_name`]): it goes into log lines and into `cert:NAME+HOLDER`, where a space, a
//! quote, a `+` or a `:` could pass for another field or another holder. A certificate naming
//! its holder otherwise gets PERMISSION_DENIED saying why.

use super::token_file::read_token_file;
use crate::connections::Connections;
use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest name of a token or certificate holder, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// What a holder's name may be made of, for messages.
const NAME_CHARACTERS: &str = "letters, digits and . _ @ - only";

/// The name an admin call was authenticated as: its token's holder (`alice`), its client
/// certificate's (`cert:alice`, or `cert:dns:alice` for a certificate named by its DNS name
/// only), or both (`cert:alice+bob`). Names hold no `:` or `+` ([`safe_name`]), so each form
/// reads one way only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// The tokens the admin API accepts, each with its holder's name.
#[derive(Clone, Default)]
pub struct Tokens {
    holders: Arc<[(String, String)]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: tokens never go into logs.
        f.debug_list()
            .entries(self.holders.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Tokens {
    /// One token held by `name`.
    pub fn single(name: &str, token: &str) -> anyhow::Result<Self> {
        check(name, token)?;
        Ok(Self {
            holders: Arc::from([(name.to_string(), token.to_string())]),
        })
    }

    /// Reads `NAME TOKEN` lines from `path` (blank lines and `#` comments skipped), once
    /// [`read_token_file`] found the file fit to hold them.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_token_file(path)?;
        let mut tokens = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                bail!(
                    "{} line {}: expected `NAME TOKEN` (two words)",
                    path.display(),
                    number + 1
                );
            };
            let one = Self::single(name, token)
                .with_context(|| format!("{} line {}", path.display(), number + 1))?;
            tokens = tokens.merged(one)?;
        }
        if tokens.is_empty() {
            bail!("{} holds no `NAME TOKEN` line", path.display());
        }
        Ok(tokens)
    }

    /// The token in environment variable `var`, held by "env".
    pub fn from_env(var: &str) -> anyhow::Result<Self> {
        let token = std::env::var(var)
            .ok()
            .filter(|token| !token.is_empty())
            .with_context(|| format!("--admin-token-env {var}: the variable is unset or empty"))?;
        Self::single("env", &token).with_context(|| format!("--admin-token-env {var}"))
    }

    /// These tokens and `other`'s. Two holders may not share a name or a token (the log could
    /// not tell who made a change).
    pub fn merged(self, other: Tokens) -> anyhow::Result<Self> {
        let mut holders: Vec<(String, String)> = self.holders.to_vec();
        for (name, token) in other.holders.iter() {
            if holders.iter().any(|(n, _)| n == name) {
                bail!("two admin tokens are held by {name:?}; give each holder one token");
            }
            if holders.iter().any(|(_, t)| t == token) {
                bail!("{name:?} holds the same admin token as another holder");
            }
            holders.push((name.clone(), token.clone()));
        }
        Ok(Self {
            holders: holders.into(),
        })
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// The holder of `token`, compared with every token in constant time: each side is first
    /// laid out at one fixed length (its length, then its bytes), so that neither its bytes nor
    /// its length decide how long a comparison takes.
    pub fn holder(&self, token: &str) -> Option<&str> {
        let presented = fixed_length(token.as_bytes());
        let mut found = None;
        for (name, held) in self.holders.iter() {
            let same: bool = fixed_length(held.as_bytes()).ct_eq(&presented).into();
            if same && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Who `request` is, from its `authorization: Bearer TOKEN`: UNAUTHENTICATED without one,
    /// PERMISSION_DENIED when nobody holds the token.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer TOKEN` (testbed route: --token-file FILE or \
                 TESTBED_ADMIN_TOKEN)",
            ));
        };
        if self.is_empty() {
            return Err(Status::permission_denied(
                "this admin API accepts no bearer tokens (it takes client certificates)",
            ));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|text| {
                let (scheme, token) = text.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Status::unauthenticated("`authorization` is not `Bearer TOKEN`"))?;
        self.holder(token)
            .map(|name| Caller(name.to_string()))
            .ok_or_else(|| {
                Status::permission_denied("the bearer token is not one this admin API accepts")
            })
    }
}

/// A token and its holder's name must be usable: a [`safe_name`], a token long enough and
/// made of what an HTTP header carries.
fn check(name: &str, token: &str) -> anyhow::Result<()> {
    if !safe_name(name) {
        bail!(
            "the token holder's name {name:?} must be 1 to {MAX_NAME_LEN} characters, \
             {NAME_CHARACTERS}"
        );
    }
    if token.len() < MIN_TOKEN_LEN
        || token.len() > MAX_TOKEN_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        bail!(
            "the token of {name:?} must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} visible ASCII \
             characters (e.g. `openssl rand -hex 16`)"
        );
    }
    Ok(())
}

/// The longest token held (a presented one may be longer: it then matches none).
const MAX_TOKEN_LEN: usize = 256;

/// `token` as its length (saturated at 16 bits) followed by its first [`MAX_TOKEN_LEN`] bytes,
/// zero-padded: one length for every token, so [`Tokens::holder`] compares in constant time.
fn fixed_length(token: &[u8]) -> [u8; 2 + MAX_TOKEN_LEN] {
    let mut out = [0; 2 + MAX_TOKEN_LEN];
    let len = u16::try_from(token.len()).unwrap_or(u16::MAX);
    out[..2].copy_from_slice(&len.to_be_bytes());
    let kept = token.len().min(MAX_TOKEN_LEN);
    out[2..2 + kept].copy_from_slice(&token[..kept]);
    out
}

/// The client certificates that authenticate an admin call: any the TLS handshake verified
/// against `--admin-client-ca`, or, when names are given, only those naming one of them.
#[derive(Debug, Clone, Default)]
pub struct CertificateHolders {
    names: Arc<[String]>,
}

impl CertificateHolders {
    /// Only the holders named `names` (`--admin-client-name`), each as [`certificate_name`]
    /// gives it (`alice` for a subject CN, `dns:alice` for a DNS name); none given: every
    /// holder of a certificate from the CA.
    pub fn named(names: Vec<String>) -> anyhow::Result<Self> {
        let usable = |name: &str| safe_name(name.strip_prefix(DNS_PREFIX).unwrap_or(name));
        if let Some(bad) = names.iter().find(|name| !usable(name)) {
            bail!(
                "--admin-client-name {bad:?}: expected NAME (a certificate's subject CN) or \
                 dns:NAME (the DNS name of a certificate without a CN), NAME being 1 to \
                 {MAX_NAME_LEN} characters, {NAME_CHARACTERS}"
            );
        }
        Ok(Self {
            names: names.into(),
        })
    }

    /// The holder of the client certificate `der`: PERMISSION_DENIED when it names nobody,
    /// names its holder with characters a name may not hold, or names someone not accepted.
    pub fn holder(&self, der: &[u8]) -> Result<String, Status> {
        let name = certificate_name(der).map_err(Status::permission_denied)?;
        if !self.names.is_empty() && !self.names.contains(&name) {
            return Err(Status::permission_denied(format!(
                "the client certificate of {name:?} is not one this admin API accepts (it \
                 accepts those of {})",
                self.names.join(", ")
            )));
        }
        Ok(name)
    }
}

/// What marks a holder named by a certificate's DNS name.
const DNS_PREFIX: &str = "dns:";

/// The name a client certificate (DER) gives its holder: its subject's common name (`alice`);
/// for a certificate without one, its first DNS subject alternative name, marked (`dns:alice`).
/// The error says why there is none: no such name, a name that is not a [`safe_name`] (a
/// common name that is not is not passed over for the DNS name), more than one common name,
/// or a certificate that does not parse.
pub fn certificate_name(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|err| format!("the client certificate does not parse: {err}"))?;
    let mut common_names = cert.subject().iter_common_name();
    if let Some(common_name) = common_names.next() {
        if common_names.next().is_some() {
            return Err(
                "the client certificate has more than one subject common name; the \
                        admin API takes a certificate naming one holder"
                    .to_string(),
            );
        }
        let name = common_name.as_str().map_err(|_| {
            "the client certificate's subject common name is not a text string".to_string()
        })?;
        return named_safely(name, "subject common name").map(str::to_string);
    }
    let alternative = cert
        .subject_alternative_name()
        .map_err(|err| format!("the client certificate's subject alternative names: {err}"))?;
    let dns = alternative.and_then(|alternative| {
        alternative
            .value
            .general_names
            .iter()
            .find_map(|name| match name {
                GeneralName::DNSName(dns) => Some(*dns),
                _ => None,
            })
    });
    match dns {
        Some(dns) => named_safely(dns, "DNS name").map(|dns| format!("{DNS_PREFIX}{dns}")),
        None => Err(
            "the client certificate names nobody: it has neither a subject common \
                     name nor a DNS subject alternative name"
                .to_string(),
        ),
    }
}

/// `name`, the certificate's `what`, when it is a [`safe_name`]; else why not.
fn named_safely<'a>(name: &'a str, what: &str) -> Result<&'a str, String> {
    match safe_name(name) {
        true => Ok(name),
        false => Err(format!(
            "the client certificate's {what} {name:?} is not a name the admin API takes: \
             1 to {MAX_NAME_LEN} characters, {NAME_CHARACTERS}"
        )),
    }
}

/// Whether `name` is 1 to [`MAX_NAME_LEN`] characters of `[A-Za-z0-9._@-]`: a name that goes
/// into a log line as it is and cannot be read as more than one name (`+` joins a certificate
/// and a token holder, `:` marks a kind).
pub fn safe_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// Who may call the admin API: token holders, client certificate holders, or both.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bearer tokens accepted (none when only client certificates are).
    pub tokens: Tokens,
    /// The client certificates accepted, when the listener asks for them (TLS with
    /// `--admin-client-ca`).
    pub certificates: Option<CertificateHolders>,
}

impl Access {
    /// Token holders only.
    pub fn tokens(tokens: Tokens) -> Self {
        Self {
            tokens,
            certificates: None,
        }
    }

    /// Who `request` is, from the client certificate of its connection (when certificates are
    /// accepted) and its bearer token: UNAUTHENTICATED with neither, PERMISSION_DENIED when
    /// either is not accepted.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        // Only a listener with a client CA asks for certificates, and its handshake verified
        // the chain; the first certificate is the client's own.
        let chain = self
            .certificates
            .as_ref()
            .and_then(|_| request.peer_certs());
        let certificate = chain.as_ref().and_then(|chain| chain.first());
        self.authenticate_with(certificate.map(|der| der.as_ref()), request)
    }

    /// [`authenticate`](Self::authenticate) with the connection's client certificate given.
    fn authenticate_with<T>(
        &self,
        certificate: Option<&[u8]>,
        request: &Request<T>,
    ) -> Result<Caller, Status> {
        let by_certificate = match (certificate, &self.certificates) {
            (Some(der), Some(holders)) => Some(holders.holder(der)?),
            _ => None,
        };
        let has_token = request.metadata().get("authorization").is_some();
        match (by_certificate, has_token) {
            (Some(name), false) => Ok(Caller(format!("cert:{name}"))),
            (Some(name), true) => {
                let Caller(holder) = self.tokens.authenticate(request)?;
                Ok(Caller(format!("cert:{name}+{holder}")))
            }
            (None, false) if self.certificates.is_some() => Err(Status::unauthenticated(
                "no client certificate and no `authorization: Bearer TOKEN` (testbed route: \
                 --cert FILE --key FILE, or --token-file FILE or TESTBED_ADMIN_TOKEN)",
            )),
            (None, _) => self.tokens.authenticate(request),
        }
    }
}

/// Authenticates every admin call before it reaches the service (a tonic interceptor), and
/// marks the connection of an authenticated call as such in the listener's `connections`, so
/// that it is never closed to make room for another.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate {
    pub(crate) access: Access,
    pub(crate) connections: Arc<Connections>,
}

/// The caller's address: tonic's connect info (the admin API over TLS), else the port's
/// [`PeerInfo`](crate::PeerInfo) (over plaintext, its connections are the port's accept loop's).
fn peer_of<T>(request: &Request<T>) -> Option<std::net::SocketAddr> {
    request.remote_addr().or_else(|| {
        request
            .extensions()
            .get::<crate::PeerInfo>()
            .and_then(crate::PeerInfo::remote_addr)
    })
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.access.authenticate(&request) {
            Ok(caller) => {
                if let Some(peer) = peer_of(&request) {
                    self.connections.authenticated(peer);
                }
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            // A call without credentials is anyone who can connect: at debug, so that they
            // cannot flood the log; a credential presented and refused is worth a warning.
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                tracing::debug!(
                    peer = ?peer_of(&request),
                    reason = status.message(),
                    "admin call without credentials refused; the route table is unchanged"
                );
                Err(status)
            }
            Err(status) => {
                tracing::warn!(
                    peer = ?peer_of(&request),
                    code = ?status.code(),
                    reason = status.message(),
                    "admin call refused; the route table is unchanged"
                );
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests;
