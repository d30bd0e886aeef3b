//! The push side of the distribution API: blob checks, cross-repository mounts, blob uploads
//! and manifests.
//!
//! Uploads are monolithic: one `POST` opens an upload session and one `PUT ?digest=` sends the
//! whole blob as a stream. A registry that rejects a body that large (HTTP 413) gets the blob in
//! `PATCH` chunks instead. Every request goes through the same retries, redirects and token
//! handling as pulls, with a token scope of pull and push on the destination repository.

use std::io::Read;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::{auth, status_error, Access, BodyFactory, Client, RegistryError};
use crate::archive::BlobSource;
use crate::digest::Digest;
use crate::manifest;
use crate::reference::Reference;

/// Size of one `PATCH` when a registry rejects monolithic uploads.
const CHUNK_BYTES: u64 = 16 << 20;

/// Outcome of putting a blob into the destination repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pushed {
    /// The repository already had it.
    Present,
    /// Mounted from another repository of the same registry, without sending data.
    Mounted,
    /// Sent.
    Uploaded,
}

impl Client {
    /// Returns whether `reference`'s repository has blob `digest` (`HEAD` on the blob).
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let what = format!("blob {digest} of {}", reference.name());
        let url = format!("{}/v2/{}/blobs/{digest}", self.base_url(&reference.registry), reference.repository);
        let access = Access::push(&reference.repository);
        let response = self.request_with(&reference.registry, &access, Method::HEAD, &url, HeaderMap::new(), None, &what).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(self.push_error(&what, reference, status, response).await),
        }
    }

    /// Returns the digest the tag or digest `lookup` points to in `reference`'s repository, or
    /// `None` when the registry has no such manifest. One `HEAD` request.
    pub async fn manifest_digest(&self, reference: &Reference, lookup: &str, push: bool) -> Result<Option<Digest>, RegistryError> {
        let what = format!("manifest {}:{lookup}", reference.name());
        let url = format!("{}/v2/{}/manifests/{lookup}", self.base_url(&reference.registry), reference.repository);
        let access = if push { Access::push(&reference.repository) } else { Access::pull(&reference.repository) };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
        let response = self.request_with(&reference.registry, &access, Method::HEAD, &url, headers, None, &what).await?;
        match response.status() {
            StatusCode::OK => {
                let digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                match digest {
                    Some(digest) => Ok(Some(digest)),
                    // Without the header the digest is unknown, so the manifest counts as absent
                    // and is fetched and pushed again.
                    None => Ok(None),
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(self.push_error(&what, reference, status, response).await),
        }
    }

    /// Puts blob `digest` of `size` bytes into `reference`'s repository: nothing when it is
    /// there, a mount when `mount_from` (another repository of the same registry) has it and the
    /// registry agrees, else an upload of `source`.
    pub async fn push_blob(&self, reference: &Reference, digest: &Digest, size: u64, source: &BlobSource, mount_from: Option<&str>) -> Result<Pushed, RegistryError> {
        if self.blob_exists(reference, digest).await? {
            return Ok(Pushed::Present);
        }
        if let Some(from) = mount_from {
            if self.mount_blob(reference, digest, from).await? {
                return Ok(Pushed::Mounted);
            }
        }
        self.upload_blob(reference, digest, size, source).await?;
        Ok(Pushed::Uploaded)
    }

    /// Asks the registry to mount blob `digest` from repository `from` into `reference`'s
    /// repository. Returns false when it does not (the blob is not there, or the token or the
    /// registry refuses), so the caller uploads instead.
    pub async fn mount_blob(&self, reference: &Reference, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        if from == reference.repository {
            return Ok(false);
        }
        let what = format!("mount of blob {digest} from {from} into {}", reference.name());
        match self.start_upload(reference, Some((digest, from)), &what).await {
            Ok(UploadStart::Mounted) => Ok(true),
            Ok(UploadStart::Session(session)) => {
                // The registry opened an upload instead; cancel it rather than leave it behind.
                let access = Access::push(&reference.repository);
                let cancelled = self.request_with(&reference.registry, &access, Method::DELETE, session.as_str(), HeaderMap::new(), None, &what).await;
                if let Err(err) = cancelled {
                    tracing::debug!(error = %err, "cancelling the upload session failed");
                }
                Ok(false)
            }
            Err(err @ (RegistryError::Unreachable { .. } | RegistryError::RetriesExhausted { .. } | RegistryError::Tls { .. })) => Err(err),
            Err(err) => {
                tracing::debug!(error = %err, from, "blob mount rejected, uploading instead");
                Ok(false)
            }
        }
    }

    /// Uploads `size` bytes of `source` as blob `digest`: one monolithic `PUT`, or `PATCH`
    /// chunks when the registry rejects that body as too large (HTTP 413). The registry checks
    /// the digest of what it receives.
    pub async fn upload_blob(&self, reference: &Reference, digest: &Digest, size: u64, source: &BlobSource) -> Result<(), RegistryError> {
        let what = format!("upload of blob {digest} to {}", reference.name());
        let UploadStart::Session(session) = self.start_upload(reference, None, &what).await? else {
            return Ok(());
        };
        match self.put_monolithic(reference, &session, digest, size, source, &what).await {
            Err(RegistryError::Status { status: 413, .. }) => {
                tracing::debug!(%digest, "the registry rejected a monolithic upload as too large, sending chunks");
                let UploadStart::Session(session) = self.start_upload(reference, None, &what).await? else {
                    return Ok(());
                };
                self.put_chunked(reference, session, digest, size, source, &what).await
            }
            result => result,
        }
    }

    /// Pushes a manifest or index as the exact bytes given, under `lookup` (a tag, or its own
    /// digest). Returns its digest.
    pub async fn put_manifest(&self, reference: &Reference, lookup: &str, media_type: &str, raw: &[u8]) -> Result<Digest, RegistryError> {
        let what = format!("push of manifest {}:{lookup}", reference.name());
        let digest = Digest::of(raw);
        let url = format!("{}/v2/{}/manifests/{lookup}", self.base_url(&reference.registry), reference.repository);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(media_type).map_err(|_| invalid_media_type(&what, media_type))?);
        let bytes = bytes::Bytes::copy_from_slice(raw);
        let body = move || Ok(reqwest::Body::from(bytes.clone()));
        let access = Access::push(&reference.repository);
        let response = self.request_with(&reference.registry, &access, Method::PUT, &url, headers, Some(&body), &what).await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(self.push_error(&what, reference, response.status(), response).await);
        }
        let returned = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<Digest>().ok());
        if let Some(returned) = returned.filter(|r| *r != digest) {
            return Err(RegistryError::DigestMismatch { what, expected: digest, actual: returned });
        }
        Ok(digest)
    }

    /// Opens an upload session, or mounts `mount` (digest and source repository).
    async fn start_upload(&self, reference: &Reference, mount: Option<(&Digest, &str)>, what: &str) -> Result<UploadStart, RegistryError> {
        let mut url = Url::parse(&format!("{}/v2/{}/blobs/uploads/", self.base_url(&reference.registry), reference.repository))
            .map_err(|e| RegistryError::Unreachable { host: reference.registry.clone(), detail: e.to_string() })?;
        let mut access = Access::push(&reference.repository);
        if let Some((digest, from)) = mount {
            url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", from);
            access.mount_from = Some(from.to_owned());
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let empty = || Ok(reqwest::Body::from(Vec::new()));
        let response = self.request_with(&reference.registry, &access, Method::POST, url.as_str(), headers, Some(&empty), what).await?;
        match response.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => Ok(UploadStart::Session(session_url(&url, &response, what)?)),
            status => Err(self.push_error(what, reference, status, response).await),
        }
    }

    /// Uploads a blob whose bytes `body` produces, in one `PUT`, for a caller that streams them
    /// from elsewhere. `body` is called once per attempt. The registry checks the bytes against
    /// `digest` when it closes the upload.
    pub(crate) async fn upload_blob_from(&self, reference: &Reference, digest: &Digest, size: u64, body: &BodyFactory<'_>) -> Result<(), RegistryError> {
        let what = format!("upload of blob {digest} to {}", reference.name());
        let UploadStart::Session(session) = self.start_upload(reference, None, &what).await? else {
            return Ok(());
        };
        self.put_monolithic_with(reference, &session, digest, size, body, &what).await
    }

    /// Sends the whole blob in one `PUT` and closes the session.
    async fn put_monolithic(&self, reference: &Reference, session: &Url, digest: &Digest, size: u64, source: &BlobSource, what: &str) -> Result<(), RegistryError> {
        let body = || stream_body(source, 0, size);
        self.put_monolithic_with(reference, session, digest, size, &body, what).await
    }

    async fn put_monolithic_with(&self, reference: &Reference, session: &Url, digest: &Digest, size: u64, body: &BodyFactory<'_>, what: &str) -> Result<(), RegistryError> {
        let mut url = session.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let access = Access::push(&reference.repository);
        let response = self.request_with(&reference.registry, &access, Method::PUT, url.as_str(), headers, Some(body), what).await?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            status => Err(self.push_error(what, reference, status, response).await),
        }
    }

    /// Sends the blob in `PATCH` chunks of [`CHUNK_BYTES`], then closes the session with an
    /// empty `PUT ?digest=`.
    async fn put_chunked(&self, reference: &Reference, mut session: Url, digest: &Digest, size: u64, source: &BlobSource, what: &str) -> Result<(), RegistryError> {
        let access = Access::push(&reference.repository);
        let mut start = 0;
        while start < size {
            let len = CHUNK_BYTES.min(size - start);
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            let range = format!("{start}-{}", start + len - 1);
            headers.insert("content-range", HeaderValue::from_str(&range).expect("valid header"));
            let body = || stream_body(source, start, len);
            let response = self.request_with(&reference.registry, &access, Method::PATCH, session.as_str(), headers, Some(&body), what).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(self.push_error(what, reference, response.status(), response).await);
            }
            session = session_url(&session, &response, what)?;
            start += len;
        }
        let mut url = session;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let empty = || Ok(reqwest::Body::from(Vec::new()));
        let response = self.request_with(&reference.registry, &access, Method::PUT, url.as_str(), headers, Some(&empty), what).await?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            status => Err(self.push_error(what, reference, status, response).await),
        }
    }

    /// Turns a failed push request into an error; 403 names the missing permission.
    async fn push_error(&self, what: &str, reference: &Reference, status: StatusCode, response: Response) -> RegistryError {
        if status == StatusCode::FORBIDDEN {
            let user = auth::describe_user(self.credentials.get(&reference.registry));
            return RegistryError::PushDenied { what: what.to_owned(), user, repository: reference.name() };
        }
        status_error(what, status, response).await
    }
}

