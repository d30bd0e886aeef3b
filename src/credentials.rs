//! Registry credentials from Docker's client configuration (`config.json`) and the credential
//! helpers it names, so that ferry can log in where `docker login` already did.
//!
//! The file format and helper protocol are docker/cli's (`cli/config/configfile/file.go`,
//! `cli/config/credentials/`). Unlike Docker, which queries only the first configured store,
//! ferry tries `credHelpers[host]`, then `credsStore`, then `auths`, and moves on when a
//! helper has no credentials for the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use crate::settings::Secret;

/// Time limit for one credential helper run.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The key Docker uses for Docker Hub in `auths` and when asking helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A helper prints this (on stdout, with exit status 1) when it has no credentials for the server.
const NOT_FOUND_MESSAGE: &str = "credentials not found";

/// Maximum number of characters of a helper's stderr quoted in an error.
const MAX_STDERR_CHARS: usize = 300;

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`, or a helper returning `Username: "<token>"`).
    IdentityToken(Secret),
    /// A bearer token sent as is (`registrytoken`).
    RegistryToken(Secret),
}

/// Error reading credentials. No message contains a secret or a helper's stdout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid Docker config file {} line {line}, column {column}: {message}; fix the file or run docker login again", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the \"auth\" value of {key:?} in {} is not base64 of user:password: run docker login again or fix the entry", path.display())]
    InvalidAuth { path: PathBuf, key: String },
    #[error("invalid credential helper name {name:?} in {}: a helper name cannot contain a path", path.display())]
    InvalidHelperName { name: String, path: PathBuf },
    #[error("credential helper {program} (from {setting:?} in {}) was not found on PATH: install it, or remove {setting:?} from the file", path.display())]
    HelperNotFound {
        program: String,
        setting: &'static str,
        path: PathBuf,
    },
    #[error("credential helper {program} timed out after {timeout:?}: check that it works without a prompt (run `{program} list`)")]
    HelperTimeout { program: String, timeout: Duration },
    #[error("credential helper {program} failed ({detail}): check the helper's setup (run `{program} list`)")]
    HelperFailed { program: String, detail: String },
    #[error("cannot run credential helper {program}: {source}")]
    HelperIo { program: String, source: std::io::Error },
}

/// Settings for running credential helpers.
#[derive(Clone, Debug)]
pub struct HelperOptions {
    /// Folder holding the `docker-credential-*` programs; `None` searches `PATH`.
    pub directory: Option<PathBuf>,
    pub timeout: Duration,
}

impl Default for HelperOptions {
    fn default() -> HelperOptions {
        HelperOptions {
            directory: None,
            timeout: HELPER_TIMEOUT,
        }
    }
}

/// Returns Docker's client configuration folder: `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn docker_config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let home = env("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(dirs::home_dir)?;
    Some(home.join(".docker"))
}

/// Looks up credentials for `registry_host` (`host` or `host:port`) in `<config_dir>/config.json`,
/// running helpers found on `PATH`. Returns the credential and where it came from (a helper
/// program, or the file and its `auths` key), or `None` when nothing matches or the file is
/// missing.
pub async fn lookup(config_dir: &Path, registry_host: &str) -> Result<Option<(Credential, String)>, CredentialError> {
    lookup_with(config_dir, registry_host, &HelperOptions::default()).await
}

/// Looks up credentials as [`lookup`] does, with explicit helper settings.
pub async fn lookup_with(
    config_dir: &Path,
    registry_host: &str,
    options: &HelperOptions,
) -> Result<Option<(Credential, String)>, CredentialError> {
    let path = config_dir.join("config.json");
    let Some(config) = read_config(&path).await? else {
        tracing::debug!(path = %path.display(), "no Docker config file");
        return Ok(None);
    };
    let host = normalize_host(registry_host);
    let server = if host == "index.docker.io" {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        host.clone()
    };

    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| normalize_host(key) == host)
        .map(|(_, name)| name);
    let stores = helper
        .map(|name| (name, "credHelpers"))
        .into_iter()
        .chain(config.creds_store.as_ref().map(|name| (name, "credsStore")));
    for (name, setting) in stores {
        let program = helper_program(name, &path)?;
        if let Some(credential) = run_helper(&program, setting, &path, &server, options).await? {
            return Ok(Some((credential, format!("credential helper {program}"))));
        }
        tracing::debug!(program, host, "credential helper has no credentials for the registry");
    }

    let entry = config
        .auths
        .get(&server)
        .map(|entry| (&server, entry))
        .or_else(|| config.auths.iter().find(|(key, _)| normalize_host(key) == host));
    let Some((key, entry)) = entry else {
        return Ok(None);
    };
    let credential = decode_entry(entry, key, &path)?;
    Ok(credential.map(|credential| (credential, format!("{} (auths entry {key:?})", path.display()))))
}

