//! The compatibility matrix: every client against every deployment, unary and streaming, each
//! cell checked against the outcome the API promises (`testbed::matrix::expected`, the same
//! table `testbed matrix` checks), including which version served it.

use crate::common::{start, tool};
use port::deployment::Deployment;
use testbed::matrix::ClientKind::{self, *};
use testbed::matrix::{self, Outcome};

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
    for deployment in Deployment::ALL {
        let server = start(deployment).await;
        for client in ClientKind::ALL {
            if !external_tools_present(client) {
                continue;
            }
            let cell = matrix::run_cell(client, deployment, server.addr).await;
            mismatches.extend(cell.mismatches());
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
