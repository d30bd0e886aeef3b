//! `ferry load`: images from an archive into the Docker engine, every byte verified first.
//!
//! Planning reads the archive's headers and what the engine has, and measures the space the
//! engine needs. Loading streams one docker-archive of every image, built from byte ranges of
//! the archives, into `POST /images/load`, leaving out the layers the engine already has.
//! Verification hashes every member an image uses while the layers travel, and the stream ends
//! with `manifest.json` only when all matched, so a tampered or truncated archive loads nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::archive::read::{self, ArchiveError, ArchiveIndex, Contents, StoredImage};
use crate::archive::{self, ArchiveImage, ArchiveLayer, BlobSource};
use crate::digest::Digest;
use crate::disk::{self, Demand, SpaceCheck};
use crate::engine::{self, Engine, EngineError, EngineInfo};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::warmup::{ImageOutcome, Status, UNPACK_ESTIMATE_FACTOR};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error("{}: image {image}: layer {diff_id} is not in this archive (ferry save --since left it out), and neither the engine nor an archive named before this one has it; load the earlier archive first, or name it before this one", archive.display())]
    MissingLayer { archive: PathBuf, image: String, diff_id: Digest },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("image {image}: {source}")]
    Unpack { image: String, source: archive::UnpackError },
    #[error("after loading, {name} points to image {found} instead of {expected}")]
    WrongImage { name: String, found: String, expected: Digest },
    #[error("the engine reported success but has no image named {name}")]
    NotLoaded { name: String },
}

impl From<ArchiveError> for LoadError {
    fn from(error: ArchiveError) -> LoadError {
        LoadError::Archive(Box::new(error))
    }
}

/// One image of an archive and what the engine lacks of it.
#[derive(Debug)]
pub struct PlannedLoad {
    pub image: StoredImage,
    /// The engine already has this image under every name the archive gives it.
    pub present: bool,
    /// Per layer: the engine has the layer stack up to it, or will have it once the archives
    /// named earlier are loaded. Such layers are not sent.
    pub in_engine: Vec<bool>,
}

impl PlannedLoad {
    /// Returns the name shown for the image: its first reference, else its image ID.
    pub fn label(&self) -> String {
        self.image.names.first().cloned().unwrap_or_else(|| self.image.config_digest.to_string())
    }
}

/// One archive of a load and its images, in archive order.
#[derive(Debug)]
pub struct ArchivePlan {
    pub index: ArchiveIndex,
    pub contents: Contents,
    pub images: Vec<PlannedLoad>,
}

impl ArchivePlan {
    pub fn path(&self) -> &Path {
        self.index.path()
    }
}

/// Archives to load, in the order given, and the space they need together.
#[derive(Debug)]
pub struct LoadPlan {
    pub archives: Vec<ArchivePlan>,
    /// Bytes the engine receives.
    pub bytes_to_send: u64,
    pub space: Vec<SpaceCheck>,
}

impl LoadPlan {
    pub fn space_problems(&self) -> Vec<&SpaceCheck> {
        self.space.iter().filter(|c| !c.is_enough()).collect()
    }

    /// Returns every image of every archive, in load order.
    pub fn images(&self) -> impl Iterator<Item = (&ArchivePlan, &PlannedLoad)> {
        self.archives.iter().flat_map(|archive| archive.images.iter().map(move |image| (archive, image)))
    }
}

