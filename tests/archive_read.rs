//! `archive::read` on archives written by real tools: skopeo `docker-archive:` and
//! `oci-archive:`, `docker save` from the machine's engine (Docker 20.10, so the layout before
//! Docker 25), and Docker 25+ and ferry layouts assembled here from test images. Each test checks
//! the images found (names, image ID, DiffIDs) and that verification passes, or fails naming the
//! damaged member.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ferry::archive::parts::numbered;
use ferry::archive::read::{self, ArchiveError, ArchiveIndex, ArchiveKind, Contents, SkipReason, StoredImage, UnsafeName};
use ferry::platform::Platform;
use serde_json::json;

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn open(path: &Path, platform: &Platform) -> (ArchiveIndex, Contents) {
    let index = ArchiveIndex::open(path).unwrap_or_else(|error| panic!("{}", ferry::error_message(&error)));
    let contents = read::contents(&index, platform).unwrap_or_else(|error| panic!("{}", ferry::error_message(&error)));
    (index, contents)
}

fn diff_ids(image: &StoredImage) -> Vec<String> {
    image.layers.iter().map(|layer| layer.diff_id.to_string()).collect()
}

/// Verifies and checks that the progress callback saw exactly the bytes `verify_size` announced.
fn verify_passes(index: &ArchiveIndex, contents: &Contents) {
    let seen = std::sync::atomic::AtomicU64::new(0);
    let result = read::verify(index, contents, read::DiffIds::All, &|bytes| {
        seen.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    });
    if let Err(error) = result {
        panic!("verify failed: {}", ferry::error_message(&error));
    }
    assert_eq!(seen.into_inner(), read::verify_size(index, contents).unwrap());
}

fn verify_error(index: &ArchiveIndex, contents: &Contents) -> ArchiveError {
    read::verify(index, contents, read::DiffIds::All, &|_| {}).expect_err("verify should fail")
}

