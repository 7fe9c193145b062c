//! Writes an actor asks for, and the one async function that performs them.

use kubus_api::{meta, ObjectRef};
use kubus_bus::{Client, ClientError};
use serde_json::Value;

/// One write a reconcile decided on.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Create(Value),
    /// Replace, compare-and-swap on the object's resourceVersion.
    Update(Value),
    /// Delete, only if still at the given revision (None: whatever it is).
    Delete(ObjectRef, Option<u64>),
}

impl Write {
    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        match self {
            Write::Create(v) => format!(
                "create {}",
                meta::object_ref(v).map_or_else(|| "object".into(), |r| r.to_string())
            ),
            Write::Update(v) => format!(
                "update {}",
                meta::object_ref(v).map_or_else(|| "object".into(), |r| r.to_string())
            ),
            Write::Delete(r, _) => format!("delete {r}"),
        }
    }
}

/// Perform a write; returns the stored object (created/updated) or the
/// deleted one.
pub async fn perform(client: Client, write: Write) -> Result<Value, ClientError> {
    match write {
        Write::Create(v) => client.create(v).await,
        Write::Update(v) => client.update(v).await,
        Write::Delete(r, rv) => client.delete(&r, rv).await,
    }
}
