//! ferry's registry traffic through an HTTP proxy taken from the standard environment variables,
//! with tinyproxy as the proxy: plain HTTP requests for a plain registry, and CONNECT tunnels for
//! a TLS registry.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

/// A tinyproxy process on 127.0.0.1, allowed to CONNECT only to `connect_port`.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(connect_port: u16) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join("tinyproxy.log");
        let config = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogFile \"{}\"\nLogLevel Info\nConnectPort {connect_port}\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy").arg("-d").arg("-c").arg(&config).spawn().expect("tinyproxy is installed (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tinyproxy { child, port, log, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn warmup_plain_registry_through_http_proxy() {
    let registry = Registry::start_plain();
    let proxy = Tinyproxy::start(registry.port());
    let repo = unique_repo("proxy-plain");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(30_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());

    let mut command = ferry_cmd();
    command.args(["warmup", "--plain-http"]).arg(registry.host()).args(["--warmup", &name]).env("HTTP_PROXY", proxy.url());
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(docker_inspect(&name).unwrap()["Id"], image.image_id());
    let log = proxy.log();
    assert!(log.contains(&repo), "the proxy carried the registry requests:\n{log}");
}

#[test]
fn warmup_tls_registry_through_connect_proxy() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "deploy", "proxy-pass");
    let proxy = Tinyproxy::start(registry.port());
    let repo = unique_repo("proxy-tls");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(30_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    let name = format!("{}/{repo}:latest", registry.host());

    let mut command = ferry_cmd();
    command
        .args(["warmup", "--username", "deploy", "--warmup", &name, "--ca-file"])
        .arg(registry.ca_file().unwrap())
        .env("REGISTRY_PASSWORD", "proxy-pass")
        .env("https_proxy", proxy.url());
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(docker_inspect(&name).unwrap()["Id"], image.image_id());
    let log = proxy.log();
    assert!(log.contains("CONNECT"), "the proxy tunnelled the TLS connection:\n{log}");
    assert!(!log.contains("proxy-pass"), "the password never reaches the proxy log");
}

#[test]
fn warmup_no_proxy_bypasses_proxy() {
    let registry = Registry::start_plain();
    let repo = unique_repo("proxy-bypass");
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let mut layout = OciLayout::new();
    ImageBuilder::new().layer(LayerSpec::random(1_000)).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));

    // The proxy address refuses connections, so only a bypass can succeed.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = ferry_cmd();
    command
        .args(["warmup", "--plain-http"])
        .arg(registry.host())
        .args(["--warmup", &format!("{}/{repo}:latest", registry.host())])
        .env("HTTP_PROXY", format!("http://127.0.0.1:{dead_port}"))
        .env("NO_PROXY", "127.0.0.1");
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
