//! Registry client for the pull side of the OCI distribution API.
//!
//! It is built on `reqwest` rather than a registry crate, because ferry needs control over steps
//! that such crates leave out or hide. These are retries with backoff for 429 and 502/503/504,
//! `Range` resumes that continue a running hash, redirects that drop `Authorization` when they
//! leave the registry, and per-host TLS roots following Docker's `certs.d` convention.

mod auth;
pub mod blob;
mod push;
mod rate;
mod retry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

pub use auth::Challenge;
pub use push::Pushed;
pub use rate::RateLimit;
pub use retry::RetryPolicy;

use crate::credentials::Credential;
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Document, ImageManifest};
use crate::platform::Platform;
use crate::proxy::ProxyConfig;
use crate::reference::{Reference, RegistryUrl};
use auth::{TokenCache, TokenKey};

/// Largest manifest or config ferry reads into memory.
const MAX_DOCUMENT_BYTES: u64 = 8 << 20;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Index levels followed before giving up (indexes may nest).
const MAX_INDEX_DEPTH: usize = 4;

/// Connection settings that apply to every registry ferry talks to.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Extra CA certificates (PEM) trusted for every host, beside the system roots.
    pub ca_files: Vec<PathBuf>,
    /// Docker's per-host CA folder: `<dir>/<host:port>/*.crt` is trusted for that host only.
    pub certs_dir: Option<PathBuf>,
    /// Hosts (`host` or `host:port`) reached over plain HTTP, by explicit request only.
    pub plain_http: Vec<String>,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Maximum wait for the next bytes of a response before the attempt counts as failed.
    pub read_timeout: Duration,
    /// Proxies for every request; empty means direct connections (the environment is not read
    /// here, because the settings already merged it).
    pub proxy: ProxyConfig,
    /// Registries tried first for every pull, in order, before the image's own registry: a
    /// pull-through cache or a copy with the same repository names (under its namespace).
    pub mirrors: Vec<RegistryUrl>,
    /// Maximum download rate in bytes per second, for all downloads together.
    pub limit_rate: Option<u64>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_files: Vec::new(),
            certs_dir: Some(PathBuf::from("/etc/docker/certs.d")),
            plain_http: Vec::new(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            proxy: ProxyConfig::default(),
            mirrors: Vec::new(),
            limit_rate: None,
        }
    }
}

