//! Field types as the rules see them: cardinalities, wire and JSON encoding groups, narrowing,
//! structural identity of two messages, and values and names as text.

use super::*;

pub(super) fn cardinality(f: &FieldDescriptor) -> &'static str {
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

pub(super) fn wire_cardinality(c: &str, json: bool) -> u8 {
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

pub(super) fn wire_group(kind: &Kind) -> u8 {
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

pub(super) fn json_group(kind: &Kind) -> u8 {
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
pub(super) fn range_preserved(old: &Kind, new: &Kind) -> bool {
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

pub(super) fn is_wkt(m: &MessageDescriptor) -> bool {
    m.package_name() == "google.protobuf"
}

pub(super) fn syntax_name(f: &FileDescriptor) -> &'static str {
    match f.syntax() {
        Syntax::Proto2 => "proto2",
        Syntax::Proto3 => "proto3",
    }
}

/// A name relative to its package (`Item.Inner`).
pub(super) fn short<'a>(full: &'a str, package: &str) -> &'a str {
    if package.is_empty() {
        full
    } else {
        full.strip_prefix(package)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(full)
    }
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
