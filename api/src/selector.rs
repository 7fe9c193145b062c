//! Label selectors: the structured form (`matchLabels` / `matchExpressions`
//! of a `LabelSelector`) and the kubectl string form
//! (`a=b,a==b,c!=d,e in (f,g),h notin (i),j,!k`), parsed into one
//! [`Selector`] that matches a label map.
//!
//! Semantics follow `k8s.io/apimachinery/pkg/labels`: requirements are
//! ANDed; `!=` and `notin` also match objects that lack the label; an empty
//! selector matches everything. Keys and values are checked with the same
//! rules as object labels, so a selector that parses can only name labels
//! that can exist.
//!
//! Field selectors (`spec.nodeName=n1,status.phase!=Running`) are here too:
//! [`FieldSelector`], with the fields each kind serves and the value each
//! one reads ([`selectable_fields`], [`field_value`]), as the Kubernetes API
//! server states them. The store and the HTTP gateway both parse with it,
//! so a selector means the same on the bus and through kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::admission::validate::{label_value_problems, qualified_name_problems};
use crate::error::ApiError;
use crate::kind::Kind;

/// Longest selector string accepted (bounds parsing work on wire input).
const INPUT_LEN_MAX: usize = 16 * 1024;

/// Why a selector is refused; every variant names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector is too long ({len} bytes; at most {INPUT_LEN_MAX})")]
    TooLong { len: usize },
    #[error("selector {input:?}: expected {expected} at position {position}, found {found}")]
    Syntax {
        input: String,
        position: usize,
        expected: &'static str,
        found: String,
    },
    #[error("selector key {key:?} is invalid: {rule}")]
    InvalidKey { key: String, rule: String },
    #[error("selector value {value:?} for key {key:?} is invalid: {rule}")]
    InvalidValue {
        key: String,
        value: String,
        rule: String,
    },
    #[error("selector operator {operator:?} for key {key:?} is not one of In, NotIn, Exists, DoesNotExist")]
    UnknownOperator { key: String, operator: String },
    #[error("selector requirement on key {key:?}: operator {operator} needs at least one value")]
    ValuesRequired { key: String, operator: &'static str },
    #[error("selector requirement on key {key:?}: operator {operator} takes no values")]
    ValuesForbidden { key: String, operator: &'static str },
}

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Operator {
    /// `key=value` / `key==value` / `matchLabels`.
    Equals,
    /// `key!=value`.
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One ANDed condition on one label key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    fn new(
        key: &str,
        operator: Operator,
        values: BTreeSet<String>,
    ) -> Result<Requirement, SelectorError> {
        if let Some(rule) = qualified_name_problems(key).into_iter().next() {
            return Err(SelectorError::InvalidKey {
                key: key.to_string(),
                rule,
            });
        }
        for value in &values {
            if let Some(rule) = label_value_problems(value).into_iter().next() {
                return Err(SelectorError::InvalidValue {
                    key: key.to_string(),
                    value: value.clone(),
                    rule,
                });
            }
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::ValuesRequired {
                    key: key.to_string(),
                    operator: operator.name(),
                });
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::ValuesForbidden {
                    key: key.to_string(),
                    operator: operator.name(),
                });
            }
            _ => {}
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.contains(v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl Operator {
    fn name(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A set of ANDed label requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Sorted by key (then operator), as Kubernetes prints them.
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Selector {
        Selector::default()
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort();
        requirements.dedup();
        Selector { requirements }
    }

    /// Parse the kubectl string form; whitespace around tokens is ignored and
    /// the empty string is [`Selector::everything`].
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.len() > INPUT_LEN_MAX {
            return Err(SelectorError::TooLong { len: s.len() });
        }
        Parser::new(s).selector().map(Selector::from_requirements)
    }

    /// The structured form used in Deployment/ReplicaSet/Service specs.
    pub fn from_label_selector(s: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in s.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key,
                Operator::Equals,
                BTreeSet::from([value.clone()]),
            )?);
        }
        for expr in s.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        key: expr.key.clone(),
                        operator: other.to_string(),
                    })
                }
            };
            let values = expr.values.iter().flatten().cloned().collect();
            requirements.push(Requirement::new(&expr.key, operator, values)?);
        }
        Ok(Selector::from_requirements(requirements))
    }

    /// A stored `LabelSelector` as JSON; None when it is null, absent or
    /// malformed (admission has refused malformed ones, so a stored object
    /// has none: callers treat None as "selects nothing", as Kubernetes
    /// does a null selector).
    pub fn from_value(v: Option<&serde_json::Value>) -> Option<Selector> {
        let v = v.filter(|v| !v.is_null())?;
        let ls: LabelSelector = serde_json::from_value(v.clone()).ok()?;
        Selector::from_label_selector(&ls).ok()
    }

    /// `key=value` for every entry (a Service's `spec.selector`, an RS's
    /// `matchLabels`). Not validated: the labels come from stored objects.
    pub fn from_match_labels(m: &BTreeMap<String, String>) -> Selector {
        Selector::from_requirements(
            m.iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: BTreeSet::from([v.clone()]),
                })
                .collect(),
        )
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

