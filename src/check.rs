//! `ferry check`: the checks an operator runs by hand before and after installing a node, as one
//! checklist of structured results.
//!
//! The checks run in a fixed order, and one whose prerequisite failed is skipped with the reason.
//! They only read: manifests and configs are fetched, but no layer is downloaded, nothing is
//! loaded into the engine, and no file or folder is created (the blob cache folder is measured,
//! not made).

mod proxy;

use std::path::PathBuf;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Serialize;

use crate::cache::BlobCache;
use crate::daemon_proxy::{self, DaemonProxy, ProxiedHost};
use crate::disk::SpaceCheck;
use crate::engine::{Engine, EngineError};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{Access, Challenge, Client, RegistryError};
use crate::settings::Settings;
use crate::warmup::{self, Plan, Target, WarmupOptions};

pub use proxy::ProxySettings;

/// The checks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    Settings,
    Registry,
    Credentials,
    Images,
    Engine,
    Disk,
    Present,
}

impl CheckName {
    pub const ALL: [CheckName; 7] =
        [CheckName::Settings, CheckName::Registry, CheckName::Credentials, CheckName::Images, CheckName::Engine, CheckName::Disk, CheckName::Present];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Settings => "settings",
            CheckName::Registry => "registry",
            CheckName::Credentials => "credentials",
            CheckName::Images => "images",
            CheckName::Engine => "engine",
            CheckName::Disk => "disk",
            CheckName::Present => "present",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not run, because a check it depends on failed or because a flag turned it off.
    Skip,
}

/// The result of one check. `detail` and `fix` are one line each and never contain a secret.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub status: Status,
    pub detail: String,
    /// The action that corrects a failure, set for every failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(flatten)]
    pub facts: Option<Facts>,
}

impl Check {
    fn pass(name: CheckName, detail: impl Into<String>) -> Check {
        Check { name, status: Status::Pass, detail: detail.into(), fix: None, facts: None }
    }

    fn fail(name: CheckName, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()), facts: None }
    }

    fn skip(name: CheckName, reason: impl Into<String>) -> Check {
        Check { name, status: Status::Skip, detail: reason.into(), fix: None, facts: None }
    }

    fn with(mut self, facts: Facts) -> Check {
        self.facts = Some(facts);
        self
    }
}

/// The data behind a check's detail, as `--json` shows it beside `name` and `status`.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Facts {
    /// The image names the settings produce.
    Settings { images: Vec<String> },
    /// `hosts`: every host contacted by the registry checks, the list a proxy must allow.
    Registry { hosts: Vec<String>, registries: Vec<RegistryFacts> },
    Credentials { registries: Vec<CredentialFacts> },
    Images { images: Vec<ImageFacts> },
    Engine { engine: Box<EngineFacts> },
    Disk { space: Vec<SpaceCheck> },
    Present { images: Vec<PresentFacts> },
}

/// Result of `GET /v2/` on one registry.
#[derive(Clone, Debug, Serialize)]
pub struct RegistryFacts {
    pub host: String,
    /// True for an entry of `REGISTRY_MIRRORS`, which pulls try before the image's registry.
    pub mirror: bool,
    pub url: String,
    /// The proxy the request went through (without user or password), `None` for a direct
    /// connection.
    pub proxy: Option<String>,
    /// `none`, `basic` or `bearer`, or `None` when the request failed.
    pub authentication: Option<&'static str>,
    /// The token server of a Bearer registry.
    pub realm: Option<String>,
    pub error: Option<String>,
}

/// Whether one registry accepted the credentials, and which host checked them.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialFacts {
    pub registry: String,
    pub mirror: bool,
    /// The registry itself for Basic authentication, the token server for Bearer.
    pub checked_by: Option<String>,
    /// False when no credentials are set for this registry and it let ferry in without them.
    pub credentials_set: bool,
    pub error: Option<String>,
}

/// One warmup image in the registry.
#[derive(Clone, Debug, Serialize)]
pub struct ImageFacts {
    pub reference: String,
    pub found: bool,
    /// Digest of the platform manifest.
    pub digest: Option<String>,
    /// Config digest, which is the image ID in Docker.
    pub image_id: Option<String>,
    pub platform: Option<String>,
    pub error: Option<String>,
}

