//! Which backend a call was routed to, left in the response's extensions for whatever observes
//! calls outside the router (the port's metrics and access log): the router itself is the only
//! place that knows.

use std::sync::Arc;

/// The backend a call was routed to and its version, in the extensions of every response to a
/// call the router routed, whether the backend answered it or the router answered for it (an
/// unreachable, saturated or slow upstream: see [`Routed::answered`]). Extensions do not go on
/// the wire.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The backend's name in the route table.
    pub backend: Arc<str>,
    /// Its version, as the `x-api-version` response header gives it.
    pub version: Arc<str>,
    /// Whether the backend produced the reply (false: the router made it up for the backend,
    /// which was unreachable, saturated or did not answer in time).
    pub answered: bool,
}
