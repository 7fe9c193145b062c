//! `kubus label`, `annotate`, `scale` and `set image`: kubectl's verbs that
//! change one field of the objects they name. Each decision is a pure
//! function of the object read ([`label`], [`annotate`], [`scale`],
//! [`set_images`]), made again if a Conflict makes [`targets::modify`]
//! read the object again; the `run_*` functions only fetch, write and
//! print, with kubectl's words (`pod/x labeled`, `deployment.apps/web
//! scaled`, `deployment.apps/web image updated`).

use std::collections::BTreeMap;

use kubus_api::admission::validate::{label_value_problems, qualified_name_problems};
use kubus_api::{meta, Kind};
use kubus_bus::Client;
use serde_json::{Map, Value};

use crate::cli::{AnnotateArgs, LabelArgs, NodesArgs, Pick, ScaleArgs, SetImageArgs, TaintArgs};
use crate::commands::emit;
use crate::targets::{self, display_object, Edit};

/// Why a verb refuses its arguments or an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerbError {
    #[error("all resources must be specified before {what} changes: {arg}")]
    ResourceAfterPairs { what: &'static str, arg: String },
    #[error("at least one {what} update is required")]
    NoPairs { what: &'static str },
    #[error("invalid {what} format: {arg}")]
    BadPair { what: &'static str, arg: String },
    #[error("invalid {what} key {key:?}: {rule}")]
    BadKey {
        what: &'static str,
        key: String,
        rule: String,
    },
    #[error("invalid label value: {spec:?}: {rule}")]
    BadLabelValue { spec: String, rule: String },
    #[error("can not both modify and remove a label in the same command")]
    LabelModifiedAndRemoved,
    #[error("can not both modify and remove the following annotation(s) in the same command: {0}")]
    AnnotationModifiedAndRemoved(String),
    #[error("{}", .0.join("\n"))]
    LabelOverwrite(Vec<String>),
    #[error("--overwrite is false but found the following declared annotation(s): {0}")]
    AnnotationOverwrite(String),
    #[error("{object}: a {kind} has no spec.replicas to scale")]
    NotScalable { object: String, kind: String },
    #[error("Expected replicas to be {expected}, was {actual}")]
    ReplicasPrecondition { expected: i64, actual: i64 },
    #[error("{object}: a {kind} has no pod template to set images in")]
    NoPodTemplate { object: String, kind: String },
    #[error("unable to find container named {0:?}")]
    NoSuchContainer(String),
    #[error("{0}: only nodes can be cordoned, uncordoned or tainted")]
    NotANode(String),
    #[error("invalid taint spec: {spec:?}: {rule}")]
    BadTaint { spec: String, rule: String },
    #[error("node {node} already has {key} taint(s) with same effect(s) and --overwrite is false")]
    TaintOverwrite { node: String, key: String },
    #[error("taint {0:?} not found")]
    TaintNotFound(String),
}

/// One `kubus taint` argument: add (or change) a taint, or remove taints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaintSpec {
    Add {
        key: String,
        value: String,
        effect: String,
    },
    /// `key-` (every effect) or `key:Effect-`.
    Remove { key: String, effect: Option<String> },
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// kubectl's taint syntax: `key=value:Effect`, `key:Effect`, `key:Effect-`, `key-`.
pub fn parse_taint(spec: &str) -> Result<TaintSpec, VerbError> {
    let bad = |rule: &str| VerbError::BadTaint {
        spec: spec.to_string(),
        rule: rule.to_string(),
    };
    let check_effect = |e: &str| -> Result<String, VerbError> {
        if TAINT_EFFECTS.contains(&e) {
            Ok(e.to_string())
        } else {
            Err(bad(
                "the effect must be one of NoSchedule, PreferNoSchedule, NoExecute",
            ))
        }
    };
    let check_key = |k: &str| -> Result<String, VerbError> {
        match kubus_api::admission::validate::qualified_name_problems(k).first() {
            None if !k.is_empty() => Ok(k.to_string()),
            None => Err(bad("the key is empty")),
            Some(p) => Err(bad(p)),
        }
    };
    if let Some(rest) = spec.strip_suffix('-') {
        return Ok(match rest.split_once(':') {
            Some((key, effect)) => TaintSpec::Remove {
                key: check_key(key)?,
                effect: Some(check_effect(effect)?),
            },
            None => TaintSpec::Remove {
                key: check_key(rest)?,
                effect: None,
            },
        });
    }
    let (kv, effect) = spec
        .split_once(':')
        .ok_or_else(|| bad("a taint to add needs an effect: KEY[=VALUE]:EFFECT"))?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if !value.is_empty() {
        if let Some(p) = kubus_api::admission::validate::label_value_problems(value).first() {
            return Err(bad(p));
        }
    }
    Ok(TaintSpec::Add {
        key: check_key(key)?,
        value: value.to_string(),
        effect: check_effect(effect)?,
    })
}

fn node_only(obj: &Value) -> Result<(), VerbError> {
    if meta::kind_of(obj) == Some(Kind::Node) {
        Ok(())
    } else {
        Err(VerbError::NotANode(display_object(obj)))
    }
}

/// `cordon` (`on`) and `uncordon`: a node's `spec.unschedulable`.
pub fn cordon(obj: &Value, on: bool) -> Result<Edit<String>, VerbError> {
    node_only(obj)?;
    let word = if on { "cordoned" } else { "uncordoned" };
    let now = obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    if now == on {
        return Ok(Edit::Unchanged(format!("already {word}")));
    }
    let mut new = obj.clone();
    match new.get_mut("spec").and_then(Value::as_object_mut) {
        Some(spec) if on => {
            spec.insert("unschedulable".into(), Value::Bool(true));
        }
        Some(spec) => {
            spec.remove("unschedulable");
        }
        None => new["spec"] = serde_json::json!({"unschedulable": on}),
    }
    Ok(Edit::Changed(new, word.into()))
}

/// `taint`: add, change (`overwrite`) or remove a node's taints.
pub fn taint(obj: &Value, specs: &[TaintSpec], overwrite: bool) -> Result<Edit<String>, VerbError> {
    node_only(obj)?;
    let node = meta::name(obj).unwrap_or_default().to_string();
    let mut taints: Vec<Value> = obj
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut removed = false;
    for spec in specs {
        match spec {
            TaintSpec::Add { key, value, effect } => {
                let same = taints
                    .iter()
                    .position(|t| text(t, "key") == *key && text(t, "effect") == *effect);
                match same {
                    Some(i) if text(&taints[i], "value") == *value => {}
                    Some(_) if !overwrite => {
                        return Err(VerbError::TaintOverwrite {
                            node,
                            key: key.clone(),
                        })
                    }
                    Some(i) => {
                        taints[i] =
                            serde_json::json!({"key": key, "value": value, "effect": effect})
                    }
                    None => taints
                        .push(serde_json::json!({"key": key, "value": value, "effect": effect})),
                }
            }
            TaintSpec::Remove { key, effect } => {
                let before = taints.len();
                taints.retain(|t| {
                    !(text(t, "key") == *key
                        && effect.as_ref().is_none_or(|e| text(t, "effect") == *e))
                });
                if taints.len() == before {
                    let what = match effect {
                        Some(e) => format!("{key}:{e}"),
                        None => key.clone(),
                    };
                    return Err(VerbError::TaintNotFound(what));
                }
                removed = true;
            }
        }
    }
    let mut new = obj.clone();
    if new.get("spec").is_none_or(|s| !s.is_object()) {
        new["spec"] = serde_json::json!({});
    }
    if taints.is_empty() {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("taints");
        }
    } else {
        new["spec"]["taints"] = Value::Array(taints);
    }
    let word = if removed && specs.iter().all(|s| matches!(s, TaintSpec::Remove { .. })) {
        "untainted"
    } else {
        "tainted"
    };
    if new == *obj {
        return Ok(Edit::Unchanged(String::new()));
    }
    Ok(Edit::Changed(new, word.into()))
}

/// Labels or annotations to set and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaChange {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// kubectl's `GetResourcesAndPairs`: the leading arguments name objects,
/// the rest (`KEY=VALUE`, `KEY-`) are changes; an object named after a
/// change is refused.
pub fn split_pairs(
    args: &[String],
    what: &'static str,
) -> Result<(Vec<String>, Vec<String>), VerbError> {
    let mut resources = Vec::new();
    let mut pairs = Vec::new();
    for a in args {
        let is_pair =
            (a.contains('=') && !a.starts_with('=')) || (a.ends_with('-') && a.as_str() != "-");
        match (is_pair, pairs.is_empty()) {
            (true, _) => pairs.push(a.clone()),
            (false, true) => resources.push(a.clone()),
            (false, false) => {
                return Err(VerbError::ResourceAfterPairs {
                    what,
                    arg: a.clone(),
                })
            }
        }
    }
    if pairs.is_empty() {
        return Err(VerbError::NoPairs { what });
    }
    Ok((resources, pairs))
}

fn check_key(what: &'static str, key: &str) -> Result<(), VerbError> {
    let problems = qualified_name_problems(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(VerbError::BadKey {
            what,
            key: key.to_string(),
            rule: problems.join("; "),
        })
    }
}

/// `KEY=VALUE` and `KEY-` label changes (kubectl's `parseLabels`): keys
/// are qualified names, values valid label values.
pub fn parse_label_changes(pairs: &[String]) -> Result<MetaChange, VerbError> {
    let mut change = MetaChange::default();
    for spec in pairs {
        if let Some((key, value)) = spec.split_once('=') {
            if value.contains('=') {
                return Err(VerbError::BadPair {
                    what: "label",
                    arg: spec.clone(),
                });
            }
            check_key("label", key)?;
            let problems = label_value_problems(value);
            if !problems.is_empty() {
                return Err(VerbError::BadLabelValue {
                    spec: spec.clone(),
                    rule: problems.join("; "),
                });
            }
            change.set.insert(key.to_string(), value.to_string());
        } else if let Some(key) = spec.strip_suffix('-') {
            check_key("label", key)?;
            change.remove.push(key.to_string());
        } else {
            return Err(VerbError::BadPair {
                what: "label",
                arg: spec.clone(),
            });
        }
    }
    if change.remove.iter().any(|k| change.set.contains_key(k)) {
        return Err(VerbError::LabelModifiedAndRemoved);
    }
    Ok(change)
}

/// `KEY=VALUE` (any value, `=` included) and `KEY-` annotation changes.
pub fn parse_annotation_changes(pairs: &[String]) -> Result<MetaChange, VerbError> {
    let mut change = MetaChange::default();
    for spec in pairs {
        if let Some((key, value)) = spec.split_once('=') {
            check_key("annotation", key)?;
            change.set.insert(key.to_string(), value.to_string());
        } else if let Some(key) = spec.strip_suffix('-') {
            check_key("annotation", key)?;
            change.remove.push(key.to_string());
        } else {
            return Err(VerbError::BadPair {
                what: "annotation",
                arg: spec.clone(),
            });
        }
    }
    let both: Vec<&str> = change
        .remove
        .iter()
        .filter(|k| change.set.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !both.is_empty() {
        return Err(VerbError::AnnotationModifiedAndRemoved(both.join(", ")));
    }
    Ok(change)
}

/// `obj` with `metadata.<field>` replaced by `map` (removed when empty).
fn with_string_map(obj: &Value, field: &str, map: &BTreeMap<String, String>) -> Value {
    let mut new = obj.clone();
    if map.is_empty() {
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove(field);
        }
    } else {
        let m: Map<String, Value> = map
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        meta::set_meta(&mut new, field, Value::Object(m));
    }
    new
}

/// kubectl's `label`: refuse to change a label's value without
/// `overwrite`; say `labeled`, `unlabeled`, `modified` or `not labeled`.
pub fn label(obj: &Value, change: &MetaChange, overwrite: bool) -> Result<Edit<String>, VerbError> {
    let mut labels = meta::labels(obj);
    if !overwrite {
        let refused: Vec<String> = change
            .set
            .iter()
            .filter_map(|(k, v)| {
                let current = labels.get(k).filter(|c| *c != v)?;
                Some(format!(
                    "'{k}' already has a value ({current}), and --overwrite is false"
                ))
            })
            .collect();
        if !refused.is_empty() {
            return Err(VerbError::LabelOverwrite(refused));
        }
    }
    let mut added = 0;
    let mut removed = 0;
    for (k, v) in &change.set {
        if labels.get(k) != Some(v) {
            labels.insert(k.clone(), v.clone());
            added += 1;
        }
    }
    for k in &change.remove {
        if labels.remove(k).is_some() {
            removed += 1;
        }
    }
    let said = match (added > 0, removed > 0) {
        (true, true) => "modified",
        (true, false) => "labeled",
        (false, true) => "unlabeled",
        (false, false) => return Ok(Edit::Unchanged("not labeled".into())),
    };
    Ok(Edit::Changed(
        with_string_map(obj, "labels", &labels),
        said.into(),
    ))
}

/// kubectl's `annotate`: refuse to change an annotation's value without
/// `overwrite` (listing every one), else set and remove.
pub fn annotate(
    obj: &Value,
    change: &MetaChange,
    overwrite: bool,
) -> Result<Edit<String>, VerbError> {
    let mut annotations = meta::annotations(obj);
    if !overwrite {
        let refused: Vec<String> = change
            .set
            .iter()
            .filter(|(k, _)| k.as_str() != CHANGE_CAUSE_ANNOTATION)
            .filter_map(|(k, v)| {
                let current = annotations.get(k).filter(|c| *c != v)?;
                Some(format!("'{k}' already has a value ({current})"))
            })
            .collect();
        if !refused.is_empty() {
            return Err(VerbError::AnnotationOverwrite(refused.join("; ")));
        }
    }
    let before = annotations.clone();
    for (k, v) in &change.set {
        annotations.insert(k.clone(), v.clone());
    }
    for k in &change.remove {
        annotations.remove(k);
    }
    if annotations == before {
        return Ok(Edit::Unchanged("annotated".into()));
    }
    Ok(Edit::Changed(
        with_string_map(obj, "annotations", &annotations),
        "annotated".into(),
    ))
}

/// The annotation kubectl records a change's command line in; it may
/// always be overwritten.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";

/// Kinds that scale by `spec.replicas`; any other object scales too when
/// it has that field.
const SCALED_KINDS: [Kind; 4] = [
    Kind::Deployment,
    Kind::ReplicaSet,
    Kind::StatefulSet,
    Kind::ReplicationController,
];

/// kubectl's `scale`: set `spec.replicas`, after checking
/// `--current-replicas` if given (an absent `spec.replicas` is 1).
pub fn scale(obj: &Value, replicas: i64, current: Option<i64>) -> Result<Edit<String>, VerbError> {
    let kind = meta::kind_of(obj);
    let field = obj.pointer("/spec/replicas");
    let scalable =
        field.is_some_and(Value::is_i64) || kind.is_some_and(|k| SCALED_KINDS.contains(&k));
    if !scalable {
        return Err(VerbError::NotScalable {
            object: display_object(obj),
            kind: obj["kind"].as_str().unwrap_or("object").to_string(),
        });
    }
    let actual = field.and_then(Value::as_i64).unwrap_or(1);
    if let Some(expected) = current {
        if expected != actual {
            return Err(VerbError::ReplicasPrecondition { expected, actual });
        }
    }
    if actual == replicas && field.is_some() {
        return Ok(Edit::Unchanged("scaled".into()));
    }
    let mut new = obj.clone();
    match new.get_mut("spec").and_then(Value::as_object_mut) {
        Some(spec) => {
            spec.insert("replicas".into(), Value::from(replicas));
        }
        None => new["spec"] = serde_json::json!({"replicas": replicas}),
    }
    Ok(Edit::Changed(new, "scaled".into()))
}

/// Where a kind keeps the pod spec it makes pods from (a Pod: its own).
pub fn pod_spec_pointer(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Pod => Some("/spec"),
        Kind::CronJob => Some("/spec/jobTemplate/spec/template/spec"),
        Kind::Deployment
        | Kind::ReplicaSet
        | Kind::DaemonSet
        | Kind::StatefulSet
        | Kind::ReplicationController
        | Kind::Job => Some("/spec/template/spec"),
        _ => None,
    }
}

