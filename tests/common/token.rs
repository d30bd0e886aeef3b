//! An HTTPS token endpoint for registries configured with `auth: token`.
//!
//! The registry (distribution 2.8) only verifies tokens: it checks `iss`, `aud`, `exp`/`nbf`
//! with 60 seconds of leeway, the ES256 signature through the `x5c` certificate chain, and the
//! `access` claim. This server issues such tokens the way Docker's token protocol describes:
//! `GET <realm>?service=...&scope=...` with optional Basic credentials, or the OAuth2 form
//! `POST <realm>` with `grant_type=password`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{block_on, Pki};

/// Seconds of clock leeway distribution 2.8 allows on `exp` and `nbf`.
const REGISTRY_LEEWAY_SECS: i64 = 60;

/// An account the token server accepts, with the actions it may be granted.
#[derive(Clone, Debug)]
pub struct TokenUser {
    pub name: String,
    pub password: String,
    /// Actions granted on every repository, a subset of `pull` and `push`.
    pub actions: Vec<String>,
}

impl TokenUser {
    /// Creates a user allowed to pull and push every repository.
    pub fn new(name: &str, password: &str) -> TokenUser {
        TokenUser {
            name: name.to_string(),
            password: password.to_string(),
            actions: vec!["pull".to_string(), "push".to_string()],
        }
    }

    /// Creates a user allowed only to pull.
    pub fn pull_only(name: &str, password: &str) -> TokenUser {
        TokenUser {
            actions: vec!["pull".to_string()],
            ..TokenUser::new(name, password)
        }
    }
}

/// Settings of a [`TokenServer`]. Some can be changed while it runs through its setters.
#[derive(Clone, Debug)]
pub struct TokenOptions {
    pub users: Vec<TokenUser>,
    /// Grant `pull` to requests without credentials. Otherwise they get 401.
    pub anonymous_pull: bool,
    /// The `expires_in` value sent to clients, in seconds.
    pub expires_in: u64,
    /// When set, the `exp` claim is placed so that the registry starts rejecting the token
    /// (401 `invalid_token`) this long after issue, its 60 seconds of leeway included.
    /// When unset, `exp` is issue time plus `expires_in`.
    pub registry_lifetime: Option<Duration>,
    /// Serve `POST <realm>` (OAuth2 password grant). When false the server returns 404, the
    /// status on which clients of Docker's token protocol retry with GET.
    pub accept_post: bool,
    /// Host name of the realm URL in the registry's challenge; it must resolve to 127.0.0.1.
    pub realm_host: String,
}

impl TokenOptions {
    /// Options with the given users, no anonymous access, `expires_in` 300 s, and POST enabled.
    pub fn with_users(users: Vec<TokenUser>) -> TokenOptions {
        TokenOptions {
            users,
            anonymous_pull: false,
            expires_in: 300,
            registry_lifetime: None,
            accept_post: true,
            realm_host: "localhost".to_string(),
        }
    }
}

/// One request the token server handled. The password is never recorded.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The Basic or form user name, or `None` for an anonymous request.
    pub account: Option<String>,
    pub service: Option<String>,
    /// Scopes as requested, for example `repository:ferry-test/app:pull,push`.
    pub scopes: Vec<String>,
    /// Scopes written into the token's `access` claim, in the same form.
    pub granted: Vec<String>,
    /// HTTP status of the response: 200 when a token was issued.
    pub status: u16,
}

/// A running token endpoint on `https://localhost:<port>/token`. Stops on Drop.
pub struct TokenServer {
    state: Arc<TokenState>,
    port: u16,
    shutdown: CancellationToken,
}

struct TokenState {
    options: Mutex<TokenOptions>,
    denied: Mutex<HashSet<String>>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicUsize,
    signing_key: EncodingKey,
    /// Standard base64 DER of the signer certificate, as the JWS `x5c` header requires.
    x5c: String,
    service: String,
    issuer: String,
}

