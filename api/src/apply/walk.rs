//! The walks over objects server-side apply needs, each following the
//! object's type through the one strategy table in
//! [`crate::patch::schema`]: the fields an object has ([`leaves`]), the
//! merge of an applied configuration into the live object ([`merge`]),
//! the removal of one field ([`remove`]), and the checks an applied
//! configuration must pass ([`check_config`]).
//!
//! How a list is owned comes from its patch strategy: merged by a key →
//! one item per key (`k:`), merged without a key → a set (`v:`), anything
//! else → atomic (owned and replaced whole). A map marked `replace` is
//! atomic; every other map is granular. Recursion stops at
//! [`DEPTH_MAX`]: deeper values are treated as atomic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldpath::{key_pe, path_string, FieldSet, Path, Pe};
use super::DEPTH_MAX;
use crate::patch::schema::{self, PatchStrategy};

/// How a list field is owned and merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Items identified by this merge key (`containers` by `name`).
    Keyed(&'static str),
    /// Scalars merged by value (`finalizers`).
    Set,
    /// Replaced and owned whole.
    Atomic,
}

pub fn list_kind(ty: Option<&str>, field: &str) -> ListKind {
    match ty.and_then(|t| schema::field_strategy(t, field)) {
        Some(s) if s.strategy.merges_lists() => match s.merge_key {
            Some(key) => ListKind::Keyed(key),
            None => ListKind::Set,
        },
        _ => ListKind::Atomic,
    }
}

fn atomic_map(ty: Option<&str>, field: &str) -> bool {
    ty.and_then(|t| schema::field_strategy(t, field))
        .is_some_and(|s| s.strategy == PatchStrategy::Replace)
}

/// Fields of the object's root never owned: they identify the object or
/// are the server's (structured-merge-diff strips the same, plus name and
/// namespace, which no apply can change).
const ROOT_IGNORED: &[&str] = &["apiVersion", "kind"];
/// Fields of the root's `metadata` never owned.
pub const METADATA_IGNORED: &[&str] = &[
    "name",
    "namespace",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

fn is_root_metadata(path: &[Pe]) -> bool {
    matches!(path, [Pe::Field(f)] if f == "metadata")
}

fn ignored(path: &[Pe], field: &str) -> bool {
    (path.is_empty() && ROOT_IGNORED.contains(&field))
        || (is_root_metadata(path) && METADATA_IGNORED.contains(&field))
}

/// Stands for a list item in [`leaves`]: an item is there or not, its
/// fields carry its values.
static ITEM: Value = Value::Bool(true);

/// The path element of item `index` of a list of kind `kind`.
pub fn item_pe(kind: ListKind, index: usize, item: &Value) -> Pe {
    match kind {
        ListKind::Keyed(key) => match item.get(key) {
            Some(k) if !k.is_null() => key_pe(key, k),
            _ => Pe::Index(index),
        },
        ListKind::Set | ListKind::Atomic => Pe::Value(item.to_string()),
    }
}

/// Every owned-able field of `obj` (an object of root type `root`), with
/// its value: what structured-merge-diff calls the object's field set.
pub fn leaves<'a>(obj: &'a Value, root: &str) -> BTreeMap<Path, &'a Value> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = obj {
        leaves_map(m, Some(root), &mut Vec::new(), &mut out);
    }
    out
}

/// The paths of [`leaves`].
pub fn field_set(obj: &Value, root: &str) -> FieldSet {
    leaves(obj, root).into_keys().collect()
}

