//! `ferry load`: an archive into the node's Docker engine, verified first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use indicatif::HumanBytes;
use serde_json::json;

use ferry::engine::Engine;
use ferry::load::{self, LoadPlan};
use ferry::platform::Platform;
use ferry::warmup::{ImageOutcome, Status};

use super::output::{self, Reporter};
use super::settings::DiskArgs;
use super::{EXIT_IMAGE_FAILED, EXIT_OK};

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archives to load: written by ferry save, docker save, skopeo (docker-archive or
    /// oci-archive) or podman save. For parts, name the first one (FILE.001) or FILE.
    /// Without any, the list comes from PROVISION_IMAGE_ARCHIVES (environment or inventory).
    #[arg(value_name = "ARCHIVE")]
    pub archives: Vec<PathBuf>,
    /// Ansible YAML inventory to read PROVISION_IMAGE_ARCHIVES from.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Inventory host whose variables apply (default: this machine's hostname if the inventory
    /// lists it, else the `all` group).
    #[arg(long, value_name = "NAME", requires = "inventory")]
    pub host: Option<String>,
    /// Platform to pick from multi-platform images that only the OCI view of the archive
    /// describes (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Destination of the images: `docker` (the engine at DOCKER_HOST or the local socket) or
    /// `oci:PATH`, an OCI image layout folder.
    #[arg(long, value_name = "TARGET", default_value = "docker")]
    pub to: String,
    /// Folder for zstd layers unpacked for engines older than Docker 23 (default: the cache folder).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub disk: DiskArgs,
    /// Print what would be loaded and the space needed, verify nothing and load nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document with the result of each image on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Variable that lists the archives for `ferry load` without arguments.
const ARCHIVES_VARIABLE: &str = "PROVISION_IMAGE_ARCHIVES";

/// Returns the archives to load: the arguments, else PROVISION_IMAGE_ARCHIVES from the environment,
/// else from the inventory. The variable is a list, a JSON list or a comma-separated string.
fn archive_list(args: &LoadArgs) -> anyhow::Result<Vec<PathBuf>> {
    if !args.archives.is_empty() {
        return Ok(args.archives.clone());
    }
    let (value, origin) = match std::env::var(ARCHIVES_VARIABLE).ok().filter(|v| !v.trim().is_empty()) {
        Some(text) => (serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)), "the environment".to_owned()),
        None => {
            let Some(path) = &args.inventory else {
                anyhow::bail!("no archive to load: name one (ferry load images.tar), or set {ARCHIVES_VARIABLE} in the environment or the inventory (-i)");
            };
            let view = ferry::inventory::Inventory::load(path)?.vars_for(args.host.as_deref())?;
            let Some(found) = view.vars.get(ARCHIVES_VARIABLE) else {
                anyhow::bail!("{} does not set {ARCHIVES_VARIABLE}: add the list of archives to load, or name them on the command line", path.display());
            };
            if found.unevaluable.is_some() {
                anyhow::bail!("{ARCHIVES_VARIABLE} in {} is encrypted or templated, which ferry cannot evaluate: set it in the environment or name the archives on the command line", found.origin);
            }
            (found.value.clone(), found.origin.to_string())
        }
    };
    let entries: Vec<String> = match value {
        serde_json::Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect(),
        serde_json::Value::String(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
        other => anyhow::bail!("{ARCHIVES_VARIABLE} from {origin} must be a list of paths, not {other}"),
    };
    let archives: Vec<PathBuf> = entries.into_iter().filter(|e| !e.is_empty()).map(PathBuf::from).collect();
    if archives.is_empty() {
        anyhow::bail!("{ARCHIVES_VARIABLE} from {origin} is empty: list the archives to load");
    }
    Ok(archives)
}

pub async fn run(args: LoadArgs, quiet: bool) -> anyhow::Result<u8> {
    let archives = archive_list(&args)?;
    if let Some(layout) = args.to.strip_prefix("oci:") {
        return run_to_layout(&args, &archives, Path::new(layout), quiet).await;
    }
    if args.to != "docker" {
        anyhow::bail!("invalid --to {:?}: use `docker` or `oci:PATH`", args.to);
    }
    let engine = Engine::connect().await?;
    let mut info = engine.info().await?;
    args.disk.apply(&mut info);
    let cache = super::settings::open_cache(args.cache_dir.clone())?;
    let work_dir = cache.root().join("unpacked");
    let platform = args.platform.clone().unwrap_or_else(Platform::host);

    let plan = load::plan(&engine, &info, &archives, &platform, &work_dir).await?;
    warn_skipped(&plan);
    if args.dry_run {
        print_dry_run(&plan, args.json);
        return Ok(EXIT_OK);
    }
    if let Some(code) = output::check_space(&plan.space_problems(), args.disk.skip_disk_check, args.json) {
        return Ok(code);
    }

    // Everything the images use is checked, in every archive, while the layers travel. The
    // engine receives the end of the upload only when all of it matched.
    let hidden = args.json || quiet;
    let reporter = Reporter::new(plan.images().count(), hidden);
    let bar = verification_bar(&plan, hidden);
    let counter = bar.clone();
    let outcomes = load::execute(&engine, &info, &plan, &work_dir, &reporter, Arc::new(move |n| counter.inc(n))).await;
    bar.finish_and_clear();
    reporter.finish();
    let outcomes = outcomes?;
    cache.remove_empty_folders();

    let target = format!("Docker {} at {}", info.server_version, engine.endpoint());
    print_outcomes(&plan, &outcomes, &target, "loaded", args.json);
    Ok(exit_code(&outcomes))
}

