//! The Docker daemon's proxy settings, written by `ferry proxy configure` from the same
//! `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` that ferry uses.
//!
//! Three methods write the same settings:
//! - [`Method::EnvFile`]: the variables in `/etc/default/docker`, which the docker unit reads
//!   through an `EnvironmentFile=` line in its `[Service]` section;
//! - [`Method::DropIn`]: `Environment=` lines in
//!   `/etc/systemd/system/docker.service.d/http-proxy.conf`;
//! - [`Method::DaemonJson`]: the `proxies` key of `/etc/docker/daemon.json` (Docker 23 and later).
//!
//! [`plan`] computes each file's new text and writes nothing. [`apply`] writes the files that
//! change, each after a backup, through a temporary file renamed into place. Files that hold a
//! proxy URL with credentials get mode 0600. Diffs mask proxy passwords, and so does
//! [`ProxyUrl`]'s `Display`.

mod files;
mod ordered_json;

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::SystemTime;

use regex::Regex;

use crate::engine::EngineInfo;
use crate::proxy::{NoProxy, ProxyConfig, ProxyUrl};

pub const ENV_FILE: &str = "/etc/default/docker";
/// Paths of the docker unit, in systemd's order of precedence: a copy in `/etc` wins over the
/// package's unit.
pub const UNIT_FILES: [&str; 3] = ["/etc/systemd/system/docker.service", "/usr/lib/systemd/system/docker.service", "/lib/systemd/system/docker.service"];
pub const DROP_IN: &str = "/etc/systemd/system/docker.service.d/http-proxy.conf";
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Entries always in the daemon's `NO_PROXY`.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Mode of a new file without credentials.
const DEFAULT_MODE: u32 = 0o644;
/// Mode of every file that contains a proxy URL with credentials, and of every backup.
const SECRET_MODE: u32 = 0o600;

/// Destination of the daemon's proxy settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    EnvFile,
    DropIn,
    DaemonJson,
}

impl Method {
    /// Returns the name used by `--method`.
    pub fn name(self) -> &'static str {
        match self {
            Method::EnvFile => "env-file",
            Method::DropIn => "drop-in",
            Method::DaemonJson => "daemon-json",
        }
    }
}

/// A failure to compute or write the daemon's settings. No message contains a password.
#[derive(Debug, thiserror::Error)]
pub enum DaemonProxyError {
    #[error("no proxy is configured: set HTTPS_PROXY or HTTP_PROXY in the inventory or the environment, or pass --https-proxy")]
    NoProxy,
    #[error("the docker unit was not found: none of {} exists; install Docker first, or pass --root DIR when the system is mounted elsewhere", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    UnitNotFound { searched: Vec<PathBuf> },
    #[error("{} has no [Service] section, so ferry cannot add EnvironmentFile={ENV_FILE} to it; check the unit file", path.display())]
    NoServiceSection { path: PathBuf },
    #[error("{} is not valid JSON ({detail}); fix the file, then run ferry again", path.display())]
    InvalidJson { path: PathBuf, detail: String },
    #[error("{} does not contain a JSON object at the top level; fix the file, then run ferry again", path.display())]
    NotAnObject { path: PathBuf },
    #[error("{} is a symbolic link, which replacing the file would break: replace the link with a copy of its target, then run ferry again", path.display())]
    SymbolicLink { path: PathBuf },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{command} failed: {detail}")]
    Systemctl { command: String, detail: String },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DaemonProxyError + 'a {
    move |source| DaemonProxyError::Io { action, path: path.to_owned(), source }
}

/// The proxy settings written for the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonProxy {
    pub http: Option<ProxyUrl>,
    pub https: Option<ProxyUrl>,
    /// `NO_PROXY` entries, without duplicates; never empty, because loopback is always there.
    pub no_proxy: Vec<String>,
}

impl DaemonProxy {
    /// True when a proxy URL carries a user (and usually a password).
    pub fn has_credentials(&self) -> bool {
        self.http.iter().chain(&self.https).any(ProxyUrl::has_credentials)
    }

    /// Returns `NO_PROXY` as written: the entries separated by commas.
    pub fn no_proxy_text(&self) -> String {
        self.no_proxy.join(",")
    }

    /// Returns each upper-case variable to write with its value, credentials included.
    fn variables(&self) -> Vec<(&'static str, String)> {
        let mut variables = Vec::new();
        if let Some(url) = &self.http {
            variables.push(("HTTP_PROXY", url_text(url)));
        }
        if let Some(url) = &self.https {
            variables.push(("HTTPS_PROXY", url_text(url)));
        }
        if !self.no_proxy.is_empty() {
            variables.push(("NO_PROXY", self.no_proxy_text()));
        }
        variables
    }
}

