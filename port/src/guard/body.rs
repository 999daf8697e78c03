//! The request and response bodies the guard wraps: one refuses oversized messages from their
//! frame headers, one ends a call with `DEADLINE_EXCEEDED` when its deadline passes.

use bytes::Bytes;
use http_body::Frame;
use router::{Inspect, InspectedBody};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tonic::{Status, body::Body};

/// Watches a request body's gRPC frame headers and fails it with `RESOURCE_EXHAUSTED` as soon
/// as one announces a message over the limit. Frame headers are 5 bytes: a flag, then a
/// big-endian u32 length; they may be split across data chunks.
#[derive(Debug)]
pub(super) struct SizeLimit {
    limit: usize,
    header: [u8; 5],
    header_len: usize,
    payload_left: usize,
    /// Messages begun so far (one whose frame header is only partly in counts).
    pub(super) started: usize,
}

/// A request body refused once a message in it is over the limit.
pub(super) type SizeLimitedBody = InspectedBody<SizeLimit>;

impl SizeLimit {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
            started: 0,
        }
    }

    /// Walks the frame headers in `chunk`; the first oversized message is an error.
    pub(super) fn scan(&mut self, mut chunk: &[u8]) -> Result<(), Status> {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(chunk.len());
                self.payload_left -= skip;
                chunk = &chunk[skip..];
                continue;
            }
            if self.header_len == 0 {
                self.started += 1;
            }
            let take = (5 - self.header_len).min(chunk.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
            self.header_len += take;
            chunk = &chunk[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "request message of {len} bytes is over this server's limit of {} bytes",
                        self.limit
                    )));
                }
                self.payload_left = len;
            }
        }
        Ok(())
    }
}

impl Inspect for SizeLimit {
    fn frame(&mut self, frame: &Frame<Bytes>) -> Result<(), Status> {
        frame.data_ref().map_or(Ok(()), |data| self.scan(data))
    }
}

/// A response body that ends with `DEADLINE_EXCEEDED` trailers once its deadline passes.
pub(super) struct DeadlineBody {
    inner: Option<Body>,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    pub(super) fn new(inner: Body, at: Instant, timeout: Duration) -> Self {
        Self {
            inner: Some(inner),
            sleep: Box::pin(tokio::time::sleep_until(at)),
            timeout,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                self.inner = None;
            }
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Dropping the inner body ends the handler's stream and frees what it held.
        self.inner = None;
        Poll::Ready(Some(router::status_trailers(exceeded(self.timeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}

/// The status of a call whose deadline passed.
pub(super) fn exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "deadline of {timeout:?} exceeded before the call finished"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_reads_frame_headers_split_across_chunks() {
        let mut body = SizeLimit::new(10);
        let mut stream = vec![0u8, 0, 0, 0, 3, 1, 2, 3];
        stream.extend_from_slice(&[0, 0, 0, 0, 10]);
        stream.extend_from_slice(&[7; 10]);
        for chunk in stream.chunks(3) {
            assert!(body.scan(chunk).is_ok());
        }
        let status = body
            .scan(&[0, 0, 0, 0])
            .and_then(|()| body.scan(&[11]))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("11 bytes") && status.message().contains("10 bytes"));
    }
}
