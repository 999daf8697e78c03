//! Ending a response body early with a gRPC status, for bodies that must stop a call after its
//! headers are sent (a dead upstream, a passed deadline).

use bytes::Bytes;
use http_body::Frame;
use tonic::Status;

/// The trailers frame that ends a call with `status`, or the status itself as the body's error
/// if it cannot be written as headers.
pub fn status_trailers(status: Status) -> Result<Frame<Bytes>, Status> {
    let mut trailers = http::HeaderMap::new();
    status.add_header(&mut trailers)?;
    Ok(Frame::trailers(trailers))
}
