//! The main job's section on an API the testbed did not write: the shop example's Python
//! servers put through `testbed replay` (the scenario against a compatible build, with a
//! second old instance for the noise, and against a build that sells 10 % cheaper) and
//! `testbed rollout --traffic` (a gateway moved from the old build to the compatible one under
//! the reads). Each is run as a user runs it, the testbed binary with `--json`, and must end
//! as the builds promise: 0 for the compatible build, 100 for the cheaper one.

use crate::canary::drill::shop_server;
use anyhow::Context;
use port::child::ChildServer;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long one command of the section may run (each takes a few seconds).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// One command of the section.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficRun {
    /// What it shows.
    pub name: String,
    /// The command line, servers as `OLD`, `OLD2` and `NEW`.
    pub command: String,
    /// Its exit code (0 ok, 100 a method broken or degraded, 3 inconclusive).
    pub exit_code: i32,
    /// Its `--json` report: the replay's, or the traffic rollout's with one per phase.
    pub report: Value,
}

/// The section: the runs, or why none ran.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficSection {
    /// The runs, in order.
    pub runs: Vec<TrafficRun>,
    /// Why none ran (no Python with grpcio), if so.
    pub skipped: Option<String>,
}

/// The shop example's servers the section runs against.
struct Shops {
    old: ChildServer,
    second: ChildServer,
    compatible: ChildServer,
    cheaper: ChildServer,
}

async fn shop(python: &Path, server: &Path, extra: &[&str]) -> anyhow::Result<ChildServer> {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(server)
        .args(["--version", "v1", "--addr", "127.0.0.1:0"])
        .args(extra);
    ChildServer::spawn(command, "shop v1 build").await
}

