//! The service proxy of a worker node: an actor that watches Services and
//! EndpointSlices through the shared informers, keeps the node's
//! forwarding [`table`] and a listener per frontend (cluster IP, node
//! port, load balancer address), and forwards TCP and UDP to the
//! Service's ready endpoints in userspace (tokio), falling back to
//! serving-terminating ones when none is ready.
//!
//! - TCP: each connection goes to one endpoint (round robin, or the
//!   client's sticky one under `sessionAffinity: ClientIP`); a refused or
//!   timed-out connect is retried on the next endpoint, up to
//!   [`CONNECT_ATTEMPTS_MAX`] — a pod that just died costs a retry, not
//!   a failed request, unlike kube-proxy's iptables mode.
//! - UDP: one session per client address, idle for at most [`UDP_IDLE`];
//!   a session whose endpoint left the table is closed at once, so DNS
//!   never keeps going to a dead pod (the stale-conntrack failure users
//!   of kube-proxy report).
//!
//! Cluster IPs are bound directly: outside 127.0.0.0/8 the proxy first
//! makes the service range local to the node (`ip route replace local
//! <range> dev lo`, as root), so every address in it can be bound and is
//! reached from the host and, through the CNI route to the range, from
//! pods. Each address is bound exclusively ([`bound_socket`]): a second
//! node of the cluster on the same machine finds it taken, says so, and
//! leaves it to the first (which serves the same table); a second cluster
//! with the same range is refused the same way rather than silently
//! splitting the traffic.

pub mod table;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use kubus_api::service::ServiceNet;
use kubus_api::Kind;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::runtime::informers::{Changed, Informers, Shared};
use table::{Backend, Frontend, Proto, Table};

/// Endpoints one connection tries before it is given up.
pub const CONNECT_ATTEMPTS_MAX: usize = 3;
/// Bound on one connect to an endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most TCP connections the proxy forwards at once.
pub const CONNECTIONS_MAX: usize = 16_384;
/// A UDP session with no packet either way for this long is closed.
pub const UDP_IDLE: Duration = Duration::from_secs(30);
/// Most UDP sessions of one frontend.
pub const UDP_SESSIONS_MAX: usize = 4096;
/// Largest UDP datagram forwarded.
const UDP_DATAGRAM_MAX: usize = 65_535;
/// Most sticky clients remembered (ClientIP affinity).
const AFFINITY_ENTRIES_MAX: usize = 65_536;
/// Each direction's copy buffer (tokio's default is 8 KiB: a long stream
/// then costs a syscall pair per 8 KiB).
const COPY_BUFFER_BYTES: usize = 64 * 1024;
/// Pending TCP connections per listener.
const LISTEN_BACKLOG: i32 = 1024;

/// The order in which one connection tries endpoints: the client's sticky
/// endpoint if it is still usable, else the round-robin pick, then the
/// others in turn; at most [`CONNECT_ATTEMPTS_MAX`].
pub fn connect_order(
    usable: &[SocketAddr],
    sticky: Option<SocketAddr>,
    turn: usize,
) -> Vec<SocketAddr> {
    if usable.is_empty() {
        return Vec::new();
    }
    let start = sticky
        .and_then(|s| usable.iter().position(|u| *u == s))
        .unwrap_or(turn % usable.len());
    (0..usable.len().min(CONNECT_ATTEMPTS_MAX))
        .map(|i| usable[(start + i) % usable.len()])
        .collect()
}

/// Figures of one proxy, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub connect_retries: AtomicU64,
    pub connect_failures: AtomicU64,
    pub udp_sessions: AtomicU64,
    /// Table rebuilds.
    pub syncs: AtomicU64,
}

/// What the listener tasks share with the actor.
struct State {
    table: RwLock<Arc<Table>>,
    affinity: Mutex<HashMap<(Frontend, IpAddr), (SocketAddr, Instant)>>,
    turn: AtomicUsize,
    connections: Arc<Semaphore>,
    stats: Arc<Stats>,
}

impl State {
    fn backend(&self, f: &Frontend) -> Option<Backend> {
        let table = self.table.read().map(|t| t.clone()).ok()?;
        table.get(f).cloned()
    }

    fn order(&self, f: &Frontend, b: &Backend, client: IpAddr) -> Vec<SocketAddr> {
        let sticky = b.affinity.and_then(|ttl| {
            let map = self.affinity.lock().ok()?;
            map.get(&(*f, client))
                .filter(|(_, at)| at.elapsed() < ttl)
                .map(|(e, _)| *e)
        });
        connect_order(
            b.usable(),
            sticky,
            self.turn.fetch_add(1, Ordering::Relaxed),
        )
    }

