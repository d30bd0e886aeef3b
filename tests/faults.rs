//! `ferry warmup` under faults and bad input, against the real registry and Docker engine.
//!
//! Each test starts its own registry (behind a [`FaultProxy`] when it injects faults the registry
//! cannot produce), pushes images under repository names no other test uses, and removes what
//! reached Docker through a [`RepoGuard`]. After a failure, the engine is asked whether anything
//! of the image arrived, and the messages are checked for the value they must name.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Exit status when every image is in place.
const EXIT_OK: i32 = 0;
/// Exit status when at least one image failed and the others were still processed.
const EXIT_IMAGE_FAILED: i32 = 1;
/// Exit status when nothing was attempted: invalid settings or input, or too little space.
const EXIT_SETUP: i32 = 2;

/// An image pushed to a registry under a unique repository.
struct Pushed {
    image: BuiltImage,
    /// The layout the image was built in, for reading its blobs.
    layout: OciLayout,
    /// `ferry-test/<label>-...`, without a registry host.
    repository: String,
}

impl Pushed {
    /// Returns the reference of the image (tag `v1`) on `host`, such as a proxy in front of the
    /// registry it was pushed to.
    fn reference(&self, host: &str) -> String {
        format!("{host}/{}:v1", self.repository)
    }

    /// Returns the stored bytes of layer `index`.
    fn layer_blob(&self, index: usize) -> Vec<u8> {
        fs_err::read(self.layout.blob_path(&self.image.layers[index].digest)).unwrap()
    }
}

/// Builds an image from `layers` and pushes it to `registry` as `<unique repository>:v1`.
fn push_image(registry: &Registry, label: &str, layers: Vec<LayerSpec>) -> Pushed {
    let mut layout = OciLayout::new();
    let mut builder = ImageBuilder::new();
    for layer in layers {
        builder = builder.layer(layer);
    }
    let image = builder.write(&mut layout, "v1");
    let repository = unique_repo(label);
    registry.push(&layout, "v1", &format!("{repository}:v1"));
    Pushed {
        image,
        layout,
        repository,
    }
}

