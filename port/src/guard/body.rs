//! The request and response bodies the guard wraps: the request body checks messages from their
//! frame headers as they pass (size, budget, one message for unary methods) without holding
//! them; the response body ends a call with the request body's refusal, or with
//! `DEADLINE_EXCEEDED` when its deadline passes.

use super::budget::{BodyBudget, Charge};
use bytes::Bytes;
use http_body::Frame;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tonic::{Status, body::Body};

/// What a request's messages must satisfy, checked from their gRPC frame headers (5 bytes: a
/// flag, then a big-endian u32 length; they may be split across data chunks). Each message
/// is charged to the body budget from its header until its last byte.
#[derive(Debug)]
pub(super) struct MessageCheck {
    limit: usize,
    /// The method's path when it takes exactly one message (a unary request).
    unary: Option<Arc<str>>,
    budget: Arc<BodyBudget>,
    connection: Option<SocketAddr>,
    header: [u8; 5],
    header_len: usize,
    payload_left: usize,
    /// Messages begun so far (one whose frame header is only partly in counts).
    started: usize,
    /// The charge of the message now arriving.
    charge: Option<Charge>,
}

impl MessageCheck {
    pub(super) fn new(
        limit: usize,
        unary: Option<Arc<str>>,
        budget: Arc<BodyBudget>,
        connection: Option<SocketAddr>,
    ) -> Self {
        Self {
            limit,
            unary,
            budget,
            connection,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
            started: 0,
            charge: None,
        }
    }

    /// Walks the frame headers in `chunk`; the first message that breaks a rule is an error.
    pub(super) fn scan(&mut self, mut chunk: &[u8]) -> Result<(), Status> {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(chunk.len());
                self.payload_left -= skip;
                chunk = &chunk[skip..];
                if self.payload_left == 0 {
                    self.charge = None;
                }
                continue;
            }
            if self.header_len == 0 {
                self.started += 1;
                if self.started > 1
                    && let Some(path) = &self.unary
                {
                    return Err(cardinality(path, "more than one"));
                }
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
                if len > 0 {
                    self.charge = Some(self.budget.charge(self.connection, len as u64)?);
                }
                self.payload_left = len;
            }
        }
        Ok(())
    }

    /// Whether the body may end here: a unary request must have begun its message.
    fn finish(&self) -> Result<(), Status> {
        match &self.unary {
            Some(path) if self.started == 0 => Err(cardinality(path, "none")),
            _ => Ok(()),
        }
    }
}

/// The refusal of a unary request with `received` messages (`none`, `more than one`): `INTERNAL`,
/// as grpc-java and grpc-go answer (tonic alone serves the first of two and ignores the rest).
pub(super) fn cardinality(path: &str, received: &str) -> Status {
    Status::internal(format!(
        "{} takes exactly one request message (a unary request), and received {received}",
        super::quote(path)
    ))
}

/// A request body whose messages are checked as they pass; the first refusal ends it with that
/// status and is also sent to the response side ([`Refusal`]), which answers it to the client.
#[derive(Debug)]
pub(super) struct CheckedBody {
    inner: Body,
    /// `None` once the body has ended or been refused (its charge released then).
    check: Option<MessageCheck>,
    refused: Option<oneshot::Sender<Status>>,
}

impl CheckedBody {
    pub(super) fn new(inner: Body, check: MessageCheck, refused: oneshot::Sender<Status>) -> Self {
        Self {
            inner,
            check: Some(check),
            refused: Some(refused),
        }
    }

    fn refuse(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.check = None;
        if let Some(refused) = self.refused.take() {
            // The response side may be gone already (the call ended); nothing to tell then.
            let _ = refused.send(status.clone());
        }
        Poll::Ready(Some(Err(status)))
    }
}

