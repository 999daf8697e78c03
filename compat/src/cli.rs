//! The `testbed check` command: arguments and the function the binary dispatches to.

use crate::accept::AcceptFile;
use crate::config::BreakingConfig;
use crate::model::Category;
use crate::render::{Format, render};
use crate::source::{Api, Remote, Source};
use crate::{CheckOptions, DEFAULT_CATEGORIES};
use std::path::PathBuf;

/// `check OLD NEW`: breaking-change verdict for two versions of a gRPC API.
///
/// OLD and NEW are each a directory of `.proto` files, one `.proto` file, a binary
/// `FileDescriptorSet` (`.binpb` from `buf build -o`, `protoc -o`), a git revision in buf's
/// syntax (`.git#branch=main,subdir=proto`; also tag=, ref=, depth=) or a running server read
/// by reflection (`grpc://HOST:PORT`, `https://HOST:PORT`). Exit code 0: nothing breaks; 100:
/// breaking findings; 1: bad input.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The old version: DIR, FILE.proto, FILE.binpb, PATH.git#branch=B, grpc:// or https://.
    pub old: String,
    /// The new version: DIR, FILE.proto, FILE.binpb, PATH.git#branch=B, grpc:// or https://.
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
    /// Output format: text, json, github (workflow annotations; also github-actions) or
    /// sarif (SARIF 2.1.0 for code scanning). --error-format is the same flag, as buf names it.
    #[arg(long, alias = "error-format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Accepted breaks: a YAML file of entries {rule, element, reason, expires: YYYY-MM-DD}.
    /// Matching findings are listed as accepted and do not break; expired and stale entries
    /// are warned about.
    #[arg(long, value_name = "FILE")]
    pub accept: Option<PathBuf>,
    /// Write the breaking findings (after --accept) to FILE as accept entries with the reason
    /// "TODO: say why", for you to edit and pass to --accept.
    #[arg(long, value_name = "FILE")]
    pub write_accepted: Option<PathBuf>,
    /// Let --write-accepted overwrite an existing file.
    #[arg(long, requires = "write_accepted")]
    pub force: bool,
    /// The OLD version's semantic version; the output then names the next allowed version.
    #[arg(long)]
    pub current_version: Option<semver::Version>,
    /// Also compare a server's services of gRPC's own grpc.* packages (health, channelz):
    /// left out by default, as they are the server's plumbing, not its API.
    #[arg(long)]
    pub include_grpc_services: bool,
    /// Metadata sent with the reflection calls and the confirming calls to grpc:// and
    /// https:// inputs (repeatable), 'NAME: VALUE', e.g. -H 'authorization: Bearer T'.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = crate::probe::Header::parse)]
    pub header: Vec<crate::probe::Header>,
    /// TLS for https:// inputs.
    #[command(flatten)]
    pub tls: crate::connect::TlsArgs,
    /// buf's breaking configuration, a buf.yaml FILE or inline JSON ('{"version":"v2",
    /// "breaking":{"use":["WIRE"],"except":["FIELD_SAME_NAME"]}}'); by default the buf.yaml
    /// at the root of a NEW directory or git input (subdir=), when there is one. `use` (buf's default FILE),
    /// `except`, `ignore`, `ignore_only` and `ignore_unstable_packages` apply as in buf;
    /// --category replaces `use`.
    #[arg(long, value_name = "FILE|JSON")]
    pub config: Option<String>,
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
/// is an `Err`, which the binary turns into exit code 1. A reader that stops reading (`| head`)
/// ends the output, not the verdict: the exit code stays.
pub async fn run(args: &CheckArgs, out: &mut impl std::io::Write) -> anyhow::Result<i32> {
    let (report, _) = checked(args).await?;
    let written = render(&report, args.format, args.current_version.as_ref(), "", out)
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write the report"))
        }
        // Written, or the reader left early: the verdict stands either way.
        _ => Ok(report.exit_code()),
    }
}

