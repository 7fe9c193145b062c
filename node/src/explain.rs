//! `kubus explain pod NAME`: every node with each scheduling rule's
//! verdict on the pod and what would make it fit, computed by the
//! scheduler's own pure rules (`kubus_actors::scheduler::explain`) over the
//! cluster as the store has it now. `kubus describe pod` shows the same
//! for a pod waiting for a node.

use anyhow::{bail, Context};
use kubus_actors::scheduler::explain;
use kubus_actors::scheduler::preemption::Budget;
use kubus_actors::scheduler::{volume_fit, Ledger};
use kubus_api::{meta, Kind};
use kubus_bus::Client;
use serde_json::Value;

use crate::cli::ExplainArgs;

pub async fn run(client: &Client, args: ExplainArgs) -> anyhow::Result<()> {
    let (kind_word, name) = match (args.resource.split_once('/'), &args.name) {
        (Some((k, n)), None) => (k.to_string(), n.to_string()),
        (None, Some(n)) => (args.resource.clone(), n.clone()),
        _ => bail!("usage: kubus explain pod NAME (or pod/NAME)"),
    };
    if Kind::from_resource(&kind_word).ok() != Some(Kind::Pod) {
        bail!(
            "kubus explain explains where a pod fits and why: kubus explain pod NAME \
             ({kind_word:?} is not pods)"
        );
    }
    let pod = client
        .get(Kind::Pod, Some(&args.namespace), &name)
        .await
        .with_context(|| format!("pod {name:?} in namespace {:?}", args.namespace))?;
    print!("{}", explanation(client, &pod).await?);
    Ok(())
}

/// The explanation of where `pod` fits, as `kubus explain pod` prints it.
pub async fn explanation(client: &Client, pod: &Value) -> anyhow::Result<String> {
    let ns = meta::namespace(pod).unwrap_or("default").to_string();
    let key = format!("{ns}/{}", meta::name(pod).unwrap_or_default());
    let mut ledger = Ledger::default();
    let (nodes, _) = client.list(Kind::Node, None, None, None).await?;
    for n in &nodes {
        ledger.node_changed(n);
    }
    for n in client.list(Kind::Namespace, None, None, None).await?.0 {
        let name = meta::name(&n).unwrap_or_default().to_string();
        ledger.namespace_changed(&name, Some(&n));
    }
    for p in client.list(Kind::Pod, None, None, None).await?.0 {
        let k = format!(
            "{}/{}",
            meta::namespace(&p).unwrap_or("default"),
            meta::name(&p).unwrap_or_default()
        );
        if k != key {
            ledger.pod_changed(&k, Some(&p));
        }
    }
    let budgets: Vec<Budget> = client
        .list(Kind::PodDisruptionBudget, None, None, None)
        .await?
        .0
        .iter()
        .map(Budget::of)
        .collect();
    let mut header = String::new();
    if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
        header.push_str(&format!(
            "Pod {key} is bound to node {node}; were it placed now:\n"
        ));
    }
    let allowed = if kubus_api::storage::pod_claims(pod).is_empty() {
        None
    } else {
        let claims = client
            .list(Kind::PersistentVolumeClaim, Some(&ns), None, None)
            .await?
            .0;
        let volumes = client
            .list(Kind::PersistentVolume, None, None, None)
            .await?
            .0;
        let classes = client.list(Kind::StorageClass, None, None, None).await?.0;
        let class_refs: Vec<&Value> = classes.iter().collect();
        let by_name =
            |list: &[Value], name: &str| list.iter().find(|o| meta::name(o) == Some(name)).cloned();
        let claim = |n: &str| by_name(&claims, n);
        let volume = |n: &str| by_name(&volumes, n);
        match volume_fit(pod, &claim, &volume, &class_refs, ledger.nodes()) {
            Ok(fit) => {
                if let Some(why) = fit.wait {
                    header.push_str(&format!("Volumes: {why}\n"));
                }
                fit.allowed
            }
            Err(why) => {
                header.push_str(&format!("Volumes: {why} (the pod waits for it)\n"));
                None
            }
        }
    };
    let e = explain::explain(&ledger, &key, pod, allowed.as_ref(), &budgets);
    Ok(format!("{header}{}", explain::render(&key, &e)))
}
