//! The verdict on one call: the target's answer compared with the caller's own server's
//! (statuses, decoding with the caller's descriptors, fields unknown to the caller, fields that
//! came back at their default, values that changed).

use super::calling::{Answer, code_name, short};
use super::report::{Call, Verdict};
use super::values::{Seen, changes, flatten};
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};
use std::collections::BTreeSet;
use tonic::Code;

/// What the caller expects back from a method.
pub(super) struct Expect<'a> {
    /// The reply type, as the caller knows it.
    pub(super) output: &'a MessageDescriptor,
    /// The other version's reply type, to name the fields the caller does not know.
    pub(super) other_output: Option<&'a MessageDescriptor>,
    /// The method streams its replies (paths then carry the message's index).
    pub(super) stream: bool,
}

/// The answers to one call: the caller's own server's, twice, and the target's.
pub(super) struct Answers {
    pub(super) own: Answer,
    pub(super) again: Answer,
    pub(super) target: Answer,
}

/// Compares the target's answer with the own server's: statuses, decoding, unknown,
/// defaulted and changed fields (what differs between the own server's two answers is noise).
pub(super) fn judge(requests: Vec<String>, expect: &Expect, answers: Answers) -> Call {
    let Answers { own, again, target } = answers;
    let output = expect.output;
    let decode = |bytes: &Vec<u8>| DynamicMessage::decode(output.clone(), bytes.as_slice());
    let mut unknown = BTreeSet::new();
    let mut target_set = BTreeSet::new();
    let mut target_msgs = Vec::new();
    let mut decode_error = None;
    for (i, bytes) in target.replies.iter().enumerate() {
        match decode(bytes) {
            Ok(msg) => {
                unknown_paths(&msg, expect.other_output, "", &mut unknown);
                set_paths(&msg, "", &mut target_set);
                target_msgs.push(msg);
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
    let decoded = |a: &Answer| -> Vec<DynamicMessage> {
        a.replies.iter().filter_map(|b| decode(b).ok()).collect()
    };
    let (own_msgs, again_msgs) = (decoded(&own), decoded(&again));
    let set_of = |msgs: &[DynamicMessage]| {
        let mut set = BTreeSet::new();
        for msg in msgs {
            set_paths(msg, "", &mut set);
        }
        set
    };
    let mut own_set = set_of(&own_msgs);
    if again.code == Code::Ok {
        // A field only one of the own server's answers sets is noise.
        let again_set = set_of(&again_msgs);
        own_set.retain(|p| again_set.contains(p));
    }
    let all_ok = own.code == Code::Ok && target.code == Code::Ok;
    let defaulted: Vec<String> = if all_ok {
        own_set.difference(&target_set).cloned().collect()
    } else {
        Vec::new()
    };
    let changed = if all_ok && again.code == Code::Ok && decode_error.is_none() {
        let seen = |msgs: &[DynamicMessage], a: &Answer| Seen {
            flat: flatten(msgs, expect.stream),
            count: msgs.len(),
            capped: a.capped.is_some(),
        };
        changes(
            &seen(&own_msgs, &own),
            &seen(&again_msgs, &again),
            &seen(&target_msgs, &target),
        )
    } else {
        Vec::new()
    };
    let (verdict, reason) = if let Some(e) = &decode_error {
        (Verdict::Broken, e.clone())
    } else if own.code != target.code && again.code != target.code {
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
    } else if let Some(first) = changed.first() {
        let more = match changed.len() {
            1 => String::new(),
            n => format!(" (and {} more values)", n - 1),
        };
        (
            Verdict::Changed,
            format!(
                "{} is {} where its own server answers {}{more}",
                first.path, first.target, first.own
            ),
        )
    } else {
        (Verdict::Ok, String::new())
    };
    Call {
        requests,
        target: target.ending(),
        own: own.ending(),
        own_again: again.ending(),
        unknown: unknown.into_iter().collect(),
        defaulted,
        changed,
        decode_error,
        verdict,
        reason,
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
        let expect = Expect {
            output: &mine,
            other_output: Some(&other),
            stream: false,
        };
        let judge = |own: Answer, target| {
            let again = own.clone();
            judge(
                vec!["empty".into()],
                &expect,
                Answers { own, again, target },
            )
        };

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

        // n answered otherwise: changed, unless the own server's two answers disagree on it.
        let other_n = encode(&mine, r#"{"s": "x", "n": 8, "inner": {"a": 1}}"#);
        let call = judge(
            answer(Code::Ok, vec![full.clone()]),
            answer(Code::Ok, vec![other_n.clone()]),
        );
        assert_eq!(call.verdict, Verdict::Changed);
        assert_eq!(call.reason, "n is 8 where its own server answers 7");
        let noisy = Answers {
            own: answer(Code::Ok, vec![full.clone()]),
            again: answer(
                Code::Ok,
                vec![encode(&mine, r#"{"s": "x", "n": 9, "inner": {"a": 1}}"#)],
            ),
            target: answer(Code::Ok, vec![other_n]),
        };
        let call = super::judge(vec!["empty".into()], &expect, noisy);
        assert_eq!((call.verdict, call.changed.len()), (Verdict::Ok, 0));

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
