//! Settings flags shared by the commands that read the provisioning inventory, and the registry
//! client built from them.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ferry::cache::BlobCache;
use ferry::credentials::{self, Credential};
use ferry::reference::Reference;
use ferry::registry::Client;
use ferry::settings::{self, Overrides, Secret, Settings};

use super::RegistryArgs;

/// Flags of the free-space check on the Docker engine's data root.
#[derive(Args, Debug)]
pub struct DiskArgs {
    /// Folder to measure for the engine's free space, when the data root the engine reports is
    /// mounted elsewhere on this machine (ferry in a container, a remote engine's disk).
    #[arg(long, value_name = "DIR")]
    pub docker_root: Option<PathBuf>,
    /// Go on even when the free-space check fails.
    #[arg(long)]
    pub skip_disk_check: bool,
}

impl DiskArgs {
    /// Points the engine's data root at `--docker-root`, which makes it measurable here.
    pub fn apply(&self, info: &mut ferry::engine::EngineInfo) {
        if let Some(root) = &self.docker_root {
            info.root_dir = Some(root.clone());
            info.local = true;
        }
    }
}

/// Flags for downloading blobs and keeping them in the cache.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Folder for downloaded and partial blobs (default: $FERRY_CACHE_DIR, else ~/.cache/ferry).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep downloaded blobs in the cache after they reached their destination.
    #[arg(long)]
    pub keep_cache: bool,
    /// Blobs downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..64))]
    pub jobs: u64,
}

/// Flags for the proxy of ferry's own traffic, which win over the environment and the inventory.
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// Proxy for plain-HTTP registries, such as http://proxy.lan:3128 (overrides HTTP_PROXY).
    /// Put credentials in HTTP_PROXY instead, so they stay out of the process list.
    #[arg(long, value_name = "URL")]
    pub http_proxy: Option<String>,
    /// Proxy for HTTPS registries and token servers (overrides HTTPS_PROXY). Put credentials in
    /// HTTPS_PROXY instead, so they stay out of the process list.
    #[arg(long, value_name = "URL")]
    pub https_proxy: Option<String>,
    /// Hosts reached without the proxy, separated by commas: names, .domains, *.domains,
    /// host:port, IP addresses, address blocks such as 10.0.0.0/8, or * (overrides NO_PROXY).
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Option<String>,
}

impl ProxyArgs {
    /// Copies the flags into `overrides`, rejecting a password on the command line.
    pub fn apply(&self, overrides: &mut Overrides) -> anyhow::Result<()> {
        for (flag, value, variable) in [("--http-proxy", &self.http_proxy, "HTTP_PROXY"), ("--https-proxy", &self.https_proxy, "HTTPS_PROXY")] {
            let Some(value) = value else { continue };
            let url = ferry::proxy::ProxyUrl::parse(value)?;
            if url.url().password().is_some() {
                anyhow::bail!("{flag} {url} contains a password, which the process list would show: set {variable} in the environment or the inventory instead");
            }
        }
        overrides.http_proxy = self.http_proxy.clone();
        overrides.https_proxy = self.https_proxy.clone();
        overrides.no_proxy = self.no_proxy.clone();
        Ok(())
    }
}

/// Flags for the sources of the image list and registry credentials.
#[derive(Args, Debug)]
pub struct SettingsArgs {
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
    /// Registry tried before each image's own, such as a pull-through cache near the nodes;
    /// repeatable, tried in order (overrides REGISTRY_MIRRORS).
    #[arg(long = "registry-mirror", value_name = "REGISTRY[/NAMESPACE]")]
    pub mirrors: Vec<String>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

impl SettingsArgs {
    /// Reads the settings: inventory, then environment, then these flags.
    pub fn load(&self) -> anyhow::Result<Settings> {
        let password = if self.password_stdin {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read the password from standard input")?;
            let text = text.trim_end_matches(['\r', '\n']).to_owned();
            if text.is_empty() {
                anyhow::bail!("--password-stdin was given but standard input is empty: pipe the password in, for example printenv REGISTRY_PASSWORD | ferry ... --password-stdin");
            }
            Some(Secret::new(text))
        } else {
            None
        };
        let mut overrides = Overrides {
            registry_url: self.registry_url.clone(),
            registry_env: self.registry_env.clone(),
            username: self.username.clone(),
            warmup: self.images.clone(),
            password,
            mirrors: self.mirrors.clone(),
            ..Overrides::default()
        };
        self.proxy.apply(&mut overrides)?;
        let env = |name: &str| std::env::var(name).ok();
        let settings = settings::resolve(self.inventory.as_deref(), self.host.as_deref(), &env, &overrides)?;
        report_sources(&settings);
        Ok(settings)
    }

