//! Image references (`host[:port]/path/name[:tag][@sha256:...]`) and the expansion of the
//! short names used in the provisioning inventory.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::Digest;

/// Default tag when an entry names none.
pub const DEFAULT_TAG: &str = "latest";

static COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$").unwrap());
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$").unwrap());
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$").unwrap()
});

/// A fully qualified image reference: registry host, repository, and a tag, a digest or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host` or `host:port`, as written.
    pub registry: String,
    /// Repository path inside the registry, such as `team/reemosbchromium`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Error for a rejected reference or registry address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {entry:?}: {rule}")]
    Invalid { entry: String, rule: String },
    #[error("image {entry:?} has no registry host and REGISTRY_URL is not set: set REGISTRY_URL or write the full reference (host/name:tag)")]
    NoRegistry { entry: String },
    #[error("invalid REGISTRY_URL {value:?}: {rule}")]
    InvalidRegistryUrl { value: String, rule: String },
}

/// A registry address from `REGISTRY_URL`: host, optional namespace path, and whether the
/// operator asked for plain HTTP with an `http://` scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryUrl {
    pub host: String,
    pub namespace: Option<String>,
    pub plain_http: bool,
}

impl RegistryUrl {
    /// Parses `host[:port][/namespace]`, optionally with an `https://` or `http://` scheme.
    pub fn parse(value: &str) -> Result<RegistryUrl, ReferenceError> {
        let invalid = |rule: &str| ReferenceError::InvalidRegistryUrl { value: value.to_owned(), rule: rule.to_owned() };
        let trimmed = value.trim().trim_end_matches('/');
        let (plain_http, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
            (false, rest)
        } else if let Some(rest) = trimmed.strip_prefix("http://") {
            (true, rest)
        } else if trimmed.contains("://") {
            return Err(invalid("the only schemes accepted are https:// and http://"));
        } else {
            (false, trimmed)
        };
        let (host, namespace) = match rest.split_once('/') {
            Some((host, path)) => (host, Some(path)),
            None => (rest, None),
        };
        if host.is_empty() || !HOST.is_match(host) {
            return Err(invalid("expected a registry host such as registry.example.com or 10.0.0.5:5000"));
        }
        if let Some(path) = namespace {
            if let Some(bad) = path.split('/').find(|c| !COMPONENT.is_match(c)) {
                return Err(invalid(&format!(
                    "namespace component {bad:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
                )));
            }
        }
        Ok(RegistryUrl { host: host.to_owned(), namespace: namespace.map(str::to_owned), plain_http })
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}", self.host, ns),
            None => f.write_str(&self.host),
        }
    }
}

/// True when the first path component of a reference names a registry host, by Docker's rule:
/// it contains a dot or a colon, or is `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

impl Reference {
    /// Parses a full reference that names its registry host.
    pub fn parse(entry: &str) -> Result<Reference, ReferenceError> {
        let invalid = |rule: String| ReferenceError::Invalid { entry: entry.to_owned(), rule };
        let Some((host, rest)) = entry.split_once('/').filter(|(host, _)| looks_like_host(host)) else {
            return Err(ReferenceError::NoRegistry { entry: entry.to_owned() });
        };
        if !HOST.is_match(host) {
            return Err(invalid(format!("registry host {host:?} is not a valid host[:port]")));
        }
        let (name, tag, digest) = split_name(rest).map_err(invalid)?;
        Ok(Reference { registry: host.to_owned(), repository: name, tag, digest })
    }

