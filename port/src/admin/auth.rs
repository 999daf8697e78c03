//! Who may call the admin API: bearer tokens, each held by a named caller.
//!
//! Tokens come from a file (`NAME TOKEN` a line) or an environment variable (named "env"). A
//! call's `authorization: Bearer TOKEN` is compared with every token in constant time (the
//! comparison takes as long whichever byte differs), and the holder's name goes into the
//! request's extensions as a [`Caller`], so each change is logged with who made it. A call
//! without the header gets UNAUTHENTICATED, one with a token nobody holds PERMISSION_DENIED;
//! either way the call never reaches the route table.

use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// The shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// The name an admin call was authenticated as: its token's holder.
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

    /// Reads `NAME TOKEN` lines from `path` (blank lines and `#` comments skipped).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin tokens from {}", path.display()))?;
        refuse_if_open_to_others(path)?;
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

/// A token and its holder's name must be usable: a name of one word, a token long enough and
/// made of what an HTTP header carries.
fn check(name: &str, token: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        bail!("the token holder's name {name:?} must be one word");
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

/// Refuses a token file that its group or others may read or write, as ssh refuses such a key:
/// anyone who can read it can change the routes.
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

fn refuse_if_open_to_others(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the admin tokens from {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o066 != 0 {
        bail!(
            "the admin token file {} is open to its group or others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Authenticates every admin call before it reaches the service (a tonic interceptor).
#[derive(Debug, Clone)]
pub(crate) struct Authenticate(pub(crate) Tokens);

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.0.authenticate(&request) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(status) => {
                tracing::warn!(
                    peer = ?request.remote_addr(),
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
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn each_token_names_its_holder_and_others_are_told_why_not() {
        let tokens = Tokens::single("alice", "aaaaaaaaaaaaaaaa")
            .unwrap()
            .merged(Tokens::single("bob", "bbbbbbbbbbbbbbbb").unwrap())
            .unwrap();
        let who = |auth| tokens.authenticate(&request(auth));
        assert_eq!(
            who(Some("Bearer bbbbbbbbbbbbbbbb")).unwrap(),
            Caller("bob".into())
        );
        assert_eq!(
            who(Some("bearer aaaaaaaaaaaaaaaa")).unwrap(),
            Caller("alice".into())
        );
        for (auth, code) in [
            (None, tonic::Code::Unauthenticated),
            (Some("Basic aaaaaaaaaaaaaaaa"), tonic::Code::Unauthenticated),
            (Some("Bearer "), tonic::Code::Unauthenticated),
            (
                Some("Bearer aaaaaaaaaaaaaaab"),
                tonic::Code::PermissionDenied,
            ),
            (Some("Bearer aaaa"), tonic::Code::PermissionDenied),
        ] {
            assert_eq!(who(auth).unwrap_err().code(), code, "{auth:?}");
        }
        assert_eq!(format!("{tokens:?}"), r#"["alice", "bob"]"#);
    }

    #[test]
    fn weak_or_shared_tokens_are_refused() {
        assert!(Tokens::single("a", "short").is_err());
        assert!(Tokens::single("two words", "aaaaaaaaaaaaaaaa").is_err());
        assert!(Tokens::single("a", "aaaaaaaa aaaaaaaa").is_err());
        let a = Tokens::single("a", "aaaaaaaaaaaaaaaa").unwrap();
        let err = a
            .clone()
            .merged(Tokens::single("b", "aaaaaaaaaaaaaaaa").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("same admin token"), "{err}");
        assert!(a.clone().merged(a).is_err());
    }
}