/// A failed registry operation. Each variant names the host, image or blob involved; none
/// carries a password or token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {host}: {detail}; check REGISTRY_URL and that the registry runs and is reachable from this node")]
    Unreachable { host: String, detail: String },
    #[error("cannot reach proxy {proxy} (used for {host}): {detail}; check HTTPS_PROXY and HTTP_PROXY, or add {host} to NO_PROXY if it is reachable directly")]
    ProxyUnreachable { proxy: String, host: String, detail: String },
    #[error("proxy {proxy} {} (HTTP 407) for {host}: {}", if *with_credentials { "rejected the credentials in its URL" } else { "requires credentials" }, if *with_credentials { "check the user and password in the proxy URL, with %, @ and # written as %25, %40 and %23" } else { "put them in the proxy URL, such as http://user:password@proxy:3128" })]
    ProxyAuth { proxy: String, host: String, with_credentials: bool },
    #[error("proxy {proxy} refused access to {host} (HTTP 403): allow {host} on the proxy, or add it to NO_PROXY if it is reachable directly")]
    ProxyDenied { proxy: String, host: String },
    #[error("proxy {proxy} did not open a tunnel to {host} ({detail}): the proxy denies CONNECT to that host or port, or cannot reach it; allow {host} on the proxy")]
    ProxyTunnel { proxy: String, host: String, detail: String },
    #[error("{what}: connection lost while reading the response: {detail}")]
    ConnectionLost { what: String, detail: String },
    #[error("TLS verification failed for {host}: {detail}; trust its CA with --ca-file FILE or /etc/docker/certs.d/{host}/ca.crt, or use --plain-http {host} if it really serves plain HTTP")]
    Tls { host: String, detail: String },
    #[error("registry {registry} rejected the credentials of {user} (HTTP 401): check {hint}")]
    Unauthorized { registry: String, user: String, hint: String },
    #[error("token server {realm} rejected the credentials of {user} for registry {registry} (HTTP 401): check {hint}")]
    TokenRejected { registry: String, realm: String, user: String, hint: String },
    #[error("no space left on the device holding {}: free some space, or point --cache-dir at a larger filesystem, then run ferry again", path.display())]
    DiskFull { path: PathBuf },
    #[error("skipped because registry {host} failed earlier in this run: {earlier}")]
    FailedEarlier { host: String, earlier: String },
    #[error("registry {registry} requires credentials: set {hint}, or log in with docker login")]
    CredentialsRequired { registry: String, hint: String },
    #[error("access to {what} denied for {user} (HTTP {status}): the account lacks pull permission, or the repository name (REGISTRY_ENV prefix) is wrong")]
    Denied { what: String, user: String, status: u16 },
    #[error("{what}: denied for {user} (HTTP 403): the account lacks push permission on {repository}")]
    PushDenied { what: String, user: String, repository: String },
    #[error("image {reference} not found in registry {registry}: check the image name and the REGISTRY_ENV prefix ({code})")]
    ManifestNotFound { reference: String, registry: String, code: String },
    #[error("blob {digest} of {name} not found in the registry (HTTP 404)")]
    BlobNotFound { name: String, digest: Digest },
    #[error("{what}: unexpected HTTP {status}{detail}")]
    Status { what: String, status: u16, detail: String },
    #[error("{what}: gave up after {attempts} {}, last error: {last}", if *attempts == 1 { "attempt" } else { "attempts" })]
    RetriesExhausted { what: String, attempts: u32, last: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}; the data was corrupted in transit or by the registry")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what} is larger than {limit} bytes, which ferry does not accept for a manifest or config")]
    TooLarge { what: String, limit: u64 },
    #[error("image {reference} has no image for platform {wanted}; available: {}; choose one with --platform", available.join(", "))]
    PlatformNotFound { reference: String, wanted: String, available: Vec<String> },
    #[error("token server {realm}: {detail}")]
    TokenServer { realm: String, detail: String },
    #[error("refused redirect from {from} to {to}: it leaves HTTPS")]
    InsecureRedirect { from: String, to: String },
    #[error("registry {host} asks for an unsupported authentication scheme: {header}")]
    UnsupportedAuth { host: String, header: String },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl RegistryError {
    /// True for failures a later attempt may not see: dropped connections and timeouts.
    fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unreachable { .. } | RegistryError::ConnectionLost { .. } | RegistryError::ProxyUnreachable { .. })
    }
}

/// A manifest resolved to one platform, with the raw bytes it was verified against.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub reference: Reference,
    /// Digest of the document the tag points to (an index for multi-platform images).
    pub top_digest: Digest,
    /// Digest and bytes of the platform manifest.
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest_raw: Vec<u8>,
    pub manifest: ImageManifest,
    /// Platform chosen from an index, or `None` for a single-platform image.
    pub platform: Option<Platform>,
}

/// Makes the body of one attempt of a request; called again for each retry.
pub(crate) type BodyFactory<'a> = dyn Fn() -> Result<reqwest::Body, RegistryError> + Send + Sync + 'a;

/// Access a request's token must grant: pull, or pull and push, on one repository, plus pull on
/// the repository a blob is mounted from.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    pub repository: String,
    pub push: bool,
    pub mount_from: Option<String>,
}

impl Access {
    pub fn pull(repository: &str) -> Access {
        Access { repository: repository.to_owned(), push: false, mount_from: None }
    }

    pub fn push(repository: &str) -> Access {
        Access { repository: repository.to_owned(), push: true, mount_from: None }
    }

    /// Returns the token scopes, separated by spaces.
    fn scope(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        let mut scope = format!("repository:{}:{actions}", self.repository);
        if let Some(from) = &self.mount_from {
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        scope
    }
}

/// The registry client, shared by all transfers of one run.
pub struct Client {
    options: ClientOptions,
    credentials: HashMap<String, Credential>,
    http: Mutex<HashMap<String, reqwest::Client>>,
    challenges: tokio::sync::Mutex<HashMap<String, Challenge>>,
    /// Hosts whose `/v2/` check failed in this run, with the error.
    unreachable: Mutex<HashMap<String, String>>,
    tokens: Mutex<TokenCache>,
    /// Every `host[:port]` a request was sent to in this run: registries, token realms and
    /// redirect targets.
    contacted: Mutex<std::collections::BTreeSet<String>>,
    /// Mirrors whose failure was already logged, so each is reported once.
    mirrors_reported: Mutex<std::collections::HashSet<String>>,
    rate_limit: Option<RateLimit>,
    /// Per host: where its credentials come from, for error messages.
    credential_hints: HashMap<String, String>,
}

impl Client {
    pub fn new(options: ClientOptions) -> Client {
        Client {
            rate_limit: options.limit_rate.map(RateLimit::new),
            credential_hints: HashMap::new(),
            options,
            credentials: HashMap::new(),
            http: Mutex::new(HashMap::new()),
            challenges: tokio::sync::Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashMap::new()),
            tokens: Mutex::new(TokenCache::default()),
            contacted: Mutex::new(Default::default()),
            mirrors_reported: Mutex::new(Default::default()),
        }
    }

