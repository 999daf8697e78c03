//! Reading the rest of an HTTP/1.1 request before a refusal goes out. A gRPC-Web call refused
//! before its body was read (a bad `x-api-version`, a message past a limit) would otherwise
//! be answered and its connection closed while the client still writes, and the client
//! (Node's HTTP/1.1 stack, a browser) reports the broken pipe instead of the reply. HTTP/2
//! resets just the stream, so this is for HTTP/1.x only. The rest is read and dropped, up to a
//! byte and a time limit, so nothing is held and a client cannot stall the answer for long.

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;

/// How long a refusal waits, at most, for the rest of its request.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A request body whose rest can be taken back by [`Rest::drain`] once the reply is known.
pub(crate) struct Drainable {
    shared: Arc<Mutex<Option<Body>>>,
}

/// The other end of a [`Drainable`].
pub(crate) struct Rest {
    shared: Arc<Mutex<Option<Body>>>,
}

/// `body` made drainable: the body to pass on, and the handle that drains what it leaves.
pub(crate) fn drainable(body: Body) -> (Drainable, Rest) {
    let shared = Arc::new(Mutex::new(Some(body)));
    (
        Drainable {
            shared: shared.clone(),
        },
        Rest { shared },
    )
}

fn lock(shared: &Mutex<Option<Body>>) -> MutexGuard<'_, Option<Body>> {
    // A poisoned lock only means a poll panicked; the body inside is still a body.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl http_body::Body for Drainable {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        match lock(&self.shared).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            // Taken by the drain: the reply is already decided.
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.shared).as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.shared)
            .as_ref()
            .map(Body::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Rest {
    /// Reads and drops what is left of the request, for at most `limit` bytes and
    /// [`DRAIN_TIMEOUT`]; past either the connection is closed after the reply, as before.
    pub(crate) async fn drain(self, limit: usize) {
        let Some(mut body) = lock(&self.shared).take() else {
            return;
        };
        let read = async {
            let mut seen = 0usize;
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                match frame {
                    Ok(frame) => {
                        seen += frame.data_ref().map_or(0, Bytes::len);
                        if seen > limit {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, read).await;
    }
}