impl TokenServer {
    /// Starts the server on 127.0.0.1 and, when the machine has IPv6, ::1, so that `localhost`
    /// reaches it through either address.
    pub fn start(pki: &Pki, options: TokenOptions) -> TokenServer {
        let state = Arc::new(TokenState {
            options: Mutex::new(options),
            denied: Mutex::new(HashSet::new()),
            requests: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
            signing_key: EncodingKey::from_ec_der(pki.signer_key_der()),
            x5c: base64::engine::general_purpose::STANDARD.encode(pki.signer_cert_der()),
            service: "ferry-test-registry".to_string(),
            issuer: "ferry-test-token-issuer".to_string(),
        });
        let tls = tls_acceptor(pki);
        let router = Router::new()
            .route("/token", get(get_token).post(post_token))
            .with_state(Arc::clone(&state));
        let shutdown = CancellationToken::new();

        let port = block_on(async {
            let v4 = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("failed to bind the token server to 127.0.0.1");
            let port = v4.local_addr().unwrap().port();
            let v6 = TcpListener::bind(("::1", port)).await.ok();
            for listener in std::iter::once(v4).chain(v6) {
                tokio::spawn(serve_tls(
                    listener,
                    tls.clone(),
                    router.clone(),
                    shutdown.clone(),
                ));
            }
            port
        });

        TokenServer {
            state,
            port,
            shutdown,
        }
    }

