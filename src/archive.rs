//! Docker-compatible image archives written as a stream, so images reach `POST /images/load`
//! without a second full copy on disk.
//!
//! The archive holds `manifest.json` (which Docker's classic image store requires), each config
//! as `blobs/sha256/<hex>`, and each layer file as stored in the cache (usually compressed; the
//! engine decompresses it). A layer whose chain the engine already has is listed in
//! `manifest.json` but its file is left out: the engine's loader does not open it.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

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

/// A layer file: its name in the archive comes from `digest`; `source` is `None` when the engine
/// already has the layer and the file is left out.
#[derive(Clone, Debug)]
pub struct ArchiveLayer {
    pub digest: Digest,
    pub size: u64,
    pub source: Option<PathBuf>,
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

/// Streams a tar archive of `images`. Each blob is written once even when images share it.
/// A read error ends the stream with that error, so the engine sees a failed upload.
pub fn docker_archive(images: Vec<ArchiveImage>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter { sender: sender.clone(), buffer: Vec::with_capacity(CHUNK) };
        if let Err(err) = write_archive(writer, &images) {
            let _ = sender.blocking_send(Err(err));
        }
    });
    ReceiverStream::new(receiver)
}

fn write_archive(writer: ChannelWriter, images: &[ArchiveImage]) -> std::io::Result<()> {
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
            let file = fs_err::File::open(source)?;
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
