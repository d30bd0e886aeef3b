//! The two stores `ferry serve` reads images from: an OCI image layout folder, or an archive read
//! in place through its OCI view (`oci-layout`, `index.json`, `blobs/sha256/`).
//!
//! Both stores answer the same questions (which manifest a tag or digest names, the tags of a
//! repository, the bytes of a manifest, where a blob is), so the routes in `serve` are shared.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::OciLayout;

use super::ServeError;
use crate::archive::read::{ArchiveError, ArchiveIndex};
use crate::archive::parts::numbered;
use crate::archive::Parts;
use crate::digest::Digest;
use crate::layout::{IndexEntry, Layout, LayoutError, LAYOUT_VERSION};
use crate::manifest::{self, Descriptor};

const OCI_LAYOUT: &str = "oci-layout";
const INDEX_JSON: &str = "index.json";
const MANIFEST_JSON: &str = "manifest.json";
/// Largest manifest, index, `index.json` or `oci-layout` read from an archive into memory.
const DOCUMENT_LIMIT: u64 = 16 << 20;

/// The images `ferry serve` publishes.
#[derive(Clone, Debug)]
pub enum Store {
    /// An OCI image layout folder, read file by file on each request.
    Layout(Layout),
    /// An archive (one file or numbered parts), read by byte range without extracting it.
    Archive(Arc<ArchiveStore>),
}

/// An archive with an OCI view, indexed once at startup.
#[derive(Debug)]
pub struct ArchiveStore {
    index: ArchiveIndex,
    /// The entries of `index.json`, in file order.
    entries: Vec<IndexEntry>,
    /// Every manifest and index a digest request may name: the `index.json` entries and the
    /// children of the index blobs the archive contains.
    manifests: HashMap<Digest, IndexEntry>,
}

/// Error from reading a store while serving a request. The client gets a 500 and the server
/// log gets this error.
#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    #[error(transparent)]
    Layout(Box<LayoutError>),
    #[error(transparent)]
    Archive(Box<ArchiveError>),
}

impl From<LayoutError> for StoreError {
    fn from(error: LayoutError) -> StoreError {
        StoreError::Layout(Box::new(error))
    }
}

impl From<ArchiveError> for StoreError {
    fn from(error: ArchiveError) -> StoreError {
        StoreError::Archive(Box::new(error))
    }
}

/// Location of a blob's bytes.
pub(super) enum BlobLocation {
    /// A file of a layout; its size is read when it is opened.
    File(PathBuf),
    /// A byte range of an archive.
    Range { parts: Arc<Parts>, offset: u64, size: u64 },
}

impl From<Layout> for Store {
    fn from(layout: Layout) -> Store {
        Store::Layout(layout)
    }
}

impl Store {
    /// Opens `path`: a folder as an OCI image layout, anything else as an archive written by
    /// `ferry save`, skopeo `oci-archive:` or `docker save` from Docker 25 on. A path that does
    /// not exist is opened as an archive in numbered parts when `PATH.001` exists.
    pub fn open(path: &Path) -> Result<Store, ServeError> {
        if !path.exists() && !numbered(path, 1).exists() {
            return Err(ServeError::NotFound { path: path.to_owned() });
        }
        if path.is_dir() {
            return Ok(Store::Layout(Layout::open(path)?));
        }
        Ok(Store::Archive(Arc::new(ArchiveStore::open(path)?)))
    }

    /// Path the store was opened with.
    pub fn path(&self) -> &Path {
        match self {
            Store::Layout(layout) => layout.root(),
            Store::Archive(archive) => archive.index.path(),
        }
    }

    /// Names the kind of store in messages to clients: "layout" or "archive".
    pub(super) fn noun(&self) -> &'static str {
        match self {
            Store::Layout(_) => "layout",
            Store::Archive(_) => "archive",
        }
    }

    /// Finds the manifest that a pull of `repository` at `reference` (a tag or a digest) gets,
    /// with the rules of [`Layout::resolve`].
    pub(super) fn resolve(&self, repository: &str, reference: &str) -> Result<Option<IndexEntry>, StoreError> {
        match self {
            Store::Layout(layout) => Ok(layout.resolve(Some(repository), reference)?),
            Store::Archive(archive) => Ok(archive.resolve(repository, reference)),
        }
    }

    /// Lists the tags `resolve` accepts for `repository`, sorted; empty when there is no image
    /// for it.
    pub(super) fn tags(&self, repository: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Layout(layout) => Ok(layout.tags(repository)?),
            Store::Archive(archive) => Ok(archive.tags(repository)),
        }
    }

    /// Reads the manifest `entry` names and checks it against its digest. Returns `None` when
    /// the store lists the manifest but lacks its blob.
    pub(super) fn read_manifest(&self, entry: &IndexEntry) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Layout(layout) => match layout.read_blob(&entry.digest) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(LayoutError::BlobNotFound { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            },
            Store::Archive(archive) => Ok(archive.read_manifest(entry)?),
        }
    }

    /// Returns where blob `digest` is, or `None` when the store does not have it. The content
    /// is not checked here.
    pub(super) fn blob(&self, digest: &Digest) -> Option<BlobLocation> {
        match self {
            Store::Layout(layout) => Some(BlobLocation::File(layout.blob_path(digest))),
            Store::Archive(archive) => {
                let file = archive.index.file(&blob_member(digest))?;
                Some(BlobLocation::Range { parts: Arc::clone(archive.index.parts()), offset: file.offset, size: file.size })
            }
        }
    }
}

