//! The bodies of API requests and replies, of manifest applies and of change
//! events. Plain serde types; `subject` says where they go.

use kubus_api::{ApiError, ObjectRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One API request; the subject carries verb, resource and namespace, the
/// body carries the rest. Variants and their fields are camelCase on the
/// wire, as docs/subjects.md names them (`labelSelector`, not
/// `label_selector`; a test there keeps the two in step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ApiRequest {
    Get {
        name: String,
    },
    List {
        #[serde(default)]
        label_selector: Option<String>,
        /// Kubernetes' field selector (`=`, `==`, `!=`, comma-separated)
        /// over the fields Kubernetes serves for the kind
        /// (`kubus_api::selector::FieldSelector`); others are refused.
        #[serde(default)]
        field_selector: Option<String>,
        /// At most this many items (0 or absent: all, up to the store's cap).
        #[serde(default)]
        limit: Option<usize>,
        /// The `continue` token of the previous page. It names the
        /// revision the list is read at, so every page of one list is
        /// consistent (an `Expired` error once that revision is compacted).
        #[serde(default, rename = "continue")]
        continue_token: Option<String>,
        /// Kubernetes' `resourceVersion` of a list, a store revision; how
        /// it is matched is `resource_version_match`. Not with `continue`.
        #[serde(default)]
        resource_version: Option<u64>,
        /// `Exact`: the objects as they were at `resource_version` (from
        /// the history; `Expired` when it was compacted, naming the oldest
        /// revision kept). `NotOlderThan` (the default): the latest, which
        /// must be at least `resource_version`.
        #[serde(default)]
        resource_version_match: Option<ResourceVersionMatch>,
    },
    Create {
        object: Value,
        /// Admit and prepare it, answer what would be stored, write
        /// nothing (Kubernetes' `dryRun=All`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
    /// Replace; compare-and-swap on `metadata.resourceVersion` when set.
    Update {
        object: Value,
        /// As `Create`'s.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
    /// A pod bound to a node and still running is not removed at once:
    /// it gets `metadata.deletionTimestamp` (now + the grace period) and
    /// `deletionGracePeriodSeconds`, its node agent stops it and then
    /// removes it; the reply is the terminating pod. Anything else goes
    /// at once; the reply is the object as it was.
    Delete {
        name: String,
        /// Delete only if the object is still at this revision.
        #[serde(default)]
        resource_version: Option<u64>,
        /// Delete only if the object is this one (not a re-created one of
        /// the same name).
        #[serde(default)]
        uid: Option<String>,
        /// Seconds a pod's containers get to stop after SIGTERM; absent:
        /// the pod's `spec.terminationGracePeriodSeconds` (else 30); 0:
        /// remove at once (force); negative counts as 1. On a pod already
        /// terminating it may only shorten the time left.
        #[serde(default)]
        grace_period_seconds: Option<i64>,
        /// What becomes of the objects it owns: `Background` (the
        /// default), `Foreground` or `Orphan`, as Kubernetes'
        /// `propagationPolicy`.
        #[serde(default)]
        propagation_policy: Option<kubus_api::lifecycle::Propagation>,
        /// Delete only if none of these objects exists, checked in the
        /// same Raft entry (the garbage collector's proof that an owner
        /// it has not seen is really gone). A kubus extension.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        only_if_absent: Vec<ObjectRef>,
    },
    /// Evict a pod (Kubernetes' `pods/eviction` subresource, a policy/v1
    /// `Eviction`): a graceful delete, as `Delete` does it, that the
    /// PodDisruptionBudget selecting the pod may refuse — `TooManyRequests`
    /// while it allows no disruption (try again later), `Internal` when
    /// two budgets select the pod. A granted eviction charges the budget
    /// (`status.disruptionsAllowed` − 1, the pod in
    /// `status.disruptedPods`) in the same Raft entry as the delete. Pods
    /// that finished, are `Pending` or are already terminating are deleted
    /// without consulting budgets. The reply is the pod as `Delete` gives
    /// it. Only on the `evict` verb of `pods`.
    Evict {
        name: String,
        /// As `Delete`'s: seconds the containers get to stop; absent: the
        /// pod's own.
        #[serde(default)]
        grace_period_seconds: Option<i64>,
        /// Evict only if the pod is still at this revision (no retry when
        /// it moved on).
        #[serde(default)]
        resource_version: Option<u64>,
        /// Evict only if the pod is this one (not a re-created one of the
        /// same name).
        #[serde(default)]
        uid: Option<String>,
    },
    /// Issue a token for ServiceAccount `name` (Kubernetes'
    /// `serviceaccounts/token`): `request` is an `authentication.k8s.io/v1`
    /// TokenRequest (audiences, expirationSeconds, boundObjectRef; null:
    /// the defaults). The reply is the TokenRequest with `status.token`.
    /// Only on the `token` verb of `serviceaccounts`.
    Token {
        name: String,
        #[serde(default)]
        request: Value,
    },
    /// Create, or update what the manifest says while keeping status.
    Apply {
        object: Value,
    },
    /// JSON merge patch (RFC 7386) of one object.
    Patch {
        name: String,
        patch: Value,
    },
    /// The changes after `since` (a revision), from the store's history.
    Watch {
        since: u64,
        #[serde(default)]
        limit: Option<usize>,
        /// A field selector as `List`'s; `spec.nodeName=<node>` reads the
        /// changes of that node's stream.
        #[serde(default)]
        field_selector: Option<String>,
    },
}

/// The Lease a writer holds: its writes commit only while that Lease is
/// the one it acquired. A Lease taken over is deleted and created again,
/// so its create revision names one acquisition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub namespace: String,
    pub name: String,
    pub create_revision: u64,
}

impl Fence {
    /// The header value: `<namespace>/<name>@<create revision>`.
    pub fn encode(&self) -> String {
        format!("{}/{}@{}", self.namespace, self.name, self.create_revision)
    }

    /// Parse a header value.
    pub fn parse(text: &str) -> Result<Fence, ApiError> {
        let bad = || {
            ApiError::bad_request(format!(
                "header {}: {text:?} is not <namespace>/<name>@<revision>",
                crate::subject::HEADER_FENCE
            ))
        };
        let (lease, revision) = text.rsplit_once('@').ok_or_else(bad)?;
        let (namespace, name) = lease.split_once('/').ok_or_else(bad)?;
        let create_revision = revision.parse().map_err(|_| bad())?;
        if namespace.is_empty() || name.is_empty() {
            return Err(bad());
        }
        Ok(Fence {
            namespace: namespace.to_string(),
            name: name.to_string(),
            create_revision,
        })
    }
}

/// How a list's `resourceVersion` is matched, as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceVersionMatch {
    /// At exactly that revision.
    Exact,
    /// At the latest revision, which must not be older.
    NotOlderThan,
}

