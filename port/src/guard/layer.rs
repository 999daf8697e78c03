//! The [`tower::Layer`] that puts a [`Guard`] in front of a port's service.

use super::Guard;
use router::InFlight;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tower::Layer;

/// Adds the [`Guard`] to a port's service.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    request_timeout: Option<Duration>,
    max_message_bytes: usize,
    open: Arc<InFlight>,
    unary: Arc<HashSet<String>>,
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
            unary: Arc::default(),
        }
    }

    /// The paths (`/package.Service/Method`) whose requests must carry exactly one message:
    /// the guard reads such a request whole and refuses zero or two messages with `INTERNAL`.
    pub fn unary_methods(mut self, paths: HashSet<String>) -> Self {
        self.unary = Arc::new(paths);
        self
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
            self.unary.clone(),
        )
    }
}
