//! What a pod's containers get besides their image: environment variables
//! (`env`, `envFrom`, `valueFrom` from ConfigMaps, Secrets and the pod's own
//! fields) and volumes (`emptyDir`, `hostPath`, `configMap`, `secret`,
//! `projected` with secret, configMap, downwardAPI and serviceAccountToken
//! sources) with
//! the mounts that put them into containers. Pure: the ConfigMaps and
//! Secrets come in as [`Sources`] fetched by the agent, the volumes come out
//! as a plan of directories and files the agent writes under its root.
//!
//! Errors are the messages a user sees in the container's
//! `CreateContainerConfigError`: they name the container, the field and the
//! rule, in Kubernetes' words where it has them (`configmap "x" not found`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use kubus_api::meta;
use serde_json::Value;

/// Kubernetes' default file mode of configMap and secret volume files.
pub const DEFAULT_MODE: u32 = 0o644;

/// ConfigMap or Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

impl SourceKind {
    /// As Kubernetes' messages spell it (`configmap "x" not found`).
    pub fn lower(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "configmap",
            SourceKind::Secret => "secret",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "ConfigMap",
            SourceKind::Secret => "Secret",
        }
    }
}

/// The ConfigMaps and Secrets of a pod's namespace that it refers to, as
/// fetched: `None` when the object does not exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    pub objects: BTreeMap<(SourceKind, String), Option<Value>>,
    /// Each PersistentVolumeClaim the pod's volumes name: the path of its
    /// bound volume on this node, or why it cannot be used yet.
    pub claims: BTreeMap<String, Result<PathBuf, String>>,
    /// Each ServiceAccount token the pod's projected volumes ask for, or
    /// why there is none.
    pub tokens: BTreeMap<TokenKey, Result<String, String>>,
}

/// One token a projected volume asks for: its audience (None: the API's)
/// and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenKey {
    pub audience: Option<String>,
    pub expiration_seconds: i64,
}

/// The sources of the pod's projected volumes, in order.
fn projected_sources(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
        .flatten()
}

/// The token of a `serviceAccountToken` projection.
fn token_key(t: &Value) -> TokenKey {
    TokenKey {
        audience: str_at(t, "audience")
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        expiration_seconds: t
            .get("expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(kubus_api::token::EXPIRATION_DEFAULT_SECONDS),
    }
}

/// The ServiceAccount tokens the pod's projected volumes ask for.
pub fn token_requests(pod: &Value) -> BTreeSet<TokenKey> {
    projected_sources(pod)
        .filter_map(|s| s.get("serviceAccountToken"))
        .map(token_key)
        .collect()
}

impl Sources {
    fn get(&self, kind: SourceKind, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind, name.to_string()))
            .and_then(Option::as_ref)
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn optional(v: &Value) -> bool {
    v.get("optional").and_then(Value::as_bool).unwrap_or(false)
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"].into_iter().flat_map(|f| {
        pod.pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    })
}

/// Every ConfigMap and Secret the pod refers to (env, envFrom, volumes).
pub fn references(pod: &Value) -> BTreeSet<(SourceKind, String)> {
    let mut out = env_references(pod);
    out.extend(volume_references(pod));
    out
}

/// The ConfigMaps and Secrets the pod's containers take env from (`env`
/// and `envFrom`): read again before each container start.
pub fn env_references(pod: &Value) -> BTreeSet<(SourceKind, String)> {
    let mut out = BTreeSet::new();
    let mut add = |kind, v: Option<&Value>, key: &str| {
        if let Some(name) = v.and_then(|v| str_at(v, key)) {
            out.insert((kind, name.to_string()));
        }
    };
    for c in containers(pod) {
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            add(
                SourceKind::ConfigMap,
                e.pointer("/valueFrom/configMapKeyRef"),
                "name",
            );
            add(
                SourceKind::Secret,
                e.pointer("/valueFrom/secretKeyRef"),
                "name",
            );
        }
        for e in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(SourceKind::ConfigMap, e.get("configMapRef"), "name");
            add(SourceKind::Secret, e.get("secretRef"), "name");
        }
    }
    out
}

/// The ConfigMaps and Secrets the pod's volumes show as files: what a live
/// refresh reads again (env is resolved once, when a container starts).
pub fn volume_references(pod: &Value) -> BTreeSet<(SourceKind, String)> {
    let mut out = BTreeSet::new();
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (kind, field, key) in [
            (SourceKind::ConfigMap, "configMap", "name"),
            (SourceKind::Secret, "secret", "secretName"),
        ] {
            if let Some(name) = v.get(field).and_then(|s| str_at(s, key)) {
                out.insert((kind, name.to_string()));
            }
        }
    }
    for src in projected_sources(pod) {
        for (kind, field) in [
            (SourceKind::ConfigMap, "configMap"),
            (SourceKind::Secret, "secret"),
        ] {
            if let Some(name) = src.get(field).and_then(|s| str_at(s, "name")) {
                out.insert((kind, name.to_string()));
            }
        }
    }
    out
}

/// Whether the pod has anything for the agent to fetch or write before
/// its containers start (ConfigMaps, Secrets, volumes).
pub fn has_sources_or_volumes(pod: &Value) -> bool {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty())
        || !references(pod).is_empty()
}

