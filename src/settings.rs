//! The provisioning settings (registry, credentials, images to preload) and where each came from.
//!
//! Each setting is read from, lowest to highest: the Ansible inventory, the environment variable
//! of the same name, and the command line. The password never comes from a plain flag: it comes
//! from `REGISTRY_PASSWORD` (inventory or environment) or from standard input.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::inventory::{Inventory, InventoryError, InventoryValue, Unevaluable, View};
use crate::proxy::{NoProxy, ProxyConfig, ProxyUrl};
use crate::reference::{Reference, ReferenceError, RegistryUrl};

/// Warmup list used when no source sets `PROVISION_IMAGE_WARMUP`.
pub const DEFAULT_WARMUP: &[&str] = &["chromium"];

/// A variable ferry reads, with its name in the inventory and environment and the
/// command-line flag that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    RegistryUrl,
    RegistryEnv,
    Username,
    Password,
    Warmup,
    HttpProxy,
    HttpsProxy,
    NoProxy,
    Mirrors,
}

impl Variable {
    /// Returns the name in the inventory and in the environment.
    pub fn name(self) -> &'static str {
        match self {
            Variable::RegistryUrl => "REGISTRY_URL",
            Variable::RegistryEnv => "REGISTRY_ENV",
            Variable::Username => "REGISTRY_USERNAME",
            Variable::Password => "REGISTRY_PASSWORD",
            Variable::Warmup => "PROVISION_IMAGE_WARMUP",
            Variable::HttpProxy => "HTTP_PROXY",
            Variable::HttpsProxy => "HTTPS_PROXY",
            Variable::NoProxy => "NO_PROXY",
            Variable::Mirrors => "REGISTRY_MIRRORS",
        }
    }

    /// Returns the command-line flag that sets the variable. The CLI must define flags with these names.
    pub fn flag(self) -> &'static str {
        match self {
            Variable::RegistryUrl => "--registry-url",
            Variable::RegistryEnv => "--registry-env",
            Variable::Username => "--username",
            Variable::Password => "--password-stdin",
            Variable::Warmup => "--warmup",
            Variable::HttpProxy => "--http-proxy",
            Variable::HttpsProxy => "--https-proxy",
            Variable::NoProxy => "--no-proxy",
            Variable::Mirrors => "--registry-mirror",
        }
    }

    /// Tells how to set the variable without the inventory.
    fn alternative(self) -> String {
        match self {
            Variable::Password => {
                format!("set {} in the environment or pipe it to {}", self.name(), self.flag())
            }
            _ => format!("set {} in the environment or pass {}", self.name(), self.flag()),
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A secret string. `Debug` and `Display` print `<redacted>`; [`Secret::expose`] returns the
/// value. The memory is not zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Origin of a setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The inventory; `origin` is the file, line and group or host, as
    /// `inventory.yml line 4 (group "all")`.
    Inventory {
        origin: String,
    },
    Environment,
    Flag,
    Stdin,
    Default,
}

/// Prints the source so that it reads after "from": `from the environment`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Inventory { origin } => f.write_str(origin),
            Source::Environment => f.write_str("the environment"),
            Source::Flag => f.write_str("the command line"),
            Source::Stdin => f.write_str("standard input"),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// A value and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The resolved provisioning settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `REGISTRY_URL`, parsed; `None` when no source sets it.
    pub registry_url: Option<Setting<RegistryUrl>>,
    /// `REGISTRY_ENV`, the prefix added to short image names; `""` by default.
    pub registry_env: Setting<String>,
    pub username: Option<Setting<String>>,
    pub password: Option<Setting<Secret>>,
    /// `PROVISION_IMAGE_WARMUP` entries as written (short names or full references); never
    /// empty. [`images`] expands them.
    pub warmup: Setting<Vec<String>>,
    /// `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` for ferry's own traffic; empty for direct
    /// connections.
    pub proxy: ProxyConfig,
    /// `REGISTRY_MIRRORS`: registries tried before each image's own, in order, such as a
    /// pull-through cache near the nodes.
    pub mirrors: Vec<RegistryUrl>,
    /// The inventory read and whose variables were used; `None` without an inventory.
    pub inventory: Option<InventoryUse>,
}

