//! `ferry check` against real distribution registries, a token server, tinyproxy and the
//! machine's Docker engine, all on loopback.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

const USER: &str = "puller";
const PASSWORD: &str = "check-pass-7Qx";

/// The checks in the order ferry prints them.
const NAMES: [&str; 7] = ["settings", "registry", "credentials", "images", "engine", "disk", "present"];

/// Returns the check called `name` from a `--json` document.
fn check<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {document}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {document}"))
}

fn status<'a>(document: &'a Value, name: &str) -> &'a str {
    check(document, name)["status"].as_str().unwrap_or_default()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// A token-auth registry with `<prefix>chromium:latest` pushed, and an inventory that names it
/// with the short name `chromium`.
struct TokenSetup {
    registry: Registry,
    repo: String,
    image: BuiltImage,
    env: FerryEnv,
    inventory: PathBuf,
    _guard: RepoGuard,
}

impl TokenSetup {
    fn new(label: &str) -> TokenSetup {
        let pki = Pki::new();
        let registry = Registry::start_token(&pki, &[(USER, PASSWORD)]);
        let repo = unique_repo(label);
        let guard = RepoGuard::new(format!("{}/{repo}chromium", registry.host()));
        let mut layout = OciLayout::new();
        let image = ImageBuilder::new().layer(LayerSpec::random(60_000)).write(&mut layout, "latest");
        registry.push(&layout, "latest", &format!("{repo}chromium:latest"));
        let env = FerryEnv::new();
        let inventory = env.work_dir().join("inventory.yml");
        let vars = format!("all:\n  vars:\n    REGISTRY_URL: {}\n    REGISTRY_ENV: {repo}\n    REGISTRY_USERNAME: {USER}\n", registry.host());
        std::fs::write(&inventory, vars).unwrap();
        TokenSetup { registry, repo, image, env, inventory, _guard: guard }
    }

    /// Returns `ferry <subcommand> -i inventory.yml --ca-file CA` with the right password.
    fn command(&self, subcommand: &str) -> assert_cmd::Command {
        let mut command = self.env.command();
        command
            .args([subcommand, "-i"])
            .arg(&self.inventory)
            .arg("--ca-file")
            .arg(self.registry.ca_file().unwrap())
            .env("REGISTRY_PASSWORD", PASSWORD);
        command
    }

    fn name(&self) -> String {
        format!("{}/{}chromium:latest", self.registry.host(), self.repo)
    }

    fn token_host(&self) -> String {
        format!("localhost:{}", self.registry.token_server().unwrap().port())
    }
}

/// A plain-HTTP registry with one image pushed; returns the registry, the image name and its guard.
fn plain_setup(label: &str, layer: LayerSpec) -> (Registry, String, RepoGuard) {
    let registry = Registry::start_plain();
    let repo = unique_repo(label);
    let guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(layer).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());
    (registry, name, guard)
}

/// Panics unless the machine's Docker daemon runs without proxy settings, which the engine
/// check compares with ferry's (empty) environment.
fn assert_daemon_has_no_proxy() {
    let output = std::process::Command::new("docker").args(["info", "--format", "{{.HTTPProxy}}|{{.HTTPSProxy}}|{{.NoProxy}}"]).output().unwrap();
    let proxies = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(proxies, "||", "these tests expect a Docker daemon without proxy settings");
}

