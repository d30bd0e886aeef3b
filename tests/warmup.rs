//! `ferry warmup` against real distribution registries and the machine's Docker engine: the
//! main paths. Faults and bad input are in `faults.rs`.

mod common;

use common::*;
use serde_json::Value;

fn write_inventory(env: &FerryEnv, text: &str) -> std::path::PathBuf {
    let path = env.work_dir().join("inventory.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn warmup_htpasswd_registry_loads_and_reruns_unchanged() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "deploy", "s3cret-pass");
    let repo = unique_repo("warmup-basic");
    let prefix_repo = format!("{}chromium", repo);
    let _guard = RepoGuard::new(format!("{}/{}", registry.host(), prefix_repo));

    // A shared base (gzip), a zstd layer, the base again at a later position, and a plain tar.
    let mut layout = OciLayout::new();
    let base = LayerSpec::seeded(7, 200_000).gzip();
    let image = ImageBuilder::new()
        .layer(base.clone())
        .layer(LayerSpec::random(150_000).zstd())
        .layer(base)
        .layer(LayerSpec::random(10_000).uncompressed())
        .write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{prefix_repo}:latest"));

    let env = FerryEnv::new();
    let inventory = write_inventory(
        &env,
        &format!(
            "all:\n  vars:\n    REGISTRY_URL: {}\n    REGISTRY_ENV: {repo}\n    REGISTRY_USERNAME: deploy\n",
            registry.host()
        ),
    );
    let ca = registry.ca_file().unwrap();
    let warmup = || {
        let mut command = env.command();
        command.args(["warmup", "-i"]).arg(&inventory).arg("--ca-file").arg(&ca).env("REGISTRY_PASSWORD", "s3cret-pass");
        command
    };

    let (code, document, stderr) = run_json(&mut warmup());
    assert_eq!(code, 0, "{document}\n{stderr}");
    let name = format!("{}/{prefix_repo}:latest", registry.host());
    assert_eq!(document["images"][0]["reference"], name.as_str());
    assert_eq!(document["images"][0]["status"], "changed");
    assert_eq!(document["images"][0]["image_id"], image.image_id());
    assert_eq!(document["images"][0]["digest"], image.manifest_digest.as_str());
    assert!(!document.to_string().contains("s3cret-pass"));
    assert!(!stderr.contains("s3cret-pass"));

    let inspected = docker_inspect(&name).expect("the image is in Docker");
    assert_eq!(inspected["Id"], image.image_id());
    assert!(inspected["RepoTags"].as_array().unwrap().iter().any(|t| t == name.as_str()), "{}", inspected["RepoTags"]);
    let layers: Vec<String> = inspected["RootFS"]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    assert_eq!(layers, image.diff_ids());

    // Nothing of this image stays in the cache once Docker has it.
    let leftovers: Vec<_> = walk_files(&env.cache_dir());
    assert!(leftovers.is_empty(), "cache keeps {leftovers:?}");

    let blob_gets = registry.count_requests("GET", "/blobs/");
    let (code, document, stderr) = run_json(&mut warmup());
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "unchanged");
    assert_eq!(document["images"][0]["bytes"], 0);
    assert_eq!(registry.count_requests("GET", "/blobs/"), blob_gets, "a re-run downloads no blob");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn warmup_token_registry_on_other_host() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("puller", "tok-pass-9")]);
    let repo = unique_repo("warmup-token");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(50_000)).write(&mut layout, "1.0");
    registry.push(&layout, "1.0", &format!("{repo}:1.0"));
    let tokens_before = registry.token_server().unwrap().tokens_issued();
    let requests_before = registry.token_server().unwrap().requests().len();

    let mut command = ferry_cmd();
    command
        .args(["warmup", "--username", "puller", "--password-stdin", "--warmup"])
        .arg(format!("{}/{repo}:1.0", registry.host()))
        .arg("--ca-file")
        .arg(registry.ca_file().unwrap())
        .write_stdin("tok-pass-9\n");
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "changed");
    assert_eq!(docker_inspect(&format!("{}/{repo}:1.0", registry.host())).unwrap()["Id"], image.image_id());

    let token_server = registry.token_server().unwrap();
    assert!(token_server.tokens_issued() > tokens_before);
    let requests = token_server.requests();
    let ours: Vec<_> = requests[requests_before..].iter().filter(|r| r.scopes.iter().any(|s| s.contains(&repo))).collect();
    assert!(!ours.is_empty(), "{requests:?}");
    for request in ours {
        assert_eq!(request.account.as_deref(), Some("puller"));
        assert!(request.scopes.iter().all(|s| s.ends_with(":pull")), "only pull is asked: {:?}", request.scopes);
    }
}