/// The key → bytes of a ConfigMap (`data` and base64 `binaryData`) or a
/// Secret (base64 `data`; admission has merged `stringData` into it).
pub fn data_of(kind: SourceKind, obj: &Value) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let decode = |field: &str, key: &str, v: &Value| {
        serde_json::from_value::<k8s_openapi::ByteString>(v.clone())
            .map(|b| b.0)
            .map_err(|e| {
                format!(
                    "{} {:?}: {field}[{key}] is not base64: {e}",
                    kind.lower(),
                    meta::name(obj).unwrap_or_default()
                )
            })
    };
    let map = |field: &str| {
        obj.get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    };
    match kind {
        SourceKind::ConfigMap => {
            for (k, v) in map("data") {
                out.insert(
                    k.clone(),
                    v.as_str().unwrap_or_default().as_bytes().to_vec(),
                );
            }
            for (k, v) in map("binaryData") {
                out.insert(k.clone(), decode("binaryData", k, v)?);
            }
        }
        SourceKind::Secret => {
            for (k, v) in map("data") {
                out.insert(k.clone(), decode("data", k, v)?);
            }
        }
    }
    Ok(out)
}

/// Whether a name can be an environment variable (Kubernetes allows any
/// printable ASCII but `=`, not starting with a digit).
fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_graphic() && c != '=')
}

/// Kubernetes' `$(VAR)` expansion of env values, command and args: a
/// reference to a variable in `env` becomes its value, `$$` becomes `$`,
/// and anything else (an unknown name, an unclosed `$(`) stays as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The pod's own facts that `fieldRef` can name.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    pub host_ip: &'a str,
    /// The pod's address (the node's for hostNetwork or a runtime without a
    /// pod network).
    pub pod_ip: &'a str,
    /// The env variables of the namespace's Services (first: the
    /// container's own `envFrom` and `env` override them).
    pub service_env: &'a [(String, String)],
}

fn field_ref(pod: &Value, path: &str, facts: PodFacts<'_>) -> Option<String> {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(match path {
        "metadata.name" => s("/metadata/name"),
        "metadata.namespace" => s("/metadata/namespace"),
        "metadata.uid" => s("/metadata/uid"),
        "spec.nodeName" => s("/spec/nodeName"),
        "spec.serviceAccountName" => pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        "status.podIP" => facts.pod_ip.to_string(),
        "status.hostIP" => facts.host_ip.to_string(),
        other => {
            // metadata.labels['k'] and metadata.annotations['k']
            let (map, key) = other
                .strip_prefix("metadata.labels['")
                .map(|k| ("labels", k))
                .or_else(|| {
                    other
                        .strip_prefix("metadata.annotations['")
                        .map(|k| ("annotations", k))
                })?;
            let key = key.strip_suffix("']")?;
            pod.pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        }
    })
}

/// One key of a ConfigMap or Secret for `env[].valueFrom`; None when it is
/// optional and absent.
fn key_ref(
    sources: &Sources,
    kind: SourceKind,
    r: &Value,
    namespace: &str,
) -> Result<Option<String>, String> {
    let name = str_at(r, "name").unwrap_or_default();
    let key = str_at(r, "key").unwrap_or_default();
    let Some(obj) = sources.get(kind, name) else {
        return if optional(r) {
            Ok(None)
        } else {
            Err(format!("{} {name:?} not found", kind.lower()))
        };
    };
    match data_of(kind, obj)?.remove(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
        None if optional(r) => Ok(None),
        None => Err(format!(
            "couldn't find key {key} in {} {namespace}/{name}",
            kind.kind()
        )),
    }
}

/// The container's environment: `envFrom` first, then `env` (which wins), in
/// order, with `valueFrom` resolved. `at` is the container's field path.
pub fn container_env(
    pod: &Value,
    container: &Value,
    at: &str,
    facts: PodFacts<'_>,
    sources: &Sources,
) -> Result<Vec<(String, String)>, String> {
    let namespace = meta::namespace(pod).unwrap_or("default");
    let mut env: Vec<(String, String)> = facts.service_env.to_vec();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env
        .iter_mut()
        .find(|(n, _)| *n == k)
    {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    for (i, e) in container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("{at}.envFrom[{i}]");
        let prefix = str_at(e, "prefix").unwrap_or_default();
        let (kind, r) = match (e.get("configMapRef"), e.get("secretRef")) {
            (Some(r), None) => (SourceKind::ConfigMap, r),
            (None, Some(r)) => (SourceKind::Secret, r),
            _ => return Err(format!("{field}: must have one of configMapRef, secretRef")),
        };
        let name = str_at(r, "name").unwrap_or_default();
        let Some(obj) = sources.get(kind, name) else {
            if optional(r) {
                continue;
            }
            return Err(format!("{field}: {} {name:?} not found", kind.lower()));
        };
        for (k, v) in data_of(kind, obj).map_err(|m| format!("{field}: {m}"))? {
            let k = format!("{prefix}{k}");
            // Kubernetes skips keys that cannot be variables
            if env_name_ok(&k) {
                set(&mut env, k, String::from_utf8_lossy(&v).into_owned());
            }
        }
    }
    for (i, e) in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = str_at(e, "name").unwrap_or_default().to_string();
        let field = format!("{at}.env[{i}]");
        if let Some(v) = str_at(e, "value") {
            // may refer to the variables defined before it
            let v = expand(v, &env);
            set(&mut env, name, v);
            continue;
        }
        let Some(from) = e.get("valueFrom") else {
            set(&mut env, name, String::new());
            continue;
        };
        let value = if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str)
        {
            Some(field_ref(pod, path, facts).ok_or_else(|| {
                format!("{field}.valueFrom.fieldRef.fieldPath: {path:?} is not a supported field (metadata.name, metadata.namespace, metadata.uid, metadata.labels['…'], metadata.annotations['…'], spec.nodeName, spec.serviceAccountName, status.podIP, status.hostIP)")
            })?)
        } else if let Some(r) = from.get("configMapKeyRef") {
            key_ref(sources, SourceKind::ConfigMap, r, namespace)
                .map_err(|m| format!("{field}.valueFrom.configMapKeyRef: {m}"))?
        } else if let Some(r) = from.get("secretKeyRef") {
            key_ref(sources, SourceKind::Secret, r, namespace)
                .map_err(|m| format!("{field}.valueFrom.secretKeyRef: {m}"))?
        } else {
            return Err(format!(
                "{field}.valueFrom: only fieldRef, configMapKeyRef and secretKeyRef are supported by this node agent"
            ));
        };
        if let Some(v) = value {
            set(&mut env, name, v);
        }
    }
    Ok(env)
}