/// Output of one `ferry` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Returns stdout and stderr together, for checks that do not care where a message went.
    fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Parses stdout as the `--json` document.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON document ({error}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `ferry warmup` with `args` in `env` and returns its output, whatever the exit status.
fn warmup(env: &FerryEnv, args: &[&str]) -> Run {
    warmup_with(env.command(), args)
}

fn warmup_with(mut command: assert_cmd::Command, args: &[&str]) -> Run {
    let output = command
        .arg("warmup")
        .args(args)
        .output()
        .expect("failed to run ferry");
    Run {
        code: output.status.code().expect("ferry was killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Panics with the whole output unless the run ended with `code`.
fn assert_exit(run: &Run, code: i32) {
    assert_eq!(
        run.code, code,
        "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

/// Checks through the engine that `reference` is loaded with the image ID and layers of `image`.
fn assert_loaded(reference: &str, image: &BuiltImage) {
    let inspected =
        docker_inspect(reference).unwrap_or_else(|| panic!("{reference} is not in Docker"));
    assert_eq!(inspected["Id"], image.image_id(), "image ID of {reference}");
    let layers: Vec<String> =
        serde_json::from_value(inspected["RootFS"]["Layers"].clone()).unwrap();
    assert_eq!(layers, image.diff_ids(), "layers of {reference}");
}

/// Checks through the engine that no image named `reference`, and no image with the ID of
/// `image` under any name, is in Docker.
fn assert_not_loaded(reference: &str, image: &BuiltImage) {
    assert!(
        docker_inspect(reference).is_none(),
        "{reference} is in Docker after a failure"
    );
    assert!(
        docker_inspect(image.image_id()).is_none(),
        "image {} of {reference} is in Docker after a failure",
        image.image_id()
    );
}

/// Returns the path of a blob in ferry's cache folder (`blobs` or `partial`).
fn cache_path(cache: &Path, folder: &str, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    cache.join(folder).join("sha256").join(hex)
}

/// Counts the registry's `GET` requests for the blob `digest`.
fn blob_gets(registry: &Registry, digest: &str) -> usize {
    registry.count_requests("GET", &format!("/blobs/{digest}"))
}

/// Returns the IDs of the partial images that ferry loaded for `reference` and left in Docker.
fn partial_images(reference: &str) -> Vec<String> {
    let output = std::process::Command::new("docker")
        .args(["images", "--all", "--quiet", "--no-trunc", "--filter"])
        .arg(format!("label=io.ferry.partial.of={reference}"))
        .output()
        .expect("failed to run docker images");
    assert!(output.status.success(), "docker images failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Formats a byte count in MiB as ferry's messages do, such as `3.02 MiB`.
fn mebibytes(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

// ---------------------------------------------------------------------------------------------
// Transfer faults the client recovers from

#[test]
fn cut_blob_resumes_with_range() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let pushed = push_image(
        &registry,
        "faults-cut",
        vec![LayerSpec::random(2_000_000), LayerSpec::random(10_000)],
    );
    let layer = &pushed.image.layers[0];
    let cut = proxy.add(
        FaultRule::new(
            &format!("/blobs/{}", layer.digest),
            Fault::CutAfter(700_000),
        )
        .method("GET"),
    );
    let reference = pushed.reference(&proxy.host());
    let _guard = RepoGuard::new(format!("{}/{}", proxy.host(), pushed.repository));

    let env = FerryEnv::new();
    let run = warmup(
        &env,
        &[
            "--plain-http",
            &proxy.host(),
            "--warmup",
            &reference,
            "--json",
        ],
    );

    assert_exit(&run, EXIT_OK);
    assert_eq!(proxy.hits(cut), 1, "the cut applied once");
    let ranges = proxy.ranges(&layer.digest);
    assert_eq!(
        ranges.len(),
        1,
        "one Range request for the cut blob: {ranges:?}"
    );
    let start: u64 = ranges[0]
        .strip_prefix("bytes=")
        .and_then(|rest| rest.strip_suffix('-'))
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Range header {:?}", ranges[0]));
    assert!(start > 0, "the resume starts after byte 0: {start}");
    assert!(
        start <= 700_000,
        "the resume starts within what was sent: {start}"
    );
    assert_eq!(run.json()["images"][0]["status"], "changed");
    assert_loaded(&reference, &pushed.image);
}

#[test]
fn stalled_top_layer_loads_lower_ones_first() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let pushed = push_image(
        &registry,
        "faults-pipeline",
        vec![
            LayerSpec::random(400_000),
            LayerSpec::random(300_000),
            LayerSpec::random(200_000),
        ],
    );
    let top = &pushed.image.layers[2];
    let stall = proxy.add(
        FaultRule::new(
            &format!("/blobs/{}", top.digest),
            Fault::Stall {
                after: 1_000,
                duration: std::time::Duration::from_secs(3),
            },
        )
        .method("GET"),
    );
    let reference = pushed.reference(&proxy.host());
    let _guard = RepoGuard::new(format!("{}/{}", proxy.host(), pushed.repository));

    let env = FerryEnv::new();
    let mut command = env.command();
    command.env("FERRY_LOG", "ferry=debug");
    let run = warmup_with(command, &["--plain-http", &proxy.host(), "--warmup", &reference]);

    assert_exit(&run, EXIT_OK);
    assert_eq!(proxy.hits(stall), 1, "the top layer stalled");
    assert!(
        run.stderr.contains("loading a partial image"),
        "the lower layers went to Docker during the stall:\n{}",
        run.stderr
    );
    assert_loaded(&reference, &pushed.image);
    assert_eq!(
        partial_images(&reference),
        Vec::<String>::new(),
        "the partial images are removed"
    );
}

#[test]
fn blobs_fetched_ahead_count_for_their_image() {
    let registry = Registry::start_plain();
    let first = push_image(&registry, "faults-ahead-a", vec![LayerSpec::random(2_000_000), LayerSpec::random(500_000)]);
    let second = push_image(&registry, "faults-ahead-b", vec![LayerSpec::random(1_000_000)]);
    let first_reference = first.reference(&registry.host());
    let second_reference = second.reference(&registry.host());
    let mut guard = RepoGuard::new(format!("{}/{}", registry.host(), first.repository));
    guard.add(format!("{}/{}", registry.host(), second.repository));

    let env = FerryEnv::new();
    let list = format!("{first_reference},{second_reference}");
    let run = warmup(&env, &["--plain-http", &registry.host(), "--warmup", &list, "--json"]);

    assert_exit(&run, EXIT_OK);
    let document = run.json();
    let sizes = |pushed: &Pushed| -> u64 { (0..pushed.image.layers.len()).map(|i| pushed.layer_blob(i).len() as u64).sum() };
    assert_eq!(document["images"][0]["bytes"], sizes(&first), "{document}");
    assert_eq!(document["images"][1]["bytes"], sizes(&second), "{document}");
    assert_loaded(&first_reference, &first.image);
    assert_loaded(&second_reference, &second.image);
}

#[test]
fn leftover_partial_image_is_removed() {
    let registry = Registry::start_plain();
    let pushed = push_image(&registry, "faults-leftover", vec![LayerSpec::random(10_000)]);
    let reference = pushed.reference(&registry.host());
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));

    // An image labelled as a partial image of a process that no longer runs (PIDs stop below
    // 2^22 on Linux), as a killed warmup leaves it.
    let mut layout = OciLayout::new();
    let leftover_of = format!("{}/leftover:v1", registry.host());
    let leftover = ImageBuilder::new()
        .layer(LayerSpec::random(5_000))
        .label("io.ferry.partial", "4194305")
        .label("io.ferry.partial.of", &leftover_of)
        .write(&mut layout, "v1");
    let archive = tempfile::tempdir().unwrap();
    let archive_path = archive.path().join("leftover.tar");
    let leftover_repository = unique_repo("faults-leftover-partial");
    skopeo(&[
        "copy",
        &layout.skopeo_reference("v1"),
        &format!("docker-archive:{}:{leftover_repository}:v1", archive_path.display()),
    ]);
    let _leftover_guard = RepoGuard::new(leftover_repository);
    docker_load(&archive_path);
    assert_eq!(partial_images(&leftover_of).len(), 1, "the leftover is in Docker");

    let env = FerryEnv::new();
    let run = warmup(&env, &["--plain-http", &registry.host(), "--warmup", &reference]);

    assert_exit(&run, EXIT_OK);
    assert!(
        docker_inspect(leftover.image_id()).is_none(),
        "the leftover partial image is removed"
    );
}

#[test]
fn blob_429_waits_for_retry_after() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let pushed = push_image(&registry, "faults-429", vec![LayerSpec::random(50_000)]);
    let layer = &pushed.image.layers[0];
    let limited = proxy.add(
        FaultRule::new(&format!("/blobs/{}", layer.digest), Fault::TooManyRequests).method("GET"),
    );
    let reference = pushed.reference(&proxy.host());
    let _guard = RepoGuard::new(format!("{}/{}", proxy.host(), pushed.repository));

    let env = FerryEnv::new();
    let run = warmup(
        &env,
        &["--plain-http", &proxy.host(), "--warmup", &reference],
    );

    assert_exit(&run, EXIT_OK);
    assert_eq!(proxy.hits(limited), 1, "the 429 applied once");
    assert_eq!(
        proxy.count("GET", &format!("/blobs/{}", layer.digest)),
        2,
        "the blob was requested again after the 429"
    );
    // The proxy sends `Retry-After: 1`, and the first backoff without it is at most 500 ms.
    assert!(
        run.stderr.contains("wait_ms=1000"),
        "the retry waits the Retry-After second:\n{}",
        run.stderr
    );
    assert_loaded(&reference, &pushed.image);
}

#[test]
fn manifest_503_is_retried() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let pushed = push_image(&registry, "faults-503", vec![LayerSpec::random(50_000)]);
    let unavailable = proxy.add(
        FaultRule::new(
            &format!("/{}/manifests/v1", pushed.repository),
            Fault::ServiceUnavailable,
        )
        .method("GET"),
    );
    let reference = pushed.reference(&proxy.host());
    let _guard = RepoGuard::new(format!("{}/{}", proxy.host(), pushed.repository));

    let env = FerryEnv::new();
    let run = warmup(
        &env,
        &["--plain-http", &proxy.host(), "--warmup", &reference],
    );

    assert_exit(&run, EXIT_OK);
    assert_eq!(proxy.hits(unavailable), 1, "the 503 applied once");
    assert_eq!(
        proxy.count("GET", &format!("/{}/manifests/v1", pushed.repository)),
        2,
        "the manifest was requested again after the 503"
    );
    assert!(
        run.stderr.contains("HTTP 503"),
        "the retry is logged with the status:\n{}",
        run.stderr
    );
    assert_loaded(&reference, &pushed.image);
}

#[test]
fn partial_from_earlier_run_resumes() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let pushed = push_image(
        &registry,
        "faults-partial",
        vec![LayerSpec::random(600_000)],
    );
    let layer = &pushed.image.layers[0];
    let blob = pushed.layer_blob(0);
    let half = blob.len() / 2;
    let env = FerryEnv::new();
    let partial = cache_path(&env.cache_dir(), "partial", &layer.digest);
    fs_err::create_dir_all(partial.parent().unwrap()).unwrap();
    fs_err::write(&partial, &blob[..half]).unwrap();
    let reference = pushed.reference(&proxy.host());
    let _guard = RepoGuard::new(format!("{}/{}", proxy.host(), pushed.repository));

    let run = warmup(
        &env,
        &[
            "--plain-http",
            &proxy.host(),
            "--warmup",
            &reference,
            "--json",
        ],
    );

    assert_exit(&run, EXIT_OK);
    assert_eq!(
        proxy.ranges(&layer.digest),
        vec![format!("bytes={half}-")],
        "the download continues at the end of the partial file"
    );
    assert_eq!(
        proxy.count("GET", &format!("/blobs/{}", layer.digest)),
        1,
        "the blob was requested once"
    );
    let bytes = run.json()["images"][0]["bytes"].as_u64().unwrap();
    assert_eq!(
        bytes,
        (blob.len() - half) as u64,
        "only the missing half was downloaded"
    );
    assert!(!partial.exists(), "the partial file is gone after success");
    assert_loaded(&reference, &pushed.image);
}

// ---------------------------------------------------------------------------------------------
// Failures that end one image

#[test]
fn corrupted_blob_fails_with_digest() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let pushed = push_image(
        &registry,
        "faults-corrupt",
        vec![LayerSpec::random(10_000), LayerSpec::random(300_000)],
    );
    let layer = &pushed.image.layers[1];
    let flip = proxy.add(
        FaultRule::new(
            &format!("/blobs/{}", layer.digest),
            Fault::FlipByte(150_000),
        )
        .method("GET")
        .always(),
    );
    let reference = pushed.reference(&proxy.host());
    let _guard = RepoGuard::new(format!("{}/{}", proxy.host(), pushed.repository));

    let env = FerryEnv::new();
    let run = warmup(
        &env,
        &["--plain-http", &proxy.host(), "--warmup", &reference],
    );

    assert_exit(&run, EXIT_IMAGE_FAILED);
    assert!(proxy.hits(flip) >= 1, "the corrupted blob was served");
    assert!(
        run.combined().contains(&layer.digest),
        "the error names the blob digest:\n{}",
        run.combined()
    );
    assert!(
        run.combined().contains("digest mismatch"),
        "the error says digest mismatch:\n{}",
        run.combined()
    );
    assert!(
        run.stdout.contains(&format!("failed     {reference}")),
        "the image is reported as failed:\n{}",
        run.stdout
    );
    assert_not_loaded(&reference, &pushed.image);
    assert_eq!(
        partial_images(&reference),
        Vec::<String>::new(),
        "the partial image of the first layer is removed"
    );
    let cache = env.cache_dir();
    assert!(
        !cache_path(&cache, "blobs", &layer.digest).exists(),
        "no cached blob for the corrupted digest"
    );
    assert!(
        !cache_path(&cache, "partial", &layer.digest).exists(),
        "no partial file for the corrupted digest"
    );
}

#[test]
fn stopped_registry_names_host() {
    let mut registry = Registry::start_plain();
    let pushed = push_image(&registry, "faults-stopped", vec![LayerSpec::random(10_000)]);
    let reference = pushed.reference(&registry.host());
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));
    registry.stop();

    let env = FerryEnv::new();
    let run = warmup(
        &env,
        &[
            "--plain-http",
            &registry.host(),
            "--attempts",
            "2",
            "--warmup",
            &reference,
        ],
    );

    assert_exit(&run, EXIT_IMAGE_FAILED);
    let message = format!("cannot reach registry {}", registry.host());
    assert!(
        run.combined().contains(&message),
        "the error says {message:?}:\n{}",
        run.combined()
    );
    assert!(
        run.stdout.contains(&format!("failed     {reference}")),
        "the image is reported as failed:\n{}",
        run.stdout
    );
    assert_not_loaded(&reference, &pushed.image);
}

