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

/// One rule: its id, the categories it belongs to, and whether this crate implements it.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo {
    /// buf's id, or this crate's `GRPC_*` id.
    pub id: &'static str,
    /// The categories the rule is part of (buf's, or `GRPC`).
    pub categories: &'static [Category],
    /// `None` when implemented; otherwise why not.
    pub not_implemented: Option<&'static str>,
    /// One line on what it checks.
    pub summary: &'static str,
}

const fn r(id: &'static str, categories: &'static [Category], summary: &'static str) -> RuleInfo {
    RuleInfo {
        id,
        categories,
        not_implemented: None,
        summary,
    }
}

const fn ni(id: &'static str, categories: &'static [Category], why: &'static str) -> RuleInfo {
    RuleInfo {
        id,
        categories,
        not_implemented: Some(why),
        summary: "",
    }
}

const CODEGEN: &str = "the C++ string representation (ctype / editions feature cpp.string_type) is a \
code-generation setting of one language that changes no byte on the wire or in JSON; resolving it needs \
editions features, which protox 0.10 does not compile";

/// buf's 64 breaking rules (categories as `buf config ls-breaking-rules` prints them for buf
/// 1.75, without buf's CSR category) followed by the `GRPC` rules.
pub const RULES: &[RuleInfo] = &[
    r("ENUM_NO_DELETE", &[F], "an enum is deleted from a file"),
    r(
        "ENUM_SAME_JSON_FORMAT",
        &[F, P, WJ],
        "an enum's JSON format (proto3/editions ALLOW vs proto2 LEGACY_BEST_EFFORT) changes",
    ),
    r(
        "ENUM_SAME_TYPE",
        &[F, P],
        "an enum changes between open (proto3) and closed (proto2)",
    ),
    r("ENUM_VALUE_NO_DELETE", &[F, P], "an enum value is deleted"),
    r(
        "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
        &[WJ],
        "an enum value is deleted without reserving its name",
    ),
    r(
        "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
        &[WJ, W],
        "an enum value is deleted without reserving its number",
    ),
    r(
        "ENUM_VALUE_SAME_NAME",
        &[F, P, WJ],
        "an enum number gets another name",
    ),
    r(
        "EXTENSION_MESSAGE_NO_DELETE",
        &[F, P],
        "a message's extension range is deleted",
    ),
    r(
        "EXTENSION_NO_DELETE",
        &[F],
        "an extension is deleted from a file",
    ),
    r("FIELD_NO_DELETE", &[F, P], "a field is deleted"),
    r(
        "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
        &[WJ],
        "a field is deleted without reserving its name",
    ),
    r(
        "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
        &[WJ, W],
        "a field is deleted without reserving its number",
    ),
    ni("FIELD_SAME_CPP_STRING_TYPE", &[F, P], CODEGEN),
    r(
        "FIELD_SAME_CARDINALITY",
        &[F, P],
        "a field's cardinality (implicit/explicit presence, repeated, map, required) changes",
    ),
    r(
        "FIELD_SAME_DEFAULT",
        &[F, P, WJ, W],
        "a field's default value changes",
    ),
    r(
        "FIELD_SAME_JAVA_UTF8_VALIDATION",
        &[F, P],
        "a string field's Java UTF-8 validation (file option java_string_check_utf8, or proto3) changes",
    ),
    r(
        "FIELD_SAME_JSON_NAME",
        &[F, P, WJ],
        "a field's JSON name changes",
    ),
    r(
        "FIELD_SAME_JSTYPE",
        &[F, P],
        "a field's jstype option changes",
    ),
    r(
        "FIELD_SAME_NAME",
        &[F, P, WJ],
        "a field number gets another name",
    ),
    r(
        "FIELD_SAME_ONEOF",
        &[F, P, WJ, W],
        "a field moves into, out of or between oneofs",
    ),
    r("FIELD_SAME_TYPE", &[F, P], "a field's type changes"),
    r(
        "FIELD_SAME_UTF8_VALIDATION",
        &[F, P],
        "a string field's UTF-8 validation (proto3 verifies, proto2 does not) changes",
    ),
    r(
        "FIELD_WIRE_COMPATIBLE_CARDINALITY",
        &[W],
        "a field changes between singular, repeated/map and required",
    ),
    r(
        "FIELD_WIRE_COMPATIBLE_TYPE",
        &[W],
        "a field's type changes to one with another wire encoding",
    ),
    r(
        "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY",
        &[WJ],
        "a field changes between singular, repeated, map and required",
    ),
    r(
        "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
        &[WJ],
        "a field's type changes to one with another wire or JSON encoding",
    ),
    r("FILE_NO_DELETE", &[F], "a file is deleted"),
    r(
        "FILE_SAME_CC_ENABLE_ARENAS",
        &[F, P],
        "file option cc_enable_arenas changes",
    ),
    r(
        "FILE_SAME_CC_GENERIC_SERVICES",
        &[F, P],
        "file option cc_generic_services changes",
    ),
    r(
        "FILE_SAME_CSHARP_NAMESPACE",
        &[F, P],
        "file option csharp_namespace changes",
    ),
    r(
        "FILE_SAME_GO_PACKAGE",
        &[F, P],
        "file option go_package changes",
    ),
    r(
        "FILE_SAME_JAVA_GENERIC_SERVICES",
        &[F, P],
        "file option java_generic_services changes",
    ),
    r(
        "FILE_SAME_JAVA_MULTIPLE_FILES",
        &[F, P],
        "file option java_multiple_files changes",
    ),
    r(
        "FILE_SAME_JAVA_OUTER_CLASSNAME",
        &[F, P],
        "file option java_outer_classname changes",
    ),
    r(
        "FILE_SAME_JAVA_PACKAGE",
        &[F, P],
        "file option java_package changes",
    ),
    r(
        "FILE_SAME_OBJC_CLASS_PREFIX",
        &[F, P],
        "file option objc_class_prefix changes",
    ),
    r(
        "FILE_SAME_OPTIMIZE_FOR",
        &[F, P],
        "file option optimize_for changes",
    ),
    r(
        "FILE_SAME_PACKAGE",
        &[F, P, WJ, W],
        "a file's package changes (after --map pairing)",
    ),
    r(
        "FILE_SAME_PHP_CLASS_PREFIX",
        &[F, P],
        "file option php_class_prefix changes",
    ),
    r(
        "FILE_SAME_PHP_METADATA_NAMESPACE",
        &[F, P],
        "file option php_metadata_namespace changes",
    ),
    r(
        "FILE_SAME_PHP_NAMESPACE",
        &[F, P],
        "file option php_namespace changes",
    ),
    r(
        "FILE_SAME_PY_GENERIC_SERVICES",
        &[F, P],
        "file option py_generic_services changes",
    ),
    r(
        "FILE_SAME_RUBY_PACKAGE",
        &[F, P],
        "file option ruby_package changes",
    ),
    r(
        "FILE_SAME_SWIFT_PREFIX",
        &[F, P],
        "file option swift_prefix changes",
    ),
    r("FILE_SAME_SYNTAX", &[F, P], "a file's syntax changes"),
    r(
        "MESSAGE_NO_DELETE",
        &[F],
        "a message is deleted from a file",
    ),
    r(
        "MESSAGE_NO_REMOVE_STANDARD_DESCRIPTOR_ACCESSOR",
        &[F, P],
        "option no_standard_descriptor_accessor is turned on",
    ),
    r(
        "MESSAGE_SAME_JSON_FORMAT",
        &[F, P, WJ],
        "a message's JSON format (ALLOW vs LEGACY_BEST_EFFORT) changes",
    ),
    r(
        "MESSAGE_SAME_REQUIRED_FIELDS",
        &[F, P, WJ, W],
        "a required field is added or removed",
    ),
    r("ONEOF_NO_DELETE", &[F, P], "a oneof is deleted"),
    r(
        "PACKAGE_ENUM_NO_DELETE",
        &[P],
        "an enum is deleted from a package",
    ),
    r(
        "PACKAGE_EXTENSION_NO_DELETE",
        &[P],
        "an extension is deleted from a package",
    ),
    r(
        "PACKAGE_MESSAGE_NO_DELETE",
        &[P],
        "a message is deleted from a package",
    ),
    r("PACKAGE_NO_DELETE", &[P], "a package is deleted"),
    r(
        "PACKAGE_SERVICE_NO_DELETE",
        &[P],
        "a service is deleted from a package",
    ),
    r(
        "RESERVED_ENUM_NO_DELETE",
        &[F, P, WJ, W],
        "an enum's reserved number or name is removed",
    ),
    r(
        "RESERVED_MESSAGE_NO_DELETE",
        &[F, P, WJ, W],
        "a message's reserved number or name is removed",
    ),
    r("RPC_NO_DELETE", &[F, P], "an RPC is deleted"),
    r(
        "RPC_SAME_CLIENT_STREAMING",
        &[F, P, WJ, W],
        "an RPC's client streaming changes",
    ),
    r(
        "RPC_SAME_IDEMPOTENCY_LEVEL",
        &[F, P, WJ, W],
        "an RPC's idempotency_level changes",
    ),
    r(
        "RPC_SAME_REQUEST_TYPE",
        &[F, P, WJ, W],
        "an RPC's request type changes (under WIRE/WIRE_JSON: to one not identical on the wire)",
    ),
    r(
        "RPC_SAME_RESPONSE_TYPE",
        &[F, P, WJ, W],
        "an RPC's response type changes (under WIRE/WIRE_JSON: to one not identical on the wire)",
    ),
    r(
        "RPC_SAME_SERVER_STREAMING",
        &[F, P, WJ, W],
        "an RPC's server streaming changes",
    ),
    r(
        "SERVICE_NO_DELETE",
        &[F],
        "a service is deleted from a file",
    ),
    // This crate's own rules: what a live gRPC client notices.
    r(
        "GRPC_SERVICE_NO_DELETE",
        &[G],
        "a service is gone: every call of an old client gets UNIMPLEMENTED",
    ),
    r(
        "GRPC_RPC_NO_DELETE",
        &[G],
        "a method is gone: old clients calling it get UNIMPLEMENTED",
    ),
    r(
        "GRPC_RPC_SAME_STREAMING",
        &[G],
        "a method's streaming shape (unary, client, server, bidi) changes",
    ),
    r(
        "GRPC_RPC_SAME_REQUEST_TYPE",
        &[G],
        "a method's request type changes to one that is not identical on the wire",
    ),
    r(
        "GRPC_RPC_SAME_RESPONSE_TYPE",
        &[G],
        "a method's response type changes to one that is not identical on the wire",
    ),
    r(
        "GRPC_FIELD_SAME_VALUE_RANGE",
        &[G],
        "a field keeps its wire type but narrows or changes sign (int64 → int32, int32 → uint32, … → bool), so values are truncated or reinterpreted",
    ),
    r(
        "GRPC_ENUM_VALUE_SAME_NUMBER",
        &[G],
        "an enum value name moves to another number, so the old number means something else",
    ),
    r(
        "GRPC_FIELD_SAME_DEFAULT",
        &[G],
        "the value a reader assumes for an absent field changes (proto2 default, or an enum's default value gets another name)",
    ),
];

