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
    assert!(document["images"][0]["bytes"].as_u64().unwrap() > 100_000, "{document}");
    let inspected = docker_inspect(&name).expect("loaded");
    assert_eq!(inspected["Id"], image.image_id());
    let layers: Vec<String> = inspected["RootFS"]["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    assert_eq!(layers, image.diff_ids());

    let (code, document, _) = load(&archive);
    assert_eq!(code, 0);
    assert_eq!(document["images"][0]["status"], "unchanged");
    assert_eq!(document["images"][0]["bytes"], 0);
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
    let saved = out.path().join("docker-save.tar");
    docker_save_archive(&layout, "v1", &format!("{repo}:v1"), &saved);

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

/// Runs podman with its own storage under `root` (vfs driver: no mounts), asserting success.
fn podman(root: &Path, args: &[&str]) {
    let output = std::process::Command::new("podman")
        .arg("--root")
        .arg(root.join("storage"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("failed to run podman (the Debian package podman)");
    assert!(output.status.success(), "podman {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

#[test]
fn load_podman_archives() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(20_000).gzip()).layer(LayerSpec::random(10_000).gzip()).write(&mut layout, "v1");
    let work = tempfile::tempdir().unwrap();
    let repo = format!("ferry.test/{}", unique_repo("load-podman"));
    // podman names a pulled layout after its path, which must be lowercase: pull through a link.
    let link = std::env::temp_dir().join(unique_repo("podman-layout").replace('/', "-"));
    std::os::unix::fs::symlink(layout.path(), &link).unwrap();
    podman(work.path(), &["pull", "-q", &format!("oci:{}:v1", link.display())]);
    std::fs::remove_file(&link).unwrap();
    podman(work.path(), &["tag", image.image_id().trim_start_matches("sha256:"), &format!("{repo}:v1")]);
    for format in ["docker-archive", "oci-archive"] {
        let _guard = RepoGuard::new(&repo);
        let archive = work.path().join(format!("{format}.tar"));
        podman(work.path(), &["save", "--format", format, "-o", archive.to_str().unwrap(), &format!("{repo}:v1")]);

        let (code, document, stderr) = load(&archive);
        assert_eq!(code, 0, "{format}: {document}\n{stderr}");
        assert_eq!(docker_inspect(&format!("{repo}:v1")).unwrap()["Id"], image.image_id(), "{format}");
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

    // Layer blobs are readable by all, like every other file of the layout.
    for digest in image.layer_digests() {
        let path = target.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o044, 0o044, "{} has mode {mode:o}", path.display());
    }

    let mut command = ferry_cmd();
    command.arg("load").arg(&archive).arg("--to").arg(format!("oci:{}", target.display()));
    let (code, document, _) = run_json(&mut command);
    assert_eq!(code, 0);
    assert_eq!(document["images"][0]["status"], "unchanged");
}

#[test]
fn load_checks_space_on_docker_root() {
    let registry = Registry::start_plain();
    let (name, _) = pushed_image(&registry, "load-space");
    let _guard = RepoGuard::new(name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    ferry_save(&registry, &name, &archive, &[]);
    // The layers need about 125 kB staged plus their unpacked estimate: more than 64 kB.
    let small = Tmpfs::mount("64k");

    let mut command = ferry_cmd();
    command.arg("load").arg(&archive).arg("--docker-root").arg(small.path());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 2, "{document}\n{stderr}");
    assert_eq!(document["ok"], false);
    let error = document["error"].as_str().unwrap();
    assert!(error.contains("Docker data root"), "{error}");
    assert!(error.contains(&small.path().display().to_string()), "the error names the folder: {error}");
    assert!(docker_inspect(&name).is_none(), "nothing is loaded");

    // The same check guards an OCI layout on a full filesystem, and writes nothing there.
    let layout = small.path().join("layout");
    let mut command = ferry_cmd();
    command.arg("load").arg(&archive).arg("--to").arg(format!("oci:{}", layout.display()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 2, "{document}\n{stderr}");
    assert!(document["error"].as_str().unwrap().contains("OCI layout"), "{document}");
    assert!(!layout.exists());

    // --skip-disk-check goes on, with a warning.
    let mut command = ferry_cmd();
    command.arg("load").arg(&archive).arg("--docker-root").arg(small.path()).arg("--skip-disk-check");
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(stderr.contains("--skip-disk-check"), "{stderr}");
    assert!(docker_inspect(&name).is_some());
}

/// Saves `v1` and an update `v2` sharing its base layer, the update with `--since` the first
/// archive. Returns both archive paths and the names and images of v1 and v2.
fn save_base_and_update(registry: &Registry, repo: &str, out: &Path) -> ((PathBuf, PathBuf), (String, BuiltImage), (String, BuiltImage)) {
    let base = LayerSpec::random(60_000).gzip();
    let mut layout = OciLayout::new();
    let v1 = ImageBuilder::new().layer(base.clone()).write(&mut layout, "v1");
    let v2 = ImageBuilder::new().layer(base).layer(LayerSpec::random(10_000)).write(&mut layout, "v2");
    registry.push(&layout, "v1", &format!("{repo}:v1"));
    registry.push(&layout, "v2", &format!("{repo}:v2"));
    let (first, update) = (out.join("v1.tar"), out.join("v2.tar"));
    let (v1_name, v2_name) = (format!("{}/{repo}:v1", registry.host()), format!("{}/{repo}:v2", registry.host()));
    ferry_save(registry, &v1_name, &first, &[]);
    ferry_save(registry, &v2_name, &update, &["--since", first.to_str().unwrap()]);
    ((first, update), (v1_name, v1), (v2_name, v2))
}

#[test]
fn load_several_archives_in_order() {
    let registry = Registry::start_plain();
    let repo = unique_repo("load-many");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let out = tempfile::tempdir().unwrap();
    let ((first, update), (v1_name, v1), (v2_name, v2)) = save_base_and_update(&registry, &repo, out.path());

    // The update named before its base: a clear error, and nothing from either archive loaded.
    let mut command = ferry_cmd();
    command.arg("load").arg(&update).arg(&first);
    let (code, _, stderr) = run_json(&mut command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("name it before this one"), "{stderr}");
    assert!(stderr.contains("v2.tar"), "the error names the archive: {stderr}");
    assert!(docker_inspect(&v1_name).is_none());

    // In order, both load, and one JSON document reports both archives.
    let mut command = ferry_cmd();
    command.arg("load").arg(&first).arg(&update);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["archives"].as_array().unwrap().len(), 2, "{document}");
    assert_eq!(document["changed"], 2, "{document}");
    assert_eq!(document["images"][0]["reference"], v1_name.as_str());
    assert_eq!(document["images"][0]["archive"], first.to_str().unwrap());
    assert_eq!(document["images"][1]["reference"], v2_name.as_str());
    assert_eq!(document["images"][1]["archive"], update.to_str().unwrap());
    assert_eq!(docker_inspect(&v1_name).unwrap()["Id"], v1.image_id());
    assert_eq!(docker_inspect(&v2_name).unwrap()["Id"], v2.image_id());
}

#[test]
fn load_verifies_every_archive_first() {
    let registry = Registry::start_plain();
    let (good_name, _) = pushed_image(&registry, "load-first-good");
    let (bad_name, bad_image) = pushed_image(&registry, "load-first-bad");
    let mut guard = RepoGuard::new(good_name.rsplit_once(':').unwrap().0);
    guard.add(bad_name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let (good, bad) = (out.path().join("good.tar"), out.path().join("bad.tar"));
    ferry_save(&registry, &good_name, &good, &[]);
    ferry_save(&registry, &bad_name, &bad, &[]);
    let layer = bad_image.layers[0].digest.trim_start_matches("sha256:").to_owned();
    let mut data = std::fs::read(&bad).unwrap();
    let member = format!("blobs/sha256/{layer}");
    let header = data.windows(member.len()).position(|w| w == member.as_bytes()).unwrap();
    data[header + 512 + 1000] ^= 0x40;
    std::fs::write(&bad, &data).unwrap();

    // The second archive is damaged, so the first one is not loaded either.
    let mut command = ferry_cmd();
    command.arg("load").arg(&good).arg(&bad);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 2, "{document}\n{stderr}");
    assert!(document["error"].as_str().unwrap().contains(&layer), "{document}");
    assert!(docker_inspect(&good_name).is_none(), "nothing is loaded");
    assert!(docker_inspect(&bad_name).is_none());
}

#[test]
fn load_update_archives_once_each() {
    let registry = Registry::start_plain();
    let repo = unique_repo("load-update");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let out = tempfile::tempdir().unwrap();
    let ((first, _), (v1_name, _), (v2_name, v2)) = save_base_and_update(&registry, &repo, out.path());
    // An update archive that carries both tags, as ferry save -i writes for the whole list.
    let both = out.path().join("both.tar");
    ferry_save(&registry, &v1_name, &both, &["--since", first.to_str().unwrap(), &v2_name]);

    // Into Docker, in one command: the image both archives carry loads once.
    let mut command = ferry_cmd();
    command.arg("load").arg(&first).arg(&both);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["images"].as_array().unwrap().len(), 2, "{document}");
    assert_eq!(docker_inspect(&v2_name).unwrap()["Id"], v2.image_id());

    // Into an OCI layout, in two commands: the update finds its base layer in the layout.
    let layout = out.path().join("layout");
    for archive in [&first, &both] {
        let mut command = ferry_cmd();
        command.arg("load").arg(archive).arg("--to").arg(format!("oci:{}", layout.display()));
        let (code, document, stderr) = run_json(&mut command);
        assert_eq!(code, 0, "{}: {document}\n{stderr}", archive.display());
    }
    let config = skopeo(&["inspect", "--config", "--raw", &format!("oci:{}:v2", layout.display())]);
    assert_eq!(sha256_digest(&config.stdout), v2.image_id());

    // A missing archive is named, with what to check.
    let (code, _, stderr) = load(&out.path().join("nothere.tar"));
    assert_eq!(code, 2);
    assert!(stderr.contains("nothere.tar not found"), "{stderr}");
}
