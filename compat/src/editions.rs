//! Protobuf editions (`edition = "2023"` / `"2024"`): each element's features resolved by the
//! editions rules (edition defaults, then overrides file → message → oneof → field or enum),
//! and the files lowered to an equivalent proto2 form that prost-reflect 0.16 (which has no
//! editions support) can build a pool from: `DELIMITED` fields become groups, `PACKED` /
//! `EXPANDED` become the `packed` option, `LEGACY_REQUIRED` becomes `required`.
//!
//! prost-types 0.14 drops `edition` and every `features` option, so the descriptors are read a
//! second time through the small messages below, which keep exactly those.

use prost::Message;
use std::collections::HashMap;

/// `Edition.EDITION_2023`.
pub const EDITION_2023: i32 = 1000;
/// `Edition.EDITION_2024`.
pub const EDITION_2024: i32 = 1001;

/// The `FeatureSet` values this crate compares, with the C++, Java and Go extensions
/// (`pb.cpp` = 1000, `pb.java` = 1001, `pb.go` = 1002). Unset values are 0.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct FeatureSet {
    /// `EXPLICIT` 1, `IMPLICIT` 2, `LEGACY_REQUIRED` 3.
    #[prost(int32, optional, tag = "1")]
    pub field_presence: Option<i32>,
    /// `OPEN` 1, `CLOSED` 2.
    #[prost(int32, optional, tag = "2")]
    pub enum_type: Option<i32>,
    /// `PACKED` 1, `EXPANDED` 2.
    #[prost(int32, optional, tag = "3")]
    pub repeated_field_encoding: Option<i32>,
    /// `VERIFY` 2, `NONE` 3.
    #[prost(int32, optional, tag = "4")]
    pub utf8_validation: Option<i32>,
    /// `LENGTH_PREFIXED` 1, `DELIMITED` 2.
    #[prost(int32, optional, tag = "5")]
    pub message_encoding: Option<i32>,
    /// `ALLOW` 1, `LEGACY_BEST_EFFORT` 2.
    #[prost(int32, optional, tag = "6")]
    pub json_format: Option<i32>,
    /// `pb.cpp`.
    #[prost(message, optional, tag = "1000")]
    pub cpp: Option<CppFeatures>,
    /// `pb.java`.
    #[prost(message, optional, tag = "1001")]
    pub java: Option<JavaFeatures>,
    /// `pb.go`.
    #[prost(message, optional, tag = "1002")]
    pub go: Option<GoFeatures>,
}

/// `pb.CppFeatures`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct CppFeatures {
    /// Whether C++ treats enums as closed.
    #[prost(bool, optional, tag = "1")]
    pub legacy_closed_enum: Option<bool>,
    /// `VIEW` 1, `CORD` 2, `STRING` 3.
    #[prost(int32, optional, tag = "2")]
    pub string_type: Option<i32>,
}

/// `pb.JavaFeatures`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct JavaFeatures {
    /// Whether Java treats enums as closed.
    #[prost(bool, optional, tag = "1")]
    pub legacy_closed_enum: Option<bool>,
    /// `DEFAULT` 1, `VERIFY` 2.
    #[prost(int32, optional, tag = "2")]
    pub utf8_validation: Option<i32>,
}

/// `pb.GoFeatures`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct GoFeatures {
    /// Whether Go's JSON reader accepts enum numbers of closed enums the old way.
    #[prost(bool, optional, tag = "1")]
    pub legacy_unmarshal_json_enum: Option<bool>,
}

