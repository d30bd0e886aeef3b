//! Warmup: make every image of the list present in a target, verified and tagged as requested.
//!
//! Planning and execution are separate steps. [`plan`] resolves each reference to this node's
//! platform, reads its config, checks what the target already holds and how much space the rest
//! needs, and changes nothing. [`execute`] downloads the missing blobs into the cache (verified,
//! resumable) and hands each image to the target. One image failing never stops the others.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::archive::{self, ArchiveImage, ArchiveLayer, BlobSource};
use crate::cache::BlobCache;
use crate::digest::Digest;
use crate::disk::{self, Demand, SpaceCheck};
use crate::engine::{self, Engine, EngineError, EngineInfo};
use crate::layout::{Layout, LayoutError};
use crate::manifest::{self, Compression, Descriptor};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{blob, Client, RegistryError, ResolvedImage};

mod pipeline;
pub use pipeline::{remove_leftovers, PARTIAL_LABEL};

/// Error that stopped one image from being planned or transferred, or stopped planning as a whole.
#[derive(Debug, thiserror::Error)]
pub enum WarmupError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("image {reference} is inconsistent: its manifest lists {layers} layers but its config {diff_ids} diff_ids")]
    LayerCountMismatch { reference: String, layers: usize, diff_ids: usize },
    #[error("image {reference} has layer {digest} of type {media_type:?}, which ferry cannot load")]
    UnsupportedLayer { reference: String, digest: Digest, media_type: String },
    #[error("after loading, {name} points to image {found} instead of {expected}")]
    WrongImage { name: String, found: String, expected: Digest },
    #[error("the engine reported success but has no image named {name}")]
    NotLoaded { name: String },
    #[error("layer {digest} unpacks to {actual}, but the image config expects DiffID {expected}")]
    DiffIdMismatch { digest: Digest, actual: Digest, expected: Digest },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> WarmupError + '_ {
    move |source| WarmupError::Io { path: path.to_owned(), source }
}

/// Unpacked size estimate for a compressed layer: this many times its compressed size.
/// Container layers usually compress 2 to 3 times, so 3 errs on the safe side.
pub(crate) const UNPACK_ESTIMATE_FACTOR: u64 = 3;

/// Destination of a warmup.
// One value exists per run, so the size of the Docker variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Docker { engine: Engine, info: EngineInfo },
    Layout { path: PathBuf },
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Docker { engine, info } => format!("Docker {} at {}", info.server_version, engine.endpoint()),
            Target::Layout { path } => format!("OCI layout {}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WarmupOptions {
    pub platform: Platform,
    /// Blobs downloaded at once.
    pub jobs: usize,
    /// Keep downloaded blobs in the cache after they reached the target.
    pub keep_cache: bool,
}

/// Final state of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Changed,
    Unchanged,
    Failed,
}

/// Result of one image, as reported to the operator and in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageOutcome {
    pub reference: String,
    /// Digest of the platform manifest that was installed or found.
    pub digest: Option<String>,
    /// Config digest, which is the image ID in Docker.
    pub image_id: Option<String>,
    pub platform: Option<String>,
    pub status: Status,
    /// Bytes transferred for this image in this run: downloaded from the registry (warmup), or
    /// read from the archive for the target (load).
    pub bytes: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

/// One layer of a planned image.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    pub compression: Compression,
    /// The target already has this layer (and, for Docker, every layer below it).
    pub in_target: bool,
}

/// An image the target lacks, ready to transfer.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub resolved: ResolvedImage,
    pub config: Vec<u8>,
    pub layers: Vec<LayerPlan>,
    /// True when the target already contains this exact image under the requested name.
    pub present: bool,
}

impl Prepared {
    pub fn config_digest(&self) -> &Digest {
        &self.resolved.manifest.config.digest
    }

    /// Layers to fetch and send, each blob once.
    fn needed_layers(&self) -> impl Iterator<Item = &LayerPlan> {
        let mut seen = HashSet::new();
        self.layers.iter().filter(move |l| !l.in_target && seen.insert(l.descriptor.digest.clone()))
    }
}

/// The plan of one list entry.
#[derive(Debug)]
pub struct PlannedImage {
    pub reference: Reference,
    pub prepared: Result<Prepared, String>,
}

