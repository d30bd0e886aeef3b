//! HTTP Basic authentication for `ferry serve --htpasswd`, against an htpasswd file of bcrypt
//! entries (`htpasswd -B`), the only kind the distribution registry accepts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::hmac;

use super::{ApiError, ServeError};

/// Realm of the `WWW-Authenticate: Basic` challenge.
pub const REALM: &str = "ferry";

/// How long a successful check of a user and password is reused. bcrypt is slow on purpose
/// (its work doubles with each step of the cost written in the hash), and a client sends one
/// request per manifest and blob, several at once, each with the same credentials.
const CACHE_LIFETIME: Duration = Duration::from_secs(60);
/// Entries kept in the cache; expired entries are dropped when it is full, and the whole cache
/// is emptied when that frees nothing.
const CACHE_CAPACITY: usize = 1024;

/// Users and bcrypt hashes read from an htpasswd file. Its `Debug` output leaves the hashes out.
pub struct Htpasswd {
    path: PathBuf,
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Reads `path`. Each line is `USER:HASH` with a bcrypt hash (`$2y$`, `$2b$`, `$2a$`);
    /// empty lines and lines starting with `#` are skipped. Any other line is an error naming
    /// the file and the line number, never the hash.
    pub fn load(path: &Path) -> Result<Htpasswd, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::HtpasswdRead { path: path.to_owned(), source })?;
        Htpasswd::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Htpasswd, ServeError> {
        let invalid = |line: usize, reason: &'static str| ServeError::HtpasswdLine { path: path.to_owned(), line, reason };
        let mut users = HashMap::new();
        for (position, line) in text.lines().enumerate() {
            let number = position + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(invalid(number, "it is not USER:HASH; write one entry per line, as htpasswd -B prints them"));
            };
            if user.is_empty() {
                return Err(invalid(number, "the user name is empty; create the entry again with htpasswd -B"));
            }
            let cost = hash.parse::<bcrypt::HashParts>().map(|parts| parts.get_cost());
            if !cost.is_ok_and(|cost| (4..=31).contains(&cost)) {
                return Err(invalid(
                    number,
                    "the password hash is not bcrypt; ferry accepts only bcrypt entries, as the distribution registry does, so create the entry again with htpasswd -B",
                ));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(invalid(number, "the user is listed on an earlier line too; keep one line per user"));
            }
        }
        if users.is_empty() {
            return Err(ServeError::HtpasswdEmpty { path: path.to_owned() });
        }
        Ok(Htpasswd { path: path.to_owned(), users })
    }

    /// Path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of users in the file.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd").field("path", &self.path).field("users", &self.users.len()).finish()
    }
}

/// Checks the credentials of each request, with a short-lived cache of successful checks.
pub(super) struct Authenticator {
    users: HashMap<String, String>,
    /// bcrypt hash checked when the user is unknown, at the highest cost of the file, so that
    /// the reply takes about as long as for a known user and does not reveal which users exist.
    decoy_hash: String,
    /// Random key for the cache keys, so that the cache contains no plain hash of a password.
    cache_key: hmac::Key,
    cache: Mutex<HashMap<CacheKey, Instant>>,
    failures: AtomicU64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    user: String,
    password_mac: Vec<u8>,
}

impl Authenticator {
    pub(super) fn new(htpasswd: Htpasswd) -> Result<Authenticator, ServeError> {
        let random = ring::rand::SystemRandom::new();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &random).map_err(|_| ServeError::Random)?;
        let decoy_password = hmac::sign(&cache_key, b"decoy password");
        let decoy_cost = htpasswd.users.values().filter_map(|hash| hash.parse::<bcrypt::HashParts>().ok()).map(|parts| parts.get_cost()).max();
        let decoy_hash = bcrypt::hash(decoy_password.as_ref(), decoy_cost.unwrap_or(bcrypt::DEFAULT_COST)).map_err(|_| ServeError::Random)?;
        Ok(Authenticator {
            users: htpasswd.users,
            decoy_hash,
            cache_key,
            cache: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
        })
    }

    /// Returns true when `password` is the password of `user`.
    async fn check(self: Arc<Self>, user: String, password: String) -> bool {
        let key = CacheKey { password_mac: hmac::sign(&self.cache_key, password.as_bytes()).as_ref().to_vec(), user };
        if self.cached(&key) {
            return true;
        }

        let checker = Arc::clone(&self);
        let user = key.user.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let known = checker.users.get(&user);
            let hash = known.unwrap_or(&checker.decoy_hash);
            let matches = bcrypt::verify(password.as_bytes(), hash).unwrap_or(false);
            known.is_some() && matches
        })
        .await
        .unwrap_or(false);

        if verified {
            self.remember(key);
        } else {
            self.log_failure(&key.user);
        }
        verified
    }

    fn cached(&self, key: &CacheKey) -> bool {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).is_some_and(|checked| checked.elapsed() < CACHE_LIFETIME)
    }

    fn remember(&self, key: CacheKey) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, checked| checked.elapsed() < CACHE_LIFETIME);
        }
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, Instant::now());
    }

    /// Logs a rejected user name and password at warning level for the 1st, 2nd, 4th, 8th, ...
    /// failure and at debug level otherwise, so a client retrying in a loop cannot flood the log.
    /// The user name is logged only when the file lists it, because a mistyped user field
    /// sometimes contains a password.
    fn log_failure(&self, user: &str) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let user = if self.users.contains_key(user) { user } else { "(not in the htpasswd file)" };
        if failures.is_power_of_two() {
            tracing::warn!(user, failures, "rejected a request with a wrong user name or password");
        } else {
            tracing::debug!(user, failures, "rejected a request with a wrong user name or password");
        }
    }
}

