//! The example shop API's Python servers (`examples/shop/server.py`) and the testbed gateway in
//! front of them, started on free loopback ports (used by the gateway and probe tests).

use crate::common::tool;
use client::tools::MissingTool;
use port::child::ChildServer;
use std::path::{Path, PathBuf};

/// `examples/shop/server.py`.
pub(crate) const SHOP_SERVER: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/server.py");

/// The venv's Python, if it has grpcio with reflection and health (`bash scripts/setup`).
pub(crate) fn shop_python() -> Option<PathBuf> {
    let python = tool(client::tools::python())?;
    let ok = std::process::Command::new(&python)
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_reflection, grpc_health",
        ])
        .output()
        .is_ok_and(|out| out.status.success());
    let missing = MissingTool {
        tool: "grpcio-reflection and grpcio-health-checking",
        looked: format!(
            "{} -c 'import grpc_reflection, grpc_health'",
            python.display()
        ),
        fix: "bash scripts/setup (installs client/python/requirements.txt into .venv)",
    };
    tool(if ok { Ok(python) } else { Err(missing) })
}

/// `examples/shop/server.py --version VERSION` on a free port, plus `extra` flags.
pub(crate) async fn shop(python: &Path, version: &str, extra: &[&str]) -> ChildServer {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(SHOP_SERVER)
        .args(["--version", version, "--addr", "127.0.0.1:0"])
        .args(extra);
    ChildServer::spawn(command, &format!("shop {version} server"))
        .await
        .expect("the Python shop server starts")
}

/// `testbed serve` on a free port with `args` (the upstreams).
pub(crate) async fn gateway(args: &[String]) -> ChildServer {
    let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
    all.extend(args.iter().map(String::as_str));
    ChildServer::testbed(Path::new(env!("CARGO_BIN_EXE_testbed")), &all)
        .await
        .expect("the gateway starts")
}

/// `server.py --version VERSION --descriptors FILE`: the version's descriptors as a
/// `FileDescriptorSet` in `dir`, for an upstream that serves no reflection.
pub(crate) fn shop_descriptors(python: &Path, version: &str, dir: &Path) -> PathBuf {
    let file = dir.join(format!("shop-{version}.binpb"));
    let written = std::process::Command::new(python)
        .arg(SHOP_SERVER)
        .args(["--version", version, "--descriptors"])
        .arg(&file)
        .status()
        .expect("server.py runs");
    assert!(written.success());
    file
}

/// [`gateway`] in front of `upstreams` (each `NAME=VERSION@ADDR`) with its admin API on a free
/// port, for the holder `holder` of `token` (its token file written into `dir`), and `extra`
/// flags; and the admin API's address.
pub(crate) async fn gateway_with_admin(
    upstreams: &[String],
    extra: &[&str],
    dir: &Path,
    holder: &str,
    token: &str,
) -> (ChildServer, std::net::SocketAddr) {
    let tokens = crate::common::credentials::token_file(dir, &format!("{holder} {token}\n"));
    let mut args: Vec<String> = upstreams
        .iter()
        .flat_map(|u| ["--upstream".to_string(), u.clone()])
        .collect();
    args.extend([
        "--admin-addr".into(),
        "127.0.0.1:0".into(),
        "--admin-token-file".into(),
        tokens.display().to_string(),
    ]);
    args.extend(extra.iter().map(|flag| flag.to_string()));
    let mut gw = gateway(&args).await;
    let admin = crate::common::admin_address(&mut gw).await;
    (gw, admin.parse().expect("a plaintext admin address"))
}

/// Runs `grpcurl -plaintext FLAGS... ADDR REST...`; its stdout and stderr together, and
/// whether it succeeded.
pub(crate) fn grpcurl(grpcurl: &Path, flags: &[&str], addr: &str, rest: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(grpcurl)
        .arg("-plaintext")
        .args(flags)
        .arg(addr)
        .args(rest)
        .output()
        .expect("grpcurl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// grpcurl that must succeed.
pub(crate) fn ok(path: &Path, flags: &[&str], addr: &str, rest: &[&str]) -> String {
    let (success, text) = grpcurl(path, flags, addr, rest);
    assert!(success, "grpcurl {flags:?} {rest:?} failed: {text}");
    text
}

/// `testbed route list --admin ADDR` with `token`: what it printed, which must be a success.
pub(crate) fn route_list(admin: std::net::SocketAddr, token: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["route", "list", "--admin", &admin.to_string()])
        .env("TESTBED_ADMIN_TOKEN", token)
        .output()
        .expect("testbed route list runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `testbed serve` in front of `upstreams`, which must refuse to start (exit 1): what it said.
pub(crate) async fn refused_start(upstreams: &[String]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"));
    command.args(["serve", "--addr", "127.0.0.1:0"]);
    for upstream in upstreams {
        command.args(["--upstream", upstream]);
    }
    let out = command.output().await.expect("testbed serve runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}
