//! The accept loop: plain HTTP or TLS, HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge in
//! clear), the client address put into request extensions (`ConnectInfo<SocketAddr>`), and graceful
//! shutdown with a drain deadline.
//!
//! Shutdown contract: when `shutdown` completes, the listener is closed at once (new connections are
//! refused), `on_shutdown` runs (readiness turns unready), idle keep-alive connections close, and
//! requests in flight may finish for up to `drain`. After that, request bodies still being read
//! fail (handlers see a broken body, as if the client had gone: an upload persists what arrived),
//! handlers get [`CUT_GRACE`] to answer, and `serve` returns, dropping whatever is left. An upload cut
//! that way keeps the bytes already received; the client continues it later (upload status, then
//! PATCH from the reported offset) on any process sharing the storage and secret.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt as _;

use crate::net::tls::Tls;

/// How long handlers get to finish after the drain deadline cut their request bodies.
pub const CUT_GRACE: Duration = Duration::from_secs(5);

/// Largest HTTP/1 read buffer of a connection (hyper's default is ~400 KiB).
const MAX_READ_BUF: usize = 128 << 10;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    on_shutdown: impl FnOnce(),
) {
    let graceful = GracefulShutdown::new();
    let cut = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            remote,
            cut: cut.clone(),
            watcher: graceful.watcher(),
        };
        tokio::spawn(conn.run(stream, tls.clone()));
    }
    drop(listener);
    on_shutdown();
    drain_connections(graceful, cut, drain).await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: Router,
    remote: SocketAddr,
    /// Cancelled at the drain deadline: request bodies fail from then on.
    cut: CancellationToken,
    watcher: Watcher,
}

impl Connection {
    /// Completes the TLS handshake if there is one, then serves HTTP/1.1 or HTTP/2 until the
    /// connection ends (or the graceful shutdown closes it).
    async fn run(self, stream: TcpStream, tls: Option<Tls>) {
        let Some(tls) = tls else {
            return self.serve_http(stream).await;
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
            Ok(Ok(s)) => self.serve_http(s).await,
            Ok(Err(e)) => {
                tracing::debug!(remote = %self.remote, error = %e, "TLS handshake failed")
            }
            Err(_) => tracing::debug!(remote = %self.remote, "TLS handshake timed out"),
        }
    }

    async fn serve_http<IO>(self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            remote,
            cut,
            watcher,
        } = self;
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            let cut = Box::pin(cut.clone().cancelled_owned());
            app.clone()
                .oneshot(req.map(|inner| Body::new(Cuttable { inner, cut })))
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Bounds the read buffer of a connection (and so the size of request body chunks):
        // memory per upload in flight stays small; larger buffers measured no faster.
        builder.http1().max_buf_size(MAX_READ_BUF);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

/// After the listener closed: waits up to `drain` for the connections to finish, then cuts the
/// request bodies still being read and gives handlers [`CUT_GRACE`] to answer.
async fn drain_connections(graceful: GracefulShutdown, cut: CancellationToken, drain: Duration) {
    tracing::info!(
        drain_timeout = ?drain,
        "shutting down: not accepting connections; draining requests in flight"
    );
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    tokio::select! {
        () = &mut drained => {
            tracing::info!("all connections drained");
            return;
        }
        () = tokio::time::sleep(drain) => {}
    }
    tracing::warn!(
        drain_timeout = ?drain,
        "drain timeout: cutting the request bodies still being read"
    );
    cut.cancel();
    tokio::select! {
        () = &mut drained => tracing::info!("connections closed after the cut"),
        () = tokio::time::sleep(CUT_GRACE) => {
            tracing::warn!("abandoning the connections still open")
        }
    }
}

/// A request body that fails once the drain deadline passes.
struct Cuttable {
    inner: Incoming,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl http_body::Body for Cuttable {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("the server is shutting down".into())));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as Self::Error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The local address of a listener, for logs.
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