/// Writes the archives' images into an OCI layout folder, after verifying them.
async fn run_to_layout(args: &LoadArgs, archives: &[PathBuf], layout: &Path, quiet: bool) -> anyhow::Result<u8> {
    if layout.as_os_str().is_empty() {
        anyhow::bail!("invalid --to oci: name the layout folder, such as oci:/srv/images");
    }
    let platform = args.platform.clone().unwrap_or_else(Platform::host);
    let plan = load::plan_for_layout(archives, &platform, layout).await?;
    warn_skipped(&plan);
    if let Some(code) = output::check_space(&plan.space_problems(), args.disk.skip_disk_check, args.json) {
        return Ok(code);
    }
    if args.dry_run {
        println!("would write {} images ({}) to {}", plan.images().count(), HumanBytes(plan.bytes_to_send), layout.display());
        return Ok(EXIT_OK);
    }
    verify_with_progress(&plan, args.json || quiet).await?;
    let outcomes = tokio::task::block_in_place(|| load::write_layout(&plan, layout));
    print_outcomes(&plan, &outcomes, &format!("OCI layout {}", layout.display()), "written", args.json);
    Ok(exit_code(&outcomes))
}

/// Verifies the plan's archives, naming each one and showing a byte count on a terminal.
async fn verify_with_progress(plan: &LoadPlan, hidden: bool) -> anyhow::Result<()> {
    let bar = verification_bar(plan, hidden);
    let result = load::verify(plan, &|n| bar.inc(n)).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Names each archive to verify and returns a bar of the bytes to verify, drawn on a terminal.
fn verification_bar(plan: &LoadPlan, hidden: bool) -> indicatif::ProgressBar {
    if !hidden {
        for archive in &plan.archives {
            eprintln!("verifying {}", archive.path().display());
        }
    }
    let total: u64 = plan.images().filter(|(_, p)| !p.present).flat_map(|(_, p)| p.image.layers.iter().map(|l| l.size)).sum();
    output::bytes_bar(total, "verifying {bytes}/{total_bytes} {wide_bar} {eta}", hidden)
}

fn warn_skipped(plan: &LoadPlan) {
    for archive in &plan.archives {
        for skipped in &archive.contents.skipped {
            tracing::warn!("{}: skipping {} ({}): {}", archive.path().display(), skipped.names.join(", "), skipped.digest, skipped.reason);
        }
    }
}

/// Returns the archives as JSON: path and format of each.
fn archives_json(plan: &LoadPlan) -> Vec<serde_json::Value> {
    plan.archives.iter().map(|a| json!({ "path": a.path(), "kind": a.contents.kind.to_string() })).collect()
}

fn print_dry_run(plan: &LoadPlan, as_json: bool) {
    let images: Vec<_> = plan
        .images()
        .map(|(archive, p)| {
            json!({
                "reference": p.label(),
                "image_id": p.image.config_digest.to_string(),
                "action": if p.present { "none" } else { "load" },
                "archive": archive.path(),
            })
        })
        .collect();
    if as_json {
        println!("{}", json!({ "dry_run": true, "archives": archives_json(plan), "images": images, "bytes_to_send": plan.bytes_to_send, "space": plan.space }));
        return;
    }
    for archive in &plan.archives {
        println!("{} ({}), dry run, nothing changed:", archive.path().display(), archive.contents.kind);
        for planned in &archive.images {
            println!("  {:<8} {}", if planned.present { "present" } else { "load" }, planned.label());
        }
    }
    println!("to send to Docker: {}", HumanBytes(plan.bytes_to_send));
}

/// Prints one line per image, or one JSON document for all archives. `done` is the word for an
/// image that changed in the target.
fn print_outcomes(plan: &LoadPlan, outcomes: &[ImageOutcome], target: &str, done: &str, as_json: bool) {
    if as_json {
        let count = |status| outcomes.iter().filter(|o| o.status == status).count();
        let images: Vec<_> = plan
            .images()
            .zip(outcomes)
            .map(|((archive, _), outcome)| {
                let mut value = serde_json::to_value(outcome).expect("outcome serializes");
                value["archive"] = json!(archive.path());
                value
            })
            .collect();
        let document = json!({
            "ok": count(Status::Failed) == 0,
            "target": target,
            "archives": archives_json(plan),
            "changed": count(Status::Changed),
            "unchanged": count(Status::Unchanged),
            "failed": count(Status::Failed),
            "images": images,
        });
        println!("{document}");
        return;
    }
    for outcome in outcomes {
        let id = outcome.digest.as_deref().or(outcome.image_id.as_deref()).unwrap_or("-");
        match outcome.status {
            Status::Changed => println!("{done:<10} {} {id}", outcome.reference),
            Status::Unchanged => println!("unchanged  {} {id}", outcome.reference),
            Status::Failed => println!("failed     {}: {}", outcome.reference, outcome.error.as_deref().unwrap_or("unknown error")),
        }
    }
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    println!("{} {done}, {} unchanged, {} failed ({target})", count(Status::Changed), count(Status::Unchanged), count(Status::Failed));
}

fn exit_code(outcomes: &[ImageOutcome]) -> u8 {
    if outcomes.iter().all(|o| o.status != Status::Failed) {
        EXIT_OK
    } else {
        EXIT_IMAGE_FAILED
    }
}
