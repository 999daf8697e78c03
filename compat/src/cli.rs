//! The `testbed check` command: arguments and the function the binary dispatches to.

use crate::model::Category;
use crate::render::{Format, render};
use crate::source::Source;
use crate::{CheckOptions, DEFAULT_CATEGORIES};
use std::path::PathBuf;

/// `check OLD NEW`: breaking-change verdict for two versions of a gRPC API.
///
/// OLD and NEW are each a directory of `.proto` files, a binary `FileDescriptorSet` (`.binpb`
/// from `buf build -o`, `protoc -o`) or `grpc://HOST:PORT` (a running server, read by
/// reflection). Exit code 0: nothing breaks; 100: breaking findings; 1: bad input.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The old version: DIR, FILE.binpb or grpc://HOST:PORT.
    pub old: String,
    /// The new version: DIR, FILE.binpb or grpc://HOST:PORT.
    pub new: String,
    /// Extra import path for directory inputs (repeatable).
    #[arg(short = 'I', long = "include")]
    pub include: Vec<PathBuf>,
    /// Compare package OLD with package NEW (repeatable), e.g. --map increment.v1=increment.v2.
    /// Packages differing only in a trailing .vN pair automatically.
    #[arg(long = "map", value_parser = parse_map)]
    pub map: Vec<(String, String)>,
    /// Do not pair packages that differ only in a trailing .vN.
    #[arg(long)]
    pub no_auto_map: bool,
    /// Rule category (repeatable): WIRE, WIRE_JSON, FILE, PACKAGE, GRPC. Default: WIRE_JSON
    /// and GRPC (binary and JSON clients, plus what a live gRPC client notices).
    #[arg(long = "category", value_parser = parse_category)]
    pub category: Vec<Category>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The OLD version's semantic version; the output then names the next allowed version.
    #[arg(long)]
    pub current_version: Option<semver::Version>,
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("expected OLD=NEW, got {s:?}"))?;
    if a.is_empty() || b.is_empty() {
        return Err(format!("expected OLD=NEW, got {s:?}"));
    }
    Ok((a.to_string(), b.to_string()))
}

fn parse_category(s: &str) -> Result<Category, String> {
    Category::parse(s).ok_or_else(|| {
        format!("unknown category {s:?}: use WIRE, WIRE_JSON, FILE, PACKAGE or GRPC")
    })
}

/// Runs the check and writes the report to `out`. Returns the exit code (0 or 100); bad input
/// is an `Err`, which the binary turns into exit code 1.
pub async fn run(args: &CheckArgs, out: &mut impl std::io::Write) -> anyhow::Result<i32> {
    let old_src = Source::parse(&args.old);
    let new_src = Source::parse(&args.new);
    let old = old_src.load(&args.include).await?;
    let new = new_src.load(&args.include).await?;
    let options = CheckOptions {
        categories: if args.category.is_empty() {
            DEFAULT_CATEGORIES.to_vec()
        } else {
            args.category.clone()
        },
        map: args.map.clone(),
        auto_pair: !args.no_auto_map,
        confirm: true,
    };
    let report = crate::check_live(&old, &new, &options).await;
    let prefix = match &new_src {
        Source::Dir(d) => d.display().to_string(),
        _ => String::new(),
    };
    render(
        &report,
        args.format,
        args.current_version.as_ref(),
        &prefix,
        out,
    )?;
    Ok(report.exit_code())
}
