//! Tests that run one of their own test functions in a child process (to
//! kill it, or let it abort, at a chosen moment) start it here.

use std::process::Command;

/// A command that runs only the ignored test `name` of this test binary,
/// its output not captured (the parent reads the child's stdout).
pub fn test_in_child(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd
}
