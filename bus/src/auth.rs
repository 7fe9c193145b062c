//! Who is on the bus: the identities of a cluster, their credentials, what
//! each may publish and subscribe, and the nats-server configuration that
//! enforces it (decided here, pure; `kubus up` writes and runs it).
//!
//! Two NATS accounts. `STORE` holds the store peers alone: they serve the
//! API and manifest subjects, speak Raft, and publish every change. Every
//! other identity is in `CLUSTER`, which imports the store's services with
//! `share: true`, so each request reaches the store with a
//! `Nats-Request-Info` header the server writes (a client's own is
//! overwritten) naming the user — the identity the store authorizes
//! ([`requester`]) — and with a reply subject the server rewrote (`_R_.…`),
//! so a requester cannot aim the store's reply at another subject.
//! Change streams are exported to `CLUSTER`; which of them a user may read
//! is its subscribe grant. Inside `CLUSTER` (a node agent's requests,
//! streams) each user has an inbox prefix of its own ([`inbox_prefix`])
//! and a responder answers only inboxes ([`is_inbox`]).
//!
//! Grants follow the subject layout of [`crate::subject`]: everything of
//! node N sits under `kubus.<c>.node.N`, so a node is confined by one grant.

use serde::{Deserialize, Serialize};

use crate::subject::{token, Subjects, Verb};

/// The account of the store peers.
pub const STORE_ACCOUNT: &str = "STORE";
/// The account of every other identity.
pub const CLUSTER_ACCOUNT: &str = "CLUSTER";
/// The header nats-server writes on a request crossing accounts.
pub const HEADER_REQUEST_INFO: &str = "Nats-Request-Info";
/// The prefix of every identity's inbox (`_INBOX_<user>.…`).
pub const INBOX_PREFIX: &str = "_INBOX_";
/// The prefix of a reply subject nats-server rewrote for a service import.
pub const IMPORT_REPLY_PREFIX: &str = "_R_.";

/// One identity on the bus.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// The cluster's administrator (the CLI of whoever ran `kubus up`).
    Admin,
    /// Store peer N.
    Store(u64),
    /// The control role: the scheduler and the controllers.
    Control,
    /// The node agent, service proxy and DNS of one node.
    Node(String),
    /// A read-only dashboard.
    Dashboard,
    /// The Kubernetes API gateway, which acts for the users it
    /// authenticates.
    Gateway,
    /// A machine joining with the cluster's join token: it may only ask
    /// for its node's credentials.
    Bootstrap,
}

impl Identity {
    /// The NATS user name.
    pub fn user(&self) -> String {
        match self {
            Identity::Admin => "admin".into(),
            Identity::Store(n) => format!("store-{n}"),
            Identity::Control => "control".into(),
            Identity::Node(name) => format!("node-{name}"),
            Identity::Dashboard => "dashboard".into(),
            Identity::Gateway => "gateway".into(),
            Identity::Bootstrap => "bootstrap".into(),
        }
    }

    /// The identity of a NATS user name.
    pub fn from_user(user: &str) -> Option<Identity> {
        Some(match user {
            "admin" => Identity::Admin,
            "control" => Identity::Control,
            "dashboard" => Identity::Dashboard,
            "gateway" => Identity::Gateway,
            "bootstrap" => Identity::Bootstrap,
            _ => {
                if let Some(n) = user.strip_prefix("store-") {
                    Identity::Store(n.parse().ok()?)
                } else {
                    let name = user.strip_prefix("node-")?;
                    if name.is_empty() {
                        return None;
                    }
                    Identity::Node(name.to_string())
                }
            }
        })
    }

    pub fn account(&self) -> &'static str {
        match self {
            Identity::Store(_) => STORE_ACCOUNT,
            _ => CLUSTER_ACCOUNT,
        }
    }

    /// The Kubernetes user this identity is: a name and groups, as an
    /// authenticator gives them to Kubernetes' authorizers.
    pub fn user_info(&self) -> kubus_api::rbac::UserInfo {
        use kubus_api::rbac::{UserInfo, AUTHENTICATED, MASTERS, NODES};
        let (name, group) = match self {
            Identity::Admin => ("kubus-admin".to_string(), MASTERS),
            Identity::Store(n) => (format!("system:kubus-store:{n}"), MASTERS),
            Identity::Control => ("system:kubus-control".to_string(), MASTERS),
            Identity::Node(n) => (format!("system:node:{n}"), NODES),
            Identity::Dashboard => (
                kubus_api::rbac::DASHBOARD_USER.to_string(),
                kubus_api::rbac::DASHBOARDS,
            ),
            Identity::Gateway => (
                kubus_api::rbac::GATEWAY_USER.to_string(),
                kubus_api::rbac::GATEWAYS,
            ),
            Identity::Bootstrap => ("system:bootstrap".to_string(), "system:bootstrappers"),
        };
        UserInfo {
            name,
            groups: vec![group.to_string(), AUTHENTICATED.to_string()],
        }
    }
}

