//! `kubus drain NODE...`: kubectl's drain. The node is cordoned first;
//! then its pods are evicted through the eviction subresource (so each
//! PodDisruptionBudget is honoured: a refused eviction is asked again every
//! 5 s), and drain waits for each evicted pod to be gone. Which pods go is
//! kubectl's rule set, with its words: DaemonSet-managed pods need
//! `--ignore-daemonsets` (and are then left alone), pods with emptyDir
//! volumes need `--delete-emptydir-data`, pods no controller manages need
//! `--force`, mirror (static) pods are left alone.
//!
//! [`select`] decides (pure, tested by tables); [`run`] reads, evicts,
//! waits and prints kubectl's lines: `evicting pod ns/name`, `error when
//! evicting pods/"name" -n "ns" (will retry after 5s): …`, `pod/name
//! evicted`, `node/NAME drained`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use kubus_api::{meta, pod, Kind, ObjectRef, Reason};
use kubus_bus::client::{ClientError, EvictOptions};
use kubus_bus::Client;
use serde_json::Value;
use tokio::time::Instant;

use crate::cli::{NodesArgs, Pick};
use crate::commands::emit;

/// `kubus drain` flags, as kubectl's.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// NODE... or node/NODE...
    #[arg(required = true)]
    pub nodes: Vec<String>,
    /// Leave DaemonSet-managed pods where they are (without it, drain
    /// refuses a node that runs any).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Evict pods with emptyDir volumes too (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Evict pods no controller manages too (nothing replaces them).
    #[arg(long)]
    pub force: bool,
    /// Give up after this long, naming the pods left (0, the default:
    /// wait as long as it takes, as kubectl does).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Seconds each pod gets to stop; negative (the default): the pod's
    /// own terminationGracePeriodSeconds.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Only the pods this label selector picks.
    #[arg(long)]
    pub pod_selector: Option<String>,
    /// none, or client: say what would be done and change nothing.
    #[arg(long, default_value = "none", num_args = 0..=1,
          default_missing_value = "client", require_equals = true)]
    pub dry_run: String,
}

/// kubectl's words for the pods drain will not, or will only, touch.
pub const DAEMON_SET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
pub const DAEMON_SET_WARNING: &str = "ignoring DaemonSet-managed Pods";
pub const LOCAL_STORAGE_FATAL: &str =
    "Pods with local storage (use --delete-emptydir-data to override)";
pub const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
pub const UNMANAGED_FATAL: &str =
    "cannot delete Pods that declare no controller (use --force to override)";
pub const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";

/// The annotation a static pod's mirror carries.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How long drain waits between evictions a budget refused (kubectl's 5 s).
pub const BUDGET_RETRY: Duration = Duration::from_secs(5);
/// How often drain looks whether evicted pods are gone.
const POLL: Duration = Duration::from_secs(1);
/// How often drain says what it still waits for.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Tries of one pod's eviction when the bus or store does not answer.
const TRANSIENT_RETRIES: u32 = 10;

/// What drain's flags allow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub ignore_daemonsets: bool,
    pub delete_emptydir_data: bool,
    pub force: bool,
}

/// What drain does with one pod of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Evicted.
    Evict,
    /// Evicted, with this in the warning line.
    EvictWarned(String),
    /// Left where it is; with this in the warning line when `Some`.
    Skip(Option<String>),
    /// The drain cannot go on (kubectl's error).
    Refuse(String),
}

/// The controller reference of an object: (kind, name).
fn controller_of(obj: &Value) -> Option<(&str, &str)> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            (
                r.get("kind").and_then(Value::as_str).unwrap_or_default(),
                r.get("name").and_then(Value::as_str).unwrap_or_default(),
            )
        })
}

fn has_empty_dir(pod: &Value) -> bool {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|vs| vs.iter().any(|v| v.get("emptyDir").is_some()))
}

