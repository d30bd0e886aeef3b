//! Checks of the shared test harness against the real registry, skopeo and Docker engine.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::*;
use regex::Regex;

/// Reads the blob of `layer` and returns it decompressed according to its compression.
fn uncompressed_layer(layout: &OciLayout, layer: &BuiltLayer) -> Vec<u8> {
    let blob = fs_err::read(layout.blob_path(&layer.digest)).unwrap();
    let mut tar = Vec::new();
    match layer.compression {
        Compression::None => tar = blob,
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(blob.as_slice())
                .read_to_end(&mut tar)
                .unwrap();
        }
        Compression::Zstd => tar = zstd::decode_all(blob.as_slice()).unwrap(),
    }
    tar
}

/// Returns `(path, size)` of every regular file in a tar.
fn tar_files(tar: &[u8]) -> Vec<(String, u64)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.header().entry_type().is_file())
        .map(|entry| {
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            (path, entry.header().size().unwrap())
        })
        .collect()
}

/// Parses the auth-params of a `WWW-Authenticate: Bearer ...` header.
fn bearer_params(challenge: &str) -> std::collections::HashMap<String, String> {
    let pattern = Regex::new(r#"(\w+)="([^"]*)""#).unwrap();
    pattern
        .captures_iter(challenge)
        .map(|captures| (captures[1].to_string(), captures[2].to_string()))
        .collect()
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

// ---------------------------------------------------------------------------------------------
// Image builder

#[test]
fn layer_diff_id_matches_uncompressed_tar() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(10_000).gzip())
        .layer(LayerSpec::random(20_000).zstd())
        .layer(LayerSpec::random(30_000).uncompressed())
        .write(&mut layout, "v1");

    for layer in &image.layers {
        let tar = uncompressed_layer(&layout, layer);
        assert_eq!(
            sha256_digest(&tar),
            layer.diff_id,
            "diff_id of {}",
            layer.digest
        );
        assert_eq!(tar.len() as u64, layer.uncompressed_size);
        let blob = fs_err::read(layout.blob_path(&layer.digest)).unwrap();
        assert_eq!(sha256_digest(&blob), layer.digest);
        assert_eq!(blob.len() as u64, layer.size);
    }
    let sizes: Vec<u64> = image
        .layers
        .iter()
        .map(|layer| tar_files(&uncompressed_layer(&layout, layer))[0].1)
        .collect();
    assert_eq!(sizes, vec![10_000, 20_000, 30_000]);
}

#[test]
fn layer_media_types_follow_compression() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(100).gzip())
        .layer(LayerSpec::random(100).zstd())
        .layer(LayerSpec::random(100).uncompressed())
        .write(&mut layout, "v1");
    let media_types: Vec<&str> = image.layers.iter().map(|l| l.media_type.as_str()).collect();
    assert_eq!(
        media_types,
        vec![
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    );
}

#[test]
fn layer_from_real_file_keeps_contents() {
    let source = std::path::Path::new("/usr/bin/skopeo");
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::from_file(source, "usr/local/bin/copy-of-skopeo"))
        .write(&mut layout, "v1");
    let tar = uncompressed_layer(&layout, &image.layers[0]);
    let files = tar_files(&tar);
    assert_eq!(files[0].0, "usr/local/bin/copy-of-skopeo");
    assert_eq!(files[0].1, fs_err::metadata(source).unwrap().len());
    assert!(
        image.layers[0].size < image.layers[0].uncompressed_size,
        "real file compressed"
    );
}

#[test]
fn config_lists_diff_ids_and_platform() {
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .platform("linux", "arm64", Some("v8"))
        .cmd(&["/bin/app", "--serve"])
        .layer(LayerSpec::random(100))
        .layer(LayerSpec::random(100))
        .write(&mut layout, "v1");
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    let diff_ids: Vec<String> =
        serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
    assert_eq!(diff_ids, image.diff_ids());
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/app", "--serve"])
    );
    assert_eq!(sha256_digest(&image.config), image.image_id());
}

