//! Ansible YAML inventories: groups, hosts and variables, and the variables that apply to one host.
//!
//! ferry reads the provisioning settings from the same inventory that Ansible uses, so it
//! resolves variables the way ansible-core 2.x does with its default settings
//! (`hash_behaviour = replace`, default `VARIABLE_PRECEDENCE`). From lowest to highest:
//!
//! 1. the `all` group's variables in the inventory file;
//! 2. the variables of the host's other groups in the inventory file, in group order;
//! 3. `group_vars/all` beside the inventory file;
//! 4. `group_vars/<group>` for the host's other groups, in group order;
//! 5. the host's variables in the inventory file;
//! 6. `host_vars/<host>` beside the inventory file.
//!
//! Group order is Ansible's: by depth below `all` (parents before children), then by
//! `ansible_group_priority` (default 1), then by name. A later group wins. As in Ansible, only
//! the inventory file sets `ansible_group_priority`: `group_vars/` files do not change the order. A variable replaces
//! the value below it as a whole: maps are never merged.
//!
//! ferry does not evaluate Jinja templates or decrypt Ansible Vault. Such values are loaded and
//! marked ([`Unevaluable`]) so that a caller can reject the ones it needs.

mod node;
mod pattern;
mod vars_files;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use node::{Node, NodeValue};

/// Group priority when `ansible_group_priority` is not set.
const DEFAULT_GROUP_PRIORITY: i64 = 1;

/// How many known hosts an unknown-host error lists.
const HOSTS_LISTED_IN_ERRORS: usize = 5;

/// Error reading an inventory or building a view of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("inventory {} not found: check the path given to -i", path.display())]
    NotFound { path: PathBuf },
    #[error("{} is larger than {max_bytes} bytes, the limit for inventory and variable files: check the path", path.display())]
    TooLarge { path: PathBuf, max_bytes: u64 },
    #[error("{}{}: {message}", path.display(), at(*line, *column))]
    Syntax {
        path: PathBuf,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    #[error("invalid inventory {}{}: {message}", path.display(), at(*line, None))]
    Structure {
        path: PathBuf,
        line: Option<u64>,
        message: String,
    },
    #[error("host {host:?} is not in the inventory {}: {known}", path.display())]
    UnknownHost { host: String, path: PathBuf, known: String },
}

fn at(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" line {line}, column {column}"),
        (Some(line), None) => format!(" line {line}"),
        _ => String::new(),
    }
}

/// Location of a variable's definition: the file, the group or host it belongs to, and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub scope: Scope,
    /// 1-based line of the value, when the file format records it.
    pub line: Option<u64>,
}

/// The group or host a variable is set for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Group(String),
    Host(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Group(name) => write!(f, "group {name:?}"),
            Scope::Host(name) => write!(f, "host {name:?}"),
        }
    }
}

/// Prints `inventory.yml line 4 (group "web")`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        write!(f, " ({})", self.scope)
    }
}

/// Reason ferry cannot use a value as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unevaluable {
    /// Tagged `!vault` or text starting with `$ANSIBLE_VAULT`.
    Vault,
    /// Contains a Jinja start sequence (`{{`, `{%` or `{#`) outside an `!unsafe` value.
    Template,
}

impl fmt::Display for Unevaluable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unevaluable::Vault => "encrypted with Ansible Vault",
            Unevaluable::Template => "a Jinja template",
        })
    }
}

/// One variable's value as Ansible's YAML loader would read it, and where it was set.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryValue {
    /// The value with YAML 1.1 typing (`yes` is `true`, `0755` is 493). `!vault` values hold
    /// their ciphertext and `!unsafe` values their literal text.
    pub value: serde_json::Value,
    pub origin: Origin,
    /// Set when the value, or an item inside it, is a Vault secret or a Jinja template.
    pub unevaluable: Option<Unevaluable>,
}

impl InventoryValue {
    fn from_node(node: &Node, origin: Origin) -> InventoryValue {
        InventoryValue {
            value: node.to_json(),
            origin,
            unevaluable: unevaluable(node),
        }
    }
}

