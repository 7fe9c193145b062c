//! Server-side apply (`PATCH` with `application/apply-patch+yaml`), with
//! the field ownership Kubernetes keeps in `metadata.managedFields`.
//!
//! This is the server's apply; the client-side one (`kubus apply`, the
//! three-way merge over the last-applied annotation) is
//! [`crate::patch::three_way_merge`]. Semantics are structured-merge-diff's,
//! as the Kubernetes API server runs them:
//! - a manager owns the fields of the configuration it applied last: every
//!   leaf (scalar, empty map, atomic list or map) and every list item;
//! - applying sets every field of the configuration; a field the manager
//!   applied before and no longer applies is removed, unless another
//!   manager owns it (a map: or something below it; a list item goes
//!   whole, with any fields updaters set inside it, as in Kubernetes);
//! - changing a field another manager owns is a conflict (409) naming each
//!   field and its manager, unless forced, when ownership moves; applying
//!   the value a field already has shares its ownership;
//! - any other write ([`record_update`]) makes the fields it changed its
//!   manager's, taking them from everyone else.
//!
//! Lists and maps follow the one strategy table,
//! [`crate::patch::schema::FIELD_STRATEGIES`]: a list merged by a key is
//! owned item by item (`k:{"name":"c"}`), a list merged without one is a
//! set (`v:"x"`), every other list is atomic; maps are granular except
//! those patched by `replace`. Differences from Kubernetes, on purpose or
//! for now: an item's key is the table's one merge key (Kubernetes keys
//! container ports by `containerPort` and `protocol`); unions (a Deployment's `strategy`) are not cleared by discriminator.
//!
//! Pure functions over [`serde_json::Value`]; recursion is capped at
//! [`DEPTH_MAX`].

mod fieldpath;
mod managers;
mod walk;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldCause, Reason};
use crate::kind::{Kind, ObjectRef};
use crate::meta;
use crate::patch::schema;
use fieldpath::{has_descendant, path_string, FieldSet, Path, Pe};
use managers::{Manager, Stored, APPLY, UPDATE};

pub use managers::{ANCIENT_CHANGES, UPDATE_MANAGERS_MAX};

/// Deepest field path walked. Kubernetes' deepest types nest about 20
/// levels (a CronJob's pod affinity terms); serde_json stops parsing at
/// 128. An applied configuration deeper than this is refused; a stored
/// value deeper is owned whole at this depth.
pub const DEPTH_MAX: usize = 64;

/// Longest `fieldManager`, as Kubernetes allows.
pub const FIELD_MANAGER_LEN_MAX: usize = 128;

/// The manager Kubernetes gives every field of an object that had no
/// `managedFields` when it is first applied to.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One server-side apply.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    pub kind: Kind,
    /// `?fieldManager=`.
    pub manager: &'a str,
    /// `?force=true`: take the conflicting fields instead of failing.
    pub force: bool,
    /// RFC 3339: the time written in the manager's entry.
    pub now: &'a str,
}

