//! Applying the selected categories: which raw results break, and which are patch-level changes.

use super::*;

/// Applies the selected categories to raw results.
pub(crate) fn classify(raws: Vec<Raw>, selected: &[Category]) -> Vec<(Finding, Subject)> {
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let (category, breaking, semver, message) = if let Some(bump) = raw.change {
            (Category::Change, false, bump, raw.message)
        } else {
            let cats = rule_info(raw.rule).map(|r| r.categories).unwrap_or(&[]);
            let pick = Category::SELECTABLE.iter().copied().find(|c| {
                selected.contains(c)
                    && cats.contains(c)
                    && !match (c, raw.identical_rename) {
                        (Category::Wire, Some((wire, _))) => wire,
                        (Category::WireJson, Some((_, json))) => json,
                        _ => false,
                    }
            });
            match pick {
                Some(c) => (c, true, Bump::Major, raw.message),
                None => {
                    let why = if raw.identical_rename.is_some_and(|(w, j)| w || j) {
                        "identical on the wire".to_string()
                    } else {
                        format!(
                            "only in {}",
                            cats.iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    (
                        Category::Change,
                        false,
                        Bump::Patch,
                        format!(
                            "{} (not breaking under the selected categories: {why})",
                            raw.message
                        ),
                    )
                }
            }
        };
        out.push((
            Finding {
                rule: raw.rule.to_string(),
                category,
                element: raw.element,
                path: raw.path,
                line: raw.line,
                column: None,
                message,
                breaking,
                semver,
                confirmation: None,
                accepted: None,
            },
            raw.subject,
        ));
    }
    out
}
