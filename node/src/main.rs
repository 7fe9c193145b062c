//! # kubus: the binary
//!
//! One binary for every role. `kubus up` runs a whole single-machine cluster
//! (store, control and worker roles, plus its own nats-server child);
//! `kubus node --roles …` is the production form; every other verb is a
//! client that speaks only NATS. This crate only wires and prints: `anyhow`
//! lives here and nowhere else.

mod api_server;
mod backup;
mod bench;
mod bus_auth;
mod child;
mod cli;
mod commands;
mod config;
mod containerd;
mod create;
mod create_access;
mod dashboard;
mod describe;
mod drain;
mod edit;
mod explain;
mod expose;
mod http;
mod interactive;
mod mesh;
mod nats_server;
mod print;
mod progress;
mod raft_transport;
mod rebalance;
mod rollout;
mod store_admin;
mod targets;
mod telemetry;
mod top;
mod verbs;
mod wait;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the store's threads and the tokio
/// runtime allocate on many threads at once, where glibc's arenas spent
/// ~16 % of `kubus bench store`'s CPU (three peers, 64 in flight); with
/// mimalloc three peers made 1.83–1.85× three etcd members' puts/s
/// against 1.58–1.65× (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    let default_level = match cli.command {
        cli::Command::Up(_) | cli::Command::Node(_) => "info",
        cli::Command::Bench(_) => "error",
        _ => "warn",
    };
    let traces = cli
        .global
        .otlp_endpoint
        .clone()
        .map(|endpoint| telemetry::Traces {
            endpoint,
            sample_ratio: cli.global.otlp_sample_ratio,
            service: match cli.command {
                cli::Command::Up(_) | cli::Command::Node(_) => "kubus",
                _ => "kubus-cli",
            },
        });
    let telemetry = match telemetry::init(default_level, traces) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let result = run(cli);
    // the spans still batched go out before the process does
    drop(telemetry);
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Up(args) => mesh::up(args),
        cli::Command::Bench(cli::BenchCommand::Watch(args)) => bench::watch::run(args),
        cli::Command::Bench(cli::BenchCommand::Pods(args)) => bench::pods::run(args),
        cli::Command::Bench(cli::BenchCommand::Store(args)) => bench::store::run(args),
        cli::Command::Bench(cli::BenchCommand::Proxy(args)) => bench::proxy::run(args),
        cli::Command::Bench(cli::BenchCommand::Workloads(args)) => bench::workloads::run(args),
        cli::Command::Bench(cli::BenchCommand::Scheduler(args)) => bench::scheduler::run(args),
        cli::Command::Bench(cli::BenchCommand::Gateway(args)) => bench::gateway::run(args),
        cli::Command::Node(args) => mesh::node(args),
        // offline: a file and a directory, no cluster
        cli::Command::Store(cli::StoreCommand::Snapshot(c))
            if !matches!(c, cli::SnapshotCommand::Save { .. }) =>
        {
            backup::offline(c)
        }
        other => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(commands::run(cli.global, other));
            // a read of our stdin (an interactive session's) may still
            // wait on a terminal nobody types into: do not wait for it
            rt.shutdown_background();
            result
        }
    }
}