/// Reads the archives and the engine and measures the space needed. Changes nothing.
///
/// Archives load in the order given, so a layer that `ferry save --since` left out of one
/// archive may come from an archive named before it.
pub async fn plan(engine: &Engine, info: &EngineInfo, paths: &[PathBuf], platform: &Platform, work_dir: &Path) -> Result<LoadPlan, LoadError> {
    let chains = engine.chain_ids().await?;
    // Layer stacks that the archives planned so far will have put in the engine.
    let mut provided: HashSet<Digest> = HashSet::new();
    let mut seen = HashSet::new();
    let (mut bytes_to_send, mut unpacked) = (0, 0);
    let mut archives = Vec::new();
    // An image that an earlier archive also carries, under the same names, loads once.
    let mut planned_images: HashSet<(Digest, Vec<String>)> = HashSet::new();
    for path in paths {
        let (index, contents) = read_archive(path, platform).await?;
        let mut images = Vec::new();
        for image in &contents.images {
            if !planned_images.insert((image.config_digest.clone(), image.names.clone())) {
                continue;
            }
            let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
            let image_chains = engine::chain_ids(&diff_ids);
            let mut in_engine: Vec<bool> = image_chains.iter().map(|chain| chains.contains(chain)).collect();
            let present = is_present(engine, image).await?;
            let label = image.names.first().cloned().unwrap_or_else(|| image.config_digest.to_string());
            for ((layer, have), chain) in image.layers.iter().zip(in_engine.iter_mut()).zip(&image_chains) {
                if *have || present {
                    continue;
                }
                if layer.omitted {
                    if !provided.contains(chain) {
                        return Err(LoadError::MissingLayer { archive: path.clone(), image: label, diff_id: layer.diff_id.clone() });
                    }
                    *have = true;
                    continue;
                }
                if seen.insert(layer.diff_id.clone()) {
                    bytes_to_send += layer.size;
                    // A layer stored as a plain tar is its own unpacked size; others are estimated.
                    let plain = layer.blob_digest.as_ref() == Some(&layer.diff_id) || layer.member.ends_with("layer.tar");
                    unpacked += if plain { layer.size } else { layer.size * UNPACK_ESTIMATE_FACTOR };
                }
            }
            images.push(PlannedLoad { image: image.clone(), present, in_engine });
        }
        // Chains are added once the whole archive is planned: within one archive, each image
        // sends the layers it stores.
        for planned in &images {
            let diff_ids: Vec<Digest> = planned.image.layers.iter().map(|l| l.diff_id.clone()).collect();
            provided.extend(engine::chain_ids(&diff_ids));
        }
        archives.push(ArchivePlan { index, contents, images });
    }

    let mut demands = Vec::new();
    match (&info.root_dir, info.local) {
        (Some(root), true) => demands.push(Demand {
            path: root.clone(),
            purpose: "Docker data root (archive staging and unpacked layers)".into(),
            bytes: bytes_to_send + unpacked,
            estimated: unpacked,
        }),
        _ => tracing::warn!("the Docker engine is remote, so its free space is not checked"),
    }
    if !info.loads_zstd {
        demands.push(Demand { path: work_dir.to_owned(), purpose: "zstd layers unpacked for this engine".into(), bytes: 0, estimated: 0 });
    }
    let space = disk::check(&demands).map_err(|source| LoadError::Io { path: work_dir.to_owned(), source })?;
    Ok(LoadPlan { archives, bytes_to_send, space })
}

async fn read_archive(path: &Path, platform: &Platform) -> Result<(ArchiveIndex, Contents), LoadError> {
    let (path, platform) = (path.to_owned(), platform.clone());
    let read = tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
        let index = ArchiveIndex::open(&path)?;
        let contents = read::contents(&index, &platform)?;
        Ok((index, contents))
    });
    Ok(read.await.expect("the archive reader panicked")?)
}

/// Plans writing the archives' images into an OCI layout folder: everything is copied, and the
/// space needed is the size of the layers on the layout's filesystem.
pub async fn plan_for_layout(paths: &[PathBuf], platform: &Platform, layout: &Path) -> Result<LoadPlan, LoadError> {
    let mut seen = HashSet::new();
    let mut bytes_to_send = 0;
    let mut archives = Vec::new();
    let mut planned_images: HashSet<(Digest, Vec<String>)> = HashSet::new();
    for path in paths {
        let (index, contents) = read_archive(path, platform).await?;
        bytes_to_send += contents.images.iter().flat_map(|i| &i.layers).filter(|l| !l.omitted && seen.insert(l.diff_id.clone())).map(|l| l.size).sum::<u64>();
        let images = contents
            .images
            .iter()
            .filter(|image| planned_images.insert((image.config_digest.clone(), image.names.clone())))
            .map(|image| PlannedLoad { image: image.clone(), present: false, in_engine: vec![false; image.layers.len()] })
            .collect();
        archives.push(ArchivePlan { index, contents, images });
    }
    let demands = [Demand { path: layout.to_owned(), purpose: "OCI layout".into(), bytes: bytes_to_send, estimated: 0 }];
    let space = disk::check(&demands).map_err(|source| LoadError::Io { path: layout.to_owned(), source })?;
    Ok(LoadPlan { archives, bytes_to_send, space })
}

