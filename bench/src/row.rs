//! The rows of the latency table: what each measures, its label and flag, the tools it needs,
//! the server it talks to, and which pairs are measured in alternation.

use crate::baseline::Baseline;
use crate::in_ci;
use crate::targets::Target;
use client::tools::{self, MissingTool};
use port::Deployment;
use serde::Serialize;

/// One row of the latency table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    /// Timer and histogram around a call that does nothing: the harness's own cost.
    Harness,
    /// (1) The increment as an in-process function call.
    InProcess,
    /// (2) Raw TCP ping-pong, 8-byte messages: the floor.
    Tcp,
    /// (3) REST: axum server, hyper HTTP/1.1 keep-alive client, JSON.
    Rest,
    /// (4) gRPC unary, v1, direct.
    UnaryV1,
    /// (4t) As (4), over TLS (rustls, ALPN h2) to a TLS port; measured in alternation with
    /// (4) when both run.
    UnaryTls,
    /// (4b) gRPC unary, v1, direct, tonic's client on hyper's HTTP/2 connection without the
    /// `Buffer` of a `Channel`.
    UnaryUnbuffered,
    /// (4c) gRPC unary, v1, direct, the testbed's own client on `h2`: one write per call, no
    /// task of its own.
    UnaryH2,
    /// (4d) As (4c), against the v1 service alone on a stock tonic server: what the port's own
    /// layers (guard, reflection, health, fallback) cost.
    UnaryH2StockServer,
    /// (5) gRPC unary, v2, direct.
    UnaryV2,
    /// (6) gRPC unary, v2, through the version router.
    UnaryRouter,
    /// (7) gRPC bidi stream, one call in flight, replies matched by request_id.
    StreamPingPong,
    /// (7t) As (7), over TLS; measured in alternation with (7) when both run.
    StreamPingPongTls,
    /// (8) gRPC bidi stream, all sent then all read (not dependent).
    StreamPipelined,
    /// (9) Python grpcio client → Rust server.
    PythonToRust,
    /// (10) Python grpcio client → Python grpcio server.
    PythonToPython,
    /// (11) Rust client → Python grpcio server.
    RustToPython,
    /// (11g) As (11), through the testbed's gateway (`serve --upstream`, the Python server's
    /// descriptors from a file: it serves no reflection); measured in alternation with (11), so
    /// the ratio is what the gateway adds in front of a server the testbed did not write.
    RustToPythonViaGateway,
    /// (12) h2load (nghttp2) → Rust server, direct, direct over TLS and through the router.
    H2load,
    /// (13) What a new connection costs: connect and a first call on a fresh connection, over
    /// plaintext and over TLS, [`handshake::CONNECTIONS`] of each in alternation.
    Handshake,
    /// (14) The same v1 backend directly, through the testbed's router as a proxy (`serve
    /// --upstream`) and through nginx, HAProxy and Envoy: sequential calls in alternation, h2load
    /// at two loads, and each hop's CPU time per request.
    Proxies,
}

impl Row {
    /// Every row, in table order.
    pub const ALL: [Row; 21] = [
        Row::Harness,
        Row::InProcess,
        Row::Tcp,
        Row::Rest,
        Row::UnaryV1,
        Row::UnaryTls,
        Row::UnaryUnbuffered,
        Row::UnaryH2,
        Row::UnaryH2StockServer,
        Row::UnaryV2,
        Row::UnaryRouter,
        Row::StreamPingPong,
        Row::StreamPingPongTls,
        Row::StreamPipelined,
        Row::PythonToRust,
        Row::PythonToPython,
        Row::RustToPython,
        Row::RustToPythonViaGateway,
        Row::H2load,
        Row::Handshake,
        Row::Proxies,
    ];

