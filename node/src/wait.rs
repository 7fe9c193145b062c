//! `kubus wait`: kubectl's wait for a condition (`--for=condition=Ready`,
//! `--for=condition=Available=false`), a field (`--for=jsonpath=
//! '{.status.phase}'=Running`), deletion (`--for=delete`) or creation
//! (`--for=create`), on named objects or those a selector picks, within
//! `--timeout` (30s by default; 0 checks once).
//!
//! [`parse_for`], [`met`] and the JSONPath subset ([`JsonPath`]) are pure;
//! [`run`] follows each object through the bus watch (a list, then change
//! events), never a poll.

use std::time::Duration;

use anyhow::{bail, Context};
use kubus_api::{meta, ObjectRef, Reason};
use kubus_bus::protocol::EventType;
use kubus_bus::watch::{WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::Value;

use crate::cli::WaitArgs;
use crate::commands::emit;
use crate::targets::{self, display_ref, Targets};

/// Why a `--for`, a `--timeout` or a JSONPath cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("unrecognized condition: {0:?} (use delete, create, condition=NAME[=VALUE] or jsonpath={{EXPRESSION}}[=VALUE])")]
    Unrecognized(String),
    #[error("format for --for=jsonpath must be: {{jsonpath expression}}={{jsonpath value}}")]
    JsonPathFormat,
    #[error("jsonpath {path:?}: {rule}")]
    JsonPath { path: String, rule: String },
    #[error("given jsonpath expression matches more than one value")]
    ManyValues,
    #[error("jsonpath wait format must match a primitive value, not a list or a map")]
    NotPrimitive,
}

/// What `--for` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum For {
    Delete,
    Create,
    /// `status.conditions[type=name].status == status` (both compared
    /// ignoring case), once the condition's generation is observed.
    Condition {
        name: String,
        status: String,
    },
    /// The path resolves to `value` (or, without one, to anything).
    JsonPath {
        path: JsonPath,
        value: Option<String>,
    },
}

/// Read a `--for` value as kubectl does.
pub fn parse_for(text: &str) -> Result<For, WaitError> {
    let lower = text.to_ascii_lowercase();
    if lower == "delete" {
        return Ok(For::Delete);
    }
    if lower == "create" {
        return Ok(For::Create);
    }
    if let Some(rest) = text
        .strip_prefix("condition=")
        .or_else(|| text.strip_prefix("Condition="))
    {
        let (name, status) = match rest.split_once('=') {
            Some((n, s)) => (n, s),
            None => (rest, "true"),
        };
        if name.is_empty() {
            return Err(WaitError::Unrecognized(text.into()));
        }
        return Ok(For::Condition {
            name: name.into(),
            status: status.into(),
        });
    }
    if let Some(rest) = text.strip_prefix("jsonpath=") {
        let (expr, value) = split_jsonpath(rest)?;
        return Ok(For::JsonPath {
            path: JsonPath::parse(expr)?,
            value: value.map(str::to_string),
        });
    }
    Err(WaitError::Unrecognized(text.into()))
}

/// `{expr}=value`, `{expr}`, `.a.b=value` or `.a.b`: the expression and
/// the value. A braced expression may hold `=` (filters); a bare one ends
/// at the first.
fn split_jsonpath(text: &str) -> Result<(&str, Option<&str>), WaitError> {
    let text = text.trim_matches('\'');
    if text.starts_with('{') {
        let mut depth = 0;
        let mut quote: Option<char> = None;
        for (i, c) in text.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '{') => depth += 1,
                (None, '}') => {
                    depth -= 1;
                    if depth == 0 {
                        let (expr, rest) = text.split_at(i + 1);
                        return match rest {
                            "" => Ok((expr, None)),
                            r => match r.strip_prefix('=') {
                                Some(v) if !v.is_empty() => Ok((expr, Some(v))),
                                _ => Err(WaitError::JsonPathFormat),
                            },
                        };
                    }
                }
                (None, _) => {}
            }
        }
        return Err(WaitError::JsonPathFormat);
    }
    match text.split_once('=') {
        Some((e, v)) if !e.is_empty() && !v.is_empty() && !v.contains('=') => Ok((e, Some(v))),
        Some(_) => Err(WaitError::JsonPathFormat),
        None => Ok((text, None)),
    }
}

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `.name` or `['name']`
    Field(String),
    /// `[3]` (negative: from the end)
    Index(i64),
    /// `[*]` or `.*`
    All,
    /// `[?(@.a.b=="v")]`: the items whose sub-path equals the value.
    Filter(Vec<String>, String),
}

