//! `kubus edit KIND NAME`: the object as YAML (or JSON) in a temporary
//! file, `$KUBE_EDITOR` / `$EDITOR` (default `vi`) on it, and the edited
//! object written back as a compare-and-swap update at the revision read,
//! as kubectl does. An unchanged or emptied file changes nothing; a
//! failed write keeps the edited copy and says where.
//!
//! [`edit_text`] (what the editor gets) and [`edited`] (what came back)
//! are pure.

use std::io::Write as _;

use anyhow::{bail, Context};
use kubus_api::{manifest, meta, Reason};
use kubus_bus::Client;
use serde_json::Value;

use crate::cli::EditArgs;
use crate::commands::emit;
use crate::targets::{self, display_object, Targets};

/// The comment kubectl puts above the object.
const HEADER: &str = "\
# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// Why an edited file cannot be written back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the edited file is not an object: {0}")]
    Parse(String),
    #[error("the edited file holds {0} objects; edit one at a time")]
    Many(usize),
    #[error("the edited object's {field} changed from {from:?} to {to:?}; {field} cannot be changed by an edit")]
    Identity {
        field: &'static str,
        from: String,
        to: String,
    },
}

/// Reads one identifying field of an object.
type Reader = fn(&Value) -> Option<&str>;

/// What the editor came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Edited {
    /// Nothing changed, or the file was emptied.
    Cancelled,
    Changed(Value),
}

/// The text the editor is given: kubectl's header and the object.
pub fn edit_text(obj: &Value, json: bool) -> anyhow::Result<String> {
    let body = if json {
        serde_json::to_string_pretty(obj)? + "\n"
    } else {
        serde_saphyr::to_string(obj).map_err(|e| anyhow::anyhow!("yaml: {e}"))?
    };
    Ok(format!("{HEADER}{body}"))
}

/// Lines that are not `#` comments.
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The object one text holds.
fn parse_one(text: &str) -> Result<Option<Value>, EditError> {
    let stripped = strip_comments(text);
    if stripped.trim().is_empty() {
        return Ok(None);
    }
    let mut docs =
        manifest::parse_documents(&stripped).map_err(|e| EditError::Parse(e.to_string()))?;
    match docs.len() {
        0 => Ok(None),
        1 => Ok(docs.pop().map(|d| d.value)),
        n => Err(EditError::Many(n)),
    }
}

/// Compare what the editor was given (`original`) with what it returned:
/// cancelled when equal or empty; refused when the kind, namespace or
/// name changed.
pub fn edited(original: &str, returned: &str) -> Result<Edited, EditError> {
    let Some(after) = parse_one(returned)? else {
        return Ok(Edited::Cancelled);
    };
    let before = parse_one(original)?;
    if before.as_ref() == Some(&after) {
        return Ok(Edited::Cancelled);
    }
    if let Some(before) = &before {
        let fields: [(&'static str, Reader); 4] = [
            ("apiVersion", |v| {
                v.get("apiVersion").and_then(Value::as_str)
            }),
            ("kind", |v| v.get("kind").and_then(Value::as_str)),
            ("metadata.namespace", meta::namespace),
            ("metadata.name", meta::name),
        ];
        for (field, read) in fields {
            let (from, to) = (read(before), read(&after));
            if from != to {
                return Err(EditError::Identity {
                    field,
                    from: from.unwrap_or_default().into(),
                    to: to.unwrap_or_default().into(),
                });
            }
        }
    }
    Ok(Edited::Changed(after))
}

/// Run the editor on `path`: `$KUBE_EDITOR`, else `$EDITOR`, else `vi`,
/// through `sh` so that an editor given with arguments works.
fn run_editor(path: &std::path::Path) -> anyhow::Result<()> {
    let editor = std::env::var("KUBE_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("starting the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}");
    }
    Ok(())
}

pub async fn run(client: &Client, args: EditArgs) -> anyhow::Result<()> {
    let json = match args.output.as_deref() {
        None | Some("yaml") => false,
        Some("json") => true,
        Some(other) => bail!("unknown output format {other:?}: use yaml or json"),
    };
    let t = targets::parse(&args.resources)?;
    let Targets::Named(named) = &t else {
        bail!("name the object to edit: TYPE NAME or TYPE/NAME");
    };
    if named.len() != 1 {
        bail!("edit one object at a time: TYPE NAME or TYPE/NAME");
    }
    let obj = targets::resolve(client, &args.namespace, &t, None, false)
        .await?
        .pop()
        .context("no object")?;
    let name = display_object(&obj);
    let original = edit_text(&obj, json)?;
    let mut file = tempfile::Builder::new()
        .prefix("kubus-edit-")
        .suffix(if json { ".json" } else { ".yaml" })
        .tempfile()
        .context("creating the file to edit")?;
    file.write_all(original.as_bytes())
        .and_then(|()| file.flush())
        .context("writing the file to edit")?;
    run_editor(file.path())?;
    let returned = std::fs::read_to_string(file.path()).context("reading the edited file")?;
    let keep = |file: tempfile::NamedTempFile| -> String {
        match file.keep() {
            Ok((_, path)) => format!("A copy of your changes has been stored to {path:?}"),
            Err(e) => format!("your changes could not be kept: {e}"),
        }
    };
    let changed = match edited(&original, &returned) {
        Ok(Edited::Cancelled) => {
            emit("Edit cancelled, no changes made.\n");
            return Ok(());
        }
        Ok(Edited::Changed(v)) => v,
        Err(e) => bail!("{e}\n{}", keep(file)),
    };
    match client.update(changed).await {
        Ok(_) => {
            emit(&format!("{name} edited\n"));
            Ok(())
        }
        Err(e) if e.reason() == Some(Reason::Conflict) => bail!(
            "{name} was changed by someone else while you edited it ({e}); edit it again\n{}",
            keep(file)
        ),
        Err(e) => bail!("{name}: {e}\n{}", keep(file)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 2}})
    }

    #[test]
    fn an_unchanged_or_emptied_file_cancels() {
        let text = edit_text(&obj(), false).expect("yaml");
        assert!(text.starts_with("# Please edit the object below."));
        assert_eq!(edited(&text, &text), Ok(Edited::Cancelled));
        assert_eq!(edited(&text, "# all gone\n\n"), Ok(Edited::Cancelled));
        let json_text = edit_text(&obj(), true).expect("json");
        assert_eq!(edited(&json_text, &json_text), Ok(Edited::Cancelled));
    }

    #[test]
    fn a_changed_file_is_the_new_object() {
        let text = edit_text(&obj(), false).expect("yaml");
        let changed = text.replace("replicas: 2", "replicas: 5");
        assert_ne!(changed, text, "{text}");
        let Ok(Edited::Changed(v)) = edited(&text, &changed) else {
            panic!("not changed");
        };
        assert_eq!(v["spec"]["replicas"], 5);
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn identity_cannot_change() {
        let text = edit_text(&obj(), false).expect("yaml");
        let renamed = text.replace("name: web", "name: api");
        assert!(matches!(
            edited(&text, &renamed),
            Err(EditError::Identity {
                field: "metadata.name",
                ..
            })
        ));
        assert!(matches!(
            edited(&text, "a: [unclosed"),
            Err(EditError::Parse(_))
        ));
    }
}