/// `CONTAINER=IMAGE` pairs of `kubus set image`.
pub fn parse_image_pairs(pairs: &[String]) -> Result<Vec<(String, String)>, VerbError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok((c.to_string(), i.to_string())),
            _ => Err(VerbError::BadPair {
                what: "image",
                arg: p.clone(),
            }),
        })
        .collect()
}

/// kubectl's `set image`: each named container (init containers too; `*`
/// for all) gets its image; a name that matches none is refused.
pub fn set_images(obj: &Value, images: &[(String, String)]) -> Result<Edit<String>, VerbError> {
    let kind_word = obj["kind"].as_str().unwrap_or("object").to_string();
    let pointer = meta::kind_of(obj)
        .and_then(pod_spec_pointer)
        .ok_or_else(|| VerbError::NoPodTemplate {
            object: display_object(obj),
            kind: kind_word.clone(),
        })?;
    let mut new = obj.clone();
    let spec = new
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| VerbError::NoPodTemplate {
            object: display_object(obj),
            kind: kind_word,
        })?;
    for (container, image) in images {
        let mut found = false;
        for c in kubus_api::pod::containers_mut(spec) {
            if container == "*" || c["name"] == container.as_str() {
                found = true;
                c["image"] = Value::String(image.clone());
            }
        }
        if !found {
            return Err(VerbError::NoSuchContainer(container.clone()));
        }
    }
    if new == *obj {
        // as kubectl: nothing to say when no image changes
        return Ok(Edit::Unchanged(String::new()));
    }
    Ok(Edit::Changed(new, "image updated".into()))
}