/// The JSONPath subset `kubectl wait` is used with: `{.status.phase}`,
/// `{.spec.containers[0].image}`, `{.metadata.labels['app']}`,
/// `{.status.conditions[?(@.type=="Ready")].status}`, `[*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub text: String,
    pub steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(expr: &str) -> Result<JsonPath, WaitError> {
        let bad = |rule: &str| WaitError::JsonPath {
            path: expr.to_string(),
            rule: rule.to_string(),
        };
        let inner = expr
            .strip_prefix('{')
            .and_then(|e| e.strip_suffix('}'))
            .unwrap_or(expr)
            .trim();
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let mut steps = Vec::new();
        let chars: Vec<char> = inner.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
                        end += 1;
                    }
                    let name: String = chars[start..end].iter().collect();
                    match name.as_str() {
                        "" => return Err(bad("an empty field name")),
                        "*" => steps.push(Step::All),
                        _ => steps.push(Step::Field(name)),
                    }
                    i = end;
                }
                '[' => {
                    let close = find_close(&chars, i).ok_or_else(|| bad("an unclosed '['"))?;
                    let body: String = chars[i + 1..close].iter().collect();
                    steps.push(bracket(&body).ok_or_else(|| {
                        bad("a bracket must hold an index, '*', a quoted name or ?(@.path==\"value\")")
                    })?);
                    i = close + 1;
                }
                _ => return Err(bad("steps start with '.' or '['")),
            }
        }
        if steps.is_empty() {
            return Err(bad("no field named"));
        }
        Ok(JsonPath {
            text: expr.to_string(),
            steps,
        })
    }

    /// Every value the path reaches in `obj`.
    pub fn eval<'a>(&self, obj: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![obj];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Field(name) => next.extend(v.get(name)),
                    Step::Index(i) => {
                        if let Some(items) = v.as_array() {
                            let at = if *i < 0 {
                                usize::try_from(items.len() as i64 + i).ok()
                            } else {
                                usize::try_from(*i).ok()
                            };
                            next.extend(at.and_then(|a| items.get(a)));
                        }
                    }
                    Step::All => match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter(path, want) => {
                        for item in v.as_array().into_iter().flatten() {
                            let mut at = Some(item);
                            for p in path {
                                at = at.and_then(|x| x.get(p));
                            }
                            if at.is_some_and(|x| primitive_text(x).as_deref() == Some(want)) {
                                next.push(item);
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

/// The `]` closing the `[` at `open`, skipping quoted text.
fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in chars.iter().enumerate().skip(open + 1) {
        match (quote, *c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(*c),
            (None, ']') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
}

fn bracket(body: &str) -> Option<Step> {
    let body = body.trim();
    if body == "*" {
        return Some(Step::All);
    }
    if let Ok(i) = body.parse::<i64>() {
        return Some(Step::Index(i));
    }
    if let Some(name) = unquote(body) {
        return Some(Step::Field(name.to_string()));
    }
    let filter = body.strip_prefix("?(")?.strip_suffix(')')?;
    let (lhs, rhs) = filter.split_once("==")?;
    let path: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_string)
        .collect();
    let rhs = rhs.trim();
    let want = unquote(rhs).unwrap_or(rhs);
    Some(Step::Filter(path, want.to_string()))
}

/// A scalar as kubectl's JSONPath prints it; None for lists and maps.
fn primitive_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Whether `obj` (None: it does not exist) meets `cond`.
pub fn met(cond: &For, obj: Option<&Value>) -> Result<bool, WaitError> {
    let Some(obj) = obj else {
        return Ok(matches!(cond, For::Delete));
    };
    match cond {
        For::Delete => Ok(false),
        For::Create => Ok(true),
        For::Condition { name, status } => {
            let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
            for c in obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(t) = c.get("type").and_then(Value::as_str) else {
                    continue;
                };
                if !t.eq_ignore_ascii_case(name) {
                    continue;
                }
                let Some(s) = c.get("status").and_then(Value::as_str) else {
                    continue;
                };
                // a condition older than the spec says nothing yet
                let observed = c
                    .get("observedGeneration")
                    .or_else(|| obj.pointer("/status/observedGeneration"))
                    .and_then(Value::as_i64);
                if let (Some(g), Some(o)) = (generation, observed) {
                    if o < g {
                        return Ok(false);
                    }
                }
                return Ok(s.eq_ignore_ascii_case(status));
            }
            Ok(false)
        }
        For::JsonPath { path, value } => {
            let found = path.eval(obj);
            match (found.as_slice(), value) {
                ([], _) => Ok(false),
                ([one], None) => Ok(!one.is_null()),
                (_, None) => Ok(true),
                ([one], Some(want)) => match primitive_text(one) {
                    Some(text) => Ok(&text == want),
                    None => Err(WaitError::NotPrimitive),
                },
                (_, Some(_)) => Err(WaitError::ManyValues),
            }
        }
    }
}

/// A duration as kubectl writes them: `30s`, `5m`, `1h30m`, `500ms`,
/// `1.5h`, or a plain `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: use e.g. 30s, 5m, 1h30m or 0");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * secs;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The objects to wait on: by name (each must exist, unless waiting for
/// its deletion or creation), or those a selector picks (at least one).
async fn objects(client: &Client, args: &WaitArgs, cond: &For) -> anyhow::Result<Vec<ObjectRef>> {
    let t = targets::parse(&args.resources)?;
    match &t {
        Targets::Named(named) => {
            if args.selector.is_some() {
                bail!("name cannot be provided when a selector is specified");
            }
            let mut out = Vec::new();
            for (kind, name) in named {
                let r = ObjectRef::new(*kind, Some(&args.namespace), name);
                if !matches!(cond, For::Delete | For::Create) {
                    client.get(*kind, Some(&args.namespace), name).await?;
                }
                out.push(r);
            }
            Ok(out)
        }
        Targets::Kind(_) => {
            let items = targets::resolve(
                client,
                &args.namespace,
                &t,
                args.selector.as_deref(),
                args.all,
            )
            .await?;
            if items.is_empty() {
                bail!("no matching resources found");
            }
            Ok(items.iter().filter_map(meta::object_ref).collect())
        }
    }
}

/// kubectl's name for an object in a timeout: `pods/x`.
fn resource_name(r: &ObjectRef) -> String {
    format!("{}/{}", r.kind.resource(), r.name)
}

/// Wait for one object, watching its kind (by name), until `deadline`.
async fn wait_one(
    client: &Client,
    r: &ObjectRef,
    cond: &For,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let mut spec = WatchSpec::all(client, r.kind);
    spec.field_selector = Some(format!("metadata.name={}", r.name));
    let mut rx = kubus_bus::watch::watch(client.clone(), spec);
    let timed_out = || {
        anyhow::anyhow!(
            "timed out waiting for the condition on {}",
            resource_name(r)
        )
    };
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| timed_out())?
            .with_context(|| format!("the watch of {} ended", display_ref(r)))?;
        let current = match item {
            WatchItem::Relisted { items, .. } => items
                .into_iter()
                .find(|o| meta::object_ref(o).as_ref() == Some(r)),
            WatchItem::Event(e) if meta::object_ref(&e.object).as_ref() == Some(r) => {
                (e.event_type != EventType::Deleted).then_some(e.object)
            }
            WatchItem::Event(_) | WatchItem::Bookmark(_) => continue,
        };
        if met(cond, current.as_ref())? {
            return Ok(());
        }
    }
}

