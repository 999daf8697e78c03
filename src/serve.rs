//! `testbed serve`: the port with its deployment, a backend, or the gateway over upstreams
//! (`--upstream`), with its admin API, metrics and drift watch, until a signal stops it. Its
//! flags may come from a file (`--config`, see [`crate::serve_config`]) and the gateway's
//! route table from a state file the admin API keeps (`--state-file`).

mod reload;

use port::Deployment;
use port::server::{self, Layout, ServeOptions};
use port::upstream::{DescriptorsSpec, UpstreamSpec};
use services::Api;
use std::net::SocketAddr;

/// `testbed serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = port::upstream::UPSTREAM_SPEC_HELP, args_override_self = true)]
pub struct ServeArgs {
    /// Read flags from this YAML file, one key per flag by its long name (`addr: ...`,
    /// `upstream: [...]`, `grpc-web: true`); flags after it on the command line win. See
    /// docs/gateway.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:50051", value_parser = server::parse_addr)]
    pub addr: SocketAddr,
    /// Which implementations serve which API version, and whether the version router is used.
    #[arg(long, value_enum, default_value_t = Deployment::SideBySide)]
    pub deployment: Deployment,
    /// Serve only this implementation (v1 or v2), without a router: a backend for another
    /// process's router.
    #[arg(long, conflicts_with_all = ["deployment", "upstreams"])]
    pub backend: Option<Api>,
    /// Route to a backend in another process: NAME=VERSION@ADDRESS with replicas, retired
    /// packages and a weight as the grammar under "Upstream:" below says. Which API packages it
    /// implements is read from it by gRPC reflection at start (or from --descriptors).
    /// Repeatable.
    #[arg(long = "upstream", conflicts_with = "deployment")]
    pub upstreams: Vec<UpstreamSpec>,
    /// NAME=FILE: the descriptors of upstream NAME (a FileDescriptorSet, as `protoc
    /// --include_imports -o` or `buf build -o` write, or a directory of .proto files), for an
    /// upstream that serves no reflection. Repeatable.
    #[arg(long = "descriptors", requires = "upstreams")]
    pub descriptors: Vec<DescriptorsSpec>,
    /// With upstreams that carry a ;weight=N, the request header whose value decides which side
    /// of the split a call falls on (e.g. x-user-id): one caller stays on one version while the
    /// weights hold. Without it (or without the header) each call falls at random.
    #[arg(long, requires = "upstreams", value_parser = port::observe::header_name)]
    pub sticky_header: Option<http::HeaderName>,
    /// Seconds between reads, by reflection, of each upstream's descriptors (also read at once
    /// when it answers again after being unreachable): a compatible change updates its build,
    /// one that breaks what it declared when it joined marks it drifted and pinned-only (see
    /// docs/gateway.md). 0: never read again.
    #[arg(long, default_value_t = port::drift::DEFAULT_DESCRIPTOR_REFRESH.as_secs())]
    pub descriptor_refresh_secs: u64,
    /// The admin API (`testbed route`), on a listener of its own.
    #[command(flatten)]
    pub admin: port::admin::AdminOptions,
    /// Limits and timeouts.
    #[command(flatten)]
    pub options: ServeOptions,
    /// The xDS control plane for a fleet of Envoys (see docs/xds.md).
    #[command(flatten)]
    pub xds: crate::xds::XdsArgs,
}

