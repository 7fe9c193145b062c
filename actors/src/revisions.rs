//! ControllerRevisions: the template history of a DaemonSet or
//! StatefulSet, as Kubernetes keeps it — one revision object per distinct
//! template, named `<set>-<hash>`, owned by the set, its `data` the
//! template (`{"spec": {"template": …}}`), its `revision` a number that
//! grows: a template rolled back to becomes the newest revision again.
//! Revisions no live pod uses, beyond `revisionHistoryLimit`, are deleted
//! oldest first. `kubus rollout history|undo` read them.

use std::collections::BTreeSet;

use kubus_api::meta::{self, int_at};
use serde_json::{json, Value};

use crate::watching::controller_ref;
use crate::write::Write;

/// The label tying a pod (and a revision) to a template revision.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The revision name of `owner`'s template hash.
pub fn name_of(owner: &Value, hash: &str) -> String {
    format!("{}-{hash}", meta::name(owner).unwrap_or("set"))
}

/// A ControllerRevision of `owner`'s current template.
pub fn revision_object(owner: &Value, hash: &str, revision: i64) -> Value {
    let mut template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    let mut labels = owner
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert(REVISION_HASH_LABEL.into(), json!(hash));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name_of(owner, hash),
            "namespace": meta::namespace(owner).unwrap_or("default"),
            "labels": labels,
            "ownerReferences": [controller_ref(owner)],
        },
        "data": {"spec": {"template": template}},
        "revision": revision,
    })
}

/// A revision's number.
pub fn number(revision: &Value) -> i64 {
    int_at(revision, "/revision").unwrap_or(0)
}

/// The writes that keep `owner`'s revisions (`revisions`: those it owns;
/// `in_use`: the revision names its live pods carry).
pub fn plan(
    owner: &Value,
    hash: &str,
    revisions: &[&Value],
    in_use: &BTreeSet<String>,
) -> Vec<Write> {
    let name = name_of(owner, hash);
    let newest = revisions.iter().map(|r| number(r)).max().unwrap_or(0);
    let mut writes = Vec::new();
    match revisions
        .iter()
        .find(|r| meta::name(r) == Some(name.as_str()))
    {
        None => writes.push(Write::Create(revision_object(owner, hash, newest + 1))),
        Some(current) if number(current) < newest => {
            let mut renumbered = (*current).clone();
            renumbered["revision"] = json!(newest + 1);
            writes.push(Write::Update(renumbered));
        }
        Some(_) => {}
    }
    let limit = int_at(owner, "/spec/revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    let mut unused: Vec<&&Value> = revisions
        .iter()
        .filter(|r| {
            let n = meta::name(r).unwrap_or_default();
            n != name && !in_use.contains(n) && !kubus_api::pod::is_terminating(r)
        })
        .collect();
    unused.sort_by_key(|r| number(r));
    let extra = unused.len().saturating_sub(limit);
    writes.extend(
        unused
            .into_iter()
            .take(extra)
            .filter_map(|r| meta::object_ref(r))
            .map(|r| Write::delete(r, None)),
    );
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(image: &str, limit: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ns", "uid": "u"},
            "spec": {"revisionHistoryLimit": limit, "template": {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn names(writes: &[Write]) -> Vec<String> {
        writes
            .iter()
            .map(|w| match w {
                Write::Create(v) => format!(
                    "create {} r{}",
                    v["metadata"]["name"].as_str().unwrap_or(""),
                    v["revision"]
                ),
                Write::Update(v) => format!(
                    "update {} r{}",
                    v["metadata"]["name"].as_str().unwrap_or(""),
                    v["revision"]
                ),
                Write::Delete(r, _) => format!("delete {}", r.name),
            })
            .collect()
    }

    #[test]
    fn one_revision_per_template_renumbered_on_rollback_and_pruned() {
        let v1 = set("v1", 1);
        let r1 = revision_object(&v1, "h1", 1);
        assert_eq!(
            r1["data"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "v1"
        );
        assert_eq!(r1["metadata"]["ownerReferences"][0]["uid"], "u");
        assert_eq!(
            names(&plan(&v1, "h1", &[], &BTreeSet::new())),
            ["create agent-h1 r1"]
        );
        assert!(plan(&v1, "h1", &[&r1], &BTreeSet::new()).is_empty());
        let v2 = set("v2", 1);
        let r2 = revision_object(&v2, "h2", 2);
        assert_eq!(
            names(&plan(&v2, "h2", &[&r1], &BTreeSet::new())),
            ["create agent-h2 r2"]
        );
        // rolled back to v1: revision 3
        assert_eq!(
            names(&plan(&v1, "h1", &[&r1, &r2], &BTreeSet::new())),
            ["update agent-h1 r3"]
        );
        // limit 0: the unused old one goes, unless a pod still uses it
        let v3 = set("v3", 0);
        let r3 = revision_object(&v3, "h3", 3);
        assert_eq!(
            names(&plan(&v3, "h3", &[&r2, &r3], &BTreeSet::new())),
            ["delete agent-h2"]
        );
        let used: BTreeSet<String> = ["agent-h2".to_string()].into_iter().collect();
        assert!(plan(&v3, "h3", &[&r2, &r3], &used).is_empty());
    }
}
