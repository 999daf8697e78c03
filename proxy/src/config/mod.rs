//! Each proxy's configuration, rendered as text from a [`RoutePlan`]. What each proxy can
//! express of the plan:
//!
//! | | nginx 1.22 | HAProxy 2.6 | Envoy 1.40 |
//! |---|---|---|---|
//! | route by path prefix | `location /increment.v1.` | `map_beg` on a map + `use_backend` | route `match.prefix` |
//! | retire v1 (rewrite the path) | `rewrite ... break` before `grpc_pass` | `http-request set-path` with the map's new prefix | `prefix_rewrite` |
//! | read a pinned major from `x-api-version` | `map` with a regex capture | `req.hdr() -m reg` ACL, majors from the map | `headers` matcher, `safe_regex` (RE2) |
//! | answer `UNIMPLEMENTED` itself | `return 200` with `grpc-status` headers (trailers-only) | `http-request return` with `grpc-status` headers | `direct_response` 404, turned into a gRPC local reply |
//! | a full semver requirement (`>=2, <3`) | no | no | no |
//!
//! None of them can evaluate a semver requirement: each reads, with a regular expression, the
//! major version of the single-major forms (`^1`, `~1.2`, `=2.0.0`, `2`, `2.x`) and ignores any
//! other value, routing the request by its path as if there were no header.

pub(crate) mod envoy;
pub(crate) mod haproxy;
pub(crate) mod nginx;

use crate::ProxyKind;
use crate::plan::RoutePlan;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Settings changed from each proxy's defaults, for tests of what the defaults hide (with the
/// defaults, those tests would take minutes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// How long a stream may stay idle (no data either way) before the proxy ends it: nginx
    /// `grpc_read_timeout`, `grpc_send_timeout` and `client_body_timeout` (default 60 s),
    /// HAProxy `timeout client` and `timeout server` (50 s here), Envoy's
    /// `stream_idle_timeout` (5 minutes). `None`: those defaults.
    pub idle_timeout: Option<Duration>,
    /// Requests per client connection, after which the proxy sends GOAWAY: nginx
    /// `keepalive_requests` (default 1,000), Envoy `max_requests_per_connection` (default no
    /// limit). HAProxy 2.6 has no such setting for client connections:
    /// [`crate::RunningProxy::start_tuned`] refuses it.
    pub requests_per_connection: Option<u32>,
}

/// One file of a proxy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Its name in the proxy's directory.
    pub name: &'static str,
    /// Its text.
    pub text: String,
}

/// `kind`'s configuration for `plan`, listening on `listen`, with its pid, logs, temporary
/// files, (HAProxy) runtime API socket and (Envoy) dynamic resources under `dir`. The first file
/// is the one the proxy is started with; Envoy's routes and clusters follow in files of their
/// own (`rds.yaml`, `cds.yaml`), read through filesystem xDS, and HAProxy's routes in a map
/// (`routes.map`), changed through its runtime API, so that they can change without a restart.
pub fn render(
    kind: ProxyKind,
    plan: &RoutePlan,
    listen: SocketAddr,
    dir: &Path,
    tuning: &Tuning,
) -> Vec<ConfigFile> {
    let main = |text| ConfigFile {
        name: file_name(kind),
        text,
    };
    match kind {
        ProxyKind::Nginx => vec![main(nginx::render(plan, listen, dir, tuning))],
        ProxyKind::Haproxy => vec![
            main(haproxy::render(plan, listen, dir, tuning)),
            ConfigFile {
                name: haproxy::MAP_FILE,
                text: haproxy::map_file(plan),
            },
        ],
        ProxyKind::Envoy => vec![
            main(envoy::bootstrap(listen, dir, tuning)),
            ConfigFile {
                name: envoy::ROUTES_FILE,
                text: envoy::routes(plan),
            },
            ConfigFile {
                name: envoy::CLUSTERS_FILE,
                text: envoy::clusters(&plan.upstreams),
            },
        ],
    }
}

/// Envoy's clusters file for `upstreams` (what [`render`] writes as `cds.yaml`): used when
/// clusters must be added before the routes that name them change, and removed after.
pub fn envoy_clusters(upstreams: &[crate::plan::Upstream]) -> ConfigFile {
    ConfigFile {
        name: envoy::CLUSTERS_FILE,
        text: envoy::clusters(upstreams),
    }
}

