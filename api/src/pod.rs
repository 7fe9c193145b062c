//! Pod predicates, the one place each is stated: whether a pod is active
//! (counts toward its controller), terminating, finished, Ready, or
//! available (Ready for `minReadySeconds`). Kubernetes states these in
//! `pkg/controller/controller_utils.go` and `pkg/api/v1/pod/util.go`.

use serde_json::Value;

/// Whether an object is being deleted (`metadata.deletionTimestamp` set).
pub fn is_terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Whether a pod has finished: phase `Succeeded` or `Failed`.
pub fn is_finished(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Whether a pod counts toward its controller's replicas: not finished
/// and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !is_finished(pod) && !is_terminating(pod)
}

/// The pod's condition `kind` (`Ready`, `PodScheduled`, …), if reported.
pub fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// The init containers and containers of a pod spec (its JSON map), to
/// change in place.
pub fn containers_mut(
    spec: &mut serde_json::Map<String, Value>,
) -> impl Iterator<Item = &mut Value> {
    spec.iter_mut()
        .filter(|(k, _)| *k == "initContainers" || *k == "containers")
        .flat_map(|(_, v)| v.as_array_mut().into_iter().flatten())
}

/// Whether a pod is Ready (condition `Ready` is `True`).
pub fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").and_then(|c| c.get("status")?.as_str()) == Some("True")
}

/// Whether a pod is available: Ready for at least `min_ready_seconds`
/// at `now` (seconds since the epoch). With 0 every Ready pod is; a Ready
/// condition without a transition time counts as Ready since forever.
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: i64) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = condition(pod, "Ready")
        .and_then(|c| c.get("lastTransitionTime")?.as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MIN, |t| t.as_second());
    now.saturating_sub(since) >= min_ready_seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, ready: Option<(&str, &str)>, deleting: bool) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "status": {"phase": phase}});
        if let Some((status, since)) = ready {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": status, "lastTransitionTime": since}]);
        }
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        }
        p
    }

    #[test]
    fn predicates() {
        let t0 = "2026-01-01T00:00:00Z";
        let now = t0.parse::<jiff::Timestamp>().map_or(0, |t| t.as_second()) + 10;
        // (pod, active, terminating, ready, available with minReadySeconds 0 / 5 / 30)
        let cases = [
            (
                pod("Pending", None, false),
                true,
                false,
                false,
                [false, false, false],
            ),
            (
                pod("Running", Some(("False", t0)), false),
                true,
                false,
                false,
                [false, false, false],
            ),
            (
                pod("Running", Some(("True", t0)), false),
                true,
                false,
                true,
                [true, true, false],
            ),
            (
                pod("Running", Some(("True", t0)), true),
                false,
                true,
                true,
                [true, true, false],
            ),
            (
                pod("Succeeded", None, false),
                false,
                false,
                false,
                [false, false, false],
            ),
            (
                pod("Failed", None, false),
                false,
                false,
                false,
                [false, false, false],
            ),
        ];
        for (p, active, terminating, ready, available) in cases {
            assert_eq!(is_active(&p), active, "{p}");
            assert_eq!(is_terminating(&p), terminating, "{p}");
            assert_eq!(is_ready(&p), ready, "{p}");
            for (min, want) in [0, 5, 30].into_iter().zip(available) {
                assert_eq!(
                    is_available(&p, min, now),
                    want,
                    "{p} minReadySeconds {min}"
                );
            }
        }
    }
}
