//! `testbed route export`: a gateway with v1, a stable v2, a weighted canary and a pinned-only
//! backend, exported as Gateway API GRPCRoutes and (after v1's package is retired onto v2) as
//! Istio configuration. Each output validates against the projects' CRD schemas (vendored as
//! JSON Schema, the `jsonschema` crate judging) and means what the table does: every case of
//! path and `x-api-version` is read back from the YAML and the gateway is asked on the wire which
//! version serves it. What a format cannot express is refused with exit 1.

mod read;

use crate::common::credentials::token_file;
use crate::common::temp_dir;
use port::child::ChildServer;
use read::Outcome;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

const TOKEN: &str = "export-token-0123456789";
use crate::common::served::{V1_PATH, V2_PATH};
/// The x-api-version values tried: none, exact pins, major pins, and requirements a mesh
/// cannot evaluate (the last five).
const HEADERS: &[Option<&str>] = &[
    None,
    Some("=1.0.0"),
    Some("=2.0.0"),
    Some("=2.1.0"),
    Some("=2.2.0"),
    Some("1"),
    Some("^1"),
    Some("2"),
    Some("^2"),
    Some("~2"),
    Some("2.x"),
    Some("=3.0.0"),
    Some("^2.1"),
    Some(">=2.1, <3"),
    Some("banana"),
];
/// Calls per weighted case.
const SAMPLES: u64 = 300;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
}

/// The gateway, its backends and how to reach its admin API.
struct Bed {
    _gateway: ChildServer,
    admin: String,
    token: PathBuf,
    v2a: SocketAddr,
    channel: tonic::transport::Channel,
    _backends: Vec<ChildServer>,
    _dir: tempfile::TempDir,
}

async fn backend(api: &str) -> ChildServer {
    ChildServer::testbed(exe(), &["serve", "--backend", api, "--addr", "127.0.0.1:0"])
        .await
        .expect("a backend starts")
}

/// v1=1.0.0, v2a=2.0.0, the canary v2b=2.1.0 at weight 10, and v2p=2.2.0 at weight 0 (only
/// pinned calls reach it), each a process of its own, behind `testbed serve` with an admin API.
async fn bed() -> Bed {
    let dir = temp_dir("export");
    let tokens = token_file(dir.path(), &format!("ci {TOKEN}\n"));
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let backends = vec![
        backend("v1").await,
        backend("v2").await,
        backend("v2").await,
        backend("v2").await,
    ];
    let upstreams = [
        format!("v1=1.0.0@{}", backends[0].addr),
        format!("v2a=2.0.0@{}", backends[1].addr),
        format!("v2b=2.1.0@{};weight=10", backends[2].addr),
        format!("v2p=2.2.0@{};weight=0", backends[3].addr),
    ];
    let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
    for upstream in &upstreams {
        args.extend(["--upstream", upstream]);
    }
    let tokens = tokens.to_str().unwrap();
    args.extend(["--admin-addr", "127.0.0.1:0", "--admin-token-file", tokens]);
    let mut gateway = ChildServer::testbed(exe(), &args)
        .await
        .expect("the gateway starts");
    let line = gateway.next_line().await.unwrap();
    assert!(line.starts_with("testbed admin API on "), "{line}");
    let channel = client::connect(gateway.addr)
        .await
        .expect("a channel to the gateway");
    Bed {
        channel,
        admin: line.rsplit(' ').next().unwrap().to_string(),
        v2a: backends[1].addr,
        _gateway: gateway,
        token,
        _backends: backends,
        _dir: dir,
    }
}

impl Bed {
    async fn route(&self, args: &[&str]) -> Output {
        crate::common::credentials::route_cli(&self.admin, &self.token, args).await
    }

