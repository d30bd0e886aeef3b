//! Manifests, indexes and image configs in their OCI and Docker forms.
//!
//! Bodies are parsed only to read the fields ferry needs. The raw bytes are always kept beside
//! the parsed value, because a digest is computed over the bytes the registry stored and a
//! re-serialised document would not match it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::platform::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// `Accept` header for manifest requests: all four types, so that no registry rewrites or hides
/// a manifest (distribution 2.8 returns 404 for an OCI manifest when the OCI type is missing).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Content descriptor: the media type, digest and size a manifest or index records for a blob or a child manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformField>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor { media_type: media_type.to_owned(), digest, size, platform: None, annotations: BTreeMap::new(), urls: Vec::new() }
    }
}

/// Returns the OCI media type of a layer from its first bytes: gzip, zstd, else a plain tar.
pub fn layer_media_type(head: &[u8]) -> &'static str {
    match head {
        [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => OCI_LAYER_ZSTD,
        _ => OCI_LAYER,
    }
}

/// The `platform` object of an index entry.
#[derive(Clone, Debug, Deserialize)]
pub struct PlatformField {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl PlatformField {
    pub fn to_platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// A single-platform image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A multi-platform index (OCI index or Docker manifest list).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The fields of an image config that ferry reads.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// A parsed manifest document, dispatched on its media type.
#[derive(Clone, Debug)]
pub enum Document {
    Index(ImageIndex),
    Manifest(ImageManifest),
}

/// Error for a manifest or config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what}: unsupported manifest type {media_type:?} (ferry reads OCI and Docker schema 2 manifests and indexes)")]
    Unsupported { what: String, media_type: String },
    #[error("{what}: the registry sent Content-Type {content_type:?} but the body declares mediaType {body_type:?}")]
    TypeMismatch { what: String, content_type: String, body_type: String },
    #[error("{what}: invalid JSON: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("{what}: the body is neither a manifest nor an index")]
    Unrecognised { what: String },
}

/// Returns true for media types that describe no particular document, so the body decides.
fn is_generic(content_type: &str) -> bool {
    matches!(content_type, "" | "application/json" | "text/plain" | "application/octet-stream")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sniff {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest body. `content_type` is the response header (parameters allowed); when it is
/// missing or generic the type is inferred from the body. `what` names the document in errors.
pub fn parse(content_type: Option<&str>, body: &[u8], what: &str) -> Result<Document, ManifestError> {
    let json_error = |source| ManifestError::Json { what: what.to_owned(), source };
    let header = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let sniff: Sniff = serde_json::from_slice(body).map_err(json_error)?;

    if let (Some(body_type), false) = (&sniff.media_type, is_generic(&header)) {
        if *body_type != header {
            return Err(ManifestError::TypeMismatch {
                what: what.to_owned(),
                content_type: header,
                body_type: body_type.clone(),
            });
        }
    }
    let media_type = if is_generic(&header) { sniff.media_type.clone().unwrap_or_default() } else { header };
    let kind = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        "" if sniff.schema_version == Some(2) && sniff.manifests.is_some() => Kind::Index,
        "" if sniff.schema_version == Some(2) && sniff.config.is_some() => Kind::Manifest,
        "" => return Err(ManifestError::Unrecognised { what: what.to_owned() }),
        other => return Err(ManifestError::Unsupported { what: what.to_owned(), media_type: other.to_owned() }),
    };
    match kind {
        Kind::Index => Ok(Document::Index(serde_json::from_slice(body).map_err(json_error)?)),
        Kind::Manifest => Ok(Document::Manifest(serde_json::from_slice(body).map_err(json_error)?)),
    }
}

enum Kind {
    Index,
    Manifest,
}

/// Parses an image config blob.
pub fn parse_config(body: &[u8], what: &str) -> Result<ImageConfig, ManifestError> {
    serde_json::from_slice(body).map_err(|source| ManifestError::Json { what: what.to_owned(), source })
}

/// Compression of a layer blob, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Reads a layer's compression from its media type, or `None` for a type ferry cannot load
/// (foreign and non-distributable layers, artifacts).
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},
      "layers":[]}"#;

    #[test]
    fn generic_content_type_sniffs_body() {
        let document = parse(Some("application/json"), MANIFEST.as_bytes(), "test").unwrap();
        assert!(matches!(document, Document::Manifest(_)));
    }

    #[test]
    fn missing_media_type_everywhere_sniffs_fields() {
        let body = MANIFEST.replace(r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#, "");
        let document = parse(None, body.as_bytes(), "test").unwrap();
        assert!(matches!(document, Document::Manifest(_)));
    }

    #[test]
    fn disagreeing_types_are_rejected() {
        let err = parse(Some(DOCKER_LIST), MANIFEST.as_bytes(), "test").unwrap_err();
        assert!(matches!(err, ManifestError::TypeMismatch { .. }), "{err}");
    }

    #[test]
    fn schema1_is_unsupported() {
        let body = r#"{"schemaVersion":1,"name":"x"}"#;
        let err = parse(Some("application/vnd.docker.distribution.manifest.v1+prettyjws"), body.as_bytes(), "test").unwrap_err();
        assert!(matches!(err, ManifestError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn layer_types() {
        assert_eq!(layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"), Some(Compression::Zstd));
        assert_eq!(layer_compression("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"), None);
    }
}
