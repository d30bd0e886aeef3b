//! Registry client behaviour the real distribution registry cannot produce with filesystem
//! storage: blob redirects to another host, and tokens the registry stops accepting before they
//! expire. A small axum server stands in for those misbehaving registries only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use ferry::cache::BlobCache;
use ferry::credentials::Credential;
use ferry::digest::Digest;
use ferry::manifest::Descriptor;
use ferry::reference::Reference;
use ferry::registry::{blob, Client, ClientOptions};
use ferry::settings::Secret;

const BLOB: &[u8] = b"blob content served after a redirect";

#[derive(Default)]
struct Seen {
    /// Authorization header of each request, by path.
    authorization: Vec<(String, Option<String>)>,
    tokens_issued: u32,
}

type Shared = Arc<Mutex<Seen>>;

fn record(seen: &Shared, path: &str, headers: &HeaderMap) {
    let value = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
    seen.lock().unwrap().authorization.push((path.to_owned(), value));
}

async fn start(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

fn client_for(hosts: &[String], credential: Credential, registry: &str) -> Client {
    let options = ClientOptions { plain_http: hosts.to_vec(), certs_dir: None, ..ClientOptions::default() };
    let mut client = Client::new(options);
    client.set_credential(registry, credential);
    client
}

fn descriptor(data: &[u8]) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": "application/octet-stream",
        "digest": Digest::of(data).to_string(),
        "size": data.len(),
    }))
    .unwrap()
}

#[tokio::test]
async fn redirect_to_other_host_drops_authorization() {
    let seen: Shared = Arc::default();

    // The storage host: another host name (localhost) and port than the registry (127.0.0.1).
    let storage = Router::new()
        .route("/storage/{name}", get(|State(seen): State<Shared>, Path(name): Path<String>, headers: HeaderMap| async move {
            record(&seen, &format!("/storage/{name}"), &headers);
            BLOB.to_vec()
        }))
        .with_state(seen.clone());
    let storage_address = start(storage).await;

    let registry = Router::new()
        .route("/v2/", get(|headers: HeaderMap| async move {
            if headers.contains_key("authorization") {
                StatusCode::OK.into_response()
            } else {
                (StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"test\"")]).into_response()
            }
        }))
        .route("/v2/app/blobs/{digest}", get(move |State(seen): State<Shared>, Path(digest): Path<String>, headers: HeaderMap| async move {
            record(&seen, "/v2/app/blobs", &headers);
            let location = format!("http://localhost:{}/storage/{digest}", storage_address.port());
            (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response()
        }))
        .with_state(seen.clone());
    let registry_address = start(registry).await;

    let registry_host = registry_address.to_string();
    let storage_host = format!("localhost:{}", storage_address.port());
    let client = client_for(
        &[registry_host.clone(), storage_host],
        Credential::Basic { username: "alice".into(), password: Secret::new("redirect-secret") },
        &registry_host,
    );
    let reference = Reference::parse(&format!("{registry_host}/app:1")).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(cache_dir.path());
    let fetched = blob::download(&client, &reference, &descriptor(BLOB), &cache, &|_| {}).await.unwrap();

    assert_eq!(fetched, blob::Fetched::Downloaded(BLOB.len() as u64));
    assert_eq!(std::fs::read(cache.blob_path(&Digest::of(BLOB))).unwrap(), BLOB);
    let seen = seen.lock().unwrap();
    let registry_auth = seen.authorization.iter().find(|(p, _)| p == "/v2/app/blobs").unwrap();
    assert!(registry_auth.1.as_deref().is_some_and(|v| v.starts_with("Basic ")), "{:?}", seen.authorization);
    let storage_auth = seen.authorization.iter().find(|(p, _)| p.starts_with("/storage/")).unwrap();
    assert_eq!(storage_auth.1, None, "the storage host must not receive the registry credentials");
}

#[tokio::test]
async fn rejected_token_is_renewed_once() {
    let seen: Shared = Arc::default();
    let token_server = Router::new()
        .route("/token", get(|State(seen): State<Shared>| async move {
            let mut seen = seen.lock().unwrap();
            seen.tokens_issued += 1;
            let body = serde_json::json!({ "token": format!("token-{}", seen.tokens_issued), "expires_in": 300 });
            ([("content-type", "application/json")], body.to_string())
        }))
        .with_state(seen.clone());
    let token_address = start(token_server).await;
    let realm = format!("http://localhost:{}/token", token_address.port());

    // The registry accepts only the second token, as if the first had been revoked.
    let challenge = format!("Bearer realm=\"{realm}\",service=\"test\"");
    let registry = Router::new()
        .route("/v2/", {
            let challenge = challenge.clone();
            get(move || async move { (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response() })
        })
        .route("/v2/app/blobs/{digest}", get(move |State(seen): State<Shared>, headers: HeaderMap| {
            let challenge = challenge.clone();
            async move {
                record(&seen, "/v2/app/blobs", &headers);
                let authorized = headers.get("authorization").is_some_and(|v| v == "Bearer token-2");
                let response: Response = if authorized {
                    BLOB.to_vec().into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, [("www-authenticate", format!("{challenge},error=\"invalid_token\""))]).into_response()
                };
                response
            }
        }))
        .with_state(seen.clone());
    let registry_address = start(registry).await;

    let registry_host = registry_address.to_string();
    let client = client_for(
        &[registry_host.clone(), format!("localhost:{}", token_address.port())],
        Credential::Basic { username: "alice".into(), password: Secret::new("token-secret") },
        &registry_host,
    );
    let reference = Reference::parse(&format!("{registry_host}/app:1")).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(cache_dir.path());
    blob::download(&client, &reference, &descriptor(BLOB), &cache, &|_| {}).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.tokens_issued, 2);
    let attempts: HashMap<Option<String>, usize> = seen.authorization.iter().fold(HashMap::new(), |mut counts, (_, auth)| {
        *counts.entry(auth.clone()).or_default() += 1;
        counts
    });
    assert_eq!(attempts.get(&Some("Bearer token-1".to_owned())), Some(&1));
    assert_eq!(attempts.get(&Some("Bearer token-2".to_owned())), Some(&1));
}