    fn stick(&self, f: &Frontend, b: &Backend, client: IpAddr, endpoint: SocketAddr) {
        if b.affinity.is_none() {
            return;
        }
        if let Ok(mut map) = self.affinity.lock() {
            if map.len() >= AFFINITY_ENTRIES_MAX {
                let ttl = b.affinity.unwrap_or_default();
                map.retain(|_, (_, at)| at.elapsed() < ttl);
                if map.len() >= AFFINITY_ENTRIES_MAX {
                    map.clear();
                }
            }
            map.insert((*f, client), (endpoint, Instant::now()));
        }
    }
}

/// What the proxy and cluster DNS of a node read: the process's shared
/// Service and EndpointSlice caches, subscribed together.
#[derive(Clone)]
pub struct ServiceCaches {
    services: Shared,
    slices: Shared,
    informers: Informers,
}

impl ServiceCaches {
    pub fn new(informers: &Informers) -> ServiceCaches {
        ServiceCaches {
            services: informers.shared(Kind::Service),
            slices: informers.shared(Kind::EndpointSlice),
            informers: informers.clone(),
        }
    }

    /// Send `to` every change of either kind.
    pub fn subscribe(&self, to: Recipient<Changed>) {
        self.informers.subscribe(Kind::Service, to.clone());
        self.informers.subscribe(Kind::EndpointSlice, to);
    }

    /// `f` of every Service and every EndpointSlice, as cached now.
    pub fn read<T>(&self, f: impl FnOnce(&[&serde_json::Value], &[&serde_json::Value]) -> T) -> T {
        let services = self.services.read();
        let slices = self.slices.read();
        let svcs: Vec<&serde_json::Value> = services.cache.values().collect();
        let sls: Vec<&serde_json::Value> = slices.cache.values().collect();
        f(&svcs, &sls)
    }
}

/// The proxy actor of one node.
pub struct ServiceProxy {
    node: String,
    node_ips: Vec<IpAddr>,
    caches: ServiceCaches,
    state: Arc<State>,
    listeners: HashMap<Frontend, JoinHandle<()>>,
    /// Frontends whose bind failed (warned once each).
    failed: HashSet<Frontend>,
    sync_scheduled: bool,
    /// The service range made local here, unmade when the proxy goes.
    _local: Option<LocalRange>,
}

impl ServiceProxy {
    /// A proxy for node `node` (addresses `node_ips`) of a cluster with
    /// service range `net`: makes the range local to the node when it can.
    pub fn new(node: &str, node_ips: Vec<IpAddr>, net: &ServiceNet, informers: &Informers) -> Self {
        let local = make_range_local(net);
        ServiceProxy {
            node: node.to_string(),
            node_ips,
            caches: ServiceCaches::new(informers),
            state: Arc::new(State {
                table: RwLock::new(Arc::new(Table::new())),
                affinity: Mutex::new(HashMap::new()),
                turn: AtomicUsize::new(0),
                connections: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
                stats: Arc::new(Stats::default()),
            }),
            listeners: HashMap::new(),
            failed: HashSet::new(),
            sync_scheduled: false,
            _local: local,
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.state.stats.clone()
    }

    /// Rebuild the table from the caches and start or stop listeners.
    fn sync(&mut self) {
        let table = self
            .caches
            .read(|svcs, sls| table::build(svcs, sls, &self.node, &self.node_ips));
        self.state.stats.syncs.fetch_add(1, Ordering::Relaxed);
        let wanted: HashSet<Frontend> = table.keys().copied().collect();
        if let Ok(mut t) = self.state.table.write() {
            *t = Arc::new(table);
        }
        self.listeners.retain(|f, task| {
            let keep = wanted.contains(f);
            if !keep {
                // open connections finish on their own
                task.abort();
                debug!(frontend = %f.addr, "listener stopped");
            }
            keep
        });
        self.failed.retain(|f| wanted.contains(f));
        for f in wanted {
            if self.listeners.contains_key(&f) {
                continue;
            }
            match listen(f, self.state.clone()) {
                Ok(task) => {
                    if self.failed.remove(&f) {
                        info!(frontend = %f.addr, proto = ?f.proto, "listening now");
                    }
                    self.listeners.insert(f, task);
                }
                Err(e) => {
                    if self.failed.insert(f) {
                        warn!(frontend = %f.addr, proto = ?f.proto, error = %e, "cannot listen; the service is not reachable here");
                    }
                }
            }
        }
    }
}

impl Actor for ServiceProxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.caches.subscribe(ctx.address().recipient());
        // binds that failed (an address not yet local, a port in use) are
        // tried again now and then (warned about once: another proxy on the
        // same machine may hold the port for good)
        ctx.run_interval(Duration::from_secs(10), |this, _| {
            if !this.failed.is_empty() {
                this.sync();
            }
        });
        info!(node = %self.node, "service proxy started");
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for (_, task) in self.listeners.drain() {
            task.abort();
        }
    }
}

