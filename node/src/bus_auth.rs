//! The bus's credentials on this machine: every identity's secret, made
//! once per data directory (`<data-dir>/bus/`, readable by its owner
//! alone), the nats-server configuration built from them
//! ([`kubus_bus::auth::server_config`]), and a credentials file per
//! identity for the processes that connect as it.
//!
//! Passwords are 256 random bits; the server's configuration holds their
//! bcrypt hashes at the lowest cost — against a secret that long the work
//! factor adds nothing, and every connection pays it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use kubus_bus::auth::{self, Credentials, Identity, ServerUser};
use kubus_bus::Subjects;
use serde::{Deserialize, Serialize};

/// The directory of a data directory's bus credentials.
pub const DIR: &str = "bus";
/// bcrypt's lowest cost (see the module doc).
const BCRYPT_COST: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Secret {
    password: String,
    /// The bcrypt hash of `password`, as the server checks it.
    hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SecretsFile {
    users: BTreeMap<String, Secret>,
}

/// The secrets of every identity of one data directory.
pub struct BusSecrets {
    dir: PathBuf,
    file: SecretsFile,
    /// The dashboard's change streams, compiled from RBAC ([`follow_rbac`];
    /// None until then: every change but Secrets').
    dashboard_view: Option<Vec<auth::Readable>>,
    /// The server's TLS files and the CA clients trust, when the bus
    /// speaks TLS.
    tls: Option<(auth::ServerTls, String)>,
}

/// Write `bytes` to `path` (through a temporary file), readable by the
/// owner alone.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn new_password() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where the credentials file of `id` lives in `dir`.
pub fn credentials_path(dir: &Path, id: &Identity) -> PathBuf {
    dir.join(format!("{}.json", id.user()))
}

/// Read a credentials file.
pub fn read_credentials(path: &Path) -> anyhow::Result<Credentials> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading credentials {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "credentials {}: not a kubus credentials file",
            path.display()
        )
    })
}

