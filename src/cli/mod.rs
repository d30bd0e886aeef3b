//! Command definitions and dispatch.

mod output;
mod save;
mod serve;
mod settings;
mod warmup;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Every image reached its target (or was already there).
pub const EXIT_OK: u8 = 0;
/// At least one image failed; the others were still processed.
pub const EXIT_IMAGE_FAILED: u8 = 1;
/// Nothing was transferred: invalid settings or input, an unreachable engine, too little space.
pub const EXIT_SETUP: u8 = 2;

/// Get container images onto provisioning nodes: online, through a proxy, or across an air gap.
#[derive(Parser, Debug)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log more: -v for progress details, -vv for every request.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print only errors and the final result.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Preload the warmup images into Docker (or an OCI layout) from the registry.
    Warmup(Box<warmup::WarmupArgs>),
    /// Save images from the registry into one archive for an air-gapped site.
    Save(Box<save::SaveArgs>),
    /// Serve an OCI image layout folder as a read-only registry.
    Serve(serve::ServeArgs),
}

/// Connection settings shared by commands that talk to registries.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Extra CA certificate file (PEM) to trust for every registry; repeatable.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Folder of per-registry CA certificates, Docker's layout: DIR/HOST:PORT/ca.crt.
    #[arg(long, value_name = "DIR", default_value = "/etc/docker/certs.d")]
    pub certs_dir: PathBuf,
    /// Reach this registry host (host or host:port) over plain HTTP; repeatable.
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Attempts per registry request, the first included.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub attempts: u32,
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Warmup(args) => warmup::run(*args, cli.quiet).await,
        Command::Save(args) => save::run(*args, cli.quiet).await,
        Command::Serve(args) => serve::run(args).await,
    }
}

/// Logs go to stderr: warnings by default, more with -v, only errors with -q. `FERRY_LOG`
/// (a tracing filter such as `ferry=debug`) overrides both.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("ferry={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}
