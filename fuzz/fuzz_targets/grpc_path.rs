//! Fuzzes the router's gRPC path parsing: any string either is rejected or splits into parts
//! that put back together give the same path, with no '/' inside a part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::GrpcPath;

fuzz_target!(|path: &str| {
    let Some(parsed) = GrpcPath::parse(path) else {
        return;
    };
    assert!(!parsed.service.is_empty() && !parsed.method.is_empty());
    for part in [parsed.package, parsed.service, parsed.method] {
        assert!(!part.contains('/'), "{path:?} → {parsed:?}");
    }
    assert!(!parsed.service.contains('.'), "{path:?} → {parsed:?}");
    let rebuilt = if parsed.package.is_empty() {
        format!("/{}/{}", parsed.service, parsed.method)
    } else {
        format!("/{}.{}/{}", parsed.package, parsed.service, parsed.method)
    };
    assert_eq!(rebuilt, path);
});
