//! `testbed route usage`: the gateway's usage table as a table or JSON, the most recently seen
//! caller first, deprecated methods marked.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use port::admin::pb::{UsageReply, UsageRow};
use port::route_checks::escape_controls;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// How long ago `unix_ms` was, as `12s`, `3m`, `2h`.
fn ago(unix_ms: u64, now: SystemTime) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(unix_ms);
    let secs = now.duration_since(at).unwrap_or_default().as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

fn caller(row: &UsageRow) -> String {
    let parts = [&row.peer, &row.identity, &row.user_agent];
    let text: Vec<&str> = parts
        .iter()
        .map(|part| part.as_str())
        .filter(|part| !part.is_empty())
        .collect();
    escape_controls(&text.join(" "))
}

/// The reply as a table, with what it leaves out said under it.
pub(super) fn render(reply: &UsageReply) -> String {
    if !reply.tracked {
        return "the gateway keeps no usage table\n".to_string();
    }
    let now = SystemTime::now();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "caller",
        "method",
        "backend",
        "version",
        "calls",
        "last seen",
    ]);
    for row in &reply.rows {
        let deprecated = if row.deprecated { " (deprecated)" } else { "" };
        table.add_row([
            caller(row),
            escape_controls(&format!("/{}/{}{deprecated}", row.service, row.method)),
            escape_controls(&row.backend),
            escape_controls(&row.version),
            row.calls.to_string(),
            format!("{} ago", ago(row.last_seen_unix_ms, now)),
        ]);
    }
    let mut text = format!("{table}\n");
    if reply.overflowed > 0 {
        text += &format!(
            "{} calls are in no row: the table was full ({} rows, serve --usage-max-entries)\n",
            reply.overflowed, reply.max_entries
        );
    }
    text
}

/// The reply as JSON.
pub(super) fn to_json(reply: &UsageReply) -> Value {
    let rows: Vec<Value> = reply
        .rows
        .iter()
        .map(|row| {
            json!({
                "peer": row.peer,
                "user_agent": row.user_agent,
                "identity": row.identity,
                "service": row.service,
                "method": row.method,
                "backend": row.backend,
                "version": row.version,
                "calls": row.calls,
                "first_seen_unix_ms": row.first_seen_unix_ms,
                "last_seen_unix_ms": row.last_seen_unix_ms,
                "deprecated": row.deprecated,
            })
        })
        .collect();
    json!({
        "tracked": reply.tracked,
        "rows": rows,
        "overflowed": reply.overflowed,
        "max_entries": reply.max_entries,
        "quiet_period_secs": reply.quiet_period_secs,
    })
}
