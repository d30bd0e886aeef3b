//! `group_vars/` and `host_vars/` beside the inventory file, found the way Ansible's
//! `host_group_vars` plugin and `DataLoader.find_vars_files` find them (ansible-core 2.x).
//!
//! For an entity named `web`, the first that exists of `web` (file or folder), `web.yml`,
//! `web.yaml` and `web.json` is used. A folder contributes every file below it, recursively in
//! name order, that has one of those extensions or none, skipping hidden files and `~` backups.
//! Later files override earlier ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::node::{self, NodeValue};
use super::{InventoryError, InventoryValue, Origin, Scope};

const EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// The variables one entity gets from its vars files, and the files skipped because they are
/// encrypted whole with Ansible Vault.
#[derive(Default)]
pub(crate) struct VarsFiles {
    pub vars: BTreeMap<String, InventoryValue>,
    pub encrypted_files: Vec<PathBuf>,
}

/// Loads `<base>/group_vars/<group>` or `<base>/host_vars/<host>` for `scope`.
pub(crate) fn load(base: &Path, scope: &Scope) -> Result<VarsFiles, InventoryError> {
    let (folder, name) = match scope {
        Scope::Group(name) => ("group_vars", name),
        Scope::Host(name) => ("host_vars", name),
    };
    let mut loaded = VarsFiles::default();

    // A name such as `/srv/chroot` or `../x` would point outside the folder; Ansible skips
    // names starting with a path separator, and ferry skips any name with one.
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        tracing::debug!(name, folder, "name cannot be a vars file name; skipped");
        return Ok(loaded);
    }

    for path in find(&base.join(folder), name)? {
        load_file(&path, scope, &mut loaded)?;
    }
    Ok(loaded)
}

fn find(folder: &Path, name: &str) -> Result<Vec<PathBuf>, InventoryError> {
    let candidates = std::iter::once(folder.join(name)).chain(
        EXTENSIONS
            .iter()
            .map(|extension| folder.join(format!("{name}.{extension}"))),
    );
    for candidate in candidates {
        if candidate.is_dir() {
            let mut found = Vec::new();
            files_below(&candidate, &mut found)?;
            return Ok(found);
        }
        if candidate.exists() {
            return Ok(vec![candidate]);
        }
    }
    Ok(Vec::new())
}

fn files_below(folder: &Path, found: &mut Vec<PathBuf>) -> Result<(), InventoryError> {
    let read_error = |source| InventoryError::Read {
        path: folder.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(read_error)? {
        entries.push(entry.map_err(read_error)?.path());
    }
    entries.sort();

    for path in entries {
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        let extension = path.extension().and_then(|extension| extension.to_str());
        if path.is_dir() && extension.is_none() {
            files_below(&path, found)?;
        } else if path.is_file() && extension.is_none_or(|extension| EXTENSIONS.contains(&extension)) {
            found.push(path);
        }
    }
    Ok(())
}

fn load_file(path: &Path, scope: &Scope, loaded: &mut VarsFiles) -> Result<(), InventoryError> {
    let text = node::read_text(path)?;
    if text.trim_start().starts_with("$ANSIBLE_VAULT") {
        tracing::warn!(path = %path.display(), "variable file is encrypted with Ansible Vault; ferry cannot read it and skips it");
        loaded.encrypted_files.push(path.to_owned());
        return Ok(());
    }

    let is_json = path.extension().is_some_and(|extension| extension == "json");
    let root = if is_json {
        node::parse_json(path, &text)?
    } else {
        node::parse_yaml(path, &text)?
    };
    let Some(root) = root else {
        return Ok(());
    };
    let (kind, line) = (root.kind(), root.line);
    let NodeValue::Map(entries) = root.value else {
        return Err(InventoryError::Structure {
            path: path.to_owned(),
            line: Some(line).filter(|line| *line > 0),
            message: format!("variables must be a mapping of names to values, found {kind}"),
        });
    };
    for (name, value) in entries {
        let origin = Origin {
            file: path.to_owned(),
            scope: scope.clone(),
            line: Some(value.line).filter(|line| *line > 0),
        };
        loaded.vars.insert(name, InventoryValue::from_node(&value, origin));
    }
    Ok(())
}
