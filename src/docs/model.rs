//! What `testbed docs` documents of an API, as protoc-gen-doc does: per package its services
//! and methods (with their streaming shapes and `google.api.http` bindings), messages (nested
//! ones by their full names) with their fields, and enums with their values; each with the
//! comments of its `.proto` (from the descriptors' source info: reflection carries none) and
//! whether it is deprecated. The report's API section is built from the same model.

use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, Value,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// One package of the API.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDoc {
    /// The protobuf package.
    pub package: String,
    /// The files that declare it.
    pub files: Vec<String>,
    /// Services with their methods.
    pub services: Vec<ServiceDoc>,
    /// Messages with their fields, nested ones after their parent.
    pub messages: Vec<MessageDoc>,
    /// Enums with their values.
    pub enums: Vec<EnumDoc>,
    /// Extensions declared (at the top of a file or inside a message).
    pub extensions: Vec<ExtensionDoc>,
}

/// An extension field (`extend Message { ... }`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionDoc {
    /// Full name.
    pub name: String,
    /// The message it extends, in full.
    pub extends: String,
    /// Number.
    pub number: u32,
    /// Type and label, as for a field.
    pub kind: String,
    /// Its comment.
    pub comment: String,
}

/// A service and its methods.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceDoc {
    /// Full name.
    pub name: String,
    /// Its comment in the `.proto`.
    pub comment: String,
    /// Marked `deprecated = true`.
    pub deprecated: bool,
    /// Its methods.
    pub methods: Vec<MethodDoc>,
}

/// One method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodDoc {
    /// Name.
    pub name: String,
    /// `rpc Name (stream Request) returns (Reply)`, as declared.
    pub signature: String,
    /// `unary`, `server streaming`, `client streaming` or `bidi streaming`.
    pub shape: &'static str,
    /// Its comment.
    pub comment: String,
    /// Marked `deprecated = true`.
    pub deprecated: bool,
    /// Its `google.api.http` bindings, e.g. `GET /v1/{name=products/*}`.
    pub http: Vec<String>,
}

/// A message and its fields.
#[derive(Debug, Clone, Serialize)]
pub struct MessageDoc {
    /// Full name.
    pub name: String,
    /// Its comment.
    pub comment: String,
    /// Marked `deprecated = true`.
    pub deprecated: bool,
    /// Its fields, in declaration order.
    pub fields: Vec<FieldDoc>,
}

/// One field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldDoc {
    /// Name.
    pub name: String,
    /// Number.
    pub number: u32,
    /// Type and label as written, e.g. `optional int64`, `map<string, Product>`.
    pub kind: String,
    /// The oneof it belongs to, if any (not a proto3 `optional`'s own).
    pub oneof: Option<String>,
    /// Its comment.
    pub comment: String,
    /// Marked `deprecated = true`.
    pub deprecated: bool,
}

/// An enum and its values.
#[derive(Debug, Clone, Serialize)]
pub struct EnumDoc {
    /// Full name.
    pub name: String,
    /// Its comment.
    pub comment: String,
    /// Marked `deprecated = true`.
    pub deprecated: bool,
    /// Its values: name, number, comment, deprecated.
    pub values: Vec<(String, i32, String, bool)>,
}

/// The package of the well-known types, which a descriptor set built with its imports holds.
const WELL_KNOWN: &str = "google.protobuf";

/// Each package the version's own files declare (not their imports, nor the well-known types a
/// descriptor set built with `--include_imports` carries), in name order.
pub fn versions(api: &compat::Api) -> Vec<VersionDoc> {
    let own: Vec<FileDescriptor> = api
        .pool
        .files()
        .filter(|f| api.files.contains(f.name()))
        .collect();
    let only_well_known = own.iter().all(|f| f.package_name() == WELL_KNOWN);
    let mut packages: BTreeMap<String, VersionDoc> = BTreeMap::new();
    for file in own
        .into_iter()
        .filter(|f| only_well_known || f.package_name() != WELL_KNOWN)
    {
        let doc = packages
            .entry(file.package_name().to_string())
            .or_insert_with(|| VersionDoc {
                package: file.package_name().to_string(),
                files: Vec::new(),
                services: Vec::new(),
                messages: Vec::new(),
                enums: Vec::new(),
                extensions: Vec::new(),
            });
        doc.files.push(file.name().to_string());
        add_file(doc, &file);
    }
    packages.into_values().collect()
}

