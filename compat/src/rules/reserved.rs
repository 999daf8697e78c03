//! Deletions and reservations: deleted fields and enum values (with or without their number
//! or name reserved) and reserved ranges and names given up.

use super::*;

impl Engine<'_, '_> {
    /// A deleted field or enum value: its plain deletion, and its deletion without
    /// reserving the number or the name where the new side does not reserve them.
    pub(super) fn deleted(&mut self, d: Deleted, new_reserved: &Reserved, subject: Subject) {
        let [plain, unless_number, unless_name] = d.rules;
        let what = d.what;
        let number = d.number;
        let mut findings = vec![(plain, format!("{what}."))];
        if !new_reserved.has_number(number) {
            let why = format!("{what} without reserving the number \"{number}\".");
            findings.push((unless_number, why));
        }
        if !new_reserved.names.contains(&d.name) {
            let why = format!("{what} without reserving the name \"{}\".", d.name);
            findings.push((unless_name, why));
        }
        for (rule, message) in findings {
            self.push(
                rule,
                d.element.clone(),
                d.loc.clone(),
                message,
                subject.clone(),
            );
        }
    }

    /// The reserved ranges and names of a message or enum (`on`: `message "Item"`) that the
    /// new side no longer reserves.
    pub(super) fn unreserved(
        &mut self,
        rule: &'static str,
        element: &str,
        loc: &Loc,
        on: &str,
        (old, new): (&Reserved, &Reserved),
    ) {
        let ranges = old.ranges.iter().filter_map(|&(a, b)| {
            let missing = subtract((a, b), &new.ranges);
            (!missing.is_empty()).then(|| {
                format!(
                    "Previously present reserved range \"[{a},{b}]\" on {on} is missing values: {} were removed.",
                    fmt_ranges(&missing)
                )
            })
        });
        let names = old
            .names
            .iter()
            .filter(|n| !new.names.contains(n))
            .map(|name| {
                format!("Previously present reserved name \"{name}\" on {on} was deleted.")
            });
        for message in ranges.chain(names) {
            self.push(
                rule,
                element,
                loc.clone(),
                message,
                Subject::NoWire(RESERVED),
            );
        }
    }
}

/// The reserved numbers (inclusive ranges) and names of a message or enum.
pub(super) struct Reserved<'d> {
    pub(super) ranges: Vec<(i64, i64)>,
    pub(super) names: Vec<&'d str>,
}

impl<'d> Reserved<'d> {
    pub(super) fn message(m: &'d MessageDescriptor) -> Reserved<'d> {
        Reserved {
            ranges: m
                .reserved_ranges()
                .map(|r| (r.start as i64, r.end as i64 - 1))
                .collect(),
            names: m.reserved_names().collect(),
        }
    }

    pub(super) fn enumeration(e: &'d EnumDescriptor) -> Reserved<'d> {
        Reserved {
            ranges: e
                .reserved_ranges()
                .map(|r| (*r.start() as i64, *r.end() as i64))
                .collect(),
            names: e.reserved_names().collect(),
        }
    }

    pub(super) fn has_number(&self, n: i64) -> bool {
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&n))
    }
}

/// A field or enum value that the new side no longer has.
pub(super) struct Deleted<'d> {
    /// The plain deletion, the deletion without reserving the number, and the name.
    pub(super) rules: [&'static str; 3],
    pub(super) element: String,
    pub(super) loc: Loc,
    /// "Previously present … was deleted", without the full stop.
    pub(super) what: String,
    pub(super) number: i64,
    pub(super) name: &'d str,
}

pub(super) const FIELD_DELETED: [&str; 3] = [
    "FIELD_NO_DELETE",
    "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
    "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
];
pub(super) const ENUM_VALUE_DELETED: [&str; 3] = [
    "ENUM_VALUE_NO_DELETE",
    "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
    "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
];

pub(super) const TYPE_DELETED: &str = "a deleted type has no bytes of its own; fields and methods that used it are reported on their own";
pub(super) const RESERVED: &str =
    "reservations only guard future edits; current bytes are unaffected";
pub(super) const CODEGEN_OPTION: &str =
    "a code-generation option; the bytes and the JSON form are unchanged";

/// `range` minus the union of `others` (all inclusive).
pub(super) fn subtract(range: (i64, i64), others: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut sorted = others.to_vec();
    sorted.sort();
    let mut out = Vec::new();
    let mut start = range.0;
    for (a, b) in sorted {
        if b < start || a > range.1 {
            continue;
        }
        if a > start {
            out.push((start, a - 1));
        }
        start = start.max(b + 1);
        if start > range.1 {
            break;
        }
    }
    if start <= range.1 {
        out.push((start, range.1));
    }
    out
}

pub(super) fn fmt_ranges(r: &[(i64, i64)]) -> String {
    r.iter()
        .map(|(a, b)| {
            if a == b {
                format!("[{a}]")
            } else {
                format!("[{a},{b}]")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
