//! Test images written to an OCI image layout, ready for `skopeo copy oci:<dir>:<tag> ...`.
//!
//! Layers are real tar files. Configs carry what `docker load` checks: `architecture`, `os`,
//! `rootfs.diff_ids` (sha256 of each uncompressed tar), one `history` entry per layer, and
//! `config.Cmd`. Building is deterministic: the same [`LayerSpec`] always produces the same
//! blob, so two images that use it share that layer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::sha256_digest;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Creation time written into configs and tar headers, so output does not depend on the clock.
const FIXED_CREATED: &str = "2024-01-01T00:00:00Z";
const FIXED_MTIME: u64 = 1_704_067_200;

/// Compression of one layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Media type family of manifests, configs and layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaTypes {
    /// OCI image index, manifest and config types.
    Oci,
    /// Docker manifest list and image manifest schema 2. Has no zstd layer type.
    Docker,
}

impl MediaTypes {
    fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_INDEX,
            MediaTypes::Docker => DOCKER_LIST,
        }
    }

    fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_MANIFEST,
            MediaTypes::Docker => DOCKER_MANIFEST,
        }
    }

    fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_CONFIG,
            MediaTypes::Docker => DOCKER_CONFIG,
        }
    }

    fn layer(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (MediaTypes::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (MediaTypes::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (MediaTypes::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (MediaTypes::Docker, Compression::None) => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            (MediaTypes::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (MediaTypes::Docker, Compression::Zstd) => {
                panic!("Docker schema 2 has no zstd layer type: use MediaTypes::Oci")
            }
        }
    }
}

#[derive(Clone, Debug)]
enum FileContent {
    /// `size` bytes from a generator seeded with `seed`: incompressible, reproducible.
    Random {
        seed: u64,
        size: u64,
    },
    Bytes(Vec<u8>),
    /// A file copied from the machine, for compressible real content.
    Copy(PathBuf),
}

#[derive(Clone, Debug)]
struct LayerFile {
    path: String,
    content: FileContent,
}

/// The files of one layer and how its blob is compressed.
#[derive(Clone, Debug)]
pub struct LayerSpec {
    files: Vec<LayerFile>,
    compression: Compression,
}

impl LayerSpec {
    /// Creates a gzip layer with one file of `size` random bytes, unique to this spec and its clones.
    pub fn random(size: u64) -> LayerSpec {
        LayerSpec::seeded(fastrand::u64(..), size)
    }

    /// Creates a gzip layer with one file of `size` bytes generated from `seed`. Equal seeds and sizes
    /// give equal blobs, also across test runs.
    pub fn seeded(seed: u64, size: u64) -> LayerSpec {
        LayerSpec::empty().with_random(&format!("ferry-test/{seed:016x}.bin"), seed, size)
    }

    /// Creates a gzip layer with `source` copied to `path_in_layer`.
    pub fn from_file(source: &Path, path_in_layer: &str) -> LayerSpec {
        LayerSpec::empty().with_file(path_in_layer, source)
    }

    /// Creates a gzip layer without files (a valid tar with only its end marker).
    pub fn empty() -> LayerSpec {
        LayerSpec {
            files: Vec::new(),
            compression: Compression::Gzip,
        }
    }

    /// Adds a file of `size` bytes generated from `seed`.
    pub fn with_random(mut self, path_in_layer: &str, seed: u64, size: u64) -> LayerSpec {
        self.push(path_in_layer, FileContent::Random { seed, size });
        self
    }

    /// Adds a file with the given contents.
    pub fn with_bytes(mut self, path_in_layer: &str, bytes: &[u8]) -> LayerSpec {
        self.push(path_in_layer, FileContent::Bytes(bytes.to_vec()));
        self
    }

    /// Adds a copy of the file `source`.
    pub fn with_file(mut self, path_in_layer: &str, source: &Path) -> LayerSpec {
        assert!(source.is_file(), "{} is not a file", source.display());
        self.push(path_in_layer, FileContent::Copy(source.to_path_buf()));
        self
    }

    pub fn compression(mut self, compression: Compression) -> LayerSpec {
        self.compression = compression;
        self
    }

    pub fn gzip(self) -> LayerSpec {
        self.compression(Compression::Gzip)
    }

    pub fn zstd(self) -> LayerSpec {
        self.compression(Compression::Zstd)
    }

    pub fn uncompressed(self) -> LayerSpec {
        self.compression(Compression::None)
    }

    fn push(&mut self, path: &str, content: FileContent) {
        let path = path.trim_start_matches('/');
        assert!(
            !path.is_empty() && !path.split('/').any(|part| part == ".." || part.is_empty()),
            "invalid path in layer {path:?}"
        );
        self.files.push(LayerFile {
            path: path.to_string(),
            content,
        });
    }

    /// Writes the tar stream of this layer to `output`.
    fn write_tar<W: Write>(&self, output: W) -> io::Result<W> {
        let mut builder = tar::Builder::new(output);
        let mut directories = std::collections::BTreeSet::new();
        for file in &self.files {
            let mut parent = String::new();
            for part in file
                .path
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .unwrap()
                .1
            {
                parent.push_str(part);
                parent.push('/');
                if directories.insert(parent.clone()) {
                    let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
                    builder.append_data(&mut header, &parent, io::empty())?;
                }
            }

            match &file.content {
                FileContent::Random { seed, size } => {
                    let mut header = tar_header(tar::EntryType::Regular, 0o644, *size);
                    let reader = RandomReader {
                        rng: fastrand::Rng::with_seed(*seed),
                        remaining: *size,
                    };
                    builder.append_data(&mut header, &file.path, reader)?;
                }
                FileContent::Bytes(bytes) => {
                    let mut header = tar_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
                    builder.append_data(&mut header, &file.path, bytes.as_slice())?;
                }
                FileContent::Copy(source) => {
                    let source_file = fs_err::File::open(source)?;
                    let metadata = source_file.metadata()?;
                    let executable =
                        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111
                            != 0;
                    let mode = if executable { 0o755 } else { 0o644 };
                    let mut header = tar_header(tar::EntryType::Regular, mode, metadata.len());
                    builder.append_data(&mut header, &file.path, source_file)?;
                }
            }
        }
        builder.into_inner()
    }
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

struct RandomReader {
    rng: fastrand::Rng,
    remaining: u64,
}

impl Read for RandomReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = buffer.len().min(self.remaining as usize);
        self.rng.fill(&mut buffer[..count]);
        self.remaining -= count as u64;
        Ok(count)
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Returns the inner writer, the `sha256:<hex>` digest and the byte count.
    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer as written: blob digest and size, DiffID and media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltLayer {
    /// Digest of the stored (possibly compressed) blob, as in the manifest.
    pub digest: String,
    pub size: u64,
    /// sha256 of the uncompressed tar, as in the config's `rootfs.diff_ids`.
    pub diff_id: String,
    pub uncompressed_size: u64,
    pub media_type: String,
    pub compression: Compression,
}

/// One platform's image as written: manifest, config and layers.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub manifest_media_type: String,
    pub manifest: Vec<u8>,
    /// Digest of the config blob, which Docker shows as the image ID.
    pub config_digest: String,
    pub config: Vec<u8>,
    pub layers: Vec<BuiltLayer>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl BuiltImage {
    /// Returns the image ID Docker reports after loading this image.
    pub fn image_id(&self) -> &str {
        &self.config_digest
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|layer| layer.diff_id.clone())
            .collect()
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|layer| layer.digest.clone())
            .collect()
    }

    /// Sum of the manifest, config and layer blob sizes, counting a repeated layer once.
    pub fn total_size(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let layers: u64 = self
            .layers
            .iter()
            .filter(|layer| seen.insert(layer.digest.clone()))
            .map(|layer| layer.size)
            .sum();
        self.manifest_size + self.config.len() as u64 + layers
    }
}

/// A multi-platform index as written.
#[derive(Clone, Debug)]
pub struct BuiltIndex {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// Platform images in index order.
    pub images: Vec<BuiltImage>,
    /// The `unknown/unknown` attestation manifest, listed after the images.
    pub attestation: Option<BuiltImage>,
}

impl BuiltIndex {
    /// Returns the image for `architecture` (for example `amd64`, `arm64`).
    pub fn image(&self, architecture: &str) -> &BuiltImage {
        self.images
            .iter()
            .find(|image| image.architecture == architecture)
            .unwrap_or_else(|| panic!("the index has no {architecture} image"))
    }
}

/// An OCI image layout in a temporary directory, with any number of tagged images.
pub struct OciLayout {
    dir: TempDir,
    /// `index.json` entries, one per tag.
    entries: Vec<Value>,
}

impl OciLayout {
    pub fn new() -> OciLayout {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-layout-")
            .tempdir()
            .expect("failed to create the layout directory");
        fs_err::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs_err::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let layout = OciLayout {
            dir,
            entries: Vec::new(),
        };
        layout.write_index();
        layout
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the blob with this `sha256:<hex>` digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.path().join("blobs/sha256").join(hex)
    }

    /// Returns the `oci:<dir>:<tag>` reference skopeo reads.
    ///
    /// skopeo 1.9 only finds OCI manifests and indexes through `index.json`; for images with
    /// Docker media types use [`OciLayout::skopeo_source`].
    pub fn skopeo_reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.path().display())
    }

    /// Returns a skopeo source reference for image `tag` and, for Docker media types, the
    /// directory behind it, which must live until skopeo finished.
    ///
    /// skopeo 1.9 (containers/image 5.23) skips `index.json` entries whose media type is not
    /// OCI, so a Docker manifest or manifest list is copied into a `dir:` transport directory
    /// instead: `manifest.json` for the top manifest, `<hex>.manifest.json` per list entry,
    /// and `<hex>` per blob. Digests stay the same.
    pub fn skopeo_source(&self, tag: &str) -> (String, Option<TempDir>) {
        let entry = self
            .entries
            .iter()
            .find(|entry| {
                entry["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            })
            .unwrap_or_else(|| panic!("the layout has no image tagged {tag:?}"));
        let media_type = entry["mediaType"].as_str().unwrap();
        if media_type == OCI_MANIFEST || media_type == OCI_INDEX {
            return (self.skopeo_reference(tag), None);
        }

        let dir = tempfile::Builder::new()
            .prefix("ferry-test-dir-transport-")
            .tempdir()
            .expect("failed to create the dir transport directory");
        let top_digest = entry["digest"].as_str().unwrap();
        self.link_blob(top_digest, &dir.path().join("manifest.json"));
        let top = self.read_json_blob(top_digest);
        let mut manifests = Vec::new();
        match top["manifests"].as_array() {
            Some(children) => {
                for child in children {
                    let digest = child["digest"].as_str().unwrap();
                    let hex = digest.trim_start_matches("sha256:");
                    let name = format!("{hex}.manifest.json");
                    self.link_blob(digest, &dir.path().join(name));
                    manifests.push(self.read_json_blob(digest));
                }
            }
            None => manifests.push(top),
        }
        for manifest in &manifests {
            let layers = manifest["layers"].as_array().unwrap().iter();
            for descriptor in std::iter::once(&manifest["config"]).chain(layers) {
                let digest = descriptor["digest"].as_str().unwrap();
                let hex = digest.trim_start_matches("sha256:");
                self.link_blob(digest, &dir.path().join(hex));
            }
        }
        fs_err::write(
            dir.path().join("version"),
            "Directory Transport Version: 1.1\n",
        )
        .unwrap();
        (format!("dir:{}", dir.path().display()), Some(dir))
    }

    /// Hard-links (or copies) blob `digest` to `target` unless `target` exists.
    fn link_blob(&self, digest: &str, target: &Path) {
        let source = self.blob_path(digest);
        if !target.exists() && fs_err::hard_link(&source, target).is_err() {
            fs_err::copy(&source, target).expect("failed to copy a blob");
        }
    }

    fn read_json_blob(&self, digest: &str) -> Value {
        let bytes = fs_err::read(self.blob_path(digest)).expect("failed to read a blob");
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|error| panic!("blob {digest} is not JSON: {error}"))
    }

    /// Stores `bytes` as a blob and returns its digest and size.
    fn write_blob(&self, bytes: &[u8]) -> (String, u64) {
        let digest = sha256_digest(bytes);
        fs_err::write(self.blob_path(&digest), bytes).expect("failed to write a blob");
        (digest, bytes.len() as u64)
    }

    /// Builds the layer blob by streaming tar → DiffID hash → compressor → blob hash → file.
    fn write_layer(&self, spec: &LayerSpec, media_types: MediaTypes) -> BuiltLayer {
        let media_type = media_types.layer(spec.compression).to_string();
        let staging = tempfile::NamedTempFile::new_in(self.path().join("blobs/sha256"))
            .expect("failed to create a staging blob");
        let file = BufWriter::new(staging.reopen().expect("failed to open the staging blob"));
        let blob = HashingWriter::new(file);

        let result: io::Result<(HashingWriter<BufWriter<File>>, String, u64)> =
            (|| match spec.compression {
                Compression::None => {
                    let tar = spec.write_tar(HashingWriter::new(blob))?;
                    Ok(tar.finish())
                }
                Compression::Gzip => {
                    let encoder = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
                    let (encoder, diff_id, size) =
                        spec.write_tar(HashingWriter::new(encoder))?.finish();
                    Ok((encoder.finish()?, diff_id, size))
                }
                Compression::Zstd => {
                    let encoder = zstd::Encoder::new(blob, 3)?;
                    let (encoder, diff_id, size) =
                        spec.write_tar(HashingWriter::new(encoder))?.finish();
                    Ok((encoder.finish()?, diff_id, size))
                }
            })();
        let (blob, diff_id, uncompressed_size) = result.expect("failed to write a layer blob");
        let (mut file, digest, size) = blob.finish();
        file.flush().expect("failed to flush a layer blob");
        staging
            .persist(self.blob_path(&digest))
            .expect("failed to move a layer blob into place");

        BuiltLayer {
            digest,
            size,
            diff_id,
            uncompressed_size,
            media_type,
            compression: spec.compression,
        }
    }

    /// Adds or replaces the `index.json` entry for `tag`.
    fn tag(&mut self, media_type: &str, digest: &str, size: u64, tag: &str) {
        self.entries.retain(|entry| {
            entry["annotations"]["org.opencontainers.image.ref.name"].as_str() != Some(tag)
        });
        self.entries.push(json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.entries,
        });
        fs_err::write(
            self.path().join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .expect("failed to write index.json");
    }
}

impl Default for OciLayout {
    fn default() -> Self {
        OciLayout::new()
    }
}

/// One platform image: layers, platform, media types and config fields.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<LayerSpec>,
    os: String,
    architecture: String,
    variant: Option<String>,
    media_types: MediaTypes,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
}

