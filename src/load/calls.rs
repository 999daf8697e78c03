//! The calls of a load run worth a look: failed, wrong or slow ones noted one by one, and the
//! verified ones counted per tick.

use services::Api;
use std::sync::Arc;
use std::time::Duration;

/// How one noted call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Verified, but slower than the log's threshold.
    Slow,
    /// Failed with this status code (its name).
    Failed(String),
    /// Answered, but wrongly.
    Wrong,
}

/// One call a [`CallLog`] noted.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The client's API version.
    pub api: Api,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// How long it took.
    pub took: Duration,
    /// How it ended.
    pub outcome: CallOutcome,
}

impl CallRecord {
    /// When it ended, since the load started.
    pub fn done(&self) -> Duration {
        self.sent + self.took
    }
}

/// The calls of a load run that failed, were answered wrongly or took longer than `slow`,
/// shared by its clients. Verified prompt calls are not noted, so a run of millions of calls
/// keeps only its incidents.
#[derive(Debug, Clone)]
pub struct CallLog {
    slow: Duration,
    calls: Arc<std::sync::Mutex<Vec<CallRecord>>>,
    /// Per client version, verified calls that ended in each [`CallLog::TICK`] of the run.
    verified: Arc<[std::sync::Mutex<Vec<u32>>; 2]>,
}

impl CallLog {
    /// A log noting verified calls slower than `slow` besides every failed or wrong one.
    pub fn new(slow: Duration) -> Self {
        Self {
            slow,
            calls: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// The resolution at which verified calls are counted.
    pub const TICK: Duration = Duration::from_millis(10);

    /// Records one call of `api` sent at `sent` (since the load started) that took `took`:
    /// counted as verified when `failed` is `None` (and noted too when slow), noted when it
    /// failed or was wrong.
    pub fn record(&self, api: Api, sent: Duration, took: Duration, failed: Option<CallOutcome>) {
        if failed.is_none() {
            self.verified(api, sent + took);
        }
        if let Some(outcome) = failed.or(Some(CallOutcome::Slow).filter(|_| took > self.slow)) {
            self.note(CallRecord {
                api,
                sent,
                took,
                outcome,
            });
        }
    }

    fn verified(&self, api: Api, done: Duration) {
        let tick = (done.as_nanos() / Self::TICK.as_nanos()) as usize;
        let mut ticks = self.verified[api as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if ticks.len() <= tick {
            ticks.resize(tick + 1, 0);
        }
        ticks[tick] += 1;
    }

    /// Verified calls of `api` that ended in each [`TICK`](Self::TICK) since the load started.
    pub fn verified_per_tick(&self, api: Api) -> Vec<u32> {
        self.verified[api as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note(&self, record: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// The calls noted so far, in the order they ended.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
