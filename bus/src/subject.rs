//! The one place that builds NATS subjects and header names.
//!
//! Subjects go general to specific, `kubus.<cluster>.<area>.…`, so that NATS
//! permissions can grant an area, a verb, a resource or a namespace. Every
//! token is `[a-z0-9_-]`: names are validated by `kubus-api` before they get
//! here, and the one character a DNS-1123 name may hold that a token may not,
//! `.`, is written as `_` (a character no Kubernetes name can contain, so the
//! mapping cannot collide). Namespace tokens use `_` for cluster-scoped kinds
//! and `_all` for "every namespace" on list and watch.

use kubus_api::Kind;

/// Header carrying a request's W3C trace context (see [`crate::trace`]).
pub const HEADER_TRACEPARENT: &str = kubus_trace::TRACEPARENT;
/// Header carrying the codec of a message body (`json`; absent = MessagePack).
pub const HEADER_CODEC: &str = "Kubus-Codec";
/// Header value asking for JSON bodies, for clients without MessagePack.
pub const CODEC_JSON: &str = "json";
/// Header on a manifest request: validate and report, write nothing.
pub const HEADER_DRY_RUN: &str = "Kubus-Dry-Run";

/// Header on a write of an elected actor: the Lease it holds, as
/// `<namespace>/<name>@<create revision>` ([`crate::protocol::Fence`]).
/// The store commits the write only if that Lease is still the one
/// acquired (same create revision), in the same Raft entry.
pub const HEADER_FENCE: &str = "Kubus-Fence";

/// Header on a request made for another user: JSON `{"user", "groups"}`
/// (`kubectl --as`, and the API gateway for the users it authenticates).
/// The store acts as that user only if the sender may impersonate it.
pub const HEADER_IMPERSONATE: &str = "Kubus-Impersonate";

/// Last token of the subject that carries a stream's bookmarks.
pub const BOOKMARK_TOKEN: &str = "_bookmark";

/// Namespace token of cluster-scoped kinds.
pub const CLUSTER_SCOPED: &str = "_";
/// Namespace token meaning "all namespaces" (list only).
pub const ALL_NAMESPACES: &str = "_all";

/// Queue group every store peer's API service joins.
pub const API_QUEUE: &str = "kubus-store";

/// An API verb, the third token of an `api` subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Create,
    Update,
    Delete,
    Apply,
    Patch,
    /// The changes after a revision, from the store's history.
    Watch,
    /// Evict a pod: a graceful delete that its PodDisruptionBudget may
    /// refuse (Kubernetes' `pods/eviction` subresource).
    Evict,
    /// Issue a ServiceAccount's token (Kubernetes' `serviceaccounts/token`
    /// subresource, a TokenRequest).
    Token,
}

impl Verb {
    pub const ALL: [Verb; 10] = [
        Verb::Get,
        Verb::List,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
        Verb::Apply,
        Verb::Patch,
        Verb::Watch,
        Verb::Evict,
        Verb::Token,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Apply => "apply",
            Verb::Patch => "patch",
            Verb::Watch => "watch",
            Verb::Evict => "evict",
            Verb::Token => "token",
        }
    }

    pub fn parse(token: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == token)
    }
}

/// Turns a validated name into a subject token (`.` → `_`).
pub fn token(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

fn namespace_token(kind: Kind, namespace: Option<&str>) -> String {
    match (kind.namespaced(), namespace) {
        (false, _) => CLUSTER_SCOPED.to_string(),
        (true, Some(ns)) => token(ns),
        (true, None) => ALL_NAMESPACES.to_string(),
    }
}

/// Builds every subject of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    root: String,
}

impl Subjects {
    pub fn new(cluster: &str) -> Subjects {
        Subjects {
            root: format!("kubus.{}", token(cluster)),
        }
    }

    /// `kubus.<c>`: the root of every subject of the cluster.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `kubus.<c>.review`: whether the requester may do something, and
    /// who it is (the store answers; `kubus auth can-i`, the gateway's
    /// access reviews).
    pub fn review(&self) -> String {
        format!("{}.review", self.root)
    }