/// `current`: the stored object (None: it does not exist yet); `applied`:
/// the applied configuration (a partial object with apiVersion, kind,
/// metadata.name).
///
/// Returns the object to store, with `metadata.managedFields` updated (the
/// stored object itself, unchanged, when the apply changes nothing), or a
/// `Conflict` naming each conflicting field and its manager as Kubernetes
/// words it (`Apply failed with 1 conflict: conflict with
/// "kubectl-client-side-apply" using apps/v1: .spec.replicas`), with one
/// cause per field.
pub fn server_side_apply(
    req: &ApplyRequest,
    current: Option<&Value>,
    applied: &Value,
) -> Result<Value, ApiError> {
    let root = schema::root_type(req.kind);
    let object = ObjectRef::new(
        req.kind,
        meta::namespace(applied).or_else(|| current.and_then(meta::namespace)),
        meta::name(applied)
            .or_else(|| current.and_then(meta::name))
            .unwrap_or_default(),
    );
    let config = check_request(req, &object, current, applied)?;

    let live = current
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut managers = match current {
        None => Vec::new(),
        Some(c) => match managers::read(c) {
            Stored::Entries(entries) if !entries.is_empty() => entries,
            // Fields set before anyone applied keep an owner, so the first
            // apply conflicts with them as it would with their writer.
            _ => {
                let mut m =
                    Manager::new(BEFORE_FIRST_APPLY, UPDATE, req.kind.api_version(), req.now);
                m.fields = walk::field_set(c, root);
                vec![m]
            }
        },
    };
    let managers_before = managers.clone();

    let mut merged = live.as_object().cloned().unwrap_or_default();
    walk::merge(&mut merged, config, root);
    let mut merged = Value::Object(merged);

    let applier = match managers.iter().position(|m| m.is(req.manager, APPLY)) {
        Some(i) => i,
        None => {
            managers.push(Manager::new(
                req.manager,
                APPLY,
                req.kind.api_version(),
                req.now,
            ));
            managers.len() - 1
        }
    };
    let last_applied = std::mem::replace(
        &mut managers[applier].fields,
        walk::field_set(applied, root),
    );

    // What the manager stopped applying goes, unless someone still owns it.
    let owned: FieldSet = managers
        .iter()
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    // A list item no one else owns goes whole, with its fields (as in
    // structured-merge-diff: fields an updater set inside it, such as
    // defaults, do not keep an item without its key); a map goes only when
    // nothing below it is owned. Only the topmost of those is removed.
    let mut gone: Vec<&Path> = Vec::new();
    for path in &last_applied {
        let above = gone.last().is_some_and(|g| path.starts_with(g));
        let item = matches!(path.last(), Some(Pe::Key(_) | Pe::Value(_) | Pe::Index(_)));
        let kept = owned.contains(path) || (!item && has_descendant(&owned, path));
        if !above && !kept {
            gone.push(path);
        }
    }
    // Last first: positions (`i:N`) earlier in a list stay valid.
    for path in gone.into_iter().rev() {
        walk::remove(&mut merged, path, &owned);
    }

    let change = walk::compare(&live, &merged, root);
    let changed: FieldSet = change.added.union(&change.modified).cloned().collect();
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for (i, m) in managers.iter().enumerate() {
        if i != applier {
            for path in m.fields.intersection(&changed) {
                conflicts.push((m.describe(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !req.force {
        return Err(conflict(object, conflicts));
    }
    for (i, m) in managers.iter_mut().enumerate() {
        if i != applier {
            m.fields
                .retain(|p| !changed.contains(p) && !change.removed.contains(p));
        }
    }

    if let Some(c) = current {
        let same_owners = managers.len() == managers_before.len()
            && managers
                .iter()
                .zip(&managers_before)
                .all(|(a, b)| a.fields == b.fields);
        if same_owners && merged == *c {
            return Ok(c.clone());
        }
    }
    let entry = &mut managers[applier];
    entry.time = Some(req.now.to_string());
    entry.api_version = req.kind.api_version().to_string();
    managers::write(&mut merged, managers, req.now);
    Ok(merged)
}

/// Records a non-apply write (create, update or patch by `manager`,
/// operation `Update`) in `after`'s `metadata.managedFields`: the fields it
/// added or changed become that manager's and no one else's; fields it
/// removed are no one's.
///
/// The record starts from `after`'s own `managedFields` when the writer
/// sent some (`[]` clears them, as in Kubernetes), else from `before`'s.
pub fn record_update(
    kind: Kind,
    manager: &str,
    now: &str,
    before: Option<&Value>,
    after: &mut Value,
) {
    let root = schema::root_type(kind);
    let mut managers = match managers::read(after) {
        Stored::Reset => Vec::new(),
        Stored::Entries(entries) if !entries.is_empty() => entries,
        _ => match before.map(managers::read) {
            Some(Stored::Entries(entries)) => entries,
            _ => Vec::new(),
        },
    };
    let empty = Value::Object(Map::new());
    let change = walk::compare(before.unwrap_or(&empty), after, root);
    if !change.is_empty() {
        let changed: FieldSet = change.added.union(&change.modified).cloned().collect();
        for m in &mut managers {
            if !m.is(manager, UPDATE) {
                m.fields
                    .retain(|p| !changed.contains(p) && !change.removed.contains(p));
            }
        }
        let i = match managers.iter().position(|m| m.is(manager, UPDATE)) {
            Some(i) => i,
            None => {
                managers.push(Manager::new(manager, UPDATE, kind.api_version(), now));
                managers.len() - 1
            }
        };
        let entry = &mut managers[i];
        entry.fields.retain(|p| !change.removed.contains(p));
        entry.fields.extend(changed);
        entry.time = Some(now.to_string());
        entry.api_version = kind.api_version().to_string();
    }
    managers::write(after, managers, now);
}

/// The applied configuration as a map, once the request is known sound.
fn check_request<'v>(
    req: &ApplyRequest,
    object: &ObjectRef,
    current: Option<&Value>,
    applied: &'v Value,
) -> Result<&'v Map<String, Value>, ApiError> {
    let bad = |field: &str, rule: String| ApiError {
        object: Some(object.clone()),
        causes: vec![FieldCause::new(field, rule.clone())],
        ..ApiError::bad_request(format!("apply to {object}: {field}: {rule}"))
    };
    if req.manager.is_empty() {
        return Err(bad("fieldManager", "is required for an apply patch".into()));
    }
    if req.manager.len() > FIELD_MANAGER_LEN_MAX {
        return Err(bad(
            "fieldManager",
            format!("must be at most {FIELD_MANAGER_LEN_MAX} characters"),
        ));
    }
    let Value::Object(config) = applied else {
        return Err(bad(
            "body",
            "an applied configuration must be a JSON object".into(),
        ));
    };
    let api_version = config.get("apiVersion").and_then(Value::as_str);
    if api_version != Some(req.kind.api_version()) {
        return Err(bad(
            "apiVersion",
            format!("must be {:?} for {}", req.kind.api_version(), req.kind),
        ));
    }
    if config.get("kind").and_then(Value::as_str) != Some(req.kind.as_str()) {
        return Err(bad("kind", format!("must be {:?}", req.kind.as_str())));
    }
    match (meta::name(applied), current.and_then(meta::name)) {
        (None | Some(""), _) => return Err(bad("metadata.name", "is required".into())),
        (Some(given), Some(stored)) if given != stored => {
            return Err(bad(
                "metadata.name",
                format!("{given:?} does not match the object applied to, {stored:?}"),
            ))
        }
        _ => {}
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(bad(
            "metadata.managedFields",
            "must not be set in an applied configuration".into(),
        ));
    }
    walk::check_config(config, schema::root_type(req.kind)).map_err(|e| bad(&e.field, e.rule))?;
    Ok(config)
}

/// Kubernetes' wording: one conflict on one line, several grouped by
/// manager.
fn conflict(object: ObjectRef, mut conflicts: Vec<(String, Path)>) -> ApiError {
    conflicts.sort();
    let causes: Vec<FieldCause> = conflicts
        .iter()
        .map(|(who, path)| FieldCause::new(path_string(path), format!("conflict with {who}")))
        .collect();
    let message = match conflicts.as_slice() {
        [(who, path)] => format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            path_string(path)
        ),
        _ => {
            let mut lines: Vec<String> = Vec::new();
            let mut last: Option<&str> = None;
            for (who, path) in &conflicts {
                if last != Some(who.as_str()) {
                    lines.push(format!("conflicts with {who}:"));
                    last = Some(who);
                }
                lines.push(format!("- {}", path_string(path)));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    ApiError {
        reason: Reason::Conflict,
        message,
        object: Some(object),
        causes,
        retry_after_ms: None,
    }
}
