//! What the probe found, as data: per direction and method the calls made, how each ended at
//! the target and at the caller's own server, and the verdicts. Serialized as `--json`.

use super::Header;
use super::values::Change;
use serde::Serialize;

/// Exit code when every method old clients called is ok or inconclusive, and some are
/// inconclusive (without `--allow-inconclusive`).
pub const EXIT_INCONCLUSIVE: i32 = 3;

/// Exit code when old clients are affected (a method broken, degraded or changed).
pub const EXIT_AFFECTED: i32 = 100;

/// A method's or a call's verdict (ordered from best to worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Same statuses as the caller's own server, every reply decodes, nothing lost, the same
    /// values where the own server answers deterministically.
    Ok,
    /// No call of the method succeeded on the caller's own server (every request `NOT_FOUND`,
    /// `UNAUTHENTICATED`, ...), so no reply was compared: the probe cannot tell.
    Inconclusive,
    /// Same statuses, but a reply field has another value than the own server's (beyond what
    /// differs between two calls to the own server).
    Changed,
    /// Same statuses, but fields the caller's own server set came back at their default.
    Degraded,
    /// Another status than the caller's own server, or a reply that does not decode.
    Broken,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Changed => "changed",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        })
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ending {
    /// gRPC's name of the status code (`OK`, `NOT_FOUND`, ...).
    pub code: String,
    /// The status message (empty for OK).
    pub message: String,
    /// How many reply messages arrived.
    pub replies: usize,
    /// The stream was cut by the probe at a [`ReplyLimits`](super::ReplyLimits) cap (the call was still going,
    /// `code` is OK): which cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped: Option<String>,
    /// The `x-api-version` response header, when the reply carried one (the testbed's gateway
    /// names the version that served the call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

/// One call: the same messages sent to the target and to the caller's own server.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// Which requests were sent (`empty`, `every field set (...)`, `--request`); a
    /// client-streaming call sends them all in one stream.
    pub requests: Vec<String>,
    /// How the call ended at the target.
    pub target: Ending,
    /// How the same call ended at the caller's own server.
    pub own: Ending,
    /// How the same call ended at the caller's own server the second time (what differs
    /// between the two is noise, not compared).
    pub own_again: Ending,
    /// Fields in the target's replies that the caller's descriptors do not know, as
    /// `path.NUMBER (name in the other version)`.
    pub unknown: Vec<String>,
    /// Fields the own server's replies set and the target's replies left at their default.
    pub defaulted: Vec<String>,
    /// Reply values the target set otherwise than the own server (noise left out).
    pub changed: Vec<Change>,
    /// Why a target reply could not be decoded with the caller's descriptors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// This call's verdict.
    pub verdict: Verdict,
    /// Why, in words (empty when ok).
    pub reason: String,
}

/// One method of the caller's version.
#[derive(Debug, Clone, Serialize)]
pub struct MethodProbe {
    /// `pkg.Service/Method` as the caller knows it.
    pub method: String,
    /// The path the call was sent to (another package when paired, e.g. `shop.v2`).
    pub called: String,
    /// unary, server streaming, client streaming or bidi streaming.
    pub shape: &'static str,
    /// Every call made.
    pub calls: Vec<Call>,
    /// Union of the calls' unknown fields.
    pub unknown: Vec<String>,
    /// Union of the calls' defaulted fields.
    pub defaulted: Vec<String>,
    /// The calls' changed values (the first call's, per path).
    pub changed: Vec<Change>,
    /// The worst call verdict; inconclusive when no call succeeded on the own server (and
    /// none is broken).
    pub verdict: Verdict,
    /// The reason of the first call with that verdict.
    pub reason: String,
}

/// Which version's clients call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Caller {
    /// Clients built from the old descriptors.
    Old,
    /// Clients built from the new descriptors.
    New,
}

/// One direction: one version's clients against the other's server (or the gateway).
#[derive(Debug, Clone, Serialize)]
pub struct Direction {
    /// Whose clients call.
    pub caller: Caller,
    /// The server called (`HOST:PORT`, `https://` for TLS): the other version's, or the gateway.
    pub target: String,
    /// What the target is, in words.
    pub target_label: String,
    /// The caller's own server (the comparison), `HOST:PORT` or `https://HOST:PORT`.
    pub own: String,
    /// The metadata every call of this direction carried, to the target and to the own server
    /// (`name: value`; credentials' values not shown).
    pub headers: Vec<Header>,
    /// Every method of the caller's version that was called.
    pub methods: Vec<MethodProbe>,
    /// The methods not called, and why (`--skip`, `--read-only`, ...).
    pub skipped: Vec<Skipped>,
}

/// A method the probe did not call.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// `pkg.Service/Method` as the caller knows it.
    pub method: String,
    /// Why (`--skip Shop/WatchOrder`, `may change state: ...`).
    pub reason: String,
}

impl Direction {
    /// The worst verdict over the methods (ok when there are none).
    pub fn verdict(&self) -> Verdict {
        self.methods
            .iter()
            .map(|m| m.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }
}

/// What the probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The old server, `HOST:PORT` or `https://HOST:PORT`.
    pub old: String,
    /// The new server, `HOST:PORT` or `https://HOST:PORT`.
    pub new: String,
    /// The gateway every call went through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Package pairs (old → new), as `testbed check` pairs them: the other server is called at
    /// the paired package's path (not with `--via`, where each client calls its own paths).
    pub pairs: Vec<(String, String)>,
    /// The per-call deadline, in milliseconds.
    pub timeout_ms: u128,
    /// Old clients, then new clients.
    pub directions: Vec<Direction>,
    /// Scalars in generated requests took edge values (`--edge-values`), not ordinary ones.
    pub edge_values: bool,
    /// No method called by old clients is broken, degraded or changed.
    pub old_clients_unaffected: bool,
    /// Methods called by old clients whose verdict is inconclusive.
    pub old_clients_inconclusive: usize,
    /// Inconclusive methods do not set the exit code (`--allow-inconclusive`).
    pub allow_inconclusive: bool,
}

impl ProbeReport {
    /// 0 when old clients are unaffected, [`EXIT_AFFECTED`] (100, as `testbed check`) when
    /// they are not, [`EXIT_INCONCLUSIVE`] (3) when none is affected but some methods are
    /// inconclusive, unless they are allowed.
    pub fn exit_code(&self) -> i32 {
        if !self.old_clients_unaffected {
            EXIT_AFFECTED
        } else if self.old_clients_inconclusive > 0 && !self.allow_inconclusive {
            EXIT_INCONCLUSIVE
        } else {
            0
        }
    }
}
