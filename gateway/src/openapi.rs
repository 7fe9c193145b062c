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
//! `kubus_api::patch` applies). `components.schemas` hold every served
//! kind's schema and what it refers to, from k8s-openapi's types (the
//! root ones marked with `x-kubernetes-group-version-kind`): what
//! `kubectl explain` reads. The documents are made once per process.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api::{
    apps, batch, coordination, core, discovery, policy, rbac, scheduling, storage,
};
use kubus_api::Kind;
use serde_json::{json, Value};

/// The query parameters every write operation declares.
pub const WRITE_PARAMS: [&str; 3] = ["dryRun", "fieldManager", "fieldValidation"];

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every group version's document and its hash, made once.
fn documents() -> &'static BTreeMap<String, (Value, String)> {
    static DOCS: OnceLock<BTreeMap<String, (Value, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut out = BTreeMap::new();
        for k in Kind::ALL {
            let path = gv_path(k.group(), k.version());
            out.entry(path).or_insert_with(|| {
                let doc = build(k.group(), k.version());
                let h = hash(&doc);
                (doc, h)
            });
        }
        out
    })
}

/// `/openapi/v3`: every group version's document and its hash (clients
/// cache documents by it).
pub fn index() -> Value {
    let paths: serde_json::Map<String, Value> = documents()
        .iter()
        .map(|(path, (_, hash))| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// The document of one group version (made once).
pub fn document(group: &str, version: &str) -> Value {
    documents()
        .get(&gv_path(group, version))
        .map(|(doc, _)| doc.clone())
        .unwrap_or_else(|| build(group, version))
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

/// The schema of `kind`'s type (a `$ref` into `gen`'s definitions).
fn schema_of(kind: Kind, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    match kind {
        Kind::Namespace => gen.subschema_for::<core::v1::Namespace>(),
        Kind::Node => gen.subschema_for::<core::v1::Node>(),
        Kind::Pod => gen.subschema_for::<core::v1::Pod>(),
        Kind::Service => gen.subschema_for::<core::v1::Service>(),
        Kind::ConfigMap => gen.subschema_for::<core::v1::ConfigMap>(),
        Kind::Secret => gen.subschema_for::<core::v1::Secret>(),
        Kind::Event => gen.subschema_for::<core::v1::Event>(),
        Kind::Endpoints => gen.subschema_for::<core::v1::Endpoints>(),
        Kind::ReplicationController => gen.subschema_for::<core::v1::ReplicationController>(),
        Kind::PersistentVolume => gen.subschema_for::<core::v1::PersistentVolume>(),
        Kind::PersistentVolumeClaim => gen.subschema_for::<core::v1::PersistentVolumeClaim>(),
        Kind::ReplicaSet => gen.subschema_for::<apps::v1::ReplicaSet>(),
        Kind::Deployment => gen.subschema_for::<apps::v1::Deployment>(),
        Kind::DaemonSet => gen.subschema_for::<apps::v1::DaemonSet>(),
        Kind::StatefulSet => gen.subschema_for::<apps::v1::StatefulSet>(),
        Kind::ControllerRevision => gen.subschema_for::<apps::v1::ControllerRevision>(),
        Kind::Job => gen.subschema_for::<batch::v1::Job>(),
        Kind::CronJob => gen.subschema_for::<batch::v1::CronJob>(),
        Kind::Lease => gen.subschema_for::<coordination::v1::Lease>(),
        Kind::EndpointSlice => gen.subschema_for::<discovery::v1::EndpointSlice>(),
        Kind::PodDisruptionBudget => gen.subschema_for::<policy::v1::PodDisruptionBudget>(),
        Kind::HorizontalPodAutoscaler => {
            gen.subschema_for::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>()
        }
        Kind::StorageClass => gen.subschema_for::<storage::v1::StorageClass>(),
        Kind::PriorityClass => gen.subschema_for::<scheduling::v1::PriorityClass>(),
        Kind::ServiceAccount => gen.subschema_for::<core::v1::ServiceAccount>(),
        Kind::Role => gen.subschema_for::<rbac::v1::Role>(),
        Kind::RoleBinding => gen.subschema_for::<rbac::v1::RoleBinding>(),
        Kind::ClusterRole => gen.subschema_for::<rbac::v1::ClusterRole>(),
        Kind::ClusterRoleBinding => gen.subschema_for::<rbac::v1::ClusterRoleBinding>(),
    }
}

/// The schemas of the kinds served in `group`/`version` and of every
/// type they refer to, the kinds' own marked with their group, version
/// and kind.
fn components(group: &str, version: &str) -> serde_json::Map<String, Value> {
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    let roots: Vec<(Kind, schemars::Schema)> = Kind::ALL
        .into_iter()
        .filter(|k| k.group() == group && k.version() == version)
        .map(|k| (k, schema_of(k, &mut gen)))
        .collect();
    let mut defs = gen.take_definitions(true);
    for (k, root) in roots {
        let name = root
            .as_value()
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map(str::to_string);
        if let Some(def) = name.and_then(|n| defs.get_mut(&n)) {
            def["x-kubernetes-group-version-kind"] =
                json!([{"group": k.group(), "version": k.version(), "kind": k.as_str()}]);
        }
    }
    defs
}

/// The path of a kind's collection (in a namespace, if it has them).
pub fn collection_path(k: Kind) -> String {
    let prefix = format!("/{}", gv_path(k.group(), k.version()));
    if k.namespaced() {
        format!("{prefix}/namespaces/{{namespace}}/{}", k.resource())
    } else {
        format!("{prefix}/{}", k.resource())
    }
}

/// `/openapi/v2` in protobuf (made once): what kubectl 1.27 and 1.28 read
/// before they ask the v3 documents ([`crate::openapi_v2`]).
pub fn v2() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        let kinds: Vec<crate::openapi_v2::KindEntry> = Kind::ALL
            .into_iter()
            .map(|k| crate::openapi_v2::KindEntry {
                group: k.group().to_string(),
                version: k.version().to_string(),
                kind: k.as_str().to_string(),
                path: format!("{}/{{name}}", collection_path(k)),
            })
            .collect();
        crate::openapi_v2::document(&kinds)
    })
}

/// The document of one group version: a create (collection) and a patch
/// and replace (object) operation per kind, and the schemas.
fn build(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for k in Kind::ALL
        .into_iter()
        .filter(|k| k.group() == group && k.version() == version)
    {
        let collection = collection_path(k);
        let scope = if k.namespaced() { "Namespaced" } else { "" };
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
        "components": {"schemas": components(group, version)},
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
        let strategy = &d["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentStrategy"];
        assert!(
            strategy["properties"]["rollingUpdate"].is_object(),
            "{strategy}"
        );
        assert_eq!(
            d["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
                ["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
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
