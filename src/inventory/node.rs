//! A YAML document tree that keeps each node's tag and line, which `serde_json::Value` loses.
//!
//! The inventory needs the tags (`!vault`, `!unsafe`) to decide what ferry can use, and the
//! lines to point at a mistake.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Spanned, Tagged};

use super::InventoryError;

/// Largest inventory or variable file read, in bytes. Real inventories are kilobytes; the cap
/// stops a wrong path (a disk image, a log) from being read into memory.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One YAML node with its tag as the parser resolved it (`!vault`, `tag:yaml.org,2002:str`)
/// and its 1-based position (0 when unknown).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub value: NodeValue,
    pub tag: Option<String>,
    pub line: u64,
    pub column: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    /// Entries in file order; a repeated key keeps only its last value (PyYAML's behaviour).
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn is_tagged(&self, tag: &str) -> bool {
        self.tag.as_deref() == Some(tag)
    }

    /// Returns a short name of the node's kind for messages: "a list", "a string", ...
    pub fn kind(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "an empty value",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Number(_) => "a number",
            NodeValue::String(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON, dropping tags and positions.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            NodeValue::Null => serde_json::Value::Null,
            NodeValue::Bool(value) => serde_json::Value::Bool(*value),
            NodeValue::Number(value) => serde_json::Value::Number(value.clone()),
            NodeValue::String(value) => serde_json::Value::String(value.clone()),
            NodeValue::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(key, node)| (key.clone(), node.to_json()))
                    .collect(),
            ),
        }
    }

    /// Builds an untagged tree from JSON (a `.json` variable file), with no positions.
    pub fn from_json(value: serde_json::Value) -> Node {
        let value = match value {
            serde_json::Value::Null => NodeValue::Null,
            serde_json::Value::Bool(value) => NodeValue::Bool(value),
            serde_json::Value::Number(value) => NodeValue::Number(value),
            serde_json::Value::String(value) => NodeValue::String(value),
            serde_json::Value::Array(items) => NodeValue::Seq(items.into_iter().map(Node::from_json).collect()),
            serde_json::Value::Object(entries) => NodeValue::Map(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, Node::from_json(value)))
                    .collect(),
            ),
        };
        Node {
            value,
            tag: None,
            line: 0,
            column: 0,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Tagged<NodeValue>>::deserialize(deserializer)?;
        let Tagged(value, tag) = spanned.value;
        Ok(Node {
            value,
            tag,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(value.into()))
    }

    // Integers beyond 64 bits keep their digits as text; JSON numbers cannot hold them.
    fn visit_i128<E>(self, value: i128) -> Result<NodeValue, E> {
        Ok(NodeValue::String(value.to_string()))
    }

    fn visit_u128<E>(self, value: u128) -> Result<NodeValue, E> {
        Ok(NodeValue::String(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<NodeValue, E> {
        serde_json::Number::from_f64(value)
            .map(NodeValue::Number)
            .ok_or_else(|| E::custom("a number that is not finite cannot be used"))
    }

    fn visit_str<E>(self, value: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(value))
    }

    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some((Key(key), value)) = map.next_entry::<Key, Node>()? {
            match entries.iter_mut().find(|(existing, _)| *existing == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A mapping key as text. YAML allows `10:` or `true:` as keys, and Ansible reads them as names.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a name (a string, number or boolean) as mapping key")
            }

            fn visit_bool<E>(self, value: bool) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }

            fn visit_i64<E>(self, value: i64) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }

            fn visit_u64<E>(self, value: u64) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }

            fn visit_f64<E>(self, value: f64) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }

            fn visit_str<E>(self, value: &str) -> Result<Key, E> {
                Ok(Key(value.to_owned()))
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

/// Parser settings for inventory and variable files.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // PyYAML, which Ansible uses, reads YAML 1.1: `0755` is octal.
        legacy_octal_numbers: true,
        // PyYAML keeps the last of repeated keys (Ansible warns); so does `Node`.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        // `.nan` and `.inf` are valid YAML floats but not JSON numbers: keep them as text.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
        // Limits against alias bombs and deep nesting. The values are serde-saphyr 2.2's
        // defaults, written out so that a change of crate version cannot loosen them.
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_nodes: 250_000,
            max_aliases: 50_000,
            max_anchors: 50_000,
            max_total_scalar_bytes: MAX_FILE_BYTES as usize,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 1_000_000,
            max_replay_stack_depth: 64,
        },
    }
}

/// Reads a file of at most [`MAX_FILE_BYTES`] as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, InventoryError> {
    use std::io::Read;

    let read_error = |source| InventoryError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(InventoryError::TooLarge {
            path: path.to_owned(),
            max_bytes: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|error| InventoryError::Syntax {
        path: path.to_owned(),
        line: None,
        column: None,
        message: format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        ),
    })
}

/// Parses YAML text into a tree, or `None` for a file with no document or an empty document.
pub(crate) fn parse_yaml(path: &Path, text: &str) -> Result<Option<Node>, InventoryError> {
    let node: Option<Node> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|error| yaml_error(path, text, &error))?;
    Ok(node.filter(|node| node.value != NodeValue::Null))
}