impl BusSecrets {
    /// The secrets under `data_dir`, with one made for each of `ids` that
    /// has none yet.
    pub fn load_or_create(data_dir: &Path, ids: &[Identity]) -> anyhow::Result<BusSecrets> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let path = dir.join("secrets.json");
        let file: SecretsFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not readable", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SecretsFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut secrets = BusSecrets {
            dir,
            file,
            dashboard_view: None,
            tls: None,
        };
        for id in ids {
            secrets.add(id)?;
        }
        Ok(secrets)
    }

    /// Make a secret for `id` if it has none (kept on disk before this
    /// returns), and write its credentials file.
    pub fn add(&mut self, id: &Identity) -> anyhow::Result<Credentials> {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.file.users.entry(id.user()) {
            let password = new_password();
            let hash = bcrypt::hash(&password, BCRYPT_COST).context("hashing a bus password")?;
            slot.insert(Secret { password, hash });
            write_private(
                &self.dir.join("secrets.json"),
                &serde_json::to_vec_pretty(&self.file)?,
            )?;
        }
        self.write_credentials(id)?;
        self.credentials(id)
            .context("a secret just made is missing")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write the join token (the `bootstrap` user's password; with TLS,
    /// followed by the CA certificate a joining machine must trust) to
    /// `<dir>/join-token` and return that path.
    pub fn write_join_token(&self) -> anyhow::Result<Option<PathBuf>> {
        let Some(c) = self.credentials(&Identity::Bootstrap) else {
            return Ok(None);
        };
        let path = self.dir.join("join-token");
        let text = format!("{}\n{}", c.password, c.ca.unwrap_or_default());
        write_private(&path, text.as_bytes())?;
        Ok(Some(path))
    }

    /// The credentials of `id`, if it has a secret here.
    pub fn credentials(&self, id: &Identity) -> Option<Credentials> {
        self.file.users.get(&id.user()).map(|s| Credentials {
            user: id.user(),
            password: s.password.clone(),
            ca: self.tls.as_ref().map(|(_, ca)| ca.clone()),
        })
    }

    /// Serve the bus over TLS with the server certificate and key of
    /// `pki` (written under `<dir>/tls/`); every credentials file written
    /// from now on names the CA. Call before writing the configuration.
    pub fn enable_tls(&mut self, pki: &kubus_gateway::pki::Pki) -> anyhow::Result<()> {
        let dir = self.dir.join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        write_private(&cert, pki.server_cert.as_bytes())?;
        write_private(&key, pki.server_key.as_bytes())?;
        write_private(&dir.join("ca.crt"), pki.ca_cert.as_bytes())?;
        self.tls = Some((
            auth::ServerTls {
                cert_file: cert.display().to_string(),
                key_file: key.display().to_string(),
            },
            pki.ca_cert.clone(),
        ));
        let users: Vec<Identity> = self
            .file
            .users
            .keys()
            .filter_map(|u| Identity::from_user(u))
            .collect();
        for id in &users {
            self.write_credentials(id)?;
        }
        Ok(())
    }

    fn write_credentials(&self, id: &Identity) -> anyhow::Result<()> {
        if let Some(c) = self.credentials(id) {
            write_private(
                &credentials_path(&self.dir, id),
                &serde_json::to_vec_pretty(&c)?,
            )?;
        }
        Ok(())
    }

    /// Write the server's configuration (every identity with a secret,
    /// each with the grants of [`auth::permissions`]) and return its path.
    pub fn write_server_config(&self, subjects: &Subjects) -> anyhow::Result<PathBuf> {
        let users: Vec<ServerUser> = self
            .file
            .users
            .iter()
            .filter_map(|(user, secret)| {
                let identity = Identity::from_user(user)?;
                let view = match identity {
                    Identity::Dashboard => self.dashboard_view.as_deref(),
                    _ => None,
                };
                Some(ServerUser {
                    permissions: auth::permissions(&identity, subjects, view),
                    identity,
                    password_hash: secret.hash.clone(),
                })
            })
            .collect();
        let path = self.dir.join("nats.conf");
        let tls = self.tls.as_ref().map(|(t, _)| t);
        write_private(&path, auth::server_config(subjects, &users, tls).as_bytes())?;
        Ok(path)
    }
}

/// Answer join requests until the connection ends: a machine that knows
/// the join token asks for a node's credentials; the user is added to the
/// server's configuration, the server reloads it, and the credentials go
/// back. Requests are served one at a time (each rewrites one file).
pub async fn serve_joins(
    client: kubus_bus::Client,
    secrets: std::sync::Arc<std::sync::Mutex<BusSecrets>>,
    server: std::sync::Arc<std::sync::Mutex<crate::nats_server::NatsServer>>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let subjects = client.subjects().clone();
    let mut requests = client
        .nats()
        .subscribe(subjects.join())
        .await
        .context("subscribing to join requests")?;
    while let Some(msg) = requests.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        if !auth::is_inbox(reply_to.as_str()) {
            continue;
        }
        let reply: auth::JoinReply = match serde_json::from_slice::<auth::JoinRequest>(&msg.payload)
        {
            Err(e) => Err(kubus_api::ApiError::bad_request(format!(
                "join request: {e}"
            ))),
            Ok(req) => admit_node(&req.node, &secrets, &server, &subjects),
        };
        match &reply {
            Ok(c) => tracing::info!(user = %c.user, "a node joined: its bus user is added"),
            Err(e) => tracing::warn!(error = %e, "join refused"),
        }
        let body = serde_json::to_vec(&reply).unwrap_or_default();
        if let Err(e) = client.nats().publish(reply_to, body.into()).await {
            tracing::warn!(error = %e, "cannot answer a join request");
        }
    }
    Ok(())
}

