//! `ferry mirror`: the warmup list copied into a private registry, and the inventory variables
//! the nodes need to pull from it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use ferry::credentials::{self, Credential};
use ferry::mirror::{self, Destination, MirrorOptions, CopyOutcome, MirrorPair, SourceNames};
use ferry::platform::Platform;
use ferry::reference::{Reference, RegistryUrl};
use ferry::save::Platforms;
use ferry::settings::{self, Secret, Settings};
use ferry::warmup::Status;

use super::output::Reporter;
use super::settings::{DownloadArgs, SettingsArgs};
use super::{RegistryArgs, EXIT_IMAGE_FAILED, EXIT_OK};

/// Environment variable with the private registry's user.
const USERNAME_VARIABLE: &str = "MIRROR_REGISTRY_USERNAME";
/// Environment variable with the private registry's password.
const PASSWORD_VARIABLE: &str = "MIRROR_REGISTRY_PASSWORD";
/// Sources of the private registry's credentials, named in login errors.
pub const DESTINATION_CREDENTIALS: &str = "MIRROR_REGISTRY_USERNAME and MIRROR_REGISTRY_PASSWORD (or --to-username and --to-password-stdin)";

/// The private registry images are copied into, and its credential.
#[derive(Args, Debug)]
pub struct DestinationArgs {
    /// Private registry to copy into: REGISTRY[/NAMESPACE], such as 10.0.0.5:5000/platform;
    /// write http://REGISTRY for plain HTTP.
    #[arg(long, value_name = "REGISTRY[/NAMESPACE]")]
    pub to: String,
    /// Prefix of the repository names in the private registry, in place of REGISTRY_ENV
    /// (default: the same prefix).
    #[arg(long, value_name = "PREFIX")]
    pub to_env: Option<String>,
    /// User for the private registry (default: $MIRROR_REGISTRY_USERNAME, else Docker's
    /// configuration for that host).
    #[arg(long, value_name = "USER")]
    pub to_username: Option<String>,
    /// Read the private registry's password from standard input (default:
    /// $MIRROR_REGISTRY_PASSWORD).
    #[arg(long)]
    pub to_password_stdin: bool,
}

impl DestinationArgs {
    /// Parses --to, with the destination prefix defaulting to `source_prefix`.
    pub fn destination(&self, source_prefix: &str) -> anyhow::Result<Destination> {
        let registry = RegistryUrl::parse(&self.to).with_context(|| "invalid --to: expected REGISTRY[/NAMESPACE], such as 10.0.0.5:5000/platform".to_owned())?;
        Ok(Destination { registry, prefix: self.to_env.clone().unwrap_or_else(|| source_prefix.to_owned()) })
    }

    /// True when a user for the private registry is set, so the nodes need one too.
    fn has_user(&self) -> bool {
        self.to_username.is_some() || std::env::var_os(USERNAME_VARIABLE).is_some_and(|u| !u.is_empty())
    }

