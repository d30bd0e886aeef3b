//! `ferry serve` as an OCI distribution registry (pull side): each test starts the server in
//! process on 127.0.0.1 with a random port, over `samples/demo` or a layout built in a
//! temporary folder, and talks to it with reqwest or skopeo.

use std::path::{Path, PathBuf};

use ferry::digest::Digest;
use ferry::layout::Layout;
use oci_spec::image::{Descriptor, MediaType};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const SKOPEO: &str = "/usr/bin/skopeo";

/// A running registry; `stop` shuts it down and checks that it stopped cleanly.
struct Server {
    base: String,
    address: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ferry::serve::ServeError>>,
    client: reqwest::Client,
}

impl Server {
    async fn start(root: &Path) -> Server {
        let layout = Layout::open(root).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ferry::serve::serve(layout, listener, ferry::serve::ServeOptions::default(), async {
            let _ = stopped.await;
        }));
        Server { base: format!("http://{address}"), address, stop, task, client: reqwest::Client::new() }
    }

    async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path, &[(ACCEPT.as_str(), MANIFEST_ACCEPT)]).await
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/demo")
}

/// Returns the digest of the sample's only `index.json` entry.
fn sample_index_digest() -> Digest {
    Layout::open(&sample()).unwrap().entries().unwrap()[0].digest.clone()
}

/// Returns the first child manifest of the sample index and that manifest's first layer.
fn sample_child_and_layer() -> (Digest, Digest) {
    let layout = Layout::open(&sample()).unwrap();
    let index: Value = serde_json::from_slice(&layout.read_blob(&sample_index_digest()).unwrap()).unwrap();
    let child: Digest = index["manifests"][0]["digest"].as_str().unwrap().parse().unwrap();
    let manifest: Value = serde_json::from_slice(&layout.read_blob(&child).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    (child, layer)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("missing header {name}")).to_str().unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

/// Writes a manifest with an empty config and no layers into `layout` and returns its
/// descriptor. Each `marker` gives a distinct manifest.
fn write_manifest(layout: &Layout, marker: &str) -> Descriptor {
    let config = b"{}";
    let config_digest = Digest::of(config);
    layout.write_blob(&config_digest, config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
        "layers": [],
        "annotations": {"marker": marker},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&bytes);
    layout.write_blob(&digest, &bytes).unwrap();
    Descriptor::new(MediaType::ImageManifest, bytes.len() as u64, oci_spec::image::Digest::try_from(digest.as_str()).unwrap())
}

#[tokio::test]
async fn ping_returns_empty_object() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "docker-distribution-api-version"), "registry/2.0");
    assert_eq!(response.text().await.unwrap(), "{}");
    server.stop().await;
}

#[tokio::test]
async fn manifest_by_tag() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/demochromium/manifests/latest").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    assert_eq!(header(&headers, CONTENT_TYPE.as_str()), OCI_INDEX);
    assert_eq!(header(&headers, "docker-content-digest"), sample_index_digest().as_str());
    assert_eq!(header(&headers, CONTENT_LENGTH.as_str()), body.len().to_string());
    assert_eq!(Digest::of(&body), sample_index_digest());
    server.stop().await;
}

