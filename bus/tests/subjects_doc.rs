//! docs/subjects.md and `bus::subject` must agree: every subject the code
//! builds is a row of the table, and every row is a subject the code builds.

use std::collections::BTreeSet;

use kubus_api::Kind;
use kubus_bus::subject::{AgentOp, StoreOp, StreamEnd, Subjects, Verb};

/// Every subject shape the code builds, with placeholders as the doc writes
/// them.
fn built() -> BTreeSet<String> {
    let s = Subjects::new("ccc");
    let generic = |subject: String| {
        subject
            .replace("kubus.ccc.", "kubus.<c>.")
            .replace("get.", "<verb>.")
            .replace("configmaps", "<resource>")
            .replace("nsx", "<namespace>")
            .replace("namex", "<name>")
            .replace("nodex", "<node>")
            .replace(".77", ".<peer-id>")
            .replace("store.status", "store.<op>")
            .replace("idx", "<id>")
    };
    let mut out = BTreeSet::new();
    out.insert(generic(s.manifests()));
    out.insert(generic(s.join()));
    out.insert(generic(s.review()));
    out.insert(generic(s.api(Verb::Get, Kind::ConfigMap, Some("nsx"))));
    out.insert(generic(s.obj(Kind::ConfigMap, Some("nsx"), "namex")));
    out.insert(generic(s.bookmark(Kind::ConfigMap)));
    out.insert(generic(s.node_pods("nodex")));
    out.insert(generic(s.events("nsx", Kind::ConfigMap, "namex")));
    out.insert(generic(s.heartbeat("nodex")));
    out.insert(generic(s.raft(77)));
    out.insert(generic(s.raft_snapshot(77)));
    out.insert(generic(s.store(StoreOp::Status)));
    out.insert(generic(s.store_peer(StoreOp::Status, 77)));
    out.insert(generic(s.agent("nodex", AgentOp::Logs)));
    out.insert(generic(s.agent("nodex", AgentOp::Exec)));
    out.insert(generic(s.agent("nodex", AgentOp::PortForward)));
    out.insert(generic(s.agent("nodex", AgentOp::ExecStream)));
    out.insert(generic(s.agent("nodex", AgentOp::Usage)));
    // one row for both directions of a stream, one for their acks
    let (up, _) = s.stream("nodex", "idx", StreamEnd::Opener);
    out.insert(generic(s.stream_ack(&up)));
    out.insert(generic(up));
    out
}

/// docs/subjects.md of the checkout the test runs in (cargo sets
/// `CARGO_MANIFEST_DIR` at run time too; the build-time value may name
/// another checkout that shared the target directory).
fn subjects_md() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../docs/subjects.md")
}

fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(subjects_md()).expect("docs/subjects.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `kubus."))
        .filter_map(|l| l.split('`').next())
        .map(|s| format!("kubus.{s}"))
        .collect()
}

#[test]
fn the_subject_table_matches_the_code() {
    let built = built();
    let documented = documented();
    let undocumented: Vec<_> = built.difference(&documented).collect();
    let unbuilt: Vec<_> = documented.difference(&built).collect();
    assert!(
        undocumented.is_empty(),
        "subjects missing from docs/subjects.md: {undocumented:?}"
    );
    assert!(
        unbuilt.is_empty(),
        "docs/subjects.md rows the code does not build: {unbuilt:?}"
    );
}

#[test]
fn every_verb_is_documented() {
    let text = std::fs::read_to_string(subjects_md()).expect("docs/subjects.md");
    let verbs: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
    assert!(
        text.contains(&format!("verbs `{}`", verbs.join(" "))),
        "verbs {verbs:?}"
    );
}

/// Every field a list request takes, as it goes on the wire, is named in
/// the doc (issue 3 added `resourceVersion` and `resourceVersionMatch`).
#[test]
fn every_list_field_is_documented() {
    use kubus_bus::protocol::{ApiRequest, ResourceVersionMatch};
    let text = std::fs::read_to_string(subjects_md()).expect("docs/subjects.md");
    let list = ApiRequest::List {
        label_selector: Some(String::new()),
        field_selector: Some(String::new()),
        limit: Some(1),
        continue_token: Some(String::new()),
        resource_version: Some(1),
        resource_version_match: Some(ResourceVersionMatch::NotOlderThan),
    };
    let wire = serde_json::to_value(&list).expect("json");
    let fields = wire["list"].as_object().expect("list fields");
    assert_eq!(fields.len(), 6, "{wire}");
    for name in fields.keys() {
        assert!(
            text.contains(&format!("`{name}`")),
            "list field {name:?} undocumented"
        );
    }
    for m in [
        ResourceVersionMatch::Exact,
        ResourceVersionMatch::NotOlderThan,
    ] {
        let name = serde_json::to_value(m).expect("json");
        let name = name.as_str().expect("a string");
        assert!(
            text.contains(&format!("`{name}`")),
            "match {name:?} undocumented"
        );
    }
}

/// Every field a delete request takes is named in the doc (issue 5 added
/// `uid` and `gracePeriodSeconds`, graceful deletion).
#[test]
fn every_delete_field_is_documented() {
    use kubus_bus::protocol::ApiRequest;
    let text = std::fs::read_to_string(subjects_md()).expect("docs/subjects.md");
    let delete = ApiRequest::Delete {
        name: String::new(),
        resource_version: Some(1),
        uid: Some(String::new()),
        grace_period_seconds: Some(0),
        propagation_policy: Some(kubus_api::lifecycle::Propagation::Orphan),
        only_if_absent: vec![kubus_api::ObjectRef::new(
            kubus_api::Kind::ReplicaSet,
            Some("d"),
            "rs",
        )],
    };
    let wire = serde_json::to_value(&delete).expect("json");
    let fields = wire["delete"].as_object().expect("delete fields");
    assert_eq!(fields.len(), 6, "{wire}");
    for name in fields.keys() {
        assert!(
            text.contains(&format!("`{name}`")),
            "delete field {name:?} undocumented"
        );
    }
}

/// Every field an eviction takes is named in the doc (issue 20: the
/// eviction subresource).
#[test]
fn every_evict_field_is_documented() {
    use kubus_bus::protocol::ApiRequest;
    let text = std::fs::read_to_string(subjects_md()).expect("docs/subjects.md");
    let evict = ApiRequest::Evict {
        name: String::new(),
        grace_period_seconds: Some(0),
        resource_version: Some(1),
        uid: Some(String::new()),
    };
    let wire = serde_json::to_value(&evict).expect("json");
    let fields = wire["evict"].as_object().expect("evict fields");
    assert_eq!(fields.len(), 4, "{wire}");
    for name in fields.keys() {
        assert!(
            text.contains(&format!("`{name}`")),
            "evict field {name:?} undocumented"
        );
    }
    assert!(
        text.contains("`TooManyRequests`"),
        "the reason an eviction is refused with"
    );
}
