//! `ferry save`: images from the registry into one archive for an air-gapped site, without a
//! Docker daemon.
//!
//! The archive is a tar that `docker load` accepts (`manifest.json` with full references in
//! `RepoTags`) and that is also an OCI image layout (`oci-layout`, `index.json` with
//! `io.containerd.image.name` and `org.opencontainers.image.ref.name`, `blobs/sha256/`). Layers
//! stay compressed as pulled and each blob is stored once. `ferry-archive.json` and `sha256sums`
//! describe the content so a reader can verify it without trusting member names.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::archive::write::PartWriter;
use crate::cache::BlobCache;
use crate::digest::Digest;
use crate::disk::{self, Demand, SpaceCheck};
use crate::layout::ANNOTATION_IMAGE_NAME;
use oci_spec::image::ANNOTATION_REF_NAME;
use crate::manifest::{self, Descriptor, Document, ImageManifest};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{self, blob, Client, RegistryError};

/// Name of the member that describes a ferry archive.
pub const DESCRIPTION_MEMBER: &str = "ferry-archive.json";

/// Choice of the platforms of a multi-platform image that go into the archive.
#[derive(Clone, Debug)]
pub enum Platforms {
    /// The best match for this platform.
    One(Platform),
    /// Every entry of the index, attestations included, so the index digest is preserved.
    All,
}

#[derive(Clone, Debug)]
pub struct SaveOptions {
    pub platforms: Platforms,
    /// The nodes' platform: its manifest is the one `docker load` reads from `manifest.json`.
    pub node_platform: Platform,
    /// Write numbered parts smaller than this many bytes.
    pub split_size: Option<u64>,
    /// Layer blobs the receiving side already has, left out of the archive.
    pub since: HashSet<Digest>,
    pub jobs: usize,
    pub keep_cache: bool,
}

/// Error that stopped a save from being planned or written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("image {reference}: index {digest} nests another index more than one level deep, which ferry does not save")]
    NestedIndex { reference: String, digest: Digest },
    #[error("cannot save: {}", failures.join("; "))]
    ImagesFailed { failures: Vec<String> },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid --since file {}: {reason}", path.display())]
    InvalidSince { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SaveError + '_ {
    move |source| SaveError::Io { path: path.to_owned(), source }
}

/// One manifest going into the archive, with its config.
#[derive(Clone, Debug)]
pub struct SavedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub raw: Vec<u8>,
    pub manifest: ImageManifest,
    pub config: Vec<u8>,
    pub platform: Option<Platform>,
}

/// One reference going into the archive.
#[derive(Clone, Debug)]
pub struct SavedImage {
    pub reference: Reference,
    /// The index when all platforms are kept, else `None`.
    pub index: Option<(Digest, String, Vec<u8>)>,
    pub manifests: Vec<SavedManifest>,
    /// Position in `manifests` of the manifest `docker load` uses, when one suits the nodes.
    pub load_view: Option<usize>,
}

/// Save plan: the images, layers and space an archive needs.
#[derive(Debug)]
pub struct SavePlan {
    pub images: Vec<SavedImage>,
    /// Layer blobs to write, each once, in order of first use.
    pub layers: Vec<Descriptor>,
    /// Layer blobs left out because the other side has them.
    pub omitted: Vec<Descriptor>,
    pub bytes_to_fetch: u64,
    /// Size of the archive, tar headers excluded.
    pub archive_bytes: u64,
    pub space: Vec<SpaceCheck>,
}

impl SavePlan {
    pub fn space_problems(&self) -> Vec<&SpaceCheck> {
        self.space.iter().filter(|c| !c.is_enough()).collect()
    }
}