/// Returns the proxy URL to write, password included, without the `/` the URL parser adds.
fn url_text(url: &ProxyUrl) -> String {
    url.url().as_str().trim_end_matches('/').to_owned()
}

/// A host the daemon must reach through the proxy: a registry, a token server or a blob store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedHost {
    pub host: String,
    pub port: Option<u16>,
}

impl ProxiedHost {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; without a port, `default_port` applies.
    pub fn parse(text: &str, default_port: u16) -> ProxiedHost {
        let text = text.trim();
        let (host, port) = match text.rsplit_once(':') {
            // A bare IPv6 address has more than one colon and no port.
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, port.parse().ok()),
            _ => (text, None),
        };
        ProxiedHost { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port: port.or(Some(default_port)) }
    }

    /// True for loopback hosts, which neither Docker nor ferry send through a proxy.
    fn is_loopback(&self) -> bool {
        NoProxy::default().matches(&self.host, self.port)
    }
}

impl std::fmt::Display for ProxiedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.host),
            (false, Some(port)) => write!(f, "{}:{port}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

/// A `NO_PROXY` entry left out of the daemon's list because it matches a host the daemon must
/// reach through the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedEntry {
    pub entry: String,
    /// The proxied host it matches, as `host:port`.
    pub host: String,
}

/// Computes the daemon's proxy settings from ferry's.
///
/// `NO_PROXY` is the operator's entries, then loopback (`localhost`, `127.0.0.1`, `::1`), then
/// `node_names`, without duplicates (compared case-insensitively). An entry that matches one of
/// `proxied` would send that host's traffic around the proxy, so it is left out and returned in
/// the second list. Loopback hosts in `proxied` are skipped, because no entry changes how they
/// are reached.
pub fn daemon_proxy(config: &ProxyConfig, node_names: &[String], proxied: &[ProxiedHost]) -> Result<(DaemonProxy, Vec<DroppedEntry>), DaemonProxyError> {
    if config.is_empty() {
        return Err(DaemonProxyError::NoProxy);
    }
    let operator = config.no_proxy.as_str().split([',', ' ', '\t', '\n']).map(str::trim).filter(|e| !e.is_empty());
    let candidates = operator.chain(LOOPBACK).chain(node_names.iter().map(String::as_str));
    let checked: Vec<&ProxiedHost> = proxied.iter().filter(|host| !host.is_loopback()).collect();

    let mut no_proxy: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for entry in candidates {
        if no_proxy.iter().chain(dropped.iter().map(|d: &DroppedEntry| &d.entry)).any(|seen| seen.eq_ignore_ascii_case(entry)) {
            continue;
        }
        let matched = NoProxy::parse(entry).ok().and_then(|list| checked.iter().find(|host| list.matches(&host.host, host.port)));
        match matched {
            Some(host) => dropped.push(DroppedEntry { entry: entry.to_owned(), host: host.to_string() }),
            None => no_proxy.push(entry.to_owned()),
        }
    }
    let proxy = DaemonProxy { http: config.http.clone(), https: config.https.clone(), no_proxy };
    Ok((proxy, dropped))
}

/// Returns the node's own names: its hostname and, when known, its fully qualified name.
///
/// With `root`, the hostname is the first line of `<root>/etc/hostname`; without, the running
/// system's. A hostname with a dot is taken as the fully qualified name, and its first label is
/// added as the short name. Otherwise the fully qualified name comes from the line of
/// `<root>/etc/hosts` that lists the hostname. DNS is not asked.
pub fn node_names(root: Option<&Path>) -> Vec<String> {
    let hostname = match root {
        Some(root) => fs::read_to_string(under_root(root, "/etc/hostname"))
            .ok()
            .and_then(|text| text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned)),
        None => Some(rustix::system::uname().nodename().to_string_lossy().into_owned()),
    };
    let Some(hostname) = hostname.filter(|h| !h.is_empty() && h != "localhost") else { return Vec::new() };
    let mut names = vec![hostname.clone()];
    if let Some((short, _)) = hostname.split_once('.') {
        names.push(short.to_owned());
        return names;
    }
    let hosts = fs::read_to_string(under_root(root.unwrap_or(Path::new("/")), "/etc/hosts")).unwrap_or_default();
    if let Some(fqdn) = fqdn_from_hosts(&hosts, &hostname) {
        names.push(fqdn);
    }
    names
}