/// Warmup plan: the action for each image, and the space they need.
#[derive(Debug)]
pub struct Plan {
    pub images: Vec<PlannedImage>,
    /// Bytes still to download, each blob counted once.
    pub bytes_to_fetch: u64,
    pub space: Vec<SpaceCheck>,
}

impl Plan {
    pub fn space_problems(&self) -> Vec<&SpaceCheck> {
        self.space.iter().filter(|c| !c.is_enough()).collect()
    }
}

/// Resolves every image, reads what the target has, and measures the space needed.
pub async fn plan(client: &Client, target: &Target, cache: &BlobCache, references: &[Reference], options: &WarmupOptions) -> Result<Plan, WarmupError> {
    let chains = match target {
        Target::Docker { engine, .. } => engine.chain_ids().await?,
        Target::Layout { .. } => HashSet::new(),
    };
    let layout = match target {
        Target::Layout { path } if path.join("oci-layout").exists() => Some(Layout::open(path)?),
        _ => None,
    };

    let mut images = Vec::new();
    for reference in references {
        let prepared = prepare(client, target, layout.as_ref(), &chains, reference, options).await.map_err(|e| crate::error_message(&e));
        if let Err(error) = &prepared {
            tracing::info!(reference = %reference, %error, "cannot plan image");
        }
        images.push(PlannedImage { reference: reference.clone(), prepared });
    }

    // Count each missing blob once across images, minus what the cache already holds.
    let mut seen = HashSet::new();
    let mut bytes_to_fetch = 0;
    let mut to_send = 0;
    let mut unpacked = 0;
    let mut transcoded = 0;
    let loads_zstd = matches!(target, Target::Docker { info, .. } if info.loads_zstd);
    for prepared in images.iter().filter_map(|i| i.prepared.as_ref().ok()).filter(|p| !p.present) {
        for layer in prepared.needed_layers() {
            let descriptor = &layer.descriptor;
            if !seen.insert(descriptor.digest.clone()) {
                continue;
            }
            if !cache.has(&descriptor.digest, descriptor.size) {
                bytes_to_fetch += descriptor.size - cache.partial_len(&descriptor.digest).min(descriptor.size);
            }
            let estimate = match layer.compression {
                Compression::None => descriptor.size,
                _ => descriptor.size * UNPACK_ESTIMATE_FACTOR,
            };
            unpacked += estimate;
            if layer.compression == Compression::Zstd && !loads_zstd && matches!(target, Target::Docker { .. }) {
                transcoded += estimate;
                to_send += estimate;
            } else {
                to_send += descriptor.size;
            }
        }
    }

    let mut demands = vec![Demand { path: cache.root().to_owned(), purpose: "blob cache".into(), bytes: bytes_to_fetch, estimated: 0 }];
    if transcoded > 0 {
        demands.push(Demand { path: cache.root().to_owned(), purpose: "zstd layers unpacked for this engine".into(), bytes: transcoded, estimated: transcoded });
    }
    match target {
        Target::Docker { info, .. } => match (&info.root_dir, info.local) {
            (Some(root), true) => demands.push(Demand {
                path: root.clone(),
                purpose: "Docker data root (archive staging and unpacked layers)".into(),
                bytes: to_send + unpacked,
                estimated: unpacked,
            }),
            _ => tracing::warn!("the Docker engine is remote, so its free space is not checked"),
        },
        Target::Layout { path } => demands.push(Demand { path: path.clone(), purpose: "OCI layout".into(), bytes: to_send, estimated: 0 }),
    }
    let space = disk::check(&demands).map_err(io_error(cache.root()))?;
    Ok(Plan { images, bytes_to_fetch, space })
}

