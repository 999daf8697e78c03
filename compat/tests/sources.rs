//! Inputs beyond a proto folder (issue 24): git revisions in buf's syntax, single `.proto`
//! files, a side without source info (no comment findings), files compiled from another root,
//! metadata on reflection calls, and the exit code when stdout closes early.

use crate::common::corpus_dir;
use crate::project::args;
use compat::Source;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `git -C dir ARGS`, which must succeed.
fn git(dir: &Path, list: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(list)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {list:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with two commits on `main`: broken_increment's old side (tagged `v1`) under
/// `proto/`, then its new side; plus an uncommitted edit that must play no part.
fn two_commit_repo(dir: &Path) {
    let case = corpus_dir().join("broken_increment");
    std::fs::create_dir_all(dir.join("proto")).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (side, tag) in [("old", Some("v1")), ("new", None)] {
        std::fs::copy(
            case.join(side).join("increment.proto"),
            dir.join("proto/increment.proto"),
        )
        .unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", side]);
        if let Some(tag) = tag {
            git(dir, &["tag", tag]);
        }
    }
    std::fs::write(dir.join("proto/increment.proto"), "not protobuf at all").unwrap();
}

#[tokio::test]
async fn a_git_revision_with_editions_files_goes_through_protoc() {
    if !crate::common::has_protoc("skipping") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let case = corpus_dir().join("editions_enum_closed");
    std::fs::create_dir_all(repo.join("proto")).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    for side in ["old", "new"] {
        std::fs::copy(case.join(side).join("a.proto"), repo.join("proto/a.proto")).unwrap();
        git(repo, &["add", "."]);
        git(repo, &["commit", "-q", "-m", side]);
    }
    let dotgit = repo.join(".git").display().to_string();
    let (code, out) = run(&[
        &format!("{dotgit}#ref=HEAD~1,subdir=proto"),
        &format!("{dotgit}#branch=main,subdir=proto"),
        "--category",
        "FILE",
    ])
    .await
    .unwrap();
    assert_eq!(code, 100, "{out}");
    assert!(out.contains("ENUM_SAME_TYPE"), "{out}");
    assert!(out.contains("a.proto:19"), "{out}");
}

async fn run(list: &[&str]) -> Result<(i32, String), String> {
    let mut out = Vec::new();
    match compat::cli::run(&args(list), &mut out).await {
        Ok(code) => Ok((code, String::from_utf8_lossy(&out).into_owned())),
        Err(e) => Err(format!("{e:#}")),
    }
}

#[tokio::test]
async fn git_revisions_are_read_without_touching_the_work_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    two_commit_repo(repo);
    let status = git(repo, &["status", "--porcelain"]);
    let head = git(repo, &["rev-parse", "HEAD"]);
    let dotgit = repo.join(".git").display().to_string();
    let first = git(repo, &["rev-parse", "HEAD~1"]);
    let (code, text) = run(&[
        &format!("{dotgit}#tag=v1,subdir=proto"),
        &format!("{dotgit}#branch=main,subdir=proto,depth=1"),
        "--category",
        "WIRE",
    ])
    .await
    .unwrap();
    assert_eq!(code, 100, "{text}");
    assert!(text.contains("FIELD_WIRE_COMPATIBLE_TYPE"), "{text}");
    // ref= takes a commit id; without subdir= the names carry the directory.
    let (code, text) = run(&[
        &format!("{dotgit}#ref={}", first.trim()),
        &format!("{dotgit}#ref=HEAD~1"),
    ])
    .await
    .unwrap();
    assert_eq!((code, text.lines().next()), (0, Some("Verdict: no change")));
    assert_eq!(git(repo, &["status", "--porcelain"]), status, "work tree");
    assert_eq!(git(repo, &["rev-parse", "HEAD"]), head);
    for (input, says) in [
        (format!("{dotgit}#branch=nope"), "branch=nope not found"),
        (format!("{dotgit}#tag=v9"), "tag=v9 not found"),
        (
            format!("{dotgit}#ref=main,subdir=api"),
            "subdir=api is not a directory",
        ),
        (format!("{dotgit}#brnach=main"), "unknown key \"brnach\""),
        (
            format!("{}/none/.git#branch=main", tmp.path().display()),
            "no such repository",
        ),
    ] {
        let e = run(&[&input, &input]).await.unwrap_err();
        assert!(e.contains(says), "{input}: {e}");
    }
}

/// `buf breaking '.git#branch=main,subdir=proto' --against '.git#tag=v1,subdir=proto'` in
/// `repo`: its exit code and the rule ids it reports.
fn buf_git(buf: &Path, repo: &Path) -> (Option<i32>, BTreeSet<String>) {
    let args = [
        ".git#branch=main,subdir=proto",
        "--against",
        ".git#tag=v1,subdir=proto",
    ];
    crate::buf::buf_breaking(buf, repo, &args)
}

/// buf reads the same git inputs and finds the same breaking rules (its default, FILE).
#[test]
fn git_inputs_agree_with_buf() {
    let Some(buf) = crate::buf::buf_or_skip("skipping the buf git comparison") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    two_commit_repo(&repo);
    let (code, from_buf) = buf_git(&buf, &repo);
    assert_eq!(code, Some(100));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let load = |input: String| rt.block_on(async { Source::parse(&input).load(&[]).await });
    let dotgit = repo.join(".git").display().to_string();
    let old = load(format!("{dotgit}#tag=v1,subdir=proto")).unwrap();
    let new = load(format!("{dotgit}#branch=main,subdir=proto")).unwrap();
    let report = compat::check(
        &old,
        &new,
        &compat::CheckOptions {
            categories: vec![compat::Category::File],
            confirm: false,
            ..Default::default()
        },
    );
    let ours: BTreeSet<String> = report.breaking().map(|f| f.rule.clone()).collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, from_buf);
}

