//! Stopping a child process we started: by its PID, SIGTERM first, SIGKILL
//! after a grace period, always reaped. Never by name.

use std::process::Child;
use std::time::{Duration, Instant};

/// Stops `child` (SIGTERM, then SIGKILL after `grace`) and reaps it. A
/// child that already exited is only reaped.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