impl Handler<Changed> for ServiceProxy {
    type Result = ();

    fn handle(&mut self, _: Changed, ctx: &mut Context<Self>) {
        // changes arriving together make one rebuild
        if !self.sync_scheduled {
            self.sync_scheduled = true;
            ctx.run_later(Duration::ZERO, |this, _| {
                this.sync_scheduled = false;
                this.sync();
            });
        }
    }
}

/// Make the service range local to this node, so its addresses can be
/// bound: needed outside 127.0.0.0/8, possible as root. The range stays
/// local while the returned guard lives: a route left behind would swallow
/// traffic for whatever later uses those addresses (another cluster's
/// pods, seen in a test run).
pub fn make_range_local(net: &ServiceNet) -> Option<LocalRange> {
    if net.dns_ip().is_loopback() {
        return None;
    }
    let cidr = net.cidr();
    let out = std::process::Command::new("ip")
        .args(["route", "replace", "local", &cidr, "dev", "lo"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            info!(range = %cidr, "service range is local to this node");
            return Some(LocalRange { cidr });
        }
        Ok(o) => warn!(range = %cidr, error = %String::from_utf8_lossy(&o.stderr).trim(),
            "cannot make the service range local (root needed); cluster IPs are not reachable on this node — use a range in 127.0.0.0/8 (--service-cidr) to run without root"),
        Err(e) => {
            warn!(range = %cidr, error = %e, "cannot run `ip` (iproute2); cluster IPs are not reachable on this node")
        }
    }
    None
}

/// A service range made local by [`make_range_local`]; dropping it removes
/// the route.
#[derive(Debug)]
pub struct LocalRange {
    cidr: String,
}

impl Drop for LocalRange {
    fn drop(&mut self) {
        let out = std::process::Command::new("ip")
            .args(["route", "del", "local", &self.cidr, "dev", "lo"])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                debug!(range = %self.cidr, "service range no longer local")
            }
            Ok(o) => {
                warn!(range = %self.cidr, error = %String::from_utf8_lossy(&o.stderr).trim(), "cannot remove the service range's local route")
            }
            Err(e) => warn!(range = %self.cidr, error = %e, "cannot run `ip` (iproute2)"),
        }
    }
}

/// A socket bound to `addr`, by this process alone. Not `SO_REUSEPORT`:
/// two clusters on one machine with the same service range would each get
/// part of the other's connections and DNS queries, silently (seen: a test
/// cluster's lookups answered NXDOMAIN by another's DNS).
pub fn bound_socket(
    addr: SocketAddr,
    kind: socket2::Type,
    protocol: socket2::Protocol,
) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), kind, Some(protocol))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Bind `f` and start serving it.
fn listen(f: Frontend, state: Arc<State>) -> std::io::Result<JoinHandle<()>> {
    Ok(match f.proto {
        Proto::Tcp => {
            let s = bound_socket(f.addr, socket2::Type::STREAM, socket2::Protocol::TCP)?;
            s.listen(LISTEN_BACKLOG)?;
            tokio::spawn(serve_tcp(TcpListener::from_std(s.into())?, f, state))
        }
        Proto::Udp => {
            let s = bound_socket(f.addr, socket2::Type::DGRAM, socket2::Protocol::UDP)?;
            tokio::spawn(serve_udp(
                Arc::new(UdpSocket::from_std(s.into())?),
                f,
                state,
            ))
        }
    })
}

async fn serve_tcp(listener: TcpListener, f: Frontend, state: Arc<State>) {
    loop {
        let (inbound, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // out of descriptors and the like: wait, do not spin
                warn!(frontend = %f.addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = state.connections.clone().try_acquire_owned() else {
            debug!(frontend = %f.addr, "too many connections; refused");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            forward_tcp(inbound, peer, f, &state).await;
            drop(permit);
        });
    }
}

async fn forward_tcp(mut inbound: TcpStream, peer: SocketAddr, f: Frontend, state: &State) {
    let Some(backend) = state.backend(&f) else {
        return;
    };
    let order = state.order(&f, &backend, peer.ip());
    if order.is_empty() {
        debug!(service = %backend.service, "no endpoints; connection closed");
        return;
    }
    state.stats.connections.fetch_add(1, Ordering::Relaxed);
    let m = &crate::metrics::METRICS;
    let tcp = crate::metrics::protocol("TCP");
    m.proxy_connections.get_or_create(&tcp).inc();
    for (i, endpoint) in order.into_iter().enumerate() {
        if i > 0 {
            state.stats.connect_retries.fetch_add(1, Ordering::Relaxed);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
            Ok(Ok(mut outbound)) => {
                state.stick(&f, &backend, peer.ip(), endpoint);
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let active = m.proxy_active.get_or_create(&tcp).clone();
                active.inc();
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut inbound,
                    &mut outbound,
                    COPY_BUFFER_BYTES,
                    COPY_BUFFER_BYTES,
                )
                .await;
                active.dec();
                return;
            }
            Ok(Err(e)) => {
                debug!(service = %backend.service, %endpoint, error = %e, "connect failed; trying another endpoint")
            }
            Err(_) => {
                debug!(service = %backend.service, %endpoint, "connect timed out; trying another endpoint")
            }
        }
    }
    state.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
    m.proxy_failed.get_or_create(&tcp).inc();
}

