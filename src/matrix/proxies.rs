//! The matrix's proxy columns: every client through a real nginx, HAProxy or Envoy (started by
//! the `proxy` crate as a child process), in three arrangements per proxy, each cell judged
//! against the expectation written here. `testbed matrix --proxy KIND` and the tests
//! (`tests/proxies.rs`) share this table, so both check the same promise.

use super::expect::Expect;
use super::probe::ClientKind::{self, *};
use super::{Cell, Column, run_cell};
use anyhow::Context;
use port::child::ChildServer;
use proxy::{Arrangement, ProxyKind, RunningProxy};
use std::fmt;
use std::path::Path;
use tonic::Code;

/// The three arrangements a proxy is tried in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyColumn {
    /// The proxy in front of `testbed serve --deployment side-by-side`: the router versions.
    FrontOfRouter,
    /// The proxy routing by path (and `x-api-version`) to `serve --backend v1` and `--backend v2`.
    VersionRouting,
    /// The same with v1 retired: `/increment.v1.` rewritten to `/increment.v2.`, sent to v2.
    V1Retired,
}

impl ProxyColumn {
    /// Every arrangement, in the order of the columns.
    pub const ALL: [ProxyColumn; 3] = [
        ProxyColumn::FrontOfRouter,
        ProxyColumn::VersionRouting,
        ProxyColumn::V1Retired,
    ];

    /// `front-of-router`, `version-routing`, `v1-retired`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyColumn::FrontOfRouter => "front-of-router",
            ProxyColumn::VersionRouting => "version-routing",
            ProxyColumn::V1Retired => "v1-retired",
        }
    }
}

impl fmt::Display for ProxyColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The correct values, served by `version` (or by nothing that says so: `None`).
const fn ok(version: Option<&'static str>) -> Expect {
    match version {
        Some(version) => Expect::Served { version },
        None => Expect::Unlabelled,
    }
}

/// The proxy's own trailers-only `UNIMPLEMENTED`: `x-api-version` pins a major version that no
/// backend behind it serves for the path.
pub const PROXY_REJECTS: Expect = Expect::Fails {
    code: Code::Unimplemented,
};

/// Columns in the order of [`ProxyColumn::ALL`]. Unary and streaming alike, and the same for
/// nginx, HAProxy and Envoy (observed: every cell agrees across the three).
///
/// - Front of router: every client works, and every reply carries the router's
///   `x-api-version` response header through the proxy (`1.0.0` or `2.0.0`): paths, metadata
///   both ways, trailers and bidi streams all pass.
/// - Version routing: every client works, but v1 replies name no version: nothing in the
///   arrangement adds `x-api-version` (v2 replies name `2.0.0` in their body).
/// - v1 retired: the path rewrite works in all three; v1 clients get v2's answers without
///   being able to tell (v1's message has no `served_by_version`). A v1 client pinned to `^1`
///   gets the proxy's own `UNIMPLEMENTED`, as from the router.
const EXPECTED: [(ClientKind, [Expect; 3]); 8] = [
    (RustV1, [ok(Some("1.0.0")), ok(None), ok(None)]),
    (RustV1Pinned, [ok(Some("1.0.0")), ok(None), PROXY_REJECTS]),
    (
        RustV2,
        [ok(Some("2.0.0")), ok(Some("2.0.0")), ok(Some("2.0.0"))],
    ),
    (
        RustV2Pinned,
        [ok(Some("2.0.0")), ok(Some("2.0.0")), ok(Some("2.0.0"))],
    ),
    (PythonV1, [ok(Some("1.0.0")), ok(None), ok(None)]),
    (
        PythonV2,
        [ok(Some("2.0.0")), ok(Some("2.0.0")), ok(Some("2.0.0"))],
    ),
    (GrpcurlV1, [ok(Some("1.0.0")), ok(None), ok(None)]),
    (
        GrpcurlV2,
        [ok(Some("2.0.0")), ok(Some("2.0.0")), ok(Some("2.0.0"))],
    ),
];

/// What `client` must see through any of the proxies in `column`.
pub fn expected_through(client: ClientKind, column: ProxyColumn) -> Expect {
    let index = ProxyColumn::ALL
        .iter()
        .position(|c| *c == column)
        .unwrap_or_default();
    EXPECTED
        .iter()
        .find(|(c, _)| *c == client)
        .map_or(Expect::Unlabelled, |(_, row)| row[index])
}