#[test]
fn check_token_registry_before_and_after_warmup() {
    assert_daemon_has_no_proxy();
    let setup = TokenSetup::new("check-healthy");

    let (code, before, stderr) = run_json(&mut setup.command("check"));
    assert_eq!(code, 1, "{before}\n{stderr}");
    for name in ["settings", "registry", "credentials", "images", "engine", "disk"] {
        assert_eq!(status(&before, name), "pass", "{name}: {}", check(&before, name));
    }
    let present = check(&before, "present");
    assert_eq!(present["status"], "fail");
    assert_eq!(present["images"][0]["state"], "missing");
    assert!(text(&present["fix"]).contains("ferry warmup"), "{present}");

    let warmup = setup.command("warmup").output().unwrap();
    assert!(warmup.status.success(), "{}", String::from_utf8_lossy(&warmup.stderr));

    let (code, after, stderr) = run_json(&mut setup.command("check"));
    assert_eq!(code, 0, "{after}\n{stderr}");
    assert_eq!(after["ok"], true);
    let names: Vec<&str> = after["checks"].as_array().unwrap().iter().map(|c| text(&c["name"])).collect();
    assert_eq!(names, NAMES);
    for name in NAMES {
        assert_eq!(status(&after, name), "pass", "{name}: {}", check(&after, name));
        assert!(check(&after, name).get("fix").is_none(), "a passed check has no fix: {}", check(&after, name));
    }

    assert_eq!(check(&after, "settings")["images"][0], setup.name().as_str());
    let hosts: Vec<&str> = check(&after, "registry")["hosts"].as_array().unwrap().iter().map(text).collect();
    assert!(hosts.contains(&setup.registry.host().as_str()), "{hosts:?}");
    assert!(hosts.contains(&setup.token_host().as_str()), "{hosts:?}");
    assert_eq!(check(&after, "registry")["registries"][0]["authentication"], "bearer");
    assert_eq!(check(&after, "registry")["registries"][0]["proxy"], Value::Null);
    assert_eq!(check(&after, "credentials")["registries"][0]["checked_by"], setup.token_host().as_str());
    assert!(text(&check(&after, "credentials")["detail"]).contains(&setup.token_host()));
    assert_eq!(check(&after, "images")["images"][0]["image_id"], setup.image.image_id());
    assert_eq!(check(&after, "images")["images"][0]["digest"], setup.image.manifest_digest.as_str());
    assert_eq!(check(&after, "present")["images"][0]["state"], "present");

    let output = setup.command("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ok    present"), "{stdout}");
    assert!(stdout.contains(&setup.token_host()), "the text output lists the hosts: {stdout}");
    assert!(stdout.contains("7 passed, 0 failed, 0 skipped"), "{stdout}");
    for output in [before.to_string(), after.to_string(), stderr, stdout.into_owned()] {
        assert!(!output.contains(PASSWORD), "the password leaked: {output}");
    }
}

#[test]
fn check_bad_password_fails_credentials() {
    let setup = TokenSetup::new("check-badpass");
    let mut command = setup.command("check");
    command.env("REGISTRY_PASSWORD", "wrong-pass-3Zk");
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    assert_eq!(status(&document, "registry"), "pass");
    let credentials = check(&document, "credentials");
    assert_eq!(credentials["status"], "fail");
    assert!(text(&credentials["detail"]).contains(USER), "{credentials}");
    assert!(text(&credentials["fix"]).contains("REGISTRY_PASSWORD"), "{credentials}");
    assert_eq!(status(&document, "images"), "skip");
    assert!(text(&check(&document, "images")["detail"]).contains("credentials"));
    assert_eq!(status(&document, "disk"), "skip");
    assert_eq!(status(&document, "present"), "skip");
    assert!(!document.to_string().contains("wrong-pass-3Zk"));
    assert!(!stderr.contains("wrong-pass-3Zk"));

    // The same run as text: run_json added --json to `command`, so this is a new one.
    let output = setup.command("check").env("REGISTRY_PASSWORD", "wrong-pass-3Zk").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("FAIL  credentials"), "{stdout}");
    assert!(stdout.contains("      fix: "), "{stdout}");
    assert!(stdout.contains("skip  images"), "{stdout}");
    assert!(!stdout.contains("wrong-pass-3Zk"));
}

#[test]
fn check_wrong_prefix_fails_images() {
    let setup = TokenSetup::new("check-prefix");
    let mut command = setup.command("check");
    command.env("REGISTRY_ENV", "nosuchprefix-");
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    assert_eq!(status(&document, "credentials"), "pass");
    let images = check(&document, "images");
    assert_eq!(images["status"], "fail");
    assert_eq!(images["images"][0]["found"], false);
    let fix = text(&images["fix"]);
    assert!(fix.contains("REGISTRY_ENV"), "{fix}");
    assert!(fix.contains("nosuchprefix-"), "{fix}");
    assert!(fix.contains("the environment"), "the fix names where the prefix came from: {fix}");
    assert_eq!(status(&document, "disk"), "skip");
    assert_eq!(status(&document, "present"), "skip");
}