#[test]
fn shared_base_layer_has_same_digest() {
    let base = LayerSpec::random(50_000);
    let mut layout = OciLayout::new();
    let first = ImageBuilder::new()
        .layer(base.clone())
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "first");
    let second = ImageBuilder::new()
        .layer(base)
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "second");
    assert_eq!(first.layers[0].digest, second.layers[0].digest);
    assert_ne!(first.layers[1].digest, second.layers[1].digest);
}

#[test]
fn seeded_layer_is_reproducible() {
    let mut first_layout = OciLayout::new();
    let mut second_layout = OciLayout::new();
    let first = ImageBuilder::new()
        .layer(LayerSpec::seeded(7, 4_096).zstd())
        .write(&mut first_layout, "v1");
    let second = ImageBuilder::new()
        .layer(LayerSpec::seeded(7, 4_096).zstd())
        .write(&mut second_layout, "v1");
    assert_eq!(first.manifest_digest, second.manifest_digest);
}

#[test]
fn repeated_layer_keeps_both_positions() {
    let repeated = LayerSpec::random(2_000);
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(repeated.clone())
        .layer(LayerSpec::random(2_000))
        .layer(repeated)
        .write(&mut layout, "v1");
    assert_eq!(image.layers.len(), 3);
    assert_eq!(image.layers[0].digest, image.layers[2].digest);
    assert_eq!(image.diff_ids()[0], image.diff_ids()[2]);
}

#[test]
fn index_lists_platforms_and_attestation() {
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().layer(LayerSpec::random(100)))
        .image(
            ImageBuilder::new()
                .platform("linux", "arm64", Some("v8"))
                .layer(LayerSpec::random(100)),
        )
        .attestation()
        .write(&mut layout, "multi");
    let parsed: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    let entries = parsed["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|entry| {
            format!(
                "{}/{}",
                entry["platform"]["os"], entry["platform"]["architecture"]
            )
        })
        .map(|platform| platform.replace('"', ""))
        .collect();
    assert_eq!(
        platforms,
        vec!["linux/amd64", "linux/arm64", "unknown/unknown"]
    );
    assert_eq!(
        entries[2]["annotations"]["vnd.docker.reference.digest"],
        index.image("amd64").manifest_digest
    );
    assert_eq!(sha256_digest(&index.bytes), index.digest);
}

// ---------------------------------------------------------------------------------------------
// htpasswd and plain registries

#[test]
fn htpasswd_registry_push_and_inspect() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "alice", "correct horse");
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(100_000))
        .layer(LayerSpec::random(5_000).zstd())
        .write(&mut layout, "v1");

    registry.push(&layout, "v1", "ferry-test/app:v1");

    assert_eq!(
        registry.manifest_digest("ferry-test/app:v1"),
        image.manifest_digest
    );
    assert_eq!(
        registry.count_requests("PUT", "/v2/ferry-test/app/manifests/v1"),
        1
    );
}

#[test]
fn htpasswd_registry_rejects_bad_password() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "alice", "correct horse");
    let client = registry.client();
    let url = format!("{}/v2/", registry.url());
    let status = |password: &str| {
        let request = async {
            client
                .get(&url)
                .basic_auth("alice", Some(password))
                .send()
                .await
        };
        block_on(request).unwrap().status().as_u16()
    };
    assert_eq!(status("wrong"), 401);
    assert_eq!(status("correct horse"), 200);
}

#[test]
fn htpasswd_registry_challenges_with_basic() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "alice", "secret");
    let response = block_on(async {
        registry
            .client()
            .get(format!("{}/v2/", registry.url()))
            .send()
            .await
    })
    .unwrap();
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Basic "), "challenge {challenge:?}");
}

