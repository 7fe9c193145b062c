//! Pods and pod templates, as kubectl describes them: containers (state,
//! restarts, probes, env, mounts), conditions, volumes, QoS class,
//! tolerations.

use std::collections::HashMap;

use kubus_api::meta;
use serde_json::Value;

use super::{
    annotations_multiline, controlled_by, header, labels_multiline, list, n, s, scalar, string_map,
    Writer,
};
use crate::print::{self, rfc1123z};

pub(super) fn pod(w: &mut Writer, p: &Value, now: jiff::Timestamp) {
    header(w, p);
    if let Some(priority) = p.pointer("/spec/priority").and_then(Value::as_i64) {
        w.write(0, &format!("Priority:\t{priority}\n"));
    }
    if !s(p, "/spec/serviceAccountName").is_empty() {
        w.write(
            0,
            &format!("Service Account:\t{}\n", s(p, "/spec/serviceAccountName")),
        );
    }
    match s(p, "/spec/nodeName") {
        "" => w.write(0, "Node:\t<none>\n"),
        node => w.write(0, &format!("Node:\t{node}/{}\n", s(p, "/status/hostIP"))),
    }
    if !s(p, "/status/startTime").is_empty() {
        w.write(
            0,
            &format!("Start Time:\t{}\n", rfc1123z(s(p, "/status/startTime"))),
        );
    }
    labels_multiline(w, "Labels", &meta::labels(p));
    annotations_multiline(w, "Annotations", &meta::annotations(p));
    let deleting = kubus_api::pod::is_terminating(p) && !kubus_api::pod::is_finished(p);
    if deleting {
        w.write(
            0,
            &format!(
                "Status:\tTerminating (lasts {})\n",
                print::age(meta::meta_str(p, "deletionTimestamp"), now)
            ),
        );
        if let Some(grace) = p
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
        {
            w.write(0, &format!("Termination Grace Period:\t{grace}s\n"));
        }
    } else {
        w.write(0, &format!("Status:\t{}\n", s(p, "/status/phase")));
    }
    for (field, title) in [("/status/reason", "Reason"), ("/status/message", "Message")] {
        if !s(p, field).is_empty() {
            w.write(0, &format!("{title}:\t{}\n", s(p, field)));
        }
    }
    w.write(0, &format!("IP:\t{}\n", s(p, "/status/podIP")));
    let ips = list(p, "/status/podIPs");
    if ips.is_empty() {
        w.write(0, "IPs:\t<none>\n");
    } else {
        w.write(0, "IPs:\n");
        for ip in ips {
            w.write(1, &format!("IP:\t{}\n", s(ip, "/ip")));
        }
    }
    if let Some(owner) = controlled_by(p) {
        w.write(0, &format!("Controlled By:\t{owner}\n"));
    }
    let statuses = |pointer: &str| -> HashMap<String, &Value> {
        list(p, pointer)
            .iter()
            .map(|c| (s(c, "/name").to_string(), c))
            .collect()
    };
    if !list(p, "/spec/initContainers").is_empty() {
        containers(
            w,
            "Init Containers",
            list(p, "/spec/initContainers"),
            &statuses("/status/initContainerStatuses"),
            "",
            Some(p),
        );
    }
    containers(
        w,
        "Containers",
        list(p, "/spec/containers"),
        &statuses("/status/containerStatuses"),
        "",
        Some(p),
    );
    let conditions = list(p, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\n");
        for c in conditions {
            w.write(1, &format!("{} \t{} \n", s(c, "/type"), s(c, "/status")));
        }
    }
    volumes(w, list(p, "/spec/volumes"), "");
    w.write(0, &format!("QoS Class:\t{}\n", qos_class(p)));
    labels_multiline(
        w,
        "Node-Selectors",
        &string_map(p.pointer("/spec/nodeSelector")),
    );
    tolerations(w, "Tolerations", list(p, "/spec/tolerations"));
}

