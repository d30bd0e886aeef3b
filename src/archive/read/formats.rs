//! Recognising the archive formats and listing the images an archive holds.
//!
//! Archives with `manifest.json` are read through it, because it is what Docker's classic image
//! store uses. Their OCI layout, when there is one, adds layer media types and the images of
//! `index.json` entries that `manifest.json` does not cover. Archives without `manifest.json` are
//! read as OCI layouts: `index.json`, then indexes (choosing the platform), manifests and configs.

use std::collections::{HashMap, HashSet};

use oci_spec::image::ANNOTATION_REF_NAME;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::index::{ArchiveIndex, LookupError, MemberFile};
use super::{blob_member, blob_name_digest, ArchiveError, ArchiveKind, Contents, SkipReason, SkippedImage, StoredImage, StoredLayer};
use crate::digest::Digest;
use crate::layout::ANNOTATION_IMAGE_NAME;
use crate::manifest::{self, Descriptor, Document, ImageConfig, ImageManifest, ManifestError};
use crate::platform::Platform;

pub(super) const MANIFEST_JSON: &str = "manifest.json";
pub(super) const INDEX_JSON: &str = "index.json";
pub(super) const OCI_LAYOUT: &str = "oci-layout";
pub(super) const FERRY_ARCHIVE_JSON: &str = "ferry-archive.json";
pub(super) const SHA256SUMS: &str = "sha256sums";

/// Largest JSON document (`manifest.json`, `index.json`, a config or a manifest) read into memory.
pub(super) const DOCUMENT_LIMIT: u64 = 64 << 20;
/// Nesting of indexes followed below `index.json`; deeper entries are skipped as not images.
const MAX_INDEX_DEPTH: usize = 4;

/// One entry of `manifest.json` as `docker save` writes it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The fields of `ferry-archive.json` that reading needs.
#[derive(Deserialize)]
pub(super) struct FerryArchiveFile {
    version: u64,
    #[serde(default)]
    pub blobs: Vec<FerryBlob>,
    /// Blobs an older archive carried, left out of this one (`ferry save --since`).
    #[serde(default)]
    pub omitted: Vec<FerryBlob>,
}

#[derive(Deserialize)]
pub(super) struct FerryBlob {
    pub digest: Digest,
    pub size: u64,
}

/// An `index.json` entry with the documents below it that the archive contains.
struct OciEntry {
    descriptor: Descriptor,
    names: Vec<String>,
    node: Node,
}

enum Node {
    Manifest { descriptor: Descriptor, manifest: Box<ImageManifest>, platform: Option<Platform> },
    Index { children: Vec<Node> },
    /// A manifest or index the archive does not contain, and the document that lists it.
    Missing { descriptor: Descriptor, listed_by: String },
    /// Anything that is not an image: artifacts, unknown media types, indexes nested too deep.
    Other { descriptor: Descriptor },
}

/// Lists the images of the archive. For OCI indexes, the manifest for `platform` is chosen
/// (with containerd's fallbacks). Images listed in `manifest.json`, and `index.json` entries that
/// point straight at a manifest, are returned whatever their platform, as `docker load` loads
/// them: compare [`StoredImage::platform`] to warn about a mismatch.
pub fn contents(index: &ArchiveIndex, platform: &Platform) -> Result<Contents, ArchiveError> {
    let docker_entries: Option<Vec<DockerEntry>> =
        if index.contains(MANIFEST_JSON) { Some(read_json(index, MANIFEST_JSON)?) } else { None };
    let has_layout = index.contains(INDEX_JSON) && index.contains(OCI_LAYOUT);
    let kind = match &docker_entries {
        Some(_) if index.contains(FERRY_ARCHIVE_JSON) => ArchiveKind::Ferry,
        Some(_) if has_layout => ArchiveKind::Docker25,
        Some(entries) if entries.iter().flat_map(|entry| &entry.layers).all(|layer| layer.ends_with("/layer.tar")) => {
            ArchiveKind::DockerLegacy
        }
        Some(_) => ArchiveKind::DockerArchive,
        None if has_layout => ArchiveKind::OciArchive,
        None => return Err(ArchiveError::NotAnImageArchive { path: index.path().to_owned() }),
    };
    let oci_entries = if has_layout { read_oci_entries(index)? } else { Vec::new() };

    let mut images = Vec::new();
    let mut skipped = Vec::new();
    if let Some(entries) = docker_entries {
        let manifests = manifests_by_config(&oci_entries);
        let omitted = if kind == ArchiveKind::Ferry { omitted_sizes(&read_ferry_file(index)?) } else { HashMap::new() };
        for (position, entry) in entries.iter().enumerate() {
            images.push(docker_image(index, entry, position, &manifests, &omitted)?);
        }
        for entry in &oci_entries {
            if !covered(entry, &mut images) {
                add_selected(index, entry, platform, &mut images, &mut skipped)?;
            }
        }
    } else {
        for entry in &oci_entries {
            add_selected(index, entry, platform, &mut images, &mut skipped)?;
        }
    }
    Ok(Contents { kind, images, skipped })
}

