//! ferry's registry traffic through squid: CONNECT tunnels to TLS registries and their token
//! realm, plain HTTP, proxy credentials, refusals, and NO_PROXY.
//!
//! Registries are addressed as `registry.ferry.test` and token servers as `token.ferry.test`,
//! which squid's own hosts file maps to 127.0.0.1, because loopback addresses bypass the proxy.
//! A direct connection to those names (the NO_PROXY suffix case) needs them in /etc/hosts too,
//! which `.ci/run` adds.

mod common;

use common::*;
use serde_json::Value;

const USER: (&str, &str) = ("deploy", "Proxy-mode-pa55");

/// Pushes a one-layer image to `registry` and returns its repository and image.
fn pushed(registry: &Registry, label: &str) -> (String, BuiltImage) {
    let repo = unique_repo(label);
    let mut layout = OciLayout::new();
    let image = ImageBuilder::new().layer(LayerSpec::random(30_000).gzip()).write(&mut layout, "latest");
    registry.push(&layout, "latest", &format!("{repo}:latest"));
    (repo, image)
}

/// A token-auth registry whose realm is `token.ferry.test`, with one pushed image.
struct TokenSetup {
    pki: Pki,
    registry: Registry,
    repo: String,
    image: BuiltImage,
}

impl TokenSetup {
    fn start(label: &str) -> TokenSetup {
        let pki = Pki::new();
        let mut options = TokenOptions::with_users(vec![TokenUser::new(USER.0, USER.1)]);
        options.realm_host = "token.ferry.test".to_string();
        let registry = Registry::start_token_with(&pki, options);
        let (repo, image) = pushed(&registry, label);
        TokenSetup { pki, registry, repo, image }
    }

    fn token_port(&self) -> u16 {
        self.registry.token_server().unwrap().port()
    }

    /// Returns the image reference under the registry's proxied name.
    fn name(&self) -> String {
        format!("{}/{}:latest", self.registry.host_named("registry.ferry.test"), self.repo)
    }

    /// `ferry warmup` for the image, with the CA and the registry password.
    fn warmup(&self) -> FerryCmd {
        let mut command = ferry_cmd();
        command
            .args(["warmup", "--warmup", &self.name(), "--username", USER.0, "--ca-file"])
            .arg(self.pki.ca_file())
            .env("REGISTRY_PASSWORD", USER.1);
        command
    }
}

fn assert_no_secret(text: &str, secret: &str) {
    assert!(!text.contains(secret), "a secret leaked: {text}");
}

#[test]
fn warmup_and_save_through_squid() {
    let setup = TokenSetup::start("proxy-connect");
    let squid = Squid::start(SquidOptions { allowed_ports: vec![setup.registry.port(), setup.token_port()], user: None });
    let _guard = RepoGuard::new(setup.name().rsplit_once(':').unwrap().0);

    let mut warmup = setup.warmup();
    warmup.env("HTTPS_PROXY", squid.url());
    let (code, document, stderr) = run_json(&mut warmup);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&setup.name()).unwrap()["Id"], setup.image.image_id());

    // Both the registry and its token realm went through the tunnel.
    assert!(squid.count(&format!("CONNECT {}", setup.registry.host_named("registry.ferry.test"))) >= 1, "{:?}", squid.access_log());
    assert!(squid.count(&format!("CONNECT token.ferry.test:{}", setup.token_port())) >= 1, "{:?}", squid.access_log());

    // ferry save takes the same path.
    let before = squid.access_log().len();
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("images.tar");
    let mut save = ferry_cmd();
    save.args(["save", "--warmup", &setup.name(), "--username", USER.0, "--ca-file"])
        .arg(setup.pki.ca_file())
        .arg("-o")
        .arg(&archive)
        .env("REGISTRY_PASSWORD", USER.1)
        .env("https_proxy", squid.url());
    let (code, document, stderr) = run_json(&mut save);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(archive.exists());
    assert!(squid.access_log().len() > before, "save went through the proxy");
}