#[test]
fn unknown_image_does_not_stop_others() {
    let registry = Registry::start_plain();
    let pushed = push_image(&registry, "faults-known", vec![LayerSpec::random(20_000)]);
    let good = pushed.reference(&registry.host());
    let typo_repository = pushed.repository.replacen("ferry-test/", "ferry-tset/", 1);
    let typo = format!("{}/{typo_repository}:v1", registry.host());
    let mut guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));
    guard.add(format!("{}/{typo_repository}", registry.host()));

    let env = FerryEnv::new();
    let run = warmup(
        &env,
        &[
            "--plain-http",
            &registry.host(),
            "--warmup",
            &typo,
            "--warmup",
            &good,
            "--json",
        ],
    );

    assert_exit(&run, EXIT_IMAGE_FAILED);
    let document = run.json();
    assert_eq!(document["ok"], false);
    assert_eq!(document["failed"], 1);
    assert_eq!(document["changed"], 1);
    let images = document["images"].as_array().unwrap();
    assert_eq!(images[0]["reference"], typo.as_str());
    assert_eq!(images[0]["status"], "failed");
    let error = images[0]["error"].as_str().unwrap();
    assert!(
        error.contains("not found"),
        "the error says not found: {error}"
    );
    assert!(
        error.contains(&typo),
        "the error names the reference: {error}"
    );
    assert_eq!(images[1]["reference"], good.as_str());
    assert_eq!(images[1]["status"], "changed");
    assert_eq!(images[1]["image_id"], pushed.image.image_id());
    assert!(
        docker_inspect(&typo).is_none(),
        "nothing is loaded for {typo}"
    );
    assert_loaded(&good, &pushed.image);
}