/// The rule's entry in [`RULES`].
pub fn rule_info(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}

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

/// Old package → new package, applied to full names.
#[derive(Debug, Clone, Default)]
pub struct Pairing {
    pairs: Vec<(String, String)>,
}

impl Pairing {
    /// Pairs from `--map OLD=NEW`, plus the automatic `.vN` pairing when `auto` is set: an old
    /// package that is absent on the new side pairs with the one new package (absent on the
    /// old side) that differs from it only in a trailing `.vN`.
    pub fn new(explicit: &[(String, String)], old: &Api, new: &Api, auto: bool) -> Pairing {
        let mut pairs: Vec<(String, String)> = explicit.to_vec();
        if auto {
            let old_pkgs = packages(old);
            let new_pkgs = packages(new);
            for o in &old_pkgs {
                if new_pkgs.contains(o) || pairs.iter().any(|(a, _)| a == o) {
                    continue;
                }
                let Some(stem) = version_stem(o) else {
                    continue;
                };
                let candidates: Vec<&String> = new_pkgs
                    .iter()
                    .filter(|n| !old_pkgs.contains(*n) && version_stem(n) == Some(stem))
                    .collect();
                if candidates.len() == 1 {
                    pairs.push((o.clone(), candidates[0].clone()));
                }
            }
        }
        pairs.sort_by_key(|(a, _)| std::cmp::Reverse(a.len()));
        Pairing { pairs }
    }

    /// The pairs, old → new.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut p = self.pairs.clone();
        p.sort();
        p
    }

    /// The new-side full name of an old-side full name.
    pub fn map(&self, old: &str) -> String {
        for (a, b) in &self.pairs {
            if old == a {
                return b.clone();
            }
            if let Some(rest) = old.strip_prefix(a.as_str())
                && rest.starts_with('.')
            {
                return format!("{b}{rest}");
            }
        }
        old.to_string()
    }
}

fn version_stem(pkg: &str) -> Option<&str> {
    let (stem, last) = pkg.rsplit_once('.')?;
    let digits = last.strip_prefix('v')?;
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then_some(stem)
}

fn packages(api: &Api) -> BTreeSet<String> {
    api.files
        .iter()
        .filter_map(|f| api.pool.get_file_by_name(f))
        .map(|f| f.package_name().to_string())
        .collect()
}

/// Where a finding points: the (new-side) file and the 1-based line.
type Loc = (String, Option<u32>);

/// By source path: the 1-based line and the index of the location.
type Lines = HashMap<Vec<i32>, (u32, usize)>;

/// Line numbers and comments by source path, per file.
struct SourceIndex {
    /// Per file: the file and its lines.
    files: HashMap<String, (FileDescriptor, Lines)>,
}

impl SourceIndex {
    fn build(api: &Api) -> SourceIndex {
        let mut files = HashMap::new();
        for name in &api.files {
            let Some(file) = api.pool.get_file_by_name(name) else {
                continue;
            };
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            let mut map = HashMap::with_capacity(info.location.len());
            for (i, loc) in info.location.iter().enumerate() {
                let line = loc.span.first().map(|l| *l as u32 + 1).unwrap_or(1);
                map.entry(loc.path.clone()).or_insert((line, i));
            }
            files.insert(name.clone(), (file.clone(), map));
        }
        SourceIndex { files }
    }

    /// The line of `path` in `file`, walking up to the enclosing element when the exact path
    /// has no location (a synthesized map entry, an option left at its default).
    fn line(&self, file: &str, path: &[i32]) -> Option<u32> {
        let (_, map) = self.files.get(file)?;
        let mut p = path.to_vec();
        loop {
            if let Some((line, _)) = map.get(&p) {
                return Some(*line);
            }
            if p.is_empty() {
                return Some(1);
            }
            let cut = if p.len() >= 2 { p.len() - 2 } else { 0 };
            p.truncate(cut);
        }
    }

    /// The leading and trailing comments at `path` (empty when none).
    fn comments(&self, file: &str, path: &[i32]) -> (&str, &str) {
        let Some((fd, map)) = self.files.get(file) else {
            return ("", "");
        };
        match (map.get(path), &fd.file_descriptor_proto().source_code_info) {
            (Some((_, i)), Some(info)) => {
                let loc = &info.location[*i];
                (loc.leading_comments(), loc.trailing_comments())
            }
            _ => ("", ""),
        }
    }
}

/// What the deletion and addition rules need of a message, enum, service or extension.
trait Declaration {
    fn full_name(&self) -> &str;
    fn package_name(&self) -> &str;
    /// The message it is nested in (a service is never nested).
    fn parent_message(&self) -> Option<MessageDescriptor>;
    fn parent_file(&self) -> FileDescriptor;
    fn path(&self) -> &[i32];
    /// A synthesized map entry (never reported as added).
    fn is_map_entry(&self) -> bool {
        false
    }
}

macro_rules! declaration {
    ($t:ty, |$d:ident| parent: $parent:expr $(, map_entry: $map_entry:expr)?) => {
        impl Declaration for $t {
            fn full_name(&self) -> &str {
                <$t>::full_name(self)
            }
            fn package_name(&self) -> &str {
                <$t>::package_name(self)
            }
            fn parent_message(&self) -> Option<MessageDescriptor> {
                let $d = self;
                $parent
            }
            fn parent_file(&self) -> FileDescriptor {
                <$t>::parent_file(self)
            }
            fn path(&self) -> &[i32] {
                <$t>::path(self)
            }
            $(fn is_map_entry(&self) -> bool {
                let $d = self;
                $map_entry
            })?
        }
    };
}

declaration!(MessageDescriptor, |d| parent: d.parent_message(), map_entry: d.is_map_entry());
declaration!(EnumDescriptor, |d| parent: d.parent_message());
declaration!(ServiceDescriptor, |_d| parent: None);
declaration!(ExtensionDescriptor, |d| parent: d.parent_message());

/// One side's declarations of one kind, by key, whatever their descriptor type.
trait Declarations {
    fn declaration(&self, key: &str) -> Option<&dyn Declaration>;
    fn has(&self, key: &str) -> bool;
    fn all(&self) -> Box<dyn Iterator<Item = (&String, &dyn Declaration)> + '_>;
}

impl<T: Declaration> Declarations for BTreeMap<String, T> {
    fn declaration(&self, key: &str) -> Option<&dyn Declaration> {
        self.get(key).map(|d| d as &dyn Declaration)
    }
    fn has(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn all(&self) -> Box<dyn Iterator<Item = (&String, &dyn Declaration)> + '_> {
        Box::new(self.iter().map(|(k, d)| (k, d as &dyn Declaration)))
    }
}