#[test]
fn mirror_through_squid() {
    let setup = TokenSetup::start("proxy-mirror");
    let destination = Registry::start_htpasswd(&setup.pki, "pusher", "Mirror-pa55-proxy");
    let allowed = vec![setup.registry.port(), setup.token_port(), destination.port()];
    let squid = Squid::start(SquidOptions { allowed_ports: allowed, user: None });

    let mut command = ferry_cmd();
    command
        .arg("mirror")
        .args(["--warmup", &setup.name(), "--username", USER.0, "--ca-file"])
        .arg(setup.pki.ca_file())
        .arg("--to")
        .arg(format!("{}/copy", destination.host_named("registry.ferry.test")))
        .env("REGISTRY_PASSWORD", USER.1)
        .env("MIRROR_REGISTRY_USERNAME", "pusher")
        .env("MIRROR_REGISTRY_PASSWORD", "Mirror-pa55-proxy")
        .env("HTTPS_PROXY", squid.url());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert!(squid.count(&format!("CONNECT {}", destination.host_named("registry.ferry.test"))) >= 1, "{:?}", squid.access_log());
    assert_eq!(destination.manifest_digest(&format!("copy/{}:latest", setup.repo)), setup.image.manifest_digest);
}

#[test]
fn plain_registry_through_squid() {
    let registry = Registry::start_plain();
    let (repo, image) = pushed(&registry, "proxy-plain");
    let squid = Squid::start(SquidOptions { allowed_ports: vec![registry.port()], user: None });
    let host = registry.host_named("registry.ferry.test");
    let name = format!("{host}/{repo}:latest");
    let _guard = RepoGuard::new(format!("{host}/{repo}"));

    let mut command = ferry_cmd();
    command.args(["warmup", "--plain-http", &host, "--warmup", &name]).env("http_proxy", squid.url());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(docker_inspect(&name).unwrap()["Id"], image.image_id());
    assert!(squid.count(&format!("GET http://{host}/v2/{repo}/blobs/")) >= 1, "{:?}", squid.access_log());
}

#[test]
fn proxy_credentials_with_special_characters() {
    let setup = TokenSetup::start("proxy-auth");
    let proxy_password = "p%a@s#s:w/rd";
    let squid = Squid::start(SquidOptions {
        allowed_ports: vec![setup.registry.port(), setup.token_port()],
        user: Some(("ferry proxy".to_string(), proxy_password.to_string())),
    });
    let _guard = RepoGuard::new(setup.name().rsplit_once(':').unwrap().0);

    // The right credentials, percent-encoded in the URL, pass.
    let mut warmup = setup.warmup();
    warmup.env("HTTPS_PROXY", squid.url_with("ferry proxy", proxy_password));
    let (code, document, stderr) = run_json(&mut warmup);
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_no_secret(&stderr, proxy_password);
    assert_no_secret(&document.to_string(), proxy_password);

    // A wrong password is a 407 with its own message, and the URL is shown without it.
    let mut warmup = setup.warmup();
    warmup.env("HTTPS_PROXY", squid.url_with("ferry proxy", "wrong-Pa55")).arg("-vv");
    let (code, document, stderr) = run_json(&mut warmup);
    assert_ne!(code, 0, "{document}");
    let error = document.to_string();
    assert!(error.contains("rejected the credentials"), "{error}\n{stderr}");
    assert!(error.contains("407"), "{error}");
    assert_no_secret(&stderr, "wrong-Pa55");
    assert_no_secret(&error, "wrong-Pa55");

    // No credentials at all.
    let mut warmup = setup.warmup();
    warmup.env("HTTPS_PROXY", squid.url());
    let (code, document, _) = run_json(&mut warmup);
    assert_ne!(code, 0);
    assert!(document.to_string().contains("requires credentials"), "{document}");
}

#[test]
fn proxy_refusals_are_named() {
    let setup = TokenSetup::start("proxy-denied");

    // The proxy allows neither the registry's nor the token server's port.
    let squid = Squid::start(SquidOptions { allowed_ports: vec![1], user: None });
    let mut warmup = setup.warmup();
    warmup.env("HTTPS_PROXY", squid.url());
    let (code, document, _) = run_json(&mut warmup);
    assert_ne!(code, 0);
    let text = document.to_string();
    assert!(text.contains("did not open a tunnel"), "{text}");
    assert!(text.contains(&setup.registry.host_named("registry.ferry.test")), "the error names the host: {text}");

    // Nothing listens at the proxy address.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut warmup = setup.warmup();
    warmup.env("HTTPS_PROXY", &dead).args(["--attempts", "1"]);
    let (code, document, _) = run_json(&mut warmup);
    assert_ne!(code, 0);
    assert!(document.to_string().contains("cannot reach proxy"), "{document}");

    // TLS verification fails behind the proxy without the CA, and the message names the proxy.
    let squid = Squid::start(SquidOptions { allowed_ports: vec![setup.registry.port(), setup.token_port()], user: None });
    let mut command = ferry_cmd();
    command
        .args(["warmup", "--warmup", &setup.name(), "--username", USER.0])
        .env("REGISTRY_PASSWORD", USER.1)
        .env("HTTPS_PROXY", squid.url());
    let (code, document, _) = run_json(&mut command);
    assert_ne!(code, 0);
    let text = document.to_string();
    assert!(text.contains("TLS verification failed"), "{text}");
    assert!(text.contains("through proxy"), "{text}");
}