#[test]
fn registry_certificate_verifies_by_docker_certs_dir() {
    let pki = Pki::new();
    let registry = Registry::start_htpasswd(&pki, "alice", "secret");
    let certs = tempfile::tempdir().unwrap();
    let ca = pki.write_docker_certs_dir(certs.path(), &registry.host());
    assert_eq!(ca, certs.path().join(registry.host()).join("ca.crt"));

    // skopeo reads a per-registry folder just like Docker's certs.d.
    let authfile = registry.auth_file();
    let output = skopeo_output(&[
        "inspect".to_string(),
        "--raw".to_string(),
        format!("--cert-dir={}", ca.parent().unwrap().display()),
        format!("--authfile={}", authfile.display()),
        format!("docker://{}/ferry-test/missing:v1", registry.host()),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("certificate"), "TLS failed: {stderr}");
    assert!(stderr.contains("manifest unknown"), "stderr: {stderr}");
}

#[test]
fn plain_registry_survives_restart() {
    let mut registry = Registry::start_plain();
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/restart:v1");

    registry.stop();
    let probe = async {
        registry
            .client()
            .get(format!("{}/v2/", registry.url()))
            .send()
            .await
    };
    assert!(block_on(probe).unwrap_err().is_connect());
    assert!(!registry.is_running());

    registry.restart();
    assert_eq!(
        registry.manifest_digest("ferry-test/restart:v1"),
        image.manifest_digest
    );
}

#[test]
fn registry_log_counts_blob_gets() {
    let registry = Registry::start_plain();
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/count:v1");
    let blob = &image.layers[0].digest;
    let url = format!("{}/v2/ferry-test/count/blobs/{blob}", registry.url());
    for _ in 0..3 {
        let body =
            block_on(async { registry.client().get(&url).send().await?.bytes().await }).unwrap();
        assert_eq!(sha256_digest(&body), *blob);
    }
    assert_eq!(registry.count_requests("GET", &format!("/blobs/{blob}")), 3);
}

#[test]
fn docker_manifest_list_push_keeps_digests() {
    let registry = Registry::start_plain();
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .docker_media_types()
        .image(ImageBuilder::new().layer(LayerSpec::random(1_000)))
        .image(
            ImageBuilder::new()
                .platform("linux", "arm64", Some("v8"))
                .layer(LayerSpec::random(1_000).uncompressed()),
        )
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/docker-list:v1");

    let raw = registry.raw_manifest("ferry-test/docker-list:v1");
    assert_eq!(sha256_digest(&raw), index.digest);
    let arm64 = format!(
        "ferry-test/docker-list@{}",
        index.image("arm64").manifest_digest
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&registry.raw_manifest(&arm64)).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn docker_manifest_push_keeps_digest() {
    let registry = Registry::start_plain();
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .docker_media_types()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/docker-manifest:v1");

    let raw = registry.raw_manifest("ferry-test/docker-manifest:v1");
    assert_eq!(sha256_digest(&raw), image.manifest_digest);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
}

#[test]
fn oci_index_with_attestation_push_keeps_digests() {
    let registry = Registry::start_plain();
    let mut layout = OciLayout::new();
    let index = IndexBuilder::new()
        .image(ImageBuilder::new().layer(LayerSpec::random(1_000).zstd()))
        .image(
            ImageBuilder::new()
                .platform("linux", "arm64", Some("v8"))
                .layer(LayerSpec::random(1_000)),
        )
        .attestation()
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/oci-index:v1");

    assert_eq!(
        registry.manifest_digest("ferry-test/oci-index:v1"),
        index.digest
    );
    let attestation = index.attestation.as_ref().unwrap();
    let reference = format!("ferry-test/oci-index@{}", attestation.manifest_digest);
    assert_eq!(
        registry.manifest_digest(&reference),
        attestation.manifest_digest
    );
}

// ---------------------------------------------------------------------------------------------
// Token registry

#[test]
fn token_registry_push_and_inspect_with_skopeo() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(10_000))
        .write(&mut layout, "v1");

    registry.push(&layout, "v1", "ferry-test/token:v1");

    assert_eq!(
        registry.manifest_digest("ferry-test/token:v1"),
        image.manifest_digest
    );
    let tokens = registry.token_server().unwrap();
    assert!(
        tokens.tokens_issued() >= 2,
        "issued {}",
        tokens.tokens_issued()
    );
    let requests = tokens.requests();
    assert!(requests
        .iter()
        .all(|request| request.account.as_deref() == Some("alice")));
    assert!(requests.iter().any(|request| request
        .granted
        .contains(&"repository:ferry-test/token:pull,push".to_string())));
}

