//! The blob cache: a folder of verified blobs named by digest, and of partial downloads that a
//! later run resumes instead of starting over.
//!
//! Layout: `<root>/blobs/sha256/<hex>` contains complete, verified blobs. `<root>/partial/sha256/<hex>`
//! contains the first bytes of an interrupted download. A file moves from `partial/` to `blobs/` by
//! an atomic rename once its size and digest are checked.

use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Clone, Debug)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    pub fn new(root: impl Into<PathBuf>) -> BlobCache {
        BlobCache { root: root.into() }
    }

    /// Returns the default folder: `$FERRY_CACHE_DIR`, else `$XDG_CACHE_HOME/ferry` (`~/.cache/ferry`).
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("FERRY_CACHE_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("ferry")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("partial/sha256").join(digest.hex())
    }

    /// Lock file that serialises downloads of one blob between ferry processes.
    pub fn lock_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("partial/sha256").join(format!("{}.lock", digest.hex()))
    }

    /// True when a complete blob of this size is cached.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.len() == size)
    }

    /// Bytes already downloaded for an interrupted blob.
    pub fn partial_len(&self, digest: &Digest) -> u64 {
        std::fs::metadata(self.partial_path(digest)).map_or(0, |m| m.len())
    }

    /// Removes a complete blob (after it reached its target) and any partial file of it.
    pub fn remove(&self, digest: &Digest) {
        for path in [self.blob_path(digest), self.partial_path(digest), self.lock_path(digest)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(path = %path.display(), error = %err, "cannot remove cached blob"),
            }
        }
    }

    /// Removes the cache's folders when they are empty, so a run that left nothing to resume
    /// leaves no trace.
    pub fn remove_empty_folders(&self) {
        for folder in ["blobs/sha256", "blobs", "partial/sha256", "partial", "unpacked"] {
            // remove_dir fails on a folder that still has files, which is the point.
            let _ = std::fs::remove_dir(self.root.join(folder));
        }
    }
}
