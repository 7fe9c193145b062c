//! Table tests of the strategic merge patch. The cases follow the behaviours
//! apimachinery's `strategicpatch` tests pin down (written anew here, on
//! real kinds), and each expected object was checked against kubectl's own
//! implementation (`kubectl patch --local --type strategic`).

use serde_json::{json, Value};

use super::*;

/// A Pod named `p` with `body` merged over its identity.
fn pod(body: Value) -> Value {
    with_identity("v1", "Pod", body)
}

fn with_identity(api_version: &str, kind: &str, body: Value) -> Value {
    let mut out = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "p"}});
    if let (Some(out), Value::Object(body)) = (out.as_object_mut(), body) {
        for (k, v) in body {
            if k == "metadata" {
                if let (Some(Value::Object(m)), Value::Object(extra)) = (out.get_mut("metadata"), v)
                {
                    m.extend(extra);
                }
            } else {
                out.insert(k, v);
            }
        }
    }
    out
}

/// A Pod whose spec holds these containers.
fn containers(list: Value) -> Value {
    pod(json!({"spec": {"containers": list}}))
}

struct Case {
    name: &'static str,
    kind: Kind,
    current: Value,
    patch: Value,
    /// The patched object, or a fragment of the error's message.
    want: Result<Value, &'static str>,
}

fn ok(name: &'static str, current: Value, patch: Value, want: Value) -> Case {
    Case {
        name,
        kind: Kind::Pod,
        current,
        patch,
        want: Ok(want),
    }
}

fn refused(name: &'static str, current: Value, patch: Value, message: &'static str) -> Case {
    Case {
        name,
        kind: Kind::Pod,
        current,
        patch,
        want: Err(message),
    }
}

