//! A real CNCF distribution registry 2.8 process (`/usr/bin/docker-registry`) per test.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;
use tempfile::TempDir;

use super::{block_on, free_port, sha256_digest, write_docker_auth, OciLayout, Pki};
use super::{TokenOptions, TokenServer, TokenUser};

/// Path of the registry binary from the Debian package `docker-registry`.
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// How long [`Registry`] waits for a response to `GET /v2/` after starting the process.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Proxy variables removed from every child process, so loopback traffic never leaves through
/// a proxy configured on the machine.
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
];

enum Auth {
    Anonymous,
    Htpasswd { user: String, password: String },
    Token(TokenServer),
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Request target as logged: path plus query string.
    pub path: String,
    pub status: u16,
}

/// A registry process listening on `127.0.0.1:<port>` with its own storage. Killed on Drop.
///
/// The working directory contains `config.yml`, `storage/`, `registry.log` (stdout and stderr of
/// every run), `htpasswd` and `auth.json` (skopeo credentials) when they apply.
pub struct Registry {
    dir: TempDir,
    /// Loopback address the registry listens on, 127.0.0.1 unless a test picks another.
    bind: String,
    /// For a pull-through cache: the URL of the registry it caches.
    upstream: Option<String>,
    port: u16,
    tls: Option<Pki>,
    auth: Auth,
    child: Option<Child>,
}

impl Registry {
    /// Starts a plain-HTTP registry that allows anonymous pull and push.
    pub fn start_plain() -> Registry {
        Registry::start(None, Auth::Anonymous)
    }

    /// Starts a plain-HTTP pull-through cache of `origin` (a plain registry without
    /// authentication): the distribution registry's `proxy` mode, as a site runs it near its
    /// nodes.
    pub fn start_pull_through(origin: &Registry) -> Registry {
        assert!(origin.pki().is_none(), "the cache in these tests fronts a plain-HTTP registry");
        assert!(origin.credentials().is_none(), "the cache in these tests fronts an open registry");
        Registry::start_at("127.0.0.1", None, Auth::Anonymous, Some(origin.url()))
    }

    /// Starts a plain-HTTP registry like [`Registry::start_plain`] on another loopback address,
    /// such as 127.0.0.2.
    pub fn start_plain_at(bind: &str) -> Registry {
        Registry::start_at(bind, None, Auth::Anonymous, None)
    }

    /// Starts an HTTPS registry with `htpasswd` authentication for one user.
    pub fn start_htpasswd(pki: &Pki, user: &str, password: &str) -> Registry {
        let auth = Auth::Htpasswd {
            user: user.to_string(),
            password: password.to_string(),
        };
        Registry::start(Some(pki.clone()), auth)
    }

    /// Starts an HTTPS registry with `auth: token` and a [`TokenServer`] that accepts `users`,
    /// each allowed to pull and push.
    pub fn start_token(pki: &Pki, users: &[(&str, &str)]) -> Registry {
        let users = users
            .iter()
            .map(|(name, password)| TokenUser::new(name, password))
            .collect();
        Registry::start_token_with(pki, TokenOptions::with_users(users))
    }

    /// Starts an HTTPS registry with `auth: token` and a [`TokenServer`] built from `options`.
    pub fn start_token_with(pki: &Pki, options: TokenOptions) -> Registry {
        let server = TokenServer::start(pki, options);
        Registry::start(Some(pki.clone()), Auth::Token(server))
    }

    fn start(tls: Option<Pki>, auth: Auth) -> Registry {
        Registry::start_at("127.0.0.1", tls, auth, None)
    }

    fn start_at(bind: &str, tls: Option<Pki>, auth: Auth, upstream: Option<String>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-registry-")
            .tempdir()
            .expect("failed to create the registry directory");
        let mut registry = Registry {
            dir,
            bind: bind.to_owned(),
            upstream,
            port: 0,
            tls,
            auth,
            child: None,
        };
        registry.write_htpasswd();

        // The port is probed and released before the registry binds it, so another process can
        // take it in between. A new port is tried when that happens.
        for _ in 0..5 {
            registry.port = free_port();
            registry.write_config();
            match registry.spawn() {
                Ok(()) => return registry,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("docker-registry failed to start:\n{log}"),
            }
        }
        panic!("docker-registry found no free port after 5 attempts")
    }

