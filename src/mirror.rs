//! `ferry mirror`: images copied from the source registry into a private registry, registry to
//! registry, without a Docker daemon.
//!
//! Manifests and indexes are pushed as the exact bytes pulled, so digests stay the same unless a
//! platform is picked out of an index. Blobs the destination has are skipped after a `HEAD`.
//! Blobs that this run already put into another repository of the destination are mounted from
//! there. The rest are streamed from the source into the upload and hashed on the way, falling
//! back to the blob cache (verified, resumable) when the stream fails. A re-run with nothing
//! changed costs one `HEAD` per image on each side.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::archive::BlobSource;
use crate::cache::BlobCache;
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::reference::{Reference, RegistryUrl};
use crate::registry::{blob, Client, Pushed, RegistryError};
use crate::save::{self, Platforms, SaveError, SavedImage};
use crate::warmup::{ImageOutcome, Status};

/// Destination registry and naming of the copies.
#[derive(Clone, Debug)]
pub struct Destination {
    /// `REGISTRY[/NAMESPACE]` of the private registry.
    pub registry: RegistryUrl,
    /// Prefix that replaces the source `REGISTRY_ENV` in repository names.
    pub prefix: String,
}

/// Source naming: the registry namespace and `REGISTRY_ENV` prefix taken off each source name
/// before the destination's are put on.
#[derive(Clone, Debug)]
pub struct SourceNames {
    pub registry: Option<RegistryUrl>,
    pub prefix: String,
}

#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// `All` keeps every platform of an index and its digest. `One` pushes only that
    /// platform's manifest under the tag, which gives the tag a new digest.
    pub platforms: Platforms,
    pub jobs: usize,
    pub keep_cache: bool,
}

/// One image to copy: where it comes from and where it goes.
#[derive(Clone, Debug)]
pub struct MirrorPair {
    pub source: Reference,
    pub destination: Reference,
}