/// The parts of `config.json` that hold credentials.
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

async fn read_config(path: &Path) -> Result<Option<ConfigFile>, CredentialError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(ConfigFile::default()));
    }
    serde_json::from_str(&text).map(Some).map_err(|error| {
        // A type error quotes the value it found, which may be a secret: keep only its place.
        let message = match error.classify() {
            serde_json::error::Category::Data => "a field has the wrong type".to_owned(),
            _ => strip_json_position(&error.to_string()),
        };
        CredentialError::Malformed {
            path: path.to_owned(),
            line: error.line(),
            column: error.column(),
            message,
        }
    })
}

/// Drops serde_json's trailing " at line L column C", which the error prints separately.
fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Reduces an `auths` key or registry name to `host[:port]` in lowercase, the way docker/cli's
/// `ConvertToHostname` compares them, with Docker Hub's names mapped to `index.docker.io`.
fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => "index.docker.io".to_owned(),
        _ => host,
    }
}

fn decode_entry(entry: &AuthEntry, key: &str, path: &Path) -> Result<Option<Credential>, CredentialError> {
    let present = |value: &Option<String>| value.as_deref().filter(|value| !value.is_empty()).map(str::to_owned);

    if let Some(token) = present(&entry.identitytoken) {
        return Ok(Some(Credential::IdentityToken(Secret::new(token))));
    }
    if let Some(token) = present(&entry.registrytoken) {
        return Ok(Some(Credential::RegistryToken(Secret::new(token))));
    }
    if let Some(auth) = present(&entry.auth) {
        let invalid = || CredentialError::InvalidAuth {
            path: path.to_owned(),
            key: key.to_owned(),
        };
        let auth = auth.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth))
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (username, password) = text.split_once(':').ok_or_else(invalid)?;
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        }));
    }
    match (present(&entry.username), present(&entry.password)) {
        (Some(username), Some(password)) => Ok(Some(Credential::Basic {
            username,
            password: Secret::new(password),
        })),
        _ => Ok(None),
    }
}

fn helper_program(name: &str, path: &Path) -> Result<String, CredentialError> {
    let valid =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && name != "..";
    if !valid {
        return Err(CredentialError::InvalidHelperName {
            name: name.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(format!("docker-credential-{name}"))
}

/// The output of `docker-credential-* get`.
#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `<program> get` with the server address on stdin. Returns `None` when the helper has
/// no credentials for it.
async fn run_helper(
    program: &str,
    setting: &'static str,
    config_path: &Path,
    server: &str,
    options: &HelperOptions,
) -> Result<Option<Credential>, CredentialError> {
    let executable = match &options.directory {
        Some(directory) => directory.join(program),
        None => PathBuf::from(program),
    };
    let mut child = tokio::process::Command::new(&executable)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CredentialError::HelperNotFound {
                program: program.to_owned(),
                setting,
                path: config_path.to_owned(),
            },
            _ => CredentialError::HelperIo {
                program: program.to_owned(),
                source,
            },
        })?;

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let exchange = async {
        // A helper that exits without reading stdin closes the pipe. Its exit status and
        // output decide the result, so a failed write is not an error by itself.
        if let Err(error) = stdin.write_all(server.as_bytes()).await {
            tracing::debug!(program, %error, "could not write the server address to the credential helper");
        }
        drop(stdin);
        child.wait_with_output().await
    };
    // On timeout the future is dropped with the child, and `kill_on_drop` ends the helper.
    let output = match tokio::time::timeout(options.timeout, exchange).await {
        Ok(result) => result.map_err(|source| CredentialError::HelperIo {
            program: program.to_owned(),
            source,
        })?,
        Err(_) => {
            return Err(CredentialError::HelperTimeout {
                program: program.to_owned(),
                timeout: options.timeout,
            })
        }
    };

    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.code() == Some(1) && stdout.to_ascii_lowercase().contains(NOT_FOUND_MESSAGE) {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.trim().chars().take(MAX_STDERR_CHARS).collect();
        let detail = if stderr.is_empty() {
            output.status.to_string()
        } else {
            format!("{}; stderr: {stderr}", output.status)
        };
        return Err(CredentialError::HelperFailed {
            program: program.to_owned(),
            detail,
        });
    }

    let reply: HelperOutput = serde_json::from_slice(&output.stdout).map_err(|_| CredentialError::HelperFailed {
        program: program.to_owned(),
        detail: "its output is not the JSON object {\"ServerURL\", \"Username\", \"Secret\"}".to_owned(),
    })?;
    if reply.secret.is_empty() {
        return Ok(None);
    }
    if reply.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(Secret::new(reply.secret))));
    }
    Ok(Some(Credential::Basic {
        username: reply.username,
        password: Secret::new(reply.secret),
    }))
}

#[cfg(test)]
mod tests;
