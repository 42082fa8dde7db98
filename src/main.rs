//! The `certctl` binary: parses flags and the environment, builds typed
//! config and hands over to the crates. Thin on purpose: everything certctl
//! does lives in the engine; the HTTP face and its client live in `api`.

mod cli;
mod demo;
mod files;

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the API's hot paths (request
/// parsing, JSON, audit batches) allocate and free many small objects, and
/// glibc malloc/free was 10 to 15 % of the CPU in the REST profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    // One rustls crypto provider for the whole process, before anything
    // builds a TLS config (reqwest, later instant-acme and the TLS listener).
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("certctl: error: a rustls crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let cli = cli::Cli::parse();
    init_tracing(matches!(cli.command, cli::Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("certctl: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain joined by ": ".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("certctl: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (stdout carries command output). `RUST_LOG` wins; the
/// default is `info` for the server and `warn` for client commands.
fn init_tracing(server: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