async fn prepare(
    client: &Client,
    target: &Target,
    layout: Option<&Layout>,
    chains: &HashSet<Digest>,
    reference: &Reference,
    options: &WarmupOptions,
) -> Result<Prepared, WarmupError> {
    let resolved = client.resolve(reference, &options.platform).await?;
    let manifest = &resolved.manifest;
    let present = match (target, layout) {
        (Target::Docker { engine, .. }, _) => {
            let name = reference.tagged_name().unwrap_or_else(|| manifest.config.digest.to_string());
            engine.image(&name).await?.is_some_and(|image| image.id == manifest.config.digest.as_str())
        }
        (Target::Layout { .. }, Some(layout)) => layout_has_image(layout, reference, &resolved)?,
        (Target::Layout { .. }, None) => false,
    };
    if present {
        // Nothing to transfer, so the config and layers are not read.
        return Ok(Prepared { resolved, config: Vec::new(), layers: Vec::new(), present });
    }

    let config = client.fetch_small_blob(reference, &manifest.config).await?;
    let parsed = manifest::parse_config(&config, &format!("config {} of {reference}", manifest.config.digest))?;
    let diff_ids = parsed.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(WarmupError::LayerCountMismatch { reference: reference.to_string(), layers: manifest.layers.len(), diff_ids: diff_ids.len() });
    }
    let engine_chains = engine::chain_ids(&diff_ids);
    let mut layers = Vec::new();
    for ((descriptor, diff_id), chain) in manifest.layers.iter().zip(diff_ids).zip(engine_chains) {
        let compression = manifest::layer_compression(&descriptor.media_type).ok_or_else(|| WarmupError::UnsupportedLayer {
            reference: reference.to_string(),
            digest: descriptor.digest.clone(),
            media_type: descriptor.media_type.clone(),
        })?;
        let in_target = match (target, layout) {
            (Target::Docker { .. }, _) => chains.contains(&chain),
            (Target::Layout { .. }, Some(layout)) => layout.has_blob(&descriptor.digest, descriptor.size),
            (Target::Layout { .. }, None) => false,
        };
        layers.push(LayerPlan { descriptor: descriptor.clone(), diff_id, compression, in_target });
    }
    Ok(Prepared { resolved, config, layers, present })
}

/// Transfers what the plan found missing, image by image, and reports each outcome.
pub async fn execute(client: &Client, target: &Target, cache: &BlobCache, plan: &Plan, options: &WarmupOptions, progress: &dyn Progress) -> Vec<ImageOutcome> {
    let mut outcomes = Vec::new();
    let mut used_by_success: HashSet<Digest> = HashSet::new();
    let mut used_by_failure: HashSet<Digest> = HashSet::new();
    if let Target::Docker { engine, info } = target {
        if let Err(err) = remove_leftovers(engine, info).await {
            tracing::warn!(error = %err, "failed to remove the partial images of an interrupted warmup; remove them with docker rmi");
        }
    }
    let fetched_ahead = pipeline::FetchedAhead::default();

    for (index, planned) in plan.images.iter().enumerate() {
        let started = Instant::now();
        let reference = planned.reference.to_string();
        let outcome = match &planned.prepared {
            Err(error) => failed(&reference, None, error.clone(), 0, started),
            Ok(prepared) if prepared.present => ImageOutcome {
                status: Status::Unchanged,
                ..described(&reference, prepared, 0, started)
            },
            Ok(prepared) => {
                let total: u64 = prepared.needed_layers().filter(|l| !cache.has(&l.descriptor.digest, l.descriptor.size)).map(|l| l.descriptor.size).sum();
                progress.image_started(index, &reference, total);
                let digests: Vec<Digest> = prepared.needed_layers().map(|l| l.descriptor.digest.clone()).collect();
                let ahead = pipeline::Ahead { blobs: later_blobs(plan, index, cache), fetched: &fetched_ahead };
                let on_bytes = |n| progress.image_bytes(index, n);
                let on_stage = |stage: &str| progress.image_stage(index, stage);
                match transfer(client, target, cache, prepared, options, &ahead, &on_bytes, &on_stage).await {
                    Ok(bytes) => {
                        // Blobs fetched while the previous image loaded count for this one.
                        let bytes = bytes + fetched_ahead.take(&digests);
                        used_by_success.extend(digests);
                        ImageOutcome { status: Status::Changed, ..described(&reference, prepared, bytes, started) }
                    }
                    Err(error) => {
                        used_by_failure.extend(digests);
                        failed(&reference, Some(prepared), crate::error_message(&error), 0, started)
                    }
                }
            }
        };
        progress.image_finished(index, &outcome);
        outcomes.push(outcome);
    }

    if !options.keep_cache {
        for digest in used_by_success.difference(&used_by_failure) {
            cache.remove(digest);
        }
        cache.remove_empty_folders();
    }
    outcomes
}

