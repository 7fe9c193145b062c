//! Field paths and sets of them, and their two spellings: the `FieldsV1`
//! trie stored in `metadata.managedFields` (`{"f:spec":{"f:replicas":{}}}`)
//! and the dotted form conflicts are reported in (`.spec.replicas`).
//!
//! A path is a list of [`Pe`] (path elements), as in structured-merge-diff:
//! a field of a map, an item of a keyed list (by its merge key), an item of
//! a set (by its value), or — only for stored objects whose keyed list has
//! an item without its key — an item by position.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::DEPTH_MAX;

/// One step of a field path. `Key` and `Value` hold compact JSON text, as
/// serde_json writes it (object keys sorted), so two spellings of one key
/// compare equal once parsed and written again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pe {
    /// `f:<name>`: a field of a map.
    Field(String),
    /// `k:{"name":"c"}`: the item of a keyed list with this merge key.
    Key(String),
    /// `v:"x"`: the item of a set (a list of scalars merged by value).
    Value(String),
    /// `i:3`: the item at this position (a keyed list's item without a key).
    Index(usize),
}

/// A path from the object's root.
pub type Path = Vec<Pe>;

/// The fields a manager owns, or that an object has: every leaf (a scalar,
/// an empty map, an atomic list or map) and every list item.
pub type FieldSet = BTreeSet<Path>;

/// The trie key meaning "this node itself is a member" when it also has
/// children (`k:{"name":"c"}: {".": {}, "f:image": {}}`).
const MEMBER: &str = ".";

impl Pe {
    /// The trie spelling: `f:name`, `k:{...}`, `v:...`, `i:N`.
    fn trie_key(&self) -> String {
        match self {
            Pe::Field(name) => format!("f:{name}"),
            Pe::Key(json) => format!("k:{json}"),
            Pe::Value(json) => format!("v:{json}"),
            Pe::Index(i) => format!("i:{i}"),
        }
    }

    fn from_trie_key(key: &str) -> Option<Pe> {
        let (prefix, rest) = key.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Pe::Field(rest.to_string())),
            "k:" => match serde_json::from_str::<Value>(rest).ok()? {
                key @ Value::Object(_) => Some(Pe::Key(key.to_string())),
                _ => None,
            },
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| Pe::Value(v.to_string())),
            "i:" => rest.parse().ok().map(Pe::Index),
            _ => None,
        }
    }
}

impl fmt::Display for Pe {
    /// structured-merge-diff's path spelling, which Kubernetes prints in
    /// conflicts: `.spec`, `[name="c"]`, `[="x"]`, `[3]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pe::Field(name) => write!(f, ".{name}"),
            Pe::Key(json) => match serde_json::from_str::<Map<String, Value>>(json) {
                Ok(key) => {
                    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))
                }
                Err(_) => write!(f, "[{json}]"),
            },
            Pe::Value(json) => write!(f, "[={json}]"),
            Pe::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// `.spec.template.spec.containers[name="c"].image`.
pub fn path_string(path: &[Pe]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// The key path element of a keyed list's item: `{"<key>": <value>}`.
pub fn key_pe(key: &str, value: &Value) -> Pe {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    Pe::Key(Value::Object(m).to_string())
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<Pe, Node>,
}

impl Node {
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(MEMBER.to_string(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe.trie_key(), child.to_value());
        }
        Value::Object(m)
    }
}

/// A set in its `FieldsV1` form.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }
    root.to_value()
}

/// Why a stored `FieldsV1` value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldsV1Error(pub String);

/// A set from its `FieldsV1` form.
pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
    let mut set = FieldSet::new();
    let Value::Object(m) = v else {
        return Err(FieldsV1Error("fieldsV1 must be an object".into()));
    };
    let mut path = Vec::new();
    read_node(m, &mut path, &mut set)?;
    Ok(set)
}

fn read_node(
    m: &Map<String, Value>,
    path: &mut Path,
    set: &mut FieldSet,
) -> Result<(), FieldsV1Error> {
    if path.len() > DEPTH_MAX {
        return Err(FieldsV1Error(format!(
            "fieldsV1 deeper than {DEPTH_MAX} levels"
        )));
    }
    for (k, v) in m {
        if k == MEMBER {
            if !path.is_empty() {
                set.insert(path.clone());
            }
            continue;
        }
        let pe = Pe::from_trie_key(k)
            .ok_or_else(|| FieldsV1Error(format!("{k:?} is not a fieldsV1 key")))?;
        let Value::Object(child) = v else {
            return Err(FieldsV1Error(format!("{k:?} must hold an object")));
        };
        path.push(pe);
        if child.is_empty() {
            set.insert(path.clone());
        } else {
            read_node(child, path, set)?;
        }
        path.pop();
    }
    Ok(())
}

/// Whether some path of `set` lies strictly below `prefix`.
pub fn has_descendant(set: &FieldSet, prefix: &[Pe]) -> bool {
    set.range::<[Pe], _>((
        std::ops::Bound::Excluded(prefix),
        std::ops::Bound::Unbounded,
    ))
    .next()
    .is_some_and(|p| p.starts_with(prefix))
}
