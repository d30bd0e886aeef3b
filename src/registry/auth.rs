//! Registry authentication: `WWW-Authenticate` challenges, Basic credentials and Bearer tokens
//! cached per realm, service and scope.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::credentials::Credential;

/// Authentication scheme a registry requests, from a 401's `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// The registry responded without requesting credentials.
    None,
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String>, error: Option<String> },
}

/// Parses a `WWW-Authenticate` value such as
/// `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"`.
/// Returns `None` for a scheme ferry does not support.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    let params = parse_params(rest);
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
        error: params.get("error").cloned(),
    })
}

/// Splits comma-separated `key=value` or `key="quoted, value"` auth-params.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_owned();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    params
}

/// Returns the `Authorization: Basic` value for a user and password.
pub fn basic_header(username: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")))
}

/// A token endpoint response. `access_token` wins over `token` when both are present.
#[derive(Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// Returns the token and how long it may be used. Lifetimes under 60 s count as 60 s, as in
    /// Docker, and the token is renewed 10 s before it expires.
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self.access_token.filter(|t| !t.is_empty()).or(self.token.filter(|t| !t.is_empty()))?;
        let lifetime = self.expires_in.unwrap_or(60).max(60);
        Some((token, Duration::from_secs(lifetime - 10)))
    }
}

/// Cache key of a Bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub realm: String,
    pub service: Option<String>,
    pub scope: String,
}

/// Bearer tokens by realm, service and scope, each dropped when it expires.
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<TokenKey, (String, Instant)>,
}

impl TokenCache {
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        let (token, expires) = self.tokens.get(key)?;
        (Instant::now() < *expires).then(|| token.clone())
    }

    pub fn insert(&mut self, key: TokenKey, token: String, lifetime: Duration) {
        self.tokens.insert(key, (token, Instant::now() + lifetime));
    }

    pub fn remove(&mut self, key: &TokenKey) {
        self.tokens.remove(key);
    }
}

/// Describes who ferry authenticates as, for messages: the user name, never the secret.
pub fn describe_user(credential: Option<&Credential>) -> String {
    match credential {
        Some(Credential::Basic { username, .. }) => format!("user {username:?}"),
        Some(Credential::IdentityToken(_)) => "an identity token".to_owned(),
        Some(Credential::RegistryToken(_)) => "a registry token".to_owned(),
        None => "anonymous access".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let header = r#"Bearer realm="https://auth.example:8443/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#;
        let challenge = parse_challenge(header).unwrap();
        assert_eq!(
            challenge,
            Challenge::Bearer {
                realm: "https://auth.example:8443/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: Some("insufficient_scope".into()),
            }
        );
    }

    #[test]
    fn basic_challenge() {
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
    }

    #[test]
    fn unknown_scheme_is_unsupported() {
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn bearer_without_realm_is_unsupported() {
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn token_response_prefers_access_token_and_floors_lifetime() {
        let response: TokenResponse = serde_json::from_str(r#"{"token":"a","access_token":"b","expires_in":5}"#).unwrap();
        let (token, lifetime) = response.into_token().unwrap();
        assert_eq!(token, "b");
        assert_eq!(lifetime, Duration::from_secs(50));
    }
}
