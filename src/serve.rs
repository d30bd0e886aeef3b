//! `ferry serve`: a read-only OCI distribution registry (pull side only) over an OCI image
//! layout folder or an image archive, so that Docker, containerd or skopeo on other machines
//! can pull what `ferry warmup --to oci:PATH` or `ferry save` stored.
//!
//! Endpoints: `GET /v2/`, `GET`/`HEAD /v2/<name>/manifests/<tag-or-digest>`,
//! `GET`/`HEAD /v2/<name>/blobs/<digest>` (with single `Range` requests) and
//! `GET /v2/<name>/tags/list`. Every other method is rejected with 405 `UNSUPPORTED`.
//! Tags resolve through [`crate::layout::Layout::resolve`], or the same rules over an archive's
//! `index.json`. Digests and blobs are served for any repository name, because neither store
//! has per-repository storage. Archives are read in place, by byte range, through their OCI view
//! (`serve::store`). HTTPS (`serve::tls`) and HTTP Basic authentication (`serve::auth`) are
//! optional.

mod auth;
mod store;
mod tls;

use std::future::Future;
use std::io::{self, Read, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::io::ReaderStream;

pub use auth::{Htpasswd, REALM};
pub use store::{ArchiveStore, Store};
pub use tls::TlsConfig;

use crate::archive::read::ArchiveError;
use crate::digest::Digest;
use crate::layout::{LayoutError, LAYOUT_VERSION};
use store::{BlobLocation, StoreError};

const API_VERSION_HEADER: &str = "docker-distribution-api-version";
const API_VERSION: &str = "registry/2.0";
const DIGEST_HEADER: &str = "docker-content-digest";
/// Bytes read per step when a blob is streamed from an archive.
const ARCHIVE_CHUNK: usize = 256 << 10;

/// Error from opening what to serve, reading the TLS or htpasswd files, or running the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("failed to listen on {address}: choose another --listen address or stop the process using it")]
    Bind {
        address: String,
        #[source]
        source: io::Error,
    },

    #[error("the registry on {address} stopped with an error")]
    Server {
        address: String,
        #[source]
        source: io::Error,
    },

    #[error("nothing to serve at {path}: pass an OCI image layout folder, an archive file, or the first part (FILE.001) of a split archive")]
    NotFound { path: PathBuf },

    #[error(transparent)]
    Layout(Box<LayoutError>),

    #[error(transparent)]
    Archive(Box<ArchiveError>),

    #[error("{path} cannot be served: it has no OCI view (oci-layout and index.json). ferry serve reads OCI layout folders and archives from ferry save, skopeo oci-archive: and docker save from Docker 25 on. {hint}")]
    NoOciView { path: PathBuf, hint: String },

    #[error("{path}: oci-layout declares imageLayoutVersion {version:?}, but ferry reads only version {LAYOUT_VERSION}")]
    UnsupportedArchiveLayout { path: PathBuf, version: String },

    #[error("failed to read the TLS {file_kind} {path}")]
    TlsRead {
        file_kind: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid TLS {file_kind} {path}: {reason}")]
    TlsFile { file_kind: &'static str, path: PathBuf, reason: String },

    #[error("the TLS private key {key} does not belong to the certificate {certificate}, or its type is not supported; pass the key the certificate was made for")]
    TlsPair {
        certificate: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    #[error("failed to read the htpasswd file {path}")]
    HtpasswdRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid htpasswd file {path}, line {line}: {reason}")]
    HtpasswdLine { path: PathBuf, line: usize, reason: &'static str },

    #[error("the htpasswd file {path} lists no users; add one with: htpasswd -B {path} USER")]
    HtpasswdEmpty { path: PathBuf },

    #[error("--htpasswd without TLS on {address} would send passwords over the network in clear text: add --tls-cert and --tls-key, or listen on a loopback address such as 127.0.0.1")]
    CleartextPasswords { address: SocketAddr },

    #[error("failed to get random bytes from the operating system for the credential cache")]
    Random,
}

impl From<LayoutError> for ServeError {
    fn from(error: LayoutError) -> ServeError {
        ServeError::Layout(Box::new(error))
    }
}

impl From<ArchiveError> for ServeError {
    fn from(error: ArchiveError) -> ServeError {
        ServeError::Archive(Box::new(error))
    }
}

/// Transport and access settings: HTTPS or plain HTTP, with or without Basic authentication.
#[derive(Debug, Default)]
pub struct ServeOptions {
    /// Serve HTTPS with this certificate and key; plain HTTP when `None`.
    pub tls: Option<TlsConfig>,
    /// Require HTTP Basic authentication with the users of this file.
    pub htpasswd: Option<Htpasswd>,
}

/// Rejects Basic authentication over plain HTTP on an address other hosts can reach, because
/// the passwords would cross the network in clear text. Loopback addresses are allowed.
pub fn check_transport(address: SocketAddr, options: &ServeOptions) -> Result<(), ServeError> {
    if options.htpasswd.is_some() && options.tls.is_none() && !address.ip().is_loopback() {
        return Err(ServeError::CleartextPasswords { address });
    }
    Ok(())
}

/// Binds a TCP listener on `address` (such as `127.0.0.1:5000` or `[::]:5000`).
pub async fn bind(address: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address: address.to_owned(), source })
}

/// Serves `store` on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns. Fails before serving anything when [`check_transport`] rejects the
/// options for the listener's address.
pub async fn serve(
    store: impl Into<Store>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = store.into();
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Server { address: "the listener".to_owned(), source })?;
    check_transport(local, &options)?;
    let address = local.to_string();
    let server_error = |source| ServeError::Server { address: address.clone(), source };
    tracing::info!(
        %address,
        store = %store.path().display(),
        tls = options.tls.is_some(),
        authentication = options.htpasswd.is_some(),
        "registry started"
    );

    let app = router(store, options.htpasswd)?.into_make_service();
    let listener = listener.into_std().map_err(server_error)?;
    let handle = axum_server::Handle::new();
    let server = async {
        match options.tls {
            Some(tls) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config());
                axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone()).serve(app).await
            }
            None => axum_server::from_tcp(listener)?.handle(handle.clone()).serve(app).await,
        }
    };
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            handle.graceful_shutdown(None);
            server.await
        }
    };

    tracing::info!(%address, "registry stopped");
    result.map_err(server_error)
}

