//! Load from a traffic file, for any API: `testbed mixed --traffic` and `testbed rollout
//! --traffic`. N clients, each on connections of its own, send the traffic (recorded by `serve
//! --record`, or a scenario) again and again to the target, the user's gateway; every call also
//! goes to OLD twice (or to OLD and a second OLD) and the target's reply is compared with OLD's
//! field by field, as `testbed replay` compares ([`compat::replay::Replayer`]). Per phase the
//! report gives, per method, the statuses, the fields differing and the noise, and the
//! target's latency and the versions that served it.
//!
//! Before any load, [`check_serves`] sends the traffic once and stops with a message naming
//! each method the target does not serve, so that a wrong address fails at once instead of
//! after thousands of doomed calls.

mod report;

pub use report::{TrafficLoadReport, TrafficPhase};

use anyhow::Context;
use compat::cli::Baseline;
use compat::replay::{Outcome, ReplayOptions, Replayer, Tally};
use compat::traffic::Line;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;

/// What a reply that carried no `x-api-version` is counted as served by.
const NO_VERSION_HEADER: &str = crate::load::NO_VERSION_HEADER;

/// The `--traffic` flags: which traffic, how many clients, and the baseline it is compared
/// with.
#[derive(Debug, Clone, clap::Args)]
pub struct TrafficArgs {
    /// Load with this traffic file's calls instead of the Incrementer's (repeatable): JSON
    /// lines as `testbed replay` reads them, sent again and again by each client, every reply
    /// compared with OLD's (--old). Before any load the traffic is sent once to check that the
    /// target serves its methods. Sends every call, writes included: use test deployments.
    #[arg(long = "traffic", value_name = "FILE", conflicts_with_all = ["v1_clients", "v2_clients", "open_loop"])]
    pub files: Vec<PathBuf>,
    /// With --traffic: clients, each sending the traffic on connections of its own.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub traffic_clients: u16,
    /// With --traffic: the old version's server (grpc://HOST:PORT or https://HOST:PORT),
    /// whose replies are the baseline.
    #[arg(long, value_parser = compat::cli::parse_server, requires = "files")]
    pub old: Option<String>,
    /// With --traffic: how replies are compared with OLD's.
    #[command(flatten)]
    pub baseline: Baseline,
}

impl TrafficArgs {
    /// Whether `--traffic` was given.
    pub fn given(&self) -> bool {
        !self.files.is_empty()
    }

    /// Reads the traffic and OLD's descriptors: the replayer that sends it to OLD and `target`.
    pub async fn replayer(&self, target: &str) -> anyhow::Result<(Replayer, ReplayOptions)> {
        let (lines, options) = self.load(target).await?;
        Ok((Replayer::new(&lines, &options)?, options))
    }

    /// Reads the traffic and OLD's descriptors (once: a rollout replays them to NEW and then
    /// to its gateway): the calls, and how to send them to OLD and `target`.
    pub async fn load(&self, target: &str) -> anyhow::Result<(Vec<Line>, ReplayOptions)> {
        let old = self.old.as_deref().context(
            "--traffic needs --old: the old version's server, whose replies are the baseline",
        )?;
        let (lines, options) = self.baseline.load(&self.files, old, target).await?;
        anyhow::ensure!(!lines.is_empty(), "the traffic files hold no call");
        Ok((lines, options))
    }

    /// The traffic files' names.
    pub fn names(&self) -> Vec<String> {
        self.files.iter().map(|f| f.display().to_string()).collect()
    }
}

/// Whether `code` says the call got no answer from a server (not reached, cut off, timed out).
fn unanswered(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
    )
}