/// The Docker engine ferry talks to, and the proxy settings on both sides.
#[derive(Clone, Debug, Serialize)]
pub struct EngineFacts {
    pub endpoint: String,
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub root_dir: Option<PathBuf>,
    /// ferry's proxy settings (flags, environment or inventory).
    pub ferry_proxy: ProxySettings,
    /// The daemon's proxy settings `ferry proxy configure` writes from ferry's; `None` when ferry
    /// uses no proxy, in which case the daemon should use none either.
    pub expected_daemon_proxy: Option<ProxySettings>,
    /// The daemon's proxy settings from `GET /info`.
    pub daemon_proxy: Option<ProxySettings>,
}

/// Local state of one warmup image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalState {
    /// The engine has the image under its name, with the registry's image ID.
    Present,
    /// The name points to another image ID than the registry's.
    Outdated,
    Missing,
    /// The registry side of the image could not be read.
    Unknown,
}

impl LocalState {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Present => "present",
            LocalState::Outdated => "outdated",
            LocalState::Missing => "missing",
            LocalState::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PresentFacts {
    pub reference: String,
    pub state: LocalState,
    /// Image ID of the registry's image for this platform.
    pub image_id: Option<String>,
    /// Image ID the engine has under the name, when it differs.
    pub local_image_id: Option<String>,
    pub error: Option<String>,
}

/// The checklist.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report { ok: checks.iter().all(|c| c.status != Status::Fail), checks }
    }
}

/// Inputs of the checks besides the settings and the registry client.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Platform the images must exist for.
    pub platform: Platform,
    /// Folder measured for Docker's data root instead of the one the engine reports
    /// (`--docker-root`), on this machine.
    pub docker_root: Option<PathBuf>,
    /// Reports the disk check as skipped (`--skip-disk-check`).
    pub skip_disk_check: bool,
    /// The blob cache a warmup would use; its filesystem is measured too.
    pub cache: BlobCache,
}

/// Returns the checklist when the settings cannot be read: the settings check fails with
/// `error` and every other check is skipped.
pub fn settings_failed(error: &str) -> Report {
    let mut checks = vec![Check::fail(
        CheckName::Settings,
        error,
        "correct the value the message names, in the inventory, the environment or the flags, then run ferry check again",
    )];
    checks.extend(CheckName::ALL[1..].iter().map(|&name| Check::skip(name, "the settings check failed")));
    Report::new(checks)
}

/// Runs every check after the settings were read and the registry client was built from them.
pub async fn run(settings: &Settings, references: &[Reference], client: &Client, options: &CheckOptions) -> Report {
    let mut checks = vec![check_settings(settings, references)];

    // A failing mirror fails its check, but pulls fall back to the image's registry, so only
    // the image registries decide whether the later checks can run.
    let endpoints = endpoints(settings, references);
    let (mut registry, responding) = check_registries(client, settings, &endpoints).await;
    let registries_respond = endpoints.iter().filter(|e| !e.mirror).all(|e| responding.iter().any(|(r, _)| r.host == e.host));
    let (credentials, credentials_accepted) = if registries_respond {
        check_credentials(client, &responding).await
    } else {
        (Check::skip(CheckName::Credentials, "the registry check failed"), false)
    };
    let images = match (registries_respond, credentials_accepted) {
        (true, true) => check_images(client, settings, references, &options.platform).await,
        (true, false) => Check::skip(CheckName::Images, "the credentials check failed"),
        (false, _) => Check::skip(CheckName::Images, "the registry check failed"),
    };
    if let Some(Facts::Registry { hosts, .. }) = &mut registry.facts {
        *hosts = client.contacted_hosts();
    }

    let (engine_check, target) = check_engine(client, settings, &endpoints, options).await;
    let images_passed = images.status == Status::Pass;
    checks.extend([registry, credentials, images, engine_check]);

    let (disk, present) = match (target, images_passed) {
        (None, _) => {
            let reason = "the engine check could not reach the Docker engine";
            (Check::skip(CheckName::Disk, reason), Check::skip(CheckName::Present, reason))
        }
        (Some(_), false) => {
            let reason = "the images check did not pass";
            (Check::skip(CheckName::Disk, reason), Check::skip(CheckName::Present, reason))
        }
        (Some(target), true) => {
            let warmup_options = WarmupOptions { platform: options.platform.clone(), jobs: 1, keep_cache: true };
            match warmup::plan(client, &target, &options.cache, references, &warmup_options).await {
                Ok(plan) => (check_disk(&plan, &target, options), check_present(&plan, &target).await),
                Err(error) => {
                    let message = crate::error_message(&error);
                    let fix = "run ferry check -vv to see the failing request, and correct the engine or the folder it names";
                    (Check::fail(CheckName::Disk, format!("cannot plan the warmup: {message}"), fix), Check::skip(CheckName::Present, "the warmup could not be planned"))
                }
            }
        }
    };
    checks.extend([disk, present]);
    Report::new(checks)
}

