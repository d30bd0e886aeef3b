//! Helpers for the machine's Docker engine, shared by tests that run in parallel.
//!
//! They call the `docker` CLI. Images are removed by reference (`repository:tag` or
//! `repository@digest`), never by image ID, because two tests may load images with the same ID
//! under different repositories.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

/// Returns a repository name no other test run uses: `ferry-test/<label>-<pid>-<n>-<random>`.
///
/// `label` must be lowercase letters, digits and dashes, as in `warmup-basic`.
pub fn unique_repo(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    assert!(
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "invalid repository label {label:?}: use lowercase letters, digits and dashes"
    );
    let sequence = COUNTER.fetch_add(1, Ordering::SeqCst);
    let random: String = std::iter::repeat_with(fastrand::lowercase)
        .take(6)
        .collect();
    format!(
        "ferry-test/{label}-{}-{sequence}-{random}",
        std::process::id()
    )
}

/// Runs `docker` with `args` and returns its output whatever the exit status.
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("failed to run the docker CLI")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedImage {
    repository: String,
    tag: String,
    digest: String,
}

/// Removes every tag and digest reference whose repository is exactly `repository` (for
/// example `127.0.0.1:5000/ferry-test/app-1-0-abcdef`). Images left without references are
/// deleted. Missing images are ignored.
pub fn docker_remove_repo(repository: &str) {
    let listing = docker(&["image", "ls", "--digests", "--format", "{{json .}}"]);
    assert!(
        listing.status.success(),
        "docker image ls failed: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let stdout = String::from_utf8_lossy(&listing.stdout);
    let mut references = Vec::new();
    for line in stdout.lines().filter(|line| !line.trim().is_empty()) {
        let image: ListedImage = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("unexpected docker image ls line {line:?}: {error}"));
        if image.repository != repository {
            continue;
        }
        if image.tag != "<none>" {
            references.push(format!("{}:{}", image.repository, image.tag));
        } else if image.digest != "<none>" {
            references.push(format!("{}@{}", image.repository, image.digest));
        }
    }
    references.dedup();
    for reference in references {
        // Removing the last tag can delete the image with its digest references. A later
        // removal then fails with "No such image", which is the expected end state.
        let _ = docker(&["image", "rm", &reference]);
    }
}

/// Returns `docker image inspect <reference>` as JSON, or `None` when the engine has no such
/// image.
pub fn docker_inspect(reference: &str) -> Option<serde_json::Value> {
    let output = docker(&["image", "inspect", reference]);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("No such image"),
            "docker image inspect {reference} failed: {stderr}"
        );
        return None;
    }
    let mut images: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("docker image inspect printed invalid JSON");
    Some(images.swap_remove(0))
}

/// Loads `archive` with `docker load` and returns its stdout; panics with stderr on failure.
pub fn docker_load(archive: &Path) -> String {
    let path = archive.to_str().expect("archive path is not UTF-8");
    let output = docker(&["load", "--input", path]);
    assert!(
        output.status.success(),
        "docker load --input {path} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes its repositories from the Docker engine on Drop, also when the test panics.
pub struct RepoGuard {
    repositories: Vec<String>,
}

impl RepoGuard {
    /// Guards `repository`, for example the value `unique_repo` returned, prefixed with the
    /// registry host when the image is loaded under that name.
    pub fn new(repository: impl Into<String>) -> RepoGuard {
        RepoGuard {
            repositories: vec![repository.into()],
        }
    }

    /// Adds another repository to remove.
    pub fn add(&mut self, repository: impl Into<String>) {
        self.repositories.push(repository.into());
    }

    /// Returns the first guarded repository.
    pub fn name(&self) -> &str {
        &self.repositories[0]
    }
}

impl Drop for RepoGuard {
    fn drop(&mut self) {
        for repository in &self.repositories {
            docker_remove_repo(repository);
        }
    }
}

/// Writes a real `docker save` archive of image `tag` of `layout`, named `name` (`repo:tag`),
/// to `output`: the image goes into the engine through a skopeo docker-archive, is saved, and
/// is removed from the engine again.
pub fn docker_save_archive(layout: &super::OciLayout, tag: &str, name: &str, output: &Path) {
    let staging = output.with_extension("skopeo.tar");
    super::skopeo(&["copy", &layout.skopeo_reference(tag), &format!("docker-archive:{}:{name}", staging.display())]);
    docker_load(&staging);
    let status = Command::new("docker").args(["save", "-o"]).arg(output).arg(name).status().expect("failed to run docker save");
    assert!(status.success(), "docker save {name} failed");
    docker_remove_repo(name.rsplit_once(':').map_or(name, |(repository, _)| repository));
    let _ = std::fs::remove_file(&staging);
}