/// Builds the registry's routes over `store`, for callers that run their own server (tests,
/// or another listener type). With `htpasswd`, every request needs Basic credentials.
pub fn router(store: impl Into<Store>, htpasswd: Option<Htpasswd>) -> Result<Router, ServeError> {
    let mut router = Router::new()
        .route("/v2", any(ping))
        .route("/v2/", any(ping))
        .route("/v2/{*path}", any(dispatch))
        .fallback(unknown_endpoint);
    if let Some(htpasswd) = htpasswd {
        let authenticator = Arc::new(auth::Authenticator::new(htpasswd)?);
        router = router.layer(middleware::from_fn_with_state(authenticator, auth::require_credentials));
    }
    Ok(router.layer(middleware::from_fn(log_and_tag)).with_state(store.into()))
}

/// Logs every request at debug level and adds the API version header to every response.
async fn log_and_tag(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let range = request.headers().get(header::RANGE).cloned();
    let started = Instant::now();

    let mut response = next.run(request).await;
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));

    tracing::debug!(
        %method,
        %path,
        range = ?range,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn ping(method: Method) -> Response {
    if let Some(rejection) = reject_writes(&method) {
        return rejection;
    }
    json_response(StatusCode::OK, "{}".into())
}

async fn unknown_endpoint(method: Method) -> Response {
    if let Some(rejection) = reject_writes(&method) {
        return rejection;
    }
    ApiError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", "unknown endpoint: this registry serves only /v2/ paths for manifests, blobs and tags".into())
        .into_response()
}

/// Routes `/v2/<name>/...`. The name may contain slashes, so the path is split on the last
/// `/manifests/`, `/blobs/` or `/tags/list` instead of by the router.
async fn dispatch(State(store): State<Store>, request: Request) -> Response {
    let method = request.method().clone();
    if let Some(rejection) = reject_writes(&method) {
        return rejection;
    }
    let head = method == Method::HEAD;
    let path = request.uri().path().strip_prefix("/v2/").unwrap_or_default();

    let result = match parse_route(path) {
        Some(Route::Manifest { name, reference }) => manifest(store, name.to_owned(), reference.to_owned(), head).await,
        Some(Route::Blob { digest, .. }) => blob(store, digest, head, request.headers()).await,
        Some(Route::Tags { name }) => tags(store, name.to_owned()).await,
        None => return unknown_endpoint(method).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Tags { name: &'a str },
}

fn parse_route(path: &str) -> Option<Route<'_>> {
    if let Some(name) = path.strip_suffix("/tags/list") {
        return (!name.is_empty()).then_some(Route::Tags { name });
    }
    let split = |separator: &str| {
        path.rsplit_once(separator)
            .filter(|(name, last)| !name.is_empty() && !last.is_empty() && !last.contains('/'))
    };
    if let Some((name, reference)) = split("/manifests/") {
        return Some(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = split("/blobs/") {
        return Some(Route::Blob { name, digest });
    }
    None
}

fn reject_writes(method: &Method) -> Option<Response> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let message = format!("{method} is not supported: this registry is read-only and serves only GET and HEAD requests");
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message).into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

/// Serves the stored manifest bytes, checked against their digest. The `Content-Type` is the
/// manifest's own `mediaType` field, which clients compare with the header, and the
/// descriptor's media type when the manifest has no such field.
async fn manifest(store: Store, name: String, reference: String, head: bool) -> Result<Response, ApiError> {
    let is_digest = reference.contains(':');
    if is_digest {
        parse_digest(&reference)?;
    }

    let found = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let noun = store.noun();
        let Some(entry) = store.resolve(&name, &reference)? else {
            if !is_digest && store.tags(&name)?.is_empty() {
                return Err(ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository {name:?} is not in this {noun}")));
            }
            return Err(ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("manifest {name}:{reference} is not in this {noun}")));
        };
        let Some(bytes) = store.read_manifest(&entry)? else {
            tracing::warn!(%name, %reference, digest = %entry.digest, store = %store.path().display(), "the {noun} lists a manifest whose blob is missing");
            return Err(ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("manifest {} is listed but its blob is missing from the {noun}", entry.digest)));
        };
        let media_type = media_type_field(&bytes).unwrap_or(entry.media_type);
        Ok((entry.digest, media_type, bytes))
    })
    .await
    .map_err(ApiError::from_join)??;

    let (digest, media_type, bytes) = found;
    let length = bytes.len();
    let mut response = if head { Response::new(Body::empty()) } else { Response::new(Body::from(bytes)) };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&media_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(DIGEST_HEADER, header_value(digest.as_str()));
    Ok(response)
}

