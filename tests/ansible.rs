//! The Ansible role in `ansible/roles/ferry`, run by `ansible-playbook` against this machine
//! (`ansible_connection: local`) with real registries from `common`, squid, and the machine's
//! Docker engine. The tests cover check mode, a first run, a second run that changes nothing and
//! failures, and look for secrets in Ansible's output, the process list and the disk.
//!
//! `ansible-playbook` comes from ansible-core (PyPI), which `.ci/run` installs. Every test has its
//! own folders for the installed binary, the cache, the archives and Ansible's temporary files,
//! so tests share no state.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tempfile::TempDir;

const USER: &str = "deployer";
const PASSWORD: &str = "Ansible-pa55-7c1e";
/// A password with the quotes and signs that YAML, JSON, Jinja and shells treat specially.
const SPECIAL_PASSWORD: &str = "Mirror'pa55\"$HOME%#x";

/// Returns the folder of the role's repository checkout.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the python3 that runs ansible-playbook, read from `ansible-playbook --version`
/// (`python version = 3.11.7 (...) [GCC 12.2.0] (/usr/bin/python3)`).
fn ansible_python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = Command::new("ansible-playbook").arg("--version").output().unwrap_or_else(|error| {
            panic!("cannot run ansible-playbook ({error}): install ansible-core, as .ci/run does with python3 -m pip install 'ansible-core>=2.16,<2.18'")
        });
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().find(|line| line.trim_start().starts_with("python version =")).unwrap_or_else(|| panic!("no python version line in ansible-playbook --version:\n{text}"));
        let start = line.rfind('(').expect("python version line without a path");
        line[start + 1..].trim_end().trim_end_matches(')').to_owned()
    })
}

/// The counts of the PLAY RECAP line of the one host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Recap {
    ok: u32,
    changed: u32,
    unreachable: u32,
    failed: u32,
}

/// One finished `ansible-playbook` run.
struct PlaybookRun {
    code: i32,
    stdout: String,
    stderr: String,
    /// Command lines of processes, seen while the playbook ran, that contained a secret.
    leaked_command_lines: Vec<String>,
}

impl PlaybookRun {
    /// Parses the PLAY RECAP line of `localhost`.
    fn recap(&self) -> Recap {
        let line = self
            .stdout
            .lines()
            .skip_while(|line| !line.starts_with("PLAY RECAP"))
            .find(|line| line.starts_with("localhost "))
            .unwrap_or_else(|| panic!("no PLAY RECAP line for localhost:\n{}", self.output()));
        let count = |key: &str| -> u32 {
            let start = line.find(&format!("{key}=")).unwrap_or_else(|| panic!("no {key}= in {line}")) + key.len() + 1;
            line[start..].split_whitespace().next().unwrap().parse().unwrap()
        };
        Recap { ok: count("ok"), changed: count("changed"), unreachable: count("unreachable"), failed: count("failed") }
    }

    /// Returns the status Ansible printed for the task named `name` (`ok`, `changed`,
    /// `skipping`, `fatal`), or `None` when the task did not run.
    fn task_status(&self, name: &str) -> Option<&str> {
        let header = format!(" : {name}]");
        let mut lines = self.stdout.lines().skip_while(|line| !(line.starts_with("TASK [") && line.contains(&header)));
        lines.next()?;
        lines
            .take_while(|line| !line.starts_with("TASK [") && !line.starts_with("PLAY RECAP"))
            .find_map(|line| ["ok", "changed", "skipping", "fatal"].into_iter().find(|status| line.starts_with(&format!("{status}: ["))))
    }

    /// Returns the `msg` of every `fatal: [localhost]: FAILED! => {...}` line.
    fn failure_messages(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("fatal: [localhost]: FAILED! => "))
            .map(|text| match serde_json::from_str::<Value>(text) {
                Ok(result) => result["msg"].as_str().unwrap_or(text).to_owned(),
                Err(_) => text.to_owned(),
            })
            .collect()
    }

    fn output(&self) -> String {
        format!("exit code {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }

    /// Asserts that no secret appears in the output or in the command line of a process.
    fn assert_no_secret(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(!self.stdout.contains(secret), "a secret is in Ansible's output:\n{}", self.output());
            assert!(!self.stderr.contains(secret), "a secret is in Ansible's error output:\n{}", self.output());
        }
        assert!(self.leaked_command_lines.is_empty(), "a secret is in a process's command line: {:?}", self.leaked_command_lines);
    }
}

