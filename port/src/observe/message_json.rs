//! A recorded message as the traffic file holds it: decompressed (gzip, deflate, zstd) within
//! the call's cap and decoded with the method's descriptors into protobuf JSON.

use http::HeaderMap;
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use std::io::Read;

/// A request's or reply's `grpc-encoding`, when one is set.
pub(crate) fn encoding(headers: &HeaderMap) -> Option<String> {
    headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .filter(|e| *e != "identity")
        .map(str::to_string)
}

/// One message as protobuf JSON (proto field names), decompressed first when it is.
pub(super) fn json(
    payload: &[u8],
    compressed: bool,
    encoding: Option<&str>,
    desc: &MessageDescriptor,
    cap: usize,
) -> Result<serde_json::Value, String> {
    let plain;
    let bytes = if compressed {
        plain = decompress(payload, encoding, cap)?;
        &plain[..]
    } else {
        payload
    };
    let msg = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| format!("not a {}: {e}", desc.full_name()))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("no JSON form: {e}"))
}

/// `payload` decompressed with `encoding`, at most `cap` bytes.
pub(crate) fn decompress(
    payload: &[u8],
    encoding: Option<&str>,
    cap: usize,
) -> Result<Vec<u8>, String> {
    let reader: Box<dyn Read + '_> = match encoding {
        Some("gzip") => Box::new(flate2::read::GzDecoder::new(payload)),
        // gRPC's "deflate" is zlib's format, as grpc-go and tonic write it.
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(payload)),
        Some("zstd") => {
            Box::new(zstd::stream::read::Decoder::new(payload).map_err(|e| format!("zstd: {e}"))?)
        }
        other => {
            return Err(format!(
                "compressed with {}, which the gateway does not decompress",
                other.unwrap_or("no grpc-encoding")
            ));
        }
    };
    let mut out = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("does not decompress: {e}"))?;
    if out.len() > cap {
        return Err(format!(
            "more than {cap} bytes decompressed (the call's cap)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_messages_are_read_in_each_encoding_within_the_cap() {
        use std::io::Write as _;
        let plain = b"hello hello hello hello".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).expect("written");
        let gz = gz.finish().expect("gzip");
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&plain).expect("written");
        let zlib = zlib.finish().expect("zlib");
        let zst = zstd::stream::encode_all(&plain[..], 0).expect("zstd");
        for (encoding, bytes) in [("gzip", gz), ("deflate", zlib), ("zstd", zst)] {
            assert_eq!(decompress(&bytes, Some(encoding), 100), Ok(plain.clone()));
            let err = decompress(&bytes, Some(encoding), 5).expect_err("past the cap");
            assert!(err.contains("more than 5 bytes"), "{encoding}: {err}");
        }
        let err = decompress(b"x", Some("snappy"), 100).expect_err("unknown");
        assert!(err.contains("snappy"), "{err}");
    }
}
