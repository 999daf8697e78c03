//! One replayed call judged, and a method's calls tallied. The old server's answer is the
//! baseline; the second old answer (the secondary, or the old server asked again) says what is
//! noise; the new server's answer is compared with the old one field by field, every reply
//! decoded with the old (the caller's) descriptors, so fields only the new version knows are
//! not seen. Paths are counted by their shape (`lines[].quantity`): a field that differs
//! between the two old answers in any call of a method is noise for every call of it.

use super::ignore::Ignore;
use super::report::{Difference, Example, MethodReplay, PathCount, StatusCount, Verdict};
use crate::probe::code_name;
use crate::probe::values::{flatten, within};
use crate::probe::{Answer, calling::short};
use prost_reflect::{DynamicMessage, MethodDescriptor};
use std::collections::{BTreeMap, BTreeSet};
use tonic::Code;

/// Examples kept per differing path.
const EXAMPLES: usize = 3;

/// The three answers to one replayed (or shadowed) call.
#[derive(Debug)]
pub struct Answers {
    /// The old server's: the baseline.
    pub old: Answer,
    /// The second old answer (a second instance, or the old server asked again): the noise.
    pub second: Answer,
    /// The new server's: the candidate.
    pub new: Answer,
}

/// `lines[0].sku` → `lines[].sku`: the path without indices and map keys.
pub(super) fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for ch in path.chars() {
        match ch {
            '[' => {
                if depth == 0 {
                    out.push('[');
                }
                depth += 1;
            }
            ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(']');
                }
            }
            _ if depth > 0 => {}
            other => out.push(other),
        }
    }
    out
}

/// A method's replayed (or shadowed) calls so far.
#[derive(Debug)]
pub struct Tally {
    method: MethodDescriptor,
    called: String,
    calls: usize,
    succeeded: usize,
    /// Calls that succeeded on OLD and were compared field by field (not noise).
    compared: usize,
    broken: Option<(String, String)>,
    broken_calls: usize,
    status_noise: usize,
    statuses: BTreeMap<(String, String), (usize, String)>,
    /// Shape → calls where old and new differed there, and examples.
    differences: BTreeMap<String, (usize, Vec<Example>)>,
    /// Shape → calls where the two old answers differed there.
    noise: BTreeMap<String, usize>,
    unsent: Vec<Example>,
    unsent_calls: usize,
}

impl Tally {
    /// No calls yet of `method`, which NEW is called at `called` (`pkg.Service/Method`).
    pub fn new(method: MethodDescriptor, called: String) -> Tally {
        Tally {
            method,
            called,
            calls: 0,
            succeeded: 0,
            compared: 0,
            broken: None,
            broken_calls: 0,
            status_noise: 0,
            statuses: BTreeMap::new(),
            differences: BTreeMap::new(),
            noise: BTreeMap::new(),
            unsent: Vec::new(),
            unsent_calls: 0,
        }
    }

    /// The method's full name (`pkg.Service.Method`).
    pub fn method(&self) -> &str {
        self.method.full_name()
    }

    /// The path NEW is called at, without the leading `/`.
    pub fn called(&self) -> &str {
        &self.called
    }

    /// A call of the file that was not sent (a reference that did not resolve, a request that
    /// does not parse, a truncated recording).
    pub fn unsent(&mut self, at: &str, why: String) {
        self.unsent_calls += 1;
        if self.unsent.len() < EXAMPLES {
            self.unsent.push(Example {
                at: at.to_string(),
                old: why,
                new: String::new(),
            });
        }
    }