/// The node side of one test: the folders the role writes to, Ansible's temporary folders, the
/// inventory and the playbook.
struct Node {
    dir: TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::Builder::new().prefix("ferry-test-ansible-").tempdir().expect("failed to create the node folder");
        for folder in ["bin", "cache", "archives", "controller", "docker-config", "local-tmp", "remote-tmp", "tmp"] {
            fs_err::create_dir(dir.path().join(folder)).unwrap();
        }
        fs_err::write(dir.path().join("ansible.cfg"), "[defaults]\n").unwrap();
        fs_err::write(
            dir.path().join("playbook.yml"),
            "- name: Get the images onto the node\n  hosts: all\n  gather_facts: false\n  roles:\n    - role: ferry\n",
        )
        .unwrap();
        Node { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Returns where the role installs ferry.
    fn binary_dest(&self) -> PathBuf {
        self.path("bin/ferry")
    }

    /// Writes the inventory: this machine as `localhost`, the role's folders inside the node
    /// folder, and `vars` (role settings and inventory variables) on top. JSON is valid YAML.
    fn write_inventory(&self, vars: Value) {
        let mut all_vars = json!({
            "ferry_binary_src": env!("CARGO_BIN_EXE_ferry"),
            "ferry_binary_dest": self.binary_dest(),
            "ferry_cache_dir": self.path("cache"),
            "ferry_archive_dir": self.path("archives"),
            "ferry_ca_dest": self.path("ca/ca.crt"),
        });
        for (key, value) in vars.as_object().expect("inventory variables are an object") {
            all_vars[key] = value.clone();
        }
        let inventory = json!({
            "all": {
                "hosts": {
                    "localhost": { "ansible_connection": "local", "ansible_python_interpreter": ansible_python() }
                },
                "vars": all_vars,
            }
        });
        fs_err::write(self.path("inventory.yml"), serde_json::to_string_pretty(&inventory).unwrap()).unwrap();
    }

    /// Writes `group_vars/all.yml` beside the inventory with `name` encrypted by Ansible Vault,
    /// and the vault password file that `--vault-password-file vault-password` reads.
    fn write_vault_variable(&self, name: &str, value: &str) {
        fs_err::write(self.path("vault-password"), "ferry-test-vault\n").unwrap();
        let mut child = Command::new("ansible-vault")
            .args(["encrypt_string", "--vault-password-file"])
            .arg(self.path("vault-password"))
            .args(["--stdin-name", name])
            .env("ANSIBLE_CONFIG", self.path("ansible.cfg"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to run ansible-vault");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "ansible-vault encrypt_string failed: {}", String::from_utf8_lossy(&output.stderr));
        fs_err::create_dir_all(self.path("group_vars")).unwrap();
        fs_err::write(self.path("group_vars/all.yml"), &output.stdout).unwrap();
    }

    /// Runs the playbook with `args` (such as `--check` or `-v`) and a clean environment, and
    /// records every process command line that contains one of `secrets` meanwhile.
    fn run(&self, args: &[&str], secrets: &[&str]) -> PlaybookRun {
        let mut command = Command::new("ansible-playbook");
        command.arg("-i").arg(self.path("inventory.yml")).arg(self.path("playbook.yml")).args(args);
        for variable in FERRY_VARIABLES.iter().chain(PROXY_VARIABLES.iter()) {
            command.env_remove(variable);
        }
        command
            .env("ANSIBLE_CONFIG", self.path("ansible.cfg"))
            .env("ANSIBLE_ROLES_PATH", repo_root().join("ansible/roles"))
            .env("ANSIBLE_LOCAL_TEMP", self.path("local-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", self.path("remote-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .env_remove("ANSIBLE_KEEP_REMOTE_FILES")
            .env_remove("ANSIBLE_PIPELINING")
            // ferry reads Docker's config.json for credentials; the node's is empty. The
            // tempfile module of check mode writes under TMPDIR.
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("TMPDIR", self.path("tmp"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut leaked = BTreeSet::new();
                while !done.load(Ordering::SeqCst) {
                    leaked.extend(command_lines_containing(&secrets));
                    std::thread::sleep(Duration::from_millis(20));
                }
                leaked.into_iter().collect::<Vec<String>>()
            })
        };
        let output = command.output().expect("failed to run ansible-playbook");
        done.store(true, Ordering::SeqCst);
        PlaybookRun {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            leaked_command_lines: watcher.join().expect("the process watcher panicked"),
        }
    }

    /// Asserts that no file under the role's folders and Ansible's temporary folders contains
    /// `secret`.
    fn assert_no_secret_on_disk(&self, secret: &str) {
        let pattern = regex::bytes::Regex::new(&regex::escape(secret)).unwrap();
        for folder in ["bin", "cache", "archives", "local-tmp", "remote-tmp", "tmp"] {
            for file in files_under(&self.path(folder)) {
                let bytes = fs_err::read(&file).unwrap();
                assert!(!pattern.is_match(&bytes), "{} contains a secret", file.display());
            }
        }
    }
}

/// Returns the command lines of running processes that contain one of `secrets`.
fn command_lines_containing(secrets: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit between the listing and the read.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if secrets.iter().any(|secret| line.contains(secret.as_str())) {
            found.push(line);
        }
    }
    found
}

/// Returns every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            files.extend(files_under(&path));
        } else if kind.is_file() {
            files.push(path);
        }
    }
    files
}

/// Pushes a one-layer image as `<prefix>chromium:latest` to `registry` and returns it.
fn push_chromium(registry: &Registry, prefix: &str, layer_bytes: u64) -> BuiltImage {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(layer_bytes).gzip()).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{prefix}chromium:latest"));
    image
}

