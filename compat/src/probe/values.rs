//! Reply values compared between the two servers. Each reply is flattened to one value per
//! field path (`lines[0].quantity`, `[2].status` for the third message of a stream); the own
//! server is called twice with the same request, and a path whose value differs between those
//! two calls is noise (an order id, a timestamp) and not compared. Any other path whose value
//! at the target differs from the own server's is a change.

use crate::rules::value_text;
use prost_reflect::{DynamicMessage, Kind, MapKey, Value};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A reply field whose value at the target differs from the caller's own server's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Where: `total_cents`, `lines[0].quantity`, `[1].status` (the second reply of a stream),
    /// `(replies)` for the number of replies.
    pub path: String,
    /// The own server's value (`unset` when it left the field at its default).
    pub own: String,
    /// The target's value.
    pub target: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.path, self.own, self.target)
    }
}

/// The replies of one call, flattened: field path → value text, for the fields set.
pub(crate) type Flat = BTreeMap<String, String>;

/// Flattens the replies of one call; `stream` prefixes each message's paths with its index.
pub(crate) fn flatten(replies: &[DynamicMessage], stream: bool) -> Flat {
    let mut out = Flat::new();
    for (i, msg) in replies.iter().enumerate() {
        let prefix = if stream {
            format!("[{i}].")
        } else {
            String::new()
        };
        walk(msg, &prefix, &mut out);
    }
    out
}

fn walk(msg: &DynamicMessage, prefix: &str, out: &mut Flat) {
    for (f, v) in msg.fields() {
        let path = format!("{prefix}{}", f.name());
        let kind = match f.kind() {
            Kind::Message(m) if f.is_map() => m.map_entry_value_field().kind(),
            other => other,
        };
        match v {
            Value::List(list) => {
                for (i, x) in list.iter().enumerate() {
                    leaf(x, &kind, &format!("{path}[{i}]"), out);
                }
            }
            Value::Map(map) => {
                for (k, x) in map {
                    leaf(x, &kind, &format!("{path}[{}]", key_text(k)), out);
                }
            }
            other => leaf(other, &kind, &path, out),
        }
    }
}

fn leaf(v: &Value, kind: &Kind, path: &str, out: &mut Flat) {
    match v {
        Value::Message(m) if m.fields().next().is_none() => {
            out.insert(path.to_string(), "{}".to_string());
        }
        Value::Message(m) => walk(m, &format!("{path}."), out),
        other => {
            out.insert(path.to_string(), value_text(other, kind));
        }
    }
}

fn key_text(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => format!("{s:?}"),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(x) => x.to_string(),
        MapKey::I64(x) => x.to_string(),
        MapKey::U32(x) => x.to_string(),
        MapKey::U64(x) => x.to_string(),
    }
}

/// The replies of one side of a call, for [`changes`]: the flattened values, how many
/// messages, and whether the stream was cut at a cap (then only the messages both sides
/// delivered are compared).
pub(super) struct Seen {
    pub(super) flat: Flat,
    pub(super) count: usize,
    pub(super) capped: bool,
}

/// Whether `path` is outside a stream's messages or in one of its first `both` (a path of a
/// message one side did not deliver is not compared value by value).
pub(crate) fn within(path: &str, both: usize) -> bool {
    match path.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .and_then(|(i, _)| i.parse::<usize>().ok())
            .is_some_and(|i| i < both),
        None => true,
    }
}

/// The paths where `own` and `again` (the own server asked twice) disagree: noise.
pub(super) fn noise(own: &Seen, again: &Seen) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = own.flat.keys().chain(again.flat.keys()).collect();
    keys.into_iter()
        .filter(|k| own.flat.get(*k) != again.flat.get(*k))
        .cloned()
        .collect()
}