    /// Judges one call's answers; `at` says where it came from (`FILE:LINE`, a time).
    pub fn add(&mut self, at: &str, answers: &Answers) {
        let Answers { old, second, new } = answers;
        self.calls += 1;
        let (old_code, new_code) = (code_name(old.code), code_name(new.code));
        let entry = self
            .statuses
            .entry((old_code.clone(), new_code.clone()))
            .or_insert((0, String::new()));
        entry.0 += 1;
        if entry.1.is_empty() && new.code != Code::Ok {
            entry.1 = short(&new.message);
        }
        if old.code == Code::Ok {
            self.succeeded += 1;
        }
        if old.code != second.code {
            // The old version does not answer this call the same way twice: not comparable.
            self.status_noise += 1;
            return;
        }
        if new.code != old.code {
            self.break_with(
                at,
                format!(
                    "{new_code}{} where OLD answers {old_code}",
                    quoted(&new.message)
                ),
            );
            return;
        }
        if old.code != Code::Ok {
            return;
        }
        let output = self.method.output();
        let decode = |a: &Answer| -> Result<Vec<DynamicMessage>, String> {
            a.replies
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    DynamicMessage::decode(output.clone(), b.as_slice()).map_err(|e| {
                        format!(
                            "reply {} ({} bytes) is not a {}: {e}",
                            i + 1,
                            b.len(),
                            output.full_name()
                        )
                    })
                })
                .collect()
        };
        let new_msgs = match decode(new) {
            Ok(msgs) => msgs,
            Err(e) => return self.break_with(at, e),
        };
        let (Ok(old_msgs), Ok(second_msgs)) = (decode(old), decode(second)) else {
            // The baseline itself does not decode with its own descriptors: nothing to compare.
            self.status_noise += 1;
            return;
        };
        self.compared += 1;
        let stream = self.method.is_server_streaming();
        let mut flat_old = flatten(&old_msgs, stream);
        let mut flat_second = flatten(&second_msgs, stream);
        let mut flat_new = flatten(&new_msgs, stream);
        let counted = |flat: &mut BTreeMap<String, String>, a: &Answer, n: usize| {
            if a.capped.is_none() {
                flat.insert("(replies)".to_string(), n.to_string());
            }
        };
        counted(&mut flat_old, old, old_msgs.len());
        counted(&mut flat_second, second, second_msgs.len());
        counted(&mut flat_new, new, new_msgs.len());
        let both = old_msgs.len().min(new_msgs.len());
        let paths: BTreeSet<&String> = flat_old
            .keys()
            .chain(flat_second.keys())
            .chain(flat_new.keys())
            .collect();
        let mut noisy = BTreeSet::new();
        let mut differing = BTreeMap::new();
        for path in paths {
            let (o, s, n) = (
                flat_old.get(path),
                flat_second.get(path),
                flat_new.get(path),
            );
            let key = shape(path);
            if o != s {
                noisy.insert(key.clone());
            }
            if o != n && within(path, both) && (o.is_some() || n.is_some()) {
                let text = |v: Option<&String>| v.cloned().unwrap_or_else(|| "unset".to_string());
                differing.entry(key).or_insert_with(|| Example {
                    at: format!("{at} {path}"),
                    old: text(o),
                    new: text(n),
                });
            }
        }
        for key in noisy {
            *self.noise.entry(key).or_insert(0) += 1;
        }
        for (key, example) in differing {
            let (calls, examples) = self.differences.entry(key).or_insert((0, Vec::new()));
            *calls += 1;
            if examples.len() < EXAMPLES {
                examples.push(example);
            }
        }
    }

    fn break_with(&mut self, at: &str, why: String) {
        self.broken_calls += 1;
        self.broken.get_or_insert_with(|| (at.to_string(), why));
    }

    /// The method's result so far: differences minus noise and `ignores`, and the verdict.
    pub fn report(&self, ignores: &[Ignore]) -> MethodReplay {
        let m = &self.method;
        let mut differences = Vec::new();
        let mut ignored = Vec::new();
        for (path, (calls, examples)) in self.differences.clone() {
            if self.noise.contains_key(&path) {
                continue;
            }
            if ignores.iter().any(|rule| rule.ignores(m, &path)) {
                ignored.push(PathCount { path, calls });
            } else {
                differences.push(Difference {
                    path,
                    calls,
                    examples,
                });
            }
        }
        let noise: Vec<PathCount> = self
            .noise
            .iter()
            .map(|(path, calls)| PathCount {
                path: path.clone(),
                calls: *calls,
            })
            .collect();
        let (verdict, reason) = if let Some((at, why)) = &self.broken {
            (Verdict::Broken, format!("{at}: {why}"))
        } else if let Some(first) = differences.first() {
            let more = match differences.len() {
                1 => String::new(),
                n => format!(" (and {} more fields)", n - 1),
            };
            (
                Verdict::Degraded,
                format!(
                    "{} differs in {} of {} calls, e.g. {} → {}{more}",
                    first.path,
                    first.calls,
                    self.calls,
                    first.examples[0].old,
                    first.examples[0].new
                ),
            )
        } else if self.compared == 0 {
            let endings: Vec<String> = self
                .statuses
                .iter()
                .map(|((old, _), (n, _))| format!("{old} ×{n}"))
                .collect();
            let why = if self.calls == 0 {
                "no call was sent".to_string()
            } else if self.succeeded == 0 {
                format!("no call succeeded on OLD ({})", endings.join(", "))
            } else {
                format!(
                    "none of the {} calls that succeeded on OLD was compared: the two OLD answers ended differently, or OLD's replies do not decode with its own descriptors",
                    self.succeeded
                )
            };
            (Verdict::Inconclusive, why)
        } else {
            (Verdict::Ok, String::new())
        };
        MethodReplay {
            method: format!("{}/{}", m.parent_service().full_name(), m.name()),
            called: self.called.clone(),
            calls: self.calls,
            succeeded: self.succeeded,
            compared: self.compared,
            broken_calls: self.broken_calls,
            status_noise: self.status_noise,
            statuses: self
                .statuses
                .iter()
                .map(|((old, new), (calls, message))| StatusCount {
                    old: old.clone(),
                    new: new.clone(),
                    calls: *calls,
                    message: message.clone(),
                })
                .collect(),
            differences,
            noise,
            ignored,
            unsent_calls: self.unsent_calls,
            unsent: self.unsent.clone(),
            verdict,
            reason,
        }
    }
}

