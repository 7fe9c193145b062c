//! The Prometheus metrics of kubus's actors, under Kubernetes' names where
//! Kubernetes has one: the store's API requests (`apiserver_request_*`),
//! the scheduler's attempts and its SLI (`scheduler_*`), the node agent's
//! pod starts (`kubelet_*`), the controller runtime's work queues
//! (`workqueue_*`), leader election (`leader_election_master_status`), the
//! service proxy's connections and the informers' watch delay.
//!
//! One set per process ([`METRICS`]), recorded where the work happens; the
//! binary adds them to its registry with [`register`]. Durations are in
//! seconds. Label values are bounded: verbs, kinds, codes, controller and
//! lease names, protocols — never object names.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// An API request as Kubernetes labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kubernetes' metric verb: GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE.
    pub verb: String,
    /// The resource (plural), e.g. `pods`.
    pub resource: String,
    /// `eviction`, `token` or empty.
    pub subresource: String,
    /// The HTTP code the answer stands for.
    pub code: String,
}

/// One label: a name (a controller's, a lease's) or a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    pub name: String,
}

/// A result: `scheduled`, `unschedulable`, `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// A resource (plural kind name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

/// A protocol: `TCP`, `UDP`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

/// Buckets from 0.5 ms doubling to ~16 s (requests, attempts, queue work).
fn short() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Buckets from 10 ms doubling to ~5.5 min (pod starts, scheduling SLI).
fn long() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// The actors' metrics.
pub struct ActorMetrics {
    pub request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub requests: Family<RequestLabels, Counter>,
    pub change_events: Family<ResourceLabel, Counter>,
    pub watch_delay: Family<ResourceLabel, Histogram, fn() -> Histogram>,
    pub schedule_attempts: Family<ResultLabel, Counter>,
    pub scheduling_attempt_duration: Family<ResultLabel, Histogram, fn() -> Histogram>,
    pub pod_scheduling_sli: Histogram,
    pub pending_pods: Gauge,
    pub pod_start_duration: Histogram,
    pub running_pods: Gauge,
    pub queue_depth: Family<NameLabel, Gauge>,
    pub queue_adds: Family<NameLabel, Counter>,
    pub queue_retries: Family<NameLabel, Counter>,
    pub queue_work_duration: Family<NameLabel, Histogram, fn() -> Histogram>,
    pub leader: Family<NameLabel, Gauge>,
    pub proxy_connections: Family<ProtocolLabel, Counter>,
    pub proxy_active: Family<ProtocolLabel, Gauge>,
    pub proxy_failed: Family<ProtocolLabel, Counter>,
}

/// This process's actor metrics.
pub static METRICS: LazyLock<ActorMetrics> = LazyLock::new(|| ActorMetrics {
    request_duration: Family::new_with_constructor(short),
    requests: Family::default(),
    change_events: Family::default(),
    watch_delay: Family::new_with_constructor(short),
    schedule_attempts: Family::default(),
    scheduling_attempt_duration: Family::new_with_constructor(short),
    pod_scheduling_sli: long(),
    pending_pods: Gauge::default(),
    pod_start_duration: long(),
    running_pods: Gauge::default(),
    queue_depth: Family::default(),
    queue_adds: Family::default(),
    queue_retries: Family::default(),
    queue_work_duration: Family::new_with_constructor(short),
    leader: Family::default(),
    proxy_connections: Family::default(),
    proxy_active: Family::default(),
    proxy_failed: Family::default(),
});

/// Kubernetes' metric verb and subresource for a kubus API verb.
pub fn request_verb(verb: kubus_bus::subject::Verb) -> (&'static str, &'static str) {
    use kubus_bus::subject::Verb;
    match verb {
        Verb::Get => ("GET", ""),
        Verb::List => ("LIST", ""),
        Verb::Watch => ("WATCH", ""),
        Verb::Create => ("POST", ""),
        Verb::Update => ("PUT", ""),
        Verb::Patch => ("PATCH", ""),
        Verb::Apply => ("APPLY", ""),
        Verb::Delete => ("DELETE", ""),
        Verb::Evict => ("POST", "eviction"),
        Verb::Token => ("POST", "token"),
    }
}