    /// Label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Row::Harness => "harness (timer + histogram)",
            Row::InProcess => "in-process function call",
            Row::Tcp => "raw TCP ping-pong (floor)",
            Row::Rest => "REST (axum, HTTP/1.1, JSON)",
            Row::UnaryV1 => "gRPC unary v1, direct",
            Row::UnaryTls => "gRPC unary v1, direct, TLS",
            Row::UnaryUnbuffered => "gRPC unary v1, unbuffered client",
            Row::UnaryH2 => "gRPC unary v1, one-write h2 client",
            Row::UnaryH2StockServer => "gRPC unary v1, h2 client → stock tonic",
            Row::UnaryV2 => "gRPC unary v2, direct",
            Row::UnaryRouter => "gRPC unary v2, via router",
            Row::StreamPingPong => "gRPC bidi stream ping-pong",
            Row::StreamPingPongTls => "gRPC bidi stream ping-pong, TLS",
            Row::StreamPipelined => "gRPC bidi stream pipelined (not dependent)",
            Row::PythonToRust => "Python grpcio → Rust server",
            Row::PythonToPython => "Python grpcio → Python server",
            Row::RustToPython => "Rust tonic → Python server",
            Row::RustToPythonViaGateway => "Rust tonic → gateway → Python server",
            Row::H2load => "h2load → Rust server",
            Row::Handshake => "new connection + first call, plaintext and TLS",
            Row::Proxies => "through each proxy: router as proxy, nginx, HAProxy, Envoy",
        }
    }

    /// Whether the row is measured apart from the latency table (its own figures, its own
    /// lines under the table): h2load and the new-connection costs.
    pub fn runs_apart(self) -> bool {
        matches!(self, Row::H2load | Row::Handshake | Row::Proxies)
    }

    /// The plaintext row a TLS row is compared with (the same client, the same server, without
    /// TLS); `None` for the rows that are not over TLS.
    pub fn plaintext_partner(self) -> Option<Row> {
        match self {
            Row::UnaryTls => Some(Row::UnaryV1),
            Row::StreamPingPongTls => Some(Row::StreamPingPong),
            _ => None,
        }
    }

    /// The row's name on the command line (`--row NAME`).
    pub fn flag(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map_or_else(|| format!("{self:?}"), |value| value.get_name().to_string())
    }

    /// Finds the external tools the row needs; a missing one is a [`MissingTool`], with the
    /// fix.
    pub fn tools(self) -> Result<(), MissingTool> {
        match self {
            Row::PythonToRust => {
                tools::python()?;
                tools::python_client("bench_client.py")?;
            }
            Row::PythonToPython => {
                tools::python()?;
                tools::python_client("bench_client.py")?;
                tools::python_client("increment_server.py")?;
            }
            Row::RustToPython | Row::RustToPythonViaGateway => {
                tools::python()?;
                tools::python_client("increment_server.py")?;
            }
            Row::H2load => {
                tools::h2load()?;
            }
            Row::Proxies => {
                tools::h2load()?;
                // Outside CI the row runs with the proxies that are installed and names the
                // others with their fix; under CI every one must be there.
                if in_ci() {
                    for kind in proxy::ProxyKind::ALL {
                        kind.find()?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The server process a network row talks to (see [`Targets::addr`]); `None` for the rows
    /// that run in this process or start their own tool.
    pub(crate) fn target(self) -> Option<Target> {
        match self {
            Row::Harness | Row::InProcess | Row::H2load | Row::Handshake | Row::Proxies => None,
            Row::Tcp => Some(Target::Baseline(Baseline::Tcp)),
            Row::Rest => Some(Target::Baseline(Baseline::Rest)),
            Row::UnaryV1
            | Row::UnaryUnbuffered
            | Row::UnaryH2
            | Row::UnaryV2
            | Row::StreamPingPong
            | Row::StreamPipelined
            | Row::PythonToRust => Some(Target::Port(Deployment::Direct)),
            Row::UnaryH2StockServer => Some(Target::Baseline(Baseline::StockGrpc)),
            Row::UnaryRouter => Some(Target::Port(Deployment::SideBySide)),
            Row::UnaryTls | Row::StreamPingPongTls => Some(Target::TlsPort),
            Row::PythonToPython | Row::RustToPython => Some(Target::Python),
            Row::RustToPythonViaGateway => Some(Target::GatewayToPython),
        }
    }
}

/// Pairs of rows whose ratio is a target: the same client against two servers. When both rows
/// run they are measured in alternating blocks of calls ([`chains::run_interleaved`]), so drift
/// on a shared machine hits both alike.
pub(crate) const INTERLEAVED: [(Row, Row); 5] = [
    (Row::UnaryV2, Row::UnaryRouter),
    (Row::UnaryH2StockServer, Row::UnaryH2),
    (Row::UnaryV1, Row::UnaryTls),
    (Row::StreamPingPong, Row::StreamPingPongTls),
    (Row::RustToPython, Row::RustToPythonViaGateway),
];

/// The pair `row` is measured in, if its partner runs too.
pub(crate) fn interleaved_pair(row: Row, rows: &[Row]) -> Option<(Row, Row)> {
    INTERLEAVED
        .into_iter()
        .find(|&(a, b)| (row == a || row == b) && rows.contains(&a) && rows.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_flags_are_the_command_line_names() {
        assert_eq!(Row::PythonToRust.flag(), "python-to-rust");
        assert_eq!(Row::H2load.flag(), "h2load");
        assert_eq!(Row::UnaryTls.flag(), "unary-tls");
        assert_eq!(Row::StreamPingPongTls.flag(), "stream-ping-pong-tls");
        assert_eq!(Row::Handshake.flag(), "handshake");
        assert!(Row::Tcp.tools().is_ok());
    }
}
