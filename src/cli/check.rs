//! `ferry check`: the checklist of `ferry::check`, printed as one line per check or as JSON.

use std::path::PathBuf;

use clap::Args;

use ferry::cache::BlobCache;
use ferry::check::{self, Check, CheckOptions, Facts, Report, Status};
use ferry::platform::Platform;
use ferry::settings;

use super::output;
use super::settings::{DiskArgs, SettingsArgs};
use super::RegistryArgs;

/// Every check passed or was skipped by a flag.
const EXIT_PASSED: u8 = 0;
/// At least one check failed, the settings check included.
const EXIT_FAILED: u8 = 1;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Platform the images must exist for, such as linux/arm64 (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Blob cache folder a warmup would use, whose filesystem the disk check measures (default:
    /// $FERRY_CACHE_DIR, else ~/.cache/ferry). It is not created.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub disk: DiskArgs,
    /// Print one JSON document with every check on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(args: CheckArgs, quiet: bool) -> anyhow::Result<u8> {
    let report = match read_settings(&args).await {
        Ok((settings, references, client)) => {
            let options = CheckOptions {
                platform: args.platform.clone().unwrap_or_else(Platform::host),
                docker_root: args.disk.docker_root.clone(),
                skip_disk_check: args.disk.skip_disk_check,
                cache: BlobCache::new(args.cache_dir.clone().unwrap_or_else(BlobCache::default_root)),
            };
            check::run(&settings, &references, &client, &options).await
        }
        Err(error) => check::settings_failed(&ferry::error_message(error.as_ref())),
    };

    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report, quiet);
    }
    Ok(if report.ok { EXIT_PASSED } else { EXIT_FAILED })
}

/// Reads the settings, expands the image list and builds the registry client: everything the
/// settings check covers.
async fn read_settings(args: &CheckArgs) -> anyhow::Result<(settings::Settings, Vec<ferry::reference::Reference>, ferry::registry::Client)> {
    let settings = args.settings.load()?;
    let references = settings::images(&settings)?;
    for warning in output::registry_mismatches(&settings, &references) {
        tracing::warn!("{warning}");
    }
    let client = args.settings.client(&args.registry, &settings, &references).await?;
    Ok((settings, references, client))
}

/// Prints one line per check (`ok`, `FAIL` or `skip`, the name, the detail), the lists an
/// operator acts on below it, a `fix:` line under each failure, and a count at the end. With
/// `quiet`, passed checks are left out.
fn print_report(report: &Report, quiet: bool) {
    for check in &report.checks {
        if quiet && check.status == Status::Pass {
            continue;
        }
        let mark = match check.status {
            Status::Pass => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        println!("{mark:<5} {:<12} {}", check.name.as_str(), check.detail);
        for line in listed_lines(check) {
            println!("{:18}{line}", "");
        }
        if let Some(fix) = &check.fix {
            println!("{:6}fix: {fix}", "");
        }
    }
    let count = |status| report.checks.iter().filter(|c| c.status == status).count();
    println!("{} passed, {} failed, {} skipped", count(Status::Pass), count(Status::Fail), count(Status::Skip));
}

/// The lines printed under a check: the image names of the settings and the hosts a proxy must
/// allow.
fn listed_lines(check: &Check) -> Vec<String> {
    match &check.facts {
        Some(Facts::Settings { images }) => images.clone(),
        Some(Facts::Registry { hosts, .. }) if !hosts.is_empty() => vec![format!("hosts contacted (what a proxy must allow): {}", hosts.join(", "))],
        _ => Vec::new(),
    }
}
