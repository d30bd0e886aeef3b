//! The tar index of an archive: member names mapped to byte ranges, read from the headers only.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ArchiveError, UnsafeName};
use crate::archive::parts::{numbered, BlobSource, Parts};

const BLOCK: u64 = 512;
/// Symbolic links followed in a row before a lookup gives up (a loop or a very long chain).
const MAX_LINK_HOPS: usize = 16;

/// The members of an archive and where their bytes are. Opening reads every tar header once and
/// no member content.
#[derive(Clone, Debug)]
pub struct ArchiveIndex {
    path: PathBuf,
    parts: Arc<Parts>,
    members: BTreeMap<String, Member>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    File { offset: u64, size: u64 },
    Directory,
    /// A symbolic or hard link, with its target as a normalised name from the archive root.
    Link { target: String },
    /// Devices, FIFOs, sparse files: nothing ferry reads.
    Other,
}

/// A regular file of the archive, reached by `name` after following links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFile {
    /// The name of the file itself (the link target when the looked-up name is a link).
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Reason a lookup found no regular file.
pub(super) enum LookupError {
    Unsafe(UnsafeName),
    Missing,
    BrokenLink { target: String },
    NotAFile,
}

impl ArchiveIndex {
    /// Opens the archive at `path` (one tar file, or numbered parts `NAME.001`, ...) and reads
    /// its headers. Rejects compressed archives, unsafe names and links, duplicate members, and
    /// archives that end early.
    pub fn open(path: &Path) -> Result<ArchiveIndex, ArchiveError> {
        if !path.exists() && !numbered(path, 1).exists() {
            return Err(ArchiveError::NotFound { path: path.to_owned() });
        }
        if path.is_dir() {
            return Err(ArchiveError::Folder { path: path.to_owned() });
        }
        let parts = Parts::open(path).map_err(|source| ArchiveError::Io { path: path.to_owned(), source })?;
        check_part_sequence(path, &parts)?;
        if parts.total_size() == 0 {
            return Err(ArchiveError::Empty { path: path.to_owned() });
        }
        check_not_compressed(path, &parts)?;
        let members = read_headers(path, &parts)?;
        Ok(ArchiveIndex { path: path.to_owned(), parts: Arc::new(parts), members })
    }

    /// Path the archive was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn parts(&self) -> &Arc<Parts> {
        &self.parts
    }

    /// True when `name` is a member of any type (file, directory, link).
    pub fn contains(&self, name: &str) -> bool {
        normalise(name).ok().flatten().is_some_and(|name| self.members.contains_key(&name))
    }

    /// Normalised names of all members, in lexical order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// Returns the regular file `name` leads to, following links, or `None` when there is none.
    pub fn file(&self, name: &str) -> Option<MemberFile> {
        self.lookup(name).ok()
    }

    /// Returns the byte range of the regular file `name` leads to.
    pub fn source(&self, name: &str) -> Option<BlobSource> {
        let file = self.file(name)?;
        Some(BlobSource::Range { parts: Arc::clone(&self.parts), offset: file.offset, len: file.size })
    }

    /// Reads the whole member `name` into memory; members larger than `limit` bytes are rejected.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let file = self.require(name, None)?;
        self.read_file(&file, limit)
    }

    /// Reads a member found by [`ArchiveIndex::file`] into memory.
    pub(super) fn read_file(&self, file: &MemberFile, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if file.size > limit {
            return Err(ArchiveError::TooLarge { path: self.path.clone(), member: file.name.clone(), size: file.size, limit });
        }
        let mut bytes = Vec::with_capacity(file.size as usize);
        self.parts
            .read_range(file.offset, file.size)
            .and_then(|mut reader| reader.read_to_end(&mut bytes))
            .map_err(|source| ArchiveError::Io { path: self.path.clone(), source })?;
        Ok(bytes)
    }

    /// Looks up `name` like [`ArchiveIndex::file`], with an error that names the document that listed it.
    pub(super) fn require(&self, name: &str, referenced_by: Option<&str>) -> Result<MemberFile, ArchiveError> {
        self.lookup(name).map_err(|error| self.lookup_error(name, referenced_by, error))
    }

    pub(super) fn lookup_error(&self, name: &str, referenced_by: Option<&str>, error: LookupError) -> ArchiveError {
        let path = self.path.clone();
        let member = name.to_owned();
        match error {
            LookupError::Unsafe(reason) => ArchiveError::UnsafeMember { path, member, reason },
            LookupError::Missing => ArchiveError::MissingMember { path, member, referenced_by: referenced_by.map(str::to_owned) },
            LookupError::BrokenLink { target } => ArchiveError::BrokenLink { path, member, target },
            LookupError::NotAFile => ArchiveError::NotAFile { path, member },
        }
    }

    pub(super) fn lookup(&self, name: &str) -> Result<MemberFile, LookupError> {
        let start = normalise(name).map_err(LookupError::Unsafe)?.ok_or(LookupError::NotAFile)?;
        let mut current = start.clone();
        for _ in 0..=MAX_LINK_HOPS {
            let followed_link = current != start;
            match self.members.get(&current) {
                Some(Member::File { offset, size }) => return Ok(MemberFile { name: current, offset: *offset, size: *size }),
                Some(Member::Link { target }) => current = target.clone(),
                _ if followed_link => return Err(LookupError::BrokenLink { target: current }),
                None => return Err(LookupError::Missing),
                Some(_) => return Err(LookupError::NotAFile),
            }
        }
        Err(LookupError::BrokenLink { target: current })
    }
}

