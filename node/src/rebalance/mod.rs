//! `kubus rebalance [--dry-run]`: move pods from crowded nodes to idle or
//! new ones — beyond what Kubernetes offers. The plan ([`plan::plan`],
//! pure) is printed first; then, unless `--dry-run`, it is carried out one
//! eviction at a time through the eviction subresource, so every
//! PodDisruptionBudget is honoured, each move waiting for the evicted pod
//! to be gone and its replacement to be Running and Ready before the next.
//! Before each move the plan is made again from the cluster as it is then
//! (the scheduler, not rebalance, decides where a replacement goes, and it
//! may choose otherwise than the plan guessed), and rebalance stops when
//! nothing is worth moving any more.

pub mod plan;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use kubus_api::{meta, pod, Kind, ObjectRef, Reason};
use kubus_bus::client::{ClientError, EvictOptions};
use kubus_bus::Client;
use serde_json::Value;
use tokio::time::Instant;

use crate::commands::emit;
use crate::print;

/// `kubus rebalance` flags.
#[derive(Debug, Clone, Args)]
pub struct RebalanceArgs {
    /// Print the plan and evict nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Most pods moved in one run.
    #[arg(long, default_value_t = 10)]
    pub max_moves: usize,
    /// A move must lower the spread between the most and the least
    /// allocated node by more than this many percentage points.
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// How long one move may take: the eviction (waiting on its budget),
    /// the pod's stop and its replacement becoming Ready.
    #[arg(long, default_value = "5m")]
    pub move_timeout: String,
}

/// How often a move looks at its pods.
const POLL: Duration = Duration::from_secs(1);

impl RebalanceArgs {
    fn options(&self) -> anyhow::Result<plan::Options> {
        if !(0.0..=100.0).contains(&self.threshold) {
            bail!(
                "--threshold {}: give percentage points between 0 and 100",
                self.threshold
            );
        }
        Ok(plan::Options {
            moves_max: self.max_moves,
            // whole basis points; the range is checked above
            threshold_bp: (self.threshold * 100.0).round() as i64,
        })
    }
}

async fn cluster(client: &Client) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let (nodes, _) = client.list(Kind::Node, None, None, None).await?;
    let (pods, _) = client.list(Kind::Pod, None, None, None).await?;
    Ok((nodes, pods))
}

/// The plan as tables: the nodes' loads, then the moves.
fn plan_text(p: &plan::Plan) -> String {
    let mut nodes = vec![vec!["NODE".to_string(), "ALLOCATED".into(), "AFTER".into()]];
    for (name, now, after) in &p.nodes {
        nodes.push(vec![
            name.clone(),
            plan::percent(*now),
            plan::percent(*after),
        ]);
    }
    let mut out = print::columns_text(&nodes);
    out.push('\n');
    if p.moves.is_empty() {
        out.push_str(&format!(
            "Nothing to move: the spread is {} and no move would lower it enough.\n",
            plan::percent(p.spread_bp.0)
        ));
        return out;
    }
    let mut rows = vec![vec![
        "POD".to_string(),
        "FROM".into(),
        "TO-LIKELY".into(),
        "WHY".into(),
    ]];
    for m in &p.moves {
        rows.push(vec![
            format!("{}/{}", m.namespace, m.pod),
            m.from.clone(),
            m.to.clone(),
            m.why(),
        ]);
    }
    out.push_str(&print::columns_text(&rows));
    out.push_str(&format!(
        "{} move(s): spread {} → {} (the scheduler places each replacement; TO-LIKELY is \
         its least allocated feasible node)\n",
        p.moves.len(),
        plan::percent(p.spread_bp.0),
        plan::percent(p.spread_bp.1)
    ));
    out
}

/// `kubus rebalance`.
pub async fn run(client: &Client, args: RebalanceArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    let move_timeout =
        crate::wait::parse_duration(&args.move_timeout).map_err(anyhow::Error::msg)?;
    if move_timeout.is_zero() {
        bail!("--move-timeout must be more than 0");
    }
    let (nodes, pods) = cluster(client).await?;
    let first = plan::plan(&nodes, &pods, opts);
    emit(&plan_text(&first));
    if args.dry_run {
        emit("(dry run: nothing was evicted)\n");
        return Ok(());
    }
    let mut moved = 0;
    let mut next = first.moves.into_iter().next();
    while let Some(mv) = next.take() {
        move_one(client, &mv, move_timeout).await?;
        moved += 1;
        if moved >= opts.moves_max {
            break;
        }
        let (nodes, pods) = cluster(client).await?;
        next = plan::plan(
            &nodes,
            &pods,
            plan::Options {
                moves_max: 1,
                ..opts
            },
        )
        .moves
        .into_iter()
        .next();
    }
    if moved > 0 {
        let (nodes, pods) = cluster(client).await?;
        let now = plan::plan(
            &nodes,
            &pods,
            plan::Options {
                moves_max: 0,
                ..opts
            },
        );
        emit(&format!(
            "rebalanced: {moved} pod(s) moved; spread now {}\n",
            plan::percent(now.spread_bp.0)
        ));
    }
    Ok(())
}