/// `kubus wait`: each object in turn, all within one `--timeout`.
pub async fn run(client: &Client, args: WaitArgs) -> anyhow::Result<()> {
    let cond = parse_for(&args.for_)?;
    let timeout = parse_duration(&args.timeout).map_err(anyhow::Error::msg)?;
    let refs = objects(client, &args, &cond).await?;
    if timeout.is_zero() {
        // check once, as kubectl does with --timeout=0
        for r in &refs {
            let current = match client.get(r.kind, r.namespace.as_deref(), &r.name).await {
                Ok(o) => Some(o),
                Err(e) if e.reason() == Some(Reason::NotFound) => None,
                Err(e) => return Err(e.into()),
            };
            if !met(&cond, current.as_ref())? {
                bail!("condition not met for {}", resource_name(r));
            }
            emit(&format!("{} condition met\n", display_ref(r)));
        }
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for r in &refs {
        wait_one(client, r, &cond, deadline).await?;
        emit(&format!("{} condition met\n", display_ref(r)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_values_read_like_kubectl() {
        assert_eq!(parse_for("delete"), Ok(For::Delete));
        assert_eq!(
            parse_for("condition=Ready"),
            Ok(For::Condition {
                name: "Ready".into(),
                status: "true".into()
            })
        );
        assert_eq!(
            parse_for("condition=Available=False"),
            Ok(For::Condition {
                name: "Available".into(),
                status: "False".into()
            })
        );
        let Ok(For::JsonPath { path, value }) = parse_for("jsonpath={.status.phase}=Running")
        else {
            panic!("jsonpath");
        };
        assert_eq!(
            path.steps,
            vec![Step::Field("status".into()), Step::Field("phase".into())]
        );
        assert_eq!(value.as_deref(), Some("Running"));
        let Ok(For::JsonPath { path, value }) =
            parse_for(r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}=True"#)
        else {
            panic!("filter");
        };
        assert_eq!(path.steps.len(), 4);
        assert_eq!(value.as_deref(), Some("True"));
        assert!(matches!(
            parse_for("jsonpath='{.status.readyReplicas}'"),
            Ok(For::JsonPath { value: None, .. })
        ));
        assert_eq!(parse_for("jsonpath={.a}="), Err(WaitError::JsonPathFormat));
        assert!(matches!(
            parse_for("ready"),
            Err(WaitError::Unrecognized(_))
        ));
        assert!(matches!(
            parse_for("jsonpath={.a[}"),
            Err(WaitError::JsonPathFormat | WaitError::JsonPath { .. })
        ));
    }

    #[test]
    fn conditions_and_paths_are_met() {
        let pod = json!({"metadata": {"name": "x", "generation": 2, "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx"}]},
            "status": {"phase": "Running", "observedGeneration": 2, "replicas": 3,
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}});
        let check = |f: &str| met(&parse_for(f).expect("valid"), Some(&pod));
        // (--for, met)
        let table = [
            ("condition=Ready", Ok(true)),
            ("condition=ready=TRUE", Ok(true)),
            ("condition=Ready=false", Ok(false)),
            ("condition=Initialized", Ok(false)),
            ("jsonpath={.status.phase}=Running", Ok(true)),
            ("jsonpath={.status.phase}=Pending", Ok(false)),
            ("jsonpath={.status.replicas}=3", Ok(true)),
            ("jsonpath={.spec.containers[1].image}=nginx", Ok(true)),
            ("jsonpath={.spec.containers[-1].name}=b", Ok(true)),
            (
                "jsonpath={.metadata.labels['app.kubernetes.io/name']}=web",
                Ok(true),
            ),
            (
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}=True"#,
                Ok(true),
            ),
            ("jsonpath={.status.phase}", Ok(true)),
            ("jsonpath={.status.missing}", Ok(false)),
            (
                "jsonpath={.spec.containers[*].name}=a",
                Err(WaitError::ManyValues),
            ),
            ("jsonpath={.spec}=x", Err(WaitError::NotPrimitive)),
            ("delete", Ok(false)),
            ("create", Ok(true)),
        ];
        for (f, want) in table {
            assert_eq!(check(f), want, "{f}");
        }
        assert_eq!(met(&For::Delete, None), Ok(true));
        assert_eq!(met(&For::Create, None), Ok(false));
        // a condition not yet observed for this generation does not count
        let mut stale = pod.clone();
        stale["metadata"]["generation"] = json!(3);
        assert_eq!(
            met(&parse_for("condition=Ready").expect("valid"), Some(&stale)),
            Ok(false)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