// ---------------------------------------------------------------------------------------------
// Wrong credentials

/// Checks that `secret`, and the Basic header made from it, appear nowhere in `run`'s output.
fn assert_secret_hidden(run: &Run, user: &str, secret: &str, case: &str) {
    use base64::Engine as _;

    assert!(
        !run.combined().contains(secret),
        "{case}: the password appears in the output:\n{}",
        run.combined()
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    assert!(
        !run.combined().contains(&basic),
        "{case}: the Basic credentials appear in the output:\n{}",
        run.combined()
    );
}

/// Runs warmup against an authenticating registry with `user` and a wrong password given in
/// REGISTRY_PASSWORD, plain, with `-vv` and with `--json`, and checks each run.
fn check_wrong_password(registry: &Registry, pushed: &Pushed, user: &str) {
    let wrong = "Wr0ng-pa55word-e7c1d2";
    let reference = pushed.reference(&registry.host());
    let ca_file = registry.ca_file().unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let cases: [(&str, &[&str]); 3] = [("plain", &[]), ("-vv", &["-vv"]), ("--json", &["--json"])];
    for (case, extra) in cases {
        let env = FerryEnv::new();
        let mut command = env.command();
        command
            .env("REGISTRY_URL", registry.host())
            .env("REGISTRY_USERNAME", user)
            .env("REGISTRY_PASSWORD", wrong);
        let mut args = vec!["--ca-file", ca_file, "--warmup", &reference];
        args.extend_from_slice(extra);

        let run = warmup_with(command, &args);

        assert_exit(&run, EXIT_IMAGE_FAILED);
        assert!(
            run.combined().contains(&registry.host()),
            "{case}: the error names the registry {}:\n{}",
            registry.host(),
            run.combined()
        );
        assert!(
            run.combined().contains(user),
            "{case}: the error names the user {user}:\n{}",
            run.combined()
        );
        assert_secret_hidden(&run, user, wrong, case);
        if case == "--json" {
            let document = run.json();
            assert_eq!(document["images"][0]["status"], "failed", "{case}");
            let error = document["images"][0]["error"].as_str().unwrap();
            assert!(
                error.contains(user),
                "{case}: the JSON error names the user: {error}"
            );
        }
    }
    assert_not_loaded(&reference, &pushed.image);
}

/// Runs warmup with the right password and `-vv`, and checks that the password and the Basic
/// header made from it appear nowhere in the output.
fn check_right_password_hidden(registry: &Registry, pushed: &Pushed) {
    let (user, password) = registry.credentials().unwrap();
    let reference = pushed.reference(&registry.host());
    let ca_file = registry.ca_file().unwrap();
    let env = FerryEnv::new();
    let mut command = env.command();
    command
        .env("REGISTRY_URL", registry.host())
        .env("REGISTRY_USERNAME", &user)
        .env("REGISTRY_PASSWORD", &password);

    let run = warmup_with(
        command,
        &[
            "-vv",
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--warmup",
            &reference,
        ],
    );

    assert_exit(&run, EXIT_OK);
    assert_secret_hidden(&run, &user, &password, "right password with -vv");
    assert_loaded(&reference, &pushed.image);
}

#[test]
fn htpasswd_wrong_password_hidden() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "alice", "Right-pa55word-3f9a1c");
    let pushed = push_image(&registry, "faults-htpasswd", vec![LayerSpec::random(1_000)]);
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));

    check_wrong_password(&registry, &pushed, "alice");
    check_right_password_hidden(&registry, &pushed);
}

