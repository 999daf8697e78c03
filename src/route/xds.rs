//! `testbed route list`'s part about the xDS control plane (`serve --xds-addr`): the version it
//! serves and, per Envoy node, whether it acknowledged it, what it acknowledged per type URL,
//! its last rejection with Envoy's message, and when it was last seen.

use super::escape_controls;
use port::admin::pb::XdsStatus;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A type URL without its `type.googleapis.com/envoy.config.` prefix and version.
fn short(type_url: &str) -> &str {
    let name = type_url.rsplit('.').next().unwrap_or(type_url);
    match name {
        "Cluster" => "CDS",
        "ClusterLoadAssignment" => "EDS",
        "Listener" => "LDS",
        "RouteConfiguration" => "RDS",
        other => other,
    }
}

/// How long ago `unix_ms` was, in seconds.
fn ago(unix_ms: u64) -> String {
    let then = UNIX_EPOCH + Duration::from_millis(unix_ms);
    let secs = SystemTime::now()
        .duration_since(then)
        .unwrap_or_default()
        .as_secs_f64();
    format!("{secs:.1} s ago")
}

/// The status as text, one line per node and one per rejection.
pub(super) fn text(status: &XdsStatus) -> String {
    let connected = status.nodes.iter().filter(|n| n.streams > 0).count();
    let mut out = format!(
        "xDS: version {} served to {connected} connected node(s); {} tracked (at most {})\n",
        status.version,
        status.nodes.len(),
        status.max_nodes
    );
    for node in &status.nodes {
        let acked: Vec<String> = node
            .types
            .iter()
            .map(|t| {
                let version = if t.acked_version.is_empty() {
                    "-"
                } else {
                    &t.acked_version
                };
                format!("{} {version}", short(&t.type_url))
            })
            .collect();
        out += &format!(
            "  {} ({}): {}, {}; acked {}; seen {}\n",
            escape_controls(&node.id),
            escape_controls(&node.cluster),
            if node.current {
                "CURRENT"
            } else if node.types.is_empty() {
                // Nothing to acknowledge: admin changes do not wait for it.
                "NOT WAITED FOR (subscribed to no type served)"
            } else {
                "NOT CURRENT"
            },
            if node.streams > 0 {
                "connected"
            } else {
                "disconnected"
            },
            acked.join(", "),
            ago(node.last_seen_unix_ms)
        );
        for t in node.types.iter().filter(|t| !t.nack_version.is_empty()) {
            out += &format!(
                "    NACK {} version {} ({}): {}\n",
                short(&t.type_url),
                t.nack_version,
                ago(t.nack_unix_ms),
                escape_controls(&t.nack_error)
            );
        }
    }
    out
}

/// The status as JSON.
pub(super) fn json(status: &XdsStatus) -> Value {
    json!({
        "version": status.version,
        "max_nodes": status.max_nodes,
        "nodes": status.nodes.iter().map(|node| json!({
            "id": node.id,
            "cluster": node.cluster,
            "streams": node.streams,
            "current": node.current,
            "last_seen_unix_ms": node.last_seen_unix_ms,
            "types": node.types.iter().map(|t| json!({
                "type_url": t.type_url,
                "acked_version": t.acked_version,
                "nack_version": t.nack_version,
                "nack_error": t.nack_error,
                "nack_unix_ms": t.nack_unix_ms,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