#[test]
fn token_registry_rejects_bad_password() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let authfile = tempfile::NamedTempFile::new().unwrap();
    write_docker_auth(authfile.path(), &registry.host(), "alice", "wrong");

    let output = skopeo_output(&[
        "inspect".to_string(),
        "--raw".to_string(),
        format!("--cert-dir={}", pki.cert_dir().display()),
        format!("--authfile={}", authfile.path().display()),
        format!("docker://{}/ferry-test/token:v1", registry.host()),
    ]);

    assert!(!output.status.success());
    let requests = registry.token_server().unwrap().requests();
    assert_eq!(requests.last().unwrap().status, 401);
    assert_eq!(registry.token_server().unwrap().tokens_issued(), 0);
}

/// Follows the registry's Bearer challenge by hand and returns the manifest GET status.
fn fetch_manifest_with_token(
    registry: &Registry,
    reference: &str,
    user: Option<(&str, &str)>,
) -> (u16, String) {
    let client = registry.client();
    let (repository, tag) = reference.split_once(':').unwrap();
    let url = format!("{}/v2/{repository}/manifests/{tag}", registry.url());
    block_on(async {
        let challenge = client
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(challenge.status(), 401);
        let header = challenge.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(header.starts_with("Bearer "), "challenge {header:?}");
        let params = bearer_params(&header);

        let mut token_request = client
            .get(&params["realm"])
            .query(&[("service", &params["service"]), ("scope", &params["scope"])]);
        if let Some((name, password)) = user {
            token_request = token_request.basic_auth(name, Some(password));
        }
        let token: serde_json::Value = token_request.send().await.unwrap().json().await.unwrap();
        let token = token["access_token"].as_str().unwrap().to_string();

        let response = client
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, challenge)
    })
}

#[test]
fn token_challenge_followed_by_hand() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let mut layout = OciLayout::new();
    ImageBuilder::new()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/by-hand:v1");

    let (status, _) = fetch_manifest_with_token(
        &registry,
        "ferry-test/by-hand:v1",
        Some(("alice", "secret")),
    );

    assert_eq!(status, 200);
    let last = registry.token_server().unwrap().requests().pop().unwrap();
    assert_eq!(
        last.scopes,
        vec!["repository:ferry-test/by-hand:pull".to_string()]
    );
    assert_eq!(last.service.as_deref(), Some("ferry-test-registry"));
}

#[test]
fn token_realm_uses_localhost_on_another_port() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let realm = registry.token_server().unwrap().realm();
    let url = url::Url::parse(&realm).unwrap();
    assert_eq!(url.host_str(), Some("localhost"));
    assert_ne!(url.port(), Some(registry.port()));
}

#[test]
fn token_denied_user_gets_insufficient_scope() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let mut layout = OciLayout::new();
    ImageBuilder::new()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/denied:v1");
    registry.token_server().unwrap().deny("alice");

    let (status, challenge) =
        fetch_manifest_with_token(&registry, "ferry-test/denied:v1", Some(("alice", "secret")));

    assert_eq!(status, 401);
    assert!(
        challenge.contains("insufficient_scope"),
        "challenge {challenge:?}"
    );
}

#[test]
fn token_anonymous_pull_when_allowed() {
    let pki = Pki::new();
    let mut options = TokenOptions::with_users(vec![TokenUser::new("alice", "secret")]);
    options.anonymous_pull = true;
    let registry = Registry::start_token_with(&pki, options);
    let mut layout = OciLayout::new();
    ImageBuilder::new()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    registry.push(&layout, "v1", "ferry-test/anonymous:v1");

    let (status, _) = fetch_manifest_with_token(&registry, "ferry-test/anonymous:v1", None);

    assert_eq!(status, 200);
    let last = registry.token_server().unwrap().requests().pop().unwrap();
    assert_eq!(last.account, None);
}