/// Indexes of the kinds of declaration in [`DECLARATIONS`] and in `Side::by_file`.
const MESSAGES: usize = 0;
const ENUMS: usize = 1;
const SERVICES: usize = 2;
const EXTENSIONS: usize = 3;

/// The rules about one kind of declaration being deleted or added.
struct DeclarationRules {
    /// The kind in messages: `message`.
    noun: &'static str,
    /// Deleted from a file (FILE category).
    file_rule: &'static str,
    /// Deleted from a package (PACKAGE category).
    package_rule: &'static str,
    /// Why a deletion alone has no wire effect.
    deleted: &'static str,
    /// The CHANGE entry of an addition, and the kind as the message's first word.
    added: Option<(&'static str, &'static str)>,
}

const EXTENSION_DELETED: &str = "extension bytes are kept as unknown fields by readers without it";
const SERVICE_DELETED: &str = "see GRPC_SERVICE_NO_DELETE for what callers get";

/// By kind: [`MESSAGES`], [`ENUMS`], [`SERVICES`], [`EXTENSIONS`].
static DECLARATIONS: [DeclarationRules; 4] = [
    DeclarationRules {
        noun: "message",
        file_rule: "MESSAGE_NO_DELETE",
        package_rule: "PACKAGE_MESSAGE_NO_DELETE",
        deleted: TYPE_DELETED,
        added: Some(("MESSAGE_ADDED", "Message")),
    },
    DeclarationRules {
        noun: "enum",
        file_rule: "ENUM_NO_DELETE",
        package_rule: "PACKAGE_ENUM_NO_DELETE",
        deleted: TYPE_DELETED,
        added: Some(("ENUM_ADDED", "Enum")),
    },
    DeclarationRules {
        noun: "service",
        file_rule: "SERVICE_NO_DELETE",
        package_rule: "PACKAGE_SERVICE_NO_DELETE",
        deleted: SERVICE_DELETED,
        added: Some(("SERVICE_ADDED", "Service")),
    },
    DeclarationRules {
        noun: "extension",
        file_rule: "EXTENSION_NO_DELETE",
        package_rule: "PACKAGE_EXTENSION_NO_DELETE",
        deleted: EXTENSION_DELETED,
        added: None,
    },
];

/// One side's elements by (new-side) full name.
struct Side<'a> {
    _api: std::marker::PhantomData<&'a Api>,
    messages: BTreeMap<String, MessageDescriptor>,
    enums: BTreeMap<String, EnumDescriptor>,
    services: BTreeMap<String, ServiceDescriptor>,
    extensions: BTreeMap<String, ExtensionDescriptor>,
    packages: BTreeSet<String>,
    files: BTreeMap<String, FileDescriptor>,
    /// Per file: (name relative to the file's package, key) of its messages, enums,
    /// services and extensions.
    by_file: HashMap<String, [Vec<(String, String)>; 4]>,
    src: SourceIndex,
}

impl<'a> Side<'a> {
    fn build(api: &'a Api, pairing: Option<&Pairing>) -> Side<'a> {
        let key = |n: &str| match pairing {
            Some(p) => p.map(n),
            None => n.to_string(),
        };
        let mut side = Side {
            _api: std::marker::PhantomData,
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
            services: BTreeMap::new(),
            extensions: BTreeMap::new(),
            packages: BTreeSet::new(),
            files: BTreeMap::new(),
            by_file: HashMap::new(),
            src: SourceIndex::build(api),
        };
        for name in &api.files {
            let Some(file) = api.pool.get_file_by_name(name) else {
                continue;
            };
            side.packages.insert(key(file.package_name()));
            let pkg = file.package_name().to_string();
            let mut groups: [Vec<(String, String)>; 4] = Default::default();
            let mut add = |group: usize, full: &str| -> String {
                let k = key(full);
                groups[group].push((short(full, &pkg).to_string(), k.clone()));
                k
            };
            let mut stack: Vec<MessageDescriptor> = file.messages().collect();
            for e in file.enums() {
                side.enums.insert(add(ENUMS, e.full_name()), e);
            }
            for x in file.extensions() {
                side.extensions.insert(add(EXTENSIONS, x.full_name()), x);
            }
            while let Some(m) = stack.pop() {
                stack.extend(m.child_messages());
                for e in m.child_enums() {
                    side.enums.insert(add(ENUMS, e.full_name()), e);
                }
                for x in m.child_extensions() {
                    side.extensions.insert(add(EXTENSIONS, x.full_name()), x);
                }
                side.messages.insert(add(MESSAGES, m.full_name()), m);
            }
            for s in file.services() {
                side.services.insert(add(SERVICES, s.full_name()), s);
            }
            side.by_file.insert(name.clone(), groups);
            side.files.insert(name.clone(), file);
        }
        side
    }

    /// The declarations of one kind ([`MESSAGES`], [`ENUMS`], [`SERVICES`], [`EXTENSIONS`]).
    fn declared(&self, kind: usize) -> &dyn Declarations {
        match kind {
            MESSAGES => &self.messages,
            ENUMS => &self.enums,
            SERVICES => &self.services,
            _ => &self.extensions,
        }
    }

    fn loc(&self, file: &FileDescriptor, path: &[i32]) -> Loc {
        (file.name().to_string(), self.src.line(file.name(), path))
    }

    /// Where an element of message `m` is declared: a synthesized map entry has no source of
    /// its own, so its fields point at the map field that declared it (as buf does).
    fn loc_in(&self, m: &MessageDescriptor, path: &[i32]) -> Loc {
        if m.is_map_entry()
            && let Some(parent) = m.parent_message()
            && let Some(f) = parent
                .fields()
                .find(|f| matches!(f.kind(), Kind::Message(e) if e.full_name() == m.full_name()))
        {
            return self.loc(&m.parent_file(), f.path());
        }
        self.loc(&m.parent_file(), path)
    }
}

fn cardinality(f: &FieldDescriptor) -> &'static str {
    if f.is_map() {
        "map"
    } else if f.is_list() {
        "repeated"
    } else if f.cardinality() == Cardinality::Required {
        "required"
    } else if f.supports_presence() {
        "optional with explicit presence"
    } else {
        "optional with implicit presence"
    }
}

fn wire_cardinality(c: &str, json: bool) -> u8 {
    match c {
        "required" => 3,
        "map" if json => 4,
        "repeated" | "map" => 2,
        _ => 1,
    }
}

/// The protobuf type name of a field kind (`int64`, or the full name of a message or enum).
pub(crate) fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().into(),
        Kind::Enum(e) => e.full_name().into(),
    }
}

fn wire_group(kind: &Kind) -> u8 {
    match kind {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool => 1,
        Kind::Sint32 | Kind::Sint64 => 2,
        Kind::Fixed32 | Kind::Sfixed32 => 3,
        Kind::Fixed64 | Kind::Sfixed64 => 4,
        Kind::Float => 5,
        Kind::Double => 6,
        Kind::String | Kind::Bytes => 7,
        Kind::Message(_) => 8,
        Kind::Enum(_) => 9,
    }
}

fn json_group(kind: &Kind) -> u8 {
    match kind {
        Kind::Int32 | Kind::Uint32 | Kind::Sint32 | Kind::Fixed32 | Kind::Sfixed32 => 1,
        Kind::Int64 | Kind::Uint64 | Kind::Sint64 | Kind::Fixed64 | Kind::Sfixed64 => 2,
        Kind::Bool => 3,
        Kind::String => 4,
        Kind::Bytes => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::Message(_) => 8,
        Kind::Enum(_) => 9,
    }
}

/// Whether `new` reads every value `old` can hold as the same number (same wire group assumed).
fn range_preserved(old: &Kind, new: &Kind) -> bool {
    use Kind::*;
    matches!(
        (old, new),
        (Int32, Int64)
            | (Uint32, Uint64)
            | (Uint32, Int64)
            | (Bool, Int32 | Int64 | Uint32 | Uint64)
            | (Sint32, Sint64)
    ) || std::mem::discriminant(old) == std::mem::discriminant(new)
}

