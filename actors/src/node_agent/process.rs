//! The `process` runtime: each container is a child process group on the
//! host, running the container's `command` + `args` with its env. No image
//! and no isolation beyond two namespaces: the pod's network namespace
//! when it has one, and, as root, a mount namespace of the container's own
//! in which its volumes (emptyDir, configMap, secret, hostPath,
//! persistentVolumeClaim) are bound over paths that exist on the node. For
//! machines without containerd and for fast tests.
//!
//! Every started group is recorded as `<root>/<pgid>.pid` with the kernel's
//! start time of its leader, so a later agent run can stop exactly what an
//! earlier one left behind (never a recycled pid).
//!
//! A restarted agent does not adopt these groups: their stdout and stderr
//! are pipes the agent itself read (and wrote to the log), which died with
//! it, and the exit status of a process that is not our child cannot be
//! read. So [`Runtime::leftovers`] reports them with no owner, and the
//! agent's plan removes them; their pods start afresh.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::attach::{self, Attachable};
use super::config::Mount;
use super::logs;
use super::podnet::PodNetwork;
use super::pty;
use super::runtime::{
    ContainerSpec, ExecOutput, ExecProcess, ExecSpec, Exited, FoundContainer, FoundPod, FoundState,
    Leftovers, Runtime, RuntimeError,
};
use super::usage;
use kubus_bus::session::{STDERR, STDOUT};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// How often `stop` looks whether the group is gone.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Lines buffered between a container's pipes and its log writer.
const LOG_QUEUE: usize = 256;
/// Longest line read before it is cut (the log splits records further).
const LINE_MAX_BYTES: usize = 64 * 1024;

/// Most bytes of each output stream an exec keeps.
const EXEC_OUTPUT_MAX_BYTES: u64 = 64 * 1024;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an exec "in" a running container gets: its env and directory.
#[derive(Debug, Clone)]
struct ExecContext {
    env: Vec<(String, String)>,
    hostname: String,
    working_dir: Option<String>,
    /// The pod's network namespace, if it has one: commands run in it
    /// (`ip netns exec`, which also gives them the pod's resolv.conf).
    netns: Option<String>,
    /// Volumes bound over paths of the node in a mount namespace of the
    /// command's own (`unshare --mount`): the host does not see them.
    mounts: Vec<Mount>,
    /// Where sessions attach to the container's own process.
    attach: Option<Attachable>,
}

/// The shell that binds each `SOURCE TARGET ro|rw` triple, then runs the
/// command after `--`; a failed mount fails the start (exit 127).
const BIND_SCRIPT: &str = r#"while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 127; if [ "$3" = ro ]; then mount -o remount,bind,ro "$2" || exit 127; fi; shift 3; done; shift; exec "$@""#;

/// Why the process runtime cannot give a container its mounts, if it
/// cannot: they need root (a mount namespace per command), and a target
/// that exists on the node (the runtime has no root filesystem of its own
/// to make one in).
pub fn mounts_problem(container: &str, mounts: &[Mount], root: bool) -> Option<String> {
    let first = mounts.first()?;
    if !root {
        return Some(format!(
            "container {container:?} mounts a volume at {}: the process runtime binds volumes in a mount namespace of the container's own, which needs root (or use the cri runtime)",
            first.container_path
        ));
    }
    mounts
        .iter()
        .find(|m| !Path::new(&m.container_path).exists())
        .map(|m| {
            format!(
                "container {container:?} mounts a volume at {}: the process runtime runs host processes and binds a volume only over a path that exists on the node, which {} does not (use the cri runtime)",
                m.container_path, m.container_path
            )
        })
}

impl ExecContext {
    /// A command with only this env (and PATH, HOSTNAME), in this
    /// directory, with stdout and stderr piped.
    fn command<I, S>(&self, program: &str, args: I) -> tokio::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(Into::into));
        }
        if !self.mounts.is_empty() {
            argv.extend(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    BIND_SCRIPT,
                    "sh",
                ]
                .map(Into::into),
            );
            for m in &self.mounts {
                argv.push(m.host_path.clone().into_os_string());
                argv.push(m.container_path.clone().into());
                argv.push(if m.read_only { "ro" } else { "rw" }.into());
            }
            argv.push("--".into());
        }
        argv.push(program.into());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOSTNAME", &self.hostname)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.working_dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    root: PathBuf,
    running: Arc<Mutex<HashMap<String, ExecContext>>>,
    /// Each pod in a network namespace of its own, when set.
    net: Option<Arc<PodNetwork>>,
    /// The pods as last seen (their network needs the spec).
    pods: Arc<Mutex<HashMap<String, Value>>>,
}

