//! Wire confirmation: every finding is tried with real bytes. Sample messages are built under
//! one version's descriptors with values chosen to expose the change, encoded with prost,
//! decoded under the other version's descriptors (prost-reflect dynamic messages), in both
//! directions; when binary bytes agree, the protobuf JSON form is tried the same way.

use crate::model::{Confirmation, Outcome};
use crate::rules::{Pairing, Subject, kind_name, value_text};
use prost::Message;
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use std::collections::HashMap;

const PROST: &str = "prost (prost-reflect dynamic messages)";
const JSON: &str = "prost-reflect JSON (serde)";
const DESCRIPTORS: &str = "descriptors (no live server)";
use crate::budget::{MAX_DEPTH, MAX_SAMPLE_NODES};
use std::cell::Cell;

/// Tries `subject` on the wire.
pub(crate) fn confirm(subject: &Subject, pairing: &Pairing) -> Confirmation {
    match subject {
        Subject::NoWire(why) => Confirmation {
            outcome: Outcome::Refuted,
            effect: format!("no wire effect by itself: {why}"),
            runtime: "descriptors".to_string(),
        },
        Subject::Field {
            old_msg,
            new_msg,
            number,
        } => confirm_field(old_msg, new_msg, *number, None),
        Subject::Types { old, new } => confirm_types(old, new),
        Subject::Method { old, new } => {
            let path = format!("/{}/{}", old.parent_service().full_name(), old.name());
            match new {
                None => Confirmation {
                    outcome: Outcome::Confirmed,
                    effect: format!(
                        "{path} is not served by NEW: a gRPC server answers UNIMPLEMENTED"
                    ),
                    runtime: DESCRIPTORS.to_string(),
                },
                Some(n) => {
                    let (a, b) = (
                        shape(old.is_client_streaming(), old.is_server_streaming()),
                        shape(n.is_client_streaming(), n.is_server_streaming()),
                    );
                    let effect = if old.is_client_streaming() && !n.is_client_streaming() {
                        format!(
                            "{path}: an old {a} client may send several messages; a {b} handler takes exactly one (gRPC servers fail the call)"
                        )
                    } else if old.is_server_streaming() && !n.is_server_streaming() {
                        format!(
                            "{path}: an old {a} client expects a stream; a {b} handler sends one message and ends"
                        )
                    } else {
                        format!(
                            "{path}: an old {a} client and a {b} handler disagree on the number of messages (the generated stubs do not match)"
                        )
                    };
                    Confirmation {
                        outcome: Outcome::Confirmed,
                        effect,
                        runtime: DESCRIPTORS.to_string(),
                    }
                }
            }
        }
        Subject::EnumNumber { old, new, number } => confirm_enum(old, new, *number, pairing),
    }
}

/// A method's streaming shape in words, from whether the client and the server stream.
pub(crate) fn shape(client: bool, server: bool) -> &'static str {
    match (client, server) {
        (false, false) => "unary",
        (true, false) => "client streaming",
        (false, true) => "server streaming",
        (true, true) => "bidi streaming",
    }
}

/// Values that expose a change of a field of this kind, most revealing first (nested messages
/// filled as `fill` says).
fn probes(kind: &Kind, depth: usize, fill: Fill, left: &Cell<u64>) -> Vec<Value> {
    if let Some(values) = fill.values.and_then(|pick| pick(kind)) {
        return values;
    }
    match kind {
        Kind::Int32 | Kind::Sfixed32 => {
            vec![Value::I32(-5), Value::I32(2_000_000_007), Value::I32(7)]
        }
        Kind::Sint32 => vec![Value::I32(-5), Value::I32(7)],
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            vec![Value::I64(1_099_511_627_783), Value::I64(-5), Value::I64(7)]
        }
        Kind::Uint32 | Kind::Fixed32 => vec![Value::U32(4_294_967_295), Value::U32(7)],
        Kind::Uint64 | Kind::Fixed64 => vec![
            Value::U64(18_446_744_073_709_551_615),
            Value::U64(1_099_511_627_783),
            Value::U64(7),
        ],
        Kind::Bool => vec![Value::Bool(true)],
        Kind::Float => vec![Value::F32(0.1)],
        Kind::Double => vec![Value::F64(0.1), Value::F64(1e300)],
        Kind::String => vec![Value::String("héllo".into()), Value::String("7".into())],
        Kind::Bytes => vec![
            Value::Bytes(vec![0xff, 0xfe, 0x00].into()),
            Value::Bytes(b"ok".to_vec().into()),
        ],
        Kind::Enum(e) => e.values().map(|v| Value::EnumNumber(v.number())).collect(),
        Kind::Message(m) => child(m, depth + 1, fill, left).into_iter().collect(),
    }
}

