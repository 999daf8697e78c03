//! Changing a running proxy's routes the proxy's own way, without restarting it, and waiting
//! until the proxy itself confirms the change:
//!
//! - nginx: the configuration file is replaced and `nginx -s reload` (with the same `-p`/`-c`)
//!   sends SIGHUP to the master, which starts new workers with the new configuration and asks
//!   the old ones to finish what they have and exit. Confirmed when every old worker has logged
//!   `gracefully shutting down` (from then on it accepts no new connection); a configuration
//!   the master refuses is logged `[emerg]`.
//! - HAProxy: no reload. The routes are a map and server states, changed through the runtime
//!   API and confirmed by reading them back (`haproxy_runtime`).
//! - Envoy: filesystem xDS. The routes (`rds.yaml`) and clusters (`cds.yaml`) files are replaced
//!   by an atomic rename, which Envoy watches for; a cluster is added before the routes that
//!   name it change and removed after. Confirmed by the `update_success` counters read from the
//!   admin interface (a Unix socket in the proxy's directory); `update_rejected` is a refusal.

use super::{RunningProxy, tail, unix_exchange, write_atomically};
use crate::ProxyKind;
use crate::config::{self, ConfigFile, envoy, nginx};
use crate::plan::{Arrangement, RoutePlan, Upstream};
use anyhow::{Context, bail};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How long a proxy may take to confirm a new configuration.
pub(super) const APPLY_WITHIN: Duration = Duration::from_secs(15);
/// How often the confirmation is looked for.
pub(super) const POLL: Duration = Duration::from_millis(5);

/// How a new configuration was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// What was done, in the proxy's terms (`nginx -s reload`, ...).
    pub how: String,
    /// From replacing the configuration until the proxy confirmed it.
    pub took: Duration,
}

impl RunningProxy {
    /// Changes the running proxy to `arrangement` (on the same port) the proxy's documented
    /// way without a restart, and returns once the proxy has confirmed it. Fails, with the
    /// proxy's own words, when it refuses the new configuration or does not confirm it within
    /// 15 s. nginx then keeps the old configuration in force and on disk; HAProxy and Envoy
    /// take a change in steps (HAProxy: servers, map, servers again; Envoy: clusters, routes,
    /// clusters again), so a refused step leaves the ones before it in force (Envoy: and the
    /// refused file on disk): start the proxy again after such an error rather than
    /// reconfiguring it further.
    pub async fn reconfigure(&mut self, arrangement: &Arrangement) -> anyhow::Result<Reconfigured> {
        let plan = arrangement.plan();
        let files = config::render(self.kind, &plan, self.addr, self.dir.path(), &self.tuning);
        let started = Instant::now();
        let how = match self.kind {
            ProxyKind::Nginx => self.reload_nginx(files).await?,
            ProxyKind::Haproxy => self.update_haproxy(&plan, files).await?,
            ProxyKind::Envoy => self.update_envoy(&plan, files).await?,
        };
        self.plan = plan;
        Ok(Reconfigured {
            how: how.to_string(),
            took: started.elapsed(),
        })
    }

