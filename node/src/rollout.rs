//! `kubus rollout status|history|undo|pause|resume|restart`: kubectl's
//! rollout verbs. The decisions are pure and follow kubectl's
//! `polymorphichelpers`: [`status`] (is the rollout done, and what to say
//! while waiting), [`history`], [`undo`] (which ReplicaSet's template to
//! restore), [`pause`] and [`restart`]. The `run_*` functions fetch, watch
//! and write.
//!
//! `rollout status` follows the object through the bus watch (a list, then
//! the change events) rather than polling, until the rollout is done, the
//! controller reports `ProgressDeadlineExceeded`, or `--timeout` passes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use kubus_api::{meta, Kind};
use kubus_bus::protocol::EventType;
use kubus_bus::watch::{WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::{json, Value};

use crate::cli::{
    RolloutArgs, RolloutCommand, RolloutHistoryArgs, RolloutStatusArgs, RolloutUndoArgs,
};
use crate::commands::emit;
use crate::describe::{self, same_template, POD_TEMPLATE_HASH_LABEL};
use crate::targets::{self, display_object, group_resource, Edit, Targets};

/// The annotation carrying a ReplicaSet's (and a Deployment's) revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The annotation `rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE_ANNOTATION: &str = crate::verbs::CHANGE_CAUSE_ANNOTATION;
/// The pod template annotation `rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The reason of a Progressing=False condition past the deadline.
pub const PROGRESS_DEADLINE_REASON: &str = "ProgressDeadlineExceeded";

/// Deployment annotations `rollout undo` keeps rather than copying from
/// the ReplicaSet (kubectl's `annotationsToSkip`).
const UNDO_KEEPS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Why a rollout verb stops, in kubectl's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("deployment {0:?} exceeded its progress deadline")]
    ProgressDeadline(String),
    #[error("desired revision ({desired}) is different from the running revision ({running})")]
    RevisionMismatch { desired: i64, running: i64 },
    #[error(
        "cannot get the revision of deployment {0:?}: it has no {REVISION_ANNOTATION} annotation"
    )]
    NoRevision(String),
    #[error("rollout status is only available for RollingUpdate strategy type")]
    NotRollingUpdate,
    #[error("no {verb} has been implemented for {kind:?}")]
    NotImplemented { verb: &'static str, kind: String },
    #[error("no rollout history found for deployment {0:?}")]
    NoHistory(String),
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(i64),
    #[error(
        "you cannot rollback a paused deployment; resume it first with 'kubus rollout resume \
         {0}' and try again"
    )]
    Paused(String),
    #[error("{0} is already paused")]
    AlreadyPaused(String),
    #[error("{0} is not paused")]
    NotPaused(String),
    #[error("{0} can't restart paused deployment (run rollout resume first)")]
    RestartPaused(String),
}

/// Where a rollout stands: what kubectl prints, and whether it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub message: String,
    pub done: bool,
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn opt_int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// A revision's number: a ReplicaSet's annotation, a ControllerRevision's
/// `revision`.
fn revision_of(obj: &Value) -> Option<i64> {
    if meta::kind_of(obj) == Some(Kind::ControllerRevision) {
        return obj.get("revision").and_then(Value::as_i64);
    }
    meta::annotations(obj)
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
}

/// The pod template a revision holds (a ControllerRevision's without its
/// `$patch` directive).
fn template_of(revision: &Value) -> Value {
    if meta::kind_of(revision) == Some(Kind::ControllerRevision) {
        let mut t = revision
            .pointer("/data/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(t) = t.as_object_mut() {
            t.remove("$patch");
        }
        return t;
    }
    revision
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null)
}

/// Where a kind keeps its history: ReplicaSets for a Deployment,
/// ControllerRevisions for a DaemonSet or StatefulSet.
fn history_kind(obj: &Value, verb: &'static str) -> Result<Kind, RolloutError> {
    match meta::kind_of(obj) {
        Some(Kind::Deployment) => Ok(Kind::ReplicaSet),
        Some(Kind::DaemonSet | Kind::StatefulSet) => Ok(Kind::ControllerRevision),
        _ => Err(RolloutError::NotImplemented {
            verb,
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        }),
    }
}