fn add_file(doc: &mut VersionDoc, file: &FileDescriptor) {
    let comments = Comments::of(file);
    for service in file.services() {
        doc.services.push(ServiceDoc {
            name: service.full_name().to_string(),
            comment: comments.at(service.path()),
            deprecated: deprecated(&service.options()),
            methods: service
                .methods()
                .map(|m| method_doc(&m, &comments))
                .collect(),
        });
    }
    let mut messages: Vec<MessageDescriptor> = file.messages().collect();
    while !messages.is_empty() {
        let message = messages.remove(0);
        if message.is_map_entry() {
            continue;
        }
        doc.messages.push(MessageDoc {
            name: message.full_name().to_string(),
            comment: comments.at(message.path()),
            deprecated: deprecated(&message.options()),
            fields: message.fields().map(|f| field_doc(&f, &comments)).collect(),
        });
        doc.enums
            .extend(message.child_enums().map(|e| enum_doc(&e, &comments)));
        doc.extensions.extend(
            message
                .child_extensions()
                .map(|x| extension_doc(&x, &comments)),
        );
        // Nested messages right after their parent.
        for (i, child) in message.child_messages().enumerate() {
            messages.insert(i, child);
        }
    }
    doc.enums
        .extend(file.enums().map(|e| enum_doc(&e, &comments)));
    doc.extensions
        .extend(file.extensions().map(|x| extension_doc(&x, &comments)));
}

fn extension_doc(x: &prost_reflect::ExtensionDescriptor, comments: &Comments) -> ExtensionDoc {
    let name = kind_name(x.kind(), x.parent_file().package_name());
    ExtensionDoc {
        name: x.full_name().to_string(),
        extends: x.containing_message().full_name().to_string(),
        number: x.number(),
        kind: if x.is_list() {
            format!("repeated {name}")
        } else {
            name
        },
        comment: comments.at(x.path()),
    }
}

/// A type's name as its package's own files write it: relative to `package`, else in full.
fn relative(full_name: &str, package: &str) -> String {
    match full_name.strip_prefix(package) {
        Some(rest) if !package.is_empty() && rest.starts_with('.') => rest[1..].to_string(),
        _ => full_name.to_string(),
    }
}

fn method_doc(method: &MethodDescriptor, comments: &Comments) -> MethodDoc {
    let package = method.parent_service().package_name().to_string();
    let stream = |yes: bool| if yes { "stream " } else { "" };
    let shape = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => "unary",
        (false, true) => "server streaming",
        (true, false) => "client streaming",
        (true, true) => "bidi streaming",
    };
    MethodDoc {
        name: method.name().to_string(),
        signature: format!(
            "rpc {} ({}{}) returns ({}{})",
            method.name(),
            stream(method.is_client_streaming()),
            relative(method.input().full_name(), &package),
            stream(method.is_server_streaming()),
            relative(method.output().full_name(), &package)
        ),
        shape,
        comment: comments.at(method.path()),
        deprecated: deprecated(&method.options()),
        http: http_bindings(method),
    }
}

