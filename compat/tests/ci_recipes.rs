//! The GitHub Actions and GitLab CI snippets of docs/check.md: every `testbed check` line in
//! them is read from the file and run, so the documented command lines are the tested ones.

use crate::common::{corpus_dir, repo_root};
use crate::project::args;
use std::path::Path;
use std::process::Command;

/// The `testbed check` command lines of the yaml blocks in docs/check.md's CI section, each
/// as its words after `testbed check` (single quotes removed; a redirection and `|| ...`
/// end the command).
fn documented_lines() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(repo_root().join("docs/check.md")).unwrap();
    let section = doc
        .split("## SARIF and CI recipes")
        .nth(1)
        .expect("docs/check.md has the CI recipes section");
    let mut lines = Vec::new();
    for block in section.split("```yaml").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for line in block.lines() {
            if let Some((_, rest)) = line.split_once("testbed check ") {
                lines.push(words(rest));
            }
        }
    }
    lines
}

/// Shell words up to a `>` or `||`, with single quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut word, mut quoted, mut any) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    let end = out
        .iter()
        .position(|w| w == ">" || w == "||")
        .unwrap_or(out.len());
    out.truncate(end);
    out
}

fn git(dir: &Path, list: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "commit.gpgsign=false"])
        .args(list)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {list:?}: {out:?}");
}

/// Runs one documented line in `repo`: relative paths are taken from the repository root.
async fn run_in(repo: &Path, words: &[String]) -> (i32, String) {
    let mut list = Vec::new();
    let mut value_of_flag = false;
    for w in words {
        let path_like = !w.starts_with('-') && !value_of_flag;
        list.push(if path_like {
            repo.join(w).display().to_string()
        } else {
            w.clone()
        });
        value_of_flag = matches!(w.as_str(), "--format" | "--error-format" | "--category");
    }
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let code = compat::cli::run(&args(&list), &mut out).await.unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_documented_command_lines_work() {
    let lines = documented_lines();
    assert_eq!(lines.len(), 4, "two lines per snippet: {lines:?}");
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let old =
        std::fs::read_to_string(corpus_dir().join("broken_increment/old/increment.proto")).unwrap();
    std::fs::create_dir_all(repo.join("proto")).unwrap();
    std::fs::write(repo.join("proto/increment.proto"), &old).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "v1"]);
    git(repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    // The branch deletes one RPC and accepts that.
    let stream =
        "  rpc IncrementStream(stream IncrementRequest) returns (stream IncrementReply);\n";
    assert!(old.contains(stream));
    std::fs::write(repo.join("proto/increment.proto"), old.replace(stream, "")).unwrap();
    let entry = "accepted:\n  - rule: GRPC_RPC_NO_DELETE\n    element: increment.v1.Incrementer.IncrementStream\n    reason: nobody calls it\n";
    std::fs::write(repo.join("proto/accepted-breaks.yaml"), entry).unwrap();
    for words in &lines {
        let (code, out) = run_in(repo, words).await;
        assert_eq!(code, 0, "{words:?}: {out}");
        assert!(
            out.contains("accepted (nobody calls it)")
                || out.contains("\"justification\": \"nobody calls it\""),
            "{words:?}: {out}"
        );
    }
    // Once the entry has expired the same lines fail the job.
    std::fs::write(
        repo.join("proto/accepted-breaks.yaml"),
        format!("{entry}    expires: 2001-01-01\n"),
    )
    .unwrap();
    for words in &lines {
        let (code, out) = run_in(repo, words).await;
        assert_eq!(code, 100, "{words:?}: {out}");
    }
}
