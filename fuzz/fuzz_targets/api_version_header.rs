//! Fuzzes the `x-api-version` header parsing: any bytes give a requirement or INVALID_ARGUMENT
//! naming the header, never a panic; a parsed requirement prints as one that parses again to the
//! same requirement, and matching it against versions never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::{API_VERSION_HEADER, parse_requirement};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(API_VERSION_HEADER, value);
    match parse_requirement(&headers) {
        Ok(Some(requirement)) => {
            let printed = requirement.to_string();
            let mut again = http::HeaderMap::new();
            again.insert(API_VERSION_HEADER, http::HeaderValue::from_str(&printed).unwrap());
            let reparsed = parse_requirement(&again).unwrap().unwrap();
            assert_eq!(reparsed, requirement, "{printed}");
            for version in ["0.0.0", "1.0.0", "2.0.0", "2.1.0-rc.1", "18446744073709551615.0.0"] {
                let _ = requirement.matches(&semver::Version::parse(version).unwrap());
            }
        }
        Ok(None) => unreachable!("the header is present"),
        Err(status) => {
            assert_eq!(status.code(), tonic_code_invalid_argument());
            assert!(status.message().contains(API_VERSION_HEADER));
        }
    }
});

fn tonic_code_invalid_argument() -> tonic::Code {
    tonic::Code::InvalidArgument
}