/// Finds the first Vault value or Jinja template in a tree, skipping `!unsafe` subtrees,
/// which Ansible never templates.
fn unevaluable(node: &Node) -> Option<Unevaluable> {
    if node.is_tagged("!unsafe") {
        return None;
    }
    if node.is_tagged("!vault") {
        return Some(Unevaluable::Vault);
    }
    match &node.value {
        NodeValue::String(text) if text.trim_start().starts_with("$ANSIBLE_VAULT") => Some(Unevaluable::Vault),
        NodeValue::String(text) if ["{{", "{%", "{#"].iter().any(|start| text.contains(start)) => {
            Some(Unevaluable::Template)
        }
        NodeValue::Seq(items) => items.iter().find_map(unevaluable),
        NodeValue::Map(entries) => entries.iter().find_map(|(_, value)| unevaluable(value)),
        _ => None,
    }
}

/// The variables seen from one host, or from the `all` group alone.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The host whose variables these are; `None` when only the `all` group's variables
    /// (inventory file and `group_vars/all`) were used.
    pub host: Option<String>,
    pub vars: BTreeMap<String, InventoryValue>,
    /// Variable files in this view that are encrypted whole with Ansible Vault and were
    /// skipped, so any variable they define is missing here.
    pub encrypted_files: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Group {
    vars: BTreeMap<String, InventoryValue>,
    children: BTreeSet<String>,
    parents: BTreeSet<String>,
    priority: i64,
    /// Length of the longest path from `all`, as Ansible's `Group.depth`.
    depth: usize,
}

#[derive(Debug, Default)]
struct Host {
    vars: BTreeMap<String, InventoryValue>,
    /// Groups that list the host directly.
    groups: BTreeSet<String>,
}

/// A parsed YAML inventory file.
#[derive(Debug)]
pub struct Inventory {
    path: PathBuf,
    groups: BTreeMap<String, Group>,
    /// Host names in order of first appearance.
    host_names: Vec<String>,
    hosts: HashMap<String, Host>,
}

impl Inventory {
    /// Reads and checks an inventory file. `group_vars/` and `host_vars/` beside it are read
    /// later, by [`Inventory::vars_for`].
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = node::read_text(path).map_err(|error| match error {
            InventoryError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => InventoryError::NotFound { path },
            error => error,
        })?;
        Inventory::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
        let mut inventory = Inventory {
            path: path.to_owned(),
            groups: BTreeMap::new(),
            host_names: Vec::new(),
            hosts: HashMap::new(),
        };
        inventory.groups.insert(
            "all".into(),
            Group {
                priority: DEFAULT_GROUP_PRIORITY,
                ..Group::default()
            },
        );

        let root = node::parse_yaml(path, text)?;
        let Some(root) = root else {
            return Err(
                inventory.structure_error(1, "the file is empty; expected a mapping with an \"all\" group".into())
            );
        };
        let NodeValue::Map(groups) = &root.value else {
            return Err(inventory.structure_error(
                root.line,
                format!(
                    "the top level must be a mapping of group names such as \"all\", found {}",
                    root.kind()
                ),
            ));
        };
        if let Some((_, plugin)) = groups.iter().find(|(key, _)| key == "plugin") {
            return Err(inventory.structure_error(
                plugin.line,
                "this is an inventory plugin configuration, not a YAML inventory: pass the YAML inventory file".into(),
            ));
        }

