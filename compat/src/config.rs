//! buf's breaking configuration (`buf.yaml` v1 and v2, or `--config FILE|JSON`): which rules
//! break (`breaking.use`, `except`) and which findings are left out (`ignore`, `ignore_only`,
//! `ignore_unstable_packages`), applied as `buf breaking` applies them.

use crate::model::{Bump, Category, Report};
use crate::rules::{RULES, rule_info};
use crate::source::Api;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `breaking` section, as buf spells it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default, rename = "use")]
    uses: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    ignore_only: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    ignore_unstable_packages: bool,
    /// buf's v1 option; only its default (false) is supported.
    #[serde(default)]
    disallow_comment_ignores: bool,
}

/// A `buf.yaml` (or buf.work-less `--config`): only what breaking detection reads.
#[derive(Debug, Deserialize)]
struct File {
    version: String,
    #[serde(default)]
    breaking: Option<Section>,
    #[serde(default)]
    modules: Vec<serde_norway::Value>,
    #[serde(flatten)]
    _other: BTreeMap<String, serde_norway::Value>,
}

/// The breaking configuration in force.
#[derive(Debug, Clone)]
pub struct BreakingConfig {
    /// Where it came from (`proto/buf.yaml`, `--config`), for messages.
    pub origin: String,
    categories: Vec<Category>,
    rules: BTreeSet<String>,
    except: BTreeSet<String>,
    ignore: Vec<String>,
    ignore_only: Vec<(String, Vec<String>)>,
    ignore_unstable_packages: bool,
}

/// A rule id or category name in `use`/`except`/`ignore_only`.
enum Id {
    Category(Category),
    Rule(&'static str),
}

fn id(text: &str, origin: &str, key: &str) -> Result<Id, String> {
    if let Some(c) = Category::parse(text) {
        return Ok(Id::Category(c));
    }
    match rule_info(text) {
        Some(r) => Ok(Id::Rule(r.id)),
        None => Err(format!(
            "{origin}: breaking.{key}: unknown rule or category {text:?} (categories: FILE, PACKAGE, WIRE, WIRE_JSON, GRPC; rules: testbed check's rule list in compat/README.md)"
        )),
    }
}

impl BreakingConfig {
    /// `--config`: inline JSON or YAML when it starts with `{`, else a file to read.
    pub fn from_flag(value: &str) -> Result<BreakingConfig, String> {
        if value.trim_start().starts_with('{') {
            return BreakingConfig::parse(value, "--config");
        }
        let text = std::fs::read_to_string(value)
            .map_err(|e| format!("--config {value}: cannot read the file ({e})"))?;
        BreakingConfig::parse(&text, value)
    }

    /// `buf.yaml` at `root` (a directory input's root), when there is one.
    pub fn found_at(root: &Path) -> Result<Option<BreakingConfig>, String> {
        for name in ["buf.yaml", "buf.yml"] {
            let path = root.join(name);
            if path.is_file() {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{origin}: cannot read the file ({e})"))?;
                return BreakingConfig::parse(&text, &origin).map(Some);
            }
        }
        Ok(None)
    }

    /// `buf.yaml` at the root of a git input (`subdir=`, or the repository's top), at its
    /// revision, when there is one.
    pub fn found_in_git(input: &str) -> Result<Option<BreakingConfig>, String> {
        let git = crate::git::GitInput::open(input)?;
        for name in ["buf.yaml", "buf.yml"] {
            if let Some(text) = git.read_file(name)? {
                return BreakingConfig::parse(&text, &format!("{input}: {name}")).map(Some);
            }
        }
        Ok(None)
    }

    /// Parses a buf.yaml's text (v1, v1beta1 or v2).
    pub fn parse(text: &str, origin: &str) -> Result<BreakingConfig, String> {
        let file: File = serde_norway::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        match file.version.as_str() {
            "v1" | "v1beta1" => {}
            "v2" if file.modules.iter().all(is_root_module) => {}
            "v2" => {
                return Err(format!(
                    "{origin}: v2 modules other than `path: .` are not supported yet; give --config with the module's breaking section and the module's directory as the input"
                ));
            }
            v => {
                return Err(format!(
                    "{origin}: unknown version {v:?} (v1, v1beta1 or v2)"
                ));
            }
        }
        let section = file.breaking.unwrap_or_default();
        if section.disallow_comment_ignores {
            return Err(format!(
                "{origin}: breaking.disallow_comment_ignores is not supported yet (comment ignores are not read)"
            ));
        }
        let mut config = BreakingConfig {
            origin: origin.to_string(),
            categories: Vec::new(),
            rules: BTreeSet::new(),
            except: BTreeSet::new(),
            ignore: section.ignore.iter().map(|p| clean(p)).collect(),
            ignore_only: Vec::new(),
            ignore_unstable_packages: section.ignore_unstable_packages,
        };
        // buf's default is FILE.
        let uses = if section.uses.is_empty() {
            vec!["FILE".to_string()]
        } else {
            section.uses
        };
        for u in &uses {
            match id(u, origin, "use")? {
                Id::Category(c) => config.categories.push(c),
                Id::Rule(r) => {
                    config.rules.insert(r.to_string());
                }
            }
        }
        for e in &section.except {
            config.except.extend(expand(id(e, origin, "except")?));
        }
        for (k, paths) in section.ignore_only {
            for rule in expand(id(&k, origin, "ignore_only")?) {
                config
                    .ignore_only
                    .push((rule, paths.iter().map(|p| clean(p)).collect()));
            }
        }
        Ok(config)
    }