/// Seconds since `started`, rounded to milliseconds so JSON shows plain decimals.
pub(crate) fn elapsed_seconds(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

fn described(reference: &str, prepared: &Prepared, bytes: u64, started: Instant) -> ImageOutcome {
    ImageOutcome {
        reference: reference.to_owned(),
        digest: Some(prepared.resolved.manifest_digest.to_string()),
        image_id: Some(prepared.config_digest().to_string()),
        platform: prepared.resolved.platform.as_ref().map(ToString::to_string),
        status: Status::Changed,
        bytes,
        seconds: elapsed_seconds(started),
        error: None,
    }
}

fn failed(reference: &str, prepared: Option<&Prepared>, error: String, bytes: u64, started: Instant) -> ImageOutcome {
    let base = match prepared {
        Some(prepared) => described(reference, prepared, bytes, started),
        None => ImageOutcome {
            reference: reference.to_owned(),
            digest: None,
            image_id: None,
            platform: None,
            status: Status::Failed,
            bytes,
            seconds: elapsed_seconds(started),
            error: None,
        },
    };
    ImageOutcome { status: Status::Failed, error: Some(error), ..base }
}

/// Returns the blobs that the images after `index` still need, each once, in list order.
fn later_blobs<'a>(plan: &'a Plan, index: usize, cache: &BlobCache) -> Vec<(&'a Reference, &'a Descriptor)> {
    let mut seen = HashSet::new();
    plan.images[index + 1..]
        .iter()
        .filter_map(|planned| planned.prepared.as_ref().ok().filter(|prepared| !prepared.present))
        .flat_map(|prepared| prepared.needed_layers().map(move |layer| (&prepared.resolved.reference, &layer.descriptor)))
        .filter(|(_, descriptor)| !cache.has(&descriptor.digest, descriptor.size) && seen.insert(descriptor.digest.clone()))
        .collect()
}