/// Result of a save, for output and `--json`.
#[derive(Debug, Serialize)]
pub struct SaveReport {
    pub parts: Vec<PathBuf>,
    pub archive_bytes: u64,
    pub images: Vec<SavedImageReport>,
    pub blobs: usize,
    pub omitted_blobs: usize,
    pub downloaded_bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct SavedImageReport {
    pub reference: String,
    pub digest: String,
    pub platforms: Vec<String>,
}

/// Resolves every reference and measures what the archive needs. Fails as a whole when an image
/// cannot be resolved, because an archive missing an image is worse than none at the gap.
pub async fn plan(client: &Client, cache: &BlobCache, output: &Path, references: &[Reference], options: &SaveOptions) -> Result<SavePlan, SaveError> {
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for reference in references {
        match resolve(client, reference, options).await {
            Ok(image) => images.push(image),
            Err(error) => failures.push(format!("{reference}: {}", crate::error_message(&error))),
        }
    }
    if !failures.is_empty() {
        return Err(SaveError::ImagesFailed { failures });
    }

    let mut seen = HashSet::new();
    let (mut layers, mut omitted) = (Vec::new(), Vec::new());
    let mut archive_bytes = 0;
    for image in &images {
        if let Some((_, _, raw)) = &image.index {
            archive_bytes += raw.len() as u64;
        }
        for manifest in &image.manifests {
            archive_bytes += (manifest.raw.len() + manifest.config.len()) as u64;
            for layer in &manifest.manifest.layers {
                if !seen.insert(layer.digest.clone()) {
                    continue;
                }
                if options.since.contains(&layer.digest) {
                    omitted.push(layer.clone());
                } else {
                    archive_bytes += layer.size;
                    layers.push(layer.clone());
                }
            }
        }
    }
    let bytes_to_fetch = layers
        .iter()
        .filter(|l| !cache.has(&l.digest, l.size))
        .map(|l| l.size - cache.partial_len(&l.digest).min(l.size))
        .sum();
    let folder = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let demands = [
        Demand { path: cache.root().to_owned(), purpose: "blob cache".into(), bytes: bytes_to_fetch, estimated: 0 },
        Demand { path: folder.to_owned(), purpose: "archive".into(), bytes: archive_bytes, estimated: 0 },
    ];
    let space = disk::check(&demands).map_err(io_error(folder))?;
    Ok(SavePlan { images, layers, omitted, bytes_to_fetch, archive_bytes, space })
}

/// Resolves one reference to the manifests to save (one platform or all) with their configs.
pub(crate) async fn resolve(client: &Client, reference: &Reference, options: &SaveOptions) -> Result<SavedImage, SaveError> {
    let (raw, content_type, digest) = client.fetch_manifest(reference, &reference.lookup()).await?;
    let what = format!("manifest {digest} of {reference}");
    let document = manifest::parse(content_type.as_deref(), &raw, &what)?;
    let media_type = media_type_of(content_type.as_deref(), &raw);

    let Document::Index(index) = document else {
        let manifest = fetch_manifest_with_config(client, reference, digest, media_type, raw, None).await?;
        return Ok(SavedImage { reference: reference.clone(), index: None, manifests: vec![manifest], load_view: Some(0) });
    };

    let entries: Vec<&Descriptor> = match &options.platforms {
        Platforms::All => index.manifests.iter().collect(),
        Platforms::One(platform) => {
            let entry = registry::select_platform(&index.manifests, platform).ok_or_else(|| RegistryError::PlatformNotFound {
                reference: reference.to_string(),
                wanted: platform.to_string(),
                available: registry::available_platforms(&index.manifests),
            })?;
            vec![entry]
        }
    };
    let mut manifests = Vec::new();
    for entry in entries {
        let (child_raw, child_type, child_digest) = client.fetch_manifest(reference, entry.digest.as_str()).await?;
        let child_what = format!("manifest {child_digest} of {reference}");
        if let Document::Index(_) = manifest::parse(child_type.as_deref().or(Some(&entry.media_type)), &child_raw, &child_what)? {
            return Err(SaveError::NestedIndex { reference: reference.to_string(), digest: child_digest });
        }
        let child_media_type = media_type_of(child_type.as_deref().or(Some(&entry.media_type)), &child_raw);
        let platform = entry.platform.as_ref().map(|p| p.to_platform());
        manifests.push(fetch_manifest_with_config(client, reference, child_digest, child_media_type, child_raw, platform).await?);
    }
    let load_view = manifests
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let platform = m.platform.as_ref()?;
            (!platform.is_unknown()).then_some(())?;
            Some((options.node_platform.match_rank(platform)?, i))
        })
        .min()
        .map(|(_, i)| i);
    let index = match options.platforms {
        Platforms::All => Some((digest, media_type, raw)),
        Platforms::One(_) => None,
    };
    Ok(SavedImage { reference: reference.clone(), index, manifests, load_view })
}