impl ArchiveStore {
    /// Reads the tar headers of the archive at `path`, then its `oci-layout`, its `index.json`
    /// and the index blobs below it. Archives without `oci-layout` and `index.json` are rejected.
    pub fn open(path: &Path) -> Result<ArchiveStore, ServeError> {
        let index = ArchiveIndex::open(path)?;
        if !index.contains(OCI_LAYOUT) || !index.contains(INDEX_JSON) {
            let hint = if index.contains(MANIFEST_JSON) {
                format!(
                    "It is a docker-archive (docker save before Docker 25, skopeo docker-archive:, or podman save): load it with ferry load, or convert it with skopeo copy docker-archive:{0} oci-archive:OUTPUT.tar",
                    path.display()
                )
            } else {
                "It has no manifest.json either, so it is not an image archive.".to_owned()
            };
            return Err(ServeError::NoOciView { path: path.to_owned(), hint });
        }

        let marker: OciLayout = read_json(&index, OCI_LAYOUT)?;
        if marker.image_layout_version() != LAYOUT_VERSION {
            return Err(ServeError::UnsupportedArchiveLayout { path: path.to_owned(), version: marker.image_layout_version().clone() });
        }
        let top: manifest::ImageIndex = read_json(&index, INDEX_JSON)?;
        let entries: Vec<IndexEntry> = top.manifests.iter().map(index_entry).collect();
        let manifests = reachable_manifests(&index, &entries)?;
        tracing::debug!(archive = %path.display(), entries = entries.len(), manifests = manifests.len(), "archive indexed");
        Ok(ArchiveStore { index, entries, manifests })
    }

    /// Number of `index.json` entries.
    pub fn image_count(&self) -> usize {
        self.entries.len()
    }

    /// Number of files the archive is stored in: 1, or the number of numbered parts.
    pub fn part_count(&self) -> usize {
        self.index.parts().files().len()
    }

    /// Finds a manifest with the rules of [`Layout::resolve`]: a digest names any manifest of the
    /// archive, and a tag matches an entry with this repository in its image name before an
    /// entry with only a `ref.name` annotation.
    fn resolve(&self, repository: &str, reference: &str) -> Option<IndexEntry> {
        if reference.contains(':') {
            let digest: Digest = reference.parse().ok()?;
            return self.manifests.get(&digest).cloned();
        }
        let named = |entry: &&IndexEntry| entry.image_name().is_some() && entry.matches_tag(Some(repository), reference);
        let unnamed = |entry: &&IndexEntry| entry.image_name().is_none() && entry.matches_tag(Some(repository), reference);
        self.entries.iter().find(named).or_else(|| self.entries.iter().find(unnamed)).cloned()
    }

