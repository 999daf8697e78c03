//! The verdict on one call: the target's answer compared with the caller's own server's
//! (statuses, decoding with the caller's descriptors, fields unknown to the caller, fields that
//! came back at their default).

use super::calling::{Answer, code_name};
use super::report::{Call, Verdict};
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};
use std::collections::BTreeSet;
use tonic::Code;

/// Compares the target's answer with the own server's: statuses, decoding, unknown and
/// defaulted fields.
pub(super) fn judge(
    requests: Vec<String>,
    output: &MessageDescriptor,
    other_output: Option<&MessageDescriptor>,
    own: Answer,
    target: Answer,
) -> Call {
    let decode = |bytes: &Vec<u8>| DynamicMessage::decode(output.clone(), bytes.as_slice());
    let mut unknown = BTreeSet::new();
    let mut target_set = BTreeSet::new();
    let mut decode_error = None;
    for (i, bytes) in target.replies.iter().enumerate() {
        match decode(bytes) {
            Ok(msg) => {
                unknown_paths(&msg, other_output, "", &mut unknown);
                set_paths(&msg, "", &mut target_set);
            }
            Err(e) => {
                decode_error.get_or_insert_with(|| {
                    format!(
                        "reply {} ({} bytes) is not a {}: {e}",
                        i + 1,
                        bytes.len(),
                        output.full_name()
                    )
                });
            }
        }
    }
    let mut own_set = BTreeSet::new();
    for msg in own.replies.iter().filter_map(|b| decode(b).ok()) {
        set_paths(&msg, "", &mut own_set);
    }
    let defaulted: Vec<String> = if own.code == Code::Ok && target.code == Code::Ok {
        own_set.difference(&target_set).cloned().collect()
    } else {
        Vec::new()
    };
    let (verdict, reason) = if let Some(e) = &decode_error {
        (Verdict::Broken, e.clone())
    } else if own.code != target.code {
        let quoted = |a: &Answer| {
            if a.message.is_empty() {
                code_name(a.code)
            } else {
                format!("{} \"{}\"", code_name(a.code), short(&a.message))
            }
        };
        (
            Verdict::Broken,
            format!(
                "{} where its own server answers {}",
                quoted(&target),
                code_name(own.code)
            ),
        )
    } else if !defaulted.is_empty() {
        let (verb, pronoun) = if defaulted.len() == 1 {
            ("came back at its default", "it")
        } else {
            ("came back at their defaults", "them")
        };
        (
            Verdict::Degraded,
            format!(
                "{} {verb} (its own server sets {pronoun})",
                defaulted.join(", ")
            ),
        )
    } else {
        (Verdict::Ok, String::new())
    };
    Call {
        requests,
        target: target.ending(),
        own: own.ending(),
        unknown: unknown.into_iter().collect(),
        defaulted,
        decode_error,
        verdict,
        reason,
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The message type of a field's values (a map's value type), if they are messages.
fn nested(f: &prost_reflect::FieldDescriptor) -> Option<MessageDescriptor> {
    match f.kind() {
        Kind::Message(m) if f.is_map() => match m.map_entry_value_field().kind() {
            Kind::Message(v) => Some(v),
            _ => None,
        },
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

/// The messages inside a field's value (itself, a list's elements, a map's values).
fn messages_in(v: &Value) -> Vec<&DynamicMessage> {
    match v {
        Value::Message(m) => vec![m],
        Value::List(l) => l.iter().filter_map(Value::as_message).collect(),
        Value::Map(m) => m.values().filter_map(Value::as_message).collect(),
        _ => Vec::new(),
    }
}

/// Fields present on the wire that `msg`'s descriptor does not know, at any depth, named by
/// the other version where it knows them: `lines.6 (gift_wrap)`.
fn unknown_paths(
    msg: &DynamicMessage,
    other: Option<&MessageDescriptor>,
    prefix: &str,
    out: &mut BTreeSet<String>,
) {
    for u in msg.unknown_fields() {
        let name = other
            .and_then(|o| o.get_field(u.number()))
            .map(|f| format!(" ({})", f.name()))
            .unwrap_or_default();
        out.insert(format!("{prefix}{}{name}", u.number()));
    }
    for (f, v) in msg.fields() {
        let other_nested = other
            .and_then(|o| o.get_field(f.number()))
            .and_then(|g| nested(&g));
        let prefix = format!("{prefix}{}.", f.name());
        for m in messages_in(v) {
            unknown_paths(m, other_nested.as_ref(), &prefix, out);
        }
    }
}

/// Every field set (not at its default) in `msg`, at any depth: `lines.quantity`.
fn set_paths(msg: &DynamicMessage, prefix: &str, out: &mut BTreeSet<String>) {
    for (f, v) in msg.fields() {
        let path = format!("{prefix}{}", f.name());
        for m in messages_in(v) {
            set_paths(m, &format!("{path}."), out);
        }
        out.insert(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// `t.Reply` as the caller knows it, and as the other version declares it.
    fn replies() -> (MessageDescriptor, MessageDescriptor) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let write = |name: &str, extra: &str| {
            let text = format!(
                "syntax = \"proto3\"; package {name};
                 message Inner {{ int32 a = 1; {extra} }}
                 message Reply {{ string s = 1; int32 n = 2; Inner inner = 3; }}"
            );
            let sub = dir.path().join(name);
            std::fs::create_dir_all(&sub).expect("a folder");
            std::fs::write(sub.join("t.proto"), text).expect("a proto");
            let (pool, _) = crate::source::compile_dir(&sub, &[]).expect("it compiles");
            pool.get_message_by_name(&format!("{name}.Reply"))
                .expect("Reply")
        };
        (write("mine", ""), write("other", "string extra = 9;"))
    }

    fn answer(code: Code, replies: Vec<Vec<u8>>) -> Answer {
        Answer {
            code,
            message: String::new(),
            replies,
            capped: None,
            served_by: None,
        }
    }

    fn encode(desc: &MessageDescriptor, json: &str) -> Vec<u8> {
        let mut de = serde_json::Deserializer::from_str(json);
        DynamicMessage::deserialize(desc.clone(), &mut de)
            .expect("valid JSON")
            .encode_to_vec()
    }

    #[test]
    fn a_call_is_judged_against_the_callers_own_server() {
        let (mine, other) = replies();
        let full = encode(&mine, r#"{"s": "x", "n": 7, "inner": {"a": 1}}"#);
        let judge = |own, target| judge(vec!["empty".into()], &mine, Some(&other), own, target);

        let same = judge(
            answer(Code::Ok, vec![full.clone()]),
            answer(Code::Ok, vec![full.clone()]),
        );
        assert_eq!((same.verdict, same.reason.as_str()), (Verdict::Ok, ""));

        // A field the other version added, nested: unknown to the caller, named, and ok.
        let added = encode(
            &other,
            r#"{"s": "x", "n": 7, "inner": {"a": 1, "extra": "y"}}"#,
        );
        let call = judge(
            answer(Code::Ok, vec![full.clone()]),
            answer(Code::Ok, vec![added]),
        );
        assert_eq!(call.unknown, ["inner.9 (extra)"]);
        assert_eq!(call.verdict, Verdict::Ok);

        // n and inner.a lost: degraded.
        let lost = encode(&mine, r#"{"s": "x", "inner": {}}"#);
        let call = judge(
            answer(Code::Ok, vec![full.clone()]),
            answer(Code::Ok, vec![lost]),
        );
        assert_eq!(call.defaulted, ["inner.a", "n"]);
        assert_eq!(call.verdict, Verdict::Degraded);
        assert_eq!(
            call.reason,
            "inner.a, n came back at their defaults (its own server sets them)"
        );

        // Field 1 as a varint where the caller expects a string: the reply does not decode.
        let call = judge(
            answer(Code::Ok, vec![full.clone()]),
            answer(Code::Ok, vec![vec![0x08, 0x01]]),
        );
        assert_eq!(call.verdict, Verdict::Broken);
        assert!(
            call.reason
                .starts_with("reply 1 (2 bytes) is not a mine.Reply"),
            "{}",
            call.reason
        );

        // Another status than the own server's.
        let mut unimplemented = answer(Code::Unimplemented, Vec::new());
        unimplemented.message = "Method not found!".into();
        let call = judge(answer(Code::Ok, vec![full]), unimplemented);
        assert_eq!(call.verdict, Verdict::Broken);
        assert_eq!(
            call.reason,
            "UNIMPLEMENTED \"Method not found!\" where its own server answers OK"
        );
        assert_eq!(call.target.code, "UNIMPLEMENTED");
        assert_eq!(call.own.code, "OK");
    }
}
