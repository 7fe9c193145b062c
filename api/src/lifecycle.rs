//! How the store turns a request's object into the object it stores: system
//! metadata on create, what an update or an apply keeps from the stored
//! object, when `metadata.generation` moves, and what a delete does
//! ([`plan_deletion`]: remove now, or mark a pod terminating with
//! `metadata.deletionTimestamp`, as Kubernetes' graceful deletion does).
//! Pure functions; the clock and the random parts are arguments.

use serde_json::{Map, Value};

use crate::kind::Kind;
use crate::meta;

/// Metadata fields only the system writes; a request's values are ignored.
const SYSTEM_META: &[&str] = &["uid", "creationTimestamp", "generation"];

/// Metadata fields only a delete writes: a new object never carries them
/// and an update may not change them (admission's `validate_update`).
pub const DELETION_META: &[&str] = &["deletionTimestamp", "deletionGracePeriodSeconds"];

/// A pod's grace period when neither the delete request nor its
/// `spec.terminationGracePeriodSeconds` gives one (Kubernetes' default).
pub const GRACE_PERIOD_DEFAULT_SECS: i64 = 30;

/// A Kubernetes `Time`: RFC 3339 at whole seconds, UTC.
pub fn format_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Kubernetes `MicroTime` (a Lease's `renewTime`): RFC 3339 with
/// microseconds, UTC.
pub fn format_micro_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Fill in what the system owns for a new object. `suffix` completes a
/// `metadata.generateName` when no name was given.
pub fn prepare_create(mut obj: Value, uid: &str, now: &str, suffix: &str) -> Value {
    if meta::name(&obj).is_none() {
        if let Some(base) = meta::meta_str(&obj, "generateName").map(str::to_string) {
            meta::set_meta(&mut obj, "name", Value::String(format!("{base}{suffix}")));
        }
    }
    meta::set_meta(&mut obj, "uid", Value::String(uid.to_string()));
    meta::set_meta(
        &mut obj,
        "creationTimestamp",
        Value::String(now.to_string()),
    );
    meta::set_meta(&mut obj, "generation", Value::from(1));
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in DELETION_META {
            m.remove(*field);
        }
    }
    if meta::kind_of(&obj) == Some(Kind::Job) {
        job_selector(&mut obj, uid);
    }
    strip_revision(&mut obj);
    obj
}

