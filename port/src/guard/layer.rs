//! The [`tower::Layer`] that puts a [`Guard`] in front of a port's service.

use super::Guard;
use router::InFlight;
use std::sync::Arc;
use std::time::Duration;
use tower::Layer;

/// Adds the [`Guard`] to a port's service.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    request_timeout: Option<Duration>,
    max_message_bytes: usize,
    open: Arc<InFlight>,
}

impl GuardLayer {
    /// A guard with the server's `request_timeout` (if any) and message limit, counting open
    /// requests in `open`.
    pub fn new(
        request_timeout: Option<Duration>,
        max_message_bytes: usize,
        open: Arc<InFlight>,
    ) -> Self {
        Self {
            request_timeout,
            max_message_bytes,
            open,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard::new(
            inner,
            self.request_timeout,
            self.max_message_bytes,
            self.open.clone(),
        )
    }
}
