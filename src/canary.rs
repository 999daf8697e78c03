//! `testbed canary --admin ADDR --from OLD --to NEW`: a canary that reads gRPC. It raises the
//! new backend's weight step by step (the gateway's weighted split, `route weight`), judges each
//! interval from the gateway's per-backend figures (calls, errors by gRPC code, p99) against
//! the old backend's over the same interval, and on its own promotes the new one or rolls it
//! back to weight 0 (pinned calls only), printing each decision with its figures. The figures
//! come from the gateway's `/metrics` (`--metrics`) or from PromQL queries to a Prometheus
//! server (`--prometheus`), so the same gate works for any API behind the gateway and, with
//! other queries, in front of another proxy's metrics.
//!
//! Exit codes: 0 promoted, 100 rolled back (a threshold crossed), 3 rolled back because too
//! few calls reached the new backend to judge it, 1 an error (after rolling back when a
//! step had been taken).

pub mod drill;
mod exposition;
mod figures;
mod judge;
mod source;

use crate::route::Target;
use anyhow::{Context, bail};
use figures::Figures;
use judge::{Thresholds, Verdict, millis, percent};
use port::admin::AdminClient;
use port::admin::pb::{Backend, ListRequest, SetWeightRequest};
use serde_json::json;
use source::{Queries, Source};
use std::collections::BTreeSet;
use std::time::Duration;

/// The gRPC codes counted as errors unless `--error-codes` says otherwise: the server-side
/// failures (a caller's bad request is not the new build's fault).
pub const DEFAULT_ERROR_CODES: &str =
    "Unknown,DeadlineExceeded,Unimplemented,Internal,Unavailable,DataLoss";

/// The code names the gateway's metrics use (`grpc_code`).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// `testbed canary`.
#[derive(Debug, clap::Args)]
pub struct CanaryArgs {
    /// The backend that serves now (its calls are the baseline), as `route list` names it.
    #[arg(long)]
    pub from: String,
    /// The new backend, of the same package, whose weight the canary raises.
    #[arg(long)]
    pub to: String,
    /// The new backend's weights, in percent of the unpinned calls, one step per interval.
    #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
    pub steps: Vec<u8>,
    /// How long each step is watched (e.g. 30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How far the new backend's error rate may rise above the old one's over the same
    /// interval, in percentage points (1% or 0.01).
    #[arg(long, default_value = "1%", value_parser = fraction)]
    pub max_error_rate: f64,
    /// How many times the old backend's p99 the new one's may be (judged when both served at
    /// least 100 calls in the interval: from fewer, a p99 is only the slowest call).
    #[arg(long, default_value_t = 1.2, value_parser = crate::load::positive)]
    pub max_p99_ratio: f64,
    /// The gRPC codes that count as errors (names as in the metrics' grpc_code label).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_ERROR_CODES)]
    pub error_codes: Vec<String>,
    /// Calls the new backend must serve in an interval to be judged; with fewer the step is
    /// held for another interval (see --max-holds).
    #[arg(long, default_value_t = 50)]
    pub min_calls: u64,
    /// Intervals a step may be held for lack of calls before the canary rolls back (exit 3).
    #[arg(long, default_value_t = 3)]
    pub max_holds: u32,
    /// The gateway's metrics (`serve --metrics-addr`): HOST:PORT or an http:// URL.
    #[arg(
        long,
        value_name = "HOST:PORT|URL",
        required_unless_present = "prometheus"
    )]
    pub metrics: Option<String>,
    /// Judge from a Prometheus server (its base http:// URL) instead of scraping the gateway.
    #[arg(long, value_name = "URL", conflicts_with = "metrics")]
    pub prometheus: Option<String>,
    /// With --prometheus: the calls a backend ended in the interval. `$backend` is a regex of
    /// the backend's series, `$interval` the interval, `$codes` the error codes joined by |.
    #[arg(long, default_value = source::CALLS_QUERY, requires = "prometheus")]
    pub calls_query: String,
    /// With --prometheus: the calls that count as errors.
    #[arg(long, default_value = source::ERRORS_QUERY, requires = "prometheus")]
    pub errors_query: String,
    /// With --prometheus: the p99 handling time in seconds.
    #[arg(long, default_value = source::P99_QUERY, requires = "prometheus")]
    pub p99_query: String,
    /// The admin API, and --json for one JSON object per line.
    #[command(flatten)]
    pub target: Target,
}