/// Whether two messages are identical on the wire (same numbers, encodings and cardinalities,
/// recursively), and also in JSON when `json` (same JSON names, same enum value names).
/// Recursion-safe: a pair already under comparison counts as identical.
pub(crate) fn same_shape(
    a: &MessageDescriptor,
    b: &MessageDescriptor,
    json: bool,
    seen: &mut HashSet<(String, String)>,
) -> bool {
    if !seen.insert((a.full_name().to_string(), b.full_name().to_string())) {
        return true;
    }
    if a.is_map_entry() != b.is_map_entry() {
        return false;
    }
    // Well-known types have their own JSON forms (Timestamp is an RFC 3339 string, Duration
    // "1.5s"): two different ones are never identical in JSON.
    if json && a.full_name() != b.full_name() && (is_wkt(a) || is_wkt(b)) {
        return false;
    }
    if a.fields().len() != b.fields().len() {
        return false;
    }
    for fa in a.fields() {
        let Some(fb) = b.get_field(fa.number()) else {
            return false;
        };
        if cardinality(&fa) != cardinality(&fb) || (json && fa.json_name() != fb.json_name()) {
            return false;
        }
        let ok = match (fa.kind(), fb.kind()) {
            (Kind::Message(ma), Kind::Message(mb)) => same_shape(&ma, &mb, json, seen),
            (Kind::Enum(ea), Kind::Enum(eb)) => {
                ea.values().len() == eb.values().len()
                    && ea.values().all(|va| {
                        eb.get_value(va.number())
                            .is_some_and(|vb| !json || vb.name() == va.name())
                    })
            }
            (ka, kb) => ka == kb,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn is_wkt(m: &MessageDescriptor) -> bool {
    m.package_name() == "google.protobuf"
}

fn syntax_name(f: &FileDescriptor) -> &'static str {
    match f.syntax() {
        Syntax::Proto2 => "proto2",
        Syntax::Proto3 => "proto3",
    }
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

    fn file_loc(&self, name: &str) -> Loc {
        (name.to_string(), self.n.src.line(name, &[]).or(Some(1)))
    }

    /// Where buf points a deletion: the nearest enclosing message still present on the new
    /// side, else the new file with the old file's path, else the first new file of the package.
    fn deleted_loc(&self, old_parent: Option<MessageDescriptor>, old_file: &FileDescriptor) -> Loc {
        let mut parent = old_parent;
        while let Some(p) = parent {
            if let Some(m) = self.n.messages.get(&self.pairing.map(p.full_name())) {
                return self.n.loc(&m.parent_file(), m.path());
            }
            parent = p.parent_message();
        }
        if self.n.files.contains_key(old_file.name()) {
            return self.file_loc(old_file.name());
        }
        let pkg = self.pairing.map(old_file.package_name());
        if let Some(f) = self.n.files.values().find(|f| f.package_name() == pkg) {
            return self.file_loc(f.name());
        }
        (String::new(), Some(1))
    }

    fn files(&mut self) {
        let o = self.o;
        let n = self.n;
        for (name, of) in &o.files {
            let Some(nf) = n.files.get(name) else {
                self.push(
                    "FILE_NO_DELETE",
                    name.clone(),
                    (String::new(), Some(1)),
                    format!("Previously present file \"{name}\" was deleted."),
                    Subject::NoWire("a file has no wire form; deleted types and services are reported on their own"),
                );
                continue;
            };
            let op = self.pairing.map(of.package_name());
            if op != nf.package_name() {
                self.push(
                    "FILE_SAME_PACKAGE",
                    name.clone(),
                    n.loc(nf, &[2]),
                    format!("File package changed from \"{}\" to \"{}\".", of.package_name(), nf.package_name()),
                    Subject::NoWire("every method path and type name of this file changes; see the service and method findings"),
                );
            }
            if syntax_name(of) != syntax_name(nf) {
                self.push(
                    "FILE_SAME_SYNTAX",
                    name.clone(),
                    n.loc(nf, &[12]),
                    format!("File syntax changed from \"{}\" to \"{}\".", syntax_name(of), syntax_name(nf)),
                    Subject::NoWire("syntax alone changes no encoding; field-level effects are reported per field"),
                );
            }
            self.file_options(name, of, nf);
            // Per-file deletions (FILE category), by names relative to each file's package
            // (a package rename is FILE_SAME_PACKAGE, not a deletion of everything).
            for (group, kind) in DECLARATIONS.iter().enumerate() {
                let names = |s: &Side, f: &FileDescriptor| -> BTreeMap<String, String> {
                    s.by_file
                        .get(f.name())
                        .map(|g| g[group].iter().cloned().collect())
                        .unwrap_or_default()
                };
                let new_names = names(n, nf);
                for (_, k) in names(o, of)
                    .into_iter()
                    .filter(|(r, _)| !new_names.contains_key(r))
                {
                    let d = o.declared(group).declaration(&k).expect("indexed by key");
                    let loc = self.deleted_loc(d.parent_message(), of);
                    self.push(
                        kind.file_rule,
                        d.full_name(),
                        loc,
                        format!(
                            "Previously present {} \"{}\" was deleted from file.",
                            kind.noun,
                            short(d.full_name(), d.package_name())
                        ),
                        Subject::NoWire(kind.deleted),
                    );
                }
            }
        }
        for name in n.files.keys() {
            if !o.files.contains_key(name) {
                let loc = self.file_loc(name);
                self.change(
                    "FILE_ADDED",
                    name.clone(),
                    loc,
                    format!("File \"{name}\" was added."),
                    Bump::Minor,
                );
            }
        }
    }

    /// A paired file whose descriptor changed in a way no rule or change entry describes
    /// (reserved ranges added, options outside the rules): a patch-level change.
    fn other_changes(&mut self) {
        let touched: BTreeSet<String> = self.out.iter().map(|r| r.path.clone()).collect();
        let strip = |f: &FileDescriptor| {
            let mut p = f.file_descriptor_proto().clone();
            p.source_code_info = None;
            p
        };
        let pairs: Vec<(String, FileDescriptor, FileDescriptor)> = self
            .o
            .files
            .iter()
            .filter_map(|(name, of)| {
                self.n
                    .files
                    .get(name)
                    .map(|nf| (name.clone(), of.clone(), nf.clone()))
            })
            .collect();
        for (name, of, nf) in pairs {
            if touched.contains(&name) || of.package_name() != nf.package_name() {
                continue;
            }
            if strip(&of) != strip(&nf) {
                let loc = self.file_loc(&name);
                self.change(
                    "FILE_CHANGED",
                    name.clone(),
                    loc,
                    format!(
                        "File \"{name}\" changed in a way no rule reports (reservations, options)."
                    ),
                    Bump::Patch,
                );
            }
        }
    }

    fn file_options(&mut self, name: &str, of: &FileDescriptor, nf: &FileDescriptor) {
        let d = prost_types::FileOptions::default();
        let oo = of.file_descriptor_proto().options.as_ref().unwrap_or(&d);
        let no = nf.file_descriptor_proto().options.as_ref().unwrap_or(&d);
        let checks: [(&'static str, &str, i32, String, String); 16] = [
            (
                "FILE_SAME_CC_ENABLE_ARENAS",
                "cc_enable_arenas",
                31,
                oo.cc_enable_arenas().to_string(),
                no.cc_enable_arenas().to_string(),
            ),
            (
                "FILE_SAME_CC_GENERIC_SERVICES",
                "cc_generic_services",
                16,
                oo.cc_generic_services().to_string(),
                no.cc_generic_services().to_string(),
            ),
            (
                "FILE_SAME_CSHARP_NAMESPACE",
                "csharp_namespace",
                37,
                oo.csharp_namespace().to_string(),
                no.csharp_namespace().to_string(),
            ),
            (
                "FILE_SAME_GO_PACKAGE",
                "go_package",
                11,
                oo.go_package().to_string(),
                no.go_package().to_string(),
            ),
            (
                "FILE_SAME_JAVA_GENERIC_SERVICES",
                "java_generic_services",
                17,
                oo.java_generic_services().to_string(),
                no.java_generic_services().to_string(),
            ),
            (
                "FILE_SAME_JAVA_MULTIPLE_FILES",
                "java_multiple_files",
                10,
                oo.java_multiple_files().to_string(),
                no.java_multiple_files().to_string(),
            ),
            (
                "FILE_SAME_JAVA_OUTER_CLASSNAME",
                "java_outer_classname",
                8,
                oo.java_outer_classname().to_string(),
                no.java_outer_classname().to_string(),
            ),
            (
                "FILE_SAME_JAVA_PACKAGE",
                "java_package",
                1,
                oo.java_package().to_string(),
                no.java_package().to_string(),
            ),
            (
                "FILE_SAME_OBJC_CLASS_PREFIX",
                "objc_class_prefix",
                36,
                oo.objc_class_prefix().to_string(),
                no.objc_class_prefix().to_string(),
            ),
            (
                "FILE_SAME_OPTIMIZE_FOR",
                "optimize_for",
                9,
                oo.optimize_for().as_str_name().to_string(),
                no.optimize_for().as_str_name().to_string(),
            ),
            (
                "FILE_SAME_PHP_CLASS_PREFIX",
                "php_class_prefix",
                40,
                oo.php_class_prefix().to_string(),
                no.php_class_prefix().to_string(),
            ),
            (
                "FILE_SAME_PHP_METADATA_NAMESPACE",
                "php_metadata_namespace",
                44,
                oo.php_metadata_namespace().to_string(),
                no.php_metadata_namespace().to_string(),
            ),
            (
                "FILE_SAME_PHP_NAMESPACE",
                "php_namespace",
                41,
                oo.php_namespace().to_string(),
                no.php_namespace().to_string(),
            ),
            (
                "FILE_SAME_PY_GENERIC_SERVICES",
                "py_generic_services",
                18,
                oo.py_generic_services().to_string(),
                no.py_generic_services().to_string(),
            ),
            (
                "FILE_SAME_RUBY_PACKAGE",
                "ruby_package",
                45,
                oo.ruby_package().to_string(),
                no.ruby_package().to_string(),
            ),
            (
                "FILE_SAME_SWIFT_PREFIX",
                "swift_prefix",
                39,
                oo.swift_prefix().to_string(),
                no.swift_prefix().to_string(),
            ),
        ];
        for (rule, opt, num, a, b) in checks {
            if a != b {
                let loc = self.n.loc(nf, &[8, num]);
                self.push(
                    rule,
                    name.to_string(),
                    loc,
                    format!("File option \"{opt}\" changed from \"{a}\" to \"{b}\"."),
                    Subject::NoWire(CODEGEN_OPTION),
                );
            }
        }
    }

    fn packages(&mut self) {
        let o = self.o;
        let n = self.n;
        for p in o.packages.difference(&n.packages) {
            self.push(
                "PACKAGE_NO_DELETE",
                p.clone(),
                (String::new(), Some(1)),
                format!("Previously present package \"{p}\" was deleted."),
                Subject::NoWire("see the service and method findings for what callers get"),
            );
        }
        // Like buf: a package-level deletion is only reported when the new package still
        // declares at least one element of that kind.
        for (group, kind) in DECLARATIONS.iter().enumerate() {
            let (old_all, new_all) = (o.declared(group), n.declared(group));
            let new_pkgs: BTreeSet<&str> = new_all.all().map(|(_, d)| d.package_name()).collect();
            for (k, d) in old_all.all() {
                if !new_all.has(k) && new_pkgs.contains(self.pairing.map(d.package_name()).as_str())
                {
                    let loc = self.deleted_loc(d.parent_message(), &d.parent_file());
                    self.push(
                        kind.package_rule,
                        d.full_name(),
                        loc,
                        format!(
                            "Previously present {} \"{}\" was deleted from package \"{}\".",
                            kind.noun,
                            short(d.full_name(), d.package_name()),
                            d.package_name()
                        ),
                        Subject::NoWire(kind.deleted),
                    );
                }
            }
        }
    }

    /// The `*_ADDED` change entries of one kind of declaration.
    fn added(&mut self, group: usize) {
        let kind = &DECLARATIONS[group];
        let Some((rule, title)) = kind.added else {
            return;
        };
        let (o, n) = (self.o, self.n);
        let old_all = o.declared(group);
        for (k, d) in n.declared(group).all() {
            if !old_all.has(k) && !d.is_map_entry() {
                let loc = n.loc(&d.parent_file(), d.path());
                self.change(
                    rule,
                    k.clone(),
                    loc,
                    format!("{title} \"{k}\" was added."),
                    Bump::Minor,
                );
            }
        }
    }

    fn messages(&mut self) {
        let o = self.o;
        let n = self.n;
        for (k, om) in &o.messages {
            let Some(nm) = n.messages.get(k) else {
                continue;
            };
            self.message_pair(om, nm);
        }
        self.added(MESSAGES);
    }

    fn message_pair(&mut self, om: &MessageDescriptor, nm: &MessageDescriptor) {
        let n = self.n;
        let nfile = nm.parent_file();
        let mloc = n.loc_in(nm, nm.path());
        let mname = short(nm.full_name(), nm.package_name());
        let element = om.full_name().to_string();
        self.comments(
            &om.parent_file(),
            om.path(),
            &nfile,
            nm.path(),
            om.full_name(),
        );
        // Fields deleted.
        let (old_reserved, new_reserved) = (Reserved::message(om), Reserved::message(nm));
        for of in om.fields() {
            if nm.get_field(of.number()).is_some() {
                continue;
            }
            let deleted = Deleted {
                rules: FIELD_DELETED,
                element: format!("{element}.{}", of.name()),
                loc: mloc.clone(),
                what: format!(
                    "Previously present field \"{}\" with name \"{}\" on message \"{mname}\" was deleted",
                    of.number(),
                    of.name()
                ),
                number: of.number().into(),
                name: of.name(),
            };
            let subject = Subject::Field {
                old_msg: om.clone(),
                new_msg: nm.clone(),
                number: of.number(),
            };
            self.deleted(deleted, &new_reserved, subject);
        }
        for nf in nm.fields() {
            match om.get_field(nf.number()) {
                Some(of) => self.field_pair(om, nm, &of, &nf, mname),
                None => {
                    let loc = n.loc(&nfile, nf.path());
                    if nf.cardinality() != Cardinality::Required {
                        self.change(
                            "FIELD_ADDED",
                            format!("{element}.{}", nf.name()),
                            loc,
                            format!(
                                "Field \"{}\" with name \"{}\" was added to message \"{mname}\".",
                                nf.number(),
                                nf.name()
                            ),
                            Bump::Minor,
                        );
                    }
                }
            }
        }
        // Oneofs.
        let real = |m: &MessageDescriptor| -> BTreeSet<String> {
            m.oneofs()
                .filter(|x| !x.is_synthetic())
                .map(|x| x.name().to_string())
                .collect()
        };
        for name in real(om).difference(&real(nm)) {
            self.push(
                "ONEOF_NO_DELETE",
                format!("{element}.{name}"),
                mloc.clone(),
                format!("Previously present oneof \"{name}\" on message \"{mname}\" was deleted."),
                Subject::NoWire("fields are reported on their own (FIELD_SAME_ONEOF)"),
            );
        }
        // Required fields.
        let required = |m: &MessageDescriptor| -> BTreeSet<u32> {
            m.fields()
                .filter(|f| f.cardinality() == Cardinality::Required)
                .map(|f| f.number())
                .collect()
        };
        let (oreq, nreq) = (required(om), required(nm));
        for (how, nums) in [("deleted", &oreq - &nreq), ("added", &nreq - &oreq)] {
            for num in nums {
                // A deleted one points at the message, an added one at the new field.
                let loc = match nm.get_field(num) {
                    Some(nf) if how == "added" => n.loc(&nfile, nf.path()),
                    _ => mloc.clone(),
                };
                let subject = Subject::Field {
                    old_msg: om.clone(),
                    new_msg: nm.clone(),
                    number: num,
                };
                self.push("MESSAGE_SAME_REQUIRED_FIELDS", element.clone(), loc, format!("Message \"{mname}\" had required field \"{num}\" {how}. Required fields must always be sent, so if one side does not know about the required field, this will result in a breakage."), subject);
            }
        }
        // Reserved ranges and names.
        let on = format!("message \"{mname}\"");
        self.unreserved(
            "RESERVED_MESSAGE_NO_DELETE",
            &element,
            &mloc,
            &on,
            (&old_reserved, &new_reserved),
        );
        // Extension ranges.
        let new_ext: Vec<(i64, i64)> = nm
            .extension_ranges()
            .map(|r| (r.start as i64, r.end as i64 - 1))
            .collect();
        for rg in om.extension_ranges() {
            let (a, b) = (rg.start as i64, rg.end as i64 - 1);
            if !subtract((a, b), &new_ext).is_empty() {
                self.push("EXTENSION_MESSAGE_NO_DELETE", element.clone(), mloc.clone(), format!("Previously present extension range \"[{a},{b}]\" on message \"{mname}\" was deleted."), Subject::NoWire("extensions in that range are reported on their own"));
            }
        }
        // Options with effects on generated code or JSON.
        let accessor = |m: &MessageDescriptor| {
            m.descriptor_proto()
                .options
                .as_ref()
                .map(|x| x.no_standard_descriptor_accessor())
                .unwrap_or(false)
        };
        if !accessor(om) && accessor(nm) {
            self.push("MESSAGE_NO_REMOVE_STANDARD_DESCRIPTOR_ACCESSOR", element.clone(), n.loc(&nfile, &[nm.path(), &[7, 2]].concat()), format!("Message \"{mname}\" changed option \"no_standard_descriptor_accessor\" from \"false\" to \"true\"."), Subject::NoWire(CODEGEN_OPTION));
        }
        if let Some(to) = json_format_lost(&om.parent_file(), &nfile) {
            self.push(
                "MESSAGE_SAME_JSON_FORMAT",
                element.clone(),
                mloc.clone(),
                format!("Message \"{mname}\" changed JSON format from \"ALLOW\" to \"{to}\"."),
                Subject::NoWire(
                    "JSON field-name conflicts stop being rejected; bytes are unchanged",
                ),
            );
        }
    }

    fn field_pair(
        &mut self,
        om: &MessageDescriptor,
        nm: &MessageDescriptor,
        of: &FieldDescriptor,
        nf: &FieldDescriptor,
        mname: &str,
    ) {
        let n = self.n;
        let nfile = nm.parent_file();
        let floc = n.loc_in(nm, nf.path());
        let el = format!("{}.{}", om.full_name(), of.name());
        let num = of.number();
        let subject = Subject::Field {
            old_msg: om.clone(),
            new_msg: nm.clone(),
            number: num,
        };
        let head = format!(
            "Field \"{num}\" with name \"{}\" on message \"{mname}\"",
            nf.name()
        );
        self.comments(&om.parent_file(), of.path(), &nfile, nf.path(), &el);
        if of.name() != nf.name() {
            self.push(
                "FIELD_SAME_NAME",
                el.clone(),
                floc.clone(),
                format!(
                    "Field \"{num}\" on message \"{mname}\" changed name from \"{}\" to \"{}\".",
                    of.name(),
                    nf.name()
                ),
                subject.clone(),
            );
        }
        if of.json_name() != nf.json_name() {
            self.push(
                "FIELD_SAME_JSON_NAME",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed option \"json_name\" from \"{}\" to \"{}\".",
                    of.json_name(),
                    nf.json_name()
                ),
                subject.clone(),
            );
        }
        let jstype = |f: &FieldDescriptor| {
            f.field_descriptor_proto()
                .options
                .as_ref()
                .map(|x| x.jstype().as_str_name())
                .unwrap_or("JS_NORMAL")
        };
        if jstype(of) != jstype(nf) {
            self.push(
                "FIELD_SAME_JSTYPE",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed option \"jstype\" from \"{}\" to \"{}\".",
                    jstype(of),
                    jstype(nf)
                ),
                Subject::NoWire(CODEGEN_OPTION),
            );
        }
        // Types.
        let (ok, nk) = (of.kind(), nf.kind());
        let oname = match &ok {
            Kind::Message(m) => self.pairing.map(m.full_name()),
            Kind::Enum(e) => self.pairing.map(e.full_name()),
            k => kind_name(k),
        };
        let nname = kind_name(&nk);
        let named = matches!(ok, Kind::Message(_) | Kind::Enum(_));
        let type_changed =
            std::mem::discriminant(&ok) != std::mem::discriminant(&nk) || oname != nname;
        if type_changed {
            let shown = |k: &Kind, name: &str, other_named: bool| -> String {
                if matches!(k, Kind::Enum(_)) && !other_named {
                    "enum".to_string()
                } else if matches!(k, Kind::Message(_)) && !other_named {
                    "message".to_string()
                } else {
                    name.to_string()
                }
            };
            let both_named = named && matches!(nk, Kind::Message(_) | Kind::Enum(_));
            let (a, b) = (
                shown(&ok, &kind_name(&ok), both_named),
                shown(&nk, &nname, both_named),
            );
            let msg = format!("{head} changed type from \"{a}\" to \"{b}\".");
            self.push(
                "FIELD_SAME_TYPE",
                el.clone(),
                floc.clone(),
                msg.clone(),
                subject.clone(),
            );
            let identical = match (&ok, &nk) {
                (Kind::Message(a), Kind::Message(b)) => Some((
                    same_shape(a, b, false, &mut HashSet::new()),
                    same_shape(a, b, true, &mut HashSet::new()),
                )),
                _ => None,
            };
            let wire_bad = wire_group(&ok) != wire_group(&nk)
                || (matches!(ok, Kind::Bytes) && matches!(nk, Kind::String))
                || (named && oname != nname);
            // Under WIRE and WIRE_JSON, a rename to an identical type is not breaking.
            let json_bad = wire_bad || json_group(&ok) != json_group(&nk);
            for (rule, breaks, same) in [
                (
                    "FIELD_WIRE_COMPATIBLE_TYPE",
                    wire_bad,
                    identical.map(|x| x.0),
                ),
                (
                    "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
                    json_bad,
                    identical.map(|x| x.1),
                ),
            ] {
                if breaks {
                    let raw = Raw {
                        identical_rename: same.map(|x| (x, x)),
                        ..self.raw(rule, &el, floc.clone(), msg.clone(), subject.clone())
                    };
                    self.out.push(raw);
                }
            }
            if wire_group(&ok) == wire_group(&nk)
                && !named
                && !range_preserved(&ok, &nk)
                && !matches!(nk, Kind::Bytes | Kind::String)
            {
                self.push("GRPC_FIELD_SAME_VALUE_RANGE", el.clone(), floc.clone(), format!("{head} changed type from \"{}\" to \"{nname}\": same wire type, but values are truncated or reinterpreted.", kind_name(&ok)), subject.clone());
            }
        }
        // Cardinality.
        let (oc, nc) = (cardinality(of), cardinality(nf));
        if oc != nc {
            let msg = format!("{head} changed cardinality from \"{oc}\" to \"{nc}\".");
            let differs = |json: bool| wire_cardinality(oc, json) != wire_cardinality(nc, json);
            for (rule, breaks) in [
                ("FIELD_SAME_CARDINALITY", true),
                ("FIELD_WIRE_COMPATIBLE_CARDINALITY", differs(false)),
                ("FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY", differs(true)),
            ] {
                if breaks {
                    self.push(rule, el.clone(), floc.clone(), msg.clone(), subject.clone());
                }
            }
        }
        // Oneof membership.
        let oneof = |f: &FieldDescriptor| {
            f.containing_oneof()
                .filter(|x| !x.is_synthetic())
                .map(|x| x.name().to_string())
        };
        let moved = match (oneof(of), oneof(nf)) {
            (None, Some(_)) => Some("from outside to inside a oneof".to_string()),
            (Some(_), None) => Some("from inside to outside a oneof".to_string()),
            (Some(a), Some(b)) if a != b => Some(format!("from oneof \"{a}\" to oneof \"{b}\"")),
            _ => None,
        };
        if let Some(moved) = moved {
            let msg = format!("{head} moved {moved}.");
            self.push(
                "FIELD_SAME_ONEOF",
                el.clone(),
                floc.clone(),
                msg,
                subject.clone(),
            );
        }
        // Defaults.
        let (od, nd) = (
            of.field_descriptor_proto().default_value.clone(),
            nf.field_descriptor_proto().default_value.clone(),
        );
        if !type_changed && od != nd {
            self.push(
                "FIELD_SAME_DEFAULT",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed default value from {} to {}.",
                    od.as_deref().unwrap_or("(none)"),
                    nd.as_deref().unwrap_or("(none)")
                ),
                subject.clone(),
            );
        }
        if !type_changed && !of.is_list() && !of.is_map() {
            let (a, b) = (
                value_text(&of.default_value(), &ok),
                value_text(&nf.default_value(), &nk),
            );
            if a != b {
                self.push("GRPC_FIELD_SAME_DEFAULT", el.clone(), floc.clone(), format!("{head}: a reader that finds the field absent now assumes {b} instead of {a}."), subject.clone());
            }
        }
        // UTF-8 validation (proto3 verifies strings, proto2 does not).
        if matches!(ok, Kind::String)
            && matches!(nk, Kind::String)
            && syntax_name(&om.parent_file()) != syntax_name(&nfile)
        {
            let v = |f: &FileDescriptor| {
                if f.syntax() == Syntax::Proto3 {
                    "VERIFY"
                } else {
                    "NONE"
                }
            };
            self.push(
                "FIELD_SAME_UTF8_VALIDATION",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed UTF-8 validation from \"{}\" to \"{}\".",
                    v(&om.parent_file()),
                    v(&nfile)
                ),
                subject.clone(),
            );
        }
        if matches!(ok, Kind::String) && matches!(nk, Kind::String) {
            let java = |f: &FileDescriptor| {
                let check = f
                    .file_descriptor_proto()
                    .options
                    .as_ref()
                    .is_some_and(|o| o.java_string_check_utf8());
                if check || f.syntax() == Syntax::Proto3 {
                    "VERIFY"
                } else {
                    "NONE"
                }
            };
            let (a, b) = (java(&om.parent_file()), java(&nfile));
            if a != b {
                self.push(
                    "FIELD_SAME_JAVA_UTF8_VALIDATION",
                    el,
                    floc,
                    format!("{head} changed Java string UTF8 validation from \"{a}\" to \"{b}\"."),
                    Subject::NoWire(CODEGEN_OPTION),
                );
            }
        }
    }

    fn comments(
        &mut self,
        of: &FileDescriptor,
        op: &[i32],
        nf: &FileDescriptor,
        np: &[i32],
        element: &str,
    ) {
        let a = self.o.src.comments(of.name(), op);
        let b = self.n.src.comments(nf.name(), np);
        if a != b {
            let loc = self.n.loc(nf, np);
            self.change(
                "COMMENT_CHANGED",
                element.to_string(),
                loc,
                format!("The comments on \"{element}\" changed."),
                Bump::Patch,
            );
        }
    }

    /// A deleted field or enum value: its plain deletion, and its deletion without
    /// reserving the number or the name where the new side does not reserve them.
    fn deleted(&mut self, d: Deleted, new_reserved: &Reserved, subject: Subject) {
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
    fn unreserved(
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

    fn enums(&mut self) {
        let o = self.o;
        let n = self.n;
        for (k, oe) in &o.enums {
            let Some(ne) = n.enums.get(k) else { continue };
            let nfile = ne.parent_file();
            let eloc = n.loc(&nfile, ne.path());
            let ename = short(ne.full_name(), ne.package_name());
            let element = oe.full_name().to_string();
            self.comments(&oe.parent_file(), oe.path(), &nfile, ne.path(), &element);
            let (old_reserved, new_reserved) =
                (Reserved::enumeration(oe), Reserved::enumeration(ne));
            let mut seen = BTreeSet::new();
            for ov in oe.values() {
                if !seen.insert(ov.number()) {
                    continue;
                }
                let num = ov.number();
                let vel = format!("{element}.{}", ov.name());
                let subject = Subject::EnumNumber {
                    old: oe.clone(),
                    new: ne.clone(),
                    number: num,
                };
                match ne.get_value(num) {
                    None => {
                        let deleted = Deleted {
                            rules: ENUM_VALUE_DELETED,
                            element: vel,
                            loc: eloc.clone(),
                            what: format!(
                                "Previously present enum value \"{num}\" on enum \"{ename}\" was deleted"
                            ),
                            number: num.into(),
                            name: ov.name(),
                        };
                        self.deleted(deleted, &new_reserved, subject);
                    }
                    Some(nv) => {
                        let new_for: Vec<prost_reflect::EnumValueDescriptor> =
                            ne.values().filter(|v| v.number() == num).collect();
                        let old_names: Vec<String> = oe
                            .values()
                            .filter(|v| v.number() == num)
                            .map(|v| v.name().to_string())
                            .collect();
                        let new_names: Vec<String> =
                            new_for.iter().map(|v| v.name().to_string()).collect();
                        if old_names.iter().any(|x| !new_names.contains(x)) {
                            // One finding per new value with that number, as buf does.
                            let msg = if old_names.len() == 1 && new_names.len() == 1 {
                                format!(
                                    "Enum value \"{num}\" on enum \"{ename}\" changed name from \"{}\" to \"{}\".",
                                    ov.name(),
                                    nv.name()
                                )
                            } else {
                                let q = |v: &[String]| {
                                    v.iter()
                                        .map(|x| format!("\"{x}\""))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                };
                                format!(
                                    "Enum value \"{num}\" on enum \"{ename}\" changed names from {} to {}.",
                                    q(&old_names),
                                    q(&new_names)
                                )
                            };
                            for v in &new_for {
                                self.push(
                                    "ENUM_VALUE_SAME_NAME",
                                    vel.clone(),
                                    n.loc(&nfile, v.path()),
                                    msg.clone(),
                                    subject.clone(),
                                );
                            }
                        }
                    }
                }
            }
            for ov in oe.values() {
                if let Some(nv) = ne.get_value_by_name(ov.name())
                    && nv.number() != ov.number()
                {
                    self.push("GRPC_ENUM_VALUE_SAME_NUMBER", format!("{element}.{}", ov.name()), n.loc(&nfile, nv.path()), format!("Enum value \"{}\" on enum \"{ename}\" moved from number {} to {}: old senders' {} now means {}.", ov.name(), ov.number(), nv.number(), ov.number(), ne.get_value(ov.number()).map(|v| v.name().to_string()).unwrap_or_else(|| "an unknown value".into())), Subject::EnumNumber { old: oe.clone(), new: ne.clone(), number: ov.number() });
                }
            }
            for nv in ne.values() {
                if oe.get_value(nv.number()).is_none() {
                    self.change(
                        "ENUM_VALUE_ADDED",
                        format!("{element}.{}", nv.name()),
                        n.loc(&nfile, nv.path()),
                        format!(
                            "Enum value \"{}\" = {} was added to enum \"{ename}\".",
                            nv.name(),
                            nv.number()
                        ),
                        Bump::Minor,
                    );
                }
            }
            let on = format!("enum \"{ename}\"");
            self.unreserved(
                "RESERVED_ENUM_NO_DELETE",
                &element,
                &eloc,
                &on,
                (&old_reserved, &new_reserved),
            );
            let open = |f: &FileDescriptor| f.syntax() == Syntax::Proto3;
            if open(&oe.parent_file()) != open(&nfile) {
                let t = |b: bool| if b { "open" } else { "closed" };
                self.push("ENUM_SAME_TYPE", element.clone(), eloc.clone(), format!("Enum \"{ename}\" changed from {} to {}.", t(open(&oe.parent_file())), t(open(&nfile))), Subject::NoWire("unknown numbers are kept (open) or moved to unknown fields (closed); known values are unaffected"));
            }
            if let Some(to) = json_format_lost(&oe.parent_file(), &nfile) {
                self.push(
                    "ENUM_SAME_JSON_FORMAT",
                    element.clone(),
                    eloc,
                    format!("Enum \"{ename}\" changed JSON format from \"ALLOW\" to \"{to}\"."),
                    Subject::NoWire("JSON name conflicts stop being rejected; bytes are unchanged"),
                );
            }
        }
        self.added(ENUMS);
    }

    fn services(&mut self) {
        let o = self.o;
        let n = self.n;
        for (k, os) in &o.services {
            let Some(ns) = n.services.get(k) else {
                let loc = self.deleted_loc(None, &os.parent_file());
                let first = os.methods().next();
                let subject = match first {
                    Some(m) => Subject::Method { old: m, new: None },
                    None => Subject::NoWire("the service had no methods"),
                };
                self.push(
                    "GRPC_SERVICE_NO_DELETE",
                    os.full_name(),
                    loc,
                    format!(
                        "Service \"{}\" is gone: every call of an old client gets UNIMPLEMENTED.",
                        os.full_name()
                    ),
                    subject,
                );
                continue;
            };
            let nfile = ns.parent_file();
            let sloc = n.loc(&nfile, ns.path());
            self.comments(
                &os.parent_file(),
                os.path(),
                &nfile,
                ns.path(),
                os.full_name(),
            );
            for om in os.methods() {
                let el = om.full_name().to_string();
                let Some(nmeth) = ns.methods().find(|m| m.name() == om.name()) else {
                    for (rule, msg) in [
                        (
                            "RPC_NO_DELETE",
                            format!(
                                "Previously present RPC \"{}\" on service \"{}\" was deleted.",
                                om.name(),
                                ns.name()
                            ),
                        ),
                        (
                            "GRPC_RPC_NO_DELETE",
                            format!(
                                "Method /{}/{} is gone: old clients calling it get UNIMPLEMENTED.",
                                os.full_name(),
                                om.name()
                            ),
                        ),
                    ] {
                        let subject = Subject::Method {
                            old: om.clone(),
                            new: None,
                        };
                        self.push(rule, el.clone(), sloc.clone(), msg, subject);
                    }
                    continue;
                };
                let mloc = n.loc(&nfile, nmeth.path());
                self.comments(&os.parent_file(), om.path(), &nfile, nmeth.path(), &el);
                let subject = Subject::Method {
                    old: om.clone(),
                    new: Some(nmeth.clone()),
                };
                let shape = |c: bool, s: bool| match (c, s) {
                    (false, false) => "unary",
                    (true, false) => "client streaming",
                    (false, true) => "server streaming",
                    (true, true) => "bidirectional streaming",
                };
                let un = |b: bool| if b { "streaming" } else { "unary" };
                for (rule, side, a, b) in [
                    (
                        "RPC_SAME_CLIENT_STREAMING",
                        "client",
                        om.is_client_streaming(),
                        nmeth.is_client_streaming(),
                    ),
                    (
                        "RPC_SAME_SERVER_STREAMING",
                        "server",
                        om.is_server_streaming(),
                        nmeth.is_server_streaming(),
                    ),
                ] {
                    if a != b {
                        let msg = format!(
                            "RPC \"{}\" on service \"{}\" changed from {side} {} to {side} {}.",
                            om.name(),
                            ns.name(),
                            un(a),
                            un(b)
                        );
                        self.push(rule, el.clone(), mloc.clone(), msg, subject.clone());
                    }
                }
                let (oshape, nshape) = (
                    shape(om.is_client_streaming(), om.is_server_streaming()),
                    shape(nmeth.is_client_streaming(), nmeth.is_server_streaming()),
                );
                if oshape != nshape {
                    self.push(
                        "GRPC_RPC_SAME_STREAMING",
                        el.clone(),
                        mloc.clone(),
                        format!(
                            "Method /{}/{} changed from {oshape} to {nshape}.",
                            os.full_name(),
                            om.name()
                        ),
                        subject.clone(),
                    );
                }
                for (rule, grule, what, ot, nt) in [
                    (
                        "RPC_SAME_REQUEST_TYPE",
                        "GRPC_RPC_SAME_REQUEST_TYPE",
                        "request",
                        om.input(),
                        nmeth.input(),
                    ),
                    (
                        "RPC_SAME_RESPONSE_TYPE",
                        "GRPC_RPC_SAME_RESPONSE_TYPE",
                        "response",
                        om.output(),
                        nmeth.output(),
                    ),
                ] {
                    if self.pairing.map(ot.full_name()) == nt.full_name() {
                        continue;
                    }
                    let wire_same = same_shape(&ot, &nt, false, &mut HashSet::new());
                    let json_same = same_shape(&ot, &nt, true, &mut HashSet::new());
                    let tsubject = Subject::Types {
                        old: ot.clone(),
                        new: nt.clone(),
                    };
                    let msg = format!(
                        "RPC \"{}\" on service \"{}\" changed {what} type from \"{}\" to \"{}\".",
                        om.name(),
                        ns.name(),
                        ot.full_name(),
                        nt.full_name()
                    );
                    let raw = Raw {
                        identical_rename: Some((wire_same, json_same)),
                        ..self.raw(rule, &el, mloc.clone(), msg.clone(), tsubject.clone())
                    };
                    self.out.push(raw);
                    if !wire_same {
                        self.push(
                            grule,
                            el.clone(),
                            mloc.clone(),
                            format!("{msg} The types differ on the wire."),
                            tsubject,
                        );
                    }
                }
                let idem = |m: &MethodDescriptor| {
                    m.method_descriptor_proto()
                        .options
                        .as_ref()
                        .map(|x| x.idempotency_level().as_str_name())
                        .unwrap_or("IDEMPOTENCY_UNKNOWN")
                };
                if idem(&om) != idem(&nmeth) {
                    let loc = n.loc(&nfile, &[nmeth.path(), &[4, 34]].concat());
                    self.push("RPC_SAME_IDEMPOTENCY_LEVEL", el.clone(), loc, format!("RPC \"{}\" on service \"{}\" changed option \"idempotency_level\" from \"{}\" to \"{}\".", om.name(), ns.name(), idem(&om), idem(&nmeth)), Subject::NoWire("idempotency_level only changes whether clients may retry or use GET; the bytes are the same"));
                }
            }
            for nmeth in ns.methods() {
                if !os.methods().any(|m| m.name() == nmeth.name()) {
                    let loc = n.loc(&nfile, nmeth.path());
                    self.change(
                        "RPC_ADDED",
                        nmeth.full_name(),
                        loc,
                        format!("Method /{}/{} was added.", ns.full_name(), nmeth.name()),
                        Bump::Minor,
                    );
                }
            }
        }
        self.added(SERVICES);
    }
}

/// The reserved numbers (inclusive ranges) and names of a message or enum.
struct Reserved<'d> {
    ranges: Vec<(i64, i64)>,
    names: Vec<&'d str>,
}

