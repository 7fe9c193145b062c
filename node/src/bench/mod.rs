//! `kubus bench …`: benchmark commands. Each prints its figures beside a
//! baseline measured in the same invocation on the same machine, as ratios;
//! none is a test and none asserts a time.

mod etcd;
pub mod gateway;
pub mod pods;
pub mod proxy;
mod raw_cri;
pub mod scheduler;
pub mod store;
pub mod watch;
pub mod workloads;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use kubus_bus::Client;
use serde_json::json;

use crate::nats_server::NatsServer;

/// The user a secured benchmark's requests are decided for: bound to the
/// `edit` ClusterRole in every namespace (a watcher lists them all), so
/// RBAC evaluates every request.
pub const BENCH_USER: &str = "bench-user";
/// How long a secured store may take to come up and bind the user.
const SECURED_READY: Duration = Duration::from_secs(10);

/// A store server as a secured cluster runs it: behind a nats-server of
/// its own with kubus's generated accounts (`tls`: and TLS), the store
/// peer connected as `store-1`; `user` connects as the admin and
/// impersonates [`BENCH_USER`], so every request pays the server's
/// cross-account import, the store's reading of the requester, the
/// impersonation check and the user's RBAC evaluation.
pub struct Secured {
    /// Stopped by its PID when the benchmark is done with it.
    pub nats: NatsServer,
    pub store: kubus_storage::Store,
    pub user: Client,
}

/// Start a [`Secured`] store for `cluster` in `dir`.
pub async fn secured_store(dir: &Path, cluster: &str, tls: bool) -> anyhow::Result<Secured> {
    use kubus_bus::auth::Identity;
    let mut secrets =
        crate::bus_auth::BusSecrets::load_or_create(dir, &[Identity::Admin, Identity::Store(1)])?;
    if tls {
        let names = kubus_gateway::pki::default_names(cluster, &[]);
        let pki = kubus_gateway::pki::load_or_create(&dir.join("pki"), &names)
            .context("the bench bus's certificate")?;
        secrets.enable_tls(&pki)?;
    }
    let conf = secrets.write_server_config(&kubus_bus::Subjects::new(cluster))?;
    let nats = NatsServer::start(&dir.join("nats-server.log"), Some(&conf))?;
    let url = nats.url();
    let peer = Client::connect_as(
        &url,
        cluster,
        secrets.credentials(&Identity::Store(1)).as_ref(),
    )
    .await?;
    let admin = Client::connect_as(
        &url,
        cluster,
        secrets.credentials(&Identity::Admin).as_ref(),
    )
    .await?;
    let (store, changes) = kubus_storage::Store::open(
        kubus_storage::StoreConfig::single(dir.join("store")),
        Box::new(kubus_storage::NoPeers),
    )?;
    kubus_actors::store::StoreServer::start(
        store.clone(),
        changes,
        peer.nats().clone(),
        cluster,
        Default::default(),
        true,
        kubus_actors::store::seal::Keyring::plain(),
    )
    .await?;
    let user = admin.impersonating(&kubus_api::rbac::UserInfo {
        name: BENCH_USER.into(),
        groups: vec![kubus_api::rbac::AUTHENTICATED.into()],
    });
    // the binding counts once the store has it and the default ClusterRole
    // `edit` exists: until then, Forbidden (or no store yet)
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "bench-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": BENCH_USER}],
    });
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bench-probe", "namespace": "default"}});
    let deadline = Instant::now() + SECURED_READY;
    let mut bound = false;
    loop {
        if !bound {
            bound = admin.apply(binding.clone()).await.is_ok();
        }
        let last = match (bound, user.apply(probe.clone()).await) {
            (true, Ok(_)) => break,
            (_, Err(e)) => e.to_string(),
            (false, Ok(_)) => "the binding was not stored".to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "the secured store did not let {BENCH_USER} write within {SECURED_READY:?}: {last}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Secured { nats, store, user })
}

/// Which build is measuring: "debug" or "release".
pub fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

/// "p50 0.42 ms  p99 1.93 ms  (n=20000)".
pub fn summary(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>8.3} ms   (n={})",
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    )
}
