//! Metadata the probe sends with its calls: `-H 'NAME: VALUE'` (every call), `--old-header`
//! and `--new-header` (only old or new clients' calls), e.g. an `x-api-version: ^1` pin that a
//! gateway routes by. Names and values are checked when the flags are read, so a bad header is
//! refused before any call; headers gRPC or HTTP/2 reserve, which tonic or h2 would drop or
//! reject on the way out, are refused with the reason.

use serde::{Serialize, Serializer};
use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};

/// One metadata entry sent with the probe's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    key: MetadataKey<Ascii>,
    value: MetadataValue<Ascii>,
}

/// Names HTTP/2 forbids in requests (connection-specific) or that tonic sets itself.
const RESERVED: [&str; 7] = [
    "te",
    "content-type",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Names whose values are credentials: the report shows their length, not the value.
const SECRET: [&str; 5] = ["authorization", "cookie", "token", "secret", "key"];

impl Header {
    /// Parses `NAME: VALUE` (space after the colon optional, as curl and grpcurl take it).
    pub fn parse(text: &str) -> Result<Header, String> {
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("expected 'NAME: VALUE', got {text:?}"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(format!("expected 'NAME: VALUE', got {text:?} (no name)"));
        }
        let lower = name.to_ascii_lowercase();
        if lower.ends_with("-bin") {
            return Err(format!(
                "{name}: binary metadata (names ending in -bin) is not supported yet; send a text header"
            ));
        }
        if lower.starts_with("grpc-") {
            return Err(format!(
                "{name}: names starting with grpc- are reserved by gRPC (the deadline is --timeout)"
            ));
        }
        if RESERVED.contains(&lower.as_str()) {
            return Err(format!(
                "{name}: a header HTTP/2 or gRPC sets itself, not metadata a call can carry"
            ));
        }
        let key = MetadataKey::<Ascii>::from_bytes(name.as_bytes()).map_err(|_| {
            format!("{name:?} is not a valid metadata name (letters, digits, - _ . only)")
        })?;
        if value.is_empty() {
            return Err(format!("{name}: the value is empty"));
        }
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(format!(
                "{name}: {value:?} is not a valid metadata value (printable ASCII only)"
            ));
        }
        let value = MetadataValue::<Ascii>::try_from(value)
            .map_err(|_| format!("{name}: {value:?} is not a valid metadata value"))?;
        Ok(Header { key, value })
    }

    /// The name, lowercase.
    pub fn name(&self) -> &str {
        self.key.as_str()
    }

    /// The value as sent (printable ASCII).
    pub fn value(&self) -> &str {
        self.value.to_str().unwrap_or_default()
    }

    /// The value as shown in reports: itself, or `<N bytes, not shown>` for credentials.
    pub fn shown_value(&self) -> String {
        let name = self.name();
        if SECRET.iter().any(|s| name.contains(s)) {
            format!("<{} bytes, not shown>", self.value.as_encoded_bytes().len())
        } else {
            self.value.to_str().unwrap_or_default().to_string()
        }
    }

    /// Appends this header to a call's metadata (a name given twice is sent twice).
    pub(crate) fn add_to(&self, metadata: &mut MetadataMap) {
        metadata.append(self.key.clone(), self.value.clone());
    }
}

impl std::fmt::Display for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name(), self.shown_value())
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked_when_read() {
        let h = Header::parse("X-Api-Version: ^1").expect("a valid header");
        assert_eq!(h.to_string(), "x-api-version: ^1");
        assert_eq!(
            Header::parse("x-api-version:>=1, <3")
                .expect("no space needed")
                .shown_value(),
            ">=1, <3"
        );
        assert_eq!(
            Header::parse("authorization: Bearer abc")
                .expect("valid")
                .to_string(),
            "authorization: <10 bytes, not shown>"
        );
        for (bad, says) in [
            ("x-api-version", "expected 'NAME: VALUE'"),
            (": ^1", "no name"),
            ("bad name: 1", "not a valid metadata name"),
            ("x-trace-bin: AAA=", "binary metadata"),
            ("grpc-timeout: 1S", "reserved by gRPC"),
            ("content-type: text/plain", "sets itself"),
            ("x-empty:  ", "the value is empty"),
            ("x-v: caf\u{e9}", "printable ASCII only"),
        ] {
            let err = Header::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