fn leaves_map<'a>(
    m: &'a Map<String, Value>,
    ty: Option<&str>,
    path: &mut Path,
    out: &mut BTreeMap<Path, &'a Value>,
) {
    for (k, v) in m {
        if ignored(path, k) {
            continue;
        }
        path.push(Pe::Field(k.clone()));
        let child = ty.and_then(|t| schema::field_type(t, k));
        match v {
            Value::Object(cm) if is_root_metadata(path) => leaves_map(cm, child, path, out),
            Value::Object(cm) if !cm.is_empty() && !atomic_map(ty, k) && path.len() < DEPTH_MAX => {
                leaves_map(cm, child, path, out);
            }
            Value::Array(items) if !items.is_empty() && path.len() < DEPTH_MAX => {
                match list_kind(ty, k) {
                    ListKind::Atomic => {
                        out.insert(path.clone(), v);
                    }
                    kind => {
                        for (i, item) in items.iter().enumerate() {
                            path.push(item_pe(kind, i, item));
                            match (kind, item) {
                                (ListKind::Keyed(_), Value::Object(im)) => {
                                    out.insert(path.clone(), &ITEM);
                                    leaves_map(im, child, path, out);
                                }
                                _ => {
                                    out.insert(path.clone(), item);
                                }
                            }
                            path.pop();
                        }
                    }
                }
            }
            _ => {
                out.insert(path.clone(), v);
            }
        }
        path.pop();
    }
}

/// The fields `new` added, changed or dropped compared with `old`.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

pub fn compare(old: &Value, new: &Value, root: &str) -> Comparison {
    let old = leaves(old, root);
    let new = leaves(new, root);
    let mut c = Comparison::default();
    for (path, value) in &new {
        match old.get(path) {
            None => {
                c.added.insert(path.clone());
            }
            Some(before) if before != value => {
                c.modified.insert(path.clone());
            }
            Some(_) => {}
        }
    }
    c.removed = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .cloned()
        .collect();
    c
}

/// `live` with every field of the applied `config` set: maps merge,
/// keyed lists merge item by item (live order, new items after), sets
/// are a union, everything else is replaced. A `null` in the config
/// removes the field.
pub fn merge(live: &mut Map<String, Value>, config: &Map<String, Value>, root: &str) {
    merge_map(live, config, Some(root), &mut Vec::new());
}

fn merge_map(
    live: &mut Map<String, Value>,
    config: &Map<String, Value>,
    ty: Option<&str>,
    path: &mut Path,
) {
    for (k, cv) in config {
        if ignored(path, k) {
            // apiVersion, kind, name and namespace identify the object:
            // kept from the config on create, never changed after.
            let identity = ["apiVersion", "kind", "name", "namespace"].contains(&k.as_str());
            if identity && !live.contains_key(k) && !cv.is_null() {
                live.insert(k.clone(), cv.clone());
            }
            continue;
        }
        path.push(Pe::Field(k.clone()));
        let child = ty.and_then(|t| schema::field_type(t, k));
        let deep = path.len() >= DEPTH_MAX;
        match (live.get_mut(k), cv) {
            (_, Value::Null) => {
                live.remove(k);
            }
            (Some(Value::Object(lm)), Value::Object(cm)) if !atomic_map(ty, k) && !deep => {
                merge_map(lm, cm, child, path);
            }
            // A new map: merged into nothing, so that what no apply sets
            // (the root's server fields, nulls) stays out.
            (_, Value::Object(cm)) if !atomic_map(ty, k) && !deep => {
                let mut m = Map::new();
                merge_map(&mut m, cm, child, path);
                live.insert(k.clone(), Value::Object(m));
            }
            (Some(Value::Array(items)), Value::Array(citems)) if !deep => match list_kind(ty, k) {
                ListKind::Atomic => *items = citems.clone(),
                ListKind::Set => {
                    for c in citems {
                        if !items.contains(c) {
                            items.push(c.clone());
                        }
                    }
                }
                kind @ ListKind::Keyed(_) => merge_keyed(items, citems, kind, child, path),
            },
            _ => {
                live.insert(k.clone(), cv.clone());
            }
        }
        path.pop();
    }
}

fn merge_keyed(
    items: &mut Vec<Value>,
    config: &[Value],
    kind: ListKind,
    ty: Option<&str>,
    path: &mut Path,
) {
    let mut index: BTreeMap<Pe, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        index.entry(item_pe(kind, i, item)).or_insert(i);
    }
    for (ci, c) in config.iter().enumerate() {
        let pe = item_pe(kind, ci, c);
        match (index.get(&pe).copied(), c) {
            (Some(i), Value::Object(cm)) => {
                path.push(pe);
                match items.get_mut(i) {
                    Some(Value::Object(lm)) => merge_map(lm, cm, ty, path),
                    Some(slot) => *slot = c.clone(),
                    None => {}
                }
                path.pop();
            }
            (Some(i), _) => {
                if let Some(slot) = items.get_mut(i) {
                    *slot = c.clone();
                }
            }
            (None, _) => {
                index.insert(pe, items.len());
                items.push(c.clone());
            }
        }
    }
}

