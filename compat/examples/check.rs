//! Runs `check OLD NEW` the way `testbed check` does: `cargo run -p compat --example check -- proto/v1 proto/v2`.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: compat::cli::CheckArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match compat::cli::run(&cli.args, &mut out).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
