//! The admin API's view of the usage table: the `Usage` reply, and the quiet period's check
//! that a drain or removal does not strand callers who used a backend recently and whom no
//! other backend serves.

use super::pb::{DeprecatedFieldRow, UsageReply, UsageRow};
use crate::observe::{Usage, UsageCount, UsageKey};
use crate::route_checks::{belongs_to, escape_controls};
use router::BackendInfo;
use std::time::{Duration, SystemTime};
use tonic::Status;

/// Callers named at most in a refusal (the rest are counted).
const NAMED_IN_REFUSAL: usize = 10;

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The `Usage` reply: every row of `usage`, or those of backend `filter` (and its
/// `NAME/PACKAGE` backends) when it is not empty.
pub(super) fn reply(usage: Option<&Usage>, filter: &str, quiet_period: Duration) -> UsageReply {
    let Some(usage) = usage else {
        return UsageReply {
            quiet_period_secs: quiet_period.as_secs(),
            ..UsageReply::default()
        };
    };
    let rows = usage
        .rows()
        .into_iter()
        .filter(|(key, _)| filter.is_empty() || belongs_to(&key.backend, filter))
        .map(|(key, count)| row(&key, &count))
        .collect();
    let deprecated_fields = usage
        .fields()
        .into_iter()
        .filter(|((key, _), _)| filter.is_empty() || belongs_to(&key.backend, filter))
        .map(|((key, field), count)| DeprecatedFieldRow {
            call: Some(row(&key, &count)),
            field: field.to_string(),
        })
        .collect();
    let (sampled_decoded, sampled_not_decoded) = usage.decoded();
    UsageReply {
        tracked: true,
        rows,
        overflowed: usage.overflowed(),
        max_entries: usage.max_entries() as u64,
        quiet_period_secs: quiet_period.as_secs(),
        deprecated_fields,
        sample_every: usage.sample_every(),
        sampled_decoded,
        sampled_not_decoded,
    }
}

fn row(key: &UsageKey, count: &UsageCount) -> UsageRow {
    UsageRow {
        peer: key.peer.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: key.user_agent.to_string(),
        identity: key.identity.to_string(),
        service: key.service.to_string(),
        method: key.method.to_string(),
        backend: key.backend.to_string(),
        version: key.version.to_string(),
        calls: count.calls,
        first_seen_unix_ms: unix_ms(count.first_seen),
        last_seen_unix_ms: unix_ms(count.last_seen),
        deprecated: count.deprecated,
    }
}

/// The package of `package.Service`.
fn package_of(service: &str) -> &str {
    service.rsplit_once('.').map_or("", |(package, _)| package)
}

/// Refuses (FAILED_PRECONDITION, naming them) taking backend `name` out of `backends` when
/// callers used it within `quiet_period` of `now` for a package that no other backend still
/// taking calls serves.
pub(super) fn check_quiet_period(
    usage: &Usage,
    backends: &[BackendInfo],
    name: &str,
    action: &str,
    quiet_period: Duration,
    now: SystemTime,
) -> Result<(), Status> {
    if quiet_period.is_zero() {
        return Ok(());
    }
    let since = now
        .checked_sub(quiet_period)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let served_elsewhere = |package: &str| {
        backends.iter().any(|b| {
            !belongs_to(&b.name, name) && !b.draining && b.serves.iter().any(|p| p == package)
        })
    };
    let stranded: Vec<(UsageKey, UsageCount)> = usage
        .rows()
        .into_iter()
        .filter(|(key, count)| {
            belongs_to(&key.backend, name)
                && count.last_seen >= since
                && !served_elsewhere(package_of(&key.service))
        })
        .collect();
    if stranded.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = stranded
        .iter()
        .take(NAMED_IN_REFUSAL)
        .map(|(key, count)| {
            let ago = now.duration_since(count.last_seen).unwrap_or_default();
            let who = [
                key.peer.map(|ip| ip.to_string()).unwrap_or_default(),
                key.identity.to_string(),
                key.user_agent.to_string(),
            ]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
            format!(
                "{} ({} calls of /{}/{}, the last {}s ago)",
                escape_controls(&who),
                count.calls,
                key.service,
                key.method,
                ago.as_secs()
            )
        })
        .collect();
    let more = stranded.len().saturating_sub(NAMED_IN_REFUSAL);
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    Err(Status::failed_precondition(format!(
        "refusing to {action} {name}: it served callers within the quiet period ({}s) whose \
         package no other backend serves: {}{more}; move them first, or force it (testbed route \
         {action} --force)",
        quiet_period.as_secs(),
        named.join("; ")
    )))
}
