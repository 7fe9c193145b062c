//! Container probes — liveness, readiness, startup — as the kubelet runs
//! them: what a probe is (parsed and checked from the container's spec),
//! and what a run of results means (`record`, `decide`). Pure: the I/O that
//! runs one probe is in [`super::prober`], the timers are in the agent.
//!
//! Semantics (Kubernetes' prober worker): a probe's reported result changes
//! only after `failureThreshold` failures or `successThreshold` successes in
//! a row. Liveness starts as success, readiness as failure, startup as
//! unknown. Liveness and readiness do not run until the startup probe has
//! succeeded; the startup probe stops once it has. A liveness or startup
//! probe that reports failure restarts the container.

use std::time::Duration;

use serde_json::Value;

/// Longest output of an exec probe kept for the Unhealthy event.
pub const MESSAGE_MAX_BYTES: usize = 1024;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// The container field that holds it.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }

    /// As Events name it ("Liveness probe failed: …").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container; exit 0 is success.
    Exec { command: Vec<String> },
    /// GET a URL on the pod's address (or `host`); 200–399 is success.
    HttpGet {
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// Open a TCP connection; connecting is success.
    TcpSocket { host: Option<String>, port: u16 },
}

/// One probe of one container, checked and defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: ProbeKind,
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// The probe's own `terminationGracePeriodSeconds`, for the stop of a
    /// container it fails (instead of the pod's).
    pub termination_grace: Option<Duration>,
}

/// A probe that cannot run as written: the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ProbeError {
    pub field: String,
    pub rule: String,
}

fn err(field: String, rule: impl Into<String>) -> ProbeError {
    ProbeError {
        field,
        rule: rule.into(),
    }
}

/// A whole number field with a default and a minimum.
fn seconds_or_count(
    probe: &Value,
    at: &str,
    name: &str,
    default: u64,
    min: u64,
) -> Result<u64, ProbeError> {
    match probe.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(n),
            _ => Err(err(
                format!("{at}.{name}"),
                format!("must be a whole number of at least {min}, not {v}"),
            )),
        },
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(container: &Value, action: &Value, at: &str) -> Result<u16, ProbeError> {
    let field = format!("{at}.port");
    match action.get("port") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| err(field, format!("must be between 1 and 65535, not {n}"))),
        Some(Value::String(name)) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| err(field, format!("names no port of the container: {name:?}")))
        }
        _ => Err(err(field, "is required (a number or a port name)")),
    }
}