    /// Returns the realm URL the registry sends in its `WWW-Authenticate` challenge.
    pub fn realm(&self) -> String {
        let host = self.state.options.lock().unwrap().realm_host.clone();
        format!("https://{host}:{}/token", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the `service` value of the challenge, also the tokens' `aud` claim.
    pub fn service(&self) -> &str {
        &self.state.service
    }

    /// Returns the tokens' `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Returns the number of tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Returns every request handled so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Makes later tokens for `user` carry an empty `access` claim although the credentials
    /// are valid, so the registry rejects them with 401 `insufficient_scope`.
    pub fn deny(&self, user: &str) {
        self.state.denied.lock().unwrap().insert(user.to_string());
    }

    /// Undoes [`TokenServer::deny`].
    pub fn allow(&self, user: &str) {
        self.state.denied.lock().unwrap().remove(user);
    }

    /// Changes `expires_in` and `registry_lifetime` for tokens issued from now on.
    pub fn set_lifetime(&self, expires_in: u64, registry_lifetime: Option<Duration>) {
        let mut options = self.state.options.lock().unwrap();
        options.expires_in = expires_in;
        options.registry_lifetime = registry_lifetime;
    }

    /// Returns the user that [`Registry::push`](super::Registry::push) authenticates as, the
    /// first one allowed to push.
    pub(crate) fn push_user(&self) -> Option<(String, String)> {
        let options = self.state.options.lock().unwrap();
        options
            .users
            .iter()
            .find(|user| user.actions.iter().any(|action| action == "push"))
            .map(|user| (user.name.clone(), user.password.clone()))
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn tls_acceptor(pki: &Pki) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let cert = CertificateDer::from(pki.server_cert_der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der().to_vec()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls rejected its default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("rustls rejected the test server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve_tls(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    router: Router,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let tls = tls.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// The credentials of one token request after parsing.
enum Credentials {
    Anonymous,
    User { name: String, password: String },
    Malformed,
}

async fn get_token(
    State(state): State<Arc<TokenState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let mut service = None;
    let mut scopes = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "service" => service = Some(value.into_owned()),
            "scope" => scopes.extend(value.split(' ').map(str::to_string)),
            _ => {}
        }
    }
    let credentials = basic_credentials(&headers);
    state.issue("GET", credentials, service, scopes, false)
}

async fn post_token(State(state): State<Arc<TokenState>>, body: Bytes) -> Response {
    if !state.options.lock().unwrap().accept_post {
        state.record(
            "POST",
            None,
            None,
            Vec::new(),
            Vec::new(),
            StatusCode::NOT_FOUND,
        );
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut grant_type = None;
    let mut service = None;
    let mut scopes = Vec::new();
    let mut username = None;
    let mut password = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        let value = value.into_owned();
        match key.as_ref() {
            "grant_type" => grant_type = Some(value),
            "service" => service = Some(value),
            "scope" => scopes.extend(value.split(' ').map(str::to_string)),
            "username" => username = Some(value),
            "password" => password = Some(value),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some("password") {
        let status = StatusCode::BAD_REQUEST;
        state.record("POST", username, service, scopes, Vec::new(), status);
        let body = serde_json::json!({"error": "unsupported_grant_type"});
        return json_response(status, &body);
    }
    let credentials = match (username, password) {
        (Some(name), Some(password)) => Credentials::User { name, password },
        _ => Credentials::Malformed,
    };
    state.issue("POST", credentials, service, scopes, true)
}

fn basic_credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::Anonymous;
    };
    let Some(encoded) = value.to_str().ok().and_then(|v| v.strip_prefix("Basic ")) else {
        return Credentials::Malformed;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return Credentials::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Credentials::Malformed;
    };
    match decoded.split_once(':') {
        Some((name, password)) => Credentials::User {
            name: name.to_string(),
            password: password.to_string(),
        },
        None => Credentials::Malformed,
    }
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

#[derive(Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl TokenState {
    fn issue(
        &self,
        method: &str,
        credentials: Credentials,
        service: Option<String>,
        scopes: Vec<String>,
        oauth2: bool,
    ) -> Response {
        let options = self.options.lock().unwrap().clone();

        let (account, allowed): (Option<String>, Vec<String>) = match credentials {
            Credentials::Anonymous if options.anonymous_pull => (None, vec!["pull".to_string()]),
            Credentials::Anonymous | Credentials::Malformed => {
                return self.unauthorized(method, None, service, scopes);
            }
            Credentials::User { name, password } => {
                let known = options
                    .users
                    .iter()
                    .find(|user| user.name == name && user.password == password);
                let Some(user) = known else {
                    return self.unauthorized(method, Some(name), service, scopes);
                };
                let allowed = if self.denied.lock().unwrap().contains(&name) {
                    Vec::new()
                } else {
                    user.actions.clone()
                };
                (Some(name), allowed)
            }
        };

        let access: Vec<Access> = scopes
            .iter()
            .filter_map(|scope| grant(scope, &allowed))
            .collect();
        let granted = access
            .iter()
            .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
            .collect();

        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let issued_at = now.as_secs() as i64;
        let expires_at = match options.registry_lifetime {
            Some(lifetime) => issued_at + lifetime.as_secs() as i64 - REGISTRY_LEEWAY_SECS,
            None => issued_at + options.expires_in as i64,
        };
        let sequence = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: account.clone().unwrap_or_default(),
            aud: service.clone().unwrap_or_else(|| self.service.clone()),
            exp: expires_at,
            nbf: issued_at,
            iat: issued_at,
            jti: format!("ferry-test-{sequence}-{}", now.as_nanos()),
            access,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_string());
        header.x5c = Some(vec![self.x5c.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .expect("failed to sign a test token");

        self.record(method, account, service, scopes, granted, StatusCode::OK);
        let issued_at_text = time::OffsetDateTime::from_unix_timestamp(issued_at)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut body = serde_json::json!({
            "access_token": token,
            "expires_in": options.expires_in,
            "issued_at": issued_at_text,
        });
        // An OAuth2 token response (RFC 6749, section 5.1) carries `access_token`, not `token`.
        if !oauth2 {
            body["token"] = serde_json::Value::String(token);
        }
        json_response(StatusCode::OK, &body)
    }

    fn unauthorized(
        &self,
        method: &str,
        account: Option<String>,
        service: Option<String>,
        scopes: Vec<String>,
    ) -> Response {
        let status = StatusCode::UNAUTHORIZED;
        self.record(method, account, service, scopes, Vec::new(), status);
        let body = serde_json::json!({
            "errors": [{"code": "UNAUTHORIZED", "message": "invalid user name or password"}]
        });
        let mut response = json_response(status, &body);
        let challenge = header::HeaderValue::from_static("Basic realm=\"ferry test token server\"");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        response
    }

    fn record(
        &self,
        method: &str,
        account: Option<String>,
        service: Option<String>,
        scopes: Vec<String>,
        granted: Vec<String>,
        status: StatusCode,
    ) {
        self.requests.lock().unwrap().push(TokenRequest {
            method: method.to_string(),
            account,
            service,
            scopes,
            granted,
            status: status.as_u16(),
        });
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("failed to serialize a JSON response");
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Returns the part of `scope` that `allowed` covers, or `None` when nothing is granted.
///
/// A repository name may contain `host:port`, so the type is split off the left and the
/// actions off the right.
fn grant(scope: &str, allowed: &[String]) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" || name.is_empty() {
        return None;
    }
    let actions: Vec<String> = actions
        .split(',')
        .filter(|action| allowed.iter().any(|a| a == action))
        .map(str::to_string)
        .collect();
    if actions.is_empty() {
        return None;
    }
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions,
    })
}
