//! The proxy-neutral route plan: which request goes where, derived from an [`Arrangement`].
//! Every proxy's configuration is rendered from this one plan, so the three proxies are asked
//! to do the same thing and differ only in what they can express.

use std::net::SocketAddr;

/// What the proxy stands in front of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrangement {
    /// The proxy forwards everything to the testbed's version router (`testbed serve
    /// --deployment side-by-side`), which does the versioning: the proxy only has to pass
    /// paths, metadata, trailers and streams through untouched.
    FrontOfRouter {
        /// The router's address.
        router: SocketAddr,
    },
    /// The proxy does the version routing itself, as teams configure it today, in front of
    /// separate v1 and v2 backends (`testbed serve --backend v1|v2`): by path prefix, with
    /// `x-api-version` rules as far as a regular expression can express them.
    VersionRouting {
        /// The v1 backend (`increment.v1`).
        v1: SocketAddr,
        /// The v2 backend (`increment.v2`, health and reflection).
        v2: SocketAddr,
        /// v1 retired: `/increment.v1.` paths are rewritten to `/increment.v2.` and sent to v2.
        /// The proxy does not check that v2 can serve v1's messages (the router derives that
        /// from the descriptors); here it can, by the API's design.
        retire_v1: bool,
    },
    /// The first step of a v1 → v2 rollout done by the proxy: only v1 exists (`testbed serve
    /// --backend v1`), and it gets every request, health and reflection included. An
    /// `increment.v2` call reaches v1's process, which answers `UNIMPLEMENTED`.
    V1Only {
        /// The v1 backend.
        v1: SocketAddr,
    },
}

impl Arrangement {
    /// A short name for reports and test tables: `front-of-router`, `version-routing`,
    /// `version-routing-v1-retired`, `v1-only`.
    pub fn name(&self) -> &'static str {
        match self {
            Arrangement::FrontOfRouter { .. } => "front-of-router",
            Arrangement::VersionRouting {
                retire_v1: false, ..
            } => "version-routing",
            Arrangement::VersionRouting {
                retire_v1: true, ..
            } => "version-routing-v1-retired",
            Arrangement::V1Only { .. } => "v1-only",
        }
    }

    /// The route plan every proxy renders.
    pub fn plan(&self) -> RoutePlan {
        match *self {
            Arrangement::V1Only { v1 } => RoutePlan {
                upstreams: vec![Upstream {
                    name: "v1",
                    addr: v1,
                }],
                routes: vec![
                    Route {
                        prefix: V1_PREFIX,
                        pinned_majors: vec![1],
                        target: Target::Forward {
                            upstream: "v1",
                            rewrite_prefix: None,
                        },
                    },
                    Route {
                        prefix: "/",
                        pinned_majors: vec![],
                        target: Target::Forward {
                            upstream: "v1",
                            rewrite_prefix: None,
                        },
                    },
                ],
            },
            Arrangement::FrontOfRouter { router } => RoutePlan {
                upstreams: vec![Upstream {
                    name: "router",
                    addr: router,
                }],
                routes: vec![Route {
                    prefix: "/",
                    pinned_majors: vec![],
                    target: Target::Forward {
                        upstream: "router",
                        rewrite_prefix: None,
                    },
                }],
            },
            Arrangement::VersionRouting { v1, v2, retire_v1 } => {
                let mut upstreams = vec![Upstream {
                    name: "v2",
                    addr: v2,
                }];
                let v1_route = if retire_v1 {
                    Route {
                        prefix: V1_PREFIX,
                        pinned_majors: vec![2],
                        target: Target::Forward {
                            upstream: "v2",
                            rewrite_prefix: Some(V2_PREFIX),
                        },
                    }
                } else {
                    upstreams.insert(
                        0,
                        Upstream {
                            name: "v1",
                            addr: v1,
                        },
                    );
                    Route {
                        prefix: V1_PREFIX,
                        pinned_majors: vec![1],
                        target: Target::Forward {
                            upstream: "v1",
                            rewrite_prefix: None,
                        },
                    }
                };
                RoutePlan {
                    upstreams,
                    routes: vec![
                        v1_route,
                        Route {
                            prefix: V2_PREFIX,
                            pinned_majors: vec![2],
                            target: Target::Forward {
                                upstream: "v2",
                                rewrite_prefix: None,
                            },
                        },
                        // Health and reflection: v2's process answers them.
                        Route {
                            prefix: "/",
                            pinned_majors: vec![],
                            target: Target::Forward {
                                upstream: "v2",
                                rewrite_prefix: None,
                            },
                        },
                    ],
                }
            }
        }
    }
}

