//! `--ignore [METHOD:]PATH`: reply fields the replay does not compare (timestamps, generated
//! ids). PATH is a glob over the field path with indices and map keys left out
//! (`lines.quantity`, `created_at`); it matches the whole path or any run of its `.`-separated
//! parts, so `created_at` also ignores `order.created_at` and, a field being ignored with
//! everything inside it, `created_at.seconds` of a Timestamp. METHOD (`pkg.Service/Method` or
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
        let parts: Vec<&str> = plain.trim_start_matches('.').split('.').collect();
        (0..parts.len()).any(|start| {
            (start + 1..=parts.len()).any(|end| self.path.matches(&parts[start..end].join(".")))
        })
    }
}

impl std::fmt::Display for Ignore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::test_method::method;

    #[test]
    fn a_rule_ignores_its_field_anywhere_and_everything_inside_it() {
        let m = method();
        let rule = Ignore::parse("created_at").unwrap();
        for path in [
            "created_at",
            "order.created_at",
            "created_at.seconds",
            "[].created_at.nanos",
        ] {
            assert!(rule.ignores(&m, path), "{path}");
        }
        for path in ["created", "order.updated_at", "created_at_local.seconds"] {
            assert!(!rule.ignores(&m, path), "{path}");
        }
        let nested = Ignore::parse("lines.quantity").unwrap();
        assert!(nested.ignores(&m, "order.lines[].quantity"));
        assert!(!nested.ignores(&m, "lines.sku"));
        let other = Ignore::parse("Shop/Put:price").unwrap();
        assert!(!other.ignores(&m, "price"), "another method's rule");
        assert!(
            Ignore::parse("Shop/Get:price")
                .unwrap()
                .ignores(&m, "price")
        );
    }
}