fn media_type_field(manifest: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct MediaTypeField {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaTypeField>(manifest).ok()?.media_type
}

/// A blob ready to be read: an open layout file, or a byte range of an archive.
enum OpenBlob {
    File(tokio::fs::File, PathBuf),
    Range { parts: Arc<crate::archive::Parts>, offset: u64 },
}

/// Streams a blob from a layout file or an archive's byte range. A single `Range` gives 206
/// with `Content-Range`; an unsatisfiable or malformed range gives 416. A request for several
/// ranges gets the whole blob with 200, which RFC 9110, section 14.2, allows.
///
/// NOTE: blobs are streamed without checking them against their digest, because that would mean
/// reading a whole layer before sending its first byte. Clients verify what they download.
/// Manifests are small and are checked before they are sent.
async fn blob(store: Store, digest: &str, head: bool, headers: &HeaderMap) -> Result<Response, ApiError> {
    let digest = parse_digest(digest)?;
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("blob {digest} is not in this {}", store.noun()));

    let (blob, size) = match store.blob(&digest) {
        None => return Err(unknown()),
        Some(BlobLocation::Range { parts, offset, size }) => (OpenBlob::Range { parts, offset }, size),
        Some(BlobLocation::File(path)) => {
            let file = match tokio::fs::File::open(&path).await {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(unknown()),
                Err(err) => return Err(ApiError::internal(&LayoutError::Io { action: "open", path, source: err })),
            };
            let metadata = file
                .metadata()
                .await
                .map_err(|source| ApiError::internal(&LayoutError::Io { action: "read metadata of", path: path.clone(), source }))?;
            if !metadata.is_file() {
                return Err(unknown());
            }
            (OpenBlob::File(file, path), metadata.len())
        }
    };

    let range = match headers.get(header::RANGE) {
        Some(value) => single_range(value, size)?,
        None => None,
    };
    let (status, start, length) = match &range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, *range.start(), range.end() - range.start() + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head { Body::empty() } else { blob_body(&store, blob, start, length).await? };

    let mut response = Response::new(body);
    *response.status_mut() = status;
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(DIGEST_HEADER, header_value(digest.as_str()));
    if let Some(range) = range {
        let content_range = format!("bytes {}-{}/{size}", range.start(), range.end());
        response_headers.insert(header::CONTENT_RANGE, header_value(&content_range));
    }
    Ok(response)
}