    /// Sets the credential used for `host` (`host[:port]`).
    pub fn set_credential(&mut self, host: &str, credential: Credential) {
        self.credentials.insert(host.to_owned(), credential);
    }

    /// True when a credential is set for `host`.
    pub fn has_credential(&self, host: &str) -> bool {
        self.credentials.contains_key(host)
    }

    /// Sends `GET /v2/` to `host`, without credentials and once per run like every request of
    /// this client, and returns how the registry authenticates.
    pub async fn ping(&self, host: &str) -> Result<Challenge, RegistryError> {
        self.challenge(host).await
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.options.retry
    }

    /// Names where the credentials of `host` come from, such as the variables of a private
    /// registry, for the errors of a rejected or missing login.
    pub fn set_credential_hint(&mut self, host: &str, hint: &str) {
        self.credential_hints.insert(host.to_owned(), hint.to_owned());
    }

    fn credential_hint(&self, host: &str) -> String {
        self.credential_hints.get(host).cloned().unwrap_or_else(|| "REGISTRY_USERNAME and REGISTRY_PASSWORD (environment or --password-stdin)".to_owned())
    }

    /// Returns the download rate limit, when one is set.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }

    /// Returns every `host[:port]` this client sent a request to, sorted: the list a proxy
    /// must allow for the same work.
    pub fn contacted_hosts(&self) -> Vec<String> {
        self.contacted.lock().unwrap().iter().cloned().collect()
    }

    fn is_plain_http(&self, host: &str) -> bool {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.options.plain_http.iter().any(|p| p == host || p == bare)
    }

