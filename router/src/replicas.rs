//! A remote backend's replicas: one connection pool per endpoint (`v2=2.0.0@HOST1:PORT,HOST2:PORT`),
//! and the choice of one for each call.
//!
//! The choice is the power of two choices over the streams each replica has in use (and the
//! calls waiting for one): of two reachable replicas drawn at random, the less loaded, so a slow
//! or saturated replica takes fewer calls without any replica being polled. A replica marked
//! unreachable (by the health checks, or by a call that failed in transport: ejected at once,
//! as Envoy's outlier detection does) gets no calls while another is reachable, and the health
//! checks re-admit it when it answers again. tower's `balance::p2c` makes the same choice, but
//! as a `Service` driven through `poll_ready` and `&mut self`, which a router that clones its
//! backends' services for every call could only reach through a `Buffer` (another task hop per
//! call); the choice itself is the few lines below.

use crate::pool::UpstreamPool;
use std::sync::Arc;

/// The connection pools of one backend's replicas, at least one. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Replicas {
    pools: Arc<[UpstreamPool]>,
}

impl Replicas {
    /// The replicas `pools` (one per endpoint); `None` when there is none.
    pub fn new(pools: Vec<UpstreamPool>) -> Option<Self> {
        (!pools.is_empty()).then(|| Self {
            pools: pools.into(),
        })
    }

    /// A backend's only replica.
    pub fn one(pool: UpstreamPool) -> Self {
        Self {
            pools: Arc::new([pool]),
        }
    }

    /// Every replica's pool, in the order given.
    pub fn pools(&self) -> &[UpstreamPool] {
        &self.pools
    }

    /// The replica the next call goes to: the less loaded of two reachable ones drawn at
    /// random; when none is reachable, of all (the call then fails naming the backend).
    pub(crate) fn pick(&self) -> &UpstreamPool {
        if let [only] = &self.pools[..] {
            return only;
        }
        let reachable: Vec<&UpstreamPool> =
            self.pools.iter().filter(|p| p.is_reachable()).collect();
        let candidates: Vec<&UpstreamPool> = match reachable.is_empty() {
            true => self.pools.iter().collect(),
            false => reachable,
        };
        let n = candidates.len();
        if n == 1 {
            return candidates[0];
        }
        let a = fastrand::usize(..n);
        // A second, different one.
        let b = (a + 1 + fastrand::usize(..n - 1)) % n;
        match candidates[b].load() < candidates[a].load() {
            true => candidates[b],
            false => candidates[a],
        }
    }

    /// Whether some replica answered its last check and no call to it failed since.
    pub(crate) fn is_reachable(&self) -> bool {
        self.pools.iter().any(UpstreamPool::is_reachable)
    }

    /// Whether every reachable replica is saturated (all of them, when none is reachable).
    pub(crate) fn is_saturated(&self) -> bool {
        let mut reachable = self.pools.iter().filter(|p| p.is_reachable()).peekable();
        match reachable.peek() {
            Some(_) => reachable.all(UpstreamPool::is_saturated),
            None => self.pools.iter().all(UpstreamPool::is_saturated),
        }
    }

    /// Connections opened for calls, over every replica.
    pub(crate) fn connections(&self) -> usize {
        self.pools.iter().map(UpstreamPool::connections).sum()
    }

    /// How many times some replica became reachable again (see [`UpstreamPool::recoveries`]).
    pub(crate) fn recoveries(&self) -> u64 {
        self.pools.iter().map(UpstreamPool::recoveries).sum()
    }

    /// A reachable replica's pool (the first one when none is): where descriptors are read.
    pub(crate) fn first_reachable(&self) -> &UpstreamPool {
        self.pools
            .iter()
            .find(|p| p.is_reachable())
            .unwrap_or(&self.pools[0])
    }
}