/// Values for a field kind, `None` for kinds it leaves to the edge values.
pub(crate) type Values = fn(&Kind) -> Option<Vec<Value>>;

/// How [`sample_with`] fills a message; the default is [`sample`]'s.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fill {
    /// Enum fields take their last value (the one an older reader is most likely not to know)
    /// instead of their first.
    pub(crate) enum_last: bool,
    /// Which member of each oneof is set (modulo the oneof's size).
    pub(crate) oneof_member: usize,
    /// The values to use instead of the edge values that expose a change, for the kinds it
    /// answers (the probe's ordinary values).
    pub(crate) values: Option<Values>,
}

/// A message with every field set to its first probe (several elements for lists, two
/// entries for maps, one field per oneof), nested messages filled to a fixed depth, so a
/// recursive type ends.
pub(crate) fn sample(desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
    sample_with(desc, depth, Fill::default())
}

/// [`sample`], filled as `fill` says (at every depth). At most [`MAX_SAMPLE_NODES`] nested
/// messages are made (the loaders refuse descriptors whose samples would need more; this bound
/// holds for any pool): past it, message fields stay unset.
pub(crate) fn sample_with(desc: &MessageDescriptor, depth: usize, fill: Fill) -> DynamicMessage {
    fill_message(desc, depth, fill, &Cell::new(MAX_SAMPLE_NODES))
}

/// A nested message for a sample, spending one of `left`; `None` once `left` is spent.
fn child(desc: &MessageDescriptor, depth: usize, fill: Fill, left: &Cell<u64>) -> Option<Value> {
    let n = left.get().checked_sub(1)?;
    left.set(n);
    Some(Value::Message(fill_message(desc, depth, fill, left)))
}

/// [`sample_with`], nested messages taken from `left`.
fn fill_message(
    desc: &MessageDescriptor,
    depth: usize,
    fill: Fill,
    left: &Cell<u64>,
) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    if depth > MAX_DEPTH {
        return msg;
    }
    if matches!(
        desc.full_name(),
        "google.protobuf.Timestamp" | "google.protobuf.Duration"
    ) {
        // Values inside the ranges their JSON forms allow.
        msg.set_field_by_number(1, Value::I64(1));
        msg.set_field_by_number(2, Value::I32(500_000_000));
        return msg;
    }
    for f in desc.fields() {
        if let Some(o) = f.containing_oneof() {
            let members: Vec<FieldDescriptor> = o.fields().collect();
            if members[fill.oneof_member % members.len()].number() != f.number() {
                continue;
            }
        }
        if let Some(v) = field_value(&f, 0, depth, fill, left) {
            msg.set_field(&f, v);
        }
    }
    msg
}

