//! The kubeconfig `kubus up` writes for kubectl and client libraries: one
//! cluster (the gateway's URL and CA), one user (the administrator's
//! certificate and key) and one context, each named after the kubus
//! cluster — and, when asked, the same entries merged into an existing
//! kubeconfig (entries of other names are kept as they are). Pure but
//! for [`write`] and [`merge_into`].

use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::pki::{self, Pki, PkiError};

/// What a kubeconfig says about one kubus cluster.
pub fn render(cluster: &str, server_url: &str, pki: &Pki) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url,
            "certificate-authority-data": b64(&pki.ca_cert),
        }}],
        "users": [{"name": user_name(cluster), "user": {
            "client-certificate-data": b64(&pki.admin_cert),
            "client-key-data": b64(&pki.admin_key),
        }}],
        "contexts": [{"name": cluster, "context": {
            "cluster": cluster,
            "user": user_name(cluster),
            "namespace": "default",
        }}],
        "current-context": cluster,
    })
}

fn user_name(cluster: &str) -> String {
    format!("{cluster}-admin")
}

/// `ours`' cluster, user and context put into `existing` (replacing
/// entries of the same names); `current-context` set to ours only when
/// `existing` has none.
pub fn merge(existing: &Value, ours: &Value) -> Value {
    let mut out = if existing.is_object() {
        existing.clone()
    } else {
        json!({"apiVersion": "v1", "kind": "Config"})
    };
    for list in ["clusters", "users", "contexts"] {
        let mut entries: Vec<Value> = out
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for new in ours
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            entries.retain(|e| e.get("name") != new.get("name"));
            entries.push(new.clone());
        }
        out[list] = json!(entries);
    }
    let has_current = out
        .get("current-context")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if !has_current {
        out["current-context"] = ours["current-context"].clone();
    }
    out
}

fn to_yaml(v: &Value) -> Result<String, PkiError> {
    serde_saphyr::to_string(v).map_err(|e| PkiError::Kubeconfig(format!("cannot write YAML: {e}")))
}

/// Writes `config` to `path` (0600).
pub fn write(path: &Path, config: &Value) -> Result<(), PkiError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    pki::write_private(path, &to_yaml(config)?, 0o600)
}

/// Merges `ours` into the kubeconfig at `path` (made if absent).
pub fn merge_into(path: &Path, ours: &Value) -> Result<(), PkiError> {
    let existing: Value = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Value::Null,
        Ok(text) => serde_saphyr::from_str(&text).map_err(|e| PkiError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a kubeconfig kubus can merge into: {e}"),
            ),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(source) => {
            return Err(PkiError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    write(path, &merge(&existing, ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> Pki {
        Pki {
            ca_cert: "CA".into(),
            server_cert: "S".into(),
            server_key: "SK".into(),
            admin_cert: "A".into(),
            admin_key: "AK".into(),
        }
    }

    #[test]
    fn a_merge_keeps_other_entries_and_the_current_context() {
        let ours = render("kubus", "https://127.0.0.1:6443", &pki());
        assert_eq!(
            ours["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        let existing = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}},
                         {"name": "kubus", "cluster": {"server": "https://old"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
            "users": [{"name": "me", "user": {"token": "t"}}],
            "current-context": "prod"});
        let m = merge(&existing, &ours);
        let names = |list: &str| -> Vec<String> {
            m[list]
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(names("clusters"), ["prod", "kubus"]);
        assert_eq!(names("users"), ["me", "kubus-admin"]);
        assert_eq!(m["current-context"], "prod");
        assert_eq!(
            m["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(merge(&Value::Null, &ours)["current-context"], "kubus");
    }

    #[test]
    fn written_kubeconfigs_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kube").join("config");
        let ours = render("kubus", "https://127.0.0.1:6443", &pki());
        merge_into(&path, &ours).expect("write");
        merge_into(&path, &ours).expect("merge again");
        let back: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        assert_eq!(back, ours);
    }
}