fn check_settings(settings: &Settings, references: &[Reference]) -> Check {
    let names: Vec<String> = references.iter().map(ToString::to_string).collect();
    let registry = match &settings.registry_url {
        Some(url) => format!("REGISTRY_URL {} (from {})", url.value, url.source),
        None => "no REGISTRY_URL".to_owned(),
    };
    let count = match names.len() {
        1 => "1 image".to_owned(),
        n => format!("{n} images"),
    };
    let mut detail = format!(
        "{count} from PROVISION_IMAGE_WARMUP (from {}); {registry}; REGISTRY_ENV {:?} (from {})",
        settings.warmup.source, settings.registry_env.value, settings.registry_env.source
    );
    if !settings.mirrors.is_empty() {
        let mirrors: Vec<String> = settings.mirrors.iter().map(ToString::to_string).collect();
        detail.push_str(&format!("; REGISTRY_MIRRORS {}", mirrors.join(", ")));
    }
    Check::pass(CheckName::Settings, detail).with(Facts::Settings { images: names })
}

/// A registry the checks contact: the registry of some images, or a mirror.
struct Endpoint {
    host: String,
    mirror: bool,
    /// Repository whose pull scope a Bearer token is requested for: the first image's on this
    /// host, under the mirror's namespace for a mirror.
    repository: String,
}

/// Returns the registries of the list, each once in list order, then the mirrors.
fn endpoints(settings: &Settings, references: &[Reference]) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for reference in references {
        if !endpoints.iter().any(|e| e.host == reference.registry) {
            endpoints.push(Endpoint { host: reference.registry.clone(), mirror: false, repository: reference.repository.clone() });
        }
    }
    let first_repository = references.first().map(|r| r.repository.clone()).unwrap_or_default();
    for mirror in &settings.mirrors {
        if endpoints.iter().any(|e| e.host == mirror.host) {
            continue;
        }
        let repository = match &mirror.namespace {
            Some(namespace) => format!("{namespace}/{first_repository}"),
            None => first_repository.clone(),
        };
        endpoints.push(Endpoint { host: mirror.host.clone(), mirror: true, repository });
    }
    endpoints
}

/// Returns "registry" or "mirror", for messages.
fn role(endpoint: &Endpoint) -> &'static str {
    if endpoint.mirror {
        "mirror"
    } else {
        "registry"
    }
}

