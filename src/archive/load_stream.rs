//! Docker-compatible image archives written as a stream, so images reach `POST /images/load`
//! without a second full copy on disk.
//!
//! The archive contains `manifest.json`, which Docker's classic image store requires, and each
//! config as `blobs/sha256/<hex>`. Each layer file is sent as stored in the cache, usually
//! compressed, and the engine decompresses it. A layer whose chain the engine already has is listed in
//! `manifest.json` but its file is left out: the engine's loader does not open it.
//!
//! `manifest.json` comes last, after an optional gate. Docker's loader reads the whole upload
//! into a temporary folder before it registers any layer, so a stream that ends with an error
//! before `manifest.json` loads nothing. `ferry load` verifies the archive while the layers
//! travel and opens the gate only when every member matched its digest.

use std::collections::HashSet;
use std::io::Write;

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::BlobSource;
use crate::digest::Digest;

/// One image of an archive.
#[derive(Clone, Debug)]
pub struct ArchiveImage {
    pub config_digest: Digest,
    pub config: Vec<u8>,
    /// Full names (`host:port/repo:tag`) the engine tags the image with.
    pub repo_tags: Vec<String>,
    pub layers: Vec<ArchiveLayer>,
}

/// A layer file of the archive, named after `digest`. `source` is `None` when the engine already
/// has the layer, so the file is left out.
#[derive(Clone, Debug)]
pub struct ArchiveLayer {
    pub digest: Digest,
    pub size: u64,
    pub source: Option<BlobSource>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Bytes the archive stream carries for `images`, headers and padding excluded.
pub fn payload_size(images: &[ArchiveImage]) -> u64 {
    let mut seen = HashSet::new();
    images
        .iter()
        .flat_map(|image| image.layers.iter())
        .filter(|layer| layer.source.is_some() && seen.insert(layer.digest.clone()))
        .map(|layer| layer.size)
        .sum()
}

/// A check the stream waits for before it sends `manifest.json`, the member without which the
/// engine loads nothing. It runs on a blocking thread; an error ends the stream with that error.
pub type Gate = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// Streams a tar archive of `images`. Each blob is written once even when images share it.
/// A read error ends the stream with that error, so the engine receives a failed upload.
pub fn docker_archive(images: Vec<ArchiveImage>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    docker_archive_gated(images, Box::new(|| Ok(())))
}

/// Streams a tar archive of `images` like [`docker_archive`], and calls `gate` after the last
/// layer, before `manifest.json`.
pub fn docker_archive_gated(images: Vec<ArchiveImage>, gate: Gate) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter { sender: sender.clone(), buffer: Vec::with_capacity(CHUNK) };
        if let Err(err) = write_archive(writer, &images, gate) {
            let _ = sender.blocking_send(Err(err));
        }
    });
    ReceiverStream::new(receiver)
}

fn write_archive(writer: ChannelWriter, images: &[ArchiveImage], gate: Gate) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(writer);
    let mut written = HashSet::new();
    let mut manifest = Vec::new();
    for image in images {
        if written.insert(image.config_digest.clone()) {
            append_bytes(&mut builder, &member(&image.config_digest), &image.config)?;
        }
        for layer in &image.layers {
            let Some(source) = &layer.source else { continue };
            if !written.insert(layer.digest.clone()) {
                continue;
            }
            let file = source.open()?;
            let mut header = tar_header(layer.size);
            builder.append_data(&mut header, member(&layer.digest), file)?;
        }
        manifest.push(ManifestEntry {
            config: member(&image.config_digest),
            repo_tags: image.repo_tags.clone(),
            layers: image.layers.iter().map(|l| member(&l.digest)).collect(),
        });
    }
    let manifest = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
    // Hand over what is buffered, so the engine stores every layer while the gate waits.
    builder.get_mut().flush()?;
    gate()?;
    append_bytes(&mut builder, "manifest.json", &manifest)?;
    let mut writer = builder.into_inner()?;
    writer.flush()
}

fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(builder: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar_header(data.len() as u64);
    builder.append_data(&mut header, name, data)
}

const CHUNK: usize = 256 * 1024;

