//! Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`),
//! as kubectl sends it for `kubectl patch` and client-side `kubectl apply`.
//!
//! The semantics are those of apimachinery's `pkg/util/strategicpatch` when
//! the server applies a patch:
//! - maps merge recursively and `null` deletes a key; a map carrying
//!   `"$patch": "replace"` replaces the map, `"$patch": "delete"` empties
//!   it (an absent map stays absent); `"$retainKeys": [...]` first drops
//!   every key of the current map not listed;
//! - a list is merged or replaced by its field's strategy in
//!   [`super::schema`]: without one it is replaced. Merged lists of objects
//!   match elements by their merge key: an element `{"$patch": "delete",
//!   key}` removes the matching ones, an element `{"$patch": "replace"}`
//!   makes the list the patch's other elements, a matching element merges
//!   recursively, a new one is added. Merged lists of strings or numbers
//!   are a union, less `$deleteFromPrimitiveList/<field>`;
//! - the patch's elements come in the order of `$setElementOrder/<field>`,
//!   or of the patch list without one; an element only the server has
//!   keeps its place before the first patch element that followed it in
//!   the current list (after all of them when none did).
//!
//! Differences, each on purpose: directive keys never reach the result
//! (apimachinery leaves some in values it copies without merging), an
//! unknown `$...` key is refused instead of stored, a `$patch` element or
//! a `$setElementOrder` on a list the schema replaces whole is refused
//! (it means the client's schema merges a list ours does not), and an
//! element the server holds without a merge key is kept in place instead
//! of failing every later patch, and numbers compare by value (`80` and
//! `80.0` are one merge key).
//!
//! Pure functions over [`serde_json::Value`]; recursion follows the patch's
//! depth, which JSON parsing bounds.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::schema::{self, PatchStrategy};
use crate::kind::Kind;

/// `$patch`: `replace` or `delete` a map or a list element.
const PATCH: &str = "$patch";
/// `$retainKeys`: the only keys a map keeps.
const RETAIN_KEYS: &str = "$retainKeys";
/// `$setElementOrder/<field>`: the order of a merged list.
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// `$deleteFromPrimitiveList/<field>`: values to remove from a list of scalars.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch cannot be applied; the request is malformed
/// for the object it targets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {rule}", if path.is_empty() { "the patch" } else { path.as_str() })]
pub struct StrategicError {
    /// Where, as a field path in the patch (`spec.template.spec.containers[1]`).
    pub path: String,
    /// What is wrong, in words.
    pub rule: String,
}

type Result<T, E = StrategicError> = std::result::Result<T, E>;

fn fail<T>(path: &str, rule: impl Into<String>) -> Result<T> {
    Err(StrategicError {
        path: path.to_string(),
        rule: rule.into(),
    })
}

fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// `current` (an object of `kind`) with the strategic merge `patch` applied.
pub fn strategic_merge_patch(kind: Kind, current: &Value, patch: &Value) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return fail(
            "",
            format!(
                "must be a JSON object, not {}",
                crate::meta::type_name(patch)
            ),
        );
    };
    if patch.get(PATCH).and_then(Value::as_str) == Some("delete") {
        return fail(
            PATCH,
            "\"delete\" at the top would delete the whole object; send a DELETE instead",
        );
    }
    let original = current.as_object().cloned().unwrap_or_default();
    merge_map(original, patch, Some(schema::root_type(kind)), "").map(Value::Object)
}

/// The directives and fields of one patch map, sorted out.
#[derive(Default)]
struct MapPatch<'a> {
    fields: BTreeMap<&'a str, &'a Value>,
    orders: BTreeMap<&'a str, &'a [Value]>,
    deletions: BTreeMap<&'a str, &'a [Value]>,
    retain: Option<BTreeSet<&'a str>>,
}

fn directive_list<'a>(path: &str, key: &str, v: &'a Value) -> Result<&'a [Value]> {
    match v {
        Value::Array(list) => Ok(list),
        other => fail(
            &child_path(path, key),
            format!("must be a list, not {}", crate::meta::type_name(other)),
        ),
    }
}

fn sort_out<'a>(patch: &'a Map<String, Value>, path: &str) -> Result<MapPatch<'a>> {
    let mut out = MapPatch::default();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) {
            out.orders.insert(field, directive_list(path, k, v)?);
        } else if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            out.deletions.insert(field, directive_list(path, k, v)?);
        } else if k == RETAIN_KEYS {
            let mut keys = BTreeSet::new();
            for key in directive_list(path, k, v)? {
                match key.as_str() {
                    Some(key) => keys.insert(key),
                    None => {
                        return fail(
                            &child_path(path, k),
                            format!("lists field names, not {}", crate::meta::type_name(key)),
                        )
                    }
                };
            }
            out.retain = Some(keys);
        } else if k.starts_with('$') {
            return fail(
                &child_path(path, k),
                "unknown patch directive (known: $patch, $retainKeys, \
                 $setElementOrder/<field>, $deleteFromPrimitiveList/<field>)",
            );
        } else {
            out.fields.insert(k, v);
        }
    }
    Ok(out)
}