impl ProcessRuntime {
    pub fn new(root: PathBuf) -> Result<ProcessRuntime, RuntimeError> {
        std::fs::create_dir_all(&root)?;
        Ok(ProcessRuntime {
            root,
            running: Arc::default(),
            net: None,
            pods: Arc::default(),
        })
    }

    /// Run each pod (but `hostNetwork` ones) in a network namespace of its
    /// own on the node's bridge.
    pub fn with_pod_network(mut self, net: PodNetwork) -> ProcessRuntime {
        self.net = Some(Arc::new(net));
        self
    }

    fn pid_file(&self, pgid: u32) -> PathBuf {
        self.root.join(format!("{pgid}.pid"))
    }
}

/// The start time (clock ticks since boot) of a process, from /proc.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of /proc/<pid>/stat; the command (field 2) may hold spaces and
/// parentheses, so count from the last ')'.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

fn signal_group(pgid: i32, signal: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pgid), signal) {
        if e != nix::errno::Errno::ESRCH {
            warn!(pgid, %signal, error = %e, "cannot signal process group");
        }
    }
}

impl Runtime for ProcessRuntime {
    fn version(&self) -> String {
        format!("process://kubus-{}", env!("CARGO_PKG_VERSION"))
    }

    /// Each container is a process group: its figures are its processes'
    /// from `/proc` (CPU time including its waited-for children's).
    fn usage(&self) -> BoxFuture<'static, Result<Vec<usage::RawUsage>, RuntimeError>> {
        let groups: Vec<u32> = self
            .running
            .lock()
            .map(|r| r.keys().filter_map(|id| id.parse().ok()).collect())
            .unwrap_or_default();
        Box::pin(async move {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            let procs = tokio::task::spawn_blocking(usage::read_processes)
                .await
                .map_err(|e| RuntimeError::Runtime(format!("reading /proc: {e}")))?;
            let ticks = rustix::param::clock_ticks_per_second().max(1);
            let page = u64::try_from(rustix::param::page_size()).unwrap_or(4096);
            Ok(usage::group_usage(&procs, &groups, ticks, page))
        })
    }

    fn start(
        &self,
        spec: &ContainerSpec,
        exits: mpsc::Sender<Exited>,
    ) -> Result<String, RuntimeError> {
        let mut argv = spec.command.iter().chain(spec.args.iter());
        let Some(program) = argv.next() else {
            return Err(RuntimeError::Invalid {
                reason: "CommandRequired",
                message: format!(
                    "container {:?} has no command: the process runtime runs a container's command and args, it cannot read an image's entrypoint (use the cri runtime for that)",
                    spec.container
                ),
            });
        };
        // the ServiceAccount token volume every pod gets: where this
        // runtime cannot bind it (not root, or its path absent on the
        // node), the host process goes without, rather than not at all
        let root = is_root();
        let mounts: Vec<Mount> = spec
            .mounts
            .iter()
            .filter(|m| {
                let skip = m.container_path == kubus_api::token::MOUNT_PATH
                    && (!root || !Path::new(&m.container_path).exists());
                if skip {
                    debug!(container = %spec.container, "the process runtime does not mount the ServiceAccount token (its path is not on the node)");
                }
                !skip
            })
            .cloned()
            .collect();
        if let Some(message) = mounts_problem(&spec.container, &mounts, root) {
            return Err(RuntimeError::Invalid {
                reason: "VolumeMountsUnsupported",
                message,
            });
        }
        if let Some(dir) = spec.log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let exec_ctx = ExecContext {
            env: spec.env.clone(),
            hostname: spec.pod.clone(),
            working_dir: spec.working_dir.clone(),
            netns: self
                .net
                .as_ref()
                .and_then(|n| n.namespace_of(&spec.pod_uid)),
            mounts,
            attach: None,
        };
        let pty = if spec.tty {
            Some(pty::open(80, 24)?)
        } else {
            None
        };
        let mut cmd = match &pty {
            // on a terminal of its own, as the leader of a session (and so
            // of a group) of its own: `setsid` does not fork for a child
            // that leads no group, so its pid stays the container's
            Some((_, slave)) => {
                let mut words = vec!["--ctty".to_string(), program.clone()];
                words.extend(argv.cloned());
                let mut cmd = exec_ctx.command("setsid", words);
                cmd.env("TERM", "xterm")
                    .stdin(slave.try_clone()?)
                    .stdout(slave.try_clone()?)
                    .stderr(slave.try_clone()?);
                cmd
            }
            None => {
                let mut cmd = exec_ctx.command(program, argv);
                cmd.process_group(0);
                if spec.stdin {
                    cmd.stdin(Stdio::piped());
                }
                cmd
            }
        };
        cmd.kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                RuntimeError::Invalid {
                    reason: "StartError",
                    message: format!(
                        "cannot run {program:?} for container {:?}: {e}",
                        spec.container
                    ),
                }
            }
            _ => RuntimeError::Start(e.to_string()),
        })?;
        // the terminal's other side is the container's alone now
        drop(cmd);
        let pty = pty.map(|(p, _slave)| p);
        let pid = child
            .id()
            .ok_or_else(|| RuntimeError::Start("child exited at once".into()))?;
        if let Some(t) = start_time(pid) {
            let _ = std::fs::write(self.pid_file(pid), t.to_string());
        }
        let stdin: Option<Pin<Box<dyn AsyncWrite + Send>>> = match &pty {
            Some(p) => spec.stdin.then(|| Box::pin(p.clone()) as _),
            None => child.stdin.take().map(|s| Box::pin(s) as _),
        };
        let (attachable, feed) = Attachable::new(stdin, spec.stdin_once, pty.clone());
        let (tx, rx) = mpsc::channel(LOG_QUEUE);
        let output = Some(feed.output.clone());
        if let Some(p) = pty {
            tokio::spawn(attach::pump(
                p,
                STDOUT,
                "stdout",
                output.clone(),
                tx.clone(),
                LINE_MAX_BYTES,
            ));
        }
        if let Some(out) = child.stdout.take() {
            tokio::spawn(attach::pump(
                out,
                STDOUT,
                "stdout",
                output.clone(),
                tx.clone(),
                LINE_MAX_BYTES,
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(attach::pump(
                err,
                STDERR,
                "stderr",
                output,
                tx,
                LINE_MAX_BYTES,
            ));
        } else {
            drop(tx);
        }
        tokio::spawn(write_log(spec.log_path.clone(), rx));
        let exec_ctx = ExecContext {
            attach: Some(attachable),
            ..exec_ctx
        };
        let id = pid.to_string();
        let exited = Exited {
            pod_uid: spec.pod_uid.clone(),
            container: spec.container.clone(),
            id: id.clone(),
            code: 0,
            reason: String::new(),
        };
        let pid_file = self.pid_file(pid);
        let running = self.running.clone();
        if let Ok(mut r) = running.lock() {
            r.insert(id.clone(), exec_ctx);
        }
        tokio::spawn(async move {
            let status = child.wait().await;
            if let Ok(mut r) = running.lock() {
                r.remove(&exited.id);
            }
            // stragglers of the group (a shell's children) go with it
            signal_group(pid as i32, Signal::SIGKILL);
            let _ = std::fs::remove_file(pid_file);
            let (code, reason) = match status {
                Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                    (Some(0), _) => (0, "Completed".to_string()),
                    (Some(c), _) => (c, "Error".to_string()),
                    (None, Some(sig)) => (128 + sig, format!("Signal {sig}")),
                    (None, None) => (1, "Error".to_string()),
                },
                Err(e) => (1, format!("wait failed: {e}")),
            };
            debug!(pid, code, "container process exited");
            feed.exit.send_replace(Some(code));
            let _ = exits
                .send(Exited {
                    code,
                    reason,
                    ..exited
                })
                .await;
        });
        Ok(id)
    }

    fn pod_updated(&self, pod: &Value) {
        if self.net.is_none() {
            return;
        }
        if let (Some(uid), Ok(mut pods)) = (kubus_api::meta::uid(pod), self.pods.lock()) {
            pods.insert(uid.to_string(), pod.clone());
        }
    }

    fn prepares_pods(&self) -> bool {
        self.net.is_some()
    }

    /// As root, volumes are bound into each container's own mount
    /// namespace; otherwise none are made.
    fn binds_volumes(&self) -> bool {
        is_root()
    }

    fn pod_netns(&self, pod_uid: &str) -> Option<PathBuf> {
        self.net.as_ref()?.namespace_path(pod_uid)
    }

    /// The pod's network namespace and address (with a pod network).
    fn prepare_pod(
        &self,
        pod_uid: &str,
        _pod_dir: &Path,
    ) -> BoxFuture<'static, Result<Option<String>, RuntimeError>> {
        let net = self.net.clone();
        let pod = self.pods.lock().ok().and_then(|p| p.get(pod_uid).cloned());
        let uid = pod_uid.to_string();
        Box::pin(async move {
            match (net, pod) {
                (Some(net), Some(pod)) => net.add(&uid, &pod).await,
                _ => Ok(None),
            }
        })
    }

    fn stop_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()> {
        let net = self.net.clone();
        if let Ok(mut pods) = self.pods.lock() {
            pods.remove(pod_uid);
        }
        let uid = pod_uid.to_string();
        Box::pin(async move {
            if let Some(net) = net {
                net.remove(&uid).await;
            }
        })
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'static, ()> {
        let pgid: i32 = id.parse().unwrap_or(0);
        Box::pin(async move {
            if pgid <= 1 {
                return;
            }
            signal_group(pgid, Signal::SIGTERM);
            let polls = (grace.as_millis() / STOP_POLL.as_millis()).max(1);
            for _ in 0..polls {
                if !group_alive(pgid) {
                    return;
                }
                tokio::time::sleep(STOP_POLL).await;
            }
            signal_group(pgid, Signal::SIGKILL);
        })
    }

    /// Runs the command on the host with the container's env and working
    /// directory (there is no container to enter), killed at `timeout`.
    fn exec(
        &self,
        id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ExecOutput, RuntimeError>> {
        let ctx = self.running.lock().ok().and_then(|r| r.get(id).cloned());
        Box::pin(async move {
            let Some(ctx) = ctx else {
                return Err(RuntimeError::Runtime("container is not running".into()));
            };
            let Some((program, args)) = command.split_first() else {
                return Err(RuntimeError::Invalid {
                    reason: "ExecError",
                    message: "no command to run".into(),
                });
            };
            let mut cmd = ctx.command(program, args);
            cmd.kill_on_drop(true);
            let mut child = cmd
                .spawn()
                .map_err(|e| RuntimeError::Runtime(format!("cannot run {program:?}: {e}")))?;
            let (out, err) = (child.stdout.take(), child.stderr.take());
            let run = async move {
                let read = |r: Option<_>| async move {
                    let mut buf = Vec::new();
                    if let Some(r) = r {
                        let r: Box<dyn AsyncRead + Unpin + Send> = r;
                        let _ = r.take(EXEC_OUTPUT_MAX_BYTES).read_to_end(&mut buf).await;
                    }
                    buf
                };
                let (stdout, stderr) = tokio::join!(
                    read(out.map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>)),
                    read(err.map(|e| Box::new(e) as Box<dyn AsyncRead + Unpin + Send>))
                );
                let status = child.wait().await?;
                Ok::<_, std::io::Error>(ExecOutput {
                    stdout,
                    stderr,
                    exit_code: status.code().unwrap_or(137),
                })
            };
            match tokio::time::timeout(timeout, run).await {
                Err(_) => Err(RuntimeError::Runtime(format!(
                    "command timed out after {timeout:?}"
                ))),
                Ok(r) => Ok(r?),
            }
        })
    }

    fn attach(
        &self,
        id: &str,
        stdin: bool,
    ) -> BoxFuture<'static, Result<ExecProcess, RuntimeError>> {
        let found = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(id).and_then(|c| c.attach.clone()));
        Box::pin(async move {
            match found {
                Some(a) => a.attach(stdin),
                None => Err(RuntimeError::Runtime("container is not running".into())),
            }
        })
    }

    /// Runs the command on the host as `exec` does, its streams open: with
    /// a TTY, on a terminal of its own that is its controlling one
    /// (`setsid --ctty`).
    fn exec_stream(
        &self,
        id: &str,
        spec: ExecSpec,
    ) -> BoxFuture<'static, Result<ExecProcess, RuntimeError>> {
        let ctx = self.running.lock().ok().and_then(|r| r.get(id).cloned());
        Box::pin(async move {
            let Some(ctx) = ctx else {
                return Err(RuntimeError::Runtime("container is not running".into()));
            };
            let Some((program, args)) = spec.command.split_first() else {
                return Err(RuntimeError::Invalid {
                    reason: "ExecError",
                    message: "no command to run".into(),
                });
            };
            let spawn_error =
                |e: std::io::Error| RuntimeError::Runtime(format!("cannot run {program:?}: {e}"));
            if spec.tty {
                let (pty, slave) = pty::open(80, 24)?;
                let mut argv = vec!["--ctty".to_string(), "--wait".into(), program.clone()];
                argv.extend(args.iter().cloned());
                let mut cmd = ctx.command("setsid", argv);
                cmd.env("TERM", "xterm")
                    .stdin(slave.try_clone()?)
                    .stdout(slave.try_clone()?)
                    .stderr(slave)
                    .kill_on_drop(true);
                let mut child = cmd.spawn().map_err(spawn_error)?;
                // the command's side closes here with `cmd`: the terminal
                // ends when the command (and what it started) let go of it
                drop(cmd);
                let resize = pty.clone();
                return Ok(ExecProcess {
                    stdin: spec
                        .stdin
                        .then(|| Box::pin(pty.clone()) as Pin<Box<dyn AsyncWrite + Send>>),
                    stdout: Box::pin(pty),
                    stderr: None,
                    resize: Some(Box::new(move |w, h| {
                        let _ = resize.resize(w, h);
                    })),
                    exit: Box::pin(async move {
                        let status = child.wait().await?;
                        Ok(status.code().unwrap_or(137))
                    }),
                });
            }
            let mut cmd = ctx.command(program, args);
            if spec.stdin {
                cmd.stdin(Stdio::piped());
            }
            cmd.kill_on_drop(true);
            let mut child = cmd.spawn().map_err(spawn_error)?;
            let (stdin, stdout, stderr) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take());
            let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
                return Err(RuntimeError::Runtime(
                    "the command's output pipes are missing".into(),
                ));
            };
            Ok(ExecProcess {
                stdin: stdin.map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>),
                stdout: Box::pin(stdout),
                stderr: Some(Box::pin(stderr)),
                resize: None,
                exit: Box::pin(async move {
                    let status = child.wait().await?;
                    Ok(status.code().unwrap_or(137))
                }),
            })
        })
    }

    /// The groups an earlier run left that still run, with no owner (they
    /// cannot be adopted; see the module doc). Records of groups that are
    /// gone are deleted.
    fn leftovers(&self) -> BoxFuture<'static, Result<Leftovers, RuntimeError>> {
        let root = self.root.clone();
        let net = self.net.clone();
        Box::pin(async move {
            // pods start afresh after a restart: their old networks go
            if let Some(net) = net {
                net.remove_all().await;
            }
            let mut out = Leftovers::default();
            for entry in std::fs::read_dir(&root)?.flatten() {
                let path = entry.path();
                match leftover(&path) {
                    Some((pgid, recorded)) if start_time(pgid) == Some(recorded) => {
                        out.containers.push(FoundContainer {
                            pod_uid: String::new(),
                            container: String::new(),
                            runtime_id: pgid.to_string(),
                            pod_runtime_id: None,
                            id: pgid.to_string(),
                            restarts: 0,
                            spec_hash: None,
                            state: FoundState::Running { started_at_ms: 0 },
                        })
                    }
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Ok(out)
        })
    }

    /// SIGKILL each group whose leader is still the process recorded.
    fn remove_leftovers(
        &self,
        _pods: Vec<FoundPod>,
        containers: Vec<FoundContainer>,
    ) -> BoxFuture<'static, usize> {
        let root = self.root.clone();
        Box::pin(async move {
            let mut stopped = 0;
            for c in containers {
                let path = root.join(format!("{}.pid", c.runtime_id));
                if let Some((pgid, recorded)) = leftover(&path) {
                    if start_time(pgid) == Some(recorded) {
                        signal_group(pgid as i32, Signal::SIGKILL);
                        stopped += 1;
                    }
                }
                let _ = std::fs::remove_file(&path);
            }
            stopped
        })
    }
}

