//! The client verbs. Each speaks only NATS, through `kubus-bus`. The
//! verbs that change objects the way kubectl's operator verbs do live in
//! modules of their own: `verbs` (label, annotate, scale, set image),
//! `rollout`, `create` (and run), `wait`, `describe` and `edit`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kubus_api::lifecycle::Propagation;
use kubus_api::{manifest, meta, Kind, ObjectRef};
use kubus_bus::client::DeleteOptions;
use kubus_bus::protocol::{EventType, ExecRequest, LogsRequest};
use kubus_bus::watch::WatchItem;
use kubus_bus::Client;
use serde_json::Value;

use crate::cli::{
    ApplyArgs, AttachArgs, AutoscaleArgs, Command, DeleteArgs, EventsArgs, ExecArgs, ExposeArgs,
    GetArgs, Global, ImagesAction, ImagesArgs, LogsArgs, PortForwardArgs, ServiceArgs, SetCommand,
};
use crate::config;
use crate::print;

/// Find the cluster: `--nats`, then `KUBUS_NATS` (both through clap), then
/// what `kubus up` recorded.
async fn client(global: &Global) -> anyhow::Result<Client> {
    let current = config::read_current();
    let url = match (&global.nats, &current) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => c.nats.clone(),
        (None, None) => bail!(
            "no cluster found: start one with `kubus up`, or pass --nats URL (or set KUBUS_NATS)"
        ),
    };
    // the administrator's credentials of the cluster `kubus up` recorded,
    // unless another bus (or another file) is named
    let recorded = current
        .as_ref()
        .filter(|c| c.nats == url)
        .and_then(|c| c.credentials.clone());
    let credentials = match global.credentials.clone().or(recorded) {
        Some(path) => Some(crate::bus_auth::read_credentials(&path)?),
        None => None,
    };
    let cluster = global
        .cluster
        .clone()
        .or_else(|| current.map(|c| c.cluster))
        .unwrap_or_else(|| "kubus".to_string());
    let client = Client::connect_as(&url, &cluster, credentials.as_ref())
        .await
        .with_context(|| format!("cannot reach the cluster's bus at {url}"))?;
    Ok(match &global.as_user {
        Some(name) => client.impersonating(&kubus_api::rbac::UserInfo {
            name: name.clone(),
            groups: global.as_groups.clone(),
        }),
        None => {
            if !global.as_groups.is_empty() {
                bail!("--as-group needs --as");
            }
            client
        }
    })
}

/// `kubus auth can-i` and `kubus auth whoami`.
async fn auth(client: &Client, command: crate::cli::AuthCommand) -> anyhow::Result<()> {
    use crate::cli::AuthCommand;
    match command {
        AuthCommand::Whoami => {
            let review = client.review(None).await?;
            println!("Username: {}", review.user.name);
            println!("Groups:   [{}]", review.user.groups.join(" "));
            Ok(())
        }
        AuthCommand::CanI(a) => {
            let (word, name) = match a.resource.split_once('/') {
                // RESOURCE/NAME, unless the part after '/' is a subresource
                // given as pods/log: kubectl reads TYPE/NAME
                Some((w, n)) => (w.to_string(), Some(n.to_string())),
                None => (a.resource.clone(), None),
            };
            let (group, resource) = crate::create_access::resource_of(&word);
            let namespace = if a.all_namespaces {
                None
            } else {
                Some(a.namespace.clone().unwrap_or_else(|| "default".into()))
            };
            let cluster_scoped = Kind::from_resource(&word).is_ok_and(|k| !k.namespaced());
            let attributes = kubus_api::rbac::Attributes::new(&a.verb, &group, &resource)
                .in_namespace(namespace.as_deref().filter(|_| !cluster_scoped))
                .named(name.as_deref())
                .subresource(a.subresource.as_deref().unwrap_or(""));
            let review = client.review(Some(attributes)).await?;
            if !a.quiet {
                println!("{}", if review.allowed { "yes" } else { "no" });
            }
            if review.allowed {
                Ok(())
            } else {
                if !a.quiet {
                    if let Some(why) = review.reason {
                        eprintln!("{why}");
                    }
                }
                crate::interactive::exit_with(1)
            }
        }
    }
}

