//! `ferry proxy`: the Docker daemon's side of proxy mode. `configure` writes the daemon's proxy
//! settings from ferry's own; `hosts` lists the hosts the proxy must allow.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use ferry::daemon_proxy::{self, DaemonProxy, DroppedEntry, Method, Plan, ProxiedHost};
use ferry::engine::{Engine, EngineInfo};
use ferry::platform::Platform;
use ferry::reference::Reference;
use ferry::settings::{self, Settings};

use super::settings::SettingsArgs;
use super::{RegistryArgs, EXIT_IMAGE_FAILED, EXIT_OK};

/// Maximum wait for the restarted daemon to respond to `GET /info`.
const RESTART_WAIT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct ProxyCommandArgs {
    #[command(subcommand)]
    pub command: ProxyCommand,
}

impl ProxyCommandArgs {
    pub fn json(&self) -> bool {
        match &self.command {
            ProxyCommand::Configure(args) => args.json,
            ProxyCommand::Hosts(args) => args.json,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ProxyCommand {
    /// Write the Docker daemon's proxy settings from HTTP_PROXY, HTTPS_PROXY and NO_PROXY.
    Configure(Box<ConfigureArgs>),
    /// List the hosts the proxy must allow, found by fetching each warmup image's manifest and
    /// config.
    Hosts(Box<HostsArgs>),
}

/// Destination of the daemon's proxy settings, for `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// /etc/default/docker, read through EnvironmentFile= in the docker unit's [Service] section.
    EnvFile,
    /// A systemd drop-in: /etc/systemd/system/docker.service.d/http-proxy.conf.
    DropIn,
    /// The proxies key of /etc/docker/daemon.json (Docker 23 and later).
    DaemonJson,
}

impl From<MethodArg> for Method {
    fn from(method: MethodArg) -> Method {
        match method {
            MethodArg::EnvFile => Method::EnvFile,
            MethodArg::DropIn => Method::DropIn,
            MethodArg::DaemonJson => Method::DaemonJson,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Destination of the settings.
    #[arg(long, value_enum, default_value = "env-file")]
    pub method: MethodArg,
    /// Write under this folder instead of / (an image being built, a mounted system).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print the changes as a diff, with passwords masked, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// When a file changed, run systemctl daemon-reload and systemctl restart docker, then check
    /// the proxy the daemon reports.
    #[arg(long, conflicts_with_all = ["root", "dry_run"])]
    pub restart: bool,
    /// Also fetch the warmup images through the proxy, to find the token server and blob storage
    /// hosts, which the daemon's NO_PROXY must not list either.
    #[arg(long)]
    pub check_registry: bool,
    /// Print one JSON document with the files, the restart and the daemon's proxy on standard
    /// output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct HostsArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Platform to pick from multi-platform images, such as linux/arm64 (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Print one JSON document with the hosts and each image's result on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(args: ProxyCommandArgs) -> anyhow::Result<u8> {
    match args.command {
        ProxyCommand::Configure(args) => configure(*args).await,
        ProxyCommand::Hosts(args) => hosts(*args).await,
    }
}

/// The hosts one run of the registry client contacted, and each image's error, if any.
struct Discovery {
    hosts: Vec<String>,
    images: Vec<(Reference, Option<String>)>,
}

/// Resolves each warmup image and fetches its config blob, then returns the hosts contacted.
async fn discover(settings_args: &SettingsArgs, registry: &RegistryArgs, settings: &Settings, platform: &Platform) -> anyhow::Result<Discovery> {
    let references = settings::images(settings)?;
    let client = settings_args.client(registry, settings, &references).await?;
    let mut images = Vec::new();
    for reference in references {
        let result = match client.resolve(&reference, platform).await {
            Ok(resolved) => client.fetch_small_blob(&reference, &resolved.manifest.config).await.map(|_| ()),
            Err(error) => Err(error),
        };
        let error = result.err().map(|error| ferry::error_message(&error));
        images.push((reference, error));
    }
    Ok(Discovery { hosts: client.contacted_hosts(), images })
}

async fn hosts(args: HostsArgs) -> anyhow::Result<u8> {
    let settings = args.settings.load()?;
    let platform = args.platform.clone().unwrap_or_else(Platform::host);
    let discovery = discover(&args.settings, &args.registry, &settings, &platform).await?;
    let failed = discovery.images.iter().filter(|(_, error)| error.is_some()).count();
    if args.json {
        let images: Vec<_> = discovery.images.iter().map(|(reference, error)| json!({ "reference": reference.to_string(), "ok": error.is_none(), "error": error })).collect();
        println!("{}", json!({ "ok": failed == 0, "hosts": discovery.hosts, "images": images }));
    } else {
        for host in &discovery.hosts {
            println!("{host}");
        }
        for (reference, error) in &discovery.images {
            if let Some(error) = error {
                eprintln!("error: {reference}: {error}");
            }
        }
    }
    Ok(if failed == 0 { EXIT_OK } else { EXIT_IMAGE_FAILED })
}

/// Returns the hosts the daemon must reach through the proxy: REGISTRY_URL's host and the
/// registries of the warmup list, plus, with `--check-registry`, every host a fetch of the
/// warmup images contacts.
async fn proxied_hosts(args: &ConfigureArgs, settings: &Settings) -> anyhow::Result<Vec<ProxiedHost>> {
    let plain = |host: &str| args.registry.plain_http.iter().any(|p| p == host);
    let default_port = |host: &str, plain_http: bool| if plain_http || plain(host) { 80 } else { 443 };
    let mut hosts = Vec::new();
    if let Some(url) = &settings.registry_url {
        hosts.push(ProxiedHost::parse(&url.value.host, default_port(&url.value.host, url.value.plain_http)));
    }
    match settings::images(settings) {
        Ok(references) => hosts.extend(references.iter().map(|r| ProxiedHost::parse(&r.registry, default_port(&r.registry, false)))),
        // The default list ("chromium") has no host without REGISTRY_URL, and needs no warning.
        Err(error) if settings.warmup.source == settings::Source::Default => tracing::debug!("warmup list not used for NO_PROXY: {error}"),
        Err(error) => tracing::warn!("cannot read the warmup list, so only REGISTRY_URL's host is kept out of NO_PROXY: {error}"),
    }
    if args.check_registry {
        let discovery = discover(&args.settings, &args.registry, settings, &Platform::host()).await?;
        for (reference, error) in &discovery.images {
            if let Some(error) = error {
                tracing::warn!("--check-registry: {reference}: {error}; the hosts it would have contacted are not checked");
            }
        }
        hosts.extend(discovery.hosts.iter().map(|host| ProxiedHost::parse(host, 443)));
    }
    let mut unique: Vec<ProxiedHost> = Vec::new();
    for host in hosts {
        if !unique.contains(&host) {
            unique.push(host);
        }
    }
    Ok(unique)
}

async fn configure(args: ConfigureArgs) -> anyhow::Result<u8> {
    let settings = args.settings.load()?;
    let proxied = proxied_hosts(&args, &settings).await?;
    let names = daemon_proxy::node_names(args.root.as_deref());
    let (proxy, dropped) = daemon_proxy::daemon_proxy(&settings.proxy, &names, &proxied)?;
    for DroppedEntry { entry, host } in &dropped {
        tracing::warn!("NO_PROXY entry {entry} matches {host}, which the Docker daemon must reach through the proxy, so it is left out of the daemon's NO_PROXY");
    }
    let method = Method::from(args.method);
    if method == Method::DaemonJson && args.root.is_none() {
        check_engine_reads_proxies().await?;
    }

    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let mut plan = daemon_proxy::plan(&root, method, &proxy)?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    if args.dry_run {
        print_dry_run(&plan, &proxy, &dropped, args.json);
        return Ok(EXIT_OK);
    }

    daemon_proxy::apply(&mut plan, SystemTime::now())?;
    let restarted = args.restart && plan.needs_restart();
    if restarted {
        daemon_proxy::restart_docker("systemctl".as_ref()).await?;
    }
    // The running daemon is this machine's only when no --root was given.
    let daemon = match args.root {
        Some(_) => None,
        None => read_daemon(restarted).await,
    };
    let differences = daemon.as_ref().map(|info| daemon_proxy::daemon_differences(&proxy, info));
    // With --restart, success means the daemon reports the proxy written.
    let confirmed = !args.restart || differences.as_ref().is_some_and(|d| d.is_empty());
    let outcome = Outcome { restart_requested: args.restart, restarted, confirmed, daemon: daemon.as_ref(), differences: differences.as_deref() };
    print_result(&plan, &proxy, &dropped, &outcome, args.json);
    if !confirmed && daemon.is_none() {
        eprintln!("error: the files are written, but the Docker daemon did not respond, so ferry cannot tell whether it uses the proxy");
    }
    Ok(if confirmed { EXIT_OK } else { EXIT_IMAGE_FAILED })
}

/// Fails when the local engine is older than Docker 23, which does not know the `proxies` key
/// and refuses to start with it in daemon.json. An unreachable engine only gets a warning.
async fn check_engine_reads_proxies() -> anyhow::Result<()> {
    let info = match Engine::connect().await {
        Ok(engine) => engine.info().await,
        Err(error) => Err(error),
    };
    match info {
        Ok(info) => {
            let major: u32 = info.server_version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            if major < 23 {
                anyhow::bail!(
                    "the Docker engine here is version {}, which does not know the proxies key of daemon.json (Docker 23 and later) and would not start with it: use --method env-file or --method drop-in",
                    info.server_version
                );
            }
        }
        Err(error) => tracing::warn!("cannot check the Docker version ({error}); the proxies key of daemon.json needs Docker 23 or later"),
    }
    Ok(())
}

/// Reads the running daemon's proxy from `GET /info`. After a restart, waits up to
/// [`RESTART_WAIT`] for the daemon to respond. `None`, with a warning, when it does not.
async fn read_daemon(restarted: bool) -> Option<EngineInfo> {
    let deadline = tokio::time::Instant::now() + if restarted { RESTART_WAIT } else { Duration::ZERO };
    loop {
        let info = match Engine::connect().await {
            Ok(engine) => engine.info().await,
            Err(error) => Err(error),
        };
        match info {
            Ok(info) => return Some(info),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!("cannot read the Docker daemon's proxy settings: {error}");
                return None;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Returns the daemon's proxy variables as shown to the operator, passwords masked.
fn proxy_json(proxy: &DaemonProxy) -> serde_json::Value {
    json!({
        "http_proxy": proxy.http.as_ref().map(ToString::to_string),
        "https_proxy": proxy.https.as_ref().map(ToString::to_string),
        "no_proxy": proxy.no_proxy_text(),
    })
}

fn dropped_json(dropped: &[DroppedEntry]) -> Vec<serde_json::Value> {
    dropped.iter().map(|d| json!({ "entry": d.entry, "matches": d.host })).collect()
}

fn action(file: &daemon_proxy::FileChange) -> &'static str {
    match (file.is_change(), file.old.is_some()) {
        (false, _) => "unchanged",
        (true, false) => "created",
        (true, true) => "changed",
    }
}

fn print_proxy(proxy: &DaemonProxy) {
    if let Some(url) = &proxy.http {
        println!("  HTTP_PROXY   {url}");
    }
    if let Some(url) = &proxy.https {
        println!("  HTTPS_PROXY  {url}");
    }
    println!("  NO_PROXY     {}", proxy.no_proxy_text());
}

fn print_dry_run(plan: &Plan, proxy: &DaemonProxy, dropped: &[DroppedEntry], as_json: bool) {
    if as_json {
        let files: Vec<_> = plan
            .files
            .iter()
            .map(|file| {
                json!({
                    "path": file.path,
                    "action": action(file),
                    "mode": format!("{:04o}", file.mode),
                    "diff": file.diff(),
                })
            })
            .collect();
        let document = json!({
            "ok": true,
            "dry_run": true,
            "method": plan.method.name(),
            "changed": plan.needs_restart(),
            "proxy": proxy_json(proxy),
            "dropped_no_proxy": dropped_json(dropped),
            "files": files,
        });
        println!("{document}");
        return;
    }
    println!("Docker daemon proxy, method {} (dry run, nothing written):", plan.method.name());
    print_proxy(proxy);
    for file in &plan.files {
        if !file.is_change() {
            println!("unchanged  {}", file.path.display());
            continue;
        }
        if file.old_mode.is_some_and(|mode| mode != file.mode) {
            println!("mode of {}: {:04o} -> {:04o}", file.path.display(), file.old_mode.unwrap_or_default(), file.mode);
        }
        print!("{}", file.diff());
    }
    if !plan.needs_restart() {
        println!("nothing to change: the files already hold these settings");
    }
}

/// Result of the steps after the files are written.
struct Outcome<'a> {
    /// `--restart` was given; the restart happens only when a file changed.
    restart_requested: bool,
    restarted: bool,
    /// False when `--restart` was given and the daemon does not report the proxy written.
    confirmed: bool,
    /// The running daemon's `GET /info`; `None` with `--root` or when the daemon did not respond.
    daemon: Option<&'a EngineInfo>,
    /// Differences between the daemon's proxy and the one written; empty when it uses it.
    differences: Option<&'a [String]>,
}

fn print_result(plan: &Plan, proxy: &DaemonProxy, dropped: &[DroppedEntry], outcome: &Outcome, as_json: bool) {
    let Outcome { restart_requested, restarted, confirmed, daemon, differences } = *outcome;
    if as_json {
        let files: Vec<_> = plan
            .files
            .iter()
            .map(|file| json!({ "path": file.path, "action": action(file), "mode": format!("{:04o}", file.mode), "backup": file.backup }))
            .collect();
        let daemon = daemon.map(|info| {
            json!({
                "http_proxy": info.http_proxy,
                "https_proxy": info.https_proxy,
                "no_proxy": info.no_proxy,
                "uses_proxy": differences.is_some_and(|d| d.is_empty()),
                "differences": differences,
            })
        });
        let document = json!({
            "ok": confirmed,
            "dry_run": false,
            "method": plan.method.name(),
            "changed": plan.needs_restart(),
            "proxy": proxy_json(proxy),
            "dropped_no_proxy": dropped_json(dropped),
            "files": files,
            "restarted": restarted,
            "daemon": daemon,
        });
        println!("{document}");
        return;
    }
    println!("Docker daemon proxy, method {}:", plan.method.name());
    print_proxy(proxy);
    for file in &plan.files {
        match &file.backup {
            Some(backup) => println!("{:<10} {} (backup {})", action(file), file.path.display(), backup.display()),
            None => println!("{:<10} {}", action(file), file.path.display()),
        }
    }
    if !plan.needs_restart() {
        println!("nothing changed: the files already hold these settings");
    }
    if restarted {
        println!("restarted Docker (systemctl daemon-reload, systemctl restart docker)");
    }
    match (daemon, differences) {
        (Some(_), Some([])) => println!("the Docker daemon uses the proxy"),
        (Some(_), Some(differences)) => {
            if restarted {
                println!("the Docker daemon does not use the proxy written, even after the restart:");
            } else if restart_requested {
                println!("the files already contained these settings, so Docker was not restarted, but the running daemon does not use them: run systemctl daemon-reload && systemctl restart docker");
            } else {
                println!("the running Docker daemon does not use these settings: run systemctl daemon-reload && systemctl restart docker, or run again with --restart");
            }
            for difference in differences {
                println!("  {difference}");
            }
        }
        _ => {}
    }
}
