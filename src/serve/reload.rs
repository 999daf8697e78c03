//! SIGHUP: a gateway started with `--config FILE` reads the file again and puts the route table
//! it describes in place of the running one, all or none: its upstreams are checked and read
//! (reflection, descriptor files) as at start, and only when every one of them is does the new
//! table replace the old one, in one change (under the admin API's change lock, the state file
//! written again). A file that does not parse, an upstream that cannot be read or a table that
//! does not validate leaves the running table as it was, logged. Only the route table is
//! reloaded (`upstream`, `descriptors`, `sticky-header`); other flags take a restart.

use crate::commands::{Cli, Command};
use clap::Parser;
use port::admin::RunningAdmin;
use router::RouterHandle;
use std::net::SocketAddr;
use std::path::Path;
use tokio::signal::unix::Signal;

/// SIGHUP, caught from now on: taken before `serve` says it is up, so that a signal sent as
/// soon as it is reloads instead of ending the process (SIGHUP's default).
pub(super) fn hangups() -> anyhow::Result<Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|err| anyhow::anyhow!("cannot listen for SIGHUP: {err}"))
}

/// What a reload needs of the running gateway.
pub(super) struct Reloader<'a> {
    /// The config file, for the log.
    pub(super) config: &'a Path,
    pub(super) router: &'a RouterHandle,
    pub(super) admin: Option<&'a RunningAdmin>,
    /// The gateway's own listeners, refused as upstreams.
    pub(super) own: Vec<SocketAddr>,
    pub(super) ca: Option<&'a Path>,
    pub(super) max_catalog_bytes: usize,
    /// `--max-replicas` of the start, as the catalog's bound is the start's.
    pub(super) max_replicas: usize,
}

impl Reloader<'_> {
    /// Reloads on every SIGHUP `hangups` receives ([`hangups`]), until the process stops.
    pub(super) async fn run(&self, mut hangups: Signal) {
        while hangups.recv().await.is_some() {
            // Said on standard output too, beside `serve`'s other status lines, for whoever
            // sent the signal.
            match self.reload().await {
                Ok(upstreams) => {
                    tracing::info!(
                        config = %self.config.display(),
                        upstreams,
                        "reloaded: the route table is the file's"
                    );
                    println!(
                        "testbed reloaded {}: {upstreams} upstreams",
                        self.config.display()
                    );
                }
                Err(err) => {
                    tracing::error!(
                        config = %self.config.display(),
                        "reload refused, the route table is unchanged: {err:#}"
                    );
                    println!("testbed reload refused, the route table is unchanged: {err:#}");
                }
            }
        }
    }

    /// Reads the command line and the config again and swaps in the table they describe; how
    /// many upstreams it has.
    async fn reload(&self) -> anyhow::Result<usize> {
        let args = crate::serve_config::expanded(std::env::args_os())?;
        let cli = Cli::try_parse_from(args)?;
        let Command::Serve(args) = cli.command else {
            anyhow::bail!("the command line is no longer `serve`");
        };
        anyhow::ensure!(
            !args.upstreams.is_empty(),
            "the file names no upstream; a gateway keeps at least one"
        );
        super::refuse_own_addresses(&args.upstreams, &self.own).await?;
        super::refuse_too_many_replicas(&args.upstreams, self.max_replicas)?;
        let gateway = port::upstream::gateway_within(
            &args.upstreams,
            &args.descriptors,
            self.ca,
            self.max_catalog_bytes,
        )
        .await?;
        let addresses = port::admin::addresses(&gateway);
        let table = gateway.table.with_sticky_header(args.sticky_header.clone());
        match self.admin {
            Some(admin) => {
                if let Some(warning) = admin.replace_table(table, addresses).await? {
                    tracing::warn!("{warning}");
                }
            }
            None => self.router.replace_table(table).await?,
        }
        Ok(args.upstreams.len())
    }
}
