//! `ferry push`: the images of an archive into a private registry, from inside the gap, for
//! sites where no machine reaches both networks.
//!
//! Archives with an OCI view (`ferry save`, Docker 25 and later, skopeo `oci-archive:`) are
//! pushed as they are: every manifest and index as its exact bytes, so digests stay those of the
//! source registry. Archives without one (`docker save` before Docker 25, skopeo and podman
//! `docker-archive`) hold no manifest, so ferry writes an OCI manifest from the config and the
//! stored layers, which gives the image a new manifest digest (its image ID stays the same).
//! The registry checks the digest of every blob it receives, and manifests go last, so a tag
//! never points to an incomplete image.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;

use crate::archive::read::{self, ArchiveError, ArchiveIndex, StoredImage};
use crate::archive::BlobSource;
use crate::digest::{Digest, Hasher};
use crate::manifest::{self, Descriptor, Document};
use crate::mirror::{destination_of, CopyOutcome, Destination, SourceNames};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{Client, Pushed, RegistryError};
use crate::warmup::{ImageOutcome, Status};

/// Largest manifest or index read from an archive.
const DOCUMENT_LIMIT: u64 = 8 << 20;
/// Index levels followed below an `index.json` entry.
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{}: {what} {digest} is listed by {listed_by} but is not in the archive; push needs every manifest of an index (save with --all-platforms) or the whole image", archive.display())]
    MissingDocument { archive: PathBuf, what: &'static str, digest: Digest, listed_by: String },
    #[error("{}: member {member} does not match its digest (got {actual}); the archive is damaged", archive.display())]
    DigestMismatch { archive: PathBuf, member: String, actual: Digest },
    #[error("{}: {source}", archive.display())]
    Manifest { archive: PathBuf, source: manifest::ManifestError },
    #[error("blob {digest} is neither in the archive (ferry save --since left it out) nor in {repository}; push the earlier archive first")]
    MissingBlob { digest: Digest, repository: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<ArchiveError> for PushError {
    fn from(error: ArchiveError) -> PushError {
        PushError::Archive(Box::new(error))
    }
}

/// One image of an archive, ready to push: its blobs and the documents to put, last the one
/// the tag points to.
#[derive(Clone, Debug)]
pub struct PushImage {
    /// Name in the archive, such as `registry.example.com/reemosbchromium:latest`.
    pub name: String,
    pub destination: Reference,
    /// Configs and layers, each once, with where their bytes are (`None`: not in the archive).
    pub blobs: Vec<(Descriptor, Option<BlobSource>)>,
    /// Manifests by digest, then the top document, with media type and exact bytes.
    pub documents: Vec<(Digest, String, Vec<u8>)>,
    /// True when ferry wrote the manifest, so its digest is new.
    pub rewritten: bool,
}

/// Reads the images of an archive and names each one in the destination. Images the archive
/// does not name are skipped with a warning, because a registry needs a tag.
pub fn plan(path: &Path, platform: &Platform, names: &SourceNames, destination: &Destination) -> Result<Vec<PushImage>, PushError> {
    let index = ArchiveIndex::open(path)?;
    let has_oci_view = index.contains("index.json") && index.contains("oci-layout");
    let mut images = Vec::new();
    if has_oci_view {
        let raw = index.read_small("index.json", DOCUMENT_LIMIT)?;
        let Document::Index(top) = manifest::parse(None, &raw, "index.json").map_err(|source| PushError::Manifest { archive: path.to_owned(), source })? else {
            return Err(PushError::Manifest { archive: path.to_owned(), source: manifest::ManifestError::Unrecognised { what: "index.json (a manifest, not an index)".into() } });
        };
        for entry in &top.manifests {
            let Some(name) = entry_name(entry) else {
                tracing::warn!("{}: skipping {}: the archive gives it no name", path.display(), entry.digest);
                continue;
            };
            let Ok(source) = Reference::parse(&name) else {
                tracing::warn!("{}: skipping {name}: not a full reference", path.display());
                continue;
            };
            let mut image = PushImage { name: name.clone(), destination: destination_of(&source, names, destination), blobs: Vec::new(), documents: Vec::new(), rewritten: false };
            let mut seen = HashSet::new();
            collect(&index, entry, "index.json", 0, &mut image, &mut seen)?;
            images.push(image);
        }
    } else {
        let contents = read::contents(&index, platform)?;
        for stored in &contents.images {
            let Some(name) = stored.names.first() else {
                tracing::warn!("{}: skipping image {}: the archive gives it no name", path.display(), stored.config_digest);
                continue;
            };
            let Ok(source) = Reference::parse(name) else {
                tracing::warn!("{}: skipping {name}: not a full reference", path.display());
                continue;
            };
            let destination = destination_of(&source, names, destination);
            images.push(rewrite(&index, stored, name, destination)?);
        }
    }
    Ok(images)
}

/// Returns the reference an `index.json` entry names: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` when it is a full reference.
fn entry_name(entry: &Descriptor) -> Option<String> {
    if let Some(name) = entry.annotations.get(crate::layout::ANNOTATION_IMAGE_NAME) {
        return Some(name.clone());
    }
    entry.annotations.get(oci_spec::image::ANNOTATION_REF_NAME).filter(|n| n.contains('/')).cloned()
}

/// Adds the document `descriptor` names and everything below it, children first.
fn collect(index: &ArchiveIndex, descriptor: &Descriptor, listed_by: &str, depth: usize, image: &mut PushImage, seen: &mut HashSet<Digest>) -> Result<(), PushError> {
    let archive = index.path().to_owned();
    let member = format!("blobs/sha256/{}", descriptor.digest.hex());
    if !index.contains(&member) {
        let what = if depth == 0 { "image" } else { "manifest" };
        return Err(PushError::MissingDocument { archive, what, digest: descriptor.digest.clone(), listed_by: listed_by.to_owned() });
    }
    let raw = index.read_small(&member, DOCUMENT_LIMIT)?;
    let actual = Digest::of(&raw);
    if actual != descriptor.digest {
        return Err(PushError::DigestMismatch { archive, member, actual });
    }
    let media_type = crate::save::media_type_of(Some(&descriptor.media_type).filter(|t| !t.is_empty()).map(String::as_str), &raw);
    let what = format!("{member} in {}", archive.display());
    match manifest::parse(Some(&media_type), &raw, &what).map_err(|source| PushError::Manifest { archive: archive.clone(), source })? {
        Document::Manifest(parsed) => {
            for blob in std::iter::once(&parsed.config).chain(&parsed.layers) {
                if seen.insert(blob.digest.clone()) {
                    image.blobs.push((blob.clone(), index.source(&format!("blobs/sha256/{}", blob.digest.hex()))));
                }
            }
        }
        Document::Index(parsed) => {
            if depth >= MAX_DEPTH {
                return Err(PushError::Manifest { archive, source: manifest::ManifestError::Unrecognised { what: format!("{what}: indexes nested deeper than {MAX_DEPTH} levels") } });
            }
            for child in &parsed.manifests {
                collect(index, child, &member, depth + 1, image, seen)?;
            }
        }
    }
    image.documents.push((descriptor.digest.clone(), media_type, raw));
    Ok(())
}

/// Builds an image from an archive without manifests: the config, the layers as stored, and an
/// OCI manifest written for them.
fn rewrite(index: &ArchiveIndex, stored: &StoredImage, name: &str, destination: Reference) -> Result<PushImage, PushError> {
    let config = Descriptor::new(manifest::OCI_CONFIG, stored.config_digest.clone(), stored.config.len() as u64);
    let config_source = index.source(&stored.config_member);
    let mut blobs = vec![(config.clone(), config_source)];
    let mut layers = Vec::new();
    for layer in &stored.layers {
        let source = BlobSource::Range { parts: index.parts().clone(), offset: layer.offset, len: layer.size };
        let (digest, media_type) = describe_layer(&source, layer.blob_digest.as_ref(), &layer.diff_id).map_err(|e| PushError::Io { path: index.path().to_owned(), source: e })?;
        let descriptor = Descriptor::new(media_type, digest, layer.size);
        if !blobs.iter().any(|(d, _)| d.digest == descriptor.digest) {
            blobs.push((descriptor.clone(), Some(source)));
        }
        layers.push(descriptor);
    }
    let document = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": { "mediaType": config.media_type, "digest": config.digest, "size": config.size },
        "layers": layers.iter().map(|l| serde_json::json!({ "mediaType": l.media_type, "digest": l.digest, "size": l.size })).collect::<Vec<_>>(),
    });
    let raw = serde_json::to_vec(&document).expect("a manifest serializes");
    let digest = Digest::of(&raw);
    Ok(PushImage { name: name.to_owned(), destination, blobs, documents: vec![(digest, manifest::OCI_MANIFEST.to_owned(), raw)], rewritten: true })
}

