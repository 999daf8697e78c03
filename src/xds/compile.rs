//! The route table compiled to Envoy's resources: what the ADS serves. It starts from the
//! export model ([`crate::export::plan`], the same rules `route export` writes for a mesh), so
//! Envoy is asked to do exactly what the mesh configurations say:
//! - a cluster per active backend (EDS over ADS, HTTP/2, a gRPC health check), its replicas as
//!   the endpoints of its load assignment;
//! - one route configuration: per package, a route per rule, first match wins, on the path
//!   prefix `/PACKAGE.`: exact pins and major pins as `x-api-version` header matchers,
//!   weights as weighted clusters, a retired package as a `prefix_rewrite`, and what Envoy
//!   cannot evaluate (any other requirement, or a pin nothing serves) as a direct response
//!   404, which Envoy answers a gRPC caller as `UNIMPLEMENTED` with the body as its message,
//!   naming the versions served;
//! - a listener per node (its address from the node's metadata, see [`LISTEN_METADATA`]).

use crate::export::{self, Destination, ExportArgs, Format, HeaderMatch, MeshPlan, ServiceHost};
use anyhow::{Context, bail};
use envoy_types::pb::envoy::config::cluster::v3 as cluster;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint;
use envoy_types::pb::envoy::config::listener::v3 as listener;
use envoy_types::pb::envoy::config::route::v3 as route;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;
use port::admin::pb::Backend;
use std::net::SocketAddr;

/// The route configuration's name, which every node's listener asks RDS for.
pub const ROUTES_NAME: &str = "testbed";
/// The listener's name.
pub const LISTENER_NAME: &str = "testbed";
/// The node metadata key (a string `IP:PORT`) naming where that node's listener listens:
/// several Envoys on one machine each need their own port.
pub use proxy::xds_node::LISTEN_METADATA;
/// The status of a refused call: Envoy answers a gRPC request's 404 with `UNIMPLEMENTED`.
const REFUSED_STATUS: u32 = 404;

/// The type URLs of the ADS, in the order a change is pushed (clusters and their endpoints
/// before the listener and routes that use them).
pub const TYPES: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];
/// `Cluster`'s type URL.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `ClusterLoadAssignment`'s type URL.
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `Listener`'s type URL.
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `RouteConfiguration`'s type URL.
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// Every resource but the per-node listener, each with its name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    /// The clusters.
    pub clusters: Vec<(String, Any)>,
    /// Their load assignments.
    pub endpoints: Vec<(String, Any)>,
    /// The one route configuration.
    pub routes: Vec<(String, Any)>,
}

impl Resources {
    /// The resources of `type_url` named in `names` (all of them for a wildcard subscription:
    /// `*`, or no names for clusters; in State of the World only listeners and clusters are
    /// wildcard when no name is given, and an endpoints or routes request naming none asks for
    /// none), or `None` for the listener, which is per node.
    pub fn of(&self, type_url: &str, names: &[String]) -> Option<Vec<Any>> {
        let (all, empty_is_wildcard) = match type_url {
            CLUSTER => (&self.clusters, true),
            ENDPOINT => (&self.endpoints, false),
            ROUTE => (&self.routes, false),
            _ => return None,
        };
        let wildcard = (empty_is_wildcard && names.is_empty()) || names.iter().any(|n| n == "*");
        Some(
            all.iter()
                .filter(|(name, _)| wildcard || names.contains(name))
                .map(|(_, any)| any.clone())
                .collect(),
        )
    }
}

/// The table of `backends` (as the admin API lists them) as Envoy resources, or what Envoy
/// cannot be given (a TLS upstream, an address that is no IP address, a split whose
/// destinations need different rewrites).
pub fn compile(backends: &[Backend]) -> anyhow::Result<Resources> {
    // The plan's Services are a mesh's; here every destination is reached by its backend's
    // own address, so each gets a placeholder Service name.
    let args = ExportArgs {
        format: Format::Istio,
        namespace: None,
        host: "testbed".to_string(),
        service_host: backends
            .iter()
            .map(|b| ServiceHost {
                name: b.name.clone(),
                host: "xds".to_string(),
            })
            .collect(),
        service_port: 1,
    };
    let plan = export::plan(backends, &args)?;
    let mut resources = Resources::default();
    for destination in &plan.destinations {
        let backend = backends
            .iter()
            .find(|b| b.name == destination.backend)
            .context("a destination of no backend")?;
        let addresses = endpoints_of(backend)?;
        let name = cluster_name(destination);
        resources
            .clusters
            .push((name.clone(), pack_any(cluster_of(&name))));
        resources
            .endpoints
            .push((name.clone(), pack_any(load_assignment(&name, &addresses))));
    }
    let routes = route_configuration(&plan)?;
    resources
        .routes
        .push((ROUTES_NAME.to_string(), pack_any(routes)));
    Ok(resources)
}

