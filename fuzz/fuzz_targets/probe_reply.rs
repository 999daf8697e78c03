//! Fuzzes the probe's reply decoding: any reply bytes decoded under each message of the
//! testbed's own API (as `testbed probe` decodes a target's replies with the caller's
//! descriptors) give a message or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost_reflect::{DescriptorPool, DynamicMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(pool) = DescriptorPool::decode(services::FILE_DESCRIPTOR_SET) else {
        return;
    };
    for m in pool.all_messages() {
        if let Ok(msg) = DynamicMessage::decode(m, data) {
            let _ = serde_json::to_string(&msg);
        }
    }
});