    /// `127.0.0.1:<port>` (or the address it was started on), the registry part of an image
    /// reference.
    pub fn host(&self) -> String {
        format!("{}:{}", self.bind, self.port)
    }

    /// `<name>:<port>`: the registry under a name that resolves to its address, such as
    /// `registry.ferry.test`, which a proxy reaches but loopback rules do not exempt.
    pub fn host_named(&self, name: &str) -> String {
        format!("{name}:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns `127.0.0.1:<port>/<name>`, an image reference for `name` (`repository:tag`
    /// or `repository@digest`) on this registry.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// `https://127.0.0.1:<port>`, or `http://` for [`Registry::start_plain`].
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// Returns the CA file that verifies the registry's certificate, or `None` for plain HTTP.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(Pki::ca_file)
    }

    /// Returns the PKI the registry's certificate comes from, or `None` for plain HTTP.
    pub fn pki(&self) -> Option<&Pki> {
        self.tls.as_ref()
    }

    /// Returns the user name and password that may push, if the registry requires
    /// authentication.
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Htpasswd { user, password } => Some((user.clone(), password.clone())),
            Auth::Token(server) => server.push_user(),
        }
    }

    /// Returns the token server of a registry started with `start_token*`.
    pub fn token_server(&self) -> Option<&TokenServer> {
        match &self.auth {
            Auth::Token(server) => Some(server),
            _ => None,
        }
    }

    /// Returns the registry's storage root, which survives [`Registry::restart`].
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Returns the path of the log file with stdout and stderr of every run of the process.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Returns the whole log, including one access-log line per request:
    /// `127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 ...`.
    pub fn log(&self) -> String {
        settle_file(&self.log_path());
        fs_err::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Parses the requests in the access log, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        static ACCESS_LINE: OnceLock<Regex> = OnceLock::new();
        let pattern = ACCESS_LINE.get_or_init(|| {
            Regex::new(r#"^\S+ \S+ \S+ \[[^\]]+\] "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) "#).unwrap()
        });
        self.log()
            .lines()
            .filter_map(|line| pattern.captures(line))
            .map(|captures| LoggedRequest {
                method: captures[1].to_string(),
                path: captures[2].to_string(),
                status: captures[3].parse().unwrap(),
            })
            .collect()
    }

    /// Counts access-log requests with this method whose path contains `path_part`.
    pub fn count_requests(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.method == method && request.path.contains(path_part))
            .count()
    }

    /// Kills the process. Storage and log stay. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process if it runs and starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!(
                "docker-registry failed to restart on port {}:\n{log}",
                self.port
            );
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Returns a reqwest client that trusts the registry's CA and ignores proxy variables.
    pub fn client(&self) -> reqwest::Client {
        match &self.tls {
            Some(pki) => pki.reqwest_client(),
            None => reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("failed to build a reqwest client"),
        }
    }

    /// Copies image `layout_tag` of `layout`, every platform with digests unchanged, to
    /// `<host>/<destination>` with skopeo. `destination` is `repository:tag`.
    ///
    /// Images with Docker media types go through skopeo's `dir:` transport; see
    /// [`OciLayout::skopeo_source`].
    pub fn push(&self, layout: &OciLayout, layout_tag: &str, destination: &str) {
        let (source, _source_dir) = layout.skopeo_source(layout_tag);
        let target = format!("docker://{}/{destination}", self.host());
        let mut args: Vec<String> = vec![
            "copy".into(),
            "--all".into(),
            "--preserve-digests".into(),
            "--quiet".into(),
        ];
        args.extend(self.skopeo_options("--dest-"));
        args.push(source);
        args.push(target);
        skopeo(&args);
    }

    /// Returns the raw manifest stored under `reference` (`repository:tag` or
    /// `repository@digest`), read back with `skopeo inspect --raw`.
    pub fn raw_manifest(&self, reference: &str) -> Vec<u8> {
        let mut args: Vec<String> = vec!["inspect".into(), "--raw".into()];
        args.extend(self.skopeo_options("--"));
        args.push(format!("docker://{}/{reference}", self.host()));
        skopeo(&args).stdout
    }

    /// Returns the digest of the manifest stored under `reference`, read with skopeo.
    pub fn manifest_digest(&self, reference: &str) -> String {
        sha256_digest(&self.raw_manifest(reference))
    }

    /// skopeo options for TLS and credentials, with `prefix` `--` for a source-less command
    /// such as `inspect`, `--src-` or `--dest-` for `copy`.
    pub fn skopeo_options(&self, prefix: &str) -> Vec<String> {
        let mut options = Vec::new();
        match &self.tls {
            Some(pki) => options.push(format!("{prefix}cert-dir={}", pki.cert_dir().display())),
            None => options.push(format!("{prefix}tls-verify=false")),
        }
        if self.credentials().is_some() {
            options.push(format!("{prefix}authfile={}", self.auth_file().display()));
        }
        options
    }

    /// Returns the path of an auth file (`{"auths":{...}}`) with the push credentials, for
    /// skopeo and Docker.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn write_htpasswd(&self) {
        if let Auth::Htpasswd { user, password } = &self.auth {
            let entry = htpasswd_entry(user, password);
            fs_err::write(self.dir.path().join("htpasswd"), entry)
                .expect("failed to write the htpasswd file");
        }
    }

    fn write_config(&self) {
        let quote = |path: &Path| serde_json::to_string(path).expect("path is not UTF-8");
        let secret = format!("ferry-test-{:016x}", fastrand::u64(..));
        let mut config = format!(
            "version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {bind}:{port}
  secret: {secret}
",
            storage = quote(&self.storage_dir()),
            bind = self.bind,
            port = self.port,
        );
        if let Some(pki) = &self.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                quote(&pki.server_cert_file()),
                quote(&pki.server_key_file()),
            ));
        }
        match &self.auth {
            Auth::Anonymous => {}
            Auth::Htpasswd { .. } => config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                quote(&self.dir.path().join("htpasswd")),
            )),
            Auth::Token(server) => config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                server.realm(),
                server.service(),
                server.issuer(),
                quote(&self.tls.as_ref().unwrap().ca_file()),
            )),
        }
        if let Some(upstream) = &self.upstream {
            config.push_str(&format!("proxy:\n  remoteurl: {upstream}\n"));
        }
        fs_err::write(self.dir.path().join("config.yml"), config)
            .expect("failed to write the registry config");

        if let Some((user, password)) = self.credentials() {
            write_docker_auth(&self.auth_file(), &self.host(), &user, &password);
        }
    }

    /// Starts the process and waits for a response to `GET /v2/`. On failure returns the log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("failed to open the registry log");
        let log = log.into_parts().0;
        let mut command = Command::new(REGISTRY_BINARY);
        command
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("failed to duplicate the log handle"))
            .stderr(log);
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to run {REGISTRY_BINARY}: {error}"));
        self.child = Some(child);

        let client = self.client();
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            let probe = async {
                client
                    .get(&url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
            };
            if block_on(probe).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "no answer on {url} after {START_TIMEOUT:?}\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Returns an htpasswd line with a bcrypt hash, made by `htpasswd -B` with the password on
/// stdin so it never appears in a process argument.
fn htpasswd_entry(user: &str, password: &str) -> String {
    let mut child = Command::new("htpasswd")
        .args(["-n", "-i", "-B", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to run htpasswd (Debian package apache2-utils)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .expect("failed to write the password to htpasswd");
    let output = child.wait_with_output().expect("htpasswd did not finish");
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entry = String::from_utf8(output.stdout).expect("htpasswd printed non-UTF-8");
    format!("{}\n", entry.trim())
}

/// Runs skopeo with `args` and without proxy variables; panics with its stderr on failure.
pub fn skopeo<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let output = skopeo_output(args);
    let shown: Vec<_> = args
        .iter()
        .map(|arg| arg.as_ref().to_string_lossy())
        .collect();
    assert!(
        output.status.success(),
        "skopeo {} failed with {}:\n{}",
        shown.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs skopeo with `args` and without proxy variables, and returns its output whatever the
/// exit status.
pub fn skopeo_output<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let mut command = Command::new("skopeo");
    command.args(args);
    for variable in PROXY_VARIABLES {
        command.env_remove(variable);
    }
    command
        .output()
        .expect("failed to run skopeo (Debian package skopeo)")
}

/// Waits until the size of `path` stays the same for 50 ms (at most 2 s), because the registry
/// writes an access-log line just after the response, so a client can finish first.
fn settle_file(path: &Path) {
    let size = || fs_err::metadata(path).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = size();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let current = size();
        if current == last {
            return;
        }
        last = current;
    }
}
