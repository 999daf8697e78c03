//! The deprecated fields a request sets: a sampled call's first message decoded with its
//! method's input descriptor, and every field it sets whose descriptor says `deprecated =
//! true` named, nested messages, lists and maps included. Bounded in depth and in the fields
//! visited, so a crafted message costs little more than its decoding.

use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use std::collections::BTreeSet;

/// Nesting levels looked into at most.
const MAX_DEPTH: usize = 32;
/// Field values visited at most in one message.
const MAX_VISITS: usize = 10_000;

/// The full names of the deprecated fields `payload` (an encoded `input`) sets, sorted; `None`
/// when it does not decode.
pub(crate) fn set_in(input: &MessageDescriptor, payload: &[u8]) -> Option<BTreeSet<String>> {
    let message = DynamicMessage::decode(input.clone(), payload).ok()?;
    let mut found = BTreeSet::new();
    let mut visits = 0;
    walk(&message, 0, &mut visits, &mut found);
    Some(found)
}

fn walk(message: &DynamicMessage, depth: usize, visits: &mut usize, found: &mut BTreeSet<String>) {
    if depth > MAX_DEPTH {
        return;
    }
    for (field, value) in message.fields() {
        *visits += 1;
        if *visits > MAX_VISITS {
            return;
        }
        let deprecated = field
            .field_descriptor_proto()
            .options
            .as_ref()
            .is_some_and(|options| options.deprecated());
        if deprecated {
            found.insert(field.full_name().to_string());
        }
        visit(value, depth, visits, found);
    }
}

fn visit(value: &Value, depth: usize, visits: &mut usize, found: &mut BTreeSet<String>) {
    match value {
        Value::Message(inner) => walk(inner, depth + 1, visits, found),
        Value::List(items) => {
            for item in items {
                visit(item, depth, visits, found);
            }
        }
        Value::Map(entries) => {
            for item in entries.values() {
                visit(item, depth, visits, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_reflect::DescriptorPool;

    fn pool() -> DescriptorPool {
        let source = r#"
            syntax = "proto3";
            package t.v1;
            message Line { string sku = 1; string coupon = 2 [deprecated = true]; }
            message Order {
              repeated Line lines = 1;
              string note = 2 [deprecated = true];
              map<string, Line> by_name = 3;
              int32 count = 4;
            }
        "#;
        let dir = std::env::temp_dir().join(format!("deprecated-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.proto"), source).unwrap();
        let set = protox::compile(["t.proto"], [&dir]).expect("the test proto compiles");
        std::fs::remove_dir_all(&dir).unwrap();
        DescriptorPool::from_file_descriptor_set(set).unwrap()
    }

    #[test]
    fn deprecated_fields_set_anywhere_in_the_message_are_named() {
        let pool = pool();
        let order = pool.get_message_by_name("t.v1.Order").unwrap();
        let line = pool.get_message_by_name("t.v1.Line").unwrap();
        let mut message = DynamicMessage::new(order.clone());
        message.set_field_by_name("count", Value::I32(3));
        assert_eq!(
            set_in(&order, &message.encode_to_vec()),
            Some(BTreeSet::new())
        );
        let mut coupon = DynamicMessage::new(line);
        coupon.set_field_by_name("coupon", Value::String("X".into()));
        message.set_field_by_name("lines", Value::List(vec![Value::Message(coupon)]));
        message.set_field_by_name("note", Value::String("n".into()));
        let names = set_in(&order, &message.encode_to_vec()).unwrap();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["t.v1.Line.coupon", "t.v1.Order.note"]);
        assert_eq!(set_in(&order, b"\xff\xff"), None);
    }
}
