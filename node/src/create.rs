//! `kubus create deployment|job|cronjob|configmap|secret generic|namespace`
//! and `kubus run`: objects built as kubectl's generators build them
//! (`app=NAME` on a Deployment, `run=NAME` on a `run` pod, a container
//! named after its image, `restartPolicy: Never` on a Job), created, or
//! with `--dry-run=client` printed instead (`-o yaml|json|name`).
//!
//! The builders and the `KEY=VALUE` parsers are pure; reading
//! `--from-file` sources and writing are the `run_*` functions' part.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use kubus_api::admission::validate::config_key_problems;
use kubus_api::{meta, Kind};
use kubus_bus::Client;
use serde_json::{json, Map, Value};

use crate::cli::{Command, CreateCommand, CreateOutput, CreateSecretCommand};
use crate::commands::emit;
use crate::create_access as access;
use crate::targets::display_object;

/// Largest file a `--from-file` source may be: a ConfigMap or Secret
/// holds at most 1 MiB in Kubernetes.
pub const FILE_BYTES_MAX: u64 = 1 << 20;
/// Most files one `--from-file` directory contributes.
pub const DIRECTORY_FILES_MAX: usize = 1_000;

/// Why a `create` or `run` argument cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("invalid literal source {0}, expected key=value")]
    Literal(String),
    #[error("key names or file paths cannot contain '=': {0}")]
    FileSource(String),
    #[error("{key:?} is not a valid key name for a {kind}: {rule}")]
    Key {
        kind: &'static str,
        key: String,
        rule: String,
    },
    #[error("cannot add key {key:?}, another key by that name already exists in {kind} {name:?}")]
    DuplicateKey {
        kind: &'static str,
        key: String,
        name: String,
    },
    #[error("{file}:{line}: invalid env line {text:?}: expected KEY=VALUE")]
    EnvLine {
        file: String,
        line: usize,
        text: String,
    },
    #[error("invalid env: {0} (expected NAME=VALUE)")]
    Env(String),
    #[error("invalid label spec: {0} (expected key=value,key=value)")]
    Labels(String),
    #[error("invalid restart policy {0:?}: use Always, OnFailure or Never")]
    Restart(String),
    #[error("--from: only cronjob/NAME can be the source of a Job, not {0:?}")]
    JobSource(String),
}

/// kubectl's container name for an image: its last path part without tag
/// or digest, with `_` and `.` made `-` and then a random suffix (given
/// here, so the builder stays pure) to keep it unique.
pub fn container_name(image: &str, suffix: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split(':').next().unwrap_or(base);
    let base = base.split('@').next().unwrap_or(base);
    if base.contains(['_', '.']) {
        format!("{}-{suffix}", base.replace(['_', '.'], "-"))
    } else {
        base.to_string()
    }
}

fn with_namespace(mut obj: Value, namespace: Option<&str>) -> Value {
    if let Some(ns) = namespace {
        meta::set_meta(&mut obj, "namespace", json!(ns));
    }
    obj
}

/// `kubectl create deployment NAME --image=I... [--replicas] [--port] [--
/// COMMAND]`: labels and selector `app=NAME`.
pub fn deployment(
    name: &str,
    images: &[String],
    replicas: i64,
    port: Option<i64>,
    command: &[String],
    suffix: &str,
) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut c =
                json!({"name": container_name(image, suffix), "image": image, "resources": {}});
            if !command.is_empty() {
                c["command"] = json!(command);
            }
            if let (0, Some(p)) = (i, port) {
                c["ports"] = json!([{"containerPort": p}]);
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers},
            },
        },
    })
}

/// `kubectl create job NAME --image=I [-- COMMAND]`: one container named
/// after the Job, `restartPolicy: Never`.
pub fn job(name: &str, image: &str, command: &[String]) -> Value {
    let mut c = json!({"name": name, "image": image, "resources": {}});
    if !command.is_empty() {
        c["command"] = json!(command);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"metadata": {}, "spec": {"containers": [c], "restartPolicy": "Never"}}},
    })
}

