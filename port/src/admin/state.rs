//! `serve --state-file FILE`: the gateway's route table kept on disk, so that what the admin API
//! changed survives a restart.
//!
//! After every change the admin API makes (Add, Replace, SetWeight, Remove), the table is
//! written as the upstreams that make it, in the format of `serve --config` (a YAML mapping of
//! flag names: `upstream:` a list of `NAME=VERSION@ADDRESS[,ADDRESS...][+PACKAGE...][;weight=N]`,
//! `descriptors:` a list of `NAME=FILE`), so the state file is a config file too. Descriptors
//! that did not come by reflection (a file at start, a set sent with an Add) are written beside
//! it, in `FILE.descriptors/NAME.binpb`, and named there. Each write is atomic: a temporary file
//! in the same folder, written, synced, renamed over the old one, the folder synced. At start,
//! an existing state file's upstreams and descriptors stand in for `--upstream` and
//! `--descriptors`. Draining is not kept (a drained backend that was not removed comes back
//! active), nor a weight the gateway set itself (a pinned-only build's, a drifted one's).

use crate::upstream::upstream_of;
use anyhow::Context;
use router::RouteTable;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a state file holds: the route table's upstreams and their descriptor files.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// One `--upstream` value each.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// One `--descriptors` value each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptors: Vec<String>,
}

/// State files larger than this are refused at start (a table of 48 upstreams is a few KB).
const MAX_STATE_BYTES: u64 = 1 << 20;

impl State {
    /// The state in `path`, `None` when there is no such file.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot open --state-file {}", path.display()));
            }
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        anyhow::ensure!(
            len <= MAX_STATE_BYTES,
            "--state-file {} is {len} bytes, more than a route table's state ({MAX_STATE_BYTES} at most)",
            path.display()
        );
        let state: Self = serde_norway::from_reader(file)
            .with_context(|| format!("--state-file {} is not a state file", path.display()))?;
        Ok(Some(state))
    }

    /// The state of `table`: each upstream once (its `NAME/PACKAGE` backends together), at the
    /// address `addresses` names; descriptors not read by reflection written into `dir`.
    pub fn of(
        table: &RouteTable,
        addresses: &HashMap<String, String>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let infos = table.backends();
        let rows = infos.iter().filter_map(|info| {
            // In-process backends are the deployment's, not the table's to keep.
            let address = addresses.get(&info.name)?;
            Some(Row {
                name: &info.name,
                version: info.version.to_string(),
                address,
                api: &info.api,
                serves: &info.serves,
                weight: info.weight.filter(|_| info.breaks.is_none()).map(u32::from),
                partial: info.partial_methods(),
            })
        });
        let mut state = Self {
            upstream: upstream_values(rows),
            descriptors: Vec::new(),
        };
        let mut written: BTreeMap<&str, ()> = BTreeMap::new();
        for info in &infos {
            let name = upstream_of(&info.name);
            let build = table.backend(&info.name).and_then(|b| b.build.as_ref());
            let Some(build) = build.filter(|b| !b.refreshable) else {
                continue;
            };
            if !addresses.contains_key(&info.name) || written.insert(name, ()).is_some() {
                continue;
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make {}", dir.display()))?;
            let file = dir.join(format!("{name}.binpb"));
            // Written once per build: every later change finds it there already.
            if std::fs::read(&file).ok().as_deref() != Some(&build.descriptors[..]) {
                write_atomically(&file, &build.descriptors)?;
            }
            state.descriptors.push(format!("{name}={}", file.display()));
        }
        Ok(state)
    }

    /// This state as YAML, a `serve --config` file.
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let text = serde_norway::to_string(self).context("the state does not serialize")?;
        Ok(format!(
            "# The route table of a testbed gateway (--state-file, `route export --format config`);\n\
             # usable as `testbed serve --config`.\n{text}"
        ))
    }

    /// Writes this state to `path`, atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_atomically(path, self.to_yaml()?.as_bytes())
    }
}

/// One backend of a route table, as the admin API lists it.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// `NAME`, or `NAME/PACKAGE` for one of an upstream's several packages.
    pub name: &'a str,
    /// Its version.
    pub version: String,
    /// Its addresses, comma-separated.
    pub address: &'a str,
    /// The package it implements.
    pub api: &'a str,
    /// The packages routed to it (`api` and its `+PACKAGE`s).
    pub serves: &'a [String],
    /// A weight it was given (not one the gateway set itself).
    pub weight: Option<u32>,
    /// Of the older packages, the methods it takes when only some: `package/Service.Method`.
    pub partial: Vec<String>,
}

/// The `--upstream` values that make the backends `rows`: each upstream once, its
/// `NAME/PACKAGE` backends' `+PACKAGE`s together, in name order.
pub fn upstream_values<'a>(rows: impl IntoIterator<Item = Row<'a>>) -> Vec<String> {
    let mut upstreams: BTreeMap<&str, (Row<'a>, Vec<String>)> = BTreeMap::new();
    for row in rows {
        let also: Vec<String> = row
            .serves
            .iter()
            .filter(|p| p.as_str() != row.api)
            .flat_map(|package| {
                let prefix = format!("{package}/");
                let some: Vec<String> = row
                    .partial
                    .iter()
                    .filter(|m| m.starts_with(&prefix))
                    .cloned()
                    .collect();
                match some.is_empty() {
                    true => vec![package.clone()],
                    false => some,
                }
            })
            .collect();
        upstreams
            .entry(upstream_of(row.name))
            .or_insert_with(|| (row.clone(), Vec::new()))
            .1
            .extend(also);
    }
    upstreams
        .into_iter()
        .map(|(name, (row, also))| {
            let also: String = also.iter().map(|p| format!("+{p}")).collect();
            let weight = row.weight.map_or(String::new(), |w| format!(";weight={w}"));
            format!("{name}={}@{}{also}{weight}", row.version, row.address)
        })
        .collect()
}

/// Where the descriptors of state file `path` go: `PATH.descriptors/`.
pub fn descriptors_dir(path: &Path) -> PathBuf {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".descriptors");
    PathBuf::from(dir)
}

/// `bytes` into `path` by a temporary file in its folder, synced and renamed over it, the
/// folder synced: a reader sees the old contents or the new, never part of them.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot make a temporary file in {}", dir.display()))?;
    temporary
        .write_all(bytes)
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("cannot write {}", temporary.path().display()))?;
    temporary
        .persist(path)
        .with_context(|| format!("cannot rename the new state over {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        assert_eq!(State::load(&path).unwrap(), None);
        let state = State {
            upstream: vec!["v2=2.0.0@127.0.0.1:1,127.0.0.1:2+shop.v1;weight=5".into()],
            descriptors: vec!["v2=/tmp/v2.binpb".into()],
        };
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(state));
        std::fs::write(&path, "upstream: {not: a list}").unwrap();
        let err = State::load(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("is not a state file"),
            "{err:#}"
        );
    }
}