/// Finds the fully qualified name of `hostname` in an `/etc/hosts` text: a name on the same line
/// that starts with `hostname.`.
fn fqdn_from_hosts(hosts: &str, hostname: &str) -> Option<String> {
    let prefix = format!("{}.", hostname.to_ascii_lowercase());
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !names.iter().any(|name| name.eq_ignore_ascii_case(hostname)) {
            return None;
        }
        names.iter().find(|name| name.to_ascii_lowercase().starts_with(&prefix)).map(|name| name.to_string())
    })
}

/// Returns `path` (absolute, as on the target system) under `root`.
fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// One file a method writes: its text and mode now and after the change.
#[derive(Clone, Debug)]
pub struct FileChange {
    /// The path written, under the root.
    pub path: PathBuf,
    /// The text now; `None` when the file does not exist yet.
    pub old: Option<String>,
    pub old_mode: Option<u32>,
    pub new: String,
    pub mode: u32,
    /// Copy of the old text, set by [`apply`] when the file existed and changed.
    pub backup: Option<PathBuf>,
    owner: Option<(u32, u32)>,
}

impl FileChange {
    /// True when the text or the mode changes.
    pub fn is_change(&self) -> bool {
        self.old.as_deref() != Some(self.new.as_str()) || self.old_mode != Some(self.mode)
    }

    /// Returns a unified diff of the text, with proxy passwords masked; empty when the text
    /// stays the same.
    pub fn diff(&self) -> String {
        let old = mask_passwords(self.old.as_deref().unwrap_or(""));
        let new = mask_passwords(&self.new);
        if old == new && self.old.is_some() {
            return String::new();
        }
        let path = self.path.display().to_string();
        let old_name = if self.old.is_some() { path.clone() } else { "/dev/null".to_owned() };
        similar::TextDiff::from_lines(&old, &new).unified_diff().header(&old_name, &path).to_string()
    }
}

/// Replaces the password of every URL in `text` (`scheme://user:password@`) with `xxxxx`.
pub fn mask_passwords(text: &str) -> String {
    static URL_PASSWORD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@"'\\]*):[^\s"'\\]*@"#).expect("valid regex"));
    URL_PASSWORD.replace_all(text, "${1}:xxxxx@").into_owned()
}

/// The files one method writes, and what to tell the operator about them.
#[derive(Clone, Debug)]
pub struct Plan {
    pub method: Method,
    pub files: Vec<FileChange>,
    /// Settings elsewhere that could hide the ones written, such as proxy variables that an
    /// `EnvironmentFile=` sets over a drop-in's `Environment=`.
    pub warnings: Vec<String>,
}

impl Plan {
    /// True when any file changes; the daemon must then be reloaded and restarted, and only then.
    pub fn needs_restart(&self) -> bool {
        self.files.iter().any(FileChange::is_change)
    }
}

/// Computes the files `method` writes under `root` for `proxy`, and writes nothing.
pub fn plan(root: &Path, method: Method, proxy: &DaemonProxy) -> Result<Plan, DaemonProxyError> {
    let mut plan = Plan { method, files: Vec::new(), warnings: Vec::new() };
    match method {
        Method::EnvFile => plan_env_file(root, proxy, &mut plan)?,
        Method::DropIn => plan_drop_in(root, proxy, &mut plan)?,
        Method::DaemonJson => plan_daemon_json(root, proxy, &mut plan)?,
    }
    Ok(plan)
}

fn plan_env_file(root: &Path, proxy: &DaemonProxy, plan: &mut Plan) -> Result<(), DaemonProxyError> {
    let unit_path = find_unit(root)?;
    let env_path = under_root(root, ENV_FILE);
    let env = read_file(&env_path)?;
    plan.files.push(change(env_path, env, proxy.has_credentials(), |old| Ok(files::env_file(old, proxy)))?);
    let unit = read_file(&unit_path)?;
    plan.files.push(change(unit_path.clone(), unit, false, |old| {
        files::unit_with_env_file(old.unwrap_or_default()).ok_or_else(|| DaemonProxyError::NoServiceSection { path: unit_path.clone() })
    })?);

    // A file read only for a warning does not stop the run when it cannot be read.
    let drop_in = under_root(root, DROP_IN);
    if read_file(&drop_in).ok().flatten().is_some_and(|file| files::drop_in_sets_proxy(&file.text)) {
        plan.warnings.push(format!("{} also sets proxy variables, which {ENV_FILE} overrides; remove that drop-in to keep one source", drop_in.display()));
    }
    Ok(())
}

