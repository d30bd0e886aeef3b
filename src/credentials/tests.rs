use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// A Docker config folder and a folder of helper scripts.
struct Fixture {
    config: tempfile::TempDir,
    helpers: tempfile::TempDir,
}

impl Fixture {
    fn new(config_json: &str) -> Fixture {
        let fixture = Fixture {
            config: tempfile::tempdir().unwrap(),
            helpers: tempfile::tempdir().unwrap(),
        };
        std::fs::write(fixture.config.path().join("config.json"), config_json).unwrap();
        fixture
    }

    /// Writes `docker-credential-<name>` running `body` under /bin/sh.
    fn helper(&self, name: &str, body: &str) {
        let path = self.helpers.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn options(&self) -> HelperOptions {
        HelperOptions {
            directory: Some(self.helpers.path().to_owned()),
            timeout: Duration::from_secs(10),
        }
    }

    async fn lookup(&self, host: &str) -> Result<Option<(Credential, String)>, CredentialError> {
        lookup_with(self.config.path(), host, &self.options()).await
    }

    async fn credential(&self, host: &str) -> Option<Credential> {
        self.lookup(host).await.unwrap().map(|(credential, _)| credential)
    }
}

fn basic(username: &str, password: &str) -> Credential {
    Credential::Basic {
        username: username.into(),
        password: Secret::new(password),
    }
}

/// base64 of `user:pa:ss`.
const AUTH_USER_PASS: &str = "dXNlcjpwYTpzcw==";

/// A helper that returns fixed credentials named after itself.
fn returning(username: &str) -> String {
    format!(r#"cat >/dev/null; printf '{{"ServerURL":"x","Username":"{username}","Secret":"s-{username}"}}'"#)
}

const NOT_FOUND: &str = "cat >/dev/null; echo 'credentials not found in native keychain'; exit 1";

#[tokio::test]
async fn missing_config_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(lookup(dir.path(), "r.example").await.unwrap(), None);
}

#[tokio::test]
async fn auth_field_splits_at_first_colon() {
    let fixture = Fixture::new(&format!(
        r#"{{"auths": {{"r.example:5000": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    assert_eq!(fixture.credential("r.example:5000").await, Some(basic("user", "pa:ss")));
}

#[tokio::test]
async fn source_names_file_and_key() {
    let fixture = Fixture::new(&format!(
        r#"{{"auths": {{"r.example": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    let (_, source) = fixture.lookup("r.example").await.unwrap().unwrap();
    assert_eq!(
        source,
        format!(
            "{} (auths entry \"r.example\")",
            fixture.config.path().join("config.json").display()
        )
    );
}

#[tokio::test]
async fn username_password_fields() {
    let fixture = Fixture::new(r#"{"auths": {"r.example": {"username": "u", "password": "p"}}}"#);
    assert_eq!(fixture.credential("r.example").await, Some(basic("u", "p")));
}

#[tokio::test]
async fn identity_and_registry_tokens() {
    let fixture = Fixture::new(
        r#"{"auths": {"a.example": {"username": "u", "identitytoken": "refresh"}, "b.example": {"registrytoken": "bearer"}}}"#,
    );
    assert_eq!(
        fixture.credential("a.example").await,
        Some(Credential::IdentityToken(Secret::new("refresh")))
    );
    assert_eq!(
        fixture.credential("b.example").await,
        Some(Credential::RegistryToken(Secret::new("bearer")))
    );
}

#[tokio::test]
async fn auths_key_with_scheme_and_path() {
    let fixture = Fixture::new(&format!(
        r#"{{"auths": {{"https://R.example:5000/v1/": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    assert_eq!(fixture.credential("r.example:5000").await, Some(basic("user", "pa:ss")));
}

#[tokio::test]
async fn docker_hub_names_share_key() {
    let fixture = Fixture::new(&format!(
        r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    assert_eq!(fixture.credential("docker.io").await, Some(basic("user", "pa:ss")));
    assert_eq!(
        fixture.credential("registry-1.docker.io").await,
        Some(basic("user", "pa:ss"))
    );
}

#[tokio::test]
async fn port_must_match() {
    let fixture = Fixture::new(&format!(
        r#"{{"auths": {{"r.example:5000": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    assert_eq!(fixture.credential("r.example").await, None);
}

#[tokio::test]
async fn empty_entry_is_none() {
    let fixture = Fixture::new(r#"{"auths": {"r.example": {}}}"#);
    assert_eq!(fixture.credential("r.example").await, None);
}

#[tokio::test]
async fn invalid_auth_names_key_not_value() {
    let fixture = Fixture::new(r#"{"auths": {"r.example": {"auth": "bm8tY29sb24tc2VjcmV0"}}}"#);
    let error = fixture.lookup("r.example").await.unwrap_err().to_string();
    assert!(error.contains("\"r.example\""), "{error}");
    assert!(error.contains("config.json"), "{error}");
    assert!(!error.contains("no-colon-secret"), "{error}");
    assert!(!error.contains("bm8tY29sb24tc2VjcmV0"), "{error}");
}

#[tokio::test]
async fn malformed_config_names_file() {
    let fixture = Fixture::new("{\n  \"auths\": {\n}");
    let error = fixture.lookup("r.example").await.unwrap_err();
    let CredentialError::Malformed { line, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*line, 3);
    assert!(error.to_string().contains("config.json"), "{error}");
}

#[tokio::test]
async fn type_error_hides_value() {
    let fixture = Fixture::new(r#"{"auths": {"r.example": {"password": ["top-secret"]}}}"#);
    let error = fixture.lookup("r.example").await.unwrap_err().to_string();
    assert!(error.contains("wrong type"), "{error}");
    assert!(!error.contains("top-secret"), "{error}");
}

#[tokio::test]
async fn cred_helper_beats_store_and_auths() {
    let fixture = Fixture::new(&format!(
        r#"{{"credHelpers": {{"r.example": "per-host"}}, "credsStore": "store", "auths": {{"r.example": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    fixture.helper("per-host", &returning("per-host"));
    fixture.helper("store", &returning("store"));
    let (credential, source) = fixture.lookup("r.example").await.unwrap().unwrap();
    assert_eq!(credential, basic("per-host", "s-per-host"));
    assert_eq!(source, "credential helper docker-credential-per-host");
}

#[tokio::test]
async fn store_beats_auths() {
    let fixture = Fixture::new(&format!(
        r#"{{"credsStore": "store", "auths": {{"r.example": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    fixture.helper("store", &returning("store"));
    assert_eq!(fixture.credential("r.example").await, Some(basic("store", "s-store")));
}

#[tokio::test]
async fn helper_not_found_falls_through() {
    let fixture = Fixture::new(&format!(
        r#"{{"credHelpers": {{"r.example": "per-host"}}, "credsStore": "store", "auths": {{"r.example": {{"auth": "{AUTH_USER_PASS}"}}}}}}"#
    ));
    fixture.helper("per-host", NOT_FOUND);
    fixture.helper("store", NOT_FOUND);
    assert_eq!(fixture.credential("r.example").await, Some(basic("user", "pa:ss")));
}

#[tokio::test]
async fn helper_not_found_without_auths_is_none() {
    let fixture = Fixture::new(r#"{"credsStore": "store"}"#);
    fixture.helper("store", NOT_FOUND);
    assert_eq!(fixture.credential("r.example").await, None);
}

#[tokio::test]
async fn helper_reads_server_on_stdin() {
    let fixture = Fixture::new(r#"{"credsStore": "echo"}"#);
    fixture.helper(
        "echo",
        r#"[ "$1" = get ] || exit 3; server=$(cat); printf '{"Username":"%s","Secret":"x"}' "$server""#,
    );
    assert_eq!(
        fixture.credential("r.example:5000").await,
        Some(basic("r.example:5000", "x"))
    );
    assert_eq!(
        fixture.credential("docker.io").await,
        Some(basic("https://index.docker.io/v1/", "x"))
    );
}

#[tokio::test]
async fn helper_token_username_means_identity_token() {
    let fixture = Fixture::new(r#"{"credsStore": "store"}"#);
    fixture.helper(
        "store",
        r#"cat >/dev/null; printf '{"Username":"<token>","Secret":"refresh"}'"#,
    );
    assert_eq!(
        fixture.credential("r.example").await,
        Some(Credential::IdentityToken(Secret::new("refresh")))
    );
}

#[tokio::test]
async fn helper_timeout_is_reported() {
    let fixture = Fixture::new(r#"{"credsStore": "slow"}"#);
    fixture.helper("slow", "exec sleep 30");
    let options = HelperOptions {
        timeout: Duration::from_millis(300),
        ..fixture.options()
    };
    let started = std::time::Instant::now();
    let error = lookup_with(fixture.config.path(), "r.example", &options)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, CredentialError::HelperTimeout { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out after 300ms"), "{error}");
}

#[tokio::test]
async fn helper_failure_hides_stdout() {
    let fixture = Fixture::new(r#"{"credsStore": "broken"}"#);
    fixture.helper(
        "broken",
        "cat >/dev/null; echo 'stdout-secret'; echo 'keyring locked' >&2; exit 2",
    );
    let error = fixture.lookup("r.example").await.unwrap_err().to_string();
    assert!(error.contains("docker-credential-broken failed"), "{error}");
    assert!(error.contains("keyring locked"), "{error}");
    assert!(!error.contains("stdout-secret"), "{error}");
}

#[tokio::test]
async fn helper_bad_json_hides_stdout() {
    let fixture = Fixture::new(r#"{"credsStore": "odd"}"#);
    fixture.helper("odd", "cat >/dev/null; echo 'not json stdout-secret'");
    let error = fixture.lookup("r.example").await.unwrap_err().to_string();
    assert!(error.contains("not the JSON object"), "{error}");
    assert!(!error.contains("stdout-secret"), "{error}");
}

#[tokio::test]
async fn missing_helper_program_is_reported() {
    let fixture = Fixture::new(r#"{"credsStore": "absent"}"#);
    let error = fixture.lookup("r.example").await.unwrap_err();
    assert!(matches!(error, CredentialError::HelperNotFound { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("docker-credential-absent (from \"credsStore\""),
        "{error}"
    );
}

#[tokio::test]
async fn helper_name_with_path_is_rejected() {
    let fixture = Fixture::new(r#"{"credsStore": "../../bin/sh"}"#);
    let error = fixture.lookup("r.example").await.unwrap_err();
    assert!(matches!(error, CredentialError::InvalidHelperName { .. }), "{error:?}");
}

#[test]
fn config_dir_from_docker_config() {
    let env = |name: &str| (name == "DOCKER_CONFIG").then(|| "/etc/docker-client".to_owned());
    assert_eq!(docker_config_dir(&env), Some(PathBuf::from("/etc/docker-client")));
}

#[test]
fn config_dir_from_home() {
    let env = |name: &str| (name == "HOME").then(|| "/home/ops".to_owned());
    assert_eq!(docker_config_dir(&env), Some(PathBuf::from("/home/ops/.docker")));
}
