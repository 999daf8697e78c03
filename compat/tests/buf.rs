//! Every corpus case, every buf category: our findings (rule id + file + line) equal those of
//! `buf breaking NEW.binpb --against OLD.binpb`, except the differences listed in
//! `compat::ALLOWED_DIFFERENCES`, each of which must really occur and be refuted on the wire.

use crate::buf_cli::{INSTALL, breaking, find_buf};
use crate::common::{case_set_bytes, cases, check_case, load};
use compat::{ALLOWED_DIFFERENCES, Category, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;

/// buf, or `None` when the test is to be skipped (outside CI, without buf): `skipping` says
/// what is skipped.
pub(crate) fn buf_or_skip(skipping: &str) -> Option<PathBuf> {
    let buf = find_buf();
    if buf.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("buf is not installed; install it with: {INSTALL} (or scripts/setup)");
        }
        eprintln!("{skipping}: buf not found; install it with: {INSTALL} (or scripts/setup)");
    }
    buf
}

type Key = (String, String, u32);

fn buf_findings(buf: &Path, dir: &Path, category: &str) -> Vec<Key> {
    let out = breaking(buf, dir, ["new.binpb", "old.binpb"], category, "v2")
        .output()
        .expect("run buf");
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 100,
        "buf failed ({code}) in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<Key> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let j: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("buf line {l}: {e}"));
            (
                j["type"].as_str().unwrap().to_string(),
                j["path"].as_str().unwrap_or("").to_string(),
                j["start_line"].as_u64().unwrap_or(0) as u32,
            )
        })
        .collect();
    v.sort();
    assert_eq!(
        code == 100,
        !v.is_empty(),
        "buf exit code {code} vs {} findings",
        v.len()
    );
    v
}

#[test]
fn corpus_matches_buf_per_category() {
    let Some(buf) = buf_or_skip("skipping the buf comparison") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let categories = [
        ("WIRE", Category::Wire),
        ("WIRE_JSON", Category::WireJson),
        ("PACKAGE", Category::Package),
        ("FILE", Category::File),
    ];
    let mut mismatches = Vec::new();
    let mut allowed_seen = 0;
    let mut agree = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for case in cases() {
        let dir = tmp.path().join(&case);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("old.binpb"), case_set_bytes(&case, "old")).unwrap();
        std::fs::write(dir.join("new.binpb"), case_set_bytes(&case, "new")).unwrap();
    }
    // buf runs in two worker threads (one buf process each); the comparison is sequential.
    let jobs: Vec<(String, &str)> = cases()
        .into_iter()
        .flat_map(|c| categories.iter().map(move |(n, _)| (c.clone(), *n)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(std::collections::BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((case, name)) = jobs.get(i) else {
                        break;
                    };
                    let found = buf_findings(&buf, &tmp.path().join(case), name);
                    results
                        .lock()
                        .unwrap()
                        .insert((case.clone(), name.to_string()), found);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    for case in cases() {
        for (name, cat) in categories {
            let mut theirs = results
                .remove(&(case.clone(), name.to_string()))
                .expect("buf ran");
            let report = check_case(&case, &[cat]);
            let mut ours: Vec<Key> = report
                .breaking()
                .map(|f| (f.rule.clone(), f.path.clone(), f.line.unwrap_or(0)))
                .collect();
            ours.sort();
            for (c, rule, acase, _) in ALLOWED_DIFFERENCES {
                if *c == name && *acase == case {
                    let before = theirs.len();
                    theirs.retain(|k| k.0 != *rule);
                    assert!(
                        theirs.len() < before,
                        "allowed difference {c}/{rule}/{acase} no longer occurs: buf does not report it"
                    );
                    assert!(
                        !ours.iter().any(|k| k.0 == *rule),
                        "allowed difference {c}/{rule}/{acase}: we report it too"
                    );
                    // Who is right: the same rule, computed without the categories, is refuted on the wire.
                    let all = check_case(&case, &[]);
                    let f = all
                        .findings
                        .iter()
                        .find(|f| f.rule == *rule)
                        .expect("the rule still fires as a non-breaking change");
                    assert_eq!(
                        f.confirmation.as_ref().unwrap().outcome,
                        Outcome::Refuted,
                        "{rule} in {case}: {:?}",
                        f.confirmation
                    );
                    allowed_seen += 1;
                }
            }
            let e = agree.entry(name).or_default();
            e.1 += theirs.len();
            if ours != theirs {
                mismatches.push(format!(
                    "{case} {name}:\n  buf:  {theirs:?}\n  ours: {ours:?}"
                ));
            } else {
                e.0 += theirs.len();
            }
        }
    }
    eprintln!("agreement with buf (findings equal / buf findings) per category: {agree:?}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches with buf:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(
        allowed_seen,
        ALLOWED_DIFFERENCES.len(),
        "every allowed difference occurs once"
    );
}

/// A buf image (`buf build -o x.binpb`) is a valid descriptor-set input and gives the same
/// findings as the directory it was built from.
#[tokio::test]
async fn buf_images_are_descriptor_set_inputs() {
    let Some(buf) = buf_or_skip("skipping") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let case = crate::common::corpus_dir().join("broken_increment");
    let mut images = Vec::new();
    for side in ["old", "new"] {
        let out = tmp.path().join(format!("{side}.binpb"));
        let status = Command::new(&buf)
            .current_dir(case.join(side))
            .args(["build", ".", "-o"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        images.push(
            compat::Source::parse(out.to_str().unwrap())
                .load(&[])
                .await
                .unwrap(),
        );
    }
    let opts = compat::CheckOptions::default();
    let from_images = compat::check(&images[0], &images[1], &opts);
    let from_dirs = compat::check(
        &load("broken_increment", "old"),
        &load("broken_increment", "new"),
        &opts,
    );
    let key = |r: &compat::Report| {
        r.findings
            .iter()
            .map(|f| (f.rule.clone(), f.element.clone(), f.line))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&from_images), key(&from_dirs));
    assert!(from_images.is_breaking());
}

/// `buf breaking ARGS --error-format json` run in `dir`: its exit code and the rule ids it
/// reports.
pub(crate) fn buf_breaking(
    buf: &Path,
    dir: &Path,
    args: &[&str],
) -> (Option<i32>, std::collections::BTreeSet<String>) {
    let out = Command::new(buf)
        .current_dir(dir)
        .arg("breaking")
        .args(args)
        .args(["--error-format", "json"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["type"].as_str().map(str::to_string))
        .collect();
    (out.status.code(), rules)
}