/// Sends the traffic once to OLD and `replayer`'s target (`what` names it in messages), and
/// fails at the first call the target leaves unanswered (not reached, cut off, past its
/// deadline) where OLD answered otherwise: a check must not wait out every call of a silent
/// server. A call both leave past its deadline is the traffic's own shape and passes. It also
/// fails when no call could be sent, when OLD answered every call UNAVAILABLE (one such answer
/// may be OLD's own), and names every method the target answers `UNIMPLEMENTED` where OLD does
/// not.
pub async fn check_serves(replayer: &Replayer, what: &str) -> anyhow::Result<()> {
    let lanes = replayer.connect_naming(what).await?;
    let names: Vec<String> = replayer
        .tallies()
        .iter()
        .map(|t| t.called().to_string())
        .collect();
    let mut missing: BTreeMap<usize, String> = BTreeMap::new();
    let (mut answered, mut unsent, mut old_unavailable) = (0, Vec::new(), Vec::new());
    let mut session = replayer.session(&lanes);
    while let Some((tally, at, outcome)) = session.next().await {
        let answers = match outcome {
            Outcome::Answered(answers, _) => answers,
            Outcome::Unsent(why) => {
                unsent.push(format!("{at}: {why}"));
                continue;
            }
        };
        answered += 1;
        let (old, new) = (&answers.old, &answers.new);
        if old.code == Code::Unavailable {
            old_unavailable.push(format!("{at}: {}", old.message));
        }
        anyhow::ensure!(
            !unanswered(new.code) || new.code == old.code,
            "{what} did not answer {at} ({:?}: {}) where OLD answered {:?}; nothing was loaded",
            new.code,
            new.message,
            old.code
        );
        if new.code == Code::Unimplemented && old.code != Code::Unimplemented {
            missing.entry(tally).or_insert_with(|| new.message.clone());
        }
    }
    anyhow::ensure!(
        answered > 0,
        "no call of the traffic could be sent ({}); nothing was loaded",
        unsent.join("; ")
    );
    // One UNAVAILABLE may be OLD's own answer; every call's is OLD not there.
    anyhow::ensure!(
        old_unavailable.len() < answered,
        "OLD answered UNAVAILABLE to every call of the traffic ({}); nothing was loaded",
        old_unavailable.first().map_or("", String::as_str)
    );
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(i, message)| format!("{} (UNIMPLEMENTED: {message})", names[*i]))
            .collect();
        anyhow::bail!(
            "{what} does not serve {} of the traffic's {} methods, which OLD serves: {}; nothing was loaded",
            missing.len(),
            names.len(),
            list.join(", ")
        );
    }
    Ok(())
}

/// What the clients saw in one phase.
#[derive(Debug)]
struct PhaseFigures {
    name: String,
    methods: Vec<Tally>,
    calls: u64,
    sent: u64,
    latency: Histogram<u64>,
    served_by: BTreeMap<String, u64>,
}

impl PhaseFigures {
    fn new(name: &str, replayer: &Replayer) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_string(),
            methods: replayer.tallies(),
            calls: 0,
            sent: 0,
            latency: Histogram::new_with_bounds(1, 600_000_000_000, 3)
                .context("latency histogram")?,
            served_by: BTreeMap::new(),
        })
    }

    fn count(&mut self, tally: usize, at: &str, outcome: &Outcome) {
        self.calls += 1;
        if let Some(method) = self.methods.get_mut(tally) {
            outcome.count(method, at);
        }
        if let Outcome::Answered(answers, took) = outcome {
            self.sent += 1;
            // Left unanswered by the target, not as OLD left it too (the traffic's own shape).
            if unanswered(answers.new.code) && answers.new.code != answers.old.code {
                return;
            }
            // Past the histogram's ten minutes a call is counted at its top.
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            self.latency.saturating_record(nanos.max(1));
            let by = answers
                .new
                .served_by
                .as_deref()
                .unwrap_or(NO_VERSION_HEADER);
            *self.served_by.entry(by.to_string()).or_default() += 1;
        }
    }
}

/// How the clients send.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Clients.
    pub clients: u16,
    /// Stop each client after this many calls.
    pub calls_per_client: Option<u64>,
    /// Each client's calls per second (else back to back).
    pub rate_per_client: Option<f64>,
}

/// A traffic load in progress.
#[derive(Debug)]
pub struct TrafficLoad {
    replayer: Arc<Replayer>,
    stop: watch::Sender<bool>,
    phase: Arc<AtomicUsize>,
    figures: Arc<Mutex<Vec<PhaseFigures>>>,
    completed: Arc<AtomicU64>,
    started: Instant,
    tasks: Vec<JoinHandle<()>>,
}