/// Sends `GET /v2/` to each registry and mirror, and records the route (direct or through a
/// proxy) and the authentication each requests. Returns the check and the endpoints that
/// responded.
async fn check_registries<'a>(client: &Client, settings: &Settings, endpoints: &'a [Endpoint]) -> (Check, Vec<(&'a Endpoint, Challenge)>) {
    let mut registries = Vec::new();
    let mut responding = Vec::new();
    let mut failures = Vec::new();
    let mut fixes = Vec::new();
    let mut reachable = Vec::new();
    for endpoint in endpoints {
        let host = &endpoint.host;
        let url = format!("{}/v2/", client.base_url(host));
        let proxy = proxy::route(&settings.proxy, &url);
        let route = match &proxy {
            Some(proxy) => format!("through proxy {proxy}"),
            None => "directly".to_owned(),
        };
        let mut facts = RegistryFacts { host: host.clone(), mirror: endpoint.mirror, url, proxy: proxy.clone(), authentication: None, realm: None, error: None };
        match client.ping(host).await {
            Ok(challenge) => {
                let (authentication, described) = match &challenge {
                    Challenge::None => ("none", "no authentication".to_owned()),
                    Challenge::Basic => ("basic", "Basic authentication".to_owned()),
                    Challenge::Bearer { realm, .. } => ("bearer", format!("token authentication at {realm}")),
                };
                facts.authentication = Some(authentication);
                if let Challenge::Bearer { realm, .. } = &challenge {
                    facts.realm = Some(realm.clone());
                }
                reachable.push(format!("{} {host} responds to /v2/ {route} ({described})", role(endpoint)));
                responding.push((endpoint, challenge));
            }
            Err(error) => {
                let message = crate::error_message(&error);
                failures.push(format!("{} {host}: {message} (connecting {route})", role(endpoint)));
                let fix = match (endpoint.mirror, &error) {
                    (true, RegistryError::Unreachable { .. } | RegistryError::RetriesExhausted { .. }) if proxy.is_none() => {
                        format!("start the mirror at {host} or correct its REGISTRY_MIRRORS entry, or remove it from REGISTRY_MIRRORS")
                    }
                    (true, _) => format!("{}; or remove {host} from REGISTRY_MIRRORS", registry_fix(&error, host, proxy.as_deref())),
                    (false, _) => registry_fix(&error, host, proxy.as_deref()),
                };
                fixes.push(fix);
                facts.error = Some(message);
            }
        }
        registries.push(facts);
    }
    let facts = Facts::Registry { hosts: Vec::new(), registries };
    let check = if failures.is_empty() {
        Check::pass(CheckName::Registry, reachable.join("; "))
    } else {
        Check::fail(CheckName::Registry, failures.join("; "), join_unique(fixes))
    };
    (check.with(facts), responding)
}

/// Sends an authenticated `GET /v2/` to each registry and mirror that responded, which makes
/// the registry (Basic) or its token server (Bearer, with the pull scope of a repository of the
/// list) check the credentials, as `docker login` does. Returns the check and whether every
/// image registry accepted them, which the images check needs.
async fn check_credentials(client: &Client, responding: &[(&Endpoint, Challenge)]) -> (Check, bool) {
    let mut registries = Vec::new();
    let mut accepted = Vec::new();
    let mut failures = Vec::new();
    let mut fixes = Vec::new();
    let mut registries_accept = true;
    for (endpoint, challenge) in responding {
        let host = &endpoint.host;
        let credentials_set = client.has_credential(host);
        let checked_by = match challenge {
            Challenge::None => None,
            Challenge::Basic => Some(host.clone()),
            Challenge::Bearer { realm, .. } => Some(realm_host(realm)),
        };
        let mut facts = CredentialFacts { registry: host.clone(), mirror: endpoint.mirror, checked_by: checked_by.clone(), credentials_set, error: None };
        let Some(checked_by) = checked_by else {
            accepted.push(format!("{} {host} requires no credentials", role(endpoint)));
            registries.push(facts);
            continue;
        };
        // Straight to this host: Client::request would try the mirrors first.
        let what = format!("{} {host}", role(endpoint));
        let url = format!("{}/v2/", client.base_url(host));
        let sent = client.request_with(host, &Access::pull(&endpoint.repository), Method::GET, &url, HeaderMap::new(), None, &what).await;
        let result = match sent {
            Ok(response) if response.status() == StatusCode::OK => Ok(()),
            Ok(response) => Err(RegistryError::Status { what, status: response.status().as_u16(), detail: String::new() }),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) if credentials_set => accepted.push(format!("accepted by {checked_by} for {host}")),
            Ok(()) => accepted.push(format!("none set, and {checked_by} lets anonymous requests in for {host}")),
            Err(error) => {
                let message = crate::error_message(&error);
                failures.push(message.clone());
                fixes.push(registry_fix(&error, host, None));
                facts.error = Some(message);
                registries_accept &= endpoint.mirror;
            }
        }
        registries.push(facts);
    }
    let facts = Facts::Credentials { registries };
    let check = if failures.is_empty() {
        Check::pass(CheckName::Credentials, accepted.join("; "))
    } else {
        Check::fail(CheckName::Credentials, failures.join("; "), join_unique(fixes))
    };
    (check.with(facts), registries_accept)
}

