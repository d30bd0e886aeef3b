//! `ferry proxy configure` writing the Docker daemon's proxy settings under a temporary `--root`,
//! for each method, and `ferry proxy hosts` against a real registry. No system file is touched.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;

/// A proxy URL with a password, percent-encoded as `%40` (`@`).
const SECRET_PROXY: &str = "http://deploy:s3cr%40t@proxy.lan:3128";
const SECRET: &str = "s3cr";
const COMMENT: &str = "# Proxy settings for the Docker daemon, written by ferry proxy configure.";

const UNIT: &str = "[Unit]\nDescription=Docker Application Container Engine\nAfter=network-online.target\n\n[Service]\nType=notify\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n";

/// A fake system root with a hostname, and the environment to run ferry in.
struct Root {
    env: FerryEnv,
    root: PathBuf,
}

impl Root {
    /// Creates a root with `/etc/hostname` (`node07`) and `/etc/hosts` naming `node07.site.lan`.
    fn new() -> Root {
        let env = FerryEnv::new();
        let root = env.work_dir().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "node07\n").unwrap();
        std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n10.0.0.7 node07.site.lan node07\n").unwrap();
        Root { env, root }
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn write(&self, path: &str, text: &str, mode: u32) {
        let path = self.path(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path)).unwrap()
    }

    fn mode(&self, path: &str) -> u32 {
        std::fs::metadata(self.path(path)).unwrap().permissions().mode() & 0o7777
    }

    /// Returns the names of the backups of `path`.
    fn backups(&self, path: &str) -> Vec<String> {
        let path = self.path(path);
        let prefix = format!("{}.ferry-backup-", path.file_name().unwrap().to_string_lossy());
        let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&prefix))
            .collect();
        names.sort();
        names
    }

    /// Returns every file under the root with its text and mode.
    fn snapshot(&self) -> BTreeMap<PathBuf, (String, u32)> {
        fn walk(dir: &Path, files: &mut BTreeMap<PathBuf, (String, u32)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, files);
                } else {
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                    files.insert(path.clone(), (std::fs::read_to_string(&path).unwrap(), mode));
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(&self.root, &mut files);
        files
    }

    /// Returns `ferry proxy configure --root ROOT` with the proxy in HTTPS_PROXY.
    fn configure(&self, https_proxy: &str, extra: &[&str]) -> assert_cmd::Command {
        let mut command = self.env.command();
        command.args(["proxy", "configure", "--root"]).arg(&self.root).args(extra).env("HTTPS_PROXY", https_proxy);
        command
    }
}

/// Runs a command and returns its exit code, standard output and standard error.
fn run(mut command: assert_cmd::Command) -> (i32, String, String) {
    let output = command.output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Runs a command with `--json` and returns its exit code, document and standard error.
fn run_document(mut command: assert_cmd::Command) -> (i32, serde_json::Value, String) {
    run_json(&mut command)
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the proxy password was printed:\n{text}");
}

const NO_PROXY_WRITTEN: &str = "10.0.0.0/8,localhost,127.0.0.1,::1,node07,node07.site.lan";

#[test]
fn env_file_method_writes_unit_and_variables() {
    let root = Root::new();
    root.write("/usr/lib/systemd/system/docker.service", UNIT, 0o644);
    root.write("/etc/default/docker", "# Docker Upstart and SysVinit configuration file\nDOCKER_OPTS=\"--dns 10.0.0.2\"\n", 0o644);

    let (code, stdout, stderr) = run(root.configure(SECRET_PROXY, &["--no-proxy", "10.0.0.0/8"]));
    assert_eq!(code, 0, "{stderr}");
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);

    let expected_env = format!(
        "# Docker Upstart and SysVinit configuration file\nDOCKER_OPTS=\"--dns 10.0.0.2\"\n\n{COMMENT}\nHTTPS_PROXY=\"{SECRET_PROXY}\"\nhttps_proxy=\"{SECRET_PROXY}\"\nNO_PROXY=\"{NO_PROXY_WRITTEN}\"\nno_proxy=\"{NO_PROXY_WRITTEN}\"\n"
    );
    assert_eq!(root.read("/etc/default/docker"), expected_env);
    let expected_unit = UNIT.replace("[Service]\n", "[Service]\nEnvironmentFile=/etc/default/docker\n");
    assert_eq!(root.read("/usr/lib/systemd/system/docker.service"), expected_unit);
    assert_eq!(root.mode("/etc/default/docker"), 0o600, "the file holding the proxy password");
    assert_eq!(root.mode("/usr/lib/systemd/system/docker.service"), 0o644);

    let env_backups = root.backups("/etc/default/docker");
    assert_eq!(env_backups.len(), 1, "{env_backups:?}");
    assert!(root.read(&format!("/etc/default/{}", env_backups[0])).starts_with("# Docker Upstart"));
    assert_eq!(root.backups("/usr/lib/systemd/system/docker.service").len(), 1);
}