/// The inbox prefix of NATS user `user`: replies to it arrive under
/// `<prefix>.…`, which only it may read.
pub fn inbox_prefix(user: &str) -> String {
    format!("{INBOX_PREFIX}{}", token(user))
}

/// Whether a request's reply subject is one a responder may answer: some
/// identity's inbox (or the default `_INBOX.` of a client on a bus
/// without accounts), or a reply nats-server rewrote. Anything else is a
/// requester aiming the answer at another subject (an API subject, another
/// node's): drop the request.
pub fn is_inbox(reply: &str) -> bool {
    let own = reply.strip_prefix(INBOX_PREFIX).is_some_and(|rest| {
        let mut parts = rest.split('.');
        parts.next().is_some_and(|user| !user.is_empty()) && parts.next().is_some()
    });
    own || reply.starts_with("_INBOX.") || reply.starts_with(IMPORT_REPLY_PREFIX)
}

/// What a request's `Nats-Request-Info` header says about its sender.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestInfo {
    #[serde(default)]
    pub acc: String,
    #[serde(default)]
    pub user: String,
}

/// Who sent a request, from its headers, as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// Named by the server: a user of the `CLUSTER` account.
    Identity(Identity),
    /// No header: the request did not cross accounts, so it came from a
    /// store peer (or, on a bus without accounts, from anyone).
    SameAccount,
    /// A header naming no identity kubus made (or not from `CLUSTER`).
    Unknown(String),
}

/// The requester of a message with `headers`.
pub fn requester(headers: Option<&async_nats::HeaderMap>) -> Requester {
    let Some(value) = headers.and_then(|h| h.get(HEADER_REQUEST_INFO)) else {
        return Requester::SameAccount;
    };
    match serde_json::from_str::<RequestInfo>(value.as_str()) {
        Ok(info) if info.acc == CLUSTER_ACCOUNT => match Identity::from_user(&info.user) {
            Some(id) if id.account() == CLUSTER_ACCOUNT => Requester::Identity(id),
            _ => Requester::Unknown(format!("user {:?}", info.user)),
        },
        Ok(info) => Requester::Unknown(format!("account {:?}", info.acc)),
        Err(e) => Requester::Unknown(format!("unreadable {HEADER_REQUEST_INFO}: {e}")),
    }
}

/// What a joining machine asks for: the credentials of node `node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node: String,
}

/// The answer to a [`JoinRequest`].
pub type JoinReply = Result<Credentials, kubus_api::ApiError>;

/// A user's secret: what a client needs to connect as it. Written as JSON
/// to a file only its owner may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// The PEM certificate of the CA that signed the bus server's, when the
    /// bus speaks TLS: the client then requires TLS and trusts this CA
    /// alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

impl Credentials {
    pub fn inbox_prefix(&self) -> String {
        inbox_prefix(&self.user)
    }
}

/// Why a TLS client configuration cannot be made.
#[derive(Debug, thiserror::Error)]
#[error("the bus CA certificate: {0}")]
pub struct TlsError(String);