/// kubectl's filters, in its order (DaemonSet, mirror, local storage,
/// unmanaged), for one pod. `daemon_set_exists` says whether the
/// DaemonSet controlling it (if one does) still exists: a pod whose
/// DaemonSet is gone is evicted with `--force`, like any orphan.
pub fn fate(pod_obj: &Value, flags: Flags, daemon_set_exists: bool) -> Fate {
    let finished = pod::is_finished(pod_obj);
    let controller = controller_of(pod_obj);
    let mut warned: Option<String> = None;
    // DaemonSet-managed: they would be put back at once
    if let Some(("DaemonSet", name)) = controller {
        if !finished {
            if !daemon_set_exists {
                let why = format!("daemonsets.apps {name:?} not found");
                if !flags.force {
                    return Fate::Refuse(why);
                }
                warned = Some(why);
            } else if !flags.ignore_daemonsets {
                return Fate::Refuse(DAEMON_SET_FATAL.into());
            } else {
                return Fate::Skip(Some(DAEMON_SET_WARNING.into()));
            }
        }
    }
    // a static pod's mirror: its node runs it whatever the API says
    if meta::annotations(pod_obj).contains_key(MIRROR_ANNOTATION) {
        return Fate::Skip(None);
    }
    if has_empty_dir(pod_obj) && !finished {
        if !flags.delete_emptydir_data {
            return Fate::Refuse(LOCAL_STORAGE_FATAL.into());
        }
        warned = Some(LOCAL_STORAGE_WARNING.into());
    }
    if controller.is_none() && !finished {
        if !flags.force {
            return Fate::Refuse(UNMANAGED_FATAL.into());
        }
        warned = Some(UNMANAGED_WARNING.into());
    }
    match warned {
        // kubectl keeps only the last filter's warning; so do we
        Some(w) => Fate::EvictWarned(w),
        None => Fate::Evict,
    }
}

/// What drain will do on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// The pods to evict, in the order given.
    pub evict: Vec<ObjectRef>,
    /// kubectl's warning line (without `Warning: `), empty when none.
    pub warnings: String,
    /// kubectl's errors, one per rule broken, each naming its pods.
    pub errors: Vec<String>,
}

fn pod_name(p: &Value) -> String {
    format!(
        "{}/{}",
        meta::namespace(p).unwrap_or("default"),
        meta::name(p).unwrap_or_default()
    )
}

/// Decide what drain does with `pods` (those of the node): `daemon_sets`
/// are the (namespace, name) of the DaemonSets that exist.
pub fn select(pods: &[Value], flags: Flags, daemon_sets: &BTreeSet<(String, String)>) -> Selection {
    let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut evict = Vec::new();
    for p in pods {
        let ns = meta::namespace(p).unwrap_or("default");
        let exists = match controller_of(p) {
            Some(("DaemonSet", name)) => daemon_sets.contains(&(ns.to_string(), name.to_string())),
            _ => true,
        };
        let name = meta::name(p).unwrap_or_default();
        match fate(p, flags, exists) {
            Fate::Evict => evict.push(ObjectRef::new(Kind::Pod, Some(ns), name)),
            Fate::EvictWarned(w) => {
                warnings.entry(w).or_default().push(pod_name(p));
                evict.push(ObjectRef::new(Kind::Pod, Some(ns), name));
            }
            Fate::Skip(Some(w)) => warnings.entry(w).or_default().push(pod_name(p)),
            Fate::Skip(None) => {}
            Fate::Refuse(e) => errors.entry(e).or_default().push(pod_name(p)),
        }
    }
    let join = |(msg, pods): (String, Vec<String>)| format!("{msg}: {}", pods.join(", "));
    Selection {
        evict,
        warnings: warnings
            .into_iter()
            .map(join)
            .collect::<Vec<_>>()
            .join("; "),
        errors: errors
            .into_iter()
            .map(|(msg, pods)| {
                // kubectl's wording: every error starts "cannot delete"
                let msg = if msg.to_ascii_lowercase().starts_with("cannot delete") {
                    msg
                } else {
                    format!("cannot delete {msg}")
                };
                join((msg, pods))
            })
            .collect(),
    }
}

/// Several errors as Kubernetes' aggregate prints them: one alone, more
/// as `[a, b]`.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A duration as Go (and so kubectl) prints one: `8s`, `5m0s`, `1h0m0s`,
/// `500ms`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.subsec_millis()),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60),
    }
}

/// `kubus drain NODE...`: each node in turn; a node that cannot be
/// drained is reported and the others are still drained, as kubectl does.
pub async fn run(client: &Client, args: DrainArgs) -> anyhow::Result<()> {
    let timeout = crate::wait::parse_duration(&args.timeout).map_err(anyhow::Error::msg)?;
    let dry_run = match args.dry_run.as_str() {
        "none" => false,
        "client" => true,
        "server" => bail!("--dry-run=server is not supported by kubus drain; use --dry-run=client"),
        other => bail!("invalid --dry-run {other:?}: use none or client"),
    };
    let names: Vec<String> = args
        .nodes
        .iter()
        .map(|n| n.strip_prefix("node/").unwrap_or(n).to_string())
        .collect();
    let mut pending = Vec::new();
    let mut last = None;
    for node in &names {
        if let Err(e) = drain_one(client, node, &args, dry_run, timeout).await {
            eprintln!(
                "error: unable to drain node {node:?} due to error: {e:#}, continuing command..."
            );
            pending.push(node.clone());
            last = Some(e);
        }
    }
    match last {
        None => Ok(()),
        Some(e) => {
            eprintln!("There are pending nodes to be drained:");
            for n in &pending {
                eprintln!(" {n}");
            }
            Err(e)
        }
    }
}

