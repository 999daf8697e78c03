//! The port's first layer: turns requests that are not gRPC into clear errors, enforces
//! deadlines over whole responses (streams included), and counts what is open.
//!
//! - HTTP/1.x on the gRPC port: HTTP 505 with a plain-text explanation (without this layer the
//!   client would get raw HTTP/2 bytes back).
//! - A content-type other than `application/grpc[+...]`: HTTP 415 with `INVALID_ARGUMENT`
//!   naming it (tonic alone would serve `application/json` requests as if they were gRPC).
//! - Deadline: the sooner of the client's `grpc-timeout` and the server's request timeout. When
//!   it passes, the call ends with `DEADLINE_EXCEEDED`, even a stream whose headers are already
//!   sent (tonic's own timeout covers only the headers, and reports `CANCELLED`).
//! - A request message larger than the limit: `RESOURCE_EXHAUSTED` naming both sizes, read from
//!   the gRPC frame header before the message is buffered (tonic alone says `OUT_OF_RANGE`).
//! - Every request counts as open from arrival until its response body ends or is dropped, so a
//!   cancelled stream is visibly freed.

mod body;
mod layer;
mod service;

pub use layer::GuardLayer;
pub use service::Guard;