/// `kubectl create job NAME --from=cronjob/X`: the CronJob's job template,
/// its labels and annotations (plus `cronjob.kubernetes.io/instantiate:
/// manual`), owned by the CronJob.
pub fn job_from_cronjob(name: &str, cronjob: &Value) -> Value {
    let template = cronjob
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(Value::Null);
    let mut annotations = Map::new();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), json!("manual"));
    if let Some(a) = template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        annotations.extend(a.clone());
    }
    let mut metadata = json!({
        "name": name,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": meta::name(cronjob).unwrap_or_default(),
            "uid": meta::uid(cronjob).unwrap_or_default(),
            "controller": true,
        }],
    });
    if let Some(labels) = template
        .pointer("/metadata/labels")
        .filter(|l| l.is_object())
    {
        metadata["labels"] = labels.clone();
    }
    if let Some(ns) = meta::namespace(cronjob) {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// `kubectl create cronjob NAME --image=I --schedule=S [--restart] [--
/// COMMAND]`.
pub fn cronjob(
    name: &str,
    image: &str,
    schedule: &str,
    restart: &str,
    command: &[String],
) -> Value {
    let mut c = json!({"name": name, "image": image, "resources": {}});
    if !command.is_empty() {
        c["command"] = json!(command);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"name": name},
                "spec": {"template": {"metadata": {}, "spec": {"containers": [c], "restartPolicy": restart}}},
            },
        },
    })
}

/// A restart policy as kubectl takes it (any case).
pub fn restart_policy(text: &str) -> Result<&'static str, CreateError> {
    match text.to_ascii_lowercase().as_str() {
        "always" => Ok("Always"),
        "onfailure" => Ok("OnFailure"),
        "never" => Ok("Never"),
        _ => Err(CreateError::Restart(text.into())),
    }
}

/// `--from-literal=KEY=VALUE`.
pub fn parse_literal(text: &str) -> Result<(String, String), CreateError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(CreateError::Literal(text.into())),
    }
}

/// `--from-file=[KEY=]PATH`: the key, if given, and the path.
pub fn parse_file_source(text: &str) -> Result<(Option<String>, String), CreateError> {
    match text.split_once('=') {
        None => Ok((None, text.to_string())),
        Some((k, p)) if !k.is_empty() && !p.is_empty() && !p.contains('=') => {
            Ok((Some(k.to_string()), p.to_string()))
        }
        Some(_) => Err(CreateError::FileSource(text.into())),
    }
}

/// An env file (`--from-env-file`): `KEY=VALUE` lines; blank lines and
/// `#` comments skipped, leading spaces of a key trimmed.
pub fn parse_env_file(file: &str, text: &str) -> Result<Vec<(String, String)>, CreateError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                return Err(CreateError::EnvLine {
                    file: file.into(),
                    line: i + 1,
                    text: line.into(),
                })
            }
        }
    }
    Ok(out)
}

/// The data of a ConfigMap or Secret, from its sources in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries(pub Vec<(String, Vec<u8>)>);

fn check_entries(kind: &'static str, name: &str, entries: &Entries) -> Result<(), CreateError> {
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in &entries.0 {
        let problems = config_key_problems(key);
        if !problems.is_empty() {
            return Err(CreateError::Key {
                kind,
                key: key.clone(),
                rule: problems.join("; "),
            });
        }
        if !seen.insert(key.as_str()) {
            return Err(CreateError::DuplicateKey {
                kind,
                key: key.clone(),
                name: name.into(),
            });
        }
    }
    Ok(())
}

fn base64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap_or(Value::Null)
}

/// `kubectl create configmap`: text values in `data`, other bytes
/// (base64) in `binaryData`.
pub fn config_map(name: &str, entries: &Entries) -> Result<Value, CreateError> {
    check_entries("ConfigMap", name, entries)?;
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in &entries.0 {
        match std::str::from_utf8(v) {
            Ok(text) => data.insert(k.clone(), json!(text)),
            Err(_) => binary.insert(k.clone(), base64(v)),
        };
    }
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    if !data.is_empty() {
        cm["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        cm["binaryData"] = Value::Object(binary);
    }
    Ok(cm)
}

/// `kubectl create secret generic`: every value base64 in `data`.
pub fn secret(name: &str, type_: Option<&str>, entries: &Entries) -> Result<Value, CreateError> {
    check_entries("Secret", name, entries)?;
    let data: Map<String, Value> = entries
        .0
        .iter()
        .map(|(k, v)| (k.clone(), base64(v)))
        .collect();
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}});
    if let Some(t) = type_ {
        s["type"] = json!(t);
    }
    if !data.is_empty() {
        s["data"] = Value::Object(data);
    }
    Ok(s)
}

