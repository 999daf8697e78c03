//! HAProxy (Debian `haproxy`, 2.6): one `mode http` frontend speaking h2c whose routing is all
//! in one map file (`routes.map`), and a backend per upstream the plans can name, each with one
//! server slot. The frontend's rules never change: a change of plan is a new map (swapped in
//! atomically through the runtime API) and new server addresses and states, so HAProxy is never
//! reloaded (see `running::haproxy_runtime`). Timeouts are Debian's default `haproxy.cfg`
//! values (connect 5 s, client and server 50 s).
//!
//! The map holds one line per route, in the plan's order, the last one `/` (`map_beg` takes the
//! longest prefix that matches, so `/` is only the fallback):
//!
//! ```text
//! PREFIX UPSTREAM|REWRITE|ALLOWED|PREFIX|MESSAGE
//! ```
//!
//! `REWRITE` is the new prefix or `-`; `ALLOWED` the majors a pinning `x-api-version` may name,
//! as `,1,2,`, or `-` when the header is not looked at; `PREFIX` is the key again, so that the
//! rest of the path can be cut after it; `MESSAGE` the `grpc-message` of a refusal. One entry
//! carries all of a route's decision, so swapping the map changes a route's upstream, rewrite and
//! pins at one instant.

use super::Tuning;
use crate::plan::{
    API_VERSION_HEADER, REJECT_CODE, RoutePlan, Target, Upstream, pinned_major_regex,
    reject_message,
};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The map file holding the routes, in the proxy's directory.
pub(crate) const MAP_FILE: &str = "routes.map";
/// The runtime API's socket (level admin), in the proxy's directory.
pub(crate) const SOCKET: &str = "haproxy.sock";
/// Every upstream an [`crate::Arrangement`]'s plan can name: each has a backend and a server
/// slot from the start, so that a change of arrangement never needs a new backend (which only a
/// reload could add).
pub(crate) const SLOTS: [&str; 3] = ["router", "v1", "v2"];
/// The address of a slot no upstream fills yet; its server is in maintenance, so HAProxy never
/// connects to it.
const UNUSED_SLOT: &str = "127.0.0.1:9";

/// `haproxy.cfg` for `plan`: the plan only decides the servers' initial addresses and states.
pub(super) fn render(plan: &RoutePlan, listen: SocketAddr, dir: &Path, tuning: &Tuning) -> String {
    let idle = tuning.idle_timeout.map_or_else(
        || "50s".to_string(),
        |idle| format!("{}ms", idle.as_millis()),
    );
    let dir = dir.display();
    let map = format!("{dir}/{MAP_FILE}");
    let mut out = format!(
        "global
    nbthread 2
    stats socket {dir}/{SOCKET} mode 600 level admin
defaults
    mode http
    timeout connect 5s
    timeout client {idle}
    timeout server {idle}
frontend grpc
    bind {listen} proto h2
"
    );
    // Every decision is read from the route's map entry on the path as the client sent it,
    // before the rewrite (HAProxy evaluates `use_backend` after every `http-request` rule).
    for rule in [
        "set-var(txn.path) path".to_string(),
        format!("set-var(txn.route) path,map_beg({map})"),
        "set-var(txn.upstream) var(txn.route),field(1,|)".to_string(),
        "set-var(txn.rewrite) var(txn.route),field(2,|)".to_string(),
        "set-var(txn.allowed) var(txn.route),field(3,|)".to_string(),
    ] {
        let _ = writeln!(out, "    http-request {rule}");
    }
    let _ = writeln!(
        out,
        "    acl pins_major req.hdr({API_VERSION_HEADER}) -m reg '{}'",
        pinned_major_regex(None)
    );
    // `MAJOR:,1,2,`, matched by a back reference: the pinned major is one of the allowed ones.
    // HAProxy compiles ACL regexes without numbered captures, hence the named group.
    let _ = writeln!(
        out,
        "    http-request set-var(txn.pin) 'req.hdr({API_VERSION_HEADER}),regsub(\"^[^0-9]*([0-9]+).*$\",\"\\1\"),concat(:,txn.allowed)' if pins_major"
    );
    out.push_str("    acl pin_ok var(txn.pin) -m reg '^(?<m>[0-9]+):.*,\\k<m>,'\n");
    out.push_str(
        "    http-request set-var(txn.reject) bool(true) if pins_major { var(txn.allowed) -m beg , } !pin_ok\n",
    );
    // Trailers-only gRPC error: status 200 with grpc-status in the headers. HAProxy drops a
    // content-type from a reply without payload, so it is added afterwards.
    let _ = writeln!(
        out,
        "    http-request return status 200 hdr grpc-status {REJECT_CODE} hdr grpc-message \"%[var(txn.route),field(5,|)]\" if {{ var(txn.reject) -m bool }}"
    );
    // The rest of the path after the route's prefix: `PREFIX|PATH` with the prefix cut by a
    // back reference, whatever the prefix.
    out.push_str(
        "    http-request set-var(txn.rest) 'var(txn.route),field(4,|),concat(|,txn.path),regsub(\"^([^|]*)\\|\\1\",\"\")' if { var(txn.rewrite) -m beg / }\n",
    );
    out.push_str(
        "    http-request set-path %[var(txn.rewrite)]%[var(txn.rest)] if { var(txn.rewrite) -m beg / }\n",
    );
    out.push_str("    use_backend %[var(txn.upstream)]\n");
    out.push_str(
        "    http-after-response set-header content-type application/grpc if { var(txn.reject) -m bool }\n",
    );
    for name in slots(plan) {
        let upstream = plan.upstreams.iter().find(|u| u.name == name);
        let (addr, state) = match upstream {
            Some(upstream) => (upstream.addr.to_string(), ""),
            None => (UNUSED_SLOT.to_string(), " disabled"),
        };
        let _ = write!(
            out,
            "backend {name}
    server {name} {addr} proto h2{state}
"
        );
    }
    out
}

/// The backends written: [`SLOTS`], then any other upstream `plan` names.
pub(crate) fn slots(plan: &RoutePlan) -> Vec<&'static str> {
    let mut slots = SLOTS.to_vec();
    for Upstream { name, .. } in &plan.upstreams {
        if !slots.contains(name) {
            slots.push(name);
        }
    }
    slots
}

/// The map's entries for `plan`, key and value, in the plan's order.
pub(crate) fn map_entries(plan: &RoutePlan) -> Vec<(String, String)> {
    plan.routes
        .iter()
        .map(|route| {
            let Target::Forward {
                upstream,
                rewrite_prefix,
            } = &route.target;
            let allowed = if route.pinned_majors.is_empty() {
                "-".to_string()
            } else {
                let majors: Vec<String> = route.pinned_majors.iter().map(u64::to_string).collect();
                format!(",{},", majors.join(","))
            };
            let message = if route.pinned_majors.is_empty() {
                "-".to_string()
            } else {
                reject_message(route)
            };
            let value = format!(
                "{upstream}|{}|{allowed}|{}|{message}",
                rewrite_prefix.unwrap_or("-"),
                route.prefix
            );
            (route.prefix.to_string(), value)
        })
        .collect()
}

/// The map file for `plan`: one `KEY VALUE` line per entry.
pub(super) fn map_file(plan: &RoutePlan) -> String {
    map_entries(plan)
        .into_iter()
        .map(|(key, value)| format!("{key} {value}\n"))
        .collect()
}
