//! `testbed matrix --old --new --traffic` on the example shop's Python servers: the old and
//! the new clients (the testbed's dynamic client, grpcurl and Python grpcio, each with its
//! own version's descriptors) through gateways of the two builds (old only, side by side, new only, and
//! nginx, HAProxy and Envoy in front of the side-by-side one), every
//! cell judged by comparison with the client's own version. A compatible build keeps every
//! cell ok, a cheaper one degrades the old clients wherever it serves, one without a method
//! breaks them there, and a build that changes the package in place breaks old clients once
//! it alone serves and new clients side by side (the gateway keeps unpinned calls on the old).

use super::{BOOK, SCENARIO, paths};

/// The shop.v2 clients' scenario.
const SCENARIO_V2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/shop/scenario-v2.jsonl"
);

/// The column of old clients retired onto a new package.
const RETIRED: &str = "old retired onto new";
use crate::common::shop::{shop, shop_python};
use port::child::ChildServer;
use serde_json::Value;

/// `testbed matrix --old OLD --new NEW --traffic SCENARIO --json`: exit code, text, JSON.
async fn matrix(old: &ChildServer, new: &ChildServer, extra: &[&str]) -> (i32, String, Value) {
    let mut args: Vec<String> = [
        "--old".to_string(),
        format!("grpc://{}", old.addr),
        "--new".into(),
        format!("grpc://{}", new.addr),
        "--traffic".into(),
        SCENARIO.into(),
    ]
    .into();
    args.extend(extra.iter().map(|s| s.to_string()));
    let (code, stdout, stderr, report) = crate::common::testbed_json("matrix", &args).await;
    (code, stdout + &stderr, report.unwrap_or(Value::Null))
}

/// Each cell as `CLIENT × DEPLOYMENT: VERDICT`, `(not judged)` marked.
fn cells(report: &Value) -> Vec<String> {
    report["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            format!(
                "{} × {}: {}{}",
                c["client"].as_str().expect("client"),
                c["deployment"].as_str().expect("deployment"),
                c["verdict"].as_str().expect("verdict"),
                if c["judged"] == true {
                    ""
                } else {
                    " (not judged)"
                }
            )
        })
        .collect()
}

/// The cell of `client` in `deployment`.
fn cell<'a>(report: &'a Value, client: &str, deployment: &str) -> &'a Value {
    report["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["client"] == client && c["deployment"] == deployment)
        .unwrap_or_else(|| panic!("no {client} × {deployment} in {report:#}"))
}

/// The cell's method `name` (`Shop/GetProduct`).
fn method<'a>(cell: &'a Value, name: &str) -> &'a Value {
    cell["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .find(|m| m["method"] == format!("shop.v1.{name}"))
        .unwrap_or_else(|| panic!("no {name} in {cell:#}"))
}