/// `kubectl create namespace NAME`.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// What `kubus run` was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    pub port: Option<i64>,
    pub env: Vec<String>,
    pub labels: Option<String>,
    pub restart: String,
    /// The words after `--` are the command (else the arguments).
    pub command: bool,
    pub args: Vec<String>,
    pub image_pull_policy: Option<String>,
    /// The container keeps its stdin open (and the first session's end
    /// closes it).
    pub stdin: bool,
    /// The container runs on a terminal.
    pub tty: bool,
}

/// `a=b,c=d`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, CreateError> {
    text.split(',')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CreateError::Labels(text.into())),
        })
        .collect()
}

/// kubectl's `run` pod: label `run=NAME` (or `--labels`), one container
/// named after the pod, the words after `--` as its args (`--command`: as
/// its command), `dnsPolicy: ClusterFirst`.
pub fn run_pod(spec: &RunSpec) -> Result<Value, CreateError> {
    let labels = match &spec.labels {
        Some(l) => parse_labels(l)?,
        None => BTreeMap::from([("run".to_string(), spec.name.clone())]),
    };
    let mut c = json!({"name": spec.name, "image": spec.image, "resources": {}});
    if !spec.args.is_empty() {
        let field = if spec.command { "command" } else { "args" };
        c[field] = json!(spec.args);
    }
    if !spec.env.is_empty() {
        let env: Result<Vec<Value>, CreateError> = spec
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok(json!({"name": k, "value": v})),
                _ => Err(CreateError::Env(e.clone())),
            })
            .collect();
        c["env"] = Value::Array(env?);
    }
    if let Some(p) = spec.port {
        c["ports"] = json!([{"containerPort": p}]);
    }
    if let Some(policy) = &spec.image_pull_policy {
        c["imagePullPolicy"] = json!(policy);
    }
    if spec.stdin {
        c["stdin"] = json!(true);
        c["stdinOnce"] = json!(true);
    }
    if spec.tty {
        c["tty"] = json!(true);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {
            "containers": [c],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": restart_policy(&spec.restart)?,
        },
    }))
}

/// The key and bytes of each file a `--from-file` source names: a file
/// (key: its name, or the one given) or every regular file of a directory
/// whose name is a valid key.
fn read_file_source(source: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let (key, path) = parse_file_source(source)?;
    let path = Path::new(&path);
    let read = |p: &Path| -> anyhow::Result<Vec<u8>> {
        let len = std::fs::metadata(p)
            .with_context(|| format!("reading {}", p.display()))?
            .len();
        if len > FILE_BYTES_MAX {
            bail!(
                "{} is {len} bytes; a ConfigMap or Secret holds at most {FILE_BYTES_MAX}",
                p.display()
            );
        }
        std::fs::read(p).with_context(|| format!("reading {}", p.display()))
    };
    if path.is_dir() {
        if key.is_some() {
            bail!("cannot give a key name for a directory: {source}");
        }
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {}", path.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        files.sort();
        if files.len() > DIRECTORY_FILES_MAX {
            bail!(
                "{} has {} files; at most {DIRECTORY_FILES_MAX} are read",
                path.display(),
                files.len()
            );
        }
        let mut out = Vec::new();
        for f in files {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if config_key_problems(&name).is_empty() {
                out.push((name, read(&f)?));
            }
        }
        return Ok(out);
    }
    let key = match key {
        Some(k) => k,
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{source}: name no file"))?
            .to_string(),
    };
    Ok(vec![(key, read(path)?)])
}

/// The entries of `--from-literal`, `--from-file` and `--from-env-file`
/// sources, in that order.
fn entries(literals: &[String], files: &[String], env_files: &[String]) -> anyhow::Result<Entries> {
    let mut out = Vec::new();
    for l in literals {
        let (k, v) = parse_literal(l)?;
        out.push((k, v.into_bytes()));
    }
    for f in files {
        out.extend(read_file_source(f)?);
    }
    for f in env_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        for (k, v) in parse_env_file(f, &text)? {
            out.push((k, v.into_bytes()));
        }
    }
    Ok(Entries(out))
}

/// Whether `--dry-run` asks to print only.
fn dry_run(out: &CreateOutput) -> anyhow::Result<bool> {
    match out.dry_run.as_str() {
        "none" => Ok(false),
        "client" => Ok(true),
        "server" => bail!("--dry-run=server is not supported by kubus yet: use --dry-run=client"),
        other => bail!("invalid --dry-run value {other:?}: use none or client"),
    }
}

