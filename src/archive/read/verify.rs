//! Verification of the members the images use, streamed from the archive.
//!
//! Each distinct member is read once, however many layers point at it, by up to
//! [`MAX_THREADS`] threads at once because decompression is CPU-bound. A layer is hashed twice in
//! one pass: the stored bytes (for a name that is a digest) and the uncompressed bytes (for the
//! DiffID), decompressing gzip or zstd as detected by magic bytes.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};

use super::formats::{read_ferry_file, DOCUMENT_LIMIT, FERRY_ARCHIVE_JSON, SHA256SUMS};
use super::index::{compression_of, ArchiveIndex};
use super::{blob_member, blob_name_digest, ArchiveError, ArchiveKind, Contents, StoredImage};
use crate::digest::{Digest, Hasher};

const READ_BUFFER: usize = 256 * 1024;
/// Members hashed at once, at most; fewer on machines with fewer cores.
const MAX_THREADS: usize = 4;
/// Bytes read to recognise a compression format (the xz magic is the longest).
const MAGIC_LENGTH: usize = 6;

/// Choice of the layers that [`verify`] decompresses to check their DiffID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffIds {
    /// Every layer, for targets that do not check DiffIDs themselves (an OCI layout).
    All,
    /// Only layers whose stored bytes no digest names. A named layer's stored digest already
    /// proves its bytes are the ones saved, and Docker checks each DiffID as it unpacks the
    /// layer, so decompressing it here too would only take CPU time from the engine.
    Unnamed,
}

/// A digest one member's content must hash to.
#[derive(PartialEq, Eq)]
enum Expectation {
    /// sha256 of the uncompressed content, from the config `config`.
    DiffId { expected: Digest, config: String },
    /// sha256 of the stored bytes, from `listed_by` (the member name, `sha256sums`, ...).
    Stored { expected: Digest, listed_by: String },
}

struct MemberCheck {
    member: String,
    offset: u64,
    size: u64,
    expectations: Vec<Expectation>,
}

impl MemberCheck {
    fn expect(&mut self, expectation: Expectation) {
        if !self.expectations.contains(&expectation) {
            self.expectations.push(expectation);
        }
    }

    fn needs_diff_id(&self) -> bool {
        self.expectations.iter().any(|expectation| matches!(expectation, Expectation::DiffId { .. }))
    }
}

/// Returns the bytes [`verify`] reads from the archive, counting each distinct member once.
pub fn verify_size(index: &ArchiveIndex, contents: &Contents) -> Result<u64, ArchiveError> {
    Ok(plan(index, contents, DiffIds::All)?.iter().map(|check| check.size).sum())
}

