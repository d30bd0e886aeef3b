//! OCI image layout folders: an `oci-layout` marker, an `index.json` and content-addressed
//! blobs under `blobs/sha256/<hex>`.
//!
//! `ferry warmup --to oci:PATH` writes a layout and `ferry serve` reads one. Every file is
//! written to a temporary file in its destination folder and then renamed, so a reader never
//! sees a half-written blob or index. Blob reads verify the content against the digest in the
//! file name.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, OciLayout, Platform, ANNOTATION_REF_NAME};
use serde_json::Value;

use crate::digest::Digest;

/// Annotation that containerd and Docker 25+ set to the full image reference.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// The only `imageLayoutVersion` that image-spec 1.x defines.
pub const LAYOUT_VERSION: &str = "1.0.0";

const MARKER_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Error from opening, reading or writing a layout. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("{path} is not an OCI image layout: {reason}")]
    NotALayout { path: PathBuf, reason: String },

    #[error("cannot create the OCI layout {path}: the folder {parent} does not exist; create it first, or check the path")]
    MissingParent { path: PathBuf, parent: PathBuf },

    #[error("{path} declares imageLayoutVersion {version:?}, but ferry reads only version {LAYOUT_VERSION}")]
    UnsupportedVersion { path: PathBuf, version: String },

    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid JSON in {path}")]
    InvalidJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path} refers to digest {value:?}, but ferry handles only sha256: digests with 64 lowercase hex characters")]
    InvalidDigest { path: PathBuf, value: String },

    #[error("blob {digest} not found: {path} does not exist")]
    BlobNotFound { digest: Digest, path: PathBuf },

    #[error("blob {digest} is corrupt: {path} hashes to {actual}; delete the file and write the image again")]
    Corrupt { digest: Digest, path: PathBuf, actual: Digest },

    #[error("refused to write blob {expected} to {path}: the data hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest, path: PathBuf },

    #[error("size mismatch for blob {digest}: {path} has {actual} bytes, expected {expected}")]
    SizeMismatch { digest: Digest, path: PathBuf, expected: u64, actual: u64 },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io { action, path, source }
}

fn json_error(path: &Path) -> impl FnOnce(serde_json::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::InvalidJson { path, source }
}

/// One manifest descriptor from `index.json`, or from an index blob inside the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
    pub annotations: BTreeMap<String, String>,
}

impl IndexEntry {
    /// Converts a descriptor read from `source`, rejecting digests other than sha256.
    fn from_descriptor(descriptor: &Descriptor, source: &Path) -> Result<IndexEntry, LayoutError> {
        let value = descriptor.digest().to_string();
        let digest = value
            .parse()
            .map_err(|_| LayoutError::InvalidDigest { path: source.to_path_buf(), value })?;
        let annotations = descriptor.annotations().clone().unwrap_or_default().into_iter().collect();
        Ok(IndexEntry {
            media_type: descriptor.media_type().to_string(),
            digest,
            size: descriptor.size(),
            platform: descriptor.platform().clone(),
            annotations,
        })
    }

    /// Returns the `io.containerd.image.name` annotation: the full image reference.
    pub fn image_name(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_IMAGE_NAME).map(String::as_str)
    }

    /// Returns the `org.opencontainers.image.ref.name` annotation, usually the tag.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_REF_NAME).map(String::as_str)
    }

    /// Returns the repository path of the image name without its registry host, tag or
    /// digest (`registry.example.com/team/app:1` gives `team/app`).
    pub fn repository(&self) -> Option<&str> {
        self.image_name().map(|name| split_image_name(name).0)
    }

    /// Returns the tag of the image name, or the `ref.name` annotation when the image name has
    /// no tag.
    pub fn tag(&self) -> Option<&str> {
        match self.image_name().and_then(|name| split_image_name(name).1) {
            Some(tag) => Some(tag),
            None => self.ref_name(),
        }
    }

    /// True for an OCI image index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// True when a pull of `repository:tag` from `ferry serve` resolves to this entry. An entry
    /// with only a `ref.name` annotation matches every repository.
    pub fn matches_tag(&self, repository: Option<&str>, tag: &str) -> bool {
        if self.image_name().is_none() {
            return self.ref_name() == Some(tag);
        }
        let same_repository = repository.is_none_or(|repository| self.repository() == Some(repository));
        same_repository && self.tag() == Some(tag)
    }
}