/// Returns a REGISTRY_ENV prefix no other test uses, such as `ferry-test-ansible-online-1-0-abcdef-`.
fn unique_prefix(label: &str) -> String {
    unique_repo(label).replace('/', "-") + "-"
}

/// Returns the inventory variables for an HTTPS registry with htpasswd authentication.
fn registry_vars(registry: &Registry, pki: &Pki, prefix: &str, password: &str) -> Value {
    json!({
        "REGISTRY_URL": registry.host(),
        "REGISTRY_ENV": prefix,
        "REGISTRY_USERNAME": USER,
        "REGISTRY_PASSWORD": password,
        "PROVISION_IMAGE_WARMUP": ["chromium"],
        "ferry_ca_file": pki.ca_file(),
    })
}

/// Asserts the run succeeded and returns its recap.
fn assert_success(run: &PlaybookRun) -> Recap {
    assert_eq!(run.code, 0, "{}", run.output());
    let recap = run.recap();
    assert_eq!(recap.failed, 0, "{}", run.output());
    assert_eq!(recap.unreachable, 0, "{}", run.output());
    recap
}

#[test]
fn online_mode_check_run_rerun() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, USER, PASSWORD);
    let prefix = unique_prefix("ansible-online");
    let image = push_chromium(&registry, &prefix, 60_000);
    let name = format!("{}/{prefix}chromium", registry.host());
    let _guard = RepoGuard::new(&name);
    let node = Node::new();
    node.write_inventory(registry_vars(&registry, &pki, &prefix, PASSWORD));

    // Check mode plans with ferry's --dry-run: it reports the load, and changes nothing.
    let check = node.run(&["--check"], &[PASSWORD]);
    let recap = assert_success(&check);
    assert!(recap.changed > 0, "{}", check.output());
    assert_eq!(check.task_status("Warm up the images (ferry warmup)"), Some("changed"), "{}", check.output());
    assert!(docker_inspect(&format!("{name}:latest")).is_none(), "check mode loaded the image");
    assert!(!node.binary_dest().exists(), "check mode installed ferry");
    assert!(!node.path("ca/ca.crt").exists(), "check mode installed the CA certificate");
    assert!(files_under(&node.path("tmp")).is_empty(), "the temporary copy of check mode is left: {:?}", files_under(&node.path("tmp")));
    check.assert_no_secret(&[PASSWORD]);

    let first = node.run(&["-v"], &[PASSWORD]);
    let recap = assert_success(&first);
    assert!(recap.changed > 0, "{}", first.output());
    assert_eq!(first.task_status("Warm up the images (ferry warmup)"), Some("changed"), "{}", first.output());
    assert_eq!(docker_inspect(&format!("{name}:latest")).expect("the image is loaded")["Id"], image.image_id());
    first.assert_no_secret(&[PASSWORD]);

    // A second run finds everything in place; -vvv shows each command Ansible runs.
    let second = node.run(&["-vvv"], &[PASSWORD]);
    let recap = assert_success(&second);
    assert_eq!(recap.changed, 0, "{}", second.output());
    assert_eq!(second.task_status("Warm up the images (ferry warmup)"), Some("ok"), "{}", second.output());
    second.assert_no_secret(&[PASSWORD]);

    let check_again = node.run(&["--check", "--diff"], &[PASSWORD]);
    let recap = assert_success(&check_again);
    assert_eq!(recap.changed, 0, "{}", check_again.output());
    check_again.assert_no_secret(&[PASSWORD]);

    node.assert_no_secret_on_disk(PASSWORD);
}