pub(super) fn read_json<T: DeserializeOwned>(index: &ArchiveIndex, name: &str) -> Result<T, ArchiveError> {
    let bytes = index.read_small(name, DOCUMENT_LIMIT)?;
    serde_json::from_slice(&bytes).map_err(|source| ArchiveError::InvalidJson { path: index.path().to_owned(), member: name.to_owned(), source })
}

pub(super) fn read_ferry_file(index: &ArchiveIndex) -> Result<FerryArchiveFile, ArchiveError> {
    let file: FerryArchiveFile = read_json(index, FERRY_ARCHIVE_JSON)?;
    if file.version != 1 {
        return Err(ArchiveError::UnsupportedVersion { path: index.path().to_owned(), version: file.version });
    }
    Ok(file)
}

/// Omitted blobs with their sizes, as `ferry-archive.json` lists them.
fn omitted_sizes(file: &FerryArchiveFile) -> HashMap<Digest, u64> {
    file.omitted.iter().map(|blob| (blob.digest.clone(), blob.size)).collect()
}

/// Reads a `manifest.json` entry: the config by the name it gives, and the layers in its order.
fn docker_image(
    index: &ArchiveIndex,
    entry: &DockerEntry,
    position: usize,
    manifests: &HashMap<Digest, &ImageManifest>,
    omitted: &HashMap<Digest, u64>,
) -> Result<StoredImage, ArchiveError> {
    let listed_by = format!("{MANIFEST_JSON} entry {}", position + 1);
    let config_file = index.require(&entry.config, Some(&listed_by))?;
    let config_member = normalised(&entry.config);
    let config = index.read_file(&config_file, DOCUMENT_LIMIT)?;
    let config_digest = Digest::of(&config);
    let parsed = parse_config(index, &config, &config_member)?;
    if parsed.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ArchiveError::LayerCount {
            path: index.path().to_owned(),
            config: config_member,
            listed_by,
            diff_ids: parsed.rootfs.diff_ids.len(),
            layers: entry.layers.len(),
        });
    }

    // The OCI manifest of the same config, in Docker 25+ and ferry archives, gives media types.
    let descriptors = manifests.get(&config_digest).map(|manifest| manifest.layers.as_slice()).unwrap_or_default();
    let mut layers = Vec::new();
    for (position, (name, diff_id)) in entry.layers.iter().zip(&parsed.rootfs.diff_ids).enumerate() {
        let member = normalised(name);
        let blob_digest = blob_name_digest(&member);
        let media_type = descriptors
            .get(position)
            .filter(|descriptor| Some(&descriptor.digest) == blob_digest.as_ref())
            .map(|descriptor| descriptor.media_type.clone());
        let (offset, size, is_omitted) = match index.lookup(name) {
            Ok(file) => (file.offset, file.size, false),
            Err(LookupError::Missing) if blob_digest.as_ref().is_some_and(|digest| omitted.contains_key(digest)) => {
                (0, blob_digest.as_ref().map_or(0, |digest| omitted[digest]), true)
            }
            Err(error) => return Err(index.lookup_error(name, Some(&listed_by), error)),
        };
        layers.push(StoredLayer { member, offset, size, diff_id: diff_id.clone(), blob_digest, media_type, omitted: is_omitted });
    }

    Ok(StoredImage {
        names: entry.repo_tags.clone().unwrap_or_default(),
        config_digest,
        config_member,
        platform: config_platform(&parsed),
        config,
        layers,
    })
}

