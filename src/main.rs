//! `testbed`: serve v1 and v2 of the Incrementer API side by side, run the compatibility matrix,
//! and print the experiment's report. `testbed --help` lists the commands.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use testbed::clients::ClientKind;
use testbed::deployment::Deployment;
use testbed::{matrix, server};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "gRPC version-compatibility testbed: v1 and v2 side by side, every client against every deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Incrementer API with health and reflection until Ctrl-C or SIGTERM.
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: SocketAddr,
        /// Which implementations serve which API version, and whether the version router is used.
        #[arg(long, value_enum, default_value_t = Deployment::SideBySide)]
        deployment: Deployment,
    },
    /// Run every client against every deployment and print the compatibility matrix.
    Matrix {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Only these clients (repeatable; default all).
        #[arg(long = "client", value_enum)]
        clients: Vec<ClientKind>,
        /// Only these deployments (repeatable; default all).
        #[arg(long = "deployment", value_enum)]
        deployments: Vec<Deployment>,
    },
    /// The main job: run the whole experiment and print its report.
    Report,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve { addr, deployment } => serve(addr, deployment).await,
        Command::Matrix {
            json,
            clients,
            deployments,
        } => {
            let clients = if clients.is_empty() {
                ClientKind::ALL.to_vec()
            } else {
                clients
            };
            let deployments = if deployments.is_empty() {
                Deployment::ALL.to_vec()
            } else {
                deployments
            };
            let cells = matrix::run(&clients, &deployments).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cells)?);
            } else {
                print!("{}", matrix::render(&cells));
            }
            Ok(())
        }
        Command::Report => report().await,
    }
}

async fn serve(addr: SocketAddr, deployment: Deployment) -> anyhow::Result<()> {
    let running = server::start(addr, deployment).await?;
    println!("testbed serving {deployment} on {}", running.addr);
    shutdown_signal().await?;
    tracing::info!("shutting down; in-flight requests may finish");
    running.shutdown().await
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

async fn report() -> anyhow::Result<()> {
    println!("# gRPC version-compatibility testbed report\n");
    println!("## Compatibility matrix\n");
    println!(
        "Rows are clients, columns deployments. ✓ shows the values returned (unary: 41 → 42 for v1, \
         41 + step 5 → 46 for v2; stream: 10,20,30), ✗ a silently wrong answer, otherwise the gRPC status.\n"
    );
    let cells = matrix::run(&ClientKind::ALL, &Deployment::ALL).await?;
    print!("{}", matrix::render(&cells));
    Ok(())
}
