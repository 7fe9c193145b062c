//! The listener: TLS (rustls), then HTTP/2 or HTTP/1.1 (hyper), one task
//! per connection, at most [`crate::CONNECTIONS_MAX`] at once; each
//! request goes to [`crate::handlers::handle`] with the user of the
//! certificate the client showed (one the cluster's CA signed): its CN and
//! O, sent to the store as the user each request acts for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubus_bus::Client;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::handlers::{self, State};

/// What can stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the API listener: {0}")]
    Listener(std::io::Error),
}

/// A running gateway.
pub struct Gateway {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// How long a stopping gateway waits for its accept loop.
const STOP_WAIT: Duration = Duration::from_secs(2);

impl Gateway {
    /// Serves on `listener` (already bound: the caller knows the port)
    /// with `tls`, answering from `client`, on the current tokio runtime.
    pub fn start(
        client: Client,
        listener: std::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Gateway, GatewayError> {
        listener
            .set_nonblocking(true)
            .map_err(GatewayError::Listener)?;
        let address = listener.local_addr().map_err(GatewayError::Listener)?;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(GatewayError::Listener)?;
        let server_address = match address.ip() {
            ip if ip.is_unspecified() => format!("127.0.0.1:{}", address.port()),
            _ => address.to_string(),
        };
        let state = Arc::new(State::new(client, server_address));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, tls, state, stopped));
        info!(%address, "Kubernetes API gateway serving");
        Ok(Gateway {
            address,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting and ends open connections (bounded).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(STOP_WAIT, self.task).await;
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = Arc::new(Semaphore::new(crate::CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            _ = stopped.changed() => return,
            p = Arc::clone(&connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stopped.changed() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, state, mut stopped) =
            (acceptor.clone(), Arc::clone(&state), stopped.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(crate::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // the CA checked the certificate; its subject names the user
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|cert| crate::pki::user_of(cert.as_ref()));
            let state = Arc::new(match user {
                Some(user) => state.for_user(user),
                None => (*state).clone(),
            });
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handlers::handle(&state, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .max_concurrent_streams(crate::HTTP2_STREAMS_MAX);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "API connection ended");
                    }
                }
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(STOP_WAIT, conn).await;
                }
            }
        });
    }
}