/// A successful API reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ApiResponse {
    Object(Value),
    List {
        items: Vec<Value>,
        revision: u64,
        /// Set when more items follow: pass it back as `continue`.
        #[serde(default, rename = "continue")]
        continue_token: Option<String>,
    },
    /// Changes of one resource after a revision, in order. `through` is the
    /// revision the answer is complete up to; `more` asks for another call.
    Changes {
        events: Vec<ChangeEvent>,
        through: u64,
        more: bool,
    },
    Applied {
        outcome: ApplyOutcome,
        object: Value,
    },
}

/// What every API reply body is.
pub type ApiReply = Result<ApiResponse, ApiError>;

/// An object's JSON text, transcoded from the reply's MessagePack as it
/// is read: no `serde_json::Value` tree is built (the API gateway answers
/// with these bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(pub Vec<u8>);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JsonText, D::Error> {
        let mut out = Vec::with_capacity(1024);
        let mut json = serde_json::Serializer::new(&mut out);
        serde_transcode::transcode(d, &mut json).map_err(serde::de::Error::custom)?;
        Ok(JsonText(out))
    }
}

/// [`ApiResponse`]'s `object` and `list` with the objects read as `T`
/// (the same wire form; any other answer does not decode): `Value`, or
/// [`JsonText`] for the API gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
#[serde(bound = "T: Deserialize<'de>")]
pub enum ReadResponse<T> {
    Object(T),
    List {
        items: Vec<T>,
        revision: u64,
        #[serde(default, rename = "continue")]
        continue_token: Option<String>,
    },
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// The result for one document of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentResult {
    /// "document 3" or "document 3 item 1".
    pub document: String,
    #[serde(default)]
    pub object: Option<ObjectRef>,
    pub result: Result<ApplyOutcome, ApiError>,
}