/// Print an object as `-o` asks, or kubectl's line (`deployment.apps/web
/// created`, with ` (dry run)`).
pub fn print_object(obj: &Value, output: Option<&str>, line: &str) -> anyhow::Result<()> {
    match output {
        Some("yaml") => {
            emit(&serde_saphyr::to_string(obj).map_err(|e| anyhow::anyhow!("yaml: {e}"))?)
        }
        Some("json") => emit(&(serde_json::to_string_pretty(obj)? + "\n")),
        Some("name") => emit(&format!("{}\n", display_object(obj))),
        None => emit(&format!("{} {line}\n", display_object(obj))),
        Some(other) => bail!("unknown output format {other:?}: use yaml, json or name"),
    }
    Ok(())
}

/// Five lowercase letters and digits, as kubectl's `utilrand.String(5)`.
fn random_suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// What a `create` or `run` command makes: the object, or (`create job
/// --from`) the CronJob it is to be made from.
enum Planned {
    Object(Value),
    FromCronJob { name: String, cronjob: String },
}

/// The object `command` makes, as far as it can be built without the
/// cluster; None for verbs other than `create` and `run`.
fn plan(command: &Command) -> Option<anyhow::Result<(Planned, Option<&str>, &CreateOutput)>> {
    let built = match command {
        Command::Create(CreateCommand::Deployment(a)) => (
            Ok(Planned::Object(deployment(
                &a.name,
                &a.image,
                a.replicas,
                a.port,
                &a.command,
                &random_suffix(),
            ))),
            a.namespace.as_deref(),
            &a.out,
        ),
        Command::Create(CreateCommand::Job(a)) => {
            let planned = match (&a.image, &a.from) {
                (Some(image), None) => Ok(Planned::Object(job(&a.name, image, &a.command))),
                (None, Some(from)) => match from.split_once('/') {
                    Some((kind, name)) if Kind::from_resource(kind).ok() == Some(Kind::CronJob) => {
                        Ok(Planned::FromCronJob {
                            name: a.name.clone(),
                            cronjob: name.to_string(),
                        })
                    }
                    _ => Err(CreateError::JobSource(from.clone()).into()),
                },
                _ => Err(anyhow::anyhow!("give either --image or --from (only one)")),
            };
            (planned, a.namespace.as_deref(), &a.out)
        }
        Command::Create(CreateCommand::Cronjob(a)) => (
            restart_policy(&a.restart)
                .map(|restart| {
                    Planned::Object(cronjob(&a.name, &a.image, &a.schedule, restart, &a.command))
                })
                .map_err(Into::into),
            a.namespace.as_deref(),
            &a.out,
        ),
        Command::Create(CreateCommand::Configmap(a)) => (
            entries(&a.from_literal, &a.from_file, &a.from_env_file)
                .and_then(|data| Ok(Planned::Object(config_map(&a.name, &data)?))),
            a.namespace.as_deref(),
            &a.out,
        ),
        Command::Create(CreateCommand::Secret(CreateSecretCommand::Generic(a))) => (
            entries(&a.from_literal, &a.from_file, &a.from_env_file)
                .and_then(|data| Ok(Planned::Object(secret(&a.name, a.type_.as_deref(), &data)?))),
            a.namespace.as_deref(),
            &a.out,
        ),
        Command::Create(CreateCommand::Namespace(a)) => {
            (Ok(Planned::Object(namespace(&a.name))), None, &a.out)
        }
        Command::Create(CreateCommand::Serviceaccount(a)) => (
            Ok(Planned::Object(access::service_account(&a.name))),
            a.namespace.as_deref(),
            &a.out,
        ),
        Command::Create(CreateCommand::Role(a) | CreateCommand::Clusterrole(a)) => {
            let cluster = matches!(command, Command::Create(CreateCommand::Clusterrole(_)));
            (
                access::role(
                    cluster,
                    &a.name,
                    &a.verb,
                    &a.resource,
                    &a.resource_name,
                    &a.non_resource_url,
                )
                .map(Planned::Object)
                .map_err(Into::into),
                a.namespace.as_deref().filter(|_| !cluster),
                &a.out,
            )
        }
        Command::Create(CreateCommand::Rolebinding(a) | CreateCommand::Clusterrolebinding(a)) => {
            let cluster = matches!(
                command,
                Command::Create(CreateCommand::Clusterrolebinding(_))
            );
            let who = access::Subjects {
                users: a.user.clone(),
                groups: a.group.clone(),
                service_accounts: a.serviceaccount.clone(),
            };
            (
                access::binding(
                    cluster,
                    &a.name,
                    a.role.as_deref(),
                    a.clusterrole.as_deref(),
                    &who,
                )
                .map(Planned::Object)
                .map_err(Into::into),
                a.namespace.as_deref().filter(|_| !cluster),
                &a.out,
            )
        }
        Command::Run(a) => {
            let spec = RunSpec {
                name: a.name.clone(),
                image: a.image.clone(),
                port: a.port,
                env: a.env.clone(),
                labels: a.labels.clone(),
                restart: a.restart.clone(),
                command: a.command,
                args: a.args.clone(),
                image_pull_policy: a.image_pull_policy.clone(),
                stdin: a.stdin,
                tty: a.tty,
            };
            (
                run_pod(&spec).map(Planned::Object).map_err(Into::into),
                a.namespace.as_deref(),
                &a.out,
            )
        }
        _ => return None,
    };
    let (planned, namespace, out) = built;
    Some(planned.map(|p| (p, namespace, out)))
}