/// The cluster of a destination: its backend's name.
fn cluster_name(destination: &Destination) -> String {
    destination.backend.clone()
}

/// The replicas of `backend` as socket addresses.
fn endpoints_of(backend: &Backend) -> anyhow::Result<Vec<SocketAddr>> {
    if backend.address.is_empty() {
        bail!(
            "backend {} runs inside the gateway's process: Envoy cannot reach it",
            backend.name
        );
    }
    backend
        .address
        .split(',')
        .map(|address| {
            if address.starts_with("https://") {
                bail!(
                    "backend {} is at {address}: TLS upstreams are not supported by the xDS \
                     control plane yet",
                    backend.name
                );
            }
            address.parse::<SocketAddr>().with_context(|| {
                format!(
                    "backend {} is at {address:?}: the xDS control plane gives Envoy IP \
                     addresses only (a host name is not supported yet)",
                    backend.name
                )
            })
        })
        .collect()
}

fn seconds(secs: i64) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: secs,
        nanos: 0,
    })
}

/// A cluster: endpoints by EDS over the ADS, HTTP/2 to them, a gRPC health check of the
/// server as a whole.
fn cluster_of(name: &str) -> cluster::Cluster {
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(
            envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            core::Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    cluster::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: String::new(),
        }),
        connect_timeout: seconds(1),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pack_any(http2),
        )]
        .into_iter()
        .collect(),
        health_checks: vec![core::HealthCheck {
            timeout: seconds(1),
            interval: seconds(1),
            unhealthy_threshold: Some(UInt32Value { value: 2 }),
            healthy_threshold: Some(UInt32Value { value: 1 }),
            health_checker: Some(core::health_check::HealthChecker::GrpcHealthCheck(
                core::health_check::GrpcHealthCheck::default(),
            )),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Where a resource that refers to another finds it: the ADS stream it came on.
pub fn ads_source() -> core::ConfigSource {
    core::ConfigSource {
        resource_api_version: core::ApiVersion::V3 as i32,
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource::default(),
        )),
        ..Default::default()
    }
}

