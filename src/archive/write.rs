//! Writing an archive file, or numbered parts of one, so that an interrupted write leaves no file
//! that looks complete: everything goes to `.partial` names that are renamed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::parts::numbered;

/// A file writer that starts a new part whenever the current one would reach `split_size`.
pub struct PartWriter {
    base: PathBuf,
    split_size: Option<u64>,
    current: Option<std::io::BufWriter<std::fs::File>>,
    written_in_part: u64,
    /// Final names of the parts written so far, in order.
    parts: Vec<PathBuf>,
    finished: bool,
}

fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

impl PartWriter {
    /// Writes `base`, or `base.001`, `base.002`, ... when `split_size` is set. Each part contains
    /// fewer than `split_size` bytes, so a size of 4 GiB fits FAT32's limit of 4 GiB minus one byte.
    pub fn create(base: &Path, split_size: Option<u64>) -> std::io::Result<PartWriter> {
        let mut writer = PartWriter { base: base.to_owned(), split_size: split_size.map(|s| s.max(2)), current: None, written_in_part: 0, parts: Vec::new(), finished: false };
        writer.start_part()?;
        Ok(writer)
    }

    fn start_part(&mut self) -> std::io::Result<()> {
        if let Some(mut current) = self.current.take() {
            current.flush()?;
            current.get_ref().sync_all()?;
        }
        let name = match self.split_size {
            Some(_) => numbered(&self.base, self.parts.len() + 1),
            None => self.base.clone(),
        };
        let file = fs_err::File::create(partial_name(&name))?.into_parts().0;
        self.current = Some(std::io::BufWriter::with_capacity(1 << 20, file));
        self.parts.push(name);
        self.written_in_part = 0;
        Ok(())
    }

    /// Flushes the last part and renames every part to its final name. Parts of an earlier,
    /// longer archive with the same name are removed, so they cannot be read as part of this one.
    pub fn finish(mut self) -> std::io::Result<Vec<PathBuf>> {
        if let Some(mut current) = self.current.take() {
            current.flush()?;
            current.get_ref().sync_all()?;
        }
        for part in &self.parts {
            fs_err::rename(partial_name(part), part)?;
        }
        if self.split_size.is_some() {
            for index in self.parts.len() + 1.. {
                let stale = numbered(&self.base, index);
                if !stale.exists() {
                    break;
                }
                fs_err::remove_file(&stale)?;
            }
        }
        self.finished = true;
        Ok(std::mem::take(&mut self.parts))
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Some(limit) = self.split_size {
            if self.written_in_part + 1 >= limit {
                self.start_part()?;
            }
            let room = (limit - 1 - self.written_in_part) as usize;
            let n = data.len().min(room);
            let written = self.current.as_mut().expect("a part is open").write(&data[..n])?;
            self.written_in_part += written as u64;
            return Ok(written);
        }
        let written = self.current.as_mut().expect("a part is open").write(data)?;
        self.written_in_part += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.current.as_mut().map_or(Ok(()), |c| c.flush())
    }
}

impl Drop for PartWriter {
    /// Removes the `.partial` files of an archive that was not finished.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.current.take();
        for part in &self.parts {
            let _ = std::fs::remove_file(partial_name(part));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_below_split_size() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        let mut writer = PartWriter::create(&base, Some(10)).unwrap();
        writer.write_all(&[7u8; 25]).unwrap();
        let parts = writer.finish().unwrap();
        let sizes: Vec<u64> = parts.iter().map(|p| std::fs::metadata(p).unwrap().len()).collect();
        assert_eq!(sizes, vec![9, 9, 7]);
        assert_eq!(parts[0], numbered(&base, 1));
    }

    #[test]
    fn unfinished_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        let mut writer = PartWriter::create(&base, None).unwrap();
        writer.write_all(b"half an archive").unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_parts_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("images.tar");
        std::fs::write(numbered(&base, 3), b"old").unwrap();
        let mut writer = PartWriter::create(&base, Some(100)).unwrap();
        writer.write_all(&[1u8; 150]).unwrap();
        writer.finish().unwrap();
        assert!(numbered(&base, 2).exists());
        assert!(!numbered(&base, 3).exists());
    }
}
