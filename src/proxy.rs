//! Proxy settings for ferry's own registry traffic: `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.
//!
//! One [`ProxyConfig`] applies to every host ferry talks to (registries, token realms, blob
//! redirect targets), because the registry client routes every request through
//! [`ProxyConfig::proxy_for`]. HTTPS goes through a `CONNECT` tunnel. Credentials in a proxy URL
//! (`http://user:p%40ss@proxy:3128`) are percent-decoded and sent as `Proxy-Authorization`.
//!
//! `NO_PROXY` entries, separated by commas or spaces, case-insensitive:
//! - `*` bypasses the proxy for every host;
//! - `example.com`, `.example.com` and `*.example.com` each match `example.com` and every
//!   subdomain (curl's reading, more forgiving than Go's, where a leading dot excludes the
//!   domain itself);
//! - `host:port` matches that host on that port only;
//! - an IP address matches itself, and `10.0.0.0/8` or `fd00::/8` every address in the block.
//!
//! `localhost`, `127.0.0.1` and `::1` never go through the proxy, as in Go's `net/http` and in
//! Docker. Other loopback addresses, such as 127.0.0.2, follow `NO_PROXY` like any address.

use std::fmt;
use std::net::IpAddr;

use url::Url;

/// A proxy URL. `Display` and `Debug` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    /// Parses `http://[user:password@]host:port`; a bare `host:port` gets `http://`.
    pub fn parse(value: &str) -> Result<ProxyUrl, ProxyError> {
        let text = value.trim();
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
        let invalid = |reason: String| ProxyError::InvalidUrl { value: redact_text(text), reason };
        let url = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(invalid(format!("the scheme {}:// is not supported: use http://", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no proxy host".into()));
        }
        Ok(ProxyUrl(url))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// Returns `host:port` of the proxy, for messages.
    pub fn address(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    pub fn has_credentials(&self) -> bool {
        !self.0.username().is_empty()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("xxxxx"));
        }
        f.write_str(shown.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Hides what looks like a password in a proxy URL that did not parse.
fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}xxxxx{}", &text[..start + 3], &text[at..]),
        (None, Some(at)) => format!("xxxxx{}", &text[at..]),
        _ => text.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy URL {value}: {reason}")]
    InvalidUrl { value: String, reason: String },
    #[error("invalid NO_PROXY entry {entry:?}: {reason}")]
    InvalidNoProxy { entry: String, reason: String },
}

/// One `NO_PROXY` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bypass {
    All,
    /// A domain and its subdomains, lowercase, without a leading dot.
    Domain(String),
    HostPort(String, u16),
    Ip(IpAddr),
    Block(IpAddr, u8),
}

/// The parsed `NO_PROXY` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Bypass>,
    text: String,
}

impl NoProxy {
    pub fn parse(value: &str) -> Result<NoProxy, ProxyError> {
        let mut entries = Vec::new();
        for entry in value.split([',', ' ', '\t', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
            entries.push(parse_entry(entry)?);
        }
        Ok(NoProxy { entries, text: value.trim().to_owned() })
    }

    /// Returns the list as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `host` (a name or an IP, IPv6 with or without brackets) on `port` bypasses the
    /// proxy.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        let usual_loopback = ip.is_some_and(|ip| ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        if host == "localhost" || host.ends_with(".localhost") || usual_loopback {
            return true;
        }
        self.entries.iter().any(|entry| match entry {
            Bypass::All => true,
            Bypass::Domain(domain) => host == *domain || host.strip_suffix(domain.as_str()).is_some_and(|rest| rest.ends_with('.')),
            Bypass::HostPort(name, wanted) => host == *name && port == Some(*wanted),
            Bypass::Ip(address) => ip == Some(*address),
            Bypass::Block(network, bits) => ip.is_some_and(|ip| in_block(ip, *network, *bits)),
        })
    }
}