/// Returns the normalised form of a name that a lookup has accepted.
fn normalised(name: &str) -> String {
    super::index::normalise(name).ok().flatten().unwrap_or_else(|| name.to_owned())
}

fn parse_config(index: &ArchiveIndex, config: &[u8], member: &str) -> Result<ImageConfig, ArchiveError> {
    manifest::parse_config(config, member).map_err(|source| invalid_document(index, member, source))
}

fn invalid_document(index: &ArchiveIndex, member: &str, source: ManifestError) -> ArchiveError {
    ArchiveError::InvalidDocument { path: index.path().to_owned(), member: member.to_owned(), source }
}

fn config_platform(config: &ImageConfig) -> Option<Platform> {
    (!config.os.is_empty() && !config.architecture.is_empty()).then(|| Platform::new(&config.os, &config.architecture, config.variant.as_deref()))
}

/// Reads `index.json` and every manifest and index below it that the archive contains.
fn read_oci_entries(index: &ArchiveIndex) -> Result<Vec<OciEntry>, ArchiveError> {
    let bytes = index.read_small(INDEX_JSON, DOCUMENT_LIMIT)?;
    let document = manifest::parse(None, &bytes, INDEX_JSON).map_err(|source| invalid_document(index, INDEX_JSON, source))?;
    let Document::Index(top) = document else {
        return Err(invalid_document(index, INDEX_JSON, ManifestError::Unrecognised { what: format!("{INDEX_JSON} (it is a manifest, not an index)") }));
    };
    top.manifests
        .into_iter()
        .map(|descriptor| {
            let node = read_node(index, &descriptor, INDEX_JSON, 0)?;
            Ok(OciEntry { names: entry_names(&descriptor), descriptor, node })
        })
        .collect()
}

/// References an `index.json` entry gives: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` when it is a full reference rather than a bare tag.
fn entry_names(descriptor: &Descriptor) -> Vec<String> {
    if let Some(name) = descriptor.annotations.get(ANNOTATION_IMAGE_NAME) {
        return vec![name.clone()];
    }
    let is_full_reference = |name: &&String| name.contains(['/', ':']) && !name.contains(char::is_whitespace);
    descriptor.annotations.get(ANNOTATION_REF_NAME).filter(is_full_reference).cloned().into_iter().collect()
}

fn read_node(index: &ArchiveIndex, descriptor: &Descriptor, listed_by: &str, depth: usize) -> Result<Node, ArchiveError> {
    let known = matches!(
        descriptor.media_type.as_str(),
        "" | manifest::OCI_INDEX | manifest::DOCKER_LIST | manifest::OCI_MANIFEST | manifest::DOCKER_MANIFEST
    );
    if !known || depth > MAX_INDEX_DEPTH {
        return Ok(Node::Other { descriptor: descriptor.clone() });
    }
    let member = blob_member(&descriptor.digest);
    let file = match index.lookup(&member) {
        Ok(file) => file,
        Err(LookupError::Missing) => return Ok(Node::Missing { descriptor: descriptor.clone(), listed_by: listed_by.to_owned() }),
        Err(error) => return Err(index.lookup_error(&member, Some(listed_by), error)),
    };
    let bytes = read_blob(index, &file, descriptor, listed_by)?;
    let media_type = Some(descriptor.media_type.as_str()).filter(|media_type| !media_type.is_empty());
    match manifest::parse(media_type, &bytes, &member).map_err(|source| invalid_document(index, &member, source))? {
        Document::Index(child_index) => {
            let children = child_index
                .manifests
                .iter()
                .map(|child| read_node(index, child, &member, depth + 1))
                .collect::<Result<_, _>>()?;
            Ok(Node::Index { children })
        }
        Document::Manifest(manifest) => {
            let platform = match &descriptor.platform {
                Some(field) => Some(field.to_platform()),
                None => platform_from_config(index, &manifest),
            };
            Ok(Node::Manifest { descriptor: descriptor.clone(), manifest: Box::new(manifest), platform })
        }
    }
}