/// Rejects a split archive with a gap, such as `.001` and `.003` without `.002`.
fn check_part_sequence(path: &Path, parts: &Parts) -> Result<(), ArchiveError> {
    let Some(base) = split_base(parts) else {
        return Ok(());
    };
    let count = parts.files().len();
    // NOTE: only the next few numbers are probed, so a gap followed by a long run of missing
    // parts shows up as a truncated archive instead.
    for later in count + 2..count + 10 {
        if numbered(&base, later).exists() {
            return Err(ArchiveError::MissingPart { path: path.to_owned(), part: numbered(&base, count + 1) });
        }
    }
    Ok(())
}

/// Returns the name before `.001` when the archive is stored in numbered parts.
fn split_base(parts: &Parts) -> Option<PathBuf> {
    let (first, _) = parts.files().first()?;
    first.to_str()?.strip_suffix(".001").map(PathBuf::from)
}

/// Rejects an archive compressed as a whole, which cannot be read by byte range.
fn check_not_compressed(path: &Path, parts: &Parts) -> Result<(), ArchiveError> {
    let mut magic = Vec::with_capacity(6);
    parts
        .read_range(0, parts.total_size().min(6))
        .and_then(|mut reader| reader.read_to_end(&mut magic))
        .map_err(|source| ArchiveError::Io { path: path.to_owned(), source })?;
    let Some((format, tool)) = compression_of(&magic) else {
        return Ok(());
    };
    let command = match split_base(parts) {
        Some(base) => format!("cat {}.* | {tool} > {}", base.display(), plain_name(&base).display()),
        None => format!("{tool} < {} > {}", path.display(), plain_name(path).display()),
    };
    Err(ArchiveError::Compressed { path: path.to_owned(), format, command })
}

/// Compression format and decompression command for the magic bytes at the start of a stream.
pub(super) fn compression_of(magic: &[u8]) -> Option<(&'static str, &'static str)> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Some(("gzip", "gunzip"))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(("zstd", "zstd -d"))
    } else if magic.starts_with(b"BZh") {
        Some(("bzip2", "bunzip2"))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(("xz", "unxz"))
    } else {
        None
    }
}

/// Output name for a decompressed copy: `images.tar.gz` gives `images.tar`, `images.tgz` gives
/// `images.tar`, and any other name gets `.tar` appended.
fn plain_name(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    for (suffix, replacement) in [(".tgz", ".tar"), (".gz", ""), (".zst", ""), (".bz2", ""), (".xz", "")] {
        if let Some(stem) = text.strip_suffix(suffix) {
            let plain = format!("{stem}{replacement}");
            if plain.ends_with(".tar") {
                return PathBuf::from(plain);
            }
        }
    }
    PathBuf::from(format!("{text}.tar"))
}

