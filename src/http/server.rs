//! The accept loop: HTTP/1.1 (with upgrades, for WebSockets) under a header read timeout that
//! also bounds idle keep-alive connections, a cap on concurrent connections, the peer address
//! for every request, and a graceful shutdown that lets in-flight requests finish and then
//! stops whatever is left at the deadline.
//!
//! With native TLS the handshake runs in the connection's own task, after its slot is taken
//! and under the header read timeout, so a slow or silent client delays nobody else.
//!
//! HTTP/2 is not offered in cleartext: protocol sniffing has no timer of its own, so a
//! client could hold a connection slot forever by sending nothing. Over TLS, ALPN offers
//! `http/1.1` only, for now.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::NetList;

/// Request extension, beside `ConnectInfo`, on every request that arrived over native TLS,
/// so that middleware can tell (for HSTS, for instance). Requests that a TLS-terminating
/// proxy forwarded do not carry it; whether to believe such a proxy is a separate decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls;

/// Request extension holding the connection's place under `max_connections` and
/// `max_connections_per_ip`. The connection's task ends when hyper hands an upgraded
/// connection over; a handler that upgrades (the events WebSocket) keeps a clone for as long
/// as the socket lives, so that upgraded connections count like any other.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<Slots>);

struct Slots {
    _global: tokio::sync::OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSlot")
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Open connections one client address may hold (0: no cap); an IPv6 client counts per
    /// /64. Peers in `trusted_proxies` are exempt: every client behind them shares their
    /// address.
    pub max_connections_per_ip: usize,
    pub trusted_proxies: NetList,
    pub shutdown_timeout: Duration,
}

/// Open connections per client address, so that one client cannot take every slot.
struct PerClient {
    cap: usize,
    exempt: NetList,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives the count back.
struct ClientSlot {
    owner: Arc<PerClient>,
    key: IpAddr,
}

impl PerClient {
    /// A slot for a connection from `ip`, `Ok(None)` when it is not counted, `Err` when the
    /// address already holds its share.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<ClientSlot>, ()> {
        if self.cap == 0 || self.exempt.contains(ip) {
            return Ok(None);
        }
        let key = super::ratelimit::bucket(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.cap {
            return Err(());
        }
        *count += 1;
        Ok(Some(ClientSlot {
            owner: self.clone(),
            key,
        }))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// stops accepting, lets open requests finish for up to `shutdown_timeout`, and aborts the
/// connections still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        // Our responses are small: copying head and body into one buffer and writing once
        // measured ~5% cheaper per request than a vectored write of the pieces.
        .writev(false);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let per_client = Arc::new(PerClient {
        cap: options.max_connections_per_ip,
        exempt: options.trusted_proxies.clone(),
        open: Mutex::new(HashMap::new()),
    });
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        // Waiting for a free slot before accepting leaves excess clients in the kernel's
        // backlog instead of holding sockets we cannot serve.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over its share: closed at once, and its global slot freed for others.
        let Ok(client_slot) = per_client.admit(peer.ip().to_canonical()) else {
            tracing::debug!(%peer, "connection refused: too many open from this address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, app, tls, mut stopping) =
            (http.clone(), app.clone(), tls.clone(), stopping.clone());
        let handshake_timeout = options.header_read_timeout;
        connections.spawn(async move {
            let slot = ConnectionSlot(Arc::new(Slots {
                _global: permit,
                _client: client_slot,
            }));
            let Some(acceptor) = tls else {
                serve_connection(&http, stream, app, peer, false, slot, &mut stopping).await;
                return;
            };
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
            let handshake = tokio::select! {
                handshake = handshake => handshake,
                // Nothing was asked of us yet: no request to finish.
                () = stopped(&mut stopping) => return,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    serve_connection(&http, stream, app, peer, true, slot, &mut stopping).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }

    drop(listener);
    let _ = stopping_tx.send(true);
    tracing::info!(
        open_connections = connections.len(),
        "stopped accepting; finishing in-flight requests"
    );
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout = ?options.shutdown_timeout,
            aborted = connections.len(),
            "shutdown timeout reached; aborting the remaining connections"
        );
        connections.shutdown().await;
    } else {
        tracing::info!("all connections closed");
    }
}

/// Serves HTTP/1.1 on one accepted connection until the client is done or shutdown begins.
async fn serve_connection<I>(
    http: &http1::Builder,
    io: I,
    app: Router,
    peer: SocketAddr,
    tls: bool,
    slot: ConnectionSlot,
    stopping: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: axum::http::Request<Incoming>| {
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo::<SocketAddr>(peer));
        extensions.insert(slot.clone());
        if tls {
            extensions.insert(Tls);
        }
        request
    });
    let connection = http
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(stopping) => {
            // Finish the request in flight, if any, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

/// Resolves once shutdown has begun.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