/// The reply to a manifest apply. Either every document was applied, or none
/// was and the documents at fault carry their errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestReply {
    pub applied: bool,
    pub documents: Vec<DocumentResult>,
    /// An error about the request as a whole (unparseable, too large).
    #[serde(default)]
    pub error: Option<ApiError>,
    /// The request was a dry run: outcomes are what would happen; nothing
    /// was written.
    #[serde(default)]
    pub dry_run: bool,
}

/// The type of a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    /// No object: `revision` is the latest change of the stream.
    Bookmark,
}

/// One object change, as published on `obj` and `node` subjects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The cluster revision of this change.
    pub revision: u64,
    /// The revision of the previous change in the same stream (0: none).
    /// A watcher whose last revision differs has missed events.
    pub prev: u64,
    pub object: Value,
    /// When the change was committed (the Raft leader's clock, ms since
    /// the Unix epoch); absent on bookmarks and on changes recorded before
    /// kubus kept it. Watchers measure their delay with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_ms: Option<u64>,
    /// The W3C trace context of the write that made the change, when it
    /// was traced (see [`crate::trace`]): what the change sets off joins
    /// its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Logs request to a node agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogsRequest {
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub container: Option<String>,
    /// Only the last this many bytes (bounded by the agent).
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// The log of the container's previous run instead of the current one.
    #[serde(default)]
    pub previous: bool,
    /// Follow: the text written after this byte offset of the log (the
    /// `offset` of the last chunk), instead of its tail.
    #[serde(default)]
    pub from_offset: Option<u64>,
}

/// A piece of a container's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogChunk {
    /// Plain text, both streams as they were written.
    pub text: String,
    /// Where this text ends in the log file: pass it as `fromOffset` to
    /// follow.
    pub offset: u64,
    /// Which run of the container the log is of (its restart count then).
    pub restart: u32,
    /// That run has ended: nothing more will be written to this log.
    pub finished: bool,
}

pub type LogsReply = Result<LogChunk, ApiError>;

/// Ask a node agent for the resource usage of its pods and of its machine
/// (`kubus top`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsageRequest {
    /// Only the pods of this namespace; all when absent.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// CPU and memory in use: a rate over the agent's last sampling window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU, in billionths of a core (metrics.k8s.io's `n` unit).
    pub cpu_nano_cores: u64,
    /// Memory in use (the working set), in bytes.
    pub memory_bytes: u64,
}

/// One container's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    pub name: String,
    pub usage: Usage,
}

/// One pod's usage: its running containers that have been measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerUsage>,
}

/// What a node agent measures (metrics.k8s.io's NodeMetrics and
/// PodMetrics in one answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsage {
    pub node: String,
    /// When the figures were taken, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The sampling window the rates are over, in ms.
    pub window_ms: u64,
    /// The machine's figures; None when the agent measures none (a hollow
    /// node) or has not sampled yet.
    #[serde(default)]
    pub usage: Option<Usage>,
    pub pods: Vec<PodUsage>,
}

pub type UsageReply = Result<NodeUsage, ApiError>;

/// Connect to a pod's port and carry the connection as byte stream
/// `stream` ([`crate::stream`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForwardRequest {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    /// The stream's id, chosen by the opener (which has subscribed to it).
    pub stream: String,
}

/// The agent's answer: the stream is connected to the pod's port and its
/// subjects are subscribed, or why not.
pub type PortForwardReply = Result<(), ApiError>;

/// Run a command in a container as a session ([`crate::session`]) over
/// byte stream `stream`: its input and output flow as they come, for as
/// long as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecStreamRequest {
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub container: Option<String>,
    pub command: Vec<String>,
    /// The command reads what the session's stdin channel carries (else
    /// its stdin is empty).
    #[serde(default)]
    pub stdin: bool,
    /// The command runs on a terminal (stdout and stderr are one stream;
    /// resize frames set its size).
    #[serde(default)]
    pub tty: bool,
    /// Attach to the container's own process instead of running
    /// `command` (which is then empty): its output from now on, its stdin
    /// with `stdin`; the session's end detaches, the container runs on.
    #[serde(default)]
    pub attach: bool,
    /// The stream's id, chosen by the opener (which has subscribed to it).
    pub stream: String,
}