impl TrafficLoad {
    /// Connects every client (each to OLD, the second OLD and the target) and starts them;
    /// the first phase is named `phase`.
    pub async fn start(replayer: Replayer, pace: Pace, phase: &str) -> anyhow::Result<Self> {
        let replayer = Arc::new(replayer);
        let figures = Arc::new(Mutex::new(vec![PhaseFigures::new(phase, &replayer)?]));
        let (stop, stopped) = watch::channel(false);
        let current = Arc::new(AtomicUsize::new(0));
        let completed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..pace.clients {
            let client = Client {
                lanes: replayer.connect_naming("the target").await?,
                replayer: replayer.clone(),
                pace,
                stopped: stopped.clone(),
                phase: current.clone(),
                figures: figures.clone(),
                completed: completed.clone(),
            };
            tasks.push(tokio::spawn(client.run()));
        }
        Ok(Self {
            replayer,
            stop,
            phase: current,
            figures,
            completed,
            started: Instant::now(),
            tasks,
        })
    }

    /// Starts a new phase: calls sent from now on are counted under `name`.
    pub fn next_phase(&mut self, name: &str) -> anyhow::Result<()> {
        let next = PhaseFigures::new(name, &self.replayer)?;
        let mut figures = self.figures.lock().unwrap_or_else(PoisonError::into_inner);
        figures.push(next);
        self.phase.store(figures.len() - 1, Ordering::Release);
        Ok(())
    }

    /// Calls completed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Whether every client has finished by itself (after its call count).
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Stops the clients (each finishes its call in flight) and reports per phase, judged
    /// with `options`' ignore rules.
    pub async fn stop(self, options: &ReplayOptions) -> anyhow::Result<(Vec<TrafficPhase>, f64)> {
        // Clients that already finished no longer listen; that is fine.
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.context("a traffic client panicked")?;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let figures =
            std::mem::take(&mut *self.figures.lock().unwrap_or_else(PoisonError::into_inner));
        Ok((
            figures
                .into_iter()
                .map(|f| TrafficPhase::of(f, &options.ignore))
                .collect(),
            seconds,
        ))
    }
}

/// One client: the traffic again and again, until stopped or its call count is reached.
struct Client {
    replayer: Arc<Replayer>,
    lanes: compat::replay::Lanes,
    pace: Pace,
    stopped: watch::Receiver<bool>,
    phase: Arc<AtomicUsize>,
    figures: Arc<Mutex<Vec<PhaseFigures>>>,
    completed: Arc<AtomicU64>,
}

impl Client {
    async fn run(mut self) {
        let mut ticks = self.pace.rate_per_client.map(|rate| {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        let mut sent = 0u64;
        loop {
            // A pass whose calls all stay unsent awaits nothing: let the other tasks run.
            tokio::task::yield_now().await;
            let mut session = self.replayer.session(&self.lanes);
            loop {
                if *self.stopped.borrow() || self.pace.calls_per_client.is_some_and(|n| sent >= n) {
                    return;
                }
                if let Some(ticks) = ticks.as_mut() {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = self.stopped.changed() => return,
                    }
                }
                let phase = self.phase.load(Ordering::Acquire);
                let Some((tally, at, outcome)) = session.next().await else {
                    break;
                };
                sent += 1;
                self.completed.fetch_add(1, Ordering::Relaxed);
                let mut figures = self.figures.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(figures) = figures.get_mut(phase) {
                    figures.count(tally, at, &outcome);
                }
            }
        }
    }
}

/// `testbed mixed --traffic`: the traffic from `pace.clients` clients against the gateway at
/// `target` for `seconds` (or each client's call count), after [`check_serves`].
/// `progress` is told the calls completed so far, every 50 ms.
pub async fn mixed(
    args: &TrafficArgs,
    target: &str,
    seconds: f64,
    pace: Pace,
    progress: impl Fn(u64),
) -> anyhow::Result<TrafficLoadReport> {
    let (replayer, options) = args.replayer(target).await?;
    check_serves(&replayer, &format!("the target {target}")).await?;
    let load = TrafficLoad::start(replayer, pace, "mixed").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let counted = pace.calls_per_client.is_some();
    while !load.finished() && (counted || tokio::time::Instant::now() < deadline) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress(load.completed());
    }
    let (phases, seconds) = load.stop(&options).await?;
    Ok(TrafficLoadReport::new(
        args,
        &options,
        target,
        pace,
        seconds,
        phases,
        Vec::new(),
    ))
}