/// The label a Job's generated selector matches: its uid.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label naming a pod's Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// As Kubernetes: a Job without `manualSelector` gets a selector on its
/// uid, and its template the labels that selector (and users) look for.
fn job_selector(job: &mut Value, uid: &str) {
    if job.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let name = meta::name(job).unwrap_or_default().to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let mut selector = Map::new();
    selector.insert(
        "matchLabels".into(),
        serde_json::json!({ JOB_CONTROLLER_UID_LABEL: uid }),
    );
    spec.insert("selector".into(), Value::Object(selector));
    let template = spec
        .entry("template")
        .or_insert_with(|| Value::Object(Map::new()));
    let labels = template
        .as_object_mut()
        .map(|t| {
            t.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut)
        .map(|m| {
            m.entry("labels")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut);
    if let Some(labels) = labels {
        for (k, v) in [
            (JOB_CONTROLLER_UID_LABEL, uid),
            (JOB_NAME_LABEL, name.as_str()),
            ("controller-uid", uid),
            ("job-name", name.as_str()),
        ] {
            labels.insert(k.into(), Value::String(v.into()));
        }
    }
}

/// What a delete request does to the object it names.
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion {
    /// Remove the object now.
    Remove,
    /// Store this object instead: the pod is terminating, with
    /// `deletionTimestamp` and `deletionGracePeriodSeconds` set; its node
    /// agent stops its containers and then removes it.
    Terminate(Value),
    /// The pod is already terminating, no later than this request asks:
    /// nothing to write (the answer is the object as it is).
    Pending,
}

/// Kubernetes' graceful deletion, decided: `requested` is the request's
/// `gracePeriodSeconds` (negative counts as 1, as in Kubernetes; 0 forces
/// removal at once).
///
/// - Kinds other than Pod are removed at once (kubus has no finalizers).
/// - A pod not yet terminating gets the requested grace, else its
///   `spec.terminationGracePeriodSeconds`, else 30 s; a pod no node runs
///   (no `spec.nodeName`) or one already `Succeeded`/`Failed` has nothing
///   to stop and gets 0. Grace 0 removes it; more marks it terminating,
///   `deletionTimestamp` = `now` + grace (rounded up to whole seconds, so
///   the time left is never less than the grace).
/// - A terminating pod's grace may only shorten: a shorter request moves
///   `deletionTimestamp` earlier by the difference (0 removes it); no
///   request, or a longer one, changes nothing.
pub fn plan_deletion(
    kind: Kind,
    current: &Value,
    requested: Option<i64>,
    now: jiff::Timestamp,
) -> Deletion {
    if kind != Kind::Pod {
        return Deletion::Remove;
    }
    let requested = requested.map(|g| if g < 0 { 1 } else { g });
    let metadata = current.get("metadata");
    let deletion_at = metadata.and_then(|m| m.get("deletionTimestamp"));
    if let Some(at) = deletion_at.filter(|v| !v.is_null()) {
        let Some(grace_now) = metadata
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
        else {
            // terminating without a grace period: nothing to wait for
            return Deletion::Remove;
        };
        return match requested {
            Some(0) => Deletion::Remove,
            Some(g) if g < grace_now => {
                // the same start, a shorter wait
                let at = at
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map_or_else(
                        || deletion_time(now, g),
                        |t| add_seconds(t, g.saturating_sub(grace_now)),
                    );
                Deletion::Terminate(terminating(current, at, g))
            }
            _ => Deletion::Pending,
        };
    }
    let grace = grace_period_secs(current, requested);
    if grace == 0 {
        Deletion::Remove
    } else {
        Deletion::Terminate(terminating(current, deletion_time(now, grace), grace))
    }
}

/// How a delete treats what the deleted object owns (Kubernetes'
/// `propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Propagation {
    /// Remove the object now; the garbage collector deletes what it owned
    /// afterwards (the default).
    Background,
    /// Keep the object, marked, until the garbage collector has deleted
    /// what it owns (those with `blockOwnerDeletion`): the
    /// `foregroundDeletion` finalizer.
    Foreground,
    /// Keep the object, marked, until the garbage collector has removed its
    /// owner references from what it owned: the `orphan` finalizer.
    Orphan,
}

impl Propagation {
    /// The finalizer this policy puts on the deleted object.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Foreground => Some(FOREGROUND_FINALIZER),
            Propagation::Orphan => Some(ORPHAN_FINALIZER),
        }
    }

    /// Parse `background`, `foreground` or `orphan` (any case).
    pub fn parse(word: &str) -> Option<Propagation> {
        match word.to_ascii_lowercase().as_str() {
            "background" => Some(Propagation::Background),
            "foreground" => Some(Propagation::Foreground),
            "orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }
}

/// The finalizer of a foreground deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer in a Namespace's `spec.finalizers` that the namespace
/// controller removes once the namespace is empty.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Whether a delete has marked the object (`metadata.deletionTimestamp`).
pub fn is_marked(obj: &Value) -> bool {
    crate::pod::is_terminating(obj)
}

/// The finalizers an object waits for: `metadata.finalizers`, and for a
/// Namespace also `spec.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<&str> {
    let list = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    };
    list("/metadata/finalizers")
        .chain(
            list("/spec/finalizers").filter(|_| obj.get("kind") == Some(&Value::from("Namespace"))),
        )
        .collect()
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = m
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = list.as_array_mut() {
        if !list.iter().any(|f| f.as_str() == Some(finalizer)) {
            list.push(Value::from(finalizer));
        }
    }
}

