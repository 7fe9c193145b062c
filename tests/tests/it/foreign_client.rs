//! A client written in Python with nats-py (no MessagePack, no Rust) uses
//! the manifests, obj and api subjects in JSON. See issue 4.

use std::process::Command;

use kubus_tests::Cluster;

#[test]
fn a_python_client_applies_and_watches_in_json() {
    let c = Cluster::start();
    let script = kubus_tests::manifest_dir().join("python/foreign_client.py");
    let admin = c.credentials();
    let out = Command::new("python3")
        .arg(&script)
        .args([c.nats_url.as_str(), "kubus", &admin.user, &admin.password])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("foreign client: ok"));
}