/// Removes the field at `path` from `obj`; a map or list left empty by
/// the removal goes too, unless `keep` (the fields still owned) holds it.
/// The root's `metadata` always stays.
pub fn remove(obj: &mut Value, path: &[Pe], keep: &FieldSet) {
    remove_at(obj, path, 0, keep);
}

fn remove_at(v: &mut Value, path: &[Pe], at: usize, keep: &FieldSet) -> bool {
    let Some(pe) = path.get(at) else {
        return false;
    };
    let last = at + 1 == path.len();
    match (v, pe) {
        (Value::Object(m), Pe::Field(name)) => {
            if last {
                return m.remove(name).is_some();
            }
            let Some(child) = m.get_mut(name) else {
                return false;
            };
            let removed = remove_at(child, path, at + 1, keep);
            let emptied = match child {
                Value::Object(cm) => cm.is_empty(),
                Value::Array(items) => items.is_empty(),
                _ => false,
            };
            let here = &path[..=at];
            if removed && emptied && !is_root_metadata(here) && !keep.contains(here) {
                m.remove(name);
            }
            removed
        }
        (Value::Array(items), pe) => {
            let Some(i) = find_item(items, pe) else {
                return false;
            };
            if last {
                items.remove(i);
                return true;
            }
            items
                .get_mut(i)
                .is_some_and(|item| remove_at(item, path, at + 1, keep))
        }
        _ => false,
    }
}

fn find_item(items: &[Value], pe: &Pe) -> Option<usize> {
    match pe {
        Pe::Index(i) => (*i < items.len()).then_some(*i),
        Pe::Value(json) => {
            let want: Value = serde_json::from_str(json).ok()?;
            items.iter().position(|item| *item == want)
        }
        Pe::Key(json) => {
            let key: Map<String, Value> = serde_json::from_str(json).ok()?;
            items
                .iter()
                .position(|item| key.iter().all(|(k, want)| item.get(k) == Some(want)))
        }
        Pe::Field(_) => None,
    }
}

/// What is wrong with an applied configuration, at which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub rule: String,
}

/// An applied configuration must stay within [`DEPTH_MAX`], name every
/// keyed item's key, and hold each key or set value once.
pub fn check_config(config: &Map<String, Value>, root: &str) -> Result<(), ConfigError> {
    check_map(config, Some(root), &mut Vec::new())
}

fn check_map(m: &Map<String, Value>, ty: Option<&str>, path: &mut Path) -> Result<(), ConfigError> {
    if path.len() >= DEPTH_MAX {
        return Err(ConfigError {
            field: path_string(path),
            rule: format!("nested deeper than {DEPTH_MAX} levels"),
        });
    }
    for (k, v) in m {
        path.push(Pe::Field(k.clone()));
        let child = ty.and_then(|t| schema::field_type(t, k));
        match v {
            Value::Object(cm) => check_map(cm, child, path)?,
            Value::Array(items) => check_list(items, list_kind(ty, k), child, path)?,
            _ => {}
        }
        path.pop();
    }
    Ok(())
}

fn check_list(
    items: &[Value],
    kind: ListKind,
    ty: Option<&str>,
    path: &mut Path,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let pe = item_pe(kind, i, item);
        let fail = |rule: String| ConfigError {
            field: format!("{}[{i}]", path_string(path)),
            rule,
        };
        match (kind, &pe) {
            (ListKind::Keyed(key), Pe::Index(_)) => {
                return Err(fail(format!(
                    "an item of a list keyed by {key:?} must set {key:?}"
                )))
            }
            (ListKind::Atomic, _) => {}
            _ if !seen.insert(pe.clone()) => {
                return Err(fail(format!("duplicate item {pe}")));
            }
            _ => {}
        }
        if let Value::Object(im) = item {
            path.push(if kind == ListKind::Atomic {
                Pe::Index(i)
            } else {
                pe
            });
            check_map(im, ty, path)?;
            path.pop();
        }
    }
    Ok(())
}