/// Reads every header of the tar stream in `parts`, skipping the contents by seeking.
fn read_headers(path: &Path, parts: &Parts) -> Result<BTreeMap<String, Member>, ArchiveError> {
    let total = parts.total_size();
    let truncated = |member: String, needed: u64| ArchiveError::Truncated {
        path: path.to_owned(),
        member,
        needed,
        size: total,
        next_part: split_base(parts).map(|base| numbered(&base, parts.files().len() + 1)),
    };

    let mut archive = tar::Archive::new(PartsCursor::new(parts));
    let entries = archive.entries_with_seek().map_err(|source| ArchiveError::Io { path: path.to_owned(), source })?;
    let mut members = BTreeMap::new();
    let mut next_header = 0;
    let mut previous: Option<String> = None;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            // A file shorter than one tar header was never a tar archive, rather than a cut one.
            Err(tar_error) if previous.is_none() && total < BLOCK => {
                return Err(ArchiveError::InvalidTar { path: path.to_owned(), offset: 0, tar_error });
            }
            Err(_) if next_header + BLOCK > total => {
                return Err(truncated(header_after(previous.as_deref()), next_header + BLOCK));
            }
            Err(tar_error) => return Err(ArchiveError::InvalidTar { path: path.to_owned(), offset: next_header, tar_error }),
        };
        let raw_name = String::from_utf8(entry.path_bytes().into_owned());
        let offset = entry.raw_file_position();
        let size = entry.size();
        let entry_type = entry.header().entry_type();
        let display_name = raw_name.clone().unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        if offset + size > total {
            return Err(truncated(display_name, offset + size));
        }
        next_header = offset + size.div_ceil(BLOCK) * BLOCK;
        previous = Some(display_name.clone());
        if entry_type.is_pax_global_extensions() {
            continue;
        }

        let unsafe_member = |reason| ArchiveError::UnsafeMember { path: path.to_owned(), member: display_name.clone(), reason };
        let raw_name = raw_name.map_err(|_| unsafe_member(UnsafeName::NotUtf8))?;
        let Some(name) = normalise(&raw_name).map_err(unsafe_member)? else {
            continue; // The archive root itself, as `./` in `tar -C dir -cf x .`.
        };
        let member = if entry_type.is_file() || entry_type == tar::EntryType::Continuous {
            Member::File { offset, size }
        } else if entry_type.is_dir() {
            Member::Directory
        } else if entry_type.is_symlink() || entry_type.is_hard_link() {
            let target = entry.link_name_bytes().map(|bytes| String::from_utf8(bytes.into_owned()));
            let Some(Ok(target)) = target else {
                return Err(unsafe_member(UnsafeName::NotUtf8));
            };
            let resolved = if entry_type.is_symlink() { resolve_symlink(&name, &target) } else { normalise(&target).ok().flatten() };
            let leaves_root = || unsafe_member(UnsafeName::LinkLeavesRoot { target: target.clone() });
            Member::Link { target: resolved.ok_or_else(leaves_root)? }
        } else {
            Member::Other
        };

        match members.get(&name) {
            Some(Member::Directory) if member == Member::Directory => {}
            Some(_) => return Err(ArchiveError::DuplicateMember { path: path.to_owned(), member: name }),
            None => {
                members.insert(name, member);
            }
        }
    }

    // The tar reader also stops at the end of the data, so an archive cut exactly between two
    // members would look complete without this check for the end-of-archive block.
    if next_header + BLOCK > total {
        return Err(truncated("the end-of-archive marker".to_owned(), next_header + BLOCK));
    }
    Ok(members)
}

fn header_after(previous: Option<&str>) -> String {
    match previous {
        Some(name) => format!("the header after {name}"),
        None => "the first header".to_owned(),
    }
}

/// Normalises a member name: drops `.` components, empty components (`//`) and a trailing `/`.
/// Returns `None` for the archive root itself, and rejects absolute names and `..`.
pub(super) fn normalise(name: &str) -> Result<Option<String>, UnsafeName> {
    if name.starts_with('/') {
        return Err(UnsafeName::Absolute);
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(UnsafeName::ParentComponent),
            other => components.push(other),
        }
    }
    Ok((!components.is_empty()).then(|| components.join("/")))
}

/// Resolves a symbolic link target relative to the folder of the link `name`. Returns `None`
/// when the target is absolute or climbs above the archive root.
fn resolve_symlink(name: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut components: Vec<&str> = name.split('/').collect();
    components.pop();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop()?;
            }
            other => components.push(other),
        }
    }
    Some(components.join("/"))
}

/// `Read + Seek` over the parts of an archive, so the tar reader skips member contents by seeking.
struct PartsCursor<'a> {
    files: &'a [(PathBuf, u64)],
    total: u64,
    position: u64,
    /// The part file last read: its index, the file, and the file's position.
    open: Option<(usize, fs_err::File, u64)>,
}