/// `1%`, `0.5 %` or `0.01` as a fraction in [0, 1].
fn fraction(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(number) => (number.trim(), 100.0),
        None => (text.trim(), 1.0),
    };
    match number.parse::<f64>() {
        Ok(value) if (0.0..=scale).contains(&value) => Ok(value / scale),
        _ => Err(format!("{text:?} is not a rate such as 1% or 0.01")),
    }
}

/// The steps as given, or why they cannot be taken.
fn checked_steps(steps: &[u8]) -> anyhow::Result<()> {
    if steps.is_empty() {
        bail!("--steps needs at least one weight");
    }
    if steps
        .iter()
        .any(|&step| step == 0 || step > router::MAX_WEIGHT)
    {
        bail!("each of --steps must be 1 to 100 (percent of the unpinned calls)");
    }
    if steps.windows(2).any(|pair| pair[0] >= pair[1]) {
        bail!("--steps must rise: {steps:?}");
    }
    Ok(())
}

/// A backend of the table by the name `route weight` takes: its own, or its upstream's.
fn find<'a>(backends: &'a [Backend], name: &str) -> anyhow::Result<&'a Backend> {
    backends
        .iter()
        .find(|b| b.name == name || b.name.split('/').next() == Some(name))
        .with_context(|| {
            let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
            format!("no backend {name:?} in the table ({})", names.join(", "))
        })
}

/// The canary in progress: the admin client, and what it says (printed, and kept).
struct Canary<'a> {
    args: &'a CanaryArgs,
    admin: AdminClient,
    print: bool,
    events: Vec<serde_json::Value>,
}

impl Canary<'_> {
    fn say(&mut self, text: String, value: serde_json::Value) {
        if self.print && self.args.target.json {
            println!("{value}");
        } else if self.print {
            println!("{text}");
        }
        self.events.push(value);
    }

    async fn set_weight(&mut self, weight: Option<u8>) -> anyhow::Result<()> {
        self.admin
            .set_weight(SetWeightRequest {
                name: self.args.to.clone(),
                weight: weight.map(u32::from),
            })
            .await
            .map_err(|status| self.args.target.refused(status))?;
        Ok(())
    }

    /// Weight 0 on the new backend: unpinned calls go back to the old one.
    async fn roll_back(&mut self, why: &str, code: i32) -> anyhow::Result<i32> {
        self.set_weight(Some(0))
            .await
            .context("rolling the canary back (weight 0) failed")?;
        self.say(
            format!(
                "rolled back: {} is at weight 0 (pinned calls only): {why}",
                self.args.to
            ),
            json!({"event": "rolled back", "backend": self.args.to, "weight": 0, "why": why}),
        );
        Ok(code)
    }
}

fn describe(name: &str, figures: &Figures) -> String {
    format!(
        "{name}: {:.0} calls, {:.0} errors ({}), p99 {}",
        figures.calls,
        figures.errors,
        percent(figures.error_rate()),
        figures.p99.map_or("-".to_string(), millis)
    )
}

fn figures_json(figures: &Figures) -> serde_json::Value {
    json!({
        "calls": figures.calls,
        "errors": figures.errors,
        "error_rate": figures.error_rate(),
        "p99_seconds": figures.p99,
    })
}

