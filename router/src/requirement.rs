//! The `x-api-version` request header: an optional semver requirement such as `^1.1`,
//! `=2.0.0` or `>=1, <3`.

use http::HeaderMap;
use semver::VersionReq;
use tonic::Status;

/// Name of the request header that carries a version requirement, and of the response header
/// that names the version which served the request.
pub const API_VERSION_HEADER: &str = "x-api-version";

/// Reads the requirement from `headers`: `Ok(None)` when the header is absent,
/// `INVALID_ARGUMENT` naming the header and the parse error when it is not a semver requirement.
pub fn parse_requirement(headers: &HeaderMap) -> Result<Option<VersionReq>, Status> {
    let Some(value) = headers.get(API_VERSION_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        Status::invalid_argument(format!(
            "{API_VERSION_HEADER} header is not visible ASCII; expected a semver requirement such as ^1.1"
        ))
    })?;
    VersionReq::parse(text.trim()).map(Some).map_err(|err| {
        Status::invalid_argument(format!(
            "{API_VERSION_HEADER} header {} is not a semver requirement ({err}); \
             examples: ^1.1, =2.0.0, >=1, <3",
            crate::quote(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tonic::Code;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(API_VERSION_HEADER, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn absent_header_is_no_requirement() {
        assert_eq!(parse_requirement(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn parses_the_documented_forms() {
        for text in ["^1.1", "=2.0.0", ">=1, <3", "2", "*"] {
            assert!(
                parse_requirement(&headers(text)).unwrap().is_some(),
                "{text}"
            );
        }
    }

    #[test]
    fn garbage_is_invalid_argument_quoting_the_value() {
        for text in ["banana", "^^1", ">=1 <3 ,", "1.2.3.4"] {
            let status = parse_requirement(&headers(text)).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().contains(text), "{}", status.message());
        }
    }
}