/// Checks every config and layer of `contents` against the digests that name them. Configs are
/// compared with their names when the name is a digest (their digest is the image ID). Layers
/// are hashed as streams, and `on_bytes` receives the count of each chunk read. In ferry
/// archives the blobs listed in `ferry-archive.json` and `sha256sums` are hashed too.
pub fn verify(index: &ArchiveIndex, contents: &Contents, diff_ids: DiffIds, on_bytes: &(dyn Fn(u64) + Sync)) -> Result<(), ArchiveError> {
    for image in &contents.images {
        check_config_name(index, image)?;
    }
    let checks = plan(index, contents, diff_ids)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS).min(checks.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    // After a failure no new member is started. Of the failures found, the one earliest in
    // archive order is reported.
    let failure: std::sync::Mutex<Option<(usize, ArchiveError)>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let position = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if position >= checks.len() || failure.lock().unwrap().is_some() {
                    break;
                }
                if let Err(error) = check_member(index, &checks[position], on_bytes) {
                    let mut failure = failure.lock().unwrap();
                    if failure.as_ref().is_none_or(|(earlier, _)| position < *earlier) {
                        *failure = Some((position, error));
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap() {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

/// Hashes one member and compares it with every digest that names it.
fn check_member(index: &ArchiveIndex, check: &MemberCheck, on_bytes: &(dyn Fn(u64) + Sync)) -> Result<(), ArchiveError> {
    let (stored, uncompressed) = hash_member(index, check, on_bytes)?;
    for expectation in &check.expectations {
        match expectation {
            Expectation::DiffId { expected, config } => {
                let found = uncompressed.clone().expect("the DiffID is computed when a check needs it");
                if found != *expected {
                    return Err(ArchiveError::DiffIdMismatch {
                        path: index.path().to_owned(),
                        member: check.member.clone(),
                        config: config.clone(),
                        expected: expected.clone(),
                        found,
                    });
                }
            }
            Expectation::Stored { expected, listed_by } if stored != *expected => {
                return Err(ArchiveError::DigestMismatch {
                    path: index.path().to_owned(),
                    member: check.member.clone(),
                    listed_by: listed_by.clone(),
                    expected: expected.clone(),
                    found: stored,
                });
            }
            Expectation::Stored { .. } => {}
        }
    }
    Ok(())
}

/// Compares a config's content digest with its name, when the name is `blobs/sha256/<hex>` or
/// `<hex>.json`.
fn check_config_name(index: &ArchiveIndex, image: &StoredImage) -> Result<(), ArchiveError> {
    let named = blob_name_digest(&image.config_member)
        .or_else(|| image.config_member.strip_suffix(".json").and_then(|hex| format!("sha256:{hex}").parse().ok()));
    match named {
        Some(expected) if expected != image.config_digest => Err(ArchiveError::DigestMismatch {
            path: index.path().to_owned(),
            member: image.config_member.clone(),
            listed_by: "the member name".to_owned(),
            expected,
            found: image.config_digest.clone(),
        }),
        _ => Ok(()),
    }
}

/// The members to hash, in archive order, each with what it must hash to.
fn plan(index: &ArchiveIndex, contents: &Contents, diff_ids: DiffIds) -> Result<Vec<MemberCheck>, ArchiveError> {
    let mut checks: BTreeMap<(u64, u64), MemberCheck> = BTreeMap::new();
    let mut add = |member: &str, offset: u64, size: u64, expectation: Expectation| {
        checks
            .entry((offset, size))
            .or_insert_with(|| MemberCheck { member: member.to_owned(), offset, size, expectations: Vec::new() })
            .expect(expectation);
    };

    for image in &contents.images {
        for layer in image.layers.iter().filter(|layer| !layer.omitted) {
            if diff_ids == DiffIds::All || layer.blob_digest.is_none() {
                add(&layer.member, layer.offset, layer.size, Expectation::DiffId { expected: layer.diff_id.clone(), config: image.config_member.clone() });
            }
            if let Some(blob_digest) = &layer.blob_digest {
                let expectation = Expectation::Stored { expected: blob_digest.clone(), listed_by: "the member name".to_owned() };
                add(&layer.member, layer.offset, layer.size, expectation);
            }
        }
    }

    if contents.kind == ArchiveKind::Ferry {
        let ferry = read_ferry_file(index)?;
        let omitted: HashSet<&Digest> = ferry.omitted.iter().map(|blob| &blob.digest).collect();
        for blob in ferry.blobs.iter().filter(|blob| !omitted.contains(&blob.digest)) {
            let member = blob_member(&blob.digest);
            let file = index.require(&member, Some(FERRY_ARCHIVE_JSON))?;
            if file.size != blob.size {
                return Err(ArchiveError::SizeMismatch {
                    path: index.path().to_owned(),
                    member,
                    listed_by: FERRY_ARCHIVE_JSON.to_owned(),
                    expected: blob.size,
                    found: file.size,
                });
            }
            add(&member, file.offset, file.size, Expectation::Stored { expected: blob.digest.clone(), listed_by: FERRY_ARCHIVE_JSON.to_owned() });
        }
        if index.contains(SHA256SUMS) {
            for (member, expected) in read_checksums(index)? {
                let file = index.require(&member, Some(SHA256SUMS))?;
                add(&member, file.offset, file.size, Expectation::Stored { expected, listed_by: SHA256SUMS.to_owned() });
            }
        }
    }
    Ok(checks.into_values().collect())
}

/// Reads `sha256sums` in the GNU coreutils format: `<hex>  <name>`, or `<hex> *<name>`.
fn read_checksums(index: &ArchiveIndex) -> Result<Vec<(String, Digest)>, ArchiveError> {
    let bytes = index.read_small(SHA256SUMS, DOCUMENT_LIMIT)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut checksums = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let invalid = || ArchiveError::InvalidChecksumLine { path: index.path().to_owned(), member: SHA256SUMS.to_owned(), line: number + 1 };
        let (hex, name) = line.split_once(' ').ok_or_else(invalid)?;
        let name = name.strip_prefix(' ').or_else(|| name.strip_prefix('*')).ok_or_else(invalid)?;
        let digest: Digest = format!("sha256:{hex}").parse().map_err(|_| invalid())?;
        checksums.push((name.to_owned(), digest));
    }
    Ok(checksums)
}

/// Reads a member once and returns the sha256 of its stored bytes and, when a DiffID is
/// expected, of its uncompressed content.
fn hash_member(index: &ArchiveIndex, check: &MemberCheck, on_bytes: &dyn Fn(u64)) -> Result<(Digest, Option<Digest>), ArchiveError> {
    let io_error = |source| ArchiveError::Io { path: index.path().to_owned(), source };
    let reader = index.parts().read_range(check.offset, check.size).map_err(io_error)?;
    let mut stored = HashingReader { inner: reader, hasher: Hasher::new(), on_bytes, failed: false };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, &mut stored);

    let content = if check.needs_diff_id() { hash_uncompressed(&mut buffered) } else { Ok(Content::Plain) };
    let content = match content {
        Ok(content) => content,
        Err(Uncompress::Unsupported(format)) => {
            return Err(ArchiveError::UnsupportedCompression { path: index.path().to_owned(), member: check.member.clone(), format });
        }
        Err(Uncompress::Failed(source)) => {
            drop(buffered);
            // A failed read of the archive reaches here through the decoder: report it as such.
            if stored.failed {
                return Err(io_error(source));
            }
            return Err(ArchiveError::Decompress { path: index.path().to_owned(), member: check.member.clone(), source });
        }
    };
    // The rest of the member: all of it for a plain member, and any bytes after the end of a
    // compressed stream, which still count towards the stored digest.
    io::copy(&mut buffered, &mut io::sink()).map_err(io_error)?;
    drop(buffered);
    if stored.hasher.bytes() != check.size {
        let message = format!("{} ended after {} of {} bytes", check.member, stored.hasher.bytes(), check.size);
        return Err(io_error(io::Error::new(io::ErrorKind::UnexpectedEof, message)));
    }

    let stored_digest = stored.hasher.finish();
    let uncompressed = check.needs_diff_id().then(|| match content {
        Content::Plain => stored_digest.clone(),
        Content::Decompressed(digest) => digest,
    });
    Ok((stored_digest, uncompressed))
}

/// A layer's content as [`hash_uncompressed`] found it.
enum Content {
    /// Not compressed: the DiffID is the digest of the stored bytes.
    Plain,
    Decompressed(Digest),
}

enum Uncompress {
    /// A compression format ferry has no decoder for.
    Unsupported(&'static str),
    Failed(io::Error),
}

/// Hashes the uncompressed content of a compressed layer, detecting gzip and zstd by their magic
/// bytes. A plain layer is left unread, as its DiffID is the digest of the stored bytes.
fn hash_uncompressed(buffered: &mut impl BufRead) -> Result<Content, Uncompress> {
    // The magic is read in a loop, because the first read can end early at a part boundary.
    let mut magic = Vec::with_capacity(MAGIC_LENGTH);
    buffered.take(MAGIC_LENGTH as u64).read_to_end(&mut magic).map_err(Uncompress::Failed)?;
    let stream = io::Cursor::new(magic.clone()).chain(buffered);
    let mut output = HashingWriter(Hasher::new());
    let copied = match compression_of(&magic) {
        None => return Ok(Content::Plain),
        Some(("gzip", _)) => io::copy(&mut flate2::bufread::MultiGzDecoder::new(stream), &mut output),
        Some(("zstd", _)) => zstd::stream::read::Decoder::with_buffer(stream).and_then(|mut decoder| io::copy(&mut decoder, &mut output)),
        Some((format, _)) => return Err(Uncompress::Unsupported(format)),
    };
    copied.map_err(Uncompress::Failed)?;
    Ok(Content::Decompressed(output.0.finish()))
}

/// Hashes and counts what passes through, and reports each chunk.
struct HashingReader<'a, R> {
    inner: R,
    hasher: Hasher,
    on_bytes: &'a dyn Fn(u64),
    /// Set when reading the archive failed, to tell such errors from damaged compressed data.
    failed: bool,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer).inspect_err(|_| self.failed = true)?;
        if count > 0 {
            self.hasher.update(&buffer[..count]);
            (self.on_bytes)(count as u64);
        }
        Ok(count)
    }
}

struct HashingWriter(Hasher);

impl Write for HashingWriter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.update(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