/// `original` with the map `patch` merged in; `ty` is the type both are of.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Option<&str>,
    path: &str,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(PATCH) {
        return match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.remove(PATCH);
                merge_map(Map::new(), &rest, ty, path)
            }
            Some("delete") => Ok(Map::new()),
            _ => fail(
                &child_path(path, PATCH),
                format!(
                    "{directive} is not a patch directive for a map (use \"replace\" or \"delete\")"
                ),
            ),
        };
    }
    let parts = sort_out(patch, path)?;
    if let Some(retain) = &parts.retain {
        for (field, value) in &parts.fields {
            if !value.is_null() && !retain.contains(field) {
                return fail(
                    &child_path(path, field),
                    format!("is set but not listed in {RETAIN_KEYS}"),
                );
            }
        }
        original.retain(|k, _| retain.contains(k.as_str()));
    }
    let names: BTreeSet<&str> = parts
        .fields
        .keys()
        .chain(parts.orders.keys())
        .chain(parts.deletions.keys())
        .copied()
        .collect();
    for name in names {
        let field_path = child_path(path, name);
        let strategy = ty.and_then(|t| schema::field_strategy(t, name));
        let child = ty.and_then(|t| schema::field_type(t, name));
        let list = ListPatch {
            order: parts.orders.get(name).copied(),
            deletions: parts.deletions.get(name).copied(),
            strategy: strategy.map(|s| s.strategy),
            merge_key: strategy.and_then(|s| s.merge_key),
            element: child,
            field: name,
        };
        match parts.fields.get(name).copied() {
            Some(Value::Null) => {
                original.remove(name);
            }
            Some(Value::Object(value)) => {
                list.refuse_directives(&field_path, "an object")?;
                let current = original.remove(name);
                let merged = match current {
                    _ if strategy.map(|s| s.strategy) == Some(PatchStrategy::Replace) => {
                        merge_map(Map::new(), value, child, &field_path)?
                    }
                    Some(Value::Object(current)) => merge_map(current, value, child, &field_path)?,
                    // Nothing (or not a map) to delete the contents of:
                    // the field stays absent.
                    _ if value.get(PATCH).and_then(Value::as_str) == Some("delete") => continue,
                    _ => merge_map(Map::new(), value, child, &field_path)?,
                };
                original.insert(name.to_string(), Value::Object(merged));
            }
            Some(Value::Array(value)) => {
                let current = match original.remove(name) {
                    Some(Value::Array(current)) => current,
                    _ => Vec::new(),
                };
                let merged = list.apply(current, Some(value), &field_path)?;
                original.insert(name.to_string(), Value::Array(merged));
            }
            Some(scalar) => {
                list.refuse_directives(&field_path, crate::meta::type_name(scalar))?;
                original.insert(name.to_string(), scalar.clone());
            }
            // Only directives name the field: they order or thin a list
            // the object already has.
            None => match original.remove(name) {
                Some(Value::Array(current)) => {
                    let merged = list.apply(current, None, &field_path)?;
                    original.insert(name.to_string(), Value::Array(merged));
                }
                Some(other) => {
                    return fail(
                        &field_path,
                        format!(
                            "is {} in the object; list directives apply to lists",
                            crate::meta::type_name(&other)
                        ),
                    )
                }
                None => {}
            },
        }
    }
    Ok(original)
}

/// One list field of a patch map: its patch value and directives, and
/// its strategy from the schema.
struct ListPatch<'a> {
    order: Option<&'a [Value]>,
    deletions: Option<&'a [Value]>,
    strategy: Option<PatchStrategy>,
    merge_key: Option<&'static str>,
    /// The type of the list's elements, when the schema knows it.
    element: Option<&'static str>,
    field: &'a str,
}