#[test]
fn token_rejected_after_registry_lifetime() {
    let pki = Pki::new();
    let mut options = TokenOptions::with_users(vec![TokenUser::new("alice", "secret")]);
    options.expires_in = 1;
    options.registry_lifetime = Some(Duration::from_secs(2));
    let registry = Registry::start_token_with(&pki, options);
    let client = registry.client();
    let tokens = registry.token_server().unwrap();
    let url = format!("{}/v2/", registry.url());

    let token: serde_json::Value = block_on(async {
        let request = client
            .get(tokens.realm())
            .query(&[("service", tokens.service())])
            .basic_auth("alice", Some("secret"));
        request.send().await.unwrap().json().await.unwrap()
    });
    assert_eq!(token["expires_in"], 1);
    let token = token["token"].as_str().unwrap().to_string();
    let status = || {
        block_on(async { client.get(&url).bearer_auth(&token).send().await })
            .unwrap()
            .status()
            .as_u16()
    };

    assert_eq!(status(), 200);
    std::thread::sleep(Duration::from_millis(3_500));
    assert_eq!(status(), 401);
}

#[test]
fn token_post_password_grant() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let tokens = registry.token_server().unwrap();
    let form = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "secret"),
        ("service", tokens.service()),
        ("client_id", "ferry-test"),
        (
            "scope",
            "repository:ferry-test/a:pull repository:ferry-test/b:pull,push",
        ),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = block_on(async {
        let response = registry
            .client()
            .post(tokens.realm())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<serde_json::Value>().await.unwrap(),
        )
    });

    assert_eq!(response.0, 200);
    assert!(response.1["access_token"].is_string());
    let last = tokens.requests().pop().unwrap();
    assert_eq!(
        last.granted,
        vec![
            "repository:ferry-test/a:pull".to_string(),
            "repository:ferry-test/b:pull,push".to_string()
        ]
    );
}