/// One UDP client's session: a socket connected to its endpoint.
struct Session {
    upstream: Arc<UdpSocket>,
    endpoint: SocketAddr,
    last: Arc<Mutex<Instant>>,
    pump: JoinHandle<()>,
}

async fn serve_udp(socket: Arc<UdpSocket>, f: Frontend, state: Arc<State>) {
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; UDP_DATAGRAM_MAX];
    let udp = crate::metrics::protocol("UDP");
    let opened = crate::metrics::METRICS
        .proxy_connections
        .get_or_create(&udp)
        .clone();
    let active = crate::metrics::METRICS
        .proxy_active
        .get_or_create(&udp)
        .clone();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((n, client)) = got else { continue };
                let Some(backend) = state.backend(&f) else { continue };
                let usable = backend.usable();
                let alive = sessions.get(&client).is_some_and(|s| usable.contains(&s.endpoint));
                if !alive {
                    if let Some(old) = sessions.remove(&client) {
                        old.pump.abort();
                        active.dec();
                    }
                    if sessions.len() >= UDP_SESSIONS_MAX {
                        continue;
                    }
                    let Some(endpoint) = state.order(&f, &backend, client.ip()).first().copied() else {
                        continue;
                    };
                    match open_session(socket.clone(), client, endpoint).await {
                        Ok(s) => {
                            state.stick(&f, &backend, client.ip(), endpoint);
                            state.stats.udp_sessions.fetch_add(1, Ordering::Relaxed);
                            opened.inc();
                            active.inc();
                            sessions.insert(client, s);
                        }
                        Err(e) => { debug!(%endpoint, error = %e, "cannot open a UDP session"); continue; }
                    }
                }
                if let Some(s) = sessions.get(&client) {
                    if let Ok(mut last) = s.last.lock() { *last = Instant::now(); }
                    let _ = s.upstream.send(&buf[..n]).await;
                }
            }
            _ = sweep.tick() => {
                // idle sessions, and sessions whose endpoint left, end
                let backend = state.backend(&f);
                sessions.retain(|_, s| {
                    let idle = s.last.lock().map(|l| l.elapsed() >= UDP_IDLE).unwrap_or(true);
                    let gone = backend.as_ref().is_none_or(|b| !b.usable().contains(&s.endpoint));
                    let keep = !idle && !gone && !s.pump.is_finished();
                    if !keep { s.pump.abort(); active.dec(); }
                    keep
                });
            }
        }
    }
}

async fn open_session(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    endpoint: SocketAddr,
) -> std::io::Result<Session> {
    let bind: SocketAddr = if endpoint.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let upstream = Arc::new(UdpSocket::bind(bind).await?);
    upstream.connect(endpoint).await?;
    let last = Arc::new(Mutex::new(Instant::now()));
    let pump = {
        let upstream = upstream.clone();
        let last = last.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; UDP_DATAGRAM_MAX];
            loop {
                match tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        if let Ok(mut l) = last.lock() {
                            *l = Instant::now();
                        }
                        let _ = socket.send_to(&buf[..n], client).await;
                    }
                    // refused (no one listens any more) or idle: the session ends
                    _ => return,
                }
            }
        })
    };
    Ok(Session {
        upstream,
        endpoint,
        last,
        pump,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn connect_order_starts_sticky_or_round_robin_and_is_bounded() {
        let eps = [
            sa("10.0.0.1:80"),
            sa("10.0.0.2:80"),
            sa("10.0.0.3:80"),
            sa("10.0.0.4:80"),
        ];
        assert_eq!(connect_order(&eps, None, 5), vec![eps[1], eps[2], eps[3]]);
        assert_eq!(
            connect_order(&eps, Some(eps[3]), 0),
            vec![eps[3], eps[0], eps[1]]
        );
        // a sticky endpoint that left is not used
        assert_eq!(
            connect_order(&eps[..2], Some(eps[3]), 0),
            vec![eps[0], eps[1]]
        );
        assert!(connect_order(&[], None, 0).is_empty());
    }
}
