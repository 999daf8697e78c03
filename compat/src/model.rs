//! The data a check produces: categories, semver bumps, findings and their wire confirmations.

use serde::Serialize;
use std::fmt;

/// A rule category. The first four are buf's; `Grpc` is this crate's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// buf's WIRE: binary wire compatibility.
    #[serde(rename = "WIRE")]
    Wire,
    /// buf's WIRE_JSON: binary and JSON wire compatibility.
    #[serde(rename = "WIRE_JSON")]
    WireJson,
    /// buf's PACKAGE: source compatibility per package.
    #[serde(rename = "PACKAGE")]
    Package,
    /// buf's FILE: source compatibility per file (the strictest).
    #[serde(rename = "FILE")]
    File,
    /// What a live gRPC client notices that buf's WIRE does not report.
    #[serde(rename = "GRPC")]
    Grpc,
    /// Not a rule category: additions, comment edits and findings of categories that were not
    /// selected. These never break; they only raise the semver verdict to minor or patch.
    #[serde(rename = "CHANGE")]
    Change,
}

impl Category {
    /// The selectable categories, in the order findings prefer when a rule is in several.
    pub const SELECTABLE: [Category; 5] = [
        Category::Wire,
        Category::WireJson,
        Category::Package,
        Category::File,
        Category::Grpc,
    ];

    /// The name as buf spells it (`WIRE_JSON`), or `GRPC` / `CHANGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Wire => "WIRE",
            Category::WireJson => "WIRE_JSON",
            Category::Package => "PACKAGE",
            Category::File => "FILE",
            Category::Grpc => "GRPC",
            Category::Change => "CHANGE",
        }
    }

    /// Parses a category name, case-insensitively.
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s.to_ascii_uppercase().as_str() {
            "WIRE" => Category::Wire,
            "WIRE_JSON" => Category::WireJson,
            "PACKAGE" => Category::Package,
            "FILE" => Category::File,
            "GRPC" => Category::Grpc,
            _ => return None,
        })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The semantic-version bump a change requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    /// Nothing a consumer can observe changed (comments, options outside the selected rules).
    Patch,
    /// Something was added; everything old still works.
    Minor,
    /// Something that worked before breaks.
    Major,
}

impl Bump {
    /// `major`, `minor` or `patch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        }
    }

    /// The next version after `current` that this bump allows. Below 1.0.0 a breaking change
    /// bumps the minor number and an addition the patch number (Cargo's convention).
    pub fn next_version(self, current: &semver::Version) -> semver::Version {
        let mut v = semver::Version::new(current.major, current.minor, current.patch);
        let effective = if v.major == 0 {
            match self {
                Bump::Major => Bump::Minor,
                _ => Bump::Patch,
            }
        } else {
            self
        };
        match effective {
            Bump::Major => {
                v.major += 1;
                v.minor = 0;
                v.patch = 0;
            }
            Bump::Minor => {
                v.minor += 1;
                v.patch = 0;
            }
            Bump::Patch => v.patch += 1,
        }
        v
    }
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sending real bytes showed about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Bytes written under one version read differently (or fail) under the other.
    Confirmed,
    /// Binary bytes read identically; the protobuf JSON form does not.
    JsonOnly,
    /// Every sample read identically in both directions, binary and JSON.
    Refuted,
}

impl Outcome {
    /// `confirmed`, `JSON only` or `refuted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Confirmed => "confirmed",
            Outcome::JsonOnly => "JSON only",
            Outcome::Refuted => "refuted",
        }
    }
}

/// The result of trying a finding on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// Confirmed, JSON only or refuted.
    pub outcome: Outcome,
    /// The observed effect, e.g. `old→new: 1099511627783 read as 7`.
    pub effect: String,
    /// What produced the evidence: `prost` (prost-reflect dynamic messages encoded and decoded
    /// with prost), `prost-reflect JSON`, `live server` or `descriptors` (a path lookup only).
    pub runtime: String,
}

/// One rule that fired, or one non-breaking change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// buf's rule id (`FIELD_WIRE_COMPATIBLE_TYPE`), this crate's `GRPC_*` id, or a `CHANGE`
    /// id such as `FIELD_ADDED`.
    pub rule: String,
    /// The category the finding was reported under.
    pub category: Category,
    /// The element, by full name (`pkg.Message.field`, `pkg.Service.Method`, a file path).
    pub element: String,
    /// The file the finding points at (the NEW side's file, as buf does; empty when none).
    pub path: String,
    /// The 1-based line, when source info exists.
    pub line: Option<u32>,
    /// The 1-based column of the declaration that starts on `line`, as buf reports it
    /// (filled in by `testbed check` from the NEW side's source info; see [`crate::columns`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// What changed.
    pub message: String,
    /// Whether the finding breaks under the selected categories.
    pub breaking: bool,
    /// The version bump this finding requires.
    pub semver: Bump,
    /// The wire evidence, when the finding has been tried.
    pub confirmation: Option<Confirmation>,
    /// Set when a breaking finding was accepted (`--accept` file or a
    /// `testbed:breaking:ignore` comment): it is still listed, but no longer breaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
}

/// Why a breaking finding is accepted, and by what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acceptance {
    /// The reason the user gave.
    pub reason: String,
    /// Where the acceptance came from: the accept file's path, or `FILE:LINE` of the comment.
    pub source: String,
    /// The last day the acceptance holds (`YYYY-MM-DD`), when the entry has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// The result of comparing two API versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every finding, breaking first, then by element.
    pub findings: Vec<Finding>,
    /// The largest bump any finding requires; `None` when the versions are identical.
    pub verdict: Option<Bump>,
    /// Old package → new package pairs that were compared as one package.
    pub pairs: Vec<(String, String)>,
    /// Warnings about the check's own inputs: expired or stale accept entries.
    pub warnings: Vec<String>,
}

impl Report {
    /// The breaking findings.
    pub fn breaking(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.breaking)
    }

    /// Whether any finding breaks.
    pub fn is_breaking(&self) -> bool {
        self.findings.iter().any(|f| f.breaking)
    }

    /// The exit code buf uses: 100 with breaking findings, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.is_breaking() { 100 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_versions() {
        let v = semver::Version::new(1, 4, 0);
        assert_eq!(Bump::Major.next_version(&v).to_string(), "2.0.0");
        assert_eq!(Bump::Minor.next_version(&v).to_string(), "1.5.0");
        assert_eq!(Bump::Patch.next_version(&v).to_string(), "1.4.1");
        let zero = semver::Version::new(0, 3, 2);
        assert_eq!(Bump::Major.next_version(&zero).to_string(), "0.4.0");
        assert_eq!(Bump::Minor.next_version(&zero).to_string(), "0.3.3");
        assert!(Bump::Major > Bump::Minor && Bump::Minor > Bump::Patch);
    }
}