/// Reads the platform from a manifest's config, for index entries without a `platform` field.
fn platform_from_config(index: &ArchiveIndex, manifest: &ImageManifest) -> Option<Platform> {
    let file = index.file(&blob_member(&manifest.config.digest))?;
    let bytes = index.read_file(&file, DOCUMENT_LIMIT).ok()?;
    config_platform(&manifest::parse_config(&bytes, "config").ok()?)
}

/// Reads a blob a descriptor points to, checking its size and digest.
fn read_blob(index: &ArchiveIndex, file: &MemberFile, descriptor: &Descriptor, listed_by: &str) -> Result<Vec<u8>, ArchiveError> {
    let member = blob_member(&descriptor.digest);
    if file.size != descriptor.size {
        return Err(ArchiveError::SizeMismatch {
            path: index.path().to_owned(),
            member,
            listed_by: listed_by.to_owned(),
            expected: descriptor.size,
            found: file.size,
        });
    }
    let bytes = index.read_file(file, DOCUMENT_LIMIT)?;
    let found = Digest::of(&bytes);
    if found != descriptor.digest {
        return Err(ArchiveError::DigestMismatch {
            path: index.path().to_owned(),
            member,
            listed_by: listed_by.to_owned(),
            expected: descriptor.digest.clone(),
            found,
        });
    }
    Ok(bytes)
}

/// Manifests in the OCI layout, by config digest, whatever their platform.
fn manifests_by_config(entries: &[OciEntry]) -> HashMap<Digest, &ImageManifest> {
    fn walk<'a>(node: &'a Node, found: &mut HashMap<Digest, &'a ImageManifest>) {
        match node {
            Node::Manifest { manifest, .. } => {
                found.entry(manifest.config.digest.clone()).or_insert(manifest);
            }
            Node::Index { children } => children.iter().for_each(|child| walk(child, found)),
            Node::Missing { .. } | Node::Other { .. } => {}
        }
    }
    let mut found = HashMap::new();
    entries.iter().for_each(|entry| walk(&entry.node, &mut found));
    found
}

/// True when `manifest.json` already lists the image of an `index.json` entry, by name or by
/// config. An image listed without names takes the entry's names.
fn covered(entry: &OciEntry, images: &mut [StoredImage]) -> bool {
    if entry.names.iter().any(|name| images.iter().any(|image| image.names.contains(name))) {
        return true;
    }
    let configs: HashSet<Digest> = manifests_by_config(std::slice::from_ref(entry)).into_keys().collect();
    let Some(image) = images.iter_mut().find(|image| configs.contains(&image.config_digest)) else {
        return false;
    };
    if image.names.is_empty() {
        image.names = entry.names.clone();
    }
    true
}

/// Reason no manifest was chosen below an `index.json` entry.
enum NoSelection<'a> {
    Skip(SkipReason),
    Missing { descriptor: &'a Descriptor, listed_by: &'a str },
}

/// Chooses the manifest for `platform` below `node`: the best-ranked platform entry of an index,
/// else the first nested index that has one.
fn select<'a>(node: &'a Node, platform: &Platform) -> Result<(&'a Descriptor, &'a ImageManifest), NoSelection<'a>> {
    let children = match node {
        Node::Manifest { descriptor, manifest, .. } => return Ok((descriptor, manifest)),
        Node::Missing { descriptor, listed_by } => return Err(NoSelection::Missing { descriptor, listed_by }),
        Node::Other { descriptor } => return Err(NoSelection::Skip(SkipReason::NotAnImage { media_type: descriptor.media_type.clone() })),
        Node::Index { children } => children,
    };

    let mut available = Vec::new();
    let mut best: Option<(u32, &Node)> = None;
    for child in children {
        let child_platform = match child {
            Node::Manifest { platform, .. } => platform.clone(),
            Node::Missing { descriptor, .. } => descriptor.platform.as_ref().map(|field| field.to_platform()),
            Node::Index { .. } | Node::Other { .. } => None,
        };
        let Some(child_platform) = child_platform.filter(|candidate| !candidate.is_unknown()) else {
            continue;
        };
        if let Some(rank) = platform.match_rank(&child_platform) {
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, child));
            }
        }
        available.push(child_platform);
    }
    if let Some((_, child)) = best {
        return select(child, platform);
    }
    for child in children.iter().filter(|child| matches!(child, Node::Index { .. })) {
        match select(child, platform) {
            Err(NoSelection::Skip(SkipReason::NoMatchingPlatform { available: nested, .. })) => available.extend(nested),
            Err(NoSelection::Skip(SkipReason::NotAnImage { .. })) => {}
            chosen => return chosen,
        }
    }
    Err(NoSelection::Skip(SkipReason::NoMatchingPlatform { wanted: platform.clone(), available }))
}

