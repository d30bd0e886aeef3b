//! Command definitions and dispatch.

mod check;
mod load;
mod mirror;
mod output;
mod proxy;
mod push;
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
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors and the final result.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Preload the warmup images into Docker (or an OCI layout) from the registry.
    Warmup(Box<warmup::WarmupArgs>),
    /// Load an archive into Docker, after verifying every byte of it.
    Load(load::LoadArgs),
    /// Save images from the registry into one archive for an air-gapped site.
    Save(Box<save::SaveArgs>),
    /// Copy the warmup images into a private registry, registry to registry.
    Mirror(Box<mirror::MirrorArgs>),
    /// Push the images of archives into a private registry.
    Push(Box<push::PushArgs>),
    /// Serve an OCI image layout folder or an archive as a read-only registry.
    Serve(serve::ServeArgs),
    /// Configure the Docker daemon's proxy, or list the hosts the proxy must allow.
    Proxy(proxy::ProxyCommandArgs),
    /// Check settings, registry, credentials, images, engine, disk space and loaded images, and
    /// change nothing.
    Check(Box<check::CheckArgs>),
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
    #[arg(long = "plain-http", value_name = "HOST", value_parser = parse_plain_http_host)]
    pub plain_http: Vec<String>,
    /// Attempts per registry request, the first included.
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    /// Maximum download rate for all downloads together, in bytes per second with an optional
    /// K, M or G suffix (powers of 1024), such as 20M, so a fleet does not saturate a WAN link.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

/// Parses `20M`, `500K` or a plain number of bytes per second.
fn parse_rate(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("invalid rate {value:?}: expected bytes per second such as 20M or 500K"))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("/S").trim_end_matches('B') {
        "" => 0,
        "K" | "KI" => 10,
        "M" | "MI" => 20,
        "G" | "GI" => 30,
        _ => return Err(format!("invalid rate {value:?}: the unit must be K, M or G")),
    };
    let rate = number.checked_mul(1 << shift).ok_or_else(|| format!("invalid rate {value:?}: too large"))?;
    if rate < 1024 {
        return Err(format!("invalid rate {value:?}: use at least 1K"));
    }
    Ok(rate)
}

impl RegistryArgs {
    /// Returns the client options these flags set.
    pub fn client_options(&self) -> ferry::registry::ClientOptions {
        ferry::registry::ClientOptions {
            ca_files: self.ca_files.clone(),
            certs_dir: Some(self.certs_dir.clone()),
            plain_http: self.plain_http.clone(),
            retry: ferry::registry::RetryPolicy { attempts: self.attempts.max(1), ..Default::default() },
            limit_rate: self.limit_rate,
            ..Default::default()
        }
    }
}

/// Accepts `host`, `host:port`, or the same written as an `http://` URL.
fn parse_plain_http_host(value: &str) -> Result<String, String> {
    let host = value.trim().trim_start_matches("http://").trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains("://") {
        return Err(format!("invalid host {value:?}: expected host or host:port, such as 127.0.0.1:5000"));
    }
    Ok(host.to_owned())
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let (json, result) = match cli.command {
        Command::Warmup(args) => (args.json, warmup::run(*args, cli.quiet).await),
        Command::Save(args) => (args.json, save::run(*args, cli.quiet).await),
        Command::Load(args) => (args.json, load::run(args, cli.quiet).await),
        Command::Mirror(args) => (args.json, mirror::run(*args, cli.quiet).await),
        Command::Push(args) => (args.json, push::run(*args, cli.quiet).await),
        Command::Serve(args) => (false, serve::run(args).await),
        Command::Proxy(args) => (args.json(), proxy::run(args).await),
        Command::Check(args) => (args.json, check::run(*args, cli.quiet).await),
    };
    match result {
        // With --json, a failure before any image was processed is still one JSON document.
        Err(err) if json => {
            let message = ferry::error_message(err.as_ref());
            output::print_json_error(&message);
            eprintln!("error: {message}");
            Ok(EXIT_SETUP)
        }
        other => other,
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
