//! `ferry warmup`: settings, plan, disk check, transfer, report.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ferry::cache::BlobCache;
use ferry::credentials::{self, Credential};
use ferry::engine::Engine;
use ferry::platform::Platform;
use ferry::registry::{Client, ClientOptions, RetryPolicy};
use ferry::settings::{self, Overrides, Secret, Settings};
use ferry::warmup::{self, Status, Target, WarmupOptions};

use super::output::{self, Reporter};
use super::{RegistryArgs, EXIT_IMAGE_FAILED, EXIT_OK, EXIT_SETUP};

#[derive(Args, Debug)]
pub struct WarmupArgs {
    /// Ansible YAML inventory to read REGISTRY_URL, REGISTRY_ENV, REGISTRY_USERNAME,
    /// REGISTRY_PASSWORD and PROVISION_IMAGE_WARMUP from.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Inventory host whose variables apply (default: this machine's hostname if the inventory
    /// lists it, else the `all` group).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Registry address, such as registry.example.com or 10.0.0.5:5000/team (overrides REGISTRY_URL).
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Prefix added to short image names (overrides REGISTRY_ENV).
    #[arg(long, value_name = "PREFIX")]
    pub registry_env: Option<String>,
    /// Registry user (overrides REGISTRY_USERNAME).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the registry password from standard input (overrides REGISTRY_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
    /// Image to preload, short name or full reference; repeatable (overrides PROVISION_IMAGE_WARMUP).
    #[arg(long = "warmup", visible_alias = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Platform to pick from multi-platform images, such as linux/arm64 (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Destination of the images: `docker` (the engine at DOCKER_HOST or the local socket) or `oci:PATH`.
    #[arg(long, value_name = "TARGET", default_value = "docker")]
    pub to: String,
    /// Folder for downloaded and partial blobs (default: $FERRY_CACHE_DIR, else ~/.cache/ferry).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep downloaded blobs in the cache after they reached the target.
    #[arg(long)]
    pub keep_cache: bool,
    /// Blobs downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Go on even when the free-space check fails.
    #[arg(long)]
    pub skip_disk_check: bool,
    /// Print the plan (images, bytes to fetch, space) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document with the result of each image on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(args: WarmupArgs, quiet: bool) -> anyhow::Result<u8> {
    let settings = load_settings(&args)?;
    let references = settings::images(&settings)?;
    for warning in output::registry_mismatches(&settings, &references) {
        tracing::warn!("{warning}");
    }

    let client = build_client(&args, &settings, &references).await?;
    let target = match args.to.as_str() {
        "docker" => {
            let engine = Engine::connect().await?;
            let info = engine.info().await?;
            Target::Docker { engine, info }
        }
        other => match other.strip_prefix("oci:") {
            Some(path) if !path.is_empty() => Target::Layout { path: PathBuf::from(path) },
            _ => anyhow::bail!("invalid --to {other:?}: use `docker` or `oci:PATH`"),
        },
    };
    let cache = BlobCache::new(args.cache_dir.clone().unwrap_or_else(BlobCache::default_root));
    let options = WarmupOptions {
        platform: args.platform.clone().unwrap_or_else(Platform::host),
        jobs: args.jobs,
        keep_cache: args.keep_cache,
    };

    let plan = warmup::plan(&client, &target, &cache, &references, &options).await?;
    if args.dry_run {
        output::print_plan(&plan, &target, args.json);
        return Ok(if plan.images.iter().any(|i| i.prepared.is_err()) { EXIT_IMAGE_FAILED } else { EXIT_OK });
    }
    let problems = plan.space_problems();
    if !problems.is_empty() {
        let message = output::space_message(&problems);
        if !args.skip_disk_check {
            if args.json {
                output::print_json_error(&message);
            }
            eprintln!("error: {message}");
            return Ok(EXIT_SETUP);
        }
        tracing::warn!("{message} (going on because of --skip-disk-check)");
    }

    let reporter = Reporter::new(plan.images.len(), args.json || quiet);
    let outcomes = warmup::execute(&client, &target, &cache, &plan, &options, &reporter).await;
    reporter.finish();
    output::print_outcomes(&outcomes, &target, args.json);
    let all_ok = outcomes.iter().all(|o| o.status != Status::Failed);
    Ok(if all_ok { EXIT_OK } else { EXIT_IMAGE_FAILED })
}

fn load_settings(args: &WarmupArgs) -> anyhow::Result<Settings> {
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the password from standard input")?;
        let text = text.trim_end_matches(['\r', '\n']).to_owned();
        if text.is_empty() {
            anyhow::bail!("--password-stdin was given but standard input is empty");
        }
        Some(Secret::new(text))
    } else {
        None
    };
    let overrides = Overrides {
        registry_url: args.registry_url.clone(),
        registry_env: args.registry_env.clone(),
        username: args.username.clone(),
        warmup: args.images.clone(),
        password,
    };
    let env = |name: &str| std::env::var(name).ok();
    Ok(settings::resolve(args.inventory.as_deref(), args.host.as_deref(), &env, &overrides)?)
}

/// Builds the registry client with the credential of each registry host in the list: the
/// inventory's user and password for REGISTRY_URL's host, Docker's config.json for the others
/// (and for REGISTRY_URL's host when no password is set).
async fn build_client(args: &WarmupArgs, settings: &Settings, references: &[ferry::reference::Reference]) -> anyhow::Result<Client> {
    let mut plain_http = args.registry.plain_http.clone();
    if let Some(url) = settings.registry_url.as_ref().filter(|u| u.value.plain_http) {
        plain_http.push(url.value.host.clone());
    }
    let options = ClientOptions {
        ca_files: args.registry.ca_files.clone(),
        certs_dir: Some(args.registry.certs_dir.clone()),
        plain_http,
        retry: RetryPolicy { attempts: args.registry.attempts.max(1), ..RetryPolicy::default() },
        ..ClientOptions::default()
    };
    let mut client = Client::new(options);
    let hosts: BTreeSet<&str> = references.iter().map(|r| r.registry.as_str()).collect();
    // The settings' user and password belong to REGISTRY_URL's host; without REGISTRY_URL they
    // belong to the registry of the list when there is only one.
    let main_host = match &settings.registry_url {
        Some(url) => Some(url.value.host.clone()),
        None if hosts.len() == 1 => hosts.first().map(|h| h.to_string()),
        None => None,
    };
    let env = |name: &str| std::env::var(name).ok();
    let config_dir = credentials::docker_config_dir(&env);
    for host in hosts {
        let is_main = Some(host) == main_host.as_deref();
        if is_main {
            if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
                client.set_credential(host, Credential::Basic { username: user.value.clone(), password: Secret::new(password.value.expose().to_owned()) });
                continue;
            }
        }
        let found = match &config_dir {
            Some(dir) => credentials::lookup(dir, host).await?,
            None => None,
        };
        if let Some((credential, origin)) = found {
            tracing::info!(host, origin = %origin, "using credentials from Docker's configuration");
            client.set_credential(host, credential);
        } else if is_main && settings.username.is_some() {
            anyhow::bail!(
                "REGISTRY_USERNAME is set but no password was found for {host}: set REGISTRY_PASSWORD in the environment, use --password-stdin, or log in with docker login"
            );
        }
    }
    Ok(client)
}
