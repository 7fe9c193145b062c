//! Writes an actor asks for, and the seam they go through: [`Writer`],
//! implemented by the bus [`Client`] and, for tests of controller logic,
//! by the in-memory [`FakeWriter`] beside it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use futures::FutureExt;
use kubus_api::{meta, ApiError, ObjectRef};
use kubus_bus::client::DeleteOptions;
use kubus_bus::{Client, ClientError};
use serde_json::{json, Value};

/// One write a reconcile decided on.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Create(Value),
    /// Replace, compare-and-swap on the object's resourceVersion.
    Update(Value),
    /// Delete, with Kubernetes' options (a revision precondition, the
    /// propagation policy).
    Delete(ObjectRef, DeleteOptions),
}

/// What kind of write, for counting writes under way and naming failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    Create,
    Update,
    Delete,
}

impl Write {
    /// Delete `r`, only if still at revision `rv` (None: whatever it is).
    pub fn delete(r: ObjectRef, rv: Option<u64>) -> Write {
        Write::Delete(
            r,
            DeleteOptions {
                resource_version: rv,
                ..DeleteOptions::default()
            },
        )
    }

    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        match self {
            Write::Create(v) => format!(
                "create {}",
                meta::object_ref(v).map_or_else(
                    || format!(
                        "{} {}{}*",
                        v.get("kind").and_then(Value::as_str).unwrap_or("object"),
                        meta::namespace(v)
                            .map(|ns| format!("{ns}/"))
                            .unwrap_or_default(),
                        meta::meta_str(v, "generateName").unwrap_or_default()
                    ),
                    |r| r.to_string()
                )
            ),
            Write::Update(v) => format!(
                "update {}",
                meta::object_ref(v).map_or_else(|| "object".into(), |r| r.to_string())
            ),
            Write::Delete(r, _) => format!("delete {r}"),
        }
    }

    pub fn kind(&self) -> WriteKind {
        match self {
            Write::Create(_) => WriteKind::Create,
            Write::Update(_) => WriteKind::Update,
            Write::Delete(..) => WriteKind::Delete,
        }
    }

    /// The kind of object written.
    pub fn object_kind(&self) -> Option<kubus_api::Kind> {
        match self {
            Write::Create(v) | Write::Update(v) => meta::kind_of(v),
            Write::Delete(r, _) => Some(r.kind),
        }
    }
}

/// The seam every controller write goes through: the bus in production,
/// [`FakeWriter`] in tests of controller logic.
pub trait Writer: std::fmt::Debug + Send + Sync + 'static {
    /// Perform a write; returns the stored object (created or updated),
    /// or the deleted one (a pod deleted gracefully: the terminating pod).
    fn write(&self, write: Write) -> BoxFuture<'static, Result<Value, ClientError>>;
}

impl Writer for Client {
    fn write(&self, write: Write) -> BoxFuture<'static, Result<Value, ClientError>> {
        perform(self.clone(), write).boxed()
    }
}

/// Perform a write through the bus.
pub async fn perform(client: Client, write: Write) -> Result<Value, ClientError> {
    match write {
        Write::Create(v) => client.create(v).await,
        Write::Update(v) => client.update(v).await,
        Write::Delete(r, options) => client.delete_with(&r, options).await,
    }
}

/// An in-memory store behind the [`Writer`] seam, for tests: creates name
/// `generateName` objects and give them a uid, updates compare the
/// resourceVersion, deletes of absent objects are `NotFound`; failures
/// can be scripted, and every write is logged.
#[derive(Debug, Default)]
pub struct FakeWriter {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    objects: BTreeMap<String, Value>,
    revision: u64,
    log: Vec<Write>,
    failures: VecDeque<(WriteKind, ApiError)>,
}

impl FakeWriter {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next write of `kind` fails with `error` (scripted in order).
    pub fn fail_next(&self, kind: WriteKind, error: ApiError) {
        self.state().failures.push_back((kind, error));
    }

    /// Every write asked for so far, in order (failed ones too).
    pub fn log(&self) -> Vec<Write> {
        self.state().log.clone()
    }

    /// The objects stored, of one kind.
    pub fn objects(&self, kind: kubus_api::Kind) -> Vec<Value> {
        self.state()
            .objects
            .values()
            .filter(|o| meta::kind_of(o) == Some(kind))
            .cloned()
            .collect()
    }

    /// Put an object in place, as if another client had written it.
    pub fn seed(&self, object: Value) -> Value {
        let mut st = self.state();
        st.store(object)
    }