/// Where an emptyDir keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A directory on the node's disk.
    Disk,
    /// A tmpfs (`medium: Memory`), at most `size_bytes` (its `sizeLimit`;
    /// None: the kernel's default, half the node's memory).
    Memory { size_bytes: Option<u64> },
}

/// What a volume is on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// A directory the agent creates, empty, for the pod's life.
    EmptyDir { medium: Medium },
    /// A path of the node; `check` is its `type` (`""`, `Directory`,
    /// `DirectoryOrCreate`, `File`, `FileOrCreate`, …).
    HostPath { check: String },
    /// Files the agent writes: (relative path, content, mode).
    Files {
        kind: SourceKind,
        files: Vec<(PathBuf, Vec<u8>, u32)>,
    },
}

/// One of the pod's volumes and where it lives on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub host_path: PathBuf,
    pub kind: VolumeKind,
}

impl PlannedVolume {
    /// The files of a configMap or secret volume (none for other kinds).
    pub fn files(&self) -> &[(PathBuf, Vec<u8>, u32)] {
        match &self.kind {
            VolumeKind::Files { files, .. } => files,
            _ => &[],
        }
    }

    /// The tmpfs the volume lives on, if any: Some(size limit) for secret
    /// volumes (their bytes never reach the node's disk, as in Kubernetes)
    /// and `medium: Memory` emptyDirs.
    pub fn tmpfs(&self) -> Option<Option<u64>> {
        match &self.kind {
            VolumeKind::EmptyDir {
                medium: Medium::Memory { size_bytes },
            } => Some(*size_bytes),
            VolumeKind::Files {
                kind: SourceKind::Secret,
                files,
            } => Some(Some(secret_tmpfs_bytes(files))),
            _ => None,
        }
    }
}

/// Smallest tmpfs of a secret volume: two copies of the largest Secret the
/// API admits (`DATA_BYTES_MAX`, 1 MiB) plus room for directories, so a
/// live refresh, which writes the new copy before it removes the old one,
/// fits whatever the Secret grows to. tmpfs takes memory only for what is
/// written; the size is only a bound.
pub const SECRET_TMPFS_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// The size of a secret volume's tmpfs: [`SECRET_TMPFS_BYTES_MIN`], or
/// twice its files and 1 MiB more when `items` repeat keys beyond that.
pub fn secret_tmpfs_bytes(files: &[(PathBuf, Vec<u8>, u32)]) -> u64 {
    let bytes: u64 = files.iter().map(|(_, b, _)| b.len() as u64).sum();
    SECRET_TMPFS_BYTES_MIN.max(bytes.saturating_mul(2).saturating_add(1024 * 1024))
}

/// The names a configMap or secret volume shows at its top (the first
/// component of each file's path): each is a symlink into `..data`.
pub fn visible_names(files: &[(PathBuf, Vec<u8>, u32)]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|(p, _, _)| p.components().next())
        .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
        .collect()
}

/// The volumes of `new` whose files differ from what `old` (the plan last
/// written) has under the same name: the configMap and secret volumes a
/// live refresh rewrites. Other kinds never change while the pod runs.
pub fn changed_files<'a>(
    old: &[PlannedVolume],
    new: &'a [PlannedVolume],
) -> Vec<&'a PlannedVolume> {
    new.iter()
        .filter(|v| matches!(v.kind, VolumeKind::Files { .. }))
        .filter(|v| !old.iter().any(|o| o.name == v.name && o == *v))
        .collect()
}

/// A relative path with no `..` (items[].path, subPath).
fn relative_ok(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// A path a configMap or secret volume may hold: relative, and not
/// starting with `..`, which names the volume's own `..data` link and
/// timestamped directories (Kubernetes' rule too).
fn file_path_ok(p: &str) -> bool {
    relative_ok(p) && !p.starts_with("..")
}

fn mode_of(v: Option<&Value>, field: &str, default: u32) -> Result<u32, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(m) => m
            .as_u64()
            .filter(|m| *m <= 0o777)
            .map(|m| m as u32)
            .ok_or_else(|| {
                format!("{field}: must be a file mode between 0 and 0777 (511), not {m}")
            }),
    }
}

/// The files of a configMap or secret source named `src_name` (a volume's
/// or a projection's, `at` its field path), with its `items` and modes.
fn source_files(
    kind: SourceKind,
    src: &Value,
    src_name: &str,
    at: &str,
    namespace: &str,
    sources: &Sources,
    default_mode: u32,
) -> Result<Vec<(PathBuf, Vec<u8>, u32)>, String> {
    let data = match sources.get(kind, src_name) {
        Some(obj) => data_of(kind, obj)?,
        None if optional(src) => BTreeMap::new(),
        None => return Err(format!("{at}: {} {src_name:?} not found", kind.lower())),
    };
    let mut files = Vec::new();
    match src.get("items").and_then(Value::as_array) {
        Some(items) if !items.is_empty() => {
            for (j, it) in items.iter().enumerate() {
                let at = format!("{at}.items[{j}]");
                let k = str_at(it, "key").unwrap_or_default();
                let p = str_at(it, "path").unwrap_or_default();
                if !file_path_ok(p) {
                    return Err(format!(
                        "{at}.path: must be a relative path without '..' that does not start with '..', not {p:?}"
                    ));
                }
                let mode = mode_of(it.get("mode"), &format!("{at}.mode"), default_mode)?;
                match data.get(k) {
                    Some(bytes) => files.push((PathBuf::from(p), bytes.clone(), mode)),
                    None if optional(src) => {}
                    None => {
                        return Err(format!(
                            "{at}.key: {} {namespace}/{src_name} has no key {k:?}",
                            kind.kind()
                        ))
                    }
                }
            }
        }
        _ => {
            for (k, bytes) in data {
                if !file_path_ok(&k) {
                    return Err(format!(
                        "{at}: key {k:?} of {} {namespace}/{src_name} cannot be a file name (it starts with '..'); use items to give it a path",
                        kind.kind()
                    ));
                }
                files.push((PathBuf::from(k), bytes, default_mode));
            }
        }
    }
    Ok(files)
}

