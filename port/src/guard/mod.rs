//! The port's first layer: turns requests that are not gRPC into clear errors, answers what
//! the gRPC specification fixes, enforces deadlines over whole responses (streams included),
//! and counts what is open.
//!
//! - gRPC-Web, which arrives here untranslated only when `--grpc-web` is off: HTTP 415 with
//!   `INVALID_ARGUMENT` saying how to turn it on ([`crate::web`] translates it otherwise).
//! - HTTP/1.x on the gRPC port: HTTP 505 with a plain-text explanation (without this layer the
//!   client would get raw HTTP/2 bytes back).
//! - A method other than POST: HTTP 405 with `INTERNAL`, as grpc-go (tonic serves a GET).
//! - A content-type other than `application/grpc[+...]`: HTTP 415 with `INVALID_ARGUMENT`
//!   naming it (tonic alone would serve `application/json` requests as if they were gRPC).
//! - A malformed `grpc-timeout`: HTTP 400 with `INTERNAL`, as grpc-go.
//! - `x-api-version` sent twice, or longer than [`MAX_QUOTE_BYTES`]: `INVALID_ARGUMENT` (the
//!   router would route by the first value alone, or quote the whole value back).
//! - A unary request (a method whose client sends one message) with zero or two messages:
//!   `INTERNAL`, as grpc-java and grpc-go (tonic ignores a second message). The check reads
//!   frame headers only and passes the payload on as it arrives: nothing is buffered here.
//! - Deadline: the sooner of the client's `grpc-timeout` and the server's request timeout. When
//!   it passes, the call ends with `DEADLINE_EXCEEDED`, even a stream whose headers are already
//!   sent (tonic's own timeout covers only the headers, and reports `CANCELLED`).
//! - A request message larger than the limit: `RESOURCE_EXHAUSTED` naming both sizes, read from
//!   the gRPC frame header before the message is buffered (tonic alone says `OUT_OF_RANGE`).
//!   For a compressed message that is its compressed size: nothing here decompresses (the
//!   port's tonic services limit the decompressed size too; a remote backend applies its own).
//! - Request messages still arriving, by their declared sizes, within the body budgets (the
//!   port's and each connection's share, [`BodyLimits`]): a message past one gets
//!   `RESOURCE_EXHAUSTED` naming the budget and its flag, so half-sent messages cannot make the
//!   port (or tonic's decoder behind it) hold memory without bound.
//! - Any such refusal answers the call at once, or ends a reply already under way with it.
//! - Every request counts as open from arrival until its response body ends or is dropped, so a
//!   cancelled stream is visibly freed.
//!
//! Client input quoted in an error message is cut to [`MAX_QUOTE_BYTES`] ([`quote`]), and any
//! `grpc-message` in a reply's headers longer than [`MAX_MESSAGE_BYTES`] is cut, so that
//! every answer fits every client's metadata limit (grpcio's is 8 KiB).

mod body;
mod budget;
mod layer;
mod service;

pub(crate) use budget::{BodyBudget, Charge};
pub use budget::{BodyLimits, DEFAULT_BODY_BUDGET_BYTES, DEFAULT_CONNECTION_BODY_BUDGET_BYTES};
pub use layer::GuardLayer;
pub use service::Guard;

pub use router::{MAX_QUOTE_BYTES, quote};

use http::{HeaderMap, HeaderValue};

/// Longest `grpc-message` (percent-encoded) a reply's headers may carry; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Cuts a `grpc-message` header longer than [`MAX_MESSAGE_BYTES`] (never inside a `%XX`
/// escape), marking the cut with `...`.
pub(crate) fn cap_message(headers: &mut HeaderMap) {
    let Some(value) = headers.get("grpc-message") else {
        return;
    };
    if value.len() <= MAX_MESSAGE_BYTES {
        return;
    }
    let bytes = value.as_bytes();
    let mut end = MAX_MESSAGE_BYTES - 3;
    // A '%' in the last two kept bytes starts an escape the cut would split.
    if let Some(at) = bytes[end - 2..end].iter().position(|&b| b == b'%') {
        end = end - 2 + at;
    }
    let mut cut = bytes[..end].to_vec();
    cut.extend_from_slice(b"...");
    if let Ok(value) = HeaderValue::from_bytes(&cut) {
        headers.insert("grpc-message", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_outside_escapes() {
        for pad in 0..4 {
            let mut headers = HeaderMap::new();
            let text = format!("{}{}", "a".repeat(pad), "%20".repeat(1000));
            headers.insert("grpc-message", HeaderValue::from_str(&text).unwrap());
            cap_message(&mut headers);
            let cut = headers["grpc-message"].to_str().unwrap();
            assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
            let kept = cut.strip_suffix("...").unwrap();
            assert!(
                kept.trim_start_matches('a').len().is_multiple_of(3),
                "an escape was split: {kept}"
            );
        }
    }
}
