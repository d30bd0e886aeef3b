//! The text of each file a method writes, computed from the file's current text.

use super::ordered_json::Json;
use super::{DaemonProxy, ENV_FILE};

/// First line of the block ferry writes into `/etc/default/docker` and of its drop-in.
pub(super) const FERRY_COMMENT: &str = "# Proxy settings for the Docker daemon, written by ferry proxy configure.";

/// The variables ferry owns in an environment file, both cases, as Go's `net/http` reads both.
const VARIABLE_NAMES: [&str; 6] = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"];

/// Returns each assignment to write, upper case first, then lower case.
fn assignments(proxy: &DaemonProxy) -> Vec<(String, String)> {
    let mut assignments = Vec::new();
    for (name, value) in proxy.variables() {
        assignments.push((name.to_owned(), value.clone()));
        assignments.push((name.to_ascii_lowercase(), value));
    }
    assignments
}

/// Returns the variable a line of an environment file assigns (`NAME=...` or
/// `export NAME=...`), or `None` for comments and other lines.
fn assigned_name(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
    let (name, _) = line.split_once('=')?;
    Some(name.trim_end())
}

fn is_ferry_line(line: &str) -> bool {
    line.trim_end() == FERRY_COMMENT || assigned_name(line).is_some_and(|name| VARIABLE_NAMES.contains(&name))
}

/// True when the environment file assigns one of the proxy variables.
pub(super) fn env_file_sets_proxy(text: &str) -> bool {
    text.lines().any(|line| assigned_name(line).is_some_and(|name| VARIABLE_NAMES.contains(&name)))
}

/// True when a unit file or drop-in sets one of the proxy variables with `Environment=`.
pub(super) fn drop_in_sets_proxy(text: &str) -> bool {
    text.lines().filter_map(|line| line.trim().strip_prefix("Environment=")).any(|assignments| {
        assignments.split_whitespace().any(|word| VARIABLE_NAMES.iter().any(|name| word.trim_start_matches('"').starts_with(&format!("{name}="))))
    })
}

/// Quotes a value for a file that systemd's `EnvironmentFile=` reads and a shell may source:
/// double quotes, with `\`, `"`, `$` and `` ` `` escaped, which both read the same way.
fn double_quoted(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Returns `/etc/default/docker` with ferry's block in place of every line that assigns a proxy
/// variable: where the first such line was, else at the end. Other lines stay as they are.
pub(super) fn env_file(old: Option<&str>, proxy: &DaemonProxy) -> String {
    let mut block = vec![FERRY_COMMENT.to_owned()];
    block.extend(assignments(proxy).into_iter().map(|(name, value)| format!("{name}={}", double_quoted(&value))));

    let old = old.unwrap_or("");
    let mut lines: Vec<String> = Vec::new();
    let mut block_at = None;
    for line in old.lines() {
        if is_ferry_line(line) {
            block_at.get_or_insert(lines.len());
        } else {
            lines.push(line.to_owned());
        }
    }
    let at = match block_at {
        Some(at) => at,
        None => {
            if lines.last().is_some_and(|last| !last.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.len()
        }
    };
    lines.splice(at..at, block);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// True when the unit's `[Service]` section has an `EnvironmentFile=` line naming
/// `/etc/default/docker`, with or without systemd's `-` prefix for an optional file.
pub(super) fn unit_reads_env_file(unit: &str) -> bool {
    service_lines(unit).any(|line| {
        line.trim()
            .strip_prefix("EnvironmentFile=")
            .is_some_and(|files| files.split_whitespace().any(|file| file.trim_start_matches('-') == ENV_FILE))
    })
}

/// Returns the lines of the unit's `[Service]` section, without its header.
fn service_lines(unit: &str) -> impl Iterator<Item = &str> {
    let mut in_service = false;
    unit.lines().filter(move |line| {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_service = trimmed == "[Service]";
            return false;
        }
        in_service
    })
}

/// Returns the unit with `EnvironmentFile=/etc/default/docker` right after its `[Service]`
/// header, or the unit unchanged when it already reads that file. `None` when the unit has no
/// `[Service]` section.
pub(super) fn unit_with_env_file(unit: &str) -> Option<String> {
    if unit_reads_env_file(unit) {
        return Some(unit.to_owned());
    }
    let mut offset = 0;
    for line in unit.split_inclusive('\n') {
        offset += line.len();
        if line.trim() == "[Service]" {
            let mut text = String::with_capacity(unit.len() + 64);
            text.push_str(&unit[..offset]);
            if !line.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("EnvironmentFile={ENV_FILE}\n"));
            text.push_str(&unit[offset..]);
            return Some(text);
        }
    }
    None
}

/// Quotes one `Environment=` assignment as systemd reads it: the whole `NAME=value` in double
/// quotes, `\` and `"` escaped, and `%` doubled because systemd expands `%` specifiers there.
fn systemd_quoted(assignment: &str) -> String {
    let mut quoted = String::with_capacity(assignment.len() + 2);
    quoted.push('"');
    for c in assignment.chars() {
        match c {
            '\\' | '"' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '%' => quoted.push_str("%%"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Returns the drop-in `docker.service.d/http-proxy.conf`, which ferry writes whole.
pub(super) fn drop_in(proxy: &DaemonProxy) -> String {
    let mut text = format!("{FERRY_COMMENT}\n[Service]\n");
    for (name, value) in assignments(proxy) {
        text.push_str(&format!("Environment={}\n", systemd_quoted(&format!("{name}={value}"))));
    }
    text
}

/// Reason `daemon.json` could not be updated.
#[derive(Debug)]
pub(super) enum JsonProblem {
    Invalid(String),
    NotAnObject,
}

/// Returns `daemon.json` with its `proxies` key set, every other key kept in its place. The text
/// is returned unchanged when `proxies` already contains these values, and otherwise written with
/// two-space indentation.
pub(super) fn daemon_json(old: Option<&str>, proxy: &DaemonProxy) -> Result<String, JsonProblem> {
    let mut proxies = Vec::new();
    if let Some(url) = &proxy.http {
        proxies.push(("http-proxy".to_owned(), Json::String(super::url_text(url))));
    }
    if let Some(url) = &proxy.https {
        proxies.push(("https-proxy".to_owned(), Json::String(super::url_text(url))));
    }
    if !proxy.no_proxy.is_empty() {
        proxies.push(("no-proxy".to_owned(), Json::String(proxy.no_proxy_text())));
    }
    let proxies = Json::Object(proxies);

    let mut document = match old {
        Some(text) if !text.trim().is_empty() => serde_json::from_str::<Json>(text).map_err(|e| JsonProblem::Invalid(e.to_string()))?,
        _ => Json::Object(Vec::new()),
    };
    let Json::Object(entries) = &mut document else { return Err(JsonProblem::NotAnObject) };
    match entries.iter_mut().find(|(key, _)| key == "proxies") {
        Some((_, value)) if *value == proxies => return Ok(old.unwrap_or_default().to_owned()),
        Some((_, value)) => *value = proxies,
        None => entries.push(("proxies".to_owned(), proxies)),
    }
    let mut text = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
    text.push('\n');
    Ok(text)
}
