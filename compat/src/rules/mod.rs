//! The rules engine: buf's breaking-change rules (same ids, same categories) and this crate's
//! `GRPC` rules, evaluated over two [`Api`]s with package pairing.

use crate::model::{Bump, Category, Finding};
use crate::source::Api;
use prost_reflect::{
    Cardinality, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor, MethodDescriptor, ServiceDescriptor, Syntax, Value,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use Category::{File as F, Grpc as G, Package as P, Wire as W, WireJson as WJ};

mod catalog;
mod classify;
mod enums;
mod features;
mod fields;
mod files;
mod messages;
mod packages;
mod pairing;
mod reserved;
mod services;
mod side;
mod types;

pub use catalog::{RULES, RuleInfo, rule_info};
pub(crate) use classify::classify;
use features::json_format_lost;
use files::*;
pub use pairing::Pairing;
use reserved::*;
use side::*;
use types::*;
pub(crate) use types::{kind_name, same_shape, value_text};

/// The element a finding can be tried on the wire with.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// Nothing to send: the message explains why the bytes cannot tell.
    NoWire(&'static str),
    /// A field (same number on both sides, or deleted on the new side).
    Field {
        old_msg: MessageDescriptor,
        new_msg: MessageDescriptor,
        number: u32,
    },
    /// A message compared as a whole (an RPC's request or response type).
    Types {
        old: MessageDescriptor,
        new: MessageDescriptor,
    },
    /// A method whose path is gone or whose shape changed.
    Method {
        old: MethodDescriptor,
        new: Option<MethodDescriptor>,
    },
    /// An enum number whose meaning changed or is gone.
    EnumNumber {
        old: EnumDescriptor,
        new: EnumDescriptor,
        number: i32,
    },
}

/// A rule that fired, before categories are applied.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub(crate) rule: &'static str,
    pub(crate) element: String,
    pub(crate) path: String,
    pub(crate) line: Option<u32>,
    pub(crate) message: String,
    pub(crate) subject: Subject,
    /// A type rename: whether both types are identical on the wire, and in JSON.
    pub(crate) identical_rename: Option<(bool, bool)>,
    /// For CHANGE entries: the bump.
    pub(crate) change: Option<Bump>,
}

/// Compares `old` with `new`. `pairing` maps old package names to new ones.
pub(crate) fn evaluate(old: &Api, new: &Api, pairing: &Pairing) -> Vec<Raw> {
    let o = Side::build(old, Some(pairing));
    let n = Side::build(new, None);
    let mut e = Engine {
        o: &o,
        n: &n,
        pairing,
        out: Vec::new(),
    };
    e.files();
    e.packages();
    e.messages();
    e.enums();
    e.services();
    e.other_changes();
    e.out
}

struct Engine<'x, 'a> {
    o: &'x Side<'a>,
    n: &'x Side<'a>,
    pairing: &'x Pairing,
    out: Vec<Raw>,
}

impl Engine<'_, '_> {
    /// A rule finding, without a type-rename verdict.
    fn raw(
        &self,
        rule: &'static str,
        element: impl Into<String>,
        loc: Loc,
        message: String,
        subject: Subject,
    ) -> Raw {
        Raw {
            rule,
            element: element.into(),
            path: loc.0,
            line: loc.1,
            message,
            subject,
            identical_rename: None,
            change: None,
        }
    }

    fn push(
        &mut self,
        rule: &'static str,
        element: impl Into<String>,
        loc: Loc,
        message: String,
        subject: Subject,
    ) {
        let raw = self.raw(rule, element, loc, message, subject);
        self.out.push(raw);
    }

    /// A CHANGE entry (an addition or an edit no rule covers) with its bump.
    fn change(
        &mut self,
        rule: &'static str,
        element: impl Into<String>,
        loc: Loc,
        message: String,
        bump: Bump,
    ) {
        let subject = Subject::NoWire("an addition or comment edit");
        let raw = Raw {
            change: Some(bump),
            ..self.raw(rule, element, loc, message, subject)
        };
        self.out.push(raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pairing::version_stem;

    #[test]
    fn version_stems_pair_packages() {
        assert_eq!(version_stem("increment.v1"), Some("increment"));
        assert_eq!(version_stem("a.b.v12"), Some("a.b"));
        assert_eq!(version_stem("a.b.vx"), None);
        assert_eq!(version_stem("a.b"), None);
        let p = Pairing {
            pairs: vec![("increment.v1".into(), "increment.v2".into())],
            ..Default::default()
        };
        assert_eq!(
            p.map("increment.v1.IncrementRequest"),
            "increment.v2.IncrementRequest"
        );
        assert_eq!(p.map("increment.v10.X"), "increment.v10.X");
        assert_eq!(p.map("other.X"), "other.X");
    }

    #[test]
    fn range_subtraction() {
        assert_eq!(subtract((4, 6), &[(4, 4)]), vec![(5, 6)]);
        assert_eq!(subtract((5, 9), &[]), vec![(5, 9)]);
        assert!(subtract((4, 8), &[(1, 10)]).is_empty());
        assert_eq!(
            subtract((1, 10), &[(3, 4), (7, 7)]),
            vec![(1, 2), (5, 6), (8, 10)]
        );
        assert_eq!(fmt_ranges(&[(5, 6), (9, 9)]), "[5,6], [9]");
    }

    #[test]
    fn narrowing_table() {
        use Kind::*;
        assert!(range_preserved(&Int32, &Int64));
        assert!(range_preserved(&Uint32, &Uint64));
        assert!(!range_preserved(&Int64, &Int32));
        assert!(!range_preserved(&Int32, &Uint32));
        assert!(!range_preserved(&Int64, &Bool));
        assert!(!range_preserved(&Sint64, &Sint32));
    }
}