    /// The categories the check runs with: those in `use`, and each rule named there with
    /// the categories it is in (so that it is reported as breaking; [`Self::apply`] then
    /// keeps only the named rules of those).
    pub fn categories(&self) -> Vec<Category> {
        let mut out = self.categories.clone();
        for r in &self.rules {
            for c in rule_info(r).map(|i| i.categories).unwrap_or(&[]) {
                if !out.contains(c) {
                    out.push(*c);
                }
            }
        }
        out
    }

    /// `--category` given with a configuration: those categories replace `breaking.use`.
    pub fn with_categories(mut self, categories: &[Category]) -> BreakingConfig {
        self.categories = categories.to_vec();
        self.rules.clear();
        self
    }

    /// Applies `except` (breaking findings of those rules become patch-level), the rule
    /// selection of `use`, and the ignores (findings dropped), then the verdict again.
    pub fn apply(&self, report: &mut Report, old: &Api, new: &Api) {
        let unstable = if self.ignore_unstable_packages {
            unstable_packages(old)
                .chain(unstable_packages(new))
                .collect()
        } else {
            BTreeSet::new()
        };
        report.findings.retain(|f| {
            let under = |paths: &[String]| paths.iter().any(|p| is_under(&f.path, p));
            let ignored = under(&self.ignore)
                || self
                    .ignore_only
                    .iter()
                    .any(|(rule, paths)| *rule == f.rule && under(paths))
                || unstable
                    .iter()
                    .any(|p: &String| f.element == *p || f.element.starts_with(&format!("{p}.")));
            !ignored
        });
        for f in report.findings.iter_mut().filter(|f| f.breaking) {
            let cats = rule_info(&f.rule).map(|r| r.categories).unwrap_or(&[]);
            let used =
                self.rules.contains(&f.rule) || cats.iter().any(|c| self.categories.contains(c));
            let why = if self.except.contains(&f.rule) {
                "except"
            } else if !used {
                "not in use"
            } else {
                continue;
            };
            f.breaking = false;
            f.category = Category::Change;
            f.semver = Bump::Patch;
            f.message = format!("{} (not breaking under {}: {why})", f.message, self.origin);
        }
        report.verdict = report.findings.iter().map(|f| f.semver).max();
    }
}

/// A v2 `modules` entry that is the input root itself.
fn is_root_module(m: &serde_norway::Value) -> bool {
    m.get("path")
        .and_then(|p| p.as_str())
        .is_some_and(|p| clean(p).is_empty() || p == ".")
        && m.get("breaking").is_none()
}

/// The rules a `use`/`except` entry stands for.
fn expand(id: Id) -> Vec<String> {
    match id {
        Id::Rule(r) => vec![r.to_string()],
        Id::Category(c) => RULES
            .iter()
            .filter(|r| r.categories.contains(&c))
            .map(|r| r.id.to_string())
            .collect(),
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./").trim_matches('/').to_string()
}

/// Whether file `path` is `prefix` or inside directory `prefix`.
fn is_under(path: &str, prefix: &str) -> bool {
    !path.is_empty()
        && (prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// Packages of `api` whose last component is an unstable version, as buf defines it:
/// `vNalphaM`, `vNbetaM`, `vNtestM` (M optional), e.g. `foo.v1alpha1`, `foo.v2beta`.
fn unstable_packages(api: &Api) -> impl Iterator<Item = String> + '_ {
    api.files
        .iter()
        .filter_map(|f| api.pool.get_file_by_name(f))
        .map(|f| f.package_name().to_string())
        .filter(|p| {
            let last = p.rsplit('.').next().unwrap_or(p);
            let Some(rest) = last.strip_prefix('v') else {
                return false;
            };
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let digits_before = last.len() - 1 - rest.len();
            digits_before > 0
                && ["alpha", "beta", "test"].iter().any(|s| {
                    rest.strip_prefix(s)
                        .is_some_and(|m| m.chars().all(|c| c.is_ascii_digit()))
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buf_yaml_is_read_and_refused_with_reasons() {
        let c = BreakingConfig::parse(
            "version: v1\nbreaking:\n  use: [WIRE, FIELD_NO_DELETE]\n  except: [FIELD_SAME_TYPE]\n",
            "buf.yaml",
        )
        .unwrap();
        assert!(c.categories().contains(&Category::Wire));
        assert!(c.categories().contains(&Category::File));
        assert!(c.except.contains("FIELD_SAME_TYPE"));
        let d = BreakingConfig::parse("version: v2\n", "buf.yaml").unwrap();
        assert_eq!(d.categories(), vec![Category::File]);
        for (text, says) in [
            (
                "version: v1\nbreaking:\n  use: [WIRES]\n",
                "unknown rule or category \"WIRES\"",
            ),
            ("version: v3\n", "unknown version"),
            (
                "version: v1\nbreaking:\n  uses: [FILE]\n",
                "unknown field `uses`",
            ),
            (
                "version: v2\nmodules:\n  - path: proto\n",
                "not supported yet",
            ),
        ] {
            let e = BreakingConfig::parse(text, "buf.yaml").unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(is_under("a/b.proto", "a") && !is_under("ab/c.proto", "a"));
    }
}