    /// `kubus.<c>.join`: a machine with the join token asks for its node's
    /// bus credentials (answered by the process that runs the bus).
    pub fn join(&self) -> String {
        format!("{}.join", self.root)
    }

    /// `kubus.<c>.manifests`: manifests in, per-object results out.
    pub fn manifests(&self) -> String {
        format!("{}.manifests", self.root)
    }

    /// `kubus.<c>.api.<verb>.<resource>.<namespace>`.
    pub fn api(&self, verb: Verb, kind: Kind, namespace: Option<&str>) -> String {
        format!(
            "{}.api.{}.{}.{}",
            self.root,
            verb.as_str(),
            kind.resource(),
            namespace_token(kind, namespace)
        )
    }

    /// Every API subject, for the store's service.
    pub fn api_all(&self) -> String {
        format!("{}.api.>", self.root)
    }

    /// Parses an API subject back into verb, kind and namespace token.
    pub fn parse_api<'a>(&self, subject: &'a str) -> Option<(Verb, Kind, &'a str)> {
        let rest = subject.strip_prefix(&self.root)?.strip_prefix(".api.")?;
        let mut parts = rest.split('.');
        let verb = Verb::parse(parts.next()?)?;
        let kind = Kind::from_resource(parts.next()?).ok()?;
        let ns = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some((verb, kind, ns))
    }

    /// `kubus.<c>.obj.<resource>.<namespace>.<name>`: one object's changes.
    pub fn obj(&self, kind: Kind, namespace: Option<&str>, name: &str) -> String {
        format!(
            "{}.obj.{}.{}.{}",
            self.root,
            kind.resource(),
            namespace_token(kind, namespace.or(Some(CLUSTER_SCOPED))),
            token(name)
        )
    }

    /// `kubus.<c>.obj.<resource>._bookmark`: the latest revision of a
    /// resource's stream, published periodically; inside `obj_all`.
    pub fn bookmark(&self, kind: Kind) -> String {
        format!("{}.obj.{}.{BOOKMARK_TOKEN}", self.root, kind.resource())
    }

    /// Wildcard over the changes of one kind (all namespaces).
    pub fn obj_all(&self, kind: Kind) -> String {
        format!("{}.obj.{}.>", self.root, kind.resource())
    }

    /// `kubus.<c>.node.<node>`: everything of one node sits under it (its
    /// pods' changes, its agent's requests, its streams, its heartbeat),
    /// so one grant confines a node to its own.
    pub fn node(&self, node: &str) -> String {
        format!("{}.node.{}", self.root, token(node))
    }

    /// Wildcard over the changes of one kind in one namespace.
    pub fn obj_in(&self, kind: Kind, namespace: &str) -> String {
        format!(
            "{}.obj.{}.{}.>",
            self.root,
            kind.resource(),
            token(namespace)
        )
    }

    /// `kubus.<c>.node.<node>.pods`: changes of pods bound to one node.
    pub fn node_pods(&self, node: &str) -> String {
        format!("{}.pods", self.node(node))
    }

    /// `kubus.<c>.events.<namespace>.<resource>.<name>`: Kubernetes Events.
    pub fn events(&self, namespace: &str, kind: Kind, name: &str) -> String {
        format!(
            "{}.events.{}.{}.{}",
            self.root,
            token(namespace),
            kind.resource(),
            token(name)
        )
    }

    /// Every Event of the cluster.
    pub fn events_all(&self) -> String {
        format!("{}.events.>", self.root)
    }

    /// Every Event of one namespace.
    pub fn events_in(&self, namespace: &str) -> String {
        format!("{}.events.{}.>", self.root, token(namespace))
    }

    /// `kubus.<c>.node.<node>.heartbeat`.
    pub fn heartbeat(&self, node: &str) -> String {
        format!("{}.heartbeat", self.node(node))
    }

    /// `kubus.<c>.raft.<peer-id>`: Raft messages to one peer.
    pub fn raft(&self, peer_id: u64) -> String {
        format!("{}.raft.{}", self.root, peer_id)
    }

    /// `kubus.<c>.raft.<peer-id>.snapshot`: requests for chunks of the Raft
    /// snapshots peer `peer_id` is sending (`ChunkRequest` → one chunk).
    pub fn raft_snapshot(&self, peer_id: u64) -> String {
        format!("{}.raft.{}.snapshot", self.root, peer_id)
    }

    /// `kubus.<c>.store.<op>`: a store administration request every store
    /// peer answers (`status` gathers one reply per peer).
    pub fn store(&self, op: StoreOp) -> String {
        format!("{}.store.{}", self.root, op.as_str())
    }

    /// `kubus.<c>.store.<op>.<peer-id>`: a store administration request to
    /// one peer (membership changes go to the leader).
    pub fn store_peer(&self, op: StoreOp, peer_id: u64) -> String {
        format!("{}.store.{}.{}", self.root, op.as_str(), peer_id)
    }

    /// What one store peer subscribes to for administration: the requests
    /// to every peer and those to it.
    pub fn store_served(&self, peer_id: u64) -> [String; 2] {
        [
            format!("{}.store.*", self.root),
            format!("{}.store.*.{}", self.root, peer_id),
        ]
    }

    /// The operation of a `store` subject.
    pub fn parse_store(&self, subject: &str) -> Option<StoreOp> {
        let rest = subject.strip_prefix(&self.root)?.strip_prefix(".store.")?;
        let op = rest.split('.').next()?;
        StoreOp::ALL.into_iter().find(|o| o.as_str() == op)
    }

    /// `kubus.<c>.node.<node>.agent.<op>`: requests served by one node
    /// agent.
    pub fn agent(&self, node: &str, op: AgentOp) -> String {
        format!("{}.agent.{}", self.node(node), op.as_str())
    }

    /// Where the receiver of `data` (a stream subject) acknowledges what it
    /// has written: `<data>.ack`.
    pub fn stream_ack(&self, data: &str) -> String {
        format!("{data}.ack")
    }

    /// The subjects `end` of byte stream `id` to or from node `node`'s
    /// agent sends on and receives on: `kubus.<c>.node.<node>.stream.<id>.up`
    /// (opener → acceptor) and `.down`.
    pub fn stream(&self, node: &str, id: &str, end: StreamEnd) -> (String, String) {
        let at = format!("{}.stream.{}", self.node(node), token(id));
        let (up, down) = (format!("{at}.up"), format!("{at}.down"));
        match end {
            StreamEnd::Opener => (up, down),
            StreamEnd::Acceptor => (down, up),
        }
    }
}