fn plan_drop_in(root: &Path, proxy: &DaemonProxy, plan: &mut Plan) -> Result<(), DaemonProxyError> {
    let path = under_root(root, DROP_IN);
    let existing = read_file(&path)?;
    plan.files.push(change(path, existing, proxy.has_credentials(), |_| Ok(files::drop_in(proxy)))?);

    // Files read only for a warning do not stop the run when they cannot be read.
    let env_path = under_root(root, ENV_FILE);
    let env_sets_proxy = read_file(&env_path).ok().flatten().is_some_and(|file| files::env_file_sets_proxy(&file.text));
    let unit_reads_env = match find_unit(root) {
        Ok(unit) => read_file(&unit).ok().flatten().is_some_and(|file| files::unit_reads_env_file(&file.text)),
        Err(_) => false,
    };
    if env_sets_proxy && unit_reads_env {
        plan.warnings.push(format!(
            "{} sets proxy variables and the docker unit reads it with EnvironmentFile=, which overrides the drop-in's Environment= lines; remove the proxy variables from {}",
            env_path.display(),
            env_path.display()
        ));
    }
    Ok(())
}

fn plan_daemon_json(root: &Path, proxy: &DaemonProxy, plan: &mut Plan) -> Result<(), DaemonProxyError> {
    let path = under_root(root, DAEMON_JSON);
    let existing = read_file(&path)?;
    plan.files.push(change(path.clone(), existing, proxy.has_credentials(), |old| {
        files::daemon_json(old, proxy).map_err(|problem| match problem {
            files::JsonProblem::Invalid(detail) => DaemonProxyError::InvalidJson { path: path.clone(), detail },
            files::JsonProblem::NotAnObject => DaemonProxyError::NotAnObject { path: path.clone() },
        })
    })?);
    Ok(())
}

/// Returns the docker unit that systemd reads, under `root`.
fn find_unit(root: &Path) -> Result<PathBuf, DaemonProxyError> {
    let searched: Vec<PathBuf> = UNIT_FILES.iter().map(|path| under_root(root, path)).collect();
    searched.iter().find(|path| path.is_file()).cloned().ok_or(DaemonProxyError::UnitNotFound { searched })
}

/// A file's current text, mode and owner.
struct Existing {
    text: String,
    mode: u32,
    owner: (u32, u32),
}

/// Reads a file; `None` when it does not exist. A symbolic link is rejected, because the rename
/// that replaces the file would replace the link.
fn read_file(path: &Path) -> Result<Option<Existing>, DaemonProxyError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", path)(error)),
    };
    if metadata.file_type().is_symlink() {
        return Err(DaemonProxyError::SymbolicLink { path: path.to_owned() });
    }
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let text = String::from_utf8(bytes).map_err(|_| DaemonProxyError::NotText { path: path.to_owned() })?;
    Ok(Some(Existing { text, mode: metadata.mode() & 0o7777, owner: (metadata.uid(), metadata.gid()) }))
}

/// Builds the change of one file from its current state and `render`, which returns the new
/// text. A file that will hold credentials gets mode 0600; any other keeps its mode.
fn change(
    path: PathBuf,
    existing: Option<Existing>,
    secret: bool,
    render: impl FnOnce(Option<&str>) -> Result<String, DaemonProxyError>,
) -> Result<FileChange, DaemonProxyError> {
    let new = render(existing.as_ref().map(|e| e.text.as_str()))?;
    let old_mode = existing.as_ref().map(|e| e.mode);
    let mode = match (secret, old_mode) {
        (true, _) => SECRET_MODE,
        (false, Some(mode)) => mode,
        (false, None) => DEFAULT_MODE,
    };
    Ok(FileChange {
        path,
        owner: existing.as_ref().map(|e| e.owner),
        old: existing.map(|e| e.text),
        old_mode,
        new,
        mode,
        backup: None,
    })
}

/// Writes every file of the plan that changes: first a backup of the old text
/// (`FILE.ferry-backup-<UTC time>`, mode 0600), then the new text into a temporary file in the
/// same folder, renamed over the file. Owner and mode carry over, except that a file holding
/// credentials becomes 0600. Missing folders are created.
///
/// NOTE: the files are written one after the other, so a failure on the second file leaves the
/// first one changed (with its backup).
pub fn apply(plan: &mut Plan, now: SystemTime) -> Result<(), DaemonProxyError> {
    let stamp = timestamp(now);
    for file in plan.files.iter_mut().filter(|file| file.is_change()) {
        if let Some(old) = &file.old {
            file.backup = Some(write_backup(&file.path, old, &stamp)?);
        }
        write_atomic(&file.path, &file.new, file.mode, file.owner)?;
    }
    Ok(())
}