impl http_body::Body for CheckedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let Some(check) = this.check.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match polled {
            Some(Ok(frame)) => {
                if let Some(Err(status)) = frame.data_ref().map(|data| check.scan(data)) {
                    return this.refuse(status);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(status)) => Poll::Ready(Some(Err(status))),
            None => match check.finish() {
                Err(status) => this.refuse(status),
                Ok(()) => {
                    this.check = None;
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // A unary request that ends before its message must still be polled to be refused.
        self.check.as_ref().is_none_or(|check| {
            self.inner.is_end_stream() && (check.unary.is_none() || check.started > 0)
        })
    }
}

/// The response side's view of a [`CheckedBody`]: the status it was refused with, if it was.
#[derive(Debug)]
pub(super) struct Refusal(Option<oneshot::Receiver<Status>>);

impl Refusal {
    pub(super) fn new(refused: oneshot::Receiver<Status>) -> Self {
        Self(Some(refused))
    }

    /// Ready with the refusal once there is one; pending for ever if the body ended without.
    pub(super) fn poll_refused(&mut self, cx: &mut Context<'_>) -> Poll<Status> {
        let Some(refused) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let polled = ready!(Pin::new(refused).poll(cx));
        self.0 = None;
        match polled {
            Ok(status) => Poll::Ready(status),
            Err(_) => Poll::Pending,
        }
    }

    /// The refusal, if there is one now.
    pub(super) fn try_refused(&mut self) -> Option<Status> {
        match self.0.as_mut()?.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            // The receiver is spent either way: it must not be polled again.
            ended => {
                self.0 = None;
                ended.ok()
            }
        }
    }
}

/// A response body that ends with its request body's refusal, or with `DEADLINE_EXCEEDED`
/// trailers once its deadline passes, whichever comes first.
pub(super) struct ReplyBody {
    inner: Option<Body>,
    refusal: Refusal,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
}

impl ReplyBody {
    /// `deadline`: when the call must end, and the timeout it came from (for the message).
    pub(super) fn new(
        inner: Body,
        refusal: Refusal,
        deadline: Option<(Instant, Duration)>,
    ) -> Self {
        Self {
            inner: Some(inner),
            refusal,
            deadline: deadline
                .map(|(at, timeout)| (Box::pin(tokio::time::sleep_until(at)), timeout)),
        }
    }
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                this.inner = None;
            }
            return Poll::Ready(frame);
        }
        let status = match this.refusal.poll_refused(cx) {
            Poll::Ready(status) => status,
            Poll::Pending => {
                let Some((sleep, timeout)) = this.deadline.as_mut() else {
                    return Poll::Pending;
                };
                ready!(sleep.as_mut().poll(cx));
                exceeded(*timeout)
            }
        };
        // Dropping the inner body ends the handler's stream and frees what it held.
        this.inner = None;
        Poll::Ready(Some(router::status_trailers(status)))
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

    fn check(limit: usize, unary: bool) -> MessageCheck {
        let budget = Arc::new(BodyBudget::new(super::super::BodyLimits::default()));
        MessageCheck::new(limit, unary.then(|| "/p.S/M".into()), budget, None)
    }

    #[test]
    fn frame_headers_are_read_across_chunks_and_oversized_messages_refused() {
        let mut body = check(10, false);
        let mut stream = vec![0u8, 0, 0, 0, 3, 1, 2, 3];
        stream.extend_from_slice(&[0, 0, 0, 0, 10]);
        stream.extend_from_slice(&[7; 10]);
        for chunk in stream.chunks(3) {
            assert!(body.scan(chunk).is_ok());
        }
        assert!(body.charge.is_none(), "a finished message holds no charge");
        let status = body
            .scan(&[0, 0, 0, 0])
            .and_then(|()| body.scan(&[11]))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("11 bytes") && status.message().contains("10 bytes"));
    }

    #[test]
    fn a_message_is_charged_until_its_last_byte() {
        let mut body = check(10, true);
        body.scan(&[0, 0, 0, 0, 4, 1]).unwrap();
        assert!(body.charge.is_some());
        body.scan(&[2, 3, 4]).unwrap();
        assert!(body.charge.is_none());
        assert!(body.finish().is_ok());
        let status = body.scan(&[0]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("more than one"), "{status}");
        let status = check(10, true).finish().unwrap_err();
        assert!(status.message().contains("received none"), "{status}");
    }

    #[tokio::test]
    async fn a_refusal_is_seen_once_and_a_body_ended_without_one_never_fires() {
        let (refused, receiver) = oneshot::channel();
        let mut refusal = Refusal::new(receiver);
        assert!(refusal.try_refused().is_none());
        drop(refused);
        assert!(refusal.try_refused().is_none());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(refusal.poll_refused(&mut cx).is_pending());
        let (refused, receiver) = oneshot::channel();
        let mut refusal = Refusal::new(receiver);
        refused.send(Status::internal("no")).unwrap();
        assert!(matches!(refusal.poll_refused(&mut cx), Poll::Ready(s) if s.message() == "no"));
        assert!(refusal.try_refused().is_none());
        assert!(refusal.poll_refused(&mut cx).is_pending());
    }
}
