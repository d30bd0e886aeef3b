//! Platforms (`os/architecture[/variant]`) and how an index entry is matched to a node, following
//! containerd's normalisation and fallback rules, which Docker uses too.

use std::fmt;
use std::str::FromStr;

/// A normalised platform such as `linux/amd64` or `linux/arm/v7`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A platform string that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {value:?}: expected os/architecture[/variant], such as linux/amd64 or linux/arm/v7")]
pub struct InvalidPlatform {
    pub value: String,
}

impl Platform {
    /// Builds a platform from its parts, normalising the architecture and variant.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let architecture = architecture.to_ascii_lowercase();
        let variant = variant.filter(|v| !v.is_empty()).map(str::to_ascii_lowercase);
        let (architecture, variant) = match (architecture.as_str(), variant.as_deref()) {
            ("x86_64" | "x86-64" | "amd64", _) => ("amd64".to_owned(), None),
            ("i386" | "i486" | "i586" | "i686" | "386", _) => ("386".to_owned(), None),
            ("aarch64" | "arm64", Some("v8") | None) => ("arm64".to_owned(), None),
            ("aarch64" | "arm64", Some(v)) => ("arm64".to_owned(), Some(v.to_owned())),
            ("armhf", _) => ("arm".to_owned(), Some("v7".to_owned())),
            ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
            ("arm", None) => ("arm".to_owned(), Some("v7".to_owned())),
            (arch, variant) => (arch.to_owned(), variant.map(str::to_owned)),
        };
        Platform { os, architecture, variant }
    }

    /// Returns the platform of the machine ferry runs on.
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
    }

    /// True for BuildKit's attestation entries (`unknown/unknown`), which are not images.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }

    /// Ranks how well an image built for `candidate` runs on `self`: `Some(0)` is an exact match,
    /// higher numbers are fallbacks (amd64 runs 386; arm/v7 runs v6 and v5), `None` means no match.
    pub fn match_rank(&self, candidate: &Platform) -> Option<u32> {
        if self.os != candidate.os {
            return None;
        }
        if self.architecture == candidate.architecture && self.variant == candidate.variant {
            return Some(0);
        }
        match (self.architecture.as_str(), candidate.architecture.as_str()) {
            ("amd64", "386") => Some(1),
            ("arm", "arm") => {
                let wanted = arm_version(self.variant.as_deref())?;
                let offered = arm_version(candidate.variant.as_deref())?;
                (offered < wanted).then(|| wanted - offered)
            }
            _ => None,
        }
    }
}

fn arm_version(variant: Option<&str>) -> Option<u32> {
    variant?.strip_prefix('v')?.parse().ok()
}

impl FromStr for Platform {
    type Err = InvalidPlatform;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = value.split('/').collect();
        let invalid = || InvalidPlatform { value: value.to_owned() };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(value: &str) -> Platform {
        value.parse().unwrap()
    }

    #[test]
    fn aliases_normalise() {
        assert_eq!(platform("linux/x86_64"), platform("linux/amd64"));
        assert_eq!(platform("linux/aarch64"), platform("linux/arm64"));
        assert_eq!(platform("linux/arm64/v8"), platform("linux/arm64"));
        assert_eq!(platform("linux/armhf"), platform("linux/arm/v7"));
        assert_eq!(platform("linux/arm"), platform("linux/arm/v7"));
    }

    #[test]
    fn fallbacks_rank_after_exact() {
        let node = platform("linux/amd64");
        assert_eq!(node.match_rank(&platform("linux/amd64")), Some(0));
        assert_eq!(node.match_rank(&platform("linux/386")), Some(1));
        assert_eq!(node.match_rank(&platform("linux/arm64")), None);
        assert_eq!(node.match_rank(&platform("windows/amd64")), None);
    }

    #[test]
    fn arm_accepts_lower_versions_only() {
        let node = platform("linux/arm/v7");
        assert_eq!(node.match_rank(&platform("linux/arm/v6")), Some(1));
        assert_eq!(platform("linux/arm/v6").match_rank(&node), None);
    }

    #[test]
    fn malformed_platform_is_rejected() {
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} should be rejected");
        }
    }
}