/// The files of one source of a projected volume.
fn projected_files(
    pod: &Value,
    src: &Value,
    at: &str,
    namespace: &str,
    sources: &Sources,
    default_mode: u32,
) -> Result<Vec<(PathBuf, Vec<u8>, u32)>, String> {
    let path_of = |it: &Value, at: &str| -> Result<PathBuf, String> {
        let p = str_at(it, "path").unwrap_or_default();
        if file_path_ok(p) {
            Ok(PathBuf::from(p))
        } else {
            Err(format!(
                "{at}.path: must be a relative path without '..' that does not start with '..', not {p:?}"
            ))
        }
    };
    if let Some((kind, s)) = src
        .get("configMap")
        .map(|s| (SourceKind::ConfigMap, s))
        .or_else(|| src.get("secret").map(|s| (SourceKind::Secret, s)))
    {
        let sub = if kind == SourceKind::ConfigMap {
            "configMap"
        } else {
            "secret"
        };
        let name = str_at(s, "name").unwrap_or_default();
        return source_files(
            kind,
            s,
            name,
            &format!("{at}.{sub}"),
            namespace,
            sources,
            default_mode,
        );
    }
    if let Some(d) = src.get("downwardAPI") {
        let mut files = Vec::new();
        for (j, it) in d
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{at}.downwardAPI.items[{j}]");
            let path = path_of(it, &at)?;
            let mode = mode_of(it.get("mode"), &format!("{at}.mode"), default_mode)?;
            let Some(field_path) = it.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
                return Err(format!(
                    "{at}: only fieldRef is supported by this node agent (not resourceFieldRef)"
                ));
            };
            let value = downward_value(pod, field_path).ok_or_else(|| {
                format!("{at}.fieldRef.fieldPath: {field_path:?} is not a supported field (metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, metadata.labels['…'], metadata.annotations['…'])")
            })?;
            files.push((path, value.into_bytes(), mode));
        }
        return Ok(files);
    }
    if let Some(t) = src.get("serviceAccountToken") {
        let at = format!("{at}.serviceAccountToken");
        let path = path_of(t, &at)?;
        let key = token_key(t);
        if key.expiration_seconds < kubus_api::token::EXPIRATION_MIN_SECONDS {
            return Err(format!(
                "{at}.expirationSeconds: may not be less than {} seconds",
                kubus_api::token::EXPIRATION_MIN_SECONDS
            ));
        }
        return match sources.tokens.get(&key) {
            Some(Ok(token)) => Ok(vec![(path, token.clone().into_bytes(), default_mode)]),
            Some(Err(why)) => Err(format!("{at}: {why}")),
            None => Err(format!("{at}: no token was asked for")),
        };
    }
    Err(format!(
        "{at}: a projected source must be secret, configMap, downwardAPI or serviceAccountToken"
    ))
}