#[test]
fn wrong_password_fails_host() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, USER, PASSWORD);
    let prefix = unique_prefix("ansible-password");
    push_chromium(&registry, &prefix, 20_000);
    let name = format!("{}/{prefix}chromium", registry.host());
    let _guard = RepoGuard::new(&name);
    let wrong = "Wrong-pa55-93d4";
    let node = Node::new();
    node.write_inventory(registry_vars(&registry, &pki, &prefix, wrong));

    // The pre-flight credentials check fails the host with its fix.
    let run = node.run(&["-v"], &[wrong]);
    assert_ne!(run.code, 0, "{}", run.output());
    assert_eq!(run.recap().failed, 1, "{}", run.output());
    let messages = run.failure_messages();
    assert_eq!(messages.len(), 1, "{}", run.output());
    assert!(messages[0].contains("credentials"), "{}", messages[0]);
    assert!(messages[0].contains("REGISTRY_PASSWORD"), "{}", messages[0]);
    assert_eq!(run.task_status("Warm up the images (ferry warmup)"), None, "{}", run.output());
    run.assert_no_secret(&[wrong]);

    // Without the pre-flight, ferry warmup's own message fails the host.
    let run = node.run(&["-e", "ferry_preflight=false"], &[wrong]);
    assert_ne!(run.code, 0, "{}", run.output());
    let messages = run.failure_messages();
    assert_eq!(messages.len(), 1, "{}", run.output());
    assert!(messages[0].starts_with("ferry warmup failed on localhost"), "{}", messages[0]);
    assert!(messages[0].contains("rejected the credentials"), "{}", messages[0]);
    assert!(messages[0].contains(USER), "{}", messages[0]);
    assert!(messages[0].contains("REGISTRY_PASSWORD"), "{}", messages[0]);
    run.assert_no_secret(&[wrong]);

    assert!(docker_inspect(&format!("{name}:latest")).is_none());
    node.assert_no_secret_on_disk(wrong);
}

#[test]
fn offline_mode_copies_and_loads() {
    let registry = Registry::start_plain();
    let prefix = unique_prefix("ansible-offline");
    // Over 1M, so `--split-size 1M` writes several parts.
    let image = push_chromium(&registry, &prefix, 1_500_000);
    let name = format!("{}/{prefix}chromium:latest", registry.host());
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    let node = Node::new();
    let archive = node.path("controller/images.tar");
    let mut save = ferry_cmd();
    save.args(["save", "--plain-http", &registry.host(), "--split-size", "1M", "--warmup", &name]).arg("-o").arg(&archive);
    let (code, document, stderr) = run_json(&mut save);
    assert_eq!(code, 0, "{document}\n{stderr}");
    let mut parts = files_under(&node.path("controller"));
    parts.sort();
    assert!(parts.len() >= 2, "expected a split archive: {parts:?}");

    // The air-gapped inventory still names the registry and its credentials, which ferry load
    // does not use and the role must not leak.
    node.write_inventory(json!({
        "ferry_mode": "offline",
        "ferry_archives": parts,
        "REGISTRY_URL": "127.0.0.1:9",
        "REGISTRY_USERNAME": USER,
        "REGISTRY_PASSWORD": PASSWORD,
    }));

    let check = node.run(&["--check"], &[PASSWORD]);
    let recap = assert_success(&check);
    assert!(recap.changed > 0, "{}", check.output());
    assert!(files_under(&node.path("archives")).is_empty(), "check mode copied archives");
    assert!(docker_inspect(&name).is_none(), "check mode loaded the image");
    check.assert_no_secret(&[PASSWORD]);

    let first = node.run(&["-v"], &[PASSWORD]);
    assert_success(&first);
    assert_eq!(first.task_status("Load the archives (ferry load)"), Some("changed"), "{}", first.output());
    assert_eq!(files_under(&node.path("archives")).len(), parts.len());
    assert_eq!(docker_inspect(&name).expect("the image is loaded")["Id"], image.image_id());
    first.assert_no_secret(&[PASSWORD]);

    let second = node.run(&["-v"], &[PASSWORD]);
    let recap = assert_success(&second);
    assert_eq!(recap.changed, 0, "{}", second.output());
    assert_eq!(second.task_status("Load the archives (ferry load)"), Some("ok"), "{}", second.output());

    // With the archives on the node, check mode runs ferry load --dry-run.
    let check_again = node.run(&["--check"], &[PASSWORD]);
    let recap = assert_success(&check_again);
    assert_eq!(recap.changed, 0, "{}", check_again.output());
    assert_eq!(check_again.task_status("Load the archives (ferry load)"), Some("ok"), "{}", check_again.output());

    node.assert_no_secret_on_disk(PASSWORD);
}

