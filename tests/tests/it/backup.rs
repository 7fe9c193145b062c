//! Backup and restore (issue 20): objects of several kinds — some updated,
//! one deleted, so that their revisions differ, and enough bytes that the
//! file crosses the bus in several chunks — are saved from a running
//! cluster with `kubus store snapshot save`, checked with `status`, and
//! restored with `restore` into a fresh data directory; a cluster started
//! on it serves the same objects with the same resourceVersions, uids and
//! creation times, its history starts at the snapshot's revision (an older
//! revision is compacted), and new writes continue after it. A truncated
//! file, a damaged one, a file that is no snapshot and a data directory
//! that is not empty are refused, each with an error naming the file.

use std::collections::BTreeMap;

use kubus_tests::Cluster;
use serde_json::{json, Value};

/// ConfigMaps of [`BIG_BYTES`] each: about 1.2 MB, several 256 KiB chunks.
const BIG: usize = 60;
const BIG_BYTES: usize = 20_000;

/// What must survive of an object.
fn identity(o: &Value) -> Value {
    let m = &o["metadata"];
    json!({
        "uid": m["uid"], "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"], "labels": m["labels"],
        "annotations": m["annotations"], "data": o["data"],
    })
}

/// `namespace/name` → identity of every object of `kind` in every
/// namespace whose name starts with one of `prefixes`.
fn objects(c: &Cluster, kind: &str, prefixes: &[&str]) -> BTreeMap<String, Value> {
    let out = c.kubus_ok(&["get", kind, "-A", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("json list");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            prefixes.iter().any(|p| name.starts_with(p))
        })
        .map(|o| {
            let m = &o["metadata"];
            let key = format!(
                "{}/{}",
                m["namespace"].as_str().unwrap_or("-"),
                m["name"].as_str().unwrap_or_default()
            );
            (key, identity(o))
        })
        .collect()
}