#[tokio::test]
async fn manifest_head_by_tag() {
    let server = Server::start(&sample()).await;
    let response = server.request(Method::HEAD, "/v2/demochromium/manifests/latest", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let expected_length = Layout::open(&sample()).unwrap().entries().unwrap()[0].size;
    assert_eq!(header(&headers, CONTENT_LENGTH.as_str()), expected_length.to_string());
    assert_eq!(header(&headers, CONTENT_TYPE.as_str()), OCI_INDEX);
    assert_eq!(header(&headers, "docker-content-digest"), sample_index_digest().as_str());
    assert!(response.bytes().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn manifest_by_digest_of_child() {
    let server = Server::start(&sample()).await;
    let (child, _) = sample_child_and_layer();
    let response = server.get(&format!("/v2/demochromium/manifests/{child}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    assert_eq!(header(&headers, CONTENT_TYPE.as_str()), OCI_MANIFEST);
    assert_eq!(header(&headers, "docker-content-digest"), child.as_str());
    assert_eq!(Digest::of(&body), child);
    server.stop().await;
}

#[tokio::test]
async fn manifest_head_by_digest() {
    let server = Server::start(&sample()).await;
    let digest = sample_index_digest();
    let response = server.request(Method::HEAD, &format!("/v2/demochromium/manifests/{digest}"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "docker-content-digest"), digest.as_str());
    assert_eq!(header(response.headers(), CONTENT_TYPE.as_str()), OCI_INDEX);
    server.stop().await;
}

#[tokio::test]
async fn manifest_unknown_tag() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/demochromium/manifests/missing").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn manifest_unknown_digest() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let response = server.get(&format!("/v2/demochromium/manifests/{layer}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn manifest_unknown_repository() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/library/other/manifests/latest").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "NAME_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn manifest_invalid_digest() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/demochromium/manifests/sha256:1234").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");
    server.stop().await;
}

#[tokio::test]
async fn blob_whole() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let response = server.get(&format!("/v2/demochromium/blobs/{layer}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    assert_eq!(Digest::of(&body), layer);
    assert_eq!(header(&headers, CONTENT_LENGTH.as_str()), body.len().to_string());
    assert_eq!(header(&headers, "docker-content-digest"), layer.as_str());
    server.stop().await;
}

#[tokio::test]
async fn blob_head() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let size = std::fs::metadata(Layout::open(&sample()).unwrap().blob_path(&layer)).unwrap().len();
    let response = server.request(Method::HEAD, &format!("/v2/any/name/blobs/{layer}"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), CONTENT_LENGTH.as_str()), size.to_string());
    assert!(response.bytes().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn blob_range_open_end() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let whole = std::fs::read(Layout::open(&sample()).unwrap().blob_path(&layer)).unwrap();
    let response = server.request(Method::GET, &format!("/v2/demochromium/blobs/{layer}"), &[(RANGE.as_str(), "bytes=10-")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let expected_range = format!("bytes 10-{}/{}", whole.len() - 1, whole.len());
    assert_eq!(header(response.headers(), CONTENT_RANGE.as_str()), expected_range);
    assert_eq!(header(response.headers(), CONTENT_LENGTH.as_str()), (whole.len() - 10).to_string());
    assert_eq!(response.bytes().await.unwrap(), whole[10..]);
    server.stop().await;
}

#[tokio::test]
async fn blob_range_closed() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let whole = std::fs::read(Layout::open(&sample()).unwrap().blob_path(&layer)).unwrap();
    let response = server.request(Method::GET, &format!("/v2/demochromium/blobs/{layer}"), &[(RANGE.as_str(), "bytes=2-5")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(response.headers(), CONTENT_RANGE.as_str()), format!("bytes 2-5/{}", whole.len()));
    assert_eq!(response.bytes().await.unwrap(), whole[2..=5]);
    server.stop().await;
}

#[tokio::test]
async fn blob_range_unsatisfiable() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let size = std::fs::metadata(Layout::open(&sample()).unwrap().blob_path(&layer)).unwrap().len();
    let response = server.request(Method::GET, &format!("/v2/demochromium/blobs/{layer}"), &[(RANGE.as_str(), "bytes=100000-")]).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(response.headers(), CONTENT_RANGE.as_str()), format!("bytes */{size}"));
    server.stop().await;
}

#[tokio::test]
async fn blob_range_malformed() {
    let server = Server::start(&sample()).await;
    let (_, layer) = sample_child_and_layer();
    let response = server.request(Method::GET, &format!("/v2/demochromium/blobs/{layer}"), &[(RANGE.as_str(), "bytes=5-2")]).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    server.stop().await;
}

#[tokio::test]
async fn blob_large_range_from_middle() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&data);
    layout.write_blob(&digest, &data).unwrap();
    let server = Server::start(dir.path()).await;

    let path = format!("/v2/app/blobs/{digest}");
    let whole = server.get(&path).await.bytes().await.unwrap();
    assert_eq!(Digest::of(&whole), digest);
    let response = server.request(Method::GET, &path, &[(RANGE.as_str(), "bytes=1500000-2999998")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(response.headers(), CONTENT_RANGE.as_str()), "bytes 1500000-2999998/3000000");
    assert_eq!(response.bytes().await.unwrap(), data[1_500_000..=2_999_998]);
    server.stop().await;
}

#[tokio::test]
async fn blob_unknown() {
    let server = Server::start(&sample()).await;
    let response = server.get(&format!("/v2/demochromium/blobs/{}", Digest::of(b"absent"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "BLOB_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn tags_list() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/demochromium/tags/list").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"name": "demochromium", "tags": ["latest"]}));
    server.stop().await;
}

#[tokio::test]
async fn tags_list_unknown_repository() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/nothing/tags/list").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "NAME_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn write_methods_rejected() {
    let server = Server::start(&sample()).await;
    let cases = [
        (Method::POST, "/v2/demochromium/blobs/uploads/"),
        (Method::PUT, "/v2/demochromium/manifests/latest"),
        (Method::DELETE, "/v2/demochromium/manifests/latest"),
        (Method::PATCH, "/v2/demochromium/blobs/uploads/1"),
        (Method::POST, "/v2/"),
    ];
    for (method, path) in cases {
        let response = server.request(method.clone(), path, &[]).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(error_code(response).await, "UNSUPPORTED", "{method} {path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_endpoint_is_not_found() {
    let server = Server::start(&sample()).await;
    let response = server.get("/v2/demochromium").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn ref_name_serves_any_repository() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let manifest = write_manifest(&layout, "loose");
    layout.add_entry(&manifest, None, Some("v1")).unwrap();
    let server = Server::start(dir.path()).await;

    let response = server.get("/v2/some/deep/name/manifests/v1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "docker-content-digest"), manifest.digest().as_ref());
    assert_eq!(header(response.headers(), CONTENT_TYPE.as_str()), OCI_MANIFEST);
    server.stop().await;
}

#[tokio::test]
async fn nested_repository_name() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let app = write_manifest(&layout, "app");
    let tool = write_manifest(&layout, "tool");
    layout.add_entry(&app, Some("registry.example:5000/team/app:2"), Some("2")).unwrap();
    layout.add_entry(&tool, Some("registry.example:5000/team/tool:2"), Some("2")).unwrap();
    let server = Server::start(dir.path()).await;

    let response = server.get("/v2/team/tool/manifests/2").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "docker-content-digest"), tool.digest().as_ref());
    let missing = server.get("/v2/team/app/manifests/3").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "MANIFEST_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn child_content_type_from_blob() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let child = write_manifest(&layout, "child");
    // The index describes the child with another media type than the child's own field.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": child.digest(), "size": child.size()}],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = Digest::of(&bytes);
    layout.write_blob(&digest, &bytes).unwrap();
    let descriptor = Descriptor::new(MediaType::ImageIndex, bytes.len() as u64, oci_spec::image::Digest::try_from(digest.as_str()).unwrap());
    layout.add_entry(&descriptor, Some("app:1"), Some("1")).unwrap();
    let server = Server::start(dir.path()).await;

    let response = server.get(&format!("/v2/app/manifests/{}", child.digest())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), CONTENT_TYPE.as_str()), OCI_MANIFEST);
    server.stop().await;
}