/// Carry out one move: evict the pod (asking again while its budget
/// refuses), wait for it to be gone and for a new pod of its controller to
/// be Running and Ready; all within `timeout`.
async fn move_one(client: &Client, mv: &plan::Move, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let r = ObjectRef::new(Kind::Pod, Some(&mv.namespace), &mv.pod);
    let target = client
        .get(Kind::Pod, Some(&mv.namespace), &mv.pod)
        .await
        .with_context(|| format!("reading pod {}/{}", mv.namespace, mv.pod))?;
    let uid = meta::uid(&target).unwrap_or_default().to_string();
    let owner = meta::controller_uid(&target)
        .ok_or_else(|| {
            anyhow!(
                "pod {}/{} has no controller to replace it",
                mv.namespace,
                mv.pod
            )
        })?
        .to_string();
    let siblings = |pods: &[Value]| -> Vec<Value> {
        pods.iter()
            .filter(|p| meta::controller_uid(p) == Some(owner.as_str()))
            .cloned()
            .collect()
    };
    let (pods, _) = client
        .list(Kind::Pod, Some(&mv.namespace), None, None)
        .await?;
    let before: BTreeSet<String> = siblings(&pods)
        .iter()
        .filter_map(|p| meta::uid(p).map(str::to_string))
        .collect();
    // the eviction, through the budget
    loop {
        emit(&format!(
            "evicting pod {}/{} (from {}; likely to {})\n",
            mv.namespace, mv.pod, mv.from, mv.to
        ));
        let options = EvictOptions {
            uid: Some(uid.clone()),
            ..EvictOptions::default()
        };
        match client.evict(&r, options).await {
            Ok(_) => break,
            Err(e) if matches!(e.reason(), Some(Reason::NotFound | Reason::Conflict)) => break,
            Err(ClientError::Api(e)) if e.reason == Reason::TooManyRequests => {
                if Instant::now() + crate::drain::BUDGET_RETRY >= deadline {
                    bail!(
                        "pod {}/{} was not evicted within {}: {}",
                        mv.namespace,
                        mv.pod,
                        crate::drain::go_duration(timeout),
                        e.message
                    );
                }
                eprintln!(
                    "error when evicting pods/{:?} -n {:?} (will retry after {}s): {}",
                    mv.pod,
                    mv.namespace,
                    crate::drain::BUDGET_RETRY.as_secs(),
                    e.message
                );
                tokio::time::sleep(crate::drain::BUDGET_RETRY).await;
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "error when evicting pods/{:?} -n {:?}",
                    mv.pod, mv.namespace
                )))
            }
        }
    }
    // the pod gone, a replacement Running and Ready
    let mut gone = false;
    loop {
        let (pods, _) = client
            .list(Kind::Pod, Some(&mv.namespace), None, None)
            .await?;
        if !gone && !pods.iter().any(|p| meta::uid(p) == Some(uid.as_str())) {
            gone = true;
            emit(&format!("pod/{} evicted\n", mv.pod));
        }
        let replacement = siblings(&pods).into_iter().find(|p| {
            meta::uid(p).is_some_and(|u| !before.contains(u))
                && !pod::is_terminating(p)
                && p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
                && pod::is_ready(p)
        });
        if let (true, Some(p)) = (gone, replacement) {
            let node = p
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = meta::name(&p).unwrap_or_default();
            emit(&format!(
                "pod/{name} Running on {node} (replaces pod/{})\n",
                mv.pod
            ));
            if node == mv.from {
                eprintln!(
                    "warning: the scheduler placed pod/{name} on {node} again: it judged that \
                     node best (its scoring differs from the plan's least-allocated guess)"
                );
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "move of pod {}/{} did not complete within {}: {}",
                mv.namespace,
                mv.pod,
                crate::drain::go_duration(timeout),
                if gone {
                    "no replacement is Running and Ready yet"
                } else {
                    "the pod is still terminating"
                }
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