/// The inventory the settings were read from and the view used, for the CLI to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryUse {
    pub path: PathBuf,
    /// The host whose view was used, or `None` for the `all` group alone.
    pub host: Option<String>,
    /// Number of hosts the inventory lists.
    pub host_count: usize,
    /// Vars files skipped because they are encrypted whole with Ansible Vault.
    pub encrypted_files: Vec<PathBuf>,
}

/// Values from the command line, which win over the environment and the inventory.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub registry_url: Option<String>,
    pub registry_env: Option<String>,
    pub username: Option<String>,
    /// `--warmup` values; each may hold several entries separated by commas.
    pub warmup: Vec<String>,
    /// The password read by `--password-stdin`.
    pub password: Option<Secret>,
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// `--registry-mirror` values; each may hold several entries separated by commas.
    pub mirrors: Vec<String>,
}

/// Error resolving the settings. No message contains a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("a host ({host:?}) was given without an inventory: pass the inventory file too, or drop the host")]
    HostWithoutInventory { host: String },
    #[error("{variable} in {origin} is {kind}{quoted_value}, which ferry cannot {action}: {fix}")]
    Unevaluable {
        variable: Variable,
        origin: String,
        kind: Unevaluable,
        action: &'static str,
        /// The template text, quoted, for variables that are not secret; empty otherwise.
        quoted_value: String,
        fix: String,
    },
    #[error("{variable} from {from} must be {expected}, found {found}")]
    WrongType {
        variable: Variable,
        from: Source,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{message} (REGISTRY_URL from {from})")]
    InvalidRegistryUrl { from: Source, message: String },
    #[error("invalid REGISTRY_MIRRORS entry from {from}: {message}")]
    InvalidMirror { from: Source, message: String },
    #[error("{source} ({variable} from {from})")]
    InvalidProxy { variable: Variable, from: Source, source: crate::proxy::ProxyError },
    #[error("PROVISION_IMAGE_WARMUP from {from} is empty: list at least one image, such as chromium or registry.example.com/team/app:1.0")]
    EmptyWarmup { from: Source },
    #[error("invalid PROVISION_IMAGE_WARMUP from {from}: {message}")]
    InvalidWarmup { from: Source, message: String },
}

/// Resolves the settings from an inventory (optional), the environment and the command line.
///
/// `host` selects the inventory host whose variables are used. Without it, the machine's own
/// host is used when the inventory lists it, else the `all` group (see [`Inventory::vars_for`]).
/// `env` returns an environment variable. An empty environment variable counts as unset,
/// except `REGISTRY_ENV`, where `""` is a valid value. An inventory variable set to null
/// (`REGISTRY_URL:` with no value) also counts as unset.
pub fn resolve(
    inventory: Option<&Path>,
    host: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &Overrides,
) -> Result<Settings, SettingsError> {
    let view = match (inventory, host) {
        (Some(path), host) => {
            let inventory = Inventory::load(path)?;
            let hosts = inventory.hosts().len();
            Some((path, inventory.vars_for(host)?, hosts))
        }
        (None, Some(host)) => return Err(SettingsError::HostWithoutInventory { host: host.to_owned() }),
        (None, None) => None,
    };
    let sources = Sources {
        view: view.as_ref().map(|(_, view, _)| view),
        env,
        flags,
    };

    let registry_url = match sources.text(Variable::RegistryUrl, flags.registry_url.as_deref())? {
        Some(Setting { value, source }) => {
            let url = RegistryUrl::parse(&value).map_err(|error| SettingsError::InvalidRegistryUrl {
                from: source.clone(),
                message: error.to_string(),
            })?;
            Some(Setting { value: url, source })
        }
        None => None,
    };
    let registry_env = sources
        .text(Variable::RegistryEnv, flags.registry_env.as_deref())?
        .unwrap_or(Setting {
            value: String::new(),
            source: Source::Default,
        });
    let username = sources.text(Variable::Username, flags.username.as_deref())?;
    let password = match &flags.password {
        Some(secret) => Some(Setting {
            value: secret.clone(),
            source: Source::Stdin,
        }),
        None => sources
            .text(Variable::Password, None)?
            .map(|Setting { value, source }| Setting {
                value: Secret(value),
                source,
            }),
    };
    let warmup = sources.warmup()?;
    let proxy = sources.proxy()?;
    let mirrors = sources.mirrors()?;

    let inventory = view.map(|(path, view, host_count)| InventoryUse {
        path: path.to_owned(),
        host: view.host,
        host_count,
        encrypted_files: view.encrypted_files,
    });
    Ok(Settings {
        registry_url,
        registry_env,
        username,
        password,
        warmup,
        proxy,
        mirrors,
        inventory,
    })
}

