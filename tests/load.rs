//! `ferry load` with archives made by real tools (ferry save, docker save, skopeo), into the
//! machine's Docker engine, and with damaged or unsafe archives that must load nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn load(archive: &Path) -> (i32, Value, String) {
    let mut command = ferry_cmd();
    command.arg("load").arg(archive);
    run_json(&mut command)
}

/// A registry holding one image with a gzip base layer and a zstd layer; returns its name.
fn pushed_image(registry: &Registry, label: &str) -> (String, BuiltImage) {
    let repo = unique_repo(label);
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(80_000).gzip()).layer(LayerSpec::random(40_000).zstd()).layer(LayerSpec::random(5_000).uncompressed()).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    (format!("{}/{repo}:latest", registry.host()), image)
}

fn ferry_save(registry: &Registry, name: &str, output: &Path, extra: &[&str]) {
    let mut command = ferry_cmd();
    command.args(["save", "--plain-http"]).arg(registry.host()).arg("-o").arg(output).args(extra).arg(name);
    let result = command.output().unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
}

#[test]
fn load_ferry_archive_with_zstd_layer() {
    let registry = Registry::start_plain();
    let (name, image) = pushed_image(&registry, "load-ferry");
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    ferry_save(&registry, &name, &archive, &[]);

    let (code, document, stderr) = load(&archive);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "changed");
    let inspected = docker_inspect(&name).expect("loaded");
    assert_eq!(inspected["Id"], image.image_id());
    let layers: Vec<String> = inspected["RootFS"]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    assert_eq!(layers, image.diff_ids());

    let (code, document, _) = load(&archive);
    assert_eq!(code, 0);
    assert_eq!(document["images"][0]["status"], "unchanged");
}

#[test]
fn load_split_ferry_archive() {
    let registry = Registry::start_plain();
    let (name, image) = pushed_image(&registry, "load-split");
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let base = out.path().join("split.tar");
    let repo = unique_repo("load-split-big");
    let mut layout = OciLayout::new();
    let big = ImageBuilder::new().layer(LayerSpec::random(2_200_000).uncompressed()).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let big_name = format!("{}/{repo}:latest", registry.host());
    let _big_guard = RepoGuard::new(big_name.rsplit_once(':').unwrap().0);
    let mut command = ferry_cmd();
    command.args(["save", "--split-size", "1M", "--plain-http"]).arg(registry.host()).arg("-o").arg(&base).args([&name, &big_name]);
    assert!(command.output().unwrap().status.success());
    let first = PathBuf::from(format!("{}.001", base.display()));

    let (code, document, stderr) = load(&first);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&name).unwrap()["Id"], image.image_id());
    assert_eq!(docker_inspect(&big_name).unwrap()["Id"], big.image_id());

    // Without its second part, the archive is rejected and names the part.
    docker_remove_repo(big_name.rsplit_once(':').unwrap().0);
    std::fs::remove_file(format!("{}.002", base.display())).unwrap();
    let (code, _, stderr) = load(&first);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(".002"), "{stderr}");
    assert!(docker_inspect(&big_name).is_none());
}

#[test]
fn load_docker_save_archive() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(30_000)).layer(LayerSpec::random(30_000)).write(&mut layout, "v1");
    let repo = format!("ferry.test/{}", unique_repo("load-docker"));
    let _guard = RepoGuard::new(&repo);
    let out = tempfile::tempdir().unwrap();
    let skopeo_archive = out.path().join("skopeo.tar");
    skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("docker-archive:{}:{repo}:v1", skopeo_archive.display())]);
    docker_load(&skopeo_archive);
    let saved = out.path().join("docker-save.tar");
    let status = std::process::Command::new("docker").args(["save", "-o"]).arg(&saved).arg(format!("{repo}:v1")).status().unwrap();
    assert!(status.success());
    docker_remove_repo(&repo);

    let (code, document, stderr) = load(&saved);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&format!("{repo}:v1")).unwrap()["Id"], image.image_id());
}

#[test]
fn load_skopeo_archives() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(20_000).gzip()).write(&mut layout, "v1");
    let out = tempfile::tempdir().unwrap();
    for transport in ["docker-archive", "oci-archive"] {
        let repo = format!("ferry.test/{}", unique_repo(&format!("load-{transport}")));
        let _guard = RepoGuard::new(&repo);
        let archive = out.path().join(format!("{transport}.tar"));
        skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("{transport}:{}:{repo}:v1", archive.display())]);

        let (code, document, stderr) = load(&archive);
        assert_eq!(code, 0, "{transport}: {document}\n{stderr}");
        assert_eq!(docker_inspect(&format!("{repo}:v1")).unwrap()["Id"], image.image_id(), "{transport}");
    }
}