/// Run `decide` on each object and print `NAME MESSAGE` for each; report
/// every failure, and fail if any did.
async fn change_each(
    client: &Client,
    objects: Vec<Value>,
    namespace: &str,
    decide: impl Fn(&Value) -> Result<Edit<String>, VerbError>,
) -> anyhow::Result<()> {
    if objects.is_empty() {
        eprintln!("No resources found in {namespace} namespace.");
        return Ok(());
    }
    let mut failures = Vec::new();
    for obj in objects {
        let name = display_object(&obj);
        let result = targets::modify(client, obj, |o| Ok(decide(o)?)).await;
        match result {
            Ok((_, said, _)) if said.is_empty() => {}
            Ok((_, said, _)) => emit(&format!("{name} {said}\n")),
            // name the object: one command may change many
            Err(e) => failures.push(e.context(name)),
        }
    }
    match failures.pop() {
        None => Ok(()),
        Some(last) => {
            for e in failures {
                eprintln!("error: {e:#}");
            }
            Err(last)
        }
    }
}

pub async fn run_label(client: &Client, args: LabelArgs) -> anyhow::Result<()> {
    let (resources, pairs) = split_pairs(&args.args, "label")?;
    let change = parse_label_changes(&pairs)?;
    let targets = targets::parse(&resources)?;
    let p = &args.pick;
    let objects =
        targets::resolve(client, &p.namespace, &targets, p.selector.as_deref(), p.all).await?;
    for obj in &objects {
        let labels = meta::labels(obj);
        for k in change.remove.iter().filter(|k| !labels.contains_key(*k)) {
            emit(&format!("label {k:?} not found.\n"));
        }
    }
    change_each(client, objects, &p.namespace, |o| {
        label(o, &change, args.overwrite)
    })
    .await
}

