//! Proxy settings as `ferry check` shows them, without user or password: ferry's own (from the
//! settings), the daemon's (from `GET /info`) and those `ferry proxy configure` writes.

use serde::Serialize;
use url::Url;

use crate::daemon_proxy::DaemonProxy;
use crate::proxy::{ProxyConfig, ProxyUrl};

/// Proxy settings of one side, with URLs shown without user or password.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxySettings {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

/// Returns `scheme://host:port` of a proxy, leaving out its user and password.
pub fn shown(proxy: &ProxyUrl) -> String {
    format!("{}://{}", proxy.url().scheme(), proxy.address())
}

/// Returns the proxy a request to `url` goes through with `config`, shown without user or
/// password, or `None` for a direct connection.
pub fn route(config: &ProxyConfig, url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    config.proxy_for(&url).map(shown)
}

impl ProxySettings {
    /// Returns ferry's settings, shown without user or password.
    pub fn of_ferry(config: &ProxyConfig) -> ProxySettings {
        ProxySettings {
            http_proxy: config.http.as_ref().map(shown),
            https_proxy: config.https.as_ref().map(shown),
            no_proxy: Some(config.no_proxy.as_str().to_owned()).filter(|text| !text.is_empty()),
        }
    }

    /// Returns the settings `ferry proxy configure` writes for the daemon, shown without user or
    /// password.
    pub fn of_expected(proxy: &DaemonProxy) -> ProxySettings {
        ProxySettings { http_proxy: proxy.http.as_ref().map(shown), https_proxy: proxy.https.as_ref().map(shown), no_proxy: Some(proxy.no_proxy_text()) }
    }

    /// Returns the daemon's settings from the values `GET /info` reports, shown without user or
    /// password.
    pub fn of_daemon(http_proxy: Option<&str>, https_proxy: Option<&str>, no_proxy: Option<&str>) -> ProxySettings {
        ProxySettings {
            http_proxy: present(http_proxy).map(show_text),
            https_proxy: present(https_proxy).map(show_text),
            no_proxy: present(no_proxy).map(str::to_owned),
        }
    }
}

/// Returns a value that is set and not blank, trimmed.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Shows a proxy value from the daemon without user or password; a value that does not parse
/// keeps only what follows its last `@`.
fn show_text(value: &str) -> String {
    match ProxyUrl::parse(value) {
        Ok(url) => shown(&url),
        Err(_) => match value.rsplit_once('@') {
            Some((_, host)) => host.to_owned(),
            None => value.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::NoProxy;

    fn config(http: Option<&str>, https: Option<&str>, no_proxy: &str) -> ProxyConfig {
        ProxyConfig {
            http: http.map(|u| ProxyUrl::parse(u).unwrap()),
            https: https.map(|u| ProxyUrl::parse(u).unwrap()),
            no_proxy: NoProxy::parse(no_proxy).unwrap(),
        }
    }

    #[test]
    fn route_hides_credentials_and_honours_no_proxy() {
        let config = config(None, Some("http://user:secret@proxy.example:3128"), ".internal");
        assert_eq!(route(&config, "https://registry.example.com/v2/").as_deref(), Some("http://proxy.example:3128"));
        assert_eq!(route(&config, "https://registry.internal/v2/"), None);
        assert_eq!(route(&config, "http://registry.example.com/v2/"), None, "no HTTP proxy is set");
    }

    #[test]
    fn daemon_values_lose_their_password() {
        let daemon = ProxySettings::of_daemon(Some("http://ops:secret@proxy:3128"), Some("ops:secret@not a url"), Some(""));
        assert_eq!(daemon.http_proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(daemon.https_proxy.as_deref(), Some("not a url"));
        assert_eq!(daemon.no_proxy, None);
    }
}