/// Adds the image an `index.json` entry gives for `platform`, or records why there is none.
fn add_selected(
    index: &ArchiveIndex,
    entry: &OciEntry,
    platform: &Platform,
    images: &mut Vec<StoredImage>,
    skipped: &mut Vec<SkippedImage>,
) -> Result<(), ArchiveError> {
    let skip = |reason| SkippedImage { names: entry.names.clone(), digest: entry.descriptor.digest.clone(), reason };
    let (descriptor, manifest) = match select(&entry.node, platform) {
        Ok(chosen) => chosen,
        Err(NoSelection::Skip(reason)) => {
            skipped.push(skip(reason));
            return Ok(());
        }
        Err(NoSelection::Missing { descriptor, listed_by }) => {
            return Err(ArchiveError::MissingMember {
                path: index.path().to_owned(),
                member: blob_member(&descriptor.digest),
                referenced_by: Some(listed_by.to_owned()),
            });
        }
    };
    let config_type = manifest.config.media_type.as_str();
    if !matches!(config_type, "" | manifest::OCI_CONFIG | manifest::DOCKER_CONFIG) {
        skipped.push(skip(SkipReason::NotAnImage { media_type: config_type.to_owned() }));
        return Ok(());
    }

    let image = oci_image(index, descriptor, manifest)?;
    match images.iter_mut().find(|known| known.config_digest == image.config_digest && same_members(known, &image)) {
        Some(known) => {
            let new_names: Vec<String> = entry.names.iter().filter(|name| !known.names.contains(name)).cloned().collect();
            known.names.extend(new_names);
        }
        None => images.push(StoredImage { names: entry.names.clone(), ..image }),
    }
    Ok(())
}

fn same_members(left: &StoredImage, right: &StoredImage) -> bool {
    left.layers.iter().map(|layer| &layer.member).eq(right.layers.iter().map(|layer| &layer.member))
}

/// Reads the config and layer list of an OCI or Docker schema 2 manifest in the layout.
fn oci_image(index: &ArchiveIndex, descriptor: &Descriptor, manifest: &ImageManifest) -> Result<StoredImage, ArchiveError> {
    let manifest_member = blob_member(&descriptor.digest);
    let config_member = blob_member(&manifest.config.digest);
    let config_file = index.require(&config_member, Some(&manifest_member))?;
    let config = read_blob(index, &config_file, &manifest.config, &manifest_member)?;
    let parsed = parse_config(index, &config, &config_member)?;
    if parsed.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ArchiveError::LayerCount {
            path: index.path().to_owned(),
            config: config_member,
            listed_by: manifest_member,
            diff_ids: parsed.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }

    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&parsed.rootfs.diff_ids) {
        if manifest::layer_compression(&layer.media_type).is_none() {
            return Err(ArchiveError::UnsupportedLayer {
                path: index.path().to_owned(),
                manifest: manifest_member,
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            });
        }
        let member = blob_member(&layer.digest);
        let file = index.require(&member, Some(&manifest_member))?;
        if file.size != layer.size {
            return Err(ArchiveError::SizeMismatch {
                path: index.path().to_owned(),
                member,
                listed_by: manifest_member,
                expected: layer.size,
                found: file.size,
            });
        }
        layers.push(StoredLayer {
            member,
            offset: file.offset,
            size: file.size,
            diff_id: diff_id.clone(),
            blob_digest: Some(layer.digest.clone()),
            media_type: Some(layer.media_type.clone()),
            omitted: false,
        });
    }

    Ok(StoredImage {
        names: Vec::new(),
        config_digest: manifest.config.digest.clone(),
        config_member,
        platform: config_platform(&parsed),
        config,
        layers,
    })
}