impl FeatureSet {
    /// `self` with every value `over` sets replaced (the editions merge: a child's explicit
    /// value wins, extensions merged field by field).
    fn merged(mut self, over: Option<&FeatureSet>) -> FeatureSet {
        let Some(o) = over else { return self };
        let pick = |a: &mut Option<i32>, b: Option<i32>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.field_presence, o.field_presence);
        pick(&mut self.enum_type, o.enum_type);
        pick(&mut self.repeated_field_encoding, o.repeated_field_encoding);
        pick(&mut self.utf8_validation, o.utf8_validation);
        pick(&mut self.message_encoding, o.message_encoding);
        pick(&mut self.json_format, o.json_format);
        if let Some(c) = o.cpp {
            let mine = self.cpp.get_or_insert_with(Default::default);
            mine.legacy_closed_enum = c.legacy_closed_enum.or(mine.legacy_closed_enum);
            pick(&mut mine.string_type, c.string_type);
        }
        if let Some(j) = o.java {
            let mine = self.java.get_or_insert_with(Default::default);
            mine.legacy_closed_enum = j.legacy_closed_enum.or(mine.legacy_closed_enum);
            pick(&mut mine.utf8_validation, j.utf8_validation);
        }
        if let Some(g) = o.go {
            let mine = self.go.get_or_insert_with(Default::default);
            mine.legacy_unmarshal_json_enum = g
                .legacy_unmarshal_json_enum
                .or(mine.legacy_unmarshal_json_enum);
        }
        self
    }

    /// The defaults of `edition` (descriptor.proto's `edition_defaults`, and those of
    /// cpp_features.proto, java_features.proto and go_features.proto); `None` for an edition
    /// after 2024.
    pub fn defaults(edition: i32) -> Option<FeatureSet> {
        if !(EDITION_2023..=EDITION_2024).contains(&edition) {
            return None;
        }
        let newer = edition >= EDITION_2024;
        Some(FeatureSet {
            field_presence: Some(1),
            enum_type: Some(1),
            repeated_field_encoding: Some(1),
            utf8_validation: Some(2),
            message_encoding: Some(1),
            json_format: Some(1),
            cpp: Some(CppFeatures {
                legacy_closed_enum: Some(false),
                string_type: Some(if newer { 1 } else { 3 }),
            }),
            java: Some(JavaFeatures {
                legacy_closed_enum: Some(false),
                utf8_validation: Some(1),
            }),
            go: Some(GoFeatures {
                legacy_unmarshal_json_enum: Some(false),
            }),
        })
    }
}

/// Resolved features of the elements of editions files, by full name (a field's is its
/// message's full name, a dot and its name; an extension's its full name).
#[derive(Debug, Clone, Default)]
pub struct Editions {
    /// Per editions file: its edition.
    pub files: HashMap<String, i32>,
    /// Messages, fields, extensions and enums.
    pub elements: HashMap<String, FeatureSet>,
}

impl Editions {
    /// The resolved features of an element of an editions file (`None` for proto2/proto3).
    pub fn get(&self, full_name: &str) -> Option<&FeatureSet> {
        self.elements.get(full_name)
    }
}

#[derive(Clone, PartialEq, Message)]
struct RawSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<RawFile>,
}

#[derive(Clone, PartialEq, Message)]
struct RawFile {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<RawMessage>,
    #[prost(message, repeated, tag = "5")]
    enum_type: Vec<RawEnum>,
    #[prost(message, repeated, tag = "7")]
    extension: Vec<RawField>,
    #[prost(message, optional, tag = "8")]
    options: Option<WithFeatures50>,
    #[prost(string, optional, tag = "12")]
    syntax: Option<String>,
    #[prost(int32, optional, tag = "14")]
    edition: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMessage {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    field: Vec<RawField>,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<RawMessage>,
    #[prost(message, repeated, tag = "4")]
    enum_type: Vec<RawEnum>,
    #[prost(message, repeated, tag = "6")]
    extension: Vec<RawField>,
    #[prost(message, optional, tag = "7")]
    options: Option<WithFeatures12>,
    #[prost(message, repeated, tag = "8")]
    oneof_decl: Vec<RawOneof>,
}

#[derive(Clone, PartialEq, Message)]
struct RawField {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    extendee: Option<String>,
    #[prost(int32, optional, tag = "9")]
    oneof_index: Option<i32>,
    #[prost(message, optional, tag = "8")]
    options: Option<WithFeatures21>,
}

#[derive(Clone, PartialEq, Message)]
struct RawEnum {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, optional, tag = "3")]
    options: Option<WithFeatures7>,
}

#[derive(Clone, PartialEq, Message)]
struct RawOneof {
    #[prost(message, optional, tag = "2")]
    options: Option<WithFeatures1>,
}

macro_rules! with_features {
    ($name:ident, $tag:literal) => {
        /// Options of which only `features` is kept.
        #[derive(Clone, PartialEq, Message)]
        struct $name {
            #[prost(message, optional, tag = $tag)]
            features: Option<FeatureSet>,
        }
    };
}
with_features!(WithFeatures50, "50");
with_features!(WithFeatures12, "12");
with_features!(WithFeatures21, "21");
with_features!(WithFeatures7, "7");
with_features!(WithFeatures1, "1");