/// `rollout undo` of a DaemonSet or StatefulSet: the template of revision
/// `to_revision` (0: the one before the latest) put back.
pub fn undo_set(set: &Value, revisions: &[&Value], to_revision: i64) -> Result<Undo, RolloutError> {
    let name = meta::name(set).unwrap_or_default();
    let by = by_revision(revisions);
    let to_revision = if to_revision == 0 {
        let mut keys = by.keys().rev();
        match (keys.next(), keys.next()) {
            (Some(_), Some(previous)) => *previous,
            _ => return Err(RolloutError::NoHistory(name.into())),
        }
    } else {
        to_revision
    };
    let revision = by
        .get(&to_revision)
        .ok_or(RolloutError::RevisionNotFound(to_revision))?;
    let template = template_of(revision);
    let current = set.pointer("/spec/template").unwrap_or(&Value::Null);
    if same_template(&template, current) {
        return Ok(Undo::Skipped(to_revision));
    }
    let mut new = set.clone();
    new["spec"]["template"] = template;
    Ok(Undo::RollBack(new))
}

/// kubectl's `error: deployments.apps "web" …` subject.
fn quoted(obj: &Value) -> String {
    let name = meta::name(obj).unwrap_or_default();
    match meta::kind_of(obj) {
        Some(kind) => format!("{} {name:?}", group_resource(kind)),
        None => format!("{name:?}"),
    }
}

fn progress(message: String, done: bool) -> Result<Progress, RolloutError> {
    Ok(Progress { message, done })
}

/// kubectl's status viewers (`rollout_status.go`) for Deployments,
/// DaemonSets and StatefulSets. `revision`, for a Deployment, pins the
/// revision that must be the one rolling out.
pub fn status(obj: &Value, revision: Option<i64>) -> Result<Progress, RolloutError> {
    let name = meta::name(obj).unwrap_or_default();
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    match meta::kind_of(obj) {
        Some(Kind::Deployment) => {
            if let Some(desired) = revision.filter(|r| *r > 0) {
                let running =
                    revision_of(obj).ok_or_else(|| RolloutError::NoRevision(name.into()))?;
                if running != desired {
                    return Err(RolloutError::RevisionMismatch { desired, running });
                }
            }
            if generation > observed {
                return progress(
                    "Waiting for deployment spec update to be observed...".into(),
                    false,
                );
            }
            let deadline = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Progressing" && c["reason"] == PROGRESS_DEADLINE_REASON);
            if deadline {
                return Err(RolloutError::ProgressDeadline(name.into()));
            }
            let updated = int(obj, "/status/updatedReplicas");
            let replicas = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            if let Some(desired) = opt_int(obj, "/spec/replicas").filter(|d| updated < *d) {
                return progress(
                    format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."),
                    false,
                );
            }
            if replicas > updated {
                return progress(
                    format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", replicas - updated),
                    false,
                );
            }
            if available < updated {
                return progress(
                    format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."),
                    false,
                );
            }
            progress(format!("deployment {name:?} successfully rolled out"), true)
        }
        Some(Kind::DaemonSet) => {
            let strategy = obj
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                .unwrap_or("RollingUpdate");
            if strategy != "RollingUpdate" {
                return Err(RolloutError::NotRollingUpdate);
            }
            if generation > observed {
                return progress(
                    "Waiting for daemon set spec update to be observed...".into(),
                    false,
                );
            }
            let desired = int(obj, "/status/desiredNumberScheduled");
            let updated = int(obj, "/status/updatedNumberScheduled");
            let available = int(obj, "/status/numberAvailable");
            if updated < desired {
                return progress(
                    format!("Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."),
                    false,
                );
            }
            if available < desired {
                return progress(
                    format!("Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."),
                    false,
                );
            }
            progress(format!("daemon set {name:?} successfully rolled out"), true)
        }
        Some(Kind::StatefulSet) => {
            let strategy = obj
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                .unwrap_or("RollingUpdate");
            if strategy != "RollingUpdate" {
                return Err(RolloutError::NotRollingUpdate);
            }
            if observed == 0 || generation > observed {
                return progress(
                    "Waiting for statefulset spec update to be observed...".into(),
                    false,
                );
            }
            let replicas = opt_int(obj, "/spec/replicas");
            let ready = int(obj, "/status/readyReplicas");
            if let Some(r) = replicas.filter(|r| ready < *r) {
                return progress(
                    format!("Waiting for {} pods to be ready...", r - ready),
                    false,
                );
            }
            let updated = int(obj, "/status/updatedReplicas");
            if obj
                .pointer("/spec/updateStrategy/rollingUpdate")
                .is_some_and(Value::is_object)
            {
                let partition = opt_int(obj, "/spec/updateStrategy/rollingUpdate/partition");
                if let (Some(r), Some(p)) = (replicas, partition) {
                    if updated < r - p {
                        return progress(
                            format!("Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...", r - p),
                            false,
                        );
                    }
                }
                return progress(
                    format!(
                        "partitioned roll out complete: {updated} new pods have been updated..."
                    ),
                    true,
                );
            }
            let update_revision = obj
                .pointer("/status/updateRevision")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let current_revision = obj
                .pointer("/status/currentRevision")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if update_revision != current_revision {
                return progress(
                    format!("waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."),
                    false,
                );
            }
            progress(
                format!(
                    "statefulset rolling update complete {} pods at revision {current_revision}...",
                    int(obj, "/status/currentReplicas")
                ),
                true,
            )
        }
        _ => Err(RolloutError::NotImplemented {
            verb: "status viewer",
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        }),
    }
}

