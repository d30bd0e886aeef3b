//! Everything ferry prints: progress bars, log lines, plans, results and JSON.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use ferry::disk::SpaceCheck;
use ferry::progress::Progress;
use ferry::reference::Reference;
use ferry::settings::Settings;
use ferry::warmup::{ImageOutcome, Plan, Status, Target};

/// The progress bars in use, so log lines are printed above them instead of through them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Writes log lines to stderr, suspending the progress bars while it does.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write(data)),
            None => std::io::stderr().write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Returns a byte-count bar drawn with the image bars on a terminal, or a hidden one.
pub fn bytes_bar(total: u64, template: &str, hidden: bool) -> ProgressBar {
    if hidden || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())).add(bar)
}

/// Shows warmup progress: a bar per image on a terminal, plain lines otherwise.
pub struct Reporter {
    bars: Vec<ProgressBar>,
    plain: bool,
    silent: bool,
    names: Mutex<Vec<String>>,
}

impl Reporter {
    pub fn new(images: usize, silent: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal() && !silent;
        let multi = BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        if !terminal {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> ");
        let bars = (0..images)
            .map(|_| {
                let bar = ProgressBar::hidden();
                bar.set_style(style.clone());
                bar
            })
            .collect();
        Reporter { bars, plain: !terminal && !silent, silent, names: Mutex::new(vec![String::new(); images]) }
    }

    pub fn finish(&self) {
        for bar in &self.bars {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn image_started(&self, index: usize, reference: &str, bytes_total: u64) {
        self.names.lock().unwrap()[index] = reference.to_owned();
        if self.plain {
            match bytes_total {
                0 => eprintln!("{reference}: nothing to download"),
                total => eprintln!("{reference}: {} to download", HumanBytes(total)),
            }
            return;
        }
        if self.silent {
            return;
        }
        let bar = BARS.get().expect("bars set up").add(self.bars[index].clone());
        bar.set_length(bytes_total);
        bar.set_prefix(reference.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
    }

    fn image_bytes(&self, index: usize, bytes: u64) {
        self.bars[index].inc(bytes);
    }

    fn image_stage(&self, index: usize, stage: &str) {
        if self.plain {
            match self.names.lock().unwrap()[index].as_str() {
                "" => eprintln!("{stage}"),
                name => eprintln!("{name}: {stage}"),
            }
        }
        self.bars[index].set_message(stage.to_owned());
    }

    fn image_finished(&self, index: usize, _outcome: &ImageOutcome) {
        self.bars[index].finish_and_clear();
    }
}

/// Warnings for entries on another registry host than REGISTRY_URL, the usual leftover after
/// moving to a private registry.
pub fn registry_mismatches(settings: &Settings, references: &[Reference]) -> Vec<String> {
    let Some(url) = &settings.registry_url else { return Vec::new() };
    references
        .iter()
        .filter(|r| r.registry != url.value.host)
        .map(|r| {
            format!(
                "image {r} is on registry {} but REGISTRY_URL is {}: if the nodes moved to a private registry, update PROVISION_IMAGE_WARMUP",
                r.registry, url.value.host
            )
        })
        .collect()
}

pub fn space_message(problems: &[&SpaceCheck]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|c| {
            let estimate = if c.estimated_bytes > 0 { format!(", of which {} is an estimate of unpacked layers", HumanBytes(c.estimated_bytes)) } else { String::new() };
            format!(
                "not enough free space on the filesystem of {}: {} needed for {}{estimate}, {} free",
                c.path.display(),
                HumanBytes(c.needed_bytes),
                c.purposes.join(" and "),
                HumanBytes(c.free_bytes)
            )
        })
        .collect();
    format!("{}; free some space, point --cache-dir elsewhere, or pass --skip-disk-check to try anyway", lines.join("; "))
}

/// Stops the run (returning its exit code) when a filesystem lacks space, unless
/// `--skip-disk-check` was given, in which case it warns and lets the run go on.
pub fn check_space(problems: &[&SpaceCheck], skip: bool, as_json: bool) -> Option<u8> {
    if problems.is_empty() {
        return None;
    }
    let message = space_message(problems);
    if skip {
        tracing::warn!("{message} (going on because of --skip-disk-check)");
        return None;
    }
    if as_json {
        print_json_error(&message);
    }
    eprintln!("error: {message}");
    Some(super::EXIT_SETUP)
}

pub fn print_json_error(message: &str) {
    println!("{}", json!({ "ok": false, "error": message }));
}

pub fn print_plan(plan: &Plan, target: &Target, as_json: bool) {
    let images: Vec<_> = plan
        .images
        .iter()
        .map(|planned| match &planned.prepared {
            Ok(prepared) => json!({
                "reference": planned.reference.to_string(),
                "digest": prepared.resolved.manifest_digest.to_string(),
                "image_id": prepared.config_digest().to_string(),
                "platform": prepared.resolved.platform.as_ref().map(ToString::to_string),
                "action": if prepared.present { "none" } else { "load" },
                "layers_total": prepared.layers.len(),
                "layers_in_target": prepared.layers.iter().filter(|l| l.in_target).count(),
            }),
            Err(error) => json!({ "reference": planned.reference.to_string(), "action": "fail", "error": error }),
        })
        .collect();
    if as_json {
        let document = json!({
            "dry_run": true,
            "target": target.describe(),
            "images": images,
            "bytes_to_fetch": plan.bytes_to_fetch,
            "space": plan.space,
        });
        println!("{document}");
        return;
    }
    println!("plan for {} (dry run, nothing changed):", target.describe());
    for image in &images {
        let reference = image["reference"].as_str().unwrap_or_default();
        match image["action"].as_str() {
            Some("none") => println!("  present  {reference}"),
            Some("load") => println!(
                "  load     {reference} ({} of {} layers already in the target)",
                image["layers_in_target"], image["layers_total"]
            ),
            _ => println!("  fail     {reference}: {}", image["error"].as_str().unwrap_or_default()),
        }
    }
    println!("to download: {}", HumanBytes(plan.bytes_to_fetch));
    for check in &plan.space {
        let estimate = if check.estimated_bytes > 0 { format!(" (estimate includes {} unpacked)", HumanBytes(check.estimated_bytes)) } else { String::new() };
        println!(
            "space on {}: {} needed{estimate}, {} free: {}",
            check.path.display(),
            HumanBytes(check.needed_bytes),
            HumanBytes(check.free_bytes),
            if check.is_enough() { "ok" } else { "NOT ENOUGH" }
        );
    }
}

pub fn print_outcomes(outcomes: &[ImageOutcome], target: &Target, as_json: bool) {
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    if as_json {
        let document = json!({
            "ok": count(Status::Failed) == 0,
            "target": target.describe(),
            "changed": count(Status::Changed),
            "unchanged": count(Status::Unchanged),
            "failed": count(Status::Failed),
            "images": outcomes,
        });
        println!("{document}");
        return;
    }
    for outcome in outcomes {
        let digest = outcome.digest.as_deref().unwrap_or("-");
        match outcome.status {
            Status::Changed => println!(
                "changed    {} {digest} ({} downloaded in {:.1} s)",
                outcome.reference,
                HumanBytes(outcome.bytes),
                outcome.seconds
            ),
            Status::Unchanged => println!("unchanged  {} {digest}", outcome.reference),
            Status::Failed => println!("failed     {}: {}", outcome.reference, outcome.error.as_deref().unwrap_or("unknown error")),
        }
    }
    println!(
        "{} changed, {} unchanged, {} failed ({})",
        count(Status::Changed),
        count(Status::Unchanged),
        count(Status::Failed),
        target.describe()
    );
}

/// Returns `count` and `noun`, with an `s` unless the count is 1.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