/// How a canary ended: its exit code (see the module's documentation) and every event it
/// printed, as JSON (`start`, `interval`, then `promoted` or `rolled back`).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// 0 promoted, 100 rolled back, 3 too few calls.
    pub code: i32,
    /// The events, in order.
    pub events: Vec<serde_json::Value>,
}

/// Runs the canary, printing each event; its exit code (see the module's documentation).
pub async fn run(args: &CanaryArgs) -> anyhow::Result<i32> {
    Ok(drive(args, true).await?.code)
}

/// Runs the canary, printing each event when `print`.
pub async fn drive(args: &CanaryArgs, print: bool) -> anyhow::Result<Outcome> {
    checked_steps(&args.steps)?;
    let errors: BTreeSet<String> = args
        .error_codes
        .iter()
        .map(|c| c.trim().to_string())
        .collect();
    if let Some(unknown) = errors.iter().find(|c| !CODE_NAMES.contains(&c.as_str())) {
        bail!(
            "--error-codes: {unknown:?} is not a gRPC code name ({})",
            CODE_NAMES.join(", ")
        );
    }
    let source = match (&args.metrics, &args.prometheus) {
        (_, Some(url)) => Source::Prometheus(
            source::http_uri(url, "/")?,
            Queries {
                calls: args.calls_query.clone(),
                errors: args.errors_query.clone(),
                p99: args.p99_query.clone(),
            },
        ),
        (Some(addr), None) => Source::Scrape(source::http_uri(addr, "/metrics")?),
        (None, None) => bail!("give --metrics HOST:PORT or --prometheus URL"),
    };
    let mut admin = args.target.connect().await?;
    let table = admin
        .list(ListRequest {})
        .await
        .map_err(|status| args.target.refused(status))?
        .into_inner()
        .backends;
    let (old, new) = (find(&table, &args.from)?, find(&table, &args.to)?);
    let shared: Vec<&String> = new
        .serves
        .iter()
        .filter(|p| old.serves.contains(p))
        .collect();
    if shared.is_empty() {
        bail!(
            "{} serves {} and {} serves {}: a canary splits the calls of one package",
            args.from,
            old.serves.join(", "),
            args.to,
            new.serves.join(", ")
        );
    }
    let promote_by_clearing = match (
        old.version.parse::<semver::Version>(),
        new.version.parse::<semver::Version>(),
    ) {
        (Ok(old), Ok(new)) => new > old,
        _ => false,
    };
    let limits = Thresholds {
        max_error_rate: args.max_error_rate,
        max_p99_ratio: args.max_p99_ratio,
        min_calls: args.min_calls as f64,
    };
    let mut canary = Canary {
        args,
        admin,
        print,
        events: Vec::new(),
    };
    canary.say(
        format!(
            "canary: {} ({}) against {} ({}) for {}; steps {} %, {} each",
            args.to,
            new.version,
            args.from,
            old.version,
            shared
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            args.steps
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            humantime::format_duration(args.interval)
        ),
        json!({"event": "start", "from": args.from, "to": args.to, "steps": args.steps,
               "interval_seconds": args.interval.as_secs_f64()}),
    );
    let mut last_baseline: Option<Figures> = None;
    for &step in &args.steps {
        let stepped = run_step(
            &mut canary,
            &source,
            &errors,
            &limits,
            step,
            &mut last_baseline,
        )
        .await;
        match stepped {
            Ok(None) => {}
            Ok(Some((why, code))) => {
                let code = canary.roll_back(&why, code).await?;
                return Ok(Outcome {
                    code,
                    events: canary.events,
                });
            }
            Err(err) => {
                let why = format!("the canary could not go on: {err:#}");
                return match canary.roll_back(&why, 1).await {
                    Ok(_) => Err(err),
                    Err(also) => Err(err.context(format!("{also:#}"))),
                };
            }
        }
    }
    let (final_weight, how) = if promote_by_clearing {
        canary.set_weight(None).await?;
        (
            None,
            format!(
                "no weight: as the highest version, {} takes every unpinned call",
                args.to
            ),
        )
    } else {
        (
            Some(100),
            "weight 100 (it is not the higher version, so its weight stays set)".to_string(),
        )
    };
    canary.say(
        format!("promoted: {} has {how}", args.to),
        json!({"event": "promoted", "backend": args.to, "weight": final_weight}),
    );
    Ok(Outcome {
        code: 0,
        events: canary.events,
    })
}