    /// Lists tags with the rules of [`Layout::tags`].
    fn tags(&self, repository: &str) -> Vec<String> {
        let mut tags: Vec<String> = self
            .entries
            .iter()
            .filter(|entry| entry.image_name().is_none() || entry.repository() == Some(repository))
            .filter_map(|entry| entry.tag().map(str::to_owned))
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    fn read_manifest(&self, entry: &IndexEntry) -> Result<Option<Vec<u8>>, ArchiveError> {
        let member = blob_member(&entry.digest);
        let Some(file) = self.index.file(&member) else {
            return Ok(None);
        };
        if file.size != entry.size {
            return Err(ArchiveError::SizeMismatch {
                path: self.index.path().to_owned(),
                member,
                listed_by: "its descriptor".to_owned(),
                expected: entry.size,
                found: file.size,
            });
        }
        let bytes = self.index.read_small(&member, DOCUMENT_LIMIT)?;
        check_digest(&self.index, &member, &bytes, &entry.digest)?;
        Ok(Some(bytes))
    }
}

/// Collects the `index.json` entries and, breadth first, the children of every index blob the
/// archive contains, each checked against its digest. An index blob missing from the archive is
/// skipped, because an archive may contain only some platforms of an image.
fn reachable_manifests(index: &ArchiveIndex, entries: &[IndexEntry]) -> Result<HashMap<Digest, IndexEntry>, ServeError> {
    let mut manifests = HashMap::new();
    let mut pending: VecDeque<IndexEntry> = entries.iter().cloned().collect();
    let mut visited = HashSet::new();
    while let Some(entry) = pending.pop_front() {
        manifests.entry(entry.digest.clone()).or_insert_with(|| entry.clone());
        if !entry.is_index() || !visited.insert(entry.digest.clone()) {
            continue;
        }
        let member = blob_member(&entry.digest);
        let Some(file) = index.file(&member) else {
            tracing::debug!(index = %entry.digest, "index blob not in the archive, skipping its manifests");
            continue;
        };
        let bytes = index.read_small(&file.name, DOCUMENT_LIMIT)?;
        check_digest(index, &member, &bytes, &entry.digest)?;
        let child_index: manifest::ImageIndex = serde_json::from_slice(&bytes).map_err(|source| ArchiveError::InvalidJson {
            path: index.path().to_owned(),
            member: member.clone(),
            source,
        })?;
        pending.extend(child_index.manifests.iter().map(index_entry));
    }
    Ok(manifests)
}

fn check_digest(index: &ArchiveIndex, member: &str, bytes: &[u8], expected: &Digest) -> Result<(), ArchiveError> {
    let found = Digest::of(bytes);
    if found == *expected {
        return Ok(());
    }
    Err(ArchiveError::DigestMismatch {
        path: index.path().to_owned(),
        member: member.to_owned(),
        listed_by: "its name".to_owned(),
        expected: expected.clone(),
        found,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(index: &ArchiveIndex, member: &str) -> Result<T, ArchiveError> {
    let bytes = index.read_small(member, DOCUMENT_LIMIT)?;
    serde_json::from_slice(&bytes).map_err(|source| ArchiveError::InvalidJson { path: index.path().to_owned(), member: member.to_owned(), source })
}

/// Converts a descriptor of `index.json` or of an index blob. The platform is left out because
/// serving never reads it.
fn index_entry(descriptor: &Descriptor) -> IndexEntry {
    IndexEntry {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        platform: None,
        annotations: descriptor.annotations.clone(),
    }
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    /// Writes a tar archive of `members` (name, content) and returns its folder and path.
    fn write_archive(members: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, content) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, content.as_slice()).unwrap();
        }
        builder.finish().unwrap();
        (dir, path)
    }

    /// Writes an OCI archive with one manifest named `image_name` and returns the manifest
    /// digest too. With `tamper`, the stored manifest has one byte changed (same size).
    fn oci_archive(image_name: &str, tamper: bool) -> (tempfile::TempDir, PathBuf, Digest) {
        let config = b"{}".to_vec();
        let config_digest = Digest::of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
            "layers": [],
        }))
        .unwrap();
        let digest = Digest::of(&manifest);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": manifest.len(),
                "annotations": {"io.containerd.image.name": image_name, "org.opencontainers.image.ref.name": "1"},
            }],
        }))
        .unwrap();
        let mut stored = manifest;
        if tamper {
            stored[0] = b' ';
        }
        let (dir, path) = write_archive(&[
            (OCI_LAYOUT, br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (INDEX_JSON, index),
            (&blob_member(&config_digest), config),
            (&blob_member(&digest), stored),
        ]);
        (dir, path, digest)
    }

    #[test]
    fn archive_resolves_tag_and_digest() {
        let (_dir, path, digest) = oci_archive("registry.example:5000/team/app:1", false);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.resolve("team/app", "1").unwrap().map(|entry| entry.digest), Some(digest.clone()));
        assert_eq!(store.resolve("other", "1").unwrap(), None);
        assert_eq!(store.resolve("any/name", digest.as_str()).unwrap().map(|entry| entry.digest), Some(digest));
        assert_eq!(store.tags("team/app").unwrap(), vec!["1".to_owned()]);
    }

    #[test]
    fn archive_manifest_read_and_checked() {
        let (_dir, path, digest) = oci_archive("app:1", false);
        let store = Store::open(&path).unwrap();
        let entry = store.resolve("app", "1").unwrap().unwrap();
        let bytes = store.read_manifest(&entry).unwrap().unwrap();
        assert_eq!(Digest::of(&bytes), digest);
    }

    #[test]
    fn archive_tampered_manifest_rejected() {
        let (_dir, path, _) = oci_archive("app:1", true);
        let store = Store::open(&path).unwrap();
        let entry = store.resolve("app", "1").unwrap().unwrap();
        let error = store.read_manifest(&entry).unwrap_err();
        assert!(matches!(&error, StoreError::Archive(inner) if matches!(**inner, ArchiveError::DigestMismatch { .. })), "{error:?}");
    }

    #[test]
    fn archive_blob_is_byte_range() {
        let (_dir, path, digest) = oci_archive("app:1", false);
        let store = Store::open(&path).unwrap();
        let Some(BlobLocation::Range { parts, offset, size }) = store.blob(&digest) else {
            panic!("expected a byte range for {digest}");
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut parts.read_range(offset, size).unwrap(), &mut bytes).unwrap();
        assert_eq!(Digest::of(&bytes), digest);
        assert!(store.blob(&Digest::of(b"absent")).is_none());
    }

    #[test]
    fn docker_archive_has_no_oci_view() {
        let (_dir, path) = write_archive(&[(MANIFEST_JSON, b"[]".to_vec())]);
        let error = Store::open(&path).unwrap_err();
        let ServeError::NoOciView { hint, .. } = &error else {
            panic!("expected a missing OCI view error, got {error:?}");
        };
        assert!(hint.contains("ferry load"), "{hint}");
    }

    #[test]
    fn missing_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let error = Store::open(&dir.path().join("absent.tar")).unwrap_err();
        assert!(matches!(error, ServeError::NotFound { .. }), "{error:?}");
    }
}