/// The revisions (ReplicaSets or ControllerRevisions) among `sets` that
/// `deployment` (or a DaemonSet or StatefulSet) controls.
pub fn owned<'a>(deployment: &Value, sets: &'a [Value]) -> Vec<&'a Value> {
    let uid = meta::uid(deployment).unwrap_or_default();
    sets.iter()
        .filter(|rs| !uid.is_empty() && meta::controller_uid(rs) == Some(uid))
        .collect()
}

/// Each revision's ReplicaSet (the last one found, as kubectl's map keeps).
fn by_revision<'a>(sets: &[&'a Value]) -> BTreeMap<i64, &'a Value> {
    sets.iter()
        .filter_map(|rs| Some((revision_of(rs)?, *rs)))
        .collect()
}

/// kubectl's history table (`REVISION  CHANGE-CAUSE`), or its word for
/// none.
pub fn history(sets: &[&Value]) -> String {
    let revisions = by_revision(sets);
    if revisions.is_empty() {
        return "No rollout history found.".into();
    }
    let mut text = String::from("REVISION\tCHANGE-CAUSE\n");
    for (r, rs) in revisions {
        let cause = meta::annotations(rs)
            .get(CHANGE_CAUSE_ANNOTATION)
            .filter(|c| !c.is_empty())
            .cloned()
            .unwrap_or_else(|| "<none>".into());
        text.push_str(&format!("{r}\t{cause}\n"));
    }
    crate::print::tabbed(&text)
}

/// One revision's pod template, described (`rollout history
/// --revision=N`).
pub fn history_revision(sets: &[&Value], revision: i64) -> Result<String, String> {
    let revisions = by_revision(sets);
    let rs = revisions
        .get(&revision)
        .ok_or_else(|| "unable to find the specified revision".to_string())?;
    Ok(describe::pod_template_text(&template_of(rs)))
}

/// What `rollout undo` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// The Deployment already has that revision's template.
    Skipped(i64),
    /// The Deployment with the revision's template (and annotations).
    RollBack(Value),
}