pub async fn run(global: Global, command: Command) -> anyhow::Result<()> {
    // `create`/`run --dry-run=client` print without a cluster, as kubectl does
    if let Some(done) = crate::create::offline(&command) {
        return done;
    }
    let client = client(&global).await?;
    match command {
        Command::Apply(a) => apply(&client, a).await,
        Command::Get(a) => get(&client, a).await,
        Command::Delete(a) => delete(&client, a).await,
        Command::Logs(a) => logs(&client, a).await,
        Command::Exec(a) => exec(&client, a).await,
        Command::Attach(a) => attach(&client, a).await,
        Command::Events(a) => events(&client, a).await,
        Command::Expose(a) => expose(&client, a).await,
        Command::Autoscale(a) => autoscale(&client, a).await,
        Command::PortForward(a) => port_forward(&client, a).await,
        Command::Images(a) => images(&client, a).await,
        Command::Service(a) => service(&client, a).await,
        Command::Describe(a) => crate::describe::run(&client, a).await,
        Command::Explain(a) => crate::explain::run(&client, a).await,
        Command::Top(c) => crate::top::run(&client, c).await,
        Command::Scale(a) => crate::verbs::run_scale(&client, a).await,
        Command::Cordon(a) => crate::verbs::run_cordon(&client, a, true).await,
        Command::Uncordon(a) => crate::verbs::run_cordon(&client, a, false).await,
        Command::Taint(a) => crate::verbs::run_taint(&client, a).await,
        Command::Drain(a) => crate::drain::run(&client, a).await,
        Command::Rebalance(a) => crate::rebalance::run(&client, a).await,
        Command::Label(a) => crate::verbs::run_label(&client, a).await,
        Command::Annotate(a) => crate::verbs::run_annotate(&client, a).await,
        Command::Set(SetCommand::Image(a)) => crate::verbs::run_set_image(&client, a).await,
        Command::Rollout(c) => crate::rollout::run(&client, c).await,
        Command::Create(crate::cli::CreateCommand::Token(a)) => {
            crate::create_access::token(&client, a).await
        }
        c @ (Command::Create(_) | Command::Run(_)) => crate::create::run(&client, c).await,
        Command::Wait(a) => crate::wait::run(&client, a).await,
        Command::Edit(a) => crate::edit::run(&client, a).await,
        Command::Store(c) => crate::store_admin::run(&client, c).await,
        Command::Auth(c) => auth(&client, c).await,
        Command::Up(_) | Command::Node(_) | Command::Bench(_) => bail!("not a client verb"),
    }
}

async fn expose(client: &Client, args: ExposeArgs) -> anyhow::Result<()> {
    let (kind_word, name) = match (args.resource.split_once('/'), args.name) {
        (Some((k, n)), None) => (k.to_string(), n.to_string()),
        (None, Some(n)) => (args.resource.clone(), n),
        _ => bail!("name what to expose: kubus expose TYPE NAME (or TYPE/NAME)"),
    };
    let kind = Kind::from_resource(&kind_word)?;
    let obj = client
        .get(kind, Some(&args.namespace), &name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let how = crate::expose::Expose {
        name: args.service_name,
        port: args.port,
        target_port: args.target_port,
        protocol: args.protocol,
        type_: args.type_,
    };
    let svc = crate::expose::service_for(kind, &obj, &how).map_err(|e| anyhow::anyhow!(e))?;
    let created = client
        .create(svc)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    emit(&format!(
        "service/{} exposed\n",
        meta::name(&created).unwrap_or_default()
    ));
    Ok(())
}

/// The HorizontalPodAutoscaler `kubectl autoscale` makes (autoscaling/v2).
fn hpa_for(kind: Kind, obj: &Value, args: &AutoscaleArgs) -> Value {
    let name = meta::name(obj).unwrap_or_default();
    let mut spec = serde_json::json!({
        "scaleTargetRef": {"apiVersion": kind.api_version(), "kind": kind.as_str(), "name": name},
        "maxReplicas": args.max,
    });
    if let Some(min) = args.min {
        spec["minReplicas"] = serde_json::json!(min);
    }
    if let Some(pct) = args.cpu_percent {
        spec["metrics"] = serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": pct}}}]);
    }
    serde_json::json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": args.hpa_name.as_deref().unwrap_or(name), "namespace": args.namespace},
        "spec": spec,
    })
}