#[test]
fn mirror_mode_pulls_from_private_registry() {
    let pki = Pki::new();
    let source = Registry::start_plain();
    let private = Registry::start_htpasswd(&pki, USER, SPECIAL_PASSWORD);
    let prefix = unique_prefix("ansible-mirror");
    let image = push_chromium(&source, &prefix, 40_000);

    // Fill the private registry as a site does, and take the node variables ferry mirror prints.
    let mut mirror = ferry_cmd();
    mirror
        .args(["mirror", "--registry-url", &source.url(), "--registry-env", &prefix, "--warmup", "chromium"])
        .arg("--to")
        .arg(format!("{}/site", private.host()))
        .arg("--ca-file")
        .arg(pki.ca_file())
        .env("MIRROR_REGISTRY_USERNAME", USER)
        .env("MIRROR_REGISTRY_PASSWORD", SPECIAL_PASSWORD);
    let (code, document, stderr) = run_json(&mut mirror);
    assert_eq!(code, 0, "{document}\n{stderr}");
    let node_vars = &document["inventory"];
    let name = format!("{}/site/{prefix}chromium", private.host());
    let _guard = RepoGuard::new(&name);

    let node = Node::new();
    node.write_inventory(json!({
        "ferry_mode": "mirror",
        "REGISTRY_URL": node_vars["REGISTRY_URL"],
        "REGISTRY_ENV": node_vars["REGISTRY_ENV"],
        "PROVISION_IMAGE_WARMUP": node_vars["PROVISION_IMAGE_WARMUP"],
        "REGISTRY_USERNAME": USER,
        "ferry_ca_file": pki.ca_file(),
        "ferry_limit_rate": "50M",
    }));
    // The password comes from Ansible Vault, which ferry cannot read itself from an inventory.
    node.write_vault_variable("REGISTRY_PASSWORD", SPECIAL_PASSWORD);
    let vault = ["--vault-password-file", "vault-password"];

    let check = node.run(&[&vault[..], &["--check"]].concat(), &[SPECIAL_PASSWORD]);
    let recap = assert_success(&check);
    assert!(recap.changed > 0, "{}", check.output());
    assert!(docker_inspect(&format!("{name}:latest")).is_none(), "check mode loaded the image");

    let first = node.run(&[&vault[..], &["-v"]].concat(), &[SPECIAL_PASSWORD]);
    assert_success(&first);
    assert_eq!(first.task_status("Warm up the images (ferry warmup)"), Some("changed"), "{}", first.output());
    assert_eq!(docker_inspect(&format!("{name}:latest")).expect("the image is loaded")["Id"], image.image_id());

    let second = node.run(&[&vault[..], &["-v"]].concat(), &[SPECIAL_PASSWORD]);
    let recap = assert_success(&second);
    assert_eq!(recap.changed, 0, "{}", second.output());

    for run in [&check, &first, &second] {
        run.assert_no_secret(&[SPECIAL_PASSWORD]);
    }
    node.assert_no_secret_on_disk(SPECIAL_PASSWORD);
}

