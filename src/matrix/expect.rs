//! What each cell of the matrix must show: the API's promise for every client in every
//! deployment, written down as data. `testbed matrix` and the tests compare every run against
//! it, and a cell that differs fails both.

use super::probe::ClientKind::{self, *};
use super::{Outcome, code_name};
use port::Deployment;
use serde::Serialize;
use tonic::Code;

/// What a cell must show (the same for unary and streaming calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Expect {
    /// The correct values, served by this version (the router's `x-api-version` header, or
    /// v2's `served_by_version`).
    Served {
        /// The version that must have served it.
        version: &'static str,
    },
    /// The correct values, with nothing saying which version served them (v1 served directly:
    /// no router header, and v1 replies carry no version).
    Unlabelled,
    /// This status code.
    Fails {
        /// The code, as gRPC names it (`UNIMPLEMENTED`).
        #[serde(serialize_with = "code_only")]
        code: Code,
    },
    /// A reply with the v1 answer to a v2 request: silently wrong.
    Wrong,
}

fn code_only<S: serde::Serializer>(code: &Code, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&code_name(*code))
}

const V1: Expect = Expect::Served { version: "1.0.0" };
const V2: Expect = Expect::Served { version: "2.0.0" };
const NO_ROUTE: Expect = Expect::Fails {
    code: Code::Unimplemented,
};
const DIRECT: Expect = Expect::Unlabelled;
const WRONG: Expect = Expect::Wrong;

/// Columns, in the order of [`Deployment::ALL`]: side-by-side, v1-retired, v1-only, v2-only,
/// direct, naive-proxy-to-v1.
const EXPECTED: [(ClientKind, [Expect; 6]); 8] = [
    (
        RustV1,
        /*       */ [V1, V2, V1, NO_ROUTE, DIRECT, DIRECT],
    ),
    // Pinned to ^1: once v1 is retired, no 1.x implementation is left to serve it.
    (
        RustV1Pinned,
        /* */ [V1, NO_ROUTE, V1, NO_ROUTE, DIRECT, DIRECT],
    ),
    (RustV2, /*       */ [V2, V2, NO_ROUTE, V2, V2, WRONG]),
    (RustV2Pinned, /* */ [V2, V2, NO_ROUTE, V2, V2, WRONG]),
    (
        PythonV1,
        /*     */ [V1, V2, V1, NO_ROUTE, DIRECT, DIRECT],
    ),
    (PythonV2, /*     */ [V2, V2, NO_ROUTE, V2, V2, WRONG]),
    (
        GrpcurlV1,
        /*    */ [V1, V2, V1, NO_ROUTE, DIRECT, DIRECT],
    ),
    (GrpcurlV2, /*    */ [V2, V2, NO_ROUTE, V2, V2, WRONG]),
];

/// What `client` must see in `deployment`.
pub fn expected(client: ClientKind, deployment: Deployment) -> Expect {
    let column = Deployment::ALL
        .iter()
        .position(|d| *d == deployment)
        .unwrap_or_default();
    EXPECTED
        .iter()
        .find(|(c, _)| *c == client)
        .map_or(Expect::Unlabelled, |(_, row)| row[column])
}

impl Expect {
    /// Whether `outcome` is what was expected.
    pub fn fits(self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Expect::Served { version }, Outcome::Correct { served_by, .. }) => {
                served_by.as_deref() == Some(version)
            }
            (Expect::Unlabelled, Outcome::Correct { served_by, .. }) => served_by.is_none(),
            (Expect::Wrong, Outcome::Wrong { .. }) => true,
            (Expect::Fails { code }, Outcome::Status { code: got, .. }) => code == *got,
            _ => false,
        }
    }

    /// Short description, for a mismatch report.
    pub fn describe(self) -> String {
        match self {
            Expect::Served { version } => format!("✓ served by {version}"),
            Expect::Unlabelled => "✓ with no version named".to_string(),
            Expect::Fails { code } => code_name(code),
            Expect::Wrong => "✗ (the v1 answer)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_has_a_row_and_the_columns_follow_deployment_order() {
        for client in ClientKind::ALL {
            assert!(EXPECTED.iter().any(|(c, _)| *c == client), "{client:?}");
        }
        assert_eq!(expected(RustV1, Deployment::V2Only), NO_ROUTE);
        assert_eq!(expected(RustV2, Deployment::NaiveProxyToV1), WRONG);
        assert_eq!(expected(RustV1, Deployment::V1Retired), V2);
    }

    #[test]
    fn every_expectation_serializes() {
        for expect in [V1, DIRECT, NO_ROUTE, WRONG] {
            let json = serde_json::to_value(expect).unwrap();
            assert!(json["expect"].is_string(), "{json}");
        }
        assert_eq!(
            serde_json::to_value(NO_ROUTE).unwrap(),
            serde_json::json!({"expect": "fails", "code": "UNIMPLEMENTED"})
        );
    }

    #[test]
    fn served_by_must_match_exactly() {
        let correct = |served_by: Option<&str>| Outcome::Correct {
            values: vec![42],
            served_by: served_by.map(str::to_string),
        };
        assert!(V2.fits(&correct(Some("2.0.0"))));
        assert!(!V2.fits(&correct(Some("1.0.0"))));
        assert!(!V2.fits(&correct(None)));
        assert!(DIRECT.fits(&correct(None)));
        assert!(!DIRECT.fits(&correct(Some("2.0.0"))));
        assert!(!NO_ROUTE.fits(&correct(None)));
    }
}
