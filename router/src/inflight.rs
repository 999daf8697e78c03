//! Counts the requests in flight on a backend, so a drain can wait for them to finish.
//!
//! A request counts from the moment it is routed until its response body is finished or
//! dropped, which for a stream is when the stream ends, not when its headers are sent.
//!
//! Every access is `SeqCst`: a drain stores "closed" and then reads the count, a request counts
//! itself and then reads "closed", and only with both in one total order is it certain that at
//! least one of them sees the other (see `VersionRouter::call`).

use crate::body::{Inspect, InspectedBody};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// A count of requests in flight (on one backend, or on a whole port).
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Counts one more request until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropping in between still wakes us.
            notified.as_mut().enable();
            if self.current() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Holds one in-flight slot; dropping it releases the slot.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted until the body is done.
pub type CountedBody = InspectedBody<InFlightGuard>;

/// A guard inspects nothing: it only lives until its body ends.
impl Inspect for InFlightGuard {}
