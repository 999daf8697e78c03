//! A protoc of version 27 or newer, for `.proto` files protox cannot compile (protobuf
//! editions): `PROTOC` from the environment, else `protoc` on `PATH` when new enough, else
//! grpcio-tools' bundled protoc (`python -m grpc_tools.protoc`) in the venv (`TESTBED_VENV`,
//! else `./.venv`, else the clone's `.venv` this binary was built from).

use crate::editions::FeatureSet;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to get a protoc that compiles editions files.
pub const INSTALL: &str = "bash scripts/setup (installs grpcio-tools, which bundles protoc, into .venv), \
     or set PROTOC to a protoc 27 or newer";

/// A runnable protoc: the program and the arguments before protoc's own.
#[derive(Debug, Clone)]
pub struct Protoc {
    program: PathBuf,
    prefix: Vec<String>,
    /// How it was found, for messages.
    pub label: String,
}

/// The major version of `libprotoc X.Y` output: 3 for 3.21 (the old scheme), 27 for 27.1.
fn major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .last()?
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl Protoc {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.prefix);
        c
    }

    /// `protoc --version`, when it runs and reports 27 or newer.
    fn new_enough(self) -> Option<Protoc> {
        let out = self.command().arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && major(&text).is_some_and(|m| (27..1000).contains(&m)))
            .then_some(self)
    }

    /// Compiles `names` (relative to `dirs`, searched in order) into a `FileDescriptorSet` with
    /// imports and source info; protoc's message on failure.
    pub fn compile(&self, dirs: &[PathBuf], names: &[String]) -> Result<Vec<u8>, String> {
        let mut c = self.command();
        for d in dirs {
            c.arg(format!("-I{}", d.display()));
        }
        c.args([
            "--include_imports",
            "--include_source_info",
            "--descriptor_set_out=/dev/stdout",
        ]);
        c.args(names);
        let out = c
            .output()
            .map_err(|e| format!("running {}: {e}", self.label))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(out.stdout)
    }

    /// The core feature defaults protoc computes for `edition` (`2023`, `2024`).
    pub fn edition_defaults(&self, edition: &str) -> Result<FeatureSet, String> {
        let out = self
            .command()
            .args([
                "--edition_defaults_out=/dev/stdout",
                &format!("--edition_defaults_minimum={edition}"),
                &format!("--edition_defaults_maximum={edition}"),
                "google/protobuf/descriptor.proto",
            ])
            .output()
            .map_err(|e| format!("running {}: {e}", self.label))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let set = Defaults::decode(out.stdout.as_slice()).map_err(|e| e.to_string())?;
        let last = set
            .defaults
            .iter()
            .max_by_key(|d| d.edition)
            .ok_or("no defaults in protoc's output")?;
        let mut merged = last.overridable.unwrap_or_default();
        let fixed = last.fixed.unwrap_or_default();
        for (a, b) in [
            (&mut merged.field_presence, fixed.field_presence),
            (&mut merged.enum_type, fixed.enum_type),
            (
                &mut merged.repeated_field_encoding,
                fixed.repeated_field_encoding,
            ),
            (&mut merged.utf8_validation, fixed.utf8_validation),
            (&mut merged.message_encoding, fixed.message_encoding),
            (&mut merged.json_format, fixed.json_format),
        ] {
            if b.is_some() {
                *a = b;
            }
        }
        Ok(merged)
    }
}

/// `FeatureSetDefaults`.
#[derive(Clone, PartialEq, Message)]
struct Defaults {
    #[prost(message, repeated, tag = "1")]
    defaults: Vec<EditionDefault>,
}

/// `FeatureSetDefaults.FeatureSetEditionDefault`.
#[derive(Clone, PartialEq, Message)]
struct EditionDefault {
    #[prost(int32, optional, tag = "3")]
    edition: Option<i32>,
    #[prost(message, optional, tag = "4")]
    overridable: Option<FeatureSet>,
    #[prost(message, optional, tag = "5")]
    fixed: Option<FeatureSet>,
}

/// The venvs to look in, in order.
fn venvs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(env) = std::env::var_os("TESTBED_VENV") {
        v.push(PathBuf::from(env));
    }
    v.push(PathBuf::from(".venv"));
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    v.push(crate_dir.parent().unwrap_or(crate_dir).join(".venv"));
    v
}

/// The protoc to use, or what was looked at and how to install one.
pub fn find() -> Result<Protoc, String> {
    find_from(std::env::var_os("PROTOC"))
}

/// [`find`] with `PROTOC` given.
fn find_from(env: Option<std::ffi::OsString>) -> Result<Protoc, String> {
    if let Some(p) = env {
        let protoc = Protoc {
            program: PathBuf::from(&p),
            prefix: Vec::new(),
            label: format!("PROTOC={}", Path::new(&p).display()),
        };
        return protoc.new_enough().ok_or_else(|| {
            format!(
                "PROTOC={} does not run or is older than protoc 27 (editions need 27+)",
                Path::new(&p).display()
            )
        });
    }
    let on_path = Protoc {
        program: PathBuf::from("protoc"),
        prefix: Vec::new(),
        label: "protoc on PATH".to_string(),
    };
    if let Some(p) = on_path.new_enough() {
        return Ok(p);
    }
    let venvs = venvs();
    for venv in &venvs {
        let python = venv.join("bin").join("python");
        if !python.is_file() {
            continue;
        }
        let p = Protoc {
            program: python.clone(),
            prefix: vec!["-m".into(), "grpc_tools.protoc".into()],
            label: format!("{} -m grpc_tools.protoc", python.display()),
        };
        if let Some(p) = p.new_enough() {
            return Ok(p);
        }
    }
    let looked: Vec<String> = venvs.iter().map(|v| v.display().to_string()).collect();
    Err(format!(
        "protobuf editions need protoc 27 or newer, not found (looked at PROTOC, protoc on PATH, grpc_tools in {}); install it with: {INSTALL}",
        looked.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert_eq!(super::major("libprotoc 35.1"), Some(35));
        assert_eq!(super::major("libprotoc 3.21.12"), Some(3));
        assert_eq!(super::major(""), None);
    }

    #[test]
    fn a_protoc_that_does_not_run_is_named() {
        let err = super::find_from(Some("/nonexistent/protoc".into())).unwrap_err();
        assert!(err.contains("PROTOC=/nonexistent/protoc"), "{err}");
        assert!(err.contains("27"), "{err}");
    }
}