async fn fetch_manifest_with_config(
    client: &Client,
    reference: &Reference,
    digest: Digest,
    media_type: String,
    raw: Vec<u8>,
    platform: Option<Platform>,
) -> Result<SavedManifest, SaveError> {
    let manifest: ImageManifest = match manifest::parse(Some(&media_type), &raw, &format!("manifest {digest} of {reference}"))? {
        Document::Manifest(manifest) => manifest,
        Document::Index(_) => return Err(SaveError::NestedIndex { reference: reference.to_string(), digest }),
    };
    let config = client.fetch_small_blob(reference, &manifest.config).await?;
    Ok(SavedManifest { digest, media_type, raw, manifest, config, platform })
}

/// Returns the media type of a manifest body: the response header, else the body's `mediaType`.
pub(crate) fn media_type_of(content_type: Option<&str>, raw: &[u8]) -> String {
    let header = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    if !header.is_empty() && header != "application/json" && header != "application/octet-stream" {
        return header.to_owned();
    }
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned())
}

/// Downloads the missing layers into the cache, then writes the archive.
pub async fn execute(client: &Client, cache: &BlobCache, plan: &SavePlan, output: &Path, options: &SaveOptions, progress: &dyn Progress) -> Result<SaveReport, SaveError> {
    let started = Instant::now();
    let reference_of_layer: BTreeMap<Digest, Reference> = plan
        .images
        .iter()
        .flat_map(|image| image.manifests.iter().flat_map(move |m| m.manifest.layers.iter().map(move |l| (l.digest.clone(), image.reference.clone()))))
        .collect();

    progress.image_started(0, "layers", plan.bytes_to_fetch);
    let on_bytes = |n| progress.image_bytes(0, n);
    let blobs = plan.layers.iter().map(|layer| (&reference_of_layer[&layer.digest], layer));
    let downloaded_bytes = blob::download_all(client, blobs, cache, options.jobs, &on_bytes).await?;

    progress.image_stage(0, "writing the archive");
    let cache_for_write = cache.clone();
    let output_owned = output.to_owned();
    let split_size = options.split_size;
    let images = plan.images.clone();
    let layers = plan.layers.clone();
    let omitted = plan.omitted.clone();
    let parts = tokio::task::spawn_blocking(move || write_archive(&output_owned, split_size, &images, &layers, &omitted, &cache_for_write))
        .await
        .expect("the archive writer panicked")?;

    if !options.keep_cache {
        for layer in &plan.layers {
            cache.remove(&layer.digest);
        }
        cache.remove_empty_folders();
    }
    let archive_bytes = parts.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    Ok(SaveReport {
        parts,
        archive_bytes,
        images: plan.images.iter().map(report_image).collect(),
        blobs: plan.layers.len(),
        omitted_blobs: plan.omitted.len(),
        downloaded_bytes,
        seconds: crate::warmup::elapsed_seconds(started),
    })
}

fn report_image(image: &SavedImage) -> SavedImageReport {
    let digest = match &image.index {
        Some((digest, _, _)) => digest.to_string(),
        None => image.manifests[0].digest.to_string(),
    };
    let platforms = image.manifests.iter().filter_map(|m| m.platform.as_ref()).filter(|p| !p.is_unknown()).map(ToString::to_string).collect();
    SavedImageReport { reference: image.reference.to_string(), digest, platforms }
}