/// Runs `exe ARGS --json FILE` and reads what it wrote.
async fn run(exe: &Path, args: &[String]) -> anyhow::Result<(i32, Value)> {
    let dir = tempfile::Builder::new()
        .prefix("report-traffic")
        .tempdir()?;
    let json = dir.path().join("report.json");
    let child = tokio::process::Command::new(exe)
        .args(args)
        .arg("--json")
        .arg(&json)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, child)
        .await
        .with_context(|| {
            format!(
                "testbed {} did not end within {RUN_LIMIT:?}",
                args.join(" ")
            )
        })?
        .with_context(|| format!("cannot run testbed {}", args.join(" ")))?;
    let code = out.status.code().unwrap_or(-1);
    let report = std::fs::read(&json)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .with_context(|| {
            format!(
                "testbed {} wrote no report (exit {code}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok((code, report))
}

/// Runs the section with the testbed binary `exe`; without Python and grpcio (outside CI) it
/// says why instead.
pub async fn run_section(exe: &Path) -> anyhow::Result<TrafficSection> {
    let python = match client::tools::python() {
        Ok(python) => python,
        Err(missing) if std::env::var_os("CI").is_none() => {
            return Ok(TrafficSection {
                runs: Vec::new(),
                skipped: Some(missing.to_string()),
            });
        }
        Err(missing) => anyhow::bail!("{missing}"),
    };
    let server = shop_server()?;
    let examples = server
        .parent()
        .context("the shop server's folder")?
        .to_path_buf();
    let random = ["--order-ids", "random"];
    let shops = Shops {
        old: shop(&python, &server, &random).await?,
        second: shop(&python, &server, &random).await?,
        compatible: shop(
            &python,
            &server,
            &["--build", "minor", "--order-ids", "random"],
        )
        .await?,
        cheaper: shop(&python, &server, &["--discount", "10"]).await?,
    };
    let url = |s: &ChildServer| format!("grpc://{}", s.addr);
    let scenario = examples.join("scenario.jsonl").display().to_string();
    let reads = examples.join("reads.jsonl").display().to_string();
    let plan: [(&str, Vec<String>, i32); 3] = [
        (
            "a compatible build (a field added, random order ids) replayed: ok, the ids noise",
            vec![
                "replay".into(),
                scenario.clone(),
                "--old".into(),
                url(&shops.old),
                "--secondary".into(),
                url(&shops.second),
                "--new".into(),
                url(&shops.compatible),
            ],
            0,
        ),
        (
            "a build selling 10 % cheaper replayed: degraded at the prices",
            vec![
                "replay".into(),
                scenario,
                "--old".into(),
                url(&shops.old),
                "--new".into(),
                url(&shops.cheaper),
            ],
            100,
        ),
        (
            "a gateway rolled out from the old build to the compatible one under the reads",
            vec![
                "rollout".into(),
                "--traffic".into(),
                reads,
                "--old".into(),
                url(&shops.old),
                "--new".into(),
                url(&shops.compatible),
                "--phase-seconds".into(),
                "1".into(),
            ],
            0,
        ),
    ];
    let mut runs = Vec::new();
    for (name, args, expected) in plan {
        let (exit_code, report) = run(exe, &args).await?;
        let names = [
            (url(&shops.old), "OLD".to_string()),
            (url(&shops.second), "OLD2".to_string()),
            (url(&shops.compatible), "NEW".to_string()),
            (url(&shops.cheaper), "NEW".to_string()),
        ];
        // Whole arguments are replaced, so that one address is never taken for another's prefix.
        let shown: Vec<String> = args
            .iter()
            .map(|arg| {
                names
                    .iter()
                    .find(|(addr, _)| addr == arg)
                    .map_or_else(|| arg.clone(), |(_, name)| name.clone())
                    .replace(&format!("{}/", examples.display()), "examples/shop/")
            })
            .collect();
        let command = format!("testbed {}", shown.join(" "));
        anyhow::ensure!(
            exit_code == expected,
            "{command} exited {exit_code}, not {expected} as the builds promise: {report:#}"
        );
        runs.push(TrafficRun {
            name: name.to_string(),
            command,
            exit_code,
            report,
        });
    }
    Ok(TrafficSection {
        runs,
        skipped: None,
    })
}

/// Each table of a run's report: `(title, methods)`, one per phase of a rollout, one for a
/// replay.
pub(crate) fn tables(report: &Value) -> Vec<(String, &[Value])> {
    fn methods(v: &Value) -> &[Value] {
        v["methods"].as_array().map_or(&[][..], Vec::as_slice)
    }
    match report["phases"].as_array() {
        Some(phases) => phases
            .iter()
            .map(|p| {
                let served: Vec<String> = p["served_by"]
                    .as_object()
                    .map(|m| m.iter().map(|(v, n)| format!("{v} ×{n}")).collect())
                    .unwrap_or_default();
                (
                    format!(
                        "{}: {} calls, served by {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["calls"],
                        served.join(", ")
                    ),
                    methods(p),
                )
            })
            .collect(),
        None => vec![(format!("{} calls", report["sent"]), methods(report))],
    }
}

/// `path ×calls, ...` of a list of differences or noise, `–` when empty.
pub(crate) fn path_list(list: &Value) -> String {
    let all: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| format!("{} ×{}", d["path"].as_str().unwrap_or("?"), d["calls"]))
                .collect()
        })
        .unwrap_or_default();
    if all.is_empty() {
        "–".to_string()
    } else {
        all.join(", ")
    }
}

impl TrafficSection {
    /// The section for the terminal: per run its command, exit code and each method's verdict.
    pub fn render(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("Not run: {why}\n");
        }
        let mut out = String::from(
            "The shop example (Python grpcio), an API the testbed did not write: replays of the \
             scenario and a rollout under its reads, every reply compared with the old build's.\n",
        );
        for run in &self.runs {
            out.push_str(&format!(
                "\n### {}\n\n`{}`: exit {}\n\n",
                run.name, run.command, run.exit_code
            ));
            for (title, methods) in tables(&run.report) {
                out.push_str(&format!("{title}\n"));
                for m in methods {
                    out.push_str(&format!(
                        "- {}: {} calls, {} compared, differing {}, noise {}: {}\n",
                        m["method"].as_str().unwrap_or("?"),
                        m["calls"],
                        m["compared"],
                        path_list(&m["differences"]),
                        path_list(&m["noise"]),
                        m["verdict"].as_str().unwrap_or("?"),
                    ));
                }
            }
        }
        out
    }
}
