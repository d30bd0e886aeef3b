//! `ferry mirror` between two real distribution registries on loopback: a source with token
//! auth and a destination with htpasswd, both over TLS with the test's CA.

mod common;

use common::*;

const SOURCE_USER: (&str, &str) = ("alice", "Source-pa55-41c7");
const DESTINATION_USER: (&str, &str) = ("bob", "Mirror-pa55-9e02");

/// A source registry (token auth) and a destination registry (htpasswd) sharing one CA.
struct Pair {
    pki: Pki,
    source: Registry,
    destination: Registry,
}

impl Pair {
    fn start() -> Pair {
        let pki = Pki::new();
        let source = Registry::start_token(&pki, &[SOURCE_USER]);
        let destination = Registry::start_htpasswd(&pki, DESTINATION_USER.0, DESTINATION_USER.1);
        Pair { pki, source, destination }
    }

    /// Returns `ferry mirror` with the source settings, both credentials in the environment,
    /// and `--to <destination>/<namespace>`.
    fn mirror(&self, env: &FerryEnv, prefix: &str, images: &str, namespace: &str, to_env: &str) -> assert_cmd::Command {
        let mut command = env.command();
        command
            .arg("mirror")
            .args(["--registry-url", &self.source.host(), "--registry-env", prefix, "--warmup", images])
            .args(["--username", SOURCE_USER.0])
            .arg("--to")
            .arg(format!("{}/{namespace}", self.destination.host()))
            .args(["--to-env", to_env])
            .arg("--ca-file")
            .arg(self.pki.ca_file())
            .env("REGISTRY_PASSWORD", SOURCE_USER.1)
            .env("MIRROR_REGISTRY_USERNAME", DESTINATION_USER.0)
            .env("MIRROR_REGISTRY_PASSWORD", DESTINATION_USER.1);
        command
    }
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SOURCE_USER.1), "the source password leaked: {text}");
    assert!(!text.contains(DESTINATION_USER.1), "the destination password leaked: {text}");
}

