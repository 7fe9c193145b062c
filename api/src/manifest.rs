//! Manifest parsing: text as an operator writes it (multi-document YAML, a
//! JSON object, a JSON array of objects, concatenated JSON objects, and
//! `kind: List` / `*List` wrappers) into one [`Document`] per object, each
//! still in its JSON form and remembering where it came from.
//!
//! This module only parses: it does not know which kinds exist (that is
//! [`crate::admission`]). YAML is read with the YAML 1.2 core schema for
//! booleans (`yes` stays a string) and YAML 1.1 octals (`0644` is 420, as
//! Kubernetes reads file modes); integers and booleans become JSON numbers
//! and booleans, and every mapping key becomes a JSON string.

use std::fmt;

use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;

/// Longest manifest text accepted; matches Kubernetes' request size limit
/// (3 MiB) so that one publish cannot make the parser work without bound.
pub const TEXT_BYTES_MAX: usize = 3 * 1024 * 1024;

/// Most objects one manifest may hold, after `List` expansion.
pub const DOCUMENTS_MAX: usize = 10_000;

/// Most YAML nodes that aliases (`*name`) may add to a manifest beyond the
/// nodes written in its text. Manifests seldom use aliases, and then for a
/// few repeated blocks; without this bound a "billion laughs" document of a
/// few hundred bytes expands up to the parser's default budget (250,000
/// nodes), a second of CPU per request (found by the admission fuzz test).
pub const ALIAS_NODES_MAX: usize = 5_000;

/// One object of a manifest, with its position for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 0-based position of the YAML/JSON document in the input (empty YAML
    /// documents count, so this is what a reader counts by `---`).
    pub index: usize,
    /// Position inside a `kind: List` (or JSON array within one document).
    pub item: Option<usize>,
    pub value: Value,
}

impl Document {
    /// `"document 3"` or `"document 3 item 1"`, for messages.
    pub fn describe(&self) -> String {
        match self.item {
            Some(item) => format!("document {} item {}", self.index + 1, item + 1),
            None => format!("document {}", self.index + 1),
        }
    }
}

/// A line and column in the manifest text, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// `" at line L, column C"` when known.
fn at(position: &Option<Position>) -> String {
    position.map(|p| format!(" at {p}")).unwrap_or_default()
}

/// Why a manifest could not be split into objects; every message names the
/// document (and line/column when the parser gave one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is too large ({len} bytes; at most {TEXT_BYTES_MAX})")]
    TooLarge { len: usize },
    #[error("manifest holds more than {DOCUMENTS_MAX} objects")]
    TooManyDocuments,
    #[error("document {}: YAML syntax error{}: {message}", .index + 1, at(position))]
    Yaml {
        index: usize,
        position: Option<Position>,
        message: String,
    },
    #[error("document {}: JSON syntax error{}: {message}", .index + 1, at(position))]
    Json {
        index: usize,
        position: Option<Position>,
        message: String,
    },
    #[error("{what}: expected a mapping (an object with apiVersion and kind), got {got}")]
    NotAMapping { what: String, got: &'static str },
    #[error("document {}: `items` of {kind} must be a list, got {got}", .index + 1)]
    ListItems {
        index: usize,
        kind: String,
        got: &'static str,
    },
}

/// Split manifest text into objects: see the module documentation for what
/// is accepted. Null and empty documents are skipped; any other document
/// that is not a mapping is an error naming it.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(ManifestError::TooLarge { len: text.len() });
    }
    let trimmed = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let raw = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON first (it also handles concatenated objects, which YAML
        // does not); flow-style YAML such as `{kind: Pod}` falls back.
        match parse_json(text) {
            Ok(raw) => raw,
            Err(json_error) => match parse_yaml(text) {
                Ok(raw) => raw,
                Err(_) if looks_like_json(trimmed) => return Err(json_error),
                Err(yaml_error) => return Err(yaml_error),
            },
        }
    } else {
        parse_yaml(text)?
    };
    let mut documents = Vec::new();
    for (index, value, top_level_array) in raw {
        match value {
            Value::Null => {}
            Value::Array(items) if top_level_array => {
                // A JSON array of objects: each element is a document.
                for (i, item) in items.into_iter().enumerate() {
                    expand(i, None, item, &mut documents)?;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    expand(index, Some(i), item, &mut documents)?;
                }
            }
            other => expand(index, None, other, &mut documents)?,
        }
        if documents.len() > DOCUMENTS_MAX {
            return Err(ManifestError::TooManyDocuments);
        }
    }
    Ok(documents)
}

