//! The `testbed` command line: the global flags and the commands, as `main.rs` parses them.

use bench::Flavor;
use clap::{Parser, Subcommand};

/// The command line: the global flags and one command.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "gRPC version-compatibility testbed: check two versions of an API, route them side by side \
             through a gateway, probe them live, and run the whole experiment (matrix, rollout, latency)"
)]
pub struct Cli {
    /// tokio runtime flavour of this process (the runtime alone moves latencies by 1.5-2x).
    #[arg(long, global = true, value_enum, default_value_t = Flavor::MultiThread)]
    pub runtime: Flavor,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands; each one's flags are in [`crate::cli`] (or its crate).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The gateway: route any gRPC API's calls to upstreams by package and x-api-version.
    ///
    /// With --upstream, calls of any API are routed to upstreams by package and x-api-version,
    /// with health, reflection and an admin API (--admin-addr); without it, the Incrementer
    /// example is served (v1 and v2 side by side). Runs until Ctrl-C or SIGTERM.
    Serve(Box<crate::serve::ServeArgs>),
    /// Run every client against every deployment and print the compatibility matrix (with
    /// --old, --new and --traffic: of your own API's two builds, behind gateways).
    Matrix(crate::cli::MatrixArgs),
    /// N v1 and M v2 clients at once against one address, every reply verified (with
    /// --traffic and --old: your API's traffic through your gateway, compared with OLD's).
    Mixed(crate::cli::MixedArgs),
    /// A zero-downtime v1 → v2 rollout under mixed-version load, every request counted (with
    /// --traffic, --old and --new: a gateway moved from your old build to your new one).
    Rollout(crate::cli::RolloutArgs),
    /// The latency runs: sequential dependent increments over every hop, side by side.
    Bench(crate::cli::BenchArgs),
    /// Serve one of the non-gRPC baselines of the latency runs (used by `bench`).
    #[command(hide = true)]
    BenchTarget(bench::baseline::TargetArgs),
    /// The main job: run the whole experiment (matrix, rollout, latency runs) and print its report.
    Report(crate::cli::ReportArgs),
    /// Breaking-change verdict for two versions of any gRPC API (proto dirs, descriptor sets or
    /// grpc://HOST:PORT by reflection), every finding confirmed on the wire; exit 100 when
    /// something breaks.
    Check(compat::cli::CheckArgs),
    /// Documentation of any gRPC API as a self-contained HTML page and Markdown: services,
    /// methods, messages and enums with the protos' comments; with --against OLD, a changelog
    /// (breaking, added, patch) and the semver verdict.
    Docs(crate::docs::DocsArgs),
    /// List, change or export (as Istio or Gateway API YAML) the routes of a running `testbed
    /// serve` through its admin API.
    Route(crate::route::RouteArgs),
    /// A canary that reads gRPC: raise a new backend's weight step by step, judge each step
    /// from the gateway's per-backend errors and p99 against the old backend's, and promote or
    /// roll back on its own; exit 0 promoted, 100 rolled back, 3 too few calls to judge.
    Canary(crate::canary::CanaryArgs),
    /// Faults (kill, stop, drain-remove-add, replace) injected into a gateway's backends
    /// under mixed-version load, the gateway's health compared with what calls see.
    Chaos(crate::chaos::ChaosArgs),
    /// Live compatibility probe: each version's clients call the other version's server (or a
    /// gateway, --via) with generated requests; exit 100 when old clients are affected.
    Probe(crate::cli::ProbeArgs),
    /// Replay recorded traffic or a scenario against OLD, a second OLD and NEW, and diff the
    /// replies field by field (noise left out); exit 100 when NEW answers differently.
    Replay(crate::cli::ReplayArgs),
    /// Make a CA, a server certificate and client certificates for the TLS set-ups (ca.pem,
    /// server.pem/.key, NAME.pem/.key) in a folder.
    Pki(port::pki::PkiArgs),
    /// Print the bootstrap of an Envoy that takes its routes from `serve --xds-addr`.
    XdsBootstrap(crate::xds::bootstrap::BootstrapArgs),
}