/// Store administration operations, the fourth token of a `store` subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Each peer's Raft and store figures.
    Status,
    /// Add a voter (leader only).
    AddPeer,
    /// Remove a voter (leader only).
    RemovePeer,
    /// Hand leadership to a voter (asked of the leader).
    TransferLeader,
    /// One chunk of a backup file (`kubus store snapshot save`; asked of
    /// one peer, see [`crate::backup`]).
    Snapshot,
    /// Read, and change, one peer's encryption keys (asked of each peer).
    EncryptionKeys,
    /// Rewrite every object not sealed with its resource's writing key
    /// (asked of the leader).
    Reseal,
}

impl StoreOp {
    pub const ALL: [StoreOp; 7] = [
        StoreOp::Status,
        StoreOp::AddPeer,
        StoreOp::RemovePeer,
        StoreOp::TransferLeader,
        StoreOp::Snapshot,
        StoreOp::EncryptionKeys,
        StoreOp::Reseal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Status => "status",
            StoreOp::AddPeer => "add-peer",
            StoreOp::RemovePeer => "remove-peer",
            StoreOp::TransferLeader => "transfer-leader",
            StoreOp::Snapshot => "snapshot",
            StoreOp::EncryptionKeys => "encryption-keys",
            StoreOp::Reseal => "reseal",
        }
    }
}