#[test]
fn token_pull_only_user_gets_no_push() {
    let pki = Pki::new();
    let options = TokenOptions::with_users(vec![
        TokenUser::new("alice", "secret"),
        TokenUser::pull_only("bob", "reader"),
    ]);
    let registry = Registry::start_token_with(&pki, options);
    let tokens = registry.token_server().unwrap();
    let status = block_on(async {
        registry
            .client()
            .get(tokens.realm())
            .query(&[
                ("service", tokens.service()),
                ("scope", "repository:ferry-test/x:pull,push"),
            ])
            .basic_auth("bob", Some("reader"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    let last = tokens.requests().pop().unwrap();
    assert_eq!(
        last.granted,
        vec!["repository:ferry-test/x:pull".to_string()]
    );
}

// ---------------------------------------------------------------------------------------------
// Fault proxy

/// Starts a plain registry with one image (a single 200 000-byte layer) and a proxy in front,
/// and returns them with the image and the proxied blob URL.
fn proxied_registry(label: &str) -> (Registry, FaultProxy, BuiltImage, String) {
    let registry = Registry::start_plain();
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(200_000).uncompressed())
        .write(&mut layout, "v1");
    let repository = format!("ferry-test/{label}");
    registry.push(&layout, "v1", &format!("{repository}:v1"));
    let proxy = FaultProxy::start(&registry);
    let blob_url = format!(
        "{}/v2/{repository}/blobs/{}",
        proxy.url(),
        image.layers[0].digest
    );
    (registry, proxy, image, blob_url)
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[test]
fn fault_proxy_forwards_unchanged() {
    let (_registry, proxy, image, blob_url) = proxied_registry("proxy-clean");
    let response =
        block_on(async { plain_client().get(&blob_url).send().await?.bytes().await }).unwrap();
    assert_eq!(sha256_digest(&response), image.layers[0].digest);
    assert_eq!(proxy.count("GET", "/blobs/"), 1);
    assert_eq!(proxy.requests()[0].status, Some(200));
}

#[test]
fn fault_proxy_cuts_body() {
    let (_registry, proxy, _image, blob_url) = proxied_registry("proxy-cut");
    let cut = proxy.add(FaultRule::new("/blobs/", Fault::CutAfter(50_000)).method("GET"));

    let mut received = 0usize;
    let result = block_on(async {
        let mut response = plain_client().get(&blob_url).send().await?;
        while let Some(chunk) = response.chunk().await? {
            received += chunk.len();
        }
        Ok::<_, reqwest::Error>(())
    });

    assert!(result.is_err(), "the cut body was read without error");
    assert_eq!(received, 50_000);
    assert_eq!(proxy.hits(cut), 1);
}

#[test]
fn fault_proxy_answers_429_once() {
    let (_registry, proxy, _image, blob_url) = proxied_registry("proxy-429");
    let limited = proxy.inject("/blobs/", Fault::TooManyRequests);
    let client = plain_client();

    let first = block_on(async { client.get(&blob_url).send().await }).unwrap();
    assert_eq!(first.status().as_u16(), 429);
    assert_eq!(first.headers()["retry-after"], "1");
    let second = block_on(async { client.get(&blob_url).send().await }).unwrap();
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(proxy.hits(limited), 1);
}

#[test]
fn fault_proxy_answers_503_counted_times() {
    let (_registry, proxy, _image, blob_url) = proxied_registry("proxy-503");
    let unavailable = proxy.add(FaultRule::new("/blobs/", Fault::ServiceUnavailable).times(2));
    let client = plain_client();
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            block_on(async { client.get(&blob_url).send().await })
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    assert_eq!(proxy.hits(unavailable), 2);
}

#[test]
fn fault_proxy_flips_byte() {
    let (_registry, proxy, image, blob_url) = proxied_registry("proxy-flip");
    proxy.inject("/blobs/", Fault::FlipByte(123_456));
    let client = plain_client();

    let corrupted = block_on(async { client.get(&blob_url).send().await?.bytes().await }).unwrap();
    let clean = block_on(async { client.get(&blob_url).send().await?.bytes().await }).unwrap();

    assert_eq!(corrupted.len(), clean.len());
    assert_ne!(sha256_digest(&corrupted), image.layers[0].digest);
    assert_eq!(corrupted[123_456], clean[123_456] ^ 0xFF);
    assert_eq!(sha256_digest(&clean), image.layers[0].digest);
}

#[test]
fn fault_proxy_records_range_headers() {
    let (_registry, proxy, image, blob_url) = proxied_registry("proxy-range");
    let response = block_on(async {
        let response = plain_client()
            .get(&blob_url)
            .header("Range", "bytes=1000-")
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.bytes().await?))
    })
    .unwrap();
    assert_eq!(response.0, 206);
    assert_eq!(response.1.len() as u64, image.layers[0].size - 1000);
    assert_eq!(proxy.ranges("/blobs/"), vec!["bytes=1000-".to_string()]);
}

#[test]
fn fault_proxy_stall_trips_client_timeout() {
    let (_registry, proxy, _image, blob_url) = proxied_registry("proxy-stall");
    let stall = Fault::Stall {
        after: 10_000,
        duration: Duration::from_secs(5),
    };
    proxy.inject("/blobs/", stall);
    let client = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(500))
        .build()
        .unwrap();

    let started = std::time::Instant::now();
    let result = block_on(async { client.get(&blob_url).send().await?.bytes().await });

    assert!(result.unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn fault_proxy_passes_skopeo_push() {
    let registry = Registry::start_plain();
    let proxy = FaultProxy::start(&registry);
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(300_000))
        .write(&mut layout, "v1");
    let source = layout.skopeo_reference("v1");
    let destination = format!("docker://{}/ferry-test/through-proxy:v1", proxy.host());

    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        source.as_str(),
        destination.as_str(),
    ]);

    assert_eq!(
        registry.manifest_digest("ferry-test/through-proxy:v1"),
        image.manifest_digest
    );
    assert!(proxy.count("PUT", "/manifests/v1") == 1);
}

#[tokio::test]
async fn servers_start_inside_async_test() {
    let pki = Pki::new();
    let registry = Registry::start_token(&pki, &[("alice", "secret")]);
    let plain = Registry::start_plain();
    let proxy = FaultProxy::start(&plain);
    proxy.inject("/v2/", Fault::ServiceUnavailable);

    let token_registry = registry
        .client()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await;
    let proxied = plain_client()
        .get(format!("{}/v2/", proxy.url()))
        .send()
        .await;

    assert_eq!(token_registry.unwrap().status().as_u16(), 401);
    assert_eq!(proxied.unwrap().status().as_u16(), 503);
}

