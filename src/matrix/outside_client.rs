//! What the matrix's outside clients (grpcurl, Python) share: finding the caller's method by
//! its path, the traffic's requests as the protobuf JSON those programs read, and an answer
//! for a call the client could not make.

use compat::probe::Answer;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tonic::Code;

/// `pool`'s method at `path` (`/pkg.Service/Method` or without the slash).
pub(super) fn method_at(pool: &DescriptorPool, path: &str) -> Option<MethodDescriptor> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    pool.get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// Each request of a call as protobuf JSON, read with the caller's descriptors.
pub(super) fn requests_json(
    m: &MethodDescriptor,
    messages: &[Vec<u8>],
) -> Result<Vec<serde_json::Value>, String> {
    messages
        .iter()
        .map(|bytes| {
            let message = DynamicMessage::decode(m.input(), bytes.as_slice())
                .map_err(|e| format!("the request is not a {}: {e}", m.input().full_name()))?;
            serde_json::to_value(&message).map_err(|e| e.to_string())
        })
        .collect()
}

/// An answer of `code` with no reply: a call the client could not make or finish.
pub(super) fn failed(code: Code, message: String) -> Answer {
    Answer {
        code,
        message,
        replies: Vec::new(),
        capped: None,
        served_by: None,
    }
}
