//! A backend's state as the tables see it: what its entries in successive tables share
//! (in-flight count, whether routing to it has stopped), and the snapshot shown in status.

use crate::inflight::InFlight;
use semver::Version;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What one backend's entries in successive tables share: its in-flight count and whether the
/// router has stopped routing to it. (Whether it is reachable is kept by its connection pool.)
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    pub(crate) in_flight: Arc<InFlight>,
    /// Set (once, never cleared) by `RouterHandle` after it stored a table in which this backend
    /// is draining or absent. A request that selected the backend from an older table checks it
    /// after counting itself in flight, and selects again if it is set; see
    /// `VersionRouter::call` for why that closes the drain race.
    closed: AtomicBool,
}

impl BackendState {
    /// Whether the router has stopped routing new requests to this backend.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// A snapshot of one backend's state, for status output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// The backend's name.
    pub name: String,
    /// Its version.
    pub version: Version,
    /// The package it implements.
    pub api: String,
    /// The packages routed to it.
    pub serves: Vec<String>,
    /// Whether it is draining (gets no new requests).
    pub draining: bool,
    /// Requests (and streams) in flight on it now.
    pub in_flight: usize,
    /// Whether it answered the last reachability check (see `UpstreamProbe`) and no call to it
    /// failed in transport since. Always `true` for in-process backends, and for remote ones
    /// until a check or a call has found them unreachable.
    pub reachable: bool,
    /// Whether its connection pool is full (every connection at its stream limit): it answers,
    /// but new calls wait or get `RESOURCE_EXHAUSTED`. Always `false` for in-process backends.
    pub saturated: bool,
    /// Connections its pool has opened for calls (the health checks' own not counted). Always
    /// 0 for in-process backends.
    pub connections: usize,
    /// Its weight, if it has one (see [`Backend::weight`](crate::Backend::weight)).
    pub weight: Option<u8>,
    /// When its build breaks an older build of its package beside it (it is pinned-only): which
    /// and compat's findings.
    pub breaks: Option<String>,
    /// Whether its upstream's descriptors, read again, break what it declared when it joined
    /// (then `breaks` says how, and it is pinned-only).
    pub drifted: bool,
    /// Of the older packages routed to it, those it takes only some methods of, with them
    /// (`Service/Method`); the rest of their calls go to the package's own backends.
    pub partial: std::collections::BTreeMap<String, Vec<String>>,
}

impl BackendInfo {
    /// [`partial`](Self::partial) as the upstream grammar writes it: `package/Service.Method`.
    pub fn partial_methods(&self) -> Vec<String> {
        self.partial
            .iter()
            .flat_map(|(package, methods)| {
                methods
                    .iter()
                    .map(move |m| format!("{package}/{}", m.replacen('/', ".", 1)))
            })
            .collect()
    }
}