    async fn reload_nginx(&mut self, files: Vec<ConfigFile>) -> anyhow::Result<&'static str> {
        let dir = self.dir.path().to_path_buf();
        let old = self.files.clone();
        let before = self.log();
        write_all(&dir, &files)?;
        let config_path = dir.join(config::file_name(self.kind));
        let output = Command::new(self.kind.find()?)
            .args(config::args(self.kind, &config_path, &dir))
            .args(["-s", "reload"])
            .current_dir(&dir)
            .output()
            .await
            .context("cannot run nginx -s reload")?;
        if !output.status.success() {
            write_all(&dir, &old)?;
            bail!(
                "nginx -s reload failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // The master logs `start worker processes` before the new workers run, and the old
        // ones accept connections (with the old routes) until each has logged `gracefully
        // shutting down`: only then does every new connection get the new configuration.
        let applied = self
            .wait_for_log(before.len(), |log| {
                if log.contains("[emerg]") {
                    Some(false)
                } else {
                    (log.contains("start worker processes")
                        && log.matches("gracefully shutting down").count() >= nginx::WORKERS)
                        .then_some(true)
                }
            })
            .await;
        self.settle(applied, &dir, old, files)?;
        Ok("nginx -s reload (SIGHUP to the master: new workers, the old ones finish and exit)")
    }

    /// Keeps `files` as the configuration when `applied` says the proxy took them; otherwise
    /// puts `old` back on disk and fails with the log's new lines.
    fn settle(
        &mut self,
        applied: anyhow::Result<bool>,
        dir: &std::path::Path,
        old: Vec<ConfigFile>,
        files: Vec<ConfigFile>,
    ) -> anyhow::Result<()> {
        match applied {
            Ok(true) => {
                self.files = files;
                Ok(())
            }
            Ok(false) => {
                write_all(dir, &old)?;
                bail!(
                    "{} refused the new configuration; its log ends:\n{}",
                    self.kind,
                    tail(&self.log())
                )
            }
            Err(err) => {
                write_all(dir, &old)?;
                Err(err)
            }
        }
    }

    /// Waits until `verdict` on the log written after byte `from` says applied (`Some(true)`)
    /// or refused (`Some(false)`).
    async fn wait_for_log(
        &self,
        from: usize,
        verdict: impl Fn(&str) -> Option<bool>,
    ) -> anyhow::Result<bool> {
        let started = Instant::now();
        while started.elapsed() < APPLY_WITHIN {
            let log = self.log();
            if let Some(done) = verdict(log.get(from..).unwrap_or_default()) {
                return Ok(done);
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "{} did not confirm the new configuration within {} s; its log ends:\n{}",
            self.kind,
            APPLY_WITHIN.as_secs(),
            tail(&self.log())
        )
    }

    async fn update_envoy(
        &mut self,
        plan: &RoutePlan,
        files: Vec<ConfigFile>,
    ) -> anyhow::Result<&'static str> {
        let current = |name: &str| {
            self.files
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.text.clone())
        };
        let (old_routes, old_clusters) =
            (current(envoy::ROUTES_FILE), current(envoy::CLUSTERS_FILE));
        let new = |name: &str| files.iter().find(|f| f.name == name).cloned();
        let routes = new(envoy::ROUTES_FILE).context("Envoy's routes were not rendered")?;
        let clusters = new(envoy::CLUSTERS_FILE).context("Envoy's clusters were not rendered")?;
        // Clusters the new routes name must exist before the routes change, and clusters the
        // old routes name must outlive the change: first the union, then the new set.
        let mut union: Vec<Upstream> = plan.upstreams.clone();
        for upstream in &self.plan.upstreams {
            if !union.iter().any(|u| u.name == upstream.name) {
                union.push(upstream.clone());
            }
        }
        let union = config::envoy_clusters(&union);
        let mut last_clusters = old_clusters;
        for (file, stat) in [
            (union, envoy::CDS_STAT),
            (routes, envoy::RDS_STAT),
            (clusters, envoy::CDS_STAT),
        ] {
            let unchanged = if file.name == envoy::ROUTES_FILE {
                old_routes.as_deref() == Some(file.text.as_str())
            } else {
                last_clusters.as_deref() == Some(file.text.as_str())
            };
            if unchanged {
                continue;
            }
            self.envoy_apply(&file, stat).await?;
            if file.name == envoy::CLUSTERS_FILE {
                last_clusters = Some(file.text.clone());
            }
        }
        self.files = files;
        Ok("Envoy filesystem xDS (rds.yaml and cds.yaml replaced by an atomic rename)")
    }

    /// Moves `file` into place and waits until Envoy's `stat` counters say it was accepted.
    async fn envoy_apply(&self, file: &ConfigFile, stat: &str) -> anyhow::Result<()> {
        let socket = self.dir.path().join(envoy::ADMIN_SOCKET);
        let (success, rejected) = envoy_counters(&socket, stat).await?;
        write_atomically(self.dir.path(), file)?;
        let started = Instant::now();
        while started.elapsed() < APPLY_WITHIN {
            let (now_success, now_rejected) = envoy_counters(&socket, stat).await?;
            if now_rejected > rejected {
                bail!(
                    "Envoy rejected the new {}; its log ends:\n{}",
                    file.name,
                    tail(&self.log())
                );
            }
            if now_success > success {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "Envoy did not apply the new {} within {} s ({stat}.update_success stayed at {success})",
            file.name,
            APPLY_WITHIN.as_secs()
        )
    }
}

fn write_all(dir: &std::path::Path, files: &[ConfigFile]) -> anyhow::Result<()> {
    files
        .iter()
        .try_for_each(|file| write_atomically(dir, file))
}

/// `STAT.update_success` and `STAT.update_rejected` from Envoy's admin interface on `socket`
/// (HTTP/1.1 over the Unix socket; a counter not yet created reads 0).
async fn envoy_counters(socket: &std::path::Path, stat: &str) -> anyhow::Result<(u64, u64)> {
    let request = format!(
        "GET /stats?filter={stat}.update_ HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n"
    );
    let reply = unix_exchange(socket, request.as_bytes(), "Envoy's admin interface").await?;
    anyhow::ensure!(
        reply.starts_with("HTTP/1.1 200"),
        "Envoy's admin interface answered: {}",
        reply.lines().next().unwrap_or_default()
    );
    let counter = |name: &str| {
        reply
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{stat}.{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((counter("update_success"), counter("update_rejected")))
}