fn parse_entry(entry: &str) -> Result<Bypass, ProxyError> {
    let invalid = |reason: &str| ProxyError::InvalidNoProxy { entry: entry.to_owned(), reason: reason.to_owned() };
    let lower = entry.to_ascii_lowercase();
    if lower == "*" {
        return Ok(Bypass::All);
    }
    if let Some((address, bits)) = lower.split_once('/') {
        let network: IpAddr = address.parse().map_err(|_| invalid("expected an address block such as 10.0.0.0/8"))?;
        let bits: u8 = bits.parse().map_err(|_| invalid("the prefix length after / must be a number"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(invalid(&format!("the prefix length must be at most {max}")));
        }
        return Ok(Bypass::Block(network, bits));
    }
    let bare = lower.trim_start_matches('[');
    if let Ok(ip) = bare.trim_end_matches(']').parse::<IpAddr>() {
        return Ok(Bypass::Ip(ip));
    }
    // `host:port`, or `[v6]:port`.
    if let Some((host, port)) = lower.rsplit_once(':') {
        let port: u16 = port.parse().map_err(|_| invalid("expected host:port with a numeric port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_start_matches("*.").trim_start_matches('.');
        return Ok(Bypass::HostPort(host.to_owned(), port));
    }
    let domain = lower.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
    if domain.is_empty() || domain.contains('*') {
        return Err(invalid("expected a host, a domain such as .example.com, an IP address or an address block"));
    }
    Ok(Bypass::Domain(domain.to_owned()))
}

fn in_block(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// The proxies for ferry's traffic, by URL scheme, and the hosts that bypass them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    pub http: Option<ProxyUrl>,
    pub https: Option<ProxyUrl>,
    pub no_proxy: NoProxy,
}

impl ProxyConfig {
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// Returns the proxy for a request to `url`, or `None` for a direct connection.
    pub fn proxy_for(&self, url: &Url) -> Option<&ProxyUrl> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        let host = url.host_str()?;
        if self.no_proxy.matches(host, url.port_or_known_default()) {
            return None;
        }
        Some(proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_proxy(text: &str) -> NoProxy {
        NoProxy::parse(text).unwrap()
    }

    #[test]
    fn domain_forms_match_subdomains() {
        for entry in ["example.com", ".example.com", "*.example.com", "EXAMPLE.com."] {
            let list = no_proxy(entry);
            assert!(list.matches("example.com", Some(443)), "{entry}");
            assert!(list.matches("registry.example.com", Some(443)), "{entry}");
            assert!(!list.matches("badexample.com", Some(443)), "{entry}");
            assert!(!list.matches("example.org", Some(443)), "{entry}");
        }
    }

    #[test]
    fn host_port_matches_port_only() {
        let list = no_proxy("registry.lan:5000");
        assert!(list.matches("registry.lan", Some(5000)));
        assert!(!list.matches("registry.lan", Some(443)));
    }

    #[test]
    fn addresses_and_blocks_match() {
        let list = no_proxy("10.1.2.3, 192.168.0.0/16 fd00::/8");
        assert!(list.matches("10.1.2.3", Some(443)));
        assert!(!list.matches("10.1.2.4", Some(443)));
        assert!(list.matches("192.168.44.7", None));
        assert!(!list.matches("192.169.0.1", None));
        assert!(list.matches("[fd12::1]", None));
        assert!(!list.matches("fe80::1", None));
    }

    #[test]
    fn star_and_loopback_bypass() {
        assert!(no_proxy("*").matches("registry.example.com", None));
        let empty = no_proxy("");
        assert!(empty.matches("localhost", None));
        assert!(empty.matches("127.0.0.1", Some(5000)));
        assert!(!empty.matches("127.0.0.5", Some(5000)));
        assert!(empty.matches("[::1]", None));
        assert!(!empty.matches("registry.example.com", None));
    }

    #[test]
    fn invalid_entries_rejected() {
        assert!(NoProxy::parse("10.0.0.0/40").is_err());
        assert!(NoProxy::parse("host:port").is_err());
        assert!(NoProxy::parse("a*b.com").is_err());
    }

    #[test]
    fn proxy_url_hides_password() {
        let url = ProxyUrl::parse("http://user:p%40ss%23w@proxy.lan:3128").unwrap();
        assert_eq!(url.to_string(), "http://user:xxxxx@proxy.lan:3128");
        assert_eq!(url.address(), "proxy.lan:3128");
        let error = ProxyUrl::parse("ftp://user:secret@proxy.lan").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
        assert_eq!(ProxyUrl::parse("proxy.lan:3128").unwrap().url().scheme(), "http");
    }

    #[test]
    fn config_picks_proxy_by_scheme() {
        let config = ProxyConfig {
            http: Some(ProxyUrl::parse("http://plain.proxy:3128").unwrap()),
            https: Some(ProxyUrl::parse("http://tls.proxy:3128").unwrap()),
            no_proxy: no_proxy(".internal"),
        };
        let https = Url::parse("https://registry.example.com/v2/").unwrap();
        assert_eq!(config.proxy_for(&https).unwrap().address(), "tls.proxy:3128");
        let http = Url::parse("http://registry.example.com:5000/v2/").unwrap();
        assert_eq!(config.proxy_for(&http).unwrap().address(), "plain.proxy:3128");
        assert!(config.proxy_for(&Url::parse("https://mirror.internal/v2/").unwrap()).is_none());
    }
}