#[test]
fn proxy_mode_configures_docker_proxy() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, USER, PASSWORD);
    let proxy_password = "Proxy-pa55-61f0";
    let squid = Squid::start(SquidOptions { allowed_ports: vec![registry.port()], user: Some(("ferry".to_owned(), proxy_password.to_owned())) });
    let prefix = unique_prefix("ansible-proxy");
    let image = push_chromium(&registry, &prefix, 30_000);
    // 127.0.0.1 always bypasses a proxy, so the node reaches the registry by a name squid
    // resolves to it.
    let registry_host = registry.host_named("registry.ferry.test");
    let name = format!("{registry_host}/{prefix}chromium");
    let _guard = RepoGuard::new(&name);

    let node = Node::new();
    let root = node.path("root");
    fs_err::create_dir_all(root.join("etc")).unwrap();
    fs_err::write(root.join("etc/hostname"), "node07\n").unwrap();
    let mut vars = registry_vars(&registry, &pki, &prefix, PASSWORD);
    vars["REGISTRY_URL"] = json!(registry_host);
    vars["ferry_mode"] = json!("proxy");
    vars["HTTPS_PROXY"] = json!(squid.url_with("ferry", proxy_password));
    vars["NO_PROXY"] = json!(["10.0.0.0/8", ".site.lan"]);
    vars["ferry_configure_docker_proxy"] = json!(true);
    vars["ferry_proxy_method"] = json!("drop-in");
    vars["ferry_proxy_root"] = json!(root);
    vars["ferry_proxy_restart"] = json!(false);
    node.write_inventory(vars);
    let drop_in = root.join("etc/systemd/system/docker.service.d/http-proxy.conf");
    let secrets = [PASSWORD, proxy_password];

    // --check --diff shows the drop-in ferry would write, with the proxy password masked.
    let check = node.run(&["--check", "--diff"], &secrets);
    let recap = assert_success(&check);
    assert!(recap.changed > 0, "{}", check.output());
    assert!(check.stdout.contains("HTTPS_PROXY="), "the diff is missing:\n{}", check.output());
    assert!(check.stdout.contains("http-proxy.conf"), "the diff is missing:\n{}", check.output());
    assert!(!drop_in.exists(), "check mode wrote the drop-in");
    assert!(docker_inspect(&format!("{name}:latest")).is_none(), "check mode loaded the image");
    check.assert_no_secret(&secrets);

    let first = node.run(&["-v"], &secrets);
    assert_success(&first);
    assert_eq!(first.task_status("Write the Docker daemon's proxy settings (ferry proxy configure)"), Some("changed"), "{}", first.output());
    let written = fs_err::read_to_string(&drop_in).unwrap();
    assert!(written.contains("127.0.0.1:"), "{written}");
    assert!(written.contains(".site.lan"), "{written}");
    assert_eq!(docker_inspect(&format!("{name}:latest")).expect("the image is loaded")["Id"], image.image_id());
    assert!(squid.count(&format!("CONNECT {registry_host}")) >= 1, "ferry did not go through the proxy: {:?}", squid.access_log());
    first.assert_no_secret(&secrets);

    let second = node.run(&["-v", "--diff"], &secrets);
    let recap = assert_success(&second);
    assert_eq!(recap.changed, 0, "{}", second.output());
    second.assert_no_secret(&secrets);

    // The drop-in contains the proxy password, because the daemon needs it. No other file does.
    for secret in secrets {
        node.assert_no_secret_on_disk(secret);
    }
}

#[test]
fn examples_pass_syntax_check() {
    for mode in ["online", "proxy", "offline", "mirror"] {
        let folder = repo_root().join("ansible/examples").join(mode);
        let output = Command::new("ansible-playbook")
            .arg("--syntax-check")
            .arg("-i")
            .arg(folder.join("inventory.yml"))
            .arg(folder.join("playbook.yml"))
            .env("ANSIBLE_NOCOLOR", "1")
            .current_dir(&folder)
            .output()
            .expect("failed to run ansible-playbook");
        assert!(
            output.status.success(),
            "{mode}: ansible-playbook --syntax-check failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