/// Downloads the image's missing blobs and hands the image to the target. Into Docker the two
/// overlap (see `pipeline`), and the blobs of `ahead` download while the engine finishes.
/// Returns the bytes downloaded for this image.
#[allow(clippy::too_many_arguments)]
async fn transfer(
    client: &Client,
    target: &Target,
    cache: &BlobCache,
    prepared: &Prepared,
    options: &WarmupOptions,
    ahead: &pipeline::Ahead<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    on_stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<u64, WarmupError> {
    if let Target::Docker { engine, info } = target {
        if pipeline::can_pipeline(info, prepared) {
            let callbacks = pipeline::Callbacks { on_bytes, on_stage };
            return pipeline::load_while_downloading(client, engine, info, cache, prepared, options.jobs, ahead, &callbacks).await;
        }
    }
    let reference = &prepared.resolved.reference;
    let blobs = prepared.needed_layers().map(|layer| (reference, &layer.descriptor));
    let bytes = blob::download_all(client, blobs, cache, options.jobs, on_bytes).await?;

    match target {
        Target::Docker { engine, info } => {
            on_stage("loading into Docker");
            let in_engine = prepared.layers.iter().take_while(|l| l.in_target).count();
            load_into_docker(engine, info, cache, prepared, in_engine).await?;
        }
        Target::Layout { path } => {
            on_stage("writing the OCI layout");
            write_to_layout(path, cache, prepared)?;
        }
    }
    Ok(bytes)
}

/// Loads the image into the engine and checks its name. The files of the first `in_engine`
/// layers are left out, because the engine has that part of the stack.
async fn load_into_docker(engine: &Engine, info: &EngineInfo, cache: &BlobCache, prepared: &Prepared, in_engine: usize) -> Result<(), WarmupError> {
    let reference = &prepared.resolved.reference;
    let mut layers = Vec::new();
    let mut unpacked: HashMap<Digest, (PathBuf, u64)> = HashMap::new();
    for (position, layer) in prepared.layers.iter().enumerate() {
        let descriptor = &layer.descriptor;
        if layer.in_target || position < in_engine {
            layers.push(ArchiveLayer { digest: descriptor.digest.clone(), size: descriptor.size, source: None });
            continue;
        }
        if layer.compression == Compression::Zstd && !info.loads_zstd {
            // Engines before API 1.42 cannot read zstd layers: send the verified plain tar instead.
            if !unpacked.contains_key(&layer.diff_id) {
                let unpacked_layer = unpack_zstd(cache, &descriptor.digest, &layer.diff_id).await?;
                unpacked.insert(layer.diff_id.clone(), unpacked_layer);
            }
            let (path, size) = unpacked[&layer.diff_id].clone();
            layers.push(ArchiveLayer { digest: layer.diff_id.clone(), size, source: Some(BlobSource::File(path)) });
            continue;
        }
        layers.push(ArchiveLayer { digest: descriptor.digest.clone(), size: descriptor.size, source: Some(BlobSource::File(cache.blob_path(&descriptor.digest))) });
    }
    if reference.tag.is_none() {
        // NOTE: docker load cannot record a repository digest, so a digest-only reference is
        // loaded without a name and found by its image ID.
        tracing::warn!(reference = %reference, image_id = %prepared.config_digest(), "pinned by digest only, so the image is loaded without a tag");
    }
    let image = ArchiveImage {
        config_digest: prepared.config_digest().clone(),
        config: prepared.config.clone(),
        repo_tags: reference.tagged_name().into_iter().collect(),
        layers,
    };
    let result = engine.load(archive::docker_archive(vec![image])).await;
    for (path, _) in unpacked.values() {
        let _ = fs_err::remove_file(path);
    }
    let messages = result?;
    tracing::debug!(reference = %reference, ?messages, "engine load finished");

    // Check that the requested name now points at exactly this image.
    let name = reference.tagged_name().unwrap_or_else(|| prepared.config_digest().to_string());
    match engine.image(&name).await? {
        Some(image) if image.id == prepared.config_digest().as_str() => Ok(()),
        Some(image) => Err(WarmupError::WrongImage { name, found: image.id, expected: prepared.config_digest().clone() }),
        None => Err(WarmupError::NotLoaded { name }),
    }
}

/// Decompresses a cached zstd layer to a plain tar beside the cache, checking its DiffID.
async fn unpack_zstd(cache: &BlobCache, digest: &Digest, diff_id: &Digest) -> Result<(PathBuf, u64), WarmupError> {
    let source = BlobSource::File(cache.blob_path(digest));
    let dir = cache.root().join("unpacked");
    let (digest, diff_id) = (digest.clone(), diff_id.clone());
    tokio::task::spawn_blocking(move || archive::unpack_zstd(&source, &diff_id, &dir))
        .await
        .expect("the zstd unpack task panicked")
        .map_err(|err| match err {
            archive::UnpackError::DiffIdMismatch { actual, expected } => WarmupError::DiffIdMismatch { digest, actual, expected },
            archive::UnpackError::Io { path, source } => WarmupError::Io { path, source },
        })
}

fn layout_has_image(layout: &Layout, reference: &Reference, resolved: &ResolvedImage) -> Result<bool, WarmupError> {
    let image_name = reference.to_string();
    let entry = layout.entries()?.into_iter().find(|e| e.image_name() == Some(image_name.as_str()));
    let Some(entry) = entry else { return Ok(false) };
    let manifest = &resolved.manifest;
    let complete = entry.digest == resolved.manifest_digest
        && layout.has_blob(&manifest.config.digest, manifest.config.size)
        && manifest.layers.iter().all(|l| layout.has_blob(&l.digest, l.size));
    Ok(complete)
}

/// Copies the image's blobs from the cache into the layout, then its config and manifest, and
/// last the `index.json` entry, so an interrupted write never leaves an entry without its blobs.
fn write_to_layout(path: &std::path::Path, cache: &BlobCache, prepared: &Prepared) -> Result<(), WarmupError> {
    let layout = Layout::create(path)?;
    for layer in prepared.needed_layers() {
        let descriptor = &layer.descriptor;
        layout.import_blob(&descriptor.digest, descriptor.size, &cache.blob_path(&descriptor.digest))?;
    }
    let resolved = &prepared.resolved;
    layout.write_blob(prepared.config_digest(), &prepared.config)?;
    layout.write_blob(&resolved.manifest_digest, &resolved.manifest_raw)?;

    let digest: oci_spec::image::Digest = resolved.manifest_digest.as_str().parse().expect("a validated sha256 digest");
    let media_type = oci_spec::image::MediaType::from(resolved.manifest_media_type.as_str());
    let mut descriptor = oci_spec::image::Descriptor::new(media_type, resolved.manifest_raw.len() as u64, digest);
    if let Some(platform) = &resolved.platform {
        let mut spec = oci_spec::image::Platform::default();
        spec.set_os(platform.os.as_str().into());
        spec.set_architecture(platform.architecture.as_str().into());
        spec.set_variant(platform.variant.clone());
        descriptor.set_platform(Some(spec));
    }
    let reference = &resolved.reference;
    layout.add_entry(&descriptor, Some(&reference.to_string()), reference.tag.as_deref())?;
    Ok(())
}