/// Parses JSON text (a `.json` variable file) into a tree.
pub(crate) fn parse_json(path: &Path, text: &str) -> Result<Option<Node>, InventoryError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| InventoryError::Syntax {
        path: path.to_owned(),
        line: Some(error.line() as u64),
        column: Some(error.column() as u64),
        message: format!("invalid JSON: {error}"),
    })?;
    Ok(Some(Node::from_json(value)).filter(|node| node.value != NodeValue::Null))
}

fn yaml_error(path: &Path, text: &str, error: &serde_saphyr::Error) -> InventoryError {
    let location = error.location().filter(|location| location.line() > 0);
    let inner = error.without_snippet();
    let mut message = format!("invalid YAML: {inner}");
    // The parser's message ends with the location, which the error prints before it.
    if let Some(location) = location {
        let suffix = format!(" at line {}, column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    let exceeded_limits = matches!(
        inner,
        serde_saphyr::Error::Budget { .. } | serde_saphyr::Error::AliasError { .. }
    ) || message.contains("limit");
    if exceeded_limits {
        message.push_str(" (the file exceeds ferry's limits on nodes, aliases or nesting, as an alias bomb would; simplify the file)");
    }
    if looks_like_ini(text) {
        message.push_str(" (this looks like an INI inventory, and ferry reads YAML inventories only: convert it with ansible-inventory -i FILE --list -y)");
    }
    InventoryError::Syntax {
        path: path.to_owned(),
        line: location.map(|location| location.line()),
        column: location.map(|location| location.column()),
        message,
    }
}

/// True when the first meaningful line is an INI section header such as `[web]`.
fn looks_like_ini(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .is_some_and(|line| line.starts_with('[') && line.ends_with(']') && !line.contains(','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_inventory_gets_a_hint() {
        let error = parse_yaml(Path::new("hosts"), "[web]\nnode1 ansible_host=10.0.0.1\n").unwrap_err();
        assert!(error.to_string().contains("ansible-inventory"), "{error}");
    }

    fn parse(text: &str) -> Node {
        parse_yaml(Path::new("test.yml"), text).unwrap().unwrap()
    }

    fn entry<'a>(node: &'a Node, key: &str) -> &'a Node {
        let NodeValue::Map(entries) = &node.value else {
            panic!("not a mapping: {node:?}")
        };
        &entries.iter().find(|(name, _)| name == key).unwrap().1
    }

    #[test]
    fn vault_tag_is_kept_with_text() {
        let root = parse("secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n");
        let secret = entry(&root, "secret");
        assert!(secret.is_tagged("!vault"));
        assert_eq!(
            secret.value,
            NodeValue::String("$ANSIBLE_VAULT;1.1;AES256\n6162\n".into())
        );
    }

    #[test]
    fn unsafe_tag_is_kept_on_nested_items() {
        let root = parse("list:\n  - !unsafe '{{ a }}'\n  - b\n");
        let NodeValue::Seq(items) = &entry(&root, "list").value else {
            panic!()
        };
        assert!(items[0].is_tagged("!unsafe"));
        assert_eq!(items[1].tag, None);
    }

    #[test]
    fn positions_are_recorded() {
        let root = parse("a: 1\nb:\n  c: x\n");
        let c = entry(entry(&root, "b"), "c");
        assert_eq!((c.line, c.column), (3, 6));
    }

    #[test]
    fn yaml_1_1_scalars() {
        let root = parse("octal: 0755\nyes_word: yes\nfloat: 1.5\nnull_word: ~\nkey_number: {10: x}\nnan: .nan\n");
        assert_eq!(entry(&root, "octal").to_json(), serde_json::json!(493));
        assert_eq!(entry(&root, "yes_word").to_json(), serde_json::json!(true));
        assert_eq!(entry(&root, "float").to_json(), serde_json::json!(1.5));
        assert_eq!(entry(&root, "null_word").value, NodeValue::Null);
        assert_eq!(entry(&root, "key_number").to_json(), serde_json::json!({"10": "x"}));
        assert_eq!(entry(&root, "nan").to_json(), serde_json::json!(".nan"));
    }

    #[test]
    fn repeated_key_keeps_last() {
        let root = parse("a: 1\na: 2\n");
        assert_eq!(root.to_json(), serde_json::json!({"a": 2}));
    }

    #[test]
    fn empty_file_is_none() {
        assert_eq!(parse_yaml(Path::new("e.yml"), "# only a comment\n").unwrap(), None);
        assert_eq!(parse_yaml(Path::new("e.yml"), "---\n").unwrap(), None);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let error = parse_yaml(Path::new("bad.yml"), "a: 1\n  b: 2\n").unwrap_err();
        let InventoryError::Syntax { line, column, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(*line, Some(2));
        assert_eq!(*column, Some(4));
        assert!(error.to_string().contains("bad.yml"), "{error}");
    }

    #[test]
    fn alias_bomb_is_stopped() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{previous}"); 9].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let error = parse_yaml(Path::new("bomb.yml"), &text).unwrap_err();
        assert!(error.to_string().contains("exceeds ferry's limits"), "{error}");
    }

    #[test]
    fn json_error_has_line() {
        let error = parse_json(Path::new("v.json"), "{\n  \"a\": 1,\n}\n").unwrap_err();
        let InventoryError::Syntax { line, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(*line, Some(3));
    }
}