/// Splits an image reference into its repository path (host removed) and its tag.
/// The first component is a host by Docker's rule: it contains a dot or a colon, or is
/// `localhost`, and more components follow.
fn split_image_name(name: &str) -> (&str, Option<&str>) {
    let without_digest = name.split_once('@').map_or(name, |(before, _)| before);
    let path = match without_digest.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => without_digest,
    };
    match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (path, None),
    }
}

/// An OCI image layout folder.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens an existing layout after checking its `oci-layout` version and its `index.json`.
    pub fn open(path: &Path) -> Result<Layout, LayoutError> {
        let layout = Layout { root: path.to_path_buf() };
        if !path.is_dir() {
            return Err(LayoutError::NotALayout {
                path: layout.root,
                reason: "no folder exists at this path".into(),
            });
        }

        let marker = layout.root.join(MARKER_FILE);
        let bytes = match fs::read(&marker) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NotALayout {
                    path: layout.root,
                    reason: format!("it has no {MARKER_FILE} file; pass the folder that contains {MARKER_FILE}, index.json and blobs/"),
                });
            }
            Err(err) => return Err(io_error("read", &marker)(err)),
        };
        let header: OciLayout = serde_json::from_slice(&bytes).map_err(json_error(&marker))?;
        if header.image_layout_version() != LAYOUT_VERSION {
            return Err(LayoutError::UnsupportedVersion {
                path: marker,
                version: header.image_layout_version().clone(),
            });
        }

        layout.entries()?;
        Ok(layout)
    }

    /// Creates a layout at `path`: the folder, `oci-layout`, `blobs/sha256/` and an empty
    /// `index.json`. Opens it instead when `oci-layout` is already there, and adds an empty
    /// `index.json` when only that file is missing. Rejects a non-empty folder without
    /// `oci-layout`, so ferry never scatters layout files among unrelated ones.
    pub fn create(path: &Path) -> Result<Layout, LayoutError> {
        let layout = Layout { root: path.to_path_buf() };
        let marker = layout.root.join(MARKER_FILE);
        let index = layout.index_path();

        if !marker.exists() {
            // Only the layout folder itself is created, so a mistyped path fails instead of
            // growing a tree of folders.
            if !layout.root.exists() {
                if let Some(parent) = layout.root.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
                    return Err(LayoutError::MissingParent { path: layout.root.clone(), parent: parent.to_owned() });
                }
                fs::create_dir(&layout.root).map_err(io_error("create folder", &layout.root))?;
            }
            let mut children = fs::read_dir(&layout.root).map_err(io_error("list", &layout.root))?;
            if children.next().is_some() {
                return Err(LayoutError::NotALayout {
                    path: layout.root,
                    reason: format!("the folder is not empty and has no {MARKER_FILE} file; choose a new or empty folder"),
                });
            }
            // The marker goes first: a run interrupted after it leaves a folder that the next
            // `create` completes, instead of a non-empty folder that it rejects.
            let header = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
            write_atomic(&marker, header.as_bytes())?;
        }
        if !index.exists() {
            let empty = format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[]}}");
            write_atomic(&index, empty.as_bytes())?;
        }
        let blobs = layout.root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_error("create folder", &blobs))?;

        Layout::open(path)
    }

    /// Returns the layout folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256/<hex>` inside the layout.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// True when the blob file exists with exactly `size` bytes. The content is not hashed.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|meta| meta.is_file() && meta.len() == size)
    }

    /// Writes `data` as blob `digest` after checking that it hashes to `digest`. Does nothing
    /// when a file of the same size is already there.
    pub fn write_blob(&self, digest: &Digest, data: &[u8]) -> Result<(), LayoutError> {
        let path = self.blob_path(digest);
        let actual = Digest::of(data);
        if actual != *digest {
            return Err(LayoutError::DigestMismatch { expected: digest.clone(), actual, path });
        }
        if self.has_blob(digest, data.len() as u64) {
            return Ok(());
        }
        write_atomic(&path, data)
    }

    /// Adds the file `src`, whose content the caller has already verified against `digest`, as
    /// a blob. Hard-links it when `src` is on the same filesystem and copies it otherwise. Only
    /// the size is checked here. Does nothing when a file of the same size is already there.
    pub fn import_blob(&self, digest: &Digest, size: u64, src: &Path) -> Result<(), LayoutError> {
        let actual = fs::metadata(src).map_err(io_error("read metadata of", src))?.len();
        if actual != size {
            return Err(LayoutError::SizeMismatch { digest: digest.clone(), path: src.to_path_buf(), expected: size, actual });
        }
        if self.has_blob(digest, size) {
            return Ok(());
        }

        let path = self.blob_path(digest);
        let folder = parent_folder(&path);
        match temp_builder().make_in(folder, |temp| fs::hard_link(src, temp)) {
            Ok(linked) => {
                linked.persist(&path).map_err(|err| io_error("rename into", &path)(err.error))?;
                return Ok(());
            }
            Err(err) => tracing::debug!(src = %src.display(), error = %err, "hard link failed, copying the blob instead"),
        }

        let mut reader = File::open(src).map_err(io_error("open", src))?;
        let mut temp = temp_builder().tempfile_in(folder).map_err(io_error("create a temporary file in", folder))?;
        io::copy(&mut reader, temp.as_file_mut()).map_err(io_error("copy a blob into", temp.path()))?;
        temp.as_file().sync_all().map_err(io_error("flush", temp.path()))?;
        temp.persist(&path).map_err(|err| io_error("rename into", &path)(err.error))?;
        Ok(())
    }

    /// Reads a whole blob and checks it against its digest. It is meant for manifests, indexes
    /// and configs, so stream layers from [`Layout::blob_path`] instead.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::BlobNotFound { digest: digest.clone(), path });
            }
            Err(err) => return Err(io_error("read", &path)(err)),
        };
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(LayoutError::Corrupt { digest: digest.clone(), path, actual });
        }
        Ok(data)
    }

    /// Lists the manifest descriptors of `index.json`, in file order.
    pub fn entries(&self) -> Result<Vec<IndexEntry>, LayoutError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_error("read", &path))?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(json_error(&path))?;
        index.manifests().iter().map(|descriptor| IndexEntry::from_descriptor(descriptor, &path)).collect()
    }

    /// Adds `descriptor` to `index.json` with the annotations `io.containerd.image.name` =
    /// `image_name` (the full reference) and `org.opencontainers.image.ref.name` = `tag`.
    ///
    /// The new entry replaces, in place, the existing entry for the same image:
    /// - with `image_name`, the entry with the same `io.containerd.image.name`;
    /// - with only `tag`, the entry without image name whose `ref.name` is `tag`;
    /// - with neither, the entry without both annotations that has the same digest.
    ///
    /// Re-running a write therefore leaves one entry. The manifest blob must already be in the
    /// layout. Other entries and unknown fields of `index.json` are kept.
    pub fn add_entry(&self, descriptor: &Descriptor, image_name: Option<&str>, tag: Option<&str>) -> Result<(), LayoutError> {
        let index_path = self.index_path();
        let entry = IndexEntry::from_descriptor(descriptor, &index_path)?;
        if !self.has_blob(&entry.digest, entry.size) {
            return Err(LayoutError::BlobNotFound { digest: entry.digest.clone(), path: self.blob_path(&entry.digest) });
        }

        let mut descriptor = descriptor.clone();
        let mut annotations = descriptor.annotations().clone().unwrap_or_default();
        if let Some(name) = image_name {
            annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), name.to_owned());
        }
        if let Some(tag) = tag {
            annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        }
        descriptor.set_annotations((!annotations.is_empty()).then_some(annotations));
        let new_entry = serde_json::to_value(&descriptor).map_err(json_error(&index_path))?;

        // Serializes concurrent writers of this layout: the index is read, changed and renamed.
        let _lock = self.lock()?;
        let bytes = fs::read(&index_path).map_err(io_error("read", &index_path))?;
        let mut index: Value = serde_json::from_slice(&bytes).map_err(json_error(&index_path))?;
        let Some(manifests) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(LayoutError::NotALayout { path: index_path, reason: "index.json has no \"manifests\" array; restore the file or write the images to a new folder".into() });
        };

        let same_slot = |existing: &Value| {
            let annotation = |key: &str| existing.get("annotations").and_then(|annotations| annotations.get(key)).and_then(Value::as_str);
            match (image_name, tag) {
                (Some(name), _) => annotation(ANNOTATION_IMAGE_NAME) == Some(name),
                (None, Some(tag)) => annotation(ANNOTATION_IMAGE_NAME).is_none() && annotation(ANNOTATION_REF_NAME) == Some(tag),
                (None, None) => {
                    annotation(ANNOTATION_IMAGE_NAME).is_none()
                        && annotation(ANNOTATION_REF_NAME).is_none()
                        && existing.get("digest").and_then(Value::as_str) == Some(entry.digest.as_str())
                }
            }
        };
        match manifests.iter().position(same_slot) {
            Some(first) => {
                manifests[first] = new_entry;
                let mut position = 0;
                manifests.retain(|existing| {
                    let keep = position == first || !same_slot(existing);
                    position += 1;
                    keep
                });
            }
            None => manifests.push(new_entry),
        }

        sort_keys(&mut index);
        let bytes = serde_json::to_vec(&index).map_err(json_error(&index_path))?;
        write_atomic(&index_path, &bytes)
    }

    /// Finds the manifest that a pull of `repository` at `reference` gets.
    ///
    /// A digest matches any manifest of the layout: an `index.json` entry or a manifest listed
    /// by an index blob, searched recursively. A tag matches an entry whose image name has this
    /// repository (host removed) and tag. It also matches an entry without image name whose
    /// `ref.name` is the tag, for any repository. `repository: None` accepts any repository.
    /// Entries with an image name win over `ref.name`-only entries, then file order decides.
    pub fn resolve(&self, repository: Option<&str>, reference: &str) -> Result<Option<IndexEntry>, LayoutError> {
        if reference.contains(':') {
            let digest = reference
                .parse()
                .map_err(|_| LayoutError::InvalidDigest { path: self.root.clone(), value: reference.to_owned() })?;
            return self.find_manifest(&digest);
        }

        let entries = self.entries()?;
        let by_name = entries.iter().find(|entry| entry.image_name().is_some() && entry.matches_tag(repository, reference));
        let by_ref_name = || entries.iter().find(|entry| entry.image_name().is_none() && entry.matches_tag(repository, reference));
        Ok(by_name.or_else(by_ref_name).cloned())
    }

    /// Lists the tags that [`Layout::resolve`] accepts for `repository`, sorted and without
    /// duplicates. The list is empty when the layout has no image for it.
    pub fn tags(&self, repository: &str) -> Result<Vec<String>, LayoutError> {
        let mut tags: Vec<String> = self
            .entries()?
            .iter()
            .filter(|entry| entry.image_name().is_none() || entry.repository() == Some(repository))
            .filter_map(|entry| entry.tag().map(str::to_owned))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// Searches `index.json` and then, breadth first, the index blobs it reaches. Index blobs
    /// missing from the layout are skipped, as a layout may hold only some platforms.
    fn find_manifest(&self, digest: &Digest) -> Result<Option<IndexEntry>, LayoutError> {
        let mut pending = std::collections::VecDeque::from(self.entries()?);
        let mut visited = HashSet::new();
        while let Some(entry) = pending.pop_front() {
            if entry.digest == *digest {
                return Ok(Some(entry));
            }
            if !entry.is_index() || !visited.insert(entry.digest.clone()) {
                continue;
            }
            let data = match self.read_blob(&entry.digest) {
                Ok(data) => data,
                Err(LayoutError::BlobNotFound { .. }) => {
                    tracing::debug!(index = %entry.digest, "index blob not in the layout, skipping its manifests");
                    continue;
                }
                Err(err) => return Err(err),
            };
            let path = self.blob_path(&entry.digest);
            let index: ImageIndex = serde_json::from_slice(&data).map_err(json_error(&path))?;
            for child in index.manifests() {
                pending.push_back(IndexEntry::from_descriptor(child, &path)?);
            }
        }
        Ok(None)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// Takes an exclusive advisory lock on `oci-layout`, which is never replaced, so the lock
    /// covers the layout while `index.json` itself is renamed over. Released on drop.
    fn lock(&self) -> Result<File, LayoutError> {
        let marker = self.root.join(MARKER_FILE);
        let file = File::open(&marker).map_err(io_error("open", &marker))?;
        file.lock().map_err(io_error("lock", &marker))?;
        Ok(file)
    }
}

fn parent_folder(path: &Path) -> &Path {
    path.parent().expect("layout files are inside the layout folder")
}

/// Temporary files start with a dot so that nothing mistakes them for blobs. Files are created
/// readable by all (subject to the umask) because tempfile's default is owner-only.
pub(crate) fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ferry-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    builder
}