#[test]
fn warmup_multi_platform_picks_node_platform() {
    let registry = Registry::start_plain();
    let repo = unique_repo("warmup-index");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().platform("linux", "amd64", None).layer(LayerSpec::random(20_000)))
        .image(ImageBuilder::new().platform("linux", "arm64", None).layer(LayerSpec::random(20_000)))
        .attestation()
        .write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());

    let mut command = ferry_cmd();
    command.args(["warmup", "--plain-http"]).arg(registry.host()).arg("--warmup").arg(&name);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["platform"], "linux/amd64");
    assert_eq!(docker_inspect(&name).unwrap()["Id"], index.image("amd64").image_id());

    // Another platform, into an OCI layout.
    let out = tempfile::tempdir().unwrap();
    let target = format!("oci:{}", out.path().join("layout").display());
    let mut command = ferry_cmd();
    command.args(["warmup", "--plain-http"]).arg(registry.host()).arg("--warmup").arg(&name).args(["--platform", "linux/arm64", "--to", &target]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["digest"], index.image("arm64").manifest_digest.as_str());
    let index_json: Value = serde_json::from_slice(&std::fs::read(out.path().join("layout/index.json")).unwrap()).unwrap();
    assert_eq!(index_json["manifests"][0]["annotations"]["io.containerd.image.name"], name.as_str());
    assert_eq!(index_json["manifests"][0]["digest"], index.image("arm64").manifest_digest.as_str());
    for layer in &index.image("arm64").layers {
        let hex = layer.digest.trim_start_matches("sha256:");
        assert!(out.path().join("layout/blobs/sha256").join(hex).exists(), "layer {} missing", layer.digest);
    }

    // A platform the index lacks fails with the list of those it has.
    let mut command = ferry_cmd();
    command.args(["warmup", "--plain-http"]).arg(registry.host()).arg("--warmup").arg(&name).args(["--platform", "linux/s390x"]);
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 1);
    let error = document["images"][0]["error"].as_str().unwrap();
    assert!(error.contains("linux/s390x"), "{error}");
    assert!(error.contains("linux/amd64, linux/arm64"), "{error}");
    assert!(!error.contains("unknown"), "attestations are not platforms: {error}");
}

#[test]
fn warmup_docker_media_types_and_shared_base() {
    let registry = Registry::start_plain();
    let first = unique_repo("warmup-docker-a");
    let second = unique_repo("warmup-docker-b");
    let mut guard = RepoGuard::new(format!("{}/{first}", registry.host()));
    guard.add(format!("{}/{second}", registry.host()));
    let base = LayerSpec::seeded(42, 300_000).gzip();
    let mut layout = OciLayout::new();
    let a = ImageBuilder::new().docker_media_types().layer(base.clone()).layer(LayerSpec::random(30_000).gzip()).write(&mut layout, "a");
    let b = ImageBuilder::new().docker_media_types().layer(base).layer(LayerSpec::random(30_000).gzip()).write(&mut layout, "b");
    registry.push(&layout, "a", &format!("{first}:v1"));
    registry.push(&layout, "b", &format!("{second}:v1"));

    let env = FerryEnv::new();
    let mut command = env.command();
    command
        .args(["warmup", "--plain-http"])
        .arg(registry.host())
        .arg("--warmup")
        .arg(format!("{}/{first}:v1,{}/{second}:v1", registry.host(), registry.host()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["changed"], 2);
    assert_eq!(docker_inspect(&format!("{}/{first}:v1", registry.host())).unwrap()["Id"], a.image_id());
    assert_eq!(docker_inspect(&format!("{}/{second}:v1", registry.host())).unwrap()["Id"], b.image_id());

    // The shared base was downloaded once, for the first image only.
    let base_digest = &a.layers[0].digest;
    let base_gets = registry.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with(base_digest.as_str())).count();
    assert_eq!(base_gets, 1);
}

#[test]
fn warmup_dry_run_changes_nothing() {
    let registry = Registry::start_plain();
    let repo = unique_repo("warmup-dry");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(40_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());

    let mut command = ferry_cmd();
    command.args(["warmup", "--dry-run", "--plain-http"]).arg(registry.host()).arg("--warmup").arg(&name);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["dry_run"], true);
    assert_eq!(document["images"][0]["action"], "load");
    assert!(document["bytes_to_fetch"].as_u64().unwrap() >= 40_000);
    assert!(docker_inspect(&name).is_none(), "a dry run loads nothing");
    assert_eq!(registry.count_requests("GET", "/blobs/sha256") , 1, "only the config is read");
}

