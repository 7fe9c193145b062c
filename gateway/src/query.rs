//! Query strings → the options of a list, a watch, a write, a delete or a
//! log read. Pure; a value that does not parse is a `BadRequest` naming
//! the parameter.

use std::collections::HashMap;
use std::time::Duration;

use kubus_api::error::ApiError;
use kubus_api::lifecycle::Propagation;

/// The decoded query parameters (the last value of a repeated one wins,
/// except where a list is read: `dryRun`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: HashMap<String, Vec<String>>,
}

impl Query {
    /// Decodes `a=1&b=x%3Dy`.
    pub fn parse(raw: Option<&str>) -> Query {
        let mut pairs: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            pairs
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
        Query { pairs }
    }

    /// The parameter's last value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// The parameter's value, None when empty.
    pub fn nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// `true`/`1` or `false`/`0` (absent: false).
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(bad(name, other, "true or false")),
        }
    }

    /// A non-negative integer.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.nonempty(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(name, v, "a non-negative integer"))
            })
            .transpose()
    }

    /// A signed integer.
    pub fn signed(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.nonempty(name)
            .map(|v| v.parse::<i64>().map_err(|_| bad(name, v, "an integer")))
            .transpose()
    }

    /// Every value of a repeated parameter.
    pub fn all(&self, name: &str) -> &[String] {
        self.pairs.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

fn bad(name: &str, value: &str, want: &str) -> ApiError {
    ApiError::bad_request(format!(
        "query parameter {name}={value:?} is invalid: it must be {want}"
    ))
}

/// What a list or a watch asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// `resourceVersion` (`0` and empty: any, served as the latest).
    pub resource_version: Option<u64>,
    /// `resourceVersionMatch=Exact`.
    pub exact: bool,
    pub watch: bool,
    pub allow_bookmarks: bool,
    /// `sendInitialEvents=true`: ADDED for every object, then a bookmark
    /// saying they are all sent.
    pub send_initial_events: bool,
    /// How long the watch runs (bounded by [`crate::WATCH_TIMEOUT_MAX`]).
    pub timeout: Duration,
}

impl ListQuery {
    pub fn parse(q: &Query) -> Result<ListQuery, ApiError> {
        let resource_version =
            match q.nonempty("resourceVersion") {
                None | Some("0") => None,
                Some(v) => Some(v.parse::<u64>().map_err(|_| {
                    bad("resourceVersion", v, "a resource version this server gave")
                })?),
            };
        let exact = match q.nonempty("resourceVersionMatch") {
            None | Some("NotOlderThan") => false,
            Some("Exact") => true,
            Some(other) => return Err(bad("resourceVersionMatch", other, "Exact or NotOlderThan")),
        };
        if exact && resource_version.is_none() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch=Exact needs a resourceVersion other than 0",
            ));
        }
        let timeout = q
            .number("timeoutSeconds")?
            .map_or(crate::WATCH_TIMEOUT_MAX, Duration::from_secs)
            .min(crate::WATCH_TIMEOUT_MAX);
        Ok(ListQuery {
            label_selector: q.nonempty("labelSelector").map(str::to_string),
            field_selector: q.nonempty("fieldSelector").map(str::to_string),
            limit: q
                .number("limit")?
                .filter(|n| *n > 0)
                .map(|n| n.min(usize::MAX as u64) as usize),
            continue_token: q.nonempty("continue").map(str::to_string),
            resource_version,
            exact,
            watch: q.flag("watch")?,
            allow_bookmarks: q.flag("allowWatchBookmarks")?,
            send_initial_events: q.flag("sendInitialEvents")?,
            timeout,
        })
    }
}

/// `dryRun=All`: admit and answer, write nothing (creates, replaces and
/// patches).
pub fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.all("dryRun").iter().find(|v| !v.is_empty()) {
        None => Ok(false),
        Some(v) if v == "All" => Ok(true),
        Some(v) => Err(bad("dryRun", v, "All")),
    }
}

/// `fieldValidation`: what to do with fields the kind does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(q: &Query) -> Result<FieldValidation, ApiError> {
        match q.nonempty("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(bad("fieldValidation", other, "Ignore, Warn or Strict")),
        }
    }
}

/// A delete's options, from the query and the body's `DeleteOptions`
/// (the body wins where both say something).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteQuery {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<u64>,
}

