//! Running the `ferry` binary with a clean environment.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use tempfile::TempDir;

use super::registry::PROXY_VARIABLES;

/// Variables ferry reads for its settings. Tests set them explicitly when they need them.
pub const FERRY_VARIABLES: [&str; 8] = [
    "REGISTRY_URL",
    "REGISTRY_ENV",
    "REGISTRY_USERNAME",
    "REGISTRY_PASSWORD",
    "PROVISION_IMAGE_WARMUP",
    "PROVISION_IMAGE_ARCHIVES",
    "MIRROR_REGISTRY_USERNAME",
    "MIRROR_REGISTRY_PASSWORD",
];

/// A temporary home for ferry runs: an empty Docker config directory and a cache directory.
///
/// Commands from one `FerryEnv` share the cache, so a test can run ferry twice and check
/// what the second run reuses.
pub struct FerryEnv {
    root: TempDir,
}

impl FerryEnv {
    pub fn new() -> FerryEnv {
        let root = tempfile::Builder::new()
            .prefix("ferry-test-env-")
            .tempdir()
            .expect("failed to create the ferry test directory");
        fs_err::create_dir(root.path().join("docker-config")).unwrap();
        fs_err::create_dir(root.path().join("cache")).unwrap();
        FerryEnv { root }
    }

    /// Returns the directory `DOCKER_CONFIG` points at, empty until a test writes `config.json`.
    pub fn docker_config_dir(&self) -> PathBuf {
        self.root.path().join("docker-config")
    }

    /// Returns the directory `FERRY_CACHE_DIR` points at.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// Returns a scratch directory for the test's own files (inventories, archives, layouts).
    pub fn work_dir(&self) -> &Path {
        self.root.path()
    }

    /// Writes `config.json` in the Docker config directory with credentials for `host`.
    pub fn write_docker_auth(&self, host: &str, user: &str, password: &str) {
        let path = self.docker_config_dir().join("config.json");
        write_docker_auth(&path, host, user, password);
    }

    /// Returns a command for the `ferry` binary with the caller's ferry and proxy variables
    /// removed, and with `DOCKER_CONFIG` and `FERRY_CACHE_DIR` pointing into this environment.
    pub fn command(&self) -> assert_cmd::Command {
        let mut command = assert_cmd::cargo::cargo_bin_cmd!("ferry");
        for variable in FERRY_VARIABLES.iter().chain(PROXY_VARIABLES.iter()) {
            command.env_remove(variable);
        }
        command
            .env("DOCKER_CONFIG", self.docker_config_dir())
            .env("FERRY_CACHE_DIR", self.cache_dir())
            .current_dir(self.root.path());
        command
    }
}

impl Default for FerryEnv {
    fn default() -> Self {
        FerryEnv::new()
    }
}

/// A `ferry` command that owns its [`FerryEnv`]. Dereferences to [`assert_cmd::Command`].
pub struct FerryCmd {
    command: assert_cmd::Command,
    env: FerryEnv,
}

impl FerryCmd {
    pub fn env_dirs(&self) -> &FerryEnv {
        &self.env
    }
}

impl Deref for FerryCmd {
    type Target = assert_cmd::Command;

    fn deref(&self) -> &Self::Target {
        &self.command
    }
}

impl DerefMut for FerryCmd {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.command
    }
}

/// Returns a `ferry` command with a fresh [`FerryEnv`], for tests that run ferry once.
pub fn ferry_cmd() -> FerryCmd {
    let env = FerryEnv::new();
    FerryCmd {
        command: env.command(),
        env,
    }
}

/// Writes a Docker-style auth file (`{"auths":{"<host>":{"auth":"<base64 user:password>"}}}`),
/// readable only by its owner. Docker's `config.json` and skopeo's `--authfile` share this
/// format.
pub fn write_docker_auth(path: &Path, host: &str, user: &str, password: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;

    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let contents = serde_json::json!({"auths": {host: {"auth": auth}}});
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|error| panic!("failed to create {}: {error}", path.display()));
    serde_json::to_writer_pretty(&mut file, &contents).expect("failed to write the auth file");
}

/// Runs a ferry command with `--json` and returns the exit code, the JSON document on standard
/// output (`Null` when it is not JSON), and standard error.
pub fn run_json(command: &mut assert_cmd::Command) -> (i32, serde_json::Value, String) {
    let output = command.arg("--json").output().expect("failed to run ferry");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let document = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), document, stderr)
}