/// Resolves the features of every editions file in an encoded `FileDescriptorSet`. A file of
/// an edition this crate does not know (after 2024) is an error naming it.
pub fn resolve(bytes: &[u8]) -> Result<Editions, String> {
    let set = RawSet::decode(bytes).map_err(|e| e.to_string())?;
    let mut out = Editions::default();
    for file in &set.file {
        let name = file.name.as_deref().unwrap_or("?");
        let edition = match (file.syntax.as_deref(), file.edition) {
            (Some("editions"), Some(e)) => e,
            (Some("editions"), None) => {
                return Err(format!(
                    "file {name:?} declares syntax \"editions\" without an edition"
                ));
            }
            _ => continue,
        };
        let Some(defaults) = FeatureSet::defaults(edition) else {
            return Err(format!(
                "file {name:?} uses edition {edition}, which is newer than 2024 (the newest this build knows)"
            ));
        };
        out.files.insert(name.to_string(), edition);
        let base = defaults.merged(file.options.as_ref().and_then(|o| o.features.as_ref()));
        let scope = match file.package.as_deref() {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => String::new(),
        };
        for f in &file.extension {
            let full = join(&scope, f.name.as_deref().unwrap_or(""));
            out.elements.insert(full, base.merged(field_features(f)));
        }
        for e in &file.enum_type {
            enum_into(&mut out, &scope, e, &base);
        }
        for m in &file.message_type {
            message_into(&mut out, &scope, m, &base);
        }
    }
    Ok(out)
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn field_features(f: &RawField) -> Option<&FeatureSet> {
    f.options.as_ref().and_then(|o| o.features.as_ref())
}

fn enum_into(out: &mut Editions, scope: &str, e: &RawEnum, parent: &FeatureSet) {
    let full = join(scope, e.name.as_deref().unwrap_or(""));
    let own = e.options.as_ref().and_then(|o| o.features.as_ref());
    out.elements.insert(full, parent.merged(own));
}

fn message_into(out: &mut Editions, scope: &str, m: &RawMessage, parent: &FeatureSet) {
    let full = join(scope, m.name.as_deref().unwrap_or(""));
    let here = parent.merged(m.options.as_ref().and_then(|o| o.features.as_ref()));
    for f in &m.field {
        let via_oneof = f
            .oneof_index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| m.oneof_decl.get(i))
            .and_then(|o| o.options.as_ref())
            .and_then(|o| o.features.as_ref());
        let resolved = here.merged(via_oneof).merged(field_features(f));
        out.elements
            .insert(join(&full, f.name.as_deref().unwrap_or("")), resolved);
    }
    for f in &m.extension {
        let key = join(&full, f.name.as_deref().unwrap_or(""));
        out.elements.insert(key, here.merged(field_features(f)));
    }
    for e in &m.enum_type {
        enum_into(out, &full, e, &here);
    }
    for nested in &m.nested_type {
        message_into(out, &full, nested, &here);
    }
    out.elements.insert(full, here);
}

/// Rewrites the editions files of `set` (decoded with prost-types, which drops `edition` and
/// `features`) as proto2 files with the same wire format, using the features `editions`
/// resolved from the same bytes.
pub fn lower(set: &mut prost_types::FileDescriptorSet, editions: &Editions) {
    use prost_types::field_descriptor_proto::{Label, Type};
    for file in &mut set.file {
        if !editions.files.contains_key(file.name()) {
            continue;
        }
        file.syntax = Some("proto2".to_string());
        let scope = file.package().to_string();
        let map_entries = map_entries(file);
        let lower_field = |scope: &str, f: &mut prost_types::FieldDescriptorProto| {
            let Some(fs) = editions.get(&join(scope, f.name())) else {
                return;
            };
            if f.label() == Label::Repeated {
                let packable = !matches!(f.r#type(), Type::String | Type::Bytes | Type::Message);
                if packable {
                    let opts = f.options.get_or_insert_with(Default::default);
                    opts.packed = Some(fs.repeated_field_encoding == Some(1));
                }
            } else if fs.field_presence == Some(3) {
                f.set_label(Label::Required);
            }
            // Map fields are length-prefixed whatever the features say.
            let is_map = map_entries.contains(f.type_name());
            if f.r#type() == Type::Message && fs.message_encoding == Some(2) && !is_map {
                f.set_type(Type::Group);
            }
        };
        for f in &mut file.extension {
            lower_field(&scope, f);
        }
        let mut stack: Vec<(String, &mut prost_types::DescriptorProto)> = file
            .message_type
            .iter_mut()
            .map(|m| (scope.clone(), m))
            .collect();
        while let Some((scope, m)) = stack.pop() {
            let full = join(&scope, m.name());
            let is_map_entry = m.options.as_ref().is_some_and(|o| o.map_entry());
            for f in m.field.iter_mut().chain(m.extension.iter_mut()) {
                // A map entry's fields keep their form: maps are never delimited.
                if !is_map_entry {
                    lower_field(&full, f);
                }
            }
            for nested in &mut m.nested_type {
                stack.push((full.clone(), nested));
            }
        }
    }
}