/// Returns a stored layer's blob digest and media type. An uncompressed layer's digest is its
/// DiffID; a compressed one not named by digest is hashed.
fn describe_layer(source: &BlobSource, named: Option<&Digest>, diff_id: &Digest) -> std::io::Result<(Digest, &'static str)> {
    let mut head = [0u8; 4];
    let read = source.open_range(0, 4)?.read(&mut head)?;
    let media_type = manifest::layer_media_type(&head[..read]);
    if let Some(digest) = named {
        return Ok((digest.clone(), media_type));
    }
    if media_type == manifest::OCI_LAYER {
        return Ok((diff_id.clone(), media_type));
    }
    let mut reader = source.open()?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok((hasher.finish(), media_type))
}

/// Pushes each image in turn, its blobs `jobs` at a time; a failed image does not stop the
/// others. Blobs another image of this run already put into the registry are mounted.
pub async fn execute(client: &Client, images: &[PushImage], jobs: usize, progress: &dyn Progress) -> Vec<CopyOutcome> {
    let mut placed: HashMap<Digest, String> = HashMap::new();
    let mut outcomes = Vec::new();
    for (position, image) in images.iter().enumerate() {
        let started = Instant::now();
        let total = image.blobs.iter().map(|(d, _)| d.size).sum();
        progress.image_started(position, &image.name, total);
        let mut outcome = CopyOutcome::new(image.name.clone(), image.destination.to_string());
        if let Err(error) = push_image(client, image, jobs, &mut placed, &mut outcome, position, progress).await {
            outcome.status = Status::Failed;
            outcome.error = Some(crate::error_message(&error));
        }
        outcome.seconds = crate::warmup::elapsed_seconds(started);
        progress.image_finished(position, &ImageOutcome::from(&outcome));
        outcomes.push(outcome);
    }
    outcomes
}

