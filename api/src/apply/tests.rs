//! Server-side apply, as sequences of writes: each case applies and
//! updates one Deployment in turn, then checks fields and their owners.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::fieldpath::{from_fields_v1, path_string, to_fields_v1};
use super::managers::{self, Stored};
use super::*;
use crate::patch::merge_patch;

const NOW: &str = "2026-12-06T10:00:00Z";
const LATER: &str = "2026-12-06T11:00:00Z";

fn deploy(spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
    })
}

fn container(name: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": "nginx"});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

fn with_containers(containers: Value) -> Value {
    deploy(json!({"template": {"spec": {"containers": containers}}}))
}

fn apply(
    manager: &str,
    force: bool,
    current: Option<&Value>,
    applied: &Value,
) -> Result<Value, ApiError> {
    let req = ApplyRequest {
        kind: Kind::Deployment,
        manager,
        force,
        now: NOW,
    };
    server_side_apply(&req, current, applied)
}

/// `manager/Operation` → the dotted paths it owns.
fn owners(obj: &Value) -> BTreeMap<String, Vec<String>> {
    let Stored::Entries(entries) = managers::read(obj) else {
        return BTreeMap::new();
    };
    entries
        .into_iter()
        .map(|m| {
            let paths = m.fields.iter().map(|p| path_string(p)).collect();
            (format!("{}/{}", m.manager, m.operation), paths)
        })
        .collect()
}

/// One write in a case.
enum Op {
    /// `manager` applies the configuration (force or not).
    Apply(&'static str, bool, Value),
    /// `manager` writes a JSON merge patch (create when nothing exists).
    Update(&'static str, Value),
    /// As `Apply`, but must fail with this conflict message.
    Conflicts(&'static str, Value, &'static str),
}

struct Case {
    name: &'static str,
    ops: Vec<Op>,
    /// JSON pointer → the value there at the end (None: absent).
    want: Vec<(&'static str, Option<Value>)>,
    /// Every entry at the end: `manager/Operation` and its paths.
    owners: Vec<(&'static str, Vec<&'static str>)>,
}

fn run(case: &Case) -> Value {
    let mut current: Option<Value> = None;
    for (i, op) in case.ops.iter().enumerate() {
        let step = format!("{}: step {i}", case.name);
        match op {
            Op::Apply(manager, force, config) => {
                let got = apply(manager, *force, current.as_ref(), config);
                current = Some(got.unwrap_or_else(|e| panic!("{step}: {e}")));
            }
            Op::Conflicts(manager, config, message) => {
                let err = apply(manager, false, current.as_ref(), config)
                    .expect_err(&format!("{step}: no conflict"));
                assert_eq!(err.reason, Reason::Conflict, "{step}");
                assert_eq!(err.message, *message, "{step}");
            }
            Op::Update(manager, patch) => {
                let before = current.take();
                let mut after = match &before {
                    Some(b) => merge_patch(b, patch),
                    None => patch.clone(),
                };
                record_update(Kind::Deployment, manager, NOW, before.as_ref(), &mut after);
                current = Some(after);
            }
        }
    }
    let obj = current.unwrap_or(Value::Null);
    for (pointer, want) in &case.want {
        assert_eq!(
            obj.pointer(pointer),
            want.as_ref(),
            "{}: {pointer} in {obj:#}",
            case.name
        );
    }
    let want: BTreeMap<String, Vec<String>> = case
        .owners
        .iter()
        .map(|(m, paths)| (m.to_string(), paths.iter().map(|p| p.to_string()).collect()))
        .collect();
    assert_eq!(owners(&obj), want, "{}: owners", case.name);
    obj
}

#[test]
fn applies_as_kubernetes_does() {
    let cases = vec![
        Case {
            name: "create: the configuration becomes the object",
            ops: vec![Op::Apply(
                "kubectl",
                false,
                deploy(json!({"replicas": 2, "paused": false})),
            )],
            want: vec![
                ("/spec/replicas", Some(json!(2))),
                ("/metadata/name", Some(json!("web"))),
                ("/metadata/namespace", Some(json!("default"))),
                ("/apiVersion", Some(json!("apps/v1"))),
            ],
            owners: vec![("kubectl/Apply", vec![".spec.paused", ".spec.replicas"])],
        },
        Case {
            name: "re-apply without a field removes it",
            ops: vec![
                Op::Apply(
                    "kubectl",
                    false,
                    deploy(json!({"replicas": 2, "paused": true})),
                ),
                Op::Apply("kubectl", false, deploy(json!({"replicas": 2}))),
            ],
            want: vec![("/spec/paused", None), ("/spec/replicas", Some(json!(2)))],
            owners: vec![("kubectl/Apply", vec![".spec.replicas"])],
        },
        Case {
            name: "a label removed, the other kept; an emptied map goes",
            ops: vec![
                Op::Apply(
                    "kubectl",
                    false,
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}},
                        "spec": {"minReadySeconds": 5}}),
                ),
                Op::Apply(
                    "kubectl",
                    false,
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "labels": {"b": "2"}}}),
                ),
            ],
            want: vec![
                ("/metadata/labels", Some(json!({"b": "2"}))),
                ("/spec", None),
                ("/metadata/name", Some(json!("web"))),
            ],
            owners: vec![("kubectl/Apply", vec![".metadata.labels.b"])],
        },
        Case {
            name: "two appliers of one value share it; it goes with its last owner",
            ops: vec![
                Op::Apply("a", false, deploy(json!({"replicas": 3, "paused": true}))),
                Op::Apply("b", false, deploy(json!({"replicas": 3}))),
                Op::Apply("a", false, deploy(json!({"paused": true}))),
            ],
            want: vec![("/spec/replicas", Some(json!(3)))],
            owners: vec![
                ("a/Apply", vec![".spec.paused"]),
                ("b/Apply", vec![".spec.replicas"]),
            ],
        },
        Case {
            name: "the last owner stops applying: removed",
            ops: vec![
                Op::Apply("a", false, deploy(json!({"replicas": 3}))),
                Op::Apply("b", false, deploy(json!({"replicas": 3, "paused": true}))),
                Op::Apply("a", false, deploy(json!({"paused": true}))),
                Op::Apply("b", false, deploy(json!({"paused": true}))),
            ],
            want: vec![("/spec/replicas", None), ("/spec/paused", Some(json!(true)))],
            owners: vec![
                ("a/Apply", vec![".spec.paused"]),
                ("b/Apply", vec![".spec.paused"]),
            ],
        },
        Case {
            name: "a different value for another applier's field conflicts",
            ops: vec![
                Op::Apply("a", false, deploy(json!({"replicas": 3}))),
                Op::Conflicts(
                    "b",
                    deploy(json!({"replicas": 4})),
                    "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas",
                ),
            ],
            want: vec![("/spec/replicas", Some(json!(3)))],
            owners: vec![("a/Apply", vec![".spec.replicas"])],
        },
        Case {
            name: "conflict with a client-side apply, worded as Kubernetes does",
            ops: vec![
                Op::Update(
                    "kubectl-client-side-apply",
                    deploy(json!({"replicas": 1, "paused": false})),
                ),
                Op::Conflicts(
                    "kubectl",
                    deploy(json!({"replicas": 2, "paused": false})),
                    "Apply failed with 1 conflict: conflict with \
                     \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
                ),
                Op::Conflicts(
                    "kubectl",
                    deploy(json!({"replicas": 2, "paused": true})),
                    "Apply failed with 2 conflicts: conflicts with \
                     \"kubectl-client-side-apply\" using apps/v1:\n\
                     - .spec.paused\n- .spec.replicas",
                ),
            ],
            want: vec![("/spec/replicas", Some(json!(1)))],
            owners: vec![(
                "kubectl-client-side-apply/Update",
                vec![".spec.paused", ".spec.replicas"],
            )],
        },
        Case {
            name: "force takes the field from its owner",
            ops: vec![
                Op::Apply("a", false, deploy(json!({"replicas": 3, "paused": true}))),
                Op::Apply("b", true, deploy(json!({"replicas": 4}))),
            ],
            want: vec![("/spec/replicas", Some(json!(4)))],
            owners: vec![
                ("a/Apply", vec![".spec.paused"]),
                ("b/Apply", vec![".spec.replicas"]),
            ],
        },
        Case {
            name: "kubectl scale (an Update) then apply of other replicas conflicts",
            ops: vec![
                Op::Apply("kubectl", false, deploy(json!({"replicas": 1}))),
                Op::Update("kubectl-scale", json!({"spec": {"replicas": 5}})),
                Op::Conflicts(
                    "kubectl",
                    deploy(json!({"replicas": 1})),
                    "Apply failed with 1 conflict: conflict with \
                     \"kubectl-scale\" using apps/v1: .spec.replicas",
                ),
            ],
            want: vec![("/spec/replicas", Some(json!(5)))],
            owners: vec![("kubectl-scale/Update", vec![".spec.replicas"])],
        },
        Case {
            name: "after kubectl scale, an apply without replicas leaves them",
            ops: vec![
                Op::Apply("kubectl", false, deploy(json!({"replicas": 1, "paused": true}))),
                Op::Update("kubectl-scale", json!({"spec": {"replicas": 5}})),
                Op::Apply("kubectl", false, deploy(json!({"paused": true}))),
            ],
            want: vec![("/spec/replicas", Some(json!(5)))],
            owners: vec![
                ("kubectl/Apply", vec![".spec.paused"]),
                ("kubectl-scale/Update", vec![".spec.replicas"]),
            ],
        },
        Case {
            name: "containers merge by name, each owned per item",
            ops: vec![
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({}))])),
                ),
                Op::Apply(
                    "b",
                    false,
                    with_containers(json!([container("log", json!({}))])),
                ),
            ],
            want: vec![
                ("/spec/template/spec/containers/0/name", Some(json!("app"))),
                ("/spec/template/spec/containers/1/name", Some(json!("log"))),
            ],
            owners: vec![
                (
                    "a/Apply",
                    vec![
                        ".spec.template.spec.containers[name=\"app\"]",
                        ".spec.template.spec.containers[name=\"app\"].image",
                        ".spec.template.spec.containers[name=\"app\"].name",
                    ],
                ),
                (
                    "b/Apply",
                    vec![
                        ".spec.template.spec.containers[name=\"log\"]",
                        ".spec.template.spec.containers[name=\"log\"].image",
                        ".spec.template.spec.containers[name=\"log\"].name",
                    ],
                ),
            ],
        },
        Case {
            name: "a container goes when its only owner stops applying it",
            ops: vec![
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({})), container("side", json!({}))])),
                ),
                Op::Apply(
                    "b",
                    false,
                    with_containers(json!([container("log", json!({}))])),
                ),
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({}))])),
                ),
            ],
            want: vec![
                ("/spec/template/spec/containers/0/name", Some(json!("app"))),
                ("/spec/template/spec/containers/1/name", Some(json!("log"))),
                ("/spec/template/spec/containers/2", None),
            ],
            owners: vec![
                (
                    "a/Apply",
                    vec![
                        ".spec.template.spec.containers[name=\"app\"]",
                        ".spec.template.spec.containers[name=\"app\"].image",
                        ".spec.template.spec.containers[name=\"app\"].name",
                    ],
                ),
                (
                    "b/Apply",
                    vec![
                        ".spec.template.spec.containers[name=\"log\"]",
                        ".spec.template.spec.containers[name=\"log\"].image",
                        ".spec.template.spec.containers[name=\"log\"].name",
                    ],
                ),
            ],
        },
        Case {
            name: "env by name and ports by containerPort: per item, defaults kept",
            ops: vec![
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({
                        "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                        "ports": [{"containerPort": 80}, {"containerPort": 443}],
                    }))])),
                ),
                // The server's defaulting, recorded as an update.
                Op::Update(
                    "defaults",
                    json!({"spec": {"template": {"spec": {"containers": [container("app", json!({
                        "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"},
                                  {"containerPort": 443, "protocol": "TCP"}],
                        "imagePullPolicy": "Always",
                    }))]}}}}),
                ),
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({
                        "env": [{"name": "Y", "value": "3"}],
                        "ports": [{"containerPort": 80}],
                    }))])),
                ),
            ],
            want: vec![
                ("/spec/template/spec/containers/0/env", Some(json!([{"name": "Y", "value": "3"}]))),
                (
                    "/spec/template/spec/containers/0/ports",
                    Some(json!([{"containerPort": 80, "protocol": "TCP"}])),
                ),
                ("/spec/template/spec/containers/0/imagePullPolicy", Some(json!("Always"))),
            ],
            owners: vec![
                (
                    "a/Apply",
                    vec![
                        ".spec.template.spec.containers[name=\"app\"]",
                        ".spec.template.spec.containers[name=\"app\"].env[name=\"Y\"]",
                        ".spec.template.spec.containers[name=\"app\"].env[name=\"Y\"].name",
                        ".spec.template.spec.containers[name=\"app\"].env[name=\"Y\"].value",
                        ".spec.template.spec.containers[name=\"app\"].image",
                        ".spec.template.spec.containers[name=\"app\"].name",
                        ".spec.template.spec.containers[name=\"app\"].ports[containerPort=80]",
                        ".spec.template.spec.containers[name=\"app\"].ports[containerPort=80].containerPort",
                    ],
                ),
                (
                    "defaults/Update",
                    vec![
                        ".spec.template.spec.containers[name=\"app\"].imagePullPolicy",
                        ".spec.template.spec.containers[name=\"app\"].ports[containerPort=80].protocol",
                    ],
                ),
            ],
        },
        Case {
            name: "an atomic list is replaced whole and owned whole",
            ops: vec![
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({"args": ["x", "y"]}))])),
                ),
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({"args": ["z"]}))])),
                ),
            ],
            want: vec![("/spec/template/spec/containers/0/args", Some(json!(["z"])))],
            owners: vec![(
                "a/Apply",
                vec![
                    ".spec.template.spec.containers[name=\"app\"]",
                    ".spec.template.spec.containers[name=\"app\"].args",
                    ".spec.template.spec.containers[name=\"app\"].image",
                    ".spec.template.spec.containers[name=\"app\"].name",
                ],
            )],
        },
        Case {
            name: "an atomic list changed by another applier conflicts",
            ops: vec![
                Op::Apply(
                    "a",
                    false,
                    with_containers(json!([container("app", json!({"args": ["x"]}))])),
                ),
                Op::Conflicts(
                    "b",
                    with_containers(json!([container("app", json!({"args": ["x", "y"]}))])),
                    "Apply failed with 1 conflict: conflict with \"a\": \
                     .spec.template.spec.containers[name=\"app\"].args",
                ),
            ],
            want: vec![("/spec/template/spec/containers/0/args", Some(json!(["x"])))],
            owners: vec![(
                "a/Apply",
                vec![
                    ".spec.template.spec.containers[name=\"app\"]",
                    ".spec.template.spec.containers[name=\"app\"].args",
                    ".spec.template.spec.containers[name=\"app\"].image",
                    ".spec.template.spec.containers[name=\"app\"].name",
                ],
            )],
        },
        Case {
            name: "finalizers are a set, each value owned",
            ops: vec![
                Op::Apply(
                    "a",
                    false,
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "finalizers": ["x", "y"]}}),
                ),
                Op::Apply(
                    "b",
                    false,
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "finalizers": ["z"]}}),
                ),
                Op::Apply(
                    "a",
                    false,
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "finalizers": ["y"]}}),
                ),
            ],
            want: vec![("/metadata/finalizers", Some(json!(["y", "z"])))],
            owners: vec![
                ("a/Apply", vec![".metadata.finalizers[=\"y\"]"]),
                ("b/Apply", vec![".metadata.finalizers[=\"z\"]"]),
            ],
        },
        Case {
            name: "status in an applied configuration is applied like the rest",
            ops: vec![Op::Apply(
                "a",
                false,
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "status": {"conditions": [{"type": "Available", "status": "True"}]}}),
            )],
            want: vec![("/status/conditions/0/status", Some(json!("True")))],
            owners: vec![(
                "a/Apply",
                vec![
                    ".status.conditions[type=\"Available\"]",
                    ".status.conditions[type=\"Available\"].status",
                    ".status.conditions[type=\"Available\"].type",
                ],
            )],
        },
    ];
    for case in &cases {
        run(case);
    }
}

