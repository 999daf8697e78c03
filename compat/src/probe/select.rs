//! Which methods the probe calls: `--method` and `--skip` patterns (`pkg.Service/Method` or
//! `Service/Method`, globs allowed), `--read-only` (only methods declared free of side effects,
//! or named with `--method`) and `--samples-only` (only methods the user gave a request for).
//! A method left out is reported as skipped, with the reason, never silently dropped.

use prost_reflect::MethodDescriptor;
use prost_types::method_options::IdempotencyLevel;

/// A `--method` or `--skip` pattern: a glob (`*`, `?`, `[...]`) over `pkg.Service/Method`,
/// which also matches `Service/Method` (the method in every package).
#[derive(Debug, Clone)]
pub struct MethodPattern {
    text: String,
    glob: glob::Pattern,
}

impl PartialEq for MethodPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for MethodPattern {}

impl MethodPattern {
    /// Parses `pkg.Service/Method`, `Service/Method` or a glob of either (`Shop/Get*`,
    /// `shop.v1.*/*`).
    pub fn parse(text: &str) -> Result<MethodPattern, String> {
        let trimmed = text.trim().trim_start_matches('/');
        if trimmed
            .split_once('/')
            .is_none_or(|(s, m)| s.is_empty() || m.is_empty() || m.contains('/'))
        {
            return Err(format!(
                "expected pkg.Service/Method or Service/Method (globs allowed: Shop/Get*), got {text:?}"
            ));
        }
        let glob = glob::Pattern::new(trimmed)
            .map_err(|e| format!("{text:?} is not a valid pattern: {e}"))?;
        Ok(MethodPattern {
            text: trimmed.to_string(),
            glob,
        })
    }

    /// Whether the pattern names `m`, with or without its package.
    pub fn matches(&self, m: &MethodDescriptor) -> bool {
        let service = m.parent_service();
        self.glob
            .matches(&format!("{}/{}", service.full_name(), m.name()))
            || self
                .glob
                .matches(&format!("{}/{}", service.name(), m.name()))
    }
}

impl std::fmt::Display for MethodPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which methods to call (the default: every one).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--method`: only these (with `read_only`: these besides the read-only ones).
    pub methods: Vec<MethodPattern>,
    /// `--skip`: never these.
    pub skip: Vec<MethodPattern>,
    /// `--read-only`: only methods whose `idempotency_level` is `NO_SIDE_EFFECTS` or
    /// `IDEMPOTENT`, and those named by `methods`.
    pub read_only: bool,
    /// `--samples-only`: only the user's `--request` samples are sent, no generated requests;
    /// methods without one are skipped.
    pub samples_only: bool,
}

impl Selection {
    /// Why `m` is not called, or `None` when it is; `has_samples` says whether the user gave a
    /// request for it.
    pub(super) fn skipped(&self, m: &MethodDescriptor, has_samples: bool) -> Option<String> {
        if let Some(p) = self.skip.iter().find(|p| p.matches(m)) {
            return Some(format!("--skip {p}"));
        }
        if self.samples_only && !has_samples {
            return Some("no --request for it (--samples-only)".to_string());
        }
        let named = self.methods.iter().any(|p| p.matches(m));
        if self.read_only && !named {
            if let Err(level) = safe_to_repeat(m) {
                return Some(format!(
                    "may change state: idempotency_level {level} (--read-only; name it with --method to call it)"
                ));
            }
        } else if !self.read_only && !self.methods.is_empty() && !named {
            return Some("not named by --method".to_string());
        }
        None
    }

    /// The patterns given, as `--method P` / `--skip P`, for error messages.
    pub(super) fn patterns(&self) -> impl Iterator<Item = (&'static str, &MethodPattern)> {
        let method = self.methods.iter().map(|p| ("--method", p));
        method.chain(self.skip.iter().map(|p| ("--skip", p)))
    }
}

/// Whether `m` declares calling it again safe: `idempotency_level` `NO_SIDE_EFFECTS` or
/// `IDEMPOTENT`; else the level it declares (`IDEMPOTENCY_UNKNOWN` when none).
pub fn safe_to_repeat(m: &MethodDescriptor) -> Result<(), &'static str> {
    let level = m
        .method_descriptor_proto()
        .options
        .as_ref()
        .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
            o.idempotency_level()
        });
    match level {
        IdempotencyLevel::NoSideEffects | IdempotencyLevel::Idempotent => Ok(()),
        other => Err(other.as_str_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Vec<MethodDescriptor> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(
            dir.path().join("s.proto"),
            "syntax = \"proto3\"; package shop.v1;
             message M {}
             service Shop {
               rpc GetProduct(M) returns (M) { option idempotency_level = NO_SIDE_EFFECTS; }
               rpc PutProduct(M) returns (M) { option idempotency_level = IDEMPOTENT; }
               rpc PlaceOrder(M) returns (M);
             }",
        )
        .expect("a proto");
        let (pool, _) = crate::source::compile_dir(dir.path(), &[]).expect("it compiles");
        let shop = pool.get_service_by_name("shop.v1.Shop").expect("Shop");
        shop.methods().collect()
    }

    fn called(selection: &Selection, samples: bool) -> Vec<String> {
        shop()
            .iter()
            .filter(|m| selection.skipped(m, samples).is_none())
            .map(|m| m.name().to_string())
            .collect()
    }

    fn patterns(all: &[&str]) -> Vec<MethodPattern> {
        all.iter()
            .map(|p| MethodPattern::parse(p).expect("a pattern"))
            .collect()
    }

    #[test]
    fn methods_are_chosen_by_pattern_idempotency_and_samples() {
        let every = ["GetProduct", "PutProduct", "PlaceOrder"];
        assert_eq!(called(&Selection::default(), false), every);
        let only = Selection {
            methods: patterns(&["shop.v1.Shop/GetProduct", "Shop/Put*"]),
            ..Selection::default()
        };
        assert_eq!(called(&only, false), ["GetProduct", "PutProduct"]);
        let skip = Selection {
            skip: patterns(&["/Shop/Place*"]),
            ..Selection::default()
        };
        assert_eq!(called(&skip, false), ["GetProduct", "PutProduct"]);
        let read_only = Selection {
            read_only: true,
            ..Selection::default()
        };
        assert_eq!(called(&read_only, false), ["GetProduct", "PutProduct"]);
        let m = &shop()[2];
        assert_eq!(
            read_only.skipped(m, false).as_deref(),
            Some(
                "may change state: idempotency_level IDEMPOTENCY_UNKNOWN (--read-only; name it with --method to call it)"
            )
        );
        let opted_in = Selection {
            read_only: true,
            methods: patterns(&["Shop/PlaceOrder"]),
            ..Selection::default()
        };
        assert_eq!(called(&opted_in, false), every);
        let samples = Selection {
            samples_only: true,
            ..Selection::default()
        };
        assert_eq!(called(&samples, false), Vec::<String>::new());
        assert_eq!(called(&samples, true), every);
        for bad in ["GetProduct", "Shop/", "/Get", "a/b/c", "Shop/[Get"] {
            assert!(MethodPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