async fn drain_one(
    client: &Client,
    node: &str,
    args: &DrainArgs,
    dry_run: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    // the node must exist; its name in errors as kubectl's
    client
        .get(Kind::Node, None, node)
        .await
        .map_err(|e| match e.reason() {
            Some(Reason::NotFound) => anyhow!("nodes {node:?} not found"),
            _ => anyhow!("{e}"),
        })?;
    let suffix = if dry_run { " (dry run)" } else { "" };
    if dry_run {
        emit(&format!("node/{node} cordoned{suffix}\n"));
    } else {
        let cordon = NodesArgs {
            nodes: vec![node.to_string()],
            pick: Pick {
                namespace: "default".into(),
                selector: None,
                all: false,
            },
        };
        crate::verbs::run_cordon(client, cordon, true).await?;
    }
    let field = format!("spec.nodeName={node}");
    let (pods, _) = client
        .list(Kind::Pod, None, args.pod_selector.as_deref(), Some(&field))
        .await?;
    let daemon_sets = if pods
        .iter()
        .any(|p| matches!(controller_of(p), Some(("DaemonSet", _))))
    {
        let (sets, _) = client.list(Kind::DaemonSet, None, None, None).await?;
        sets.iter()
            .map(|s| {
                (
                    meta::namespace(s).unwrap_or("default").to_string(),
                    meta::name(s).unwrap_or_default().to_string(),
                )
            })
            .collect()
    } else {
        BTreeSet::new()
    };
    let flags = Flags {
        ignore_daemonsets: args.ignore_daemonsets,
        delete_emptydir_data: args.delete_emptydir_data,
        force: args.force,
    };
    let selection = select(&pods, flags, &daemon_sets);
    if !selection.warnings.is_empty() {
        eprintln!("Warning: {}", selection.warnings);
    }
    if !selection.errors.is_empty() {
        bail!("{}", aggregate(&selection.errors));
    }
    if dry_run {
        for p in &selection.evict {
            emit(&format!(
                "evicting pod {}/{}{suffix}\n",
                p.namespace.as_deref().unwrap_or("default"),
                p.name
            ));
        }
    } else {
        let uids: BTreeMap<ObjectRef, String> = pods
            .iter()
            .filter_map(|p| Some((meta::object_ref(p)?, meta::uid(p)?.to_string())))
            .collect();
        let grace = (args.grace_period >= 0).then_some(args.grace_period);
        evict_all(client, node, &selection.evict, &uids, grace, timeout).await?;
    }
    emit(&format!("node/{node} drained{suffix}\n"));
    Ok(())
}

/// Where one pod's eviction stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// To be asked (again) at this time.
    Ask { at: Instant, transient_left: u32 },
    /// Granted: waiting for the pod to be gone.
    Going,
    /// Gone.
    Done,
    /// Refused for good.
    Failed,
}

/// Whether retrying the same request soon may succeed: the bus or the
/// store did not answer (a refusal is not transient).
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Api(a) => a.reason == Reason::Unavailable,
        ClientError::NoResponders { .. } | ClientError::Timeout { .. } | ClientError::Nats(_) => {
            true
        }
        ClientError::Codec(_) | ClientError::UnexpectedReply { .. } => false,
    }
}

