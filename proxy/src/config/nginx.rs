//! nginx (Debian `nginx-light`, 1.22): `grpc_pass` over h2c to upstreams with keep-alive, a
//! `location` per path prefix, `x-api-version` read by a `map`.

use super::Tuning;
use crate::plan::{
    API_VERSION_HEADER, REJECT_CODE, RoutePlan, Target, pinned_major_regex, reject_message,
};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

/// Worker processes: each configuration's generation runs this many.
pub(crate) const WORKERS: usize = 2;

/// How long an old worker may go on serving its connections after a reload: until then it
/// routes them by the configuration it was started with (a client that keeps its connection
/// busy never lets it finish on its own), then nginx closes them.
pub(crate) const WORKER_SHUTDOWN_TIMEOUT_S: u64 = 5;

pub(super) fn render(plan: &RoutePlan, listen: SocketAddr, dir: &Path, tuning: &Tuning) -> String {
    let dir = dir.display();
    let mut out = String::new();
    // `daemon off` keeps the master in the foreground, as the testbed's child; its two workers
    // are in the master's process group, which the testbed signals as a whole.
    let _ = write!(
        out,
        "daemon off;
master_process on;
worker_processes {WORKERS};
worker_shutdown_timeout {WORKER_SHUTDOWN_TIMEOUT_S}s;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
"
    );
    let header_rules = plan.routes.iter().any(|r| !r.pinned_majors.is_empty());
    if header_rules {
        let header = API_VERSION_HEADER.replace('-', "_");
        // The major a single-major requirement pins, or "" (no header, or one nginx cannot read).
        let _ = write!(
            out,
            "    map $http_{header} $api_major {{
        default \"\";
        \"~{}\" $1;
    }}
",
            pinned_major_regex(None)
        );
    }
    for upstream in &plan.upstreams {
        let _ = write!(
            out,
            "    upstream {} {{
        server {};
        keepalive 32;
    }}
",
            upstream.name, upstream.addr
        );
    }
    let _ = write!(
        out,
        "    server {{
        listen {listen} http2;
"
    );
    if let Some(idle) = tuning.idle_timeout {
        let ms = idle.as_millis();
        let _ = writeln!(
            out,
            "        grpc_read_timeout {ms}ms;\n        grpc_send_timeout {ms}ms;\n        client_body_timeout {ms}ms;"
        );
    }
    if let Some(requests) = tuning.requests_per_connection {
        let _ = writeln!(out, "        keepalive_requests {requests};");
    }
    for route in &plan.routes {
        let _ = writeln!(out, "        location {} {{", route.prefix);
        if !route.pinned_majors.is_empty() {
            let majors = route
                .pinned_majors
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("|");
            // Trailers-only gRPC error: status 200, content-type and grpc-status in the headers.
            let _ = write!(
                out,
                "            default_type application/grpc;
            if ($api_major !~ \"^({majors})?$\") {{
                add_header grpc-status {REJECT_CODE} always;
                add_header grpc-message \"{}\" always;
                return 200;
            }}
",
                reject_message(route)
            );
        }
        let Target::Forward {
            upstream,
            rewrite_prefix,
        } = &route.target;
        if let Some(new) = rewrite_prefix {
            let old = route.prefix.replace('.', r"\.");
            let _ = writeln!(out, "            rewrite ^{old}(.*)$ {new}$1 break;");
        }
        let _ = writeln!(out, "            grpc_pass grpc://{upstream};");
        let _ = writeln!(out, "        }}");
    }
    out.push_str("    }\n}\n");
    out
}
