//! References to earlier replies in a traffic file's requests: a string `${NAME.PATH}` (NAME the
//! `name` of an earlier call) becomes that call's first reply's value at PATH, taken from the
//! same server the request goes to (each server's own order id, not the old one's). A string
//! that is exactly one reference takes the value's JSON type (a number stays a number); a
//! reference inside a longer string is replaced by the value's text.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The first reply of each named call on one server, as protobuf JSON with proto field names
/// (an error: how the call ended there, when it did not succeed).
pub(super) type Replies = BTreeMap<String, Result<Value, String>>;

/// `value` with every reference to a name in `known` resolved from `replies`; an error names
/// the reference that could not be resolved and why.
pub(super) fn resolve(
    value: &Value,
    known: &BTreeSet<String>,
    replies: &Replies,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => substitute(s, known, replies)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve(v, known, replies))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, known, replies)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether `value` holds a reference to a name in `known`.
pub(super) fn refers(value: &Value, known: &BTreeSet<String>) -> bool {
    match value {
        Value::String(s) => !references(s, known).is_empty(),
        Value::Array(items) => items.iter().any(|v| refers(v, known)),
        Value::Object(map) => map.values().any(|v| refers(v, known)),
        _ => false,
    }
}

/// The references in `s` to names in `known`: byte range and the text inside `${...}`.
fn references(s: &str, known: &BTreeSet<String>) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = s[from..].find("${").map(|i| i + from) {
        let Some(end) = s[start..].find('}').map(|i| i + start) else {
            break;
        };
        let inner = &s[start + 2..end];
        let name = inner.split(['.', '[']).next().unwrap_or_default();
        if known.contains(name) {
            out.push((start..end + 1, inner.to_string()));
        }
        from = end + 1;
    }
    out
}

fn substitute(s: &str, known: &BTreeSet<String>, replies: &Replies) -> Result<Value, String> {
    let refs = references(s, known);
    if refs.is_empty() {
        return Ok(Value::String(s.to_string()));
    }
    if refs.len() == 1 && refs[0].0 == (0..s.len()) {
        return lookup(&refs[0].1, replies);
    }
    let mut out = String::new();
    let mut last = 0;
    for (range, inner) in refs {
        out.push_str(&s[last..range.start]);
        match lookup(&inner, replies)? {
            Value::String(text) => out.push_str(&text),
            other => out.push_str(&other.to_string()),
        }
        last = range.end;
    }
    out.push_str(&s[last..]);
    Ok(Value::String(out))
}

/// `NAME.a.b[0].c` in `replies`.
fn lookup(reference: &str, replies: &Replies) -> Result<Value, String> {
    let name = reference.split(['.', '[']).next().unwrap_or_default();
    let mut at = match replies.get(name) {
        Some(Ok(reply)) => reply,
        Some(Err(why)) => return Err(format!("${{{reference}}}: call {name:?} {why}")),
        None => return Err(format!("${{{reference}}}: call {name:?} was not made")),
    };
    let mut rest = &reference[name.len()..];
    while !rest.is_empty() {
        let (next, tail) = if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (at.get(&r[..end]), &r[end..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("${{{reference}}}: a [ without ]"))?;
            let index = &r[..end];
            let item = match index.parse::<usize>() {
                Ok(i) => at.get(i),
                Err(_) => at.get(index.trim_matches('"')),
            };
            (item, &r[end + 1..])
        } else {
            return Err(format!(
                "${{{reference}}}: expected .FIELD or [INDEX] at {rest:?}"
            ));
        };
        at = next.ok_or_else(|| {
            format!(
                "${{{reference}}}: the reply of {name:?} has nothing at {:?}",
                &reference[..reference.len() - tail.len()]
            )
        })?;
        rest = tail;
    }
    Ok(at.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_take_the_value_of_the_same_servers_reply() {
        let known = BTreeSet::from(["place".to_string()]);
        let replies = Replies::from([(
            "place".to_string(),
            Ok(json!({"order_id": "v1-7", "total_cents": 42, "lines": [{"sku": "a"}]})),
        )]);
        let request = json!({
            "order_id": "${place.order_id}",
            "n": "${place.total_cents}",
            "text": "order ${place.order_id} of ${place.lines[0].sku}",
            "other": "${unknown.x} and ${place",
        });
        assert!(refers(&request, &known));
        let resolved = resolve(&request, &known, &replies).expect("it resolves");
        assert_eq!(
            resolved,
            json!({
                "order_id": "v1-7",
                "n": 42,
                "text": "order v1-7 of a",
                "other": "${unknown.x} and ${place",
            })
        );
        let missing = resolve(&json!("${place.nothing}"), &known, &replies).expect_err("no field");
        assert!(
            missing.contains("has nothing at \"place.nothing\""),
            "{missing}"
        );
        let failed = Replies::from([("place".to_string(), Err("ended NOT_FOUND".to_string()))]);
        let err = resolve(&json!("${place.order_id}"), &known, &failed).expect_err("failed");
        assert!(err.contains("call \"place\" ended NOT_FOUND"), "{err}");
    }
}
