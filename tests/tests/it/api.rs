//! The bus API as a client sees it: typed errors, compare-and-swap, merge
//! patch, pagination, dry runs, size limits, manifests published without a
//! reply, and Kubernetes Events (issue 4); lists at a past revision and
//! their expiry (issue 3).

use std::time::Duration;

use futures::StreamExt;
use kubus_api::{Kind, ObjectRef, Reason};
use kubus_tests::{wait_for, Cluster};
use serde_json::{json, Value};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cm(name: &str, label: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"tier": label}},
        "data": {"k": "v"}})
}

#[test]
fn typed_errors_cas_patch_and_pages() {
    let c = Cluster::start();
    rt().block_on(async {
        let client = c.connect().await;
        let created = client.create(cm("a", "web")).await.expect("create");
        let err = client.create(cm("a", "web")).await.expect_err("exists");
        assert_eq!(err.reason(), Some(Reason::AlreadyExists));
        let r = ObjectRef::new(Kind::ConfigMap, Some("default"), "a");
        let missing = ObjectRef::new(Kind::ConfigMap, Some("default"), "nope");
        assert_eq!(
            client
                .get(Kind::ConfigMap, Some("default"), "nope")
                .await
                .expect_err("404")
                .reason(),
            Some(Reason::NotFound)
        );

        // compare-and-swap on resourceVersion
        let mut stale = created.clone();
        let updated = client
            .update(created.clone())
            .await
            .expect("update at the current revision");
        stale["data"]["k"] = json!("stale");
        let err = client.update(stale).await.expect_err("conflict");
        assert_eq!(err.reason(), Some(Reason::Conflict));
        let err = client.delete(&r, Some(1)).await.expect_err("precondition");
        assert_eq!(err.reason(), Some(Reason::Conflict));

        // JSON merge patch: null deletes, maps merge
        let patched = client
            .patch(
                &r,
                json!({"data": {"k": null, "new": "x"}, "metadata": {"labels": {"extra": "1"}}}),
            )
            .await
            .expect("patch");
        assert_eq!(patched["data"], json!({"new": "x"}));
        assert_eq!(
            patched["metadata"]["labels"],
            json!({"tier": "web", "extra": "1"})
        );
        assert!(patched["metadata"]["resourceVersion"] != updated["metadata"]["resourceVersion"]);
        let err = client
            .patch(&r, json!({"metadata": {"name": "Bad_Name"}}))
            .await
            .expect_err("invalid");
        assert_eq!(err.reason(), Some(Reason::Invalid));
        assert_eq!(
            client
                .patch(&missing, json!({}))
                .await
                .expect_err("404")
                .reason(),
            Some(Reason::NotFound)
        );

        // invalid objects name the field and the rule
        let err = client
            .create(cm("Bad_Name", "web"))
            .await
            .expect_err("invalid");
        let kubus_bus::ClientError::Api(api) = err else {
            panic!("not an API error")
        };
        assert_eq!(api.reason, Reason::Invalid);
        assert!(
            api.causes
                .iter()
                .any(|c| c.field == "metadata.name" && !c.rule.is_empty()),
            "{api:?}"
        );

        // pages: 25 objects, pages of 10, with a label selector
        for i in 0..25 {
            client
                .create(cm(
                    &format!("p{i:02}"),
                    if i % 2 == 0 { "even" } else { "odd" },
                ))
                .await
                .expect("create");
        }
        let mut names = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let page = client
                .list_page(
                    Kind::ConfigMap,
                    Some("default"),
                    Some("tier=even"),
                    None,
                    Some(5),
                    token,
                )
                .await
                .expect("page");
            pages += 1;
            names.extend(page.items.iter().map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }));
            token = page.continue_token;
            if token.is_none() || pages > 10 {
                break;
            }
        }
        assert_eq!(names.len(), 13, "{names:?}");
        assert!(pages >= 3);
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 13, "no item twice across pages");
    });
}

fn names(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap_or_default())
        .collect()
}

fn revision_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion: {obj}"))
}