    /// Returns `https://host`, or `http://host` for a host reached over plain HTTP.
    pub fn base_url(&self, host: &str) -> String {
        let scheme = if self.is_plain_http(host) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// Returns the HTTP client for one host, with the system roots, `--ca-file` and the host's certs.d CAs.
    fn http_for(&self, host_port: &str) -> Result<reqwest::Client, RegistryError> {
        if let Some(client) = self.http.lock().unwrap().get(host_port) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.options.connect_timeout)
            .read_timeout(self.options.read_timeout)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if !self.options.proxy.is_empty() {
            let proxy = self.options.proxy.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| proxy.proxy_for(url).map(|p| p.url().clone())));
        }
        let mut ca_files = self.options.ca_files.clone();
        if let Some(dir) = &self.options.certs_dir {
            ca_files.extend(certs_d_files(&dir.join(host_port)));
        }
        for path in ca_files {
            let pem = fs_err::read(&path).map_err(|source| RegistryError::Io { path: path.clone(), source })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a PEM certificate bundle: {e}")),
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|e| RegistryError::Unreachable { host: host_port.to_owned(), detail: e.to_string() })?;
        self.http.lock().unwrap().insert(host_port.to_owned(), client.clone());
        Ok(client)
    }

    /// Learns how `host` authenticates with `GET /v2/`, once per run.
    async fn challenge(&self, host: &str) -> Result<Challenge, RegistryError> {
        let mut challenges = self.challenges.lock().await;
        if let Some(challenge) = challenges.get(host) {
            return Ok(challenge.clone());
        }
        if let Some(earlier) = self.unreachable.lock().unwrap().get(host) {
            return Err(RegistryError::FailedEarlier { host: host.to_owned(), earlier: earlier.clone() });
        }
        let url = format!("{}/v2/", self.base_url(host));
        // A mirror gets one attempt: the image's own registry is the fallback, and every retry
        // would delay each node by the whole backoff.
        let attempts = if self.options.mirrors.iter().any(|m| m.host == host) { 1 } else { self.options.retry.attempts };
        let response = match self.send_retrying(&format!("registry {host}"), attempts, || self.send_once(Method::GET, &url, HeaderMap::new(), None, None)).await {
            Ok(response) => response,
            Err(err) => {
                // Later images on this registry fail at once instead of retrying again.
                if matches!(
                    err,
                    RegistryError::RetriesExhausted { .. }
                        | RegistryError::Unreachable { .. }
                        | RegistryError::Tls { .. }
                        | RegistryError::ProxyAuth { .. }
                        | RegistryError::ProxyDenied { .. }
                        | RegistryError::ProxyTunnel { .. }
                ) {
                    self.unreachable.lock().unwrap().insert(host.to_owned(), err.to_string());
                }
                return Err(err);
            }
        };
        let challenge = match response.status() {
            StatusCode::UNAUTHORIZED => {
                let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                auth::parse_challenge(&header).ok_or(RegistryError::UnsupportedAuth { host: host.to_owned(), header })?
            }
            status if status.is_success() => Challenge::None,
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::Status {
                    what: format!("registry {host}"),
                    status: 404,
                    detail: ": GET /v2/ is not found, so this is not a registry (wrong REGISTRY_URL or port?)".into(),
                })
            }
            status => return Err(status_error(&format!("registry {host}"), status, response).await),
        };
        tracing::debug!(host, ?challenge, "registry challenge");
        challenges.insert(host.to_owned(), challenge.clone());
        Ok(challenge)
    }

    /// Returns the `Authorization` value for `access` on `host`, fetching a token when the
    /// registry uses Bearer auth.
    async fn authorization(&self, host: &str, access: &Access, challenge: &Challenge) -> Result<Option<String>, RegistryError> {
        let credential = self.credentials.get(host);
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(match credential {
                Some(Credential::Basic { username, password }) => Some(auth::basic_header(username, password.expose())),
                _ => None,
            }),
            Challenge::Bearer { realm, service, .. } => {
                if let Some(Credential::RegistryToken(token)) = credential {
                    return Ok(Some(format!("Bearer {}", token.expose())));
                }
                let key = TokenKey { realm: realm.clone(), service: service.clone(), scope: access.scope() };
                if let Some(token) = self.tokens.lock().unwrap().get(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, lifetime) = self.fetch_token(host, &key, credential).await?;
                self.tokens.lock().unwrap().insert(key, token.clone(), lifetime);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn fetch_token(&self, host: &str, key: &TokenKey, credential: Option<&Credential>) -> Result<(String, Duration), RegistryError> {
        let realm_url = Url::parse(&key.realm).map_err(|e| RegistryError::TokenServer { realm: key.realm.clone(), detail: format!("invalid realm URL: {e}") })?;
        let realm_host = host_port(&realm_url);
        if realm_url.scheme() != "https" && !self.is_plain_http(&realm_host) && !self.is_plain_http(host) {
            return Err(RegistryError::TokenServer {
                realm: key.realm.clone(),
                detail: format!("the token server uses plain HTTP, so credentials would travel unencrypted; pass --plain-http {realm_host} if that is intended"),
            });
        }
        let http = self.http_for(&realm_host)?;
        self.contacted.lock().unwrap().insert(realm_host.clone());
        let token_error = |detail: String| RegistryError::TokenServer { realm: key.realm.clone(), detail };
        let request = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh.expose()), ("client_id", "ferry"), ("scope", &key.scope)];
                if let Some(service) = &key.service {
                    form.push(("service", service));
                }
                http.post(realm_url.clone()).form(&form)
            }
            _ => {
                let mut url = realm_url.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = &key.service {
                        query.append_pair("service", service);
                    }
                    // Several scopes (a mount needs pull on the source repository) are several
                    // `scope` parameters.
                    for scope in key.scope.split(' ') {
                        query.append_pair("scope", scope);
                    }
                    if let Some(Credential::Basic { username, .. }) = credential {
                        query.append_pair("account", username);
                    }
                }
                let mut request = http.get(url);
                if let Some(Credential::Basic { username, password }) = credential {
                    if !username.is_empty() && !password.expose().is_empty() {
                        request = request.header(AUTHORIZATION, auth::basic_header(username, password.expose()));
                    }
                }
                request
            }
        };
        let response = request.send().await.map_err(|e| self.classify_send_error(&realm_url, e))?;
        self.check_proxy_response(&realm_url, &response)?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if credential.is_none() => {
                return Err(RegistryError::CredentialsRequired { registry: host.to_owned(), hint: self.credential_hint(host) })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(RegistryError::TokenRejected {
                    hint: self.credential_hint(host),
                    registry: host.to_owned(),
                    realm: key.realm.clone(),
                    user: auth::describe_user(credential),
                })
            }
            status => return Err(token_error(format!("HTTP {status}"))),
        }
        let body: auth::TokenResponse = response.json().await.map_err(|e| token_error(format!("invalid token response: {e}")))?;
        body.into_token().ok_or_else(|| token_error("the response holds no token".into()))
    }

    /// Sends one request without retries, following redirects by hand: `Authorization` is kept
    /// only while scheme, host and port stay the same, and HTTPS is never downgraded.
    async fn send_once(&self, method: Method, url: &str, headers: HeaderMap, body: Option<&BodyFactory<'_>>, authorization: Option<&str>) -> Result<Response, RegistryError> {
        let mut url = Url::parse(url).map_err(|e| RegistryError::Unreachable { host: url.to_owned(), detail: e.to_string() })?;
        let origin = url.origin();
        for _ in 0..=MAX_REDIRECTS {
            let host = host_port(&url);
            let http = self.http_for(&host)?;
            self.contacted.lock().unwrap().insert(host.clone());
            let mut request = http.request(method.clone(), url.clone()).headers(headers.clone());
            if let (Some(value), true) = (authorization, url.origin() == origin) {
                request = request.header(AUTHORIZATION, value);
            }
            if let Some(body) = body {
                request = request.body(body()?);
            }
            let response = request.send().await.map_err(|e| self.classify_send_error(&url, e))?;
            self.check_proxy_response(&url, &response)?;
            tracing::debug!(method = %method, url = %url, status = response.status().as_u16(), "registry request");
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(location) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
                return Ok(response);
            };
            let next = url.join(location).map_err(|e| RegistryError::Unreachable { host: host.clone(), detail: format!("invalid redirect {location:?}: {e}") })?;
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(RegistryError::InsecureRedirect { from: url.to_string(), to: next.to_string() });
            }
            tracing::debug!(from = %url.path(), to_host = %host_port(&next), "following redirect");
            url = next;
        }
        Err(RegistryError::Unreachable { host: host_port(&url), detail: format!("more than {MAX_REDIRECTS} redirects") })
    }

    /// Retries `attempt` on connection failures, 429 and 502/503/504, honouring `Retry-After`,
    /// up to `attempts` tries in all.
    async fn send_retrying<F, Fut>(&self, what: &str, attempts: u32, mut attempt: F) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Response, RegistryError>>,
    {
        let policy = &self.options.retry;
        let mut number = 0;
        loop {
            number += 1;
            let (last, wait) = match attempt().await {
                Ok(response) if retry::is_retryable(response.status()) => {
                    let wait = retry::retry_after(response.headers()).unwrap_or_else(|| policy.backoff(number));
                    (format!("HTTP {}", response.status()), wait)
                }
                Ok(response) => return Ok(response),
                Err(err) if err.is_transient() => (err.to_string(), policy.backoff(number)),
                Err(err) => return Err(err),
            };
            if number >= attempts {
                return Err(RegistryError::RetriesExhausted { what: what.to_owned(), attempts: number, last });
            }
            if wait > policy.max_delay {
                return Err(RegistryError::RetriesExhausted {
                    what: what.to_owned(),
                    attempts: number,
                    last: format!("{last}, and the registry asks to wait {} s, more than the {} s limit", wait.as_secs(), policy.max_delay.as_secs()),
                });
            }
            tracing::warn!(what, attempt = number, error = %last, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends an authenticated pull request for `repository` on `host`, retrying transient
    /// failures and renewing the token once on a 401.
    ///
    /// The mirrors are tried first, in order. The first one that returns the content (2xx)
    /// serves the request, and any other status or failure moves on to the next source, the
    /// image's own registry last.
    pub(crate) async fn request(&self, host: &str, repository: &str, method: Method, path: &str, headers: HeaderMap, what: &str) -> Result<Response, RegistryError> {
        for mirror in self.options.mirrors.iter().filter(|m| m.host != host) {
            let mirror_repository = match &mirror.namespace {
                Some(namespace) => format!("{namespace}/{repository}"),
                None => repository.to_owned(),
            };
            let mirror_path = path.replacen(&format!("/v2/{repository}/"), &format!("/v2/{mirror_repository}/"), 1);
            let url = format!("{}{}", self.base_url(&mirror.host), mirror_path);
            let access = Access::pull(&mirror_repository);
            match self.request_with(&mirror.host, &access, method.clone(), &url, headers.clone(), None, what).await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(mirror = %mirror, what, "served by the mirror");
                    return Ok(response);
                }
                Ok(response) => tracing::debug!(mirror = %mirror, what, status = response.status().as_u16(), "the mirror does not have it, trying the next source"),
                Err(error) => {
                    if self.mirrors_reported.lock().unwrap().insert(mirror.host.clone()) {
                        tracing::warn!(mirror = %mirror, error = %crate::error_message(&error), "registry mirror failed, using the next source");
                    }
                }
            }
        }
        let url = format!("{}{}", self.base_url(host), path);
        self.request_with(host, &Access::pull(repository), method, &url, headers, None, what).await
    }

    /// Sends an authenticated request to `url` on `host` with the token scope `access`, retrying
    /// transient failures (with a fresh body from `body` each time) and renewing the token once
    /// on a 401.
    pub(crate) async fn request_with(
        &self,
        host: &str,
        access: &Access,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<&BodyFactory<'_>>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let challenge = self.challenge(host).await?;
        let mut renewed = false;
        loop {
            let authorization = self.authorization(host, access, &challenge).await?;
            let response = self
                .send_retrying(what, self.options.retry.attempts, || self.send_once(method.clone(), url, headers.clone(), body, authorization.as_deref()))
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let credential = self.credentials.get(host);
            if renewed || !matches!(challenge, Challenge::Bearer { .. }) {
                if credential.is_none() {
                    return Err(RegistryError::CredentialsRequired { registry: host.to_owned(), hint: self.credential_hint(host) });
                }
                return Err(RegistryError::Unauthorized { registry: host.to_owned(), user: auth::describe_user(credential), hint: self.credential_hint(host) });
            }
            if let Challenge::Bearer { realm, service, .. } = &challenge {
                let key = TokenKey { realm: realm.clone(), service: service.clone(), scope: access.scope() };
                self.tokens.lock().unwrap().remove(&key);
            }
            tracing::debug!(host, repository = %access.repository, "401 with a cached token, fetching a new one");
            renewed = true;
        }
    }

    /// Fetches a manifest or index by tag or digest and verifies it: against the requested digest,
    /// or against `Docker-Content-Digest` when fetching by tag. Returns bytes, media type and digest.
    pub async fn fetch_manifest(&self, reference: &Reference, lookup: &str) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_manifest_once(reference, lookup).await {
                Err(err) if err.is_transient() && attempt < self.options.retry.attempts => {
                    tracing::warn!(reference = %reference, error = %err, "retrying manifest download");
                    tokio::time::sleep(self.options.retry.backoff(attempt)).await;
                }
                result => return result,
            }
        }
    }

    async fn fetch_manifest_once(&self, reference: &Reference, lookup: &str) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let separator = if lookup.starts_with("sha256:") { '@' } else { ':' };
        let what = format!("manifest {}/{}{separator}{lookup}", reference.registry, reference.repository);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
        let path = format!("/v2/{}/manifests/{lookup}", reference.repository);
        let response = self.request(&reference.registry, &reference.repository, Method::GET, &path, headers, &what).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                let code = error_code(response).await.unwrap_or_else(|| "HTTP 404".into());
                return Err(RegistryError::ManifestNotFound { reference: reference.to_string(), registry: reference.registry.clone(), code });
            }
            StatusCode::FORBIDDEN => {
                return Err(RegistryError::Denied { what, user: auth::describe_user(self.credentials.get(&reference.registry)), status: 403 })
            }
            status => return Err(status_error(&what, status, response).await),
        }
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let header_digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = read_limited(response, &what).await?;
        let actual = Digest::of(&body);
        let expected = match lookup.parse::<Digest>() {
            Ok(digest) => Some(digest),
            Err(_) => header_digest.and_then(|d| d.parse().ok()),
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RegistryError::DigestMismatch { what, expected, actual });
            }
        }
        Ok((body, content_type, actual))
    }

    /// Resolves a reference to one platform's manifest, walking indexes.
    pub async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage, RegistryError> {
        let (mut raw, mut content_type, top_digest) = self.fetch_manifest(reference, &reference.lookup()).await?;
        let mut digest = top_digest.clone();
        let mut chosen = None;
        for _ in 0..MAX_INDEX_DEPTH {
            let what = format!("manifest {digest} of {reference}");
            match manifest::parse(content_type.as_deref(), &raw, &what)? {
                Document::Manifest(image) => {
                    let media_type = image.media_type.clone().or(content_type.clone()).unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned());
                    return Ok(ResolvedImage {
                        reference: reference.clone(),
                        top_digest,
                        manifest_digest: digest,
                        manifest_media_type: media_type,
                        manifest_raw: raw,
                        manifest: image,
                        platform: chosen,
                    });
                }
                Document::Index(index) => {
                    let entry = select_platform(&index.manifests, platform).ok_or_else(|| RegistryError::PlatformNotFound {
                        reference: reference.to_string(),
                        wanted: platform.to_string(),
                        available: available_platforms(&index.manifests),
                    })?;
                    chosen = entry.platform.as_ref().map(|p| p.to_platform());
                    let (child_raw, child_type, child_digest) = self.fetch_manifest(reference, entry.digest.as_str()).await?;
                    raw = child_raw;
                    content_type = child_type.filter(|t| !t.is_empty()).or(Some(entry.media_type.clone()));
                    digest = child_digest;
                }
            }
        }
        Err(RegistryError::Status { what: format!("manifest of {reference}"), status: 200, detail: format!(": indexes nested deeper than {MAX_INDEX_DEPTH} levels") })
    }

    /// Fetches a small blob (a config) into memory, verified against its descriptor.
    pub async fn fetch_small_blob(&self, reference: &Reference, descriptor: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_small_blob_once(reference, descriptor).await {
                Err(err) if err.is_transient() && attempt < self.options.retry.attempts => {
                    tracing::warn!(reference = %reference, digest = %descriptor.digest, error = %err, "retrying blob download");
                    tokio::time::sleep(self.options.retry.backoff(attempt)).await;
                }
                result => return result,
            }
        }
    }

    async fn fetch_small_blob_once(&self, reference: &Reference, descriptor: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {} of {}", descriptor.digest, reference.name());
        if descriptor.size > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::TooLarge { what, limit: MAX_DOCUMENT_BYTES });
        }
        let response = self.blob_response(reference, &descriptor.digest, 0).await?;
        let body = read_limited(response, &what).await?;
        if body.len() as u64 != descriptor.size {
            return Err(RegistryError::SizeMismatch { what, expected: descriptor.size, actual: body.len() as u64 });
        }
        let actual = Digest::of(&body);
        if actual != descriptor.digest {
            return Err(RegistryError::DigestMismatch { what, expected: descriptor.digest.clone(), actual });
        }
        Ok(body)
    }

    /// Starts a blob download at byte `offset` (a `Range` request when non-zero). The caller checks
    /// whether the response is 206 (resumed) or 200 (from the start).
    pub(crate) async fn blob_response(&self, reference: &Reference, digest: &Digest, offset: u64) -> Result<Response, RegistryError> {
        let what = format!("blob {digest} of {}", reference.name());
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(reqwest::header::RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).expect("valid header"));
        }
        let path = format!("/v2/{}/blobs/{digest}", reference.repository);
        let response = self.request(&reference.registry, &reference.repository, Method::GET, &path, headers, &what).await?;
        match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(response),
            StatusCode::NOT_FOUND => Err(RegistryError::BlobNotFound { name: reference.name(), digest: digest.clone() }),
            StatusCode::FORBIDDEN => Err(RegistryError::Denied { what, user: auth::describe_user(self.credentials.get(&reference.registry)), status: 403 }),
            status => Err(status_error(&what, status, response).await),
        }
    }
}

