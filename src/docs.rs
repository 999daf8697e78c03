//! `testbed docs INPUT [--against OLD]`: documentation of any gRPC API, as one self-contained
//! HTML page and as Markdown. INPUT is anything `testbed check` reads (a folder of `.proto`
//! files, a `.proto` file, a descriptor set, a git revision, a live server by reflection); the
//! page gives per package its services and methods (streaming shapes, `google.api.http`
//! bindings), messages with field tables and enums, with the protos' comments and deprecations
//! ([`model`]). With `--against OLD` it opens with a changelog from OLD: the findings of the
//! very check `testbed check OLD INPUT` runs (a buf.yaml, ignore comments, `--accept`)
//! grouped into breaking (accepted breaks marked), added and patch changes, and the verdict.

mod html;
mod markdown;
pub mod model;

use anyhow::Context;
use compat::{Bump, Finding};
use model::VersionDoc;
use serde::Serialize;
use std::path::PathBuf;

/// `testbed docs`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DocsArgs {
    /// The API to document: DIR of .proto files, FILE.proto, FILE.binpb, a git revision
    /// (.git#branch=main,subdir=proto) or grpc://HOST:PORT (reflection: no comments).
    pub input: String,
    /// Open with the changelog from this older version (any input `check` reads).
    #[arg(long, value_name = "OLD")]
    pub against: Option<String>,
    /// Extra import path for .proto inputs (repeatable).
    #[arg(short = 'I', long = "include")]
    pub include: Vec<PathBuf>,
    /// With --against: accepted breaks, as `testbed check --accept` reads them.
    #[arg(long, value_name = "FILE", requires = "against")]
    pub accept: Option<PathBuf>,
    /// With --against: buf's breaking config (a buf.yaml, or its JSON), as `testbed check
    /// --config`; without it a buf.yaml at INPUT's root is read, as `check` does.
    #[arg(long, value_name = "FILE|JSON", requires = "against")]
    pub config: Option<String>,
    /// Write the HTML page here (self-contained: inline CSS, no script, no network).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write Markdown here (`-`: stdout). Without --html or --markdown, Markdown goes to stdout.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// What the page documents.
#[derive(Debug, Clone, Serialize)]
pub struct ApiDocs {
    /// The input, as given.
    pub input: String,
    /// Each package.
    pub versions: Vec<VersionDoc>,
    /// The changelog from `--against`, if given.
    pub changelog: Option<Changelog>,
}

/// The changes from an older version, grouped as a release note groups them.
#[derive(Debug, Clone, Serialize)]
pub struct Changelog {
    /// The older version, as given.
    pub against: String,
    /// The semver bump the changes require (`None`: nothing changed).
    pub verdict: Option<Bump>,
    /// Changes that break old clients, and breaks accepted (an accept file, an ignore comment
    /// or the config's `except`), marked so.
    pub breaking: Vec<Finding>,
    /// Additions: old clients keep working.
    pub added: Vec<Finding>,
    /// Changes no client can observe (comments, options outside the rules).
    pub patch: Vec<Finding>,
}

impl Changelog {
    fn of(against: &str, report: compat::Report) -> Self {
        let mut log = Changelog {
            against: against.to_string(),
            verdict: report.verdict,
            breaking: Vec::new(),
            added: Vec::new(),
            patch: Vec::new(),
        };
        for finding in report.findings {
            match (
                finding.breaking || finding.accepted.is_some(),
                finding.semver,
            ) {
                (true, _) | (_, Bump::Major) => log.breaking.push(finding),
                (false, Bump::Minor) => log.added.push(finding),
                (false, Bump::Patch) => log.patch.push(finding),
            }
        }
        log
    }
}

/// `testbed check OLD INPUT` with this command's flags, as its own parser reads them, so
/// that the changelog is the check's verdict (config, ignore comments, accept file and all).
#[derive(clap::Parser)]
struct CheckCommand {
    #[command(flatten)]
    args: compat::cli::CheckArgs,
}

fn check_args(args: &DocsArgs, against: &str) -> anyhow::Result<compat::cli::CheckArgs> {
    use clap::Parser as _;
    let mut argv = vec!["check".to_string(), against.to_string(), args.input.clone()];
    for dir in &args.include {
        argv.extend(["-I".to_string(), dir.display().to_string()]);
    }
    if let Some(file) = &args.accept {
        argv.extend(["--accept".to_string(), file.display().to_string()]);
    }
    if let Some(config) = &args.config {
        argv.extend(["--config".to_string(), config.clone()]);
    }
    Ok(CheckCommand::try_parse_from(argv)?.args)
}

/// Reads the input (and `--against`) and documents it.
pub async fn build(args: &DocsArgs) -> anyhow::Result<ApiDocs> {
    let (api, changelog) = match &args.against {
        Some(against) => {
            let (report, api) = compat::cli::checked(&check_args(args, against)?)
                .await
                .with_context(|| format!("cannot check {} against {against}", args.input))?;
            (api, Some(Changelog::of(against, report)))
        }
        None => {
            let api = compat::Source::parse(&args.input)
                .load(&args.include)
                .await
                .with_context(|| format!("cannot read {}", args.input))?;
            (api, None)
        }
    };
    Ok(ApiDocs {
        input: args.input.clone(),
        versions: model::versions(&api),
        changelog,
    })
}

/// `testbed docs`: writes the page and the Markdown as asked.
pub async fn run(args: &DocsArgs) -> anyhow::Result<()> {
    let docs = build(args).await?;
    anyhow::ensure!(
        !docs.versions.is_empty(),
        "{} declares no package of its own to document",
        args.input
    );
    if let Some(path) = &args.html {
        std::fs::write(path, html::page(&docs))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("HTML: {}", path.display());
    }
    let markdown = markdown::page(&docs);
    match &args.markdown {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::write(path, markdown)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("Markdown: {}", path.display());
        }
        Some(_) => print!("{markdown}"),
        None if args.html.is_none() => print!("{markdown}"),
        None => {}
    }
    Ok(())
}