/// What `kubectl apply --server-side` sends for an object made by
/// client-side apply: the configuration (manager `kubectl`), then only the
/// last-applied annotation (manager `kubectl-last-applied`). The second
/// must not remove the spec: its manager never owned it.
/// See: issue 21 and ../shared/notes/kubectl-on-this-machine.md.
#[test]
fn kubectl_last_applied_second_patch_keeps_the_spec() {
    let annotation = crate::patch::LAST_APPLIED_ANNOTATION;
    let spec =
        json!({"replicas": 2, "template": {"spec": {"containers": [container("app", json!({}))]}}});
    let mut created = deploy(spec.clone());
    created["metadata"]["annotations"] = json!({annotation: "{\"old\":1}"});
    // Client-side apply created it: a POST recorded as an update.
    let mut stored = created.clone();
    record_update(
        Kind::Deployment,
        "kubectl-client-side-apply",
        NOW,
        None,
        &mut stored,
    );
    stored["metadata"]["resourceVersion"] = json!("7");

    let first = apply("kubectl", false, Some(&stored), &deploy(spec.clone()))
        .expect("the same values as the client-side apply: no conflict");
    let second_config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {annotation: "{\"old\":1}"}}});
    let second = apply("kubectl-last-applied", false, Some(&first), &second_config)
        .expect("the annotation's value is unchanged: no conflict");

    assert_eq!(second["spec"], spec);
    assert_eq!(second["metadata"]["annotations"][annotation], "{\"old\":1}");
    assert_eq!(second["metadata"]["resourceVersion"], "7");
    let owners = owners(&second);
    assert_eq!(
        owners.get("kubectl-last-applied/Apply"),
        Some(&vec![format!(".metadata.annotations.{annotation}")])
    );
    assert!(owners["kubectl/Apply"].contains(&".spec.replicas".to_string()));

    // And applying it once more changes nothing at all.
    let again = apply("kubectl-last-applied", false, Some(&second), &second_config).expect("no-op");
    assert_eq!(again, second);
}

