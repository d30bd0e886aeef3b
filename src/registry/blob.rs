//! Streaming blob downloads into the [`BlobCache`], verified against digest and size, resumed with
//! `Range` requests after a cut connection or an interrupted run.

use std::io::Read;

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use super::{Client, RegistryError};
use crate::cache::BlobCache;
use crate::digest::{Digest, Hasher};
use crate::manifest::Descriptor;
use crate::reference::Reference;

/// Origin of a blob that [`download`] put in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// It was already complete in the cache.
    Cached,
    /// It was downloaded; the value counts the bytes transferred in this run.
    Downloaded(u64),
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> RegistryError {
    if source.kind() == std::io::ErrorKind::StorageFull {
        return RegistryError::DiskFull { path: path.to_owned() };
    }
    RegistryError::Io { path: path.to_owned(), source }
}

/// Downloads one blob into the cache unless it is already there. `on_bytes` is called with each
/// chunk's length, for progress reporting.
pub async fn download(
    client: &Client,
    reference: &Reference,
    descriptor: &Descriptor,
    cache: &BlobCache,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Fetched, RegistryError> {
    let digest = &descriptor.digest;
    let size = descriptor.size;
    if cache.has(digest, size) {
        return Ok(Fetched::Cached);
    }
    let what = format!("blob {digest} of {}", reference.name());
    let partial = cache.partial_path(digest);
    let parent = partial.parent().expect("partial path has a parent");
    fs_err::tokio::create_dir_all(parent).await.map_err(|e| io_error(parent, e))?;
    let complete = cache.blob_path(digest);
    let complete_parent = complete.parent().expect("blob path has a parent");
    fs_err::tokio::create_dir_all(complete_parent).await.map_err(|e| io_error(complete_parent, e))?;

    // Another ferry process may be downloading the same blob into this cache: wait for it.
    let _lock = lock_blob(cache.lock_path(digest)).await?;
    if cache.has(digest, size) {
        return Ok(Fetched::Cached);
    }

    // Resume from what an earlier attempt or run left, re-hashing it so the digest covers it.
    let (mut hasher, mut offset) = rehash_prefix(&partial, size).await?;
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&partial).await.map_err(|e| io_error(&partial, e))?;
    if offset > 0 {
        tracing::info!(digest = %digest, offset, "resuming partial download");
    }
    let mut transferred = 0u64;
    let mut attempt = 0;

    while offset < size {
        attempt += 1;
        let response = client.blob_response(reference, digest, offset).await?;
        if offset > 0 && response.status() == StatusCode::OK {
            tracing::warn!(digest = %digest, offset, "registry ignored the Range request, downloading from the start");
            file.set_len(0).await.map_err(|e| io_error(&partial, e))?;
            hasher = Hasher::new();
            offset = 0;
        }
        match stream_into(response, &mut file, &mut hasher, &mut offset, size, &mut transferred, on_bytes, client.rate_limit()).await {
            Ok(()) if offset == size => break,
            Ok(()) => tracing::warn!(digest = %digest, offset, size, "response ended early"),
            Err(StreamError::TooLong) => {
                drop(file);
                let _ = fs_err::tokio::remove_file(&partial).await;
                return Err(RegistryError::SizeMismatch { what, expected: size, actual: offset });
            }
            Err(StreamError::Write(err)) => {
                // A partial file on a full disk only keeps the disk full, so it goes.
                let error = io_error(&partial, err);
                if matches!(error, RegistryError::DiskFull { .. }) {
                    drop(file);
                    let _ = fs_err::tokio::remove_file(&partial).await;
                }
                return Err(error);
            }
            Err(StreamError::Read(err)) => {
                tracing::warn!(digest = %digest, offset, error = %crate::error_message(&err), "connection lost mid-blob, resuming")
            }
        }
        if attempt >= client.retry_policy().attempts {
            return Err(RegistryError::RetriesExhausted { what, attempts: attempt, last: format!("connection lost at byte {offset} of {size}") });
        }
        tokio::time::sleep(client.retry_policy().backoff(attempt)).await;
    }

    file.flush().await.map_err(|e| io_error(&partial, e))?;
    file.sync_all().await.map_err(|e| io_error(&partial, e))?;
    drop(file);
    let actual = hasher.finish();
    if &actual != digest {
        let _ = fs_err::tokio::remove_file(&partial).await;
        return Err(RegistryError::DigestMismatch { what, expected: digest.clone(), actual });
    }
    fs_err::tokio::rename(&partial, &complete).await.map_err(|e| io_error(&complete, e))?;
    Ok(Fetched::Downloaded(transferred))
}