/// The check `testbed check` runs, with everything that shapes its verdict (a buf.yaml, the
/// comment ignores, an accept file, the wire confirmations): the report and the NEW version it
/// read (`testbed docs --against` documents it beside its changelog).
pub async fn checked(args: &CheckArgs) -> anyhow::Result<(crate::Report, Api)> {
    let old_src = Source::parse(&args.old);
    let new_src = Source::parse(&args.new);
    let servers: Vec<String> = [&old_src, &new_src]
        .into_iter()
        .filter(|s| s.is_server())
        .map(Source::label)
        .collect();
    if servers.is_empty() && !args.header.is_empty() {
        anyhow::bail!(
            "-H adds metadata to the calls to grpc:// and https:// inputs; neither {} nor {} is one",
            args.old,
            args.new
        );
    }
    let tls = if servers.is_empty() && args.tls.ca.is_none() && args.tls.cert.is_none() {
        None
    } else if servers.is_empty() {
        anyhow::bail!("--ca, --cert and --key are for https:// inputs; neither input is one");
    } else {
        args.tls.client_tls(servers.iter().map(String::as_str))?
    };
    let remote = Remote {
        reflect: crate::ReflectOptions {
            headers: args.header.clone(),
            grpc_services: args.include_grpc_services,
        },
        tls,
    };
    let config = match (&args.config, &new_src) {
        (Some(flag), _) => Some(BreakingConfig::from_flag(flag).map_err(anyhow::Error::msg)?),
        (None, Source::Dir(dir)) => BreakingConfig::found_at(dir).map_err(anyhow::Error::msg)?,
        (None, Source::Git(input)) => {
            BreakingConfig::found_in_git(input).map_err(anyhow::Error::msg)?
        }
        (None, _) => None,
    };
    let config = match config {
        Some(c) if !args.category.is_empty() => Some(c.with_categories(&args.category)),
        c => c,
    };
    let accept = match &args.accept {
        Some(path) => Some((AcceptFile::load(path)?, crate::accept::today()?)),
        None => None,
    };
    if let Some(path) = &args.write_accepted
        && path.exists()
        && !args.force
    {
        anyhow::bail!(
            "{} exists; --force overwrites it (or edit it and pass it to --accept)",
            path.display()
        );
    }
    let old = old_src.load_with(&args.include, &remote).await?;
    let new = new_src.load_with(&args.include, &remote).await?;
    let options = CheckOptions {
        categories: match (&config, args.category.is_empty()) {
            (Some(c), _) => c.categories(),
            (None, true) => DEFAULT_CATEGORIES.to_vec(),
            (None, false) => args.category.clone(),
        },
        map: args.map.clone(),
        auto_pair: !args.no_auto_map,
        confirm: true,
    };
    let mut report = crate::check_live_with(&old, &new, &options, &args.header).await;
    if let Some(config) = &config {
        config.apply(&mut report, &old, &new);
    }
    let prefix = match &new_src {
        Source::Dir(d) => d.display().to_string(),
        Source::ProtoFile(f) => f
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        Source::Git(g) => crate::git::GitInput::parse(g)
            .ok()
            .and_then(|g| g.subdir)
            .unwrap_or_default(),
        _ => String::new(),
    };
    crate::ignores::apply(&crate::ignores::collect(&new, &prefix)?, &mut report);
    if let (Some((file, today)), Some(path)) = (&accept, &args.accept) {
        file.apply(&mut report, &path.display().to_string(), *today);
    }
    if let Some(path) = &args.write_accepted {
        AcceptFile::from_report(&report).write(path, args.force)?;
    }
    crate::columns::fill(&mut report, &new);
    // From here on files are named as buf names them: under the NEW input's root.
    for f in report.findings.iter_mut().filter(|f| !f.path.is_empty()) {
        f.path = crate::render::under_root(&prefix, &f.path);
    }
    Ok((report, new))
}