/// The value of probe `i` for a field, shaped for its cardinality.
fn field_value(
    f: &FieldDescriptor,
    i: usize,
    depth: usize,
    fill: Fill,
    left: &Cell<u64>,
) -> Option<Value> {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return None;
        };
        let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let keys = probes(&kf.kind(), depth, fill, left);
        // A message value is built per entry (not cloned), so that `left` counts every one.
        let val = |j: usize| match vf.kind() {
            Kind::Message(m) => child(&m, depth + 1, fill, left),
            other => {
                let vals = probes(&other, depth, fill, left);
                vals.get(j % vals.len().max(1)).cloned()
            }
        };
        let mut map = HashMap::new();
        for (j, k) in keys.iter().take(2).enumerate() {
            let key = match k {
                Value::I32(x) => MapKey::I32(*x),
                Value::I64(x) => MapKey::I64(*x),
                Value::U32(x) => MapKey::U32(*x),
                Value::U64(x) => MapKey::U64(*x),
                Value::Bool(x) => MapKey::Bool(*x),
                Value::String(x) => MapKey::String(x.clone()),
                _ => return None,
            };
            map.insert(key, val(j)?);
        }
        return Some(Value::Map(map));
    }
    if let (true, Kind::Message(m)) = (f.is_list(), f.kind()) {
        // Each element built on its own (not cloned), so that `left` counts every one.
        let list: Vec<Value> = (0..3)
            .map_while(|_| child(&m, depth + 1, fill, left))
            .collect();
        return (!list.is_empty()).then_some(Value::List(list));
    }
    let p = probes(&f.kind(), depth, fill, left);
    if p.is_empty() {
        return None;
    }
    let i = if fill.enum_last && matches!(f.kind(), Kind::Enum(_)) {
        i + p.len() - 1
    } else {
        i
    };
    if f.is_list() {
        let n = 3;
        return Some(Value::List(
            (0..n).map(|j| p[(i + j) % p.len()].clone()).collect(),
        ));
    }
    Some(p[i % p.len()].clone())
}

/// A value as canonical text: enums by name, messages by field number, presence shown.
fn canon(v: &Value, kind: &Kind, depth: usize) -> String {
    match v {
        Value::Message(m) => canon_msg(m, depth),
        Value::List(l) => {
            let mut parts: Vec<String> = l.iter().map(|x| canon(x, kind, depth)).collect();
            if matches!(kind, Kind::Message(_)) {
                // A map is a list of entry messages on the wire: compare as sets.
                parts.sort();
            }
            format!("[{}]", parts.join(", "))
        }
        Value::Map(m) => {
            let (kk, vk) = match kind {
                Kind::Message(e) => (
                    e.map_entry_key_field().kind(),
                    e.map_entry_value_field().kind(),
                ),
                _ => (Kind::String, Kind::String),
            };
            let mut parts: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    let key: Value = k.clone().into();
                    format!(
                        "{{1: {}, 2: {}}}",
                        canon(&key, &kk, depth),
                        canon(v, &vk, depth)
                    )
                })
                .collect();
            parts.sort();
            format!("[{}]", parts.join(", "))
        }
        other => value_text(other, kind),
    }
}

fn canon_msg(m: &DynamicMessage, depth: usize) -> String {
    if depth > MAX_DEPTH + 2 {
        return "{…}".to_string();
    }
    let mut parts: Vec<String> = m
        .fields()
        .map(|(f, v)| format!("{}: {}", f.number(), canon(v, &f.kind(), depth + 1)))
        .collect();
    for u in m.unknown_fields() {
        parts.push(format!("{}: unknown", u.number()));
    }
    format!("{{{}}}", parts.join(", "))
}