/// Returns a body with `length` bytes of `blob` from byte `start` on.
async fn blob_body(store: &Store, blob: OpenBlob, start: u64, length: u64) -> Result<Body, ApiError> {
    match blob {
        OpenBlob::File(mut file, path) => {
            if start > 0 {
                file.seek(SeekFrom::Start(start))
                    .await
                    .map_err(|source| ApiError::internal(&LayoutError::Io { action: "seek in", path, source }))?;
            }
            Ok(Body::from_stream(ReaderStream::new(file.take(length))))
        }
        OpenBlob::Range { parts, offset } => {
            let reader = tokio::task::spawn_blocking(move || parts.read_range(offset + start, length))
                .await
                .map_err(ApiError::from_join)?
                .map_err(|source| ApiError::internal(&ArchiveError::Io { path: store.path().to_owned(), source }))?;
            Ok(Body::from_stream(blocking_chunks(reader)))
        }
    }
}

/// Streams `reader` in chunks, each read on tokio's blocking thread pool because archive parts
/// are read with `std::fs`.
fn blocking_chunks(reader: impl Read + Send + 'static) -> impl Stream<Item = io::Result<Bytes>> {
    futures::stream::try_unfold(reader, |mut reader| async move {
        let (reader, chunk) = tokio::task::spawn_blocking(move || {
            let mut chunk = vec![0; ARCHIVE_CHUNK];
            let count = loop {
                match reader.read(&mut chunk) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    result => break result?,
                }
            };
            chunk.truncate(count);
            Ok::<_, io::Error>((reader, chunk))
        })
        .await
        .map_err(io::Error::other)??;
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some((Bytes::from(chunk), reader)))
    })
}

/// Parses a `Range` header against a blob of `size` bytes: `None` to send the whole blob,
/// the one byte range to send, or a 416 error.
fn single_range(value: &HeaderValue, size: u64) -> Result<Option<std::ops::RangeInclusive<u64>>, ApiError> {
    let unsatisfiable = |reason: &str| {
        let value = String::from_utf8_lossy(value.as_bytes());
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
            format!("range {value:?} {reason} for a blob of {size} bytes; request bytes=START- or bytes=START-END"),
        )
        .with_header(header::CONTENT_RANGE, header_value(&format!("bytes */{size}")))
    };
    let text = value.to_str().map_err(|_| unsatisfiable("is not ASCII"))?;
    let ranges = http_range_header::parse_range_header(text)
        .map_err(|_| unsatisfiable("is malformed"))?
        .validate(size)
        .map_err(|_| unsatisfiable("cannot be satisfied"))?;
    match <[_; 1]>::try_from(ranges) {
        Ok([range]) => Ok(Some(range)),
        Err(_) => Ok(None),
    }
}