    fn apply(&self, write: Write) -> Result<Value, ClientError> {
        let mut st = self.state();
        st.log.push(write.clone());
        if let Some(i) = st.failures.iter().position(|(k, _)| *k == write.kind()) {
            if let Some((_, e)) = st.failures.remove(i) {
                return Err(ClientError::Api(e));
            }
        }
        match write {
            Write::Create(mut v) => {
                if meta::name(&v).is_none() {
                    let prefix = meta::meta_str(&v, "generateName").unwrap_or("obj-");
                    let name = format!("{prefix}{:05}", st.revision + 1);
                    meta::set_meta(&mut v, "name", json!(name));
                }
                let r = meta::object_ref(&v)
                    .ok_or_else(|| ApiError::bad_request("the object has no kind or name"))?;
                if st.objects.contains_key(&r.key()) {
                    return Err(ApiError::already_exists(r).into());
                }
                let uid = format!("uid-{}", st.revision + 1);
                meta::set_meta(&mut v, "uid", json!(uid));
                Ok(st.store(v))
            }
            Write::Update(v) => {
                let r = meta::object_ref(&v)
                    .ok_or_else(|| ApiError::bad_request("the object has no kind or name"))?;
                let current = st
                    .objects
                    .get(&r.key())
                    .ok_or_else(|| ApiError::not_found(r.clone()))?;
                let (have, sent) = (meta::resource_version(current), meta::resource_version(&v));
                if sent.is_some() && sent != have {
                    return Err(ApiError::conflict(r, "the object has been modified").into());
                }
                Ok(st.store(v))
            }
            Write::Delete(r, options) => {
                let rv = options.resource_version;
                if let Some(present) = options
                    .only_if_absent
                    .iter()
                    .find(|a| st.objects.contains_key(&a.key()))
                {
                    return Err(ApiError::conflict(r, format!("{present} exists")).into());
                }
                let current = st
                    .objects
                    .get(&r.key())
                    .ok_or_else(|| ApiError::not_found(r.clone()))?;
                if rv.is_some() && rv != meta::resource_version(current) {
                    return Err(ApiError::conflict(r, "the object has been modified").into());
                }
                st.objects
                    .remove(&r.key())
                    .ok_or_else(|| ApiError::not_found(r).into())
            }
        }
    }
}

impl FakeState {
    fn store(&mut self, mut v: Value) -> Value {
        self.revision += 1;
        meta::set_resource_version(&mut v, self.revision);
        if let Some(r) = meta::object_ref(&v) {
            self.objects.insert(r.key(), v.clone());
        }
        v
    }
}

impl Writer for FakeWriter {
    fn write(&self, write: Write) -> BoxFuture<'static, Result<Value, ClientError>> {
        let result = self.apply(write);
        async move { result }.boxed()
    }
}

impl<W: Writer> Writer for std::sync::Arc<W> {
    fn write(&self, write: Write) -> BoxFuture<'static, Result<Value, ClientError>> {
        self.as_ref().write(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_api::{Kind, Reason};

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn the_fake_behaves_like_the_store() {
        let w = FakeWriter::default();
        let a = futures::executor::block_on(w.write(Write::Create(cm("a")))).expect("create");
        assert_eq!(meta::resource_version(&a), Some(1));
        let again = futures::executor::block_on(w.write(Write::Create(cm("a"))));
        assert_eq!(
            again.err().and_then(|e| e.reason()),
            Some(Reason::AlreadyExists)
        );
        let stale = futures::executor::block_on(w.write(Write::Update({
            let mut s = a.clone();
            meta::set_resource_version(&mut s, 9);
            s
        })));
        assert_eq!(stale.err().and_then(|e| e.reason()), Some(Reason::Conflict));
        let r = ObjectRef::new(Kind::ConfigMap, Some("default"), "a");
        futures::executor::block_on(w.write(Write::delete(r.clone(), None))).expect("delete");
        let gone = futures::executor::block_on(w.write(Write::delete(r, None)));
        assert_eq!(gone.err().and_then(|e| e.reason()), Some(Reason::NotFound));
        w.fail_next(WriteKind::Create, ApiError::internal("disk full"));
        let failed = futures::executor::block_on(w.write(Write::Create(cm("b"))));
        assert_eq!(
            failed.err().and_then(|e| e.reason()),
            Some(Reason::Internal)
        );
        assert_eq!(w.log().len(), 6);
    }
}