/// A rustls client configuration that trusts the CA of `ca_pem` alone.
pub fn tls_client_config(ca_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError(e.to_string()))?;
        roots.add(cert).map_err(|e| TlsError(e.to_string()))?;
        found += 1;
    }
    if found == 0 {
        return Err(TlsError("no PEM certificate".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The files of the bus server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: String,
    pub key_file: String,
}

/// Allowed and denied subjects (NATS wildcards) of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// What one user may publish and subscribe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Grant,
    pub subscribe: Grant,
    /// May answer requests it received (publish to their reply subjects).
    pub allow_responses: bool,
}

/// The resources a node's service proxy and DNS follow cluster-wide.
const NODE_WATCHED: [kubus_api::Kind; 2] =
    [kubus_api::Kind::Service, kubus_api::Kind::EndpointSlice];

/// A kind whose changes an identity may hear: everywhere (`None`), or in
/// one namespace.
pub type Readable = (kubus_api::Kind, Option<String>);

/// What `user`'s RBAC lets it watch, as change streams: each kind it may
/// watch at the cluster scope, else each of `namespaces` where it may
/// (the grants [`permissions`] gives a read-only identity).
pub fn readable(
    index: &kubus_api::rbac::Index,
    user: &kubus_api::rbac::UserInfo,
    namespaces: &[String],
) -> Vec<Readable> {
    use kubus_api::rbac::Attributes;
    let mut out = Vec::new();
    for kind in kubus_api::Kind::ALL {
        let watch = Attributes::new("watch", kind.group(), kind.resource());
        if index.authorize(user, &watch).allowed() {
            out.push((kind, None));
            continue;
        }
        if !kind.namespaced() {
            continue;
        }
        for ns in namespaces {
            let here = watch.clone().in_namespace(Some(ns));
            if index.authorize(user, &here).allowed() {
                out.push((kind, Some(ns.clone())));
            }
        }
    }
    out
}

/// What `id` may do on the bus of cluster `s`. `view` is what a read-only
/// identity may hear, compiled from its RBAC ([`readable`]; `None`: every
/// change but Secrets').
pub fn permissions(id: &Identity, s: &Subjects, view: Option<&[Readable]>) -> Permissions {
    let inbox = format!("{}.>", inbox_prefix(&id.user()));
    let root = s.root();
    // what only the store publishes: nobody in CLUSTER may forge it
    let store_streams = vec![
        format!("{root}.obj.>"),
        format!("{root}.events.>"),
        format!("{root}.node.*.pods"),
    ];
    match id {
        Identity::Admin => Permissions {
            publish: Grant {
                allow: vec![">".into()],
                deny: store_streams,
            },
            subscribe: Grant {
                allow: vec![">".into()],
                deny: vec![],
            },
            allow_responses: true,
        },
        Identity::Store(_) => Permissions {
            publish: Grant {
                allow: vec![
                    format!("{root}.obj.>"),
                    format!("{root}.events.>"),
                    format!("{root}.node.*.pods"),
                    format!("{root}.raft.>"),
                    format!("{root}.store.>"),
                    format!("{root}.api.>"),
                    format!("{root}.manifests"),
                    // the replies to CLUSTER's requests, named outright: the
                    // grant `allow_responses` gives lapses when the server
                    // reloads, and an answer under way would be refused
                    format!("{IMPORT_REPLY_PREFIX}>"),
                ],
                deny: vec![],
            },
            subscribe: Grant {
                allow: vec![
                    format!("{root}.api.>"),
                    format!("{root}.manifests"),
                    s.review(),
                    format!("{root}.raft.>"),
                    format!("{root}.store.>"),
                    inbox,
                ],
                deny: vec![],
            },
            allow_responses: true,
        },
        Identity::Control => Permissions {
            publish: Grant {
                allow: vec![
                    format!("{root}.api.>"),
                    s.manifests(),
                    s.review(),
                    // the autoscaler asks the node agents for figures
                    format!(
                        "{root}.node.*.agent.{}",
                        crate::subject::AgentOp::Usage.as_str()
                    ),
                ],
                deny: vec![],
            },
            subscribe: Grant {
                allow: vec![format!("{root}.obj.>"), format!("{root}.events.>"), inbox],
                deny: vec![],
            },
            allow_responses: false,
        },
        Identity::Node(name) => {
            let own = format!("{}.>", s.node(name));
            let mut subscribe = vec![own.clone(), inbox];
            subscribe.extend(NODE_WATCHED.iter().map(|k| s.obj_all(*k)));
            Permissions {
                publish: Grant {
                    allow: vec![
                        format!("{root}.api.>"),
                        s.review(),
                        own,
                        // the inboxes of those who ask an agent (logs, exec,
                        // port-forward), named outright for the same reason
                        // as the store's replies
                        format!("{}.>", inbox_prefix(&Identity::Admin.user())),
                        format!("{}.>", inbox_prefix(&Identity::Gateway.user())),
                        format!("{}.>", inbox_prefix(&Identity::Control.user())),
                        format!("{}.>", inbox_prefix(&Identity::Dashboard.user())),
                    ],
                    deny: vec![s.node_pods(name)],
                },
                subscribe: Grant {
                    allow: subscribe,
                    deny: vec![],
                },
                allow_responses: true,
            }
        }
        Identity::Dashboard => {
            let mut subscribe = vec![format!("{root}.events.>"), inbox];
            let mut deny = vec![];
            match view {
                Some(readable) => subscribe.extend(readable.iter().map(|(k, ns)| match ns {
                    None => s.obj_all(*k),
                    Some(ns) => s.obj_in(*k, ns),
                })),
                None => {
                    subscribe.push(format!("{root}.obj.>"));
                    deny.push(s.obj_all(kubus_api::Kind::Secret));
                }
            }
            Permissions {
                publish: Grant {
                    allow: [Verb::Get, Verb::List, Verb::Watch]
                        .iter()
                        .map(|v| format!("{root}.api.{}.>", v.as_str()))
                        .chain([
                            s.review(),
                            // the figures it shows beside nodes and pods
                            format!(
                                "{root}.node.*.agent.{}",
                                crate::subject::AgentOp::Usage.as_str()
                            ),
                        ])
                        .collect(),
                    deny: vec![],
                },
                subscribe: Grant {
                    allow: subscribe,
                    deny,
                },
                allow_responses: false,
            }
        }
        Identity::Bootstrap => Permissions {
            publish: Grant {
                allow: vec![s.join()],
                deny: vec![],
            },
            subscribe: Grant {
                allow: vec![inbox],
                deny: vec![],
            },
            allow_responses: false,
        },
        Identity::Gateway => Permissions {
            publish: Grant {
                allow: vec![
                    format!("{root}.api.>"),
                    s.manifests(),
                    s.review(),
                    format!("{root}.node.*.agent.>"),
                    format!("{root}.node.*.stream.>"),
                ],
                deny: vec![],
            },
            subscribe: Grant {
                allow: vec![
                    format!("{root}.obj.>"),
                    format!("{root}.events.>"),
                    format!("{root}.node.*.stream.>"),
                    inbox,
                ],
                deny: vec![],
            },
            allow_responses: false,
        },
    }
}

/// A user of the server configuration: its identity, its password as the
/// server checks it (a bcrypt hash), its permissions.
#[derive(Debug, Clone)]
pub struct ServerUser {
    pub identity: Identity,
    pub password_hash: String,
    pub permissions: Permissions,
}

fn quoted(s: &str) -> String {
    // subjects, user names and bcrypt hashes hold no quote or backslash;
    // escape anyway so that no input can end the string
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", inner.join(", "))
}

fn user_block(u: &ServerUser) -> String {
    let p = &u.permissions;
    let mut perms = format!(
        "publish: {{allow: {}, deny: {}}}, subscribe: {{allow: {}, deny: {}}}",
        list(&p.publish.allow),
        list(&p.publish.deny),
        list(&p.subscribe.allow),
        list(&p.subscribe.deny)
    );
    if p.allow_responses {
        perms.push_str(", allow_responses: true");
    }
    format!(
        "      {{user: {}, password: {}, permissions: {{{perms}}}}}\n",
        quoted(&u.identity.user()),
        quoted(&u.password_hash)
    )
}

/// The `accounts` section (and, with `tls`, the `tls` section) of a
/// nats-server configuration for cluster `s` with `users` (the listen
/// address is the caller's).
pub fn server_config(s: &Subjects, users: &[ServerUser], tls: Option<&ServerTls>) -> String {
    let root = s.root();
    let mut out = String::from("# written by kubus; do not edit (regenerated)\n");
    if let Some(t) = tls {
        out.push_str(&format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  timeout: 5\n}}\n",
            quoted(&t.cert_file),
            quoted(&t.key_file)
        ));
    }
    out.push_str("accounts {\n");
    for account in [STORE_ACCOUNT, CLUSTER_ACCOUNT] {
        out.push_str(&format!("  {account}: {{\n    users: [\n"));
        for u in users.iter().filter(|u| u.identity.account() == account) {
            out.push_str(&user_block(u));
        }
        out.push_str("    ]\n");
        let services = [
            (format!("{root}.api.>"), "singleton"),
            (s.manifests(), "singleton"),
            (s.review(), "singleton"),
            (format!("{root}.store.>"), "stream"),
        ];
        let streams = [
            format!("{root}.obj.>"),
            format!("{root}.events.>"),
            format!("{root}.node.*.pods"),
        ];
        if account == STORE_ACCOUNT {
            out.push_str("    exports: [\n");
            for (subject, response) in &services {
                out.push_str(&format!(
                    "      {{service: {}, response_type: {response}}}\n",
                    quoted(subject)
                ));
            }
            for subject in &streams {
                out.push_str(&format!("      {{stream: {}}}\n", quoted(subject)));
            }
        } else {
            out.push_str("    imports: [\n");
            for (subject, _) in &services {
                out.push_str(&format!(
                    "      {{service: {{account: {STORE_ACCOUNT}, subject: {}}}, share: true}}\n",
                    quoted(subject)
                ));
            }
            for subject in &streams {
                out.push_str(&format!(
                    "      {{stream: {{account: {STORE_ACCOUNT}, subject: {}}}}}\n",
                    quoted(subject)
                ));
            }
        }
        out.push_str("    ]\n  }\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_user_names() {
        for id in [
            Identity::Admin,
            Identity::Store(3),
            Identity::Control,
            Identity::Node("worker-1.example".into()),
            Identity::Dashboard,
            Identity::Gateway,
            Identity::Bootstrap,
        ] {
            assert_eq!(Identity::from_user(&id.user()), Some(id));
        }
        assert_eq!(Identity::from_user("node-"), None);
        assert_eq!(Identity::from_user("store-x"), None);
        assert_eq!(Identity::from_user("root"), None);
        assert_eq!(
            Identity::Node("n1".into()).user_info().name,
            "system:node:n1"
        );
    }

    #[test]
    fn only_inboxes_are_answered() {
        assert!(is_inbox("_INBOX_admin.abc.1"));
        assert!(is_inbox("_R_.x1.y2"));
        assert!(!is_inbox("_INBOX_.x"));
        assert!(!is_inbox("_INBOX_admin"));
        assert!(!is_inbox("kubus.c.api.delete.pods.default"));
        assert!(is_inbox("_INBOX.abc"));
        assert!(!is_inbox("_INBOXabc.x"));
        assert_eq!(inbox_prefix("node-a.b"), "_INBOX_node-a_b");
    }

    #[test]
    fn the_requester_is_the_servers_word() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(requester(None), Requester::SameAccount);
        h.insert(
            HEADER_REQUEST_INFO,
            r#"{"acc":"CLUSTER","user":"node-n1","rtt":1}"#,
        );
        assert_eq!(
            requester(Some(&h)),
            Requester::Identity(Identity::Node("n1".into()))
        );
        h.insert(HEADER_REQUEST_INFO, r#"{"acc":"CLUSTER","user":"store-1"}"#);
        assert!(matches!(requester(Some(&h)), Requester::Unknown(_)));
        h.insert(HEADER_REQUEST_INFO, "not json");
        assert!(matches!(requester(Some(&h)), Requester::Unknown(_)));
    }

    #[test]
    fn nodes_are_confined_to_their_own_subjects() {
        let s = Subjects::new("c");
        let p = permissions(&Identity::Node("n1".into()), &s, None);
        assert!(p.subscribe.allow.contains(&"kubus.c.node.n1.>".to_string()));
        assert!(!p.subscribe.allow.iter().any(|a| a.contains("node.*")));
        assert!(p.publish.deny.contains(&"kubus.c.node.n1.pods".to_string()));
        assert!(p.subscribe.allow.contains(&"_INBOX_node-n1.>".to_string()));
        // replies are granted outright: a reload drops what allow_responses gave
        let store = permissions(&Identity::Store(1), &s, None);
        assert!(store.publish.allow.contains(&"_R_.>".to_string()));
        assert!(p.publish.allow.contains(&"_INBOX_gateway.>".to_string()));
        let d = permissions(&Identity::Dashboard, &s, None);
        assert!(d
            .subscribe
            .deny
            .contains(&"kubus.c.obj.secrets.>".to_string()));
        assert!(d.publish.allow.iter().all(|a| a.contains(".api.get.")
            || a.contains(".api.list.")
            || a.contains(".api.watch.")
            || a.ends_with(".review")
            || a.ends_with(".agent.usage")));
        assert!(p.publish.allow.contains(&"_INBOX_dashboard.>".to_string()));
    }

    #[test]
    fn the_config_exports_the_store_and_imports_it_shared() {
        let s = Subjects::new("c");
        let users: Vec<ServerUser> = [Identity::Store(1), Identity::Admin]
            .into_iter()
            .map(|identity| ServerUser {
                permissions: permissions(&identity, &s, None),
                identity,
                password_hash: "$2b$04$abc".into(),
            })
            .collect();
        let text = server_config(
            &s,
            &users,
            Some(&ServerTls {
                cert_file: "/d/s.crt".into(),
                key_file: "/d/s.key".into(),
            }),
        );
        assert!(text.contains("tls {\n  cert_file: \"/d/s.crt\"\n"));
        assert!(text.contains("{service: \"kubus.c.api.>\", response_type: singleton}"));
        assert!(
            text.contains("{service: {account: STORE, subject: \"kubus.c.api.>\"}, share: true}")
        );
        assert!(text.contains("{user: \"store-1\", password: \"$2b$04$abc\""));
        let store_at = text.find("STORE: {").expect("store account");
        let cluster_at = text.find("CLUSTER: {").expect("cluster account");
        let admin_at = text.find("\"admin\"").expect("admin");
        assert!(store_at < cluster_at && cluster_at < admin_at);
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }
}
