//! The behaviours protobuf editions make features of, for one element on one side: the
//! resolved feature of an editions file (see [`crate::editions`]), or what proto2 / proto3
//! mean for a file of those syntaxes, so that a proto3 → editions migration that keeps every
//! behaviour compares equal.

use super::*;
use crate::editions::FeatureSet;

impl Side<'_> {
    /// The resolved features of an editions element, by full name.
    fn features(&self, full_name: &str) -> Option<&FeatureSet> {
        self.editions.get(full_name)
    }

    /// `proto2`, `proto3` or `editions`.
    pub(super) fn syntax(&self, f: &FileDescriptor) -> &'static str {
        // buf compares the syntax only: 2023 → 2024 is no FILE_SAME_SYNTAX finding.
        if self.editions.files.contains_key(f.name()) {
            "editions"
        } else {
            syntax_name(f)
        }
    }

    /// `map`, `repeated`, `required`, or `optional with explicit|implicit presence`.
    pub(super) fn cardinality(&self, f: &FieldDescriptor) -> &'static str {
        let Some(fs) = self.features(f.full_name()) else {
            return cardinality(f);
        };
        // Message fields and oneof members always have presence, whatever the feature says.
        let always = matches!(f.kind(), Kind::Message(_)) || f.containing_oneof().is_some();
        if f.is_map() {
            "map"
        } else if f.is_list() {
            "repeated"
        } else if fs.field_presence == Some(3) {
            "required"
        } else if fs.field_presence == Some(2) && !always {
            "optional with implicit presence"
        } else {
            "optional with explicit presence"
        }
    }

    /// Whether a string field's UTF-8 is checked by parsers: `VERIFY` or `NONE`.
    pub(super) fn utf8(&self, f: &FieldDescriptor) -> &'static str {
        let verify = match self.features(f.full_name()) {
            Some(fs) => fs.utf8_validation != Some(3),
            None => f.parent_file().syntax() == Syntax::Proto3,
        };
        if verify { "VERIFY" } else { "NONE" }
    }

    /// Whether Java checks a string field's UTF-8 (`java_string_check_utf8`, the Java
    /// feature `utf8_validation`, else the core UTF-8 validation): `VERIFY` or `NONE`.
    pub(super) fn java_utf8(&self, f: &FieldDescriptor) -> &'static str {
        let file = f.parent_file();
        let java_option = file
            .file_descriptor_proto()
            .options
            .as_ref()
            .is_some_and(|o| o.java_string_check_utf8());
        let java_feature = self
            .features(f.full_name())
            .and_then(|fs| fs.java)
            .is_some_and(|j| j.utf8_validation == Some(2));
        if java_option || java_feature || self.utf8(f) == "VERIFY" {
            "VERIFY"
        } else {
            "NONE"
        }
    }

    /// The C++ representation of a string or bytes field: `STRING`, `CORD` or `VIEW` (the
    /// `ctype` option, or the C++ feature `string_type`).
    pub(super) fn cpp_string_type(&self, f: &FieldDescriptor) -> &'static str {
        if let Some(t) = self
            .features(f.full_name())
            .and_then(|fs| fs.cpp)
            .and_then(|c| c.string_type)
        {
            return match t {
                1 => "VIEW",
                2 => "CORD",
                _ => "STRING",
            };
        }
        let ctype = f
            .field_descriptor_proto()
            .options
            .as_ref()
            .map(|o| o.ctype())
            .unwrap_or_default();
        match ctype {
            prost_types::field_options::CType::String => "STRING",
            prost_types::field_options::CType::Cord => "CORD",
            prost_types::field_options::CType::StringPiece => "VIEW",
        }
    }

    /// Whether a field is required in an editions file (`LEGACY_REQUIRED`).
    pub(super) fn legacy_required(&self, f: &FieldDescriptor) -> bool {
        self.features(f.full_name())
            .is_some_and(|fs| fs.field_presence == Some(3))
    }

    /// Where `path` is declared in `file`, or `fallback` when it has no location of its own
    /// (an editions feature set on the element, where buf points, or its absence).
    pub(super) fn loc_exact(&self, file: &FileDescriptor, path: &[i32], fallback: Loc) -> Loc {
        match self
            .src
            .files
            .get(file.name())
            .and_then(|(_, m)| m.get(path))
        {
            Some((line, _)) => (file.name().to_string(), Some(*line)),
            None => fallback,
        }
    }

    /// Whether unknown numbers are kept in the field (an open enum) or moved to unknown
    /// fields (a closed one).
    pub(super) fn enum_open(&self, e: &EnumDescriptor) -> bool {
        match self.features(e.full_name()) {
            Some(fs) => fs.enum_type != Some(2),
            None => e.parent_file().syntax() == Syntax::Proto3,
        }
    }

    /// The JSON format of a message or enum: `ALLOW` or `LEGACY_BEST_EFFORT`.
    pub(super) fn json_format(&self, full_name: &str, file: &FileDescriptor) -> &'static str {
        match self.features(full_name) {
            Some(fs) if fs.json_format == Some(2) => "LEGACY_BEST_EFFORT",
            Some(_) => "ALLOW",
            None => json_format(file),
        }
    }
}

/// The new JSON format when it no longer is `ALLOW` (what buf reports).
pub(super) fn json_format_lost(old: &'static str, new: &'static str) -> Option<&'static str> {
    (old == "ALLOW" && new != "ALLOW").then_some(new)
}
