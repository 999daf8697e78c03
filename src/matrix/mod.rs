//! The compatibility matrix: every client kind against every deployment, unary and streaming,
//! each cell the real outcome of a real call judged against what the API promises.

pub mod any_api;
mod expect;
mod grpcurl_lane;
mod outside_client;
mod probe;
pub mod proxies;
mod python_lane;
mod render_api;

pub use expect::{Expect, expected};
use probe::expected_values;
pub use probe::{ClientKind, STEP, STREAM_VALUES, UNARY_VALUE};

use client::external::CallError;
use client::{Mode, Reply};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use port::{Deployment, server};
use serde::Serialize;
use services::Api;
use std::net::{Ipv4Addr, SocketAddr};
use tonic::Code;

/// What one call produced, judged against the API's promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every reply carried the right value (and, for v2, the right request id).
    Correct {
        /// The values received.
        values: Vec<i64>,
        /// The version that served the first reply (router header or v2's
        /// `served_by_version`); `None` when nothing says (v1 served directly).
        served_by: Option<String>,
    },
    /// The server answered, but wrongly: the danger the router exists to prevent.
    Wrong {
        /// The values received.
        got: Vec<i64>,
        /// The values the API promises.
        want: Vec<i64>,
    },
    /// The call failed with a gRPC status.
    Status {
        /// The status code, as gRPC names it (`UNIMPLEMENTED`).
        #[serde(serialize_with = "serialize_code")]
        code: Code,
        /// The status message.
        message: String,
    },
    /// The client could not run (tool missing); the reason says how to fix it.
    Skipped {
        /// Why, and the fix.
        reason: String,
    },
    /// The client failed in some other way (could not connect, unreadable output).
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// Judges a call's result for a client speaking `api` in `mode`.
    pub fn judge(api: Api, mode: Mode, result: Result<Vec<Reply>, CallError>) -> Self {
        match result {
            Ok(replies) => {
                let want = expected_values(api, mode);
                let got: Vec<i64> = replies.iter().map(|r| r.value).collect();
                let ids_match = api == Api::V1
                    || replies
                        .iter()
                        .zip(1..)
                        .all(|(reply, id)| reply.request_id == id);
                if got == want && ids_match {
                    Outcome::Correct {
                        values: got,
                        served_by: replies.first().and_then(|r| r.served_by.clone()),
                    }
                } else {
                    Outcome::Wrong { got, want }
                }
            }
            Err(CallError::Status { code, message }) => Outcome::Status { code, message },
            Err(CallError::Missing(missing)) => Outcome::Skipped {
                reason: missing.to_string(),
            },
            Err(CallError::Failed(reason)) => Outcome::Failed { reason },
        }
    }

    /// The short form printed in a table cell.
    pub fn cell(&self) -> String {
        let join = |values: &[i64]| {
            values
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Outcome::Correct {
                values,
                served_by: None,
            } => format!("✓ {}", join(values)),
            Outcome::Correct {
                values,
                served_by: Some(version),
            } => format!("✓ {} ({version})", join(values)),
            Outcome::Wrong { got, want } => format!("✗ {} (want {})", join(got), join(want)),
            Outcome::Status { code, .. } => code_name(*code),
            Outcome::Skipped { .. } => "skipped".to_string(),
            Outcome::Failed { .. } => "client failed".to_string(),
        }
    }
}

pub use compat::probe::code_name;

fn serialize_code<S: serde::Serializer>(code: &Code, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&code_name(*code))
}

/// A column of the matrix: one of the testbed's deployments, or a real proxy in one of its
/// arrangements. In JSON it is its name (`side-by-side`, `nginx front-of-router`), under the
/// cell's `deployment` key as before proxies existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// A deployment served by the testbed itself.
    Deployment(Deployment),
    /// A proxy in front of testbed processes.
    Proxy {
        /// Which proxy.
        proxy: proxy::ProxyKind,
        /// What it stands in front of.
        arrangement: proxies::ProxyColumn,
    },
}

impl Column {
    /// The column's name: the deployment's, or `PROXY ARRANGEMENT` (`nginx v1-retired`).
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// What `client` must see in this column.
    pub fn expected(&self, client: ClientKind) -> Expect {
        match *self {
            Column::Deployment(deployment) => expected(client, deployment),
            Column::Proxy { arrangement, .. } => proxies::expected_through(client, arrangement),
        }
    }
}

impl From<Deployment> for Column {
    fn from(deployment: Deployment) -> Self {
        Column::Deployment(deployment)
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Deployment(deployment) => write!(f, "{deployment}"),
            Column::Proxy { proxy, arrangement } => write!(f, "{proxy} {arrangement}"),
        }
    }
}

impl Serialize for Column {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One client against one column (a deployment, or a proxy arrangement).
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The client.
    pub client: ClientKind,
    /// The column: a deployment, or a proxy arrangement (the JSON key predates proxies).
    pub deployment: Column,
    /// What the API promises this client here.
    pub expected: Expect,
    /// The unary probe's outcome.
    pub unary: Outcome,
    /// The streaming probe's outcome.
    pub stream: Outcome,
}

