//! `kubus top nodes|pods`: CPU and memory in use, as `kubectl top` prints
//! them, asked of the node agents (each samples its containers and its
//! machine every 10 s: actors' `node_agent::usage`). Nodes are asked in
//! parallel, each bounded by the client's request timeout; a node that
//! does not answer is named, not hidden.

use anyhow::bail;
use clap::{Args, Subcommand};
use kubus_api::quantity::{cpu_millis, memory_bytes};
use kubus_api::{meta, Kind};
use kubus_bus::protocol::{NodeUsage, Usage};
use kubus_bus::Client;
use serde_json::Value;

use crate::commands::emit;
use crate::print::columns_text;

#[derive(Debug, Clone, Subcommand)]
pub enum TopCommand {
    /// CPU and memory of nodes (of their allocatable, in percent).
    #[command(alias = "node", alias = "no")]
    Nodes(TopNodesArgs),
    /// CPU and memory of pods.
    #[command(alias = "pod", alias = "po")]
    Pods(TopPodsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TopNodesArgs {
    /// One node.
    pub name: Option<String>,
    /// Only nodes with these labels.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TopPodsArgs {
    /// One pod.
    pub name: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only pods with these labels.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// One row per container.
    #[arg(long)]
    pub containers: bool,
}

pub async fn run(client: &Client, cmd: TopCommand) -> anyhow::Result<()> {
    match cmd {
        TopCommand::Nodes(a) => nodes(client, a).await,
        TopCommand::Pods(a) => pods(client, a).await,
    }
}

/// `250m`, as kubectl prints CPU.
pub fn cpu_text(nano_cores: u64) -> String {
    format!("{}m", nano_cores / 1_000_000)
}

/// `12Mi`, as kubectl prints memory.
pub fn memory_text(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// `used` of `of` in whole percent (`of` 0: none).
fn percent(used: u64, of: u64) -> String {
    if of == 0 {
        return "<unknown>".into();
    }
    format!("{}%", used.saturating_mul(100) / of)
}

/// Asks each node for its usage; (node, answer or why not), in order.
async fn ask(
    client: &Client,
    nodes: Vec<String>,
    namespace: Option<String>,
) -> Vec<(String, Result<NodeUsage, String>)> {
    client
        .nodes_usage(&nodes, namespace.as_deref())
        .await
        .into_iter()
        .map(|(n, r)| (n, r.map_err(|e| e.to_string())))
        .collect()
}

async fn nodes(client: &Client, args: TopNodesArgs) -> anyhow::Result<()> {
    let (mut nodes, _) = client
        .list(Kind::Node, None, args.selector.as_deref(), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(name) = &args.name {
        nodes.retain(|n| meta::name(n) == Some(name));
        if nodes.is_empty() {
            bail!("node {name:?} not found");
        }
    }
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| meta::name(n).map(str::to_string))
        .collect();
    let answers = ask(client, names, None).await;
    let mut rows = vec![vec![
        "NAME".to_string(),
        "CPU(cores)".into(),
        "CPU(%)".into(),
        "MEMORY(bytes)".into(),
        "MEMORY(%)".into(),
    ]];
    let mut missing = Vec::new();
    for (node, (name, answer)) in nodes.iter().zip(answers) {
        match answer.map(|a| a.usage) {
            Ok(Some(u)) => {
                let (cpu, memory) = allocatable(node);
                rows.push(vec![
                    name,
                    cpu_text(u.cpu_nano_cores),
                    percent(u.cpu_nano_cores / 1_000_000, cpu),
                    memory_text(u.memory_bytes),
                    percent(u.memory_bytes, memory),
                ]);
            }
            Ok(None) => missing.push(format!("{name}: not measured (yet)")),
            Err(e) => missing.push(format!("{name}: {e}")),
        }
    }
    finish(rows, missing, "nodes")
}

/// A node's allocatable CPU (millicores) and memory (bytes); 0 unknown.
fn allocatable(node: &Value) -> (u64, u64) {
    let a = &node["status"]["allocatable"];
    let cpu = a["cpu"]
        .as_str()
        .and_then(|c| cpu_millis(c).ok())
        .unwrap_or(0);
    let memory = a["memory"]
        .as_str()
        .and_then(|m| memory_bytes(m).ok())
        .unwrap_or(0);
    (
        u64::try_from(cpu).unwrap_or(0),
        u64::try_from(memory).unwrap_or(0),
    )
}

async fn pods(client: &Client, args: TopPodsArgs) -> anyhow::Result<()> {
    let namespace = (!args.all_namespaces).then(|| args.namespace.clone());
    let (mut pods, _) = client
        .list(
            Kind::Pod,
            namespace.as_deref(),
            args.selector.as_deref(),
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    pods.retain(|p| {
        args.name
            .as_deref()
            .is_none_or(|n| meta::name(p) == Some(n))
    });
    if let (Some(name), true) = (&args.name, pods.is_empty()) {
        bail!("pod {name:?} not found in namespace {:?}", args.namespace);
    }
    let mut on: Vec<String> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    on.sort();
    on.dedup();
    let answers = ask(client, on, namespace.clone()).await;
    let mut found = std::collections::HashMap::new();
    let mut missing = Vec::new();
    for (node, answer) in answers {
        match answer {
            Ok(a) => {
                for p in a.pods {
                    found.insert((p.namespace, p.name), p.containers);
                }
            }
            Err(e) => missing.push(format!("node {node}: {e}")),
        }
    }
    let mut header = Vec::new();
    if args.all_namespaces {
        header.push("NAMESPACE".to_string());
    }
    header.push("NAME".into());
    if args.containers {
        header.push("CONTAINER".into());
    }
    header.extend(["CPU(cores)".to_string(), "MEMORY(bytes)".into()]);
    let mut rows = vec![header];
    for p in &pods {
        let ns = meta::namespace(p).unwrap_or("default").to_string();
        let name = meta::name(p).unwrap_or_default().to_string();
        let Some(containers) = found.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        let lead = |row: &mut Vec<String>| {
            if args.all_namespaces {
                row.push(ns.clone());
            }
            row.push(name.clone());
        };
        if args.containers {
            for c in containers {
                let mut row = Vec::new();
                lead(&mut row);
                row.extend([
                    c.name.clone(),
                    cpu_text(c.usage.cpu_nano_cores),
                    memory_text(c.usage.memory_bytes),
                ]);
                rows.push(row);
            }
        } else {
            let total = containers.iter().fold(Usage::default(), |t, c| Usage {
                cpu_nano_cores: t.cpu_nano_cores + c.usage.cpu_nano_cores,
                memory_bytes: t.memory_bytes + c.usage.memory_bytes,
            });
            let mut row = Vec::new();
            lead(&mut row);
            row.extend([
                cpu_text(total.cpu_nano_cores),
                memory_text(total.memory_bytes),
            ]);
            rows.push(row);
        }
    }
    finish(rows, missing, "pods")
}

/// Prints the table, or says why there is none; names nodes that did not
/// answer.
fn finish(rows: Vec<Vec<String>>, missing: Vec<String>, what: &str) -> anyhow::Result<()> {
    for m in &missing {
        eprintln!("kubus: no figures from {m}");
    }
    if rows.len() == 1 {
        bail!(
            "no {what} have figures yet: node agents sample every 10 s and report running containers"
        );
    }
    emit(&columns_text(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_as_kubectl_prints_them() {
        assert_eq!(cpu_text(1_002_000_000), "1002m");
        assert_eq!(cpu_text(999_999), "0m");
        assert_eq!(memory_text(5 * 1024 * 1024 + 7), "5Mi");
        assert_eq!(percent(500, 2000), "25%");
        assert_eq!(percent(1, 0), "<unknown>");
        let node = serde_json::json!({"status": {"allocatable": {"cpu": "2", "memory": "1Gi"}}});
        assert_eq!(allocatable(&node), (2000, 1 << 30));
    }
}
