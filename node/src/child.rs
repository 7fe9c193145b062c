//! Stopping a child process the way every supervisor here does: a polite
//! signal to its PID, a bounded wait, then SIGKILL, and always a reap.

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Sends `signal` to `child`, waits up to `grace` for it to exit, then kills
/// it; reaps it either way. A child that already exited is only reaped.
pub fn stop(child: &mut Child, signal: Signal, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}
