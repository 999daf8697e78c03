//! Drift: an upstream that starts declaring something else while it is routed (restarted with
//! another build, say), found by reading its descriptors again.
//!
//! `testbed serve --descriptor-refresh-secs N` (default 30; 0: never) reads again, by
//! reflection, the descriptors of every remote backend whose build was read that way: every N
//! seconds, and as soon as it answers again after it was unreachable (what a restart looks
//! like to the health checks; a restart quicker than they notice is found by the periodic
//! read). compat compares what it declares now with what it declared when it joined:
//! - the same: nothing changes;
//! - a wire-compatible superset (a field or a method added in place): the backend's build is
//!   updated, and with it the catalog when it is the routed build of its package (what the
//!   gateway checks paths against and reflection describes); logged at info;
//! - anything that breaks what it declared: the backend is marked **drifted**, pinned-only
//!   (weight 0: only calls whose `x-api-version` nothing else satisfies), health NOT_SERVING
//!   for a service its build no longer declares (unless another backend serves it), an error
//!   log line with compat's findings, `route list` showing it `drifted` with them. Read again
//!   and compatible with what it joined with, it is no longer drifted and gets its weight back.
//!
//! Reads go over the backend's health-check connection, off the request path, one upstream at
//! a time, each bounded by [`compat::REFLECTION_TIMEOUT`] and checked against the descriptor
//! budget (`compat::budget::check_samples`) as an Add is; the catalog stays within
//! `--max-catalog-bytes`.

use crate::upstream::{self, meaning, upstream_of};
use prost_reflect::DescriptorPool;
use router::{Backend, Build, RouteTable, RouterHandle};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How often descriptors are read again by default (`--descriptor-refresh-secs`).
pub const DEFAULT_DESCRIPTOR_REFRESH: Duration = Duration::from_secs(30);

/// How often the watch looks for backends that answer again (a restart is read at once).
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Reads the descriptors of a router's remote backends again while it runs; stops when dropped.
#[derive(Debug)]
pub struct DriftWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DriftWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DriftWatch {
    /// Starts watching `handle`'s backends, reading each again every `every` and when it answers
    /// after being unreachable; the catalog may hold `max_catalog_bytes`.
    pub fn start(handle: RouterHandle, every: Duration, max_catalog_bytes: usize) -> Self {
        let mut watch = Watch {
            handle,
            every,
            max_catalog_bytes,
            read_at: HashMap::new(),
            recoveries: HashMap::new(),
            weight_before: HashMap::new(),
        };
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOOK_EVERY).await;
                watch.round().await;
            }
        });
        Self { task }
    }
}

struct Watch {
    handle: RouterHandle,
    every: Duration,
    max_catalog_bytes: usize,
    /// Upstream → when its descriptors were last read (or first seen).
    read_at: HashMap<String, Instant>,
    /// Backend → how many times it had become reachable again at the last look.
    recoveries: HashMap<String, u64>,
    /// Backend → its weight before it drifted (given back when it no longer is).
    weight_before: HashMap<String, Option<u8>>,
}

impl Watch {
    /// Reads again the upstreams that are due, and refreshes each of their backends.
    async fn round(&mut self) {
        let table = self.handle.table();
        let now = Instant::now();
        let mut due: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let infos = table.backends();
        for info in &infos {
            let Some(backend) = table.backend(&info.name) else {
                continue;
            };
            let refreshable = backend.build.as_ref().is_some_and(|b| b.refreshable);
            if !refreshable || info.draining {
                continue;
            }
            let upstream = upstream_of(&info.name).to_string();
            let recoveries = backend.recoveries();
            let was = self.recoveries.insert(info.name.clone(), recoveries);
            // Counted, not sampled: a restart shorter than a look is seen too.
            let back = was.is_some_and(|was| was != recoveries);
            let read_at = *self.read_at.entry(upstream.clone()).or_insert(now);
            if !info.reachable {
                // Read once it answers: a recovery seen now is not forgotten meanwhile.
                if let Some(was) = was.filter(|_| back) {
                    self.recoveries.insert(info.name.clone(), was);
                }
                continue;
            }
            if back || now.duration_since(read_at) >= self.every {
                due.entry(upstream).or_default().push(info.name.clone());
            }
        }
        self.recoveries
            .retain(|name, _| infos.iter().any(|i| &i.name == name));
        self.read_at
            .retain(|upstream, _| infos.iter().any(|i| upstream_of(&i.name) == upstream));
        for (upstream, names) in due {
            self.read_at.insert(upstream.clone(), Instant::now());
            let Some(channel) = table.backend(&names[0]).and_then(Backend::upstream_channel) else {
                continue;
            };
            let label = format!("upstream {upstream}");
            let pool = match compat::load_over(&channel, &label, compat::REFLECTION_TIMEOUT).await {
                Ok(api) => api.pool,
                Err(err) => {
                    tracing::debug!(%upstream, "descriptors not read again: {err}");
                    continue;
                }
            };
            if let Err(err) = compat::budget::check_samples(&pool) {
                tracing::error!(%upstream, "descriptors read again are refused: {err}");
                continue;
            }
            for name in names {
                if let Err(err) = self.refresh(&name, &pool).await {
                    tracing::warn!(backend = %name, "descriptors read again not applied: {err:#}");
                }
            }
        }
    }

