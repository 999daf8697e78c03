//! Scale benchmark: `testbed check` against `buf breaking` on a generated API of googleapis
//! size, protobuf editions and proto3 mixed, as a user runs them (source folders in, the real
//! commands, each a process of its own).
//!
//! Generates two versions of a 1,200-file API (a third proto3, a third `edition = "2023"`, a
//! third `edition = "2024"`; 20 messages of 20 fields and a service per file, every tenth file
//! importing the one before it) with about a thousand changes between them: type changes,
//! renames, deletions, fields made repeated, field presence changed by a feature, added
//! fields, removed and stream-changed methods, and proto3 files migrated to editions without
//! a change of meaning. Then times, alternating, `testbed check OLD NEW --category C --format
//! json` and `buf breaking NEW --against OLD` with `breaking.use: [C]`, wall time and peak
//! resident memory from `/usr/bin/time`, median of the rounds, and counts both tools' findings.
//!
//! `cargo build --release && cargo run --release -p compat --example scale [ROUNDS [DIR]]`
//! (DIR: generate there and keep it; ROUNDS 0: only generate; the testbed binary from `target/release/testbed` or `TESTBED`; buf from
//! `.tools/node_modules/.bin/buf` or PATH; editions files need protoc 27+, which `testbed
//! check` finds as it always does: `PROTOC`, PATH, or grpcio-tools in `.venv`).

#[path = "../tests/buf_cli.rs"]
mod buf_cli;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: usize = 1200;
const MESSAGES: usize = 20;
const FIELDS: usize = 20;
const TYPES: [&str; 6] = ["int64", "string", "int32", "bool", "bytes", "double"];

/// The syntax line of file `f`, in the old version and in the new one.
fn syntax(f: usize, new: bool) -> &'static str {
    match f % 3 {
        // Every fifth proto3 file moves to editions, keeping proto3's meaning.
        0 if new && f.is_multiple_of(5) => {
            "edition = \"2023\";\noption features.field_presence = IMPLICIT;"
        }
        0 => "syntax = \"proto3\";",
        1 => "edition = \"2023\";",
        _ => "edition = \"2024\";",
    }
}

fn generate(dir: &Path, new: bool) -> usize {
    let mut changes = 0;
    for f in 0..FILES {
        let mut s = String::new();
        writeln!(s, "{}\n\npackage bench.p{}.v1;\n", syntax(f, new), f / 10).unwrap();
        if f % 10 == 9 {
            writeln!(s, "import \"f{:04}.proto\";\n", f - 1).unwrap();
        }
        if new && f.is_multiple_of(3) && f.is_multiple_of(5) {
            changes += 1;
        }
        let editions = f % 3 != 0;
        for m in 0..MESSAGES {
            if new && m >= 15 && (f * MESSAGES + m) % 50 == 7 {
                changes += 1;
                continue;
            }
            writeln!(s, "// Message {m} of file {f}.\nmessage F{f}M{m} {{").unwrap();
            for i in 1..=FIELDS {
                let k = f * 1000 + m * 50 + i;
                let mut ty = TYPES[k % TYPES.len()].to_string();
                let mut name = format!("field{i}");
                let mut options = "";
                if new {
                    match k % 997 {
                        3 => {
                            ty = if ty == "int64" { "int32" } else { "sint64" }.into();
                            changes += 1;
                        }
                        5 => {
                            name = format!("renamed{i}");
                            changes += 1;
                        }
                        11 => {
                            changes += 1;
                            continue;
                        }
                        13 => {
                            ty = format!("repeated {ty}");
                            changes += 1;
                        }
                        17 if editions && !ty.starts_with("bytes") && ty != "string" => {
                            options = " [features.field_presence = IMPLICIT]";
                            changes += 1;
                        }
                        _ => {}
                    }
                }
                writeln!(s, "  {ty} {name} = {i}{options};").unwrap();
            }
            if new && m.is_multiple_of(7) && f.is_multiple_of(5) {
                writeln!(s, "  string added{m} = {};", FIELDS + 1).unwrap();
                changes += 1;
            }
            if f % 10 == 9 && m == 0 {
                writeln!(s, "  F{}M0 imported = {};", f - 1, FIELDS + 2).unwrap();
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
                "  rpc Call{r}({stream}F{f}M{}) returns (F{f}M{});",
                (r * 3) % 15,
                (r * 3 + 1) % 15
            )
            .unwrap();
        }
        writeln!(s, "}}").unwrap();
        std::fs::write(dir.join(format!("f{f:04}.proto")), s).unwrap();
    }
    changes
}

