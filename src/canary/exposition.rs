//! The samples of a Prometheus text exposition (what `serve --metrics-addr` serves): each
//! line's metric name, labels and value. Written here rather than taken from
//! `prometheus-parse`, which splits label pairs at every `,` and `=` and so misreads a label
//! value holding either (a backend's name or a version may).

use anyhow::{Context, bail};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    /// The metric's name, suffix included (`grpc_server_handling_seconds_bucket`).
    pub(super) name: String,
    /// Its labels, in the order written, values unescaped.
    pub(super) labels: Vec<(String, String)>,
    /// Its value.
    pub(super) value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub(super) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Every sample of `text`; comments and blank lines skipped, a malformed line an error naming it.
pub(super) fn samples(text: &str) -> anyhow::Result<Vec<Sample>> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(index, line)| {
            sample(line).with_context(|| format!("line {} of the metrics: {line:?}", index + 1))
        })
        .collect()
}

fn sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_end == 0 {
        bail!("no metric name");
    }
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once('=').context("a label without `=`")?;
            let (value, after) = quoted(after.trim_start())?;
            labels.push((label.trim().to_string(), value));
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.split_whitespace().next().context("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .with_context(|| format!("{other:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A `"..."` label value at the start of `text`, unescaped, and what follows it.
fn quoted(text: &str) -> anyhow::Result<(String, &str)> {
    let body = text
        .strip_prefix('"')
        .context("a label value not in quotes")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[at + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    bail!("a label value without its closing quote")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_holding_commas_equals_braces_and_escapes_are_read_whole() {
        let text = "# TYPE x counter\n\nx_total{a=\"1,b=2}\",b=\"say \\\"hi\\\"\\n\\\\\",} 3.5 1700000000\nup 1\nb{le=\"+Inf\"} +Inf\n";
        let read = samples(text).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].name, "x_total");
        assert_eq!(read[0].label("a"), Some("1,b=2}"));
        assert_eq!(read[0].label("b"), Some("say \"hi\"\n\\"));
        assert_eq!(read[0].value, 3.5);
        assert_eq!((read[1].name.as_str(), read[1].value), ("up", 1.0));
        assert_eq!(read[2].label("le"), Some("+Inf"));
        assert!(read[2].value.is_infinite());
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        for bad in ["x{a=\"1} 2", "x{a} 2", "x 1e", "{a=\"1\"} 2", "x{a=\"1\"}"] {
            let err = samples(&format!("ok 1\n{bad}\n")).unwrap_err();
            assert!(format!("{err:#}").contains("line 2"), "{bad}: {err:#}");
        }
    }
}