/// `probe --old grpc://A --new grpc://B`: each version's clients call the other version's
/// server, every method, and the replies are read with the caller's descriptors.
///
/// Requests: the empty message, every field set to ordinary values (once per oneof member;
/// --edge-values for values that expose changes), and each `--request`. Each call also goes
/// twice to the caller's own server, the baseline for the verdict (what differs between its two
/// answers is not compared). The probe calls every method, including ones that change state,
/// unless --read-only, --method, --skip or --samples-only say otherwise: point it at test
/// servers. Servers may be `https://HOST:PORT` (TLS, trusted with --ca; --cert and --key for
/// mutual TLS), and -H adds metadata to every call. Exit code 0: old clients are unaffected;
/// 100: they are not (a method broken, degraded or changed); 3: none is affected but some
/// method is inconclusive (no call succeeded on the own server; --allow-inconclusive: 0);
/// 1: an error; 2: bad flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeInput {
    /// The old version's server, grpc://HOST:PORT or https://HOST:PORT (TLS) (descriptors by
    /// reflection unless --old-descriptors).
    #[arg(long, value_parser = parse_server)]
    pub old: String,
    /// The new version's server, grpc://HOST:PORT or https://HOST:PORT (TLS) (descriptors by
    /// reflection unless --new-descriptors).
    #[arg(long, value_parser = parse_server)]
    pub new: String,
    /// The old version's descriptors from DIR (.proto files) or FILE.binpb instead of reflection.
    #[arg(long, value_name = "PATH")]
    pub old_descriptors: Option<String>,
    /// The new version's descriptors from DIR or FILE.binpb instead of reflection.
    #[arg(long, value_name = "PATH")]
    pub new_descriptors: Option<String>,
    /// Extra import path for directory descriptors (repeatable).
    #[arg(short = 'I', long = "include")]
    pub include: Vec<PathBuf>,
    /// Send every call to this gateway (HOST:PORT or https://HOST:PORT, e.g. `testbed serve
    /// --upstream ...`) instead of the other server; each client calls its own paths and the
    /// gateway routes them.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_server)]
    pub via: Option<String>,
    /// Call package NEW on the new server for OLD's methods (repeatable). Packages differing
    /// only in a trailing .vN pair automatically, as in `check`.
    #[arg(long = "map", value_name = "OLD=NEW", value_parser = parse_map)]
    pub map: Vec<(String, String)>,
    /// Call the new server at the old paths unchanged (no .vN pairing): what an old client
    /// pointed at the new server gets.
    #[arg(long)]
    pub no_auto_map: bool,
    /// A request of your own besides the generated ones, METHOD=JSON (repeatable); METHOD is
    /// pkg.Service/Method, or Service/Method for that method in both versions.
    #[arg(long = "request", value_name = "METHOD=JSON", value_parser = crate::probe::Seed::parse)]
    pub request: Vec<crate::probe::Seed>,
    /// Call only the methods matching PATTERN (repeatable): pkg.Service/Method or
    /// Service/Method, globs allowed (Shop/Get*). With --read-only: call these besides the
    /// read-only ones.
    #[arg(long = "method", value_name = "PATTERN", value_parser = crate::probe::MethodPattern::parse)]
    pub method: Vec<crate::probe::MethodPattern>,
    /// Do not call the methods matching PATTERN (repeatable; as --method).
    #[arg(long = "skip", value_name = "PATTERN", value_parser = crate::probe::MethodPattern::parse)]
    pub skip: Vec<crate::probe::MethodPattern>,
    /// Call only methods declared free of side effects (idempotency_level NO_SIDE_EFFECTS or
    /// IDEMPOTENT), and those named with --method.
    #[arg(long)]
    pub read_only: bool,
    /// Send only the --request samples, no generated requests; methods without one are skipped.
    #[arg(long)]
    pub samples_only: bool,
    /// Fill generated requests with the edge values that expose schema changes (1099511627783
    /// for an int64, the maximum for unsigned types, "héllo" for a string) instead of ordinary
    /// ones (7, "probe").
    #[arg(long)]
    pub edge_values: bool,
    /// Exit 0 rather than 3 when some methods are inconclusive (no call succeeded on the
    /// caller's own server) and none is affected.
    #[arg(long)]
    pub allow_inconclusive: bool,
    /// Each call's deadline in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: std::time::Duration,
    /// How much of each call's replies is read.
    #[command(flatten)]
    pub limits: crate::probe::ReplyLimits,
    /// Metadata sent with every call (repeatable), 'NAME: VALUE', e.g. -H 'x-api-version: ^1'
    /// to pin a version through a gateway. Not sent with the reflection calls that read the
    /// descriptors.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = crate::probe::Header::parse)]
    pub header: Vec<crate::probe::Header>,
    /// Metadata sent only with old clients' calls (repeatable), after -H.
    #[arg(long = "old-header", value_name = "NAME: VALUE", value_parser = crate::probe::Header::parse)]
    pub old_header: Vec<crate::probe::Header>,
    /// Metadata sent only with new clients' calls (repeatable), after -H.
    #[arg(long = "new-header", value_name = "NAME: VALUE", value_parser = crate::probe::Header::parse)]
    pub new_header: Vec<crate::probe::Header>,
    /// TLS for https:// servers.
    #[command(flatten)]
    pub tls: crate::connect::TlsArgs,
}