fn quoted(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", short(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::test_method::method;
    use prost::Message;

    fn answer(code: Code, price: i32) -> Answer {
        let m = method();
        let mut reply = DynamicMessage::new(m.output());
        reply.set_field_by_name("price", prost_reflect::Value::I32(price));
        Answer {
            code,
            message: String::new(),
            replies: (code == Code::Ok)
                .then(|| reply.encode_to_vec())
                .into_iter()
                .collect(),
            capped: None,
            served_by: None,
        }
    }

    #[test]
    fn a_method_whose_every_success_was_noise_compared_nothing() {
        let mut tally = Tally::new(method(), "shop.Shop/Get".into());
        // OLD succeeds, then fails the same call: not comparable, whatever NEW says.
        let answers = Answers {
            old: answer(Code::Ok, 5),
            second: answer(Code::Unavailable, 0),
            new: answer(Code::Ok, 7),
        };
        tally.add("f:1", &answers);
        let m = tally.report(&[]);
        assert_eq!((m.succeeded, m.compared), (1, 0));
        assert_eq!(m.verdict, Verdict::Inconclusive, "{}", m.reason);
        assert!(m.reason.contains("none of the 1 calls"), "{}", m.reason);
    }

    #[test]
    fn a_compared_call_decides_the_verdict() {
        let mut tally = Tally::new(method(), "shop.Shop/Get".into());
        let answers = Answers {
            old: answer(Code::Ok, 5),
            second: answer(Code::Ok, 5),
            new: answer(Code::Ok, 7),
        };
        tally.add("f:1", &answers);
        let m = tally.report(&[]);
        assert_eq!((m.succeeded, m.compared), (1, 1));
        assert_eq!(m.verdict, Verdict::Degraded, "{}", m.reason);
        assert_eq!(m.differences[0].path, "price");
    }

    #[test]
    fn shapes_drop_indices_and_keys() {
        assert_eq!(shape("lines[0].sku"), "lines[].sku");
        assert_eq!(shape("[2].status"), "[].status");
        assert_eq!(shape("stock[\"a[b]\"]"), "stock[]");
        assert_eq!(shape("total_cents"), "total_cents");
    }
}
