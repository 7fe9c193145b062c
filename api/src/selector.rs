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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::admission::validate::{label_value_problems, qualified_name_problems};

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
}
