//! The OpenAPI v3 documents kubectl reads: `/openapi/v3` (an index with a
//! hash per group version) and one document per group version. Pure.
//!
//! What they say, and why: before `kubectl apply` (and `create`,
//! `replace`, `patch`) kubectl asks whether the server validates fields
//! itself — a `patch` operation for the kind, marked with
//! `x-kubernetes-group-version-kind`, that takes the `fieldValidation`
//! query parameter. kubus's admission refuses every unknown field and
//! every wrong type, naming the path, so the documents say yes and kubectl
//! sends `fieldValidation=Strict` instead of validating against schemas
//! of its own. The patch operations carry no request body schema, so
//! kubectl's client-side apply computes strategic merge patches from its
//! compiled-in Kubernetes types (the same merge keys kubus's
//! `kubus_api::patch` applies). No `components.schemas` yet: `kubectl
//! explain` needs them.

use kubus_api::Kind;
use serde_json::{json, Value};

/// The query parameters every write operation declares.
const WRITE_PARAMS: [&str; 3] = ["dryRun", "fieldManager", "fieldValidation"];

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: every group version's document and its hash (clients
/// cache documents by it).
pub fn index() -> Value {
    let mut paths = serde_json::Map::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for k in Kind::ALL {
        let gv = (k.group(), k.version());
        if seen.contains(&gv) {
            continue;
        }
        seen.push(gv);
        let path = gv_path(gv.0, gv.1);
        let hash = hash(&document(gv.0, gv.1));
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({ "paths": paths })
}

/// A stable hash of a document's bytes (CRC-32C, hex).
pub fn hash(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    format!("{:08X}", crc32c::crc32c(&bytes))
}

fn operation(k: Kind, action: &str, verb_word: &str, scope: &str) -> Value {
    let params: Vec<Value> = WRITE_PARAMS
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    let group_word = match k.group() {
        "" => "Core".to_string(),
        g => capitalised(g.split('.').next().unwrap_or(g)),
    };
    json!({
        "operationId": format!("{verb_word}{group_word}{}{scope}{}", capitalised(k.version()), k.as_str()),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": k.group(), "version": k.version(), "kind": k.as_str()},
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
    })
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The document of one group version: a create (collection) and a patch
/// and replace (object) operation per kind.
pub fn document(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for k in Kind::ALL
        .into_iter()
        .filter(|k| k.group() == group && k.version() == version)
    {
        let prefix = format!("/{}", gv_path(group, version));
        let (collection, scope) = if k.namespaced() {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}", k.resource()),
                "Namespaced",
            )
        } else {
            (format!("{prefix}/{}", k.resource()), "")
        };
        paths.insert(
            collection.clone(),
            json!({"post": operation(k, "post", "create", scope)}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "patch": operation(k, "patch", "patch", scope),
                "put": operation(k, "put", "replace", scope),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_declare_field_validation_per_kind() {
        let d = document("apps", "v1");
        let op = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(op["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(op.get("requestBody").is_none());
        let core = document("", "v1");
        assert!(core["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert_eq!(
            core["paths"]["/api/v1/nodes/{name}"]["patch"]["operationId"],
            "patchCoreV1Node"
        );
    }

    #[test]
    fn the_index_names_every_group_version_with_a_stable_hash() {
        let a = index();
        let b = index();
        assert_eq!(a, b);
        let url = a["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(a["paths"]["api/v1"].is_object());
    }
}