#[test]
fn check_registry_down_skips_registry_checks() {
    let host = format!("127.0.0.1:{}", free_port());
    let mut command = ferry_cmd();
    command.args(["check", "--plain-http", &host, "--attempts", "1", "--warmup"]).arg(format!("{host}/nothing:latest"));
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    assert_eq!(status(&document, "settings"), "pass");
    let registry = check(&document, "registry");
    assert_eq!(registry["status"], "fail");
    assert!(text(&registry["detail"]).contains(&host), "{registry}");
    assert!(text(&registry["fix"]).contains(&host), "{registry}");
    assert_eq!(registry["hosts"], serde_json::json!([host]));
    for name in ["credentials", "images"] {
        assert_eq!(status(&document, name), "skip", "{name}");
        assert!(text(&check(&document, name)["detail"]).contains("registry check failed"));
    }
    assert_ne!(status(&document, "engine"), "skip", "the engine does not depend on the registry");
    assert_eq!(status(&document, "disk"), "skip");
    assert_eq!(status(&document, "present"), "skip");
}

#[test]
fn check_engine_down_skips_disk_and_present() {
    let (registry, name, _guard) = plain_setup("check-engine", LayerSpec::random(5_000));
    let missing = tempfile::tempdir().unwrap();
    let socket = missing.path().join("no-such-docker.sock");
    let mut command = ferry_cmd();
    command
        .args(["check", "--plain-http"])
        .arg(registry.host())
        .args(["--warmup", &name])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()));
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    for name in ["settings", "registry", "credentials", "images"] {
        assert_eq!(status(&document, name), "pass", "{name}: {}", check(&document, name));
    }
    let engine = check(&document, "engine");
    assert_eq!(engine["status"], "fail");
    assert!(text(&engine["detail"]).contains(&socket.display().to_string()), "{engine}");
    assert!(text(&engine["fix"]).contains("DOCKER_HOST"), "{engine}");
    for name in ["disk", "present"] {
        assert_eq!(status(&document, name), "skip", "{name}");
        assert!(text(&check(&document, name)["detail"]).contains("Docker engine"), "{}", check(&document, name));
    }
}

#[test]
fn check_small_docker_root_fails_disk() {
    let (registry, name, _guard) = plain_setup("check-disk", LayerSpec::random(3_000_000));
    let tmpfs = Tmpfs::mount("1m");
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache-not-created");
    let mut command = ferry_cmd();
    command
        .args(["check", "--plain-http"])
        .arg(registry.host())
        .args(["--warmup", &name, "--docker-root"])
        .arg(tmpfs.path())
        .arg("--cache-dir")
        .arg(&cache);
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    assert_eq!(status(&document, "images"), "pass");
    let disk = check(&document, "disk");
    assert_eq!(disk["status"], "fail", "{disk}");
    let detail = text(&disk["detail"]);
    assert!(detail.contains(&tmpfs.path().display().to_string()), "{detail}");
    assert!(detail.contains("MiB"), "the detail gives the figures: {detail}");
    assert!(detail.contains("free"), "the detail gives the free space: {detail}");
    assert!(text(&disk["fix"]).contains("--docker-root"), "{disk}");
    let space = disk["space"].as_array().unwrap();
    let root = space.iter().find(|s| s["path"] == tmpfs.path().display().to_string()).expect("the docker root is measured");
    assert!(root["needed_bytes"].as_u64().unwrap() > root["free_bytes"].as_u64().unwrap(), "{root}");
    assert!(docker_inspect(&name).is_none(), "check loads nothing");
    assert!(!cache.exists(), "check measures the cache folder but does not create it");

    // --skip-disk-check turns the check off instead.
    let mut command = ferry_cmd();
    command
        .args(["check", "--plain-http"])
        .arg(registry.host())
        .args(["--warmup", &name, "--skip-disk-check", "--docker-root"])
        .arg(tmpfs.path());
    let (_, document, _) = run_json(&mut command);
    assert_eq!(status(&document, "disk"), "skip");
}

#[test]
fn check_reports_outdated_image() {
    let (registry, name, _guard) = plain_setup("check-outdated", LayerSpec::random(4_000));
    let warmup = ferry_cmd().args(["warmup", "--plain-http"]).arg(registry.host()).args(["--warmup", &name]).output().unwrap();
    assert!(warmup.status.success(), "{}", String::from_utf8_lossy(&warmup.stderr));
    let old_id = docker_inspect(&name).unwrap()["Id"].as_str().unwrap().to_owned();

    // The registry's tag moves to a new image; the engine still has the old one.
    let mut layout = OciLayout::new();
    let newer = ImageBuilder::new().layer(LayerSpec::random(4_000)).write(&mut layout, "latest");
    let repository = name.split_once('/').unwrap().1;
    registry.push(&layout, "latest", repository);

    let mut command = ferry_cmd();
    command.args(["check", "--plain-http"]).arg(registry.host()).args(["--warmup", &name]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 1, "{document}\n{stderr}");
    let present = check(&document, "present");
    assert_eq!(present["status"], "fail");
    assert_eq!(present["images"][0]["state"], "outdated");
    assert_eq!(present["images"][0]["local_image_id"], old_id.as_str());
    assert_eq!(present["images"][0]["image_id"], newer.image_id());
    assert!(text(&present["detail"]).contains("outdated"), "{present}");
}

