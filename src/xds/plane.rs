//! The control plane's state: the resources it serves now (with their version), the nodes it
//! knows, and the waiting of an admin change for every connected node's acknowledgement. It is
//! the gateway's [`Fleet`]: the admin API publishes each change here.

use super::compile::{self, Resources};
use super::nodes::{Nodes, Progress};
use port::admin::fleet::{Applied, Fleet, Table};
use port::admin::pb::XdsStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// What is served: the resources and their version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Versions increase; the first is the process's start time in milliseconds, so that a
    /// restarted control plane never reuses a version its predecessor served.
    pub version: u64,
    /// The resources.
    pub resources: Resources,
}

/// The control plane shared by the ADS streams and the admin API.
#[derive(Debug)]
pub struct ControlPlane {
    /// `None` until the table is first published: streams wait for it.
    snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    nodes: Mutex<Nodes>,
    /// Bumped whenever a node connects, disconnects, acknowledges or rejects: what waiters
    /// wake on.
    events: watch::Sender<u64>,
    /// How long an admin change waits for the acknowledgements; zero: it does not wait.
    ack_timeout: Duration,
    /// Serializes publications, from reading the table to serving it: two changes cannot both
    /// take the next version, and a publication that read an older table (the periodic one)
    /// cannot be served after one that read a newer table (an admin change's), which would
    /// serve the older table as a later version, and let its ACKs count for the change.
    publishing: Mutex<()>,
}

impl ControlPlane {
    /// Serving nothing yet; at most `max_nodes` tracked; admin changes waiting at most
    /// `ack_timeout`.
    pub fn new(max_nodes: usize, ack_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            snapshot: watch::Sender::new(None),
            nodes: Mutex::new(Nodes::new(max_nodes)),
            events: watch::Sender::new(0),
            ack_timeout,
            publishing: Mutex::new(()),
        })
    }

    /// The snapshots as they come.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.snapshot.subscribe()
    }

    /// Changes `nodes` and wakes the waiters.
    pub fn with_nodes<T>(&self, change: impl FnOnce(&mut Nodes) -> T) -> T {
        let result = change(&mut self.nodes.lock().unwrap_or_else(|e| e.into_inner()));
        self.events.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    fn version(&self) -> Option<u64> {
        self.snapshot.borrow().as_ref().map(|s| s.version)
    }

    fn first_version() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(1))
    }
}

impl Fleet for ControlPlane {
    fn publish(&self, table: Table<'_>) -> Result<u64, String> {
        let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let resources = compile::compile(&table()).map_err(|err| format!("{err:#}"))?;
        let current = self.snapshot.borrow().clone();
        let version = match current {
            Some(current) if current.resources == resources => return Ok(current.version),
            Some(current) => current.version + 1,
            None => Self::first_version(),
        };
        self.snapshot
            .send_replace(Some(Arc::new(Snapshot { version, resources })));
        tracing::info!(version, "xDS: new version served");
        Ok(version)
    }

    fn applied(&self, version: u64) -> Applied<'_> {
        Box::pin(async move {
            if self.ack_timeout.is_zero() {
                return Ok(());
            }
            let deadline = Instant::now() + self.ack_timeout;
            let mut events = self.events.subscribe();
            loop {
                events.mark_unchanged();
                let progress = self
                    .nodes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .progress(version);
                match progress {
                    Progress::Applied => return Ok(()),
                    Progress::Rejected(why) => {
                        return Err(tonic::Status::aborted(format!(
                            "the route table changed, but not every Envoy took it (they keep \
                             their previous routes): {why}"
                        )));
                    }
                    Progress::Waiting(nodes) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero()
                            || tokio::time::timeout(left, events.changed()).await.is_err()
                        {
                            return Err(tonic::Status::deadline_exceeded(format!(
                                "the route table changed, but within {} ms these Envoy nodes \
                                 did not acknowledge version {version}: {} (serve \
                                 --xds-ack-timeout-ms)",
                                self.ack_timeout.as_millis(),
                                nodes.join(", ")
                            )));
                        }
                    }
                }
            }
        })
    }

    fn status(&self) -> XdsStatus {
        let version = self.version();
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use port::admin::pb::Backend;

    fn backend(version: &str) -> Backend {
        Backend {
            name: "v1".to_string(),
            version: version.to_string(),
            api: "increment.v1".to_string(),
            address: "127.0.0.1:7001".to_string(),
            serves: vec!["increment.v1".to_string()],
            reachable: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_table_is_read_under_the_publishing_lock_so_a_later_publication_is_newer() {
        let plane = ControlPlane::new(8, Duration::ZERO);
        // The table is read while the lock is held: no other publication can read (or serve)
        // between this one's reading and its serving.
        let first = plane
            .publish(&|| {
                assert!(
                    plane.publishing.try_lock().is_err(),
                    "read outside the lock"
                );
                vec![backend("1.0.0")]
            })
            .expect("compiles");
        // The same table again: the same version.
        assert_eq!(plane.publish(&|| vec![backend("1.0.0")]), Ok(first));
        let second = plane.publish(&|| vec![backend("1.0.1")]).expect("compiles");
        assert_eq!(second, first + 1);
        let served = plane.watch().borrow().clone().expect("served");
        let expected = compile::compile(&[backend("1.0.1")]).expect("compiles");
        assert_eq!(served.resources, expected);
    }
}
