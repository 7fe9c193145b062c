//! The command line: verbs and flags, as kubectl users expect them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kubus",
    version,
    about = "A Kubernetes-style orchestrator on NATS and Raft"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// How a client finds its cluster: `--nats`, then `KUBUS_NATS`, then the
/// address `kubus up` recorded.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// NATS URL of the cluster's bus; several separated by commas (the
    /// members of a NATS cluster): the client uses one and moves to
    /// another when it goes.
    #[arg(long, global = true, env = "KUBUS_NATS")]
    pub nats: Option<String>,
    /// Cluster name (the second token of every subject).
    #[arg(long, global = true, env = "KUBUS_CLUSTER")]
    pub cluster: Option<String>,
    /// The bus credentials file to connect with (default: the
    /// administrator's, of the cluster `kubus up` started).
    #[arg(long, global = true, env = "KUBUS_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// Act as this user (the store checks that you may impersonate it).
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// With --as: a group of that user (repeatable).
    #[arg(long = "as-group", global = true)]
    pub as_groups: Vec<String>,
    /// Export traces to this OpenTelemetry collector (OTLP over HTTP, e.g.
    /// http://127.0.0.1:4318): the spans of each write's path, from the
    /// client through the store, Raft, the change event and the
    /// controllers to the node agent, share one trace id.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// With --otlp-endpoint: the share of traces begun here that are
    /// recorded, 0 to 1 (a trace begun elsewhere follows its sender's
    /// choice).
    #[arg(long, global = true, default_value_t = 1.0)]
    pub otlp_sample_ratio: f64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a single-machine cluster: every role in one process, with its own
    /// nats-server unless --nats names one.
    Up(UpArgs),
    /// Run a mesh node with the given roles.
    Node(NodeArgs),
    /// Create or update objects from manifests.
    Apply(ApplyArgs),
    /// Show objects.
    Get(GetArgs),
    /// Delete objects.
    Delete(DeleteArgs),
    /// Print a container's log.
    Logs(LogsArgs),
    /// Run a command in a container: kubus exec POD [-c C] [-it] -- COMMAND [ARG...]
    Exec(ExecArgs),
    /// Attach to a running container's own process (its output, and with
    /// -i its stdin): kubus attach POD [-c C] [-it]
    Attach(AttachArgs),
    /// Show Kubernetes Events (Scheduled, Started, BackOff, …).
    Events(EventsArgs),
    /// Make a Service for a Deployment, ReplicaSet, Pod or Service:
    /// kubus expose deployment web --port 80 [--type NodePort]
    Expose(ExposeArgs),
    /// The URLs where a Service answers from this machine (cluster IP,
    /// node ports, load balancer addresses).
    Service(ServiceArgs),
    /// Scale a workload on its pods' CPU with a HorizontalPodAutoscaler:
    /// kubus autoscale deployment web --min=1 --max=5 --cpu-percent=50
    Autoscale(AutoscaleArgs),
    /// The images each node holds (its status.images); `kubus images
    /// import FILE.tar...` imports image tarballs into this machine's
    /// containerd (an airgap images folder).
    Images(ImagesArgs),
    /// Forward local ports to a pod's ports (through its node agent):
    /// kubus port-forward POD [LOCAL:]REMOTE...
    PortForward(PortForwardArgs),
    /// Show an object in detail, with its Events:
    /// kubus describe deployment web (or TYPE/NAME, or TYPE -l SELECTOR).
    Describe(DescribeArgs),
    /// Set a Deployment's, ReplicaSet's or StatefulSet's replicas:
    /// kubus scale deployment/web --replicas=3 [--current-replicas=2].
    Scale(ScaleArgs),
    /// Why a pod is pending: each node with each scheduling rule's verdict
    /// and what would make the pod fit: kubus explain pod NAME.
    Explain(ExplainArgs),
    /// Mark nodes unschedulable: kubus cordon NODE...
    Cordon(NodesArgs),
    /// Mark nodes schedulable again: kubus uncordon NODE...
    Uncordon(NodesArgs),
    /// Add, change (--overwrite) or remove taints of nodes:
    /// kubus taint nodes NODE key=value:NoSchedule key:NoExecute- key-
    Taint(TaintArgs),
    /// Cordon nodes and evict their pods, honouring PodDisruptionBudgets:
    /// kubus drain NODE [--ignore-daemonsets] [--delete-emptydir-data]
    /// [--force] [--timeout=5m] [--pod-selector=SEL] [--dry-run].
    Drain(crate::drain::DrainArgs),
    /// Move pods from crowded nodes to idle or new ones, one eviction at a
    /// time within PodDisruptionBudgets, printing the plan first:
    /// kubus rebalance [--dry-run] [--max-moves=10] [--threshold=5].
    Rebalance(crate::rebalance::RebalanceArgs),
    /// Add, change (--overwrite) or remove (KEY-) labels:
    /// kubus label pod x tier=web env- [--overwrite] [-l SELECTOR].
    Label(LabelArgs),
    /// Add, change (--overwrite) or remove (KEY-) annotations:
    /// kubus annotate deployment web note='first try'.
    Annotate(AnnotateArgs),
    /// Change one field of objects: kubus set image deployment/web app=nginx:1.27.
    #[command(subcommand)]
    Set(SetCommand),
    /// Manage a rollout: status, history, undo, pause, resume, restart.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Create an object from flags: deployment, job, cronjob, configmap,
    /// secret generic, namespace.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Run an image in a new pod: kubus run shell --image=busybox -- sleep 3600.
    Run(RunArgs),
    /// CPU and memory in use, as the node agents measure it:
    /// kubus top nodes | kubus top pods [-A] [--containers].
    #[command(subcommand)]
    Top(crate::top::TopCommand),
    /// Wait for a condition on objects:
    /// kubus wait pod -l app=web --for=condition=Ready --timeout=60s.
    Wait(WaitArgs),
    /// Edit an object in $KUBE_EDITOR / $EDITOR (default vi) and write it
    /// back: kubus edit deployment web.
    Edit(EditArgs),
    /// Store administration: peers, leader, membership.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Inspect authorization: kubus auth can-i VERB RESOURCE[/NAME].
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Benchmarks: each prints its figures beside a baseline from the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum StoreCommand {
    /// Each store peer's role, term, revision and log.
    Status,
    /// Add a voter (start it first: `kubus node --roles store --peer-id N`).
    AddPeer { peer_id: u64 },
    /// Remove a voter.
    RemovePeer { peer_id: u64 },
    /// Hand leadership to a voter (then watch `kubus store status`).
    TransferLeader { peer_id: u64 },
    /// Backups: save a running cluster's objects to a file, check one,
    /// restore one into a new data directory (docs/backup.md).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Rotate the key Secrets are encrypted with: a new AES-GCM key is
    /// added to every store peer's encryption configuration as a read key,
    /// then made the writing key, then every Secret is rewritten with it
    /// (old keys stay listed; remove them from the file once unused).
    RotateKey,
    /// Rewrite every encrypted object not sealed with its writing key
    /// (after editing the encryption configuration on every peer: each
    /// reads it again first).
    Reseal,
}

