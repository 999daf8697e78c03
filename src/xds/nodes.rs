//! What the control plane knows of each Envoy node: whether its stream is open, when it was
//! last seen, and per type URL the version it acknowledged and the last one it rejected with
//! Envoy's own `error_detail`. At most `max` nodes are tracked: a new node past that takes the
//! place of the one disconnected longest, and is refused while every tracked node is
//! connected. A node has one stream at a time: the records are per node id, so a second
//! Envoy with the id of one connected would have its ACKs count for the other; it is refused
//! with ALREADY_EXISTS naming the id (an Envoy that reconnects does so once its old stream
//! closed). A node subscribed to no type served (none yet, or only types the control plane
//! does not serve) is not waited for: it has nothing to acknowledge.

use port::admin::pb::{XdsNode, XdsStatus, XdsTypeState};
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::Status;

/// One node.
#[derive(Debug, Clone)]
struct Node {
    cluster: String,
    streams: u32,
    last_seen: SystemTime,
    types: BTreeMap<String, TypeState>,
}

/// One type URL of one node.
#[derive(Debug, Clone, Default)]
struct TypeState {
    acked: Option<u64>,
    nack: Option<Nack>,
}

#[derive(Debug, Clone)]
struct Nack {
    version: u64,
    error: String,
    at: SystemTime,
}

/// Where the connected nodes are with a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every connected node acknowledged it (or a later one) for every type it subscribed to.
    Applied,
    /// A node rejected it (or a later one): who, which type, and Envoy's message.
    Rejected(String),
    /// These nodes are not there yet.
    Waiting(Vec<String>),
}