async fn push_image(
    client: &Client,
    image: &PushImage,
    jobs: usize,
    placed: &mut HashMap<Digest, String>,
    outcome: &mut CopyOutcome,
    position: usize,
    progress: &dyn Progress,
) -> Result<(), PushError> {
    let destination = &image.destination;
    let (top_digest, _, _) = image.documents.last().expect("an image has a top document");
    let lookup = destination.tag.clone().unwrap_or_else(|| top_digest.to_string());
    if client.manifest_digest(destination, &lookup, true).await?.as_ref() == Some(top_digest) {
        outcome.status = Status::Unchanged;
        outcome.digest = Some(top_digest.to_string());
        return Ok(());
    }

    let results: Vec<Result<(Digest, Pushed, u64), PushError>> = futures::stream::iter(image.blobs.iter())
        .map(|(descriptor, source)| {
            let mount_from = placed.get(&descriptor.digest).cloned();
            async move {
                let pushed = match source {
                    Some(source) => client.push_blob(destination, &descriptor.digest, descriptor.size, source, mount_from.as_deref()).await?,
                    None if client.blob_exists(destination, &descriptor.digest).await? => Pushed::Present,
                    None => return Err(PushError::MissingBlob { digest: descriptor.digest.clone(), repository: destination.name() }),
                };
                progress.image_bytes(position, descriptor.size);
                Ok((descriptor.digest.clone(), pushed, if pushed == Pushed::Uploaded { descriptor.size } else { 0 }))
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    outcome.record_blobs(results, placed, &destination.repository)?;

    progress.image_stage(position, "pushing manifests");
    let (last, children) = image.documents.split_last().expect("an image has a top document");
    for (digest, media_type, raw) in children {
        client.put_manifest(destination, digest.as_str(), media_type, raw).await?;
    }
    let (_, media_type, raw) = last;
    let digest = client.put_manifest(destination, &lookup, media_type, raw).await?;
    outcome.digest = Some(digest.to_string());
    outcome.status = Status::Changed;
    if image.rewritten {
        outcome.note = Some("the archive holds no manifest, so ferry wrote one: the manifest digest is new, the image ID is the same".into());
    }
    Ok(())
}