fn member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Writes the archive: layout marker, blobs, then the index, the docker-load view and the
/// description. Returns the final names of the files written.
fn write_archive(output: &Path, split_size: Option<u64>, images: &[SavedImage], layers: &[Descriptor], omitted: &[Descriptor], cache: &BlobCache) -> Result<Vec<PathBuf>, SaveError> {
    let writer = PartWriter::create(output, split_size).map_err(io_error(output))?;
    let mut builder = tar::Builder::new(writer);
    let mut written: Vec<(Digest, u64)> = Vec::new();
    let mut seen = HashSet::new();
    let tar_error = io_error(output);

    let append = |builder: &mut tar::Builder<PartWriter>, name: &str, data: &[u8]| builder.append_data(&mut tar_header(data.len() as u64), name, data);
    append(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_error(output))?;

    // Small blobs from memory: indexes, manifests and configs.
    for image in images {
        let mut small: Vec<(Digest, &[u8])> = Vec::new();
        if let Some((digest, _, raw)) = &image.index {
            small.push((digest.clone(), raw));
        }
        for manifest in &image.manifests {
            small.push((manifest.digest.clone(), &manifest.raw));
            small.push((manifest.manifest.config.digest.clone(), &manifest.config));
        }
        for (digest, data) in small {
            if seen.insert(digest.clone()) {
                append(&mut builder, &member(&digest), data).map_err(io_error(output))?;
                written.push((digest, data.len() as u64));
            }
        }
    }

    // Layers from the cache, streamed.
    for layer in layers {
        if !seen.insert(layer.digest.clone()) {
            continue;
        }
        let path = cache.blob_path(&layer.digest);
        let file = fs_err::File::open(&path).map_err(io_error(&path))?;
        builder.append_data(&mut tar_header(layer.size), member(&layer.digest), file).map_err(io_error(&path))?;
        written.push((layer.digest.clone(), layer.size));
    }

    let index = index_json(images);
    append(&mut builder, "index.json", &serde_json::to_vec(&index).expect("JSON")).map_err(io_error(output))?;
    let load_view = manifest_json(images);
    append(&mut builder, "manifest.json", &serde_json::to_vec(&load_view).expect("JSON")).map_err(io_error(output))?;
    let description = description_json(images, &written, omitted);
    append(&mut builder, DESCRIPTION_MEMBER, &serde_json::to_vec_pretty(&description).expect("JSON")).map_err(io_error(output))?;
    let mut sums = String::new();
    for (digest, _) in &written {
        sums.push_str(&format!("{}  {}\n", digest.hex(), member(digest)));
    }
    append(&mut builder, "sha256sums", sums.as_bytes()).map_err(io_error(output))?;

    let mut writer = builder.into_inner().map_err(tar_error)?;
    writer.flush().map_err(io_error(output))?;
    writer.finish().map_err(io_error(output))
}

fn annotations(reference: &Reference) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert(ANNOTATION_IMAGE_NAME.into(), reference.to_string().into());
    if let Some(tag) = &reference.tag {
        annotations.insert(ANNOTATION_REF_NAME.into(), tag.clone().into());
    }
    serde_json::Value::Object(annotations)
}

fn index_json(images: &[SavedImage]) -> serde_json::Value {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| match &image.index {
            Some((digest, media_type, raw)) => json!({
                "mediaType": media_type, "digest": digest, "size": raw.len(), "annotations": annotations(&image.reference),
            }),
            None => {
                let manifest = &image.manifests[0];
                let mut entry = json!({
                    "mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.raw.len(), "annotations": annotations(&image.reference),
                });
                if let Some(platform) = &manifest.platform {
                    entry["platform"] = platform_json(platform);
                }
                entry
            }
        })
        .collect();
    json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests })
}

fn platform_json(platform: &Platform) -> serde_json::Value {
    let mut value = json!({ "os": platform.os, "architecture": platform.architecture });
    if let Some(variant) = &platform.variant {
        value["variant"] = variant.clone().into();
    }
    value
}

