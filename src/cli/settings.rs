//! Settings flags shared by the commands that read the provisioning inventory, and the registry
//! client built from them.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ferry::credentials::{self, Credential};
use ferry::reference::Reference;
use ferry::registry::{Client, ClientOptions, RetryPolicy};
use ferry::settings::{self, Overrides, Secret, Settings};

use super::RegistryArgs;

/// Where the image list and registry credentials come from.
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
}

impl SettingsArgs {
    /// Reads the settings: inventory, then environment, then these flags.
    pub fn load(&self) -> anyhow::Result<Settings> {
        let password = if self.password_stdin {
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
            registry_url: self.registry_url.clone(),
            registry_env: self.registry_env.clone(),
            username: self.username.clone(),
            warmup: self.images.clone(),
            password,
        };
        let env = |name: &str| std::env::var(name).ok();
        Ok(settings::resolve(self.inventory.as_deref(), self.host.as_deref(), &env, &overrides)?)
    }

    /// Builds the registry client with the credential of each registry host in the list: the
    /// inventory's user and password for REGISTRY_URL's host, Docker's config.json for the others
    /// (and for REGISTRY_URL's host when no password is set).
    pub async fn client(&self, registry: &RegistryArgs, settings: &Settings, references: &[Reference]) -> anyhow::Result<Client> {
        let mut plain_http = registry.plain_http.clone();
        if let Some(url) = settings.registry_url.as_ref().filter(|u| u.value.plain_http) {
            plain_http.push(url.value.host.clone());
        }
        let options = ClientOptions {
            ca_files: registry.ca_files.clone(),
            certs_dir: Some(registry.certs_dir.clone()),
            plain_http,
            retry: RetryPolicy { attempts: registry.attempts.max(1), ..RetryPolicy::default() },
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
}