/// A lexical token of the string form, with its byte position.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    /// `=` or `==`.
    Equals,
    NotEquals,
    Bang,
    Open,
    Close,
    Comma,
    End,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Equals => "'='".into(),
            Token::NotEquals => "'!='".into(),
            Token::Bang => "'!'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "end of input".into(),
        }
    }
}

/// A recursive-descent parser over the string form.
struct Parser<'a> {
    input: &'a str,
    position: usize,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, ',' | '=' | '!' | '(' | ')')
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser { input, position: 0 }
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.position..).unwrap_or("")
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start().len();
    }

    /// The next token and where it starts, without consuming it.
    fn peek(&mut self) -> (Token<'a>, usize, usize) {
        self.skip_space();
        let rest = self.rest();
        let at = self.position;
        let mut chars = rest.chars();
        let token = match chars.next() {
            None => (Token::End, 0),
            Some(',') => (Token::Comma, 1),
            Some('(') => (Token::Open, 1),
            Some(')') => (Token::Close, 1),
            Some('=') if rest.starts_with("==") => (Token::Equals, 2),
            Some('=') => (Token::Equals, 1),
            Some('!') if rest.starts_with("!=") => (Token::NotEquals, 2),
            Some('!') => (Token::Bang, 1),
            Some(_) => {
                let len = rest.find(|c| !is_word_char(c)).unwrap_or(rest.len());
                (Token::Word(&rest[..len]), len)
            }
        };
        (token.0, at, token.1)
    }

    fn next(&mut self) -> (Token<'a>, usize) {
        let (token, at, len) = self.peek();
        self.position = at + len;
        (token, at)
    }

    fn error(&self, expected: &'static str, found: &Token<'_>, position: usize) -> SelectorError {
        SelectorError::Syntax {
            input: self.input.to_string(),
            position,
            expected,
            found: found.describe(),
        }
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().0 == Token::End {
            return Ok(requirements);
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                (Token::End, _) => return Ok(requirements),
                (Token::Comma, _) => {}
                (other, at) => return Err(self.error("',' or end of input", &other, at)),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (first, at) = self.next();
        if first == Token::Bang {
            let key = self.key()?;
            return Requirement::new(key, Operator::DoesNotExist, BTreeSet::new());
        }
        let Token::Word(key) = first else {
            return Err(self.error("a label key or '!'", &first, at));
        };
        match self.peek().0 {
            Token::End | Token::Comma => Requirement::new(key, Operator::Exists, BTreeSet::new()),
            Token::Equals => {
                self.next();
                let value = self.value()?;
                Requirement::new(key, Operator::Equals, BTreeSet::from([value.to_string()]))
            }
            Token::NotEquals => {
                self.next();
                let value = self.value()?;
                Requirement::new(
                    key,
                    Operator::NotEquals,
                    BTreeSet::from([value.to_string()]),
                )
            }
            Token::Word("in") => {
                self.next();
                let values = self.value_set()?;
                Requirement::new(key, Operator::In, values)
            }
            Token::Word("notin") => {
                self.next();
                let values = self.value_set()?;
                Requirement::new(key, Operator::NotIn, values)
            }
            other => {
                let (_, at, _) = self.peek();
                Err(self.error(
                    "'=', '==', '!=', 'in', 'notin', ',' or end of input",
                    &other,
                    at,
                ))
            }
        }
    }

    fn key(&mut self) -> Result<&'a str, SelectorError> {
        match self.next() {
            (Token::Word(w), _) => Ok(w),
            (other, at) => Err(self.error("a label key", &other, at)),
        }
    }

    /// A value after `=`/`!=`; may be empty (`a=` selects `a: ""`).
    fn value(&mut self) -> Result<&'a str, SelectorError> {
        match self.peek() {
            (Token::Word(w), _, _) => {
                self.next();
                Ok(w)
            }
            (Token::Comma | Token::End, _, _) => Ok(""),
            (other, at, _) => Err(self.error("a label value", &other, at)),
        }
    }

    /// `( v1, v2, … )`; empty entries are the empty value, as in Kubernetes.
    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            (Token::Open, _) => {}
            (other, at) => return Err(self.error("'('", &other, at)),
        }
        let mut values = BTreeSet::new();
        loop {
            let value = match self.peek().0 {
                Token::Word(w) => {
                    self.next();
                    w
                }
                _ => "",
            };
            values.insert(value.to_string());
            match self.next() {
                (Token::Comma, _) => {}
                (Token::Close, _) => return Ok(values),
                (other, at) => return Err(self.error("',' or ')'", &other, at)),
            }
        }
    }
}