#[test]
fn env_file_second_run_changes_nothing() {
    let root = Root::new();
    root.write("/lib/systemd/system/docker.service", UNIT, 0o644);
    let (code, first, stderr) = run_document(root.configure(SECRET_PROXY, &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["changed"], true);
    assert_eq!(first["files"][0]["action"], "created", "{first}");
    assert_eq!(first["files"][1]["action"], "changed", "{first}");
    assert!(first["files"][1]["backup"].is_string(), "{first}");
    let before = root.snapshot();

    let (code, second, stderr) = run_document(root.configure(SECRET_PROXY, &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["changed"], false, "{second}");
    assert!(second["files"].as_array().unwrap().iter().all(|file| file["action"] == "unchanged" && file["backup"].is_null()), "{second}");
    assert_eq!(root.snapshot(), before, "no file and no backup was written");

    let (code, stdout, _) = run(root.configure(SECRET_PROXY, &[]));
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing changed"), "{stdout}");
}

#[test]
fn env_file_keeps_mode_without_credentials() {
    let root = Root::new();
    root.write("/usr/lib/systemd/system/docker.service", UNIT, 0o644);
    root.write("/etc/default/docker", "DOCKER_OPTS=\n", 0o640);
    let (code, _, stderr) = run(root.configure("http://proxy.lan:3128", &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(root.mode("/etc/default/docker"), 0o640);
}

#[test]
fn env_file_replaces_earlier_proxy_lines() {
    let root = Root::new();
    root.write("/usr/lib/systemd/system/docker.service", UNIT, 0o644);
    root.write("/etc/default/docker", "export http_proxy=\"http://old.lan:8080/\"\nDOCKER_OPTS=\"\"\nHTTPS_PROXY=http://old.lan:8080\n", 0o644);
    let (code, _, stderr) = run(root.configure("http://proxy.lan:3128", &["--no-proxy", ""]));
    assert_eq!(code, 0, "{stderr}");
    let text = root.read("/etc/default/docker");
    assert!(!text.contains("old.lan"), "{text}");
    assert!(text.starts_with(&format!("{COMMENT}\nHTTPS_PROXY=\"http://proxy.lan:3128\"\n")), "{text}");
    assert!(text.ends_with("no_proxy=\"localhost,127.0.0.1,::1,node07,node07.site.lan\"\nDOCKER_OPTS=\"\"\n"), "{text}");
}

#[test]
fn missing_unit_fails_clearly() {
    let root = Root::new();
    let (code, _, stderr) = run(root.configure(SECRET_PROXY, &[]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the docker unit was not found"), "{stderr}");
    assert!(stderr.contains("usr/lib/systemd/system/docker.service"), "{stderr}");
    assert!(!root.path("/etc/default/docker").exists(), "nothing is written");
}

#[test]
fn drop_in_method_doubles_percent() {
    let root = Root::new();
    let (code, stdout, stderr) = run(root.configure(SECRET_PROXY, &["--method", "drop-in", "--no-proxy", "10.0.0.0/8"]));
    assert_eq!(code, 0, "{stderr}");
    assert_no_secret(&stdout);

    let path = "/etc/systemd/system/docker.service.d/http-proxy.conf";
    let doubled = SECRET_PROXY.replace('%', "%%");
    let expected = format!(
        "{COMMENT}\n[Service]\nEnvironment=\"HTTPS_PROXY={doubled}\"\nEnvironment=\"https_proxy={doubled}\"\nEnvironment=\"NO_PROXY={NO_PROXY_WRITTEN}\"\nEnvironment=\"no_proxy={NO_PROXY_WRITTEN}\"\n"
    );
    assert_eq!(root.read(path), expected);
    assert_eq!(root.mode(path), 0o600);

    let before = root.snapshot();
    let (code, document, _) = run_document(root.configure(SECRET_PROXY, &["--method", "drop-in", "--no-proxy", "10.0.0.0/8"]));
    assert_eq!(code, 0);
    assert_eq!(document["changed"], false, "{document}");
    assert_eq!(root.snapshot(), before);
}

#[test]
fn drop_in_warns_about_env_file_override() {
    let root = Root::new();
    root.write("/usr/lib/systemd/system/docker.service", &UNIT.replace("[Service]\n", "[Service]\nEnvironmentFile=-/etc/default/docker\n"), 0o644);
    root.write("/etc/default/docker", "HTTPS_PROXY=http://old.lan:8080\n", 0o644);
    let (code, _, stderr) = run(root.configure("http://proxy.lan:3128", &["--method", "drop-in"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("overrides the drop-in"), "{stderr}");
}

#[test]
fn daemon_json_keeps_other_keys() {
    let root = Root::new();
    let old = "{\n  \"log-driver\": \"json-file\",\n  \"log-opts\": {\"max-size\": \"10m\"},\n  \"insecure-registries\": [\"10.0.0.5:5000\"]\n}\n";
    root.write("/etc/docker/daemon.json", old, 0o644);

    let (code, _, stderr) = run(root.configure(SECRET_PROXY, &["--method", "daemon-json", "--no-proxy", "10.0.0.0/8"]));
    assert_eq!(code, 0, "{stderr}");
    let expected = format!(
        "{{\n  \"log-driver\": \"json-file\",\n  \"log-opts\": {{\n    \"max-size\": \"10m\"\n  }},\n  \"insecure-registries\": [\n    \"10.0.0.5:5000\"\n  ],\n  \"proxies\": {{\n    \"https-proxy\": \"{SECRET_PROXY}\",\n    \"no-proxy\": \"{NO_PROXY_WRITTEN}\"\n  }}\n}}\n"
    );
    assert_eq!(root.read("/etc/docker/daemon.json"), expected);
    assert_eq!(root.mode("/etc/docker/daemon.json"), 0o600);
    let backups = root.backups("/etc/docker/daemon.json");
    assert_eq!(backups.len(), 1);
    assert_eq!(root.read(&format!("/etc/docker/{}", backups[0])), old);

    let before = root.snapshot();
    let (code, document, _) = run_document(root.configure(SECRET_PROXY, &["--method", "daemon-json", "--no-proxy", "10.0.0.0/8"]));
    assert_eq!(code, 0);
    assert_eq!(document["changed"], false, "{document}");
    assert_eq!(root.snapshot(), before);
}

#[test]
fn daemon_json_created_when_missing() {
    let root = Root::new();
    let (code, _, stderr) = run(root.configure("http://proxy.lan:3128", &["--method", "daemon-json", "--http-proxy", "http://proxy.lan:3129"]));
    assert_eq!(code, 0, "{stderr}");
    let document: serde_json::Value = serde_json::from_str(&root.read("/etc/docker/daemon.json")).unwrap();
    assert_eq!(document["proxies"]["http-proxy"], "http://proxy.lan:3129");
    assert_eq!(document["proxies"]["https-proxy"], "http://proxy.lan:3128");
    assert_eq!(root.mode("/etc/docker/daemon.json"), 0o644, "no credentials, default mode");
    assert!(root.backups("/etc/docker/daemon.json").is_empty(), "a new file needs no backup");
}

#[test]
fn daemon_json_invalid_left_alone() {
    let root = Root::new();
    root.write("/etc/docker/daemon.json", "{\"debug\": true,}\n", 0o644);
    let (code, _, stderr) = run(root.configure("http://proxy.lan:3128", &["--method", "daemon-json"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not valid JSON"), "{stderr}");
    assert_eq!(root.read("/etc/docker/daemon.json"), "{\"debug\": true,}\n");
}

#[test]
fn registry_host_dropped_from_no_proxy() {
    let root = Root::new();
    let (code, document, stderr) = run_document(root.configure(
        "http://proxy.lan:3128",
        &["--method", "drop-in", "--registry-url", "registry.example.com", "--no-proxy", ".example.com,10.0.0.0/8"],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("NO_PROXY entry .example.com matches registry.example.com:443"), "{stderr}");
    assert_eq!(document["dropped_no_proxy"][0]["entry"], ".example.com", "{document}");
    assert_eq!(document["proxy"]["no_proxy"], NO_PROXY_WRITTEN, "{document}");
    let text = root.read("/etc/systemd/system/docker.service.d/http-proxy.conf");
    assert!(!text.contains("example.com"), "{text}");
}

#[test]
fn dry_run_writes_nothing_and_masks_password() {
    let root = Root::new();
    root.write("/usr/lib/systemd/system/docker.service", UNIT, 0o644);
    root.write("/etc/default/docker", "HTTPS_PROXY=\"http://old:0ld-s3cr3t@old.lan:8080\"\n", 0o644);
    let before = root.snapshot();

    let (code, stdout, stderr) = run(root.configure(SECRET_PROXY, &["--dry-run"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(root.snapshot(), before, "a dry run writes nothing");
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    assert!(!stdout.contains("0ld-s3cr3t"), "the old password is masked too:\n{stdout}");
    assert!(stdout.contains("+HTTPS_PROXY=\"http://deploy:xxxxx@proxy.lan:3128\""), "{stdout}");
    assert!(stdout.contains("+EnvironmentFile=/etc/default/docker"), "{stdout}");

    let (code, document, _) = run_document(root.configure(SECRET_PROXY, &["--dry-run", "--method", "daemon-json"]));
    assert_eq!(code, 0);
    assert_no_secret(&document.to_string());
    assert!(document["files"][0]["diff"].as_str().unwrap().contains("deploy:xxxxx@proxy.lan"), "{document}");
    assert_eq!(root.snapshot(), before);
}

#[test]
fn no_proxy_configured_fails() {
    let root = Root::new();
    let mut command = root.env.command();
    command.args(["proxy", "configure", "--root"]).arg(&root.root);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no proxy is configured: set HTTPS_PROXY or HTTP_PROXY"), "{stderr}");
}

#[test]
fn proxy_from_inventory_used() {
    let root = Root::new();
    let inventory = root.env.work_dir().join("inventory.yml");
    std::fs::write(&inventory, "all:\n  vars:\n    REGISTRY_URL: registry.example.com\n    HTTPS_PROXY: http://inventory.lan:3128\n    NO_PROXY: [10.0.0.0/8, registry.example.com]\n").unwrap();
    let mut command = root.env.command();
    command.args(["proxy", "configure", "--method", "drop-in", "-i"]).arg(&inventory).arg("--root").arg(&root.root);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    let text = root.read("/etc/systemd/system/docker.service.d/http-proxy.conf");
    assert!(text.contains("Environment=\"HTTPS_PROXY=http://inventory.lan:3128\""), "{text}");
    assert!(text.contains(&format!("Environment=\"NO_PROXY={NO_PROXY_WRITTEN}\"")), "{text}");
}

#[test]
fn restart_with_root_rejected() {
    let root = Root::new();
    let (code, _, stderr) = run(root.configure("http://proxy.lan:3128", &["--restart"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--restart"), "{stderr}");
    assert!(stderr.contains("--root"), "{stderr}");
}

#[test]
fn hosts_lists_plain_registry() {
    let registry = Registry::start_plain();
    let repo = unique_repo("proxy-hosts");
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(2_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());

    let mut command = ferry_cmd();
    command.args(["proxy", "hosts", "--plain-http"]).arg(registry.host()).args(["--warmup", &name]);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{}\n", registry.host()));

    let mut command = ferry_cmd();
    command.args(["proxy", "hosts", "--plain-http"]).arg(registry.host()).args(["--warmup", &name, "--warmup", &format!("{}/{repo}-missing:latest", registry.host())]);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 1, "one image is missing: {stderr}");
    assert_eq!(document["hosts"], serde_json::json!([registry.host()]), "{document}");
    assert_eq!(document["images"][0]["ok"], true, "{document}");
    assert_eq!(document["images"][1]["ok"], false, "{document}");
}
