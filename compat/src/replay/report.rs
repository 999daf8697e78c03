//! What the replay found, as data (serialized as `--json`), and the exit code it implies.

use crate::probe::{EXIT_AFFECTED, EXIT_INCONCLUSIVE};
use serde::{Deserialize, Serialize};

/// A method's verdict (ordered from best to worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every call answered by NEW as by OLD: same status, same values beyond the noise.
    Ok,
    /// No reply was compared: no call succeeded on OLD, or every one that did was noise (the
    /// two OLD answers ended differently).
    Inconclusive,
    /// Same statuses, but reply values differ beyond the noise (a field at its default where
    /// OLD set it, another value, another number of replies).
    Degraded,
    /// Some call ended with another status on NEW than on OLD, or a NEW reply does not decode
    /// with OLD's descriptors.
    Broken,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        })
    }
}

/// One example of a difference (or of a call not sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// `FILE:LINE` of the call, and the full field path.
    pub at: String,
    /// OLD's value (`unset` at its default); for a call not sent, why.
    pub old: String,
    /// NEW's value.
    pub new: String,
}

/// A reply field whose value differs between OLD and NEW.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The field path without indices (`lines[].quantity`; `(replies)` for the number of
    /// replies).
    pub path: String,
    /// In how many calls it differed.
    pub calls: usize,
    /// The first few calls where it did.
    pub examples: Vec<Example>,
}

/// A field path and in how many calls it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCount {
    /// The field path without indices.
    pub path: String,
    /// In how many calls.
    pub calls: usize,
}

/// How many calls ended with one pair of statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// OLD's status.
    pub old: String,
    /// NEW's status.
    pub new: String,
    /// How many calls.
    pub calls: usize,
    /// NEW's first status message of these calls (empty for OK).
    pub message: String,
}

/// One method of the traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodReplay {
    /// `pkg.Service/Method` as the traffic names it.
    pub method: String,
    /// The path NEW was called at (another package with `--map`).
    pub called: String,
    /// Calls sent to all servers.
    pub calls: usize,
    /// Calls that succeeded on OLD.
    pub succeeded: usize,
    /// Of those, the calls compared field by field (the rest were status noise).
    pub compared: usize,
    /// Calls NEW answered with another status than OLD, or with replies OLD's descriptors do
    /// not decode.
    pub broken_calls: usize,
    /// Calls the two OLD answers ended differently (not compared).
    pub status_noise: usize,
    /// Calls per (OLD status, NEW status).
    pub statuses: Vec<StatusCount>,
    /// Fields that differ between OLD and NEW, noise and ignored paths left out.
    pub differences: Vec<Difference>,
    /// Fields that differ between the two OLD answers: not compared.
    pub noise: Vec<PathCount>,
    /// Fields that differ but that `--ignore` rules leave out.
    pub ignored: Vec<PathCount>,
    /// Calls of the file not sent (a reference that did not resolve, a truncated recording).
    pub unsent_calls: usize,
    /// The first few of them, with why (in `old`).
    pub unsent: Vec<Example>,
    /// The method's verdict.
    pub verdict: Verdict,
    /// Why, in words (empty when ok).
    pub reason: String,
}

/// What the replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The traffic files.
    pub files: Vec<String>,
    /// The old server (the baseline).
    pub old: String,
    /// The new server (the candidate).
    pub new: String,
    /// The second old server, when given; otherwise OLD is asked twice for the noise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
    /// Calls read from the files.
    pub calls: usize,
    /// Calls sent to every server.
    pub sent: usize,
    /// Per method, in the order the traffic first calls them.
    pub methods: Vec<MethodReplay>,
    /// The `--ignore` rules.
    pub ignore: Vec<String>,
    /// Inconclusive methods do not set the exit code (`--allow-inconclusive`).
    pub allow_inconclusive: bool,
}

impl Verdict {
    /// The worst verdict of `methods` (inconclusive when there are none).
    pub fn worst(methods: &[MethodReplay]) -> Verdict {
        methods
            .iter()
            .map(|m| m.verdict)
            .max()
            .unwrap_or(Verdict::Inconclusive)
    }

    /// The exit code of a run whose worst verdict this is: 0 ok; 100 broken or degraded; 3
    /// inconclusive (0 when `allow_inconclusive`).
    pub fn exit_code(self, allow_inconclusive: bool) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Inconclusive if allow_inconclusive => 0,
            Verdict::Inconclusive => EXIT_INCONCLUSIVE,
            Verdict::Degraded | Verdict::Broken => EXIT_AFFECTED,
        }
    }
}

impl ReplayReport {
    /// The worst method verdict.
    pub fn verdict(&self) -> Verdict {
        Verdict::worst(&self.methods)
    }

    /// 0 when NEW answers the traffic as OLD does; 100 when a method is broken or degraded; 3
    /// when none is but some are inconclusive (0 with `--allow-inconclusive`).
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code(self.allow_inconclusive)
    }
}
