//! Finding and running the buf CLI: one copy for the buf comparison tests and the speed
//! example, which includes this file with `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How to install the buf the comparison is pinned to.
pub(crate) const INSTALL: &str =
    "npm install --prefix .tools --no-audit --no-fund @bufbuild/buf@1.75.0";

/// buf from the repository's `.tools/node_modules/.bin/buf`, else `buf` on PATH if it runs.
pub(crate) fn find_buf() -> Option<PathBuf> {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/node_modules/.bin/buf");
    if local.exists() {
        return Some(local);
    }
    let ok = Command::new("buf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("buf"))
}

/// The command `buf breaking NEW --against OLD` (`inputs`: NEW, OLD; descriptor sets or
/// folders) in `dir` under one category, with a buf configuration of `version` (`v2`; `v1`
/// for folder inputs, which a v2 configuration's module at "." would contain; its categories
/// lack buf's newer rules, `FIELD_SAME_DEFAULT` and `EXTENSION_NO_DELETE` among them): run, it
/// prints one JSON finding a line on stdout (exit code 100 when there are findings).
pub(crate) fn breaking(
    buf: &Path,
    dir: &Path,
    inputs: [&str; 2],
    category: &str,
    version: &str,
) -> Command {
    let config = format!(r#"{{"version":"{version}","breaking":{{"use":["{category}"]}}}}"#);
    let mut command = Command::new(buf);
    command.current_dir(dir).args([
        "breaking",
        inputs[0],
        "--against",
        inputs[1],
        "--config",
        &config,
        "--error-format",
        "json",
    ]);
    command
}