/// Records one API request the store answered.
pub fn api_request(verb: &str, subresource: &str, resource: &str, code: u16, took: Duration) {
    let labels = RequestLabels {
        verb: verb.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        code: code.to_string(),
    };
    let m = &*METRICS;
    m.request_duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
    m.requests.get_or_create(&labels).inc();
}

/// A label of one name.
pub fn name(n: &str) -> NameLabel {
    NameLabel {
        name: n.to_string(),
    }
}

/// A label of one resource.
pub fn resource(r: &str) -> ResourceLabel {
    ResourceLabel {
        resource: r.to_string(),
    }
}

/// A label of one result.
pub fn result(r: &str) -> ResultLabel {
    ResultLabel {
        result: r.to_string(),
    }
}

/// A label of one protocol.
pub fn protocol(p: &str) -> ProtocolLabel {
    ProtocolLabel {
        protocol: p.to_string(),
    }
}

/// Adds the actors' metrics to `registry`.
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "apiserver_request_duration_seconds",
        "Time the store took to answer an API request, by verb, resource, subresource and code",
        m.request_duration.clone(),
    );
    registry.register(
        "apiserver_request",
        "API requests the store answered, by verb, resource, subresource and code",
        m.requests.clone(),
    );
    registry.register(
        "kubus_change_events_published",
        "Change events the store published, by resource",
        m.change_events.clone(),
    );
    registry.register(
        "kubus_watch_delay_seconds",
        "Time from a change's commit to its arrival in this process's informer cache, by resource",
        m.watch_delay.clone(),
    );
    registry.register(
        "scheduler_schedule_attempts",
        "Scheduling attempts by result (scheduled, unschedulable, error)",
        m.schedule_attempts.clone(),
    );
    registry.register(
        "scheduler_scheduling_attempt_duration_seconds",
        "Time to choose a node for a pod (filters and scores), by result",
        m.scheduling_attempt_duration.clone(),
    );
    registry.register(
        "scheduler_pod_scheduling_sli_duration_seconds",
        "Time from the scheduler first seeing a pod waiting to its binding",
        m.pod_scheduling_sli.clone(),
    );
    registry.register(
        "scheduler_pending_pods",
        "Pods waiting for a node",
        m.pending_pods.clone(),
    );
    registry.register(
        "kubelet_pod_start_duration_seconds",
        "Time from the node agent first seeing a pod to all its containers running",
        m.pod_start_duration.clone(),
    );
    registry.register(
        "kubelet_running_pods",
        "Pods with a running container on this node agent",
        m.running_pods.clone(),
    );
    registry.register(
        "workqueue_depth",
        "Keys waiting in a controller's work queue",
        m.queue_depth.clone(),
    );
    registry.register(
        "workqueue_adds",
        "Keys added to a controller's work queue",
        m.queue_adds.clone(),
    );
    registry.register(
        "workqueue_retries",
        "Keys a controller queued again after a failure",
        m.queue_retries.clone(),
    );
    registry.register(
        "workqueue_work_duration_seconds",
        "Time one reconcile of a key took",
        m.queue_work_duration.clone(),
    );
    registry.register(
        "leader_election_master_status",
        "1 while this process holds the lease, else 0",
        m.leader.clone(),
    );
    registry.register(
        "kubus_proxy_connections",
        "Connections (TCP) or flows (UDP) the service proxy forwarded",
        m.proxy_connections.clone(),
    );
    registry.register(
        "kubus_proxy_active_connections",
        "Connections (TCP) or flows (UDP) the service proxy forwards now",
        m.proxy_active.clone(),
    );
    registry.register(
        "kubus_proxy_connect_failures",
        "Connections the service proxy could not open to any backend",
        m.proxy_failed.clone(),
    );
}