    /// Returns the private registry's credential: --to-username or MIRROR_REGISTRY_USERNAME with
    /// the password from standard input or MIRROR_REGISTRY_PASSWORD, else Docker's
    /// configuration.
    pub async fn credential(&self, host: &str) -> anyhow::Result<Option<Credential>> {
        let username = self.to_username.clone().or_else(|| std::env::var(USERNAME_VARIABLE).ok().filter(|u| !u.is_empty()));
        let password = if self.to_password_stdin {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read the password from standard input")?;
            let text = text.trim_end_matches(['\r', '\n']).to_owned();
            if text.is_empty() {
                anyhow::bail!("--to-password-stdin was given but standard input is empty: pipe the private registry's password in");
            }
            Some(Secret::new(text))
        } else {
            std::env::var(PASSWORD_VARIABLE).ok().filter(|p| !p.is_empty()).map(Secret::new)
        };
        match (username, password) {
            (Some(username), Some(password)) => return Ok(Some(Credential::Basic { username, password })),
            (Some(_), None) => anyhow::bail!("a user is set for {host} but no password: set {PASSWORD_VARIABLE} or use --to-password-stdin"),
            (None, Some(_)) => anyhow::bail!("a password is set for {host} but no user: set {USERNAME_VARIABLE} or use --to-username"),
            (None, None) => {}
        }
        let env = |name: &str| std::env::var(name).ok();
        let Some(dir) = credentials::docker_config_dir(&env) else { return Ok(None) };
        Ok(credentials::lookup(&dir, host).await?.map(|(credential, origin)| {
            tracing::info!(host, origin = %origin, "using credentials from Docker's configuration");
            credential
        }))
    }
}

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// Images to copy, short names or full references (default: the warmup list of the settings).
    #[arg(value_name = "REF")]
    pub references: Vec<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Copy only this platform of multi-platform images. The destination tag then points to
    /// that platform's manifest, whose digest differs from the source index's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Write the inventory variables the nodes need (REGISTRY_URL, REGISTRY_ENV,
    /// PROVISION_IMAGE_WARMUP) to FILE, as YAML. Passwords are never written.
    #[arg(long, value_name = "FILE")]
    pub write_inventory: Option<PathBuf>,
    #[command(flatten)]
    pub download: DownloadArgs,
    /// Print the source and destination of each image, and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document with the result of each image on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(mut args: MirrorArgs, quiet: bool) -> anyhow::Result<u8> {
    if !args.references.is_empty() {
        args.settings.images.append(&mut args.references);
    }
    if args.settings.password_stdin && args.destination.to_password_stdin {
        anyhow::bail!("--password-stdin and --to-password-stdin cannot both read standard input: pass one password in the environment (REGISTRY_PASSWORD or {PASSWORD_VARIABLE})");
    }
    // --to is checked before the settings, so a typo fails before any file is read.
    args.destination.destination("")?;
    let settings = args.settings.load()?;
    let references = settings::images(&settings)?;
    let destination = args.destination.destination(&settings.registry_env.value)?;
    let destination_url = destination.registry.clone();
    let names = SourceNames { registry: settings.registry_url.as_ref().map(|u| u.value.clone()), prefix: settings.registry_env.value.clone() };
    let pairs: Vec<MirrorPair> = references
        .iter()
        .map(|source| MirrorPair { source: source.clone(), destination: mirror::destination_of(source, &names, &destination) })
        .collect();
    if let Some(pair) = pairs.iter().find(|p| p.source == p.destination) {
        anyhow::bail!("--to {} maps {} onto itself: name another registry, namespace or --to-env", args.destination.to, pair.source);
    }
    let inventory = node_inventory(&settings, &names, &destination, args.destination.has_user());

    if args.dry_run {
        print_dry_run(&pairs, &inventory, args.json);
        return Ok(EXIT_OK);
    }

    let mut registry_args = args.registry.clone();
    if destination_url.plain_http {
        registry_args.plain_http.push(destination_url.host.clone());
    }
    let mut client = args.settings.client(&registry_args, &settings, &references).await?;
    if let Some(credential) = args.destination.credential(&destination_url.host).await? {
        client.set_credential(&destination_url.host, credential);
    }
    client.set_credential_hint(&destination_url.host, DESTINATION_CREDENTIALS);
    let cache = super::settings::open_cache(args.download.cache_dir.clone())?;
    let options = MirrorOptions {
        platforms: match &args.platform {
            Some(platform) => Platforms::One(platform.clone()),
            None => Platforms::All,
        },
        jobs: args.download.jobs as usize,
        keep_cache: args.download.keep_cache,
    };

    let reporter = Reporter::new(pairs.len(), args.json || quiet);
    let outcomes = mirror::execute(&client, &cache, &pairs, &options, &reporter).await;
    reporter.finish();
    cache.remove_empty_folders();

    let all_ok = outcomes.iter().all(|o| o.status != Status::Failed);
    if let Some(path) = &args.write_inventory {
        if all_ok {
            write_inventory(path, &inventory)?;
        } else {
            tracing::warn!("{} not written because an image failed", path.display());
        }
    }
    print_outcomes(&outcomes, Some(&inventory), args.json);
    Ok(if all_ok { EXIT_OK } else { EXIT_IMAGE_FAILED })
}

