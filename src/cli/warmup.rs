//! `ferry warmup`: settings, plan, disk check, transfer, report.

use std::path::PathBuf;

use clap::Args;

use ferry::engine::Engine;
use ferry::platform::Platform;
use ferry::settings;
use ferry::warmup::{self, Status, Target, WarmupOptions};

use super::output::{self, Reporter};
use super::settings::{DiskArgs, DownloadArgs, SettingsArgs};
use super::{RegistryArgs, EXIT_IMAGE_FAILED, EXIT_OK};

#[derive(Args, Debug)]
pub struct WarmupArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Platform to pick from multi-platform images, such as linux/arm64 (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Destination of the images: `docker` (the engine at DOCKER_HOST or the local socket) or `oci:PATH`.
    #[arg(long, value_name = "TARGET", default_value = "docker")]
    pub to: String,
    #[command(flatten)]
    pub download: DownloadArgs,
    #[command(flatten)]
    pub disk: DiskArgs,
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
    let settings = args.settings.load()?;
    let references = settings::images(&settings)?;
    for warning in output::registry_mismatches(&settings, &references) {
        tracing::warn!("{warning}");
    }

    let client = args.settings.client(&args.registry, &settings, &references).await?;
    let target = match args.to.as_str() {
        "docker" => {
            let engine = Engine::connect().await?;
            let mut info = engine.info().await?;
            args.disk.apply(&mut info);
            Target::Docker { engine, info }
        }
        other => match other.strip_prefix("oci:") {
            Some(path) if !path.is_empty() => {
                check_layout_folder(std::path::Path::new(path))?;
                Target::Layout { path: PathBuf::from(path) }
            }
            _ => anyhow::bail!("invalid --to {other:?}: use `docker` or `oci:PATH`"),
        },
    };
    let cache = super::settings::open_cache(args.download.cache_dir.clone())?;
    let options = WarmupOptions {
        platform: args.platform.clone().unwrap_or_else(Platform::host),
        jobs: args.download.jobs as usize,
        keep_cache: args.download.keep_cache,
    };

    let plan = warmup::plan(&client, &target, &cache, &references, &options).await?;
    if args.dry_run {
        output::print_plan(&plan, &target, args.json);
        return Ok(if plan.images.iter().any(|i| i.prepared.is_err()) { EXIT_IMAGE_FAILED } else { EXIT_OK });
    }
    if let Some(code) = output::check_space(&plan.space_problems(), args.disk.skip_disk_check, args.json) {
        return Ok(code);
    }

    let reporter = Reporter::new(plan.images.len(), args.json || quiet);
    let outcomes = warmup::execute(&client, &target, &cache, &plan, &options, &reporter).await;
    reporter.finish();
    output::print_outcomes(&outcomes, &target, args.json);
    let all_ok = outcomes.iter().all(|o| o.status != Status::Failed);
    Ok(if all_ok { EXIT_OK } else { EXIT_IMAGE_FAILED })
}

/// Rejects an `oci:` target that cannot become an OCI layout, before anything is downloaded.
fn check_layout_folder(path: &std::path::Path) -> anyhow::Result<()> {
    if path.exists() && !path.is_dir() {
        anyhow::bail!("--to oci:{}: this is a file, not a folder; name a new or existing layout folder", path.display());
    }
    let has_entries = path.read_dir().map(|mut entries| entries.next().is_some()).unwrap_or(false);
    if has_entries && !path.join("oci-layout").exists() {
        anyhow::bail!("--to oci:{}: the folder is not empty and is not an OCI layout (no oci-layout file); name a new folder", path.display());
    }
    Ok(())
}
