//! Reading and verifying image archives written by ferry, `docker save`, skopeo or podman, for
//! `ferry load` and `ferry serve ARCHIVE`.
//!
//! Three steps, each reading only what it needs:
//! 1. [`ArchiveIndex::open`] reads the tar headers once (name → byte range), never the contents,
//!    and rejects unsafe names and links. The archive may be one file or numbered parts.
//! 2. [`contents`] reads the small JSON documents (`manifest.json`, `index.json`, configs,
//!    manifests) and lists the images of the archive and where each layer's bytes are.
//! 3. [`verify`] hashes every layer as a stream: the DiffID over the uncompressed bytes, and the
//!    blob digest over the stored bytes when the member is named by digest. Nothing should reach
//!    the Docker engine before this passes.
//!
//! File names are never trusted: an image ID is the sha256 of the config content, and a name that
//! is a digest is compared with the content it names.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::manifest::ManifestError;
use crate::platform::Platform;

mod formats;
mod index;
mod verify;

pub use formats::contents;
pub use index::{ArchiveIndex, MemberFile};
pub use verify::{verify, verify_size, DiffIds};

/// The tool family that wrote an archive, recognised from its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `ferry save`: `manifest.json`, an OCI layout and `ferry-archive.json`.
    Ferry,
    /// `docker save` before Docker 25: `manifest.json`, `<config hex>.json`, `<id>/layer.tar`.
    DockerLegacy,
    /// `docker save` from Docker 25 on: `manifest.json` over an OCI layout (`blobs/sha256`).
    Docker25,
    /// skopeo `docker-archive:` and `podman save`: `manifest.json`, `<hex>.json`, `<hex>.tar`.
    DockerArchive,
    /// skopeo `oci-archive:`: an OCI layout only (`oci-layout`, `index.json`, `blobs/`).
    OciArchive,
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveKind::Ferry => "ferry archive",
            ArchiveKind::DockerLegacy => "docker save archive (Docker before 25)",
            ArchiveKind::Docker25 => "docker save archive (Docker 25 or later)",
            ArchiveKind::DockerArchive => "docker-archive (skopeo or podman)",
            ArchiveKind::OciArchive => "OCI archive",
        })
    }
}

/// The images an archive contains for one platform.
#[derive(Clone, Debug)]
pub struct Contents {
    pub kind: ArchiveKind,
    pub images: Vec<StoredImage>,
    /// `index.json` entries that give no image to load, with the reason.
    pub skipped: Vec<SkippedImage>,
}

/// One image of an archive.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// References to tag the image with, as the archive writes them (`RepoTags`, or the
    /// `io.containerd.image.name` annotation). Empty when the archive names none: the image then
    /// loads untagged.
    pub names: Vec<String>,
    /// sha256 of the config content, which Docker shows as the image ID.
    pub config_digest: Digest,
    /// Member that contains the config, as the archive names it.
    pub config_member: String,
    pub config: Vec<u8>,
    /// Layers, base first, in the order of the config's `rootfs.diff_ids`.
    pub layers: Vec<StoredLayer>,
    /// Platform from the config, when it names one.
    pub platform: Option<Platform>,
}

/// One layer of a [`StoredImage`]. The same member can appear at several positions and in
/// several images.
#[derive(Clone, Debug)]
pub struct StoredLayer {
    /// Member as the manifest names it, after normalisation (it may be a link).
    pub member: String,
    /// Byte offset of the data in the archive, after following links; 0 when `omitted`.
    pub offset: u64,
    /// Stored size in bytes (compressed when the layer is compressed); 0 when `omitted` and
    /// `ferry-archive.json` gives no size.
    pub size: u64,
    /// `rootfs.diff_ids[i]` of the config: sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Digest of the stored bytes, when the member is named `blobs/sha256/<hex>`.
    pub blob_digest: Option<Digest>,
    /// Media type from the OCI manifest, when the archive has one for this image.
    pub media_type: Option<String>,
    /// True when a ferry archive made with `--since` left this blob out because an older archive
    /// carried it. The member is then missing and [`verify`] does not check it.
    pub omitted: bool,
}

/// An `index.json` entry that [`contents`] does not turn into an image.
#[derive(Clone, Debug)]
pub struct SkippedImage {
    pub names: Vec<String>,
    /// Digest of the `index.json` entry.
    pub digest: Digest,
    pub reason: SkipReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// No manifest for the requested platform; `available` lists the platforms the index has.
    NoMatchingPlatform { wanted: Platform, available: Vec<Platform> },
    /// The entry is not a container image (an artifact or an unknown media type).
    NotAnImage { media_type: String },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoMatchingPlatform { wanted, available } => {
                let available: Vec<String> = available.iter().map(Platform::to_string).collect();
                write!(f, "no image for {wanted} (the archive has {})", available.join(", "))
            }
            SkipReason::NotAnImage { media_type } => write!(f, "not a container image (media type {media_type:?})"),
        }
    }
}

/// Reason a member name or link is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnsafeName {
    Absolute,
    ParentComponent,
    NotUtf8,
    /// A symbolic or hard link whose target is outside the archive root.
    LinkLeavesRoot { target: String },
}

impl fmt::Display for UnsafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeName::Absolute => f.write_str("the name is absolute"),
            UnsafeName::ParentComponent => f.write_str("the name contains a '..' component"),
            UnsafeName::NotUtf8 => f.write_str("the name is not valid UTF-8"),
            UnsafeName::LinkLeavesRoot { target } => write!(f, "it links to {target:?}, outside the archive"),
        }
    }
}