/// Operations a node agent serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOp {
    /// Read a container's log (`kubus logs`).
    Logs,
    /// Run a command in a container (`kubus exec`).
    Exec,
    /// Open a byte stream to a pod's port (`kubus port-forward`).
    PortForward,
    /// Run a command in a container with its stdin, stdout, stderr and
    /// terminal carried over a byte stream (`kubus exec -it`, the API
    /// gateway's exec).
    ExecStream,
    /// The resource usage of the node's pods and machine (`kubus top`).
    Usage,
}

/// Which end of a byte stream ([`crate::stream`]) a side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The side that asked for the stream (the CLI).
    Opener,
    /// The side that accepted it (the node agent).
    Acceptor,
}

impl AgentOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentOp::Logs => "logs",
            AgentOp::Exec => "exec",
            AgentOp::PortForward => "portforward",
            AgentOp::ExecStream => "exec-stream",
            AgentOp::Usage => "usage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_design() {
        let s = Subjects::new("dev");
        assert_eq!(s.manifests(), "kubus.dev.manifests");
        assert_eq!(
            s.api(Verb::List, Kind::Pod, Some("default")),
            "kubus.dev.api.list.pods.default"
        );
        assert_eq!(
            s.api(Verb::Get, Kind::Node, Some("x")),
            "kubus.dev.api.get.nodes._"
        );
        assert_eq!(
            s.api(Verb::List, Kind::Pod, None),
            "kubus.dev.api.list.pods._all"
        );
        assert_eq!(
            s.obj(Kind::Pod, Some("default"), "web.v1"),
            "kubus.dev.obj.pods.default.web_v1"
        );
        assert_eq!(s.obj(Kind::Node, None, "n1"), "kubus.dev.obj.nodes._.n1");
        assert_eq!(s.node_pods("n1"), "kubus.dev.node.n1.pods");
        assert_eq!(
            s.events("default", Kind::Pod, "p"),
            "kubus.dev.events.default.pods.p"
        );
        assert_eq!(s.heartbeat("n1"), "kubus.dev.node.n1.heartbeat");
        assert_eq!(s.raft(3), "kubus.dev.raft.3");
        assert_eq!(s.store(StoreOp::Status), "kubus.dev.store.status");
        assert_eq!(
            s.store_peer(StoreOp::AddPeer, 2),
            "kubus.dev.store.add-peer.2"
        );
        assert_eq!(s.bookmark(Kind::Pod), "kubus.dev.obj.pods._bookmark");
        assert_eq!(s.agent("n1", AgentOp::Logs), "kubus.dev.node.n1.agent.logs");
        assert_eq!(s.agent("n1", AgentOp::Exec), "kubus.dev.node.n1.agent.exec");
        assert_eq!(
            s.stream("n1", "abc", StreamEnd::Opener),
            (
                "kubus.dev.node.n1.stream.abc.up".to_string(),
                "kubus.dev.node.n1.stream.abc.down".to_string()
            )
        );
    }

    #[test]
    fn api_subjects_parse_back() {
        let s = Subjects::new("dev");
        for verb in Verb::ALL {
            for kind in Kind::ALL {
                let subject = s.api(verb, kind, Some("ns1"));
                let (v, k, _) = s.parse_api(&subject).expect("parses");
                assert_eq!((v, k), (verb, kind));
            }
        }
        assert_eq!(s.parse_api("kubus.dev.api.get.pods"), None);
        assert_eq!(s.parse_api("kubus.other.api.get.pods.x"), None);
        assert_eq!(s.parse_api("kubus.dev.api.frob.pods.x"), None);
    }

    #[test]
    fn store_subjects_parse_back() {
        let s = Subjects::new("dev");
        for op in StoreOp::ALL {
            assert_eq!(s.parse_store(&s.store(op)), Some(op));
            assert_eq!(s.parse_store(&s.store_peer(op, 7)), Some(op));
        }
        assert_eq!(s.parse_store("kubus.dev.store.frob"), None);
        assert_eq!(s.parse_store("kubus.other.store.status"), None);
    }

    #[test]
    fn tokens_cannot_carry_wildcards() {
        assert_eq!(token("a.b*c>d"), "a_b_c_d");
    }
}
