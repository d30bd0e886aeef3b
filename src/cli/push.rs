//! `ferry push`: the images of archives into a private registry.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use ferry::mirror::SourceNames;
use ferry::platform::Platform;
use ferry::push::{self, PushImage};
use ferry::settings::{self, Overrides};
use ferry::warmup::Status;

use super::mirror::DestinationArgs;
use super::settings::ProxyArgs;
use super::output::Reporter;
use super::{RegistryArgs, EXIT_IMAGE_FAILED, EXIT_OK};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Archives to push: written by ferry save, docker save, skopeo or podman save. For parts,
    /// name the first one (FILE.001) or FILE.
    #[arg(value_name = "ARCHIVE", required = true)]
    pub archives: Vec<PathBuf>,
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Ansible YAML inventory to read the source REGISTRY_URL and REGISTRY_ENV from, which are
    /// taken off the archive's image names before --to and --to-env are put on.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Inventory host whose variables apply.
    #[arg(long, value_name = "NAME", requires = "inventory")]
    pub host: Option<String>,
    /// Registry the archive's images came from (overrides REGISTRY_URL).
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Prefix of the archive's image names (overrides REGISTRY_ENV).
    #[arg(long, value_name = "PREFIX")]
    pub registry_env: Option<String>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Platform to pick from multi-platform images in archives without manifests
    /// (default: linux/amd64).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", default_value = "linux/amd64")]
    pub platform: Platform,
    /// Blobs uploaded at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..64))]
    pub jobs: u64,
    /// Print the source and destination of each image, and push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document with the result of each image on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(args: PushArgs, quiet: bool) -> anyhow::Result<u8> {
    args.destination.destination("")?;
    let mut overrides = Overrides { registry_url: args.registry_url.clone(), registry_env: args.registry_env.clone(), ..Overrides::default() };
    args.proxy.apply(&mut overrides)?;
    let env = |name: &str| std::env::var(name).ok();
    let settings = settings::resolve(args.inventory.as_deref(), args.host.as_deref(), &env, &overrides)?;
    let names = SourceNames { registry: settings.registry_url.as_ref().map(|u| u.value.clone()), prefix: settings.registry_env.value.clone() };
    let destination = args.destination.destination(&settings.registry_env.value)?;

    let mut images: Vec<PushImage> = Vec::new();
    for archive in &args.archives {
        let (archive, platform, names, destination) = (archive.clone(), args.platform.clone(), names.clone(), destination.clone());
        let planned = tokio::task::spawn_blocking(move || push::plan(&archive, &platform, &names, &destination)).await.expect("the archive reader panicked")?;
        images.extend(planned);
    }
    if images.is_empty() {
        anyhow::bail!("no image to push: the archives name no image (a registry needs a name and tag for each)");
    }
    if args.dry_run {
        let listed: Vec<_> = images.iter().map(|i| json!({ "source": i.name, "destination": i.destination.to_string(), "blobs": i.blobs.len() })).collect();
        if args.json {
            println!("{}", json!({ "dry_run": true, "images": listed }));
        } else {
            println!("dry run, nothing pushed:");
            for image in &images {
                println!("  {} -> {}", image.name, image.destination);
            }
        }
        return Ok(EXIT_OK);
    }

    let mut registry_args = args.registry.clone();
    if destination.registry.plain_http {
        registry_args.plain_http.push(destination.registry.host.clone());
    }
    let mut options = registry_args.client_options();
    options.proxy = settings.proxy.clone();
    let mut client = ferry::registry::Client::new(options);
    if let Some(credential) = args.destination.credential(&destination.registry.host).await? {
        client.set_credential(&destination.registry.host, credential);
    }
    client.set_credential_hint(&destination.registry.host, super::mirror::DESTINATION_CREDENTIALS);
    let reporter = Reporter::new(images.len(), args.json || quiet);
    let outcomes = push::execute(&client, &images, args.jobs as usize, &reporter).await;
    reporter.finish();
    super::mirror::print_outcomes(&outcomes, None, args.json);
    Ok(if outcomes.iter().all(|o| o.status != Status::Failed) { EXIT_OK } else { EXIT_IMAGE_FAILED })
}