/// Error from reading or verifying an archive. Each variant names the archive, the member and
/// the values involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    #[error("failed to read archive {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is empty: an image archive is a tar file; check that the copy finished")]
    Empty { path: PathBuf },

    #[error("archive {path} not found: check the path (for an archive in parts, name FILE or FILE.001)")]
    NotFound { path: PathBuf },

    #[error("{path} is a folder: name the archive file in it")]
    Folder { path: PathBuf },

    #[error("{path} is a {format}-compressed file, but ferry reads images in place from a plain tar: decompress it first ({command})")]
    Compressed { path: PathBuf, format: &'static str, command: String },

    #[error("{path} is not a tar archive (no valid tar header at byte {offset}): name an archive written by ferry save, docker save, skopeo or podman save")]
    InvalidTar {
        path: PathBuf,
        offset: u64,
        /// The tar reader's error, left out of the message because it can quote the file's bytes.
        tar_error: std::io::Error,
    },

    #[error("{path} is truncated: {member} needs {needed} bytes of archive, but the archive has {size}; {}", truncation_hint(.next_part.as_deref()))]
    Truncated { path: PathBuf, member: String, needed: u64, size: u64, next_part: Option<PathBuf> },

    #[error("{path} is incomplete: part {part} is missing; put every part of the archive in the same folder")]
    MissingPart { path: PathBuf, part: PathBuf },

    #[error("{path} has an unsafe member {member:?}: {reason}; ferry does not read such archives, so create it again with docker save, skopeo or ferry save")]
    UnsafeMember { path: PathBuf, member: String, reason: UnsafeName },

    #[error("{path} contains member {member:?} twice; create the archive again")]
    DuplicateMember { path: PathBuf, member: String },

    #[error("{path} is not an image archive: it has neither manifest.json (docker save, skopeo docker-archive, podman save) nor oci-layout with index.json (OCI archive)")]
    NotAnImageArchive { path: PathBuf },

    #[error("{path} has no member {member}{}; the archive is incomplete, so create it again", referenced_by.as_ref().map(|by| format!(" (listed in {by})")).unwrap_or_default())]
    MissingMember { path: PathBuf, member: String, referenced_by: Option<String> },

    #[error("{path}: {member} is a link to {target}, which is not a regular file of the archive")]
    BrokenLink { path: PathBuf, member: String, target: String },

    #[error("{path}: {member} is not a regular file")]
    NotAFile { path: PathBuf, member: String },

    #[error("{path}: {member} has {size} bytes, more than the {limit} bytes ferry reads for a document")]
    TooLarge { path: PathBuf, member: String, size: u64, limit: u64 },

    #[error("{path}: {member} is not valid JSON of the expected form")]
    InvalidJson {
        path: PathBuf,
        member: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: invalid document {member}")]
    InvalidDocument {
        path: PathBuf,
        member: String,
        #[source]
        source: ManifestError,
    },

    #[error("{path}: the config {config} lists {diff_ids} layers in rootfs.diff_ids, but {listed_by} lists {layers}; create the archive again")]
    LayerCount { path: PathBuf, config: String, listed_by: String, diff_ids: usize, layers: usize },

    #[error("{path}: {member} has {found} bytes, but {listed_by} says {expected}; the archive is damaged, so copy it again")]
    SizeMismatch { path: PathBuf, member: String, listed_by: String, expected: u64, found: u64 },

    #[error("{path}: {member} is damaged: its content hashes to {found}, but {listed_by} says {expected}; copy the archive again")]
    DigestMismatch { path: PathBuf, member: String, listed_by: String, expected: Digest, found: Digest },

    #[error("{path}: layer {member} is damaged: its uncompressed content hashes to {found}, but the config {config} expects DiffID {expected}; copy the archive again")]
    DiffIdMismatch { path: PathBuf, member: String, config: String, expected: Digest, found: Digest },

    #[error("{path}: failed to decompress layer {member}; the member is damaged, so copy the archive again")]
    Decompress {
        path: PathBuf,
        member: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: layer {member} is {format}-compressed; ferry checks tar, gzip and zstd layers only, so convert the image first (for example with skopeo copy)")]
    UnsupportedCompression { path: PathBuf, member: String, format: &'static str },

    #[error("{path}: {manifest} lists layer {digest} of type {media_type:?}, which ferry cannot load (it loads tar, gzip and zstd layers)")]
    UnsupportedLayer { path: PathBuf, manifest: String, digest: Digest, media_type: String },

    #[error("{path}: ferry-archive.json has version {version}, but this ferry reads version 1; use the ferry release that wrote the archive, or a newer one")]
    UnsupportedVersion { path: PathBuf, version: u64 },

    #[error("{path}: {member} line {line} is not '<sha256 hex>  <member>'")]
    InvalidChecksumLine { path: PathBuf, member: String, line: usize },
}

fn truncation_hint(next_part: Option<&std::path::Path>) -> String {
    match next_part {
        Some(part) => format!("part {} is missing, or the last part is incomplete; copy every part again", part.display()),
        None => "copy the file again".to_owned(),
    }
}

/// Returns the digest a normalised member name `blobs/sha256/<hex>` names.
fn blob_name_digest(member: &str) -> Option<Digest> {
    member.strip_prefix("blobs/sha256/").and_then(|hex| format!("sha256:{hex}").parse().ok())
}

/// Returns the member name of a blob in an OCI layout, `blobs/sha256/<hex>`.
fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}