/// `grpc://HOST:PORT` and `HOST:PORT` become `HOST:PORT` (plaintext); `https://HOST:PORT`
/// stays so (TLS).
pub fn parse_server(s: &str) -> Result<String, String> {
    let (scheme, addr) = match (s.strip_prefix("https://"), s.strip_prefix("grpc://")) {
        (Some(addr), _) => ("https://", addr),
        (None, Some(addr)) => ("", addr),
        (None, None) => ("", s),
    };
    if addr
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || h.contains('/') || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "expected grpc://HOST:PORT or https://HOST:PORT of a running server, got {s:?} (a proto directory or descriptor set goes in --old-descriptors / --new-descriptors)"
        ));
    }
    Ok(format!("{scheme}{addr}"))
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("expected seconds, got {s:?}"))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!(
            "the deadline must be above 0 and at most 3600 seconds, got {s}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Loads both sides' descriptors and runs the probe; bad input and unreachable servers are an
/// `Err` (exit code 1). The caller renders the report ([`crate::probe::render_text`], JSON).
pub async fn probe(args: &ProbeInput) -> anyhow::Result<crate::probe::ProbeReport> {
    use crate::probe::{ProbeOptions, Side};
    let servers = [Some(&args.old), Some(&args.new), args.via.as_ref()];
    let tls = args
        .tls
        .client_tls(servers.into_iter().flatten().map(String::as_str))?;
    let side = |addr: &String, descriptors: &Option<String>| {
        let addr = addr.clone();
        let source = descriptors.as_deref().map(Source::parse);
        let tls = tls.as_ref();
        async move {
            let api = match source {
                Some(source) => source.load(&args.include).await?,
                None => crate::probe::reflect(&addr, tls).await?,
            };
            anyhow::Ok(Side { addr, api })
        }
    };
    let old = side(&args.old, &args.old_descriptors).await?;
    let new = side(&args.new, &args.new_descriptors).await?;
    let options = ProbeOptions {
        via: args.via.clone(),
        map: args.map.clone(),
        auto_pair: !args.no_auto_map,
        timeout: args.timeout,
        limits: args.limits,
        seeds: args.request.clone(),
        tls,
        headers: args.header.clone(),
        old_headers: args.old_header.clone(),
        new_headers: args.new_header.clone(),
        select: crate::probe::Selection {
            methods: args.method.clone(),
            skip: args.skip.clone(),
            read_only: args.read_only,
            samples_only: args.samples_only,
        },
        edge_values: args.edge_values,
        allow_inconclusive: args.allow_inconclusive,
    };
    crate::probe::probe(&old, &new, &options).await
}

/// `replay FILE... --old grpc://A --new grpc://B`: each call of the traffic files (recorded by
/// `serve --record`, or a scenario written by hand) goes to OLD, to a second old instance
/// (--secondary; else OLD again) and to NEW; replies are read with OLD's descriptors and
/// compared field by field.
///
/// Fields that differ between the two old answers are noise and not compared; --ignore leaves
/// out more (timestamps, generated ids). A request field "${NAME.PATH}" takes the value of an
/// earlier call's reply on the same server (create, then get). Every line is checked against
/// OLD's descriptors before the first call. The replay sends every call of the files, including
/// ones that change state: point it at test servers. Exit code 0: NEW answers as OLD does;
/// 100: a method is broken (another status) or degraded (other values); 3: none is, but some
/// method is inconclusive (no reply compared; --allow-inconclusive: 0); 1: an error;
/// 2: bad flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayInput {
    /// Traffic files, JSON lines (one call per line), replayed in order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The old server (the baseline), grpc://HOST:PORT or https://HOST:PORT.
    #[arg(long, value_parser = parse_server)]
    pub old: String,
    /// The new server (the candidate), grpc://HOST:PORT or https://HOST:PORT.
    #[arg(long, value_parser = parse_server)]
    pub new: String,
    /// How replies are compared with OLD's.
    #[command(flatten)]
    pub baseline: Baseline,
}