fn host(action: &Value) -> Option<String> {
    action
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// The container's probe of this kind, if it has one. `at` is the field
/// path of the container (`spec.containers[0]`), for errors.
pub fn parse(container: &Value, kind: ProbeKind, at: &str) -> Result<Option<Probe>, ProbeError> {
    let Some(p) = container.get(kind.field()).filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let at = format!("{at}.{}", kind.field());
    let mut actions = Vec::new();
    if let Some(e) = p.get("exec") {
        let command: Vec<String> = e
            .get("command")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if command.is_empty() {
            return Err(err(format!("{at}.exec.command"), "must name a command"));
        }
        actions.push(Action::Exec { command });
    }
    if let Some(h) = p.get("httpGet") {
        let path_at = format!("{at}.httpGet");
        match h.get("scheme").and_then(Value::as_str) {
            None | Some("HTTP") => {}
            Some(other) => {
                return Err(err(
                    format!("{path_at}.scheme"),
                    format!("{other:?} is not supported by this node agent (only HTTP)"),
                ))
            }
        }
        let path = h.get("path").and_then(Value::as_str).unwrap_or("/");
        let headers = h
            .get("httpHeaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| {
                Some((
                    x.get("name")?.as_str()?.to_string(),
                    x.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect();
        actions.push(Action::HttpGet {
            host: host(h),
            port: port(container, h, &path_at)?,
            path: if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            },
            headers,
        });
    }
    if let Some(t) = p.get("tcpSocket") {
        actions.push(Action::TcpSocket {
            host: host(t),
            port: port(container, t, &format!("{at}.tcpSocket"))?,
        });
    }
    if p.get("grpc").is_some() {
        return Err(err(
            format!("{at}.grpc"),
            "is not supported by this node agent (use exec, httpGet or tcpSocket)",
        ));
    }
    let action = match actions.len() {
        1 => actions.remove(0),
        0 => return Err(err(at, "must have one of exec, httpGet, tcpSocket")),
        _ => return Err(err(at, "may have only one of exec, httpGet, tcpSocket")),
    };
    let success_threshold = seconds_or_count(p, &at, "successThreshold", 1, 1)?;
    if kind != ProbeKind::Readiness && success_threshold != 1 {
        return Err(err(
            format!("{at}.successThreshold"),
            format!("must be 1 for a {} probe", kind.title().to_lowercase()),
        ));
    }
    Ok(Some(Probe {
        kind,
        action,
        initial_delay: Duration::from_secs(seconds_or_count(p, &at, "initialDelaySeconds", 0, 0)?),
        period: Duration::from_secs(seconds_or_count(p, &at, "periodSeconds", 10, 1)?),
        timeout: Duration::from_secs(seconds_or_count(p, &at, "timeoutSeconds", 1, 1)?),
        failure_threshold: seconds_or_count(p, &at, "failureThreshold", 3, 1)? as u32,
        success_threshold: success_threshold as u32,
        termination_grace: match p.get("terminationGracePeriodSeconds") {
            None | Some(Value::Null) => None,
            Some(_) => Some(Duration::from_secs(seconds_or_count(
                p,
                &at,
                "terminationGracePeriodSeconds",
                0,
                1,
            )?)),
        },
    }))
}

/// Every probe of a container, in the order they start: startup first.
pub fn parse_all(container: &Value, at: &str) -> Result<Vec<Probe>, ProbeError> {
    let mut out = Vec::new();
    for kind in ProbeKind::ALL {
        out.extend(parse(container, kind, at)?);
    }
    Ok(out)
}

/// The run of results of one probe of one running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// The last result seen (true: success) and how many times in a row.
    pub last: Option<bool>,
    pub run: u32,
}

/// Add one result; the probe's reported result if this run reaches its
/// threshold, else None (the reported result stays what it was).
pub fn record(probe: &Probe, t: &mut Tracker, ok: bool) -> Option<bool> {
    if t.last == Some(ok) {
        t.run = t.run.saturating_add(1);
    } else {
        t.last = Some(ok);
        t.run = 1;
    }
    let threshold = if ok {
        probe.success_threshold
    } else {
        probe.failure_threshold
    };
    (t.run >= threshold).then_some(ok)
}

/// What the agent does about a reported result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changes.
    Keep,
    /// The container's readiness is now this.
    Ready(bool),
    /// The startup probe passed: liveness and readiness begin.
    Started,
    /// Kill the container; it restarts as its pod's restartPolicy says.
    Restart,
}

/// The decision for a reported result of a probe.
pub fn decide(kind: ProbeKind, reported: Option<bool>) -> Decision {
    match (kind, reported) {
        (_, None) => Decision::Keep,
        (ProbeKind::Readiness, Some(r)) => Decision::Ready(r),
        (ProbeKind::Startup, Some(true)) => Decision::Started,
        (ProbeKind::Liveness, Some(true)) => Decision::Keep,
        (ProbeKind::Liveness | ProbeKind::Startup, Some(false)) => Decision::Restart,
    }
}

/// Whether this probe runs now: liveness and readiness wait for a startup
/// probe to pass; a startup probe stops once it has.
pub fn runs(kind: ProbeKind, started: Option<bool>) -> bool {
    match kind {
        ProbeKind::Startup => started == Some(false),
        _ => started.unwrap_or(true),
    }
}

/// Whether an HTTP status counts as success (Kubernetes: 200–399).
pub fn http_ok(status: u16) -> bool {
    (200..400).contains(&status)
}

/// The status code of an HTTP response's first line
/// (`HTTP/1.1 200 OK`).
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The request an httpGet probe sends.
pub fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("user-agent") {
        req.push_str(&format!(
            "User-Agent: kubus-probe/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// An exec probe's output as an event message: trimmed and bounded.
pub fn output_message(stdout: &[u8], stderr: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(stderr));
    let text = text.trim();
    if text.len() <= MESSAGE_MAX_BYTES {
        return text.to_string();
    }
    let mut end = MESSAGE_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(kind: ProbeKind, failure: u32, success: u32) -> Probe {
        Probe {
            kind,
            action: Action::TcpSocket {
                host: None,
                port: 80,
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failure_threshold: failure,
            success_threshold: success,
            termination_grace: None,
        }
    }

    #[test]
    fn parses_the_exec_liveness_example_with_defaults() {
        let c = json!({"name": "liveness", "livenessProbe": {
            "exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5, "periodSeconds": 5}});
        let p = parse(&c, ProbeKind::Liveness, "spec.containers[0]")
            .expect("valid")
            .expect("present");
        assert_eq!(
            p.action,
            Action::Exec {
                command: vec!["cat".into(), "/tmp/healthy".into()]
            }
        );
        assert_eq!(
            (p.initial_delay, p.period, p.timeout),
            (
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(1)
            )
        );
        assert_eq!((p.failure_threshold, p.success_threshold), (3, 1));
        assert_eq!(p.termination_grace, None);
        assert_eq!(parse(&c, ProbeKind::Readiness, "x"), Ok(None));
        let c = json!({"livenessProbe": {"tcpSocket": {"port": 1}, "terminationGracePeriodSeconds": 3}});
        let p = parse(&c, ProbeKind::Liveness, "x")
            .expect("valid")
            .expect("present");
        assert_eq!(p.termination_grace, Some(Duration::from_secs(3)));
    }

    #[test]
    fn parses_http_and_tcp_with_named_ports() {
        let c = json!({"ports": [{"name": "web", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "healthz", "port": "web",
                "httpHeaders": [{"name": "X-A", "value": "1"}]}, "successThreshold": 2},
            "startupProbe": {"tcpSocket": {"port": 9000, "host": "10.0.0.1"}, "failureThreshold": 30}});
        let all = parse_all(&c, "spec.containers[0]").expect("valid");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, ProbeKind::Startup);
        assert_eq!(
            all[0].action,
            Action::TcpSocket {
                host: Some("10.0.0.1".into()),
                port: 9000
            }
        );
        assert_eq!(all[0].failure_threshold, 30);
        assert_eq!(
            all[1].action,
            Action::HttpGet {
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-A".into(), "1".into())]
            }
        );
        assert_eq!(all[1].success_threshold, 2);
    }

    #[test]
    fn bad_probes_name_field_and_rule() {
        let at = "spec.containers[0]";
        let table = [
            (
                json!({"livenessProbe": {}}),
                "spec.containers[0].livenessProbe",
                "must have one of",
            ),
            (
                json!({"livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}}}),
                "spec.containers[0].livenessProbe",
                "only one of",
            ),
            (
                json!({"livenessProbe": {"exec": {"command": []}}}),
                "spec.containers[0].livenessProbe.exec.command",
                "must name a command",
            ),
            (
                json!({"livenessProbe": {"tcpSocket": {"port": "nope"}}}),
                "spec.containers[0].livenessProbe.tcpSocket.port",
                "names no port",
            ),
            (
                json!({"livenessProbe": {"tcpSocket": {"port": 70000}}}),
                "spec.containers[0].livenessProbe.tcpSocket.port",
                "between 1 and 65535",
            ),
            (
                json!({"livenessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 0}}),
                "spec.containers[0].livenessProbe.periodSeconds",
                "at least 1",
            ),
            (
                json!({"livenessProbe": {"tcpSocket": {"port": 1}, "successThreshold": 2}}),
                "spec.containers[0].livenessProbe.successThreshold",
                "must be 1",
            ),
            (
                json!({"livenessProbe": {"httpGet": {"port": 1, "scheme": "HTTPS"}}}),
                "spec.containers[0].livenessProbe.httpGet.scheme",
                "only HTTP",
            ),
            (
                json!({"livenessProbe": {"grpc": {"port": 1}}}),
                "spec.containers[0].livenessProbe.grpc",
                "not supported",
            ),
        ];
        for (c, field, rule) in table {
            let e = parse_all(&c, at).expect_err("invalid");
            assert_eq!(e.field, field, "{c}");
            assert!(e.rule.contains(rule), "{c}: {}", e.rule);
        }
    }

    #[test]
    fn thresholds_decide_the_reported_result() {
        let live = probe(ProbeKind::Liveness, 3, 1);
        let mut t = Tracker::default();
        let seq: Vec<Option<bool>> = [true, false, false, true, false, false, false]
            .iter()
            .map(|ok| record(&live, &mut t, *ok))
            .collect();
        assert_eq!(
            seq,
            vec![Some(true), None, None, Some(true), None, None, Some(false)]
        );
        let ready = probe(ProbeKind::Readiness, 1, 2);
        let mut t = Tracker::default();
        assert_eq!(record(&ready, &mut t, true), None);
        assert_eq!(record(&ready, &mut t, true), Some(true));
        assert_eq!(record(&ready, &mut t, false), Some(false));
    }

    #[test]
    fn decisions_by_kind() {
        let table = [
            (ProbeKind::Liveness, None, Decision::Keep),
            (ProbeKind::Liveness, Some(true), Decision::Keep),
            (ProbeKind::Liveness, Some(false), Decision::Restart),
            (ProbeKind::Readiness, Some(true), Decision::Ready(true)),
            (ProbeKind::Readiness, Some(false), Decision::Ready(false)),
            (ProbeKind::Startup, Some(true), Decision::Started),
            (ProbeKind::Startup, Some(false), Decision::Restart),
        ];
        for (kind, reported, want) in table {
            assert_eq!(decide(kind, reported), want, "{kind:?} {reported:?}");
        }
        assert!(runs(ProbeKind::Liveness, None));
        assert!(!runs(ProbeKind::Liveness, Some(false)));
        assert!(runs(ProbeKind::Readiness, Some(true)));
        assert!(runs(ProbeKind::Startup, Some(false)));
        assert!(!runs(ProbeKind::Startup, Some(true)));
    }

    #[test]
    fn http_pieces() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500 Oops\r\nX: y"), Some(500));
        assert_eq!(parse_status_line(b"garbage"), None);
        assert!(http_ok(200) && http_ok(302) && !http_ok(404) && !http_ok(199));
        let req = http_request("10.0.0.2", 80, "/h", &[("Host".into(), "x".into())]);
        assert!(req.starts_with("GET /h HTTP/1.1\r\n"));
        assert!(req.contains("Host: x\r\n") && !req.contains("10.0.0.2"));
        assert!(req.ends_with("\r\n\r\n"));
        assert_eq!(output_message(b" a\n", b"b \n"), "a\nb");
        assert!(output_message(&[b'x'; 5000], b"").len() < 1100);
    }
}