/// The value of a downward API volume file: a metadata field, or all
/// labels or annotations as `key="value"` lines (sorted).
fn downward_value(pod: &Value, path: &str) -> Option<String> {
    let whole = |map: &str| {
        let mut lines: Vec<String> = pod
            .pointer(&format!("/metadata/{map}"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    serde_json::to_string(v.as_str().unwrap_or_default()).unwrap_or_default()
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    };
    match path {
        "metadata.labels" => Some(whole("labels")),
        "metadata.annotations" => Some(whole("annotations")),
        p if p.starts_with("metadata.") => field_ref(
            pod,
            p,
            PodFacts {
                host_ip: "",
                pod_ip: "",
                service_env: &[],
            },
        ),
        _ => None,
    }
}

/// The pod's volumes: where each lives under `pod_dir` (or on the host),
/// and the files of configMap and secret volumes.
pub fn plan_volumes(
    pod: &Value,
    sources: &Sources,
    pod_dir: &Path,
) -> Result<Vec<PlannedVolume>, String> {
    let namespace = meta::namespace(pod).unwrap_or("default");
    let mut out = Vec::new();
    for (i, v) in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = str_at(v, "name").unwrap_or_default().to_string();
        let field = format!("spec.volumes[{i}]");
        let dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&name);
        let planned = if let Some(e) = v.get("emptyDir") {
            let medium = match str_at(e, "medium").unwrap_or_default() {
                "" => Medium::Disk,
                "Memory" => {
                    let size_bytes = match str_at(e, "sizeLimit") {
                        None => None,
                        Some(q) => Some(
                            kubus_api::quantity::memory_bytes(q)
                                .ok()
                                .and_then(|b| u64::try_from(b).ok())
                                .filter(|b| *b > 0)
                                .ok_or_else(|| {
                                    format!("{field}.emptyDir.sizeLimit: must be a positive quantity of bytes (e.g. 64Mi), not {q:?}")
                                })?,
                        ),
                    };
                    Medium::Memory { size_bytes }
                }
                other => {
                    return Err(format!(
                        "{field}.emptyDir.medium: must be \"\" or \"Memory\", not {other:?}"
                    ))
                }
            };
            PlannedVolume {
                host_path: dir("kubernetes.io~empty-dir"),
                kind: VolumeKind::EmptyDir { medium },
                name,
            }
        } else if let Some(h) = v.get("hostPath") {
            let path = str_at(h, "path").unwrap_or_default();
            if !path.starts_with('/') {
                return Err(format!(
                    "{field}.hostPath.path: must be an absolute path, not {path:?}"
                ));
            }
            PlannedVolume {
                host_path: PathBuf::from(path),
                kind: VolumeKind::HostPath {
                    check: str_at(h, "type").unwrap_or_default().to_string(),
                },
                name,
            }
        } else if let Some((kind, src, key)) = v
            .get("configMap")
            .map(|s| (SourceKind::ConfigMap, s, "name"))
            .or_else(|| {
                v.get("secret")
                    .map(|s| (SourceKind::Secret, s, "secretName"))
            })
        {
            let plugin = match kind {
                SourceKind::ConfigMap => "kubernetes.io~configmap",
                SourceKind::Secret => "kubernetes.io~secret",
            };
            let sub = if kind == SourceKind::ConfigMap {
                "configMap"
            } else {
                "secret"
            };
            let src_name = str_at(src, key).unwrap_or_default();
            let default_mode = mode_of(
                src.get("defaultMode"),
                &format!("{field}.{sub}.defaultMode"),
                DEFAULT_MODE,
            )?;
            let files = source_files(
                kind,
                src,
                src_name,
                &format!("{field}.{sub}"),
                namespace,
                sources,
                default_mode,
            )?;
            PlannedVolume {
                host_path: dir(plugin),
                kind: VolumeKind::Files { kind, files },
                name,
            }
        } else if let Some(p) = v.get("projected") {
            let default_mode = mode_of(
                p.get("defaultMode"),
                &format!("{field}.projected.defaultMode"),
                DEFAULT_MODE,
            )?;
            let mut files = Vec::new();
            for (j, src) in p
                .get("sources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("{field}.projected.sources[{j}]");
                files.extend(projected_files(
                    pod,
                    src,
                    &at,
                    namespace,
                    sources,
                    default_mode,
                )?);
            }
            PlannedVolume {
                host_path: dir("kubernetes.io~projected"),
                // a token is a secret: on tmpfs, like a secret volume
                kind: VolumeKind::Files {
                    kind: SourceKind::Secret,
                    files,
                },
                name,
            }
        } else if let Some(claim) = v.get("persistentVolumeClaim") {
            let claim_name = str_at(claim, "claimName").unwrap_or_default();
            match sources.claims.get(claim_name) {
                Some(Ok(path)) => PlannedVolume {
                    host_path: path.clone(),
                    kind: VolumeKind::HostPath {
                        check: "DirectoryOrCreate".into(),
                    },
                    name,
                },
                Some(Err(why)) => return Err(format!("{field}.persistentVolumeClaim: {why}")),
                None => {
                    return Err(format!(
                    "{field}.persistentVolumeClaim: persistentvolumeclaim {claim_name:?} not found"
                ))
                }
            }
        } else {
            let kind = v
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "name"))
                .cloned()
                .unwrap_or_default();
            return Err(format!(
                "{field}: volume {name:?} of type {kind:?} is not supported by this node agent (emptyDir, hostPath, configMap, secret, projected, persistentVolumeClaim)"
            ));
        };
        out.push(planned);
    }
    Ok(out)
}