/// `create` and `run` with `--dry-run=client` print their object without
/// reaching the cluster, as kubectl does (but for `create job --from`,
/// which reads its CronJob). None: the command needs the cluster.
pub fn offline(command: &Command) -> Option<anyhow::Result<()>> {
    let planned = plan(command)?;
    let (object, namespace, out) = match planned {
        Ok((Planned::Object(o), ns, out)) => (o, ns, out),
        Ok((Planned::FromCronJob { .. }, _, _)) => return None,
        Err(e) => return Some(Err(e)),
    };
    match dry_run(out) {
        Ok(true) => Some(print_object(
            &with_namespace(object, namespace),
            out.output.as_deref(),
            "created (dry run)",
        )),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

/// `kubus create …` and `kubus run`: build the object (reading a
/// `--from=cronjob/NAME` first), then create it or print it.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    let Some(planned) = plan(&command) else {
        bail!("not a create or run command");
    };
    let (planned, namespace, out) = planned?;
    let object = match planned {
        Planned::Object(o) => o,
        Planned::FromCronJob { name, cronjob } => {
            let ns = namespace.unwrap_or("default");
            let cj = client.get(Kind::CronJob, Some(ns), &cronjob).await?;
            job_from_cronjob(&name, &cj)
        }
    };
    let object = with_namespace(object, namespace);
    if dry_run(out)? {
        return print_object(&object, out.output.as_deref(), "created (dry run)");
    }
    let created = client.create(object).await?;
    if let Command::Run(a) = &command {
        if a.stdin || a.tty {
            return crate::interactive::run_attached(client, &created, a).await;
        }
    }
    print_object(&created, out.output.as_deref(), "created")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn container_names_come_from_images() {
        let table = [
            ("nginx", "nginx"),
            ("nginx:1.27", "nginx"),
            ("registry.example.com:5000/team/web-app:v2", "web-app"),
            ("busybox@sha256:abc", "busybox"),
            ("my_app.v2:1", "my-app-v2-x1y2z"),
        ];
        for (image, want) in table {
            assert_eq!(container_name(image, "x1y2z"), want, "{image}");
        }
    }

    #[test]
    fn deployments_are_built_as_kubectl_builds_them() {
        let d = deployment(
            "web",
            &strings(&["nginx:1", "envoy"]),
            3,
            Some(80),
            &[],
            "abcde",
        );
        assert_eq!(
            d,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [
                            {"name": "nginx", "image": "nginx:1", "resources": {}, "ports": [{"containerPort": 80}]},
                            {"name": "envoy", "image": "envoy", "resources": {}}]}}}})
        );
        let d = deployment(
            "sleepy",
            &strings(&["busybox"]),
            1,
            None,
            &strings(&["sleep", "3600"]),
            "x",
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["sleep", "3600"])
        );
    }

    #[test]
    fn jobs_and_cronjobs() {
        let j = job("once", "busybox", &strings(&["date"]));
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["name"],
            "once"
        );
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["date"])
        );
        let cj = cronjob(
            "tick",
            "busybox",
            "*/1 * * * *",
            "OnFailure",
            &strings(&["date"]),
        );
        assert_eq!(cj["spec"]["schedule"], "*/1 * * * *");
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
            "OnFailure"
        );
        let mut stored = cj.clone();
        stored["metadata"] = json!({"name": "tick", "namespace": "team", "uid": "cj-uid"});
        stored["spec"]["jobTemplate"]["metadata"] =
            json!({"labels": {"app": "tick"}, "annotations": {"note": "x"}});
        let j = job_from_cronjob("tick-manual", &stored);
        assert_eq!(j["metadata"]["namespace"], "team");
        assert_eq!(j["metadata"]["labels"], json!({"app": "tick"}));
        assert_eq!(
            j["metadata"]["annotations"],
            json!({"cronjob.kubernetes.io/instantiate": "manual", "note": "x"})
        );
        assert_eq!(j["metadata"]["ownerReferences"][0]["uid"], "cj-uid");
        assert_eq!(j["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(j["spec"], stored["spec"]["jobTemplate"]["spec"]);
        assert_eq!(restart_policy("onfailure"), Ok("OnFailure"));
        assert!(restart_policy("sometimes").is_err());
    }

    #[test]
    fn sources_parse() {
        assert_eq!(parse_literal("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_literal("a="), Ok(("a".into(), String::new())));
        assert!(parse_literal("=b").is_err());
        assert!(parse_literal("ab").is_err());
        assert_eq!(parse_file_source("cfg.ini"), Ok((None, "cfg.ini".into())));
        assert_eq!(
            parse_file_source("app.conf=/etc/x.conf"),
            Ok((Some("app.conf".into()), "/etc/x.conf".into()))
        );
        assert!(parse_file_source("a=b=c").is_err());
        assert_eq!(
            parse_env_file("env", "# comment\n\nA=1\n  B=two words\n"),
            Ok(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert!(matches!(
            parse_env_file("env", "A=1\nNOVALUE\n"),
            Err(CreateError::EnvLine { line: 2, .. })
        ));
    }

    #[test]
    fn config_maps_and_secrets() {
        let e = Entries(vec![
            ("greeting".into(), b"hello".to_vec()),
            ("blob".into(), vec![0xff, 0x00]),
        ]);
        let cm = config_map("c", &e).expect("valid");
        assert_eq!(cm["data"], json!({"greeting": "hello"}));
        assert_eq!(cm["binaryData"], json!({"blob": "/wA="}));
        let s = secret("s", None, &e).expect("valid");
        assert_eq!(s["data"], json!({"greeting": "aGVsbG8=", "blob": "/wA="}));
        assert!(s.get("type").is_none());
        assert_eq!(
            secret("s", Some("kubernetes.io/tls"), &e).expect("valid")["type"],
            "kubernetes.io/tls"
        );
        let dup = Entries(vec![("a".into(), vec![]), ("a".into(), vec![])]);
        assert!(matches!(
            config_map("c", &dup),
            Err(CreateError::DuplicateKey { .. })
        ));
        let bad = Entries(vec![("not ok".into(), vec![])]);
        assert!(matches!(
            secret("s", None, &bad),
            Err(CreateError::Key { .. })
        ));
    }

    #[test]
    fn run_builds_kubectls_pod() {
        let spec = RunSpec {
            name: "shell".into(),
            image: "busybox".into(),
            port: Some(8080),
            env: strings(&["A=1", "B=x=y"]),
            restart: "Never".into(),
            args: strings(&["sleep", "3600"]),
            ..RunSpec::default()
        };
        assert_eq!(
            run_pod(&spec).expect("valid"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "shell", "labels": {"run": "shell"}},
                "spec": {"dnsPolicy": "ClusterFirst", "restartPolicy": "Never",
                    "containers": [{"name": "shell", "image": "busybox", "resources": {},
                        "args": ["sleep", "3600"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}],
                        "ports": [{"containerPort": 8080}]}]}})
        );
        let mut with_command = spec.clone();
        with_command.command = true;
        with_command.labels = Some("app=shell,tier=debug".into());
        let p = run_pod(&with_command).expect("valid");
        assert_eq!(
            p["spec"]["containers"][0]["command"],
            json!(["sleep", "3600"])
        );
        assert_eq!(
            p["metadata"]["labels"],
            json!({"app": "shell", "tier": "debug"})
        );
        let mut bad = spec.clone();
        bad.env = strings(&["NOVALUE"]);
        assert_eq!(run_pod(&bad), Err(CreateError::Env("NOVALUE".into())));
        bad = spec;
        bad.labels = Some("a".into());
        assert!(matches!(run_pod(&bad), Err(CreateError::Labels(_))));
    }
}