/// `kubus store snapshot …`, as `etcdctl snapshot save / status / restore`.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Save every object at one revision to FILE, streamed from the store
    /// leader (or --peer); written to FILE.tmp, checked, then renamed.
    Save {
        file: PathBuf,
        /// Save from this store peer instead of the leader (a follower's
        /// state may be a little behind).
        #[arg(long)]
        peer: Option<u64>,
    },
    /// Check FILE (format, count, checksum) and say what it holds.
    Status { file: PathBuf },
    /// Make a new data directory from FILE, offline: a store of one peer
    /// (peer 1) holding the same objects at the same revisions. Then
    /// `kubus up --data-dir DIR` (or `kubus node --roles store,…
    /// --data-dir DIR`).
    Restore {
        file: PathBuf,
        /// The data directory to make: absent or empty.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Commit → watcher latency and API request latency, beside raw NATS.
    Watch(BenchWatchArgs),
    /// Pod startup latency on hollow nodes (or real containers with
    /// --runtime cri, beside raw CRI calls): manifest published → pod
    /// Running seen by a watcher.
    Pods(BenchPodsArgs),
    /// Store puts/s, p50 and p99 beside etcd 3.4 (started by the benchmark).
    Store(BenchStoreArgs),
    /// The service proxy and cluster DNS: requests/s, latency and stream
    /// bytes/s through a cluster IP beside straight to the backend, pod
    /// Ready → routed, DNS latency at 1,000 lookups/s.
    Proxy(BenchProxyArgs),
    /// The DaemonSet and Job controllers on hollow nodes: a DaemonSet over
    /// every node and a Job of many completions, beside a Deployment of
    /// the same pods.
    Workloads(BenchWorkloadsArgs),
    /// Scheduling throughput on many Node objects without agents: plain
    /// pods, required anti-affinity and topology spread, beside pods
    /// created already bound.
    Scheduler(BenchSchedulerArgs),
    /// The Kubernetes API gateway: get, list and create through it (HTTPS)
    /// beside the same calls over the bus, 1 and 64 in flight.
    Gateway(BenchGatewayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchGatewayArgs {
    /// Requests per case with 64 in flight (at most 2,000 with 1).
    #[arg(long, default_value_t = 5_000)]
    pub requests: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchSchedulerArgs {
    /// Node objects to schedule onto.
    #[arg(long, default_value_t = 5_000)]
    pub nodes: usize,
    /// Pods per case.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Only these cases (plain, anti, spread; the baseline always runs).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Give up waiting after this long (each case).
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchWorkloadsArgs {
    /// Hollow nodes (all in one `kubus up` child process).
    #[arg(long, default_value_t = 1_000)]
    pub hollow_nodes: usize,
    /// A hollow container's simulated start-up time.
    #[arg(long, default_value_t = 100)]
    pub hollow_delay_ms: u64,
    /// The Job's completions.
    #[arg(long, default_value_t = 10_000)]
    pub completions: usize,
    /// The Job's parallelism.
    #[arg(long, default_value_t = 1_000)]
    pub parallelism: usize,
    /// Give up waiting after this long (each phase).
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchProxyArgs {
    /// Seconds each throughput figure is measured for.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Clients sending short requests at once.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Pods turned Ready one after another for the Ready → routed figure.
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// The benchmark cluster's service range (in 127.0.0.0/8 no route is
    /// needed; cluster DNS on port 53 still needs root).
    #[arg(long, default_value = "127.77.0.0/16")]
    pub service_cidr: String,
}

#[derive(Debug, Clone, Args)]
pub struct BenchPodsArgs {
    /// Replicas of the Deployment on the hollow nodes.
    #[arg(long, default_value_t = 30_000)]
    pub pods: usize,
    /// Hollow nodes (all in one `kubus up` child process).
    #[arg(long, default_value_t = 1_000)]
    pub hollow_nodes: usize,
    /// A hollow container's simulated start-up time.
    #[arg(long, default_value_t = 100)]
    pub hollow_delay_ms: u64,
    /// Give up waiting for the pods after this long.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// hollow (simulated containers on --hollow-nodes) or cri (real
    /// containers: `kubus up --runtime cri` with its private containerd,
    /// beside raw CRI calls on that containerd; needs root).
    #[arg(long, default_value = "hollow", value_parser = ["hollow", "cri"])]
    pub runtime: String,
    /// With --runtime cri: the script that imports the test images into
    /// the benchmark's containerd (called with --address SOCKET).
    #[arg(long, default_value = "deploy/build-test-image.sh")]
    pub images_script: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BenchStoreArgs {
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "256,2048")]
    pub values: Vec<usize>,
    /// Puts under way at once (each case).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub in_flight: Vec<usize>,
    /// Time each system is measured per case (in all rounds).
    #[arg(long, default_value_t = 10_000)]
    pub duration_ms: u64,
    /// Most puts each system makes per case (in all rounds).
    #[arg(long, default_value_t = 200_000)]
    pub ops: u64,
    /// Puts before each case's measurement starts.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// Slices each case is measured in, the systems taking turns (so all
    /// see the same disk); at most 100.
    #[arg(long, default_value_t = 10)]
    pub rounds: u64,
    /// kubus paths: store (Store API in process), api (ConfigMap create
    /// over NATS through the store server), or both.
    #[arg(long, value_delimiter = ',', default_value = "store,api")]
    pub paths: Vec<String>,
    /// Store peers: 1 and/or 3 (three in-process peers over NATS; store
    /// path only).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub peers: Vec<usize>,
    /// The etcd 3.4 binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Measure kubus only.
    #[arg(long)]
    pub no_etcd: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchWatchArgs {
    /// Change events to produce.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Target rate, events per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Writes under way at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Requests for the one-at-a-time latency figures.
    #[arg(long, default_value_t = 5_000)]
    pub requests: usize,
    /// Then measure it all again on a secured store (kubus's accounts, a
    /// user RBAC decides for) and print authorization's cost.
    #[arg(long)]
    pub authz: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExposeArgs {
    /// deployment, replicaset, pod or service (or TYPE/NAME).
    pub resource: String,
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The Service's port (default: the first container port).
    #[arg(long)]
    pub port: Option<i64>,
    /// The pods' port, a number or a port name (default: --port).
    #[arg(long)]
    pub target_port: Option<String>,
    /// TCP or UDP (default: the container port's, else TCP).
    #[arg(long)]
    pub protocol: Option<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type")]
    pub type_: Option<String>,
    /// The Service's name (default: the exposed object's).
    #[arg(long = "name")]
    pub service_name: Option<String>,
}

/// `kubus autoscale`: a HorizontalPodAutoscaler for a workload.
#[derive(Debug, Clone, Args)]
pub struct AutoscaleArgs {
    /// deployment, replicaset, statefulset or replicationcontroller (or TYPE/NAME).
    pub resource: String,
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The lower limit of replicas (default 1).
    #[arg(long)]
    pub min: Option<i64>,
    /// The upper limit of replicas.
    #[arg(long, required = true)]
    pub max: i64,
    /// The target average CPU utilization, in percent of the pods'
    /// requests (default: the controller's, 80).
    #[arg(long)]
    pub cpu_percent: Option<i64>,
    /// The HPA's name (default: the workload's).
    #[arg(long = "name")]
    pub hpa_name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub action: Option<ImagesAction>,
    /// Only this node's images.
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ImagesAction {
    /// Import image tarballs (docker-archive or OCI) into containerd's
    /// k8s.io namespace.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The containerd socket (default: the one `kubus up` started).
        #[arg(long)]
        address: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PortForwardArgs {
    /// A pod name, or pod/NAME, deployment/NAME, replicaset/NAME.
    pub pod: String,
    /// [LOCAL:]REMOTE, REMOTE a number or a container port's name; LOCAL
    /// empty (":80") for any free port.
    #[arg(required = true)]
    pub ports: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    pub name: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Print only the URLs, one per line.
    #[arg(long)]
    pub url: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Keep printing Events as they happen.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Output: json (one object per line).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Where the store, logs and runtime state live.
    #[arg(long, env = "KUBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cluster name.
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
    /// Use this NATS server (or these, separated by commas: a NATS
    /// cluster) instead of starting one.
    #[arg(long)]
    pub nats: Option<String>,
    /// Where the embedded bus listens (default 127.0.0.1 on a free port;
    /// port 0: a free port). Other machines reach it for `kubus node
    /// --join-token-file` when it is not loopback; TLS is then on.
    #[arg(long, value_name = "HOST:PORT")]
    pub bus_address: Option<std::net::SocketAddr>,
    /// Speak TLS on the embedded bus also on loopback (always on
    /// otherwise); its certificate is signed by the cluster's CA
    /// (`<data-dir>/pki`), which every credentials file names.
    #[arg(long)]
    pub bus_tls: bool,
    /// Kubernetes' EncryptionConfiguration file: which resources the store
    /// keeps encrypted and with which keys (default
    /// `<data-dir>/encryption-config.yaml`, written with a fresh AES-GCM
    /// key for Secrets when absent; docs/security.md).
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// The worker's node name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Also run this many hollow node agents (no processes: pods "run"
    /// after --hollow-delay-ms), named hollow-0000…, for scale tests.
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
    /// How long a hollow node's container takes to start.
    #[arg(long, default_value_t = 100)]
    pub hollow_delay_ms: u64,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub election: ElectionArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The node's HTTP endpoint: `/metrics` (Prometheus) and `/healthz`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Serve /metrics and /healthz on this address (`off`: not at all;
    /// port 0: a free port, recorded in $KUBUS_HOME/current.json).
    /// `kubus up` serves on 127.0.0.1:8474 by default; a mesh node
    /// (`kubus node`) only when given one.
    #[arg(long, env = "KUBUS_HTTP_ADDRESS")]
    pub http_address: Option<String>,
}

/// The Kubernetes API (HTTPS, for kubectl and client libraries): where
/// it listens and where its kubeconfig goes.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Serve the Kubernetes API on this address (`off`: not at all; port
    /// 0: a free port, written into the kubeconfig). `kubus up` serves on
    /// 127.0.0.1:6443 by default; a mesh node (`kubus node`) only when
    /// given one.
    #[arg(long, env = "KUBUS_API_ADDRESS")]
    pub api_address: Option<String>,
    /// Another name or IP address the API's certificate carries (for
    /// clients on other machines); repeatable.
    #[arg(long)]
    pub api_san: Vec<String>,
    /// Where to write the kubeconfig (default: $KUBUS_HOME/kubeconfig,
    /// i.e. ~/.kubus/kubeconfig).
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// Also merge the cluster, user and context (named after --cluster)
    /// into ~/.kube/config (or the first file of $KUBECONFIG), as k3s
    /// does; other entries and the current context are kept.
    #[arg(long)]
    pub kubeconfig_merge: bool,
}

/// How the control role elects the one mesh node that runs the scheduler
/// and the controllers (Leases in kube-system; client-go's defaults).
#[derive(Debug, Clone, Args)]
pub struct ElectionArgs {
    /// How long a standby waits, after it last saw the Lease renewed,
    /// before taking it over.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_duration_secs: u64,
    /// A leader that cannot renew its Lease for this long stops leading.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_renew_deadline_secs: u64,
    /// How often candidates read and the leader renews the Lease.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_retry_period_secs: u64,
    /// A node whose Lease in kube-node-lease was not renewed for this long
    /// is NotReady (Ready Unknown) and tainted unreachable.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_monitor_grace_period_secs: u64,
    /// Finished (Succeeded or Failed) pods kept; past this many the oldest
    /// are deleted (Kubernetes' default).
    #[arg(long, default_value_t = 12_500)]
    pub terminated_pod_gc_threshold: usize,
}

/// How much change history the store role keeps (for watchers that resume
/// and for lists at a past revision); a revision outside either bound is
/// compacted.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Most revisions kept.
    #[arg(long, default_value_t = kubus_storage::config::HISTORY_RETENTION_REVISIONS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub history_retention_revisions: u64,
    /// Longest a revision is kept after it was made, in seconds.
    #[arg(long, default_value_t = kubus_storage::config::HISTORY_RETENTION_AGE_DEFAULT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub history_retention_age_secs: u64,
}

/// The worker role's container runtime.
/// The cluster's service ranges: the store allocates from them, every
/// node's proxy serves them, and cluster DNS answers on the tenth address.
/// Every mesh node of a cluster must be given the same.
#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// Where Services' cluster IPs come from (kube-apiserver's
    /// --service-cluster-ip-range).
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Where NodePorts come from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
}

impl RuntimeArgs {
    /// `--pod-cidr`, or the runtime's default (distinct, so a machine can
    /// run both).
    pub fn pod_cidr(&self) -> String {
        self.pod_cidr.clone().unwrap_or_else(|| {
            if self.runtime == "cri" {
                "10.88.0.0/16"
            } else {
                "10.89.0.0/16"
            }
            .to_string()
        })
    }
}

impl NetworkArgs {
    pub fn net(&self) -> anyhow::Result<kubus_api::service::ServiceNet> {
        Ok(kubus_api::service::ServiceNet::parse(
            &self.service_cidr,
            &self.service_node_port_range,
        )?)
    }
}

#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// auto (cri where containerd is installed and kubus runs as root,
    /// else process), process (child processes on the host) or cri
    /// (containers through containerd's CRI; without --cri-socket, a
    /// private containerd is started under the data directory).
    #[arg(long, default_value = "auto", value_parser = ["auto", "process", "cri"])]
    pub runtime: String,
    /// Use the CRI runtime listening on this socket.
    #[arg(long)]
    pub cri_socket: Option<PathBuf>,
    /// The private containerd's sandbox image: used if present, else
    /// pulled, else (offline) kubus builds its own from the host's static
    /// busybox and imports it under this name.
    #[arg(long, default_value = "localhost/pause:kubus")]
    pub sandbox_image: String,
    /// The pod network: the private containerd's (bridge `kubus0`;
    /// default 10.88.0.0/16), or the process runtime's (a bridge per node;
    /// default 10.89.0.0/16). Nodes on one machine need ranges of their own.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The process runtime's pod network: auto (a network namespace per
    /// pod on the node's bridge when running as root with the CNI plugins
    /// installed, else the node's network), netns (that, or refuse to
    /// start), host (every pod on the node's network).
    #[arg(long, default_value = "auto", value_parser = ["auto", "netns", "host"])]
    pub process_network: String,
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Comma-separated roles: store, control, worker.
    #[arg(long, value_delimiter = ',', default_value = "store,control,worker")]
    pub roles: Vec<String>,
    /// NATS URL of the bus; several separated by commas (the members of
    /// a NATS cluster, docs/mesh.md): every connection of this mesh node
    /// uses one and reconnects to another when it goes.
    #[arg(long, env = "KUBUS_NATS")]
    pub nats: String,
    /// The directory of this mesh node's bus credentials (one
    /// `<identity>.json` per role it hosts: store-<peer-id>, control,
    /// node-<name>, gateway; docs/security.md). Without it the node
    /// connects anonymously, to a bus without kubus's accounts.
    #[arg(long, env = "KUBUS_BUS_CREDENTIALS")]
    pub bus_credentials: Option<PathBuf>,
    /// Join the bus of a `kubus up` with its join token (the file
    /// `<data-dir>/bus/join-token` of that machine): this node's
    /// credentials are asked for once and kept in the credentials
    /// directory (default `<data-dir>/bus`). Gives the worker role only.
    #[arg(long, env = "KUBUS_JOIN_TOKEN", conflicts_with = "join_token_file")]
    pub join_token: Option<String>,
    /// The join token, read from this file.
    #[arg(long)]
    pub join_token_file: Option<PathBuf>,
    /// The store role's EncryptionConfiguration (Kubernetes' file; every
    /// store peer needs the same keys, e.g. a copy of the
    /// `<data-dir>/encryption-config.yaml` `kubus up` wrote). Without it
    /// this peer stores Secrets unencrypted.
    #[arg(long, value_name = "FILE", env = "KUBUS_ENCRYPTION_PROVIDER_CONFIG")]
    pub encryption_provider_config: Option<PathBuf>,
    #[arg(long, env = "KUBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
    #[arg(long)]
    pub node_name: Option<String>,
    /// Also run this many hollow node agents (no processes: pods "run"
    /// after --hollow-delay-ms), named hollow-0000…, for scale tests.
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
    /// How long a hollow node's container takes to start.
    #[arg(long, default_value_t = 100)]
    pub hollow_delay_ms: u64,
    /// The store role's Raft peer id (never 0). Without it (and without
    /// --initial-peers) the store is peer 1, alone.
    #[arg(long)]
    pub peer_id: Option<u64>,
    /// Comma-separated peer ids a fresh store is bootstrapped with (ignored
    /// once the store exists). Leave it out with --peer-id to join a
    /// running cluster: `kubus store add-peer N` there.
    #[arg(long, value_delimiter = ',')]
    pub initial_peers: Option<Vec<u64>>,
    /// Applied Raft log entries the store keeps for slow followers; a peer
    /// further behind (or a new one) catches up by snapshot.
    #[arg(long, default_value_t = 10_000)]
    pub log_entries_kept: u64,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub election: ElectionArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A file, a directory of .yaml/.yml/.json files, or - for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Validate and report what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Resource type: pods, deployments (deploy), replicasets (rs), nodes,
    /// …, or `all` (pods, services and the workloads).
    pub kind: String,
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output: wide, yaml or json.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// After listing, keep printing changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With -w: print nothing first; resume after this revision from the
    /// store's history.
    #[arg(long, requires = "watch")]
    pub since: Option<u64>,
    /// Show the objects as they were at this revision (from the store's
    /// history; refused once that history is compacted).
    #[arg(long, conflicts_with = "watch")]
    pub revision: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    pub kind: Option<String>,
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// Seconds a pod's containers get to stop after SIGTERM (default: the
    /// pod's terminationGracePeriodSeconds, else 30); 0 removes it at once.
    /// A pod already terminating can only be hurried.
    #[arg(long = "grace-period", allow_negative_numbers = true)]
    pub grace_period: Option<i64>,
    /// Remove at once, without waiting for the containers to stop (the
    /// same as --grace-period 0).
    #[arg(long, conflicts_with = "grace_period")]
    pub force: bool,
    /// What becomes of the objects it owns: background (deleted after it,
    /// the default), foreground (deleted before it; it stays, marked,
    /// until they are gone) or orphan (kept, no longer owned).
    #[arg(long, default_value = "background", value_parser = ["background", "foreground", "orphan"])]
    pub cascade: String,
}

impl DeleteArgs {
    /// The grace period the delete asks for.
    pub fn grace_period_seconds(&self) -> Option<i64> {
        if self.force {
            Some(0)
        } else {
            self.grace_period
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// A pod name, or pod/NAME, deployment/NAME, replicaset/NAME.
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Keep printing what the container writes, until it stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The log of the container's previous run.
    #[arg(short = 'p', long, conflicts_with = "follow")]
    pub previous: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// A pod name, or pod/NAME.
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Pass our stdin to the container (started with stdin: true).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Our terminal is the container's (started with tty: true).
    #[arg(short = 't', long)]
    pub tty: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// A pod name, or pod/NAME.
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// How long the command may run, in seconds (at most 600; without
    /// -i/-t).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Pass our stdin to the command (its output streams as it comes).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Run the command on a terminal (with -i: an interactive shell).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// How a verb picks objects besides naming them.
#[derive(Debug, Clone, Args)]
pub struct Pick {
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Label selector, e.g. app=web,tier!=db (with a TYPE and no names).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every object of the TYPE in the namespace.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// TYPE [NAME...] or TYPE/NAME...; a NAME that is no object's name
    /// describes every object whose name starts with it.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// `pod` (with NAME) or `pod/NAME`.
    pub resource: String,
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// TYPE NAME... or TYPE/NAME... (or TYPE with -l / --all).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The new number of replicas.
    #[arg(long, required = true, value_parser = clap::value_parser!(i64).range(0..))]
    pub replicas: i64,
    /// Only if the current number of replicas is this.
    #[arg(long)]
    pub current_replicas: Option<i64>,
    #[command(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// NODE... or node/NODE... (or -l SELECTOR / --all).
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Args)]
pub struct TaintArgs {
    /// nodes NODE... then KEY[=VALUE]:EFFECT..., KEY:EFFECT-... or KEY-...
    #[arg(required = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Change a taint that already has another value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Args)]
pub struct LabelArgs {
    /// TYPE NAME... or TYPE/NAME..., then KEY=VALUE... and KEY-...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Change labels that already have a value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Args)]
pub struct AnnotateArgs {
    /// TYPE NAME... or TYPE/NAME..., then KEY=VALUE... and KEY-...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Change annotations that already have a value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SetCommand {
    /// Set container images: kubus set image deployment/web app=nginx:1.27
    /// ('*' for every container).
    Image(SetImageArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SetImageArgs {
    /// TYPE NAME... or TYPE/NAME..., then CONTAINER=IMAGE...
    #[arg(required = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Follow a rollout until it is done: exit 0 when it is, non-zero
    /// when it exceeds its progress deadline or --timeout.
    Status(RolloutStatusArgs),
    /// The revisions of a Deployment (its ReplicaSets).
    History(RolloutHistoryArgs),
    /// Roll back to the previous revision (or --to-revision).
    Undo(RolloutUndoArgs),
    /// Stop a Deployment's rollouts (spec.paused).
    Pause(RolloutArgs),
    /// Let a paused Deployment roll out again.
    Resume(RolloutArgs),
    /// Replace every pod, one rollout (Deployment, DaemonSet, StatefulSet).
    Restart(RolloutArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    /// TYPE NAME... or TYPE/NAME... (or TYPE with -l).
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutStatusArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Keep following until done (--watch=false: say where it stands once).
    #[arg(short = 'w', long, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true,
          action = clap::ArgAction::Set)]
    pub watch: bool,
    /// Give up after this long (30s, 5m; 0: never).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// The revision that must be the one rolling out.
    #[arg(long)]
    pub revision: Option<i64>,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutHistoryArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Show this revision's pod template.
    #[arg(long, allow_negative_numbers = true)]
    pub revision: Option<i64>,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutUndoArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The revision to go back to (0: the one before the latest).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub to_revision: i64,
}

/// `--dry-run` and `-o` of `create` and `run`.
#[derive(Debug, Clone, Args)]
pub struct CreateOutput {
    /// none, or client: print the object instead of creating it.
    #[arg(long, default_value = "none", num_args = 0..=1,
          default_missing_value = "client", require_equals = true)]
    pub dry_run: String,
    /// Print the object as yaml or json, or its name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CreateCommand {
    /// kubus create deployment NAME --image=IMAGE... [--replicas=N]
    /// [--port=P] [-- COMMAND ARG...]
    #[command(visible_alias = "deploy")]
    Deployment(CreateDeploymentArgs),
    /// kubus create job NAME --image=IMAGE [-- COMMAND ARG...], or
    /// --from=cronjob/NAME.
    Job(CreateJobArgs),
    /// kubus create cronjob NAME --image=IMAGE --schedule='*/5 * * * *'
    /// [-- COMMAND ARG...]
    #[command(visible_alias = "cj")]
    Cronjob(CreateCronJobArgs),
    /// kubus create configmap NAME --from-literal=KEY=VALUE
    /// --from-file=[KEY=]PATH --from-env-file=PATH
    #[command(visible_alias = "cm")]
    Configmap(CreateConfigMapArgs),
    /// kubus create secret generic NAME --from-literal=KEY=VALUE ...
    #[command(subcommand)]
    Secret(CreateSecretCommand),
    /// kubus create namespace NAME
    #[command(visible_alias = "ns")]
    Namespace(CreateNamespaceArgs),
    /// kubus create serviceaccount NAME
    #[command(visible_alias = "sa")]
    Serviceaccount(CreateNamedArgs),
    /// kubus create token SERVICEACCOUNT [--duration=1h] [--audience=A]
    /// [--bound-object-kind=Pod --bound-object-name=NAME]: print a token
    /// the Kubernetes API accepts as that ServiceAccount.
    Token(CreateTokenArgs),
    /// kubus create role NAME --verb=get,list --resource=pods
    /// [--resource-name=NAME]
    Role(CreateRoleArgs),
    /// kubus create clusterrole NAME --verb=get --resource=nodes
    /// [--non-resource-url=/healthz]
    Clusterrole(CreateRoleArgs),
    /// kubus create rolebinding NAME --role=R|--clusterrole=R
    /// --user=U --group=G --serviceaccount=NS:NAME
    Rolebinding(CreateBindingArgs),
    /// kubus create clusterrolebinding NAME --clusterrole=R --user=U ...
    Clusterrolebinding(CreateBindingArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateTokenArgs {
    /// The ServiceAccount.
    pub name: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// An audience of the token (repeat for several; default: the
    /// Kubernetes API's).
    #[arg(long)]
    pub audience: Vec<String>,
    /// How long the token is valid (10m to about 136 years; default 1h).
    #[arg(long)]
    pub duration: Option<String>,
    /// Bind the token to an object: it stops working when that goes
    /// (Pod only).
    #[arg(long)]
    pub bound_object_kind: Option<String>,
    #[arg(long)]
    pub bound_object_name: Option<String>,
    #[arg(long)]
    pub bound_object_uid: Option<String>,
    /// Print the TokenRequest as yaml or json instead of the token.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CreateNamedArgs {
    pub name: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
}

#[derive(Debug, Clone, Args)]
pub struct CreateRoleArgs {
    pub name: String,
    /// Verbs the rule allows (comma-separated or repeated).
    #[arg(long)]
    pub verb: Vec<String>,
    /// Resources (`pods`, `pods/log`, `deployments.apps`; comma-separated
    /// or repeated).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Only these objects.
    #[arg(long)]
    pub resource_name: Vec<String>,
    /// ClusterRoles: non-resource URLs (`/healthz`).
    #[arg(long)]
    pub non_resource_url: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
}

#[derive(Debug, Clone, Args)]
pub struct CreateBindingArgs {
    pub name: String,
    #[arg(long)]
    pub role: Option<String>,
    #[arg(long)]
    pub clusterrole: Option<String>,
    #[arg(long)]
    pub user: Vec<String>,
    #[arg(long)]
    pub group: Vec<String>,
    /// NAMESPACE:NAME.
    #[arg(long)]
    pub serviceaccount: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuthCommand {
    /// Whether you (or --as USER) may: kubus auth can-i create deployments
    /// -n shop; prints yes or no (exit status 0 or 1).
    CanI(CanIArgs),
    /// Who you are to the cluster: your user and groups.
    Whoami,
}

#[derive(Debug, Clone, Args)]
pub struct CanIArgs {
    /// get, list, watch, create, update, patch, delete, impersonate, *…
    pub verb: String,
    /// RESOURCE (pods, deployments.apps, pods/log) or RESOURCE/NAME.
    pub resource: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Across all namespaces (the cluster scope).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// A subresource (log, status, scale…).
    #[arg(long)]
    pub subresource: Option<String>,
    /// Print nothing; the exit status answers.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CreateDeploymentArgs {
    pub name: String,
    /// An image to run (one container each); repeat for more.
    #[arg(long, required = true)]
    pub image: Vec<String>,
    #[arg(short = 'r', long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(0..))]
    pub replicas: i64,
    /// The first container's port.
    #[arg(long)]
    pub port: Option<i64>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
    /// The containers' command, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CreateJobArgs {
    pub name: String,
    #[arg(long)]
    pub image: Option<String>,
    /// Make the Job from a CronJob's template: cronjob/NAME.
    #[arg(long)]
    pub from: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
    /// The container's command, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CreateCronJobArgs {
    pub name: String,
    #[arg(long, required = true)]
    pub image: String,
    /// When to run, in cron format: '*/5 * * * *'.
    #[arg(long, required = true)]
    pub schedule: String,
    /// The job's pods' restart policy: OnFailure or Never.
    #[arg(long, default_value = "OnFailure")]
    pub restart: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
    /// The container's command, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CreateConfigMapArgs {
    pub name: String,
    /// KEY=VALUE; repeat for more.
    #[arg(long)]
    pub from_literal: Vec<String>,
    /// [KEY=]PATH: a file (key: its name), or every file of a directory.
    #[arg(long)]
    pub from_file: Vec<String>,
    /// A file of KEY=VALUE lines.
    #[arg(long)]
    pub from_env_file: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CreateSecretCommand {
    /// A Secret from literals and files (values base64 in data).
    Generic(CreateSecretGenericArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateSecretGenericArgs {
    pub name: String,
    /// KEY=VALUE; repeat for more.
    #[arg(long)]
    pub from_literal: Vec<String>,
    /// [KEY=]PATH: a file (key: its name), or every file of a directory.
    #[arg(long)]
    pub from_file: Vec<String>,
    /// A file of KEY=VALUE lines.
    #[arg(long)]
    pub from_env_file: Vec<String>,
    /// The Secret's type (default Opaque).
    #[arg(long = "type")]
    pub type_: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
}

#[derive(Debug, Clone, Args)]
pub struct CreateNamespaceArgs {
    pub name: String,
    #[command(flatten)]
    pub out: CreateOutput,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    pub name: String,
    #[arg(long, required = true)]
    pub image: String,
    /// The container's port.
    #[arg(long)]
    pub port: Option<i64>,
    /// NAME=VALUE environment variables; repeat for more.
    #[arg(long)]
    pub env: Vec<String>,
    /// The pod's labels, a=b,c=d (instead of run=NAME).
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// The pod's restart policy: Always, OnFailure or Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// The words after `--` are the command, not the arguments.
    #[arg(long)]
    pub command: bool,
    /// Keep the container's stdin open and attach to it once it runs
    /// (stdin: true, stdinOnce: true).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Run the container on a terminal, ours once attached (tty: true).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// With -i/-t: delete the pod when the session ends.
    #[arg(long)]
    pub rm: bool,
    /// With -i/-t: how long to wait for the pod to run before attaching.
    #[arg(long, default_value = "1m")]
    pub pod_running_timeout: String,
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub out: CreateOutput,
    /// The container's arguments (or, with --command, its command).
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// TYPE NAME... or TYPE/NAME... (or TYPE with -l / --all).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// delete, create, condition=NAME[=VALUE] or jsonpath={EXPR}[=VALUE].
    #[arg(long = "for", required = true)]
    pub for_: String,
    /// Give up after this long (0: check once).
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Edit as yaml (the default) or json.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}
