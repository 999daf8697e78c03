//! The bidirectional-stream behaviour both versions share: one reply per request, in order;
//! the stream ends when the client half-closes, or with the first error's status.

use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Status, Streaming};

/// A boxed stream of replies, as the generated servers expect.
pub(crate) type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Answers each request of `inbound` with `reply`. The stream is pulled by the server as the
/// client reads, so replies keep request order and nothing is buffered unboundedly.
pub(crate) fn replies<Req, Rep>(
    mut inbound: Streaming<Req>,
    reply: impl Fn(&Req) -> Result<Rep, Status> + Send + 'static,
) -> ReplyStream<Rep>
where
    Req: Send + 'static,
    Rep: Send + 'static,
{
    Box::pin(async_stream::try_stream! {
        while let Some(request) = inbound.message().await? {
            yield reply(&request)?;
        }
    })
}