/// Returns the variables the nodes need to pull the copies: short names stay short, full
/// references are rewritten to the destination.
fn node_inventory(settings: &Settings, names: &SourceNames, destination: &Destination, with_user: bool) -> serde_json::Value {
    let registry = settings.registry_url.as_ref().map(|u| &u.value);
    let warmup: Vec<String> = settings
        .warmup
        .value
        .iter()
        .map(|entry| match Reference::expand(entry, registry, &settings.registry_env.value) {
            Ok(reference) if entry.contains('/') => mirror::destination_of(&reference, names, destination).to_string(),
            _ => entry.clone(),
        })
        .collect();
    let scheme = if destination.registry.plain_http { "http://" } else { "" };
    let mut variables = json!({
        "REGISTRY_URL": format!("{scheme}{}", destination.registry),
        "REGISTRY_ENV": destination.prefix,
        "PROVISION_IMAGE_WARMUP": warmup,
    });
    if with_user {
        variables["REGISTRY_USERNAME"] = json!("<the private registry's user>");
    }
    variables
}

/// Writes the node variables as an inventory file, replacing `path` only once complete.
fn write_inventory(path: &Path, variables: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = String::from("# Written by ferry mirror: the private registry the nodes pull from.\n");
    text.push_str("# Set REGISTRY_USERNAME and REGISTRY_PASSWORD for it too (keep the password in Ansible Vault).\n");
    text.push_str("all:\n  vars:\n");
    for (name, value) in variables.as_object().expect("an object") {
        if name == "REGISTRY_USERNAME" {
            continue;
        }
        match value {
            serde_json::Value::Array(items) => {
                text.push_str(&format!("    {name}:\n"));
                for item in items {
                    text.push_str(&format!("      - {item}\n"));
                }
            }
            // A JSON string is a valid YAML double-quoted scalar.
            other => text.push_str(&format!("    {name}: {other}\n")),
        }
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(folder).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    file.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_dry_run(pairs: &[MirrorPair], inventory: &serde_json::Value, as_json: bool) {
    if as_json {
        let images: Vec<_> = pairs.iter().map(|p| json!({ "source": p.source.to_string(), "destination": p.destination.to_string() })).collect();
        println!("{}", json!({ "dry_run": true, "images": images, "inventory": inventory }));
        return;
    }
    println!("dry run, nothing copied:");
    for pair in pairs {
        println!("  {} -> {}", pair.source, pair.destination);
    }
    print_inventory(inventory);
}

pub(super) fn print_outcomes(outcomes: &[CopyOutcome], inventory: Option<&serde_json::Value>, as_json: bool) {
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    if as_json {
        let mut document = json!({
            "ok": count(Status::Failed) == 0,
            "changed": count(Status::Changed),
            "unchanged": count(Status::Unchanged),
            "failed": count(Status::Failed),
            "images": outcomes,
        });
        if let Some(inventory) = inventory {
            document["inventory"] = inventory.clone();
        }
        println!("{document}");
        return;
    }
    for outcome in outcomes {
        let digest = outcome.digest.as_deref().unwrap_or("-");
        match outcome.status {
            Status::Changed => println!(
                "copied     {} -> {} {digest} ({} uploaded, {} mounted, {} present)",
                outcome.source, outcome.destination, outcome.blobs_uploaded, outcome.blobs_mounted, outcome.blobs_present
            ),
            Status::Unchanged => println!("unchanged  {} -> {} {digest}", outcome.source, outcome.destination),
            Status::Failed => println!("failed     {}: {}", outcome.source, outcome.error.as_deref().unwrap_or("unknown error")),
        }
        if let (Some(index), Status::Changed | Status::Unchanged) = (&outcome.source_index_digest, outcome.status) {
            println!("           one platform only: the source index {index} is not kept, the tag points to {digest}");
        }
        if let Some(note) = &outcome.note {
            println!("           {note}");
        }
    }
    if let (Some(inventory), 0) = (inventory, count(Status::Failed)) {
        print_inventory(inventory);
    }
}

fn print_inventory(inventory: &serde_json::Value) {
    println!("inventory variables for the nodes:");
    for (name, value) in inventory.as_object().expect("an object") {
        match value {
            serde_json::Value::String(text) => println!("  {name}: {text}"),
            other => println!("  {name}: {other}"),
        }
    }
}