impl<'d> Reserved<'d> {
    fn message(m: &'d MessageDescriptor) -> Reserved<'d> {
        Reserved {
            ranges: m
                .reserved_ranges()
                .map(|r| (r.start as i64, r.end as i64 - 1))
                .collect(),
            names: m.reserved_names().collect(),
        }
    }

    fn enumeration(e: &'d EnumDescriptor) -> Reserved<'d> {
        Reserved {
            ranges: e
                .reserved_ranges()
                .map(|r| (*r.start() as i64, *r.end() as i64))
                .collect(),
            names: e.reserved_names().collect(),
        }
    }

    fn has_number(&self, n: i64) -> bool {
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&n))
    }
}

/// A field or enum value that the new side no longer has.
struct Deleted<'d> {
    /// The plain deletion, the deletion without reserving the number, and the name.
    rules: [&'static str; 3],
    element: String,
    loc: Loc,
    /// "Previously present … was deleted", without the full stop.
    what: String,
    number: i64,
    name: &'d str,
}

const FIELD_DELETED: [&str; 3] = [
    "FIELD_NO_DELETE",
    "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
    "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
];
const ENUM_VALUE_DELETED: [&str; 3] = [
    "ENUM_VALUE_NO_DELETE",
    "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
    "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
];

const TYPE_DELETED: &str = "a deleted type has no bytes of its own; fields and methods that used it are reported on their own";
const RESERVED: &str = "reservations only guard future edits; current bytes are unaffected";
const CODEGEN_OPTION: &str = "a code-generation option; the bytes and the JSON form are unchanged";