/// How traffic is sent and compared with the old server's answers, the baseline: shared by
/// `testbed replay`, the load that sends a traffic file (`mixed --traffic`, `rollout
/// --traffic`) and `matrix --traffic`. Each flag needs the traffic files (an argument of id
/// `files`), so that none is silently ignored without them.
#[derive(Debug, Clone, clap::Args)]
pub struct Baseline {
    /// A second server of the old version: what differs between its answers and OLD's is
    /// noise. Without it OLD is asked twice.
    #[arg(long, value_parser = parse_server, requires = "files")]
    pub secondary: Option<String>,
    /// OLD's descriptors from DIR (.proto files) or FILE.binpb instead of reflection.
    #[arg(long, value_name = "PATH", requires = "files")]
    pub descriptors: Option<String>,
    /// Extra import path for directory descriptors (repeatable).
    #[arg(short = 'I', long = "include", requires = "files")]
    pub include: Vec<PathBuf>,
    /// Call package NEW on the new server for the traffic's package OLD (repeatable), e.g.
    /// --map shop.v1=shop.v2; without it NEW is called at the recorded paths.
    #[arg(long = "map", value_name = "OLD=NEW", value_parser = parse_map, requires = "files")]
    pub map: Vec<(String, String)>,
    /// Do not compare this reply field (repeatable): [METHOD:]PATH, PATH a glob over the field
    /// path without indices (created_at, lines.quantity, Shop/PlaceOrder:order_id).
    #[arg(long = "ignore", value_name = "[METHOD:]PATH", value_parser = crate::replay::Ignore::parse, requires = "files")]
    pub ignore: Vec<crate::replay::Ignore>,
    /// Exit 0 rather than 3 when some methods are inconclusive and none differs.
    #[arg(long, requires = "files")]
    pub allow_inconclusive: bool,
    /// Each call's deadline in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: std::time::Duration,
    /// How much of each call's replies is read.
    #[command(flatten)]
    pub limits: crate::probe::ReplyLimits,
    /// How much of the traffic files is read.
    #[command(flatten)]
    pub read: crate::traffic::ReadLimits,
    /// Metadata sent with every call (repeatable), 'NAME: VALUE', replacing a recorded entry
    /// of the same name: credentials, which recordings leave out.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = crate::probe::Header::parse, requires = "files")]
    pub header: Vec<crate::probe::Header>,
    /// TLS for https:// servers.
    #[command(flatten)]
    pub tls: crate::connect::TlsArgs,
}

impl Baseline {
    /// Reads the traffic `files` and the descriptors of `old` (from `--descriptors`, else by
    /// reflection): the lines and how to replay them against `old` and `new`.
    pub async fn load(
        &self,
        files: &[PathBuf],
        old: &str,
        new: &str,
    ) -> anyhow::Result<(Vec<crate::traffic::Line>, crate::replay::ReplayOptions)> {
        let servers = [Some(old), Some(new), self.secondary.as_deref()];
        let tls = self.tls.client_tls(servers.into_iter().flatten())?;
        let lines = crate::traffic::read(files, self.read)?;
        let api = match self.descriptors.as_deref().map(Source::parse) {
            Some(source) => source.load(&self.include).await?,
            None => crate::probe::reflect(old, tls.as_ref()).await?,
        };
        let options = crate::replay::ReplayOptions {
            old: old.to_string(),
            new: new.to_string(),
            secondary: self.secondary.clone(),
            api,
            map: self.map.clone(),
            timeout: self.timeout,
            limits: self.limits,
            headers: self.header.clone(),
            tls,
            ignore: self.ignore.clone(),
            allow_inconclusive: self.allow_inconclusive,
        };
        Ok((lines, options))
    }
}

/// Reads the traffic files and OLD's descriptors and runs the replay; bad input and
/// unreachable servers are an `Err` (exit code 1).
pub async fn replay(args: &ReplayInput) -> anyhow::Result<crate::replay::ReplayReport> {
    let (lines, options) = args
        .baseline
        .load(&args.files, &args.old, &args.new)
        .await?;
    let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    crate::replay::replay(&files, &lines, &options).await
}