/// How a field selector term compares a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum FieldOperator {
    /// `field=value` / `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One ANDed condition on one field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct FieldTerm {
    field: String,
    operator: FieldOperator,
    value: String,
}

/// A field selector: `field=value`, `field==value` and `field!=value`
/// terms, ANDed, as `fieldSelector` of a list or watch. The empty selector
/// matches everything.
///
/// Semantics follow `k8s.io/apimachinery/pkg/fields`: a field an object
/// does not set reads as its zero value (`""`, `false`, `0`), so
/// `spec.nodeName=` selects unscheduled pods and `!=` matches objects
/// without the field; `\,`, `\=` and `\\` escape those characters in a
/// value. Which fields a kind serves is [`FieldSelector::check`]'s
/// business, so one parsed selector can be checked against a kind later.
///
/// ```
/// use kubus_api::selector::FieldSelector;
/// use kubus_api::Kind;
/// use serde_json::json;
///
/// let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded").unwrap();
/// assert!(s.check(Kind::Pod).is_ok());
/// assert!(s.matches(Kind::Pod, &json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})));
/// assert_eq!(
///     s.check(Kind::ConfigMap).unwrap_err().message,
///     r#""spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace""#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    /// Sorted and without duplicates, so equal selectors compare equal.
    terms: Vec<FieldTerm>,
}

/// The fields every kind serves without one of its own list.
const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The fields a field selector may name for `kind`: what the Kubernetes
/// API server accepts for the kind (its field label conversion), with the
/// object's `metadata.name` (and `metadata.namespace` where Kubernetes
/// accepts it).
pub fn selectable_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Pod => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Kind::Event => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Kind::Secret => &["metadata.name", "metadata.namespace", "type"],
        Kind::Service => &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ],
        // Cluster-scoped kinds with their own list do not take
        // metadata.namespace, as in Kubernetes.
        Kind::Node => &["metadata.name", "spec.unschedulable"],
        Kind::Namespace => &["metadata.name", "status.phase"],
        Kind::Job => &["metadata.name", "metadata.namespace", "status.successful"],
        Kind::ReplicaSet | Kind::ReplicationController => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        _ => META_FIELDS,
    }
}