fn rv(o: &Value) -> u64 {
    o["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

/// The number after `word` in `text` ("revision 42," → 42).
fn number_after(text: &str, word: &str) -> Option<u64> {
    let at = text.find(word)? + word.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_saved_snapshot_restores_the_same_objects_at_the_same_revisions() {
    let a = Cluster::start();
    a.kubus_ok(&["create", "namespace", "team"]);
    for i in 0..5 {
        let lit = format!("k=v{i}");
        a.kubus_ok(&[
            "create",
            "configmap",
            &format!("c{i}"),
            "--from-literal",
            &lit,
        ]);
    }
    a.kubus_ok(&[
        "create",
        "configmap",
        "t1",
        "-n",
        "team",
        "--from-literal",
        "a=b",
    ]);
    a.kubus_ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal",
        "pw=x",
    ]);
    a.kubus_ok(&["label", "configmap", "c1", "tier=web"]);
    a.kubus_ok(&["annotate", "configmap", "c2", "note=changed"]);
    a.kubus_ok(&["label", "configmap", "t1", "-n", "team", "x=y"]);
    a.kubus_ok(&["delete", "configmap", "c3"]);
    let (rt, client) = a.bus_client();
    rt.block_on(async {
        for i in 0..BIG {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("big-{i:03}"), "namespace": "default"},
                "data": {"v": format!("{i:03}").repeat(BIG_BYTES / 3)}});
            client.create(cm).await.expect("create a big ConfigMap");
        }
    });
    let prefixes = ["c", "t1", "s1", "big-", "team"];
    let before: BTreeMap<String, Value> = ["configmaps", "secrets", "namespaces"]
        .iter()
        .flat_map(|k| objects(&a, k, &prefixes))
        .collect();
    assert!(before.contains_key("default/c1") && !before.contains_key("default/c3"));
    let rvs: Vec<u64> = before.values().map(rv).collect();
    assert!(
        rvs.iter().collect::<std::collections::BTreeSet<_>>().len() == rvs.len(),
        "every object at a revision of its own: {rvs:?}"
    );

    let files = tempfile::tempdir().expect("tempdir");
    let file = files.path().join("kubus.snap");
    let file_s = file.to_str().expect("utf-8 path");
    let said = a.kubus_ok(&["store", "snapshot", "save", file_s]);
    let revision = number_after(&said, "revision").unwrap_or_else(|| panic!("{said}"));
    let bytes = number_after(&said, "objects,").unwrap_or_else(|| panic!("{said}"));
    assert!(bytes > 1_000_000, "{said}");
    assert!(!files.path().join("kubus.snap.tmp").exists());
    assert!(rvs.iter().all(|r| *r <= revision), "{said}");
    println!("{said}");
    let status = a.kubus_ok(&["store", "snapshot", "status", file_s]);
    assert!(status.contains(&format!("revision {revision}")), "{status}");
    // saves one after another: a finished save does not hold a place
    for i in 0..3 {
        let again = files.path().join(format!("again-{i}.snap"));
        a.kubus_ok(&["store", "snapshot", "save", again.to_str().expect("utf-8")]);
    }
    // the keys the saved Secrets are sealed with, kept beside the backup
    let keys = files.path().join("encryption-config.yaml");
    std::fs::copy(a.data_dir().join("encryption-config.yaml"), &keys)
        .expect("keeping the encryption configuration");
    drop(a);
    drop(rt);

    // bad files, each named in its error
    let whole = std::fs::read(&file).expect("read the snapshot");
    let bad = |name: &str, content: &[u8], expect: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, content).expect("write");
        let dir = files.path().join(format!("{name}.data"));
        let out = kubus_tests::Cluster::unstarted(&[]).kubus(&[
            "store",
            "snapshot",
            "restore",
            path.to_str().expect("utf-8"),
            "--data-dir",
            dir.to_str().expect("utf-8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{name} restored: {err}");
        assert!(err.contains(name) && err.contains(expect), "{name}: {err}");
        assert!(
            !dir.exists(),
            "{name}: a failed restore left {}",
            dir.display()
        );
    };
    bad("cut.snap", &whole[..whole.len() / 2], "truncated");
    let mut flipped = whole.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 0x01;
    bad("flipped.snap", &flipped, "checksum mismatch");
    bad(
        "other.snap",
        b"apiVersion: v1\nkind: ConfigMap\n",
        "not a kubus snapshot",
    );

    let mut b = Cluster::unstarted(&[]);
    let data = b.data_dir();
    let data_s = data.to_str().expect("utf-8 path");
    let restored = b.kubus_ok(&["store", "snapshot", "restore", file_s, "--data-dir", data_s]);
    assert!(
        restored.contains(&format!("revision {revision}")),
        "{restored}"
    );
    let again = b.kubus(&["store", "snapshot", "restore", file_s, "--data-dir", data_s]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("not empty"),
        "{err}"
    );

    // Secrets are sealed: the restored store reads them with the saved
    // cluster's keys (what the restore's output says to do)
    assert!(restored.contains("encryption-config.yaml"), "{restored}");
    std::fs::copy(&keys, data.join("encryption-config.yaml"))
        .expect("copying the encryption configuration");
    b.launch();
    let after: BTreeMap<String, Value> = ["configmaps", "secrets", "namespaces"]
        .iter()
        .flat_map(|k| objects(&b, k, &prefixes))
        .collect();
    assert_eq!(after, before, "the restored cluster's objects");

    // the history starts at the snapshot: older revisions are compacted
    let oldest = rvs.iter().min().copied().expect("an object");
    let old = b.kubus(&["get", "configmaps", "--revision", &oldest.to_string()]);
    assert!(
        !old.status.success(),
        "revision {oldest} is before the restored history: {}",
        String::from_utf8_lossy(&old.stdout)
    );
    // and writes go on after it
    b.kubus_ok(&["create", "configmap", "after", "--from-literal", "k=v"]);
    let made = objects(&b, "configmaps", &["after"]);
    let made = made.get("default/after").expect("the new ConfigMap");
    assert!(rv(made) > revision, "{made} after revision {revision}");
}
