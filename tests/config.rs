//! `serve --config FILE` and `--state-file FILE`: a gateway started from a YAML file, changed
//! through its admin API, stopped, and started again from the state file alone, with the same
//! route table (upstreams, replicas, weights, and descriptors that came with an Add). Judged by
//! the admin API's List and by grpcurl through the restarted gateway.

use crate::common::shop::{ok, shop, shop_descriptors, shop_python};
use crate::common::{temp_dir, tool};
use port::admin::pb::{AddRequest, ListRequest, SetWeightRequest};
use port::child::ChildServer;
use std::path::Path;

const TOKEN: &str = "config-token-0123456789";

/// `testbed serve ARGS` and its admin API's address (the second line it prints).
async fn gateway(args: &[&str]) -> (ChildServer, std::net::SocketAddr) {
    let exe = Path::new(env!("CARGO_BIN_EXE_testbed"));
    let mut gw = ChildServer::testbed(exe, args)
        .await
        .expect("the gateway starts");
    let admin = crate::common::admin_address(&mut gw).await;
    (gw, admin.parse().expect("a plaintext admin address"))
}

/// The backends of the admin API at `addr`: name, address and weight of each.
async fn table(addr: std::net::SocketAddr) -> Vec<(String, String, Option<u32>)> {
    let mut admin = port::admin::connect(addr, TOKEN).await.unwrap();
    let list = admin.list(ListRequest {}).await.unwrap().into_inner();
    list.backends
        .into_iter()
        .map(|b| (b.name, b.address, b.weight))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_from_a_config_file_keeps_its_admin_changes_across_a_restart() {
    let (Some(python), Some(g)) = (shop_python(), tool(client::tools::grpcurl())) else {
        return;
    };
    let dir = temp_dir("config");
    let (v1, v2a, v2b) = (
        shop(&python, "v1", &[]).await,
        shop(&python, "v2", &[]).await,
        shop(&python, "v2", &["--no-reflection"]).await,
    );
    let tokens = crate::common::credentials::token_file(dir.path(), &format!("ci {TOKEN}\n"));
    let state = dir.path().join("state.yaml");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "addr: 127.0.0.1:0\nupstream:\n  - v1=1.0.0@{}\nadmin-addr: 127.0.0.1:0\n\
             admin-token-file: {}\nstate-file: {}\n",
            v1.addr,
            tokens.display(),
            state.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (first, admin) = gateway(&["serve", "--config", &config]).await;
    // The state file holds the table as it started.
    let written = std::fs::read_to_string(&state).unwrap();
    assert!(
        written.contains(&format!("v1=1.0.0@{}", v1.addr)),
        "{written}"
    );

    // Changes: v2 in two replicas, one of them read from descriptors sent with the Add
    // (it serves no reflection), weighted.
    let descriptors = std::fs::read(shop_descriptors(&python, "v2", dir.path())).unwrap();
    let mut client = port::admin::connect(admin, TOKEN).await.unwrap();
    client
        .add(AddRequest {
            upstream: format!("v2=2.0.0@{},{}", v2a.addr, v2b.addr),
            descriptor_set: descriptors,
        })
        .await
        .unwrap();
    let reply = client
        .set_weight(SetWeightRequest {
            name: "v2".into(),
            weight: Some(40),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.warnings.is_empty(), "{reply:?}");
    let before = table(admin).await;
    assert_eq!(before.len(), 2, "{before:?}");
    let written = std::fs::read_to_string(&state).unwrap();
    assert!(
        written.contains(&format!("v2=2.0.0@{},{};weight=40", v2a.addr, v2b.addr)),
        "{written}"
    );
    assert!(
        written.contains("descriptors:") && written.contains("v2.binpb"),
        "{written}"
    );
    // `route export --format config` prints the same upstreams.
    let exported = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "route",
            "export",
            "--format",
            "config",
            "--admin",
            &admin.to_string(),
        ])
        .env("TESTBED_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("testbed route export runs");
    assert!(exported.status.success(), "{exported:?}");
    let parse = |text: &[u8]| serde_norway::from_slice::<port::admin::state::State>(text).unwrap();
    assert_eq!(
        parse(&exported.stdout).upstream,
        parse(written.as_bytes()).upstream
    );
    first.terminate().await.unwrap();

    // Started again from the state file alone: the same table, the sent descriptors read back.
    let state_arg = state.display().to_string();
    let tokens_arg = tokens.display().to_string();
    let (second, admin) = gateway(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token-file",
        &tokens_arg,
        "--state-file",
        &state_arg,
    ])
    .await;
    assert_eq!(table(admin).await, before);
    let addr = second.addr.to_string();
    let listed = tokio::task::block_in_place(|| ok(&g, &[], &addr, &["list"]));
    assert!(
        listed.contains("shop.v1.Shop") && listed.contains("shop.v2.Shop"),
        "{listed}"
    );
    let reply = tokio::task::block_in_place(|| {
        ok(
            &g,
            &["-d", r#"{"sku": "game-1"}"#],
            &addr,
            &["shop.v2.Shop/GetProduct"],
        )
    });
    assert!(reply.contains(r#""stock": 3"#), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reloads_the_config_files_route_table_all_or_none() {
    let Some(python) = shop_python() else {
        return;
    };
    let dir = temp_dir("config-reload");
    let (v1, v2) = (
        shop(&python, "v1", &[]).await,
        shop(&python, "v2", &[]).await,
    );
    let tokens = crate::common::credentials::token_file(dir.path(), &format!("ci {TOKEN}\n"));
    let config = dir.path().join("gateway.yaml");
    let write = |upstreams: &[String]| {
        let list: String = upstreams.iter().map(|u| format!("  - {u}\n")).collect();
        std::fs::write(
            &config,
            format!(
                "upstream:\n{list}admin-addr: 127.0.0.1:0\nadmin-token-file: {}\n",
                tokens.display()
            ),
        )
        .unwrap();
    };
    let (v1_spec, v2_spec) = (
        format!("v1=1.0.0@{}", v1.addr),
        format!("v2=2.0.0@{}", v2.addr),
    );
    write(std::slice::from_ref(&v1_spec));
    let config_arg = config.display().to_string();
    let (mut gw, admin) =
        gateway(&["serve", "--addr", "127.0.0.1:0", "--config", &config_arg]).await;
    let names = |table: Vec<(String, String, Option<u32>)>| -> Vec<String> {
        table.into_iter().map(|(name, _, _)| name).collect()
    };
    assert_eq!(names(table(admin).await), ["v1"]);
    let hangup = |gw: &ChildServer| gw.signal(nix::sys::signal::Signal::SIGHUP).unwrap();
    let until = |wanted: Vec<&'static str>| async move {
        let started = std::time::Instant::now();
        loop {
            let now = names(table(admin).await);
            if now == wanted {
                return;
            }
            assert!(
                started.elapsed().as_secs() < 15,
                "still {now:?}, not {wanted:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };

    // v2 added to the file: after SIGHUP the table is the file's.
    write(&[v1_spec.clone(), v2_spec.clone()]);
    hangup(&gw);
    let reloaded = reload_line(&mut gw).await;
    assert!(reloaded.ends_with(": 2 upstreams"), "{reloaded}");
    until(vec!["v1", "v2"]).await;

    // A file naming an upstream that cannot be read, or that does not parse: refused whole,
    // each time saying why.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    write(&[v1_spec.clone(), format!("v3=3.0.0@{dead_addr}")]);
    hangup(&gw);
    let refusal = reload_line(&mut gw).await;
    assert!(
        refusal.contains("reload refused") && refusal.contains(&dead_addr.to_string()),
        "{refusal}"
    );
    std::fs::write(&config, "upstream: [unterminated\n").unwrap();
    hangup(&gw);
    let refusal = reload_line(&mut gw).await;
    assert!(refusal.contains("did not find expected"), "{refusal}");
    assert_eq!(names(table(admin).await), ["v1", "v2"]);

    // And v1 taken out: gone after the next SIGHUP.
    write(std::slice::from_ref(&v2_spec));
    hangup(&gw);
    until(vec!["v2"]).await;
}

/// The next line `gw` prints about a reload (`testbed reloaded ...`, `testbed reload refused
/// ...`).
async fn reload_line(gw: &mut ChildServer) -> String {
    loop {
        let line = gw
            .next_line()
            .await
            .expect("the gateway says how the reload went");
        if line.starts_with("testbed reload") {
            return line;
        }
    }
}