/// kubectl's `DeploymentRollbacker`: the template of revision
/// `to_revision` (0: the one before the latest) copied into the
/// Deployment, without the pod-template-hash label; the Deployment's
/// annotations become the ReplicaSet's, but for those kubectl keeps.
pub fn undo(deployment: &Value, sets: &[&Value], to_revision: i64) -> Result<Undo, RolloutError> {
    let name = meta::name(deployment).unwrap_or_default();
    if to_revision < 0 {
        return Err(RolloutError::RevisionNotFound(to_revision));
    }
    let revisions = by_revision(sets);
    let to_revision = if to_revision == 0 {
        let mut keys = revisions.keys().rev();
        match (keys.next(), keys.next()) {
            (Some(_), Some(previous)) => *previous,
            _ => return Err(RolloutError::NoHistory(name.into())),
        }
    } else {
        to_revision
    };
    let rs = revisions
        .get(&to_revision)
        .ok_or(RolloutError::RevisionNotFound(to_revision))?;
    if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(RolloutError::Paused(display_object(deployment)));
    }
    let mut template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let current = deployment.pointer("/spec/template").unwrap_or(&Value::Null);
    if same_template(&template, current) {
        return Ok(Undo::Skipped(to_revision));
    }
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let mut annotations = serde_json::Map::new();
    let kept = meta::annotations(deployment);
    for key in UNDO_KEEPS {
        if let Some(v) = kept.get(key) {
            annotations.insert(key.into(), json!(v));
        }
    }
    for (k, v) in meta::annotations(rs) {
        if !UNDO_KEEPS.contains(&k.as_str()) {
            annotations.insert(k, json!(v));
        }
    }
    let mut new = deployment.clone();
    new["spec"]["template"] = template;
    meta::set_meta(&mut new, "annotations", Value::Object(annotations));
    Ok(Undo::RollBack(new))
}

/// `rollout pause` (`paused`) and `resume`: Deployments only.
pub fn pause(obj: &Value, paused: bool) -> Result<Edit<String>, RolloutError> {
    if meta::kind_of(obj) != Some(Kind::Deployment) {
        return Err(RolloutError::NotImplemented {
            verb: if paused { "pauser" } else { "resumer" },
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        });
    }
    let now = obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    match (paused, now) {
        (true, true) => return Err(RolloutError::AlreadyPaused(quoted(obj))),
        (false, false) => return Err(RolloutError::NotPaused(quoted(obj))),
        _ => {}
    }
    let mut new = obj.clone();
    new["spec"]["paused"] = json!(paused);
    let said = if paused { "paused" } else { "resumed" };
    Ok(Edit::Changed(new, said.into()))
}

/// `rollout restart`: the pod template's `restartedAt` annotation set to
/// `now` (RFC 3339), which makes a new rollout. A paused Deployment is
/// refused.
pub fn restart(obj: &Value, now: &str) -> Result<Edit<String>, RolloutError> {
    let kind = meta::kind_of(obj);
    if !matches!(
        kind,
        Some(Kind::Deployment | Kind::DaemonSet | Kind::StatefulSet)
    ) {
        return Err(RolloutError::NotImplemented {
            verb: "restarter",
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        });
    }
    if kind == Some(Kind::Deployment)
        && obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true)
    {
        return Err(RolloutError::RestartPaused(quoted(obj)));
    }
    let mut new = obj.clone();
    let template = &mut new["spec"]["template"];
    if !template.is_object() {
        *template = json!({});
    }
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["annotations"].is_object() {
        template["metadata"]["annotations"] = json!({});
    }
    template["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] = json!(now);
    Ok(Edit::Changed(new, "restarted".into()))
}

/// A `--timeout` as kubectl writes durations (`30s`, `5m`, `1h30m`,
/// `500ms`, `0`): none for zero.
pub fn parse_timeout(text: &str) -> Result<Option<Duration>, String> {
    let d = crate::wait::parse_duration(text)?;
    Ok((!d.is_zero()).then_some(d))
}

pub async fn run(client: &Client, command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status(a) => run_status(client, a).await,
        RolloutCommand::History(a) => run_history(client, a).await,
        RolloutCommand::Undo(a) => run_undo(client, a).await,
        RolloutCommand::Pause(a) => change_each(client, &a, |o| pause(o, true)).await,
        RolloutCommand::Resume(a) => change_each(client, &a, |o| pause(o, false)).await,
        RolloutCommand::Restart(a) => {
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            change_each(client, &a, |o| restart(o, &now)).await
        }
    }
}