#[test]
fn token_wrong_password_hidden() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("bob", "Right-pa55word-8d2e4b")]);
    let pushed = push_image(&registry, "faults-token", vec![LayerSpec::random(1_000)]);
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));

    check_wrong_password(&registry, &pushed, "bob");
    check_right_password_hidden(&registry, &pushed);
}

// ---------------------------------------------------------------------------------------------
// Disk space

/// Pushes an image of three 1 MB layers, about 3 MB in the registry.
fn push_three_megabytes(registry: &Registry, label: &str) -> Pushed {
    let layers = (0..3).map(|_| LayerSpec::random(1_000_000)).collect();
    push_image(registry, label, layers)
}

/// Returns the `--plain-http`, `--cache-dir` and `--warmup` arguments for `reference` on
/// `registry`, with the cache in `cache`.
fn disk_args(registry: &Registry, cache: &Path, reference: &str) -> Vec<String> {
    vec![
        "--plain-http".into(),
        registry.host(),
        "--cache-dir".into(),
        cache.display().to_string(),
        "--warmup".into(),
        reference.into(),
    ]
}

#[test]
fn full_disk_stops_before_download() {
    let registry = Registry::start_plain();
    let pushed = push_three_megabytes(&registry, "faults-disk");
    let reference = pushed.reference(&registry.host());
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));
    let tmpfs = Tmpfs::mount("1m");
    let cache = tmpfs.path().join("cache");
    let args = disk_args(&registry, &cache, &reference);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let blob_gets_before = registry.count_requests("GET", "/blobs/");

    let env = FerryEnv::new();
    let run = warmup(&env, &args);

    assert_exit(&run, EXIT_SETUP);
    let needed: u64 = pushed.image.layers.iter().map(|layer| layer.size).sum();
    let needed = format!("{} needed", mebibytes(needed));
    let free = format!("{} free", mebibytes(1 << 20));
    assert!(
        run.stderr.contains(&cache.display().to_string()),
        "the message names the cache path:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&needed),
        "the message has {needed:?}:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&free),
        "the message has {free:?}:\n{}",
        run.stderr
    );
    for layer in &pushed.image.layers {
        assert_eq!(
            blob_gets(&registry, &layer.digest),
            0,
            "GET of layer {}",
            layer.digest
        );
    }
    // The plan reads the config blob to learn the layers' DiffIDs, and fetches no other blob.
    assert_eq!(
        registry.count_requests("GET", "/blobs/") - blob_gets_before,
        1,
        "blob GETs during the run"
    );
    assert_not_loaded(&reference, &pushed.image);

    let json_run = warmup(&env, &[args.as_slice(), &["--json"]].concat());

    assert_exit(&json_run, EXIT_SETUP);
    let document = json_run.json();
    assert_eq!(document["ok"], false);
    let error = document["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&needed),
        "the JSON error has {needed:?}: {error}"
    );
}

