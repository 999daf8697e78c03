//! The hook through which a route change reaches a fleet of proxies (the xDS control plane
//! of `testbed serve --xds-addr`): after each change the admin API hands it the table, as
//! `List` reports it, and waits for the fleet to apply it; `List` shows the fleet's status.
//! The port knows nothing of xDS itself: the control plane lives in the `testbed` crate.

use super::pb::{Backend, XdsStatus};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How often the admin API hands the table to the fleet even without a change through it
/// (a reload of the config file, a drifted upstream): publishing a table that compiles to
/// what is served already changes nothing.
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Reads the route table as `List` reports it, at the moment it is called.
pub type Table<'a> = &'a (dyn Fn() -> Vec<Backend> + Sync);

/// What waits for the fleet's acknowledgements.
pub type Applied<'a> = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send + 'a>>;

/// A fleet of proxies that serve the route table.
pub trait Fleet: Send + Sync + std::fmt::Debug {
    /// Reads the table with `table` and serves it to every proxy, returning the version that
    /// holds it (the one served already when nothing changed), or why it cannot be served (the
    /// proxies keep what they had). The table is read while publications are serialized, so
    /// that of two publications the later always reads the newer table: a caller that read
    /// the table before taking its turn could serve an older table after a newer one.
    fn publish(&self, table: Table<'_>) -> Result<u64, String>;
    /// Waits (bounded) until every connected proxy acknowledged `version` or a later one:
    /// an error naming the proxy and its own message when one rejects it, or the proxies not
    /// there yet when the wait ends.
    fn applied(&self, version: u64) -> Applied<'_>;
    /// What `List` reports of the fleet.
    fn status(&self) -> XdsStatus;
}