/// The nodes tracked.
#[derive(Debug)]
pub struct Nodes {
    max: usize,
    nodes: HashMap<String, Node>,
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Nodes {
    /// No node yet; at most `max` (at least 1) tracked.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            nodes: HashMap::new(),
        }
    }

    /// A stream of node `id` opened. Refused with ALREADY_EXISTS while another stream of `id`
    /// is open, and with RESOURCE_EXHAUSTED when `max` nodes are tracked and all are
    /// connected; else the one disconnected longest makes room.
    pub fn connect(&mut self, id: &str, cluster: &str) -> Result<(), Status> {
        let now = SystemTime::now();
        if self.nodes.get(id).is_some_and(|node| node.streams > 0) {
            return Err(Status::already_exists(format!(
                "Envoy node {id:?} is connected already on another stream: each Envoy needs a node id of its own (node.id in its bootstrap)"
            )));
        }
        if !self.nodes.contains_key(id) && self.nodes.len() >= self.max {
            let oldest = self
                .nodes
                .iter()
                .filter(|(_, node)| node.streams == 0)
                .min_by_key(|(_, node)| node.last_seen)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => {
                    self.nodes.remove(&oldest);
                }
                None => {
                    return Err(Status::resource_exhausted(format!(
                        "the control plane tracks {} nodes, all connected (serve --xds-max-nodes)",
                        self.max
                    )));
                }
            }
        }
        let node = self.nodes.entry(id.to_string()).or_insert_with(|| Node {
            cluster: cluster.to_string(),
            streams: 0,
            last_seen: now,
            types: BTreeMap::new(),
        });
        node.cluster = cluster.to_string();
        node.streams += 1;
        node.last_seen = now;
        Ok(())
    }

    /// A stream of node `id` closed.
    pub fn disconnect(&mut self, id: &str) {
        if let Some(node) = self.nodes.get_mut(id) {
            node.streams = node.streams.saturating_sub(1);
            node.last_seen = SystemTime::now();
        }
    }

    fn type_state(&mut self, id: &str, type_url: &str) -> Option<&mut TypeState> {
        let node = self.nodes.get_mut(id)?;
        node.last_seen = SystemTime::now();
        Some(node.types.entry(type_url.to_string()).or_default())
    }

    /// Node `id` subscribed to `type_url` (or sent anything about it).
    pub fn seen(&mut self, id: &str, type_url: &str) {
        self.type_state(id, type_url);
    }

    /// Node `id` acknowledged `version` of `type_url`.
    pub fn ack(&mut self, id: &str, type_url: &str, version: u64) {
        if let Some(state) = self.type_state(id, type_url) {
            state.acked = Some(state.acked.map_or(version, |v| v.max(version)));
        }
    }

    /// Node `id` rejected `version` of `type_url` with Envoy's `error`.
    pub fn nack(&mut self, id: &str, type_url: &str, version: u64, error: &str) {
        if let Some(state) = self.type_state(id, type_url) {
            state.nack = Some(Nack {
                version,
                error: error.trim_end().to_string(),
                at: SystemTime::now(),
            });
        }
    }

    /// Whether node `node` subscribed to any type served: one that did not has nothing to
    /// acknowledge, and is not waited for.
    fn subscribed(node: &Node) -> bool {
        !node.types.is_empty()
    }

    /// Whether node `node` acknowledged `version` of everything it subscribed to.
    fn current(node: &Node, version: u64) -> bool {
        !node.types.is_empty()
            && node
                .types
                .values()
                .all(|t| t.acked.is_some_and(|acked| acked >= version))
    }

    /// Where the connected nodes are with `version`.
    pub fn progress(&self, version: u64) -> Progress {
        let mut waiting = Vec::new();
        let mut ids: Vec<&String> = self.nodes.keys().collect();
        ids.sort();
        for id in ids {
            let node = &self.nodes[id];
            if node.streams == 0 || !Self::subscribed(node) {
                continue;
            }
            for (type_url, state) in &node.types {
                let acked = state.acked.unwrap_or(0);
                // A rejection of this version or a later one, while the node has not taken this
                // one: a rejection of a later change is not this one's failure once it is taken.
                if let Some(nack) = state.nack.as_ref().filter(|n| n.version >= version)
                    && acked < version
                {
                    return Progress::Rejected(format!(
                        "Envoy node {id:?} rejected version {} of {type_url}: {}",
                        nack.version, nack.error
                    ));
                }
            }
            if !Self::current(node, version) {
                waiting.push(id.clone());
            }
        }
        if waiting.is_empty() {
            Progress::Applied
        } else {
            Progress::Waiting(waiting)
        }
    }

    /// The status `List` reports, with `version` the one served now.
    pub fn status(&self, version: Option<u64>) -> XdsStatus {
        let mut nodes: Vec<XdsNode> = self
            .nodes
            .iter()
            .map(|(id, node)| XdsNode {
                id: id.clone(),
                cluster: node.cluster.clone(),
                streams: node.streams,
                last_seen_unix_ms: unix_ms(node.last_seen),
                types: node
                    .types
                    .iter()
                    .map(|(type_url, state)| XdsTypeState {
                        type_url: type_url.clone(),
                        acked_version: state.acked.map(|v| v.to_string()).unwrap_or_default(),
                        nack_version: state
                            .nack
                            .as_ref()
                            .map(|n| n.version.to_string())
                            .unwrap_or_default(),
                        nack_error: state
                            .nack
                            .as_ref()
                            .map(|n| n.error.clone())
                            .unwrap_or_default(),
                        nack_unix_ms: state.nack.as_ref().map_or(0, |n| unix_ms(n.at)),
                    })
                    .collect(),
                current: version.is_some_and(|v| Self::current(node, v)),
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        XdsStatus {
            version: version.map(|v| v.to_string()).unwrap_or_default(),
            nodes,
            max_nodes: self.max as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDS: &str = "cds";

    #[test]
    fn a_node_past_the_cap_replaces_the_longest_disconnected_or_is_refused() {
        let mut nodes = Nodes::new(2);
        nodes.connect("a", "c").unwrap();
        nodes.connect("b", "c").unwrap();
        assert!(
            nodes
                .connect("c", "c")
                .unwrap_err()
                .message()
                .contains("--xds-max-nodes")
        );
        nodes.disconnect("a");
        nodes.connect("c", "c").unwrap();
        let ids: Vec<String> = nodes.status(None).nodes.into_iter().map(|n| n.id).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn progress_waits_for_every_connected_node_and_reports_a_rejection() {
        let mut nodes = Nodes::new(8);
        nodes.connect("a", "c").unwrap();
        nodes.connect("b", "c").unwrap();
        nodes.seen("a", CDS);
        nodes.seen("b", CDS);
        nodes.ack("a", CDS, 5);
        assert_eq!(nodes.progress(5), Progress::Waiting(vec!["b".into()]));
        nodes.ack("b", CDS, 6);
        assert_eq!(nodes.progress(5), Progress::Applied);
        nodes.nack("a", CDS, 7, "bad regex");
        match nodes.progress(7) {
            Progress::Rejected(why) => assert!(why.contains("bad regex"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A disconnected node is not waited for.
        nodes.disconnect("a");
        nodes.ack("b", CDS, 7);
        assert_eq!(nodes.progress(7), Progress::Applied);
        assert!(nodes.status(Some(7)).nodes[1].current);
    }

    #[test]
    fn a_second_stream_of_a_connected_node_is_refused_naming_it() {
        let mut nodes = Nodes::new(8);
        nodes.connect("a", "c").unwrap();
        let err = nodes.connect("a", "c").unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
        assert!(err.message().contains("\"a\""), "{err:?}");
        // Once its stream closed, the node may connect again.
        nodes.disconnect("a");
        nodes.connect("a", "c").unwrap();
        assert_eq!(nodes.status(None).nodes[0].streams, 1);
    }

    #[test]
    fn a_node_subscribed_to_no_type_served_is_not_waited_for() {
        let mut nodes = Nodes::new(8);
        nodes.connect("a", "c").unwrap();
        nodes.connect("b", "c").unwrap();
        nodes.seen("b", CDS);
        nodes.ack("b", CDS, 5);
        assert_eq!(nodes.progress(5), Progress::Applied);
        assert!(!nodes.status(Some(5)).nodes[0].current);
    }

    #[test]
    fn a_rejection_fails_a_change_only_while_the_node_has_not_taken_it() {
        let mut nodes = Nodes::new(8);
        nodes.connect("a", "c").unwrap();
        nodes.seen("a", CDS);
        nodes.ack("a", CDS, 5);
        // Version 6 rejected: a wait for 5 (taken) is done, one for 6 fails.
        nodes.nack("a", CDS, 6, "bad regex");
        assert_eq!(nodes.progress(5), Progress::Applied);
        assert!(matches!(nodes.progress(6), Progress::Rejected(_)));
        // A wait for 4, older than the rejected 6 but taken: done.
        assert_eq!(nodes.progress(4), Progress::Applied);
    }
}