fn socket_address(addr: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// The replicas of a cluster as one locality's endpoints.
fn load_assignment(name: &str, addresses: &[SocketAddr]) -> endpoint::ClusterLoadAssignment {
    let lb_endpoints = addresses
        .iter()
        .map(|addr| endpoint::LbEndpoint {
            host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                endpoint::Endpoint {
                    address: Some(socket_address(*addr)),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
        .collect();
    endpoint::ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![endpoint::LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The routes of every package of `plan`, in one virtual host.
fn route_configuration(plan: &MeshPlan) -> anyhow::Result<route::RouteConfiguration> {
    let mut routes = Vec::new();
    for package in &plan.packages {
        let versions: Vec<String> = {
            let mut all: Vec<String> = package
                .rules
                .iter()
                .flat_map(|r| r.split.iter().map(|(d, _)| d.label()))
                .collect();
            all.sort();
            all.dedup();
            all
        };
        for rule in &package.rules {
            let headers = match &rule.header {
                HeaderMatch::Exact(value) => vec![header(
                    matcher::string_matcher::MatchPattern::Exact(value.clone()),
                )],
                HeaderMatch::Regex(regex) => vec![header(
                    matcher::string_matcher::MatchPattern::SafeRegex(matcher::RegexMatcher {
                        regex: regex.clone(),
                        ..Default::default()
                    }),
                )],
                HeaderMatch::Any => vec![route::HeaderMatcher {
                    name: export::HEADER.to_string(),
                    header_match_specifier: Some(
                        route::header_matcher::HeaderMatchSpecifier::PresentMatch(true),
                    ),
                    ..Default::default()
                }],
                HeaderMatch::Absent => Vec::new(),
            };
            let action = if rule.split.is_empty() {
                let served = served_list(&versions);
                let message = match rule.header {
                    HeaderMatch::Any => format!(
                        "{}: this {} is a semver requirement Envoy cannot evaluate; pin an \
                         exact version (=X.Y.Z) or a major (versions served: {served})",
                        package.package,
                        export::HEADER
                    ),
                    _ => format!(
                        "{}: no version here serves {} (versions served: {served})",
                        package.package, rule.why
                    ),
                };
                route::route::Action::DirectResponse(route::DirectResponseAction {
                    status: REFUSED_STATUS,
                    body: Some(core::DataSource {
                        specifier: Some(core::data_source::Specifier::InlineString(message)),
                        ..Default::default()
                    }),
                    body_format: None,
                })
            } else {
                route::route::Action::Route(route_action(&package.package, rule)?)
            };
            routes.push(route::Route {
                name: format!("{} {}", package.package, rule.why),
                r#match: Some(route::RouteMatch {
                    path_specifier: Some(route::route_match::PathSpecifier::Prefix(format!(
                        "/{}.",
                        package.package
                    ))),
                    headers,
                    ..Default::default()
                }),
                action: Some(action),
                ..Default::default()
            });
        }
    }
    Ok(route::RouteConfiguration {
        name: ROUTES_NAME.to_string(),
        virtual_hosts: vec![route::VirtualHost {
            name: "all".to_string(),
            domains: vec!["*".to_string()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Versions named in a refusal at most: Envoy refuses a route configuration whose direct
/// response body is over 4 KiB (`max_direct_response_body_size_bytes`).
const NAMED_VERSIONS: usize = 20;

/// `versions` for a refusal's message: all of them, or the first [`NAMED_VERSIONS`] and how
/// many more.
fn served_list(versions: &[String]) -> String {
    match versions.len() {
        0 => "none".to_string(),
        n if n <= NAMED_VERSIONS => versions.join(", "),
        n => format!(
            "{} and {} more",
            versions[..NAMED_VERSIONS].join(", "),
            n - NAMED_VERSIONS
        ),
    }
}

/// A matcher of `x-api-version`'s value.
fn header(pattern: matcher::string_matcher::MatchPattern) -> route::HeaderMatcher {
    route::HeaderMatcher {
        name: export::HEADER.to_string(),
        header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
            matcher::StringMatcher {
                match_pattern: Some(pattern),
                ignore_case: false,
            },
        )),
        ..Default::default()
    }
}

/// Where a rule's calls go: one cluster or a weighted split, the path rewritten to the
/// package the destinations implement when it is not the one called (a retired package).
fn route_action(package: &str, rule: &export::Rule) -> anyhow::Result<route::RouteAction> {
    let cluster_specifier = match rule.split.as_slice() {
        [(destination, _)] => {
            route::route_action::ClusterSpecifier::Cluster(cluster_name(destination))
        }
        split => route::route_action::ClusterSpecifier::WeightedClusters(route::WeightedCluster {
            clusters: split
                .iter()
                .map(|(destination, share)| {
                    let weight = u32::try_from(*share).with_context(|| {
                        format!(
                            "{package}, {}: a share of {share} is too large for Envoy",
                            rule.why
                        )
                    })?;
                    Ok(route::weighted_cluster::ClusterWeight {
                        name: cluster_name(destination),
                        weight: Some(UInt32Value { value: weight }),
                        ..Default::default()
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            ..Default::default()
        }),
    };
    let prefix_rewrite = export::rewrite_of(package, rule)?
        .map(|api| format!("/{api}."))
        .unwrap_or_default();
    Ok(route::RouteAction {
        cluster_specifier: Some(cluster_specifier),
        prefix_rewrite,
        // No limit: streams outlive Envoy's 15 s default.
        timeout: seconds(0),
        ..Default::default()
    })
}

/// The listener of a node listening on `addr`: the HTTP connection manager (h2c and HTTP/1
/// detected), routes by RDS over the ADS.
pub fn listener_of(addr: SocketAddr) -> Any {
    let manager = hcm::HttpConnectionManager {
        stat_prefix: "testbed".to_string(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(ads_source()),
                route_config_name: ROUTES_NAME.to_string(),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    pack_any(listener::Listener {
        name: LISTENER_NAME.to_string(),
        address: Some(socket_address(addr)),
        filter_chains: vec![listener::FilterChain {
            filters: vec![listener::Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(listener::filter::ConfigType::TypedConfig(pack_any(manager))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