/// Lists the tags of `name`. The `n` and `last` pagination parameters are ignored, so the
/// whole list comes in one response.
async fn tags(store: Store, name: String) -> Result<Response, ApiError> {
    let noun = store.noun();
    let (name, tags) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let tags = store.tags(&name)?;
        Ok((name, tags))
    })
    .await
    .map_err(ApiError::from_join)??;

    if tags.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository {name:?} is not in this {noun}")));
    }
    let body = serde_json::json!({ "name": name, "tags": tags });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

fn parse_digest(value: &str) -> Result<Digest, ApiError> {
    value.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {value:?}: this registry stores only sha256: digests with 64 lowercase hex characters"),
        )
    })
}

/// Builds a header value from text that came from the store. Media types and digests are
/// ASCII in every valid layout or archive; anything else becomes an empty value rather than a
/// panic.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error response in the distribution format: `{"errors":[{"code","message"}]}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> ApiError {
        ApiError { status, code, message, headers: Vec::new() }
    }

    fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Logs a server-side failure with its causes and returns a 500 error. The client gets
    /// only a short message, so file paths stay in the server log.
    fn internal(error: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::warn!(error = %error_chain(error), "failed to serve a request");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "the registry failed to read the images it serves; see the server log".into())
    }

    fn from_join(error: tokio::task::JoinError) -> ApiError {
        ApiError::internal(&error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::internal(&error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(status = self.status.as_u16(), code = self.code, message = %self.message, "request rejected");
        let body = serde_json::json!({ "errors": [{ "code": self.code, "message": self.message }] });
        let mut response = json_response(self.status, body.to_string());
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Formats an error and its sources as `outer: inner: ...`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_manifest_with_slashes() {
        assert_eq!(
            parse_route("team/app/manifests/latest"),
            Some(Route::Manifest { name: "team/app", reference: "latest" })
        );
    }

    #[test]
    fn route_blob() {
        assert_eq!(parse_route("app/blobs/sha256:ab"), Some(Route::Blob { name: "app", digest: "sha256:ab" }));
    }

    #[test]
    fn route_tags() {
        assert_eq!(parse_route("a/b/tags/list"), Some(Route::Tags { name: "a/b" }));
    }

    #[test]
    fn route_rejects_incomplete_paths() {
        for path in ["manifests/latest", "app/manifests/", "app/blobs/uploads/", "tags/list", "app"] {
            assert_eq!(parse_route(path), None, "{path}");
        }
    }

    #[test]
    fn route_name_containing_manifests() {
        assert_eq!(
            parse_route("manifests/app/manifests/1"),
            Some(Route::Manifest { name: "manifests/app", reference: "1" })
        );
    }

    #[test]
    fn single_range_cases() {
        let range = |value: &str| single_range(&HeaderValue::from_str(value).unwrap(), 10);
        assert_eq!(range("bytes=2-").unwrap(), Some(2..=9));
        assert_eq!(range("bytes=2-4").unwrap(), Some(2..=4));
        assert_eq!(range("bytes=2-40").unwrap(), Some(2..=9));
        assert_eq!(range("bytes=-3").unwrap(), Some(7..=9));
        assert_eq!(range("bytes=0-1,4-5").unwrap(), None);
        assert_eq!(range("bytes=10-").unwrap_err().status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(range("bytes=5-2").unwrap_err().status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(range("items=0-1").unwrap_err().status, StatusCode::RANGE_NOT_SATISFIABLE);
    }
}