/// The value field selectors compare for `field` of `obj`, an object of
/// `kind`: a string field as it is, a boolean or count as Kubernetes prints
/// it; the zero value when the object does not set it.
pub fn field_value(kind: Kind, obj: &Value, field: &str) -> String {
    let text = |pointer: &str| {
        obj.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let count = |pointer: &str| {
        obj.pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or_default()
            .to_string()
    };
    let flag = |pointer: &str| {
        obj.pointer(pointer)
            .and_then(Value::as_bool)
            .unwrap_or_default()
            .to_string()
    };
    match (kind, field) {
        (Kind::Pod, "spec.hostNetwork") => flag("/spec/hostNetwork"),
        // The first of podIPs, which is what status.podIP mirrors.
        (Kind::Pod, "status.podIP") => match obj.pointer("/status/podIPs/0/ip") {
            Some(Value::String(ip)) => ip.clone(),
            _ => text("/status/podIP"),
        },
        (Kind::Node, "spec.unschedulable") => flag("/spec/unschedulable"),
        (Kind::Job, "status.successful") => count("/status/succeeded"),
        (Kind::ReplicaSet | Kind::ReplicationController, "status.replicas") => {
            count("/status/replicas")
        }
        // The component that reported the Event, under either name.
        (Kind::Event, "source") => match text("/source/component") {
            component if component.is_empty() => text("/reportingComponent"),
            component => component,
        },
        (_, field) => text(&format!("/{}", field.replace('.', "/"))),
    }
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parse the string form; the empty string (and empty terms) select
    /// everything. Whitespace around a field or value is ignored. Refused
    /// (`BadRequest`): a term without an operator, a value with an
    /// unescaped `,` or `=` or a bad escape, an input over 16 KiB.
    pub fn parse(s: &str) -> Result<FieldSelector, ApiError> {
        if s.len() > INPUT_LEN_MAX {
            return Err(ApiError::bad_request(format!(
                "field selector is too long ({} bytes; at most {INPUT_LEN_MAX})",
                s.len()
            )));
        }
        let mut terms = Vec::new();
        for term in split_field_terms(s) {
            if term.trim().is_empty() {
                continue;
            }
            let not_understood = || {
                ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ))
            };
            let (field, operator, raw) = split_field_term(term).ok_or_else(not_understood)?;
            let field = field.trim();
            if field.is_empty() {
                return Err(not_understood());
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                operator,
                value: unescape_field_value(raw.trim())?,
            });
        }
        terms.sort();
        terms.dedup();
        Ok(FieldSelector { terms })
    }

    /// Parse `s` and [`check`](FieldSelector::check) it for `kind`.
    pub fn parse_for(kind: Kind, s: &str) -> Result<FieldSelector, ApiError> {
        let selector = FieldSelector::parse(s)?;
        selector.check(kind)?;
        Ok(selector)
    }

    /// Refuse (`BadRequest`) a selector naming a field `kind` does not
    /// serve, with the Kubernetes API server's message.
    pub fn check(&self, kind: Kind) -> Result<(), ApiError> {
        let served = selectable_fields(kind);
        match self
            .terms
            .iter()
            .find(|t| !served.contains(&t.field.as_str()))
        {
            None => Ok(()),
            Some(t) if served == META_FIELDS => Err(ApiError::bad_request(format!(
                "{:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                t.field
            ))),
            Some(t) => Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                t.field
            ))),
        }
    }

    /// Whether every term holds for `obj`, an object of `kind`.
    pub fn matches(&self, kind: Kind, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let equal = field_value(kind, obj, &t.field) == t.value;
            match t.operator {
                FieldOperator::Equals => equal,
                FieldOperator::NotEquals => !equal,
            }
        })
    }

    /// Whether this selector has no terms (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical string form: terms sorted, `=` for equality, values
    /// escaped; it parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let operator = match t.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{operator}", t.field)?;
            for c in t.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<FieldSelector, ApiError> {
        FieldSelector::parse(s)
    }
}

/// The terms of a field selector: split at commas not escaped by `\`.
fn split_field_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// A term split at its first operator: `!=`, `==` or `=`, whichever
/// starts first (a field name cannot hold one).
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    term.char_indices().find_map(|(i, _)| {
        let (field, rest) = term.split_at(i);
        OPERATORS
            .iter()
            .find_map(|(op, operator)| rest.strip_prefix(op).map(|value| (field, *operator, value)))
    })
}

