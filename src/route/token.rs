//! Which bearer token `testbed route` sends: the one in `--token-file` (just the token, or
//! `serve --admin-token-file`'s `NAME TOKEN` lines, one picked by `--token-name`), else the
//! `TESTBED_ADMIN_TOKEN` variable; none beside a client certificate.

use super::{TOKEN_ENV, Target};
use anyhow::{Context, bail};

/// TOKEN of the `NAME TOKEN` line named `name` (the only line when `name` is not given), as
/// `serve --admin-token-file` writes them (blank lines and `#` comments skipped).
fn token_in_file(text: &str, name: Option<&str>) -> anyhow::Result<String> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect())
        .collect();
    if let ([only], None) = (lines.as_slice(), name)
        && only.len() == 1
    {
        return Ok(only[0].to_string());
    }
    let named: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|words| match words.as_slice() {
            [name, token] => Some((*name, *token)),
            _ => None,
        })
        .collect();
    if named.len() != lines.len() {
        bail!("expected just the token, or `NAME TOKEN` lines as serve --admin-token-file reads");
    }
    match (named.as_slice(), name) {
        ([(_, token)], None) => Ok(token.to_string()),
        (_, Some(wanted)) => named
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, token)| token.to_string())
            .with_context(|| format!("no `NAME TOKEN` line is named {wanted:?}")),
        (_, None) => {
            let names: Vec<&str> = named.iter().map(|(name, _)| *name).collect();
            bail!(
                "it holds {} `NAME TOKEN` lines ({}): pick one with --token-name NAME",
                names.len(),
                names.join(", ")
            )
        }
    }
}

/// The token from `--token-file`, else from `TESTBED_ADMIN_TOKEN`; none is needed when a
/// client certificate is given.
pub(super) fn token(target: &Target) -> anyhow::Result<Option<String>> {
    let token = match (&target.token_file, &target.tls.cert) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token from {}", path.display()))?;
            token_in_file(&text, target.token_name.as_deref())
                .with_context(|| format!("no token to send in {}", path.display()))?
        }
        // A client certificate stands in for the token, and the variable is not sent beside it:
        // an admin API that takes certificates only refuses any token.
        (None, Some(_)) => return Ok(None),
        (None, None) => std::env::var(TOKEN_ENV).unwrap_or_default(),
    };
    match token.trim() {
        "" => bail!(
            "no admin token: give --token-file FILE (holding just the token) or set \
             {TOKEN_ENV} (or, for an https admin API that takes client certificates, --cert \
             FILE --key FILE)"
        ),
        token => Ok(Some(token.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::token_in_file;

    #[test]
    fn a_token_file_holds_the_token_alone_or_the_servers_name_token_lines() {
        let token = "0123456789abcdef0123";
        assert_eq!(token_in_file(&format!("{token}\n"), None).unwrap(), token);
        let one = format!("# operators\nalice {token}\n");
        assert_eq!(token_in_file(&one, None).unwrap(), token);
        let two = format!("alice {token}\nbob fedcba98765432100000\n");
        let err = token_in_file(&two, None).unwrap_err().to_string();
        assert!(
            err.contains("alice, bob") && err.contains("--token-name"),
            "{err}"
        );
        assert_eq!(
            token_in_file(&two, Some("bob")).unwrap(),
            "fedcba98765432100000"
        );
        let err = token_in_file(&two, Some("carol")).unwrap_err().to_string();
        assert!(err.contains("\"carol\""), "{err}");
        let err = token_in_file("a b c\n", None).unwrap_err().to_string();
        assert!(err.contains("NAME TOKEN"), "{err}");
    }
}
