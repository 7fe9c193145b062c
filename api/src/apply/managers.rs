//! `metadata.managedFields`: who owns which fields, read from and written
//! to an object.
//!
//! An entry is identified as in Kubernetes by its manager, its operation
//! (`Apply` or `Update`) and its subresource: `kubectl` applying and
//! `kubectl` updating are two owners that may conflict with each other.

use serde_json::{json, Map, Value};

use super::fieldpath::{from_fields_v1, to_fields_v1, FieldSet};

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// Most `Update` entries kept, as the Kubernetes API server keeps them
/// (`DefaultMaxUpdateManagers`): beyond, the oldest are folded into one
/// `ancient-changes` entry, so an object written by many clients does not
/// grow without bound.
pub const UPDATE_MANAGERS_MAX: usize = 10;
/// The entry older `Update` entries are folded into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    /// RFC 3339, as the entry was last written.
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Manager {
    pub fn new(manager: &str, operation: &str, api_version: &str, now: &str) -> Manager {
        Manager {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: None,
            fields: FieldSet::new(),
        }
    }

    /// Whether this is the entry of `manager` doing `operation` on the
    /// main resource.
    pub fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_none()
    }

    /// How Kubernetes names the manager in a conflict:
    /// `"kubectl"` for an applier, `"kubectl-client-side-apply" using
    /// apps/v1` for an updater.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if let Some(sub) = &self.subresource {
            m.insert("subresource".into(), json!(sub));
        }
        Value::Object(m)
    }

    fn from_value(v: &Value) -> Option<Manager> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if v.get("fieldsType").is_some_and(|t| t != "FieldsV1") {
            return None;
        }
        let fields = match v.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(f) => from_fields_v1(f).ok()?,
        };
        Some(Manager {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }
}

/// What an object's `metadata.managedFields` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Absent, null, or not readable: nothing is known.
    Absent,
    /// `[]` or `[{}]`: a client asks to clear the record (Kubernetes'
    /// "reset managed fields").
    Reset,
    Entries(Vec<Manager>),
}

pub fn read(obj: &Value) -> Stored {
    let Some(list) = obj.pointer("/metadata/managedFields") else {
        return Stored::Absent;
    };
    let Value::Array(list) = list else {
        return Stored::Absent;
    };
    match list.as_slice() {
        [] => return Stored::Reset,
        [Value::Object(only)] if only.is_empty() => return Stored::Reset,
        _ => {}
    }
    let entries: Option<Vec<Manager>> = list.iter().map(Manager::from_value).collect();
    match entries {
        Some(entries) => Stored::Entries(entries),
        None => Stored::Absent,
    }
}

/// The entries as stored: without empty ones, at most
/// [`UPDATE_MANAGERS_MAX`] `Update` entries, `Apply` first, then oldest
/// first.
pub fn write(obj: &mut Value, mut managers: Vec<Manager>, now: &str) {
    managers.retain(|m| !m.fields.is_empty());
    cap_updates(&mut managers, now);
    managers.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.subresource,
        ))
    });
    let list: Vec<Value> = managers.iter().map(Manager::to_value).collect();
    if let Value::Object(root) = obj {
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            if list.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), Value::Array(list));
            }
        }
    }
}

fn cap_updates(managers: &mut Vec<Manager>, now: &str) {
    let updates = managers.iter().filter(|m| m.operation == UPDATE).count();
    if updates <= UPDATE_MANAGERS_MAX {
        return;
    }
    // The oldest updates (and any earlier fold) go into one entry.
    let mut order: Vec<usize> = (0..managers.len())
        .filter(|&i| managers[i].operation == UPDATE)
        .collect();
    order.sort_by(|&a, &b| managers[a].time.cmp(&managers[b].time));
    let mut fold: Vec<usize> = Vec::new();
    let ancient_first = order
        .iter()
        .filter(|&&i| managers[i].manager == ANCIENT_CHANGES)
        .chain(order.iter());
    for &i in ancient_first {
        if !fold.contains(&i) {
            fold.push(i);
        }
    }
    fold.truncate(updates - UPDATE_MANAGERS_MAX + 1);
    let mut ancient = Manager::new(ANCIENT_CHANGES, UPDATE, "", now);
    let mut kept = Vec::with_capacity(managers.len());
    for (i, m) in managers.drain(..).enumerate() {
        if fold.contains(&i) {
            if ancient.api_version.is_empty() {
                ancient.api_version = m.api_version.clone();
            }
            ancient.fields.extend(m.fields);
        } else {
            kept.push(m);
        }
    }
    kept.push(ancient);
    *managers = kept;
}
