//! A small tmpfs for tests of the free-space checks.

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a temporary folder, unmounted on Drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-tmpfs-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("failed to run mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed (the tests run as root)"
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.dir.path()).status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("failed to unmount {}", self.dir.path().display());
        }
    }
}