/// The path prefix of `increment.v1` calls.
pub const V1_PREFIX: &str = "/increment.v1.";
/// The path prefix of `increment.v2` calls.
pub const V2_PREFIX: &str = "/increment.v2.";

/// The request header holding a semver requirement (`^1`, `=2.0.0`, `>=1, <3`).
pub const API_VERSION_HEADER: &str = "x-api-version";

/// A regular expression matching an `x-api-version` value that pins one major version: an
/// optional `^`, `~` or `=`, then `MAJOR`, `MAJOR.MINOR` or `MAJOR.MINOR.PATCH` (`*` or `x`
/// allowed after the major). The capture group is the major. Anything else (`>=2, <3`, `*`,
/// `>1.4`) pins nothing a proxy can read, and is ignored: the request is routed by its path.
/// The syntax is common to PCRE (nginx, HAProxy) and RE2 (Envoy).
pub fn pinned_major_regex(majors: Option<&[u64]>) -> String {
    let major = match majors {
        None => r"[0-9]+".to_string(),
        Some(list) => list
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("|"),
    };
    format!(r"^\s*[\^~=]?\s*v?({major})(\.([0-9]+|[*xX])){{0,2}}\s*$")
}

/// A backend the proxy forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its name in the configuration (`router`, `v1`, `v2`).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One rule: requests whose path starts with `prefix` go to `target`, unless their
/// `x-api-version` pins a major version outside `pinned_majors`, which is answered
/// `UNIMPLEMENTED` by the proxy itself. Rules are tried in order; the first prefix that matches
/// decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path prefix (`/increment.v1.`, or `/` for everything else).
    pub prefix: &'static str,
    /// The major versions a pinning `x-api-version` may name here; empty: the header is not
    /// looked at.
    pub pinned_majors: Vec<u64>,
    /// Where matching requests go.
    pub target: Target,
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// To an upstream, with the path prefix optionally replaced.
    Forward {
        /// The upstream's name.
        upstream: &'static str,
        /// The new prefix replacing the route's prefix (`/increment.v2.` when v1 is retired).
        rewrite_prefix: Option<&'static str>,
    },
}

/// The status a proxy answers itself when `x-api-version` pins a major version that no backend
/// behind it serves for the path's package (the router says the same, with more detail).
pub const REJECT_CODE: u32 = 12;

/// The message sent with [`REJECT_CODE`].
pub fn reject_message(route: &Route) -> String {
    format!(
        "x-api-version pins a major version that no backend behind this proxy serves for {}* (serving: {})",
        route.prefix.trim_start_matches('/'),
        route
            .pinned_majors
            .iter()
            .map(|m| format!("{m}.x"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The proxy-neutral routing of one arrangement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// Every backend, each once.
    pub upstreams: Vec<Upstream>,
    /// The rules, first match wins; the last has prefix `/`.
    pub routes: Vec<Route>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn retiring_v1_rewrites_to_v2_and_drops_the_v1_upstream() {
        let plan = Arrangement::VersionRouting {
            v1: addr(1),
            v2: addr(2),
            retire_v1: true,
        }
        .plan();
        assert_eq!(plan.upstreams.len(), 1);
        assert_eq!(plan.upstreams[0].name, "v2");
        assert_eq!(
            plan.routes[0].target,
            Target::Forward {
                upstream: "v2",
                rewrite_prefix: Some(V2_PREFIX)
            }
        );
        assert_eq!(plan.routes[0].pinned_majors, vec![2]);
        assert_eq!(plan.routes.last().map(|r| r.prefix), Some("/"));
    }

    #[test]
    fn the_pin_regex_reads_single_major_requirements_only() {
        // Checked with a tiny matcher for the forms the tests send; the proxies run the real
        // regex engines, and the integration tests check what they do with it.
        let re = pinned_major_regex(Some(&[1]));
        assert_eq!(re, r"^\s*[\^~=]?\s*v?(1)(\.([0-9]+|[*xX])){0,2}\s*$");
        let any = pinned_major_regex(None);
        assert!(any.contains("([0-9]+)"));
    }
}