impl ImageBuilder {
    /// Creates a linux/amd64 image with OCI media types and no layers yet.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            variant: None,
            media_types: MediaTypes::Oci,
            cmd: vec!["/ferry-test/run".to_string()],
            labels: BTreeMap::new(),
        }
    }

    /// Appends a layer. Appending the same spec twice puts one blob at two positions.
    pub fn layer(mut self, layer: LayerSpec) -> ImageBuilder {
        self.layers.push(layer);
        self
    }

    /// Sets the platform, for example `("linux", "arm64", Some("v8"))`.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> ImageBuilder {
        self.os = os.to_string();
        self.architecture = architecture.to_string();
        self.variant = variant.map(str::to_string);
        self
    }

    pub fn media_types(mut self, media_types: MediaTypes) -> ImageBuilder {
        self.media_types = media_types;
        self
    }

    /// Uses Docker schema 2 media types (manifest, config, gzip or plain tar layers).
    pub fn docker_media_types(self) -> ImageBuilder {
        self.media_types(MediaTypes::Docker)
    }

    /// Sets `config.Cmd`.
    pub fn cmd(mut self, cmd: &[&str]) -> ImageBuilder {
        self.cmd = cmd.iter().map(|part| part.to_string()).collect();
        self
    }

    /// Adds a label to `config.Labels`, which changes the config digest (the image ID).
    pub fn label(mut self, key: &str, value: &str) -> ImageBuilder {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Writes the image to `layout` and tags its manifest `tag` in `index.json`.
    pub fn write(&self, layout: &mut OciLayout, tag: &str) -> BuiltImage {
        let image = self.write_blobs(layout);
        layout.tag(
            &image.manifest_media_type,
            &image.manifest_digest,
            image.manifest_size,
            tag,
        );
        image
    }

    /// Writes layers, config and manifest without tagging them.
    fn write_blobs(&self, layout: &OciLayout) -> BuiltImage {
        let layers: Vec<BuiltLayer> = self
            .layers
            .iter()
            .map(|spec| layout.write_layer(spec, self.media_types))
            .collect();

        let mut config = json!({
            "created": FIXED_CREATED,
            "architecture": self.architecture,
            "os": self.os,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": self.cmd,
                "Labels": self.labels,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|layer| layer.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": (1..=layers.len())
                .map(|position| json!({
                    "created": FIXED_CREATED,
                    "created_by": format!("ferry test layer {position}"),
                }))
                .collect::<Vec<_>>(),
        });
        if let Some(variant) = &self.variant {
            config["variant"] = json!(variant);
        }
        let config = serde_json::to_vec(&config).unwrap();
        let (config_digest, config_size) = layout.write_blob(&config);

        let manifest_media_type = self.media_types.manifest();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_media_type,
            "config": {
                "mediaType": self.media_types.config(),
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers
                .iter()
                .map(|layer| json!({
                    "mediaType": layer.media_type,
                    "digest": layer.digest,
                    "size": layer.size,
                }))
                .collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let (manifest_digest, manifest_size) = layout.write_blob(&manifest);

        BuiltImage {
            manifest_digest,
            manifest_size,
            manifest_media_type: manifest_media_type.to_string(),
            manifest,
            config_digest,
            config,
            layers,
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    fn platform_json(&self) -> Value {
        let mut platform = json!({"architecture": self.architecture, "os": self.os});
        if let Some(variant) = &self.variant {
            platform["variant"] = json!(variant);
        }
        platform
    }
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

/// A multi-platform image: an OCI index or Docker manifest list over several [`ImageBuilder`]s.
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    images: Vec<ImageBuilder>,
    media_types: MediaTypes,
    attestation: bool,
}

impl IndexBuilder {
    /// Creates an OCI index without images and without attestation.
    pub fn new() -> IndexBuilder {
        IndexBuilder {
            images: Vec::new(),
            media_types: MediaTypes::Oci,
            attestation: false,
        }
    }

    /// Adds a platform image. Its media types are replaced by the index's.
    pub fn image(mut self, image: ImageBuilder) -> IndexBuilder {
        self.images.push(image);
        self
    }

    pub fn media_types(mut self, media_types: MediaTypes) -> IndexBuilder {
        self.media_types = media_types;
        self
    }

    /// Uses a Docker manifest list with Docker schema 2 images.
    pub fn docker_media_types(self) -> IndexBuilder {
        self.media_types(MediaTypes::Docker)
    }

    /// Appends an `unknown/unknown` attestation manifest for the first image, shaped like
    /// BuildKit's: an in-toto layer and `vnd.docker.reference.*` annotations. OCI index only.
    pub fn attestation(mut self) -> IndexBuilder {
        self.attestation = true;
        self
    }

    /// Writes all images and the index to `layout` and tags the index `tag`.
    pub fn write(&self, layout: &mut OciLayout, tag: &str) -> BuiltIndex {
        assert!(!self.images.is_empty(), "an index needs at least one image");
        assert!(
            !(self.attestation && self.media_types == MediaTypes::Docker),
            "attestation manifests need an OCI index: BuildKit never puts them in a Docker list"
        );

        let mut entries = Vec::new();
        let mut images = Vec::new();
        for builder in &self.images {
            let builder = builder.clone().media_types(self.media_types);
            let image = builder.write_blobs(layout);
            entries.push(json!({
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "platform": builder.platform_json(),
            }));
            images.push(image);
        }

        let attestation = self.attestation.then(|| {
            let subject = &images[0];
            let statement = json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://spdx.dev/Document",
                "subject": [{"name": "ferry-test", "digest": {"sha256": subject.manifest_digest.trim_start_matches("sha256:")}}],
                "predicate": {"spdxVersion": "SPDX-2.3", "name": "ferry-test"},
            });
            let statement = serde_json::to_vec(&statement).unwrap();
            let image = write_attestation(layout, &statement);
            entries.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.digest": subject.manifest_digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            }));
            image
        });

        let media_type = self.media_types.index();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": entries,
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let (digest, size) = layout.write_blob(&bytes);
        layout.tag(media_type, &digest, size, tag);

        BuiltIndex {
            digest,
            size,
            media_type: media_type.to_string(),
            bytes,
            images,
            attestation,
        }
    }
}

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder::new()
    }
}

/// Writes an attestation manifest whose only layer is the in-toto `statement`.
fn write_attestation(layout: &OciLayout, statement: &[u8]) -> BuiltImage {
    let (layer_digest, layer_size) = layout.write_blob(statement);
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let (config_digest, config_size) = layout.write_blob(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{
            "mediaType": IN_TOTO,
            "digest": layer_digest,
            "size": layer_size,
            "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
        }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let (manifest_digest, manifest_size) = layout.write_blob(&manifest);
    BuiltImage {
        manifest_digest,
        manifest_size,
        manifest_media_type: OCI_MANIFEST.to_string(),
        manifest,
        config_digest,
        config,
        layers: vec![BuiltLayer {
            digest: layer_digest.clone(),
            size: layer_size,
            diff_id: layer_digest,
            uncompressed_size: layer_size,
            media_type: IN_TOTO.to_string(),
            compression: Compression::None,
        }],
        os: "unknown".to_string(),
        architecture: "unknown".to_string(),
        variant: None,
    }
}