/// The `.`-prefixed full names of the map entry messages of `file`.
fn map_entries(file: &prost_types::FileDescriptorProto) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let mut stack: Vec<(String, &prost_types::DescriptorProto)> = file
        .message_type
        .iter()
        .map(|m| (file.package().to_string(), m))
        .collect();
    while let Some((scope, m)) = stack.pop() {
        let full = join(&scope, m.name());
        if m.options.as_ref().is_some_and(|o| o.map_entry()) {
            out.insert(format!(".{full}"));
        }
        stack.extend(m.nested_type.iter().map(|n| (full.clone(), n)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: &[u8] = include_bytes!("../tests/data/editions2023_features.binpb");

    /// Every one-byte corruption of the editions fixtures is read or refused, never a panic
    /// (prost-reflect's own are caught by `budget::guarded`; these functions must not add any).
    #[test]
    fn corrupted_editions_sets_do_not_panic() {
        let small: &[u8] = include_bytes!("../tests/data/editions2024.binpb");
        for bytes in [small, FEATURES] {
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut b = bytes.to_vec();
                    b[i] ^= flip;
                    let _ = crate::Api::from_descriptor_set_bytes(&b, "corrupt");
                }
            }
        }
    }

    /// Features set at every level resolve by inheritance, and the lowered pool has the same
    /// wire format (protoc 35's descriptors of editions2023_features.proto).
    #[test]
    fn features_inherit_and_lower() {
        let api = crate::Api::from_descriptor_set_bytes(FEATURES, "features").unwrap();
        let get = |n: &str| *api.editions.get(n).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(get("ed.v2.Outer.a").field_presence, Some(3));
        assert_eq!(get("ed.v2.Outer.b").repeated_field_encoding, Some(2));
        assert_eq!(
            get("ed.v2.Outer.b").field_presence,
            Some(2),
            "from the file"
        );
        assert_eq!(get("ed.v2.Outer.inner").message_encoding, Some(2));
        assert_eq!(get("ed.v2.Outer.s").utf8_validation, Some(3));
        assert_eq!(get("ed.v2.Outer.i").utf8_validation, Some(2));
        assert_eq!(get("ed.v2.Outer.Inner.Kind").enum_type, Some(2));
        assert_eq!(get("ed.v2.Outer.Inner").json_format, Some(2), "from Outer");
        assert_eq!(get("ed.v2.Outer.Inner.k").field_presence, Some(1));
        assert_eq!(get("ed.v2.ext").field_presence, Some(2));
        let outer = api.pool.get_message_by_name("ed.v2.Outer").unwrap();
        let field = |n: &str| outer.get_field_by_name(n).unwrap();
        assert_eq!(
            field("a").cardinality(),
            prost_reflect::Cardinality::Required
        );
        assert!(!field("b").is_packed());
        assert!(field("inner").is_group());
        assert!(!field("m").is_group() && field("m").is_map());
    }

    /// protoc's `--edition_defaults_out` for descriptor.proto, 2023 and 2024 (protoc 35.1):
    /// the hard-coded table must say the same.
    #[test]
    fn defaults_match_protoc() {
        let protoc = match crate::protoc::find() {
            Ok(p) => p,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("{e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
        for (edition, name) in [(EDITION_2023, "2023"), (EDITION_2024, "2024")] {
            let got = protoc
                .edition_defaults(name)
                .unwrap_or_else(|e| panic!("protoc defaults {name}: {e}"));
            let want = FeatureSet::defaults(edition).map(|d| FeatureSet {
                cpp: None,
                java: None,
                go: None,
                ..d
            });
            assert_eq!(Some(got), want, "edition {name}");
        }
        assert!(FeatureSet::defaults(1002).is_none());
    }
}
