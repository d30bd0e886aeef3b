//! `ferry serve` on archives, over HTTP and over HTTPS with Basic authentication. Each test runs
//! the real `ferry serve` binary as a child process on 127.0.0.1 with port 0, reads the bound
//! port from its startup line, pulls with real clients (skopeo, `ferry warmup`, the Docker
//! engine) and kills the process at the end.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// How long `ferry serve` may take to print its startup line, or to fail at startup.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A `ferry serve` process, killed on Drop.
struct ServeProcess {
    child: Child,
    /// `127.0.0.1:<port>`, read from the startup line.
    address: String,
    startup_line: String,
    stderr: Arc<Mutex<String>>,
}

impl ServeProcess {
    /// Runs `ferry serve <args> --listen 127.0.0.1:0` and waits for its startup line.
    fn start<S: AsRef<OsStr>>(args: &[S]) -> ServeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command.arg("serve").args(args).args(["--listen", "127.0.0.1:0"]);
        for variable in FERRY_VARIABLES.iter().chain(PROXY_VARIABLES.iter()) {
            command.env_remove(variable);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to run ferry serve");

        // A thread keeps reading stderr so the pipe never fills, and hands over each line.
        let stderr = Arc::new(Mutex::new(String::new()));
        let (first_line, received) = mpsc::channel();
        let reader = BufReader::new(child.stderr.take().unwrap());
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                collected.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = first_line.send(line);
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let startup_line = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(remaining) {
                Ok(line) if line.starts_with("serving ") => break line,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("ferry serve printed no startup line:\n{}", stderr.lock().unwrap());
                }
            }
        };
        let Some(address) = startup_line.split("://").nth(1).and_then(|rest| rest.split_whitespace().next()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected startup line {startup_line:?}");
        };
        ServeProcess { address: address.to_owned(), startup_line, child, stderr }
    }

    /// Returns `127.0.0.1:<port>/<name>`.
    fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.address)
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image pushed to a plain registry, saved by `ferry save` into an archive.
struct SavedImage {
    image: BuiltImage,
    /// `repository:tag`, without the registry host.
    name: String,
    archive: PathBuf,
    /// Folder holding the archive and its parts.
    _dir: tempfile::TempDir,
    /// The layout the image was built in, with every blob.
    layout: OciLayout,
}

/// Builds an image with `layers`, pushes it to a fresh registry, saves it with `ferry save` and
/// stops the registry, so only the archive can serve later pulls.
fn saved_image(label: &str, layers: Vec<LayerSpec>, save_args: &[&str]) -> SavedImage {
    let mut registry = Registry::start_plain();
    let repository = unique_repo(label);
    let mut layout = OciLayout::new();
    let builder = layers.into_iter().fold(ImageBuilder::new(), ImageBuilder::layer);
    let image = builder.write(&mut layout, "v1");
    let name = format!("{repository}:v1");
    registry.push(&layout, "v1", &name);

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("images.tar");
    let mut command = ferry_cmd();
    command
        .args(["save", "--plain-http"])
        .arg(registry.host())
        .arg("-o")
        .arg(&archive)
        .args(save_args)
        .arg(registry.reference(&name));
    let output = command.output().unwrap();
    assert!(output.status.success(), "ferry save failed: {}", String::from_utf8_lossy(&output.stderr));
    registry.stop();
    SavedImage { image, name, archive, _dir: dir, layout }
}

/// Runs `skopeo inspect` on `reference` with `options` and returns the parsed output.
fn skopeo_inspect(options: &[String], reference: &str) -> Value {
    let mut args = vec!["inspect".to_owned()];
    args.extend_from_slice(options);
    args.push(format!("docker://{reference}"));
    serde_json::from_slice(&skopeo(&args).stdout).unwrap()
}

/// Runs `ferry warmup` of `reference` into a new OCI layout with `args` and `password` (if any)
/// in `REGISTRY_PASSWORD`, and returns the exit code, the `--json` document, stderr and the
/// layout folder.
fn warmup_to_layout(reference: &str, args: &[&OsStr], password: Option<&str>) -> (i32, Value, String, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let target = format!("oci:{}", out.path().join("layout").display());
    let mut command = ferry_cmd();
    command.args(["warmup", "--json", "--warmup", reference, "--to", &target]).args(args);
    if let Some(password) = password {
        command.env("REGISTRY_PASSWORD", password);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let document = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), document, stderr, out)
}

