//! `ferry load`: an archive into the node's Docker engine, verified first.

use std::path::PathBuf;

use clap::Args;
use indicatif::HumanBytes;
use serde_json::json;

use ferry::engine::Engine;
use ferry::load;
use ferry::platform::Platform;
use ferry::warmup::Status;

use super::output::{self, Reporter};
use super::{EXIT_IMAGE_FAILED, EXIT_OK, EXIT_SETUP};

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive to load: one written by ferry save, docker save, skopeo (docker-archive or
    /// oci-archive) or podman save. For parts, name the first one (FILE.001) or FILE.
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,
    /// Platform to pick from multi-platform images that only the OCI view of the archive
    /// describes (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Folder for zstd layers unpacked for engines older than Docker 23 (default: the cache folder).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Go on even when the free-space check fails.
    #[arg(long)]
    pub skip_disk_check: bool,
    /// Print what would be loaded and the space needed, verify nothing and load nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document with the result of each image on standard output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LoadArgs, quiet: bool) -> anyhow::Result<u8> {
    let engine = Engine::connect().await?;
    let info = engine.info().await?;
    let cache = super::settings::open_cache(args.cache_dir.clone())?;
    let work_dir = cache.root().join("unpacked");
    let platform = args.platform.clone().unwrap_or_else(Platform::host);

    let plan = load::plan(&engine, &info, &args.archive, &platform, &work_dir).await?;
    for skipped in &plan.contents.skipped {
        tracing::warn!("skipping {} ({}): {}", skipped.names.join(", "), skipped.digest, skipped.reason);
    }
    if args.dry_run {
        let images: Vec<_> = plan
            .images
            .iter()
            .map(|p| json!({ "reference": p.label(), "image_id": p.image.config_digest.to_string(), "action": if p.present { "none" } else { "load" } }))
            .collect();
        if args.json {
            println!("{}", json!({ "dry_run": true, "kind": plan.contents.kind.to_string(), "images": images, "bytes_to_send": plan.bytes_to_send, "space": plan.space }));
        } else {
            println!("{} archive, dry run, nothing changed:", plan.contents.kind);
            for image in &images {
                println!("  {:<8} {}", if image["action"] == "none" { "present" } else { "load" }, image["reference"].as_str().unwrap_or_default());
            }
            println!("to send to Docker: {}", HumanBytes(plan.bytes_to_send));
        }
        return Ok(EXIT_OK);
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

    // Everything the images use is checked before the engine sees a byte.
    let reporter = Reporter::new(plan.images.len(), args.json || quiet);
    if !quiet && !args.json {
        eprintln!("verifying {}", args.archive.display());
    }
    load::verify(&plan, &|_| {}).await?;
    let outcomes = load::execute(&engine, &info, &plan, &work_dir, &reporter).await;
    reporter.finish();
    cache.remove_empty_folders();

    let target = format!("Docker {} at {}", info.server_version, engine.endpoint());
    if args.json {
        let count = |status| outcomes.iter().filter(|o| o.status == status).count();
        println!(
            "{}",
            json!({ "ok": count(Status::Failed) == 0, "target": target, "kind": plan.contents.kind.to_string(), "changed": count(Status::Changed), "unchanged": count(Status::Unchanged), "failed": count(Status::Failed), "images": outcomes })
        );
    } else {
        for outcome in &outcomes {
            match outcome.status {
                Status::Changed => println!("loaded     {} {}", outcome.reference, outcome.image_id.as_deref().unwrap_or("-")),
                Status::Unchanged => println!("unchanged  {} {}", outcome.reference, outcome.image_id.as_deref().unwrap_or("-")),
                Status::Failed => println!("failed     {}: {}", outcome.reference, outcome.error.as_deref().unwrap_or("unknown error")),
            }
        }
    }
    let all_ok = outcomes.iter().all(|o| o.status != Status::Failed);
    Ok(if all_ok { EXIT_OK } else { EXIT_IMAGE_FAILED })
}