#[test]
fn create_keeps_identity_and_owns_no_server_fields() {
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null,
                     "resourceVersion": "3", "uid": "u", "generation": 4,
                     "labels": {"app": "web"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let got = apply("kubectl", false, None, &config).expect("create");
    assert_eq!(got["metadata"]["name"], "web");
    assert_eq!(got["metadata"]["namespace"], "default");
    assert_eq!(got["metadata"].get("resourceVersion"), None);
    assert_eq!(got["metadata"].get("uid"), None);
    let entries = got["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0],
        json!({
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
            "time": NOW, "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}
            }
        })
    );
}

#[test]
fn an_object_without_managed_fields_is_owned_before_first_apply() {
    let stored = deploy(json!({"replicas": 1}));
    let err = apply(
        "kubectl",
        false,
        Some(&stored),
        &deploy(json!({"replicas": 2})),
    )
    .expect_err("conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let got = apply(
        "kubectl",
        false,
        Some(&stored),
        &deploy(json!({"replicas": 1})),
    )
    .expect("same value");
    let owners = owners(&got);
    assert_eq!(owners["before-first-apply/Update"], vec![".spec.replicas"]);
    assert_eq!(owners["kubectl/Apply"], vec![".spec.replicas"]);
}

#[test]
fn conflicts_name_each_field_and_manager_as_causes() {
    let stored = apply(
        "a",
        false,
        None,
        &deploy(json!({"replicas": 1, "paused": true})),
    )
    .expect("create");
    let err = apply(
        "b",
        false,
        Some(&stored),
        &deploy(json!({"replicas": 2, "paused": false})),
    )
    .expect_err("conflict");
    assert_eq!(
        err.object,
        Some(ObjectRef::new(Kind::Deployment, Some("default"), "web"))
    );
    assert_eq!(
        err.causes,
        vec![
            FieldCause::new(".spec.paused", "conflict with \"a\""),
            FieldCause::new(".spec.replicas", "conflict with \"a\""),
        ]
    );
}