async fn autoscale(client: &Client, args: AutoscaleArgs) -> anyhow::Result<()> {
    let (kind_word, name) = match (args.resource.split_once('/'), args.name.clone()) {
        (Some((k, n)), None) => (k.to_string(), n.to_string()),
        (None, Some(n)) => (args.resource.clone(), n),
        _ => bail!("name what to autoscale: kubus autoscale TYPE NAME (or TYPE/NAME)"),
    };
    let kind = Kind::from_resource(&kind_word)?;
    if !kind.scalable() {
        bail!("cannot autoscale a {kind}: autoscale a Deployment, ReplicaSet, StatefulSet or ReplicationController");
    }
    let obj = client
        .get(kind, Some(&args.namespace), &name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created = client
        .create(hpa_for(kind, &obj, &args))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    emit(&format!(
        "horizontalpodautoscaler.autoscaling/{} autoscaled\n",
        meta::name(&created).unwrap_or_default()
    ));
    Ok(())
}

async fn service(client: &Client, args: ServiceArgs) -> anyhow::Result<()> {
    let svc = client
        .get(Kind::Service, Some(&args.namespace), &args.name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (nodes, _) = client
        .list(Kind::Node, None, None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut node_ips: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            n["status"]["addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["address"].as_str().map(str::to_string))
        .collect();
    node_ips.sort();
    node_ips.dedup();
    let urls = crate::expose::urls(&svc, &node_ips);
    if urls.is_empty() {
        bail!(
            "service {}/{} has no address to reach it by (headless or ExternalName)",
            args.namespace,
            args.name
        );
    }
    let selector = format!("{}={}", kubus_api::endpoints::SERVICE_NAME_LABEL, args.name);
    let (slices, _) = client
        .list(
            Kind::EndpointSlice,
            Some(&args.namespace),
            Some(&selector),
            None,
        )
        .await
        .unwrap_or_default();
    let ready = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .count();
    if svc["spec"]["selector"].is_object() && ready == 0 {
        eprintln!(
            "warning: service {}/{} has no ready endpoints: connections to it are refused",
            args.namespace, args.name
        );
    }
    let mut out = String::new();
    if args.url {
        for u in urls {
            out.push_str(&u.url);
            out.push('\n');
        }
    } else {
        let mut rows = vec![vec![
            "NAMESPACE".to_string(),
            "NAME".into(),
            "PORT".into(),
            "URL".into(),
            "VIA".into(),
        ]];
        for u in urls {
            rows.push(vec![
                args.namespace.clone(),
                args.name.clone(),
                u.port,
                u.url,
                u.via.into(),
            ]);
        }
        out = print::columns_text(&rows);
    }
    emit(&out);
    Ok(())
}

async fn images(client: &Client, args: ImagesArgs) -> anyhow::Result<()> {
    if let Some(ImagesAction::Import { files, address }) = args.action {
        let socket = match address {
            Some(a) => a,
            None => config::read_current()
                .context("no `kubus up` runs on this machine: give --address")?
                .data_dir
                .join("containerd")
                .join("containerd.sock"),
        };
        if !socket.exists() {
            bail!(
                "no containerd at {}: kubus up runs one with the cri runtime (or give --address)",
                socket.display()
            );
        }
        for file in files {
            let said = crate::containerd::import_image(&socket, &file).await?;
            emit(&said);
            emit(&format!("imported {}\n", file.display()));
        }
        return Ok(());
    }
    let (nodes, _) = client
        .list(Kind::Node, None, None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = vec![vec!["NODE".to_string(), "IMAGE".into(), "SIZE".into()]];
    for node in &nodes {
        let name = meta::name(node).unwrap_or_default();
        if args.node.as_deref().is_some_and(|n| n != name) {
            continue;
        }
        for image in node["status"]["images"].as_array().into_iter().flatten() {
            let names: Vec<&str> = image["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|n| !n.contains("@sha256:"))
                .collect();
            let size = image["sizeBytes"].as_u64().unwrap_or(0);
            rows.push(vec![
                name.to_string(),
                names.join(","),
                format!("{:.1}MB", size as f64 / 1e6),
            ]);
        }
    }
    emit(&print::columns_text(&rows));
    Ok(())
}

/// `[LOCAL:]REMOTE` → (local port, 0 for any; remote port or port name).
fn parse_forward(spec: &str) -> anyhow::Result<(u16, String)> {
    let (local, remote) = match spec.split_once(':') {
        Some((l, r)) => (l, r),
        None => (spec, spec),
    };
    let local: u16 = if local.is_empty() {
        0
    } else {
        local.parse().with_context(|| {
            format!("{spec:?}: the local port must be a number (or empty for any)")
        })?
    };
    if remote.is_empty() {
        bail!("{spec:?}: give the pod's port: [LOCAL:]REMOTE");
    }
    Ok((local, remote.to_string()))
}

/// A pod's port given as a number or a container port's name.
fn pod_port(pod: &Value, port: &str) -> anyhow::Result<u16> {
    if let Ok(n) = port.parse::<u16>() {
        return Ok(n);
    }
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| {
            format!(
                "pod {} has no container port named {port:?}",
                meta::name(pod).unwrap_or_default()
            )
        })
}

/// Listen on local ports and carry each connection to the pod's port
/// through its node agent (a byte stream over the bus), until Ctrl-C.
async fn port_forward(client: &Client, args: PortForwardArgs) -> anyhow::Result<()> {
    let pod = pod_named(client, &args.namespace, &args.pod).await?;
    let pod_name = meta::name(&pod).unwrap_or_default().to_string();
    let node = node_of(&pod, &args.namespace)?;
    let mut listeners = Vec::new();
    for spec in &args.ports {
        let (local, remote) = parse_forward(spec)?;
        let remote = pod_port(&pod, &remote)?;
        let listener = tokio::net::TcpListener::bind((args.address.as_str(), local))
            .await
            .with_context(|| format!("listening on {}:{local}", args.address))?;
        let at = listener.local_addr()?;
        emit(&format!("Forwarding from {at} -> {remote}\n"));
        listeners.push((listener, remote));
    }
    let mut tasks = Vec::new();
    for (listener, remote) in listeners {
        let (client, node, pod_name, namespace) = (
            client.clone(),
            node.clone(),
            pod_name.clone(),
            args.namespace.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                emit(&format!(
                    "Handling connection for {}\n",
                    listener.local_addr().map(|a| a.port()).unwrap_or(0)
                ));
                let (client, node, pod_name, namespace) = (
                    client.clone(),
                    node.clone(),
                    pod_name.clone(),
                    namespace.clone(),
                );
                tokio::spawn(async move {
                    let side = client
                        .open_port_forward(&node, &namespace, &pod_name, remote)
                        .await;
                    let result = match side {
                        Ok(side) => side.run(tcp).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = result {
                        eprintln!("error: port-forward to {namespace}/{pod_name}:{remote}: {e}");
                    }
                });
            }
        }));
    }
    let _ = tokio::signal::ctrl_c().await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// The manifest files a `-f` names: a file, every .yaml/.yml/.json in a
/// directory (sorted), or standard input.
fn read_sources(names: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in names {
        if name == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let path = Path::new(name);
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {name}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
                })
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                out.push((f.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
            out.push((name.clone(), text));
        }
    }
    Ok(out)
}

async fn apply(client: &Client, args: ApplyArgs) -> anyhow::Result<()> {
    let mut failed = false;
    for (source, text) in read_sources(&args.files)? {
        let reply = client.apply_manifests_with(&text, args.dry_run).await?;
        let suffix = if reply.dry_run { " (dry run)" } else { "" };
        if let Some(e) = reply.error {
            eprintln!("error: {source}: {}", e.message);
            failed = true;
            continue;
        }
        for doc in reply.documents {
            match (doc.result, doc.object) {
                (Ok(outcome), Some(r)) => emit(&format!(
                    "{} {}{suffix}\n",
                    crate::targets::display_ref(&r),
                    outcome.as_str()
                )),
                (Ok(outcome), None) => emit(&format!(
                    "{source} {}: {}\n",
                    doc.document,
                    outcome.as_str()
                )),
                (Err(e), _) => {
                    eprintln!("error: {source} {}: {}", doc.document, e.message);
                    failed = true;
                }
            }
        }
    }
    if failed {
        bail!("some objects were not applied");
    }
    Ok(())
}

async fn get(client: &Client, args: GetArgs) -> anyhow::Result<()> {
    if args.kind == "all" {
        return get_several(client, &args, &Kind::CATEGORY_ALL).await;
    }
    if args.kind.contains(',') {
        // kubectl's `get pods,svc`: a table per kind, named KIND/NAME
        let kinds = args
            .kind
            .split(',')
            .map(Kind::from_resource)
            .collect::<Result<Vec<_>, _>>()?;
        return get_several(client, &args, &kinds).await;
    }
    let kind = Kind::from_resource(&args.kind)?;
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(args.namespace.as_str())
    };
    if args.since.is_some() {
        return watch_rows(client, kind, &args).await;
    }
    let items = match (&args.name, args.revision) {
        (Some(name), None) => vec![client.get(kind, Some(&args.namespace), name).await?],
        (None, None) => {
            client
                .list(kind, namespace, args.selector.as_deref(), None)
                .await?
                .0
        }
        (name, Some(revision)) => {
            // One object at a revision: the list at it, by name.
            let by_name = name.as_ref().map(|n| format!("metadata.name={n}"));
            let namespace = if name.is_some() {
                Some(args.namespace.as_str())
            } else {
                namespace
            };
            let (items, _) = client
                .list_at(
                    kind,
                    namespace,
                    args.selector.as_deref(),
                    by_name.as_deref(),
                    revision,
                )
                .await?;
            if let (Some(n), true) = (name, items.is_empty()) {
                bail!(
                    "{} {n:?} did not exist at revision {revision}",
                    kind.resource()
                );
            }
            items
        }
    };
    let mut items = items;
    items.sort_by(|a, b| {
        (meta::namespace(a), meta::name(a)).cmp(&(meta::namespace(b), meta::name(b)))
    });
    match args.output.as_deref() {
        Some("json") => {
            let out = if args.name.is_some() {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
            };
            emit(&(serde_json::to_string_pretty(&out)? + "\n"));
        }
        Some("yaml") => {
            let out = if args.name.is_some() {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
            };
            emit(&serde_saphyr::to_string(&out).map_err(|e| anyhow::anyhow!("yaml: {e}"))?);
        }
        Some("wide") | None => {
            let wide = args.output.as_deref() == Some("wide");
            if items.is_empty() {
                match namespace {
                    Some(ns) if kind.namespaced() => {
                        eprintln!("No resources found in {ns} namespace.")
                    }
                    _ => eprintln!("No resources found"),
                }
                if !args.watch {
                    return Ok(());
                }
            }
            let now = jiff::Timestamp::now();
            emit(&print::table(
                kind,
                &items,
                args.all_namespaces && kind.namespaced(),
                wide,
                now,
            ));
        }
        Some(other) => bail!("unknown output format {other:?}: use wide, yaml or json"),
    }
    if args.watch {
        watch_rows(client, kind, &args).await?;
    }
    Ok(())
}

/// The kinds `kubectl get all` shows, in its order.
/// `kubus get all` ([`Kind::CATEGORY_ALL`]) and `kubus get pods,svc`: a table for
/// each of `kinds` that has objects, each NAME as `KIND/NAME`, a blank
/// line apart.
async fn get_several(client: &Client, args: &GetArgs, kinds: &[Kind]) -> anyhow::Result<()> {
    if args.name.is_some() || args.watch || args.revision.is_some() {
        bail!(
            "`get {}` lists: it takes no name, --watch or --revision",
            args.kind
        );
    }
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let mut everything = Vec::new();
    let mut sections = Vec::new();
    let now = jiff::Timestamp::now();
    for &kind in kinds {
        let (mut items, _) = client
            .list(kind, namespace, args.selector.as_deref(), None)
            .await?;
        if items.is_empty() {
            continue;
        }
        items.sort_by(|a, b| {
            (meta::namespace(a), meta::name(a)).cmp(&(meta::namespace(b), meta::name(b)))
        });
        match args.output.as_deref() {
            Some("json" | "yaml") => everything.extend(items),
            Some("wide") | None => sections.push(print::table_named(
                kind,
                &items,
                args.all_namespaces,
                args.output.as_deref() == Some("wide"),
                now,
            )),
            Some(other) => bail!("unknown output format {other:?}: use wide, yaml or json"),
        }
    }
    let list = || serde_json::json!({"apiVersion": "v1", "kind": "List", "items": everything});
    match args.output.as_deref() {
        Some("json") => emit(&(serde_json::to_string_pretty(&list())? + "\n")),
        Some("yaml") => {
            emit(&serde_saphyr::to_string(&list()).map_err(|e| anyhow::anyhow!("yaml: {e}"))?)
        }
        _ if sections.is_empty() => match namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        },
        _ => emit(&sections.join("\n")),
    }
    Ok(())
}

async fn delete(client: &Client, args: DeleteArgs) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    if !args.files.is_empty() {
        for (source, text) in read_sources(&args.files)? {
            for doc in manifest::parse_documents(&text).with_context(|| source.clone())? {
                let label = doc.describe();
                let mut v = doc.value;
                let kind = meta::kind_of(&v);
                if let (Some(k), None) = (kind, meta::namespace(&v)) {
                    if k.namespaced() {
                        meta::set_meta(&mut v, "namespace", Value::String("default".into()));
                    }
                }
                match meta::object_ref(&v) {
                    Some(r) => targets.push(r),
                    None => eprintln!("error: {source} {}: not an object kubus serves", label),
                }
            }
        }
    } else {
        let (Some(kind), Some(name)) = (&args.kind, &args.name) else {
            bail!(
                "usage: kubus delete KIND NAME [-n NS] [--grace-period N] [--force] [--cascade background|foreground|orphan] | kubus delete -f FILE"
            );
        };
        targets.push(ObjectRef::new(
            Kind::from_resource(kind)?,
            Some(&args.namespace),
            name,
        ));
    }
    let mut failed = false;
    let options = DeleteOptions {
        grace_period_seconds: args.grace_period_seconds(),
        propagation_policy: Propagation::parse(&args.cascade),
        ..DeleteOptions::default()
    };
    if args.force {
        eprintln!(
            "warning: immediate deletion does not wait for confirmation that the running \
             resource has been terminated"
        );
    }
    for r in targets {
        // as kubectl words it: a pod that is terminating is "deleted" too
        match client.delete_with(&r, options.clone()).await {
            Ok(_) => emit(&format!("{} deleted\n", crate::targets::display_ref(&r))),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some objects were not deleted");
    }
    Ok(())
}

/// The pod a verb means (`kubus logs`, `kubus port-forward`): `NAME`,
/// `pod/NAME`, or the first pod (by name) of a `deployment/NAME` or
/// `replicaset/NAME`, as kubectl does.
async fn pod_named(client: &Client, namespace: &str, target: &str) -> anyhow::Result<Value> {
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(client.get(Kind::Pod, Some(namespace), target).await?);
    };
    let kind = Kind::from_resource(kind)?;
    if kind == Kind::Pod {
        return Ok(client.get(Kind::Pod, Some(namespace), name).await?);
    }
    if !matches!(kind, Kind::Deployment | Kind::ReplicaSet) {
        bail!(
            "{target}: name a pod, a deployment or a replicaset (a {kind} has no pods of its own)"
        );
    }
    let owner = client.get(kind, Some(namespace), name).await?;
    let selector = owner
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let (mut pods, _) = client
        .list(Kind::Pod, Some(namespace), Some(&selector), None)
        .await?;
    pods.sort_by(|a, b| meta::name(a).cmp(&meta::name(b)));
    pods.into_iter()
        .next()
        .with_context(|| format!("{target} has no pods"))
}

