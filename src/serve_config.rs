//! `testbed serve --config FILE`: `serve`'s flags from a YAML file, one key per flag by its
//! long name, so that everything the command line can say a file can say too, in one format:
//!
//! ```yaml
//! addr: 127.0.0.1:7100
//! upstream:                      # repeatable flags take a list
//!   - v1=1.0.0@127.0.0.1:7101
//!   - v2=2.0.0@127.0.0.1:7102,127.0.0.1:7105;weight=10
//! admin-addr: 127.0.0.1:7109
//! admin-token-file: admin-tokens
//! grpc-web: true                 # a switch: true gives it, false leaves it out
//! max-connections: 512
//! ```
//!
//! The file's flags are put in the command line right after `--config FILE`, before any flag
//! that follows it, and clap reads the whole as usual: unknown keys and bad values get clap's
//! errors, a single-valued flag given again later on the command line takes the later value,
//! repeatable ones add up. A `--state-file` (the admin API's record of the route table) has
//! this format too.

use anyhow::{Context, bail};
use std::ffi::OsString;
use std::path::Path;

/// Config files larger than this are refused (a gateway's config is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `args` (a whole command line, the program first) with the flags of `serve --config FILE`
/// inserted after it; unchanged for other commands.
pub fn expanded(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Vec<OsString>> {
    let args: Vec<OsString> = args.into_iter().collect();
    let Some(serve) = args.iter().position(|a| a == "serve") else {
        return Ok(args);
    };
    let mut out: Vec<OsString> = args[..=serve].to_vec();
    let mut rest = args[serve + 1..].iter();
    while let Some(arg) = rest.next() {
        out.push(arg.clone());
        let path = match arg.to_str() {
            Some("--config") => match rest.next() {
                Some(path) => {
                    out.push(path.clone());
                    path.clone()
                }
                None => continue,
            },
            Some(text) => match text.strip_prefix("--config=") {
                Some(path) => path.into(),
                None => continue,
            },
            None => continue,
        };
        out.extend(flags_of(Path::new(&path))?.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// The command-line flags the config file at `path` stands for.
fn flags_of(path: &Path) -> anyhow::Result<Vec<String>> {
    let context = || format!("--config {}", path.display());
    let file = std::fs::File::open(path).with_context(context)?;
    let len = file.metadata().map(|m| m.len()).with_context(context)?;
    if len > MAX_CONFIG_BYTES {
        bail!(
            "--config {}: {len} bytes, more than a config ({MAX_CONFIG_BYTES} at most)",
            path.display()
        );
    }
    let value: serde_norway::Value = serde_norway::from_reader(file).with_context(context)?;
    flags_from(&value).with_context(context)
}

/// The flags of a parsed config: each key a flag, each value its value (see the module).
fn flags_from(value: &serde_norway::Value) -> anyhow::Result<Vec<String>> {
    use serde_norway::Value;
    let mapping = match value {
        Value::Mapping(mapping) => mapping,
        Value::Null => return Ok(Vec::new()),
        _ => bail!("a config is a mapping of flag names to values (`addr: 127.0.0.1:7100`)"),
    };
    let mut flags = Vec::new();
    for (key, value) in mapping {
        let Some(name) = key.as_str() else {
            bail!("flag names are strings: {key:?}");
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("{name:?} is not a flag name (the long name without --, such as admin-addr)");
        }
        if name == "config" {
            bail!("a config cannot name another config");
        }
        let flag = format!("--{name}");
        let scalar = |value: &Value| -> anyhow::Result<String> {
            Ok(match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(_) => bail!("{name}: true or false is for a switch, not a list item"),
                _ => bail!("{name}: a value is a string or a number (or a list of them)"),
            })
        };
        match value {
            Value::Bool(true) => flags.push(flag),
            Value::Bool(false) => {}
            Value::Sequence(items) => {
                for item in items {
                    flags.push(flag.clone());
                    flags.push(scalar(item)?);
                }
            }
            other => {
                flags.push(flag);
                flags.push(scalar(other)?);
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(yaml: &str) -> anyhow::Result<Vec<String>> {
        flags_from(&serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn keys_are_flags_lists_repeat_and_switches_are_booleans() {
        let got = flags(
            "addr: 127.0.0.1:7100\nupstream:\n  - v1=1.0.0@127.0.0.1:7101\n  - v2=2.0.0@127.0.0.1:7102\n\
             grpc-web: true\ninterop: false\nmax-connections: 512\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "--addr",
                "127.0.0.1:7100",
                "--upstream",
                "v1=1.0.0@127.0.0.1:7101",
                "--upstream",
                "v2=2.0.0@127.0.0.1:7102",
                "--grpc-web",
                "--max-connections",
                "512"
            ]
        );
        assert_eq!(flags("").unwrap(), Vec::<String>::new());
        for (bad, says) in [
            ("- a\n- b\n", "mapping"),
            ("Addr: x\n", "not a flag name"),
            ("config: other.yaml\n", "another config"),
            ("upstream: {a: b}\n", "string or a number"),
            ("upstream: [true]\n", "switch"),
        ] {
            let err = format!("{:#}", flags(bad).unwrap_err());
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_files_flags_go_right_after_config_and_other_commands_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, "addr: 127.0.0.1:7100\n").unwrap();
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let path = path.to_str().unwrap();
        assert_eq!(
            expanded(args(&[
                "testbed",
                "serve",
                "--config",
                path,
                "--addr",
                "127.0.0.1:1"
            ]))
            .unwrap(),
            args(&[
                "testbed",
                "serve",
                "--config",
                path,
                "--addr",
                "127.0.0.1:7100",
                "--addr",
                "127.0.0.1:1"
            ])
        );
        let equals = format!("--config={path}");
        assert_eq!(
            expanded(args(&["testbed", "serve", &equals])).unwrap(),
            args(&["testbed", "serve", &equals, "--addr", "127.0.0.1:7100"])
        );
        let other = args(&["testbed", "route", "list", "--config", "x"]);
        assert_eq!(expanded(other.clone()).unwrap(), other);
        let err =
            expanded(args(&["testbed", "serve", "--config", "/nonexistent.yaml"])).unwrap_err();
        assert!(
            format!("{err:#}").contains("--config /nonexistent.yaml"),
            "{err:#}"
        );
    }
}