/// How one side sees field `number` of `m`.
fn field_text(m: &DynamicMessage, number: u32) -> String {
    match m.descriptor().get_field(number) {
        Some(f) => {
            let v = m.get_field(&f);
            let mut t = canon(&v, &f.kind(), 0);
            if f.supports_presence() && !f.is_list() && !m.has_field(&f) {
                t.push_str(" (unset)");
            }
            t
        }
        None => {
            if m.unknown_fields().any(|u| u.number() == number) {
                format!("field {number} kept as unknown")
            } else {
                format!("field {number} absent")
            }
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s.to_string()
    }
}

/// One direction, binary: write `written` (built under `from`), read under `to`, compare field
/// `number`. `Some(effect)` when the reader sees something else.
fn binary_diff(
    written: &DynamicMessage,
    to: &MessageDescriptor,
    number: Option<u32>,
) -> Option<String> {
    let bytes = written.encode_to_vec();
    match DynamicMessage::decode(to.clone(), bytes.as_slice()) {
        Err(e) => Some(format!("decode error: {e}")),
        Ok(read) => {
            // prost does not enforce proto2 `required`; the C++ and Java parsers do.
            let required =
                |f: &FieldDescriptor| f.cardinality() == prost_reflect::Cardinality::Required;
            let from = written.descriptor();
            if let Some(f) = to.fields().find(|f| {
                required(f)
                    && !read.has_field(f)
                    && !from.get_field(f.number()).is_some_and(|g| required(&g))
            }) {
                return Some(format!(
                    "decoded without required field {} ({}): prost accepts it, the C++ and Java parsers reject the message",
                    f.number(),
                    f.name()
                ));
            }
            let (a, b) = match number {
                Some(n) => (field_text(written, n), field_text(&read, n)),
                None => (canon_msg(written, 0), canon_msg(&read, 0)),
            };
            (a != b).then(|| format!("{} read as {}", short(&a), short(&b)))
        }
    }
}

fn json_diff(
    written: &DynamicMessage,
    to: &MessageDescriptor,
    number: Option<u32>,
) -> Option<String> {
    // A sample the writer cannot express in JSON (a Timestamp out of range) proves nothing.
    let Ok(text) = serde_json::to_string(written) else {
        return None;
    };
    let mut de = serde_json::Deserializer::from_str(&text);
    match DynamicMessage::deserialize(to.clone(), &mut de) {
        Err(e) => Some(format!("JSON {} rejected: {e}", short(&text))),
        Ok(read) => {
            let (a, b) = match number {
                Some(n) => (field_text(written, n), field_text(&read, n)),
                None => (canon_msg(written, 0), canon_msg(&read, 0)),
            };
            (a != b).then(|| format!("JSON {} read as {}", short(&text), short(&b)))
        }
    }
}

/// Samples for field `number` of `desc`: unset, then each probe (restricted to `only` when given).
fn field_samples(desc: &MessageDescriptor, number: u32, only: Option<i32>) -> Vec<DynamicMessage> {
    let mut out = Vec::new();
    let Some(f) = desc.get_field(number) else {
        return vec![DynamicMessage::new(desc.clone())];
    };
    let left = Cell::new(MAX_SAMPLE_NODES);
    let count = if f.is_map() {
        1
    } else {
        probes(&f.kind(), 0, Fill::default(), &left).len().max(1)
    };
    for i in 0..count {
        let left = Cell::new(MAX_SAMPLE_NODES);
        if let Some(v) = field_value(&f, i, 0, Fill::default(), &left) {
            if let (Some(n), Value::EnumNumber(x)) = (only, &v)
                && *x != n
            {
                continue;
            }
            let mut m = DynamicMessage::new(desc.clone());
            m.set_field(&f, v);
            out.push(m);
        }
    }
    // Every field set at once: exposes oneof membership changes (the last member wins).
    out.push(sample(desc, 0));
    out.push(DynamicMessage::new(desc.clone()));
    out
}

/// The first sample that reads differently under the other version.
struct Difference<'a> {
    /// Only in JSON (binary bytes agreed for every sample).
    json: bool,
    dir: &'static str,
    from: &'a MessageDescriptor,
    to: &'a MessageDescriptor,
    effect: String,
}

impl Difference<'_> {
    fn confirmation(&self, effect: String) -> Confirmation {
        let (outcome, runtime) = if self.json {
            (Outcome::JsonOnly, JSON)
        } else {
            (Outcome::Confirmed, PROST)
        };
        Confirmation {
            outcome,
            effect,
            runtime: runtime.to_string(),
        }
    }
}

/// Writes the `samples` of each version and reads them under the other, in both directions:
/// in binary first, then in JSON; compares field `number` (the whole message when `None`).
fn first_difference<'a>(
    old: &'a MessageDescriptor,
    new: &'a MessageDescriptor,
    samples: impl Fn(&MessageDescriptor) -> Vec<DynamicMessage>,
    number: Option<u32>,
) -> Option<Difference<'a>> {
    type Diff = fn(&DynamicMessage, &MessageDescriptor, Option<u32>) -> Option<String>;
    let dirs = [("old→new", old, new), ("new→old", new, old)];
    for (json, diff) in [(false, binary_diff as Diff), (true, json_diff)] {
        for (dir, from, to) in dirs {
            for m in samples(from) {
                if let Some(effect) = diff(&m, to, number) {
                    return Some(Difference {
                        json,
                        dir,
                        from,
                        to,
                        effect,
                    });
                }
            }
        }
    }
    None
}