#[test]
fn check_proxy_route_and_daemon_mismatch() {
    assert_daemon_has_no_proxy();
    // Loopback addresses bypass the proxy, so the registry is addressed by a name that squid's
    // hosts file maps to 127.0.0.1.
    let registry = Registry::start_plain();
    let repo = unique_repo("check-proxy");
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(2_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let host = registry.host_named("registry.ferry.test");
    let name = format!("{host}/{repo}:latest");
    let _guard = RepoGuard::new(format!("{host}/{repo}"));
    let squid = Squid::start(SquidOptions { allowed_ports: vec![registry.port()], user: None });

    let mut command = ferry_cmd();
    command.args(["check", "--plain-http", &host, "--warmup", &name]).env("HTTP_PROXY", squid.url_with("ops", "proxy-secret-5"));
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    let registry_check = check(&document, "registry");
    assert_eq!(registry_check["status"], "pass", "{registry_check}");
    assert_eq!(registry_check["registries"][0]["proxy"], squid.url().as_str());
    assert!(text(&registry_check["detail"]).contains(&format!("through proxy {}", squid.url())), "{registry_check}");
    assert!(squid.count(&format!("GET http://{host}/v2/")) >= 1, "the proxy carried the requests: {:?}", squid.access_log());
    assert_eq!(status(&document, "images"), "pass");

    let engine = check(&document, "engine");
    assert_eq!(engine["status"], "fail", "{engine}");
    assert!(text(&engine["detail"]).contains("HTTP_PROXY"), "{engine}");
    let fix = text(&engine["fix"]);
    assert!(fix.contains("set the Docker daemon's proxy (systemd drop-in or /etc/default/docker)"), "{fix}");
    assert!(fix.contains("ferry proxy configure --restart"), "{fix}");
    assert!(fix.contains("with the user and password of ferry's proxy URL"), "{fix}");
    assert_eq!(engine["engine"]["expected_daemon_proxy"]["http_proxy"], squid.url().as_str());
    assert_eq!(status(&document, "disk"), "pass", "a proxy mismatch does not stop the engine-side checks");
    assert!(!document.to_string().contains("proxy-secret-5"), "the proxy password leaked: {document}");
    assert!(!stderr.contains("proxy-secret-5"));
}

#[test]
fn check_dead_mirror_fails_registry_only() {
    let (registry, name, _guard) = plain_setup("check-mirror", LayerSpec::random(2_000));
    let mirror = format!("127.0.0.1:{}", free_port());
    let mut command = ferry_cmd();
    command
        .args(["check", "--plain-http"])
        .arg(registry.host())
        .args(["--warmup", &name, "--attempts", "1", "--registry-mirror"])
        .arg(format!("http://{mirror}"));
    let (code, document, stderr) = run_json(&mut command);

    assert_eq!(code, 1, "{document}\n{stderr}");
    let registry_check = check(&document, "registry");
    assert_eq!(registry_check["status"], "fail", "{registry_check}");
    assert!(text(&registry_check["detail"]).contains(&format!("mirror {mirror}")), "{registry_check}");
    assert!(text(&registry_check["fix"]).contains("REGISTRY_MIRRORS"), "{registry_check}");
    assert_eq!(registry_check["registries"][1]["mirror"], true);
    assert_eq!(status(&document, "credentials"), "pass", "pulls fall back to the image's registry");
    assert_eq!(status(&document, "images"), "pass");
}

#[test]
fn check_invalid_settings_fail_first_check() {
    let mut command = ferry_cmd();
    command.args(["check", "--registry-url", "not a host", "--warmup", "chromium"]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 1, "{document}\n{stderr}");
    assert_eq!(document["ok"], false);
    let settings = check(&document, "settings");
    assert_eq!(settings["status"], "fail");
    assert!(text(&settings["detail"]).contains("REGISTRY_URL"), "{settings}");
    assert!(settings["fix"].is_string());
    for name in &NAMES[1..] {
        assert_eq!(status(&document, name), "skip", "{name}");
    }

    let output = ferry_cmd().args(["check", "--no-such-flag"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "invalid flags exit with 2");
}