/// Returns an htpasswd file line made by `htpasswd -n -i` with `hash_flag` (`-B` for bcrypt),
/// the password given on stdin so it never appears in a process argument.
fn htpasswd_line(hash_flag: &str, user: &str, password: &str) -> String {
    let mut child = Command::new("htpasswd")
        .args(["-n", "-i", hash_flag, user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("failed to run htpasswd (Debian package apache2-utils)");
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Runs `ferry serve <args> --listen <listen>` expecting it to fail at startup; returns the exit
/// code and stderr.
fn serve_failure<S: AsRef<OsStr>>(args: &[S], listen: &str) -> (i32, String) {
    let mut command = ferry_cmd();
    command.arg("serve").args(args).args(["--listen", listen]).timeout(STARTUP_TIMEOUT);
    let output = command.output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn sample_layout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/demo")
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn archive_served_to_skopeo_warmup_and_docker() {
    let saved = saved_image("serve-archive", vec![LayerSpec::random(90_000).gzip(), LayerSpec::random(30_000).gzip()], &[]);
    let server = ServeProcess::start(&[&saved.archive]);
    assert!(server.startup_line.contains("archive"), "{}", server.startup_line);
    assert!(server.startup_line.contains("http://"), "{}", server.startup_line);
    let reference = server.reference(&saved.name);

    let inspected = skopeo_inspect(&["--tls-verify=false".to_owned()], &reference);
    assert_eq!(inspected["Digest"], saved.image.manifest_digest.as_str());

    let address = OsStr::new(&server.address);
    let (code, document, stderr, out) = warmup_to_layout(&reference, &[OsStr::new("--plain-http"), address], None);
    assert_eq!(code, 0, "{document}\n{stderr}\n{}", server.log());
    assert_eq!(document["images"][0]["digest"], saved.image.manifest_digest.as_str());
    for layer in &saved.image.layers {
        let hex = layer.digest.trim_start_matches("sha256:");
        assert!(out.path().join("layout/blobs/sha256").join(hex).exists(), "layer {} missing", layer.digest);
    }

    // The Docker engine pulls over plain HTTP from 127.0.0.0/8 without configuration.
    let _guard = RepoGuard::new(reference.rsplit_once(':').unwrap().0);
    let pull = Command::new("docker").args(["pull", &reference]).output().unwrap();
    assert!(pull.status.success(), "docker pull failed: {}\n{}", String::from_utf8_lossy(&pull.stderr), server.log());
    assert_eq!(docker_inspect(&reference).unwrap()["Id"], saved.image.image_id());
}

#[test]
fn split_archive_served_across_parts() {
    let layers = vec![LayerSpec::random(2_200_000).uncompressed(), LayerSpec::random(20_000).gzip()];
    let saved = saved_image("serve-split", layers, &["--split-size", "1M"]);
    let first_part = PathBuf::from(format!("{}.001", saved.archive.display()));
    assert!(first_part.exists());
    let server = ServeProcess::start(&[&first_part]);
    assert!(server.startup_line.contains("parts"), "{}", server.startup_line);
    let reference = server.reference(&saved.name);

    let inspected = skopeo_inspect(&["--tls-verify=false".to_owned()], &reference);
    assert_eq!(inspected["Digest"], saved.image.manifest_digest.as_str());
    let address = OsStr::new(&server.address);
    let (code, document, stderr, _out) = warmup_to_layout(&reference, &[OsStr::new("--plain-http"), address], None);
    assert_eq!(code, 0, "{document}\n{stderr}\n{}", server.log());

    // A range of the large layer that crosses the first part boundary.
    let layer = &saved.image.layers[0];
    let whole = std::fs::read(saved.layout.blob_path(&layer.digest)).unwrap();
    let url = format!("http://{}/v2/{}/blobs/{}", server.address, saved.name.split(':').next().unwrap(), layer.digest);
    let range = block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = client.get(&url).header("range", "bytes=900000-1300000").send().await.unwrap();
        (response.status(), response.bytes().await.unwrap())
    });
    assert_eq!(range.0, reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.1, whole[900_000..=1_300_000]);
}

#[test]
fn skopeo_oci_archive_served_by_tag() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(20_000).gzip()).write(&mut layout, "v1");
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("skopeo-oci.tar");
    skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("oci-archive:{}:v2", archive.display())]);
    let server = ServeProcess::start(&[&archive]);

    // skopeo names the image by tag only, so any repository name finds it.
    let inspected = skopeo_inspect(&["--tls-verify=false".to_owned()], &server.reference("any/name:v2"));
    assert_eq!(inspected["Digest"], image.manifest_digest.as_str());
}