#[tokio::test]
async fn a_single_proto_file_is_an_input() {
    let case = corpus_dir().join("broken_increment");
    let old = case.join("old/increment.proto").display().to_string();
    let new = case.join("new/increment.proto").display().to_string();
    let (code, text) = run(&[&old, &new]).await.unwrap();
    assert_eq!(code, 100, "{text}");
    assert!(text.contains("GRPC_RPC_NO_DELETE"), "{text}");
    let e = run(&[&old, "/nonexistent/x.proto"]).await.unwrap_err();
    assert!(
        e.contains("/nonexistent/x.proto") && e.contains("no such .proto file"),
        "{e}"
    );
}

/// Writes `files` (name, text) under `dir`.
fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

const SHOP: &str = "syntax = \"proto3\";\npackage shop.v1;\n// The shop.\nservice Shop {\n  // Gets one.\n  rpc Get(Item) returns (Item);\n}\n// An item.\nmessage Item {\n  int64 id = 1; // its id\n}\n";

#[tokio::test]
async fn a_side_without_source_info_has_no_comment_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&a, &[("shop.proto", SHOP)]);
    write(
        &b,
        &[("shop.proto", &SHOP.replace("Gets one.", "Gets one item."))],
    );
    // The same files without source info, as reflection and `protoc -o` send them.
    let (pool, _) = compat::source::compile_dir(&a, &[]).unwrap();
    let mut fds = prost_types::FileDescriptorSet {
        file: pool.file_descriptor_protos().cloned().collect(),
    };
    for f in &mut fds.file {
        f.source_code_info = None;
    }
    let bare = tmp.path().join("bare.binpb");
    std::fs::write(&bare, prost::Message::encode_to_vec(&fds)).unwrap();
    let (a, b, bare) = (
        a.display().to_string(),
        b.display().to_string(),
        bare.display().to_string(),
    );
    for (old, new) in [(&a, &bare), (&bare, &a), (&bare, &b)] {
        let (code, text) = run(&[old, new]).await.unwrap();
        assert_eq!(
            (code, text.as_str()),
            (0, "Verdict: no change\n"),
            "{old} {new}"
        );
    }
    // Both sides with comments: an edit is still a patch-level finding.
    let (_, text) = run(&[&a, &b]).await.unwrap();
    assert!(text.contains("COMMENT_CHANGED"), "{text}");
}

#[tokio::test]
async fn files_compiled_from_another_root_are_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (flat, nested, renamed) = (
        tmp.path().join("flat"),
        tmp.path().join("nested"),
        tmp.path().join("renamed"),
    );
    write(&flat, &[("shop.proto", SHOP)]);
    write(&nested, &[("shop/v1/shop.proto", SHOP)]);
    write(&renamed, &[("store.proto", SHOP)]);
    let [flat, nested, renamed] = [flat, nested, renamed].map(|d| d.display().to_string());
    for (old, new) in [(&flat, &nested), (&nested, &flat)] {
        let (code, text) = run(&[old, new]).await.unwrap();
        assert_eq!(
            (code, text.as_str()),
            (0, "Verdict: no change\n"),
            "{old} {new}"
        );
    }
    // A real rename is what buf reports: a FILE-category deletion, not breaking by default.
    let (code, text) = run(&[&flat, &renamed, "--category", "FILE"]).await.unwrap();
    assert_eq!(code, 100, "{text}");
    assert!(text.contains("FILE_NO_DELETE"), "{text}");
    let (code, _) = run(&[&flat, &renamed]).await.unwrap();
    assert_eq!(code, 0);
}