/// A method's statuses as `OLD → NEW` (the own version's, then the target's).
fn statuses_of(method: &Value) -> Vec<String> {
    method["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| format!("{} → {}", s["old"], s["new"]).replace('"', ""))
        .collect()
}

/// Every cell of `clients` × `deployments` with `verdict`, in the report's order.
fn all(clients: &[&str], deployments: &[&str], verdict: &str) -> Vec<String> {
    deployments
        .iter()
        .flat_map(|d| {
            clients.iter().map(move |c| {
                let judged = if c.starts_with("new") && *d == "old only" {
                    " (not judged)"
                } else {
                    ""
                };
                format!("{c} × {d}: {verdict}{judged}")
            })
        })
        .collect()
}

const OLD_CLIENTS: [&str; 3] = ["old testbed", "old grpcurl", "old python"];
const NEW_CLIENTS: [&str; 3] = ["new testbed", "new grpcurl", "new python"];
/// The testbed clients pinned to each build (the default versions).
const OLD_PINNED: &str = "old testbed (x-api-version =1.0.0)";
const NEW_PINNED: &str = "new testbed (x-api-version =1.1.0)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_build_serves_every_client_as_its_own_version_does() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let new = shop(&python, "v1", &["--build", "minor"]).await;
    let (code, text, report) = matrix(&old, &new, &["--proxy", "all"]).await;
    assert_eq!(code, 0, "{text}");
    let found = cells(&report);
    // Each installed proxy in front of the side-by-side gateway is a column of its own (under
    // CI=true every one must be installed).
    let proxies: Vec<String> = proxy::ProxyKind::ALL
        .into_iter()
        .filter(|kind| kind.find().is_ok())
        .map(|kind| format!("side by side via {kind}"))
        .collect();
    assert_eq!(found.len(), 8 * (3 + proxies.len()), "{text}");
    let mut served: Vec<&str> = vec!["side by side", "new only"];
    served.extend(proxies.iter().map(String::as_str));
    for expected in all(&OLD_CLIENTS, &["old only"], "ok")
        .into_iter()
        .chain(all(&OLD_CLIENTS, &served, "ok"))
        .chain(all(&NEW_CLIENTS, &served, "ok"))
    {
        assert!(found.contains(&expected), "no {expected} in {found:#?}");
    }
    // A new client before the new build is deployed misses what only the new build says.
    for client in NEW_CLIENTS {
        let early = cell(&report, client, "old only");
        assert_eq!(early["judged"], false);
        assert_eq!(early["verdict"], "degraded");
        assert_eq!(
            paths(&method(early, "Shop/GetProduct")["differences"]),
            ["description ×1"]
        );
    }
    // Pinned to its own build, each client is served wherever that build runs; elsewhere it is
    // shown, not judged.
    let mut both: Vec<&str> = vec!["side by side"];
    both.extend(proxies.iter().map(String::as_str));
    for deployment in ["old only"].iter().chain(&both) {
        assert_eq!(cell(&report, OLD_PINNED, deployment)["verdict"], "ok");
    }
    for deployment in ["new only"].iter().chain(&both) {
        assert_eq!(cell(&report, NEW_PINNED, deployment)["verdict"], "ok");
    }
    assert_eq!(cell(&report, OLD_PINNED, "new only")["judged"], false);
    assert_eq!(cell(&report, NEW_PINNED, "old only")["judged"], false);
    for c in report["cells"].as_array().expect("cells") {
        if c["judged"] == true {
            assert_eq!(c["sent"], 5, "{c:#}");
        }
    }
    let judged = found.len() - NEW_CLIENTS.len() - 2;
    assert!(
        text.contains(&format!(
            "every client is served as its own version serves it ({judged} of {judged} cells ok)"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_prices_a_missing_method_and_a_changed_type_each_show_where_they_bite() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let cheaper = shop(&python, "v1", &["--discount", "10"]).await;
    let (code, text, report) = matrix(&old, &cheaper, &[]).await;
    assert_eq!(code, 100, "{text}");
    for client in OLD_CLIENTS {
        assert_eq!(cell(&report, client, "old only")["verdict"], "ok");
        for deployment in ["side by side", "new only"] {
            let c = cell(&report, client, deployment);
            assert_eq!(c["verdict"], "degraded", "{c:#}");
            let get = method(c, "Shop/GetProduct");
            assert_eq!(paths(&get["differences"]), ["price_cents ×1"]);
            assert_eq!(
                get["differences"][0]["examples"][0]["new"],
                (BOOK * 90 / 100).to_string()
            );
            assert_eq!(
                paths(&method(c, "Shop/PlaceOrder")["differences"]),
                ["total_cents ×1"]
            );
        }
    }

    let lacking = shop(&python, "v1", &["--without", "WatchOrder"]).await;
    let (code, text, report) = matrix(&old, &lacking, &[]).await;
    assert_eq!(code, 100, "{text}");
    for client in OLD_CLIENTS {
        assert_eq!(cell(&report, client, "old only")["verdict"], "ok");
        let gone = cell(&report, client, "new only");
        assert_eq!(gone["verdict"], "broken");
        assert_eq!(method(gone, "Shop/WatchOrder")["verdict"], "broken");
        assert_eq!(method(gone, "Shop/GetProduct")["verdict"], "ok");
    }

    // A build that changes the package in place (a field's type): side by side the gateway
    // keeps unpinned calls on the old build, so old clients are fine there and new ones are
    // not; once it alone serves, old clients' replies no longer decode.
    let breaking = shop(&python, "v1", &["--build", "breaking"]).await;
    let (code, text, report) = matrix(&old, &breaking, &[]).await;
    assert_eq!(code, 100, "{text}");
    assert_eq!(
        cell(&report, "old testbed", "side by side")["verdict"],
        "ok"
    );
    assert_eq!(
        cell(&report, "new testbed", "side by side")["verdict"],
        "broken"
    );
    // The breaking build joins pinned-only: a new client that asks for it is served by it.
    assert_eq!(cell(&report, NEW_PINNED, "side by side")["verdict"], "ok");
    let gone = cell(&report, "old testbed", "new only");
    assert_eq!(gone["verdict"], "broken");
    assert!(
        method(gone, "Shop/PlaceOrder")["reason"]
            .as_str()
            .expect("a reason")
            .contains("is not a shop.v1.Order"),
        "{gone:#}"
    );
    // Python's protobuf takes the reply, sets the double aside as an unknown field and gives
    // the caller an order without its total: the call is OK and the total is gone.
    let python_gone = cell(&report, "old python", "new only");
    let place = method(python_gone, "Shop/PlaceOrder");
    assert_eq!(place["verdict"], "degraded", "{python_gone:#}");
    assert_eq!(statuses_of(place), ["OK → OK"]);
    assert_eq!(paths(&place["differences"]), ["total_cents ×1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_package_serves_old_clients_only_where_the_gateway_can_retire_them() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    let flags = ["--new-traffic", SCENARIO_V2, "--new-version", "2.0.0"];
    let (code, text, report) = matrix(&old, &v2, &flags).await;
    assert_eq!(code, 100, "{text}");
    let found = cells(&report);
    let deployments = ["old only", "side by side", "new only", RETIRED];
    assert_eq!(found.len(), 8 * deployments.len(), "{text}");
    for expected in all(&OLD_CLIENTS, &["old only", "side by side"], "ok")
        .into_iter()
        .chain(all(&OLD_CLIENTS, &["new only", RETIRED], "broken"))
        .chain(all(&NEW_CLIENTS, &deployments[1..], "ok"))
    {
        assert!(found.contains(&expected), "no {expected} in {found:#?}");
    }
    // shop.v2 narrowed Product.price_cents: the gateway readdresses v1's PlaceOrder and
    // WatchOrder to v2, which answers them as v1 does, and leaves GetProduct with no backend.
    for client in OLD_CLIENTS {
        let c = cell(&report, client, RETIRED);
        assert_eq!(c["sent"], 5, "{c:#}");
        let get = method(c, "Shop/GetProduct");
        assert_eq!(get["verdict"], "broken", "{c:#}");
        assert_eq!(
            statuses_of(get),
            ["NOT_FOUND → UNIMPLEMENTED", "OK → UNIMPLEMENTED"]
        );
        for name in ["Shop/PlaceOrder", "Shop/WatchOrder"] {
            assert_eq!(method(c, name)["verdict"], "ok", "{client} {name}: {c:#}");
        }
        // v2's order ids are its own ("v2-…"), and OLD asked twice numbers on: noise.
        assert_eq!(
            paths(&method(c, "Shop/PlaceOrder")["noise"]),
            ["order_id ×2"]
        );
    }
    assert!(
        text.contains(&format!("{RETIRED}: NEW alone, also routed shop.v1")),
        "{text}"
    );
    let new_pinned = "new testbed (x-api-version =2.0.0)";
    for deployment in &deployments[1..] {
        assert_eq!(cell(&report, new_pinned, deployment)["verdict"], "ok");
    }
    for deployment in ["new only", RETIRED] {
        assert_eq!(cell(&report, OLD_PINNED, deployment)["judged"], false);
    }
}

/// Each version's descriptors from its own folder name both files `shop.proto`: one gateway
/// cannot hold two meanings of one file name, so the side-by-side gateway refuses to start and
/// the matrix stops with its words (exit 1) rather than judge cells against no deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_whose_files_share_a_name_stop_the_matrix_with_the_gateways_words() {
    let Some(python) = shop_python() else {
        return;
    };
    let old = shop(&python, "v1", &[]).await;
    let v2 = shop(&python, "v2", &[]).await;
    let repo = env!("CARGO_MANIFEST_DIR");
    let (v1_dir, v2_dir) = (
        format!("{repo}/examples/shop/proto/shop/v1"),
        format!("{repo}/examples/shop/proto/shop/v2"),
    );
    let flags = [
        "--new-traffic",
        SCENARIO_V2,
        "--new-version",
        "2.0.0",
        "--descriptors",
        &v1_dir,
        "--new-descriptors",
        &v2_dir,
    ];
    let (code, text, report) = matrix(&old, &v2, &flags).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("declare shop.proto differently")
            && text.contains("the gateway of the \"side by side\" deployment does not start"),
        "{text}"
    );
    assert!(
        report.is_null(),
        "no matrix of deployments that did not run"
    );
}