impl Cell {
    /// Why this cell is not what was expected, if it is not (one line per probe).
    pub fn mismatches(&self) -> Vec<String> {
        [("unary", &self.unary), ("stream", &self.stream)]
            .into_iter()
            .filter(|(_, outcome)| !self.expected.fits(outcome))
            .map(|(mode, outcome)| {
                format!(
                    "{} on {} ({mode}): expected {}, got {}",
                    self.client.label(),
                    self.deployment,
                    self.expected.describe(),
                    outcome.cell()
                )
            })
            .collect()
    }
}

/// Every cell that differs from its expectation, one line each; empty when the matrix holds.
pub fn mismatches(cells: &[Cell]) -> Vec<String> {
    cells.iter().flat_map(Cell::mismatches).collect()
}

/// Runs `clients` against each of `deployments`, each deployment on its own fresh server on
/// 127.0.0.1 with an OS-chosen port.
pub async fn run(clients: &[ClientKind], deployments: &[Deployment]) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for &deployment in deployments {
        let server = server::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), deployment).await?;
        for &client in clients {
            cells.push(run_cell(client, deployment, server.addr).await);
        }
        server.shutdown().await?;
    }
    Ok(cells)
}

/// Runs one client's unary and streaming probes against the server (or proxy) of `column` at
/// `addr`.
pub async fn run_cell(client: ClientKind, column: impl Into<Column>, addr: SocketAddr) -> Cell {
    let column = column.into();
    let api = client.api();
    let unary = Outcome::judge(api, Mode::Unary, client.call(addr, Mode::Unary).await);
    let stream = Outcome::judge(api, Mode::Stream, client.call(addr, Mode::Stream).await);
    Cell {
        client,
        deployment: column,
        expected: column.expected(client),
        unary,
        stream,
    }
}

/// The matrix as two terminal tables (unary, then streaming), rows clients, columns deployments,
/// then two more for each proxy's columns (one table would be too wide), followed by the
/// reasons for any skipped or failed cell.
pub fn render(cells: &[Cell]) -> String {
    let mut groups: Vec<(Option<proxy::ProxyKind>, Vec<Column>)> = Vec::new();
    let mut clients: Vec<ClientKind> = Vec::new();
    for cell in cells {
        let group = match cell.deployment {
            Column::Deployment(_) => None,
            Column::Proxy { proxy, .. } => Some(proxy),
        };
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, columns)) if columns.contains(&cell.deployment) => {}
            Some((_, columns)) => columns.push(cell.deployment),
            None => groups.push((group, vec![cell.deployment])),
        }
        if !clients.contains(&cell.client) {
            clients.push(cell.client);
        }
    }
    let mut out = String::new();
    for (group, columns) in &groups {
        let through = group.map_or_else(String::new, |kind| format!(" through {kind}"));
        for (title, pick) in [
            (
                "unary Increment",
                (|c: &Cell| &c.unary) as fn(&Cell) -> &Outcome,
            ),
            ("streaming IncrementStream", |c: &Cell| &c.stream),
        ] {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            let mut header = vec![format!("{title}{through}")];
            header.extend(columns.iter().map(|column| match column {
                Column::Proxy { arrangement, .. } => arrangement.to_string(),
                deployment => deployment.to_string(),
            }));
            table.set_header(header);
            for client in &clients {
                let mut row = vec![client.label()];
                for column in columns {
                    let cell = cells
                        .iter()
                        .find(|c| c.client == *client && c.deployment == *column);
                    row.push(cell.map_or_else(String::new, |c| pick(c).cell()));
                }
                table.add_row(row);
            }
            out.push_str(&format!("{table}\n"));
        }
    }
    out.push_str(&notes(cells));
    out
}

/// What the tables leave out: each refusal's message (once per deployment and message), why a
/// client was skipped or failed (once per reason), and every cell that differs from what the
/// API promises.
fn notes(cells: &[Cell]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::new();
    for cell in cells {
        for outcome in [&cell.unary, &cell.stream] {
            let line = match outcome {
                Outcome::Status { code, message } => {
                    let key = (cell.deployment.name(), message.clone());
                    if !seen.insert(key) {
                        continue;
                    }
                    format!(
                        "{} on {}: {} \"{message}\"",
                        cell.client.label(),
                        cell.deployment,
                        code_name(*code)
                    )
                }
                Outcome::Skipped { reason } | Outcome::Failed { reason } => {
                    if !seen.insert((String::new(), reason.clone())) {
                        continue;
                    }
                    format!("{} on {}: {reason}", cell.client.label(), cell.deployment)
                }
                _ => continue,
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    let mismatches = mismatches(cells);
    if !mismatches.is_empty() {
        out.push_str("\nCells that differ from what the API promises:\n");
        for mismatch in mismatches {
            out.push_str(&format!("  {mismatch}\n"));
        }
    }
    out
}
