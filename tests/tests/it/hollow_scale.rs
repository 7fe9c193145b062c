//! Scale on hollow nodes (issue 5): 1,000 hollow node agents register in one
//! `kubus up` process, and a Deployment of 10,000 replicas reaches Running
//! on them. Driven through `kubus bench pods`, whose watcher sees every pod
//! of the Deployment reach `Running`; this test checks only that they all
//! did (how fast is the benchmark's business, never a test's).

use std::process::Command;
use std::time::Duration;

use kubus_tests::kubus_bin;

#[test]
fn ten_thousand_pods_run_on_a_thousand_hollow_nodes() {
    let out = Command::new(kubus_bin())
        .args(["bench", "pods", "--pods", "10000", "--hollow-nodes", "1000"])
        // the whole run is bounded by the benchmark's own timeout
        .args([
            "--timeout-s",
            &Duration::from_secs(900).as_secs().to_string(),
        ])
        .output()
        .expect("run kubus bench pods");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "kubus bench pods failed:\n{stderr}");
    assert!(
        stdout.contains("1000 hollow nodes Ready"),
        "the hollow nodes did not all register:\n{stdout}"
    );
    assert!(
        stdout.contains("all 10000 Running"),
        "not every pod reached Running:\n{stdout}\n{stderr}"
    );
}
