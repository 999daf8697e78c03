//! Speed benchmark: `check` against `buf breaking` on the same descriptor sets.
//!
//! Generates two versions of a 200-file API (20 messages of 20 fields each per file, a
//! service per file) with a few hundred changes between them, writes both as
//! FileDescriptorSets, then times, in one run and alternating, `compat::check` (decode both
//! sets, all rules, wire confirmation of every finding) and `buf breaking NEW.binpb
//! --against OLD.binpb` for the same category. Wall time, median of 5 rounds.
//!
//! `cargo run --release -p compat --example speed` (buf from `.tools/node_modules/.bin/buf`
//! or PATH; `SPEED_ONLY_OURS=1` skips buf).

#[path = "../tests/buf_cli.rs"]
mod buf_cli;

use compat::{Api, Category, CheckOptions};
use prost::Message;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const FILES: usize = 200;
const MESSAGES: usize = 20;
const FIELDS: usize = 20;
const TYPES: [&str; 6] = ["int64", "string", "int32", "bool", "bytes", "double"];

fn generate(dir: &Path, new: bool) -> usize {
    let mut changes = 0;
    for f in 0..FILES {
        let mut s = String::new();
        writeln!(s, "syntax = \"proto3\";\n\npackage bench.f{f}.v1;\n").unwrap();
        for m in 0..MESSAGES {
            // Every 50th message is deleted in the new version.
            if new && m >= 15 && (f * MESSAGES + m) % 50 == 7 {
                changes += 1;
                continue;
            }
            writeln!(s, "// Message {m} of file {f}.\nmessage M{m} {{").unwrap();
            for i in 1..=FIELDS {
                let k = f * 1000 + m * 50 + i;
                let mut ty = TYPES[k % TYPES.len()].to_string();
                let mut name = format!("field_{i}");
                if new {
                    match k % 997 {
                        3 => {
                            ty = if ty == "int64" {
                                "int32".into()
                            } else {
                                "sint64".into()
                            };
                            changes += 1;
                        }
                        5 => {
                            name = format!("renamed_{i}");
                            changes += 1;
                        }
                        11 => {
                            changes += 1;
                            continue; // deleted field
                        }
                        13 => {
                            ty = format!("repeated {ty}");
                            changes += 1;
                        }
                        _ => {}
                    }
                }
                writeln!(s, "  {ty} {name} = {i};").unwrap();
            }
            if new && m % 7 == 0 && f % 5 == 0 {
                writeln!(s, "  string added_{m} = {};", FIELDS + 1).unwrap();
                changes += 1;
            }
            writeln!(s, "}}\n").unwrap();
        }
        writeln!(s, "service S{f} {{").unwrap();
        for r in 0..5 {
            if new && (f + r) % 40 == 0 {
                changes += 1;
                continue;
            }
            let stream = if new && (f + r) % 45 == 1 {
                changes += 1;
                "stream "
            } else {
                ""
            };
            writeln!(
                s,
                "  rpc Call{r}({stream}M{}) returns (M{});",
                (r * 3) % 15,
                (r * 3 + 1) % 15
            )
            .unwrap();
        }
        writeln!(s, "}}").unwrap();
        std::fs::write(dir.join(format!("f{f:03}.proto")), s).unwrap();
    }
    changes
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(&new_dir).unwrap();
    generate(&old_dir, false);
    let changes = generate(&new_dir, true);
    let t = Instant::now();
    let mut paths = Vec::new();
    for (dir, name) in [(&old_dir, "old.binpb"), (&new_dir, "new.binpb")] {
        let (pool, names) = compat::source::compile_dir(dir, &[]).unwrap();
        let file = pool
            .file_descriptor_protos()
            .filter(|f| names.iter().any(|n| n == f.name()))
            .cloned()
            .collect();
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            prost_types::FileDescriptorSet { file }.encode_to_vec(),
        )
        .unwrap();
        paths.push(path);
    }
    println!(
        "API: {FILES} files x {MESSAGES} messages x {FIELDS} fields; {changes} generated changes; protox compiled both in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let buf = if std::env::var("SPEED_ONLY_OURS").is_ok() {
        None
    } else {
        buf_cli::find_buf()
    };
    if buf.is_none() {
        println!("buf not found: {}", buf_cli::INSTALL);
    }
    let (old_bytes, new_bytes) = (
        std::fs::read(&paths[0]).unwrap(),
        std::fs::read(&paths[1]).unwrap(),
    );
    println!(
        "| category | findings (ours / buf) | compat check ms | buf breaking ms | buf / compat |"
    );
    println!("|---|---|---|---|---|");
    for (name, cat) in [
        ("WIRE", Category::Wire),
        ("WIRE_JSON", Category::WireJson),
        ("FILE", Category::File),
    ] {
        let options = |confirm| CheckOptions {
            categories: vec![cat],
            map: vec![],
            auto_pair: false,
            confirm,
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut n_ours, mut n_buf) = (0, 0);
        for _ in 0..5 {
            let t = Instant::now();
            let old = Api::from_descriptor_set_bytes(&old_bytes, "old").unwrap();
            let new = Api::from_descriptor_set_bytes(&new_bytes, "new").unwrap();
            let report = compat::check(&old, &new, &options(true));
            ours.push(t.elapsed());
            n_ours = report.breaking().count();
            if let Some(buf) = &buf {
                let t = Instant::now();
                let out =
                    buf_cli::breaking(buf, tmp.path(), ["new.binpb", "old.binpb"], name, "v2")
                        .output()
                        .unwrap();
                theirs.push(t.elapsed());
                n_buf = String::from_utf8_lossy(&out.stdout).lines().count();
            }
        }
        // Where our time goes (one extra run): decoding, rules, wire confirmation.
        let t = Instant::now();
        let old = Api::from_descriptor_set_bytes(&old_bytes, "old").unwrap();
        let new = Api::from_descriptor_set_bytes(&new_bytes, "new").unwrap();
        let decode = t.elapsed();
        let t = Instant::now();
        let _ = compat::check(&old, &new, &options(false));
        let rules = t.elapsed();
        eprintln!(
            "{name}: decode {:.0} ms, rules {:.0} ms, rules + confirmation {:.0} ms",
            decode.as_secs_f64() * 1e3,
            rules.as_secs_f64() * 1e3,
            median(ours.clone()).as_secs_f64() * 1e3 - decode.as_secs_f64() * 1e3
        );
        let o = median(ours).as_secs_f64() * 1e3;
        if theirs.is_empty() {
            println!("| {name} | {n_ours} / - | {o:.1} | - | - |");
        } else {
            let b = median(theirs).as_secs_f64() * 1e3;
            println!(
                "| {name} | {n_ours} / {n_buf} | {o:.1} | {b:.1} | {:.1}x |",
                b / o
            );
        }
    }
}
