//! `ferry save`: the warmup list from the registry into one archive, on the bridge machine.

use std::path::PathBuf;

use clap::Args;
use indicatif::HumanBytes;
use serde_json::json;

use ferry::platform::Platform;
use ferry::save::{self, Platforms, SaveOptions};
use ferry::settings;

use super::output::{self, Reporter};
use super::settings::{DownloadArgs, SettingsArgs};
use super::{RegistryArgs, EXIT_OK};

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Images to save, short names or full references (default: the warmup list of the settings).
    #[arg(value_name = "REF")]
    pub references: Vec<String>,
    /// Archive to write. With --split-size, parts are written as FILE.001, FILE.002, ...
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Platform of the nodes: the variant of each multi-platform image that is saved and that
    /// `docker load` reads.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", default_value = "linux/amd64")]
    pub platform: Platform,
    /// Keep every platform of multi-platform images, so their index digests are preserved.
    #[arg(long)]
    pub all_platforms: bool,
    /// Write numbered parts, each smaller than SIZE (bytes, or with a K, M, G or T suffix in
    /// powers of 1024). 4G fits FAT32 media.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split_size: Option<u64>,
    /// Leave out the layers listed in an earlier archive written by ferry save, or in a text
    /// file of digests, because the other side already has them.
    #[arg(long, value_name = "ARCHIVE_OR_LIST")]
    pub since: Option<PathBuf>,
    #[command(flatten)]
    pub download: DownloadArgs,
    /// Go on even when the free-space check fails.
    #[arg(long)]
    pub skip_disk_check: bool,
    /// Print what would be saved and the space needed, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document with the result on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Parses `4G`, `500M`, `4GiB` or a plain number of bytes.
fn parse_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("invalid size {value:?}: expected a number such as 4G or 700M"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("invalid size {value:?}: the unit must be K, M, G or T")),
    };
    let size = number.checked_mul(1 << shift).ok_or_else(|| format!("invalid size {value:?}: too large"))?;
    if size < 1 << 20 {
        return Err(format!("invalid size {value:?}: parts must be at least 1M"));
    }
    Ok(size)
}

pub async fn run(mut args: SaveArgs, quiet: bool) -> anyhow::Result<u8> {
    if !args.references.is_empty() {
        args.settings.images.append(&mut args.references);
    }
    let settings = args.settings.load()?;
    let references = settings::images(&settings)?;
    let client = args.settings.client(&args.registry, &settings, &references).await?;
    let cache = super::settings::open_cache(args.download.cache_dir.clone())?;
    let folder = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !folder.is_dir() {
        anyhow::bail!("cannot write {}: the folder {} does not exist", args.output.display(), folder.display());
    }
    let since = match &args.since {
        Some(path) => save::read_since(path)?,
        None => Default::default(),
    };
    let options = SaveOptions {
        platforms: if args.all_platforms { Platforms::All } else { Platforms::One(args.platform.clone()) },
        node_platform: args.platform.clone(),
        split_size: args.split_size,
        since,
        jobs: args.download.jobs as usize,
        keep_cache: args.download.keep_cache,
    };

    let plan = save::plan(&client, &cache, &args.output, &references, &options).await?;
    if args.dry_run {
        let document = json!({
            "dry_run": true,
            "images": plan.images.iter().map(|i| i.reference.to_string()).collect::<Vec<_>>(),
            "layers": plan.layers.len(),
            "omitted_layers": plan.omitted.len(),
            "bytes_to_fetch": plan.bytes_to_fetch,
            "archive_bytes": plan.archive_bytes,
            "space": plan.space,
        });
        if args.json {
            println!("{document}");
        } else {
            println!(
                "would save {}, {} ({} left out), archive about {}, {} to download",
                output::plural(plan.images.len(), "image"),
                output::plural(plan.layers.len(), "layer"),
                plan.omitted.len(),
                HumanBytes(plan.archive_bytes),
                HumanBytes(plan.bytes_to_fetch)
            );
        }
        return Ok(EXIT_OK);
    }
    if let Some(code) = output::check_space(&plan.space_problems(), args.skip_disk_check, args.json) {
        return Ok(code);
    }

    let reporter = Reporter::new(1, args.json || quiet);
    let report = save::execute(&client, &cache, &plan, &args.output, &options, &reporter).await;
    reporter.finish();
    let report = report?;
    if args.json {
        println!("{}", json!({ "ok": true, "archive": report }));
        return Ok(EXIT_OK);
    }
    for image in &report.images {
        match image.platforms.as_slice() {
            [] => println!("saved  {} {}", image.reference, image.digest),
            platforms => println!("saved  {} {} ({})", image.reference, image.digest, platforms.join(", ")),
        }
    }
    let files: Vec<String> = report.parts.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{}, {} ({} left out), {} in {} ({} downloaded in {:.1} s)",
        output::plural(report.images.len(), "image"),
        output::plural(report.blobs, "layer"),
        report.omitted_blobs,
        HumanBytes(report.archive_bytes),
        files.join(", "),
        HumanBytes(report.downloaded_bytes),
        report.seconds
    );
    Ok(EXIT_OK)
}