/// Copies image `tag` of `layout` to a skopeo destination such as `docker-archive:FILE:name:tag`.
fn skopeo_copy(layout: &OciLayout, tag: &str, destination: &str) {
    skopeo(&["copy", "--quiet", &layout.skopeo_reference(tag), destination]);
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// Cuts `source` into `base.001`, `base.002`, ... at the byte offsets `cuts`.
fn split_into_parts(source: &Path, base: &Path, cuts: &[usize]) {
    let bytes = std::fs::read(source).unwrap();
    let mut start = 0;
    for (number, end) in cuts.iter().copied().chain([bytes.len()]).enumerate() {
        std::fs::write(numbered(base, number + 1), &bytes[start..end]).unwrap();
        start = end;
    }
}

fn docker(args: &[&str]) {
    let output = Command::new("docker").args(args).output().expect("failed to run the docker CLI");
    assert!(output.status.success(), "docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// A tar written member by member, for archive layouts no tool on this machine writes.
struct TarWriter {
    builder: tar::Builder<File>,
}

impl TarWriter {
    fn create(path: &Path) -> TarWriter {
        TarWriter { builder: tar::Builder::new(File::create(path).unwrap()) }
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        self.builder.append_data(&mut header, name, bytes).unwrap();
    }

    /// Appends a member whose name is written as raw bytes, as `tar::Builder` rejects unsafe names.
    fn raw(&mut self, name: &str, kind: tar::EntryType, link: &str, bytes: &[u8]) {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        self.builder.append(&header, bytes).unwrap();
    }

    /// Copies every member of the archive at `source`.
    fn copy_from(&mut self, source: &Path) {
        let mut archive = tar::Archive::new(File::open(source).unwrap());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let mut header = entry.header().clone();
            let name = entry.path().unwrap().into_owned();
            self.builder.append_data(&mut header, name, entry).unwrap();
        }
    }

    fn finish(self) {
        self.builder.into_inner().unwrap();
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// Writes what `docker save` writes from Docker 25 on, or with `ferry` what `ferry save` writes:
/// `oci-layout`, each blob once under `blobs/sha256/`, `index.json` with both name annotations,
/// `manifest.json`, and for ferry `ferry-archive.json` and `sha256sums`. Blobs in `omitted` are
/// left out, as `ferry save --since` leaves out what an older archive carried.
fn write_layout_archive(layout: &OciLayout, images: &[(&BuiltImage, &str)], path: &Path, ferry: bool, omitted: &[String]) {
    let mut tar = TarWriter::create(path);
    tar.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut blobs: Vec<(String, u64)> = Vec::new();
    for (image, _) in images {
        let digests = [(image.manifest_digest.clone(), image.manifest_size), (image.config_digest.clone(), image.config.len() as u64)];
        for (digest, size) in digests.into_iter().chain(image.layers.iter().map(|layer| (layer.digest.clone(), layer.size))) {
            if !blobs.iter().any(|(known, _)| *known == digest) && !omitted.contains(&digest) {
                tar.bytes(&format!("blobs/sha256/{}", hex(&digest)), &std::fs::read(layout.blob_path(&digest)).unwrap());
                blobs.push((digest, size));
            }
        }
    }

    let index_entries: Vec<_> = images
        .iter()
        .map(|(image, name)| {
            json!({
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit_once(':').unwrap().1,
                },
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index_entries});
    tar.bytes("index.json", &serde_json::to_vec(&index).unwrap());
    let manifest: Vec<_> = images
        .iter()
        .map(|(image, name)| {
            json!({
                "Config": format!("blobs/sha256/{}", hex(&image.config_digest)),
                "RepoTags": [name],
                "Layers": image.layers.iter().map(|layer| format!("blobs/sha256/{}", hex(&layer.digest))).collect::<Vec<_>>(),
            })
        })
        .collect();
    tar.bytes("manifest.json", &serde_json::to_vec(&manifest).unwrap());

    if ferry {
        let described: Vec<_> = images
            .iter()
            .map(|(image, name)| {
                json!({
                    "reference": name,
                    "manifest_digest": image.manifest_digest,
                    "platform": "linux/amd64",
                    "config": {"digest": image.config_digest, "size": image.config.len()},
                    "layers": image.layers.iter().map(|layer| json!({
                        "digest": layer.digest, "size": layer.size, "media_type": layer.media_type, "diff_id": layer.diff_id,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let blob_list: Vec<_> = blobs.iter().map(|(digest, size)| json!({"digest": digest, "size": size})).collect();
        let omitted_list: Vec<_> = omitted
            .iter()
            .map(|digest| {
                let size = images.iter().flat_map(|(image, _)| &image.layers).find(|layer| &layer.digest == digest).map_or(0, |layer| layer.size);
                json!({"digest": digest, "size": size})
            })
            .collect();
        let description = json!({"version": 1, "created": "2024-01-01T00:00:00Z", "images": described, "blobs": blob_list, "omitted": omitted_list});
        tar.bytes("ferry-archive.json", &serde_json::to_vec(&description).unwrap());
        let sums: String = blobs.iter().map(|(digest, _)| format!("{0}  blobs/sha256/{0}\n", hex(digest))).collect();
        tar.bytes("sha256sums", sums.as_bytes());
    }
    tar.finish();
}

#[test]
fn skopeo_docker_archive_reads_and_verifies() {
    let mut layout = OciLayout::new();
    let base = LayerSpec::random(120_000);
    let image = ImageBuilder::new().layer(base.clone()).layer(LayerSpec::random(60_000)).layer(base).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.tar");
    skopeo_copy(&layout, "v1", &format!("docker-archive:{}:ferry.test/read/app:1", path.display()));

    let (index, contents) = open(&path, &amd64());
    assert_eq!(contents.kind, ArchiveKind::DockerArchive);
    assert_eq!(contents.images.len(), 1);
    let found = &contents.images[0];
    assert_eq!(found.names, ["ferry.test/read/app:1"]);
    assert_eq!(found.config_digest.as_str(), image.image_id());
    assert_eq!(diff_ids(found), image.diff_ids());
    assert_eq!(found.platform, Some(amd64()));
    assert_eq!(found.layers[0].offset, found.layers[2].offset);
    verify_passes(&index, &contents);
}

#[test]
fn skopeo_oci_archive_reads_gzip_and_zstd() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(100_000).gzip())
        .layer(LayerSpec::random(80_000).zstd())
        .write(&mut layout, "v2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.oci.tar");
    skopeo_copy(&layout, "v2", &format!("oci-archive:{}:ferry.test/read/app:2", path.display()));

    let (index, contents) = open(&path, &amd64());
    assert_eq!(contents.kind, ArchiveKind::OciArchive);
    assert_eq!(contents.images.len(), 1);
    let found = &contents.images[0];
    assert_eq!(found.names, ["ferry.test/read/app:2"]);
    assert_eq!(found.config_digest.as_str(), image.image_id());
    assert_eq!(diff_ids(found), image.diff_ids());
    let blob_digests: Vec<String> = found.layers.iter().map(|layer| layer.blob_digest.as_ref().unwrap().to_string()).collect();
    assert_eq!(blob_digests, image.layer_digests());
    let media_types: Vec<&str> = found.layers.iter().map(|layer| layer.media_type.as_deref().unwrap()).collect();
    let expected_types: Vec<&str> = image.layers.iter().map(|layer| layer.media_type.as_str()).collect();
    assert_eq!(media_types, expected_types);
    verify_passes(&index, &contents);

    // Part boundaries inside the compression magic of both layers.
    let base = dir.path().join("parts.tar");
    let mut cuts = [found.layers[0].offset as usize + 1, found.layers[1].offset as usize + 2];
    cuts.sort();
    split_into_parts(&path, &base, &cuts);
    let (split_index, split_contents) = open(&base, &amd64());
    verify_passes(&split_index, &split_contents);
}

#[test]
fn oci_archive_bare_tag_loads_untagged() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(10_000)).write(&mut layout, "v3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.oci.tar");
    skopeo_copy(&layout, "v3", &format!("oci-archive:{}:v3", path.display()));

    let (_, contents) = open(&path, &amd64());
    assert_eq!(contents.images.len(), 1);
    assert!(contents.images[0].names.is_empty(), "{:?}", contents.images[0].names);
    assert_eq!(contents.images[0].config_digest.as_str(), image.image_id());
}

#[test]
fn oci_archive_index_picks_platform() {
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().layer(LayerSpec::random(20_000)))
        .image(ImageBuilder::new().platform("linux", "arm64", Some("v8")).layer(LayerSpec::random(20_000)))
        .attestation()
        .write(&mut layout, "multi");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.oci.tar");
    skopeo(&["copy", "--quiet", "--all", &layout.skopeo_reference("multi"), &format!("oci-archive:{}:ferry.test/read/multi:1", path.display())]);

    let (archive, contents) = open(&path, &"linux/aarch64".parse().unwrap());
    assert_eq!(contents.images.len(), 1);
    assert_eq!(contents.images[0].config_digest.as_str(), index.image("arm64").image_id());
    assert_eq!(contents.images[0].names, ["ferry.test/read/multi:1"]);
    verify_passes(&archive, &contents);

    let (_, contents) = open(&path, &"linux/s390x".parse().unwrap());
    assert!(contents.images.is_empty());
    assert_eq!(contents.skipped.len(), 1);
    let SkipReason::NoMatchingPlatform { available, .. } = &contents.skipped[0].reason else {
        panic!("unexpected skip reason {:?}", contents.skipped[0].reason);
    };
    assert_eq!(available, &[amd64(), "linux/arm64".parse().unwrap()]);
}

#[test]
fn docker_save_reads_several_images() {
    let repo = unique_repo("archive-read-save");
    let _guard = RepoGuard::new(&repo);
    let mut layout = OciLayout::new();
    let shared = LayerSpec::random(90_000);
    let first = ImageBuilder::new().layer(shared.clone()).layer(LayerSpec::random(40_000)).layer(shared.clone()).write(&mut layout, "first");
    let second = ImageBuilder::new().layer(shared).layer(LayerSpec::random(30_000)).label("image", "second").write(&mut layout, "second");
    let dir = tempfile::tempdir().unwrap();
    for tag in ["first", "second"] {
        let path = dir.path().join(format!("{tag}.tar"));
        skopeo_copy(&layout, tag, &format!("docker-archive:{}:{repo}:{tag}", path.display()));
        docker_load(&path);
    }
    let saved = dir.path().join("saved.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), &format!("{repo}:first"), &format!("{repo}:second")]);

    let (index, contents) = open(&saved, &amd64());
    assert_eq!(contents.kind, ArchiveKind::DockerLegacy);
    assert_eq!(contents.images.len(), 2);
    for (built, tag) in [(&first, "first"), (&second, "second")] {
        let name = format!("{repo}:{tag}");
        let found = contents.images.iter().find(|image| image.names.contains(&name)).unwrap_or_else(|| panic!("no image named {name}"));
        assert_eq!(found.config_digest.as_str(), built.image_id());
        assert_eq!(diff_ids(found), built.diff_ids());
    }
    // Docker writes a repeated layer once and links the other `<id>/layer.tar` files to it.
    let layers = &contents.images.iter().find(|image| image.config_digest.as_str() == first.image_id()).unwrap().layers;
    assert_ne!(layers[0].member, layers[2].member);
    assert_eq!(layers[0].offset, layers[2].offset);
    verify_passes(&index, &contents);

    let parts_dir = tempfile::tempdir().unwrap();
    let base = parts_dir.path().join("saved.tar");
    let size = std::fs::metadata(&saved).unwrap().len() as usize;
    split_into_parts(&saved, &base, &[1000, size / 2 + 333]);
    let (split_index, split_contents) = open(&base, &amd64());
    assert_eq!(split_index.parts().files().len(), 3);
    let digests = |contents: &Contents| contents.images.iter().map(|image| image.config_digest.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&split_contents), digests(&contents));
    verify_passes(&split_index, &split_contents);
}

#[test]
fn docker25_layout_reads_and_verifies() {
    let mut layout = OciLayout::new();
    let shared = LayerSpec::random(50_000).uncompressed();
    let first = ImageBuilder::new().layer(shared.clone()).layer(LayerSpec::random(20_000).uncompressed()).write(&mut layout, "a");
    let second = ImageBuilder::new().layer(shared).label("image", "second").write(&mut layout, "b");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker25.tar");
    write_layout_archive(&layout, &[(&first, "ferry.test/read/a:1"), (&second, "ferry.test/read/b:1")], &path, false, &[]);

    let (index, contents) = open(&path, &amd64());
    assert_eq!(contents.kind, ArchiveKind::Docker25);
    assert_eq!(contents.images.len(), 2);
    assert!(contents.skipped.is_empty());
    assert_eq!(contents.images[0].names, ["ferry.test/read/a:1"]);
    assert_eq!(contents.images[0].config_digest.as_str(), first.image_id());
    assert_eq!(diff_ids(&contents.images[0]), first.diff_ids());
    assert_eq!(contents.images[1].config_digest.as_str(), second.image_id());
    assert_eq!(contents.images[0].layers[0].offset, contents.images[1].layers[0].offset);
    assert_eq!(contents.images[0].layers[0].media_type.as_deref(), Some("application/vnd.oci.image.layer.v1.tar"));
    verify_passes(&index, &contents);
}

#[test]
fn ferry_layout_checks_sha256sums() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(70_000)).layer(LayerSpec::random(30_000).zstd()).write(&mut layout, "f");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.tar");
    write_layout_archive(&layout, &[(&image, "ferry.test/read/f:1")], &path, true, &[]);

    let (index, contents) = open(&path, &amd64());
    assert_eq!(contents.kind, ArchiveKind::Ferry);
    assert_eq!(contents.images[0].config_digest.as_str(), image.image_id());
    assert_eq!(diff_ids(&contents.images[0]), image.diff_ids());
    verify_passes(&index, &contents);

    // A manifest blob is used by no image, but sha256sums lists it, so its damage is found.
    let manifest_member = format!("blobs/sha256/{}", hex(&image.manifest_digest));
    let offset = index.file(&manifest_member).unwrap().offset;
    drop(index);
    flip_byte(&path, offset + 10);
    let (index, contents) = (ArchiveIndex::open(&path).unwrap(), contents);
    let error = verify_error(&index, &contents);
    let ArchiveError::DigestMismatch { member, .. } = &error else {
        panic!("expected a digest mismatch, got {error:?}");
    };
    assert_eq!(member, &manifest_member);
}

#[test]
fn ferry_layout_omitted_layer_is_skipped() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(40_000)).layer(LayerSpec::random(20_000)).write(&mut layout, "f");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("since.tar");
    let base = image.layers[0].clone();
    write_layout_archive(&layout, &[(&image, "ferry.test/read/since:1")], &path, true, std::slice::from_ref(&base.digest));

    let (index, contents) = open(&path, &amd64());
    let layers = &contents.images[0].layers;
    assert!(layers[0].omitted);
    assert_eq!(layers[0].size, base.size);
    assert!(!layers[1].omitted);
    assert_eq!(diff_ids(&contents.images[0]), image.diff_ids());
    verify_passes(&index, &contents);
    assert_eq!(read::verify_size(&index, &contents).unwrap(), image.total_size() - base.size);
}

#[test]
fn flipped_layer_byte_names_member() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(10_000)).layer(LayerSpec::random(50_000)).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.tar");
    skopeo_copy(&layout, "v1", &format!("docker-archive:{}:ferry.test/read/flip:1", path.display()));
    let (index, contents) = open(&path, &amd64());
    let layer = &contents.images[0].layers[1];
    flip_byte(&path, layer.offset + layer.size / 2);

    let error = verify_error(&index, &contents);
    let ArchiveError::DiffIdMismatch { member, expected, found, .. } = &error else {
        panic!("expected a DiffID mismatch, got {error:?}");
    };
    assert_eq!(member, &layer.member);
    assert_eq!(expected.as_str(), image.layers[1].diff_id);
    assert_ne!(found, expected);
    assert!(error.to_string().contains(&layer.member), "{error}");
}

#[test]
fn flipped_gzip_byte_names_member() {
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(60_000).gzip()).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.oci.tar");
    skopeo_copy(&layout, "v1", &format!("oci-archive:{}:ferry.test/read/flip:2", path.display()));
    let (index, contents) = open(&path, &amd64());
    let layer = &contents.images[0].layers[0];
    flip_byte(&path, layer.offset + layer.size / 2);

    let error = verify_error(&index, &contents);
    assert!(matches!(error, ArchiveError::Decompress { .. } | ArchiveError::DigestMismatch { .. } | ArchiveError::DiffIdMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains(&layer.member), "{error}");
}

#[test]
fn truncated_archive_names_member() {
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(80_000)).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.tar");
    skopeo_copy(&layout, "v1", &format!("docker-archive:{}:ferry.test/read/cut:1", path.display()));
    let (index, contents) = open(&path, &amd64());
    let layer = contents.images[0].layers[0].clone();
    drop(index);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..(layer.offset + 1000) as usize]).unwrap();

    let error = ArchiveIndex::open(&path).unwrap_err();
    let ArchiveError::Truncated { member, .. } = &error else {
        panic!("expected a truncated archive, got {error:?}");
    };
    assert_eq!(member, &layer.member);
}