/// The files as one text, each after a `# NAME` comment line (a comment in all three syntaxes).
pub fn joined(files: &[ConfigFile]) -> String {
    files
        .iter()
        .map(|file| format!("# {}\n{}", file.name, file.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The name of the configuration file in the proxy's directory.
pub fn file_name(kind: ProxyKind) -> &'static str {
    match kind {
        ProxyKind::Nginx => "nginx.conf",
        ProxyKind::Haproxy => "haproxy.cfg",
        ProxyKind::Envoy => "envoy.yaml",
    }
}

/// The command-line arguments that run `kind` in the foreground with `config`, logging to
/// stderr.
pub fn args(kind: ProxyKind, config: &Path, dir: &Path) -> Vec<String> {
    let config = config.display().to_string();
    match kind {
        ProxyKind::Nginx => vec![
            "-p".into(),
            dir.display().to_string(),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            config,
        ],
        // One process: changes go through the runtime API, never a reload.
        ProxyKind::Haproxy => vec!["-db".into(), "-f".into(), config],
        ProxyKind::Envoy => vec![
            "-c".into(),
            config,
            "--concurrency".into(),
            "2".into(),
            // Several Envoys at once (tests run in parallel): no shared memory for hot restart.
            "--disable-hot-restart".into(),
            "--log-level".into(),
            "warn".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Arrangement;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn all(arrangement: &Arrangement) -> [(ProxyKind, String); 3] {
        let plan = arrangement.plan();
        ProxyKind::ALL.map(|kind| {
            let files = render(
                kind,
                &plan,
                addr(4000),
                Path::new("/tmp/p"),
                &Tuning::default(),
            );
            (kind, joined(&files))
        })
    }

    #[test]
    fn front_of_router_forwards_everything_over_h2c() {
        let [(_, nginx), (_, haproxy), (_, envoy)] =
            all(&Arrangement::FrontOfRouter { router: addr(5000) });
        assert!(nginx.contains("listen 127.0.0.1:4000 http2;"), "{nginx}");
        assert!(nginx.contains("server 127.0.0.1:5000;"), "{nginx}");
        assert!(nginx.contains("grpc_pass grpc://router;"), "{nginx}");
        assert!(nginx.contains("daemon off;"), "{nginx}");
        assert!(nginx.contains("pid /tmp/p/nginx.pid;"), "{nginx}");
        assert!(!nginx.contains("x_api_version"), "{nginx}");

        assert!(
            haproxy.contains("bind 127.0.0.1:4000 proto h2"),
            "{haproxy}"
        );
        assert!(
            haproxy.contains("server router 127.0.0.1:5000 proto h2"),
            "{haproxy}"
        );
        assert!(haproxy.contains("mode http"), "{haproxy}");
        assert!(
            haproxy.contains("stats socket /tmp/p/haproxy.sock mode 600 level admin"),
            "{haproxy}"
        );
        assert!(haproxy.ends_with("\n/ router|-|-|/|-\n"), "{haproxy}");

        assert!(envoy.contains("port_value: 4000"), "{envoy}");
        assert!(envoy.contains("port_value: 5000"), "{envoy}");
        assert!(envoy.contains("codec_type: AUTO"), "{envoy}");
        assert!(envoy.contains("http2_protocol_options: {}"), "{envoy}");
        assert!(envoy.contains("timeout: 0s"), "{envoy}");
        assert!(!envoy.contains("direct_response"), "{envoy}");
    }

    #[test]
    fn version_routing_routes_by_prefix_and_rejects_other_pinned_majors() {
        let [(_, nginx), (_, haproxy), (_, envoy)] = all(&Arrangement::VersionRouting {
            v1: addr(5001),
            v2: addr(5002),
            retire_v1: false,
        });
        assert!(nginx.contains("location /increment.v1. {"), "{nginx}");
        assert!(nginx.contains("grpc_pass grpc://v1;"), "{nginx}");
        assert!(
            nginx.contains("map $http_x_api_version $api_major"),
            "{nginx}"
        );
        assert!(nginx.contains(r#"if ($api_major !~ "^(1)?$")"#), "{nginx}");
        assert!(
            nginx.contains("add_header grpc-status 12 always;"),
            "{nginx}"
        );
        assert!(!nginx.contains("rewrite"), "{nginx}");

        assert!(
            haproxy.contains("path,map_beg(/tmp/p/routes.map)"),
            "{haproxy}"
        );
        assert!(
            haproxy.contains("req.hdr(x-api-version) -m reg"),
            "{haproxy}"
        );
        assert!(
            haproxy.contains("http-request return status 200 hdr grpc-status 12 hdr grpc-message"),
            "{haproxy}"
        );
        assert!(
            haproxy.contains(
                "# routes.map\n/increment.v1. v1|-|,1,|/increment.v1.|x-api-version pins"
            ),
            "{haproxy}"
        );
        assert!(
            haproxy.contains("\n/increment.v2. v2|-|,2,|/increment.v2.|"),
            "{haproxy}"
        );
        assert!(haproxy.ends_with("\n/ v2|-|-|/|-\n"), "{haproxy}");

        assert!(envoy.contains("prefix: '/increment.v1.'"), "{envoy}");
        assert!(envoy.contains("name: x-api-version"), "{envoy}");
        assert!(envoy.contains("direct_response"), "{envoy}");
        assert!(envoy.contains("cluster: v1"), "{envoy}");
        assert!(!envoy.contains("prefix_rewrite"), "{envoy}");
    }

    #[test]
    fn retiring_v1_rewrites_the_path_in_every_proxy() {
        let [(_, nginx), (_, haproxy), (_, envoy)] = all(&Arrangement::VersionRouting {
            v1: addr(5001),
            v2: addr(5002),
            retire_v1: true,
        });
        assert!(
            nginx.contains(r"rewrite ^/increment\.v1\.(.*)$ /increment.v2.$1 break;"),
            "{nginx}"
        );
        assert!(!nginx.contains("upstream v1"), "{nginx}");
        assert!(
            haproxy.contains("\n/increment.v1. v2|/increment.v2.|,2,|/increment.v1.|"),
            "{haproxy}"
        );
        // v1's slot stays, in maintenance: a change back needs no new backend.
        assert!(
            haproxy.contains("server v1 127.0.0.1:9 proto h2 disabled"),
            "{haproxy}"
        );
        assert!(
            envoy.contains("prefix_rewrite: '/increment.v2.'"),
            "{envoy}"
        );
        assert!(!envoy.contains("cluster: v1"), "{envoy}");
    }

    #[test]
    fn envoy_reads_routes_and_clusters_by_filesystem_xds() {
        let plan = Arrangement::V1Only { v1: addr(5001) }.plan();
        let files = render(
            ProxyKind::Envoy,
            &plan,
            addr(4000),
            Path::new("/tmp/p"),
            &Tuning::default(),
        );
        let names: Vec<&str> = files.iter().map(|f| f.name).collect();
        assert_eq!(names, ["envoy.yaml", "rds.yaml", "cds.yaml"]);
        let bootstrap = &files[0].text;
        assert!(bootstrap.contains("path: '/tmp/p/rds.yaml'"), "{bootstrap}");
        assert!(bootstrap.contains("path: '/tmp/p/cds.yaml'"), "{bootstrap}");
        assert!(
            bootstrap.contains("pipe: { path: '/tmp/p/admin.sock' }"),
            "{bootstrap}"
        );
        assert!(!bootstrap.contains("stream_idle_timeout"), "{bootstrap}");
        assert!(files[1].text.contains("cluster: v1"), "{}", files[1].text);
        assert!(
            files[2].text.contains("port_value: 5001"),
            "{}",
            files[2].text
        );
        assert!(!files[2].text.contains("name: v2"), "{}", files[2].text);
    }

    #[test]
    fn tuning_changes_each_proxys_timeouts_and_request_limit() {
        let plan = Arrangement::FrontOfRouter { router: addr(5000) }.plan();
        let tuning = Tuning {
            idle_timeout: Some(Duration::from_millis(1500)),
            requests_per_connection: Some(5),
        };
        let text = |kind| {
            joined(&render(
                kind,
                &plan,
                addr(4000),
                Path::new("/tmp/p"),
                &tuning,
            ))
        };
        let nginx = text(ProxyKind::Nginx);
        assert!(nginx.contains("grpc_read_timeout 1500ms;"), "{nginx}");
        assert!(nginx.contains("keepalive_requests 5;"), "{nginx}");
        let haproxy = text(ProxyKind::Haproxy);
        assert!(haproxy.contains("timeout client 1500ms"), "{haproxy}");
        assert!(haproxy.contains("timeout server 1500ms"), "{haproxy}");
        let envoy = text(ProxyKind::Envoy);
        assert!(envoy.contains("stream_idle_timeout: 1.5s"), "{envoy}");
        assert!(envoy.contains("max_requests_per_connection: 5"), "{envoy}");
    }
}