#[test]
fn bad_applied_configurations_are_refused() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "managedFields",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}}),
            "metadata.managedFields",
        ),
        (
            "no name",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}),
            "metadata.name",
        ),
        (
            "other kind",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}),
            "apiVersion",
        ),
        (
            "container without a name",
            with_containers(json!([{"image": "i"}])),
            "spec.template.spec.containers[0]",
        ),
        (
            "two containers of one name",
            with_containers(json!([
                container("a", json!({})),
                container("a", json!({}))
            ])),
            "spec.template.spec.containers[1]",
        ),
        (
            "too deep",
            {
                let mut deep = json!(1);
                for _ in 0..DEPTH_MAX {
                    deep = json!({"x": deep});
                }
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "annotations": deep}})
            },
            "",
        ),
    ];
    for (name, config, field) in cases {
        let err = apply("kubectl", false, None, &config).expect_err(name);
        assert_eq!(err.reason, Reason::BadRequest, "{name}: {err}");
        assert!(
            err.causes
                .iter()
                .any(|c| c.field.trim_start_matches('.').starts_with(field)),
            "{name}: {:?}",
            err.causes
        );
    }
    let err = apply("", false, None, &deploy(json!({}))).expect_err("no manager");
    assert_eq!(err.reason, Reason::BadRequest);
}