#[test]
fn warmup_registry_env_moves_and_warns() {
    let registry = Registry::start_plain();
    let repo = unique_repo("warmup-mismatch");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(1_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));

    // REGISTRY_URL names another registry than the warmup entry: ferry warns and goes on.
    let mut command = ferry_cmd();
    command
        .args(["warmup", "--plain-http"])
        .arg(registry.host())
        .env("REGISTRY_URL", "127.0.0.1:9")
        .env("PROVISION_IMAGE_WARMUP", format!("[\"{}/{repo}:latest\"]", registry.host()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(stderr.contains("REGISTRY_URL is 127.0.0.1:9"), "{stderr}");
}

#[test]
fn warmup_trusts_certs_d_for_its_host_only() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "deploy", "pw-certs-d");
    let repo = unique_repo("warmup-certsd");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(5_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());
    let certs = tempfile::tempdir().unwrap();

    // Without the CA, TLS verification fails and the error explains how to trust it.
    let mut command = ferry_cmd();
    command.args(["warmup", "--username", "deploy", "--warmup", &name, "--certs-dir"]).arg(certs.path()).env("REGISTRY_PASSWORD", "pw-certs-d");
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 1);
    let error = document["images"][0]["error"].as_str().unwrap();
    assert!(error.contains("TLS verification failed"), "{error}");
    assert!(error.contains(&registry.host()), "{error}");

    // A CA for another host:port does not help.
    pki.write_docker_certs_dir(certs.path(), "127.0.0.1:1");
    let mut command = ferry_cmd();
    command.args(["warmup", "--username", "deploy", "--warmup", &name, "--certs-dir"]).arg(certs.path()).env("REGISTRY_PASSWORD", "pw-certs-d");
    let (code, _, _) = run_json(&mut command);
    assert_eq!(code, 1);

    pki.write_docker_certs_dir(certs.path(), &registry.host());
    let mut command = ferry_cmd();
    command.args(["warmup", "--username", "deploy", "--warmup", &name, "--certs-dir"]).arg(certs.path()).env("REGISTRY_PASSWORD", "pw-certs-d");
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&name).unwrap()["Id"], image.image_id());
}

#[test]
fn warmup_uses_plain_http_only_when_asked() {
    let registry = Registry::start_plain();
    let repo = unique_repo("warmup-plain");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(1_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));

    let mut command = ferry_cmd();
    command.args(["warmup", "--attempts", "1", "--warmup"]).arg(format!("{}/{repo}:latest", registry.host()));
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 1);
    let error = document["images"][0]["error"].as_str().unwrap();
    assert!(error.contains("--plain-http"), "the error names the way out: {error}");
}

#[test]
fn warmup_reads_docker_config_credentials() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "ci-bot", "from-config-json");
    let repo = unique_repo("warmup-dockercfg");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(2_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));

    let env = FerryEnv::new();
    env.write_docker_auth(&registry.host(), "ci-bot", "from-config-json");
    let mut command = env.command();
    command
        .args(["warmup", "--warmup"])
        .arg(format!("{}/{repo}:latest", registry.host()))
        .arg("--ca-file")
        .arg(registry.ca_file().unwrap());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "changed");
}

#[test]
fn warmup_digest_pin_loads_by_image_id() {
    let registry = Registry::start_plain();
    let repo = unique_repo("warmup-pin");
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(3_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let pinned = format!("{}/{repo}@{}", registry.host(), image.manifest_digest);

    let run = || {
        let mut command = ferry_cmd();
        command.args(["warmup", "--plain-http"]).arg(registry.host()).args(["--warmup", &pinned]);
        run_json(&mut command)
    };
    let (code, document, stderr) = run();
    let inspected = docker_inspect(image.image_id());
    let (second_code, second, _) = run();
    let _ = std::process::Command::new("docker").args(["rmi", image.image_id()]).output();

    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "changed");
    assert!(stderr.contains("pinned by digest only"), "{stderr}");
    assert!(inspected.is_some(), "the image is in Docker under its ID");
    assert_eq!(second_code, 0);
    assert_eq!(second["images"][0]["status"], "unchanged");
}