        for (name, group) in groups {
            inventory.parse_group(name, group)?;
        }
        inventory.link_top_level_groups();
        inventory.compute_depths()?;
        Ok(inventory)
    }

    /// Returns the inventory file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns all host names, in order of first appearance in the file.
    pub fn hosts(&self) -> Vec<String> {
        self.host_names.clone()
    }

    /// Builds the variable view of `host`, or with `None`, of this machine: the host whose
    /// name equals the machine's host name (full, then short) when the inventory has one, else
    /// the `all` group alone. [`View::host`] records which view was used.
    pub fn vars_for(&self, host: Option<&str>) -> Result<View, InventoryError> {
        match host {
            Some(name) => {
                if !self.hosts.contains_key(name) {
                    return Err(self.unknown_host(name));
                }
                self.host_view(name)
            }
            None => match self.machine_host(machine_hostname().as_deref()) {
                Some(name) => self.host_view(&name),
                None => self.all_view(),
            },
        }
    }

    /// Finds the inventory host for a machine host name: the exact name, then its first label,
    /// then the one inventory host whose first label matches (`node1` finds `node1.lan`).
    /// Names are compared without regard to ASCII case, as DNS does.
    fn machine_host(&self, machine: Option<&str>) -> Option<String> {
        let machine = machine?.trim().trim_end_matches('.');
        if machine.is_empty() {
            return None;
        }
        let short = first_label(machine);
        let find = |wanted: &str| {
            self.host_names
                .iter()
                .find(|host| host.eq_ignore_ascii_case(wanted))
                .cloned()
        };
        if let Some(host) = find(machine).or_else(|| find(short)) {
            return Some(host);
        }
        let mut by_label = self
            .host_names
            .iter()
            .filter(|host| first_label(host).eq_ignore_ascii_case(short));
        match (by_label.next(), by_label.next()) {
            (Some(host), None) => Some(host.clone()),
            _ => None,
        }
    }

    fn all_view(&self) -> Result<View, InventoryError> {
        let all = Scope::Group("all".into());
        let mut vars = self.groups["all"].vars.clone();
        let files = vars_files::load(self.base_dir(), &all)?;
        vars.extend(files.vars);
        Ok(View {
            host: None,
            vars,
            encrypted_files: files.encrypted_files,
        })
    }

    fn host_view(&self, name: &str) -> Result<View, InventoryError> {
        let host = &self.hosts[name];
        let groups = self.sorted_groups_of(host);
        let mut vars = BTreeMap::new();
        let mut encrypted_files = Vec::new();

        vars.extend(self.groups["all"].vars.clone());
        for group in &groups {
            vars.extend(self.groups[group].vars.clone());
        }
        for scope in std::iter::once("all").chain(groups.iter().map(String::as_str)) {
            let files = vars_files::load(self.base_dir(), &Scope::Group(scope.to_owned()))?;
            vars.extend(files.vars);
            encrypted_files.extend(files.encrypted_files);
        }
        vars.extend(host.vars.clone());
        let files = vars_files::load(self.base_dir(), &Scope::Host(name.to_owned()))?;
        vars.extend(files.vars);
        encrypted_files.extend(files.encrypted_files);

        Ok(View {
            host: Some(name.to_owned()),
            vars,
            encrypted_files,
        })
    }

    /// Returns the host's groups and all their ancestors except `all`, in Ansible's order.
    fn sorted_groups_of(&self, host: &Host) -> Vec<String> {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut pending: Vec<&String> = host.groups.iter().collect();
        while let Some(name) = pending.pop() {
            if found.insert(name.clone()) {
                pending.extend(self.groups[name].parents.iter());
            }
        }
        found.remove("all");

        let mut groups: Vec<String> = found.into_iter().collect();
        groups.sort_by(|a, b| {
            let (left, right) = (&self.groups[a], &self.groups[b]);
            (left.depth, left.priority, a).cmp(&(right.depth, right.priority, b))
        });
        groups
    }

    fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    fn unknown_host(&self, host: &str) -> InventoryError {
        let known = match self.host_names.len() {
            0 => "the inventory lists no hosts".to_owned(),
            count => {
                let listed: Vec<&str> = self
                    .host_names
                    .iter()
                    .take(HOSTS_LISTED_IN_ERRORS)
                    .map(String::as_str)
                    .collect();
                let more = count.saturating_sub(listed.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("choose one of its hosts, such as {}{more}", listed.join(", "))
            }
        };
        InventoryError::UnknownHost {
            host: host.to_owned(),
            path: self.path.clone(),
            known,
        }
    }

    fn structure_error(&self, line: u64, message: String) -> InventoryError {
        InventoryError::Structure {
            path: self.path.clone(),
            line: Some(line).filter(|line| *line > 0),
            message,
        }
    }
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Returns the kernel's host name (`uname -n`), which may be short or fully qualified.
// NOTE: no DNS lookup for the fully qualified name, so a machine whose kernel name is short
// matches a qualified inventory name only through the first-label rule of `machine_host`.
fn machine_hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// Building the group tree from the YAML, following Ansible's `yaml` inventory plugin.
impl Inventory {
    fn parse_group(&mut self, name: &str, node: &Node) -> Result<(), InventoryError> {
        self.groups.entry(name.to_owned()).or_insert_with(|| Group {
            priority: DEFAULT_GROUP_PRIORITY,
            ..Group::default()
        });
        let entries = match &node.value {
            NodeValue::Null => return Ok(()),
            NodeValue::Map(entries) => entries,
            _ => {
                return Err(self.structure_error(
                    node.line,
                    format!(
                        "group {name:?} must be a mapping with \"hosts\", \"vars\" or \"children\", found {}",
                        node.kind()
                    ),
                ))
            }
        };

        for (key, value) in entries {
            match key.as_str() {
                "vars" => self.parse_group_vars(name, value)?,
                "children" => {
                    for (child, child_node) in self.section_entries(name, key, value)? {
                        self.parse_group(&child, &child_node)?;
                        self.groups
                            .get_mut(name)
                            .expect("group was inserted")
                            .children
                            .insert(child.clone());
                        self.groups
                            .get_mut(&child)
                            .expect("child was parsed")
                            .parents
                            .insert(name.to_owned());
                    }
                }
                "hosts" => {
                    for (pattern, host_vars) in self.section_entries(name, key, value)? {
                        self.parse_hosts(name, &pattern, &host_vars)?;
                    }
                }
                _ => tracing::warn!(
                    path = %self.path.display(),
                    line = value.line,
                    group = name,
                    key = key.as_str(),
                    "skipping unexpected key in group: only \"vars\", \"children\" and \"hosts\" are valid"
                ),
            }
        }
        Ok(())
    }

    /// Entries of a `hosts` or `children` section. Like Ansible, a single name in place of the
    /// mapping counts as one entry, and an empty section has none.
    fn section_entries(&self, group: &str, section: &str, node: &Node) -> Result<Vec<(String, Node)>, InventoryError> {
        match &node.value {
            NodeValue::Null => Ok(Vec::new()),
            NodeValue::Map(entries) => Ok(entries.clone()),
            NodeValue::String(name) => Ok(vec![(
                name.clone(),
                Node {
                    value: NodeValue::Null,
                    tag: None,
                    line: node.line,
                    column: node.column,
                },
            )]),
            _ => Err(self.structure_error(
                node.line,
                format!(
                    "\"{section}\" of group {group:?} must be a mapping of names (each followed by ':'), found {}",
                    node.kind()
                ),
            )),
        }
    }

    fn parse_group_vars(&mut self, name: &str, node: &Node) -> Result<(), InventoryError> {
        let entries = match &node.value {
            NodeValue::Null => return Ok(()),
            NodeValue::Map(entries) => entries,
            _ => {
                return Err(self.structure_error(
                    node.line,
                    format!(
                        "\"vars\" of group {name:?} must be a mapping of variable names to values, found {}",
                        node.kind()
                    ),
                ))
            }
        };
        for (var, value) in entries {
            if var == "ansible_group_priority" {
                let priority = group_priority(value).ok_or_else(|| {
                    self.structure_error(
                        value.line,
                        format!("ansible_group_priority of group {name:?} must be a whole number"),
                    )
                })?;
                self.groups.get_mut(name).expect("group was inserted").priority = priority;
            }
            let origin = self.origin(Scope::Group(name.to_owned()), value.line);
            let value = InventoryValue::from_node(value, origin);
            self.groups
                .get_mut(name)
                .expect("group was inserted")
                .vars
                .insert(var.clone(), value);
        }
        Ok(())
    }

    fn parse_hosts(&mut self, group: &str, key: &str, vars: &Node) -> Result<(), InventoryError> {
        let expanded = pattern::expand(key).map_err(|rule| {
            self.structure_error(vars.line, format!("invalid host {key:?} in group {group:?}: {rule}"))
        })?;
        let entries = match &vars.value {
            NodeValue::Null => &[],
            NodeValue::Map(entries) => entries.as_slice(),
            _ => {
                return Err(self.structure_error(
                    vars.line,
                    format!(
                        "host {key:?} in group {group:?} must have a mapping of variables or nothing, found {}",
                        vars.kind()
                    ),
                ))
            }
        };

        for host_name in expanded.hosts {
            if !self.hosts.contains_key(&host_name) {
                self.host_names.push(host_name.clone());
            }
            let line = vars.line;
            let port = expanded.port.map(|port| {
                let origin = self.origin(Scope::Host(host_name.clone()), line);
                InventoryValue {
                    value: port.into(),
                    origin,
                    unevaluable: None,
                }
            });
            let values: Vec<(String, InventoryValue)> = entries
                .iter()
                .map(|(var, value)| {
                    (
                        var.clone(),
                        InventoryValue::from_node(value, self.origin(Scope::Host(host_name.clone()), value.line)),
                    )
                })
                .collect();

            let host = self.hosts.entry(host_name).or_default();
            host.groups.insert(group.to_owned());
            if let Some(port) = port {
                host.vars.insert("ansible_port".into(), port);
            }
            host.vars.extend(values);
        }
        Ok(())
    }

    fn origin(&self, scope: Scope, line: u64) -> Origin {
        Origin {
            file: self.path.clone(),
            scope,
            line: Some(line).filter(|line| *line > 0),
        }
    }

    /// Makes every group without a parent a child of `all`, as Ansible's
    /// `InventoryData.reconcile_inventory` does.
    fn link_top_level_groups(&mut self) {
        let orphans: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, group)| name.as_str() != "all" && group.parents.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in orphans {
            self.groups
                .get_mut(&name)
                .expect("listed above")
                .parents
                .insert("all".into());
            self.groups
                .get_mut("all")
                .expect("always present")
                .children
                .insert(name);
        }
    }

    /// Sets each group's depth to its longest distance from `all`, and rejects cycles
    /// (Ansible: "creates a recursive dependency loop").
    fn compute_depths(&mut self) -> Result<(), InventoryError> {
        let mut depths: BTreeMap<String, usize> = BTreeMap::new();
        let mut visiting: Vec<String> = Vec::new();
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in &names {
            self.depth_of(name, &mut depths, &mut visiting)?;
        }
        for (name, depth) in depths {
            self.groups.get_mut(&name).expect("depth of a known group").depth = depth;
        }
        Ok(())
    }

    fn depth_of(
        &self,
        name: &str,
        depths: &mut BTreeMap<String, usize>,
        visiting: &mut Vec<String>,
    ) -> Result<usize, InventoryError> {
        if let Some(depth) = depths.get(name) {
            return Ok(*depth);
        }
        if let Some(start) = visiting.iter().position(|group| group == name) {
            let mut cycle = visiting[start..].to_vec();
            cycle.push(name.to_owned());
            return Err(self.structure_error(
                0,
                format!(
                    "groups form a cycle through \"children\": {}; remove one of these links",
                    cycle.join(" -> ")
                ),
            ));
        }

        visiting.push(name.to_owned());
        let mut depth = 0;
        for parent in &self.groups[name].parents {
            depth = depth.max(self.depth_of(parent, depths, visiting)? + 1);
        }
        visiting.pop();
        depths.insert(name.to_owned(), depth);
        Ok(depth)
    }
}

/// Reads `ansible_group_priority` as Ansible's `int(value)` would.
fn group_priority(node: &Node) -> Option<i64> {
    match &node.value {
        NodeValue::Number(number) => number.as_i64(),
        NodeValue::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