/// A blocking writer that hands chunks to an async receiver.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the archive reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Error from unpacking a zstd layer for an engine that cannot read zstd.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the layer unpacks to {actual}, but the image config expects DiffID {expected}")]
    DiffIdMismatch { actual: Digest, expected: Digest },
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// True when the blob starts with the zstd frame magic number.
pub fn is_zstd(source: &BlobSource) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut reader = source.open()?;
    let mut read = 0;
    while read < magic.len() {
        match std::io::Read::read(&mut reader, &mut magic[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(magic == [0x28, 0xb5, 0x2f, 0xfd])
}

/// Decompresses a zstd layer into a plain tar file in `dir`, checking it against the config's
/// DiffID, for engines older than API 1.42 (Docker 23), which cannot load zstd layers.
/// Returns the file and its size.
pub fn unpack_zstd(source: &BlobSource, diff_id: &Digest, dir: &std::path::Path) -> Result<(std::path::PathBuf, u64), UnpackError> {
    let io = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| UnpackError::Io { path, source }
    };
    fs_err::create_dir_all(dir).map_err(io(dir))?;
    let destination = dir.join(diff_id.hex());
    let input = source.open().map_err(io(&destination))?;
    let mut decoder = zstd::stream::read::Decoder::new(input).map_err(io(&destination))?;
    let mut output = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    let mut hasher = crate::digest::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut decoder, &mut buffer).map_err(io(&destination))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(io(&destination))?;
    }
    let size = hasher.bytes();
    let actual = hasher.finish();
    if &actual != diff_id {
        return Err(UnpackError::DiffIdMismatch { actual, expected: diff_id.clone() });
    }
    output.persist(&destination).map_err(|e| UnpackError::Io { path: destination.clone(), source: e.error })?;
    Ok((destination, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::path::PathBuf;

    fn layer_file(dir: &std::path::Path, content: &[u8]) -> (Digest, PathBuf) {
        let digest = Digest::of(content);
        let path = dir.join(digest.hex());
        std::fs::write(&path, content).unwrap();
        (digest, path)
    }

    #[tokio::test]
    async fn archive_shares_and_omits_layers() {
        let dir = tempfile::tempdir().unwrap();
        let (base, base_path) = layer_file(dir.path(), b"base layer");
        let (top, top_path) = layer_file(dir.path(), b"top layer");
        let (kept, _) = layer_file(dir.path(), b"layer the engine has");
        let image = |config: &[u8], tag: &str, layers: Vec<ArchiveLayer>| ArchiveImage {
            config_digest: Digest::of(config),
            config: config.to_vec(),
            repo_tags: vec![tag.to_owned()],
            layers,
        };
        let images = vec![
            image(b"{\"a\":1}", "r.example/a:1", vec![
                ArchiveLayer { digest: kept.clone(), size: 20, source: None },
                ArchiveLayer { digest: base.clone(), size: 10, source: Some(BlobSource::File(base_path.clone())) },
            ]),
            image(b"{\"b\":1}", "r.example/b:1", vec![
                ArchiveLayer { digest: base.clone(), size: 10, source: Some(BlobSource::File(base_path)) },
                ArchiveLayer { digest: top.clone(), size: 9, source: Some(BlobSource::File(top_path)) },
            ]),
        ];
        assert_eq!(payload_size(&images), 19);

        let chunks: Vec<Bytes> = docker_archive(images).try_collect().await.unwrap();
        let data: Vec<u8> = chunks.concat();
        let mut archive = tar::Archive::new(data.as_slice());
        let mut names = Vec::new();
        let mut manifest = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name == "manifest.json" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                manifest = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
            }
            names.push(name);
        }
        assert_eq!(names.iter().filter(|n| n.ends_with(base.hex())).count(), 1, "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(kept.hex())), "{names:?}");
        let manifest = manifest.expect("manifest.json is present");
        assert_eq!(manifest[0]["RepoTags"][0], "r.example/a:1");
        assert_eq!(manifest[0]["Layers"][0], format!("blobs/sha256/{}", kept.hex()));
        assert_eq!(manifest[1]["Layers"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn missing_layer_file_ends_stream_with_error() {
        let images = vec![ArchiveImage {
            config_digest: Digest::of(b"{}"),
            config: b"{}".to_vec(),
            repo_tags: vec![],
            layers: vec![ArchiveLayer { digest: Digest::of(b"x"), size: 1, source: Some(BlobSource::File(PathBuf::from("/nonexistent/ferry-layer"))) }],
        }];
        let result: Result<Vec<Bytes>, _> = docker_archive(images).try_collect().await;
        let err = result.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ferry-layer"), "{err}");
    }

    #[tokio::test]
    async fn closed_gate_withholds_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let (layer, path) = layer_file(dir.path(), b"layer bytes");
        let images = vec![ArchiveImage {
            config_digest: Digest::of(b"{}"),
            config: b"{}".to_vec(),
            repo_tags: vec!["r.example/a:1".to_owned()],
            layers: vec![ArchiveLayer { digest: layer.clone(), size: 11, source: Some(BlobSource::File(path)) }],
        }];
        let gate: Gate = Box::new(|| Err(std::io::Error::other("member blobs/sha256/x does not match its digest")));
        let mut stream = std::pin::pin!(docker_archive_gated(images, gate));
        let mut data = Vec::new();
        let mut error = None;
        while let Some(item) = futures::StreamExt::next(&mut stream).await {
            match item {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(err) => error = Some(err),
            }
        }
        let error = error.expect("the stream ends with the gate's error");
        assert!(error.to_string().contains("does not match"), "{error}");
        let text = String::from_utf8_lossy(&data);
        assert!(text.contains(layer.hex()), "the layer is sent before the gate");
        assert!(!text.contains("manifest.json"), "manifest.json is withheld");
    }
}
