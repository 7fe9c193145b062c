//! Every shared Kubernetes example goes through `kubus apply`: each document
//! is applied, or refused with a message naming the document, the field and
//! the rule. Nothing panics, nothing is skipped. See issue 2.

use kubus_tests::{k8s_examples, Cluster};

#[test]
fn every_shared_example_is_applied_or_refused_with_reasons() {
    let c = Cluster::start();
    let mut files: Vec<_> = std::fs::read_dir(k8s_examples())
        .expect("k8s-examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the shared examples, found {files:?}"
    );
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let out = c.apply(&text);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("== {}\n{stdout}{stderr}", file.display());
        let docs = kubus_api::manifest::parse_documents(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .len();
        assert!(docs > 0, "{} holds objects", file.display());
        let reported = stdout.lines().count()
            + stderr
                .lines()
                .filter(|l| l.starts_with("error: <stdin> document"))
                .count();
        assert_eq!(
            reported,
            docs,
            "every document of {} is reported once",
            file.display()
        );
        if out.status.success() {
            assert!(stdout.lines().all(|l| l.ends_with(" created")
                || l.ends_with(" configured")
                || l.ends_with(" unchanged")));
        } else {
            for line in stderr
                .lines()
                .filter(|l| l.starts_with("error: <stdin> document"))
            {
                // refused documents name the field and the rule; the others
                // name the document that kept the request from applying
                assert!(
                    line.contains(": ")
                        && (line.contains("is invalid: ") || line.contains("not applied: ")),
                    "{}: {line}",
                    file.display()
                );
            }
        }
    }
    // the cluster is still serving: nothing panicked
    assert!(c.kubus(&["get", "nodes"]).status.success(), "{}", c.log());
}

#[test]
fn bad_input_names_document_field_and_rule() {
    let c = Cluster::start();
    let out = c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\ndata: {a: b}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: Bad_Name}\nspec:\n  replicas: -1\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: y}}\n    spec: {containers: [{name: c, image: i}]}\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("metadata.name"), "{err}");
    assert!(err.contains("spec.replicas"), "{err}");
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
    // all or nothing: the valid ConfigMap was not applied either (the
    // one there is the API's CA, kube-root-ca.crt)
    let names: Vec<String> = c
        .items("configmaps")
        .iter()
        .map(|m| {
            m["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(names.iter().all(|n| n == "kube-root-ca.crt"), "{names:?}");
    let out = c.apply("kind: [unclosed\n");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
