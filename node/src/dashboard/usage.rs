//! The figures the dashboard shows beside nodes and pods: what each node
//! agent measured last (the same `kubus top` prints), gathered from their
//! answers. Pure: answers in, figures out; [`super`] asks the agents while
//! a page is open (agents sample only while someone asks).

use std::collections::BTreeMap;

use kubus_bus::protocol::NodeUsage;
use serde::Serialize;

/// CPU in millicores and memory in bytes, per node and per pod.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// The machine's figures, by node name.
    pub nodes: BTreeMap<String, [u64; 2]>,
    /// A pod's containers summed, by `namespace/name`.
    pub pods: BTreeMap<String, [u64; 2]>,
    /// Nodes that did not answer, and why.
    pub missing: BTreeMap<String, String>,
}

/// The figures of the agents' answers (node, answer or why not).
pub fn figures(answers: Vec<(String, Result<NodeUsage, String>)>) -> Figures {
    let mut f = Figures::default();
    for (node, answer) in answers {
        match answer {
            Ok(u) => {
                if let Some(m) = u.usage {
                    f.nodes
                        .insert(node, [m.cpu_nano_cores / 1_000_000, m.memory_bytes]);
                }
                for p in u.pods {
                    let sum = p.containers.iter().fold([0, 0], |[c, m], x| {
                        [
                            c + x.usage.cpu_nano_cores / 1_000_000,
                            m + x.usage.memory_bytes,
                        ]
                    });
                    f.pods.insert(format!("{}/{}", p.namespace, p.name), sum);
                }
            }
            Err(why) => {
                f.missing.insert(node, why);
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::protocol::{ContainerUsage, PodUsage, Usage};

    #[test]
    fn pods_sum_their_containers_and_silent_nodes_are_named() {
        let u = |cpu_milli: u64, mem: u64| Usage {
            cpu_nano_cores: cpu_milli * 1_000_000,
            memory_bytes: mem,
        };
        let answer = NodeUsage {
            node: "n1".into(),
            timestamp_ms: 0,
            window_ms: 10_000,
            usage: Some(u(900, 4096)),
            pods: vec![PodUsage {
                namespace: "default".into(),
                name: "web".into(),
                containers: vec![
                    ContainerUsage {
                        name: "a".into(),
                        usage: u(250, 100),
                    },
                    ContainerUsage {
                        name: "b".into(),
                        usage: u(50, 20),
                    },
                ],
            }],
        };
        let hollow = NodeUsage {
            node: "h".into(),
            usage: None,
            pods: vec![],
            ..answer.clone()
        };
        let f = figures(vec![
            ("n1".into(), Ok(answer)),
            ("h".into(), Ok(hollow)),
            ("gone".into(), Err("timed out".into())),
        ]);
        assert_eq!(f.nodes.get("n1"), Some(&[900, 4096]));
        assert_eq!(f.nodes.get("h"), None);
        assert_eq!(f.pods.get("default/web"), Some(&[300, 120]));
        assert_eq!(f.missing.get("gone").map(String::as_str), Some("timed out"));
    }
}