/// The pod's QoS class: as reported, else worked out as Kubernetes does
/// (no requests or limits: BestEffort; limits equal to requests for cpu
/// and memory in every container: Guaranteed; else Burstable).
fn qos_class(p: &Value) -> String {
    if !s(p, "/status/qosClass").is_empty() {
        return s(p, "/status/qosClass").to_string();
    }
    let all: Vec<&Value> = list(p, "/spec/containers")
        .iter()
        .chain(list(p, "/spec/initContainers"))
        .collect();
    let resources = |c: &Value, which: &str| string_map(c.pointer(&format!("/resources/{which}")));
    if all
        .iter()
        .all(|c| resources(c, "requests").is_empty() && resources(c, "limits").is_empty())
    {
        return "BestEffort".into();
    }
    let guaranteed = all.iter().all(|c| {
        let limits = resources(c, "limits");
        let mut requests = resources(c, "requests");
        for (k, v) in &limits {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
        ["cpu", "memory"]
            .iter()
            .all(|r| limits.contains_key(*r) && limits.get(*r) == requests.get(*r))
    });
    if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

pub(super) fn tolerations(w: &mut Writer, title: &str, tolerations: &[Value]) {
    w.write(0, &format!("{title}:\t"));
    if tolerations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, t) in tolerations.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let mut text = s(t, "/key").to_string();
        if !s(t, "/value").is_empty() {
            text.push_str(&format!("={}", s(t, "/value")));
        }
        if !s(t, "/effect").is_empty() {
            text.push_str(&format!(":{}", s(t, "/effect")));
        }
        if s(t, "/operator") == "Exists" && s(t, "/value").is_empty() {
            text.push_str(if text.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(secs) = t.pointer("/tolerationSeconds").and_then(Value::as_i64) {
            text.push_str(&format!(" for {secs}s"));
        }
        w.write(0, &format!("{text}\n"));
    }
}

/// kubectl's `describeContainers`: one block per container, with its
/// status when `statuses` has one. `pod` resolves `fieldRef` env values.
pub(super) fn containers(
    w: &mut Writer,
    label: &str,
    specs: &[Value],
    statuses: &HashMap<String, &Value>,
    space: &str,
    pod: Option<&Value>,
) {
    let none = if specs.is_empty() { " <none>" } else { "" };
    w.write(0, &format!("{space}{label}:{none}\n"));
    let indent = if space.is_empty() { "" } else { " " };
    for c in specs {
        let name = s(c, "/name");
        let status = statuses.get(name).copied();
        w.write(1, &format!("{indent}{name}:\n"));
        if let Some(st) = status {
            w.write(2, &format!("Container ID:\t{}\n", s(st, "/containerID")));
        }
        w.write(2, &format!("Image:\t{}\n", s(c, "/image")));
        if let Some(st) = status {
            w.write(2, &format!("Image ID:\t{}\n", s(st, "/imageID")));
        }
        let ports = list(c, "/ports");
        let port_text = |field: &str| -> String {
            ports
                .iter()
                .map(|p| {
                    let proto = match s(p, "/protocol") {
                        "" => "TCP",
                        x => x,
                    };
                    let text = format!("{}/{proto}", n(p, field));
                    match s(p, "/name") {
                        "" => text,
                        name => format!("{text} ({name})"),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (field, one, many) in [
            ("/containerPort", "Port", "Ports"),
            ("/hostPort", "Host Port", "Host Ports"),
        ] {
            let text = port_text(field);
            if text.contains(',') {
                w.write(2, &format!("{many}:\t{text}\n"));
            } else if text.is_empty() {
                w.write(2, &format!("{one}:\t<none>\n"));
            } else {
                w.write(2, &format!("{one}:\t{text}\n"));
            }
        }
        for (field, title) in [("/command", "Command"), ("/args", "Args")] {
            let words = list(c, field);
            if !words.is_empty() {
                w.write(2, &format!("{title}:\n"));
                for word in words {
                    for line in word.as_str().unwrap_or_default().split('\n') {
                        w.write(3, &format!("{line}\n"));
                    }
                }
            }
        }
        if let Some(st) = status {
            container_state(w, "State", st.get("state"));
            if st
                .pointer("/lastState/terminated")
                .is_some_and(Value::is_object)
            {
                container_state(w, "Last State", st.get("lastState"));
            }
            let ready = if st["ready"] == true { "True" } else { "False" };
            w.write(2, &format!("Ready:\t{ready}\n"));
            w.write(2, &format!("Restart Count:\t{}\n", n(st, "/restartCount")));
        }
        for which in ["limits", "requests"] {
            let r = string_map(c.pointer(&format!("/resources/{which}")));
            if !r.is_empty() {
                let mut title = which.to_string();
                title[..1].make_ascii_uppercase();
                w.write(2, &format!("{title}:\n"));
                for (k, v) in r {
                    w.write(3, &format!("{k}:\t{v}\n"));
                }
            }
        }
        for (field, title) in [
            ("livenessProbe", "Liveness"),
            ("readinessProbe", "Readiness"),
            ("startupProbe", "Startup"),
        ] {
            if let Some(probe) = c.get(field).filter(|p| p.is_object()) {
                w.write(2, &format!("{title}:\t{}\n", describe_probe(probe)));
            }
        }
        let env_from = list(c, "/envFrom");
        if !env_from.is_empty() {
            w.write(2, "Environment Variables from:\n");
            for e in env_from {
                let (from, r) = if e.get("configMapRef").is_some_and(Value::is_object) {
                    ("ConfigMap", &e["configMapRef"])
                } else {
                    ("Secret", &e["secretRef"])
                };
                let optional = r["optional"] == true;
                match s(e, "/prefix") {
                    "" => w.write(
                        3,
                        &format!("{}\t{from}\tOptional: {optional}\n", s(r, "/name")),
                    ),
                    prefix => w.write(
                        3,
                        &format!(
                            "{}\t{from} with prefix '{prefix}'\tOptional: {optional}\n",
                            s(r, "/name")
                        ),
                    ),
                }
            }
        }
        env(w, c, pod);
        let mounts = list(c, "/volumeMounts");
        if mounts.is_empty() {
            w.write(2, "Mounts:\t<none>\n");
        } else {
            w.write(2, "Mounts:\n");
            let mut mounts: Vec<&Value> = mounts.iter().collect();
            mounts.sort_by(|a, b| s(a, "/mountPath").cmp(s(b, "/mountPath")));
            for m in mounts {
                let mut flags = vec![if m["readOnly"] == true { "ro" } else { "rw" }.to_string()];
                if !s(m, "/subPath").is_empty() {
                    flags.push(format!("path={:?}", s(m, "/subPath")));
                }
                w.write(
                    3,
                    &format!(
                        "{} from {} ({})\n",
                        s(m, "/mountPath"),
                        s(m, "/name"),
                        flags.join(",")
                    ),
                );
            }
        }
    }
}

fn env(w: &mut Writer, c: &Value, pod: Option<&Value>) {
    let vars = list(c, "/env");
    if vars.is_empty() {
        w.write(2, "Environment:\t<none>\n");
        return;
    }
    w.write(2, "Environment:\n");
    for e in vars {
        let name = s(e, "/name");
        let from = &e["valueFrom"];
        if !from.is_object() {
            for (i, line) in s(e, "/value").split('\n').enumerate() {
                if i == 0 {
                    w.write(3, &format!("{name}:\t{line}\n"));
                } else {
                    w.write(3, &format!("\t{line}\n"));
                }
            }
        } else if from.get("fieldRef").is_some_and(Value::is_object) {
            let path = s(from, "/fieldRef/fieldPath");
            let value = pod
                .and_then(|p| p.pointer(&format!("/{}", path.replace('.', "/"))))
                .map(scalar)
                .unwrap_or_default();
            let version = match s(from, "/fieldRef/apiVersion") {
                "" => "v1",
                x => x,
            };
            w.write(3, &format!("{name}:\t{value} ({version}:{path})\n"));
        } else if from.get("resourceFieldRef").is_some_and(Value::is_object) {
            w.write(
                3,
                &format!("{name}:\t ({})\n", s(from, "/resourceFieldRef/resource")),
            );
        } else if let Some(r) = from.get("secretKeyRef").filter(|r| r.is_object()) {
            w.write(
                3,
                &format!(
                    "{name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                    s(r, "/key"),
                    s(r, "/name"),
                    r["optional"] == true
                ),
            );
        } else if let Some(r) = from.get("configMapKeyRef").filter(|r| r.is_object()) {
            w.write(
                3,
                &format!(
                    "{name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                    s(r, "/key"),
                    s(r, "/name"),
                    r["optional"] == true
                ),
            );
        }
    }
}

fn container_state(w: &mut Writer, title: &str, state: Option<&Value>) {
    let state = state.cloned().unwrap_or(Value::Null);
    if let Some(r) = state.get("running").filter(|x| x.is_object()) {
        w.write(2, &format!("{title}:\tRunning\n"));
        w.write(3, &format!("Started:\t{}\n", rfc1123z(s(r, "/startedAt"))));
    } else if let Some(t) = state.get("terminated").filter(|x| x.is_object()) {
        w.write(2, &format!("{title}:\tTerminated\n"));
        for (field, name) in [("/reason", "Reason"), ("/message", "Message")] {
            if !s(t, field).is_empty() {
                w.write(3, &format!("{name}:\t{}\n", s(t, field)));
            }
        }
        w.write(3, &format!("Exit Code:\t{}\n", n(t, "/exitCode")));
        if n(t, "/signal") > 0 {
            w.write(3, &format!("Signal:\t{}\n", n(t, "/signal")));
        }
        w.write(3, &format!("Started:\t{}\n", rfc1123z(s(t, "/startedAt"))));
        w.write(
            3,
            &format!("Finished:\t{}\n", rfc1123z(s(t, "/finishedAt"))),
        );
    } else {
        w.write(2, &format!("{title}:\tWaiting\n"));
        let reason = s(&state, "/waiting/reason");
        if !reason.is_empty() {
            w.write(3, &format!("Reason:\t{reason}\n"));
        }
    }
}

/// kubectl's `DescribeProbe`: `http-get http://:8080/healthz delay=0s
/// timeout=1s period=10s #success=1 #failure=3`.
pub fn describe_probe(p: &Value) -> String {
    let or = |field: &str, d: i64| p.get(field).and_then(Value::as_i64).unwrap_or(d);
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        or("initialDelaySeconds", 0),
        or("timeoutSeconds", 1),
        or("periodSeconds", 10),
        or("successThreshold", 1),
        or("failureThreshold", 3)
    );
    let port = |v: &Value| scalar(v.get("port").unwrap_or(&Value::Null));
    if let Some(e) = p.get("exec").filter(|x| x.is_object()) {
        let words: Vec<String> = list(e, "/command").iter().map(scalar).collect();
        format!("exec [{}] {attrs}", words.join(" "))
    } else if let Some(h) = p.get("httpGet").filter(|x| x.is_object()) {
        let scheme = match s(h, "/scheme") {
            "" => "http".to_string(),
            x => x.to_ascii_lowercase(),
        };
        format!(
            "http-get {scheme}://{}:{}{} {attrs}",
            s(h, "/host"),
            port(h),
            s(h, "/path")
        )
    } else if let Some(t) = p.get("tcpSocket").filter(|x| x.is_object()) {
        format!("tcp-socket {}:{} {attrs}", s(t, "/host"), port(t))
    } else if let Some(g) = p.get("grpc").filter(|x| x.is_object()) {
        format!("grpc <pod>:{} {} {attrs}", port(g), s(g, "/service"))
    } else {
        format!("unknown {attrs}")
    }
}

pub(super) fn volumes(w: &mut Writer, volumes: &[Value], space: &str) {
    if volumes.is_empty() {
        w.write(0, &format!("{space}Volumes:\t<none>\n"));
        return;
    }
    w.write(0, &format!("{space}Volumes:\n"));
    let indent = if space.is_empty() { "" } else { " " };
    for v in volumes {
        w.write(1, &format!("{indent}{}:\n", s(v, "/name")));
        let source = v
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"));
        let Some((kind, src)) = source else {
            continue;
        };
        match kind.as_str() {
            "emptyDir" => {
                w.write(
                    2,
                    "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n",
                );
                w.write(2, &format!("Medium:\t{}\n", s(src, "/medium")));
                match s(src, "/sizeLimit") {
                    "" => w.write(2, "SizeLimit:\t<unset>\n"),
                    limit => w.write(2, &format!("SizeLimit:\t{limit}\n")),
                }
            }
            "configMap" => {
                w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n");
                w.write(2, &format!("Name:\t{}\n", s(src, "/name")));
                w.write(2, &format!("Optional:\t{}\n", src["optional"] == true));
            }
            "secret" => {
                w.write(2, "Type:\tSecret (a volume populated by a Secret)\n");
                w.write(2, &format!("SecretName:\t{}\n", s(src, "/secretName")));
                w.write(2, &format!("Optional:\t{}\n", src["optional"] == true));
            }
            "hostPath" => {
                w.write(2, "Type:\tHostPath (bare host directory volume)\n");
                w.write(2, &format!("Path:\t{}\n", s(src, "/path")));
                w.write(2, &format!("HostPathType:\t{}\n", s(src, "/type")));
            }
            "persistentVolumeClaim" => {
                w.write(
                    2,
                    "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n",
                );
                w.write(2, &format!("ClaimName:\t{}\n", s(src, "/claimName")));
                w.write(2, &format!("ReadOnly:\t{}\n", src["readOnly"] == true));
            }
            other => {
                let mut title = other.to_string();
                if let Some(first) = title.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                w.write(2, &format!("Type:\t{title}\n"));
            }
        }
    }
}

/// kubectl's `DescribePodTemplate`, for workloads and `rollout history
/// --revision`.
pub fn pod_template(w: &mut Writer, template: &Value) {
    w.write(0, "Pod Template:\n");
    if !template.is_object() {
        w.write(1, "<unset>");
        return;
    }
    labels_multiline(
        w,
        "  Labels",
        &string_map(template.pointer("/metadata/labels")),
    );
    let annotations = string_map(template.pointer("/metadata/annotations"));
    if !annotations.is_empty() {
        annotations_multiline(w, "  Annotations", &annotations);
    }
    if !s(template, "/spec/serviceAccountName").is_empty() {
        w.write(
            1,
            &format!(
                "Service Account:\t{}\n",
                s(template, "/spec/serviceAccountName")
            ),
        );
    }
    let none = HashMap::new();
    if !list(template, "/spec/initContainers").is_empty() {
        containers(
            w,
            "Init Containers",
            list(template, "/spec/initContainers"),
            &none,
            "  ",
            None,
        );
    }
    containers(
        w,
        "Containers",
        list(template, "/spec/containers"),
        &none,
        "  ",
        None,
    );
    volumes(w, list(template, "/spec/volumes"), "  ");
    labels_multiline(
        w,
        "  Node-Selectors",
        &string_map(template.pointer("/spec/nodeSelector")),
    );
    tolerations(w, "  Tolerations", list(template, "/spec/tolerations"));
}

/// [`pod_template`] alone, as text.
pub fn pod_template_text(template: &Value) -> String {
    let mut w = Writer::default();
    pod_template(&mut w, template);
    w.finish()
}
