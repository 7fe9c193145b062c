//! Pod networks for the process runtime: each pod (but `hostNetwork` ones)
//! gets a network namespace of its own on the node's bridge, set up with
//! the CNI `loopback`, `bridge` and `host-local` plugins (Debian's
//! containernetworking-plugins), so it has its own IP and its own ports —
//! two replicas listening on one port both run — and a resolv.conf with
//! the cluster DNS (`ip netns exec` binds `/etc/netns/<ns>/resolv.conf`
//! over `/etc/resolv.conf` for the processes it starts).
//!
//! Needs root. Namespaces are named `kp<node hash>-<pod uid>`; the process
//! runtime does not re-adopt its processes after an agent restart, so an
//! agent removes every namespace of its node when it starts
//! ([`PodNetwork::remove_all`]).
//!
//! What the plugins are asked is decided in [`net_conf`] and [`resolv_conf`]
//! (pure); the rest runs `ip` and the plugins, each bounded by
//! [`COMMAND_TIMEOUT`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use super::runtime::RuntimeError;

/// Bound on one `ip` or plugin run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Where Debian puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// How a node's pod network is made.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    /// The pods' range (`--pod-cidr`).
    pub cidr: String,
    /// The service range, routed from every pod to the node.
    pub service_cidr: String,
    /// The cluster DNS address pods of `ClusterFirst` use.
    pub cluster_dns: Option<String>,
    /// The bridge, and the prefix of this node's namespace names.
    pub bridge: String,
    /// host-local's state.
    pub ipam_dir: PathBuf,
    cni_bin: PathBuf,
    /// The namespace (and address) of each pod that has one.
    pods: std::sync::Arc<Mutex<HashMap<String, (String, String)>>>,
}

/// A short stable hash (FNV-1a) of `s`, as 8 hex digits.
fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The CNI network configuration of the bridge plugin for a node.
pub fn net_conf(bridge: &str, cidr: &str, service_cidr: &str, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": bridge,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": ipam_dir.display().to_string(),
            "ranges": [[{"subnet": cidr}]],
            "routes": [{"dst": cidr}, {"dst": service_cidr}],
        },
    })
}

/// Whether two ranges share an address.
fn overlap(a: &ipnet::Ipv4Net, b: &ipnet::Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The route of `ip -o route show table local` output that makes part of
/// `pods` local to the loopback (so packets for those pods never reach the
/// bridge), if one does.
pub fn local_route_over(table: &str, pods: &ipnet::Ipv4Net) -> Option<String> {
    table.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["local", dst, "dev", "lo", ..] = words.as_slice() else {
            return None;
        };
        let net = dst.parse::<ipnet::Ipv4Net>().ok().or_else(|| {
            dst.parse::<std::net::Ipv4Addr>()
                .ok()
                .map(ipnet::Ipv4Net::from)
        })?;
        overlap(&net, pods).then(|| line.trim().to_string())
    })
}

