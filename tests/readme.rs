//! The README's first command, `bash scripts/demo.sh`, run from a fresh clone of the committed
//! HEAD: once against the machine's Docker engine (twice, to see `unchanged`) and once with
//! `DOCKER_HOST` aimed at a socket that does not exist, which takes the OCI layout branch.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

use common::{docker_inspect, free_port, FerryEnv, RepoGuard, FERRY_VARIABLES, PROXY_VARIABLES};
use serde_json::Value;

/// Serializes the demo runs. Both tests build into the same target folder, and one build must
/// not replace the ferry binary while the other test's script runs it.
static DEMO_LOCK: Mutex<()> = Mutex::new(());

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `git` with `args` in `dir` and returns its stdout. Panics with stderr when git fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("failed to run git");
    assert!(
        output.status.success(),
        "git {} in {} failed: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("git printed invalid UTF-8")
}

/// Clones the repository's committed HEAD into `<env work dir>/clone`.
fn clone_head(env: &FerryEnv) -> PathBuf {
    let clone = env.work_dir().join("clone");
    let clone_arg = clone.to_str().expect("temporary path is not UTF-8");
    let root_arg = repo_root().to_str().expect("repository path is not UTF-8");
    git(env.work_dir(), &["clone", "--quiet", root_arg, clone_arg]);
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"]),
        git(repo_root(), &["rev-parse", "HEAD"]),
        "the clone is not at the repository's HEAD"
    );
    clone
}

/// Returns the `CARGO_TARGET_DIR` for the clone's build.
fn clone_target_dir() -> PathBuf {
    let test_binary = std::env::current_exe().expect("failed to find the test binary's path");
    // The test binary is <target>/<profile>/deps/readme-<hash>.
    let deps = test_binary
        .parent()
        .expect("test binary has no parent folder");
    assert_eq!(
        deps.file_name().and_then(|name| name.to_str()),
        Some("deps"),
        "unexpected test binary location {}: expected <target>/<profile>/deps/",
        test_binary.display()
    );
    let target = deps
        .parent()
        .and_then(Path::parent)
        .expect("test binary is not inside a cargo target folder");

    // Building the clone in this test's own target folder keeps the build incremental, because
    // cargo names a package's artifacts the same whatever folder its sources sit in. That is
    // only safe while the build inputs match HEAD, which the clone contains. Otherwise the
    // clone's build puts HEAD's ferry at <target>/debug/ferry, where the test binaries that run
    // after this one find it, and a later `cargo build` here takes HEAD's artifacts as up to
    // date because cargo compares file times (tried with cargo 1.95). So a dirty tree builds
    // the clone in a subfolder, which builds every dependency again the first time.
    let build_inputs = ["src", "Cargo.toml", "Cargo.lock", "build.rs", ".cargo"];
    let mut status_args = vec!["status", "--porcelain", "--"];
    status_args.extend(build_inputs);
    let status = git(repo_root(), &status_args);
    if status.is_empty() {
        target.to_path_buf()
    } else {
        target.join("readme-clone")
    }
}

/// Runs `bash scripts/demo.sh` in `clone` with the demo registry on `port`, plus `extra_env`.
fn run_demo(env: &FerryEnv, clone: &Path, port: u16, extra_env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("bash");
    command
        .arg("scripts/demo.sh")
        .current_dir(clone)
        .env("FERRY_DEMO_PORT", port.to_string())
        .env("CARGO_TARGET_DIR", clone_target_dir())
        .env("DOCKER_CONFIG", env.docker_config_dir())
        .env("FERRY_CACHE_DIR", env.cache_dir());
    // ferry's settings would override the demo inventory, and proxies would take the loopback
    // requests elsewhere.
    for variable in FERRY_VARIABLES.iter().chain(PROXY_VARIABLES.iter()) {
        command.env_remove(variable);
    }
    command.envs(extra_env.iter().copied());

    let output = command.output().expect("failed to run bash");
    assert!(
        output.status.success(),
        "bash scripts/demo.sh failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Parses the JSON blob `digest` of the OCI layout at `layout`.
fn read_blob(layout: &Path, digest: &str) -> Value {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("unexpected digest {digest}"));
    let bytes = fs_err::read(layout.join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Returns the manifest digest and the config digest (the image ID) that the sample layout in
/// `clone` contains for this machine's Linux platform.
fn sample_manifest_and_config(clone: &Path) -> (String, String) {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("samples/demo has no image for architecture {other}"),
    };
    let layout = clone.join("samples/demo");
    let layout_index: Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    let index_digest = layout_index["manifests"][0]["digest"].as_str().unwrap();

    let index = read_blob(&layout, index_digest);
    let manifests = index["manifests"].as_array().unwrap();
    let entry = manifests
        .iter()
        .find(|entry| {
            entry["platform"]["os"] == "linux" && entry["platform"]["architecture"] == architecture
        })
        .unwrap_or_else(|| panic!("samples/demo has no linux/{architecture} manifest"));
    let manifest_digest = entry["digest"].as_str().unwrap().to_owned();

    let manifest = read_blob(&layout, &manifest_digest);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    (manifest_digest, config_digest)
}

#[test]
fn demo_loads_into_docker() {
    let env = FerryEnv::new();
    let clone = clone_head(&env);
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/demochromium:latest");
    let _guard = RepoGuard::new(format!("127.0.0.1:{port}/demochromium"));
    let _serial = DEMO_LOCK.lock().unwrap_or_else(PoisonError::into_inner);

    let first = run_demo(&env, &clone, port, &[]);
    let first_stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first_stdout.contains("1 changed, 0 unchanged, 0 failed"),
        "first run did not load the image:\n{first_stdout}"
    );

    let (_, image_id) = sample_manifest_and_config(&clone);
    let inspected = docker_inspect(&reference)
        .unwrap_or_else(|| panic!("Docker has no image {reference} after the demo"));
    assert_eq!(inspected["Id"], image_id.as_str());

    let second = run_demo(&env, &clone, port, &[]);
    let second_stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second_stdout.contains("0 changed, 1 unchanged, 0 failed"),
        "second run did not report the image unchanged:\n{second_stdout}"
    );
}

#[test]
fn demo_without_docker_writes_layout() {
    let env = FerryEnv::new();
    let clone = clone_head(&env);
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/demochromium:latest");
    let _serial = DEMO_LOCK.lock().unwrap_or_else(PoisonError::into_inner);

    // The script checks for an engine with `docker version`, which follows DOCKER_HOST.
    let output = run_demo(
        &env,
        &clone,
        port,
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("no Docker engine answers"),
        "the script did not take the branch without Docker:\n{stdout}"
    );

    let index_path = clone.join("target/demo-oci/index.json");
    let index: Value = serde_json::from_slice(&fs_err::read(&index_path).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["annotations"]["io.containerd.image.name"] == reference.as_str())
        .unwrap_or_else(|| {
            panic!(
                "{} has no entry for {reference}:\n{index}",
                index_path.display()
            )
        });
    let (manifest_digest, _) = sample_manifest_and_config(&clone);
    assert_eq!(entry["digest"], manifest_digest.as_str());
}
