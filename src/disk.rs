//! Free-space checks before a transfer: one line per filesystem that receives data.

use std::path::{Path, PathBuf};

/// Space needed on one filesystem against what it has free.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpaceCheck {
    /// Folder measured, standing for the filesystem that contains it.
    pub path: PathBuf,
    /// Uses of the space, such as "blob cache" or "Docker data root".
    pub purposes: Vec<String>,
    pub needed_bytes: u64,
    /// Part of `needed_bytes` that is an estimate (unpacked layer sizes are unknown in advance).
    pub estimated_bytes: u64,
    pub free_bytes: u64,
}

impl SpaceCheck {
    pub fn is_enough(&self) -> bool {
        self.needed_bytes <= self.free_bytes
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`, measured at the
/// nearest existing ancestor when `path` does not exist yet.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    fs4::available_space(existing_ancestor(path))
}

fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"))
}

/// Device number of the filesystem holding `path`, to merge demands on the same filesystem.
fn device(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(existing_ancestor(path)).ok().map(|m| m.dev())
}

/// One demand for space: `bytes` at `path`, of which `estimated` is an estimate.
#[derive(Clone, Debug)]
pub struct Demand {
    pub path: PathBuf,
    pub purpose: String,
    pub bytes: u64,
    pub estimated: u64,
}

/// Adds up demands per filesystem and measures each one.
pub fn check(demands: &[Demand]) -> std::io::Result<Vec<SpaceCheck>> {
    let mut checks: Vec<(Option<u64>, SpaceCheck)> = Vec::new();
    for demand in demands.iter().filter(|d| d.bytes > 0) {
        let dev = device(&demand.path);
        if let Some((_, check)) = checks.iter_mut().find(|(d, _)| dev.is_some() && *d == dev) {
            check.needed_bytes += demand.bytes;
            check.estimated_bytes += demand.estimated;
            check.purposes.push(demand.purpose.clone());
            continue;
        }
        let free_bytes = free_space(&demand.path)?;
        checks.push((
            dev,
            SpaceCheck {
                path: demand.path.clone(),
                purposes: vec![demand.purpose.clone()],
                needed_bytes: demand.bytes,
                estimated_bytes: demand.estimated,
                free_bytes,
            },
        ));
    }
    Ok(checks.into_iter().map(|(_, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demands_on_one_filesystem_merge() {
        let dir = tempfile::tempdir().unwrap();
        let demands = [
            Demand { path: dir.path().join("a"), purpose: "cache".into(), bytes: 10, estimated: 0 },
            Demand { path: dir.path().join("b/c"), purpose: "target".into(), bytes: 5, estimated: 5 },
        ];
        let checks = check(&demands).unwrap();
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].needed_bytes, 15);
        assert_eq!(checks[0].estimated_bytes, 5);
        assert!(checks[0].is_enough());
    }
}