/// Takes an exclusive lock on the blob's lock file, blocking until another holder releases it.
async fn lock_blob(path: std::path::PathBuf) -> Result<std::fs::File, RegistryError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| io_error(&path, e))?;
        file.lock().map_err(|e| io_error(&path, e))?;
        Ok(file)
    })
    .await
    .expect("the lock task panicked")
}

enum StreamError {
    Read(reqwest::Error),
    Write(std::io::Error),
    TooLong,
}

async fn stream_into(
    mut response: reqwest::Response,
    file: &mut tokio::fs::File,
    hasher: &mut Hasher,
    offset: &mut u64,
    size: u64,
    transferred: &mut u64,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    limit: Option<&super::RateLimit>,
) -> Result<(), StreamError> {
    while let Some(chunk) = response.chunk().await.map_err(StreamError::Read)? {
        if *offset + chunk.len() as u64 > size {
            return Err(StreamError::TooLong);
        }
        file.write_all(&chunk).await.map_err(StreamError::Write)?;
        hasher.update(&chunk);
        *offset += chunk.len() as u64;
        *transferred += chunk.len() as u64;
        on_bytes(chunk.len() as u64);
        if let Some(limit) = limit {
            limit.consume(chunk.len() as u64).await;
        }
    }
    Ok(())
}

/// Hashes the bytes of a partial file so a resumed download verifies the whole blob.
/// A partial file longer than the blob is discarded.
async fn rehash_prefix(partial: &std::path::Path, size: u64) -> Result<(Hasher, u64), RegistryError> {
    let path = partial.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new();
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
            Err(err) => return Err(io_error(&path, err)),
        };
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if len > size {
            drop(file);
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            return Ok((Hasher::new(), 0));
        }
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(|e| io_error(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let offset = hasher.bytes();
        Ok((hasher, offset))
    })
    .await
    .expect("rehash task panicked")
}

/// Downloads several blobs at once, `jobs` at a time. A failure does not cancel the others, so
/// every blob that can complete lands in the cache for the next run. Returns the first error.
pub async fn download_all<'a>(
    client: &Client,
    blobs: impl Iterator<Item = (&'a Reference, &'a Descriptor)>,
    cache: &BlobCache,
    jobs: usize,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<u64, RegistryError> {
    use futures::StreamExt;
    let results: Vec<Result<Fetched, RegistryError>> = futures::stream::iter(blobs)
        .map(|(reference, descriptor)| download(client, reference, descriptor, cache, on_bytes))
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    let mut downloaded = 0;
    for result in results {
        if let Fetched::Downloaded(bytes) = result? {
            downloaded += bytes;
        }
    }
    Ok(downloaded)
}

/// Verifies a digest over a complete file, for blobs taken from elsewhere on disk.
pub fn verify_file(path: &std::path::Path, expected: &Digest, size: u64) -> Result<(), RegistryError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let what = format!("file {}", path.display());
    if hasher.bytes() != size {
        return Err(RegistryError::SizeMismatch { what, expected: size, actual: hasher.bytes() });
    }
    let actual = hasher.finish();
    if &actual != expected {
        return Err(RegistryError::DigestMismatch { what, expected: expected.clone(), actual });
    }
    Ok(())
}