/// Whether text that failed both parsers was meant as JSON (its first key
/// is quoted), so that the JSON error is the one to show.
fn looks_like_json(trimmed: &str) -> bool {
    let inner = trimmed.trim_start_matches(|c: char| c == '[' || c == '{' || c.is_whitespace());
    inner.is_empty() || inner.starts_with(['"', '}', ']'])
}

/// Check one value is a mapping, expanding it if it is a `*List`.
fn expand(
    index: usize,
    item: Option<usize>,
    value: Value,
    out: &mut Vec<Document>,
) -> Result<(), ManifestError> {
    let describe = |item: Option<usize>| {
        Document {
            index,
            item,
            value: Value::Null,
        }
        .describe()
    };
    let Value::Object(mut map) = value else {
        return Err(ManifestError::NotAMapping {
            what: describe(item),
            got: crate::meta::type_name(&value),
        });
    };
    let list_kind = map
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| k.ends_with("List"))
        .map(str::to_string);
    let Some(list_kind) = list_kind.filter(|_| item.is_none()) else {
        out.push(Document {
            index,
            item,
            value: Value::Object(map),
        });
        return Ok(());
    };
    let api_version = map.get("apiVersion").cloned();
    // `PodList` items may omit their own kind: it is the list's kind
    // without `List` (a plain `List` has none to give).
    let item_kind = list_kind
        .strip_suffix("List")
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let items = match map.remove("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ManifestError::ListItems {
                index,
                kind: list_kind,
                got: crate::meta::type_name(&other),
            })
        }
    };
    for (i, mut element) in items.into_iter().enumerate() {
        let Some(obj) = element.as_object_mut() else {
            return Err(ManifestError::NotAMapping {
                what: describe(Some(i)),
                got: crate::meta::type_name(&element),
            });
        };
        if let Some(kind) = &item_kind {
            if !obj.contains_key("kind") {
                obj.insert("kind".into(), Value::String(kind.clone()));
                if let Some(v) = &api_version {
                    obj.entry("apiVersion").or_insert_with(|| v.clone());
                }
            }
        }
        out.push(Document {
            index,
            item: Some(i),
            value: element,
        });
    }
    Ok(())
}

/// Each element: (document index, value, whether it is a JSON top-level
/// array to be split into documents).
type Raw = Vec<(usize, Value, bool)>;

fn parse_json(text: &str) -> Result<Raw, ManifestError> {
    let mut raw = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (index, value) in stream.enumerate() {
        let value = value.map_err(|e| ManifestError::Json {
            index,
            position: (e.line() > 0).then(|| Position {
                line: e.line() as u64,
                column: e.column() as u64,
            }),
            message: json_message(&e),
        })?;
        let is_array = value.is_array();
        raw.push((index, value, is_array));
        if raw.len() > DOCUMENTS_MAX {
            return Err(ManifestError::TooManyDocuments);
        }
    }
    Ok(raw)
}

/// serde_json's message without its trailing " at line L column C" (we
/// print the position ourselves).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// `nodes_written`: the nodes in the text itself (see [`ALIAS_NODES_MAX`]).
fn yaml_options(nodes_written: usize) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = nodes_written.saturating_add(ALIAS_NODES_MAX);
    options.budget = Some(budget);
    options
}

/// Where each YAML document starts (character offsets) and how many nodes
/// the text writes, from the event stream; stops at the first syntax error,
/// which it returns with the index of the document it is in.
fn document_starts(text: &str) -> (Vec<usize>, usize, Option<ManifestError>) {
    use serde_saphyr::granit_parser::{Event, Parser};
    let mut starts = Vec::new();
    let mut nodes = 0usize;
    for event in Parser::new_from_str(text) {
        match event {
            Ok((Event::DocumentStart(..), span)) => starts.push(span.start.index()),
            Ok((Event::StreamEnd, _)) => break,
            Ok((Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..), _)) => {
                nodes += 1;
            }
            Ok(_) => {}
            Err(e) => {
                let marker = e.marker();
                let error = ManifestError::Yaml {
                    index: starts.len().saturating_sub(1),
                    position: Some(Position {
                        line: marker.line() as u64,
                        column: marker.col() as u64 + 1,
                    }),
                    message: e.info(),
                };
                return (starts, nodes, Some(error));
            }
        }
    }
    (starts, nodes, None)
}

/// The index of the document holding character offset `at`.
fn document_at(starts: &[usize], at: u64) -> usize {
    let at = usize::try_from(at).unwrap_or(usize::MAX);
    starts.partition_point(|&s| s <= at).saturating_sub(1)
}

