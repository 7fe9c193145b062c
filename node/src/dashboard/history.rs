//! One object's history as the dashboard shows it: each change the
//! store's change log holds for it (created, modified, deleted — deleted
//! objects included), when it was committed, and what it changed — a
//! line diff of its YAML against the revision before. Pure: change events
//! in, revisions out; [`super`] reads the log.

use kubus_bus::protocol::{ChangeEvent, EventType};
use serde::Serialize;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

/// Most revisions of one object shown (the newest).
pub const REVISIONS_MAX: usize = 100;
/// Lines of context around each changed line.
const CONTEXT_LINES: usize = 3;

/// One change of the object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_ms: Option<u64>,
    /// The object after the change (before, for a delete), in YAML.
    pub yaml: String,
    /// What changed since the previous revision shown: `+`, `-` or ` `
    /// and the line; `…` between runs of changes. The first revision
    /// shown is all `+` when it is the creation, empty otherwise.
    pub diff: Vec<(char, String)>,
}

/// The object as shown: without what changes on every write and says
/// nothing (`resourceVersion`, `managedFields`).
fn shown(object: &Value) -> String {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    serde_saphyr::to_string(&o).unwrap_or_else(|e| format!("# not shown as YAML: {e}\n{o}"))
}

/// The revisions of one object from its change events (oldest first, as
/// the log gives them), the newest [`REVISIONS_MAX`], newest first.
pub fn revisions(events: &[ChangeEvent]) -> Vec<Revision> {
    let mut out: Vec<Revision> = Vec::with_capacity(events.len().min(REVISIONS_MAX));
    let mut before: Option<String> = None;
    let skip = events.len().saturating_sub(REVISIONS_MAX);
    for (i, ev) in events.iter().enumerate() {
        let event_type = match ev.event_type {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => continue,
        };
        let yaml = shown(&ev.object);
        let diff = match (&before, ev.event_type) {
            // a delete carries the last state: nothing changed in it
            (_, EventType::Deleted) => Vec::new(),
            (Some(b), _) => diff(b, &yaml),
            (None, EventType::Added) => yaml.lines().map(|l| ('+', l.to_string())).collect(),
            (None, _) => Vec::new(),
        };
        before = Some(yaml.clone());
        if i >= skip {
            out.push(Revision {
                revision: ev.revision,
                event_type,
                committed_ms: ev.committed_ms,
                yaml,
                diff,
            });
        }
    }
    out.reverse();
    out
}

/// A unified diff of two texts, line by line, [`CONTEXT_LINES`] of
/// context, `…` between hunks.
pub fn diff(before: &str, after: &str) -> Vec<(char, String)> {
    let d = TextDiff::from_lines(before, after);
    let mut out = Vec::new();
    for (i, group) in d.grouped_ops(CONTEXT_LINES).iter().enumerate() {
        if i > 0 {
            out.push(('…', String::new()));
        }
        for op in group {
            for change in d.iter_changes(op) {
                let tag = match change.tag() {
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                    ChangeTag::Equal => ' ',
                };
                out.push((tag, change.value().trim_end_matches('\n').to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(t: EventType, revision: u64, image: &str) -> ChangeEvent {
        ChangeEvent {
            event_type: t,
            revision,
            prev: 0,
            object: json!({"kind": "Deployment", "metadata": {"name": "web", "resourceVersion": revision.to_string()},
                           "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
            committed_ms: Some(1000 + revision),
            traceparent: None,
        }
    }

    #[test]
    fn each_revision_shows_what_it_changed() {
        let r = revisions(&[
            ev(EventType::Added, 3, "nginx:1.14"),
            ev(EventType::Modified, 5, "nginx:1.16"),
            ev(EventType::Deleted, 9, "nginx:1.16"),
        ]);
        assert_eq!(
            r.iter()
                .map(|r| (r.revision, r.event_type))
                .collect::<Vec<_>>(),
            [(9, "DELETED"), (5, "MODIFIED"), (3, "ADDED")]
        );
        let changed: Vec<_> = r[1].diff.iter().filter(|(t, _)| *t != ' ').collect();
        assert_eq!(
            changed,
            [
                &('-', "      - image: nginx:1.14".to_string()),
                &('+', "      - image: nginx:1.16".to_string())
            ],
            "{:?}",
            r[1].diff
        );
        assert!(r[2].diff.iter().all(|(t, _)| *t == '+'));
        assert!(r[0].diff.is_empty());
        assert!(!r[1].yaml.contains("resourceVersion"));
        assert_eq!(r[1].committed_ms, Some(1005));
    }

    #[test]
    fn only_the_newest_are_kept_and_hunks_are_separated() {
        let many: Vec<ChangeEvent> = (0..REVISIONS_MAX as u64 + 5)
            .map(|i| ev(EventType::Modified, i + 1, &format!("v{i}")))
            .collect();
        let r = revisions(&many);
        assert_eq!(r.len(), REVISIONS_MAX);
        assert_eq!(r[0].revision, REVISIONS_MAX as u64 + 5);
        // the oldest kept still has its diff against the one before it
        assert!(!r[REVISIONS_MAX - 1].diff.is_empty());
        let a = (0..20).map(|i| format!("l{i}\n")).collect::<String>();
        let b = a.replace("l1\n", "x\n").replace("l18\n", "y\n");
        let d = diff(&a, &b);
        assert_eq!(d.iter().filter(|(t, _)| *t == '…').count(), 1, "{d:?}");
    }
}