/// Result of one image, for output and `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CopyOutcome {
    pub source: String,
    pub destination: String,
    pub status: Status,
    /// Digest the destination tag points to afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Set when a platform was picked out of an index: the source's index digest, which the
    /// destination does not keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_index_digest: Option<String>,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub seconds: f64,
    /// Remark for the operator, such as a new manifest digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CopyOutcome {
    /// Returns a failed outcome with nothing counted yet.
    pub fn new(source: String, destination: String) -> CopyOutcome {
        CopyOutcome {
            source,
            destination,
            status: Status::Failed,
            digest: None,
            source_index_digest: None,
            blobs_present: 0,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            seconds: 0.0,
            note: None,
            error: None,
        }
    }

    /// Counts the blobs that reached `repository` and remembers where each is, for later
    /// mounts. Returns the first error, after counting every blob that made it.
    pub(crate) fn record_blobs<E>(&mut self, results: Vec<Result<(Digest, Pushed, u64), E>>, placed: &mut HashMap<Digest, String>, repository: &str) -> Result<(), E> {
        let mut first_error = None;
        for result in results {
            match result {
                Ok((digest, pushed, bytes)) => {
                    self.count(pushed, bytes);
                    placed.entry(digest).or_insert_with(|| repository.to_owned());
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Counts one blob that reached the destination.
    pub fn count(&mut self, pushed: Pushed, bytes: u64) {
        match pushed {
            Pushed::Present => self.blobs_present += 1,
            Pushed::Mounted => self.blobs_mounted += 1,
            Pushed::Uploaded => self.blobs_uploaded += 1,
        }
        self.bytes_uploaded += bytes;
    }
}

impl From<&CopyOutcome> for ImageOutcome {
    fn from(outcome: &CopyOutcome) -> ImageOutcome {
        ImageOutcome {
            reference: outcome.source.clone(),
            digest: outcome.digest.clone(),
            image_id: None,
            platform: None,
            status: outcome.status,
            bytes: outcome.bytes_uploaded,
            seconds: outcome.seconds,
            error: outcome.error.clone(),
        }
    }
}

/// Returns the destination reference of `source`: its repository without the source
/// namespace and prefix, under the destination's namespace and prefix, with the same tag or
/// digest.
pub fn destination_of(source: &Reference, names: &SourceNames, destination: &Destination) -> Reference {
    let mut path = source.repository.as_str();
    if let Some(registry) = names.registry.as_ref().filter(|r| r.host == source.registry) {
        if let Some(namespace) = &registry.namespace {
            path = path.strip_prefix(namespace.as_str()).and_then(|p| p.strip_prefix('/')).unwrap_or(path);
        }
    }
    // The prefix is taken off the last component only, where REGISTRY_ENV puts it.
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, path),
    };
    let name = name.strip_prefix(names.prefix.as_str()).filter(|n| !n.is_empty()).unwrap_or(name);
    let mut repository = String::new();
    if let Some(namespace) = &destination.registry.namespace {
        repository.push_str(namespace);
        repository.push('/');
    }
    if let Some(parent) = parent {
        repository.push_str(parent);
        repository.push('/');
    }
    repository.push_str(&destination.prefix);
    repository.push_str(name);
    Reference { registry: destination.registry.host.clone(), repository, tag: source.tag.clone(), digest: source.digest.clone() }
}

/// Copies each image in turn, its blobs `jobs` at a time. A failed image does not stop the
/// others. Images go one after another so that a blob shared with an earlier image is mounted
/// instead of uploaded again.
pub async fn execute(client: &Client, cache: &BlobCache, pairs: &[MirrorPair], options: &MirrorOptions, progress: &dyn Progress) -> Vec<CopyOutcome> {
    // Blobs this run put into (or found in) a destination repository, for mounts.
    let mut placed: HashMap<Digest, String> = HashMap::new();
    let mut outcomes = Vec::new();
    for (position, pair) in pairs.iter().enumerate() {
        let started = Instant::now();
        progress.image_started(position, &pair.source.to_string(), 0);
        let mut outcome = CopyOutcome::new(pair.source.to_string(), pair.destination.to_string());
        if let Err(error) = copy_image(client, cache, pair, options, &mut placed, &mut outcome, position, progress).await {
            outcome.status = Status::Failed;
            outcome.error = Some(crate::error_message(&error));
        }
        outcome.seconds = crate::warmup::elapsed_seconds(started);
        progress.image_finished(position, &ImageOutcome::from(&outcome));
        outcomes.push(outcome);
    }
    outcomes
}

#[allow(clippy::too_many_arguments)]
async fn copy_image(
    client: &Client,
    cache: &BlobCache,
    pair: &MirrorPair,
    options: &MirrorOptions,
    placed: &mut HashMap<Digest, String>,
    outcome: &mut CopyOutcome,
    position: usize,
    progress: &dyn Progress,
) -> Result<(), SaveError> {
    let (source, destination) = (&pair.source, &pair.destination);
    let lookup = source.lookup();

    // Nothing changed: both tags point to the same digest (two HEAD requests).
    if matches!(options.platforms, Platforms::All) {
        let source_digest = client.manifest_digest(source, &lookup, false).await?;
        let destination_digest = client.manifest_digest(destination, &lookup, true).await?;
        if let (Some(s), Some(d)) = (&source_digest, &destination_digest) {
            if s == d {
                outcome.status = Status::Unchanged;
                outcome.digest = Some(d.to_string());
                return Ok(());
            }
        }
    }

    let save_options = save::SaveOptions {
        platforms: options.platforms.clone(),
        node_platform: crate::platform::Platform::host(),
        split_size: None,
        since: Default::default(),
        jobs: options.jobs,
        keep_cache: options.keep_cache,
    };
    let image = save::resolve(client, source, &save_options).await?;
    let narrowed = image.index.is_none() && image.manifests.len() == 1 && image.manifests[0].platform.is_some();
    if narrowed {
        let (_, _, top_digest) = client.fetch_manifest(source, &lookup).await?;
        outcome.source_index_digest = Some(top_digest.to_string());
        let pushed = &image.manifests[0].digest;
        if client.manifest_digest(destination, &lookup, true).await?.as_ref() == Some(pushed) {
            outcome.status = Status::Unchanged;
            outcome.digest = Some(pushed.to_string());
            return Ok(());
        }
    }

    let blobs = blobs_of(&image);
    // Configs were fetched and verified while resolving, so they are uploaded from memory.
    let configs: HashMap<&Digest, &[u8]> = image.manifests.iter().map(|m| (&m.manifest.config.digest, m.config.as_slice())).collect();
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    progress.image_started(position, &source.to_string(), total);
    let results: Vec<Result<(Digest, Pushed, u64), SaveError>> = futures::stream::iter(blobs.iter())
        .map(|descriptor| {
            let mount_from = placed.get(&descriptor.digest).cloned();
            let content = configs.get(&descriptor.digest).copied();
            async move {
                let pushed = copy_blob(client, cache, source, destination, descriptor, content, mount_from.as_deref(), options.keep_cache).await?;
                progress.image_bytes(position, descriptor.size);
                Ok((descriptor.digest.clone(), pushed, if pushed == Pushed::Uploaded { descriptor.size } else { 0 }))
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    outcome.record_blobs(results, placed, &destination.repository)?;

    // Manifests by digest first, then the document the tag points to.
    progress.image_stage(position, "pushing manifests");
    let top = match &image.index {
        Some((digest, media_type, raw)) => {
            for manifest in &image.manifests {
                client.put_manifest(destination, manifest.digest.as_str(), &manifest.media_type, &manifest.raw).await?;
            }
            client.put_manifest(destination, &lookup_for(destination, digest), media_type, raw).await?
        }
        None => {
            let manifest = &image.manifests[0];
            client.put_manifest(destination, &lookup_for(destination, &manifest.digest), &manifest.media_type, &manifest.raw).await?
        }
    };
    outcome.digest = Some(top.to_string());
    outcome.status = Status::Changed;
    Ok(())
}

/// Returns where the top document goes: the destination's tag, or its own digest when the
/// reference names only a digest.
fn lookup_for(destination: &Reference, digest: &Digest) -> String {
    destination.tag.clone().unwrap_or_else(|| digest.to_string())
}

/// Returns the configs and layers of every manifest of the image, each once.
fn blobs_of(image: &SavedImage) -> Vec<Descriptor> {
    let mut seen = std::collections::HashSet::new();
    let mut blobs = Vec::new();
    for manifest in &image.manifests {
        for descriptor in std::iter::once(&manifest.manifest.config).chain(&manifest.manifest.layers) {
            if seen.insert(descriptor.digest.clone()) {
                blobs.push(descriptor.clone());
            }
        }
    }
    blobs
}

/// Puts one blob into the destination repository: skipped when present, mounted when
/// `mount_from` has it, uploaded from `content` when the caller has its verified bytes, else
/// streamed from the source into the upload. When the stream fails, the blob is downloaded into
/// the cache (verified, resumable) and uploaded from there.
#[allow(clippy::too_many_arguments)]
async fn copy_blob(
    client: &Client,
    cache: &BlobCache,
    source: &Reference,
    destination: &Reference,
    descriptor: &Descriptor,
    content: Option<&[u8]>,
    mount_from: Option<&str>,
    keep_cache: bool,
) -> Result<Pushed, RegistryError> {
    if client.blob_exists(destination, &descriptor.digest).await? {
        return Ok(Pushed::Present);
    }
    if let Some(from) = mount_from {
        if client.mount_blob(destination, &descriptor.digest, from).await? {
            return Ok(Pushed::Mounted);
        }
    }
    if let Some(content) = content {
        let bytes = bytes::Bytes::copy_from_slice(content);
        let body = move || Ok(reqwest::Body::from(bytes.clone()));
        client.upload_blob_from(destination, &descriptor.digest, descriptor.size, &body).await?;
        return Ok(Pushed::Uploaded);
    }
    match stream_blob(client, source, destination, descriptor).await {
        Ok(()) => return Ok(Pushed::Uploaded),
        Err(err) => tracing::warn!(digest = %descriptor.digest, error = %crate::error_message(&err), "streaming the blob failed, copying it through the cache"),
    }
    blob::download(client, source, descriptor, cache, &|_| {}).await?;
    let file = BlobSource::File(cache.blob_path(&descriptor.digest));
    client.upload_blob(destination, &descriptor.digest, descriptor.size, &file).await?;
    if !keep_cache {
        cache.remove(&descriptor.digest);
    }
    Ok(Pushed::Uploaded)
}

/// Streams one blob from the source into a destination upload, hashing it on the way. A
/// wrong size or digest ends the upload body with an error, so the destination never commits
/// it. The body cannot be replayed, so a retried upload fails and the caller falls back.
async fn stream_blob(client: &Client, source: &Reference, destination: &Reference, descriptor: &Descriptor) -> Result<(), RegistryError> {
    let digest = &descriptor.digest;
    let size = descriptor.size;
    let mut response = client.blob_response(source, digest, 0).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let body = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))));
    let factory = || {
        body.lock().unwrap().take().ok_or_else(|| RegistryError::Io {
            path: std::path::PathBuf::from(digest.as_str()),
            source: std::io::Error::other("a streamed upload cannot be sent twice"),
        })
    };
    let what = format!("blob {digest} of {}", source.name());

    let pump = async move {
        let mut hasher = crate::digest::Hasher::new();
        let failure = loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break None,
                Err(err) => break Some(RegistryError::Unreachable { host: source.registry.clone(), detail: crate::error_message(&err) }),
            };
            if hasher.bytes() + chunk.len() as u64 > size {
                break Some(RegistryError::SizeMismatch { what: what.clone(), expected: size, actual: hasher.bytes() + chunk.len() as u64 });
            }
            hasher.update(&chunk);
            if let Some(limit) = client.rate_limit() {
                limit.consume(chunk.len() as u64).await;
            }
            if sender.send(Ok(chunk)).await.is_err() {
                // The upload ended early; its own error explains why.
                return Ok(());
            }
        };
        let failure = failure.or_else(|| {
            if hasher.bytes() != size {
                return Some(RegistryError::SizeMismatch { what: what.clone(), expected: size, actual: hasher.bytes() });
            }
            let actual = hasher.finish();
            (&actual != digest).then(|| RegistryError::DigestMismatch { what: what.clone(), expected: digest.clone(), actual })
        });
        match failure {
            Some(error) => {
                let _ = sender.send(Err(std::io::Error::other(crate::error_message(&error)))).await;
                Err(error)
            }
            None => Ok(()),
        }
    };
    let upload = async {
        let result = client.upload_blob_from(destination, digest, size, &factory).await;
        // An upload that failed before it took the body leaves the receiver here: dropping it
        // stops the pump instead of leaving it waiting for a reader.
        drop(body.lock().unwrap().take());
        result
    };
    let (pumped, uploaded) = tokio::join!(pump, upload);
    pumped?;
    uploaded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(registry: &str, prefix: &str) -> SourceNames {
        SourceNames { registry: Some(RegistryUrl::parse(registry).unwrap()), prefix: prefix.into() }
    }

    fn destination(registry: &str, prefix: &str) -> Destination {
        Destination { registry: RegistryUrl::parse(registry).unwrap(), prefix: prefix.into() }
    }

    #[test]
    fn destination_swaps_prefix() {
        let source = Reference::parse("registry.example.com/reemosbchromium:latest").unwrap();
        let mapped = destination_of(&source, &names("registry.example.com", "reemosb"), &destination("mirror.lan:5000", "site"));
        assert_eq!(mapped.to_string(), "mirror.lan:5000/sitechromium:latest");
    }

    #[test]
    fn destination_swaps_namespace() {
        let source = Reference::parse("registry.example.com/team/reemosbssh:2.1").unwrap();
        let mapped = destination_of(&source, &names("registry.example.com/team", "reemosb"), &destination("mirror.lan:5000/platform", "reemosb"));
        assert_eq!(mapped.to_string(), "mirror.lan:5000/platform/reemosbssh:2.1");
    }

    #[test]
    fn destination_keeps_foreign_names() {
        let source = Reference::parse("other.example.com/tools/agent:1").unwrap();
        let mapped = destination_of(&source, &names("registry.example.com", "reemosb"), &destination("mirror.lan:5000", ""));
        assert_eq!(mapped.to_string(), "mirror.lan:5000/tools/agent:1");
    }
}