/// Expands each warmup entry into a full reference with `REGISTRY_URL` and the `REGISTRY_ENV`
/// prefix. A reference listed twice is kept once, at its first place. An error names the entry.
pub fn images(settings: &Settings) -> Result<Vec<Reference>, ReferenceError> {
    let registry = settings.registry_url.as_ref().map(|setting| &setting.value);
    let mut images: Vec<Reference> = Vec::new();
    for entry in &settings.warmup.value {
        let reference = Reference::expand(entry, registry, &settings.registry_env.value)?;
        if images.contains(&reference) {
            tracing::debug!(%reference, entry = entry.as_str(), "warmup lists the image twice; keeping the first");
        } else {
            images.push(reference);
        }
    }
    Ok(images)
}

/// The three sources, looked up highest first.
struct Sources<'a> {
    view: Option<&'a View>,
    env: &'a dyn Fn(&str) -> Option<String>,
    flags: &'a Overrides,
}

impl Sources<'_> {
    /// Looks up a text setting in the flag, the environment and the inventory, in that order.
    fn text(&self, variable: Variable, flag: Option<&str>) -> Result<Option<Setting<String>>, SettingsError> {
        if let Some(value) = flag {
            return Ok(Some(Setting {
                value: value.to_owned(),
                source: Source::Flag,
            }));
        }
        if let Some(value) = self.environment(variable) {
            return Ok(Some(Setting {
                value,
                source: Source::Environment,
            }));
        }
        let Some(value) = self.inventory(variable)? else {
            return Ok(None);
        };
        let source = Source::Inventory {
            origin: value.origin.to_string(),
        };
        let text = match &value.value {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Bool(flag) => Some(python_bool(*flag).to_owned()),
            // NOTE: floats print as serde_json does, which differs from Python for exponents
            // (`1e20`, where Ansible prints `1e+20`).
            serde_json::Value::Number(number) => Some(number.to_string()),
            other => {
                return Err(SettingsError::WrongType {
                    variable,
                    from: source,
                    expected: "a string",
                    found: json_kind(other),
                })
            }
        };
        Ok(text.map(|value| Setting { value, source }))
    }

    fn warmup(&self) -> Result<Setting<Vec<String>>, SettingsError> {
        let variable = Variable::Warmup;
        if !self.flags.warmup.is_empty() {
            let entries = self
                .flags
                .warmup
                .iter()
                .flat_map(|value| split_entries(value))
                .collect();
            return non_empty(entries, Source::Flag);
        }
        if let Some(text) = self.environment(variable) {
            return non_empty(parse_list_text(&text, &Source::Environment)?, Source::Environment);
        }
        let Some(value) = self.inventory(variable)? else {
            return Ok(Setting {
                value: DEFAULT_WARMUP.iter().map(|entry| entry.to_string()).collect(),
                source: Source::Default,
            });
        };
        let source = Source::Inventory {
            origin: value.origin.to_string(),
        };
        let entries = match &value.value {
            serde_json::Value::String(text) => parse_list_text(text, &source)?,
            serde_json::Value::Array(items) => list_entries(items, &source)?,
            serde_json::Value::Null => {
                return Ok(Setting {
                    value: DEFAULT_WARMUP.iter().map(|entry| entry.to_string()).collect(),
                    source: Source::Default,
                })
            }
            other => {
                return Err(SettingsError::WrongType {
                    variable,
                    from: source,
                    expected: "a list of image names",
                    found: json_kind(other),
                })
            }
        };
        non_empty(entries, source)
    }

    /// Reads `REGISTRY_MIRRORS`: the flags, else the environment (a JSON list or a comma-separated
    /// string), else the inventory (a list or a string). Each entry is a `REGISTRY_URL`-style
    /// address.
    fn mirrors(&self) -> Result<Vec<RegistryUrl>, SettingsError> {
        let variable = Variable::Mirrors;
        let (entries, source) = if !self.flags.mirrors.is_empty() {
            (self.flags.mirrors.iter().flat_map(|v| split_entries(v)).collect(), Source::Flag)
        } else if let Some(text) = self.environment(variable) {
            (parse_list_text(&text, &Source::Environment)?, Source::Environment)
        } else if let Some(value) = self.inventory(variable)? {
            let source = Source::Inventory { origin: value.origin.to_string() };
            let entries = match &value.value {
                serde_json::Value::String(text) => parse_list_text(text, &source)?,
                serde_json::Value::Array(items) => list_entries(items, &source)?,
                serde_json::Value::Null => Vec::new(),
                other => return Err(SettingsError::WrongType { variable, from: source, expected: "a list of registry addresses", found: json_kind(other) }),
            };
            (entries, source)
        } else {
            return Ok(Vec::new());
        };
        entries
            .iter()
            .map(|entry| RegistryUrl::parse(entry).map_err(|error| SettingsError::InvalidMirror { from: source.clone(), message: error.to_string() }))
            .collect()
    }

    /// Reads the proxy variables. Each comes from its flag, else the environment (upper case,
    /// then lower case), else the inventory, where `NO_PROXY` may also be a list.
    fn proxy(&self) -> Result<ProxyConfig, SettingsError> {
        let url = |variable: Variable, flag: Option<&str>| -> Result<Option<ProxyUrl>, SettingsError> {
            let Some(Setting { value, source }) = self.text(variable, flag)? else { return Ok(None) };
            if value.trim().is_empty() {
                return Ok(None);
            }
            let url = ProxyUrl::parse(&value).map_err(|error| SettingsError::InvalidProxy { variable, from: source.clone(), source: error })?;
            tracing::debug!(variable = variable.name(), proxy = %url, from = %source, "proxy setting");
            Ok(Some(url))
        };
        let http = url(Variable::HttpProxy, self.flags.http_proxy.as_deref())?;
        let https = url(Variable::HttpsProxy, self.flags.https_proxy.as_deref())?;
        let no_proxy_text = match (&self.flags.no_proxy, self.environment(Variable::NoProxy)) {
            (Some(flag), _) => Some((flag.clone(), Source::Flag)),
            (None, Some(text)) => Some((text, Source::Environment)),
            (None, None) => match self.inventory(Variable::NoProxy)? {
                Some(value) => {
                    let source = Source::Inventory { origin: value.origin.to_string() };
                    match &value.value {
                        serde_json::Value::Array(items) => Some((list_entries(items, &source)?.join(","), source)),
                        serde_json::Value::String(text) => Some((text.clone(), source)),
                        serde_json::Value::Null => None,
                        other => {
                            return Err(SettingsError::WrongType { variable: Variable::NoProxy, from: source, expected: "a list or a comma-separated string", found: json_kind(other) })
                        }
                    }
                }
                None => None,
            },
        };
        let no_proxy = match no_proxy_text {
            Some((text, source)) => NoProxy::parse(&text).map_err(|error| SettingsError::InvalidProxy { variable: Variable::NoProxy, from: source, source: error })?,
            None => NoProxy::default(),
        };
        Ok(ProxyConfig { http, https, no_proxy })
    }

    /// Reads the environment variable, counting an empty value as unset except for
    /// `REGISTRY_ENV`. Proxy variables are also read in lower case, as curl and Go do.
    fn environment(&self, variable: Variable) -> Option<String> {
        let lower = matches!(variable, Variable::HttpProxy | Variable::HttpsProxy | Variable::NoProxy).then(|| variable.name().to_ascii_lowercase());
        let value = (self.env)(variable.name()).filter(|v| !v.is_empty() || lower.is_none()).or_else(|| lower.and_then(|name| (self.env)(&name)))?;
        if value.is_empty() && variable != Variable::RegistryEnv {
            tracing::debug!(
                variable = variable.name(),
                "environment variable is empty; treated as unset"
            );
            return None;
        }
        Some(value)
    }

    /// Returns the inventory value, or an error when it is a Vault secret or a Jinja template.
    fn inventory(&self, variable: Variable) -> Result<Option<&InventoryValue>, SettingsError> {
        let Some(value) = self.view.and_then(|view| view.vars.get(variable.name())) else {
            return Ok(None);
        };
        let Some(kind) = value.unevaluable else {
            return Ok(Some(value));
        };
        let action = match kind {
            Unevaluable::Vault => "decrypt",
            Unevaluable::Template => "evaluate",
        };
        let quoted_value = match (&value.value, kind, variable) {
            (serde_json::Value::String(text), Unevaluable::Template, variable) if variable != Variable::Password => {
                format!(" ({})", shorten(text))
            }
            _ => String::new(),
        };
        Err(SettingsError::Unevaluable {
            variable,
            origin: value.origin.to_string(),
            kind,
            action,
            quoted_value,
            fix: variable.alternative(),
        })
    }
}