fn json_format(f: &FileDescriptor) -> &'static str {
    match f.syntax() {
        Syntax::Proto3 => "ALLOW",
        Syntax::Proto2 => "LEGACY_BEST_EFFORT",
    }
}

/// The new JSON format when it no longer is `ALLOW` (what buf reports).
fn json_format_lost(old: &FileDescriptor, new: &FileDescriptor) -> Option<&'static str> {
    (json_format(old) == "ALLOW" && json_format(new) != "ALLOW").then(|| json_format(new))
}

/// A name relative to its package (`Item.Inner`).
fn short<'a>(full: &'a str, package: &str) -> &'a str {
    if package.is_empty() {
        full
    } else {
        full.strip_prefix(package)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(full)
    }
}

/// `range` minus the union of `others` (all inclusive).
fn subtract(range: (i64, i64), others: &[(i64, i64)]) -> Vec<(i64, i64)> {
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

fn fmt_ranges(r: &[(i64, i64)]) -> String {
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

/// A value as text, enums by name.
pub(crate) fn value_text(v: &Value, kind: &Kind) -> String {
    match (v, kind) {
        (Value::EnumNumber(n), Kind::Enum(e)) => match e.get_value(*n) {
            Some(x) => x.name().to_string(),
            None => format!("unknown enum value {n}"),
        },
        (Value::String(s), _) => format!("{s:?}"),
        (Value::Bytes(b), _) => format!("bytes {:02x?}", b.as_ref()),
        (Value::Bool(b), _) => b.to_string(),
        (Value::I32(x), _) => x.to_string(),
        (Value::I64(x), _) => x.to_string(),
        (Value::U32(x), _) => x.to_string(),
        (Value::U64(x), _) => x.to_string(),
        (Value::F32(x), _) => x.to_string(),
        (Value::F64(x), _) => x.to_string(),
        (Value::EnumNumber(n), _) => n.to_string(),
        (Value::Message(_), _) => "a message".to_string(),
        (Value::List(l), _) => format!("{} elements", l.len()),
        (Value::Map(m), _) => format!("{} entries", m.len()),
    }
}

/// Applies the selected categories to raw results.
pub(crate) fn classify(raws: Vec<Raw>, selected: &[Category]) -> Vec<(Finding, Subject)> {
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let (category, breaking, semver, message) = if let Some(bump) = raw.change {
            (Category::Change, false, bump, raw.message)
        } else {
            let cats = rule_info(raw.rule).map(|r| r.categories).unwrap_or(&[]);
            let pick = Category::SELECTABLE.iter().copied().find(|c| {
                selected.contains(c)
                    && cats.contains(c)
                    && !match (c, raw.identical_rename) {
                        (Category::Wire, Some((wire, _))) => wire,
                        (Category::WireJson, Some((_, json))) => json,
                        _ => false,
                    }
            });
            match pick {
                Some(c) => (c, true, Bump::Major, raw.message),
                None => {
                    let why = if raw.identical_rename.is_some_and(|(w, j)| w || j) {
                        "identical on the wire".to_string()
                    } else {
                        format!(
                            "only in {}",
                            cats.iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    (
                        Category::Change,
                        false,
                        Bump::Patch,
                        format!(
                            "{} (not breaking under the selected categories: {why})",
                            raw.message
                        ),
                    )
                }
            }
        };
        out.push((
            Finding {
                rule: raw.rule.to_string(),
                category,
                element: raw.element,
                path: raw.path,
                line: raw.line,
                message,
                breaking,
                semver,
                confirmation: None,
            },
            raw.subject,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_stems_pair_packages() {
        assert_eq!(version_stem("increment.v1"), Some("increment"));
        assert_eq!(version_stem("a.b.v12"), Some("a.b"));
        assert_eq!(version_stem("a.b.vx"), None);
        assert_eq!(version_stem("a.b"), None);
        let p = Pairing {
            pairs: vec![("increment.v1".into(), "increment.v2".into())],
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
