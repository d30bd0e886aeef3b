//! `ferry save` against real registries, checked with the real peers that read its archives:
//! `docker load` and skopeo's `oci-archive:` transport.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Member names and sizes of a tar file.
fn members(path: &Path) -> Vec<(String, u64)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.header().size().unwrap())
        })
        .collect()
}

fn member_text(path: &Path, name: &str) -> String {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            return text;
        }
    }
    panic!("{name} is not in {}", path.display());
}

struct Pushed {
    first: BuiltImage,
    second: BuiltImage,
    first_name: String,
    second_name: String,
}

/// Two images sharing a base layer, the first with that layer at two positions.
fn push_two(registry: &Registry, label: &str) -> Pushed {
    let base = LayerSpec::seeded(99, 120_000).gzip();
    let mut layout = OciLayout::new();
    let first = ImageBuilder::new().layer(base.clone()).layer(LayerSpec::random(60_000)).layer(base.clone()).write(&mut layout, "one");
    let second = ImageBuilder::new().layer(base).layer(LayerSpec::random(40_000).gzip()).write(&mut layout, "two");
    let first_repo = unique_repo(&format!("{label}-a"));
    let second_repo = unique_repo(&format!("{label}-b"));
    registry.push(&layout, "one", &format!("{first_repo}:1"));
    registry.push(&layout, "two", &format!("{second_repo}:1"));
    Pushed { first, second, first_name: format!("{}/{first_repo}:1", registry.host()), second_name: format!("{}/{second_repo}:1", registry.host()) }
}

#[test]
fn save_archive_loads_into_docker() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "bridge", "save-secret");
    let pushed = push_two(&registry, "save-load");
    let mut guard = RepoGuard::new(pushed.first_name.rsplit_once(':').unwrap().0);
    guard.add(pushed.second_name.rsplit_once(':').unwrap().0);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");

    let mut command = ferry_cmd();
    command
        .args(["save", "--username", "bridge", "-o"])
        .arg(&archive)
        .args([&pushed.first_name, &pushed.second_name])
        .arg("--ca-file")
        .arg(registry.ca_file().unwrap())
        .env("REGISTRY_PASSWORD", "save-secret");
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(!document.to_string().contains("save-secret"));

    // Every blob is stored once, under its digest, and sha256sums lists each of them.
    let entries = members(&archive);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (name, _) in &entries {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "{entries:?}");
    let base = &pushed.first.layers[0].digest;
    assert!(counts.contains_key(format!("blobs/sha256/{}", base.trim_start_matches("sha256:")).as_str()));
    let sums = member_text(&archive, "sha256sums");
    let blob_members = entries.iter().filter(|(n, _)| n.starts_with("blobs/")).count();
    assert_eq!(sums.lines().count(), blob_members);
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(&archive).unwrap()).unpack(dir.path()).unwrap();
    let check = std::process::Command::new("sha256sum").arg("--check").arg("--quiet").arg("sha256sums").current_dir(dir.path()).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(!out.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".partial")));

    let loaded = docker_load(&archive);
    assert!(loaded.contains(&pushed.first_name), "{loaded}");
    assert_eq!(docker_inspect(&pushed.first_name).unwrap()["Id"], pushed.first.image_id());
    assert_eq!(docker_inspect(&pushed.second_name).unwrap()["Id"], pushed.second.image_id());
}

#[test]
fn save_all_platforms_keeps_index_digest() {
    let registry = Registry::start_plain();
    let repo = unique_repo("save-index");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().platform("linux", "amd64", None).layer(LayerSpec::random(10_000)))
        .image(ImageBuilder::new().platform("linux", "arm64", None).layer(LayerSpec::random(10_000)))
        .attestation()
        .write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("all.tar");

    let mut command = ferry_cmd();
    command.args(["save", "--all-platforms", "--plain-http"]).arg(registry.host()).arg("-o").arg(&archive).arg(&name);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["archive"]["images"][0]["digest"], index.digest.as_str());

    // skopeo reads the OCI layout view and finds the same index.
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{}:latest", archive.display())]);
    assert_eq!(sha256_digest(&raw.stdout), index.digest);
    // docker load reads the nodes' platform (linux/amd64 by default).
    docker_load(&archive);
    assert_eq!(docker_inspect(&name).unwrap()["Id"], index.image("amd64").image_id());
}