fn leftover(path: &Path) -> Option<(u32, u64)> {
    let pgid = path.file_stem()?.to_str()?.parse().ok()?;
    let recorded = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Some((pgid, recorded))
}

fn now_nano() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string()
}

async fn write_log(path: PathBuf, mut rx: mpsc::Receiver<(&'static str, Vec<u8>)>) {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot open container log");
            return;
        }
    };
    while let Some((stream, line)) = rx.recv().await {
        if let Err(e) = file
            .write_all(&logs::records(&now_nano(), stream, &line))
            .await
        {
            warn!(path = %path.display(), error = %e, "cannot write container log");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert!(start_time(std::process::id()).is_some());
    }

    #[tokio::test]
    async fn runs_logs_and_stops_a_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = ProcessRuntime::new(dir.path().join("procs")).expect("runtime");
        let (tx, mut rx) = mpsc::channel(4);
        let spec = ContainerSpec {
            pod_uid: "u".into(),
            namespace: "default".into(),
            pod: "p".into(),
            container: "c".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["echo hello $GREETING; echo oops >&2; sleep 30".into()],
            env: vec![("GREETING".into(), "world".into())],
            working_dir: None,
            log_path: dir.path().join("logs/c/0.log"),
            mounts: vec![],
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        let id = rt.start(&spec, tx.clone()).expect("starts");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
        let out = rt
            .exec(&id, cmd("echo $GREETING; exit 3"), Duration::from_secs(5))
            .await
            .expect("exec runs");
        assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"world\n"[..], 3));
        let slow = rt
            .exec(&id, cmd("sleep 10"), Duration::from_millis(200))
            .await;
        assert!(slow.is_err_and(|e| e.to_string().contains("timed out")));
        rt.stop(&id, Duration::from_secs(2)).await;
        let exit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("exit reported")
            .expect("exit");
        assert_eq!(exit.reason, "Signal 15");
        let text = logs::read_tail(&spec.log_path, 4096).expect("log");
        assert!(text.contains("hello world\n"), "{text:?}");
        assert!(text.contains("oops\n"), "{text:?}");

        // a later run (same root) finds what is still running, with no
        // owner, and stops it; a record of a group that is gone is dropped
        let left = rt.start(&spec, tx.clone()).expect("starts");
        std::fs::write(dir.path().join("procs/999999999.pid"), "1").expect("stale record");
        let later = ProcessRuntime::new(dir.path().join("procs")).expect("runtime");
        let found = later.leftovers().await.expect("leftovers");
        assert_eq!(found.containers.len(), 1, "{found:?}");
        assert_eq!(
            (
                found.containers[0].id.as_str(),
                found.containers[0].pod_uid.as_str()
            ),
            (left.as_str(), "")
        );
        assert!(!dir.path().join("procs/999999999.pid").exists());
        assert_eq!(later.remove_leftovers(vec![], found.containers).await, 1);
        let exit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("exit reported")
            .expect("exit");
        assert_eq!((exit.id, exit.reason.as_str()), (left, "Signal 9"));

        let mut no_cmd = spec.clone();
        no_cmd.command.clear();
        no_cmd.args.clear();
        assert!(matches!(
            rt.start(&no_cmd, tx),
            Err(RuntimeError::Invalid {
                reason: "CommandRequired",
                ..
            })
        ));
    }

    #[test]
    fn mounts_need_root_and_an_existing_target() {
        let m = |target: &str| Mount {
            container_path: target.into(),
            host_path: "/var/lib/kubus/storage/pvc-1".into(),
            read_only: false,
        };
        assert_eq!(mounts_problem("c", &[], false), None);
        let e = mounts_problem("c", &[m("/tmp")], false).expect("refused");
        assert!(e.contains("needs root"), "{e}");
        assert_eq!(mounts_problem("c", &[m("/tmp")], true), None);
        let e = mounts_problem("c", &[m("/tmp"), m("/no/such/dir")], true).expect("refused");
        assert!(
            e.contains("/no/such/dir") && e.contains("cri runtime"),
            "{e}"
        );
    }

    #[test]
    fn mounted_commands_bind_in_a_namespace_of_their_own() {
        let ctx = ExecContext {
            env: vec![],
            hostname: "p".into(),
            working_dir: None,
            netns: Some("kubus-abc".into()),
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/s/pvc-1".into(),
                read_only: true,
            }],
            attach: None,
        };
        let cmd = ctx.command("sleep", ["1"]);
        let std = cmd.as_std();
        let argv: Vec<String> = std::iter::once(std.get_program())
            .chain(std.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "ip",
                "netns",
                "exec",
                "kubus-abc",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                BIND_SCRIPT,
                "sh",
                "/s/pvc-1",
                "/data",
                "ro",
                "--",
                "sleep",
                "1"
            ]
        );
    }
}