/// The agent's answer: the command runs and the stream carries it, or why
/// not.
pub type ExecStreamReply = Result<(), ApiError>;

/// Run a command in a container, wait for it, and return its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub container: Option<String>,
    pub command: Vec<String>,
    /// How long the command may run (bounded by the agent).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// What a command run by `exec` printed (UTF-8, lossy; each stream cut at
/// the agent's bound) and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    /// Output beyond the bound was dropped.
    #[serde(default)]
    pub truncated: bool,
}

pub type ExecReply = Result<ExecResult, ApiError>;

/// Longest an exec may run when the request does not say.
pub const EXEC_TIMEOUT_DEFAULT_SECS: u64 = 60;
/// Longest an exec may run at all.
pub const EXEC_TIMEOUT_MAX_SECS: u64 = 600;

/// One store peer's answer on `kubus.<c>.store.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub peer_id: u64,
    pub is_leader: bool,
    /// The leader this peer knows of.
    #[serde(default)]
    pub leader: Option<u64>,
    pub term: u64,
    pub revision: u64,
    pub applied_index: u64,
    pub first_log_index: u64,
    pub last_log_index: u64,
    pub proposals_in_flight: u64,
    /// The voters this peer knows of (empty where the store does not say).
    #[serde(default)]
    pub voters: Vec<u64>,
}

pub type PeerStatusReply = Result<PeerStatus, ApiError>;

/// Body of `store.add-peer` and `store.remove-peer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipRequest {
    pub peer_id: u64,
}

/// The voters after a membership change.
pub type MembershipReply = Result<Vec<u64>, ApiError>;

/// Body of `store.encryption-keys.<peer>`: the peer reads its encryption
/// configuration file again, then makes these changes to it (rotation's
/// steps: add a key that only reads, then make it the one that writes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeysRequest {
    #[serde(default)]
    pub add: Option<EncryptionKey>,
    #[serde(default)]
    pub promote: Option<String>,
}

/// A named AES-256 key (`secret`: 32 bytes, base64), as an
/// `EncryptionConfiguration` file lists it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKey {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A store peer's encryption keys after a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeys {
    pub peer_id: u64,
    /// The configuration file (`None`: the peer stores everything plain).
    pub file: Option<String>,
    /// Every configured key's name.
    pub keys: Vec<String>,
    /// Each encrypted resource's store prefix and the key that writes it
    /// (`None`: written plain).
    pub writing: Vec<(String, Option<String>)>,
}

pub type EncryptionKeysReply = Result<EncryptionKeys, ApiError>;

/// What `store.reseal` did: every object of an encrypted resource not
/// sealed with its writing key was rewritten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resealed {
    pub peer_id: u64,
    /// Objects rewritten.
    pub rewritten: u64,
    /// Objects already sealed with their writing key.
    pub current: u64,
    /// Before the rewrite: how many objects each key sealed
    /// (`identity`: plain).
    pub before: std::collections::BTreeMap<String, u64>,
}

pub type ResealReply = Result<Resealed, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_round_trip_and_bad_ones_are_refused() {
        let f = Fence {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            create_revision: 42,
        };
        assert_eq!(f.encode(), "kube-system/kube-controller-manager@42");
        assert_eq!(Fence::parse(&f.encode()), Ok(f));
        for bad in ["", "a@1", "/x@1", "a/@1", "a/b@", "a/b@x", "a/b"] {
            assert!(Fence::parse(bad).is_err(), "{bad:?}");
        }
    }
}

/// What `kubus.<c>.review` is asked: whether the requester (or the user it
/// impersonates) may do `attributes`; without them, only who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<kubus_api::rbac::Attributes>,
    /// A bearer token to verify (Kubernetes' TokenReview): the answer's
    /// user is then the token's, and `attributes` are decided for it.
    /// Asking needs `create` on `tokenreviews`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The store's answer to a [`ReviewRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// Who the requester is to the store.
    pub user: kubus_api::rbac::UserInfo,
    pub allowed: bool,
    /// Why not, in Kubernetes' words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub type ReviewReply = Result<Review, ApiError>;