fn field_doc(field: &FieldDescriptor, comments: &Comments) -> FieldDoc {
    let proto2 = matches!(
        field.parent_file().file_descriptor_proto().syntax(),
        "" | "proto2"
    );
    let kind = if field.is_map() {
        match field.kind() {
            Kind::Message(entry) => format!(
                "map<{}, {}>",
                type_name(&entry.map_entry_key_field()),
                type_name(&entry.map_entry_value_field())
            ),
            _ => type_name(field),
        }
    } else if field.is_list() {
        format!("repeated {}", type_name(field))
    } else if field.cardinality() == prost_reflect::Cardinality::Required {
        format!("required {}", type_name(field))
    } else if field.field_descriptor_proto().proto3_optional()
        || (proto2 && field.containing_oneof().is_none())
    {
        format!("optional {}", type_name(field))
    } else {
        type_name(field)
    };
    FieldDoc {
        name: field.name().to_string(),
        number: field.number(),
        kind,
        oneof: field
            .containing_oneof()
            .filter(|o| !o.is_synthetic())
            .map(|o| o.name().to_string()),
        comment: comments.at(field.path()),
        deprecated: deprecated(&field.options()),
    }
}

fn enum_doc(e: &EnumDescriptor, comments: &Comments) -> EnumDoc {
    EnumDoc {
        name: e.full_name().to_string(),
        comment: comments.at(e.path()),
        deprecated: deprecated(&e.options()),
        values: e
            .values()
            .map(|v| {
                (
                    v.name().to_string(),
                    v.number(),
                    comments.at(v.path()),
                    deprecated(&v.options()),
                )
            })
            .collect(),
    }
}

/// A field's type as a `.proto` writes it: a scalar's keyword, a message's or enum's name
/// (relative to the field's package, so `Outer.Inner` and `google.protobuf.Timestamp` stay
/// apart from a top-level `Inner` or `Timestamp`).
fn type_name(field: &FieldDescriptor) -> String {
    kind_name(field.kind(), field.parent_file().package_name())
}

/// A scalar's keyword, or a message's or enum's name relative to `package`.
fn kind_name(kind: Kind, package: &str) -> String {
    match kind {
        Kind::Message(m) => relative(m.full_name(), package),
        Kind::Enum(e) => relative(e.full_name(), package),
        scalar => format!("{scalar:?}").to_lowercase(),
    }
}

fn deprecated(options: &DynamicMessage) -> bool {
    options
        .get_field_by_name("deprecated")
        .is_some_and(|v| v.as_bool() == Some(true))
}

/// The `google.api.http` rule of a method's options, when its descriptors define the
/// extension: its verb and path, and those of its `additional_bindings`.
fn http_bindings(method: &MethodDescriptor) -> Vec<String> {
    let Some(extension) = method
        .parent_pool()
        .get_extension_by_name("google.api.http")
    else {
        return Vec::new();
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Value::Message(rule) = options.get_extension(&extension).as_ref() {
        http_rule(rule, &mut out);
    }
    out
}

fn http_rule(rule: &DynamicMessage, out: &mut Vec<String>) {
    for verb in ["get", "put", "post", "delete", "patch"] {
        if let Some(Value::String(path)) = rule.get_field_by_name(verb).as_deref()
            && !path.is_empty()
        {
            out.push(format!("{} {path}", verb.to_uppercase()));
        }
    }
    if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref()
        && let (Some(Value::String(kind)), Some(Value::String(path))) = (
            custom.get_field_by_name("kind").as_deref(),
            custom.get_field_by_name("path").as_deref(),
        )
        && !kind.is_empty()
    {
        out.push(format!("{kind} {path}"));
    }
    if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for binding in more {
            if let Value::Message(binding) = binding {
                http_rule(binding, out);
            }
        }
    }
}

/// A file's comments, looked up by descriptor path.
struct Comments(Vec<prost_types::source_code_info::Location>);

impl Comments {
    fn of(file: &FileDescriptor) -> Self {
        Comments(
            file.file_descriptor_proto()
                .source_code_info
                .as_ref()
                .map(|info| info.location.clone())
                .unwrap_or_default(),
        )
    }

    fn at(&self, path: &[i32]) -> String {
        let Some(location) = self.0.iter().find(|l| l.path == path) else {
            return String::new();
        };
        [location.leading_comments(), location.trailing_comments()]
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