/// A proxy and the testbed processes behind it.
#[derive(Debug)]
pub struct Stack {
    /// The proxy.
    pub proxy: RunningProxy,
    /// The router (front of router), or v1 then v2 (v1 absent when retired).
    pub servers: Vec<ChildServer>,
}

impl Stack {
    /// Starts `column`'s backends (`testbed_exe serve ...` processes on free ports) and `kind`
    /// in front of them. Fails with the proxy's [`proxy::MissingTool`] (which says how to
    /// install it) before starting anything when the proxy is not installed.
    pub async fn start(
        kind: ProxyKind,
        column: ProxyColumn,
        testbed_exe: &Path,
    ) -> anyhow::Result<Self> {
        kind.find()?;
        let serve = |args: &'static [&'static str]| async move {
            let mut all = vec!["serve"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["--addr", "127.0.0.1:0"]);
            ChildServer::testbed(testbed_exe, &all).await
        };
        let (arrangement, servers) = match column {
            ProxyColumn::FrontOfRouter => {
                let router = serve(&["--deployment", "side-by-side"]).await?;
                (
                    Arrangement::FrontOfRouter {
                        router: router.addr,
                    },
                    vec![router],
                )
            }
            ProxyColumn::VersionRouting | ProxyColumn::V1Retired => {
                let retire_v1 = column == ProxyColumn::V1Retired;
                let v2 = serve(&["--backend", "v2"]).await?;
                let v1 = if retire_v1 {
                    None
                } else {
                    Some(serve(&["--backend", "v1"]).await?)
                };
                // When retired, v1's address is never used: any address will do.
                let v1_addr = v1.as_ref().map_or(v2.addr, |v1| v1.addr);
                (
                    Arrangement::VersionRouting {
                        v1: v1_addr,
                        v2: v2.addr,
                        retire_v1,
                    },
                    v1.into_iter().chain([v2]).collect(),
                )
            }
        };
        let proxy = RunningProxy::start(kind, &arrangement)
            .await
            .with_context(|| format!("{kind} does not start in front of {column}"))?;
        Ok(Self { proxy, servers })
    }

    /// Stops the proxy, then the servers behind it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.proxy.stop().await?;
        drop(self.servers);
        Ok(())
    }
}

/// Runs `clients` through `kind` in each of its three arrangements (a fresh stack for each),
/// unary and streaming. Fails before running anything when the proxy is not installed.
pub async fn run(
    clients: &[ClientKind],
    kind: ProxyKind,
    testbed_exe: &Path,
) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for arrangement in ProxyColumn::ALL {
        let stack = Stack::start(kind, arrangement, testbed_exe).await?;
        let column = Column::Proxy {
            proxy: kind,
            arrangement,
        };
        for &client in clients {
            cells.push(run_cell(client, column, stack.proxy.addr()).await);
        }
        stack.stop().await?;
    }
    Ok(cells)
}

/// The proxies of `kinds` that are installed, and for each one that is not, a note saying its
/// columns are skipped and the command that installs it. Under `CI=true` a missing proxy is an
/// error instead, as every missing tool is there.
pub fn installed(kinds: &[ProxyKind]) -> anyhow::Result<(Vec<ProxyKind>, Vec<String>)> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    for &kind in kinds {
        match kind.find() {
            Ok(_) => found.push(kind),
            Err(missing) if ci => {
                return Err(anyhow::anyhow!(
                    "CI=true and {kind} is not installed: {missing}"
                ));
            }
            Err(missing) => skipped.push(format!("{kind} skipped: {missing}")),
        }
    }
    Ok((found, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_has_a_row() {
        for client in ClientKind::ALL {
            assert!(EXPECTED.iter().any(|(c, _)| *c == client), "{client:?}");
        }
        assert_eq!(
            expected_through(RustV1Pinned, ProxyColumn::V1Retired),
            PROXY_REJECTS
        );
        assert_eq!(
            expected_through(RustV1, ProxyColumn::VersionRouting),
            Expect::Unlabelled
        );
    }
}