/// Values the target sets differently from the own server, noise left out. A field the target
/// leaves unset is not a change here (the caller reports it as defaulted); one the target sets
/// where the own server does not is.
pub(super) fn changes(own: &Seen, again: &Seen, target: &Seen) -> Vec<Change> {
    let noise = noise(own, again);
    let mut out = Vec::new();
    let counts_agree = own.count == again.count;
    if counts_agree && own.count != target.count && !own.capped && !target.capped {
        out.push(Change {
            path: "(replies)".to_string(),
            own: own.count.to_string(),
            target: target.count.to_string(),
        });
    }
    let both = own.count.min(target.count);
    for (path, value) in &target.flat {
        if noise.contains(path) || !within(path, both) {
            continue;
        }
        match own.flat.get(path) {
            Some(o) if o == value => {}
            o => out.push(Change {
                path: path.clone(),
                own: o.cloned().unwrap_or_else(|| "unset".to_string()),
                target: value.clone(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::MessageDescriptor;

    fn order() -> MessageDescriptor {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(
            dir.path().join("o.proto"),
            "syntax = \"proto3\"; package o;
             message Line { string sku = 1; int32 quantity = 2; }
             message Order { string id = 1; repeated Line lines = 2; int64 total = 3;
                             map<string, int32> stock = 4; }",
        )
        .expect("a proto");
        let (pool, _) = crate::source::compile_dir(dir.path(), &[]).expect("it compiles");
        pool.get_message_by_name("o.Order").expect("Order")
    }

    fn seen(desc: &MessageDescriptor, json: &[&str], stream: bool) -> Seen {
        let msgs: Vec<DynamicMessage> = json
            .iter()
            .map(|j| {
                let mut de = serde_json::Deserializer::from_str(j);
                DynamicMessage::deserialize(desc.clone(), &mut de).expect("valid JSON")
            })
            .collect();
        Seen {
            flat: flatten(&msgs, stream),
            count: msgs.len(),
            capped: false,
        }
    }

    #[test]
    fn values_that_differ_beyond_the_own_servers_noise_are_changes() {
        let d = order();
        let own = seen(
            &d,
            &[
                r#"{"id": "v1-1", "lines": [{"sku": "a", "quantity": 2}], "total": 10, "stock": {"a": 1}}"#,
            ],
            false,
        );
        let again = seen(
            &d,
            &[
                r#"{"id": "v1-2", "lines": [{"sku": "a", "quantity": 2}], "total": 10, "stock": {"a": 1}}"#,
            ],
            false,
        );
        assert_eq!(noise(&own, &again), BTreeSet::from(["id".to_string()]));
        let same = seen(
            &d,
            &[
                r#"{"id": "v2-9", "lines": [{"sku": "a", "quantity": 2}], "total": 10, "stock": {"a": 1}}"#,
            ],
            false,
        );
        assert_eq!(changes(&own, &again, &same), []);
        let other = seen(
            &d,
            &[
                r#"{"id": "v2-9", "lines": [{"sku": "a", "quantity": 3}], "total": 10, "stock": {"a": 2, "b": 1}}"#,
            ],
            false,
        );
        let found: Vec<String> = changes(&own, &again, &other)
            .iter()
            .map(Change::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "lines[0].quantity: 2 → 3",
                "stock[\"a\"]: 1 → 2",
                "stock[\"b\"]: unset → 1"
            ]
        );
        // A stream: a message fewer at the target, and a value changed in the second.
        let own = seen(&d, &[r#"{"total": 1}"#, r#"{"total": 2}"#], true);
        let target = seen(&d, &[r#"{"total": 1}"#], true);
        let found: Vec<String> = changes(&own, &own, &target)
            .iter()
            .map(Change::to_string)
            .collect();
        assert_eq!(found, ["(replies): 2 → 1"]);
        let target = seen(&d, &[r#"{"total": 1}"#, r#"{"total": 5}"#], true);
        assert_eq!(
            changes(&own, &own, &target)[0].to_string(),
            "[1].total: 2 → 5"
        );
    }
}