#[test]
fn fields_v1_reads_back_what_it_writes() {
    let config = with_containers(json!([container(
        "app",
        json!({
            "env": [{"name": "X", "value": "1"}],
            "ports": [{"containerPort": 80}],
            "volumeMounts": [{"mountPath": "/d", "name": "d"}],
            "resources": {},
        })
    )]));
    let mut config = config;
    config["metadata"]["finalizers"] = json!(["a", "b"]);
    let set = walk::field_set(&config, "Deployment");
    let trie = to_fields_v1(&set);
    assert_eq!(from_fields_v1(&trie), Ok(set.clone()));
    // Another spelling of the same key (spaces) reads as the same path.
    let spaced = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
        "k:{ \"name\" : \"app\" }": {".": {}, "f:name": {}}}}}}});
    let read = from_fields_v1(&spaced).expect("readable");
    assert!(read
        .iter()
        .any(|p| path_string(p) == ".spec.template.spec.containers[name=\"app\"]"));
    assert!(set.is_superset(&read));
    for bad in [json!({"x:1": {}}), json!({"f:a": 1}), json!([])] {
        assert!(from_fields_v1(&bad).is_err(), "{bad}");
    }
}

#[test]
fn update_records_what_changed_and_later_applies_see_it() {
    // A create by an updater owns everything it wrote.
    let mut obj = deploy(json!({"replicas": 1}));
    record_update(Kind::Deployment, "kubus", NOW, None, &mut obj);
    assert_eq!(owners(&obj)["kubus/Update"], vec![".spec.replicas"]);
    // An update that changes nothing keeps the record as it was.
    let before = obj.clone();
    let mut same = obj.clone();
    record_update(Kind::Deployment, "other", LATER, Some(&before), &mut same);
    assert_eq!(same, before);
    // A writer sending `managedFields: []` clears the record.
    let mut reset = merge_patch(&obj, &json!({"metadata": {"managedFields": []}}));
    record_update(Kind::Deployment, "other", LATER, Some(&before), &mut reset);
    assert_eq!(reset["metadata"].get("managedFields"), None);
    // A field removed by an update is no one's.
    let mut removed = merge_patch(&obj, &json!({"spec": {"replicas": null}}));
    record_update(
        Kind::Deployment,
        "other",
        LATER,
        Some(&before),
        &mut removed,
    );
    // What is left, `spec: {}`, is an empty map: a field, as in
    // structured-merge-diff.
    let owners = owners(&removed);
    assert_eq!(owners.get("kubus/Update"), None);
    assert_eq!(owners["other/Update"], vec![".spec"]);
}

#[test]
fn update_managers_are_capped() {
    let mut obj = deploy(json!({}));
    record_update(Kind::Deployment, "m0", NOW, None, &mut obj);
    for i in 0..UPDATE_MANAGERS_MAX + 3 {
        let before = obj.clone();
        let mut after = merge_patch(
            &obj,
            &json!({"metadata": {"labels": {format!("l{i}"): "x"}}}),
        );
        let time = format!("2026-12-06T10:{i:02}:00Z");
        record_update(
            Kind::Deployment,
            &format!("m{i}"),
            &time,
            Some(&before),
            &mut after,
        );
        obj = after;
    }
    let owners = owners(&obj);
    assert_eq!(owners.len(), UPDATE_MANAGERS_MAX);
    let ancient = &owners[&format!("{ANCIENT_CHANGES}/Update")];
    // m0 (which also made `spec: {}`), m1, m2 and m3: the oldest four.
    let want: Vec<String> = [
        ".metadata.labels.l0",
        ".metadata.labels.l1",
        ".metadata.labels.l2",
        ".metadata.labels.l3",
        ".spec",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(ancient, &want, "{owners:?}");
}