/// The node a pod runs on, or why it has none.
fn node_of(pod: &Value, namespace: &str) -> anyhow::Result<String> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| {
            format!(
                "pod {namespace}/{} is not scheduled to a node yet",
                meta::name(pod).unwrap_or_default()
            )
        })
}

async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let pod = pod_named(client, &args.namespace, &args.pod).await?;
    let pod_name = meta::name(&pod).unwrap_or_default().to_string();
    let node = node_of(&pod, &args.namespace)?;
    let req = LogsRequest {
        namespace: args.namespace.clone(),
        pod: pod_name.clone(),
        container: args.container.clone(),
        previous: args.previous,
        ..LogsRequest::default()
    };
    if !args.follow {
        emit(&client.logs(&node, &req).await?.text);
        return Ok(());
    }
    // this run of the container until it ends (bounded asks, see
    // Client::follow_logs)
    let mut texts = client.follow_logs(node, req);
    while let Some(text) = texts.recv().await {
        emit(&text.context("following the log")?);
    }
    Ok(())
}

async fn exec(client: &Client, args: ExecArgs) -> anyhow::Result<()> {
    let name = args.pod.strip_prefix("pod/").unwrap_or(&args.pod);
    let pod = client.get(Kind::Pod, Some(&args.namespace), name).await?;
    let node = node_of(&pod, &args.namespace)?;
    if args.stdin || args.tty {
        let req = kubus_bus::protocol::ExecStreamRequest {
            namespace: args.namespace.clone(),
            pod: name.to_string(),
            container: args.container.clone(),
            command: args.command.clone(),
            stdin: args.stdin,
            tty: args.tty,
            attach: false,
            stream: String::new(),
        };
        let code = crate::interactive::run(client, &node, req).await?;
        crate::interactive::exit_with(code);
    }
    let out = client
        .exec(
            &node,
            &ExecRequest {
                namespace: args.namespace.clone(),
                pod: name.to_string(),
                container: args.container.clone(),
                command: args.command.clone(),
                timeout_secs: Some(args.timeout),
            },
        )
        .await?;
    emit(&out.stdout);
    {
        let mut err = std::io::stderr().lock();
        let _ = err
            .write_all(out.stderr.as_bytes())
            .and_then(|()| err.flush());
    }
    if out.truncated {
        eprintln!("kubus exec: output cut at the node agent's bound");
    }
    if out.exit_code != 0 {
        // the command's own exit code, as kubectl exec passes it on
        std::process::exit(out.exit_code.clamp(1, 255));
    }
    Ok(())
}