pub async fn run_annotate(client: &Client, args: AnnotateArgs) -> anyhow::Result<()> {
    let (resources, pairs) = split_pairs(&args.args, "annotation")?;
    let change = parse_annotation_changes(&pairs)?;
    let targets = targets::parse(&resources)?;
    let p = &args.pick;
    let objects =
        targets::resolve(client, &p.namespace, &targets, p.selector.as_deref(), p.all).await?;
    change_each(client, objects, &p.namespace, |o| {
        annotate(o, &change, args.overwrite)
    })
    .await
}

pub async fn run_scale(client: &Client, args: ScaleArgs) -> anyhow::Result<()> {
    let targets = targets::parse(&args.resources)?;
    let p = &args.pick;
    let objects =
        targets::resolve(client, &p.namespace, &targets, p.selector.as_deref(), p.all).await?;
    change_each(client, objects, &p.namespace, |o| {
        scale(o, args.replicas, args.current_replicas)
    })
    .await
}

/// The nodes a cordon/uncordon/taint command names: NAME or node/NAME
/// (or `-l SELECTOR` / `--all` with no names).
async fn nodes_named(client: &Client, names: &[String], p: &Pick) -> anyhow::Result<Vec<Value>> {
    let mut resources = vec!["nodes".to_string()];
    resources.extend(
        names
            .iter()
            .map(|n| n.strip_prefix("node/").unwrap_or(n).to_string()),
    );
    let targets = targets::parse(&resources)?;
    targets::resolve(client, &p.namespace, &targets, p.selector.as_deref(), p.all).await
}