// ---------------------------------------------------------------------------------------------
// Docker engine

#[test]
fn docker_load_accepts_built_image() {
    let repository = unique_repo("harness-load");
    let guard = RepoGuard::new(repository.clone());
    let mut layout = OciLayout::new();
    let repeated = LayerSpec::random(20_000);
    let image = ImageBuilder::new()
        .layer(repeated.clone())
        .layer(LayerSpec::from_file(
            std::path::Path::new("/usr/bin/skopeo"),
            "usr/bin/copy",
        ))
        .layer(LayerSpec::random(5_000).uncompressed())
        .layer(repeated)
        .write(&mut layout, "v1");
    let archive = tempfile::tempdir().unwrap();
    let archive_path = archive.path().join("image.tar");
    let source = layout.skopeo_reference("v1");
    let destination = format!("docker-archive:{}:{repository}:v1", archive_path.display());
    skopeo(&["copy", source.as_str(), destination.as_str()]);

    let output = docker_load(&archive_path);

    assert!(
        output.contains(&format!("{repository}:v1")),
        "docker load printed {output:?}"
    );
    let inspected = docker_inspect(&format!("{repository}:v1")).expect("image missing after load");
    assert_eq!(inspected["Id"], image.image_id());
    let layers: Vec<String> =
        serde_json::from_value(inspected["RootFS"]["Layers"].clone()).unwrap();
    assert_eq!(layers, image.diff_ids());

    drop(guard);
    assert!(docker_inspect(&format!("{repository}:v1")).is_none());
}

/// Writes image `tag` of `layout` as a docker-archive tagged `<repository>:<tag>` and loads it.
fn load_into_docker(layout: &OciLayout, tag: &str, repository: &str) {
    let archive = tempfile::tempdir().unwrap();
    let archive_path = archive.path().join("image.tar");
    let source = layout.skopeo_reference(tag);
    let destination = format!(
        "docker-archive:{}:{repository}:{tag}",
        archive_path.display()
    );
    skopeo(&["copy", source.as_str(), destination.as_str()]);
    docker_load(&archive_path);
}

#[test]
fn docker_remove_repo_keeps_other_repo() {
    let removed = unique_repo("harness-removed");
    let kept = unique_repo("harness-kept");
    let _guards = (
        RepoGuard::new(removed.clone()),
        RepoGuard::new(kept.clone()),
    );
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new()
        .layer(LayerSpec::random(1_000))
        .write(&mut layout, "v1");
    load_into_docker(&layout, "v1", &removed);
    load_into_docker(&layout, "v1", &kept);

    docker_remove_repo(&removed);

    assert!(docker_inspect(&format!("{removed}:v1")).is_none());
    let inspected =
        docker_inspect(&format!("{kept}:v1")).expect("image of the other repository is gone");
    assert_eq!(inspected["Id"], image.image_id());
}

#[test]
fn docker_inspect_missing_returns_none() {
    let repository = unique_repo("harness-missing");
    assert!(docker_inspect(&format!("{repository}:v1")).is_none());
}

#[test]
fn docker_remove_repo_ignores_missing() {
    docker_remove_repo(&unique_repo("harness-never-loaded"));
}

#[test]
fn unique_repo_names_differ() {
    let first = unique_repo("warmup-basic");
    let second = unique_repo("warmup-basic");
    assert_ne!(first, second);
    assert!(first.starts_with("ferry-test/warmup-basic-"));
}

// ---------------------------------------------------------------------------------------------
// ferry command

#[test]
fn ferry_cmd_uses_empty_docker_config() {
    let cmd = ferry_cmd();
    let dir = cmd.env_dirs().docker_config_dir();
    assert!(dir.is_dir());
    assert_eq!(fs_err::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn ferry_cmd_runs_binary() {
    ferry_cmd().arg("--help").assert().success();
}
