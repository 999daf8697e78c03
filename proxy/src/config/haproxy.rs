//! HAProxy (Debian `haproxy`, 2.6): one `mode http` frontend speaking h2c, a backend per
//! upstream with `proto h2`, ACLs on the path prefix and on `x-api-version`. Timeouts are
//! Debian's default `haproxy.cfg` values (connect 5 s, client and server 50 s).

use super::Tuning;
use crate::plan::{
    API_VERSION_HEADER, REJECT_CODE, RoutePlan, Target, pinned_major_regex, reject_message,
};
use std::fmt::Write;
use std::net::SocketAddr;

pub(super) fn render(plan: &RoutePlan, listen: SocketAddr, tuning: &Tuning) -> String {
    let idle = tuning.idle_timeout.map_or_else(
        || "50s".to_string(),
        |idle| format!("{}ms", idle.as_millis()),
    );
    let mut out = format!(
        "global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client {idle}
    timeout server {idle}
frontend grpc
"
    );
    let _ = writeln!(out, "    bind {listen} proto h2");
    let header_rules = plan.routes.iter().any(|r| !r.pinned_majors.is_empty());
    if header_rules {
        let _ = writeln!(
            out,
            "    acl pins_major req.hdr({API_VERSION_HEADER}) -m reg '{}'",
            pinned_major_regex(None)
        );
    }
    // Each route's decision is taken on the path as the client sent it: the backend is chosen
    // into a variable before any rewrite (HAProxy evaluates `use_backend` after every
    // `http-request` rule, when the path may already be rewritten).
    let mut default = None;
    let mut rewrites = Vec::new();
    for (i, route) in plan.routes.iter().enumerate() {
        let Target::Forward {
            upstream,
            rewrite_prefix,
        } = &route.target;
        if route.prefix == "/" {
            default = Some(*upstream);
            continue;
        }
        let acl = format!("path_r{i}");
        let _ = writeln!(out, "    acl {acl} path_beg {}", route.prefix);
        if !route.pinned_majors.is_empty() {
            let _ = writeln!(
                out,
                "    acl pins_ok_r{i} req.hdr({API_VERSION_HEADER}) -m reg '{}'",
                pinned_major_regex(Some(&route.pinned_majors))
            );
            // Trailers-only gRPC error: status 200 with grpc-status in the headers. HAProxy
            // drops a content-type from a reply without payload, so it is added afterwards.
            let _ = writeln!(
                out,
                "    http-request set-var(txn.reject) bool(true) if {acl} pins_major !pins_ok_r{i}"
            );
            let _ = writeln!(
                out,
                "    http-request return status 200 hdr grpc-status {REJECT_CODE} hdr grpc-message \"{}\" if {acl} {{ var(txn.reject) -m bool }}",
                reject_message(route)
            );
        }
        let _ = writeln!(
            out,
            "    http-request set-var(txn.upstream) str({upstream}) if {acl} !{{ var(txn.upstream) -m found }}"
        );
        if let Some(new) = rewrite_prefix {
            let old = route.prefix.replace('.', r"\.");
            rewrites.push(format!(
                "    http-request set-path '%[path,regsub(^{old},{new})]' if {acl}\n"
            ));
        }
    }
    for rewrite in rewrites {
        out.push_str(&rewrite);
    }
    let _ = writeln!(
        out,
        "    use_backend %[var(txn.upstream)] if {{ var(txn.upstream) -m found }}"
    );
    if let Some(upstream) = default {
        let _ = writeln!(out, "    default_backend {upstream}");
    }
    if header_rules {
        out.push_str(
            "    http-after-response set-header content-type application/grpc if { var(txn.reject) -m bool }\n",
        );
    }
    for upstream in &plan.upstreams {
        let _ = write!(
            out,
            "backend {name}
    server {name} {addr} proto h2
",
            name = upstream.name,
            addr = upstream.addr
        );
    }
    out
}