pub async fn run_cordon(client: &Client, args: NodesArgs, on: bool) -> anyhow::Result<()> {
    let objects = nodes_named(client, &args.nodes, &args.pick).await?;
    change_each(client, objects, &args.pick.namespace, |o| cordon(o, on)).await
}

pub async fn run_taint(client: &Client, args: TaintArgs) -> anyhow::Result<()> {
    let mut args_iter = args.args.iter();
    let kind = args_iter.next().map(String::as_str).unwrap_or_default();
    if !matches!(kind, "node" | "nodes" | "no") {
        anyhow::bail!(
            "kubus taint takes nodes: kubus taint nodes NAME KEY[=VALUE]:EFFECT ... (got {kind:?})"
        );
    }
    let (names, specs): (Vec<&String>, Vec<&String>) =
        args_iter.partition(|a| !a.contains(':') && !a.ends_with('-'));
    if specs.is_empty() {
        anyhow::bail!("at least one taint update is required");
    }
    let specs = specs
        .into_iter()
        .map(|s| parse_taint(s))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = names.into_iter().cloned().collect();
    let objects = nodes_named(client, &names, &args.pick).await?;
    change_each(client, objects, &args.pick.namespace, |o| {
        taint(o, &specs, args.overwrite)
    })
    .await
}