fn write_backup(path: &Path, text: &str, stamp: &str) -> Result<PathBuf, DaemonProxyError> {
    let name = path.file_name().expect("a file path").to_string_lossy();
    for attempt in 0u32.. {
        let suffix = if attempt == 0 { String::new() } else { format!("-{attempt}") };
        let backup = path.with_file_name(format!("{name}.ferry-backup-{stamp}{suffix}"));
        let mut file = match fs::OpenOptions::new().write(true).create_new(true).mode(SECRET_MODE).open(&backup) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io_error("create the backup", &backup)(error)),
        };
        file.write_all(text.as_bytes()).map_err(io_error("write the backup", &backup))?;
        file.sync_all().map_err(io_error("write the backup", &backup))?;
        return Ok(backup);
    }
    unreachable!("the attempt counter covers every u32")
}

fn write_atomic(path: &Path, text: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<(), DaemonProxyError> {
    let folder = path.parent().expect("an absolute file path");
    fs::create_dir_all(folder).map_err(io_error("create the folder", folder))?;
    let mut temp = tempfile::Builder::new().prefix(".ferry-").tempfile_in(folder).map_err(io_error("create a temporary file in", folder))?;
    temp.write_all(text.as_bytes()).map_err(io_error("write", temp.path()))?;
    let file = temp.as_file();
    // chown before chmod: chown may clear the set-user-ID and set-group-ID bits.
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(io_error("set the owner of", path))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_error("set the mode of", path))?;
    file.sync_all().map_err(io_error("write", path))?;
    temp.persist(path).map_err(|error| io_error("replace", path)(error.error))?;
    fs::File::open(folder).and_then(|dir| dir.sync_all()).map_err(io_error("flush the folder", folder))?;
    Ok(())
}

/// Formats `now` as `YYYYMMDDTHHMMSSZ` (UTC).
fn timestamp(now: SystemTime) -> String {
    let seconds = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, time) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Proleptic Gregorian date from days since 1970-01-01, counted in 400-year eras of 146,097
    // days, with years starting on 1 March so that the leap day comes last.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", time / 3_600, time / 60 % 60, time % 60)
}

/// Runs `systemctl daemon-reload`, then `systemctl restart docker`, with `systemctl` as the
/// program.
pub async fn restart_docker(systemctl: &OsStr) -> Result<(), DaemonProxyError> {
    for arguments in [&["daemon-reload"][..], &["restart", "docker"][..]] {
        let command = format!("{} {}", systemctl.to_string_lossy(), arguments.join(" "));
        let output = tokio::process::Command::new(systemctl)
            .args(arguments)
            .output()
            .await
            .map_err(|error| DaemonProxyError::Systemctl { command: command.clone(), detail: error.to_string() })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            let detail = if stderr.is_empty() { output.status.to_string() } else { format!("{}: {stderr}", output.status) };
            return Err(DaemonProxyError::Systemctl { command, detail });
        }
    }
    Ok(())
}

/// Returns how the proxy the running daemon reports differs from `proxy`; empty when the daemon
/// uses it. Docker hides credentials in `GET /info`, so proxy URLs are compared by scheme, host
/// and port, and `NO_PROXY` as a set of entries.
pub fn daemon_differences(proxy: &DaemonProxy, info: &EngineInfo) -> Vec<String> {
    let mut differences = Vec::new();
    for (name, expected, reported) in [("HTTP_PROXY", &proxy.http, &info.http_proxy), ("HTTPS_PROXY", &proxy.https, &info.https_proxy)] {
        let Some(expected) = expected else { continue };
        let reported_url = reported.as_deref().and_then(|text| ProxyUrl::parse(text).ok());
        let same = reported_url.as_ref().is_some_and(|url| url.url().scheme() == expected.url().scheme() && url.address() == expected.address());
        if !same {
            let now = reported.as_deref().map_or("not set".to_owned(), mask_passwords);
            differences.push(format!("{name} is {now}, expected {expected}"));
        }
    }
    let entries = |text: &str| -> std::collections::BTreeSet<String> {
        text.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()).map(str::to_ascii_lowercase).collect()
    };
    let reported = info.no_proxy.as_deref().unwrap_or("");
    if entries(reported) != entries(&proxy.no_proxy_text()) {
        let now = if reported.is_empty() { "not set".to_owned() } else { reported.to_owned() };
        differences.push(format!("NO_PROXY is {now}, expected {}", proxy.no_proxy_text()));
    }
    differences
}

#[cfg(test)]
mod tests;