/// Whether any key of `v`, at any depth, is a patch directive.
fn directive_in(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            if k.starts_with('$') {
                Some(k.clone())
            } else {
                directive_in(v)
            }
        }),
        Value::Array(list) => list.iter().find_map(directive_in),
        _ => None,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Maps.
        ok(
            "maps merge, null deletes, scalars replace",
            pod(json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeName": "n1"}})),
            json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"nodeName": "n2"}}),
            pod(json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"nodeName": "n2"}})),
        ),
        ok(
            "$patch: delete empties a nested map",
            pod(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            pod(json!({"metadata": {"labels": {}}})),
        ),
        ok(
            "$patch: delete of an absent map leaves it absent",
            pod(json!({})),
            json!({"metadata": {"annotations": {"$patch": "delete"}}}),
            pod(json!({})),
        ),
        ok(
            "$patch: replace drops every key the patch does not set",
            pod(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            pod(json!({"metadata": {"labels": {"c": "3"}}})),
        ),
        ok(
            "$patch: replace with nothing else empties the map",
            pod(json!({"metadata": {"labels": {"a": "1"}}})),
            json!({"metadata": {"labels": {"$patch": "replace"}}}),
            pod(json!({"metadata": {"labels": {}}})),
        ),
        ok(
            "an object replaces a scalar, its nulls dropped",
            pod(json!({"spec": {"securityContext": "odd"}})),
            json!({"spec": {"securityContext": {"runAsUser": 1, "runAsGroup": null}}}),
            pod(json!({"spec": {"securityContext": {"runAsUser": 1}}})),
        ),
        ok(
            "null removes a list",
            pod(json!({"spec": {"tolerations": [{"key": "a"}]}})),
            json!({"spec": {"tolerations": null}}),
            pod(json!({"spec": {}})),
        ),
        // Lists replaced whole (no strategy).
        ok(
            "a list without a strategy is replaced",
            pod(json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}})),
            json!({"spec": {"tolerations": [{"key": "c"}]}}),
            pod(json!({"spec": {"tolerations": [{"key": "c"}]}})),
        ),
        ok(
            "a replaced list nested in a merged element is replaced",
            containers(json!([{"name": "a", "args": ["x", "y"], "image": "i"}])),
            json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
            containers(json!([{"name": "a", "args": ["z"], "image": "i"}])),
        ),
        // Lists merged as sets.
        ok(
            "a set merges without duplicates",
            pod(json!({"metadata": {"finalizers": ["a", "b"]}})),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            pod(json!({"metadata": {"finalizers": ["a", "b", "c"]}})),
        ),
        ok(
            "a set keeps the patch's order, server-only values before later ones",
            pod(json!({"metadata": {"finalizers": ["a", "b", "c"]}})),
            json!({"metadata": {"finalizers": ["c", "a"]}}),
            pod(json!({"metadata": {"finalizers": ["b", "c", "a"]}})),
        ),
        ok(
            "$deleteFromPrimitiveList removes values",
            pod(json!({"metadata": {"finalizers": ["a", "b", "c"]}})),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
            pod(json!({"metadata": {"finalizers": ["a", "c"]}})),
        ),
        ok(
            "$deleteFromPrimitiveList of an absent list adds nothing",
            pod(json!({"metadata": {"labels": {"a": "1"}}})),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            pod(json!({"metadata": {"labels": {"a": "1"}}})),
        ),
        ok(
            "$deleteFromPrimitiveList works on a list replaced whole too",
            pod(json!({"spec": {"containers": [{"name": "a", "args": ["x", "y", "z"]}]}})),
            json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["y"]}]}}),
            pod(json!({"spec": {"containers": [{"name": "a", "args": ["x", "z"]}]}})),
        ),
        ok(
            "$setElementOrder orders a set, a value only the server has keeps its place",
            pod(json!({"metadata": {"finalizers": ["a", "b", "c"]}})),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "a"],
                "$deleteFromPrimitiveList/finalizers": ["x"]}}),
            pod(json!({"metadata": {"finalizers": ["b", "c", "a"]}})),
        ),
        ok(
            "$setElementOrder may name values the list does not have",
            pod(json!({"metadata": {"finalizers": ["a", "c"]}})),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"]}}),
            pod(json!({"metadata": {"finalizers": ["c", "a"]}})),
        ),
        // Lists merged by key.
        ok(
            "elements merge by key, new ones are appended",
            containers(json!([{"name": "a", "image": "i"}, {"name": "b", "image": "j"}])),
            json!({"spec": {"containers": [{"name": "b", "image": "j2"}, {"name": "c", "image": "k"}]}}),
            containers(
                json!([{"name": "a", "image": "i"}, {"name": "b", "image": "j2"},
                {"name": "c", "image": "k"}]),
            ),
        ),
        ok(
            "the patch's order wins over the current one",
            containers(json!([{"name": "a"}, {"name": "b", "image": "j"}, {"name": "c"}])),
            json!({"spec": {"containers": [{"name": "c", "image": "k"}, {"name": "a", "image": "i"},
                {"name": "b", "tty": true}]}}),
            containers(
                json!([{"name": "c", "image": "k"}, {"name": "a", "image": "i"},
                {"name": "b", "image": "j", "tty": true}]),
            ),
        ),
        ok(
            "an element the patch does not name goes before the first later named one",
            containers(json!([{"name": "a"}, {"name": "b", "image": "j"}, {"name": "c"}])),
            json!({"spec": {"containers": [{"name": "c", "image": "k"}, {"name": "a", "image": "i"}]}}),
            containers(
                json!([{"name": "b", "image": "j"}, {"name": "c", "image": "k"},
                {"name": "a", "image": "i"}]),
            ),
        ),
        ok(
            "null inside a merged element removes the field",
            containers(json!([{"name": "a", "image": "i", "tty": true}])),
            json!({"spec": {"containers": [{"name": "a", "tty": null}]}}),
            containers(json!([{"name": "a", "image": "i"}])),
        ),
        ok(
            "$patch: delete removes every element with the key",
            containers(
                json!([{"name": "a"}, {"name": "a"}, {"name": "b", "image": "j"},
                {"name": "c"}, {"name": "c"}]),
            ),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"},
                {"name": "c", "$patch": "delete"}, {"name": "x", "$patch": "delete"}]}}),
            containers(json!([{"name": "b", "image": "j"}])),
        ),
        ok(
            "an element {$patch: replace} makes the list the patch's other elements",
            containers(json!([{"name": "a", "image": "i"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "k"}]}}),
            containers(json!([{"name": "c", "image": "k"}])),
        ),
        ok(
            "an element {$patch: replace} alone empties the list",
            containers(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"$patch": "replace"}]}}),
            containers(json!([])),
        ),
        ok(
            "empty merged lists stay empty",
            containers(json!([])),
            json!({"spec": {"containers": []}}),
            containers(json!([])),
        ),
        ok(
            "an empty patch list changes nothing in a merged list",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": []}}),
            containers(json!([{"name": "a"}])),
        ),
        ok(
            "a merged list nested in a merged list: env by name",
            containers(json!([{"name": "a", "env": [{"name": "X", "value": "1"},
                {"name": "Y", "value": "2"}]}])),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"},
                {"name": "Z", "value": "4"}]}]}}),
            containers(json!([{"name": "a", "env": [{"name": "X", "value": "1"},
                {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}])),
        ),
        ok(
            // apimachinery tells 80 from 80.0 (int64 vs float64) and would keep
            // two ports 80, which validation then refuses.
            "ports merge by containerPort, 80 and 80.0 are one key",
            containers(json!([{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}])),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "name": "http"}]}]}}),
            // The key field takes the patch's spelling, like any other field.
            containers(json!([{"name": "a", "ports": [
                {"containerPort": 80.0, "protocol": "TCP", "name": "http"}]}])),
        ),
        ok(
            // (kubectl's own code keeps `$setElementOrder/env` and the null
            // here.) A new element without an order goes before server-only
            // ones: nothing places them relative to each other.
            "a new element is stored without its directives or nulls",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"name": "b", "image": null,
                "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}]}]}}),
            containers(json!([{"name": "b", "env": [{"name": "X", "value": "1"}]}, {"name": "a"}])),
        ),
        ok(
            "a merged list the object lacks is created from the patch",
            pod(json!({"spec": {}})),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "image": "i"}, {"name": "z", "$patch": "delete"}]}}),
            containers(json!([{"name": "a", "image": "i"}])),
        ),
        // $setElementOrder on lists merged by key.
        ok(
            "$setElementOrder reorders without other changes",
            containers(
                json!([{"name": "1", "tty": true}, {"name": "3", "image": "3"},
                {"name": "4", "image": "4"}, {"name": "2", "image": "2"}]),
            ),
            json!({"spec": {"$setElementOrder/containers": [{"name": "4"}, {"name": "2"},
                {"name": "3"}, {"name": "1"}]}}),
            containers(
                json!([{"name": "4", "image": "4"}, {"name": "2", "image": "2"},
                {"name": "3", "image": "3"}, {"name": "1", "tty": true}]),
            ),
        ),
        ok(
            "$setElementOrder keeps server-only elements at the end",
            containers(
                json!([{"name": "1"}, {"name": "3"}, {"name": "4"}, {"name": "2"},
                {"name": "9"}]),
            ),
            json!({"spec": {"$setElementOrder/containers": [{"name": "4"}, {"name": "2"},
                {"name": "3"}, {"name": "1"}]}}),
            containers(
                json!([{"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1"},
                {"name": "9"}]),
            ),
        ),
        ok(
            "$setElementOrder keeps a server-only element before the next named one",
            containers(
                json!([{"name": "1"}, {"name": "2"}, {"name": "9"}, {"name": "3"},
                {"name": "4"}]),
            ),
            json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"},
                {"name": "4"}, {"name": "3"}]}}),
            containers(
                json!([{"name": "2"}, {"name": "1"}, {"name": "9"}, {"name": "4"},
                {"name": "3"}]),
            ),
        ),
        ok(
            "$setElementOrder keeps a run of server-only elements together",
            containers(
                json!([{"name": "1"}, {"name": "2"}, {"name": "7"}, {"name": "9"},
                {"name": "8"}, {"name": "3"}, {"name": "4"}]),
            ),
            json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"},
                {"name": "4"}, {"name": "3"}]}}),
            containers(
                json!([{"name": "2"}, {"name": "1"}, {"name": "7"}, {"name": "9"},
                {"name": "8"}, {"name": "4"}, {"name": "3"}]),
            ),
        ),
        ok(
            "$setElementOrder may name elements neither side has",
            containers(json!([{"name": "1"}, {"name": "3"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "3"}, {"name": "2"},
                {"name": "1"}], "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]}}),
            containers(json!([{"name": "3", "image": "3"}, {"name": "1", "image": "1"}])),
        ),
        // $retainKeys.
        ok(
            "$retainKeys clears the members of a union the patch no longer sets",
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            ),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
        ),
        ok(
            "without $retainKeys a union merges",
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            ),
            json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0}}}}),
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}),
            ),
        ),
        ok(
            "$retainKeys in a volume swaps its source",
            pod(json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}},
                {"name": "w", "emptyDir": {}}]}})),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"],
                "hostPath": {"path": "/data"}}]}}),
            pod(
                json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/data"}},
                {"name": "w", "emptyDir": {}}]}}),
            ),
        ),
        ok(
            "a field set to null need not be listed in $retainKeys",
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            ),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                "rollingUpdate": null}}}),
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
        ),
        // Strategies found through the type graph.
        Case {
            name: "a CronJob's pod template merges containers",
            kind: Kind::CronJob,
            current: with_identity(
                "batch/v1",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {
                "template": {"spec": {"containers": [{"name": "a", "image": "i"},
                    {"name": "b", "image": "j"}]}}}}}}),
            ),
            patch: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "b", "image": "j2"}]}}}}}}),
            want: Ok(with_identity(
                "batch/v1",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {
                "template": {"spec": {"containers": [{"name": "a", "image": "i"},
                    {"name": "b", "image": "j2"}]}}}}}}),
            )),
        },
        ok(
            "pod status conditions merge by type",
            pod(
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"},
                {"type": "PodScheduled", "status": "True"}]}}),
            ),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            pod(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True"}]}}),
            ),
        ),
        Case {
            name: "a PodDisruptionBudget's selector is replaced, not merged",
            kind: Kind::PodDisruptionBudget,
            current: with_identity(
                "policy/v1",
                "PodDisruptionBudget",
                json!({"spec": {
                "selector": {"matchLabels": {"app": "a", "tier": "t"}}}}),
            ),
            patch: json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}}),
            want: Ok(with_identity(
                "policy/v1",
                "PodDisruptionBudget",
                json!({"spec": {
                "selector": {"matchLabels": {"app": "b"}}}}),
            )),
        },
        Case {
            name: "a Service's ports merge by port",
            kind: Kind::Service,
            current: with_identity(
                "v1",
                "Service",
                json!({"spec": {"ports": [
                {"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443}]}}),
            ),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            want: Ok(with_identity(
                "v1",
                "Service",
                json!({"spec": {"ports": [
                {"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443}]}}),
            )),
        },
        Case {
            name: "a ConfigMap has no strategies: maps merge",
            kind: Kind::ConfigMap,
            current: with_identity("v1", "ConfigMap", json!({"data": {"a": "1", "b": "2"}})),
            patch: json!({"data": {"b": null, "c": "3"}}),
            want: Ok(with_identity(
                "v1",
                "ConfigMap",
                json!({"data": {"a": "1", "c": "3"}}),
            )),
        },
        // Refusals.
        refused(
            "a patch that is not an object",
            pod(json!({})),
            json!([1]),
            "the patch: must be a JSON object, not a list",
        ),
        refused(
            "deleting the whole object",
            pod(json!({})),
            json!({"$patch": "delete"}),
            "send a DELETE",
        ),
        refused(
            "an unknown directive",
            pod(json!({})),
            json!({"spec": {"$frobnicate": 1}}),
            "spec.$frobnicate: unknown patch directive",
        ),
        refused(
            "an unknown $patch value on a map",
            pod(json!({})),
            json!({"metadata": {"labels": {"$patch": "merge"}}}),
            "metadata.labels.$patch: \"merge\" is not a patch directive",
        ),
        refused(
            "an unknown $patch value in a list element",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
            "spec.containers[0].$patch: must be \"delete\"",
        ),
        refused(
            "an element without its merge key",
            containers(json!([{"name": "a", "image": "i"}])),
            json!({"spec": {"containers": [{"image": "j"}]}}),
            "spec.containers[0]: has no merge key \"name\"",
        ),
        refused(
            "a delete without the merge key",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            "spec.containers[0]: deletes an element but has no merge key \"name\"",
        ),
        refused(
            "a scalar in a list merged by key",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"containers": ["a"]}}),
            "spec.containers[0]: is a string",
        ),
        refused(
            "an object in a set",
            pod(json!({"metadata": {"finalizers": ["a"]}})),
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            "metadata.finalizers[0]: is an object",
        ),
        refused(
            "$setElementOrder out of step with the patch list",
            containers(json!([{"name": "1"}, {"name": "3"}, {"name": "2"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"},
                {"name": "3"}], "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]}}),
            "spec.containers: the patch's elements are not listed",
        ),
        refused(
            "$setElementOrder out of step with a patched set",
            pod(json!({"metadata": {"finalizers": ["1", "3", "2"]}})),
            json!({"metadata": {"$setElementOrder/finalizers": ["1", "2", "3"],
                "finalizers": ["3", "1"]}}),
            "metadata.finalizers: the patch's elements are not listed",
        ),
        refused(
            "$setElementOrder element without the merge key",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}),
            "has no merge key \"name\"",
        ),
        refused(
            "$setElementOrder on a list replaced whole",
            pod(json!({"spec": {"tolerations": [{"key": "a"}]}})),
            json!({"spec": {"$setElementOrder/tolerations": [{"key": "a"}]}}),
            "spec.tolerations: $setElementOrder/tolerations names a list that is replaced whole",
        ),
        refused(
            "a $patch element in a list replaced whole",
            pod(json!({"spec": {"tolerations": [{"key": "a"}]}})),
            json!({"spec": {"tolerations": [{"key": "a", "$patch": "delete"}]}}),
            "spec.tolerations[0]: $patch in an element of a list that is replaced whole",
        ),
        refused(
            "$deleteFromPrimitiveList on a list merged by key",
            containers(json!([{"name": "a"}])),
            json!({"spec": {"$deleteFromPrimitiveList/containers": ["a"]}}),
            "this list is merged by \"name\"",
        ),
        refused(
            "a list directive on something that is not a list",
            pod(json!({"spec": {"nodeName": "n"}})),
            json!({"spec": {"$setElementOrder/nodeName": ["n"]}}),
            "spec.nodeName: is a string in the object",
        ),
        refused(
            "a directive list that is not a list",
            pod(json!({})),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            "metadata.$deleteFromPrimitiveList/finalizers: must be a list",
        ),
        refused(
            "a field set but not listed in $retainKeys",
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
            "spec.strategy.rollingUpdate: is set but not listed in $retainKeys",
        ),
        refused(
            "$retainKeys that are not names",
            with_identity(
                "apps/v1",
                "Deployment",
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            json!({"spec": {"strategy": {"$retainKeys": [1]}}}),
            "spec.strategy.$retainKeys: lists field names, not a number",
        ),
    ]
}

#[test]
fn strategic_merge_patch_table() {
    for case in cases() {
        let got = strategic_merge_patch(case.kind, &case.current, &case.patch);
        match (&got, &case.want) {
            (Ok(got), Ok(want)) => {
                assert_eq!(got, want, "{}", case.name);
                assert_eq!(directive_in(got), None, "{}: a directive leaked", case.name);
            }
            (Err(e), Err(fragment)) => {
                assert!(
                    e.to_string().contains(fragment),
                    "{}: error {e:?} does not say {fragment:?}",
                    case.name
                );
            }
            _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
        }
    }
}

/// A Deployment as the store holds it after a first `kubectl apply`:
/// containers `a` (env X=1, Y=3) and `b`, with the fields the server
/// defaulted and the status controllers wrote.
fn applied_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "generation": 2,
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "nginx:1.25",
                            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}],
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent"},
                        {"name": "b", "image": "busybox",
                            "terminationMessagePath": "/dev/termination-log"}
                    ],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst"}}},
        "status": {"replicas": 2, "readyReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}]}
    })
}

/// The body client-side `kubectl apply` (kubectl 1.32, captured from the
/// wire) sends for a manifest that drops container `b`, changes `a`'s X to
/// 2, drops Y, and switches the strategy to Recreate; the configuration it
/// applied before had both containers and X=1, Y=3.
const KUBECTL_APPLY_PATCH: &str = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"strategy\":{\"type\":\"Recreate\"},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"env\":[{\"name\":\"X\",\"value\":\"2\"}],\"image\":\"nginx:1.25\",\"name\":\"a\"}]}}}}\n"}},"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"},"template":{"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"$setElementOrder/env":[{"name":"X"}],"env":[{"name":"X","value":"2"},{"$patch":"delete","name":"Y"}],"name":"a"},{"$patch":"delete","name":"b"}]}}}}"#;

#[test]
fn kubectl_apply_removes_a_container_and_changes_env() {
    let patch: Value = serde_json::from_str(KUBECTL_APPLY_PATCH).unwrap_or_default();
    assert!(patch.is_object());
    let live = applied_deployment();
    let got = strategic_merge_patch(Kind::Deployment, &live, &patch);
    let mut want = live.clone();
    want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = patch
        ["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .clone();
    want["spec"]["strategy"] = json!({"type": "Recreate"});
    // Container b is gone, X changed, Y gone; what the server defaulted
    // in a (terminationMessagePath…), the status and the revision stay.
    want["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "nginx:1.25",
            "env": [{"name": "X", "value": "2"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"}
    ]);
    assert_eq!(got.as_ref(), Ok(&want));
    // Sent again (kubectl retries on a conflict), it changes nothing more.
    let again = strategic_merge_patch(Kind::Deployment, &want, &patch);
    assert_eq!(again.as_ref(), Ok(&want));
}

/// `kubectl apply` of a manifest that adds a container before the
/// existing one and an env var, while a sidecar only the server knows stays
/// where it was.
#[test]
fn kubectl_apply_adds_in_order_and_keeps_server_only_elements() {
    let mut live = applied_deployment();
    live["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "nginx:1.25", "env": [{"name": "X", "value": "1"}]},
        {"name": "sidecar", "image": "envoy"}
    ]);
    let patch = json!({"spec": {"template": {"spec": {
    "$setElementOrder/containers": [{"name": "init"}, {"name": "a"}],
    "containers": [
        {"name": "init", "image": "busybox"},
        {"name": "a", "$setElementOrder/env": [{"name": "X"}, {"name": "Z"}],
            "env": [{"name": "Z", "value": "9"}]}
    ]}}}});
    let got = strategic_merge_patch(Kind::Deployment, &live, &patch);
    let containers = got.map(|o| o["spec"]["template"]["spec"]["containers"].clone());
    assert_eq!(
        containers,
        Ok(json!([
            {"name": "init", "image": "busybox"},
            {"name": "a", "image": "nginx:1.25",
                "env": [{"name": "X", "value": "1"}, {"name": "Z", "value": "9"}]},
            {"name": "sidecar", "image": "envoy"}
        ]))
    );
}