/// A delete, decided with finalizers (Kubernetes' rules on top of
/// [`plan_deletion`]'s graceful deletion of pods):
///
/// - the propagation policy's finalizer is added (`foregroundDeletion`,
///   `orphan`; none for background);
/// - an object with finalizers is never removed by a delete: it is marked
///   (`deletionTimestamp`, for non-pods `deletionGracePeriodSeconds: 0`)
///   and removed by the update that takes its last finalizer away
///   ([`removed_by_update`]); a marked one is left as it is;
/// - a Namespace is always marked first, `status.phase: Terminating`,
///   with the `kubernetes` finalizer its controller removes once the
///   namespace is empty.
pub fn plan_deletion_with(
    kind: Kind,
    current: &Value,
    requested: Option<i64>,
    propagation: Option<Propagation>,
    now: jiff::Timestamp,
) -> Deletion {
    if kind != Kind::Pod && is_marked(current) {
        return if finalizers(current).is_empty() {
            Deletion::Remove
        } else {
            Deletion::Pending
        };
    }
    let decided = plan_deletion(kind, current, requested, now);
    let mark = |mut v: Value| {
        if let Some(f) = propagation.and_then(Propagation::finalizer) {
            add_finalizer(&mut v, f);
        }
        if kind == Kind::Namespace {
            let spec = v
                .as_object_mut()
                .map(|o| o.entry("spec").or_insert_with(|| Value::Object(Map::new())));
            if let Some(spec) = spec.and_then(Value::as_object_mut) {
                let list = spec
                    .entry("finalizers")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(list) = list.as_array_mut() {
                    if !list.iter().any(|f| f.as_str() == Some(NAMESPACE_FINALIZER)) {
                        list.push(Value::from(NAMESPACE_FINALIZER));
                    }
                }
            }
            if let Some(o) = v.as_object_mut() {
                let status = o
                    .entry("status")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(st) = status.as_object_mut() {
                    st.insert("phase".into(), Value::from("Terminating"));
                }
            }
        }
        v
    };
    match decided {
        Deletion::Pending => Deletion::Pending,
        Deletion::Terminate(v) => Deletion::Terminate(mark(v)),
        Deletion::Remove => {
            let marked = mark(current.clone());
            if finalizers(&marked).is_empty() {
                return Deletion::Remove;
            }
            let at = deletion_deadline(current).unwrap_or(now);
            Deletion::Terminate(terminating(&marked, at, 0))
        }
    }
}

/// Whether an update leaves a marked object with no finalizer to wait
/// for, so that the store removes it instead of storing it (a pod only
/// once its grace period is over: `deletionGracePeriodSeconds: 0`).
pub fn removed_by_update(kind: Kind, new: &Value) -> bool {
    if !is_marked(new) || !finalizers(new).is_empty() {
        return false;
    }
    kind != Kind::Pod
        || new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(0)
}

/// The grace period a delete of a pod not yet terminating gets (see
/// [`plan_deletion`]).
pub fn grace_period_secs(pod: &Value, requested: Option<i64>) -> i64 {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !bound || crate::pod::is_finished(pod) {
        return 0;
    }
    requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(GRACE_PERIOD_DEFAULT_SECS)
        .max(0)
}

/// `now` plus `grace` seconds, rounded up to a whole second (a Kubernetes
/// `Time` holds whole seconds).
fn deletion_time(now: jiff::Timestamp, grace: i64) -> jiff::Timestamp {
    let up = i64::from(now.subsec_nanosecond() > 0);
    add_seconds(now, up.saturating_add(grace))
}

/// `t` (cut to its whole second) plus `seconds`, saturating at the ends
/// of time.
fn add_seconds(t: jiff::Timestamp, seconds: i64) -> jiff::Timestamp {
    let whole = t.as_second().saturating_add(seconds);
    jiff::Timestamp::from_second(whole)
        .ok()
        .or_else(|| (whole > 0).then_some(jiff::Timestamp::MAX))
        .unwrap_or(jiff::Timestamp::MIN)
}

fn terminating(current: &Value, at: jiff::Timestamp, grace: i64) -> Value {
    let mut obj = current.clone();
    meta::set_meta(
        &mut obj,
        "deletionTimestamp",
        Value::String(format_time(at)),
    );
    meta::set_meta(&mut obj, "deletionGracePeriodSeconds", Value::from(grace));
    strip_revision(&mut obj);
    obj
}