async fn is_present(engine: &Engine, image: &StoredImage) -> Result<bool, LoadError> {
    if image.names.is_empty() {
        return Ok(engine.image(image.config_digest.as_str()).await?.is_some());
    }
    for name in &image.names {
        match engine.image(name).await? {
            Some(found) if found.id == image.config_digest.as_str() => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Hashes every member the images to load use; fails naming the first bad member.
pub async fn verify(plan: &LoadPlan, on_bytes: &(dyn Fn(u64) + Send + Sync)) -> Result<(), LoadError> {
    for (archive, contents) in plan.archives.iter().zip(contents_to_load(plan)) {
        tokio::task::block_in_place(|| read::verify(&archive.index, &contents, read::DiffIds::All, on_bytes))?;
    }
    Ok(())
}

/// Returns, per archive of the plan, the contents narrowed to the images not yet present.
fn contents_to_load(plan: &LoadPlan) -> Vec<Contents> {
    plan.archives
        .iter()
        .map(|archive| {
            let to_load = archive.images.iter().filter(|p| !p.present).map(|p| p.image.clone()).collect();
            Contents { kind: archive.contents.kind, images: to_load, skipped: Vec::new() }
        })
        .collect()
}

/// Verifies and loads every image the engine lacks, in one `POST /images/load`, and checks the
/// names afterwards.
///
/// Verification runs on its own threads while the layers stream to the engine, and the stream
/// sends `manifest.json` only once every member an image uses, in every archive, matched its
/// digest. A failed check ends the upload with an error, so the engine loads nothing, and is
/// returned as the error. `on_verified` receives the bytes verified.
///
/// A layer whose stored bytes a digest names is checked against that digest only, and Docker
/// checks its DiffID as it unpacks it (see [`read::DiffIds::Unnamed`]).
///
/// NOTE: this relies on the engine reading the whole upload before it registers a layer, which
/// Docker's loader does (tested with Docker 20.10's classic image store). An archive whose
/// named digests match but whose config lists a wrong DiffID fails in the engine, after the
/// images before it in the upload have loaded.
pub async fn execute(
    engine: &Engine,
    info: &EngineInfo,
    plan: &LoadPlan,
    work_dir: &Path,
    progress: &dyn Progress,
    on_verified: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Vec<ImageOutcome>, LoadError> {
    let started = Instant::now();
    let to_load: Vec<(usize, &ArchivePlan, &PlannedLoad)> =
        plan.images().enumerate().filter(|(_, (_, planned))| !planned.present).map(|(position, (archive, planned))| (position, archive, planned)).collect();

    let mut unpacked: HashMap<Digest, (PathBuf, u64)> = HashMap::new();
    let mut load_result = Ok(());
    if !to_load.is_empty() {
        let verification = spawn_verification(plan, on_verified);
        let (verified_sender, verified_receiver) = std::sync::mpsc::sync_channel::<bool>(1);
        let gate: archive::Gate = Box::new(move || match verified_receiver.recv() {
            Ok(true) => Ok(()),
            _ => Err(std::io::Error::other("the archive failed verification")),
        });
        let waiter = tokio::spawn(async move {
            let result = verification.await.expect("the verification task panicked");
            let _ = verified_sender.send(result.is_ok());
            result
        });

        let mut images = Vec::new();
        let mut prepared = Ok(());
        for (position, archive, planned) in &to_load {
            progress.image_stage(*position, &format!("loading {} into Docker", planned.label()));
            match archive_image(info, archive, planned, work_dir, &mut unpacked).await {
                Ok(image) => images.push(image),
                Err(err) => {
                    prepared = Err(err);
                    break;
                }
            }
        }
        load_result = match prepared {
            // A gate that never opens: the stream stops before manifest.json.
            Ok(()) => engine.load(archive::docker_archive_gated(images, gate)).await.map(drop).map_err(LoadError::from),
            Err(err) => Err(err),
        };
        let verified = waiter.await.expect("the verification waiter panicked");
        for (path, _) in unpacked.values() {
            let _ = fs_err::remove_file(path);
        }
        verified?;
    }

    let mut outcomes = Vec::new();
    for (position, (_, planned)) in plan.images().enumerate() {
        let label = planned.label();
        let status = if planned.present {
            Ok(Status::Unchanged)
        } else {
            match &load_result {
                Ok(()) => check_names(engine, &planned.image).await.map(|()| Status::Changed),
                Err(err) => Err(crate::error_message(err)),
            }
        };
        let (status, error) = match status {
            Ok(status) => (status, None),
            Err(message) => (Status::Failed, Some(message)),
        };
        // Bytes of the layers sent to the engine, as stored in the archive.
        let bytes = match status {
            Status::Changed => planned.image.layers.iter().zip(&planned.in_engine).filter(|(_, have)| !**have).map(|(layer, _)| layer.size).sum(),
            _ => 0,
        };
        let outcome = ImageOutcome {
            reference: label,
            digest: None,
            image_id: Some(planned.image.config_digest.to_string()),
            platform: planned.image.platform.as_ref().map(ToString::to_string),
            status,
            bytes,
            seconds: crate::warmup::elapsed_seconds(started),
            error,
        };
        progress.image_finished(position, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Starts verifying the members of every image to load, on blocking threads.
fn spawn_verification(plan: &LoadPlan, on_verified: Arc<dyn Fn(u64) + Send + Sync>) -> tokio::task::JoinHandle<Result<(), LoadError>> {
    let work: Vec<(ArchiveIndex, Contents)> = plan.archives.iter().map(|archive| archive.index.clone()).zip(contents_to_load(plan)).collect();
    tokio::task::spawn_blocking(move || {
        for (index, contents) in &work {
            read::verify(index, contents, read::DiffIds::Unnamed, &*on_verified)?;
        }
        Ok(())
    })
}

/// Describes one image for the docker-archive stream: the layers the engine lacks as byte
/// ranges of the archive, or as plain tars for zstd layers the engine cannot read.
async fn archive_image(
    info: &EngineInfo,
    plan: &ArchivePlan,
    planned: &PlannedLoad,
    work_dir: &Path,
    unpacked: &mut HashMap<Digest, (PathBuf, u64)>,
) -> Result<ArchiveImage, LoadError> {
    let image = &planned.image;
    let mut layers = Vec::new();
    for (layer, in_engine) in image.layers.iter().zip(&planned.in_engine) {
        if *in_engine {
            layers.push(ArchiveLayer { digest: layer.diff_id.clone(), size: layer.size, source: None });
            continue;
        }
        let source = BlobSource::Range { parts: plan.index.parts().clone(), offset: layer.offset, len: layer.size };
        let zstd = !info.loads_zstd && archive::is_zstd(&source).map_err(|source| LoadError::Io { path: plan.index.path().to_owned(), source })?;
        if zstd {
            if !unpacked.contains_key(&layer.diff_id) {
                let (source, diff_id, dir) = (source.clone(), layer.diff_id.clone(), work_dir.to_owned());
                let result = tokio::task::spawn_blocking(move || archive::unpack_zstd(&source, &diff_id, &dir)).await.expect("the zstd unpack task panicked");
                let file = result.map_err(|source| LoadError::Unpack { image: planned.label(), source })?;
                unpacked.insert(layer.diff_id.clone(), file);
            }
            let (path, size) = unpacked[&layer.diff_id].clone();
            layers.push(ArchiveLayer { digest: layer.diff_id.clone(), size, source: Some(BlobSource::File(path)) });
        } else {
            layers.push(ArchiveLayer { digest: layer.diff_id.clone(), size: layer.size, source: Some(source) });
        }
    }
    Ok(ArchiveImage { config_digest: image.config_digest.clone(), config: image.config.clone(), repo_tags: image.names.clone(), layers })
}

/// Checks that every name of the image, or its ID when it has none, points at it.
async fn check_names(engine: &Engine, image: &StoredImage) -> Result<(), String> {
    let names = if image.names.is_empty() { vec![image.config_digest.to_string()] } else { image.names.clone() };
    for name in names {
        let error = match engine.image(&name).await {
            Ok(Some(found)) if found.id == image.config_digest.as_str() => continue,
            Ok(Some(found)) => LoadError::WrongImage { name, found: found.id, expected: image.config_digest.clone() },
            Ok(None) => LoadError::NotLoaded { name },
            Err(err) => LoadError::Engine(err),
        };
        return Err(crate::error_message(&error));
    }
    Ok(())
}

/// Writes each image of the plan into an OCI image layout folder: layers copied from the
/// archive (hashed on the way), the config, and an OCI manifest made for it, then the
/// `index.json` entry. Returns one outcome per image.
///
/// NOTE: the manifest is written anew from the config and layers, so its digest can differ from
/// the registry's even when the archive kept the original (as ferry save archives do).
pub fn write_layout(plan: &LoadPlan, path: &Path) -> Vec<ImageOutcome> {
    plan.images()
        .map(|(archive, planned)| {
            let image = &planned.image;
            let started = Instant::now();
            let label = image.names.first().cloned().unwrap_or_else(|| image.config_digest.to_string());
            let result = write_image_to_layout(archive, image, path);
            ImageOutcome {
                reference: label,
                digest: result.as_ref().ok().map(|(digest, _)| digest.to_string()),
                image_id: Some(image.config_digest.to_string()),
                platform: image.platform.as_ref().map(ToString::to_string),
                status: match &result {
                    Ok((_, true)) => Status::Changed,
                    Ok((_, false)) => Status::Unchanged,
                    Err(_) => Status::Failed,
                },
                bytes: match &result {
                    Ok((_, true)) => image.layers.iter().map(|layer| layer.size).sum(),
                    _ => 0,
                },
                seconds: crate::warmup::elapsed_seconds(started),
                error: result.err().map(|e| crate::error_message(&e)),
            }
        })
        .collect()
}

/// Returns the manifest digest and whether anything was written.
fn write_image_to_layout(plan: &ArchivePlan, image: &StoredImage, path: &Path) -> Result<(Digest, bool), LoadError> {
    use crate::manifest::{OCI_CONFIG, OCI_MANIFEST};
    let io = |source| LoadError::Io { path: path.to_owned(), source };
    let layout = crate::layout::Layout::create(path)?;
    let label = image.names.first().cloned().unwrap_or_else(|| image.config_digest.to_string());
    let mut layers = Vec::new();
    for layer in &image.layers {
        if layer.omitted {
            // A layer that an earlier archive wrote into this layout is taken from there.
            match &layer.blob_digest {
                Some(digest) if layout.has_blob(digest, layer.size) => {
                    let mut head = [0u8; 4];
                    let read = std::fs::File::open(layout.blob_path(digest)).and_then(|mut file| std::io::Read::read(&mut file, &mut head)).map_err(io)?;
                    let media_type = crate::manifest::layer_media_type(&head[..read]);
                    layers.push(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": layer.size }));
                    continue;
                }
                _ => return Err(LoadError::MissingLayer { archive: plan.path().to_owned(), image: label, diff_id: layer.diff_id.clone() }),
            }
        }
        let source = BlobSource::Range { parts: plan.index.parts().clone(), offset: layer.offset, len: layer.size };
        let (digest, media_type) = copy_layer(&layout, &source, layer.size).map_err(io)?;
        layers.push(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": layer.size }));
    }
    layout.write_blob(&image.config_digest, &image.config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": image.config_digest, "size": image.config.len() },
        "layers": layers,
    });
    let raw = serde_json::to_vec(&manifest).expect("JSON");
    let digest = Digest::of(&raw);
    let known = layout.entries().map(|entries| entries.iter().any(|e| e.digest == digest)).unwrap_or(false);
    layout.write_blob(&digest, &raw)?;
    let mut descriptor = oci_spec::image::Descriptor::new(OCI_MANIFEST.into(), raw.len() as u64, digest.as_str().parse::<oci_spec::image::Digest>().expect("sha256 digest"));
    if let Some(platform) = &image.platform {
        let mut spec = oci_spec::image::Platform::default();
        spec.set_os(platform.os.as_str().into());
        spec.set_architecture(platform.architecture.as_str().into());
        spec.set_variant(platform.variant.clone());
        descriptor.set_platform(Some(spec));
    }
    let tag = image.names.first().and_then(|name| crate::reference::Reference::parse(name).ok()).and_then(|r| r.tag);
    layout.add_entry(&descriptor, image.names.first().map(String::as_str), tag.as_deref())?;
    Ok((digest, !known))
}

/// Copies a layer into the layout under its digest, hashing it on the way, and names its media
/// type from its first bytes.
fn copy_layer(layout: &crate::layout::Layout, source: &BlobSource, size: u64) -> std::io::Result<(Digest, &'static str)> {
    use std::io::{Read, Write};
    let mut reader = source.open()?;
    let mut temp = crate::layout::temp_builder().tempfile_in(layout.root())?;
    let mut hasher = crate::digest::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        if head.len() < 4 {
            head.extend_from_slice(&buffer[..n.min(4 - head.len())]);
        }
        hasher.update(&buffer[..n]);
        temp.write_all(&buffer[..n])?;
    }
    let media_type = crate::manifest::layer_media_type(&head);
    let digest = hasher.finish();
    layout.import_blob(&digest, size, temp.path()).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((digest, media_type))
}
