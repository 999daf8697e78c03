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
    if !reply.deprecated_fields.is_empty() {
        let mut fields = Table::new();
        fields.load_preset(UTF8_FULL_CONDENSED).set_header([
            "caller",
            "deprecated field set",
            "method",
            "version",
            "sampled calls",
            "last seen",
        ]);
        for row in &reply.deprecated_fields {
            let Some(call) = &row.call else { continue };
            fields.add_row([
                caller(call),
                escape_controls(&row.field),
                escape_controls(&format!("/{}/{}", call.service, call.method)),
                escape_controls(&call.version),
                call.calls.to_string(),
                format!("{} ago", ago(call.last_seen_unix_ms, now)),
            ]);
        }
        text += &format!("{fields}\n");
    }
    match reply.sample_every {
        0 => text += "no call is sampled for deprecated fields (serve --usage-sample-every)\n",
        n => {
            text += &format!(
                "deprecated fields: 1 call in {n} sampled, {} decoded",
                reply.sampled_decoded
            );
            if reply.sampled_not_decoded > 0 {
                text += &format!(
                    ", {} not (compressed, over 64 KiB, or not the method's input)",
                    reply.sampled_not_decoded
                );
            }
            text += "\n";
        }
    }
    if reply.overflowed > 0 {
        text += &format!(
            "{} calls are in no row: the table was full ({} rows, serve --usage-max-entries)\n",
            reply.overflowed, reply.max_entries
        );
    }
    text
}

fn row_json(row: &UsageRow) -> Value {
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
}

/// The reply as JSON (`testbed route usage --json`).
pub fn to_json(reply: &UsageReply) -> Value {
    let rows: Vec<Value> = reply.rows.iter().map(row_json).collect();
    let fields: Vec<Value> = reply
        .deprecated_fields
        .iter()
        .filter_map(|row| {
            let call = row.call.as_ref()?;
            let mut value = row_json(call);
            value["field"] = json!(row.field);
            Some(value)
        })
        .collect();
    json!({
        "tracked": reply.tracked,
        "rows": rows,
        "deprecated_fields": fields,
        "sample_every": reply.sample_every,
        "sampled_decoded": reply.sampled_decoded,
        "sampled_not_decoded": reply.sampled_not_decoded,
        "overflowed": reply.overflowed,
        "max_entries": reply.max_entries,
        "quiet_period_secs": reply.quiet_period_secs,
    })
}