#[test]
fn no_proxy_by_suffix_and_block() {
    // By address block: a registry on 127.0.0.2, which is not exempt by default.
    let registry = Registry::start_plain_at("127.0.0.2");
    let (repo, _) = pushed(&registry, "proxy-cidr");
    let squid = Squid::start(SquidOptions { allowed_ports: vec![registry.port()], user: None });
    let name = format!("{}/{repo}:latest", registry.host());
    let _guard = RepoGuard::new(format!("{}/{repo}", registry.host()));
    let run = |no_proxy: Option<&str>| -> (i32, Value, String) {
        let mut command = ferry_cmd();
        command.args(["warmup", "--dry-run", "--plain-http", &registry.host(), "--warmup", &name]).env("HTTP_PROXY", squid.url());
        if let Some(list) = no_proxy {
            command.env("NO_PROXY", list);
        }
        run_json(&mut command)
    };
    let (code, document, stderr) = run(None);
    assert_eq!(code, 0, "{document}\n{stderr}");
    let proxied = squid.count("127.0.0.2");
    assert!(proxied >= 1, "{:?}", squid.access_log());
    let (code, document, stderr) = run(Some("10.0.0.0/8,127.0.0.0/24"));
    assert_eq!(code, 0, "{document}\n{stderr}");
    assert_eq!(squid.count("127.0.0.2"), proxied, "NO_PROXY by block bypassed the proxy");

    // By domain suffix: the proxy address is dead, so only a direct connection succeeds.
    let setup = TokenSetup::start("proxy-suffix");
    for list in [".ferry.test", "*.ferry.test", "ferry.test"] {
        let mut warmup = setup.warmup();
        warmup.args(["--dry-run"]).env("HTTPS_PROXY", format!("http://127.0.0.1:{}", free_port())).env("NO_PROXY", list);
        let (code, document, stderr) = run_json(&mut warmup);
        assert_eq!(code, 0, "NO_PROXY={list}: {document}\n{stderr}");
    }
}

#[test]
fn proxy_hosts_lists_registry_and_realm() {
    let setup = TokenSetup::start("proxy-hosts");
    let squid = Squid::start(SquidOptions { allowed_ports: vec![setup.registry.port(), setup.token_port()], user: None });

    let mut command = ferry_cmd();
    command
        .args(["proxy", "hosts", "--warmup", &setup.name(), "--username", USER.0, "--ca-file"])
        .arg(setup.pki.ca_file())
        .env("REGISTRY_PASSWORD", USER.1)
        .env("HTTPS_PROXY", squid.url());
    let (code, document, stderr) = run_json(&mut command);
    assert_eq!(code, 0, "{document}\n{stderr}");
    let hosts: Vec<&str> = document["hosts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    let registry_host = setup.registry.host_named("registry.ferry.test");
    let token_host = format!("token.ferry.test:{}", setup.token_port());
    assert!(hosts.contains(&registry_host.as_str()), "{hosts:?}");
    assert!(hosts.contains(&token_host.as_str()), "{hosts:?}");

    // The discovery itself went through the proxy, to both hosts.
    assert!(squid.count(&format!("CONNECT {registry_host}")) >= 1, "{:?}", squid.access_log());
    assert!(squid.count(&format!("CONNECT {token_host}")) >= 1, "{:?}", squid.access_log());
}

#[test]
fn plain_http_refusal_names_host() {
    let registry = Registry::start_plain();
    let (repo, _) = pushed(&registry, "proxy-plain-denied");
    // Squid returns 403 itself for a port it does not allow.
    let squid = Squid::start(SquidOptions { allowed_ports: vec![1], user: None });
    let host = registry.host_named("registry.ferry.test");

    let mut command = ferry_cmd();
    command.args(["warmup", "--dry-run", "--plain-http", &host, "--warmup", &format!("{host}/{repo}:latest")]).env("HTTP_PROXY", squid.url());
    let (code, document, stderr) = run_json(&mut command);
    assert_ne!(code, 0, "{document}\n{stderr}");
    let text = document.to_string();
    assert!(text.contains("refused access to"), "{text}");
    assert!(text.contains("(HTTP 403)"), "{text}");
    assert!(text.contains(&host), "{text}");
}
