//! The [`tower::Layer`] that puts a [`Guard`] in front of a port's service.

use super::Guard;
use super::budget::{BodyBudget, BodyLimits};
use router::{InFlight, RouterHandle};
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
    unary: UnaryMethods,
    budget: Arc<BodyBudget>,
}

/// Which paths take exactly one request message: a fixed set (the port's own APIs) and, when
/// the port routes, the router's catalog as it is at each request, so that an API added at
/// runtime (admin Add) is checked as one known at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnaryMethods {
    fixed: Arc<HashSet<String>>,
    router: Option<RouterHandle>,
}

impl UnaryMethods {
    /// Whether a request for `path` must carry exactly one message.
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.fixed.contains(path)
            || self
                .router
                .as_ref()
                .is_some_and(|router| router.table().catalog().takes_one_message(path))
    }
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
            unary: UnaryMethods::default(),
            budget: Arc::new(BodyBudget::new(BodyLimits::default())),
        }
    }

    /// The body budgets (default: [`BodyLimits::default`]), shared by every connection.
    pub fn body_limits(mut self, limits: &BodyLimits) -> Self {
        self.budget = Arc::new(BodyBudget::new(limits.clone()));
        self
    }

    /// The body budgets this guard charges, for what buffers request bodies in front of it
    /// (JSON over HTTP) to charge too.
    pub(crate) fn budget(&self) -> Arc<BodyBudget> {
        self.budget.clone()
    }

    /// The paths (`/package.Service/Method`) whose requests must carry exactly one message,
    /// besides those `router`'s catalog holds (looked up at each request): the guard refuses
    /// such a request with zero or two messages with `INTERNAL`.
    pub fn unary_methods(mut self, paths: HashSet<String>, router: Option<RouterHandle>) -> Self {
        self.unary = UnaryMethods {
            fixed: Arc::new(paths),
            router,
        };
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
            self.budget.clone(),
        )
    }
}