#[test]
fn load_rejects_flipped_layer_byte() {
    let registry = Registry::start_plain();
    let (name, image) = pushed_image(&registry, "load-flip");
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    ferry_save(&registry, &name, &archive, &[]);

    // Flip a byte in the middle of the gzip layer's data.
    let gzip_layer = image.layers[0].digest.trim_start_matches("sha256:").to_owned();
    let mut data = std::fs::read(&archive).unwrap();
    let member = format!("blobs/sha256/{gzip_layer}");
    let header = data.windows(member.len()).position(|w| w == member.as_bytes()).unwrap();
    data[header + 512 + 1000] ^= 0x40;
    std::fs::write(&archive, &data).unwrap();

    let (code, document, stderr) = load(&archive);
    assert_ne!(code, 0, "{document}");
    assert!(stderr.contains(&gzip_layer), "the error names the layer: {stderr}");
    assert!(docker_inspect(&name).is_none(), "nothing is loaded");
}

#[test]
fn load_rejects_truncated_archive() {
    let registry = Registry::start_plain();
    let (name, _) = pushed_image(&registry, "load-truncated");
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    ferry_save(&registry, &name, &archive, &[]);
    let data = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &data[..data.len() / 2]).unwrap();

    let (code, _, stderr) = load(&archive);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("images.tar"), "{stderr}");
    assert!(docker_inspect(&name).is_none());
}

#[test]
fn load_rejects_path_traversal() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("evil.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    let data: &[u8] = b"evil";
    // `append_data` refuses `..`, so the name is written into the header directly.
    let mut raw = header.clone();
    raw.as_old_mut().name[..16].copy_from_slice(b"../../etc/passwd");
    raw.set_cksum();
    builder.append(&raw, data).unwrap();
    builder.finish().unwrap();

    let (code, _, stderr) = load(&archive);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("../../etc/passwd"), "the error names the entry: {stderr}");
}

#[test]
fn load_since_archive_needs_base_layers() {
    let registry = Registry::start_plain();
    let repo = unique_repo("load-since");
    let base = LayerSpec::seeded(11, 60_000).gzip();
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(base.clone()).write(&mut layout, "v1");
    let v2 = ImageBuilder::new().layer(base).layer(LayerSpec::random(10_000)).write(&mut layout, "v2");
    registry.push(&layout, "v1", &format!("{repo}:v1"));
    registry.push(&layout, "v2", &format!("{repo}:v2"));
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("v1.tar");
    let update = out.path().join("v2.tar");
    ferry_save(&registry, &format!("{}/{repo}:v1", registry.host()), &first, &[]);
    ferry_save(&registry, &format!("{}/{repo}:v2", registry.host()), &update, &["--since", first.to_str().unwrap()]);
    let v2_name = format!("{}/{repo}:v2", registry.host());

    // The node lacks the base layer: a clear error, nothing loaded.
    let (code, _, stderr) = load(&update);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("load the earlier archive first"), "{stderr}");
    assert!(docker_inspect(&v2_name).is_none());

    // With the first archive loaded, the update loads.
    let (code, _, stderr) = load(&first);
    assert_eq!(code, 0, "{stderr}");
    let (code, document, stderr) = load(&update);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&v2_name).unwrap()["Id"], v2.image_id());
}

#[test]
fn load_archives_listed_in_inventory() {
    let registry = Registry::start_plain();
    let (first_name, first) = pushed_image(&registry, "load-inv-a");
    let (second_name, second) = pushed_image(&registry, "load-inv-b");
    let mut guard = RepoGuard::new(first_name.rsplit_once(':').unwrap().0);
    guard.add(second_name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (out.path().join("a.tar"), out.path().join("b.tar"));
    ferry_save(&registry, &first_name, &a, &[]);
    ferry_save(&registry, &second_name, &b, &[]);
    let inventory = out.path().join("inventory.yml");
    std::fs::write(&inventory, format!("all:\n  vars:\n    PROVISION_IMAGE_ARCHIVES:\n      - {}\n      - {}\n", a.display(), b.display())).unwrap();

    let mut command = ferry_cmd();
    command.arg("load").arg("-i").arg(&inventory);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(docker_inspect(&first_name).unwrap()["Id"], first.image_id());
    assert_eq!(docker_inspect(&second_name).unwrap()["Id"], second.image_id());

    // Without arguments or the variable, the error names what to pass.
    let mut command = ferry_cmd();
    command.arg("load");
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PROVISION_IMAGE_ARCHIVES"));
}

#[test]
fn load_into_oci_layout() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(20_000).gzip()).layer(LayerSpec::random(10_000).zstd()).write(&mut layout, "v1");
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    let repo = format!("ferry.test/{}", unique_repo("load-oci"));
    skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("oci-archive:{}:{repo}:v1", archive.display())]);
    let target = out.path().join("layout");

    let mut command = ferry_cmd();
    command.arg("load").arg(&archive).arg("--to").arg(format!("oci:{}", target.display()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"][0]["status"], "changed");

    // skopeo reads the layout and finds the same image, layers and all.
    let inspected = skopeo(&["inspect", &format!("oci:{}:v1", target.display())]);
    let inspected: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let layers: Vec<String> = inspected["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    assert_eq!(layers, image.layer_digests());
    let config = skopeo(&["inspect", "--config", "--raw", &format!("oci:{}:v1", target.display())]);
    assert_eq!(sha256_digest(&config.stdout), image.image_id());

    let mut command = ferry_cmd();
    command.arg("load").arg(&archive).arg("--to").arg(format!("oci:{}", target.display()));
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 0);
    assert_eq!(document["images"][0]["status"], "unchanged");
}