#[test]
fn missing_parts_are_named() {
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(80_000)).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.tar");
    skopeo_copy(&layout, "v1", &format!("docker-archive:{}:ferry.test/read/parts:1", path.display()));
    let base = dir.path().join("parts.tar");
    split_into_parts(&path, &base, &[30_000, 60_000]);

    std::fs::rename(numbered(&base, 2), dir.path().join("aside")).unwrap();
    let error = ArchiveIndex::open(&base).unwrap_err();
    assert!(matches!(&error, ArchiveError::MissingPart { part, .. } if *part == numbered(&base, 2)), "{error:?}");

    std::fs::rename(dir.path().join("aside"), numbered(&base, 2)).unwrap();
    std::fs::remove_file(numbered(&base, 3)).unwrap();
    let error = ArchiveIndex::open(&base).unwrap_err();
    assert!(matches!(&error, ArchiveError::Truncated { next_part: Some(part), .. } if *part == numbered(&base, 3)), "{error:?}");
}

#[test]
fn unsafe_members_are_rejected() {
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(5_000)).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.tar");
    skopeo_copy(&layout, "v1", &format!("docker-archive:{}:ferry.test/read/unsafe:1", path.display()));

    let cases = [
        ("../escape", tar::EntryType::Regular, "", UnsafeName::ParentComponent),
        ("/etc/escape", tar::EntryType::Regular, "", UnsafeName::Absolute),
        ("link/layer.tar", tar::EntryType::Symlink, "../../etc/passwd", UnsafeName::LinkLeavesRoot { target: "../../etc/passwd".to_owned() }),
    ];
    for (name, kind, link, expected) in cases {
        let evil = dir.path().join("evil.tar");
        let mut tar = TarWriter::create(&evil);
        tar.copy_from(&path);
        tar.raw(name, kind, link, if kind == tar::EntryType::Regular { b"x" } else { b"" });
        tar.finish();

        let error = ArchiveIndex::open(&evil).unwrap_err();
        let ArchiveError::UnsafeMember { member, reason, .. } = &error else {
            panic!("{name}: expected an unsafe member error, got {error:?}");
        };
        assert_eq!(member, name);
        assert_eq!(reason, &expected);
    }
}

