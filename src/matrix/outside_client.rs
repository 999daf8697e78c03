//! What the matrix's outside clients (grpcurl, Python) share: finding the caller's method by
//! its path, the traffic's requests as the protobuf JSON those programs read, and the record of
//! the calls the client itself could not make.

use compat::probe::Answer;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use std::sync::{Mutex, PoisonError};
use tonic::Code;

/// The calls an outside client could not make (the program did not run, did not answer, could
/// not build the request), since last taken. Their answers are `INTERNAL` on every lane alike,
/// which would compare as equal statuses, so a cell with any is broken whatever it compares as.
#[derive(Debug, Default)]
pub(super) struct Failures(Mutex<Vec<String>>);

impl Failures {
    /// Records that `client` could not make the call to `path`, and answers it `INTERNAL`.
    pub(super) fn answer(&self, client: &str, path: &str, why: String) -> Answer {
        let why = format!("{client} client: {why}");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{path}: {why}"));
        failed(Code::Internal, why)
    }

    /// The failures since the last call of this, oldest first.
    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_the_client_could_not_make_is_answered_internal_and_recorded_once() {
        let failures = Failures::default();
        let answer = failures.answer("grpcurl", "/a.S/M", "cannot run grpcurl".to_string());
        assert_eq!(answer.code, Code::Internal);
        assert_eq!(answer.message, "grpcurl client: cannot run grpcurl");
        assert_eq!(
            failures.take(),
            ["/a.S/M: grpcurl client: cannot run grpcurl"]
        );
        assert!(failures.take().is_empty(), "taken means gone");
    }
}
