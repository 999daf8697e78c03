//! Accepted breaks: a YAML file of breaking findings the team has decided to ship
//! (`--accept FILE`, written by `--write-accepted FILE`), each with a reason and an optional
//! expiry date. An accepted finding is still listed, marked accepted, but no longer breaks.

use crate::model::{Acceptance, Bump, Report};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The environment variable that fixes "today" (`YYYY-MM-DD`), so that tests and reruns do
/// not depend on the date.
pub const TODAY_VAR: &str = "TESTBED_TODAY";

/// The reason `--write-accepted` puts in each entry for the user to replace.
pub const TODO_REASON: &str = "TODO: say why";

/// An accept file: `accepted:` and a list of entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptFile {
    /// The accepted findings.
    #[serde(default)]
    pub accepted: Vec<Entry>,
}

/// One accepted finding, matched by rule id and element as `testbed check` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The rule id, e.g. `FIELD_SAME_TYPE`.
    pub rule: String,
    /// The element's full name, e.g. `increment.v1.IncrementRequest.value`.
    pub element: String,
    /// Why the break is acceptable (required).
    pub reason: String,
    /// The last day the entry holds, `YYYY-MM-DD`; afterwards the finding breaks again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// Parses `YYYY-MM-DD` into a calendar date.
pub fn parse_date(s: &str) -> Result<time::Date, String> {
    let bad = || format!("expected a date YYYY-MM-DD, got {s:?}");
    let mut parts = s.trim().splitn(3, '-');
    let mut num = |len: usize| -> Result<i64, String> {
        let p = parts.next().filter(|p| p.len() == len).ok_or_else(bad)?;
        p.parse::<i64>().map_err(|_| bad())
    };
    let (y, m, d) = (num(4)?, num(2)?, num(2)?);
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(d).map_err(|_| bad())?;
    let year = i32::try_from(y).map_err(|_| bad())?;
    time::Date::from_calendar_date(year, month, day).map_err(|e| format!("{s:?}: {e}"))
}

/// Today's date (UTC), or the one `TESTBED_TODAY` names.
pub fn today() -> anyhow::Result<time::Date> {
    match std::env::var(TODAY_VAR) {
        Ok(s) => parse_date(&s)
            .map_err(anyhow::Error::msg)
            .context(TODAY_VAR),
        Err(_) => Ok(time::OffsetDateTime::now_utc().date()),
    }
}

impl AcceptFile {
    /// Reads and checks an accept file: every entry needs a rule, an element and a reason,
    /// and `expires` must be a date.
    pub fn load(path: &Path) -> anyhow::Result<AcceptFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the accept file {}", path.display()))?;
        let file: AcceptFile = serde_norway::from_str(&text)
            .with_context(|| format!("{}: not an accept file", path.display()))?;
        for (i, e) in file.accepted.iter().enumerate() {
            let at = || {
                format!(
                    "{}: entry {} ({} {})",
                    path.display(),
                    i + 1,
                    e.rule,
                    e.element
                )
            };
            if e.rule.trim().is_empty() || e.element.trim().is_empty() {
                anyhow::bail!("{}: rule and element must not be empty", at());
            }
            if crate::rules::rule_info(&e.rule).is_none() {
                anyhow::bail!("{}: unknown rule {:?}", at(), e.rule);
            }
            if e.reason.trim().is_empty() {
                anyhow::bail!(
                    "{}: the reason is empty; say why the break is accepted",
                    at()
                );
            }
            if let Some(d) = &e.expires {
                parse_date(d).map_err(|m| anyhow::anyhow!("{}: expires: {m}", at()))?;
            }
        }
        Ok(file)
    }

    /// Marks the breaking findings that an entry matches as accepted. An expired entry
    /// matches nothing and adds a warning; so does an entry that matches no breaking finding
    /// (stale). `source` names the file in the output.
    pub fn apply(&self, report: &mut Report, source: &str, today: time::Date) {
        for e in &self.accepted {
            let expired = e
                .expires
                .as_deref()
                .and_then(|d| parse_date(d).ok())
                .filter(|d| *d < today);
            if let Some(d) = expired {
                report.warnings.push(format!(
                    "{source}: the entry {} {} expired on {d}; the finding breaks again",
                    e.rule, e.element
                ));
                continue;
            }
            if e.reason.trim() == TODO_REASON {
                report.warnings.push(format!(
                    "{source}: the entry {} {} still says {TODO_REASON:?}: give the reason",
                    e.rule, e.element
                ));
            }
            let mut matched = false;
            for f in report
                .findings
                .iter_mut()
                .filter(|f| f.breaking && f.rule == e.rule && f.element == e.element)
            {
                accept(
                    f,
                    Acceptance {
                        reason: e.reason.clone(),
                        source: source.to_string(),
                        expires: e.expires.clone(),
                    },
                );
                matched = true;
            }
            if !matched {
                report.warnings.push(format!(
                    "{source}: the entry {} {} matches no breaking finding (stale: remove it)",
                    e.rule, e.element
                ));
            }
        }
        report.verdict = report.findings.iter().map(|f| f.semver).max();
    }

    /// An accept file listing every breaking finding of `report`, each with [`TODO_REASON`].
    pub fn from_report(report: &Report) -> AcceptFile {
        let mut accepted: Vec<Entry> = Vec::new();
        for f in report.breaking() {
            let entry = Entry {
                rule: f.rule.clone(),
                element: f.element.clone(),
                reason: TODO_REASON.to_string(),
                expires: None,
            };
            if !accepted.contains(&entry) {
                accepted.push(entry);
            }
        }
        AcceptFile { accepted }
    }

    /// Writes the file as YAML; an existing file is kept unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> anyhow::Result<()> {
        if path.exists() && !force {
            anyhow::bail!(
                "{} exists; --force overwrites it (or edit it and pass it to --accept)",
                path.display()
            );
        }
        let yaml = serde_norway::to_string(self).context("cannot encode the accept file")?;
        let text = format!(
            "# Breaking changes accepted by `testbed check --accept`: replace each reason; \
             `expires: YYYY-MM-DD` makes an entry lapse.\n{yaml}"
        );
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the accept file {}", path.display()))
    }
}

/// Marks one finding accepted: it stays listed but neither breaks nor raises the verdict.
pub fn accept(f: &mut crate::model::Finding, acceptance: Acceptance) {
    f.breaking = false;
    f.semver = Bump::Patch;
    f.accepted = Some(acceptance);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(parse_date("2027-01-31").is_ok());
        assert!(parse_date("2027-02-30").is_err());
        assert!(parse_date("2027-1-31").is_err());
        assert!(parse_date("tomorrow").is_err());
        assert!(parse_date("2027-01-31") < parse_date("2027-02-01"));
    }
}