impl DeleteQuery {
    pub fn parse(q: &Query, body: &serde_json::Value) -> Result<DeleteQuery, ApiError> {
        let in_body = body
            .get("dryRun")
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty());
        if dry_run(q)? || in_body {
            return Err(ApiError::bad_request(
                "DeleteOptions.dryRun is not supported by kubus yet; nothing was deleted",
            ));
        }
        let grace_period_seconds = match body.get("gracePeriodSeconds") {
            Some(v) if !v.is_null() => Some(v.as_i64().ok_or_else(|| {
                ApiError::bad_request("DeleteOptions.gracePeriodSeconds must be an integer")
            })?),
            _ => q.signed("gracePeriodSeconds")?,
        };
        let policy = body
            .get("propagationPolicy")
            .and_then(|v| v.as_str())
            .or_else(|| q.nonempty("propagationPolicy"));
        let orphan = match body.get("orphanDependents").and_then(|v| v.as_bool()) {
            Some(b) => b,
            None => q.flag("orphanDependents")?,
        };
        let propagation = match (policy, orphan) {
            (Some(p), _) => Some(Propagation::parse(p).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "propagationPolicy {p:?} is invalid: it must be Orphan, Background or Foreground"
                ))
            })?),
            (None, true) => Some(Propagation::Orphan),
            (None, false) => None,
        };
        let pre = body.get("preconditions");
        let uid = pre
            .and_then(|p| p.get("uid"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let resource_version = match pre
            .and_then(|p| p.get("resourceVersion"))
            .and_then(|v| v.as_str())
        {
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                bad(
                    "preconditions.resourceVersion",
                    rv,
                    "a resource version this server gave",
                )
            })?),
            None => None,
        };
        Ok(DeleteQuery {
            grace_period_seconds,
            propagation,
            uid,
            resource_version,
        })
    }
}

/// A log read's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Asked for but not served (kubus's logs carry no per-line times):
    /// named in a `Warning` header.
    pub ignored: Vec<&'static str>,
}

impl LogQuery {
    pub fn parse(q: &Query) -> Result<LogQuery, ApiError> {
        let mut ignored = Vec::new();
        if q.flag("timestamps")? {
            ignored.push("timestamps");
        }
        if q.nonempty("sinceSeconds").is_some() {
            ignored.push("sinceSeconds");
        }
        if q.nonempty("sinceTime").is_some() {
            ignored.push("sinceTime");
        }
        Ok(LogQuery {
            container: q.nonempty("container").map(str::to_string),
            follow: q.flag("follow")?,
            previous: q.flag("previous")?,
            tail_lines: q.number("tailLines")?,
            limit_bytes: q.number("limitBytes")?,
            ignored,
        })
    }
}

/// The last `n` lines of `text` (a final line without its newline counts).
pub fn tail_lines(text: &str, n: u64) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.bytes().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_and_watches() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1&limit=500&watch=true&resourceVersion=42&allowWatchBookmarks=true&timeoutSeconds=30",
        ));
        let l = ListQuery::parse(&q).expect("parse");
        assert_eq!(l.label_selector.as_deref(), Some("app=web"));
        assert_eq!(l.field_selector.as_deref(), Some("spec.nodeName=n1"));
        assert_eq!(l.limit, Some(500));
        assert!(l.watch && l.allow_bookmarks && !l.exact);
        assert_eq!(l.resource_version, Some(42));
        assert_eq!(l.timeout, Duration::from_secs(30));
        // 0 is "any": served as the latest
        let l = ListQuery::parse(&Query::parse(Some("resourceVersion=0"))).expect("parse");
        assert_eq!(l.resource_version, None);
        assert_eq!(l.timeout, crate::WATCH_TIMEOUT_MAX);
        for bad in [
            "watch=yes",
            "limit=-1",
            "resourceVersion=abc",
            "resourceVersionMatch=Exact",
            "resourceVersionMatch=Newest&resourceVersion=3",
        ] {
            let e = ListQuery::parse(&Query::parse(Some(bad))).expect_err(bad);
            assert_eq!(e.reason, kubus_api::error::Reason::BadRequest, "{bad}");
        }
    }

    #[test]
    fn deletes_read_query_and_body() {
        let q = Query::parse(Some("gracePeriodSeconds=5&propagationPolicy=Orphan"));
        let d = DeleteQuery::parse(&q, &json!({})).expect("parse");
        assert_eq!(d.grace_period_seconds, Some(5));
        assert_eq!(d.propagation, Some(Propagation::Orphan));
        let body = json!({"kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "propagationPolicy": "Foreground", "preconditions": {"uid": "u1", "resourceVersion": "9"}});
        let d = DeleteQuery::parse(&q, &body).expect("parse");
        assert_eq!(d.grace_period_seconds, Some(0));
        assert_eq!(d.propagation, Some(Propagation::Foreground));
        assert_eq!(
            (d.uid.as_deref(), d.resource_version),
            (Some("u1"), Some(9))
        );
        let d = DeleteQuery::parse(&Query::parse(Some("orphanDependents=true")), &json!({}))
            .expect("parse");
        assert_eq!(d.propagation, Some(Propagation::Orphan));
        assert!(DeleteQuery::parse(&Query::parse(Some("dryRun=All")), &json!({})).is_err());
        assert!(
            DeleteQuery::parse(&Query::parse(None), &json!({"propagationPolicy": "Later"}))
                .is_err()
        );
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(tail_lines("a\n", 0), "");
    }
}