fn parse_yaml(text: &str) -> Result<Raw, ManifestError> {
    let (starts, nodes_written, syntax_error) = document_starts(text);
    if let Some(e) = syntax_error {
        return Err(e);
    }
    let options = yaml_options(nodes_written);
    let values: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let location = e.location();
            let index = location.map_or(0, |l| document_at(&starts, l.span().offset()));
            ManifestError::Yaml {
                index,
                position: location.filter(|l| l.line() > 0).map(|l| Position {
                    line: l.line(),
                    column: l.column(),
                }),
                message: yaml_message(&e),
            }
        })?;
    Ok(values
        .into_iter()
        .map(|v| {
            let index = document_at(&starts, v.referenced.span().offset());
            (index, v.value, false)
        })
        .collect())
}

/// The budget a YAML error reports as breached, under the alias and
/// snippet wrappers serde-saphyr puts around it.
fn budget_breach(e: &serde_saphyr::Error) -> Option<&BudgetBreach> {
    match e {
        serde_saphyr::Error::Budget { breach, .. } => Some(breach),
        serde_saphyr::Error::AliasError { error, .. }
        | serde_saphyr::Error::WithSnippet { error, .. } => budget_breach(error),
        _ => None,
    }
}

/// serde-saphyr's message, on one line, without its location suffix.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    if let Some(BudgetBreach::Nodes { .. }) = budget_breach(e) {
        return format!(
            "aliases expand to more than {ALIAS_NODES_MAX} nodes beyond the text's own"
        );
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // Drop hints addressed to the programmer, not the manifest's author.
    match first.find(", set DuplicateKeyPolicy") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Vec<Document> {
        parse_documents(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    fn positions(docs: &[Document]) -> Vec<(usize, Option<usize>)> {
        docs.iter().map(|d| (d.index, d.item)).collect()
    }

    #[test]
    fn yaml_multi_document_with_comments() {
        let text = "# leading comment\n\
            apiVersion: v1\nkind: Pod # trailing comment\nmetadata:\n  name: a\n\
            ---\n# only a comment\n---\n\
            apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n  port: \"80\"\n\
            ---\n~\n---\n\
            apiVersion: v1\nkind: Service\nmetadata:\n  name: c\n";
        let docs = parse(text);
        assert_eq!(positions(&docs), vec![(0, None), (2, None), (4, None)]);
        assert_eq!(docs[0].value["metadata"]["name"], "a");
        assert_eq!(docs[1].value["metadata"]["name"], "b");
        assert_eq!(docs[2].describe(), "document 5");
    }

    #[test]
    fn yaml_leading_separator_and_trailing_end_marker() {
        let docs = parse("---\nkind: A\n...\n---\nkind: B\n");
        assert_eq!(positions(&docs), vec![(0, None), (1, None)]);
        assert!(parse("").is_empty());
        assert!(parse("---\n").is_empty());
        assert!(parse("# nothing\n").is_empty());
    }

    #[test]
    fn yaml_flow_style() {
        let docs = parse("{apiVersion: v1, kind: Pod, metadata: {name: x, labels: {app: web}}, spec: {containers: [{name: c, image: nginx}]}}");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].value["spec"]["containers"][0]["image"], "nginx");
        assert_eq!(docs[0].value["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn yaml_scalars_become_json_types() {
        let docs = parse(
            "kind: X\nreplicas: 3\nratio: 0.5\npaused: true\nanswer: yes\nmode: 0644\n\
             quoted: \"3\"\nempty:\n1: one\ntrue: t\nbig: 12345678901234\nneg: -2\n",
        );
        let v = &docs[0].value;
        assert_eq!(v["replicas"], json!(3));
        assert_eq!(v["ratio"], json!(0.5));
        assert_eq!(v["paused"], json!(true));
        assert_eq!(v["answer"], json!("yes"));
        assert_eq!(v["mode"], json!(420));
        assert_eq!(v["quoted"], json!("3"));
        assert_eq!(v["empty"], Value::Null);
        assert_eq!(v["1"], json!("one"));
        assert_eq!(v["true"], json!("t"));
        assert_eq!(v["big"], json!(12345678901234u64));
        assert_eq!(v["neg"], json!(-2));
    }

    #[test]
    fn yaml_anchors_and_block_scalars() {
        let docs = parse("kind: X\nbase: &b {a: 1}\ncopy: *b\nscript: |\n  line one\n  line two\n");
        assert_eq!(docs[0].value["copy"], json!({"a": 1}));
        assert_eq!(docs[0].value["script"], json!("line one\nline two\n"));
    }

    /// Aliases may add at most `ALIAS_NODES_MAX` nodes: a "billion laughs"
    /// document is refused in words instead of costing a second to expand
    /// (found by the admission fuzz test), while a list of ten env vars
    /// reused fifty times still parses.
    #[test]
    fn alias_expansion_is_bounded() {
        let mut laughs = String::from("kind: X\nl0: &l0 [x, x, x, x, x, x, x, x, x]");
        for i in 1..10 {
            let refs = vec![format!("*l{}", i - 1); 9].join(", ");
            laughs.push_str(&format!("\nl{i}: &l{i} [{refs}]"));
        }
        let e = parse_documents(&laughs).expect_err("billion laughs");
        assert!(e.to_string().contains("aliases expand to more than"), "{e}");

        let env = (0..10)
            .map(|i| format!("  - {{name: VAR_{i}, value: v}}"))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = vec!["*env"; 50].join(", ");
        let reused = format!("kind: X\nbase:\n  env: &env\n{env}\ncopies: [{uses}]\n");
        let docs = parse(&reused);
        assert_eq!(docs[0].value["copies"].as_array().map(Vec::len), Some(50));
        assert_eq!(docs[0].value["copies"][49][9]["name"], "VAR_9");
    }

    #[test]
    fn json_forms() {
        let docs = parse(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#);
        assert_eq!(positions(&docs), vec![(0, None)]);
        let docs = parse(r#" [ {"kind":"A"}, {"kind":"B"} ] "#);
        assert_eq!(positions(&docs), vec![(0, None), (1, None)]);
        assert_eq!(docs[1].value["kind"], "B");
        let docs = parse("{\"kind\":\"A\"}\n{\"kind\":\"B\"}\n");
        assert_eq!(positions(&docs), vec![(0, None), (1, None)]);
        // Trailing comma: not JSON, but fine flow YAML.
        let docs = parse("{\"kind\": \"A\", }");
        assert_eq!(docs[0].value["kind"], "A");
    }

    #[test]
    fn lists_are_expanded() {
        let docs = parse(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n---\nkind: Namespace\n",
        );
        assert_eq!(
            positions(&docs),
            vec![(0, Some(0)), (0, Some(1)), (1, None)]
        );
        assert_eq!(docs[1].value["kind"], "Service");
        assert_eq!(docs[1].describe(), "document 1 item 2");

        let docs =
            parse(r#"{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"a"}}]}"#);
        assert_eq!(docs[0].value["kind"], "Pod");
        assert_eq!(docs[0].value["apiVersion"], "v1");

        assert!(parse("apiVersion: v1\nkind: List\nitems: []\n").is_empty());
        assert!(parse("apiVersion: v1\nkind: List\n").is_empty());
    }

    #[test]
    fn errors_name_the_document() {
        let table: &[(&str, &str)] = &[
            (
                "kind: A\n---\nkind: B\n  bad: [\n",
                "document 2: YAML syntax error at line",
            ),
            (
                "kind: A\n---\na: 1\na: 2\n",
                "document 2: YAML syntax error at line 4, column 1: duplicate mapping key: a",
            ),
            (
                "kind: A\n---\n- just\n- scalars\n",
                "document 2 item 1: expected a mapping",
            ),
            ("kind: A\n---\nhello\n", "document 2: expected a mapping"),
            ("{\"kind\": \"A\"} 17", "document 2: expected a mapping"),
            ("[{\"kind\": \"A\"}, 3]", "document 2: expected a mapping"),
            ("{\"kind\": ", "document 1: JSON syntax error at line 1"),
            (
                "kind: List\nitems: 3\n",
                "document 1: `items` of List must be a list",
            ),
            (
                "kind: List\nitems: [1]\n",
                "document 1 item 1: expected a mapping",
            ),
            ("kind: A\n---\nkey: [unclosed\n", "document 2"),
            ("? [a, b]\n: c\n", "document 1"),
            (
                "{kind: Pod, metadata: {name: [}}",
                "document 1: YAML syntax error",
            ),
            (
                "{\"kind\": \"Pod\", \"metadata\": {\"name\": [}}",
                "document 1: JSON syntax error at line 1, column 39: expected value",
            ),
            (
                "{\"kind\": \"A\"}\n{\"kind\": }",
                "document 2: JSON syntax error at line 2",
            ),
        ];
        for (text, needle) in table {
            let e = parse_documents(text).expect_err(text);
            let msg = e.to_string();
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
        let huge = "a".repeat(TEXT_BYTES_MAX + 1);
        assert!(matches!(
            parse_documents(&huge),
            Err(ManifestError::TooLarge { .. })
        ));
    }
}