/// Serves until Ctrl-C or SIGTERM, then stops gracefully.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // Before anything starts: the admin API is refused without a token or client CA.
    let admin_config = args.admin.config()?;
    // Before any descriptor is opened: the open-files limit raised, the caps clamped to it.
    let fds = port::fds::Plan::new(
        &args.options.fds,
        args.options.max_connections,
        admin_config.as_ref().map(|config| config.max_connections()),
    )?;
    fds.log();
    let admin_config = admin_config.map(|config| match fds.admin {
        Some((_, cap)) => config.with_max_connections(cap),
        None => config,
    });
    let mut options = ServeOptions {
        max_connections: fds.max_connections,
        ..args.options.clone()
    };
    // The admin API is where the usage table is read (and what the quiet period guards).
    options.observe.track_usage = admin_config.is_some();
    let (upstreams, descriptors) = table_source(args)?;
    let mut addresses = std::collections::HashMap::new();
    let (layout, label) = if let Some(api) = args.backend {
        (Layout::Direct(vec![api]), format!("{api} backend"))
    } else if !upstreams.is_empty() {
        // The port and the admin listener are refused as upstreams: calls would loop back.
        let own: Vec<SocketAddr> = [Some(args.addr), args.admin.admin_addr]
            .into_iter()
            .flatten()
            .collect();
        refuse_own_addresses(&upstreams, &own).await?;
        refuse_too_many_replicas(&upstreams, args.admin.max_replicas)?;
        // What each upstream implements is read from it now, before the port opens.
        port::pool::set_limits(args.options.pool.limits());
        let ca = args.options.tls.upstream_ca.as_deref();
        let gateway = port::upstream::gateway_within(
            &upstreams,
            &descriptors,
            ca,
            args.admin.max_catalog_bytes,
        )
        .await?;
        addresses = port::admin::addresses(&gateway);
        (
            Layout::Routed(gateway.table.with_sticky_header(args.sticky_header.clone())),
            "router over upstreams".to_string(),
        )
    } else {
        let layout = args.deployment.layout(args.options.max_message_bytes)?;
        (layout, args.deployment.to_string())
    };
    if args.backend.is_none()
        && upstreams.is_empty()
        && args.deployment == Deployment::NaiveProxyToV1
    {
        tracing::warn!(
            "naive-proxy-to-v1 answers v2 clients WRONGLY on purpose (v2 requests go to the v1 \
             implementation, which ignores step): it shows what the router prevents"
        );
    }
    let running = server::start_with(args.addr, layout, &label, &options).await?;
    if let Some(router) = &running.router {
        for backend in router.table().backends() {
            tracing::info!(
                backend = %backend.name,
                version = %backend.version,
                api = %backend.api,
                serves = %backend.serves.join(", "),
                "route"
            );
        }
    }
    // Upstreams read by reflection are read again, so that a restart with another build is seen.
    let _drift = running
        .router
        .as_ref()
        .filter(|_| !upstreams.is_empty() && args.descriptor_refresh_secs > 0)
        .map(|router| {
            port::drift::DriftWatch::start(
                router.clone(),
                std::time::Duration::from_secs(args.descriptor_refresh_secs),
                args.admin.max_catalog_bytes,
            )
        });
    let xds = crate::xds::start(&args.xds).await?;
    let admin = match (admin_config, &running.router) {
        (Some(config), Some(router)) => {
            let ca = args.options.tls.upstream_ca.clone();
            let gateway = [running.addr];
            let config = config
                .with_metrics(running.metrics())
                .with_usage(running.usage())
                .with_shadow(running.shadow())
                .with_state_file(args.admin.state_file.clone())
                .with_fleet(xds.as_ref().map(|xds| xds.plane.clone() as _));
            let admin =
                port::admin::start_guarding(config, router.clone(), addresses, ca, &gateway);
            Some(admin.await?)
        }
        (Some(_), None) => anyhow::bail!("--admin-addr: {label} has no route table to change"),
        (None, _) => None,
    };
    let hangups = match (&args.config, &running.router) {
        (Some(_), Some(_)) if !upstreams.is_empty() => Some(reload::hangups()?),
        _ => None,
    };
    println!("testbed serving {label} on {}", running.addr);
    if let Some(admin) = &admin {
        println!("testbed admin API on {}", admin.address());
    }
    if let Some(xds) = &xds {
        println!("testbed xDS on {}", xds.addr);
    }
    if let Some(metrics) = running.metrics_addr() {
        println!("testbed metrics on http://{metrics}/metrics");
    }
    match (&args.config, &running.router, hangups) {
        (Some(config), Some(router), Some(hangups)) => {
            let reloader = reload::Reloader {
                config,
                router,
                admin: admin.as_ref(),
                own: [Some(running.addr), args.admin.admin_addr]
                    .into_iter()
                    .flatten()
                    .collect(),
                ca: args.options.tls.upstream_ca.as_deref(),
                max_catalog_bytes: args.admin.max_catalog_bytes,
                max_replicas: args.admin.max_replicas,
            };
            tokio::select! {
                stopped = port::signal::shutdown() => stopped?,
                () = reloader.run(hangups) => {}
            }
        }
        _ => port::signal::shutdown().await?,
    }
    tracing::info!("shutting down; in-flight requests may finish");
    // Both stop, whatever the first says; the first error is the one reported.
    let admin_stopped = match admin {
        Some(admin) => admin.shutdown().await,
        None => Ok(()),
    };
    let port_stopped = running.shutdown().await;
    admin_stopped.and(port_stopped)
}

/// The upstreams and descriptors files the gateway starts with: an existing `--state-file`'s
/// (the table as the admin API last left it), else `--upstream` and `--descriptors`.
fn table_source(args: &ServeArgs) -> anyhow::Result<(Vec<UpstreamSpec>, Vec<DescriptorsSpec>)> {
    let from_flags = || Ok((args.upstreams.clone(), args.descriptors.clone()));
    let Some(path) = &args.admin.state_file else {
        return from_flags();
    };
    let Some(state) = port::admin::state::State::load(path)? else {
        return from_flags();
    };
    let bad = |what: &str, text: &str, why: String| {
        anyhow::anyhow!("--state-file {}: {what} {text:?}: {why}", path.display())
    };
    let upstreams = state
        .upstream
        .iter()
        .map(|text| text.parse().map_err(|why| bad("upstream", text, why)))
        .collect::<anyhow::Result<Vec<UpstreamSpec>>>()?;
    let descriptors = state
        .descriptors
        .iter()
        .map(|text| text.parse().map_err(|why| bad("descriptors", text, why)))
        .collect::<anyhow::Result<Vec<DescriptorsSpec>>>()?;
    tracing::info!(
        state_file = %path.display(),
        upstreams = upstreams.len(),
        "the route table as the admin API last left it (--upstream and --descriptors are not used)"
    );
    Ok((upstreams, descriptors))
}

/// `Err` when an upstream lists more addresses than `--max-replicas`.
fn refuse_too_many_replicas(upstreams: &[UpstreamSpec], max: usize) -> anyhow::Result<()> {
    for spec in upstreams {
        spec.within_replicas(max).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Refuses upstreams at one of the gateway's own listening addresses (`own`): calls would
/// loop back.
async fn refuse_own_addresses(
    upstreams: &[UpstreamSpec],
    own: &[SocketAddr],
) -> anyhow::Result<()> {
    for spec in upstreams {
        for host_port in spec.host_ports() {
            port::route_checks::refuse_own_address(&spec.name, host_port, own)
                .await
                .map_err(|why| anyhow::anyhow!("--upstream: {why}"))?;
        }
    }
    Ok(())
}
