//! `pods/{name}/portforward`: connections to a pod's ports through its
//! node agent (a byte stream over the bus per connection, as `kubus
//! port-forward` opens).
//!
//! Over a websocket (the Python client; `v4.channel.k8s.io` or none), the
//! ports are the `ports` query parameter and port `i` has two channels:
//! `2i` its data both ways, `2i+1` its errors; the first message the
//! server sends on each is the port number (two bytes, little-endian).
//! The connections are made before the switch, so one that cannot be made
//! is a plain `Status` error.
//!
//! kubectl speaks SPDY ([`crate::spdy`]): 1.31+ carried in a websocket
//! ([`TUNNEL_PROTOCOL`]), older ones after an `Upgrade: SPDY/3.1`.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{Request, Response};
use kubus_api::error::ApiError;
use kubus_api::Kind;
use kubus_bus::Client;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_websockets::{CloseCode, Message};

use crate::body::Body;
use crate::query::Query;
use crate::status::{self, Failure};
use crate::websocket;

/// The websocket subprotocols served (the data is the same in each).
pub const PROTOCOLS: [&str; 3] = ["v5.channel.k8s.io", "v4.channel.k8s.io", ""];
/// The websocket subprotocol of SPDY carried in a websocket.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Most ports one request forwards.
pub const PORTS_MAX: usize = 16;
/// Bytes read from a pod's connection at once.
const READ_BYTES: usize = 32 * 1024;
/// Messages queued for the client.
const QUEUE_MESSAGES: usize = 16;

/// The ports a request names (`ports=8080,9090`, or the parameter again).
pub fn parse_ports(q: &Query) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for p in q.all("ports").iter().flat_map(|v| v.split(',')) {
        let p = p.trim();
        match p.parse::<u16>() {
            Ok(n) if n > 0 => ports.push(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "port-forward: ports: {p:?} is not a port number (1-65535)"
                )))
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "port-forward: the `ports` query parameter names no port",
        ));
    }
    if ports.len() > PORTS_MAX {
        return Err(ApiError::bad_request(format!(
            "port-forward: at most {PORTS_MAX} ports at once"
        )));
    }
    Ok(ports)
}

/// The node a pod runs on.
pub async fn node_of(client: &Client, namespace: &str, pod: &str) -> Result<String, Failure> {
    let p = client
        .get(Kind::Pod, Some(namespace), pod)
        .await
        .map_err(|e| status::from_client(&e))?;
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            status::from_api(&ApiError::bad_request(format!(
                "pod {namespace}/{pod} is not scheduled to a node yet"
            )))
        })
}

/// A connection to `port` of the pod, through its agent.
pub async fn connect(
    client: &Client,
    node: &str,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<DuplexStream, ApiError> {
    let side = client
        .open_port_forward(node, namespace, pod, port)
        .await
        .map_err(|e| match e {
            kubus_bus::ClientError::Api(e) => e,
            other => ApiError::internal(other.to_string()),
        })?;
    Ok(side.pipe())
}

/// Answers a port-forward request.
pub async fn serve<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    req: Request<B>,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    if websocket::wanted(&req) {
        if websocket::Handshake::check(&req, &[TUNNEL_PROTOCOL]).is_ok() {
            return serve_tunnel(client, namespace, pod, req).await;
        }
        return serve_websocket(client, namespace, pod, req).await;
    }
    if crate::spdy::wanted(&req) {
        return crate::spdy::serve_port_forward(client, namespace, pod, req).await;
    }
    Err(status::from_api(&ApiError::bad_request(
        "port-forward through the Kubernetes API needs a websocket or SPDY/3.1 upgrade; \
         or use `kubus port-forward POD PORT`",
    )))
}

/// kubectl 1.31+: SPDY port-forward carried in a websocket's binary
/// messages.
async fn serve_tunnel<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    mut req: Request<B>,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    let handshake = websocket::Handshake::check(&req, &[TUNNEL_PROTOCOL])
        .map_err(|e| status::from_api(&ApiError::bad_request(format!("port-forward: {e}"))))?;
    node_of(client, namespace, pod).await?;
    let upgrade = hyper::upgrade::on(&mut req);
    let (client, namespace, pod) = (client.clone(), namespace.to_string(), pod.to_string());
    tokio::spawn(async move {
        if let Some(ws) = websocket::upgraded(upgrade).await {
            let session = kubus_spdy::Session::server(crate::spdy::tunnel(ws));
            crate::spdy::carry_port_forward(session, client, namespace, pod).await;
        }
    });
    Ok(handshake.response())
}

/// Answers a port-forward request over a websocket.
pub async fn serve_websocket<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    mut req: Request<B>,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    let api = |e: ApiError| status::from_api(&e);
    let ports = parse_ports(&Query::parse(req.uri().query())).map_err(api)?;
    let handshake = websocket::Handshake::check(&req, &PROTOCOLS)
        .map_err(|e| api(ApiError::bad_request(format!("port-forward: {e}"))))?;
    let node = node_of(client, namespace, pod).await?;
    let mut conns = Vec::with_capacity(ports.len());
    for &port in &ports {
        conns.push(
            connect(client, &node, namespace, pod, port)
                .await
                .map_err(api)?,
        );
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Some(ws) = websocket::upgraded(upgrade).await {
            carry_websocket(ws, ports, conns).await;
        }
    });
    Ok(handshake.response())
}

/// Carry each port's connection on its channels until the client goes or
/// every connection has ended.
async fn carry_websocket(ws: websocket::Upgraded, ports: Vec<u16>, conns: Vec<DuplexStream>) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE_MESSAGES);
    let mut writers = HashMap::new();
    let mut readers = Vec::new();
    for (i, (port, conn)) in ports.iter().zip(conns).enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let (mut read, write) = tokio::io::split(conn);
        writers.insert(data, write);
        let (tx, port) = (tx.clone(), *port);
        readers.push(tokio::spawn(async move {
            for ch in [data, error] {
                if tx
                    .send(websocket::frame(ch, &port.to_le_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let mut buf = vec![0u8; READ_BYTES];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.send(websocket::frame(data, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let text = format!("port {port}: {e}");
                        let _ = tx.send(websocket::frame(error, text.as_bytes())).await;
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    let to_client = async {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        // every connection ended
        let _ = sink
            .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), ""))
            .await;
        let _ = sink.close().await;
    };
    let from_client = async {
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                return;
            }
            let Some((&ch, data)) = m.as_payload().split_first() else {
                continue;
            };
            if let Some(w) = writers.get_mut(&ch) {
                if w.write_all(&Bytes::copy_from_slice(data)).await.is_err() {
                    writers.remove(&ch);
                }
            }
        }
    };
    tokio::select! {
        () = to_client => {}
        () = from_client => {}
    }
    for r in readers {
        r.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_numbers_and_bounded() {
        let q = Query::parse(Some("ports=8080,9090&ports=7"));
        assert_eq!(parse_ports(&q).expect("ports"), [8080, 9090, 7]);
        assert!(parse_ports(&Query::parse(Some("ports=http"))).is_err());
        assert!(parse_ports(&Query::parse(Some("ports=0"))).is_err());
        assert!(parse_ports(&Query::parse(None)).is_err());
        let many = (1..=17)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_ports(&Query::parse(Some(&format!("ports={many}")))).is_err());
    }
}