#[test]
fn gzip_whole_archive_is_rejected() {
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(5_000)).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.tar");
    skopeo_copy(&layout, "v1", &format!("docker-archive:{}:ferry.test/read/gzip:1", path.display()));
    let status = Command::new("gzip").arg(&path).status().expect("failed to run gzip");
    assert!(status.success());
    let compressed: PathBuf = dir.path().join("images.tar.gz");

    let error = ArchiveIndex::open(&compressed).unwrap_err();
    let ArchiveError::Compressed { format, command, .. } = &error else {
        panic!("expected a compressed archive error, got {error:?}");
    };
    assert_eq!(*format, "gzip");
    assert!(command.starts_with("gunzip < "), "{command}");
}

#[test]
fn layer_count_mismatch_is_rejected() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(5_000).uncompressed()).write(&mut layout, "v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.tar");
    let mut tar = TarWriter::create(&path);
    let config = format!("{}.json", hex(&image.config_digest));
    tar.bytes(&config, &image.config);
    let layer = format!("{}.tar", hex(&image.layers[0].digest));
    tar.bytes(&layer, &std::fs::read(layout.blob_path(&image.layers[0].digest)).unwrap());
    let manifest = json!([{"Config": config, "RepoTags": ["ferry.test/read/count:1"], "Layers": [layer, layer]}]);
    tar.bytes("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.finish();

    let index = ArchiveIndex::open(&path).unwrap();
    let error = read::contents(&index, &amd64()).unwrap_err();
    assert!(matches!(error, ArchiveError::LayerCount { diff_ids: 1, layers: 2, .. }), "{error:?}");
}