fn admit_node(
    node: &str,
    secrets: &std::sync::Mutex<BusSecrets>,
    server: &std::sync::Mutex<crate::nats_server::NatsServer>,
    subjects: &Subjects,
) -> auth::JoinReply {
    let problems = kubus_api::admission::validate::dns1123_subdomain_problems(node);
    if !problems.is_empty() {
        return Err(kubus_api::ApiError::bad_request(format!(
            "node name {node:?}: {}",
            problems.join("; ")
        )));
    }
    let internal = |e: anyhow::Error| kubus_api::ApiError::internal(format!("{e:#}"));
    let credentials = {
        let mut s = secrets
            .lock()
            .map_err(|_| kubus_api::ApiError::internal("bus secrets poisoned"))?;
        let c = s.add(&Identity::Node(node.to_string())).map_err(internal)?;
        s.write_server_config(subjects).map_err(internal)?;
        c
    };
    server
        .lock()
        .map_err(|_| kubus_api::ApiError::internal("nats supervisor poisoned"))?
        .reload()
        .map_err(internal)?;
    Ok(credentials)
}

/// Most often the grants are compiled: changes arriving together make one.
const RBAC_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
/// The wait before compiling again after the store could not be read.
const RBAC_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keep the dashboard's NATS grants in step with its RBAC: whenever a
/// Role, ClusterRole, binding or Namespace changes, compile what its user
/// may watch into change streams ([`auth::readable`]) and, if that
/// differs, rewrite the server's configuration and reload it — a connected
/// dashboard hears what a new binding grants within a second, and stops
/// hearing what a removed one took away. Runs until the connection ends.
pub async fn follow_rbac(
    client: kubus_bus::Client,
    secrets: std::sync::Arc<std::sync::Mutex<BusSecrets>>,
    server: std::sync::Arc<std::sync::Mutex<crate::nats_server::NatsServer>>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use kubus_api::Kind;
    let s = client.subjects().clone();
    let watched = [
        Kind::Role,
        Kind::ClusterRole,
        Kind::RoleBinding,
        Kind::ClusterRoleBinding,
        Kind::Namespace,
    ];
    let mut subs = Vec::new();
    for k in watched {
        subs.push(client.nats().subscribe(s.obj_all(k)).await?);
    }
    let mut changes = futures::stream::select_all(subs);
    let mut last: Option<Vec<auth::Readable>> = None;
    loop {
        let view = match compile(&client).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "RBAC not readable yet");
                tokio::time::sleep(RBAC_RETRY).await;
                continue;
            }
        };
        if last.as_ref() != Some(&view) {
            {
                let mut guard = secrets
                    .lock()
                    .map_err(|_| anyhow::anyhow!("bus secrets poisoned"))?;
                guard.dashboard_view = Some(view.clone());
                guard.write_server_config(&s)?;
            }
            server
                .lock()
                .map_err(|_| anyhow::anyhow!("nats supervisor poisoned"))?
                .reload()?;
            tracing::info!(
                streams = view.len(),
                "the dashboard's bus grants follow its RBAC"
            );
            last = Some(view);
        }
        // the next change, then what came with it
        if changes.next().await.is_none() {
            return Ok(());
        }
        tokio::time::sleep(RBAC_SETTLE).await;
        while tokio::time::timeout(std::time::Duration::ZERO, changes.next())
            .await
            .is_ok_and(|m| m.is_some())
        {}
    }
}

/// What the dashboard's RBAC lets it watch, read from the store.
async fn compile(client: &kubus_bus::Client) -> anyhow::Result<Vec<auth::Readable>> {
    use kubus_api::Kind;
    let all = |k: Kind| async move {
        client
            .list(k, None, None, None)
            .await
            .map(|(items, _)| items)
    };
    let index = kubus_api::rbac::Index::build(
        &all(Kind::Role).await?,
        &all(Kind::ClusterRole).await?,
        &all(Kind::RoleBinding).await?,
        &all(Kind::ClusterRoleBinding).await?,
    );
    let namespaces: Vec<String> = all(Kind::Namespace)
        .await?
        .iter()
        .filter_map(|n| kubus_api::meta::name(n).map(str::to_string))
        .collect();
    Ok(auth::readable(
        &index,
        &Identity::Dashboard.user_info(),
        &namespaces,
    ))
}