#[test]
fn tls_and_htpasswd_require_credentials() {
    let saved = saved_image("serve-tls", vec![LayerSpec::random(40_000).gzip()], &[]);
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users.htpasswd");
    std::fs::write(&htpasswd, format!("{}\n", htpasswd_line("-B", "puller", "pull-secret"))).unwrap();
    let server = ServeProcess::start(&[
        saved.archive.as_os_str(),
        OsStr::new("--tls-cert"),
        pki.server_cert_file().as_os_str(),
        OsStr::new("--tls-key"),
        pki.server_key_file().as_os_str(),
        OsStr::new("--htpasswd"),
        htpasswd.as_os_str(),
    ]);
    assert!(server.startup_line.contains("https://"), "{}", server.startup_line);
    assert!(server.startup_line.contains("Basic authentication"), "{}", server.startup_line);
    let reference = server.reference(&saved.name);
    let ca = pki.ca_file();
    let warmup_args = [OsStr::new("--ca-file"), ca.as_os_str(), OsStr::new("--username"), OsStr::new("puller")];

    let (code, document, stderr, _out) = warmup_to_layout(&reference, &warmup_args, Some("pull-secret"));
    assert_eq!(code, 0, "{document}\n{stderr}\n{}", server.log());
    assert_eq!(document["images"][0]["digest"], saved.image.manifest_digest.as_str());
    assert!(!stderr.contains("pull-secret"));

    let (code, document, stderr, _out) = warmup_to_layout(&reference, &warmup_args, Some("wrong-secret"));
    assert_ne!(code, 0, "{document}\n{stderr}");
    assert!(document.to_string().contains("401") || stderr.contains("401"), "{document}\n{stderr}");
    assert!(!server.log().contains("wrong-secret"), "{}", server.log());

    let auth_file = dir.path().join("auth.json");
    write_docker_auth(&auth_file, &server.address, "puller", "pull-secret");
    let options = [format!("--cert-dir={}", pki.cert_dir().display()), format!("--authfile={}", auth_file.display())];
    assert_eq!(skopeo_inspect(&options, &reference)["Digest"], saved.image.manifest_digest.as_str());

    let client = pki.reqwest_client();
    let ping = format!("https://{}/v2/", server.address);
    block_on(async {
        let anonymous = client.get(&ping).send().await.unwrap();
        assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"ferry\"");
        assert_eq!(error_code(anonymous).await, "UNAUTHORIZED");

        let wrong = client.get(&ping).basic_auth("puller", Some("wrong-secret")).send().await.unwrap();
        assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(wrong).await, "UNAUTHORIZED");

        let unknown_user = client.get(&ping).basic_auth("nobody", Some("pull-secret")).send().await.unwrap();
        assert_eq!(unknown_user.status(), reqwest::StatusCode::UNAUTHORIZED);

        let right = client.get(&ping).basic_auth("puller", Some("pull-secret")).send().await.unwrap();
        assert_eq!(right.status(), reqwest::StatusCode::OK);
    });
}

#[test]
fn docker_archive_rejected_at_startup() {
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(10_000).gzip()).write(&mut layout, "v1");
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("docker-archive.tar");
    skopeo(&["copy", &layout.skopeo_reference("v1"), &format!("docker-archive:{}:ferry.test/serve-reject:v1", archive.display())]);

    let (code, stderr) = serve_failure(&[&archive], "127.0.0.1:0");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no OCI view"), "{stderr}");
    assert!(stderr.contains("oci-archive:"), "{stderr}");
    assert!(stderr.contains("Docker 25"), "{stderr}");
}

#[test]
fn cert_without_key_rejected() {
    let pki = Pki::new();
    let args = [sample_layout().into_os_string(), "--tls-cert".into(), pki.server_cert_file().into_os_string()];
    let (code, stderr) = serve_failure(&args, "127.0.0.1:0");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[test]
fn unreadable_key_named_in_error() {
    let pki = Pki::new();
    let missing = pki.ca_file().with_file_name("absent.key");
    let args = [
        sample_layout().into_os_string(),
        "--tls-cert".into(),
        pki.server_cert_file().into_os_string(),
        "--tls-key".into(),
        missing.clone().into_os_string(),
    ];
    let (code, stderr) = serve_failure(&args, "127.0.0.1:0");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

#[test]
fn non_bcrypt_htpasswd_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users.htpasswd");
    let md5_line = htpasswd_line("-m", "legacy", "old-secret");
    std::fs::write(&htpasswd, format!("{}\n{md5_line}\n", htpasswd_line("-B", "puller", "pull-secret"))).unwrap();
    let args = [sample_layout().into_os_string(), "--htpasswd".into(), htpasswd.into_os_string()];

    let (code, stderr) = serve_failure(&args, "127.0.0.1:0");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("htpasswd -B"), "{stderr}");
    let hash = md5_line.split_once(':').unwrap().1;
    assert!(!stderr.contains(hash), "{stderr}");
}

#[test]
fn cleartext_htpasswd_on_all_interfaces_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users.htpasswd");
    std::fs::write(&htpasswd, format!("{}\n", htpasswd_line("-B", "puller", "pull-secret"))).unwrap();
    let args = [sample_layout().into_os_string(), "--htpasswd".into(), htpasswd.into_os_string()];

    // The check runs before the listener is bound, so nothing listens on 0.0.0.0.
    let (code, stderr) = serve_failure(&args, "0.0.0.0:0");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    assert!(stderr.contains("clear text"), "{stderr}");
}