/// A field selector value without its escapes (`\\`, `\,`, `\=`).
fn unescape_field_value(raw: &str) -> Result<String, ApiError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    )))
                }
                None => {
                    return Err(ApiError::bad_request(
                        "invalid field selector: invalid escape sequence: \\",
                    ))
                }
            },
            ',' | '=' => {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_prints() {
        let table: &[(&str, &str)] = &[
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            (" a = b ", "a=b"),
            ("c!=d", "c!=d"),
            ("e in (g,f)", "e in (f,g)"),
            ("e in ( f , g )", "e in (f,g)"),
            ("h notin (i)", "h notin (i)"),
            ("j", "j"),
            ("!k", "!k"),
            ("! k", "!k"),
            ("z=1,a=2", "a=2,z=1"),
            ("a=", "a="),
            ("a=,b", "a=,b"),
            ("x in (foo,,baz)", "x in (,baz,foo)"),
            ("z notin ()", "z notin ()"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            (
                "a=b,a==b,c!=d,e in (f,g),h notin (i),j,!k",
                "a=b,c!=d,e in (f,g),h notin (i),j,!k",
            ),
        ];
        for (input, want) in table {
            let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(s.to_string(), *want, "{input:?}");
            let again: Selector = want.parse().unwrap_or_else(|e| panic!("{want:?}: {e}"));
            assert_eq!(again, s, "round trip of {input:?}");
        }
    }

    #[test]
    fn refuses_bad_strings() {
        let table: &[(&str, &str)] = &[
            ("a=b,", "label key"),
            (",a", "label key"),
            ("a b", "'='"),
            ("a in b", "'('"),
            ("a in (b", "',' or ')'"),
            ("a=b=c", "',' or end"),
            ("a=(b)", "label value"),
            ("!", "label key"),
            ("!a=b", "',' or end"),
            ("Bad Key=1", "'='"),
            ("-a=b", "\"-a\""),
            ("a=-b", "\"-b\""),
            ("a/b/c=d", "\"a/b/c\""),
            ("a=x y", "',' or end"),
            ("a in ()x", "',' or end"),
        ];
        for (input, needle) in table {
            let e = Selector::parse(input).expect_err(input);
            assert!(e.to_string().contains(needle), "{input:?}: {e}");
        }
        let long = "a".repeat(INPUT_LEN_MAX + 1);
        assert!(matches!(
            Selector::parse(&long),
            Err(SelectorError::TooLong { .. })
        ));
    }

    #[test]
    fn matching() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("empty", "")]);
        let none = labels(&[]);
        let table: &[(&str, bool, bool)] = &[
            // selector, matches web, matches none
            ("", true, true),
            ("app=web", true, false),
            ("app=db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app in (web,db)", true, false),
            ("app notin (web)", false, true),
            ("app notin (db)", true, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("empty=", true, false),
            ("empty", true, false),
            ("app=web,tier=back", false, false),
            ("app=web,tier in (front)", true, false),
        ];
        for (input, want_web, want_none) in table {
            let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(s.matches(&web), *want_web, "{input:?} on web");
            assert_eq!(s.matches(&none), *want_none, "{input:?} on no labels");
        }
    }

    fn expr(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn structured_selectors() {
        let ls = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", Some(&["front", "edge"])),
                expr("canary", "DoesNotExist", None),
                expr("zone", "NotIn", Some(&["b"])),
                expr("team", "Exists", Some(&[])),
            ]),
        };
        let s = Selector::from_label_selector(&ls).expect("valid");
        assert_eq!(
            s.to_string(),
            "app=web,!canary,team,tier in (edge,front),zone notin (b)"
        );
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "edge"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(Selector::from_label_selector(&LabelSelector::default())
            .expect("empty")
            .is_empty());

        let bad: &[(LabelSelectorRequirement, &str)] = &[
            (expr("a", "In", None), "needs at least one value"),
            (expr("a", "NotIn", Some(&[])), "needs at least one value"),
            (expr("a", "Exists", Some(&["x"])), "takes no values"),
            (expr("a", "Gt", Some(&["1"])), "\"Gt\""),
            (expr("a b", "Exists", None), "\"a b\""),
            (expr("a", "In", Some(&["x y"])), "\"x y\""),
        ];
        for (e, needle) in bad {
            let ls = LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![e.clone()]),
            };
            let err = Selector::from_label_selector(&ls).expect_err(needle);
            assert!(err.to_string().contains(needle), "{err}");
        }
        let bad_label = LabelSelector {
            match_labels: Some(labels(&[("app", "-web")])),
            match_expressions: None,
        };
        assert!(Selector::from_label_selector(&bad_label).is_err());
    }

    #[test]
    fn match_labels_and_everything() {
        let s = Selector::from_match_labels(&labels(&[("app", "web")]));
        assert_eq!(s.to_string(), "app=web");
        assert!(s.matches(&labels(&[("app", "web"), ("x", "y")])));
        assert!(!s.is_empty());
        assert!(Selector::everything().is_empty());
        assert!(Selector::everything().matches(&labels(&[])));
        assert!(Selector::from_match_labels(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn field_selectors_parse_and_print() {
        let table: &[(&str, Option<&str>)] = &[
            ("", Some("")),
            (" , ,", Some("")),
            ("spec.nodeName=n1", Some("spec.nodeName=n1")),
            ("spec.nodeName==n1", Some("spec.nodeName=n1")),
            (" spec.nodeName = n1 ", Some("spec.nodeName=n1")),
            ("status.phase!=Running", Some("status.phase!=Running")),
            // Sorted and deduplicated.
            (
                "status.phase!=Failed,metadata.name=a,metadata.name==a",
                Some("metadata.name=a,status.phase!=Failed"),
            ),
            ("spec.nodeName=", Some("spec.nodeName=")),
            ("spec.nodeName!=", Some("spec.nodeName!=")),
            // Escapes in values.
            (
                r"metadata.name=a\,b\=c\\d",
                Some(r"metadata.name=a\,b\=c\\d"),
            ),
            // The first operator splits the term.
            ("a!b=c", Some("a!b=c")),
            ("a==b", Some("a=b")),
            ("nonsense", None),
            ("=value", None),
            ("a=b=c", None),
            ("a=b,c", None),
            (r"a=b\x", None),
            (r"a=b\", None),
        ];
        for (input, want) in table {
            let got = FieldSelector::parse(input).map(|s| s.to_string());
            match want {
                Some(want) => assert_eq!(got.as_deref(), Ok(*want), "{input:?}"),
                None => assert_eq!(
                    got.map_err(|e| e.reason),
                    Err(crate::Reason::BadRequest),
                    "{input:?}"
                ),
            }
        }
        // The printed form parses back to the same selector.
        let s = FieldSelector::parse(r"metadata.name=a\,b,spec.nodeName!=").expect("parses");
        assert_eq!(FieldSelector::parse(&s.to_string()), Ok(s));
        let too_long = "a=".to_string() + &"b".repeat(INPUT_LEN_MAX);
        assert!(FieldSelector::parse(&too_long).is_err());
        assert_eq!(
            FieldSelector::parse("nonsense").map_err(|e| e.message),
            Err("invalid selector: 'nonsense'; can't understand 'nonsense'".to_string())
        );
    }

    #[test]
    fn field_selectors_check_the_kind() {
        let table: &[(Kind, &str, Result<(), &str>)] = &[
            (
                Kind::Pod,
                "spec.nodeName=n,status.phase=Running,metadata.namespace=d",
                Ok(()),
            ),
            (
                Kind::Pod,
                "spec.hostNetwork=true,status.podIP=10.0.0.1",
                Ok(()),
            ),
            (
                Kind::Pod,
                "spec.foo=1",
                Err("field label not supported: spec.foo"),
            ),
            (
                Kind::Event,
                "involvedObject.kind=Pod,involvedObject.name=p,involvedObject.uid=u,\
                 reason=Killing,type=Normal,source=kubelet,reportingComponent=x",
                Ok(()),
            ),
            (
                Kind::Event,
                "message=x",
                Err("field label not supported: message"),
            ),
            (Kind::Secret, "type=Opaque", Ok(())),
            (
                Kind::Node,
                "spec.unschedulable=false,metadata.name=n1",
                Ok(()),
            ),
            (
                Kind::Node,
                "metadata.namespace=x",
                Err("field label not supported: metadata.namespace"),
            ),
            (Kind::Namespace, "status.phase=Active", Ok(())),
            (Kind::Job, "status.successful=1", Ok(())),
            (Kind::ReplicaSet, "status.replicas=0", Ok(())),
            (Kind::ReplicationController, "status.replicas=0", Ok(())),
            (Kind::Service, "spec.type=ClusterIP", Ok(())),
            (
                Kind::Deployment,
                "metadata.name=web,metadata.namespace=d",
                Ok(()),
            ),
            (
                Kind::Deployment,
                "status.phase=x",
                Err(
                    r#""status.phase" is not a known field selector: only "metadata.name", "metadata.namespace""#,
                ),
            ),
            (Kind::ConfigMap, "", Ok(())),
        ];
        for (kind, input, want) in table {
            let got = FieldSelector::parse_for(*kind, input);
            match want {
                Ok(()) => assert!(got.is_ok(), "{kind:?} {input:?}: {got:?}"),
                Err(message) => {
                    let e = got.expect_err(input);
                    assert_eq!(e.reason, crate::Reason::BadRequest, "{input:?}");
                    assert_eq!(&e.message, message, "{kind:?} {input:?}");
                }
            }
        }
    }

    #[test]
    fn field_selectors_match() {
        use serde_json::json;
        let pod = json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.0.0.9",
                "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}});
        let unscheduled = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {}});
        let event = json!({"metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p", "uid": "u-1"},
            "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler"});
        let table: &[(Kind, &Value, &str, bool)] = &[
            (Kind::Pod, &pod, "", true),
            (Kind::Pod, &pod, "spec.nodeName=n1", true),
            (Kind::Pod, &pod, "spec.nodeName=n2", false),
            (
                Kind::Pod,
                &pod,
                "spec.nodeName!=n2,status.phase=Running",
                true,
            ),
            (
                Kind::Pod,
                &pod,
                "metadata.name=p,metadata.namespace=d",
                true,
            ),
            (Kind::Pod, &pod, "status.podIP=10.0.0.1", true),
            (Kind::Pod, &pod, "spec.hostNetwork=false", true),
            (Kind::Pod, &unscheduled, "spec.nodeName=", true),
            (Kind::Pod, &unscheduled, "spec.nodeName!=", false),
            (Kind::Pod, &unscheduled, "status.phase!=Running", true),
            (
                Kind::Event,
                &event,
                "involvedObject.kind=Pod,involvedObject.name=p",
                true,
            ),
            (Kind::Event, &event, "involvedObject.uid=u-2", false),
            (Kind::Event, &event, "source=default-scheduler", true),
            (
                Kind::Event,
                &event,
                "reportingComponent=default-scheduler,type=Normal",
                true,
            ),
        ];
        for (kind, obj, input, want) in table {
            let s = FieldSelector::parse_for(*kind, input).expect(input);
            assert_eq!(s.matches(*kind, obj), *want, "{kind:?} {input:?}");
        }
        let zeroes = json!({"metadata": {"name": "x"}});
        assert_eq!(
            field_value(Kind::Node, &zeroes, "spec.unschedulable"),
            "false"
        );
        assert_eq!(field_value(Kind::Job, &zeroes, "status.successful"), "0");
        assert_eq!(
            field_value(Kind::ReplicaSet, &zeroes, "status.replicas"),
            "0"
        );
        let job = json!({"status": {"succeeded": 3}});
        assert_eq!(field_value(Kind::Job, &job, "status.successful"), "3");
        let event = json!({"source": {"component": "kubelet"}, "reportingComponent": "x"});
        assert_eq!(field_value(Kind::Event, &event, "source"), "kubelet");
        assert!(FieldSelector::everything().is_empty());
        assert!(FieldSelector::everything().matches(Kind::Pod, &zeroes));
    }
}