enum UploadStart {
    Mounted,
    /// URL of the upload session (the `Location` header, resolved against the request).
    Session(Url),
}

fn session_url(request: &Url, response: &Response, what: &str) -> Result<Url, RegistryError> {
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| RegistryError::Status {
        what: what.to_owned(),
        status: response.status().as_u16(),
        detail: ": the registry sent no Location for the upload session".into(),
    })?;
    request.join(location).map_err(|e| RegistryError::Status {
        what: what.to_owned(),
        status: response.status().as_u16(),
        detail: format!(": invalid upload Location {location:?}: {e}"),
    })
}

fn invalid_media_type(what: &str, media_type: &str) -> RegistryError {
    RegistryError::Status { what: what.to_owned(), status: 0, detail: format!(": invalid media type {media_type:?}") }
}

/// Returns a request body that streams `len` bytes of `source` from byte `start`, read on a
/// blocking thread one MiB at a time.
/// Bytes read from disk per chunk of an upload body. With the channel of 4 chunks, an upload
/// keeps at most about 1.25 MiB in memory.
const UPLOAD_BUFFER_BYTES: usize = 256 * 1024;

fn stream_body(source: &BlobSource, start: u64, len: u64) -> Result<reqwest::Body, RegistryError> {
    let mut reader = source.open_range(start, len).map_err(|source_error| RegistryError::Io { path: source_path(source), source: source_error })?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || loop {
        let mut buffer = bytes::BytesMut::zeroed(UPLOAD_BUFFER_BYTES);
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                buffer.truncate(n);
                if sender.blocking_send(Ok(buffer.freeze())).is_err() {
                    break;
                }
            }
            Err(err) => {
                let _ = sender.blocking_send(Err(err));
                break;
            }
        }
    });
    Ok(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)))
}

fn source_path(source: &BlobSource) -> std::path::PathBuf {
    match source {
        BlobSource::File(path) => path.clone(),
        BlobSource::Range { parts, .. } => parts.files().first().map(|(path, _)| path.clone()).unwrap_or_default(),
    }
}