#[test]
fn save_split_parts_fit_size_and_join() {
    let registry = Registry::start_plain();
    let repo = unique_repo("save-split");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(2_500_000).uncompressed()).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("split.tar");

    let mut command = ferry_cmd();
    command.args(["save", "--split-size", "1M", "--plain-http"]).arg(registry.host()).arg("-o").arg(&archive).arg(&name);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    let parts: Vec<String> = document["archive"]["parts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    for part in &parts {
        assert!(std::fs::metadata(part).unwrap().len() < 1 << 20, "{part} is not smaller than 1 MiB");
    }
    assert!(parts[0].ends_with("split.tar.001"));

    let joined = out.path().join("joined.tar");
    let mut file = std::fs::File::create(&joined).unwrap();
    for part in &parts {
        std::io::copy(&mut std::fs::File::open(part).unwrap(), &mut file).unwrap();
    }
    docker_load(&joined);
    assert_eq!(docker_inspect(&name).unwrap()["Id"], image.image_id());
}

#[test]
fn save_since_leaves_out_known_layers() {
    let registry = Registry::start_plain();
    let repo = unique_repo("save-since");
    let base = LayerSpec::seeded(5, 50_000).gzip();
    let mut layout = OciLayout::new();
    let v1 = ImageBuilder::new().layer(base.clone()).layer(LayerSpec::random(20_000)).write(&mut layout, "v1");
    let v2 = ImageBuilder::new().layer(base).layer(LayerSpec::random(20_000)).write(&mut layout, "v2");
    registry.push(&layout, "v1", &format!("{repo}:v1"));
    registry.push(&layout, "v2", &format!("{repo}:v2"));
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("v1.tar");
    let update = out.path().join("v2.tar");

    let mut command = ferry_cmd();
    command.args(["save", "--plain-http"]).arg(registry.host()).arg("-o").arg(&first).arg(format!("{}/{repo}:v1", registry.host()));
    let (code, _, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{stderr}");

    let mut command = ferry_cmd();
    command.args(["save", "--plain-http"]).arg(registry.host()).arg("-o").arg(&update).arg("--since").arg(&first).arg(format!("{}/{repo}:v2", registry.host()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["archive"]["omitted_blobs"], 1);
    let names: Vec<String> = members(&update).into_iter().map(|(n, _)| n).collect();
    let base_member = format!("blobs/sha256/{}", v1.layers[0].digest.trim_start_matches("sha256:"));
    let new_member = format!("blobs/sha256/{}", v2.layers[1].digest.trim_start_matches("sha256:"));
    assert!(!names.contains(&base_member), "the shared base is left out: {names:?}");
    assert!(names.contains(&new_member), "the new layer is carried: {names:?}");
    let description: Value = serde_json::from_str(&member_text(&update, "ferry-archive.json")).unwrap();
    assert_eq!(description["omitted"][0]["digest"], v1.layers[0].digest.as_str());

    // A list of digests works as well as an archive.
    let list = out.path().join("known.txt");
    std::fs::write(&list, format!("# layers on the nodes\n{}\n", v1.layers[0].digest)).unwrap();
    let mut command = ferry_cmd();
    command.args(["save", "--plain-http"]).arg(registry.host()).arg("-o").arg(out.path().join("v2b.tar")).arg("--since").arg(&list).arg(format!("{}/{repo}:v2", registry.host()));
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(document["archive"]["omitted_blobs"], 1);
}

#[test]
fn save_interrupted_leaves_nothing_and_resumes() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let repo = unique_repo("save-resume");
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(300_000)).layer(LayerSpec::random(300_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", proxy.host());
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    let env = FerryEnv::new();

    // The second layer is corrupted on every request, so the first run fails.
    let broken = &image.layers[1].digest;
    proxy.add(FaultRule::new(broken, Fault::FlipByte(1000)).always());
    let mut command = env.command();
    command.args(["save", "--plain-http"]).arg(proxy.host()).arg("-o").arg(&archive).arg(&name);
    let (code, _, stderr) = run_json(&mut command);
    assert_ne!(code, 0);
    assert!(stderr.contains(broken.as_str()), "{stderr}");
    assert_eq!(out.path().read_dir().unwrap().count(), 0, "no archive or partial file is left");

    proxy.clear_faults();
    let good = &image.layers[0].digest;
    let gets_before = proxy.count("GET", good);
    let mut command = env.command();
    command.args(["save", "--plain-http"]).arg(proxy.host()).arg("-o").arg(&archive).arg(&name);
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(proxy.count("GET", good), gets_before, "the layer from the first run comes from the cache");
    assert!(archive.exists());
}

#[test]
fn save_unknown_image_writes_nothing() {
    let registry = Registry::start_plain();
    let out = tempfile::tempdir().unwrap();
    let mut command = ferry_cmd();
    command
        .args(["save", "--plain-http"])
        .arg(registry.host())
        .arg("-o")
        .arg(out.path().join("images.tar"))
        .arg(format!("{}/{}:1", registry.host(), unique_repo("save-missing")));
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
    assert_eq!(out.path().read_dir().unwrap().count(), 0);
}
