//! Features for fleets: `REGISTRY_MIRRORS` with a real pull-through cache (the distribution
//! registry in `proxy` mode in front of the origin registry, as a site runs it near its nodes),
//! and `--limit-rate`.

mod common;

use std::path::Path;

use common::*;

/// Warms up `name` into the OCI layout `layout` with `mirror` first, as one node would, with a
/// cache folder of its own. Returns the exit code, the JSON document and stderr.
fn warmup_node(origin: &Registry, mirror: &str, name: &str, layout: &Path) -> (i32, serde_json::Value, String) {
    let mut command = ferry_cmd();
    command
        .args(["warmup", "--plain-http", &origin.host(), "--warmup", name])
        .arg("--to")
        .arg(format!("oci:{}", layout.display()))
        .env("REGISTRY_MIRRORS", mirror);
    run_json(&mut command)
}

#[test]
fn pull_through_cache_serves_second_node() {
    let origin = Registry::start_plain();
    let cache = Registry::start_pull_through(&origin);
    let repo = unique_repo("mirrors-cache");
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(60_000).gzip()).layer(LayerSpec::random(40_000).gzip()).write(&mut layout, "v1");
    origin.push(&layout, "v1", &format!("{repo}:v1"));
    let name = format!("{}/{repo}:v1", origin.host());
    let mirror = format!("http://{}", cache.host());
    let nodes = tempfile::tempdir().unwrap();

    // The first node's pull fills the cache. Distribution 2.8's cache fetches each new blob
    // from the origin twice, once to store it and once to stream it to the client.
    let before = origin.count_requests("GET", "/blobs/");
    let (code, document, stderr) = warmup_node(&origin, &mirror, &name, &nodes.path().join("node1"));
    assert_eq!(code, 0, "{document}\n{stderr}");
    let blobs = image.layers.len() + 1;
    let first = origin.count_requests("GET", "/blobs/") - before;
    assert!((blobs..=2 * blobs).contains(&first), "{first} blob requests: {:?}", origin.requests());
    assert_eq!(cache.count_requests("GET", "/blobs/"), blobs, "ferry fetched each blob from the cache");

    // The second node gets every blob from the cache, and the origin sends no blob again.
    let (code, document, stderr) = warmup_node(&origin, &mirror, &name, &nodes.path().join("node2"));
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(origin.count_requests("GET", "/blobs/") - before, first, "{:?}", origin.requests());
    assert_eq!(document["images"][0]["digest"], image.manifest_digest.as_str());
}

#[test]
fn mirror_down_falls_back_to_origin() {
    let origin = Registry::start_plain();
    let repo = unique_repo("mirrors-down");
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(20_000).gzip()).write(&mut layout, "v1");
    origin.push(&layout, "v1", &format!("{repo}:v1"));
    let name = format!("{}/{repo}:v1", origin.host());
    let nodes = tempfile::tempdir().unwrap();

    // Nothing listens at the mirror's address: one warning and no retry, then the origin serves
    // the image.
    let mut command = ferry_cmd();
    command
        .args(["warmup", "--plain-http", &origin.host(), "--warmup", &name])
        .arg("--to")
        .arg(format!("oci:{}", nodes.path().join("node").display()))
        .args(["--registry-mirror", &format!("http://127.0.0.1:{}", free_port())]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["digest"], image.manifest_digest.as_str());
    assert_eq!(stderr.matches("registry mirror failed").count(), 1, "{stderr}");
    assert!(!stderr.contains("retrying"), "a mirror gets one attempt: {stderr}");

    // A mirror without the image (an empty registry) is skipped the same way.
    let empty = Registry::start_plain();
    let (code, document, stderr) = warmup_node(&origin, &format!("http://{}", empty.host()), &name, &nodes.path().join("node2"));
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(empty.count_requests("GET", "/manifests/") >= 1, "the empty mirror was asked first");
}

#[test]
fn limit_rate_paces_downloads() {
    let origin = Registry::start_plain();
    let repo = unique_repo("fleet-rate");
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(300_000)).layer(LayerSpec::random(300_000)).write(&mut layout, "v1");
    origin.push(&layout, "v1", &format!("{repo}:v1"));
    let out = tempfile::tempdir().unwrap();

    // 600 kB at 200 KiB/s cannot take less than about 2.9 s; only the lower bound is checked.
    let started = std::time::Instant::now();
    let mut command = ferry_cmd();
    command
        .args(["warmup", "--plain-http", &origin.host(), "--warmup", &format!("{}/{repo}:v1", origin.host()), "--limit-rate", "200K"])
        .arg("--to")
        .arg(format!("oci:{}", out.path().join("layout").display()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(2500), "{:?}", started.elapsed());

    let mut command = ferry_cmd();
    command.args(["warmup", "--limit-rate", "fast", "--warmup", "x.example/y"]);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid rate"));
}