/// Headers reach the reflection calls: a server that refuses calls without a token is read
/// with -H, and named in the error without.
#[tokio::test]
async fn headers_are_sent_with_reflection_calls() {
    let fds: &'static [u8] = Box::leak(
        crate::common::fds_bytes(&crate::common::load("broken_increment", "old"))
            .into_boxed_slice(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fds)
        .build_v1()
        .unwrap();
    let guarded = tonic::service::interceptor::InterceptedService::new(
        reflection,
        |req: tonic::Request<()>| match req.metadata().get("authorization") {
            Some(v) if v == "Bearer t0ken" => Ok(req),
            _ => Err(tonic::Status::unauthenticated("no token")),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(guarded)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let old = corpus_dir()
        .join("broken_increment/old")
        .display()
        .to_string();
    let server = format!("grpc://{addr}");
    let e = run(&[&old, &server]).await.unwrap_err();
    assert!(e.contains(&server) && e.contains("no token"), "{e}");
    let (code, text) = run(&[&old, &server, "-H", "authorization: Bearer t0ken"])
        .await
        .unwrap();
    assert_eq!((code, text.as_str()), (0, "Verdict: no change\n"));
    let e = run(&[&old, &old, "-H", "authorization: Bearer t0ken"])
        .await
        .unwrap_err();
    assert!(e.contains("-H adds metadata"), "{e}");
}

/// A reader that closes the output early (`| head -1` in CI) does not turn a breaking
/// verdict (100) into an error (1).
#[tokio::test]
async fn a_closed_output_keeps_the_exit_code() {
    let case = corpus_dir().join("broken_increment");
    let list = [
        case.join("old").display().to_string(),
        case.join("new").display().to_string(),
    ];
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let code = compat::cli::run(&args(&list), &mut crate::common::Closed)
        .await
        .unwrap();
    assert_eq!(code, 100);
}

/// A git input's own buf.yaml (at `subdir=`, at that revision) applies, as buf applies it.
#[test]
fn a_git_inputs_buf_yaml_applies_as_in_buf() {
    let Some(buf) = crate::buf::buf_or_skip("skipping the git buf.yaml comparison") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    two_commit_repo(&repo);
    std::fs::write(
        repo.join("proto/buf.yaml"),
        "version: v1\nbreaking:\n  except: [FIELD_SAME_TYPE]\n",
    )
    .unwrap();
    git(&repo, &["checkout", "-q", "--", "proto/increment.proto"]);
    git(&repo, &["add", "proto/buf.yaml"]);
    git(&repo, &["commit", "-q", "-m", "buf.yaml"]);
    let buf_says = buf_git(&buf, &repo);
    let dotgit = repo.join(".git").display().to_string();
    let (new, old) = (
        format!("{dotgit}#branch=main,subdir=proto"),
        format!("{dotgit}#tag=v1,subdir=proto"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, text) = rt.block_on(run(&[&old, &new, "--format", "json"])).unwrap();
    let ours: BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["breaking"] == true)
        .filter_map(|v| v["rule"].as_str().map(str::to_string))
        .collect();
    assert_eq!((Some(code), ours.clone()), buf_says);
    assert_eq!(ours, BTreeSet::from(["RPC_NO_DELETE".to_string()]));
}

#[tokio::test]
async fn remote_git_repositories_are_fetched_into_a_cache_and_read_at_the_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    two_commit_repo(repo);
    // file:// takes git's remote transport (the one https:// and ssh:// take), on this machine.
    let url = format!("file://{}/.git", repo.display());
    let cache = compat::git::cache_for(&url);
    let first = git(repo, &["rev-parse", "HEAD~1"]);
    for _ in 0..2 {
        // The second time from the cache the first filled.
        let (code, text) = run(&[
            &format!("{url}#tag=v1,subdir=proto"),
            &format!("{url}#branch=main,subdir=proto,depth=1"),
            "--category",
            "WIRE",
        ])
        .await
        .unwrap();
        assert_eq!(code, 100, "{text}");
        assert!(text.contains("FIELD_WIRE_COMPATIBLE_TYPE"), "{text}");
    }
    assert!(cache.join("HEAD").exists(), "{}", cache.display());
    // A commit id is found among the branches and tags fetched whole.
    let (code, text) = run(&[
        &format!("{url}#ref={},subdir=proto", first.trim()),
        &format!("{url}#tag=v1,subdir=proto"),
    ])
    .await
    .unwrap();
    assert_eq!((code, text.lines().next()), (0, Some("Verdict: no change")));
    let e = run(&[&format!("{url}#branch=nope"), &format!("{url}#branch=main")])
        .await
        .unwrap_err();
    assert!(e.contains("cannot fetch branch=nope"), "{e}");
    let gone = format!("file://{}/none/.git", repo.display());
    let e = run(&[&gone, &gone]).await.unwrap_err();
    assert!(e.contains("cannot fetch"), "{e}");
    for made in [cache, compat::git::cache_for(&gone)] {
        let _ = std::fs::remove_dir_all(made);
    }
}