fn manifest_json(images: &[SavedImage]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = images
        .iter()
        .filter_map(|image| {
            let manifest = &image.manifests[image.load_view?];
            Some(json!({
                "Config": member(&manifest.manifest.config.digest),
                "RepoTags": image.reference.tagged_name().into_iter().collect::<Vec<_>>(),
                "Layers": manifest.manifest.layers.iter().map(|l| member(&l.digest)).collect::<Vec<_>>(),
            }))
        })
        .collect();
    serde_json::Value::Array(entries)
}

fn description_json(images: &[SavedImage], written: &[(Digest, u64)], omitted: &[Descriptor]) -> serde_json::Value {
    let images: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let manifests: Vec<serde_json::Value> = image
                .manifests
                .iter()
                .map(|m| {
                    json!({
                        "digest": m.digest,
                        "platform": m.platform.as_ref().map(ToString::to_string),
                        "config": { "digest": m.manifest.config.digest, "size": m.manifest.config.size },
                        "layers": m.manifest.layers.iter().map(|l| json!({ "digest": l.digest, "size": l.size, "media_type": l.media_type })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "reference": image.reference.to_string(),
                "index": image.index.as_ref().map(|(digest, _, _)| digest.to_string()),
                "manifests": manifests,
            })
        })
        .collect();
    json!({
        "version": 1,
        "tool": concat!("ferry ", env!("CARGO_PKG_VERSION")),
        "images": images,
        "blobs": written.iter().map(|(digest, size)| json!({ "digest": digest, "size": size })).collect::<Vec<_>>(),
        "omitted": omitted.iter().map(|l| json!({ "digest": l.digest, "size": l.size })).collect::<Vec<_>>(),
    })
}

/// Reads the blobs the other side already has: from an earlier ferry archive (its
/// `ferry-archive.json`, without trusting anything else) or from a text file of digests, one per
/// line (`sha256sums` lines work too).
pub fn read_since(path: &Path) -> Result<HashSet<Digest>, SaveError> {
    let invalid = |reason: String| SaveError::InvalidSince { path: path.to_owned(), reason };
    let parts = crate::archive::Parts::open(path).map_err(io_error(path))?;
    let head = parts.read_range(0, parts.total_size().min(512)).and_then(|mut r| {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut buffer).map(|_| buffer)
    });
    let head = head.map_err(io_error(path))?;
    let is_tar = head.len() >= 262 && &head[257..262] == b"ustar";
    let mut digests = HashSet::new();
    if is_tar {
        let reader = parts.read_range(0, parts.total_size()).map_err(io_error(path))?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(io_error(path))? {
            let mut entry = entry.map_err(io_error(path))?;
            if entry.path().map_err(io_error(path))?.to_string_lossy().trim_start_matches("./") != DESCRIPTION_MEMBER {
                continue;
            }
            let description: serde_json::Value = serde_json::from_reader(&mut entry).map_err(|e| invalid(format!("{DESCRIPTION_MEMBER} is not valid JSON: {e}")))?;
            for key in ["blobs", "omitted"] {
                for blob in description[key].as_array().into_iter().flatten() {
                    if let Some(digest) = blob["digest"].as_str().and_then(|d| d.parse().ok()) {
                        digests.insert(digest);
                    }
                }
            }
            return Ok(digests);
        }
        return Err(invalid(format!("the archive has no {DESCRIPTION_MEMBER}, so it was not written by ferry save; pass a list of digests instead")));
    }
    let text = String::from_utf8(head.clone()).ok().map(|_| fs_err::read_to_string(path)).transpose().map_err(io_error(path))?;
    let Some(text) = text else { return Err(invalid("neither a ferry archive nor a text list of digests".into())) };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or_default();
        let candidate = if word.starts_with("sha256:") { word.to_owned() } else { format!("sha256:{word}") };
        let digest = candidate.parse().map_err(|_| invalid(format!("line {} is not a sha256 digest: {line:?}", number + 1)))?;
        digests.insert(digest);
    }
    Ok(digests)
}