/// Runs warmup with `--skip-disk-check` and a cache on a 1 MiB tmpfs, for an image of about
/// 3 MB. Returns the run and the cache path. The tmpfs is unmounted before returning.
fn warmup_on_full_disk(label: &str) -> (Run, PathBuf) {
    let registry = Registry::start_plain();
    let pushed = push_three_megabytes(&registry, label);
    let reference = pushed.reference(&registry.host());
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));
    let tmpfs = Tmpfs::mount("1m");
    let cache = tmpfs.path().join("cache");
    let mut args = disk_args(&registry, &cache, &reference);
    args.push("--skip-disk-check".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let env = FerryEnv::new();
    let run = warmup(&env, &args);

    assert_not_loaded(&reference, &pushed.image);
    (run, cache)
}

#[test]
fn full_disk_fails_when_check_skipped() {
    let (run, cache) = warmup_on_full_disk("faults-disk-skip");

    assert_exit(&run, EXIT_IMAGE_FAILED);
    assert!(
        run.stderr.contains("--skip-disk-check"),
        "the warning says the check was skipped:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("no space left on the device"),
        "the error says the disk is full:\n{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&cache.join("partial/sha256").display().to_string()),
        "the error names the partial file in the cache:\n{}",
        run.stdout
    );
}

#[test]
fn full_disk_error_reads_once() {
    let (run, _cache) = warmup_on_full_disk("faults-disk-message");

    assert_exit(&run, EXIT_IMAGE_FAILED);
    assert_eq!(
        run.stdout.matches("no space left").count(),
        1,
        "the disk-full error appears once:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("--cache-dir"),
        "the error says how to get space, such as another --cache-dir:\n{}",
        run.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// Bad settings and input: nothing is attempted

#[test]
fn malformed_inventory_names_line() {
    let env = FerryEnv::new();
    let inventory = env.work_dir().join("inventory.yml");
    fs_err::write(
        &inventory,
        "all:\n  vars:\n    REGISTRY_URL: 127.0.0.1:5000\n    REGISTRY_ENV: team: x\n    PROVISION_IMAGE_WARMUP: [chromium]\n",
    )
    .unwrap();

    let run = warmup(&env, &["-i", inventory.to_str().unwrap()]);

    assert_exit(&run, EXIT_SETUP);
    assert!(
        run.stderr.contains(&inventory.display().to_string()),
        "the error names the file:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("line 4"),
        "the error names line 4, with the second ':':\n{}",
        run.stderr
    );
}

#[test]
fn vault_password_rejected() {
    let env = FerryEnv::new();
    let inventory = env.work_dir().join("inventory.yml");
    fs_err::write(
        &inventory,
        "all:
  vars:
    REGISTRY_URL: 127.0.0.1:5000
    REGISTRY_USERNAME: alice
    REGISTRY_PASSWORD: !vault |
      $ANSIBLE_VAULT;1.1;AES256
      62313365396662343061393464336163383764373764613633653634306231386433626436623361
      6134333665353966363534333632666535333761666131620a663537646436643839616531643561
",
    )
    .unwrap();

    let run = warmup(
        &env,
        &["-i", inventory.to_str().unwrap(), "--warmup", "app"],
    );

    assert_exit(&run, EXIT_SETUP);
    assert!(
        run.stderr.contains("REGISTRY_PASSWORD"),
        "the error names the variable:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("environment"),
        "the error points to the environment:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--password-stdin"),
        "the error points to --password-stdin:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("ANSIBLE_VAULT"),
        "the error does not repeat the vault text:\n{}",
        run.stderr
    );
}

#[test]
fn invalid_reference_sends_nothing() {
    let registry = Registry::start_plain();
    let pushed = push_image(&registry, "faults-invalid", vec![LayerSpec::random(1_000)]);
    let good = pushed.reference(&registry.host());
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), pushed.repository));
    let before = registry.requests().len();

    for bad in ["Bad_Name", "host:99999999/x"] {
        let env = FerryEnv::new();
        let run = warmup(
            &env,
            &[
                "--registry-url",
                &registry.host(),
                "--plain-http",
                &registry.host(),
                "--warmup",
                &good,
                "--warmup",
                bad,
            ],
        );

        assert_exit(&run, EXIT_SETUP);
        assert!(
            run.stderr.contains(bad),
            "the error names the entry {bad:?}:\n{}",
            run.stderr
        );
    }
    let after = registry.requests();
    assert_eq!(
        after[before..].to_vec(),
        Vec::<LoggedRequest>::new(),
        "the registry received no request"
    );
    assert!(
        docker_inspect(&good).is_none(),
        "the valid entry was not loaded either"
    );
}

// NOTE: stalls are not tested. Only a stall longer than ferry's read timeout makes a transfer
// fail, and that timeout is 60 s and cannot be set from the command line.
