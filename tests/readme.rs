//! Every `sh` block of README.md runs as written, so the README cannot drift from what the
//! commands do. Each block runs in bash in a folder of its own (the repository's `proto/`,
//! `examples/`, `scripts/`, `client/`, `.venv` linked in), with this build's `testbed` first on
//! `PATH` in place of the block's build or install line, and the README's ports (7000-7999)
//! mapped to free ones. A command ends with the exit code its comment names (`# exit 100`),
//! else 0; a line ending in `&` runs in the background and the block waits until the ports it
//! listens on (`--addr`, `--admin-addr`) accept. The quick start's two commands are what CI
//! runs (`.ci/run`), so they are checked against it rather than run again.

use crate::common::tool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The longest one block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `sh` blocks of `markdown`, each with the line it starts at.
fn sh_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some((number + 1, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), line) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The block's commands: continuation lines joined, comment-only and blank lines left out.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// A command without its trailing comment, and the exit code that comment names (default 0).
fn split_comment(command: &str) -> (String, i32) {
    // A `#` starts a comment only after a space and outside quotes.
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (at, c) in command.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                let comment = &command[at..];
                let code = comment
                    .split("exit ")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or(0);
                return (command[..at].trim_end().to_string(), code);
            }
            _ => {}
        }
        previous = c;
    }
    (command.trim_end().to_string(), 0)
}

/// A port no one listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` with every README port (7000-7999 after a `:`) replaced as `ports` says, new ones
/// added to it.
fn map_ports(text: &str, ports: &mut BTreeMap<u16, u16>) -> String {
    let mut out = String::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if bytes[at] == b':' && digits == 4 && bytes[at + 1] == b'7' {
            let port: u16 = text[at + 1..at + 5].parse().unwrap();
            let mapped = *ports.entry(port).or_insert_with(free_port);
            out.push_str(&format!(":{mapped}"));
            at += 5;
        } else {
            let c = text[at..].chars().next().unwrap();
            out.push(c);
            at += c.len_utf8();
        }
    }
    out
}

/// The ports a background command listens on: those after `--addr` or `--admin-addr`.
fn listening_ports(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "--addr" || pair[0] == "--admin-addr")
        .filter_map(|pair| pair[1].rsplit(':').next().map(str::to_string))
        .collect()
}

/// A build or install of the testbed, which the test's own binary stands in for.
fn is_build(command: &str) -> bool {
    command.starts_with("cargo build") || command.starts_with("cargo install")
}

/// The bash script that runs `block` (starting at README line `line`) and checks each command.
fn script(line: usize, block: &str) -> String {
    let mut ports = BTreeMap::new();
    let mut script = String::from(
        "set -u\ntrap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n\
         wait_port() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo \"nothing listens on port $1\" >&2; return 1; }\n",
    );
    for command in commands(block) {
        let (command, want) = split_comment(&command);
        let command = map_ports(&command, &mut ports);
        if let Some(first) = command.split("&&").next()
            && is_build(first.trim())
        {
            let rest: Vec<&str> = command.split("&&").skip(1).collect();
            if rest.is_empty() {
                continue;
            }
            script.push_str(&format!("{}\n", rest.join("&&")));
            continue;
        }
        if let Some(background) = command.strip_suffix('&') {
            script.push_str(&format!("{background} &\n"));
            for port in listening_ports(background) {
                script.push_str(&format!("wait_port {port} || exit 1\n"));
            }
            continue;
        }
        let quoted = command.replace('\'', "'\\''");
        script.push_str(&format!(
            "{command}\nrc=$?; if [ $rc -ne {want} ]; then echo 'README line {line}: exit '$rc', want {want}: {quoted}' >&2; exit 1; fi\n"
        ));
    }
    script
}

fn link_repo_into(dir: &Path) {
    for name in [
        "proto", "examples", "scripts", "client", ".venv", ".tools", "compat",
    ] {
        let from = repo().join(name);
        if from.exists() {
            std::os::unix::fs::symlink(&from, dir.join(name)).unwrap();
        }
    }
}

/// A newcomer reads the README in a few minutes; the long guide is in docs/.
#[test]
fn the_readme_stays_short_and_every_doc_it_links_exists() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines, more than 250");
    for link in readme.split("](").skip(1) {
        let target = link.split([')', '#']).next().unwrap_or_default();
        if target.starts_with("http") || target.is_empty() {
            continue;
        }
        assert!(
            repo().join(target).exists(),
            "README.md links {target}, which is not there"
        );
    }
}

#[test]
fn the_quick_start_is_what_ci_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let (_, quick) = sh_blocks(&readme)
        .into_iter()
        .next()
        .expect("a first sh block");
    let quick: Vec<String> = commands(&quick)
        .iter()
        .map(|c| split_comment(c).0)
        .collect();
    assert_eq!(quick, ["bash scripts/experiment", "bash scripts/test"]);
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    for command in &quick {
        assert!(
            ci.lines().any(|l| l.trim() == command),
            ".ci/run lacks {command}"
        );
    }
}

#[test]
fn the_harness_reads_commands_comments_and_ports_as_the_readme_means_them() {
    let block = "# a comment\ntestbed serve --addr 127.0.0.1:7000 \\\n  --upstream v1=1.0.0@127.0.0.1:7001 &\ntestbed check a b   # exit 100: MAJOR\ngrpcurl -d '{\"a\": \"#x\"}' x\n";
    let commands = commands(block);
    assert_eq!(commands.len(), 3, "{commands:?}");
    assert_eq!(
        split_comment(&commands[1]),
        ("testbed check a b".into(), 100)
    );
    assert_eq!(
        split_comment(&commands[2]).0,
        "grpcurl -d '{\"a\": \"#x\"}' x"
    );
    let mut ports = BTreeMap::new();
    let mapped = map_ports(&commands[0], &mut ports);
    assert_eq!(ports.len(), 2);
    assert!(
        !mapped.contains(":7000") && !mapped.contains(":7001"),
        "{mapped}"
    );
    assert_eq!(listening_ports(&mapped), [ports[&7000].to_string()]);
}

#[test]
fn every_sh_block_of_the_readme_runs_as_written() {
    if tool(client::tools::grpcurl()).is_none() {
        return;
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<(usize, String)> = sh_blocks(&readme).into_iter().skip(1).collect();
    assert!(blocks.len() >= 3, "the README has lost its recipes");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_testbed"));
    let bin_dir = exe.parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        repo().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let runs: Vec<_> = blocks
        .iter()
        .map(|(line, block)| {
            let dir = tempfile::tempdir().unwrap();
            link_repo_into(dir.path());
            let child = Command::new("timeout")
                .arg(BLOCK_TIMEOUT.as_secs().to_string())
                .args(["bash", "-c", &script(*line, block)])
                .current_dir(dir.path())
                .env("PATH", &path)
                .env("TESTBED_VENV", repo().join(".venv"))
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (*line, dir, child)
        })
        .collect();
    let mut failures = Vec::new();
    for (line, _dir, child) in runs {
        let output = child.wait_with_output().unwrap();
        if !output.status.success() {
            failures.push(format!(
                "the block at README line {line} failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