    /// Builds the registry client with the credential of each registry host in the list: the
    /// inventory's user and password for REGISTRY_URL's host, Docker's config.json for the others
    /// (and for REGISTRY_URL's host when no password is set).
    pub async fn client(&self, registry: &RegistryArgs, settings: &Settings, references: &[Reference]) -> anyhow::Result<Client> {
        let mut options = registry.client_options();
        options.proxy = settings.proxy.clone();
        options.mirrors = settings.mirrors.clone();
        options.plain_http.extend(settings.mirrors.iter().filter(|m| m.plain_http).map(|m| m.host.clone()));
        if let Some(url) = settings.registry_url.as_ref().filter(|u| u.value.plain_http) {
            options.plain_http.push(url.value.host.clone());
        }
        let mut client = Client::new(options);
        let reference_hosts: BTreeSet<&str> = references.iter().map(|r| r.registry.as_str()).collect();
        // The settings' user and password belong to REGISTRY_URL's host; without REGISTRY_URL they
        // belong to the registry of the list when there is only one.
        let main_host = match &settings.registry_url {
            Some(url) => Some(url.value.host.clone()),
            None if reference_hosts.len() == 1 => reference_hosts.first().map(|h| h.to_string()),
            None => None,
        };
        // Mirrors get credentials from Docker's configuration only.
        let hosts: BTreeSet<&str> = reference_hosts.iter().copied().chain(settings.mirrors.iter().map(|m| m.host.as_str())).collect();
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
}

/// Says which inventory view and which sources the settings came from: a warning when the
/// inventory lists hosts but none applied, details with -v.
fn report_sources(settings: &Settings) {
    if let Some(inventory) = &settings.inventory {
        match &inventory.host {
            Some(host) => tracing::info!("settings from {}, variables of host {host}", inventory.path.display()),
            None if inventory.host_count > 0 => tracing::warn!(
                "this machine is not one of the {} hosts of {}, so only its `all` variables apply; pass --host NAME to use a host's variables",
                inventory.host_count,
                inventory.path.display()
            ),
            None => tracing::info!("settings from {}, `all` variables", inventory.path.display()),
        }
        for file in &inventory.encrypted_files {
            tracing::warn!("skipped {}: it is encrypted with Ansible Vault", file.display());
        }
    }
    if let Some(url) = &settings.registry_url {
        tracing::info!("REGISTRY_URL {} from {}", url.value, url.source);
    }
    tracing::info!("REGISTRY_ENV {:?} from {}", settings.registry_env.value, settings.registry_env.source);
    if let Some(user) = &settings.username {
        tracing::info!("REGISTRY_USERNAME {} from {}", user.value, user.source);
    }
    match (&settings.password, &settings.username) {
        (Some(password), Some(_)) => tracing::info!("REGISTRY_PASSWORD from {}", password.source),
        (Some(password), None) => tracing::warn!("REGISTRY_PASSWORD is set (from {}) but REGISTRY_USERNAME is not, so the password is not used", password.source),
        (None, _) => {}
    }
    tracing::info!("PROVISION_IMAGE_WARMUP {:?} from {}", settings.warmup.value, settings.warmup.source);
}

/// Opens the blob cache (`--cache-dir`, else the default folder), creating it, so that an
/// unusable folder stops the run before any download.
pub fn open_cache(dir: Option<PathBuf>) -> anyhow::Result<BlobCache> {
    let root = dir.unwrap_or_else(BlobCache::default_root);
    std::fs::create_dir_all(&root).map_err(|err| anyhow::anyhow!("cannot create the cache folder {}: {err}; choose another --cache-dir", root.display()))?;
    Ok(BlobCache::new(root))
}