/// One timed run: wall seconds, peak resident KiB, exit code and stdout.
struct Run {
    seconds: f64,
    peak_kib: u64,
    code: i32,
    stdout: String,
    stderr: String,
}

/// `command` run in `dir` under `/usr/bin/time`.
fn timed(dir: &Path, command: &Command) -> Run {
    let report = dir.join("time.txt");
    let out = Command::new("/usr/bin/time")
        .current_dir(dir)
        .arg("-o")
        .arg(&report)
        .args(["-f", "%e %M"])
        .arg(command.get_program())
        .args(command.get_args())
        .output()
        .expect("/usr/bin/time runs (Debian's time package)");
    let text = std::fs::read_to_string(&report).expect("/usr/bin/time wrote its figures");
    // A command that exits non-zero makes time write "Command exited with non-zero status N"
    // before the figures.
    let figures = text.lines().last().unwrap_or_default();
    let (seconds, peak) = figures.split_once(' ').expect("%e %M");
    Run {
        seconds: seconds.parse().expect("seconds"),
        peak_kib: peak.trim().parse().expect("KiB"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |r| r.parse().expect("ROUNDS is a number"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let testbed = std::env::var_os("TESTBED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/testbed"));
    assert!(
        testbed.exists(),
        "{} not found: cargo build --release first, or set TESTBED",
        testbed.display()
    );
    let buf = buf_cli::find_buf().unwrap_or_else(|| panic!("buf not found: {}", buf_cli::INSTALL));
    // A folder given is kept, to look at or to run the commands on by hand.
    let tmp = tempfile::tempdir().unwrap();
    let work = std::env::args()
        .nth(2)
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let (old_dir, new_dir) = (work.join("old"), work.join("new"));
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(&new_dir).unwrap();
    generate(&old_dir, false);
    let changes = generate(&new_dir, true);
    let bytes: u64 = std::fs::read_dir(&new_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "API: {FILES} files ({} proto3, {} edition 2023, {} edition 2024 in the old version; \
         {} proto3 files move to editions in the new one), {MESSAGES} messages x {FIELDS} \
         fields each, {:.1} MB of source; {changes} generated changes; {rounds} rounds",
        FILES / 3,
        FILES / 3,
        FILES / 3,
        (0..FILES)
            .filter(|f| f.is_multiple_of(3) && f.is_multiple_of(5))
            .count(),
        bytes as f64 / 1e6
    );
    if rounds == 0 {
        return;
    }
    println!(
        "| category | findings (testbed / buf) | testbed check s | buf breaking s | buf / testbed | \
         testbed peak MB | buf peak MB |"
    );
    println!("|---|---|---|---|---|---|---|");
    let testbed = testbed.canonicalize().unwrap();
    for category in ["WIRE", "WIRE_JSON", "FILE"] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_peak, mut buf_peak) = (0, 0);
        let (mut n_ours, mut n_buf) = (0, 0);
        for _ in 0..rounds {
            let mut check = Command::new(&testbed);
            check.args(["check", "old", "new", "--category", category]);
            let run = timed(&work, check.args(["--format", "json"]));
            assert!(
                run.code == 0 || run.code == 100,
                "testbed check exited {}: {}",
                run.code,
                run.stderr
            );
            n_ours = run
                .stdout
                .lines()
                .filter(|l| l.contains("\"breaking\":true"))
                .count();
            ours.push(run.seconds);
            our_peak = our_peak.max(run.peak_kib);
            // A v1 configuration: folder inputs (see buf_cli::breaking); none of the generated
            // changes is one of the newer rules its categories lack.
            let breaking = buf_cli::breaking(&buf, &work, ["new", "old"], category, "v1");
            let run = timed(&work, &breaking);
            assert!(
                run.code == 0 || run.code == 100,
                "buf breaking exited {}: {}",
                run.code,
                run.stderr
            );
            n_buf = run.stdout.lines().count();
            theirs.push(run.seconds);
            buf_peak = buf_peak.max(run.peak_kib);
        }
        let (o, b) = (median(ours), median(theirs));
        println!(
            "| {category} | {n_ours} / {n_buf} | {o:.2} | {b:.2} | {:.1}x | {:.0} | {:.0} |",
            b / o,
            our_peak as f64 / 1024.0,
            buf_peak as f64 / 1024.0
        );
    }
}