/// Parses the text form of a list: a JSON list (`["a", "b"]`) or comma-separated entries.
fn parse_list_text(text: &str, source: &Source) -> Result<Vec<String>, SettingsError> {
    if !text.trim_start().starts_with('[') {
        return Ok(split_entries(text));
    }
    let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|error| SettingsError::InvalidWarmup {
        from: source.clone(),
        message: format!("the value starts with '[' but is not a JSON list ({error}): write [\"chromium\", \"ssh:2.1\"] or chromium, ssh:2.1"),
    })?;
    list_entries(&items, source)
}

fn list_entries(items: &[serde_json::Value], source: &Source) -> Result<Vec<String>, SettingsError> {
    let mut entries = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let serde_json::Value::String(text) = item else {
            return Err(SettingsError::InvalidWarmup {
                from: source.clone(),
                message: format!(
                    "entry {} must be a string (an image name), found {}",
                    index + 1,
                    json_kind(item)
                ),
            });
        };
        let text = text.trim();
        if !text.is_empty() {
            entries.push(text.to_owned());
        }
    }
    Ok(entries)
}

fn split_entries(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}

fn non_empty(entries: Vec<String>, source: Source) -> Result<Setting<Vec<String>>, SettingsError> {
    if entries.is_empty() {
        return Err(SettingsError::EmptyWarmup { from: source });
    }
    Ok(Setting { value: entries, source })
}

/// Python's spelling, which Ansible prints for a boolean.
fn python_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "an empty value",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// Quotes a value for a message, cut to 80 characters.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        return format!("{text:?}");
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut:?}...")
}

#[cfg(test)]
mod tests;
