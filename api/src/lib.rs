//! # kubus-api: the object model, with no I/O
//!
//! Kubernetes-compatible objects as kubus stores and sends them, and the
//! rules they obey. This crate must not depend on tokio, NATS, RocksDB or
//! actix: everything here is a pure function, tested by tables.
//!
//! # Layout
//! - [`kind`]: the kinds kubus serves, their resource names and store keys.
//! - [`error`]: [`ApiError`], the typed error of every API call.
//! - [`meta`]: reading and writing `metadata` on an object in its JSON form.
//! - [`patch`]: the patches clients send (JSON merge, JSON, strategic
//!   merge), and the three-way merge of `apply`.
//! - [`apply`]: server-side apply — field managers (`managedFields`),
//!   ownership, conflicts.
//! - [`print`]: kubectl's table columns and cells (the CLI's and the API
//!   gateway's one printer).
//! - [`manifest`]: multi-document YAML / JSON / `List` parsing.
//! - [`admission`]: identify, default and validate one object.
//! - [`lifecycle`]: what the store keeps and sets on create, update, apply.
//! - [`pod`]: pod predicates (active, terminating, Ready, available).
//! - [`selector`]: label selectors (structured and string form) and field
//!   selectors.
//! - [`quantity`]: resource quantities (`500m`, `128Mi`).
//! - [`service`]: service address and node port allocation, service env variables.
//! - [`endpoints`]: which pods back a Service (EndpointSlice and Endpoints rules).
//! - [`rbac`]: authorization: RBAC, the Node authorizer, the default roles.
//!
//! Objects travel as [`serde_json::Value`] in their Kubernetes JSON form
//! (`apiVersion`, `kind`, `metadata`, …); code that needs typed access
//! converts to the `k8s-openapi` type with `serde_json::from_value`.

pub mod admission;
pub mod apply;
pub mod autoscaling;
pub mod cron;
pub mod dns;
pub mod endpoints;
pub mod error;
pub mod kind;
pub mod lifecycle;
pub mod manifest;
pub mod meta;
pub mod patch;
pub mod placement;
pub mod pod;
pub mod print;
pub mod priority;
pub mod quantity;
pub mod rbac;
pub mod selector;
pub mod service;
pub mod storage;
pub mod token;

pub use error::{ApiError, FieldCause, Reason};
pub use kind::{Kind, ObjectRef};

/// Re-exported so every crate uses the same Kubernetes types and version.
pub use k8s_openapi;