async fn named(
    client: &Client,
    resources: &[String],
    namespace: &str,
    selector: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let t = targets::parse(resources)?;
    let all = matches!(t, Targets::Kind(_)) && selector.is_none();
    targets::resolve(client, namespace, &t, selector, all).await
}

async fn change_each(
    client: &Client,
    args: &RolloutArgs,
    decide: impl Fn(&Value) -> Result<Edit<String>, RolloutError>,
) -> anyhow::Result<()> {
    let objects = named(
        client,
        &args.resources,
        &args.namespace,
        args.selector.as_deref(),
    )
    .await?;
    if objects.is_empty() {
        eprintln!("No resources found in {} namespace.", args.namespace);
        return Ok(());
    }
    let mut failed = None;
    for obj in objects {
        let name = display_object(&obj);
        match targets::modify(client, obj, |o| Ok(decide(o)?)).await {
            Ok((_, said, _)) => emit(&format!("{name} {said}\n")),
            Err(e) => {
                if let Some(previous) = failed.replace(e) {
                    eprintln!("error: {previous:#}");
                }
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The one object `rollout status`/`history`/`undo` acts on.
async fn one(client: &Client, resources: &[String], namespace: &str) -> anyhow::Result<Value> {
    let t = targets::parse(resources)?;
    let Targets::Named(named) = &t else {
        bail!("name one object: TYPE NAME or TYPE/NAME");
    };
    if named.len() != 1 {
        bail!("name one object: TYPE NAME or TYPE/NAME");
    }
    let mut objects = targets::resolve(client, namespace, &t, None, false).await?;
    objects.pop().context("no object")
}

async fn run_status(client: &Client, args: RolloutStatusArgs) -> anyhow::Result<()> {
    let timeout = parse_timeout(&args.timeout).map_err(anyhow::Error::msg)?;
    let obj = one(client, &args.resources, &args.namespace).await?;
    let r = meta::object_ref(&obj).context("the object read names no served kind")?;
    let first = status(&obj, args.revision)?;
    emit(&format!("{}\n", first.message));
    if first.done || !args.watch {
        return Ok(());
    }
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let progress = crate::progress::Progress::spinner(&first.message);
    let mut spec = WatchSpec::all(client, r.kind);
    spec.field_selector = Some(format!("metadata.name={}", r.name));
    let mut rx = kubus_bus::watch::watch(client.clone(), spec);
    let mut last = first.message;
    loop {
        let item = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(item) => item,
                Err(_) => bail!("timed out waiting for the condition"),
            },
            None => rx.recv().await,
        };
        let Some(item) = item else {
            bail!("the watch of {} ended", display_object(&obj));
        };
        let current = match item {
            WatchItem::Relisted { items, .. } => {
                match items
                    .into_iter()
                    .find(|o| meta::object_ref(o).as_ref() == Some(&r))
                {
                    Some(o) => o,
                    None => bail!("object has been deleted"),
                }
            }
            WatchItem::Event(e) if meta::object_ref(&e.object).as_ref() == Some(&r) => {
                if e.event_type == EventType::Deleted {
                    bail!("object has been deleted");
                }
                e.object
            }
            WatchItem::Event(_) | WatchItem::Bookmark(_) => continue,
        };
        let now = status(&current, args.revision)?;
        if now.message != last {
            progress.say(&format!("{}\n", now.message));
            progress.message(&now.message);
            last = now.message;
        }
        if now.done {
            return Ok(());
        }
    }
}

async fn run_history(client: &Client, args: RolloutHistoryArgs) -> anyhow::Result<()> {
    let obj = one(client, &args.resources, &args.namespace).await?;
    let kind = history_kind(&obj, "history viewer")?;
    let (sets, _) = client.list(kind, Some(&args.namespace), None, None).await?;
    let owned = owned(&obj, &sets);
    let name = display_object(&obj);
    match args.revision {
        Some(r) if r > 0 => {
            let text = history_revision(&owned, r).map_err(anyhow::Error::msg)?;
            emit(&format!("{name} with revision #{r}\n{text}"));
        }
        Some(r) if r < 0 => bail!("revision must be a positive integer: {r}"),
        _ => emit(&format!("{name}\n{}\n", history(&owned).trim_end())),
    }
    Ok(())
}

async fn run_undo(client: &Client, args: RolloutUndoArgs) -> anyhow::Result<()> {
    let obj = one(client, &args.resources, &args.namespace).await?;
    let kind = history_kind(&obj, "rollbacker")?;
    let name = display_object(&obj);
    let (sets, _) = client.list(kind, Some(&args.namespace), None, None).await?;
    let to_revision = args.to_revision;
    let (_, said, _) = targets::modify(client, obj, |d| {
        let owned = owned(d, &sets);
        let decided = if kind == Kind::ReplicaSet {
            undo(d, &owned, to_revision)?
        } else {
            undo_set(d, &owned, to_revision)?
        };
        Ok(match decided {
            Undo::Skipped(r) => Edit::Unchanged(format!(
                "skipped rollback (current template already matches revision {r})"
            )),
            Undo::RollBack(new) => Edit::Changed(new, "rolled back".into()),
        })
    })
    .await?;
    emit(&format!("{name} {said}\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": generation,
                "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}},
            "status": status})
    }

    fn rs(name: &str, image: &str, revision: i64, cause: Option<&str>) -> Value {
        let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string()});
        if let Some(c) = cause {
            annotations["kubernetes.io/change-cause"] = json!(c);
        }
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations,
                "ownerReferences": [{"uid": "d1", "controller": true}]},
            "spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}}}})
    }

    #[test]
    fn deployment_status_follows_kubectl() {
        let msg = |s: Value, generation: i64| status(&deployment(generation, s), None);
        let waiting = |text: &str| {
            Ok(Progress {
                message: text.to_string(),
                done: false,
            })
        };
        // (status, generation, answer)
        let cases = vec![
            (json!({"observedGeneration": 1}), 2,
                waiting("Waiting for deployment spec update to be observed...")),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}), 2,
                waiting("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...")),
            (json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}), 2,
                waiting("Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...")),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}), 2,
                waiting("Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...")),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}), 2,
                Ok(Progress { message: "deployment \"web\" successfully rolled out".into(), done: true })),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}), 2,
                Err(RolloutError::ProgressDeadline("web".into()))),
        ];
        for (s, generation, want) in cases {
            assert_eq!(msg(s.clone(), generation), want, "{s}");
        }
        assert_eq!(
            RolloutError::ProgressDeadline("web".into()).to_string(),
            "deployment \"web\" exceeded its progress deadline"
        );
        let done = deployment(1, json!({"observedGeneration": 1}));
        assert_eq!(
            status(&done, Some(3)),
            Err(RolloutError::RevisionMismatch {
                desired: 3,
                running: 2
            })
        );
    }

    #[test]
    fn daemon_and_stateful_sets_have_viewers() {
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 1, "numberAvailable": 1}});
        assert_eq!(
            status(&ds, None).map(|p| p.message),
            Ok("Waiting for daemon set \"agent\" rollout to finish: 1 out of 2 new pods have been updated...".into())
        );
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
            "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 3}});
        assert_eq!(
            status(&sts, None),
            Ok(Progress {
                message: "partitioned roll out complete: 3 new pods have been updated...".into(),
                done: true
            })
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
        assert!(matches!(
            status(&pod, None),
            Err(RolloutError::NotImplemented { .. })
        ));
    }

    #[test]
    fn history_lists_revisions_with_their_cause() {
        let sets = [
            rs(
                "web-b",
                "nginx:2",
                2,
                Some("kubus set image deployment/web main=nginx:2"),
            ),
            rs("web-a", "nginx:1", 1, None),
        ];
        let owned: Vec<&Value> = sets.iter().collect();
        assert_eq!(
            history(&owned),
            "REVISION  CHANGE-CAUSE\n1         <none>\n2         kubus set image deployment/web main=nginx:2\n"
        );
        assert_eq!(history(&[]), "No rollout history found.");
        let text = history_revision(&owned, 1).expect("revision 1");
        assert!(text.contains("Image:         nginx:1"), "{text}");
        assert!(history_revision(&owned, 7).is_err());
    }

    #[test]
    fn undo_restores_the_previous_template() {
        let d = deployment(2, json!({}));
        let sets = [
            rs("web-a", "nginx:1", 1, Some("first")),
            rs("web-b", "nginx:2", 2, None),
        ];
        let owned: Vec<&Value> = sets.iter().collect();
        let Ok(Undo::RollBack(new)) = undo(&d, &owned, 0) else {
            panic!("no rollback");
        };
        assert_eq!(
            new["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        assert!(new["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none());
        // the revision annotation is the Deployment's; others come from the set
        assert_eq!(
            new["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "2"
        );
        assert_eq!(
            new["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "first"
        );
        // to the current revision: nothing to do
        assert_eq!(undo(&d, &owned, 2), Ok(Undo::Skipped(2)));
        assert_eq!(undo(&d, &owned, 9), Err(RolloutError::RevisionNotFound(9)));
        assert_eq!(
            undo(&d, &owned[..1], 0),
            Err(RolloutError::NoHistory("web".into()))
        );
        let mut paused = d.clone();
        paused["spec"]["paused"] = json!(true);
        assert!(matches!(
            undo(&paused, &owned, 1),
            Err(RolloutError::Paused(_))
        ));
    }

    #[test]
    fn pause_resume_and_restart() {
        let d = deployment(1, json!({}));
        let Ok(Edit::Changed(paused, said)) = pause(&d, true) else {
            panic!("not paused");
        };
        assert_eq!(
            (paused["spec"]["paused"].clone(), said.as_str()),
            (json!(true), "paused")
        );
        assert_eq!(
            pause(&paused, true).map(|_| ()).map_err(|e| e.to_string()),
            Err("deployments.apps \"web\" is already paused".into())
        );
        assert_eq!(
            pause(&d, false).map(|_| ()).map_err(|e| e.to_string()),
            Err("deployments.apps \"web\" is not paused".into())
        );
        assert!(matches!(pause(&paused, false), Ok(Edit::Changed(_, _))));
        assert_eq!(
            restart(&paused, "2026-01-01T00:00:00Z").map(|_| ()).map_err(|e| e.to_string()),
            Err("deployments.apps \"web\" can't restart paused deployment (run rollout resume first)".into())
        );
        let Ok(Edit::Changed(restarted, said)) = restart(&d, "2026-01-01T00:00:00Z") else {
            panic!("not restarted");
        };
        assert_eq!(said, "restarted");
        assert_eq!(
            restarted["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            restarted["spec"]["template"]["metadata"]["labels"]["app"],
            "web"
        );
    }

    #[test]
    fn daemon_and_stateful_sets_roll_back_to_a_controller_revision() {
        let revision = |n: i64, image: &str| {
            json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": format!("agent-{n}"), "namespace": "default"},
                "revision": n,
                "data": {"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}}}})
        };
        let (r1, r2) = (revision(1, "v1"), revision(2, "v2"));
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"template": {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "v2"}]}}}});
        let Ok(Undo::RollBack(back)) = undo_set(&ds, &[&r1, &r2], 0) else {
            panic!("expected a rollback")
        };
        assert_eq!(
            back["spec"]["template"]["spec"]["containers"][0]["image"],
            "v1"
        );
        assert!(back["spec"]["template"].get("$patch").is_none());
        assert_eq!(undo_set(&ds, &[&r1, &r2], 2), Ok(Undo::Skipped(2)));
        assert_eq!(
            undo_set(&ds, &[&r1, &r2], 7),
            Err(RolloutError::RevisionNotFound(7))
        );
        assert!(history(&[&r1, &r2]).contains("2"));
    }
}