impl<'a> PartsCursor<'a> {
    fn new(parts: &'a Parts) -> PartsCursor<'a> {
        PartsCursor { files: parts.files(), total: parts.total_size(), position: 0, open: None }
    }
}

impl Read for PartsCursor<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() || self.position >= self.total {
            return Ok(0);
        }
        let mut start = 0;
        let mut index = 0;
        while start + self.files[index].1 <= self.position {
            start += self.files[index].1;
            index += 1;
        }
        let within = self.position - start;
        let reusable = matches!(&self.open, Some((open, _, at)) if *open == index && *at == within);
        if !reusable {
            let mut file = fs_err::File::open(&self.files[index].0)?;
            file.seek(SeekFrom::Start(within))?;
            self.open = Some((index, file, within));
        }
        let Some((_, file, at)) = self.open.as_mut() else {
            unreachable!("a part file was opened above");
        };
        let requested = buffer.len().min((self.files[index].1 - within) as usize);
        let count = file.read(&mut buffer[..requested])?;
        if count == 0 {
            let part = self.files[index].0.display();
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{part} became shorter while ferry read it")));
        }
        *at += count as u64;
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for PartsCursor<'_> {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let position = match target {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.total.checked_add_signed(delta),
        };
        self.position = position.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the archive"))?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar under construction whose names and link targets are written as raw bytes, so tests
    /// can write names that `tar::Builder` rejects.
    struct RawTar {
        bytes: Vec<u8>,
    }

    impl RawTar {
        fn new() -> RawTar {
            RawTar { bytes: Vec::new() }
        }

        fn entry(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> RawTar {
            let mut header = tar::Header::new_ustar();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            self.bytes.extend_from_slice(header.as_bytes());
            self.bytes.extend_from_slice(data);
            self.bytes.resize(self.bytes.len().div_ceil(512) * 512, 0);
            self
        }

        fn file(self, name: &str, data: &[u8]) -> RawTar {
            self.entry(name, tar::EntryType::Regular, "", data)
        }

        fn finish(mut self) -> Vec<u8> {
            self.bytes.extend_from_slice(&[0; 1024]);
            self.bytes
        }
    }

    fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<ArchiveIndex, ArchiveError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.tar");
        std::fs::write(&path, bytes).unwrap();
        let index = ArchiveIndex::open(&path);
        (dir, index)
    }

    fn read_member(index: &ArchiveIndex, name: &str) -> Vec<u8> {
        index.read_small(name, 1 << 20).unwrap()
    }

    fn unsafe_reason(result: Result<ArchiveIndex, ArchiveError>) -> (String, UnsafeName) {
        match result {
            Err(ArchiveError::UnsafeMember { member, reason, .. }) => (member, reason),
            other => panic!("expected an unsafe member error, got {other:?}"),
        }
    }

    #[test]
    fn normalise_cleans_names() {
        assert_eq!(normalise("./manifest.json").unwrap().as_deref(), Some("manifest.json"));
        assert_eq!(normalise("blobs//sha256/./abc").unwrap().as_deref(), Some("blobs/sha256/abc"));
        assert_eq!(normalise("blobs/").unwrap().as_deref(), Some("blobs"));
        assert_eq!(normalise("./").unwrap(), None);
    }

    #[test]
    fn normalise_rejects_escapes() {
        assert_eq!(normalise("/etc/passwd"), Err(UnsafeName::Absolute));
        assert_eq!(normalise("a/../../b"), Err(UnsafeName::ParentComponent));
    }

    #[test]
    fn symlink_resolves_from_its_folder() {
        assert_eq!(resolve_symlink("abc/layer.tar", "../def.tar").as_deref(), Some("def.tar"));
        assert_eq!(resolve_symlink("abc/layer.tar", "./x/./y").as_deref(), Some("abc/x/y"));
        assert_eq!(resolve_symlink("layer.tar", "../x"), None);
        assert_eq!(resolve_symlink("a/layer.tar", "/x"), None);
    }

    #[test]
    fn index_records_ranges_without_reading() {
        let bytes = RawTar::new().file("./manifest.json", b"[]").file("blobs//sha256/aa", &[7; 700]).finish();
        let (_dir, index) = open_bytes(&bytes);
        let index = index.unwrap();
        assert_eq!(read_member(&index, "manifest.json"), b"[]");
        let blob = index.file("blobs/sha256/aa").unwrap();
        assert_eq!(blob.offset, 1536);
        assert_eq!(blob.size, 700);
    }

    #[test]
    fn parent_entry_is_rejected() {
        let bytes = RawTar::new().file("../evil", b"x").finish();
        let (member, reason) = unsafe_reason(open_bytes(&bytes).1);
        assert_eq!(member, "../evil");
        assert_eq!(reason, UnsafeName::ParentComponent);
    }

    #[test]
    fn absolute_entry_is_rejected() {
        let bytes = RawTar::new().file("/etc/cron.d/evil", b"x").finish();
        let (member, reason) = unsafe_reason(open_bytes(&bytes).1);
        assert_eq!(member, "/etc/cron.d/evil");
        assert_eq!(reason, UnsafeName::Absolute);
    }

    #[test]
    fn escaping_symlink_is_rejected() {
        let bytes = RawTar::new().entry("abc/layer.tar", tar::EntryType::Symlink, "../../etc/shadow", b"").finish();
        let (member, reason) = unsafe_reason(open_bytes(&bytes).1);
        assert_eq!(member, "abc/layer.tar");
        assert_eq!(reason, UnsafeName::LinkLeavesRoot { target: "../../etc/shadow".to_owned() });
    }

    #[test]
    fn absolute_symlink_is_rejected() {
        let bytes = RawTar::new().entry("layer.tar", tar::EntryType::Symlink, "/etc/shadow", b"").finish();
        let (_, reason) = unsafe_reason(open_bytes(&bytes).1);
        assert_eq!(reason, UnsafeName::LinkLeavesRoot { target: "/etc/shadow".to_owned() });
    }

    #[test]
    fn escaping_hardlink_is_rejected() {
        let bytes = RawTar::new().entry("layer.tar", tar::EntryType::Link, "../outside", b"").finish();
        let (member, reason) = unsafe_reason(open_bytes(&bytes).1);
        assert_eq!(member, "layer.tar");
        assert_eq!(reason, UnsafeName::LinkLeavesRoot { target: "../outside".to_owned() });
    }

    #[test]
    fn links_lead_to_their_targets() {
        let bytes = RawTar::new()
            .file("aaa.tar", b"layer data")
            .entry("id1/layer.tar", tar::EntryType::Symlink, "../aaa.tar", b"")
            .entry("id2/layer.tar", tar::EntryType::Symlink, "../id1/layer.tar", b"")
            .entry("hard.tar", tar::EntryType::Link, "./aaa.tar", b"")
            .finish();
        let (_dir, index) = open_bytes(&bytes);
        let index = index.unwrap();
        assert_eq!(read_member(&index, "id2/layer.tar"), b"layer data");
        assert_eq!(read_member(&index, "hard.tar"), b"layer data");
        assert_eq!(index.file("id1/layer.tar").unwrap().name, "aaa.tar");
    }

    #[test]
    fn dangling_link_is_reported() {
        let bytes = RawTar::new().entry("id/layer.tar", tar::EntryType::Symlink, "../gone.tar", b"").finish();
        let (_dir, index) = open_bytes(&bytes);
        let error = index.unwrap().read_small("id/layer.tar", 100).unwrap_err();
        assert!(matches!(&error, ArchiveError::BrokenLink { target, .. } if target == "gone.tar"), "{error}");
    }

    #[test]
    fn link_loop_is_reported() {
        let bytes = RawTar::new()
            .entry("a", tar::EntryType::Symlink, "b", b"")
            .entry("b", tar::EntryType::Symlink, "a", b"")
            .finish();
        let (_dir, index) = open_bytes(&bytes);
        let error = index.unwrap().read_small("a", 100).unwrap_err();
        assert!(matches!(error, ArchiveError::BrokenLink { .. }), "{error}");
    }

    #[test]
    fn duplicate_member_is_rejected() {
        let bytes = RawTar::new().file("manifest.json", b"[]").file("./manifest.json", b"[1]").finish();
        let error = open_bytes(&bytes).1.unwrap_err();
        assert!(matches!(&error, ArchiveError::DuplicateMember { member, .. } if member == "manifest.json"), "{error}");
    }

    #[test]
    fn gnu_and_pax_long_names_are_read() {
        let gnu_name = format!("blobs/sha256/{}", "a".repeat(120));
        let pax_name = format!("blobs/sha256/{}", "b".repeat(120));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        builder.append_data(&mut header, &gnu_name, &b"gnu"[..]).unwrap();
        builder.append_pax_extensions([("path", pax_name.as_bytes())]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("short").unwrap();
        header.set_size(3);
        header.set_cksum();
        builder.append(&header, &b"pax"[..]).unwrap();
        let bytes = builder.into_inner().unwrap();

        let (_dir, index) = open_bytes(&bytes);
        let index = index.unwrap();
        assert_eq!(read_member(&index, &gnu_name), b"gnu");
        assert_eq!(read_member(&index, &pax_name), b"pax");
        assert!(!index.contains("short"));
    }

    #[test]
    fn cut_inside_member_names_it() {
        let bytes = RawTar::new().file("manifest.json", b"[]").file("big.tar", &[1; 4000]).finish();
        let (_dir, result) = open_bytes(&bytes[..3000]);
        let error = result.unwrap_err();
        assert!(matches!(&error, ArchiveError::Truncated { member, .. } if member == "big.tar"), "{error}");
    }

    #[test]
    fn cut_between_members_is_truncation() {
        let bytes = RawTar::new().file("manifest.json", b"[]").file("big.tar", &[1; 4000]).finish();
        let (_dir, result) = open_bytes(&bytes[..1024]);
        let error = result.unwrap_err();
        assert!(matches!(&error, ArchiveError::Truncated { member, .. } if member == "the end-of-archive marker"), "{error}");
    }

    #[test]
    fn cut_inside_header_is_truncation() {
        let bytes = RawTar::new().file("manifest.json", b"[]").file("big.tar", &[1; 4000]).finish();
        let (_dir, result) = open_bytes(&bytes[..1300]);
        let error = result.unwrap_err();
        assert!(matches!(&error, ArchiveError::Truncated { member, .. } if member == "the header after manifest.json"), "{error}");
    }

    #[test]
    fn gzip_archive_asks_for_gunzip() {
        let tar = RawTar::new().file("manifest.json", b"[]").finish();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &tar).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.tar.gz");
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
        let error = ArchiveIndex::open(&path).unwrap_err();
        let ArchiveError::Compressed { format, command, .. } = &error else {
            panic!("expected a compressed archive error, got {error:?}");
        };
        assert_eq!(*format, "gzip");
        assert_eq!(*command, format!("gunzip < {} > {}", path.display(), dir.path().join("images.tar").display()));
    }

    #[test]
    fn garbage_is_not_a_tar() {
        let (_dir, result) = open_bytes(&[b'x'; 2048]);
        let error = result.unwrap_err();
        assert!(matches!(error, ArchiveError::InvalidTar { offset: 0, .. }), "{error}");
        assert!(!crate::error_message(&error).contains("xxx"), "the message quotes no file content: {error}");
    }

    #[test]
    fn folder_is_not_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let error = ArchiveIndex::open(dir.path()).unwrap_err();
        assert!(matches!(error, ArchiveError::Folder { .. }), "{error}");
    }

    #[test]
    fn short_text_file_is_not_a_tar() {
        let (_dir, result) = open_bytes(b"all:\n  vars:\n    REGISTRY_URL: registry.example\n");
        let error = result.unwrap_err();
        assert!(matches!(error, ArchiveError::InvalidTar { offset: 0, .. }), "{error}");
    }

    #[test]
    fn empty_file_is_rejected() {
        let (_dir, result) = open_bytes(b"");
        assert!(matches!(result, Err(ArchiveError::Empty { .. })));
    }

    #[test]
    fn split_archive_reads_across_parts() {
        let bytes = RawTar::new().file("manifest.json", b"[]").file("layer.tar", &[9; 3000]).finish();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        for (number, piece) in [&bytes[..700], &bytes[700..2100], &bytes[2100..]].iter().enumerate() {
            std::fs::write(numbered(&base, number + 1), piece).unwrap();
        }
        let index = ArchiveIndex::open(&base).unwrap();
        assert_eq!(read_member(&index, "layer.tar"), vec![9; 3000]);
    }

    #[test]
    fn gap_in_parts_names_missing_part() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        std::fs::write(numbered(&base, 1), [0; 512]).unwrap();
        std::fs::write(numbered(&base, 3), [0; 512]).unwrap();
        let error = ArchiveIndex::open(&numbered(&base, 1)).unwrap_err();
        assert!(matches!(&error, ArchiveError::MissingPart { part, .. } if *part == numbered(&base, 2)), "{error}");
    }

    #[test]
    fn missing_last_part_names_it() {
        let bytes = RawTar::new().file("layer.tar", &[9; 3000]).finish();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        std::fs::write(numbered(&base, 1), &bytes[..1000]).unwrap();
        std::fs::write(numbered(&base, 2), &bytes[1000..2000]).unwrap();
        let error = ArchiveIndex::open(&base).unwrap_err();
        assert!(matches!(&error, ArchiveError::Truncated { next_part: Some(part), .. } if *part == numbered(&base, 3)), "{error}");
    }
}