impl ListPatch<'_> {
    fn refuse_directives(&self, path: &str, what: &str) -> Result<()> {
        if self.order.is_some() || self.deletions.is_some() {
            return fail(
                path,
                format!("the patch sets {what} here, but list directives name it"),
            );
        }
        Ok(())
    }

    fn apply(
        &self,
        current: Vec<Value>,
        patch: Option<&[Value]>,
        path: &str,
    ) -> Result<Vec<Value>> {
        let merges = self.strategy.is_some_and(PatchStrategy::merges_lists);
        let mut list = match (merges, self.merge_key) {
            (true, Some(key)) => {
                if self.deletions.is_some() {
                    return fail(
                        path,
                        format!(
                            "{DELETE_FROM_PRIMITIVE_LIST}{} applies to lists of strings or numbers; \
                             this list is merged by {key:?}: send {{\"$patch\": \"delete\", {key:?}: …}} elements",
                            self.field
                        ),
                    );
                }
                merge_by_key(
                    current,
                    patch.unwrap_or(&[]),
                    key,
                    self.order,
                    self.element,
                    path,
                )?
            }
            (true, None) => merge_as_set(current, patch.unwrap_or(&[]), self.order, path)?,
            (false, _) => {
                if self.order.is_some() {
                    return fail(
                        path,
                        format!(
                            "{SET_ELEMENT_ORDER}{} names a list that is replaced whole, not merged",
                            self.field
                        ),
                    );
                }
                match patch {
                    Some(patch) => replacement(patch, self.element, path)?,
                    None => current,
                }
            }
        };
        if let Some(deletions) = self.deletions {
            list.retain(|v| !deletions.iter().any(|d| same(d, v)));
        }
        Ok(list)
    }
}

/// A patch list that replaces the current one: its elements as they would
/// be created (nulls dropped, nested directives applied).
fn replacement(patch: &[Value], element: Option<&str>, path: &str) -> Result<Vec<Value>> {
    patch
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("{path}[{i}]");
            match v {
                Value::Object(m) if m.contains_key(PATCH) => fail(
                    &at,
                    "$patch in an element of a list that is replaced whole \
                     (only lists merged by key take $patch elements)",
                ),
                Value::Object(m) => merge_map(Map::new(), m, element, &at).map(Value::Object),
                Value::Array(inner) => replacement(inner, None, &at).map(Value::Array),
                other => Ok(other.clone()),
            }
        })
        .collect()
}

/// Equal as JSON values, with numbers compared by value (`80` and `80.0`),
/// as apimachinery compares them after decoding.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// One element of a merged list and where it was in the current list.
struct Entry {
    value: Value,
    /// Position in the current list (after deletions); `None` when the
    /// patch added it.
    position: Option<usize>,
}

/// Merge a list of objects identified by `key`.
fn merge_by_key(
    current: Vec<Value>,
    patch: &[Value],
    key: &str,
    order: Option<&[Value]>,
    element: Option<&str>,
    path: &str,
) -> Result<Vec<Value>> {
    let key_of = |v: &Value| v.as_object().and_then(|m| m.get(key)).cloned();
    let has_key = |v: &Value, wanted: &Value| {
        v.as_object()
            .and_then(|m| m.get(key))
            .is_some_and(|k| same(k, wanted))
    };
    let mut replace = false;
    let mut deleted: Vec<Value> = Vec::new();
    let mut items: Vec<(usize, &Map<String, Value>)> = Vec::new();
    for (i, v) in patch.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::Object(m) = v else {
            return fail(
                &at,
                format!(
                    "is {}; this list holds objects merged by {key:?}",
                    crate::meta::type_name(v)
                ),
            );
        };
        match m.get(PATCH).map(|d| d.as_str()) {
            None => {
                if !m.contains_key(key) {
                    return fail(&at, format!("has no merge key {key:?}"));
                }
                items.push((i, m));
            }
            Some(Some("delete")) => match m.get(key) {
                Some(k) => deleted.push(k.clone()),
                None => {
                    return fail(
                        &at,
                        format!("deletes an element but has no merge key {key:?}"),
                    )
                }
            },
            Some(Some("replace")) => replace = true,
            Some(_) => {
                return fail(
                    &child_path(&at, PATCH),
                    "must be \"delete\" (with the merge key) or \"replace\" in a list element",
                )
            }
        }
    }

    let mut entries: Vec<Entry> = Vec::new();
    if replace {
        // The list becomes the patch's other elements, in their order.
        for (position, (i, m)) in items.iter().enumerate() {
            let value = merge_map(Map::new(), m, element, &format!("{path}[{i}]"))?;
            entries.push(Entry {
                value: Value::Object(value),
                position: Some(position),
            });
        }
        items.clear();
    } else {
        let kept = current
            .into_iter()
            .filter(|v| !deleted.iter().any(|d| has_key(v, d)));
        entries.extend(kept.enumerate().map(|(position, value)| Entry {
            value,
            position: Some(position),
        }));
        for (i, m) in &items {
            let at = format!("{path}[{i}]");
            let found = match m.get(key) {
                Some(wanted) => entries.iter_mut().find(|e| has_key(&e.value, wanted)),
                None => None,
            };
            match found {
                Some(entry) => {
                    let base = match std::mem::take(&mut entry.value) {
                        Value::Object(base) => base,
                        _ => Map::new(),
                    };
                    entry.value = Value::Object(merge_map(base, m, element, &at)?);
                }
                None => entries.push(Entry {
                    value: Value::Object(merge_map(Map::new(), m, element, &at)?),
                    position: None,
                }),
            }
        }
    }

    let patch_keys: Vec<Value> = items
        .iter()
        .filter_map(|(_, m)| m.get(key).cloned())
        .collect();
    let order_keys = match order {
        Some(order) => {
            let mut keys = Vec::with_capacity(order.len());
            for (i, v) in order.iter().enumerate() {
                match key_of(v) {
                    Some(k) => keys.push(k),
                    None => {
                        return fail(
                            &format!("{path} ({SET_ELEMENT_ORDER}[{i}])"),
                            format!("has no merge key {key:?}"),
                        )
                    }
                }
            }
            check_order(&patch_keys, &keys, path)?;
            keys
        }
        None => patch_keys,
    };
    Ok(interleave(entries, &order_keys, |e| key_of(&e.value)))
}