/// Middleware that returns 401 with a Basic challenge unless the request carries the user name
/// and password of an htpasswd entry.
pub(super) async fn require_credentials(State(authenticator): State<Arc<Authenticator>>, request: Request, next: Next) -> Response {
    let credentials = request.headers().get(header::AUTHORIZATION).and_then(basic_credentials);
    let Some((user, password)) = credentials else {
        return unauthorized("authentication required: send the user name and password of an htpasswd entry with Basic authentication");
    };
    if !authenticator.check(user, password).await {
        return unauthorized("invalid user name or password");
    }
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let challenge = format!("Basic realm=\"{REALM}\"");
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message.to_owned())
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).unwrap_or_else(|_| HeaderValue::from_static("Basic")))
        .into_response()
}

/// Decodes `Authorization: Basic base64(user:password)`; the password may contain colons.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `htpasswd -nbB -C 4 alice secret`; cost 4 keeps the tests fast.
    const ALICE: &str = "alice:$2y$04$LC8IseVl01eUDQIsI1Iv0OWHAvrNc9ffhnnDWdqS/dCsIN.5WWCeG";

    fn parse(text: &str) -> Result<Htpasswd, ServeError> {
        Htpasswd::parse(Path::new("users.htpasswd"), text)
    }

    fn line_error(text: &str) -> (usize, &'static str) {
        match parse(text) {
            Err(ServeError::HtpasswdLine { line, reason, .. }) => (line, reason),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn htpasswd_reads_bcrypt_entries() {
        let file = parse(&format!("# users\n\n{ALICE}\n")).unwrap();
        assert_eq!(file.user_count(), 1);
    }

    #[test]
    fn htpasswd_rejects_other_hashes() {
        let (line, _) = line_error(&format!("{ALICE}\nbob:$apr1$abc$defghijklmnopqrstuvwxy\n"));
        assert_eq!(line, 2);
        let (line, _) = line_error("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
        assert_eq!(line, 1);
        let (line, _) = line_error("dave:plaintext\n");
        assert_eq!(line, 1);
    }

    #[test]
    fn htpasswd_debug_hides_hashes() {
        let file = parse(ALICE).unwrap();
        assert!(!format!("{file:?}").contains("$2y$"));
    }

    #[test]
    fn htpasswd_error_hides_hash() {
        let error = parse("bob:$apr1$abc$defghijklmnopqrstuvwxy\n").unwrap_err().to_string();
        assert!(!error.contains("apr1"), "{error}");
        assert!(error.contains("line 1"), "{error}");
    }

    #[test]
    fn htpasswd_rejects_line_without_colon() {
        let (line, reason) = line_error("alice\n");
        assert_eq!(line, 1);
        assert!(reason.starts_with("it is not USER:HASH"), "{reason}");
    }

    #[test]
    fn htpasswd_rejects_duplicate_user() {
        assert_eq!(line_error(&format!("{ALICE}\n{ALICE}\n")).0, 2);
    }

    #[test]
    fn htpasswd_rejects_empty_file() {
        assert!(matches!(parse("# nobody\n"), Err(ServeError::HtpasswdEmpty { .. })));
    }

    #[test]
    fn basic_credentials_decodes_colon_in_password() {
        let value = HeaderValue::from_static("Basic dXNlcjpwYTpzcw==");
        assert_eq!(basic_credentials(&value), Some(("user".to_owned(), "pa:ss".to_owned())));
    }

    #[test]
    fn basic_credentials_rejects_bearer() {
        assert_eq!(basic_credentials(&HeaderValue::from_static("Bearer abc")), None);
    }

    #[tokio::test]
    async fn check_accepts_right_password_only() {
        let authenticator = Arc::new(Authenticator::new(parse(ALICE).unwrap()).unwrap());
        assert!(Arc::clone(&authenticator).check("alice".into(), "secret".into()).await);
        assert!(!Arc::clone(&authenticator).check("alice".into(), "wrong".into()).await);
        assert!(!Arc::clone(&authenticator).check("mallory".into(), "secret".into()).await);
    }

    #[tokio::test]
    async fn check_caches_success() {
        let authenticator = Arc::new(Authenticator::new(parse(ALICE).unwrap()).unwrap());
        assert!(Arc::clone(&authenticator).check("alice".into(), "secret".into()).await);
        assert_eq!(authenticator.cache.lock().unwrap().len(), 1);
        assert!(!Arc::clone(&authenticator).check("alice".into(), "other".into()).await);
        assert_eq!(authenticator.cache.lock().unwrap().len(), 1);
    }
}