/// Writes `data` to a temporary file next to `path`, flushes it to disk and renames it over
/// `path`.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LayoutError> {
    let folder = parent_folder(path);
    let mut temp = temp_builder().tempfile_in(folder).map_err(io_error("create a temporary file in", folder))?;
    temp.write_all(data).map_err(io_error("write", temp.path()))?;
    temp.as_file().sync_all().map_err(io_error("flush", temp.path()))?;
    temp.persist(path).map_err(|err| io_error("rename into", path)(err.error))?;
    Ok(())
}

/// Sorts object keys recursively so the bytes written do not depend on hash map order.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

    fn new_layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("layout")).unwrap();
        (dir, layout)
    }

    /// Writes `data` as a blob and returns a descriptor for it.
    fn blob(layout: &Layout, media_type: &str, data: &[u8]) -> Descriptor {
        let digest = Digest::of(data);
        layout.write_blob(&digest, data).unwrap();
        Descriptor::new(MediaType::from(media_type), data.len() as u64, oci_spec::image::Digest::try_from(digest.as_str()).unwrap())
    }

    fn manifest(layout: &Layout, marker: &str) -> Descriptor {
        let data = String::from_utf8(MANIFEST.to_vec()).unwrap().replace("\"layers\":[]", &format!("\"layers\":[],\"annotations\":{{\"test\":\"{marker}\"}}"));
        blob(layout, "application/vnd.oci.image.manifest.v1+json", data.as_bytes())
    }

    fn write_index(layout: &Layout, value: &Value) {
        fs::write(layout.root().join(INDEX_FILE), serde_json::to_vec(value).unwrap()).unwrap();
    }

    #[test]
    fn create_writes_marker_and_empty_index() {
        let (_dir, layout) = new_layout();
        let marker = fs::read_to_string(layout.root().join(MARKER_FILE)).unwrap();
        assert_eq!(marker, r#"{"imageLayoutVersion":"1.0.0"}"#);
        assert!(layout.root().join("blobs/sha256").is_dir());
        assert_eq!(layout.entries().unwrap(), vec![]);
    }

    #[test]
    fn create_reopens_existing_layout() {
        let (_dir, layout) = new_layout();
        let descriptor = manifest(&layout, "a");
        layout.add_entry(&descriptor, Some("r.example/app:1"), Some("1")).unwrap();
        let again = Layout::create(layout.root()).unwrap();
        assert_eq!(again.entries().unwrap().len(), 1);
    }

    #[test]
    fn create_completes_missing_index() {
        let (_dir, layout) = new_layout();
        fs::remove_file(layout.root().join(INDEX_FILE)).unwrap();
        let again = Layout::create(layout.root()).unwrap();
        assert_eq!(again.entries().unwrap(), vec![]);
    }

    #[test]
    fn create_rejects_non_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let err = Layout::create(dir.path()).unwrap_err();
        assert!(matches!(err, LayoutError::NotALayout { .. }), "{err}");
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn create_rejects_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo/layout");
        let err = Layout::create(&path).unwrap_err();
        assert!(matches!(err, LayoutError::MissingParent { .. }), "{err}");
        assert!(!dir.path().join("typo").exists(), "no folder is created");
    }

    #[test]
    fn open_rejects_folder_without_marker() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(matches!(err, LayoutError::NotALayout { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn open_rejects_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, LayoutError::NotALayout { .. }), "{err}");
    }

    #[test]
    fn open_rejects_other_version() {
        let (_dir, layout) = new_layout();
        fs::write(layout.root().join(MARKER_FILE), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        let err = Layout::open(layout.root()).unwrap_err();
        assert!(matches!(err, LayoutError::UnsupportedVersion { ref version, .. } if version == "2.0.0"), "{err}");
    }

    #[test]
    fn open_rejects_invalid_index() {
        let (_dir, layout) = new_layout();
        fs::write(layout.root().join(INDEX_FILE), "{").unwrap();
        let err = Layout::open(layout.root()).unwrap_err();
        assert!(matches!(err, LayoutError::InvalidJson { ref path, .. } if path.ends_with(INDEX_FILE)), "{err}");
    }

    #[test]
    fn write_blob_then_read_blob() {
        let (_dir, layout) = new_layout();
        let digest = Digest::of(b"hello");
        layout.write_blob(&digest, b"hello").unwrap();
        assert!(layout.has_blob(&digest, 5));
        assert!(!layout.has_blob(&digest, 6));
        assert_eq!(layout.read_blob(&digest).unwrap(), b"hello");
    }

    #[test]
    fn write_blob_rejects_wrong_digest() {
        let (_dir, layout) = new_layout();
        let digest = Digest::of(b"hello");
        let err = layout.write_blob(&digest, b"other").unwrap_err();
        assert!(matches!(err, LayoutError::DigestMismatch { .. }), "{err}");
        assert!(!layout.blob_path(&digest).exists());
    }

    #[cfg(unix)]
    #[test]
    fn write_blob_is_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, layout) = new_layout();
        let digest = Digest::of(b"hello");
        layout.write_blob(&digest, b"hello").unwrap();
        let mode = fs::metadata(layout.blob_path(&digest)).unwrap().permissions().mode();
        assert_eq!(mode & 0o004, 0o004, "mode {mode:o}");
    }

    #[test]
    fn write_blob_leaves_no_temporary_files() {
        let (_dir, layout) = new_layout();
        layout.write_blob(&Digest::of(b"a"), b"a").unwrap();
        let names: Vec<_> = fs::read_dir(layout.root().join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(Digest::of(b"a").hex())]);
    }

    #[cfg(unix)]
    #[test]
    fn import_blob_hard_links_on_same_filesystem() {
        use std::os::unix::fs::MetadataExt;
        let (dir, layout) = new_layout();
        let src = dir.path().join("verified");
        fs::write(&src, b"layer bytes").unwrap();
        let digest = Digest::of(b"layer bytes");
        layout.import_blob(&digest, 11, &src).unwrap();
        assert_eq!(layout.read_blob(&digest).unwrap(), b"layer bytes");
        assert_eq!(fs::metadata(&src).unwrap().nlink(), 2);
    }

    #[test]
    fn import_blob_rejects_wrong_size() {
        let (dir, layout) = new_layout();
        let src = dir.path().join("verified");
        fs::write(&src, b"layer bytes").unwrap();
        let digest = Digest::of(b"layer bytes");
        let err = layout.import_blob(&digest, 12, &src).unwrap_err();
        assert!(matches!(err, LayoutError::SizeMismatch { actual: 11, expected: 12, .. }), "{err}");
        assert!(!layout.blob_path(&digest).exists());
    }

    #[test]
    fn read_blob_detects_corruption() {
        let (_dir, layout) = new_layout();
        let digest = Digest::of(b"hello");
        layout.write_blob(&digest, b"hello").unwrap();
        fs::write(layout.blob_path(&digest), b"jello").unwrap();
        let err = layout.read_blob(&digest).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, LayoutError::Corrupt { .. }), "{message}");
        assert!(message.contains(digest.as_str()), "{message}");
        assert!(message.contains(&layout.blob_path(&digest).display().to_string()), "{message}");
    }

    #[test]
    fn read_blob_reports_missing_blob() {
        let (_dir, layout) = new_layout();
        let err = layout.read_blob(&Digest::of(b"absent")).unwrap_err();
        assert!(matches!(err, LayoutError::BlobNotFound { .. }), "{err}");
    }

    #[test]
    fn entries_reject_unsupported_digest() {
        let (_dir, layout) = new_layout();
        let sha512 = format!("sha512:{}", "a".repeat(128));
        write_index(&layout, &serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha512, "size": 1}
        ]}));
        let err = layout.entries().unwrap_err();
        assert!(matches!(err, LayoutError::InvalidDigest { ref value, .. } if *value == sha512), "{err}");
        assert!(err.to_string().contains(INDEX_FILE), "{err}");
    }

    #[test]
    fn entries_reject_malformed_digest() {
        let (_dir, layout) = new_layout();
        write_index(&layout, &serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../etc/passwd", "size": 1}
        ]}));
        let err = layout.entries().unwrap_err();
        assert!(matches!(err, LayoutError::InvalidJson { .. }), "{err}");
    }

    #[test]
    fn resolve_rejects_bad_digest() {
        let (_dir, layout) = new_layout();
        let err = layout.resolve(None, "sha256:1234").unwrap_err();
        assert!(matches!(err, LayoutError::InvalidDigest { .. }), "{err}");
    }

    #[test]
    fn add_entry_sets_annotations() {
        let (_dir, layout) = new_layout();
        let descriptor = manifest(&layout, "a");
        layout.add_entry(&descriptor, Some("r.example/team/app:1"), Some("1")).unwrap();
        let entries = layout.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].image_name(), Some("r.example/team/app:1"));
        assert_eq!(entries[0].ref_name(), Some("1"));
        assert_eq!(entries[0].repository(), Some("team/app"));
        assert_eq!(entries[0].tag(), Some("1"));
    }

    #[test]
    fn add_entry_is_idempotent() {
        let (_dir, layout) = new_layout();
        let descriptor = manifest(&layout, "a");
        layout.add_entry(&descriptor, Some("r.example/app:1"), Some("1")).unwrap();
        let first = fs::read(layout.root().join(INDEX_FILE)).unwrap();
        layout.add_entry(&descriptor, Some("r.example/app:1"), Some("1")).unwrap();
        let second = fs::read(layout.root().join(INDEX_FILE)).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn add_entry_replaces_same_name() {
        let (_dir, layout) = new_layout();
        let old = manifest(&layout, "old");
        let new = manifest(&layout, "new");
        let other = manifest(&layout, "other");
        layout.add_entry(&old, Some("r.example/app:1"), Some("1")).unwrap();
        layout.add_entry(&other, Some("r.example/app:2"), Some("2")).unwrap();
        layout.add_entry(&new, Some("r.example/app:1"), Some("1")).unwrap();
        let digests: Vec<_> = layout.entries().unwrap().into_iter().map(|entry| entry.digest.to_string()).collect();
        assert_eq!(digests, vec![new.digest().to_string(), other.digest().to_string()]);
    }

    #[test]
    fn add_entry_replaces_ref_name_entry() {
        let (_dir, layout) = new_layout();
        let old = manifest(&layout, "old");
        let new = manifest(&layout, "new");
        layout.add_entry(&old, None, Some("latest")).unwrap();
        layout.add_entry(&new, None, Some("latest")).unwrap();
        let entries = layout.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].digest.as_str(), new.digest().as_ref());
    }

    #[test]
    fn add_entry_without_names_keeps_one_per_digest() {
        let (_dir, layout) = new_layout();
        let descriptor = manifest(&layout, "a");
        layout.add_entry(&descriptor, None, None).unwrap();
        layout.add_entry(&descriptor, None, None).unwrap();
        assert_eq!(layout.entries().unwrap().len(), 1);
    }

    #[test]
    fn add_entry_requires_blob() {
        let (_dir, layout) = new_layout();
        let absent = Descriptor::new(MediaType::ImageManifest, 5, oci_spec::image::Digest::try_from(Digest::of(b"absent").as_str()).unwrap());
        let err = layout.add_entry(&absent, Some("r.example/app:1"), Some("1")).unwrap_err();
        assert!(matches!(err, LayoutError::BlobNotFound { .. }), "{err}");
    }

    #[test]
    fn add_entry_keeps_unknown_fields() {
        let (_dir, layout) = new_layout();
        write_index(&layout, &serde_json::json!({"schemaVersion": 2, "manifests": [], "x-extra": {"kept": true}}));
        let descriptor = manifest(&layout, "a");
        layout.add_entry(&descriptor, Some("r.example/app:1"), Some("1")).unwrap();
        let index: Value = serde_json::from_slice(&fs::read(layout.root().join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index["x-extra"]["kept"], Value::Bool(true));
    }

    #[test]
    fn resolve_tag_by_repository() {
        let (_dir, layout) = new_layout();
        let app = manifest(&layout, "app");
        let tool = manifest(&layout, "tool");
        layout.add_entry(&app, Some("r.example:5000/team/app:1"), Some("1")).unwrap();
        layout.add_entry(&tool, Some("r.example:5000/team/tool:1"), Some("1")).unwrap();
        let found = layout.resolve(Some("team/tool"), "1").unwrap().unwrap();
        assert_eq!(found.digest.as_str(), tool.digest().as_ref());
        assert_eq!(layout.resolve(Some("team/other"), "1").unwrap(), None);
        assert_eq!(layout.resolve(Some("team/app"), "2").unwrap(), None);
    }

    #[test]
    fn resolve_tag_without_host() {
        let (_dir, layout) = new_layout();
        let app = manifest(&layout, "app");
        layout.add_entry(&app, Some("demo:latest"), Some("latest")).unwrap();
        let found = layout.resolve(Some("demo"), "latest").unwrap();
        assert_eq!(found.map(|entry| entry.digest.to_string()), Some(app.digest().to_string()));
    }

    #[test]
    fn resolve_ref_name_matches_any_repository() {
        let (_dir, layout) = new_layout();
        let app = manifest(&layout, "app");
        layout.add_entry(&app, None, Some("v1")).unwrap();
        let found = layout.resolve(Some("any/name"), "v1").unwrap();
        assert_eq!(found.map(|entry| entry.digest.to_string()), Some(app.digest().to_string()));
    }

    #[test]
    fn resolve_prefers_image_name_over_ref_name() {
        let (_dir, layout) = new_layout();
        let loose = manifest(&layout, "loose");
        let named = manifest(&layout, "named");
        layout.add_entry(&loose, None, Some("1")).unwrap();
        layout.add_entry(&named, Some("r.example/app:1"), Some("1")).unwrap();
        let found = layout.resolve(Some("app"), "1").unwrap();
        assert_eq!(found.map(|entry| entry.digest.to_string()), Some(named.digest().to_string()));
    }

    #[test]
    fn resolve_digest_of_index_child() {
        let (_dir, layout) = new_layout();
        let child = manifest(&layout, "child");
        let mut platform_child = child.clone();
        platform_child.set_platform(Some(Platform::default()));
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [platform_child]});
        let index = blob(&layout, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
        layout.add_entry(&index, Some("r.example/app:1"), Some("1")).unwrap();

        let found = layout.resolve(Some("whatever"), child.digest().as_ref()).unwrap().unwrap();
        assert_eq!(found.digest.as_str(), child.digest().as_ref());
        assert_eq!(found.media_type, "application/vnd.oci.image.manifest.v1+json");
        let top = layout.resolve(None, index.digest().as_ref()).unwrap().unwrap();
        assert!(top.is_index());
    }

    #[test]
    fn resolve_unknown_digest_is_none() {
        let (_dir, layout) = new_layout();
        let app = manifest(&layout, "app");
        layout.add_entry(&app, None, Some("1")).unwrap();
        assert_eq!(layout.resolve(None, Digest::of(b"x").as_str()).unwrap(), None);
    }

    #[test]
    fn tags_list_repository_and_ref_names() {
        let (_dir, layout) = new_layout();
        let a = manifest(&layout, "a");
        let b = manifest(&layout, "b");
        let c = manifest(&layout, "c");
        layout.add_entry(&a, Some("r.example/app:2"), Some("2")).unwrap();
        layout.add_entry(&b, Some("r.example/other:9"), Some("9")).unwrap();
        layout.add_entry(&c, None, Some("1")).unwrap();
        assert_eq!(layout.tags("app").unwrap(), vec!["1".to_owned(), "2".to_owned()]);
    }

    #[test]
    fn split_image_name_cases() {
        let cases = [
            ("demo:latest", ("demo", Some("latest"))),
            ("registry.example.com/team/app:1.2", ("team/app", Some("1.2"))),
            ("localhost:5000/app", ("app", None)),
            ("localhost/app:1", ("app", Some("1"))),
            ("team/app:1", ("team/app", Some("1"))),
            (
                "r.example/app:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                ("app", Some("1")),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(split_image_name(name), expected, "{name}");
        }
    }
}
