//! Pod priority, stated once: the built-in `system-` PriorityClasses, what
//! a pod's priority is, and how a new pod gets it from its
//! `priorityClassName` (Kubernetes' Priority admission plugin). The
//! scheduler orders its queue and chooses preemption victims by it.

use serde_json::{json, Value};

/// The PriorityClasses every cluster has, with their values.
pub const SYSTEM_CLASSES: [(&str, i32); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// The built-in PriorityClass objects, created when the store starts.
pub fn system_classes() -> Vec<Value> {
    SYSTEM_CLASSES
        .iter()
        .map(|(name, value)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "globalDefault": false,
                "preemptionPolicy": "PreemptLowerPriority",
                "description": "Used for system critical pods that must not be moved from their current node.",
            })
        })
        .collect()
}

/// A pod's priority (`spec.priority`; 0 when unset).
pub fn of(pod: &Value) -> i32 {
    pod.pointer("/spec/priority")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0)
}

/// Whether a pod may preempt others (`spec.preemptionPolicy` is not `Never`).
pub fn preempts(pod: &Value) -> bool {
    pod.pointer("/spec/preemptionPolicy")
        .and_then(Value::as_str)
        != Some("Never")
}

/// Why a pod's priority cannot be set (the pod is refused as Forbidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriorityError {
    #[error("no PriorityClass with name {0} was found")]
    UnknownClass(String),
    #[error(
        "the integer value of priority ({given}) must not be provided in pod spec; \
         priority admission controller computed {computed} from the given PriorityClass name"
    )]
    Given { given: i64, computed: i64 },
}

/// Set a new pod's `spec.priority` (and `preemptionPolicy`) from its
/// `priorityClassName` among `classes`, or from the class marked
/// `globalDefault` (the highest such) when it names none; 0 when there is
/// no default.
pub fn resolve(pod: &mut Value, classes: &[&Value]) -> Result<(), PriorityError> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let named = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match &named {
        Some(name) => Some(
            classes
                .iter()
                .copied()
                .find(|c| crate::meta::name(c) == Some(name.as_str()))
                .ok_or_else(|| PriorityError::UnknownClass(name.clone()))?,
        ),
        None => classes
            .iter()
            .copied()
            .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .max_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0)),
    };
    let value = class
        .and_then(|c| c.get("value").and_then(Value::as_i64))
        .unwrap_or(0);
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != value {
            return Err(PriorityError::Given {
                given,
                computed: value,
            });
        }
    }
    spec.insert("priority".into(), json!(value));
    if let Some(class) = class {
        if named.is_none() {
            spec.insert("priorityClassName".into(), json!(crate::meta::name(class)));
        }
        if !spec.contains_key("preemptionPolicy") {
            let policy = class
                .get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority");
            spec.insert("preemptionPolicy".into(), json!(policy));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, default: bool, policy: &str) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default,
               "preemptionPolicy": policy})
    }

    #[test]
    fn pods_get_the_priority_of_their_class() {
        let high = class("high", 1000, false, "PreemptLowerPriority");
        let low = class("low", 10, true, "Never");
        let classes = [&high, &low];
        type Want = Result<(i64, &'static str, &'static str), PriorityError>;
        let table: [(Value, Want); 4] = [
            (
                json!({"spec": {"priorityClassName": "high"}}),
                Ok((1000, "high", "PreemptLowerPriority")),
            ),
            (json!({"spec": {}}), Ok((10, "low", "Never"))),
            (
                json!({"spec": {"priorityClassName": "nope"}}),
                Err(PriorityError::UnknownClass("nope".into())),
            ),
            (
                json!({"spec": {"priorityClassName": "high", "priority": 5}}),
                Err(PriorityError::Given {
                    given: 5,
                    computed: 1000,
                }),
            ),
        ];
        for (mut pod, want) in table {
            let got = resolve(&mut pod, &classes).map(|()| {
                (
                    pod["spec"]["priority"].as_i64().unwrap_or(-1),
                    pod["spec"]["priorityClassName"].as_str().unwrap_or(""),
                    pod["spec"]["preemptionPolicy"].as_str().unwrap_or(""),
                )
            });
            assert_eq!(got, want);
        }
        let mut plain = json!({"spec": {}});
        resolve(&mut plain, &[&high]).expect("resolved");
        assert_eq!(plain["spec"]["priority"], 0);
        assert!(plain["spec"].get("priorityClassName").is_none());
        assert!(preempts(&plain));
        assert_eq!(of(&plain), 0);
    }
}