/// Issue 3: `list` at a past revision, with a label selector, through the
/// bus API and `kubus get --revision`; then, once the store's history has
/// outgrown `--history-retention-age-secs` (compacted by age, with no
/// writes of ours to trigger it), `Expired` naming the oldest revision
/// kept, which can still be listed.
#[test]
fn list_at_a_past_revision_then_expired_after_compaction() {
    const AGE_SECS: u64 = 5;
    let c = Cluster::start_with(&["--history-retention-age-secs", &AGE_SECS.to_string()]);
    rt().block_on(async {
        let client = c.connect().await;
        client.create(cm("h1", "web")).await.expect("create h1");
        let at = revision_of(&client.create(cm("h2", "web")).await.expect("create h2"));
        let h1 = ObjectRef::new(Kind::ConfigMap, Some("default"), "h1");
        let h2 = ObjectRef::new(Kind::ConfigMap, Some("default"), "h2");
        client
            .patch(&h1, json!({"metadata": {"labels": {"tier": "db"}}}))
            .await
            .expect("relabel h1");
        client.delete(&h2, None).await.expect("delete h2");
        let started = std::time::Instant::now();

        let (now, _) = client
            .list(Kind::ConfigMap, Some("default"), Some("tier=web"), None)
            .await
            .expect("list now");
        assert!(now.is_empty(), "{now:?}");
        let (then, revision) = client
            .list_at(Kind::ConfigMap, Some("default"), Some("tier=web"), None, at)
            .await
            .expect("list at a past revision");
        assert_eq!((names(&then), revision), (vec!["h1", "h2"], at));
        assert_eq!(
            then[1]["metadata"]["resourceVersion"],
            json!(at.to_string())
        );

        let out = c.kubus(&[
            "get",
            "configmaps",
            "-l",
            "tier=web",
            "--revision",
            &at.to_string(),
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(
            names(list["items"].as_array().expect("items")),
            ["h1", "h2"]
        );
        let out = c.kubus(&[
            "get",
            "configmap",
            "h2",
            "--revision",
            &(at - 1).to_string(),
        ]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("did not exist at revision"));
        assert!(
            started.elapsed() < Duration::from_secs(AGE_SECS),
            "the checks at {at} took longer than the retention window: raise AGE_SECS"
        );

        // A revision not made yet is refused, not waited for.
        let future = client
            .list_at(Kind::ConfigMap, None, None, None, u64::MAX)
            .await
            .expect_err("future");
        assert_eq!(future.reason(), Some(Reason::BadRequest), "{future}");

        // Compaction by age: the history after `at` goes within a few
        // seconds of the window.
        let deadline = std::time::Instant::now() + Duration::from_secs(AGE_SECS + 20);
        let expired = loop {
            match client
                .list_at(Kind::ConfigMap, Some("default"), None, None, at)
                .await
            {
                Err(e) if e.reason() == Some(Reason::Expired) => break e,
                _ if std::time::Instant::now() > deadline => {
                    panic!("never Expired; log:\n{}", c.log())
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let message = expired.to_string();
        let oldest: u64 = message
            .split("oldest revision kept (")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no oldest revision in {message:?}"));
        assert!(oldest > at, "{message}");
        let (_, revision) = client
            .list_at(Kind::ConfigMap, Some("default"), None, None, oldest)
            .await
            .expect("the oldest revision kept lists");
        assert_eq!(revision, oldest);
        let out = c.kubus(&["get", "configmaps", "--revision", &at.to_string()]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("older than the oldest revision kept"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn manifests_dry_run_size_limit_and_plain_publish() {
    let c = Cluster::start();
    rt().block_on(async {
        let client = c.connect().await;
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry}\ndata: {a: b}\n";
        let reply = client
            .apply_manifests_with(manifest, true)
            .await
            .expect("dry run");
        assert!(reply.dry_run && reply.applied, "{reply:?}");
        assert_eq!(
            client
                .get(Kind::ConfigMap, Some("default"), "dry")
                .await
                .expect_err("nothing written")
                .reason(),
            Some(Reason::NotFound)
        );

        // over 1 MiB: a clear error, nothing applied
        let big = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{a: \"{}\"}}\n",
            "x".repeat(1_100_000)
        );
        let err = client.apply_manifests(&big).await.expect_err("too large");
        assert!(err.to_string().contains("limit"), "{err}");

        // a plain publish: the result comes as an Event on the events subject
        let mut events = client
            .nats()
            .subscribe(client.subjects().events_in("default"))
            .await
            .expect("sub");
        client
            .nats()
            .publish(
                client.subjects().manifests(),
                manifest.as_bytes().to_vec().into(),
            )
            .await
            .expect("publish");
        let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event")
            .expect("msg");
        let event: Value = serde_json::from_slice(&msg.payload).expect("json");
        assert_eq!(event["reason"], "Applied", "{event}");
        assert_eq!(event["involvedObject"]["name"], "dry");
        assert!(client
            .get(Kind::ConfigMap, Some("default"), "dry")
            .await
            .is_ok());
    });
}

#[test]
fn events_tell_what_happened_to_a_pod() {
    let c = Cluster::start();
    let out = c.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: ev}\nspec:\n  containers:\n  - {name: main, image: busybox, command: [sh, -c, 'sleep 30']}\n");
    assert!(out.status.success(), "{out:?}");
    let reasons = wait_for(Duration::from_secs(10), || {
        let out = c.kubus(&["events", "-o", "json"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let reasons: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["involvedObject"]["name"] == "ev")
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect();
        (reasons.contains(&"Scheduled".to_string()) && reasons.contains(&"Started".to_string()))
            .then_some(reasons)
    })
    .unwrap_or_else(|| panic!("no Scheduled/Started events; log:\n{}", c.log()));
    assert!(reasons.len() >= 2);
    let table = String::from_utf8_lossy(&c.kubus(&["events"]).stdout).to_string();
    assert!(table.starts_with("LAST SEEN"), "{table}");
    assert!(table.contains("pod/ev"), "{table}");
    // deleting the pod: Killing
    assert!(c.kubus(&["delete", "pod", "ev"]).status.success());
    wait_for(Duration::from_secs(10), || {
        let text = String::from_utf8_lossy(&c.kubus(&["events", "-o", "json"]).stdout).to_string();
        text.contains("\"Killing\"").then_some(())
    })
    .unwrap_or_else(|| panic!("no Killing event; log:\n{}", c.log()));
}

#[test]
fn apply_removes_what_the_manifest_dropped_and_keeps_what_others_set() {
    let c = Cluster::start();
    let v1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  labels: {a: \"1\", b: \"2\"}\ndata: {x: \"1\", y: \"2\"}\n";
    let out = c.apply(v1);
    assert!(out.status.success(), "{out:?}");
    rt().block_on(async {
        let client = c.connect().await;
        // another writer adds a label the manifest never mentions
        let r = ObjectRef::new(Kind::ConfigMap, Some("default"), "owned");
        client
            .patch(&r, json!({"metadata": {"labels": {"other": "yes"}}}))
            .await
            .expect("patch");
    });
    assert_eq!(
        String::from_utf8_lossy(&c.apply(v1).stdout).trim(),
        "configmap/owned unchanged"
    );
    let v2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  labels: {a: \"1\"}\ndata: {x: \"1\"}\n";
    assert_eq!(
        String::from_utf8_lossy(&c.apply(v2).stdout).trim(),
        "configmap/owned configured"
    );
    let items = c.items("configmaps");
    let cm = items
        .iter()
        .find(|o| o["metadata"]["name"] == "owned")
        .expect("object");
    assert_eq!(
        cm["data"],
        json!({"x": "1"}),
        "y was dropped from the manifest"
    );
    assert_eq!(
        cm["metadata"]["labels"],
        json!({"a": "1", "other": "yes"}),
        "b dropped; other kept"
    );
    assert!(cm["metadata"]["annotations"][kubus_api::patch::LAST_APPLIED_ANNOTATION].is_string());
}