#[tokio::test]
async fn corrupt_manifest_is_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let manifest = write_manifest(&layout, "corrupt");
    layout.add_entry(&manifest, Some("app:1"), Some("1")).unwrap();
    let digest: Digest = manifest.digest().as_ref().parse().unwrap();
    let path = layout.blob_path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = b' ';
    std::fs::write(&path, bytes).unwrap();
    let server = Server::start(dir.path()).await;

    let response = server.get("/v2/app/manifests/1").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    server.stop().await;
}

#[tokio::test]
async fn missing_manifest_blob_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let manifest = write_manifest(&layout, "removed");
    layout.add_entry(&manifest, Some("app:1"), Some("1")).unwrap();
    let digest: Digest = manifest.digest().as_ref().parse().unwrap();
    std::fs::remove_file(layout.blob_path(&digest)).unwrap();
    let server = Server::start(dir.path()).await;

    let response = server.get("/v2/app/manifests/1").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");
    server.stop().await;
}

/// Runs skopeo with `args`, or returns `None` when it is not installed.
async fn skopeo(args: &[&str]) -> Option<std::process::Output> {
    if !Path::new(SKOPEO).exists() {
        eprintln!("skipping: {SKOPEO} is not installed");
        return None;
    }
    let output = tokio::process::Command::new(SKOPEO).args(args).output().await.unwrap();
    assert!(output.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    Some(output)
}

#[tokio::test]
async fn skopeo_inspect_raw() {
    let server = Server::start(&sample()).await;
    let image = format!("docker://{}/demochromium:latest", server.address);
    let Some(output) = skopeo(&["inspect", "--tls-verify=false", "--raw", &image]).await else {
        return server.stop().await;
    };
    assert_eq!(Digest::of(&output.stdout), sample_index_digest());

    let output = skopeo(&["inspect", "--tls-verify=false", "--override-arch", "arm64", &image]).await.unwrap();
    let inspected: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspected["Architecture"], "arm64");
    assert_eq!(inspected["Digest"], sample_index_digest().as_str());
    server.stop().await;
}

#[tokio::test]
async fn skopeo_copy_all_platforms() {
    let server = Server::start(&sample()).await;
    let target = tempfile::tempdir().unwrap();
    let source = format!("docker://{}/demochromium:latest", server.address);
    let destination = format!("oci:{}:latest", target.path().display());
    let copied = skopeo(&["--insecure-policy", "copy", "--all", "--src-tls-verify=false", &source, &destination]).await;
    if copied.is_none() {
        return server.stop().await;
    }

    let copy = Layout::open(target.path()).unwrap();
    let entries = copy.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].digest, sample_index_digest());
    let (child, layer) = sample_child_and_layer();
    assert_eq!(copy.read_blob(&child).unwrap(), Layout::open(&sample()).unwrap().read_blob(&child).unwrap());
    assert_eq!(copy.read_blob(&layer).unwrap(), Layout::open(&sample()).unwrap().read_blob(&layer).unwrap());
    server.stop().await;
}
