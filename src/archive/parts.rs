//! An archive stored as one file or as numbered parts (`NAME.001`, `NAME.002`, ...), read as one
//! byte sequence, and the places a blob's bytes can come from.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of one archive, in order; together they are one tar stream.
#[derive(Clone, Debug)]
pub struct Parts {
    files: Vec<(PathBuf, u64)>,
}

impl Parts {
    /// Opens `path`. A path ending in `.001` (or one for which `PATH.001` exists) opens every
    /// following part too, and a missing part in the sequence is an error naming it.
    pub fn open(path: &Path) -> std::io::Result<Parts> {
        let first = if path.exists() || !numbered(path, 1).exists() { path.to_owned() } else { numbered(path, 1) };
        let Some(base) = first.to_str().and_then(|p| p.strip_suffix(".001")).map(PathBuf::from) else {
            let size = fs_err::metadata(&first)?.len();
            return Ok(Parts { files: vec![(first, size)] });
        };
        let mut files = Vec::new();
        for index in 1.. {
            let part = numbered(&base, index);
            match std::fs::metadata(&part) {
                Ok(metadata) => files.push((part, metadata.len())),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
                Err(err) => return Err(std::io::Error::new(err.kind(), format!("{}: {err}", part.display()))),
            }
        }
        Ok(Parts { files })
    }

    /// Wraps a single file of known size.
    pub fn single(path: PathBuf, size: u64) -> Parts {
        Parts { files: vec![(path, size)] }
    }

    pub fn files(&self) -> &[(PathBuf, u64)] {
        &self.files
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|(_, size)| size).sum()
    }

    /// Reads `len` bytes starting at `offset` of the whole sequence, across part boundaries.
    pub fn read_range(&self, offset: u64, len: u64) -> std::io::Result<impl Read + use<>> {
        let mut readers: Vec<Box<dyn Read + Send>> = Vec::new();
        let (mut start, mut remaining) = (offset, len);
        for (path, size) in &self.files {
            if remaining == 0 {
                break;
            }
            if start >= *size {
                start -= size;
                continue;
            }
            let mut file = fs_err::File::open(path)?;
            file.seek(SeekFrom::Start(start))?;
            let take = remaining.min(size - start);
            readers.push(Box::new(file.take(take)));
            remaining -= take;
            start = 0;
        }
        if remaining > 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the archive ends {remaining} bytes before the end of the range {offset}+{len}: a part is missing or truncated"),
            ));
        }
        Ok(readers.into_iter().fold(Box::new(std::io::empty()) as Box<dyn Read + Send>, |chain, next| Box::new(chain.chain(next))))
    }
}

/// `NAME.001`-style part name.
pub fn numbered(base: &Path, index: usize) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{index:03}"));
    PathBuf::from(name)
}

/// Location of a blob's bytes.
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// A whole file, such as a blob in the cache.
    File(PathBuf),
    /// A byte range of an archive.
    Range { parts: Arc<Parts>, offset: u64, len: u64 },
}

impl BlobSource {
    pub fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            BlobSource::File(path) => Ok(Box::new(fs_err::File::open(path)?)),
            BlobSource::Range { parts, offset, len } => Ok(Box::new(parts.read_range(*offset, *len)?)),
        }
    }

    /// Opens `len` bytes of the blob starting at byte `start`.
    pub fn open_range(&self, start: u64, len: u64) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            BlobSource::File(path) => {
                let mut file = fs_err::File::open(path)?;
                file.seek(SeekFrom::Start(start))?;
                Ok(Box::new(file.take(len)))
            }
            BlobSource::Range { parts, offset, len: total } => Ok(Box::new(parts.read_range(offset + start, len.min(total.saturating_sub(start)))?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_spans_parts() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        std::fs::write(numbered(&base, 1), b"hello ").unwrap();
        std::fs::write(numbered(&base, 2), b"split ").unwrap();
        std::fs::write(numbered(&base, 3), b"world").unwrap();
        let parts = Parts::open(&numbered(&base, 1)).unwrap();
        assert_eq!(parts.total_size(), 17);
        let mut text = String::new();
        parts.read_range(4, 9).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "o split w");
    }

    #[test]
    fn base_name_finds_parts() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        std::fs::write(numbered(&base, 1), b"a").unwrap();
        std::fs::write(numbered(&base, 2), b"b").unwrap();
        assert_eq!(Parts::open(&base).unwrap().files().len(), 2);
    }

    #[test]
    fn range_past_end_names_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.tar");
        std::fs::write(&path, b"short").unwrap();
        let parts = Parts::open(&path).unwrap();
        let err = parts.read_range(2, 10).err().unwrap();
        assert!(err.to_string().contains("missing or truncated"), "{err}");
    }
}
