//! A response or request body that lets something watch its frames go by: the one wrapper the
//! router and the port share for counting a request until its body ends ([`CountedBody`]) and
//! for refusing oversized messages from their frame headers (the port's size limit).

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::{Status, body::Body};

/// Watches the frames of an [`InspectedBody`] without changing them.
pub trait Inspect: Send + 'static {
    /// Sees one frame; an error ends the body with that status instead of the frame.
    fn frame(&mut self, _frame: &Frame<Bytes>) -> Result<(), Status> {
        Ok(())
    }
}

/// `inner`, with `I` shown every frame; the inspector is dropped as soon as the body ends, so
/// whatever it holds (an in-flight slot) is released then rather than when the body is.
pub struct InspectedBody<I> {
    inner: Body,
    inspector: Option<I>,
}

impl<I> std::fmt::Debug for InspectedBody<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectedBody")
            .field("ended", &self.inspector.is_none())
            .finish_non_exhaustive()
    }
}

impl<I: Inspect> InspectedBody<I> {
    /// `inner`, watched by `inspector`.
    pub fn new(inner: Body, inspector: I) -> Self {
        Self {
            inner,
            inspector: Some(inspector),
        }
    }
}

impl<I: Inspect + Unpin> HttpBody for InspectedBody<I> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(Err(status)) = self.inspector.as_mut().map(|i| i.frame(frame)) {
                    return Poll::Ready(Some(Err(status)));
                }
            }
            Poll::Ready(None) => self.inspector = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