/// `kubus attach`: a session on the container's own process.
async fn attach(client: &Client, args: AttachArgs) -> anyhow::Result<()> {
    let name = args.pod.strip_prefix("pod/").unwrap_or(&args.pod);
    let pod = client.get(Kind::Pod, Some(&args.namespace), name).await?;
    let node = node_of(&pod, &args.namespace)?;
    let req = kubus_bus::protocol::ExecStreamRequest {
        namespace: args.namespace.clone(),
        pod: name.to_string(),
        container: args.container.clone(),
        command: Vec::new(),
        stdin: args.stdin,
        tty: args.tty,
        attach: true,
        stream: String::new(),
    };
    let code = crate::interactive::run(client, &node, req).await?;
    crate::interactive::exit_with(code)
}

/// After `kubus get`, keep printing changes (`-w`), until interrupted.
async fn watch_rows(client: &Client, kind: Kind, args: &GetArgs) -> anyhow::Result<()> {
    let selector = match args.selector.as_deref() {
        Some(s) => kubus_api::selector::Selector::parse(s)?,
        None => kubus_api::selector::Selector::everything(),
    };
    let json = args.output.as_deref() == Some("json");
    let mut spec = kubus_bus::watch::WatchSpec::all(client, kind);
    spec.since = args.since;
    let mut rx = kubus_bus::watch::watch(client.clone(), spec);
    // without --since, the first view was printed by the list
    let mut skip_first_list = args.since.is_none();
    while let Some(item) = rx.recv().await {
        let changes = match item {
            WatchItem::Relisted { items, revision } => {
                if json {
                    let line = serde_json::json!({"type": "RELISTED", "revision": revision, "items": items.len()});
                    emit(&(line.to_string() + "\n"));
                }
                if std::mem::take(&mut skip_first_list) || json {
                    continue;
                }
                items.into_iter().map(|o| ("RELISTED", o)).collect()
            }
            WatchItem::Bookmark(revision) => {
                if json {
                    emit(
                        &(serde_json::json!({"type": "BOOKMARK", "revision": revision})
                            .to_string()
                            + "\n"),
                    );
                }
                continue;
            }
            WatchItem::Event(e) => {
                skip_first_list = false;
                vec![(event_word(e.event_type), e.object)]
            }
        };
        for (word, obj) in changes {
            let in_scope = (args.all_namespaces
                || !kind.namespaced()
                || meta::namespace(&obj) == Some(args.namespace.as_str()))
                && args
                    .name
                    .as_deref()
                    .is_none_or(|n| meta::name(&obj) == Some(n))
                && selector.matches(&meta::labels(&obj));
            if !in_scope {
                continue;
            }
            if json {
                emit(&(serde_json::json!({"type": word, "object": obj}).to_string() + "\n"));
            } else {
                let table = print::table(
                    kind,
                    std::slice::from_ref(&obj),
                    args.all_namespaces && kind.namespaced(),
                    args.output.as_deref() == Some("wide"),
                    jiff::Timestamp::now(),
                );
                for line in table.lines().skip(1) {
                    emit(&format!("{line}\n"));
                }
            }
        }
    }
    Ok(())
}