/// When a terminating object's grace period ends, from its
/// `metadata.deletionTimestamp` (None: not terminating, or unreadable).
pub fn deletion_deadline(obj: &Value) -> Option<jiff::Timestamp> {
    obj.pointer("/metadata/deletionTimestamp")?
        .as_str()?
        .parse()
        .ok()
}

/// An update replaces the object but keeps the system's metadata; the
/// generation moves when the spec changed.
pub fn prepare_update(mut new: Value, current: &Value) -> Value {
    for field in SYSTEM_META {
        let kept = current
            .get("metadata")
            .and_then(|m| m.get(*field))
            .cloned()
            .unwrap_or(Value::Null);
        if !kept.is_null() {
            meta::set_meta(&mut new, field, kept);
        }
    }
    if new.get("spec") != current.get("spec") {
        let generation = current
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta::set_meta(&mut new, "generation", Value::from(generation + 1));
    }
    strip_revision(&mut new);
    new
}

/// Whether two stored forms are the same object state (ignoring the
/// revision, which the store fills in on read).
pub fn same_state(a: &Value, b: &Value) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    strip_revision(&mut a);
    strip_revision(&mut b);
    a == b
}

/// The stored form never carries `resourceVersion`: it is the object's
/// modification revision, filled in on read.
pub fn strip_revision(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

/// An empty object of a kind, for tests and for building objects in code.
pub fn empty(kind: Kind, namespace: Option<&str>, name: &str) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.into()));
    if let (true, Some(ns)) = (kind.namespaced(), namespace) {
        metadata.insert("namespace".into(), Value::String(ns.into()));
    }
    let mut root = Map::new();
    root.insert(
        "apiVersion".into(),
        Value::String(kind.api_version().into()),
    );
    root.insert("kind".into(), Value::String(kind.as_str().into()));
    root.insert("metadata".into(), Value::Object(metadata));
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_sets_system_metadata_and_generates_names() {
        let o = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "resourceVersion": "9", "uid": "forged"}});
        let o = prepare_create(o, "u-1", "2026-01-01T00:00:00Z", "x7k2p");
        assert_eq!(meta::name(&o), Some("web-x7k2p"));
        assert_eq!(meta::uid(&o), Some("u-1"));
        assert_eq!(meta::resource_version(&o), None);
        assert_eq!(o["metadata"]["generation"], json!(1));
    }

    #[test]
    fn update_keeps_system_metadata_and_bumps_generation_on_spec_change() {
        let cur = json!({"metadata": {"name": "a", "uid": "u", "generation": 3,
            "creationTimestamp": "t"}, "spec": {"replicas": 1}});
        let same = prepare_update(
            json!({"metadata": {"name": "a", "uid": "x"}, "spec": {"replicas": 1}}),
            &cur,
        );
        assert_eq!(same["metadata"]["uid"], json!("u"));
        assert_eq!(same["metadata"]["generation"], json!(3));
        let changed = prepare_update(
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}}),
            &cur,
        );
        assert_eq!(changed["metadata"]["generation"], json!(4));
        assert_eq!(changed["metadata"]["creationTimestamp"], json!("t"));
    }

    fn pod(node: Option<&str>, phase: Option<&str>, grace: Option<i64>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        if let Some(g) = grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        if let Some(ph) = phase {
            p["status"] = json!({"phase": ph});
        }
        p
    }

    fn at(t: &str) -> jiff::Timestamp {
        t.parse().expect("a time")
    }

    /// (what, pod's node, phase, spec grace, requested) → grace
    #[test]
    fn grace_period_table() {
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<i64>,
            Option<i64>,
            i64,
        );
        let cases: Vec<Case> = vec![
            ("default", Some("n1"), Some("Running"), None, None, 30),
            ("the spec's", Some("n1"), Some("Running"), Some(5), None, 5),
            (
                "the request's",
                Some("n1"),
                Some("Running"),
                Some(5),
                Some(2),
                2,
            ),
            ("a longer request", Some("n1"), None, Some(5), Some(60), 60),
            ("force", Some("n1"), Some("Running"), Some(5), Some(0), 0),
            ("unbound", None, Some("Pending"), Some(5), Some(9), 0),
            ("empty node name", Some(""), None, None, None, 0),
            ("succeeded", Some("n1"), Some("Succeeded"), None, None, 0),
            ("failed", Some("n1"), Some("Failed"), None, Some(9), 0),
            ("negative spec", Some("n1"), None, Some(-4), None, 0),
        ];
        for (what, node, phase, spec, requested, want) in cases {
            assert_eq!(
                grace_period_secs(&pod(node, phase, spec), requested),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn deletion_removes_at_once_or_marks_terminating() {
        let now = at("2026-01-01T00:00:10.250Z");
        // other kinds: immediate
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(
            plan_deletion(Kind::ConfigMap, &cm, None, now),
            Deletion::Remove
        );
        // unbound, terminal, forced: immediate
        for (p, g) in [
            (pod(None, None, Some(5)), None),
            (pod(Some("n1"), Some("Succeeded"), None), None),
            (pod(Some("n1"), Some("Running"), None), Some(0)),
        ] {
            assert_eq!(
                plan_deletion(Kind::Pod, &p, g, now),
                Deletion::Remove,
                "{p}"
            );
        }
        // bound: terminating, the time rounded up
        let mut running = pod(Some("n1"), Some("Running"), Some(5));
        running["metadata"]["resourceVersion"] = json!("7");
        let Deletion::Terminate(t) = plan_deletion(Kind::Pod, &running, None, now) else {
            panic!("graceful");
        };
        assert_eq!(
            t["metadata"]["deletionTimestamp"],
            json!("2026-01-01T00:00:16Z")
        );
        assert_eq!(t["metadata"]["deletionGracePeriodSeconds"], json!(5));
        assert_eq!(meta::resource_version(&t), None, "the stored form");
        assert_eq!(t["spec"], running["spec"]);
        // a negative request counts as 1 s; on a whole second no rounding
        let Deletion::Terminate(t) =
            plan_deletion(Kind::Pod, &running, Some(-3), at("2026-01-01T00:00:10Z"))
        else {
            panic!("graceful");
        };
        assert_eq!(
            t["metadata"]["deletionTimestamp"],
            json!("2026-01-01T00:00:11Z")
        );
        assert_eq!(t["metadata"]["deletionGracePeriodSeconds"], json!(1));
        assert_eq!(deletion_deadline(&t), Some(at("2026-01-01T00:00:11Z")));
        assert_eq!(deletion_deadline(&running), None);
    }

    /// A second delete may only shorten the grace period.
    #[test]
    fn a_terminating_pod_only_shortens() {
        let now = at("2026-01-01T00:00:12Z");
        let mut p = pod(Some("n1"), Some("Running"), Some(30));
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:40Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        // (requested, want: None = Pending, Some(None) = Remove, Some(Some((at, grace))))
        type Want = Option<Option<(&'static str, i64)>>;
        let cases: Vec<(Option<i64>, Want)> = vec![
            (None, None),
            (Some(30), None),
            (Some(60), None),
            (Some(10), Some(Some(("2026-01-01T00:00:20Z", 10)))),
            (Some(-1), Some(Some(("2026-01-01T00:00:11Z", 1)))),
            (Some(0), Some(None)),
        ];
        for (requested, want) in cases {
            let got = match plan_deletion(Kind::Pod, &p, requested, now) {
                Deletion::Pending => None,
                Deletion::Remove => Some(None),
                Deletion::Terminate(t) => Some(Some((
                    t["metadata"]["deletionTimestamp"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_default(),
                    t["metadata"]["deletionGracePeriodSeconds"]
                        .as_i64()
                        .unwrap_or_default(),
                ))),
            };
            let want = want.map(|w| w.map(|(t, g)| (t.to_string(), g)));
            assert_eq!(got, want, "requested {requested:?}");
        }
        // terminating without a grace period: removed
        let mut bare = p.clone();
        if let Some(m) = bare["metadata"].as_object_mut() {
            m.remove("deletionGracePeriodSeconds");
        }
        assert_eq!(plan_deletion(Kind::Pod, &bare, None, now), Deletion::Remove);
    }

    #[test]
    fn a_new_object_carries_no_deletion() {
        let o = json!({"kind": "Pod", "metadata": {"name": "p",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 3}});
        let o = prepare_create(o, "u", "t", "x");
        assert_eq!(o["metadata"].get("deletionTimestamp"), None);
        assert_eq!(o["metadata"].get("deletionGracePeriodSeconds"), None);
    }

    #[test]
    fn finalizers_hold_a_delete_until_they_are_removed() {
        let now = at("2026-01-01T00:00:00Z");
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c"}});
        let held =
            json!({"kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x.io/hold"]}});
        // (case, object, policy, removed now, finalizers after)
        type Case<'a> = (&'a str, &'a Value, Option<Propagation>, bool, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("plain", &cm, None, true, vec![]),
            (
                "background",
                &cm,
                Some(Propagation::Background),
                true,
                vec![],
            ),
            (
                "foreground",
                &cm,
                Some(Propagation::Foreground),
                false,
                vec!["foregroundDeletion"],
            ),
            (
                "orphan",
                &cm,
                Some(Propagation::Orphan),
                false,
                vec!["orphan"],
            ),
            ("held", &held, None, false, vec!["x.io/hold"]),
            (
                "held, orphan",
                &held,
                Some(Propagation::Orphan),
                false,
                vec!["x.io/hold", "orphan"],
            ),
        ];
        for (case, obj, policy, removed, after) in cases {
            match plan_deletion_with(Kind::ConfigMap, obj, None, policy, now) {
                Deletion::Remove => assert!(removed, "{case}"),
                Deletion::Terminate(v) => {
                    assert!(!removed, "{case}");
                    assert_eq!(finalizers(&v), after, "{case}");
                    assert!(is_marked(&v), "{case}");
                    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 0, "{case}");
                    // a second delete leaves it as it is
                    assert_eq!(
                        plan_deletion_with(Kind::ConfigMap, &v, None, None, now),
                        Deletion::Pending,
                        "{case}"
                    );
                    assert!(!removed_by_update(Kind::ConfigMap, &v), "{case}");
                    let mut done = v.clone();
                    done["metadata"]["finalizers"] = json!([]);
                    assert!(removed_by_update(Kind::ConfigMap, &done), "{case}");
                }
                Deletion::Pending => panic!("{case}: pending"),
            }
        }
    }

    #[test]
    fn a_namespace_is_marked_terminating_until_its_controller_finishes() {
        let now = at("2026-01-01T00:00:00Z");
        let ns = json!({"kind": "Namespace", "metadata": {"name": "team"}});
        let Deletion::Terminate(v) = plan_deletion_with(Kind::Namespace, &ns, None, None, now)
        else {
            panic!("a namespace is marked first");
        };
        assert_eq!(v["status"]["phase"], "Terminating");
        assert_eq!(finalizers(&v), vec!["kubernetes"]);
        let mut emptied = v.clone();
        emptied["spec"]["finalizers"] = json!([]);
        assert!(removed_by_update(Kind::Namespace, &emptied));
    }

    #[test]
    fn a_pod_with_a_finalizer_stays_after_its_grace_period() {
        let now = at("2026-01-01T00:00:00Z");
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "finalizers": ["x.io/hold"]},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let Deletion::Terminate(t) = plan_deletion_with(Kind::Pod, &pod, None, None, now) else {
            panic!("graceful");
        };
        assert_eq!(t["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(
            !removed_by_update(Kind::Pod, &t),
            "still in its grace period"
        );
        // the node agent's final delete (grace 0) leaves it marked
        let Deletion::Terminate(last) = plan_deletion_with(Kind::Pod, &t, Some(0), None, now)
        else {
            panic!("held by its finalizer");
        };
        assert_eq!(last["metadata"]["deletionGracePeriodSeconds"], 0);
        let mut done = last.clone();
        done["metadata"]["finalizers"] = json!([]);
        assert!(removed_by_update(Kind::Pod, &done));
    }
}