/// Returns `host[:port]` of a token realm URL, or the realm as written when it is not a URL.
fn realm_host(realm: &str) -> String {
    let Ok(url) = url::Url::parse(realm) else { return realm.to_owned() };
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Resolves each image for the platform and fetches its config, which follows the registry's
/// blob redirects, so that their hosts are recorded too.
async fn check_images(client: &Client, settings: &Settings, references: &[Reference], platform: &Platform) -> Check {
    let mut images = Vec::new();
    let mut failures = Vec::new();
    let mut fixes = Vec::new();
    for reference in references {
        let mut facts = ImageFacts { reference: reference.to_string(), found: false, digest: None, image_id: None, platform: None, error: None };
        let result = match client.resolve(reference, platform).await {
            Ok(resolved) => client.fetch_small_blob(reference, &resolved.manifest.config).await.map(|_| resolved),
            Err(error) => Err(error),
        };
        match result {
            Ok(resolved) => {
                facts.found = true;
                facts.digest = Some(resolved.manifest_digest.to_string());
                facts.image_id = Some(resolved.manifest.config.digest.to_string());
                facts.platform = resolved.platform.as_ref().map(ToString::to_string);
            }
            Err(error) => {
                let message = crate::error_message(&error);
                failures.push(format!("{reference}: {message}"));
                fixes.push(match &error {
                    RegistryError::ManifestNotFound { code, .. } => not_found_fix(settings, reference, code),
                    other => registry_fix(other, &reference.registry, None),
                });
                facts.error = Some(message);
            }
        }
        images.push(facts);
    }
    let total = images.len();
    let facts = Facts::Images { images };
    let check = if failures.is_empty() {
        let noun = if total == 1 { "image" } else { "images" };
        Check::pass(CheckName::Images, format!("{total} {noun} found for {platform}, configs readable"))
    } else {
        let detail = format!("{} of {total} failed: {}", failures.len(), failures.join("; "));
        Check::fail(CheckName::Images, detail, join_unique(fixes))
    };
    check.with(facts)
}

/// Returns the fix for an image the registry does not have. For an image named by a short name,
/// the usual cause is a wrong `REGISTRY_ENV` prefix, so the fix names it with its value and source.
fn not_found_fix(settings: &Settings, reference: &Reference, code: &str) -> String {
    // The distribution registry returns MANIFEST_UNKNOWN for a missing repository as well, so
    // only NAME_UNKNOWN separates the two cases.
    let missing = match code {
        "NAME_UNKNOWN" => format!("no repository {}", reference.repository),
        _ => format!("no image {}:{}", reference.repository, reference.lookup()),
    };
    let prefix = &settings.registry_env;
    let registry = settings.registry_url.as_ref().map(|u| &u.value);
    let short_entry = settings
        .warmup
        .value
        .iter()
        .find(|entry| !entry.contains('/') && Reference::expand(entry, registry, &prefix.value).is_ok_and(|expanded| &expanded == reference));
    match short_entry {
        Some(entry) => format!(
            "the registry has {missing}: check the REGISTRY_ENV prefix ({:?}, from {}), which is put before each short name, and the PROVISION_IMAGE_WARMUP entry {entry:?}",
            prefix.value, prefix.source
        ),
        None => format!("the registry has {missing}: correct the PROVISION_IMAGE_WARMUP entry for {reference}, or push the image"),
    }
}

/// Returns the action that corrects a registry error met while checking `host`, reached
/// through `proxy`.
fn registry_fix(error: &RegistryError, host: &str, proxy: Option<&str>) -> String {
    let user_fix = format!(
        "set the right REGISTRY_USERNAME and REGISTRY_PASSWORD (inventory, environment or --password-stdin), or run docker login {host} if they come from Docker's configuration"
    );
    match error {
        RegistryError::Unauthorized { .. } | RegistryError::TokenRejected { .. } | RegistryError::CredentialsRequired { .. } => user_fix,
        RegistryError::ProxyUnreachable { proxy, host, .. } => {
            format!("check that the proxy {proxy} runs and that HTTPS_PROXY or HTTP_PROXY names it, or add {host} to NO_PROXY if this node reaches it directly")
        }
        RegistryError::ProxyAuth { proxy, .. } => {
            format!("put the right user and password for {proxy} in HTTPS_PROXY or HTTP_PROXY, with %, @ and # written as %25, %40 and %23")
        }
        RegistryError::ProxyDenied { proxy, host } | RegistryError::ProxyTunnel { proxy, host, .. } => {
            format!("allow {host} on the proxy {proxy}, or add it to NO_PROXY if this node reaches it directly")
        }
        RegistryError::Tls { .. } => {
            format!("trust the registry's CA with --ca-file FILE or /etc/docker/certs.d/{host}/ca.crt, or pass --plain-http {host} if it serves plain HTTP")
        }
        RegistryError::TokenServer { realm, .. } => format!("make sure this node reaches the token server {realm} and that it works; behind a proxy, allow its host"),
        RegistryError::Denied { .. } => "give the account pull permission on the repository, or correct the image name (REGISTRY_ENV prefix)".to_owned(),
        RegistryError::PlatformNotFound { .. } => "choose a platform the image has with --platform, or push the image for this node's platform".to_owned(),
        RegistryError::Status { status: 404, .. } => "correct REGISTRY_URL: this address is not a registry".to_owned(),
        RegistryError::Unreachable { .. } | RegistryError::RetriesExhausted { .. } | RegistryError::FailedEarlier { .. } | RegistryError::ConnectionLost { .. } => match proxy {
            Some(proxy) => {
                let bare_host = host.rsplit_once(':').map_or(host, |(name, _)| name);
                format!("check that the proxy {proxy} runs and allows {host}, or add {bare_host} to NO_PROXY if the node reaches it directly")
            }
            None => format!(
                "check REGISTRY_URL and that the registry at {host} runs and is reachable from this node; behind a proxy, set HTTPS_PROXY (HTTP_PROXY for a plain-HTTP registry) for ferry"
            ),
        },
        _ => "run ferry check -vv to see the failing request, then correct the registry or the setting it points to".to_owned(),
    }
}

/// Joins fixes with `; `, each once, in order.
fn join_unique(fixes: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for fix in fixes {
        if !unique.contains(&fix) {
            unique.push(fix);
        }
    }
    unique.join("; ")
}

/// Connects to the engine, reads its version and proxy settings, and compares them with what
/// `ferry proxy configure` would write from ferry's. Returns the warmup target as well when the
/// engine responded, whatever the proxy comparison.
async fn check_engine(client: &Client, settings: &Settings, endpoints: &[Endpoint], options: &CheckOptions) -> (Check, Option<Target>) {
    let ferry_proxy = ProxySettings::of_ferry(&settings.proxy);
    let expected = expected_daemon_proxy(client, settings, endpoints);
    let expected_proxy = expected.as_ref().map(ProxySettings::of_expected);
    let unread = |endpoint: String| EngineFacts {
        endpoint,
        version: None,
        api_version: None,
        root_dir: None,
        ferry_proxy: ferry_proxy.clone(),
        expected_daemon_proxy: expected_proxy.clone(),
        daemon_proxy: None,
    };
    let engine = match Engine::connect().await {
        Ok(engine) => engine,
        Err(error) => {
            let (endpoint, detail) = match &error {
                EngineError::Unreachable { endpoint, detail } => (endpoint.clone(), format!("cannot reach the Docker engine at {endpoint}: {detail}")),
                other => (String::new(), crate::error_message(other)),
            };
            let fix = "start Docker (systemctl start docker) or set DOCKER_HOST to the engine's address, such as unix:///var/run/docker.sock";
            return (Check::fail(CheckName::Engine, detail, fix).with(Facts::Engine { engine: Box::new(unread(endpoint)) }), None);
        }
    };
    let mut info = match engine.info().await {
        Ok(info) => info,
        Err(error) => {
            let detail = crate::error_message(&error);
            let fix = "check that the Docker engine at DOCKER_HOST works (docker info) and that this user may use it";
            return (Check::fail(CheckName::Engine, detail, fix).with(Facts::Engine { engine: Box::new(unread(engine.endpoint().to_owned())) }), None);
        }
    };
    if let Some(root) = &options.docker_root {
        info.root_dir = Some(root.clone());
        info.local = true;
    }

    let facts = EngineFacts {
        daemon_proxy: Some(ProxySettings::of_daemon(info.http_proxy.as_deref(), info.https_proxy.as_deref(), info.no_proxy.as_deref())),
        version: Some(info.server_version.clone()),
        api_version: Some(info.api_version.clone()),
        root_dir: info.root_dir.clone(),
        ..unread(engine.endpoint().to_owned())
    };
    let about = format!("Docker {} (API {}) at {}", info.server_version, info.api_version, engine.endpoint());
    let differences = match &expected {
        Some(expected) => daemon_proxy::daemon_differences(expected, &info),
        None => [("HTTP_PROXY", &info.http_proxy), ("HTTPS_PROXY", &info.https_proxy)]
            .into_iter()
            .filter_map(|(name, value)| value.as_deref().map(|v| format!("{name} is {} for the daemon, but ferry uses no proxy", daemon_proxy::mask_passwords(v))))
            .collect(),
    };
    let check = match (differences.is_empty(), &expected) {
        (true, None) => Check::pass(CheckName::Engine, format!("{about}, no proxy for ferry or the daemon")),
        (true, Some(_)) => Check::pass(CheckName::Engine, format!("{about}, the daemon uses ferry's proxy")),
        (false, None) => Check::fail(
            CheckName::Engine,
            format!("{about}: proxy settings differ: {}", differences.join("; ")),
            "remove the Docker daemon's proxy (systemd drop-in, /etc/default/docker or the proxies key of /etc/docker/daemon.json) and restart Docker, or give ferry the same HTTPS_PROXY, HTTP_PROXY and NO_PROXY",
        ),
        (false, Some(expected)) => {
            let mut values: Vec<String> = [("HTTP_PROXY", &expected.http), ("HTTPS_PROXY", &expected.https)]
                .into_iter()
                .filter_map(|(name, url)| url.as_ref().map(|url| format!("{name}={}", proxy::shown(url))))
                .collect();
            values.push(format!("NO_PROXY={}", expected.no_proxy_text()));
            let credentials = if expected.has_credentials() { ", with the user and password of ferry's proxy URL" } else { "" };
            let fix = format!(
                "run ferry proxy configure --restart with the same settings, or set the Docker daemon's proxy (systemd drop-in or /etc/default/docker) to {}{credentials} and restart Docker",
                values.join(" ")
            );
            Check::fail(CheckName::Engine, format!("{about}: proxy settings differ: {}", differences.join("; ")), fix)
        }
    };
    (check.with(Facts::Engine { engine: Box::new(facts) }), Some(Target::Docker { engine, info }))
}

/// Returns the proxy settings `ferry proxy configure` writes for the daemon, or `None` when ferry
/// uses no proxy. They are ferry's proxies and its `NO_PROXY` plus loopback and this node's
/// names. Entries that match a host the daemon must reach through the proxy are left out: the
/// registries, the mirrors and every host contacted so far.
fn expected_daemon_proxy(client: &Client, settings: &Settings, endpoints: &[Endpoint]) -> Option<DaemonProxy> {
    if settings.proxy.is_empty() {
        return None;
    }
    let default_port = |host: &str| if client.base_url(host).starts_with("http://") { 80 } else { 443 };
    let mut proxied: Vec<ProxiedHost> = Vec::new();
    let hosts = settings.registry_url.iter().map(|url| url.value.host.clone()).chain(endpoints.iter().map(|e| e.host.clone())).chain(client.contacted_hosts());
    for host in hosts {
        let parsed = ProxiedHost::parse(&host, default_port(&host));
        if !proxied.contains(&parsed) {
            proxied.push(parsed);
        }
    }
    let names = daemon_proxy::node_names(None);
    daemon_proxy::daemon_proxy(&settings.proxy, &names, &proxied).ok().map(|(proxy, _)| proxy)
}

/// Compares the space the plan needs on each filesystem (the blob cache and Docker's data root)
/// with what is free, as `ferry warmup` does before it downloads anything.
fn check_disk(plan: &Plan, target: &Target, options: &CheckOptions) -> Check {
    let facts = Facts::Disk { space: plan.space.clone() };
    if options.skip_disk_check {
        return Check::skip(CheckName::Disk, "not checked because of --skip-disk-check").with(facts);
    }
    let problems = plan.space_problems();
    if !problems.is_empty() {
        let detail = problems.iter().map(|c| describe_space(c)).collect::<Vec<_>>().join("; ");
        let mut fix = "free space on that filesystem".to_owned();
        if problems.iter().any(|c| c.path == options.cache.root() || c.purposes.iter().any(|p| p.contains("cache"))) {
            fix.push_str(", or point --cache-dir at a larger one");
        }
        fix.push_str("; if Docker's data root is mounted elsewhere on this machine, pass --docker-root DIR");
        return Check::fail(CheckName::Disk, format!("not enough free space: {detail}"), fix).with(facts);
    }
    let measured = matches!(target, Target::Docker { info, .. } if info.local && info.root_dir.is_some());
    let needed: u64 = plan.space.iter().map(|c| c.needed_bytes).sum();
    if needed == 0 {
        return Check::pass(CheckName::Disk, "nothing to download or load, so no space is needed").with(facts);
    }
    if !measured {
        let endpoint = match target {
            Target::Docker { engine, .. } => engine.endpoint().to_owned(),
            Target::Layout { path } => path.display().to_string(),
        };
        return Check::skip(CheckName::Disk, format!("the Docker engine at {endpoint} is remote, so its data root is not measured; pass --docker-root DIR to measure a folder on its filesystem"))
            .with(facts);
    }
    let detail = plan.space.iter().map(describe_space).collect::<Vec<_>>().join("; ");
    Check::pass(CheckName::Disk, format!("enough free space: {detail}")).with(facts)
}

fn describe_space(check: &SpaceCheck) -> String {
    let estimate = match check.estimated_bytes {
        0 => String::new(),
        bytes => format!(" (of which {} is an estimate of unpacked layers)", format_bytes(bytes)),
    };
    format!(
        "{} needs {}{estimate} for {}, {} free",
        check.path.display(),
        format_bytes(check.needed_bytes),
        check.purposes.join(" and "),
        format_bytes(check.free_bytes)
    )
}

/// Formats a byte count with binary units, as `1.50 MiB`.
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// Reports, from the plan, which images the engine has up to date under their names, and
/// distinguishes a missing name from one that points to another image ID.
async fn check_present(plan: &Plan, target: &Target) -> Check {
    let Target::Docker { engine, .. } = target else {
        return Check::skip(CheckName::Present, "the target is not a Docker engine");
    };
    let mut images = Vec::new();
    for planned in &plan.images {
        let reference = planned.reference.to_string();
        let facts = match &planned.prepared {
            Err(error) => PresentFacts { reference, state: LocalState::Unknown, image_id: None, local_image_id: None, error: Some(error.clone()) },
            Ok(prepared) => {
                let image_id = prepared.config_digest().to_string();
                let name = planned.reference.tagged_name().unwrap_or_else(|| image_id.clone());
                let (state, local_image_id, error) = match (prepared.present, engine.image(&name).await) {
                    (true, _) => (LocalState::Present, None, None),
                    (false, Ok(Some(local))) if local.id != image_id => (LocalState::Outdated, Some(local.id), None),
                    (false, Ok(_)) => (LocalState::Missing, None, None),
                    (false, Err(error)) => (LocalState::Unknown, None, Some(crate::error_message(&error))),
                };
                PresentFacts { reference, state, image_id: Some(image_id), local_image_id, error }
            }
        };
        images.push(facts);
    }

    let total = images.len();
    let not_present: Vec<String> = images
        .iter()
        .filter(|i| i.state != LocalState::Present)
        .map(|i| match (i.state, &i.local_image_id, &i.error) {
            (LocalState::Outdated, Some(local), _) => format!("{} outdated (the engine has {local}, the registry {})", i.reference, i.image_id.as_deref().unwrap_or("-")),
            (LocalState::Unknown, _, Some(error)) => format!("{} unknown: {error}", i.reference),
            (state, _, _) => format!("{} {}", i.reference, state.as_str()),
        })
        .collect();
    let facts = Facts::Present { images };
    let check = if not_present.is_empty() {
        let noun = if total == 1 { "image" } else { "images" };
        Check::pass(CheckName::Present, format!("{total} {noun} present and up to date"))
    } else {
        let detail = format!("{} of {total} not up to date: {}", not_present.len(), not_present.join("; "));
        Check::fail(CheckName::Present, detail, "run ferry warmup with the same settings: it loads only what is missing or outdated")
    };
    check.with(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_failure_skips_the_rest() {
        let report = settings_failed("REGISTRY_URL is invalid");
        assert!(!report.ok);
        assert_eq!(report.checks.len(), CheckName::ALL.len());
        assert_eq!(report.checks[0].status, Status::Fail);
        assert!(report.checks[0].fix.is_some());
        assert!(report.checks[1..].iter().all(|c| c.status == Status::Skip));
    }

    #[test]
    fn check_json_flattens_facts() {
        let check = Check::pass(CheckName::Registry, "ok").with(Facts::Registry { hosts: vec!["a:1".into()], registries: Vec::new() });
        let value = serde_json::to_value(&check).unwrap();
        assert_eq!(value["name"], "registry");
        assert_eq!(value["status"], "pass");
        assert_eq!(value["hosts"][0], "a:1");
        assert!(value.get("fix").is_none(), "{value}");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn realm_host_keeps_the_port() {
        assert_eq!(realm_host("https://localhost:5001/token"), "localhost:5001");
        assert_eq!(realm_host("https://auth.example.com/token"), "auth.example.com");
    }
}