/// A bind mount of a node path into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// The container's `volumeMounts` as bind mounts of the planned volumes.
/// configMap and secret volumes are always read-only, as in Kubernetes.
pub fn mounts(
    container: &Value,
    at: &str,
    volumes: &[PlannedVolume],
) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for (i, m) in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("{at}.volumeMounts[{i}]");
        let name = str_at(m, "name").unwrap_or_default();
        let Some(v) = volumes.iter().find(|v| v.name == name) else {
            return Err(format!(
                "{field}.name: the pod has no volume named {name:?}"
            ));
        };
        let path = str_at(m, "mountPath").unwrap_or_default();
        if !path.starts_with('/') {
            return Err(format!(
                "{field}.mountPath: must be an absolute path, not {path:?}"
            ));
        }
        let host_path = match str_at(m, "subPath").filter(|s| !s.is_empty()) {
            Some(sub) if relative_ok(sub) => v.host_path.join(sub),
            Some(sub) => {
                return Err(format!(
                    "{field}.subPath: must be a relative path without '..', not {sub:?}"
                ))
            }
            None => v.host_path.clone(),
        };
        out.push(Mount {
            container_path: path.to_string(),
            host_path,
            read_only: m.get("readOnly").and_then(Value::as_bool).unwrap_or(false)
                || matches!(v.kind, VolumeKind::Files { .. }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FACTS: PodFacts<'static> = PodFacts {
        host_ip: "192.0.2.1",
        pod_ip: "10.88.0.5",
        service_env: &[],
    };

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"}},
            "spec": {"nodeName": "n1",
                "containers": [{"name": "c",
                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}],
                    "envFrom": [{"secretRef": {"name": "sec"}}]}],
                "volumes": [{"name": "v1", "configMap": {"name": "cfg2"}}, {"name": "v2", "secret": {"secretName": "sec"}},
                    {"name": "tmp", "emptyDir": {}}]}})
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.objects.insert(
            (SourceKind::ConfigMap, "cfg".into()),
            Some(json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "two", "bad-name=": "x"},
                "binaryData": {"bin": "AAE="}})),
        );
        s.objects.insert(
            (SourceKind::Secret, "sec".into()),
            Some(json!({"metadata": {"name": "sec"}, "data": {"user": "YWRtaW4=", "password": "aHVudGVyMg=="}})),
        );
        s.objects
            .insert((SourceKind::ConfigMap, "gone".into()), None);
        s.claims.insert(
            "unbound".into(),
            Err("persistentvolumeclaim \"unbound\" is not bound yet".into()),
        );
        s.claims.insert(
            "data".into(),
            Ok(PathBuf::from("/var/lib/kubus/storage/pvc-1_ns_data")),
        );
        s.objects.insert(
            (SourceKind::ConfigMap, "dots".into()),
            Some(json!({"metadata": {"name": "dots"}, "data": {"..x": "1"}})),
        );
        s
    }

    #[test]
    fn references_cover_env_env_from_and_volumes() {
        assert!(has_sources_or_volumes(&pod()));
        assert!(!has_sources_or_volumes(
            &json!({"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}})
        ));
        let refs: Vec<(SourceKind, String)> = references(&pod()).into_iter().collect();
        assert_eq!(
            refs,
            vec![
                (SourceKind::ConfigMap, "cfg".into()),
                (SourceKind::ConfigMap, "cfg2".into()),
                (SourceKind::Secret, "sec".into())
            ]
        );
    }

    #[test]
    fn env_resolves_every_source_in_order() {
        let c = json!({"envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b"}}},
            {"name": "user", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "x", "optional": true}}},
        ]});
        let env =
            container_env(&pod(), &c, "spec.containers[0]", FACTS, &sources()).expect("resolves");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_a"), Some("1"));
        assert_eq!(get("CM_bin"), Some("\u{0}\u{1}"));
        assert_eq!(get("CM_bad-name="), None, "invalid names are skipped");
        assert_eq!(get("password"), Some("hunter2"));
        assert_eq!(get("user"), Some("hunter2"), "env wins over envFrom");
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("NS"), Some("ns"));
        assert_eq!(get("UID"), Some("u"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("IP"), Some("10.88.0.5"));
        assert_eq!(get("HOST"), Some("192.0.2.1"));
        assert_eq!(get("APP"), Some("a"));
        assert_eq!(get("B"), Some("two"));
        assert_eq!(get("OPT"), None, "optional and absent: not set");
    }

    #[test]
    fn env_errors_name_field_and_rule() {
        let at = "spec.containers[0]";
        let table = [
            (json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]}),
                "spec.containers[0].env[0].valueFrom.configMapKeyRef: configmap \"gone\" not found"),
            (json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]}),
                "spec.containers[0].env[0].valueFrom.configMapKeyRef: configmap \"missing\" not found"),
            (json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nope"}}}]}),
                "spec.containers[0].env[0].valueFrom.secretKeyRef: couldn't find key nope in Secret ns/sec"),
            (json!({"envFrom": [{"secretRef": {"name": "other"}}]}),
                "spec.containers[0].envFrom[0]: secret \"other\" not found"),
            (json!({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: \"spec.bogus\" is not a supported field"),
            (json!({"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}),
                "spec.containers[0].env[0].valueFrom: only fieldRef"),
        ];
        for (c, want) in table {
            let e = container_env(&pod(), &c, at, FACTS, &sources()).expect_err("fails");
            assert!(e.starts_with(want), "{c}: {e}");
        }
    }

    #[test]
    fn expands_references_like_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x y".to_string()),
        ];
        let table = [
            ("$(A)", "1"),
            ("a=$(A), b=$(B)", "a=1, b=x y"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$1"),
            ("$(C)", "$(C)"),
            ("$(A", "$(A"),
            ("cost $5", "cost $5"),
            ("trailing $", "trailing $"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(expand(input, &env), want, "{input:?}");
        }
        let c = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-$(LATER)"}, {"name": "LATER", "value": "z"}]});
        let got = container_env(&pod(), &c, "c", FACTS, &sources()).expect("resolves");
        assert_eq!(
            got[1],
            ("B".into(), "1-$(LATER)".into()),
            "only earlier variables"
        );
    }

    #[test]
    fn projected_volumes_hold_tokens_fields_and_sources() {
        let mut p = pod();
        p["spec"]["volumes"] = json!([{"name": "kube-api-access", "projected": {"defaultMode": 0o640, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"serviceAccountToken": {"path": "vault-token", "audience": "vault"}},
            {"downwardAPI": {"items": [
                {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"secret": {"name": "sec", "items": [{"key": "user", "path": "user"}]}},
            {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}}]}}]);
        let wanted = token_requests(&p);
        let api = TokenKey {
            audience: None,
            expiration_seconds: 3607,
        };
        let vault = TokenKey {
            audience: Some("vault".into()),
            expiration_seconds: 3600,
        };
        assert_eq!(wanted, [api.clone(), vault.clone()].into_iter().collect());
        assert!(volume_references(&p).contains(&(SourceKind::Secret, "sec".into())));
        let mut s = sources();
        s.tokens.insert(api.clone(), Ok("t-api".into()));
        s.tokens.insert(vault.clone(), Ok("t-vault".into()));
        let dir = Path::new("/r/pods/ns_p_u");
        let v = plan_volumes(&p, &s, dir).expect("plans");
        assert_eq!(
            v[0].host_path,
            dir.join("volumes/kubernetes.io~projected/kube-api-access")
        );
        assert_eq!(
            v[0].kind,
            VolumeKind::Files {
                kind: SourceKind::Secret,
                files: vec![
                    ("token".into(), b"t-api".to_vec(), 0o640),
                    ("vault-token".into(), b"t-vault".to_vec(), 0o640),
                    ("namespace".into(), b"ns".to_vec(), 0o640),
                    ("labels".into(), b"app=\"a\"".to_vec(), 0o640),
                    ("user".into(), b"admin".to_vec(), 0o640),
                    ("a".into(), b"1".to_vec(), 0o640),
                ]
            }
        );
        assert!(v[0].tmpfs().is_some(), "tokens stay off the disk");
        // a token that could not be had names why
        s.tokens
            .insert(vault, Err("serviceaccount \"x\" not found".into()));
        let e = plan_volumes(&p, &s, dir).expect_err("no token");
        assert!(
            e.starts_with(
                "spec.volumes[0].projected.sources[1].serviceAccountToken: serviceaccount"
            ),
            "{e}"
        );
        // unsupported sources and fields are named
        p["spec"]["volumes"][0]["projected"]["sources"] = json!([{"downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]}}]);
        let e = plan_volumes(&p, &s, dir).expect_err("resourceFieldRef");
        assert!(e.contains("only fieldRef is supported"), "{e}");
        p["spec"]["volumes"][0]["projected"]["sources"] =
            json!([{"clusterTrustBundle": {"path": "x"}}]);
        let e = plan_volumes(&p, &s, dir).expect_err("unknown source");
        assert!(
            e.contains("must be secret, configMap, downwardAPI or serviceAccountToken"),
            "{e}"
        );
    }

    #[test]
    fn volumes_become_files_and_mounts() {
        let mut p = pod();
        p["spec"]["volumes"] = json!([
            {"name": "cm", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [{"key": "a", "path": "sub/a.txt"}, {"key": "b", "path": "b", "mode": 0o400}]}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "opt", "secret": {"secretName": "absent", "optional": true}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
        ]);
        let mut s = sources();
        s.objects
            .insert((SourceKind::Secret, "absent".into()), None);
        let dir = Path::new("/r/pods/ns_p_u");
        let v = plan_volumes(&p, &s, dir).expect("plans");
        assert_eq!(
            v[0].host_path,
            dir.join("volumes/kubernetes.io~configmap/cm")
        );
        assert_eq!(
            v[0].kind,
            VolumeKind::Files {
                kind: SourceKind::ConfigMap,
                files: vec![
                    ("sub/a.txt".into(), b"1".to_vec(), 0o600),
                    ("b".into(), b"two".to_vec(), 0o400)
                ]
            }
        );
        assert_eq!(
            v[1].kind,
            VolumeKind::Files {
                kind: SourceKind::Secret,
                files: vec![
                    ("password".into(), b"hunter2".to_vec(), 0o644),
                    ("user".into(), b"admin".to_vec(), 0o644)
                ]
            }
        );
        assert_eq!(
            v[2].kind,
            VolumeKind::Files {
                kind: SourceKind::Secret,
                files: vec![]
            }
        );
        assert_eq!(
            v[3].host_path,
            dir.join("volumes/kubernetes.io~empty-dir/tmp")
        );
        assert_eq!(
            v[4].kind,
            VolumeKind::HostPath {
                check: "Directory".into()
            }
        );
        let c = json!({"volumeMounts": [
            {"name": "cm", "mountPath": "/etc/cfg"},
            {"name": "tmp", "mountPath": "/scratch", "subPath": "x"},
            {"name": "host", "mountPath": "/host", "readOnly": true}]});
        let m = mounts(&c, "spec.containers[0]", &v).expect("mounts");
        assert_eq!(
            m,
            vec![
                Mount {
                    container_path: "/etc/cfg".into(),
                    host_path: v[0].host_path.clone(),
                    read_only: true
                },
                Mount {
                    container_path: "/scratch".into(),
                    host_path: v[3].host_path.join("x"),
                    read_only: false
                },
                Mount {
                    container_path: "/host".into(),
                    host_path: "/var/log".into(),
                    read_only: true
                },
            ]
        );
    }

    fn file_volume(name: &str, kind: SourceKind, files: &[(&str, &[u8])]) -> PlannedVolume {
        PlannedVolume {
            name: name.into(),
            host_path: PathBuf::from("/r").join(name),
            kind: VolumeKind::Files {
                kind,
                files: files
                    .iter()
                    .map(|(p, b)| (PathBuf::from(p), b.to_vec(), DEFAULT_MODE))
                    .collect(),
            },
        }
    }

    #[test]
    fn memory_empty_dirs_and_secrets_are_tmpfs() {
        let mut p = pod();
        p["spec"]["volumes"] = json!([
            {"name": "disk", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "mem-unbounded", "emptyDir": {"medium": "Memory"}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "cm", "configMap": {"name": "cfg"}},
        ]);
        let v = plan_volumes(&p, &sources(), Path::new("/r")).expect("plans");
        let tmpfs: Vec<Option<Option<u64>>> = v.iter().map(PlannedVolume::tmpfs).collect();
        assert_eq!(
            tmpfs,
            vec![
                None,
                Some(Some(64 * 1024 * 1024)),
                Some(None),
                Some(Some(SECRET_TMPFS_BYTES_MIN)),
                None
            ]
        );
        // a secret beyond the floor gets room for two copies
        let big = vec![(PathBuf::from("k"), vec![0u8; 3 << 20], 0o644)];
        assert_eq!(secret_tmpfs_bytes(&big), (6 << 20) + (1 << 20));
        assert_eq!(secret_tmpfs_bytes(&[]), SECRET_TMPFS_BYTES_MIN);
    }

    #[test]
    fn visible_names_are_the_first_components() {
        let v = file_volume(
            "v",
            SourceKind::ConfigMap,
            &[("a", b""), ("sub/b", b""), ("sub/c/d", b""), ("e.txt", b"")],
        );
        let got: Vec<String> = visible_names(v.files()).into_iter().collect();
        assert_eq!(got, vec!["a", "e.txt", "sub"]);
    }

    #[test]
    fn changed_files_are_those_of_file_volumes_that_differ() {
        let cm = file_volume("cm", SourceKind::ConfigMap, &[("a", b"1")]);
        let sec = file_volume("sec", SourceKind::Secret, &[("pw", b"x")]);
        let empty = PlannedVolume {
            name: "tmp".into(),
            host_path: "/r/tmp".into(),
            kind: VolumeKind::EmptyDir {
                medium: Medium::Disk,
            },
        };
        let old = vec![cm.clone(), sec.clone(), empty.clone()];
        let names =
            |v: Vec<&PlannedVolume>| v.into_iter().map(|v| v.name.clone()).collect::<Vec<_>>();
        let table: Vec<(Vec<PlannedVolume>, Vec<&str>, &str)> = vec![
            (old.clone(), vec![], "nothing changed"),
            (
                vec![
                    file_volume("cm", SourceKind::ConfigMap, &[("a", b"2")]),
                    sec.clone(),
                    empty.clone(),
                ],
                vec!["cm"],
                "a value",
            ),
            (
                vec![
                    cm.clone(),
                    file_volume("sec", SourceKind::Secret, &[]),
                    empty.clone(),
                ],
                vec!["sec"],
                "a key dropped (an optional Secret gone)",
            ),
            (
                vec![
                    file_volume("cm", SourceKind::ConfigMap, &[("a", b"1"), ("b", b"")]),
                    sec.clone(),
                ],
                vec!["cm"],
                "a key added; other kinds are never refreshed",
            ),
        ];
        for (new, want, why) in table {
            assert_eq!(names(changed_files(&old, &new)), want, "{why}");
        }
        assert_eq!(
            names(changed_files(&[], &old)),
            vec!["cm", "sec"],
            "nothing known (a re-adopted pod): every file volume"
        );
        let mut items = cm.clone();
        if let VolumeKind::Files { files, .. } = &mut items.kind {
            files[0].2 = 0o400;
        }
        assert_eq!(
            names(changed_files(&old, std::slice::from_ref(&items))),
            vec!["cm"],
            "a mode"
        );
    }

    #[test]
    fn volume_references_are_only_those_of_volumes() {
        let refs: Vec<(SourceKind, String)> = volume_references(&pod()).into_iter().collect();
        assert_eq!(
            refs,
            vec![
                (SourceKind::ConfigMap, "cfg2".into()),
                (SourceKind::Secret, "sec".into())
            ]
        );
    }

    #[test]
    fn volume_errors_name_field_and_rule() {
        let table = [
            (
                json!([{"name": "a", "configMap": {"name": "missing"}}]),
                "spec.volumes[0].configMap: configmap \"missing\" not found",
            ),
            (
                json!([{"name": "a", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}]),
                "spec.volumes[0].configMap.items[0].key: ConfigMap ns/cfg has no key \"zz\"",
            ),
            (
                json!([{"name": "a", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../x"}]}}]),
                "spec.volumes[0].configMap.items[0].path: must be a relative path",
            ),
            (
                json!([{"name": "a", "secret": {"secretName": "sec", "defaultMode": 4096}}]),
                "spec.volumes[0].secret.defaultMode: must be a file mode",
            ),
            (
                json!([{"name": "a", "hostPath": {"path": "rel"}}]),
                "spec.volumes[0].hostPath.path: must be an absolute path",
            ),
            (
                json!([{"name": "a", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "..data"}]}}]),
                "spec.volumes[0].configMap.items[0].path: must be a relative path without '..' that does not start with '..'",
            ),
            (
                json!([{"name": "a", "configMap": {"name": "dots"}}]),
                "spec.volumes[0].configMap: key \"..x\" of ConfigMap ns/dots cannot be a file name",
            ),
            (
                json!([{"name": "a", "emptyDir": {"medium": "HugePages"}}]),
                "spec.volumes[0].emptyDir.medium: must be \"\" or \"Memory\", not \"HugePages\"",
            ),
            (
                json!([{"name": "a", "emptyDir": {"medium": "Memory", "sizeLimit": "lots"}}]),
                "spec.volumes[0].emptyDir.sizeLimit: must be a positive quantity of bytes",
            ),
            (
                json!([{"name": "a", "persistentVolumeClaim": {"claimName": "c"}}]),
                "spec.volumes[0].persistentVolumeClaim: persistentvolumeclaim \"c\" not found",
            ),
            (
                json!([{"name": "a", "persistentVolumeClaim": {"claimName": "unbound"}}]),
                "spec.volumes[0].persistentVolumeClaim: persistentvolumeclaim \"unbound\" is not bound yet",
            ),
            (
                json!([{"name": "a", "gitRepo": {"repository": "x"}}]),
                "spec.volumes[0]: volume \"a\" of type \"gitRepo\" is not supported",
            ),
        ];
        for (vols, want) in table {
            let mut p = pod();
            p["spec"]["volumes"] = vols.clone();
            let e = plan_volumes(&p, &sources(), Path::new("/r")).expect_err("fails");
            assert!(e.starts_with(want), "{vols}: {e}");
        }
        let v = plan_volumes(
            &pod(),
            &{
                let mut s = sources();
                s.objects.insert(
                    (SourceKind::ConfigMap, "cfg2".into()),
                    Some(json!({"data": {}})),
                );
                s
            },
            Path::new("/r"),
        )
        .expect("plans");
        for (c, want) in [
            (
                json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
                "spec.containers[0].volumeMounts[0].name: the pod has no volume named \"nope\"",
            ),
            (
                json!({"volumeMounts": [{"name": "tmp", "mountPath": "x"}]}),
                "spec.containers[0].volumeMounts[0].mountPath: must be an absolute path",
            ),
            (
                json!({"volumeMounts": [{"name": "tmp", "mountPath": "/x", "subPath": "/abs"}]}),
                "spec.containers[0].volumeMounts[0].subPath: must be a relative path",
            ),
        ] {
            let e = mounts(&c, "spec.containers[0]", &v).expect_err("fails");
            assert!(e.starts_with(want), "{c}: {e}");
        }
    }
}