    /// Compares what backend `name`'s upstream declares now (in `pool`) with its build, and
    /// updates the build, the catalog or the drift mark as the module's documentation says.
    async fn refresh(&mut self, name: &str, pool: &DescriptorPool) -> anyhow::Result<()> {
        let table = self.handle.table();
        let Some(backend) = table.backend(name).cloned() else {
            return Ok(());
        };
        let Some(build) = backend.build.clone() else {
            return Ok(());
        };
        let packages: Vec<&str> = backend.serves.iter().map(String::as_str).collect();
        let now = upstream::restricted(pool, &packages)?;
        let current = DescriptorPool::decode(build.descriptors.as_ref())?;
        if same_files(&now, &current) {
            return Ok(());
        }
        let joined = DescriptorPool::decode(build.baseline().as_ref())?;
        match upstream::superset(&joined, &now, &backend.api)? {
            Err(findings) => {
                tracing::error!(
                    backend = %name,
                    api = %backend.api,
                    "drifted: its upstream now declares what breaks what it declared when it \
                     joined; it is pinned-only until that changes: {findings}"
                );
                self.weight_before
                    .entry(name.to_string())
                    .or_insert(backend.weight);
                let drifted =
                    Build::drifted(&now, findings, build.baseline().clone(), build.breaks);
                self.handle
                    .replace_all_since(&table, None, vec![backend.with_build(drifted)])
                    .await?;
            }
            Ok(()) => {
                let weight = match build.drift {
                    Some(_) => self.weight_before.remove(name).unwrap_or(None),
                    None => backend.weight,
                };
                let mut updated = Build::of(&now).refreshable();
                updated.breaks = build.breaks;
                let backend = backend.with_weight(weight).with_build(updated);
                let catalog = self.catalog_with(&table, &backend, now)?;
                tracing::info!(
                    backend = %name,
                    api = %backend.api,
                    catalog_updated = catalog.is_some(),
                    "descriptors changed and still serve what it declared when it joined; its \
                     build is updated"
                );
                self.handle
                    .replace_all_since(&table, catalog, vec![backend])
                    .await?;
            }
        }
        Ok(())
    }

    /// The catalog holding `backend`'s new files (`now`) when it is the routed build of its
    /// package (the highest active version that is not pinned-only); `None` when it is not,
    /// or when the catalog would pass `--max-catalog-bytes` (logged).
    fn catalog_with(
        &self,
        table: &RouteTable,
        backend: &Backend,
        now: DescriptorPool,
    ) -> anyhow::Result<Option<router::ApiCatalog>> {
        let other = upstream::routed_build(table, &[&backend.api], |name| name == backend.name);
        let routed = other.is_none_or(|o| backend.version.cmp_precedence(&o.version).is_gt());
        if !routed || backend.breaks().is_some() {
            return Ok(None);
        }
        let catalog = table.catalog();
        let pool = upstream::combined(now, catalog, true, &backend.name)
            .map_err(|status| anyhow::anyhow!("{}", status.message()))?;
        let grown = compat::budget::guarded(|| catalog.grown(pool, &catalog.packages()))
            .map_err(|err| anyhow::anyhow!("the catalog cannot take the new descriptors: {err}"))?;
        if grown.encoded_len() > self.max_catalog_bytes {
            tracing::warn!(
                backend = %backend.name,
                bytes = grown.encoded_len(),
                max = self.max_catalog_bytes,
                "the catalog keeps the old descriptors: with the new ones it would pass \
                 --max-catalog-bytes"
            );
            return Ok(None);
        }
        Ok(Some(grown))
    }
}

/// Whether `a` and `b` hold the same files, saying the same things.
fn same_files(a: &DescriptorPool, b: &DescriptorPool) -> bool {
    a.files().len() == b.files().len()
        && a.file_descriptor_protos().all(|file| {
            b.get_file_by_name(file.name())
                .is_some_and(|other| meaning(other.file_descriptor_proto()) == meaning(file))
        })
}