/// A resolv.conf for a pod, or None for the node's own.
pub fn resolv_conf(pod: &Value, cluster_dns: Option<&str>) -> Option<String> {
    let dns = kubus_api::dns::pod_dns(pod, cluster_dns)?;
    let mut out = String::new();
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
    stdin: Option<&[u8]>,
) -> Result<String, RuntimeError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::Runtime(format!("cannot run {program}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await?;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| RuntimeError::Runtime(format!("{program} {} timed out", args.join(" "))))??;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Err(RuntimeError::Runtime(format!(
            "{program} {}: {}",
            args.join(" "),
            text.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Connect to `port` on the loopback of the network namespace at
/// `netns` (a pod's own 127.0.0.1, as kubectl's port-forward does), from a
/// thread of its own that enters the namespace and ends with it; the
/// socket stays in the namespace.
pub async fn connect_in(
    netns: PathBuf,
    port: u16,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kubus-netns".into())
        .spawn(move || {
            let connected = (|| {
                let ns = std::fs::File::open(&netns)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            })();
            let _ = tx.send(connected);
        })?;
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("the namespace thread ended"))??;
    tokio::net::TcpStream::from_std(s)
}

impl PodNetwork {
    /// The pod network of node `node` (state under `root`), when this
    /// machine can make one: root, `ip`, and the CNI plugins. None, with
    /// the reason, otherwise.
    pub fn detect(
        node: &str,
        root: &Path,
        cidr: &str,
        service_cidr: &str,
        cluster_dns: Option<String>,
    ) -> Result<PodNetwork, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root".into());
        }
        let pods: ipnet::Ipv4Net = cidr.parse().map_err(|_| {
            format!("pod range {cidr:?}: expected an IPv4 CIDR such as 10.89.0.0/16")
        })?;
        if let Ok(services) = service_cidr.parse::<ipnet::Ipv4Net>() {
            if overlap(&pods, &services) {
                return Err(format!(
                    "pod range {cidr} overlaps the service range {service_cidr}; give --pod-cidr a range of its own"
                ));
            }
        }
        let local = std::process::Command::new("ip")
            .args(["-o", "route", "show", "table", "local"])
            .output()
            .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
        if let Some(route) = local_route_over(&String::from_utf8_lossy(&local.stdout), &pods) {
            return Err(format!(
                "pod range {cidr} overlaps the local route {route:?} (another cluster's service range on this machine?): its pods would be unreachable; give --pod-cidr a free range or remove the route (ip route del local {} dev lo)",
                route.split_whitespace().nth(1).unwrap_or_default()
            ));
        }
        let cni_bin = PathBuf::from(CNI_BIN_DIR);
        for plugin in ["bridge", "host-local", "loopback"] {
            if !cni_bin.join(plugin).is_file() {
                return Err(format!(
                    "the CNI plugin {}/{plugin} is missing (containernetworking-plugins)",
                    cni_bin.display()
                ));
            }
        }
        Ok(PodNetwork {
            cidr: cidr.to_string(),
            service_cidr: service_cidr.to_string(),
            cluster_dns,
            // one bridge per node and range: 15 characters at most
            bridge: format!("kp{}", short_hash(&format!("{node}/{cidr}"))),
            ipam_dir: root.join("ipam"),
            cni_bin,
            pods: std::sync::Arc::default(),
        })
    }

    fn netns(&self, uid: &str) -> String {
        format!("{}-{uid}", self.bridge)
    }

    /// The namespace file of a pod that has one.
    pub fn namespace_path(&self, uid: &str) -> Option<PathBuf> {
        self.namespace_of(uid)
            .map(|ns| Path::new("/run/netns").join(ns))
    }

    /// The namespace of a pod that has one.
    pub fn namespace_of(&self, uid: &str) -> Option<String> {
        self.pods.lock().ok()?.get(uid).map(|(ns, _)| ns.clone())
    }

    fn cni_env(&self, command: &str, uid: &str, netns: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", uid.to_string()),
            ("CNI_NETNS", format!("/run/netns/{netns}")),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", self.cni_bin.display().to_string()),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
        ]
    }

    /// Give pod `uid` its namespace and address (None for a pod on the
    /// node's network).
    pub async fn add(&self, uid: &str, pod: &Value) -> Result<Option<String>, RuntimeError> {
        if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
            return Ok(None);
        }
        if let Some((_, ip)) = self.pods.lock().ok().and_then(|p| p.get(uid).cloned()) {
            return Ok(Some(ip));
        }
        let ns = self.netns(uid);
        // a half-made one of an earlier try goes first
        self.remove(uid).await;
        run("ip", &["netns", "add", &ns], &[], None).await?;
        let etc = PathBuf::from("/etc/netns").join(&ns);
        if let Some(text) = resolv_conf(pod, self.cluster_dns.as_deref()) {
            std::fs::create_dir_all(&etc)?;
            std::fs::write(etc.join("resolv.conf"), text)?;
        }
        let lo = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).to_string();
        let bridge =
            net_conf(&self.bridge, &self.cidr, &self.service_cidr, &self.ipam_dir).to_string();
        let plugin = |name: &str| self.cni_bin.join(name).display().to_string();
        run(
            &plugin("loopback"),
            &[],
            &self.cni_env("ADD", uid, &ns),
            Some(lo.as_bytes()),
        )
        .await?;
        let out = run(
            &plugin("bridge"),
            &[],
            &self.cni_env("ADD", uid, &ns),
            Some(bridge.as_bytes()),
        )
        .await?;
        let result: Value = serde_json::from_str(&out)
            .map_err(|e| RuntimeError::Runtime(format!("the bridge plugin's answer: {e}")))?;
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .map(str::to_string)
            .ok_or_else(|| {
                RuntimeError::Runtime(format!("the bridge plugin gave no address: {out}"))
            })?;
        if let Ok(mut p) = self.pods.lock() {
            p.insert(uid.to_string(), (ns.clone(), ip.clone()));
        }
        debug!(pod_uid = uid, netns = %ns, %ip, "pod network ready");
        Ok(Some(ip))
    }

    /// Release pod `uid`'s address and namespace (nothing when it has none).
    pub async fn remove(&self, uid: &str) {
        let ns = self.netns(uid);
        if let Ok(mut p) = self.pods.lock() {
            p.remove(uid);
        }
        if !Path::new("/run/netns").join(&ns).exists() {
            return;
        }
        let bridge =
            net_conf(&self.bridge, &self.cidr, &self.service_cidr, &self.ipam_dir).to_string();
        let plugin = self.cni_bin.join("bridge").display().to_string();
        if let Err(e) = run(
            &plugin,
            &[],
            &self.cni_env("DEL", uid, &ns),
            Some(bridge.as_bytes()),
        )
        .await
        {
            warn!(netns = %ns, error = %e, "CNI DEL failed");
        }
        if let Err(e) = run("ip", &["netns", "delete", &ns], &[], None).await {
            warn!(netns = %ns, error = %e, "cannot delete the pod's network namespace");
        }
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&ns));
    }

    /// Remove every namespace of this node's pods (an earlier run's: this
    /// runtime starts its pods afresh after a restart).
    pub async fn remove_all(&self) {
        let prefix = format!("{}-", self.bridge);
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(uid) = name.strip_prefix(&prefix) {
                self.remove(uid).await;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(removed, "removed the pod networks an earlier run left");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_conf_routes_the_service_range_and_resolv_conf_follows_dns_policy() {
        let conf = net_conf(
            "kp1234abcd",
            "10.89.0.0/16",
            "10.43.0.0/16",
            Path::new("/d/ipam"),
        );
        assert_eq!(conf["ipam"]["routes"][1]["dst"], "10.43.0.0/16");
        assert_eq!(conf["ipam"]["ranges"][0][0]["subnet"], "10.89.0.0/16");
        let pod = json!({"metadata": {"namespace": "shop"}, "spec": {}});
        let text = resolv_conf(&pod, Some("10.43.0.10")).expect("cluster first");
        assert_eq!(
            text,
            "nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert!(resolv_conf(
            &json!({"spec": {"dnsPolicy": "Default"}}),
            Some("10.43.0.10")
        )
        .is_none());
        assert_eq!(short_hash("a").len(), 8);
        let table = "local 10.43.0.0/16 dev lo scope host \nlocal 10.231.0.1 dev kp1 proto kernel scope host src 10.231.0.1 \nlocal 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1 \n";
        let pods = |c: &str| c.parse::<ipnet::Ipv4Net>().expect("cidr");
        assert_eq!(local_route_over(table, &pods("10.231.0.0/16")), None);
        assert_eq!(
            local_route_over(table, &pods("10.43.128.0/17")).as_deref(),
            Some("local 10.43.0.0/16 dev lo scope host")
        );
        assert!(local_route_over(table, &pods("10.0.0.0/8")).is_some());
        assert_ne!(
            short_hash("node-1/10.88.0.0/16"),
            short_hash("node-2/10.88.0.0/16")
        );
    }
}