#[test]
fn mirror_round_trip_keeps_digests() {
    let pair = Pair::start();
    let prefix = unique_repo("mirror").replace('/', "-") + "-";
    let base = LayerSpec::random(40_000).gzip();

    // chromium: a two-platform index; ssh: one image sharing chromium's amd64 base layer.
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().platform("linux", "amd64", None).layer(base.clone()).layer(LayerSpec::random(20_000).gzip()))
        .image(ImageBuilder::new().platform("linux", "arm64", None).layer(LayerSpec::random(30_000).gzip()))
        .write(&mut layout, "latest");
    let ssh = ImageBuilder::new().platform("linux", "amd64", None).layer(base).layer(LayerSpec::random(5_000)).write(&mut layout, "ssh");
    pair.source.push(&layout, "latest", &format!("{prefix}chromium:latest"));
    pair.source.push(&layout, "ssh", &format!("{prefix}ssh:latest"));

    let token_requests_before = pair.source.token_server().unwrap().requests().len();
    let env = FerryEnv::new();
    let inventory = env.work_dir().join("nodes.yml");
    let mut command = pair.mirror(&env, &prefix, "chromium,ssh", "site", "local");
    command.arg("--write-inventory").arg(&inventory);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["changed"], 2, "{document}");
    assert_no_secret(&document.to_string());
    assert_no_secret(&stderr);

    // ferry requests pull access only from the source's token server.
    let scopes: Vec<String> = pair.source.token_server().unwrap().requests().into_iter().skip(token_requests_before).flat_map(|r| r.scopes).collect();
    assert!(!scopes.is_empty());
    assert!(scopes.iter().all(|scope| scope.ends_with(":pull")), "{scopes:?}");

    // Digests are preserved: the index and the plain manifest, as skopeo reads them back.
    let chromium_copy = "site/localchromium:latest";
    assert_eq!(pair.destination.manifest_digest(chromium_copy), index.digest);
    assert_eq!(pair.source.manifest_digest(&format!("{prefix}ssh:latest")), pair.destination.manifest_digest("site/localssh:latest"));
    assert_eq!(document["images"][0]["digest"], index.digest.as_str());
    assert_eq!(document["images"][0]["destination"], format!("{}/{chromium_copy}", pair.destination.host()));
    let ssh_outcome = &document["images"][1];
    assert_eq!(ssh_outcome["digest"].as_str().unwrap(), pair.destination.manifest_digest("site/localssh:latest"));
    let _ = ssh;

    // The shared base layer went into the second repository by a mount, not a second upload.
    assert_eq!(ssh_outcome["blobs_mounted"], 1, "{document}");
    let mounts = pair.destination.requests().into_iter().filter(|r| r.method == "POST" && r.path.contains("mount=") && r.status == 201).count();
    assert_eq!(mounts, 1);

    // The node variables point at the copies; the file carries no password.
    assert_eq!(document["inventory"]["REGISTRY_URL"], format!("{}/site", pair.destination.host()));
    assert_eq!(document["inventory"]["REGISTRY_ENV"], "local");
    assert_eq!(document["inventory"]["PROVISION_IMAGE_WARMUP"], serde_json::json!(["chromium", "ssh"]));
    let written = std::fs::read_to_string(&inventory).unwrap();
    assert!(written.contains(&format!("REGISTRY_URL: \"{}/site\"", pair.destination.host())), "{written}");
    assert_no_secret(&written);

    // A re-run with nothing changed only compares manifests: no blob request on either side.
    let before = pair.destination.requests().len();
    let source_before = pair.source.requests().len();
    let (code, document, stderr) = run_json(&mut pair.mirror(&env, &prefix, "chromium,ssh", "site", "local"));
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["unchanged"], 2, "{document}");
    let new_requests: Vec<LoggedRequest> = pair.destination.requests().into_iter().skip(before).collect();
    assert!(new_requests.iter().all(|r| !r.path.contains("/blobs/")), "{new_requests:?}");
    let manifest_heads = new_requests.iter().filter(|r| r.method == "HEAD" && r.path.contains("/manifests/")).count();
    assert_eq!(manifest_heads, 2, "{new_requests:?}");
    let source_requests: Vec<LoggedRequest> = pair.source.requests().into_iter().skip(source_before).collect();
    assert!(source_requests.iter().all(|r| !r.path.contains("/blobs/")), "{source_requests:?}");

    // The nodes warm up from the private registry with the written inventory.
    let guard_name = format!("{}/site/localchromium", pair.destination.host());
    let mut guard = RepoGuard::new(&guard_name);
    guard.add(format!("{}/site/localssh", pair.destination.host()));
    let mut warmup = env.command();
    warmup
        .arg("warmup")
        .arg("-i")
        .arg(&inventory)
        .args(["--username", DESTINATION_USER.0])
        .arg("--ca-file")
        .arg(pair.pki.ca_file())
        .env("REGISTRY_PASSWORD", DESTINATION_USER.1);
    let (code, document, stderr) = run_json(&mut warmup);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&format!("{guard_name}:latest")).unwrap()["Id"], index.image("amd64").image_id());
}

#[test]
fn mirror_missing_platform_fails_one_image() {
    let pair = Pair::start();
    let prefix = unique_repo("mirror-platform").replace('/', "-") + "-";
    let mut layout = OciLayout::new();
    let both = IndexBuilder::new()
        .image(ImageBuilder::new().platform("linux", "amd64", None).layer(LayerSpec::random(10_000).gzip()))
        .image(ImageBuilder::new().platform("linux", "arm64", None).layer(LayerSpec::random(10_000).gzip()))
        .write(&mut layout, "both");
    IndexBuilder::new().image(ImageBuilder::new().platform("linux", "amd64", None).layer(LayerSpec::random(10_000).gzip())).write(&mut layout, "amd64");
    pair.source.push(&layout, "both", &format!("{prefix}chromium:latest"));
    pair.source.push(&layout, "amd64", &format!("{prefix}ssh:latest"));

    let env = FerryEnv::new();
    let mut command = pair.mirror(&env, &prefix, "chromium,ssh", "arm", "");
    command.args(["--platform", "linux/arm64"]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 1, "{document}\n{stderr}");
    let images = document["images"].as_array().unwrap();
    assert_eq!(images[0]["status"], "changed", "{document}");
    assert_eq!(images[1]["status"], "failed", "{document}");
    assert!(images[1]["error"].as_str().unwrap().contains("linux/arm64"), "{document}");

    // One platform only: the tag points to the arm64 manifest, and the output reports the index.
    let arm64 = both.image("arm64");
    assert_eq!(images[0]["digest"].as_str().unwrap(), pair.destination.manifest_digest("arm/chromium:latest"));
    assert_eq!(images[0]["source_index_digest"], both.digest.as_str());
    assert_eq!(pair.destination.manifest_digest("arm/chromium:latest"), arm64.manifest_digest);
}

