//! Which objects a verb names, as kubectl reads them: `TYPE NAME...`,
//! `TYPE/NAME...`, or `TYPE` with `-l SELECTOR` / `--all`; kubectl's
//! names for objects in messages (`deployment.apps/web`,
//! `deployments.apps "web"`); and the read-modify-write every verb that
//! changes an object goes through (a compare-and-swap update, retried a
//! bounded number of times on a Conflict).
//!
//! Parsing and naming are pure; [`resolve`] and [`modify`] do the I/O.

use anyhow::{bail, Context};
use kubus_api::kind::KindError;
use kubus_api::{meta, Kind, ObjectRef, Reason};
use kubus_bus::Client;
use serde_json::Value;

/// Why the objects a command line names cannot be read from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("name what to act on: TYPE NAME..., TYPE/NAME..., or TYPE with -l SELECTOR or --all")]
    Nothing,
    #[error(
        "there is no need to specify a resource type as a separate argument when passing \
         arguments in resource/name form (e.g. 'kubus get resource/<resource_name>' instead \
         of 'kubus get resource resource/<resource_name>')"
    )]
    Mixed,
    #[error("{0:?}: give a name after the slash (TYPE/NAME)")]
    EmptyName(String),
    #[error(transparent)]
    Kind(#[from] KindError),
}

/// The objects a command line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These objects, by kind and name.
    Named(Vec<(Kind, String)>),
    /// Every object of a kind that the selector (or `--all`) picks.
    Kind(Kind),
}

/// Read `TYPE NAME...`, `TYPE/NAME...` or a lone `TYPE`.
pub fn parse(args: &[String]) -> Result<Targets, TargetError> {
    let Some(first) = args.first() else {
        return Err(TargetError::Nothing);
    };
    if first.contains('/') {
        let mut named = Vec::with_capacity(args.len());
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                return Err(TargetError::Mixed);
            };
            if name.is_empty() {
                return Err(TargetError::EmptyName(arg.clone()));
            }
            named.push((Kind::from_resource(kind)?, name.to_string()));
        }
        return Ok(Targets::Named(named));
    }
    let kind = Kind::from_resource(first)?;
    if args[1..].iter().any(|a| a.contains('/')) {
        return Err(TargetError::Mixed);
    }
    if args.len() == 1 {
        return Ok(Targets::Kind(kind));
    }
    Ok(Targets::Named(
        args[1..].iter().map(|n| (kind, n.clone())).collect(),
    ))
}

/// kubectl's name for an object in messages: `deployment.apps/web`,
/// `pod/x`.
pub fn display_name(kind: Kind, name: &str) -> String {
    let group = kind
        .api_version()
        .split_once('/')
        .map(|(g, _)| format!(".{g}"))
        .unwrap_or_default();
    format!("{}{group}/{name}", kind.as_str().to_ascii_lowercase())
}

/// [`display_name`] of a reference.
pub fn display_ref(r: &ObjectRef) -> String {
    display_name(r.kind, &r.name)
}

/// [`display_name`] of an object as stored.
pub fn display_object(obj: &Value) -> String {
    match meta::kind_of(obj) {
        Some(kind) => display_name(kind, meta::name(obj).unwrap_or_default()),
        None => meta::name(obj).unwrap_or_default().to_string(),
    }
}

/// kubectl's group-qualified resource name, as in its error messages:
/// `deployments.apps`, `pods`.
pub fn group_resource(kind: Kind) -> String {
    match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{}.{group}", kind.resource()),
        None => kind.resource().to_string(),
    }
}

/// The objects `targets` names in `namespace` (cluster-scoped kinds
/// ignore it). A lone kind needs `selector` or `all`, as with kubectl; an
/// empty answer is the caller's to report.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    targets: &Targets,
    selector: Option<&str>,
    all: bool,
) -> anyhow::Result<Vec<Value>> {
    match targets {
        Targets::Named(named) => {
            if selector.is_some() {
                bail!("name cannot be provided when a selector is specified");
            }
            let mut out = Vec::with_capacity(named.len());
            for (kind, name) in named {
                out.push(client.get(*kind, Some(namespace), name).await?);
            }
            Ok(out)
        }
        Targets::Kind(kind) => {
            if selector.is_none() && !all {
                bail!("resource(s) were provided, but no name was specified");
            }
            let (mut items, _) = client.list(*kind, Some(namespace), selector, None).await?;
            items.sort_by(|a, b| meta::name(a).cmp(&meta::name(b)));
            Ok(items)
        }
    }
}

/// What an edit of one object decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit<T> {
    /// Nothing to write; `T` says why (or what to print).
    Unchanged(T),
    /// Write this object (its `resourceVersion` is the one read).
    Changed(Value, T),
}

/// Most times [`modify`] reads again and retries after a Conflict.
pub const CONFLICT_RETRIES_MAX: usize = 5;

/// Read-modify-write: `decide` the new object from `current`, write it as
/// a compare-and-swap update, and on a Conflict (someone wrote in
/// between) read it again and decide again, at most
/// [`CONFLICT_RETRIES_MAX`] times. Returns the object stored last and
/// what `decide` said.
pub async fn modify<T>(
    client: &Client,
    mut current: Value,
    decide: impl Fn(&Value) -> anyhow::Result<Edit<T>>,
) -> anyhow::Result<(Value, T, bool)> {
    let r = meta::object_ref(&current).context("the object read names no served kind")?;
    let mut attempt = 0;
    loop {
        let (new, said) = match decide(&current)? {
            Edit::Unchanged(said) => return Ok((current, said, false)),
            Edit::Changed(new, said) => (new, said),
        };
        match client.update(new).await {
            Ok(stored) => return Ok((stored, said, true)),
            Err(e) if e.reason() == Some(Reason::Conflict) && attempt < CONFLICT_RETRIES_MAX => {
                attempt += 1;
                current = client
                    .get(r.kind, r.namespace.as_deref(), &r.name)
                    .await
                    .with_context(|| format!("reading {} again", display_ref(&r)))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn command_lines_name_objects_as_kubectl_reads_them() {
        let table: Vec<(&[&str], Result<Targets, TargetError>)> = vec![
            (
                &["deploy", "web", "api"],
                Ok(Targets::Named(vec![
                    (Kind::Deployment, "web".into()),
                    (Kind::Deployment, "api".into()),
                ])),
            ),
            (
                &["deployment/web", "po/x"],
                Ok(Targets::Named(vec![
                    (Kind::Deployment, "web".into()),
                    (Kind::Pod, "x".into()),
                ])),
            ),
            (&["pods"], Ok(Targets::Kind(Kind::Pod))),
            (&[], Err(TargetError::Nothing)),
            (&["deploy", "deploy/web"], Err(TargetError::Mixed)),
            (&["deploy/web", "api"], Err(TargetError::Mixed)),
            (&["deploy/"], Err(TargetError::EmptyName("deploy/".into()))),
            (
                &["frobs", "x"],
                Err(TargetError::Kind(KindError::UnknownResource(
                    "frobs".into(),
                ))),
            ),
        ];
        for (line, want) in table {
            assert_eq!(parse(&args(line)), want, "{line:?}");
        }
    }

    #[test]
    fn names_in_messages() {
        assert_eq!(display_name(Kind::Deployment, "web"), "deployment.apps/web");
        assert_eq!(display_name(Kind::Pod, "x"), "pod/x");
        assert_eq!(group_resource(Kind::Deployment), "deployments.apps");
        assert_eq!(group_resource(Kind::Pod), "pods");
    }
}
