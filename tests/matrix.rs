//! The compatibility matrix: every client against every deployment, unary and streaming, each
//! cell checked against the outcome written here. `testbed matrix` runs the same cells.

use crate::common::{start, tool};
use port::deployment::Deployment;
use testbed::matrix::ClientKind::{self, *};
use testbed::matrix::{self, Outcome};
use tonic::Code;

/// What a cell must show.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The correct values (v1: value + 1; v2: value + step).
    Ok,
    /// This status code.
    Fails(Code),
    /// A reply with the v1 answer to a v2 request: silently wrong.
    Wrong,
}
use Expect::*;

const NO_ROUTE: Expect = Fails(Code::Unimplemented);

/// Columns, in this order: side-by-side, v1-retired, v1-only, v2-only, direct, naive-proxy-to-v1.
/// The same for unary and streaming calls.
const EXPECTED: [(ClientKind, [Expect; 6]); 8] = [
    (RustV1, /*       */ [Ok, Ok, Ok, NO_ROUTE, Ok, Ok]),
    // Pinned to ^1: once v1 is retired, no 1.x implementation is left to serve it.
    (
        RustV1Pinned,
        /* */ [Ok, NO_ROUTE, Ok, NO_ROUTE, Ok, Ok],
    ),
    (RustV2, /*       */ [Ok, Ok, NO_ROUTE, Ok, Ok, Wrong]),
    (RustV2Pinned, /* */ [Ok, Ok, NO_ROUTE, Ok, Ok, Wrong]),
    (PythonV1, /*     */ [Ok, Ok, Ok, NO_ROUTE, Ok, Ok]),
    (PythonV2, /*     */ [Ok, Ok, NO_ROUTE, Ok, Ok, Wrong]),
    (GrpcurlV1, /*    */ [Ok, Ok, Ok, NO_ROUTE, Ok, Ok]),
    (GrpcurlV2, /*    */ [Ok, Ok, NO_ROUTE, Ok, Ok, Wrong]),
];

fn check(
    client: ClientKind,
    deployment: Deployment,
    expect: Expect,
    outcome: &Outcome,
) -> Result<(), String> {
    let fits = match (expect, outcome) {
        (Ok, Outcome::Correct { .. }) | (Wrong, Outcome::Wrong { .. }) => true,
        (Fails(code), Outcome::Status { code: got, .. }) => code == *got,
        _ => false,
    };
    if fits {
        Result::Ok(())
    } else {
        Err(format!(
            "{} on {deployment}: expected {expect:?}, got {outcome:?}",
            client.label()
        ))
    }
}

fn external_tools_present(client: ClientKind) -> bool {
    match client {
        PythonV1 | PythonV2 => tool(client::tools::python()).is_some(),
        GrpcurlV1 | GrpcurlV2 => tool(client::tools::grpcurl()).is_some(),
        _ => true,
    }
}

#[tokio::test]
async fn every_client_against_every_deployment() {
    let mut mismatches = Vec::new();
    for (column, deployment) in Deployment::ALL.into_iter().enumerate() {
        let server = start(deployment).await;
        for (client, row) in EXPECTED {
            if !external_tools_present(client) {
                continue;
            }
            let cell = matrix::run_cell(client, deployment, server.addr).await;
            for outcome in [&cell.unary, &cell.stream] {
                if let Err(mismatch) = check(client, deployment, row[column], outcome) {
                    mismatches.push(mismatch);
                }
            }
        }
        server.shutdown().await.unwrap();
    }
    assert!(
        mismatches.is_empty(),
        "matrix mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn correct_v2_cells_report_the_serving_version() {
    let server = start(Deployment::SideBySide).await;
    let cell = matrix::run_cell(RustV2, Deployment::SideBySide, server.addr).await;
    let Outcome::Correct { served_by, .. } = cell.unary else {
        panic!("expected a correct cell, got {:?}", cell.unary)
    };
    assert_eq!(served_by.as_deref(), Some("2.0.0"));
    server.shutdown().await.unwrap();
}