/// Picks the index entry that runs best on `platform`, skipping attestation entries.
pub fn select_platform<'a>(entries: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    entries
        .iter()
        .filter_map(|entry| {
            let candidate = entry.platform.as_ref()?.to_platform();
            if candidate.is_unknown() {
                return None;
            }
            Some((platform.match_rank(&candidate)?, entry))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, entry)| entry)
}

pub fn available_platforms(entries: &[Descriptor]) -> Vec<String> {
    let mut platforms: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref().map(|p| p.to_platform()))
        .filter(|p| !p.is_unknown())
        .map(|p| p.to_string())
        .collect();
    platforms.dedup();
    if platforms.is_empty() {
        platforms.push("none".into());
    }
    platforms
}

/// Files of Docker's `certs.d/<host:port>/` folder that hold CA certificates.
fn certs_d_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    files.sort();
    files
}

/// `host` or `host:port` of a URL, as used in registry names and certs.d folders.
fn host_port(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

impl Client {
    /// Turns a `reqwest` send error into a ferry error: the proxy's failures (unreachable,
    /// credentials rejected, tunnel refused) apart from the registry's, and TLS apart from the
    /// rest.
    fn classify_send_error(&self, url: &Url, error: reqwest::Error) -> RegistryError {
        let host = host_port(url);
        let Some(proxy) = self.options.proxy.proxy_for(url) else {
            return classify_send_error(&host, error);
        };
        let chain = error_chain(&error);
        let text = chain.join(": ").to_ascii_lowercase();
        let proxy_name = proxy.to_string();
        if text.contains("proxy auth") {
            return RegistryError::ProxyAuth { proxy: proxy_name, host, with_credentials: proxy.has_credentials() };
        }
        // A refused or unresolvable proxy address is reported inside the tunnel error too.
        if ["connection refused", "tcp connect error", "dns error", "timed out"].iter().any(|m| text.contains(m)) {
            return RegistryError::ProxyUnreachable { proxy: proxy_name, host, detail: chain.last().cloned().unwrap_or_default() };
        }
        if text.contains("tunnel") {
            return RegistryError::ProxyTunnel { proxy: proxy_name, host, detail: chain.last().cloned().unwrap_or_default() };
        }
        match classify_send_error(&host, error) {
            RegistryError::Tls { host, detail } => RegistryError::Tls { host, detail: format!("{detail} (through proxy {proxy_name})") },
            RegistryError::Unreachable { detail, .. } if text.contains("connect") || text.contains("dns") => {
                RegistryError::ProxyUnreachable { proxy: proxy_name, host, detail }
            }
            other => other,
        }
    }

    /// Fails on a response the proxy wrote itself instead of forwarding: 407, or a refusal from
    /// squid (`X-Squid-Error`) for a plain-HTTP request.
    fn check_proxy_response(&self, url: &Url, response: &Response) -> Result<(), RegistryError> {
        let Some(proxy) = self.options.proxy.proxy_for(url) else { return Ok(()) };
        let host = host_port(url);
        match response.status() {
            StatusCode::PROXY_AUTHENTICATION_REQUIRED => Err(RegistryError::ProxyAuth { proxy: proxy.to_string(), host, with_credentials: proxy.has_credentials() }),
            StatusCode::FORBIDDEN if response.headers().contains_key("x-squid-error") => Err(RegistryError::ProxyDenied { proxy: proxy.to_string(), host }),
            _ => Ok(()),
        }
    }
}

fn error_chain(error: &reqwest::Error) -> Vec<String> {
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(err) = source {
        chain.push(err.to_string());
        source = err.source();
    }
    chain
}

/// Turns a `reqwest` send error into a ferry error, separating TLS failures from the rest.
fn classify_send_error(host: &str, error: reqwest::Error) -> RegistryError {
    let chain = error_chain(&error);
    let detail = chain.last().cloned().unwrap_or_default();
    if chain.iter().any(|m| m.contains("InvalidContentType")) {
        let detail = "the server did not answer with TLS, so it probably serves plain HTTP".to_owned();
        return RegistryError::Tls { host: host.to_owned(), detail };
    }
    if chain.iter().any(|m| m.contains("certificate") || m.contains("tls") || m.contains("TLS")) {
        return RegistryError::Tls { host: host.to_owned(), detail };
    }
    let detail = if error.is_timeout() { format!("timed out ({detail})") } else { detail };
    RegistryError::Unreachable { host: host.to_owned(), detail }
}

/// Reads the first error code of a distribution error body, such as `MANIFEST_UNKNOWN`.
async fn error_code(response: Response) -> Option<String> {
    let body: serde_json::Value = response.json().await.ok()?;
    body["errors"][0]["code"].as_str().map(str::to_owned)
}

async fn status_error(what: &str, status: StatusCode, response: Response) -> RegistryError {
    let detail = match response.text().await {
        Ok(text) if !text.trim().is_empty() => format!(": {}", text.trim().chars().take(300).collect::<String>()),
        _ => String::new(),
    };
    RegistryError::Status { what: what.to_owned(), status: status.as_u16(), detail }
}

async fn read_limited(mut response: Response, what: &str) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| RegistryError::ConnectionLost { what: what.to_owned(), detail: e.to_string() })?;
        let Some(chunk) = chunk else { break };
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::TooLarge { what: what.to_owned(), limit: MAX_DOCUMENT_BYTES });
        }
    }
    Ok(body)
}