/// Evict `pods` (all at once, as kubectl does) and wait until each is gone
/// from `node`; a budget's refusal is asked again every [`BUDGET_RETRY`].
/// `timeout` zero: no limit.
async fn evict_all(
    client: &Client,
    node: &str,
    pods: &[ObjectRef],
    uids: &BTreeMap<ObjectRef, String>,
    grace_period_seconds: Option<i64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = (!timeout.is_zero()).then(|| started + timeout);
    let mut steps: Vec<Step> = pods
        .iter()
        .map(|_| Step::Ask {
            at: started,
            transient_left: TRANSIENT_RETRIES,
        })
        .collect();
    let mut errors: Vec<String> = Vec::new();
    let mut said_at = started;
    let field = format!("spec.nodeName={node}");
    let progress = crate::progress::Progress::bar(pods.len(), "pods evicted and gone");
    loop {
        let now = Instant::now();
        for (p, step) in pods.iter().zip(steps.iter_mut()) {
            let Step::Ask { at, transient_left } = *step else {
                continue;
            };
            if at > now {
                continue;
            }
            let ns = p.namespace.as_deref().unwrap_or("default");
            progress.say(&format!("evicting pod {ns}/{}\n", p.name));
            let options = EvictOptions {
                grace_period_seconds,
                uid: uids.get(p).cloned(),
                ..EvictOptions::default()
            };
            *step = match client.evict(p, options).await {
                Ok(_) => Step::Going,
                // gone already, or replaced by another of its name
                Err(e) if matches!(e.reason(), Some(Reason::NotFound | Reason::Conflict)) => {
                    progress.say(&format!("pod/{} evicted\n", p.name));
                    Step::Done
                }
                Err(ClientError::Api(e)) if e.reason == Reason::TooManyRequests => {
                    progress.warn(&format!(
                        "error when evicting pods/{:?} -n {ns:?} (will retry after {}s): {}",
                        p.name,
                        BUDGET_RETRY.as_secs(),
                        e.message
                    ));
                    Step::Ask {
                        at: Instant::now() + BUDGET_RETRY,
                        transient_left,
                    }
                }
                Err(e) if transient(&e) && transient_left > 0 => {
                    progress.warn(&format!(
                        "error when evicting pods/{:?} -n {ns:?} (will retry after {}s): {e}",
                        p.name,
                        POLL.as_secs()
                    ));
                    Step::Ask {
                        at: Instant::now() + POLL,
                        transient_left: transient_left - 1,
                    }
                }
                Err(e) => {
                    let text = match &e {
                        ClientError::Api(a) => a.message.clone(),
                        other => other.to_string(),
                    };
                    errors.push(format!(
                        "error when evicting pods/{:?} -n {ns:?}: {text}",
                        p.name
                    ));
                    Step::Failed
                }
            };
        }
        if steps.contains(&Step::Going) {
            match client.list(Kind::Pod, None, None, Some(&field)).await {
                Ok((here, _)) => {
                    let present: BTreeSet<(Option<ObjectRef>, Option<&str>)> = here
                        .iter()
                        .map(|p| (meta::object_ref(p), meta::uid(p)))
                        .collect();
                    for (p, step) in pods.iter().zip(steps.iter_mut()) {
                        let uid = uids.get(p).map(String::as_str);
                        if *step == Step::Going && !present.contains(&(Some(p.clone()), uid)) {
                            progress.say(&format!("pod/{} evicted\n", p.name));
                            *step = Step::Done;
                        }
                    }
                }
                // looked at again on the next turn
                Err(e) => progress.warn(&format!(
                    "warning: cannot list the pods of node {node}: {e}"
                )),
            }
        }
        progress.set(steps.iter().filter(|s| **s == Step::Done).count());
        let left: Vec<(&ObjectRef, &Step)> = pods
            .iter()
            .zip(steps.iter())
            .filter(|(_, s)| matches!(s, Step::Ask { .. } | Step::Going))
            .collect();
        if left.is_empty() {
            break;
        }
        let describe = |left: &[(&ObjectRef, &Step)]| {
            left.iter()
                .map(|(p, s)| {
                    let ns = p.namespace.as_deref().unwrap_or("default");
                    let what = match s {
                        Step::Going => "terminating",
                        _ => "waiting to be evicted",
                    };
                    format!("{ns}/{} ({what})", p.name)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            bail!(
                "drain did not complete within {}: {} pod(s) left on node {node}: {}",
                go_duration(timeout),
                left.len(),
                describe(&left)
            );
        }
        if now.duration_since(said_at) >= PROGRESS_EVERY {
            said_at = now;
            progress.warn(&format!(
                "draining node/{node}: {} pod(s) left after {}s: {}",
                left.len(),
                now.duration_since(started).as_secs(),
                describe(&left)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", aggregate(&errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, owner: Option<&str>, phase: &str) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "w1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase}});
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "owner", "controller": true, "uid": "u"}]);
        }
        p
    }

    fn with_empty_dir(mut p: Value) -> Value {
        p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        p
    }

    fn mirror(mut p: Value) -> Value {
        p["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "x"});
        p
    }

    #[test]
    fn fates() {
        let none = Flags::default();
        let ds = Flags {
            ignore_daemonsets: true,
            ..none
        };
        let empty = Flags {
            delete_emptydir_data: true,
            ..none
        };
        let force = Flags {
            force: true,
            ..none
        };
        let evict = Fate::Evict;
        let refuse = |s: &str| Fate::Refuse(s.to_string());
        let warned = |s: &str| Fate::EvictWarned(s.to_string());
        let rs = pod("web", Some("ReplicaSet"), "Running");
        let daemon = pod("agent", Some("DaemonSet"), "Running");
        let bare = pod("bare", None, "Running");
        // (what, pod, flags, DaemonSet exists, fate)
        let table = [
            ("a ReplicaSet's pod", rs.clone(), none, true, evict.clone()),
            (
                "a daemon pod",
                daemon.clone(),
                none,
                true,
                refuse(DAEMON_SET_FATAL),
            ),
            (
                "a daemon pod, ignored",
                daemon.clone(),
                ds,
                true,
                Fate::Skip(Some(DAEMON_SET_WARNING.into())),
            ),
            (
                "a daemon pod whose DaemonSet is gone",
                daemon.clone(),
                ds,
                false,
                refuse("daemonsets.apps \"owner\" not found"),
            ),
            (
                "… with --force",
                daemon.clone(),
                force,
                false,
                warned("daemonsets.apps \"owner\" not found"),
            ),
            (
                "a finished daemon pod",
                pod("agent", Some("DaemonSet"), "Succeeded"),
                none,
                true,
                evict.clone(),
            ),
            (
                "a mirror pod",
                mirror(bare.clone()),
                none,
                true,
                Fate::Skip(None),
            ),
            (
                "emptyDir",
                with_empty_dir(rs.clone()),
                none,
                true,
                refuse(LOCAL_STORAGE_FATAL),
            ),
            (
                "emptyDir, allowed",
                with_empty_dir(rs.clone()),
                empty,
                true,
                warned(LOCAL_STORAGE_WARNING),
            ),
            (
                "unmanaged",
                bare.clone(),
                none,
                true,
                refuse(UNMANAGED_FATAL),
            ),
            (
                "unmanaged, forced",
                bare.clone(),
                force,
                true,
                warned(UNMANAGED_WARNING),
            ),
            (
                "unmanaged and finished",
                pod("done", None, "Failed"),
                none,
                true,
                evict.clone(),
            ),
            (
                "emptyDir allowed, unmanaged forced: the last warning",
                with_empty_dir(bare.clone()),
                Flags {
                    delete_emptydir_data: true,
                    force: true,
                    ..none
                },
                true,
                warned(UNMANAGED_WARNING),
            ),
            (
                "emptyDir, unmanaged: the first refusal",
                with_empty_dir(bare),
                none,
                true,
                refuse(LOCAL_STORAGE_FATAL),
            ),
        ];
        for (what, p, flags, exists, want) in table {
            assert_eq!(fate(&p, flags, exists), want, "{what}");
        }
    }

    #[test]
    fn durations_as_go_prints_them() {
        let table = [(8, "8s"), (300, "5m0s"), (3_725, "1h2m5s"), (0, "0ms")];
        for (secs, want) in table {
            assert_eq!(go_duration(Duration::from_secs(secs)), want);
        }
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn selections_speak_kubectl() {
        let pods = [
            pod("web-1", Some("ReplicaSet"), "Running"),
            pod("agent-x", Some("DaemonSet"), "Running"),
            pod("agent-y", Some("DaemonSet"), "Running"),
            pod("bare", None, "Running"),
        ];
        let sets: BTreeSet<(String, String)> =
            [("default".to_string(), "owner".to_string())].into();
        let s = select(&pods, Flags::default(), &sets);
        assert_eq!(
            s.errors,
            vec![
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): \
                 default/agent-x, default/agent-y",
                "cannot delete Pods that declare no controller (use --force to override): default/bare",
            ]
        );
        assert_eq!(
            aggregate(&s.errors),
            format!("[{}, {}]", s.errors[0], s.errors[1])
        );
        let s = select(
            &pods,
            Flags {
                ignore_daemonsets: true,
                force: true,
                ..Flags::default()
            },
            &sets,
        );
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(
            s.warnings,
            "deleting Pods that declare no controller: default/bare; \
             ignoring DaemonSet-managed Pods: default/agent-x, default/agent-y"
        );
        let names: Vec<&str> = s.evict.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web-1", "bare"]);
    }
}
