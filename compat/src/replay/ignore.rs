//! `--ignore [METHOD:]PATH`: reply fields the replay does not compare (timestamps, generated
//! ids). PATH is a glob over the field path with indices and map keys left out
//! (`lines.quantity`, `created_at`); it matches the whole path or its end after a `.`, so
//! `created_at` also ignores `order.created_at`. METHOD (`pkg.Service/Method` or
//! `Service/Method`, globs allowed) limits the rule to one method.

use crate::probe::MethodPattern;
use prost_reflect::MethodDescriptor;

/// One `--ignore` rule.
#[derive(Debug, Clone)]
pub struct Ignore {
    text: String,
    method: Option<MethodPattern>,
    path: glob::Pattern,
}

impl Ignore {
    /// Parses `PATH` or `METHOD:PATH`.
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let (method, path) = match text.rsplit_once(':') {
            Some((method, path)) => (Some(MethodPattern::parse(method)?), path),
            None => (None, text),
        };
        let path = path.trim();
        if path.is_empty() {
            return Err(format!("expected [METHOD:]PATH, got {text:?} (no path)"));
        }
        let path = glob::Pattern::new(path)
            .map_err(|e| format!("{path:?} is not a valid pattern: {e}"))?;
        Ok(Ignore {
            text: text.to_string(),
            method,
            path,
        })
    }

    /// Whether the rule ignores `path` (indices stripped, as [`super::compare::shape`] gives
    /// it) in replies of `m`.
    pub(super) fn ignores(&self, m: &MethodDescriptor, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|p| !p.matches(m)) {
            return false;
        }
        let plain = path.replace("[]", "");
        let plain = plain.trim_start_matches('.');
        std::iter::once(plain)
            .chain(plain.match_indices('.').map(|(i, _)| &plain[i + 1..]))
            .any(|tail| self.path.matches(tail))
    }
}

impl std::fmt::Display for Ignore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