/// One step: the weight set, then intervals watched until one is judged. `Some((why, exit
/// code))` when the canary must roll back.
async fn run_step(
    canary: &mut Canary<'_>,
    source: &Source,
    errors: &BTreeSet<String>,
    limits: &Thresholds,
    step: u8,
    last_baseline: &mut Option<Figures>,
) -> anyhow::Result<Option<(String, i32)>> {
    let args = canary.args;
    canary.set_weight(Some(step)).await?;
    let backends = [args.to.as_str(), args.from.as_str()];
    for held in 0..=args.max_holds {
        let start = source.start(backends).await?;
        tokio::time::sleep(args.interval).await;
        let [new, old] = source
            .finish(start, backends, args.interval, errors)
            .await?;
        let (baseline, baseline_from) = if old.calls >= limits.min_calls {
            *last_baseline = Some(old);
            (Some(old), "this interval")
        } else if last_baseline.is_some() {
            (*last_baseline, "an earlier interval")
        } else {
            (None, "none (judged against 0 errors, p99 not judged)")
        };
        let verdict = judge::judge(&new, baseline.as_ref(), limits);
        let p99_judged = [Some(&new), baseline.as_ref()]
            .iter()
            .all(|side| side.is_some_and(|f| f.p99.is_some() && f.calls >= judge::P99_MIN_CALLS));
        let p99_note = if p99_judged || verdict == Verdict::TooFewCalls {
            ""
        } else {
            " (p99 not judged: under 100 calls on a side)"
        };
        let (word, why) = match &verdict {
            Verdict::Pass => ("pass", String::new()),
            Verdict::TooFewCalls if held < args.max_holds => (
                "too few calls",
                format!(
                    "fewer than --min-calls {}; the step is held another interval",
                    args.min_calls
                ),
            ),
            Verdict::TooFewCalls => (
                "too few calls",
                format!("fewer than --min-calls {}", args.min_calls),
            ),
            Verdict::Fail(why) => ("fail", why.clone()),
        };
        canary.say(
            format!(
                "{step:>3} %  {} | {} (baseline from {baseline_from}) | {word}{}{p99_note}",
                describe(&args.to, &new),
                describe(&args.from, &old),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ),
            json!({"event": "interval", "step": step, "canary": figures_json(&new),
                   "old": figures_json(&old), "baseline_from": baseline_from,
                   "verdict": word, "why": why, "p99_judged": p99_judged}),
        );
        match verdict {
            Verdict::Pass => return Ok(None),
            Verdict::Fail(why) => return Ok(Some((format!("at {step} %: {why}"), 100))),
            Verdict::TooFewCalls => {}
        }
    }
    Ok(Some((
        format!(
            "at {step} %: fewer than {} calls reached {} in each of {} intervals; nothing was verified",
            args.min_calls,
            args.to,
            args.max_holds + 1
        ),
        3,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_steps_are_read_or_refused() {
        assert_eq!(fraction("1%"), Ok(0.01));
        assert_eq!(fraction("0.5 %"), Ok(0.005));
        assert_eq!(fraction("0.02"), Ok(0.02));
        assert!(fraction("101%").is_err() && fraction("2").is_err() && fraction("x").is_err());
        assert!(checked_steps(&[5, 25, 100]).is_ok());
        for bad in [&[][..], &[0, 50], &[50, 25], &[5, 5], &[101]] {
            assert!(checked_steps(bad).is_err(), "{bad:?}");
        }
    }
}