pub async fn run_set_image(client: &Client, args: SetImageArgs) -> anyhow::Result<()> {
    let (resources, pairs) = split_pairs(&args.args, "image")?;
    let images = parse_image_pairs(&pairs)?;
    let targets = targets::parse(&resources)?;
    let p = &args.pick;
    let objects =
        targets::resolve(client, &p.namespace, &targets, p.selector.as_deref(), p.all).await?;
    change_each(client, objects, &p.namespace, |o| set_images(o, &images)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn pod(labels: Value, annotations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "x", "namespace": "default", "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}})
    }

    fn changed(e: Edit<String>) -> (Value, String) {
        match e {
            Edit::Changed(v, s) => (v, s),
            Edit::Unchanged(s) => panic!("unchanged: {s}"),
        }
    }

    #[test]
    fn pairs_follow_the_objects() {
        assert_eq!(
            split_pairs(&strings(&["pods", "x", "a=b", "c-"]), "label"),
            Ok((strings(&["pods", "x"]), strings(&["a=b", "c-"])))
        );
        assert_eq!(
            split_pairs(&strings(&["pods", "a=b", "x"]), "label"),
            Err(VerbError::ResourceAfterPairs {
                what: "label",
                arg: "x".into()
            })
        );
        assert_eq!(
            split_pairs(&strings(&["pods", "x"]), "label"),
            Err(VerbError::NoPairs { what: "label" })
        );
    }

    #[test]
    fn label_specs_are_checked() {
        let ok = parse_label_changes(&strings(&["app=web", "tier-"])).expect("valid");
        assert_eq!(ok.set.get("app").map(String::as_str), Some("web"));
        assert_eq!(ok.remove, vec!["tier".to_string()]);
        assert!(matches!(
            parse_label_changes(&strings(&["a=b=c"])),
            Err(VerbError::BadPair { .. })
        ));
        assert!(matches!(
            parse_label_changes(&strings(&["a=not ok"])),
            Err(VerbError::BadLabelValue { .. })
        ));
        assert!(matches!(
            parse_label_changes(&strings(&["-bad=x"])),
            Err(VerbError::BadKey { .. })
        ));
        assert_eq!(
            parse_label_changes(&strings(&["a=b", "a-"])),
            Err(VerbError::LabelModifiedAndRemoved)
        );
        // annotation values are free text
        let a = parse_annotation_changes(&strings(&["note=hello world=1"])).expect("valid");
        assert_eq!(a.set.get("note").map(String::as_str), Some("hello world=1"));
        assert_eq!(
            parse_annotation_changes(&strings(&["a=b", "a-"])),
            Err(VerbError::AnnotationModifiedAndRemoved("a".into()))
        );
    }

    #[test]
    fn labels_say_what_changed_and_refuse_overwrites() {
        let p = pod(json!({"app": "web", "tier": "front"}), json!({}));
        let change = |pairs: &[&str]| parse_label_changes(&strings(pairs)).expect("valid");
        // (changes, overwrite, message or error)
        let cases: Vec<(&[&str], bool, Result<&str, String>)> = vec![
            (&["env=prod"], false, Ok("labeled")),
            (&["tier-"], false, Ok("unlabeled")),
            (&["env=prod", "tier-"], false, Ok("modified")),
            (&["app=web"], false, Ok("not labeled")),
            (&["gone-"], false, Ok("not labeled")),
            (
                &["app=api"],
                false,
                Err("'app' already has a value (web), and --overwrite is false".into()),
            ),
            (&["app=api"], true, Ok("labeled")),
        ];
        for (pairs, overwrite, want) in cases {
            let got = label(&p, &change(pairs), overwrite);
            match (got, want) {
                (Ok(Edit::Changed(_, s)) | Ok(Edit::Unchanged(s)), Ok(w)) => {
                    assert_eq!(s, w, "{pairs:?}")
                }
                (Err(e), Err(w)) => assert_eq!(e.to_string(), w, "{pairs:?}"),
                (got, want) => panic!("{pairs:?}: got {got:?}, want {want:?}"),
            }
        }
        let (v, _) = changed(label(&p, &change(&["app-", "tier-"]), false).expect("ok"));
        assert!(v["metadata"].get("labels").is_none(), "{v}");
    }

    #[test]
    fn annotations_refuse_overwrites_with_kubectl_words() {
        let p = pod(
            json!({}),
            json!({"a": "b", "kubernetes.io/change-cause": "x"}),
        );
        let change = |pairs: &[&str]| parse_annotation_changes(&strings(pairs)).expect("valid");
        let e = annotate(&p, &change(&["a=c"]), false).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "--overwrite is false but found the following declared annotation(s): 'a' already has a value (b)"
        );
        let (v, said) = changed(annotate(&p, &change(&["a=c"]), true).expect("ok"));
        assert_eq!(
            (v["metadata"]["annotations"]["a"].clone(), said.as_str()),
            (json!("c"), "annotated")
        );
        // the change cause may always be overwritten
        assert!(annotate(&p, &change(&["kubernetes.io/change-cause=y"]), false).is_ok());
        let (v, _) = changed(annotate(&p, &change(&["a-"]), false).expect("ok"));
        assert!(v["metadata"]["annotations"].get("a").is_none());
    }

    #[test]
    fn scaling_checks_the_current_count() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3}});
        let (v, said) = changed(scale(&d, 5, None).expect("ok"));
        assert_eq!(
            (v["spec"]["replicas"].clone(), said.as_str()),
            (json!(5), "scaled")
        );
        assert!(changed(scale(&d, 5, Some(3)).expect("ok")).0["spec"]["replicas"] == 5);
        assert_eq!(
            scale(&d, 5, Some(2)).map(|_| ()),
            Err(VerbError::ReplicasPrecondition {
                expected: 2,
                actual: 3
            })
        );
        assert_eq!(
            scale(&d, 5, Some(2)).expect_err("refused").to_string(),
            "Expected replicas to be 2, was 3"
        );
        assert!(matches!(scale(&d, 3, None), Ok(Edit::Unchanged(_))));
        let p = pod(json!({}), json!({}));
        assert_eq!(
            scale(&p, 2, None).expect_err("refused").to_string(),
            "pod/x: a Pod has no spec.replicas to scale"
        );
    }

    #[test]
    fn images_are_set_by_container_name() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "containers": [{"name": "app", "image": "nginx:1"}, {"name": "side", "image": "envoy:1"}]}}}});
        let pairs = |p: &[&str]| parse_image_pairs(&strings(p)).expect("valid");
        let (v, said) = changed(set_images(&d, &pairs(&["app=nginx:2"])).expect("ok"));
        assert_eq!(said, "image updated");
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][1]["image"],
            "envoy:1"
        );
        let (v, _) = changed(set_images(&d, &pairs(&["init=busybox:2"])).expect("ok"));
        assert_eq!(
            v["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "busybox:2"
        );
        let (v, _) = changed(set_images(&d, &pairs(&["*=x:9"])).expect("ok"));
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][1]["image"],
            "x:9"
        );
        assert_eq!(
            set_images(&d, &pairs(&["nope=x"])).map(|_| ()),
            Err(VerbError::NoSuchContainer("nope".into()))
        );
        assert!(matches!(
            set_images(&d, &pairs(&["app=nginx:1"])),
            Ok(Edit::Unchanged(_))
        ));
        let p = pod(json!({}), json!({}));
        let (v, _) = changed(set_images(&p, &pairs(&["app=busybox:2"])).expect("ok"));
        assert_eq!(v["spec"]["containers"][0]["image"], "busybox:2");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert!(matches!(
            set_images(&cm, &pairs(&["a=b"])),
            Err(VerbError::NoPodTemplate { .. })
        ));
        assert!(parse_image_pairs(&strings(&["=x"])).is_err());
    }
}