    /// Expands a warmup entry. A short name (`chromium`, `ssh:2.1`) becomes
    /// `<registry>[/<namespace>]/<prefix><name>:<tag or latest>`. A full reference passes through,
    /// with `latest` added when it names neither tag nor digest.
    pub fn expand(entry: &str, registry: Option<&RegistryUrl>, prefix: &str) -> Result<Reference, ReferenceError> {
        let entry = entry.trim();
        let invalid = |rule: String| ReferenceError::Invalid { entry: entry.to_owned(), rule };
        if entry.is_empty() {
            return Err(invalid("the entry is empty".into()));
        }
        if entry.chars().any(char::is_whitespace) {
            return Err(invalid("a reference cannot contain spaces; separate list entries with commas".into()));
        }
        let first = entry.split('/').next().unwrap_or_default();
        let mut reference = if entry.contains('/') && looks_like_host(first) {
            Reference::parse(entry)?
        } else {
            if entry.contains('/') {
                return Err(invalid(format!(
                    "{first:?} is not a registry host (a host contains a dot or a port, or is localhost): write a short name such as chromium, or a full reference such as registry.example.com/{entry}"
                )));
            }
            let Some(registry) = registry else {
                return Err(ReferenceError::NoRegistry { entry: entry.to_owned() });
            };
            let (name, tag, digest) = split_name(&format!("{prefix}{entry}")).map_err(|rule| match prefix {
                "" => invalid(rule),
                _ => invalid(format!("{rule} (after adding the REGISTRY_ENV prefix {prefix:?})")),
            })?;
            let repository = match &registry.namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            };
            Reference { registry: registry.host.clone(), repository, tag, digest }
        };
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// Returns the tag or digest to request from the registry. The digest wins when both are set.
    pub fn lookup(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// `registry/repository:tag`, the name Docker shows, or `None` for a digest-only reference.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|tag| format!("{}/{}:{}", self.registry, self.repository, tag))
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Splits `path[:tag][@digest]` and checks each part against the distribution grammar.
fn split_name(rest: &str) -> Result<(String, Option<String>, Option<Digest>), String> {
    let (before_digest, digest) = match rest.split_once('@') {
        Some((before, digest)) => {
            let digest: Digest = digest.parse().map_err(|_| format!("digest {digest:?} must be sha256: followed by 64 lowercase hex characters"))?;
            (before, Some(digest))
        }
        None => (rest, None),
    };
    let (path, tag) = match before_digest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (before_digest, None),
    };
    if let Some(tag) = tag {
        if !TAG.is_match(tag) {
            return Err(format!(
                "tag {tag:?} must start with a letter, digit or '_' and contain at most 128 letters, digits, '.', '_' or '-'"
            ));
        }
    }
    if path.is_empty() {
        return Err("the repository name is empty".into());
    }
    for component in path.split('/') {
        if !COMPONENT.is_match(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
            ));
        }
    }
    if path.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    Ok((path.to_owned(), tag.map(str::to_owned), digest))
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(value: &str) -> RegistryUrl {
        RegistryUrl::parse(value).unwrap()
    }

    #[test]
    fn short_name_gets_registry_prefix_and_latest() {
        let reference = Reference::expand("chromium", Some(&registry("registry.reemo.io")), "reemosb").unwrap();
        assert_eq!(reference.to_string(), "registry.reemo.io/reemosbchromium:latest");
    }

    #[test]
    fn short_name_keeps_tag_and_namespace() {
        let reference = Reference::expand("ssh:2.1", Some(&registry("https://10.0.0.5:5000/team/")), "dev").unwrap();
        assert_eq!(reference.to_string(), "10.0.0.5:5000/team/devssh:2.1");
    }

    #[test]
    fn full_reference_passes_through() {
        let reference = Reference::expand("127.0.0.1:5000/a/b:1", Some(&registry("other.example")), "x").unwrap();
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "a/b");
        assert_eq!(reference.tag.as_deref(), Some("1"));
    }

    #[test]
    fn digest_pins() {
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let reference = Reference::expand(&format!("localhost:5000/app@{digest}"), None, "").unwrap();
        assert_eq!(reference.digest.as_ref().unwrap().as_str(), digest);
        assert_eq!(reference.tag, None);
        assert_eq!(reference.lookup(), digest);
    }

    #[test]
    fn uppercase_name_is_rejected_with_rule() {
        let err = Reference::expand("Chromium", Some(&registry("r.example")), "").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"Chromium\""), "{message}");
        assert!(message.contains("lowercase"), "{message}");
    }

    #[test]
    fn name_without_host_is_rejected() {
        let err = Reference::expand("team/chromium", Some(&registry("r.example")), "").unwrap_err();
        assert!(err.to_string().contains("not a registry host"), "{err}");
    }

    #[test]
    fn bad_tag_is_rejected() {
        let err = Reference::expand("r.example/app:-bad", None, "").unwrap_err();
        assert!(err.to_string().contains("tag \"-bad\""), "{err}");
    }

    #[test]
    fn short_name_without_registry_fails() {
        let err = Reference::expand("chromium", None, "").unwrap_err();
        assert!(matches!(err, ReferenceError::NoRegistry { .. }));
    }

    #[test]
    fn registry_url_schemes() {
        assert!(registry("http://127.0.0.1:5000").plain_http);
        assert!(!registry("https://r.example").plain_http);
        assert!(RegistryUrl::parse("ftp://r.example").is_err());
        assert!(RegistryUrl::parse("r.example/Team").is_err());
    }
}