/// A join token as `kubus up` writes it: the token on the first line,
/// then (with TLS) the CA certificate to trust.
pub fn parse_join_token(text: &str) -> (String, Option<String>) {
    let (token, rest) = text
        .trim_start()
        .split_once('\n')
        .unwrap_or((text.trim(), ""));
    let ca = rest
        .contains("-----BEGIN CERTIFICATE-----")
        .then(|| rest.trim().to_string() + "\n");
    (token.trim().to_string(), ca)
}

/// Join a cluster's bus at `url` with its join token (`token_text`, as
/// [`parse_join_token`] reads it) as node `node`: its credentials,
/// written to `dir` (the node's credentials directory).
/// Connections a join tries before it gives up, and the wait between.
const JOIN_CONNECT_ATTEMPTS: u32 = 20;
const JOIN_CONNECT_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
/// Refusals of the token a join takes before it believes them: a server
/// reloading its configuration for another machine's join has refused a
/// good one for a moment (three workers joining at once, in CI).
const JOIN_REFUSALS_MAX: u32 = 4;

pub async fn join(
    url: &str,
    cluster: &str,
    token_text: &str,
    node: &str,
    dir: &Path,
) -> anyhow::Result<Credentials> {
    let (token, ca) = parse_join_token(token_text);
    let bootstrap = Credentials {
        user: Identity::Bootstrap.user(),
        password: token,
        ca,
    };
    // the bus reloads its configuration as other machines join (SIGHUP):
    // a connection it drops meanwhile is tried again, and a refusal a few
    // times (a reload has refused a good token for a moment)
    let (mut attempt, mut refusals) = (1, 0);
    let client = loop {
        match kubus_bus::Client::connect_as(url, cluster, Some(&bootstrap)).await {
            Ok(c) => break c,
            Err(e) if attempt < JOIN_CONNECT_ATTEMPTS && refusals + 1 < JOIN_REFUSALS_MAX => {
                attempt += 1;
                if e.to_string().to_ascii_lowercase().contains("authorization") {
                    refusals += 1;
                }
                tokio::time::sleep(JOIN_CONNECT_RETRY).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("joining the bus at {url} (is the join token right?)")
                })
            }
        }
    };
    let subject = client.subjects().join();
    let req = auth::JoinRequest {
        node: node.to_string(),
    };
    let msg = client
        .nats()
        .request(subject, serde_json::to_vec(&req)?.into())
        .await
        .context("asking for this node's bus credentials")?;
    let reply: auth::JoinReply =
        serde_json::from_slice(&msg.payload).context("the join answer is unreadable")?;
    let credentials = reply.map_err(|e| anyhow::anyhow!("join refused: {e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    write_private(
        &credentials_path(dir, &Identity::Node(node.to_string())),
        &serde_json::to_vec_pretty(&credentials)?,
    )?;
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_made_once_and_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = [Identity::Admin, Identity::Node("n1".into())];
        let a = BusSecrets::load_or_create(dir.path(), &ids).expect("made");
        let b = BusSecrets::load_or_create(dir.path(), &ids).expect("read");
        assert_eq!(
            a.credentials(&Identity::Admin),
            b.credentials(&Identity::Admin)
        );
        let admin = read_credentials(&credentials_path(a.dir(), &Identity::Admin)).expect("file");
        assert_eq!(Some(admin.clone()), a.credentials(&Identity::Admin));
        assert_eq!(admin.password.len(), 43);
        let mode = std::fs::metadata(credentials_path(a.dir(), &Identity::Admin))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let conf = a
            .write_server_config(&Subjects::new("kubus"))
            .expect("config");
        let text = std::fs::read_to_string(conf).expect("read");
        assert!(text.contains("\"node-n1\""));
        assert!(!text.contains(&admin.password));
        assert!(bcrypt::verify(&admin.password, &a.file.users["admin"].hash).expect("verify"));
        assert_eq!(parse_join_token("tok\n"), ("tok".to_string(), None));
        let (t, ca) =
            parse_join_token("tok\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(t, "tok");
        assert!(ca.is_some_and(|c| c.starts_with("-----BEGIN CERTIFICATE-----")));
    }
}
