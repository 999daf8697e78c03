//! The wire confirmations, as unit tests.

use super::*;

/// Messages in a sample, the sample itself included.
fn messages(m: &DynamicMessage) -> u64 {
    1 + m
        .fields()
        .map(|(_, v)| match v {
            Value::Message(c) => messages(c),
            Value::List(l) => l.iter().map(|x| x.as_message().map_or(0, messages)).sum(),
            _ => 0,
        })
        .sum::<u64>()
}

#[test]
fn a_sample_of_a_recursive_message_stays_within_the_budget() {
    // Built without the loaders' check: 32 repeated fields of its own type would need
    // 96^3 messages at depth 3.
    let bytes = crate::budget::tests::recursive_set(32);
    let pool = prost_reflect::DescriptorPool::decode(bytes.as_slice()).unwrap();
    let node = pool.get_message_by_name("rec.Node").unwrap();
    let n = messages(&sample(&node, 0));
    assert!(n <= MAX_SAMPLE_NODES + 1, "{n} messages");
    assert!(n > 100, "{n} messages: the sample is still filled");
}