fn confirm_field(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    number: u32,
    only: Option<i32>,
) -> Confirmation {
    let samples = |from: &MessageDescriptor| field_samples(from, number, only);
    match first_difference(old, new, samples, Some(number)) {
        Some(d) => d.confirmation(format!("{}: {}", d.dir, d.effect)),
        None => Confirmation {
            outcome: Outcome::Refuted,
            effect: format!(
                "field {number} decodes identically both ways (binary and JSON, set and unset)"
            ),
            runtime: PROST.to_string(),
        },
    }
}

fn confirm_types(old: &MessageDescriptor, new: &MessageDescriptor) -> Confirmation {
    match first_difference(old, new, |from| vec![sample(from, 0)], None) {
        Some(d) if d.json => d.confirmation(format!("{}: {}", d.dir, d.effect)),
        Some(d) => d.confirmation(format!(
            "{} ({} as {}): {}",
            d.dir,
            d.from.full_name(),
            d.to.full_name(),
            d.effect
        )),
        None => Confirmation {
            outcome: Outcome::Refuted,
            effect: format!(
                "a full {} sample decodes identically as {} and back (binary and JSON)",
                old.full_name(),
                new.full_name()
            ),
            runtime: PROST.to_string(),
        },
    }
}

fn confirm_enum(
    old: &EnumDescriptor,
    new: &EnumDescriptor,
    number: i32,
    pairing: &Pairing,
) -> Confirmation {
    // A message field of this enum type, present on both sides, carries the value for real.
    for m in old.parent_pool().all_messages() {
        for f in m.fields() {
            let Kind::Enum(e) = f.kind() else { continue };
            if e.full_name() != old.full_name() {
                continue;
            }
            let Some(nm) = new
                .parent_pool()
                .get_message_by_name(&pairing.map(m.full_name()))
            else {
                continue;
            };
            let same = nm.get_field(f.number()).is_some_and(
                |nf| matches!(nf.kind(), Kind::Enum(ne) if ne.full_name() == new.full_name()),
            );
            if same {
                let mut c = confirm_field(&m, &nm, f.number(), Some(number));
                c.effect = format!("via {}.{}: {}", m.full_name(), f.name(), c.effect);
                return c;
            }
        }
    }
    let names = |e: &EnumDescriptor| -> Vec<String> {
        e.values()
            .filter(|v| v.number() == number)
            .map(|v| v.name().to_string())
            .collect()
    };
    let (old_names, new_names) = (names(old), names(new));
    if let Some(lost) = old_names.iter().find(|n| !new_names.contains(n))
        && !new_names.is_empty()
    {
        return Confirmation {
            outcome: Outcome::JsonOnly,
            effect: format!(
                "number {number} reads the same in binary, but the JSON name \"{lost}\" is unknown to NEW (it knows {})",
                new_names.join(", ")
            ),
            runtime: "prost-reflect (enum lookup; no message uses the enum)".to_string(),
        };
    }
    let a = old
        .get_value(number)
        .map(|v| v.name().to_string())
        .unwrap_or_else(|| number.to_string());
    let b = new
        .get_value(number)
        .map(|v| v.name().to_string())
        .unwrap_or_else(|| format!("unknown enum value {number}"));
    let outcome = if a == b {
        Outcome::Refuted
    } else {
        Outcome::Confirmed
    };
    Confirmation {
        outcome,
        effect: format!(
            "number {number} is {a} to OLD and {b} to NEW ({} → {})",
            kind_name(&Kind::Enum(old.clone())),
            new.full_name()
        ),
        runtime: "prost-reflect (enum lookup; no message uses the enum)".to_string(),
    }
}

#[cfg(test)]
mod tests;