#[test]
fn mirror_rejects_bad_destination() {
    let env = FerryEnv::new();
    let mut command = env.command();
    command.args(["mirror", "--registry-url", "127.0.0.1:9", "--warmup", "chromium", "--to", "ftp://127.0.0.1:5000"]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 2, "{document}\n{stderr}");
    assert!(document["error"].as_str().unwrap().contains("--to"), "{document}");

    // The same registry and prefix would copy each image onto itself.
    let mut command = env.command();
    command.args(["mirror", "--registry-url", "127.0.0.1:9", "--warmup", "chromium", "--to", "127.0.0.1:9"]);
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 2);
    assert!(document["error"].as_str().unwrap().contains("onto itself"), "{document}");

    // A user without a password for the destination is an error before any request.
    let mut command = env.command();
    command.args(["mirror", "--registry-url", "127.0.0.1:9", "--warmup", "chromium", "--to", "127.0.0.1:10"]).env("MIRROR_REGISTRY_USERNAME", "bob");
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 2);
    assert!(document["error"].as_str().unwrap().contains("MIRROR_REGISTRY_PASSWORD"), "{document}");
}

/// Pushes a one-layer image of `layer_size` random bytes to `source` as `<repository>:v1`.
fn push_one_layer(source: &Registry, repository: &str, layer_size: u64) -> BuiltImage {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(layer_size).gzip()).write(&mut layout, "v1");
    source.push(&layout, "v1", &format!("{repository}:v1"));
    image
}

/// Returns `ferry mirror` of `reference` into `destination` over plain HTTP.
fn plain_mirror(env: &FerryEnv, reference: &str, source_host: &str, destination: &Registry) -> assert_cmd::Command {
    let mut command = env.command();
    command
        .arg("mirror")
        .arg(reference)
        .args(["--plain-http", source_host, "--plain-http", &destination.host()])
        .args(["--to", &destination.host()]);
    command
}

#[test]
fn mirror_cut_source_resumes_through_cache() {
    let source = Registry::start_plain();
    let destination = Registry::start_plain();
    let proxy = FaultProxy::start(&source);
    let repository = unique_repo("mirror-cut");
    let image = push_one_layer(&source, &repository, 1_500_000);
    let layer = &image.layers[0];
    let cut = proxy.add(FaultRule::new(&format!("/blobs/{}", layer.digest), Fault::CutAfter(400_000)).method("GET"));

    let env = FerryEnv::new();
    let reference = format!("{}/{repository}:v1", proxy.host());
    let mut command = plain_mirror(&env, &reference, &proxy.host(), &destination);
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(proxy.hits(cut), 1, "the streamed copy was cut");
    assert!(stderr.contains("copying it through the cache"), "the fallback is logged: {stderr}");
    assert_eq!(destination.manifest_digest(&format!("{repository}:v1")), image.manifest_digest);
}

#[test]
fn mirror_corrupt_source_commits_nothing() {
    let source = Registry::start_plain();
    let destination = Registry::start_plain();
    let proxy = FaultProxy::start(&source);
    let repository = unique_repo("mirror-corrupt");
    let image = push_one_layer(&source, &repository, 300_000);
    let layer = &image.layers[0];
    proxy.add(FaultRule::new(&format!("/blobs/{}", layer.digest), Fault::FlipByte(100_000)).method("GET").always());

    let env = FerryEnv::new();
    let reference = format!("{}/{repository}:v1", proxy.host());
    let mut command = plain_mirror(&env, &reference, &proxy.host(), &destination);
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    let error = document["images"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&layer.digest), "the error names the layer: {document}");
    assert!(error.contains("digest mismatch"), "{document}");
    let blob_url = format!("{}/v2/{repository}/blobs/{}", destination.url(), layer.digest);
    let status = std::process::Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", &blob_url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404", "the destination has no blob for the corrupted layer");
    assert_eq!(destination.count_requests("PUT", "/manifests/"), 0, "no manifest is pushed");
}
