//! `ferry push`: archives made by ferry save and by docker save, pushed into a real registry
//! with htpasswd over TLS, then pulled into Docker by `ferry warmup`.

mod common;

use std::path::Path;

use common::*;

const USER: (&str, &str) = ("carol", "Push-pa55-7d1b");

/// Runs `ferry push ARCHIVE --to <registry>/<namespace>` with the destination credential in the
/// environment and `--json`.
fn push(registry: &Registry, archive: &Path, namespace: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut command = ferry_cmd();
    command.arg("push").arg(archive).arg("--to").arg(format!("{}/{namespace}", registry.host())).args(extra);
    if let Some(pki) = registry.pki() {
        command.arg("--ca-file").arg(pki.ca_file());
    }
    command.env("MIRROR_REGISTRY_USERNAME", USER.0).env("MIRROR_REGISTRY_PASSWORD", USER.1);
    run_json(&mut command)
}

/// Warms up `reference` from `registry` into Docker and returns the image ID Docker reports.
fn warmup_from(registry: &Registry, reference: &str) -> String {
    let mut command = ferry_cmd();
    command.arg("warmup").args(["--warmup", reference, "--username", USER.0]).env("REGISTRY_PASSWORD", USER.1);
    if let Some(pki) = registry.pki() {
        command.arg("--ca-file").arg(pki.ca_file());
    }
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    docker_inspect(reference).expect("loaded")["Id"].as_str().unwrap().to_owned()
}

#[test]
fn push_ferry_archive_keeps_digests() {
    let source = Registry::start_plain();
    let pki = Pki::new();
    let destination = Registry::start_htpasswd(&pki, USER.0, USER.1);
    let repo = unique_repo("push-ferry");
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().platform("linux", "amd64", None).layer(LayerSpec::random(30_000).gzip()).layer(LayerSpec::random(10_000).zstd()))
        .image(ImageBuilder::new().platform("linux", "arm64", None).layer(LayerSpec::random(30_000).gzip()))
        .write(&mut layout, "v1");
    source.push(&layout, "v1", &format!("{repo}:v1"));
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    let mut save = ferry_cmd();
    save.args(["save", "--all-platforms", "--plain-http"]).arg(source.host()).arg("-o").arg(&archive).arg(format!("{}/{repo}:v1", source.host()));
    let output = save.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // Names lose the source registry and gain the destination namespace; digests stay.
    let source_flags = ["--registry-url", &source.host()];
    let (code, document, stderr) = push(&destination, &archive, "gap", &source_flags);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(!stderr.contains(USER.1), "the password leaked to stderr");
    assert!(!document.to_string().contains(USER.1), "the password leaked to the JSON");
    let copy = format!("gap/{repo}:v1");
    assert_eq!(document["images"][0]["destination"], format!("{}/{copy}", destination.host()));
    assert_eq!(document["images"][0]["digest"], index.digest.as_str());
    assert_eq!(destination.manifest_digest(&copy), index.digest);

    // A second push finds the tag in place and sends nothing.
    let before = destination.requests().len();
    let (code, document, _) = push(&destination, &archive, "gap", &source_flags);
    assert_eq!(code, 0);
    assert_eq!(document["unchanged"], 1, "{document}");
    assert!(destination.requests().iter().skip(before).all(|r| !r.path.contains("/blobs/")));

    let name = format!("{}/{copy}", destination.host());
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    assert_eq!(warmup_from(&destination, &name), index.image("amd64").image_id());

    // A wrong password for the private registry names its own variables.
    let mut command = ferry_cmd();
    command.arg("push").arg(&archive).arg("--to").arg(format!("{}/gap", destination.host())).args(source_flags).arg("--ca-file").arg(pki.ca_file());
    command.env("MIRROR_REGISTRY_USERNAME", USER.0).env("MIRROR_REGISTRY_PASSWORD", "wrong-Pa55");
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 1, "{document}");
    assert!(document["images"][0]["error"].as_str().unwrap().contains("MIRROR_REGISTRY_PASSWORD"), "{document}");
}

#[test]
fn push_docker_save_archive() {
    let pki = Pki::new();
    let destination = Registry::start_htpasswd(&pki, USER.0, USER.1);
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(20_000)).layer(LayerSpec::random(20_000)).write(&mut layout, "v1");
    let repo = format!("ferry.test/{}", unique_repo("push-docker"));
    let mut guard = RepoGuard::new(&repo);
    let out = tempfile::tempdir().unwrap();
    let saved = out.path().join("docker-save.tar");
    docker_save_archive(&layout, "v1", &format!("{repo}:v1"), &saved);

    // The archive has no manifest: ferry writes one, notes it, and the image ID is unchanged.
    let (code, document, stderr) = push(&destination, &saved, "gap", &["--registry-url", "ferry.test"]);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(document["images"][0]["note"].as_str().unwrap().contains("image ID is the same"), "{document}");
    let copy = document["images"][0]["destination"].as_str().unwrap().to_owned();
    assert!(copy.starts_with(&format!("{}/gap/", destination.host())), "{copy}");
    guard.add(copy.rsplit_once(':').unwrap().0);
    assert_eq!(warmup_from(&destination, &copy), image.image_id());
}

#[test]
fn push_falls_back_to_chunks() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let out = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(50_000).gzip()).write(&mut layout, "v1");
    let archive = out.path().join("oci.tar");
    let repo = unique_repo("push-chunks");
    skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("oci-archive:{}:ferry.test/{repo}:v1", archive.display())]);

    // A proxy in front of the registry rejects the first monolithic upload as too large.
    proxy.add(FaultRule::new("digest=", Fault::PayloadTooLarge).method("PUT"));
    let mut command = ferry_cmd();
    command.arg("push").arg(&archive).args(["--registry-url", "ferry.test", "--to"]).arg(proxy.host()).arg("--plain-http").arg(proxy.host());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    let patches = proxy.requests().iter().filter(|r| r.method == "PATCH").count();
    assert!(patches >= 1, "{:?}", proxy.requests());
    let copy = format!("{repo}:v1");
    assert_eq!(registry.manifest_digest(&copy), image.manifest_digest);
}

#[test]
fn push_damaged_archive_sets_no_tag() {
    let registry = Registry::start_plain();
    let out = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(50_000).gzip()).write(&mut layout, "v1");
    let archive = out.path().join("oci.tar");
    let repo = unique_repo("push-damaged");
    skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("oci-archive:{}:ferry.test/{repo}:v1", archive.display())]);
    let layer = image.layers[0].digest.trim_start_matches("sha256:").to_owned();
    let mut data = std::fs::read(&archive).unwrap();
    let member = format!("blobs/sha256/{layer}");
    let header = data.windows(member.len()).position(|w| w == member.as_bytes()).unwrap();
    data[header + 512 + 1000] ^= 0x40;
    std::fs::write(&archive, &data).unwrap();

    let mut command = ferry_cmd();
    command.arg("push").arg(&archive).args(["--registry-url", "ferry.test", "--to"]).arg(registry.host()).arg("--plain-http").arg(registry.host());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 1, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "failed");
    assert!(document["images"][0]["error"].as_str().unwrap().contains(&layer[..12]), "the error names the blob: {document}");
    let manifests = registry.requests().into_iter().filter(|r| r.method == "PUT" && r.path.contains("/manifests/")).count();
    assert_eq!(manifests, 0, "no manifest is pushed");
}