    /// The documents of `route export --format FORMAT`, or its exit code and stderr.
    async fn export(&self, format: &str) -> Result<Vec<Value>, (Option<i32>, String)> {
        let output = self.route(&["export", "--format", format]).await;
        if !output.status.success() {
            return Err((
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        let text = String::from_utf8(output.stdout).expect("YAML is UTF-8");
        Ok(serde_norway::Deserializer::from_str(&text)
            .map(|document| Value::deserialize(document).expect("each document parses"))
            .collect())
    }

    /// The version that served a call to `path` with `header`, or the status code.
    async fn served(&self, path: &str, header: Option<&str>) -> Result<String, tonic::Code> {
        crate::common::served::served(self.channel.clone(), path, header)
            .await
            .map_err(|status| status.code())
    }
}

/// Whether `header` is a requirement the export refuses rather than evaluates.
fn mesh_refuses(header: Option<&str>) -> bool {
    matches!(header, Some("^2.1" | ">=2.1, <3" | "banana"))
}

/// What exported documents do with a call to a path with an x-api-version.
type Reading<'a> = dyn Fn(&str, Option<&str>) -> Result<Outcome, String> + 'a;

/// Checks every case of `outcome` (what the exported YAML does) against the gateway on the
/// wire; `rewrites` says whether the format rewrites a retired package's calls.
async fn same_meaning(bed: &Bed, outcome: &Reading<'_>, rewrites: bool) -> Result<(), String> {
    for path in [V1_PATH, V2_PATH] {
        for &header in HEADERS {
            let case = format!("{path} with x-api-version {header:?}");
            let exported = outcome(path, header).map_err(|err| format!("{case}: {err}"))?;
            match exported {
                Outcome::Refused => match bed.served(path, header).await {
                    Err(_) => {}
                    Ok(_) if mesh_refuses(header) => {}
                    Ok(version) => {
                        return Err(format!("{case}: refused, the gateway serves {version}"));
                    }
                },
                Outcome::Split { to, rewrite } => {
                    let retired = path == V1_PATH && to.iter().any(|(v, _)| v.starts_with("2."));
                    let expected = (retired && rewrites).then(|| "increment.v2".to_string());
                    if rewrite != expected {
                        return Err(format!(
                            "{case}: rewrite {rewrite:?}, expected {expected:?}"
                        ));
                    }
                    let total: u64 = to.iter().map(|(_, w)| w).sum();
                    let samples = if to.len() == 1 { 3 } else { SAMPLES };
                    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                    for _ in 0..samples {
                        let version = bed.served(path, header).await.map_err(|code| {
                            format!("{case}: exported {to:?}, the gateway {code:?}")
                        })?;
                        *counts.entry(version).or_default() += 1;
                    }
                    for (version, count) in &counts {
                        let weight = to.iter().find(|(v, _)| v == version).map_or(0, |(_, w)| *w);
                        if weight == 0 {
                            return Err(format!(
                                "{case}: exported {to:?}, the gateway served {counts:?}"
                            ));
                        }
                        // Five standard deviations of the binomial either way, and a little.
                        let p = weight as f64 / total as f64;
                        let spread = 5.0 * (p * (1.0 - p) / samples as f64).sqrt() + 0.02;
                        let seen = *count as f64 / samples as f64;
                        if (seen - p).abs() > spread {
                            return Err(format!(
                                "{case}: exported {to:?}, the gateway served {counts:?}"
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The vendored JSON Schema for documents of `kind`.
fn schema(kind: &str) -> jsonschema::Validator {
    let file = match kind {
        "VirtualService" => "virtualservice",
        "DestinationRule" => "destinationrule",
        "GRPCRoute" => "grpcroute",
        other => panic!("no schema for kind {other}"),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("src/export/schemas/{file}.schema.json"));
    let text = std::fs::read_to_string(&path).expect("the vendored schema");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// Every error the schemas find in `documents`.
fn schema_errors(documents: &[Value]) -> Vec<String> {
    documents
        .iter()
        .flat_map(|document| {
            let kind = document["kind"].as_str().unwrap_or_default();
            schema(kind)
                .iter_errors(document)
                .map(|error| format!("{kind} {}: {error}", error.instance_path()))
                .collect::<Vec<_>>()
        })
        .collect()
}

const SERVICES: &[(&str, &str)] = &[
    ("v1", "1.0.0"),
    ("v2a", "2.0.0"),
    ("v2b", "2.1.0"),
    ("v2p", "2.2.0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_istio_and_gateway_api_configs_validate_and_route_as_the_gateway_does() {
    let bed = bed().await;

    let routes = bed.export("gateway-api").await.expect("a GRPCRoute export");
    assert_eq!(routes.len(), 2, "a GRPCRoute per package: {routes:?}");
    assert_eq!(schema_errors(&routes), Vec::<String>::new());
    let grpc_route =
        |path: &str, header: Option<&str>| read::gateway_api(&routes, SERVICES, path, header);
    same_meaning(&bed, &grpc_route, false).await.unwrap();
    // The unpinned v2 split is the table's: the canary's 10, the stable version the rest; the
    // pinned-only backend none.
    assert_eq!(
        grpc_route(V2_PATH, None).unwrap(),
        Outcome::Split {
            to: vec![("2.1.0".into(), 10), ("2.0.0".into(), 90)],
            rewrite: None
        }
    );

    // Retire increment.v1 onto v2a: the router now rewrites its calls, which a GRPCRoute cannot.
    let retired = format!("v2a=2.0.0@{}+increment.v1", bed.v2a);
    assert!(bed.route(&["replace", &retired]).await.status.success());
    let (code, stderr) = bed
        .export("gateway-api")
        .await
        .expect_err("no rewrite in a GRPCRoute");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("increment.v1") && stderr.contains("no path rewrite"),
        "{stderr}"
    );

    let istio = bed.export("istio").await.expect("an Istio export");
    let kinds: Vec<&str> = istio.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "DestinationRule").count(),
        4,
        "{kinds:?}"
    );
    assert_eq!(schema_errors(&istio), Vec::<String>::new());
    let virtual_service = |documents: Vec<Value>| {
        move |path: &str, header: Option<&str>| read::istio(&documents, path, header)
    };
    same_meaning(&bed, &virtual_service(istio.clone()), true)
        .await
        .unwrap();

    // The check can fail: the canary's weight changed, or a pin sent to another subset.
    let mut heavier = istio.clone();
    let text = serde_json::to_string(&heavier[0])
        .unwrap()
        .replace(r#""weight":10"#, r#""weight":50"#)
        .replace(r#""weight":90"#, r#""weight":50"#);
    heavier[0] = serde_json::from_str(&text).unwrap();
    assert_ne!(heavier, istio);
    let err = same_meaning(&bed, &virtual_service(heavier), true)
        .await
        .unwrap_err();
    assert!(err.contains("the gateway served"), "{err}");
    let mut misrouted = istio.clone();
    let text = serde_json::to_string(&misrouted[0])
        .unwrap()
        .replace(r#""subset":"v2-2-0""#, r#""subset":"v2-0-0""#);
    misrouted[0] = serde_json::from_str(&text).unwrap();
    let err = same_meaning(&bed, &virtual_service(misrouted), true)
        .await
        .unwrap_err();
    assert!(err.contains("=2.2.0"), "{err}");
    // So can the schema: a misspelt field.
    let mut misspelt = istio.clone();
    misspelt[0]["spec"]["http"][0]["weigth"] = 1.into();
    assert_eq!(
        schema_errors(&misspelt).len(),
        1,
        "{:?}",
        schema_errors(&misspelt)
    );

    // Weights past 100 share in proportion: 80 and 70 of 150, no whole percentages.
    assert!(bed.route(&["weight", "v2b", "80"]).await.status.success());
    assert!(bed.route(&["weight", "v2p", "70"]).await.status.success());
    let (code, stderr) = bed.export("istio").await.expect_err("no whole percentages");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("whole percentages") && stderr.contains("v2p"),
        "{stderr}"
    );
}