/// Merge a list of strings or numbers as a set.
fn merge_as_set(
    current: Vec<Value>,
    patch: &[Value],
    order: Option<&[Value]>,
    path: &str,
) -> Result<Vec<Value>> {
    let scalars = |list: &[Value], at: &dyn Fn(usize) -> String| -> Result<()> {
        match list.iter().position(|v| v.is_object() || v.is_array()) {
            Some(i) => fail(
                &at(i),
                format!(
                    "is {}; this list is merged as a set of strings or numbers",
                    crate::meta::type_name(&list[i])
                ),
            ),
            None => Ok(()),
        }
    };
    scalars(patch, &|i| format!("{path}[{i}]"))?;
    scalars(order.unwrap_or(&[]), &|i| {
        format!("{path} ({SET_ELEMENT_ORDER}[{i}])")
    })?;
    let mut entries: Vec<Entry> = Vec::new();
    for (position, value) in current.into_iter().enumerate() {
        if !entries.iter().any(|e| same(&e.value, &value)) {
            entries.push(Entry {
                value,
                position: Some(position),
            });
        }
    }
    for value in patch {
        if !entries.iter().any(|e| same(&e.value, value)) {
            entries.push(Entry {
                value: value.clone(),
                position: None,
            });
        }
    }
    let order_values = match order {
        Some(order) => {
            check_order(patch, order, path)?;
            order.to_vec()
        }
        None => patch.to_vec(),
    };
    Ok(interleave(entries, &order_values, |e| {
        Some(e.value.clone())
    }))
}

/// The patch's elements (by identity) must appear in the
/// `$setElementOrder` list, in the same relative order.
fn check_order(patch: &[Value], order: &[Value], path: &str) -> Result<()> {
    let mut rest = order.iter();
    for p in patch {
        if !rest.any(|o| same(o, p)) {
            return fail(
                path,
                format!(
                    "the patch's elements are not listed, in their order, by its {SET_ELEMENT_ORDER} list"
                ),
            );
        }
    }
    Ok(())
}

/// The merged list in its final order: the elements named by `order`
/// sorted as it says, and the server's other elements kept in their
/// current order, each placed before the first named element that came
/// after it in the current list.
fn interleave(
    entries: Vec<Entry>,
    order: &[Value],
    identity: impl Fn(&Entry) -> Option<Value>,
) -> Vec<Value> {
    let rank = |e: &Entry| identity(e).and_then(|id| order.iter().position(|o| same(o, &id)));
    let mut named: Vec<(usize, Entry)> = Vec::new();
    let mut server_only: Vec<Entry> = Vec::new();
    for e in entries {
        match rank(&e) {
            Some(r) => named.push((r, e)),
            None => server_only.push(e),
        }
    }
    named.sort_by_key(|(r, _)| *r);
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut named = named.into_iter().map(|(_, e)| e).peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), named.peek()) {
            (Some(s), Some(n)) => matches!(
                (s.position, n.position),
                (Some(sp), Some(np)) if sp < np
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        let next = if take_server {
            server_only.next()
        } else {
            named.next()
        };
        if let Some(e) = next {
            out.push(e.value);
        }
    }
}

#[cfg(test)]
mod tests;