fn event_word(t: EventType) -> &'static str {
    match t {
        EventType::Added => "ADDED",
        EventType::Modified => "MODIFIED",
        EventType::Deleted => "DELETED",
        EventType::Bookmark => "BOOKMARK",
    }
}

/// `kubus events`: the stored Events, oldest first; `-w` then follows the
/// events subjects.
async fn events(client: &Client, args: EventsArgs) -> anyhow::Result<()> {
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let json = args.output.as_deref() == Some("json");
    if let Some(other) = args.output.as_deref().filter(|o| *o != "json") {
        bail!("unknown output format {other:?}: use json");
    }
    // subscribe before listing, so nothing falls between the two
    let subject = match namespace {
        Some(ns) => client.subjects().events_in(ns),
        None => client.subjects().events_all(),
    };
    let mut sub = if args.watch {
        Some(
            client
                .nats()
                .subscribe(subject)
                .await
                .context("subscribing to events")?,
        )
    } else {
        None
    };
    let items = list_events(client, namespace).await?;
    let now = jiff::Timestamp::now();
    if json {
        for e in &items {
            emit(&(e.to_string() + "\n"));
        }
    } else if items.is_empty() && !args.watch {
        eprintln!("No events found.");
    } else {
        emit(&print::table(
            Kind::Event,
            &items,
            args.all_namespaces,
            false,
            now,
        ));
    }
    let Some(sub) = sub.as_mut() else {
        return Ok(());
    };
    while let Some(msg) = futures::StreamExt::next(sub).await {
        let codec = kubus_bus::codec::Codec::from_headers(msg.headers.as_ref());
        let Ok(body) = codec.decode::<Value>(&msg.payload) else {
            continue;
        };
        // stored Events come as change events; manifest results as Events
        let event = match body.get("object") {
            Some(o) if o.is_object() => o.clone(),
            _ => body,
        };
        if json {
            emit(&(event.to_string() + "\n"));
        } else {
            let table = print::table(
                Kind::Event,
                std::slice::from_ref(&event),
                args.all_namespaces,
                false,
                jiff::Timestamp::now(),
            );
            for line in table.lines().skip(1) {
                emit(&format!("{line}\n"));
            }
        }
    }
    Ok(())
}

/// The stored Events of a namespace (None: all), oldest first
/// ([`print::event_order`]): what `kubus events` prints and `kubus describe`
/// picks an object's Events from.
pub(crate) async fn list_events(
    client: &Client,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let (mut items, _) = client.list(Kind::Event, namespace, None, None).await?;
    items.sort_by_key(print::event_order);
    Ok(items)
}

/// Write to standard output; a closed pipe (`kubus get … | head`) ends the
/// program quietly, as it does for other command-line tools.
pub(crate) fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing output: {e}");
        std::process::exit(1);
    }
}
