//! The accept loop: plain HTTP or TLS, HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge in
//! clear), the client address put into request extensions (`ConnectInfo<SocketAddr>`), and graceful
//! shutdown with a drain deadline.
//!
//! Connection limits ([`ConnectionLimits`], keys `http.*`):
//! - at most `max_connections` connections are served at once; beyond that the accept loop stops
//!   accepting, so further connections wait in the kernel's listen backlog (no descriptor, no
//!   memory here) until one closes;
//! - before its first request a connection has `header_read_timeout` (from the accept) to
//!   complete the TLS handshake and a request head; HTTP/1 heads after that have the same limit
//!   (hyper's `header_read_timeout`, which also counts the wait for the next request of an idle
//!   keep-alive connection);
//! - a connection with no request in flight and no bytes moving for `idle_timeout` is closed;
//! - a request body that delivers nothing for `body_timeout` while its handler waits for it fails
//!   like a client that went away (an upload keeps what arrived and can be resumed);
//! - HTTP/1 heads: the read buffer bounds them (hyper answers a bare 431 beyond it); the framing
//!   layer answers 431/414 with the spec's JSON below that; at most 100 header fields;
//! - HTTP/2: `h2_max_concurrent_streams` streams per connection, `h2_max_header_list_size`, and
//!   hyper's reset-flood guards (20 pending accept resets, 1024 locally caused resets: beyond
//!   them the connection is closed with GOAWAY).
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt as _;

use crate::config::ConnectionLimits;
use crate::net::tls::Tls;

/// How long handlers get to finish after the drain deadline cut their request bodies.
pub const CUT_GRACE: Duration = Duration::from_secs(5);

/// Largest HTTP/1 read buffer of a connection (hyper's default is ~400 KiB).
const MAX_READ_BUF: usize = 128 << 10;

/// How long a TLS handshake may take (at most; `header_read_timeout` may be shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Descriptors kept free for storage files, outbound clients and logs when `max_connections` is
/// derived from the open-file limit.
const FD_RESERVE: usize = 256;

/// The most connections served at once: `limits.max_connections`, else the soft open-file limit
/// minus [`FD_RESERVE`] (at least 64).
pub fn max_connections(limits: &ConnectionLimits) -> usize {
    limits
        .max_connections
        .unwrap_or_else(|| open_file_limit().map_or(1024, |n| n.saturating_sub(FD_RESERVE).max(64)))
}

/// The soft open-file limit of this process (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The hyper connection builder for these limits (built once, cloned per connection).
fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The read buffer bounds the request head (beyond it hyper answers a bare 431) and the size of
    // request body chunks: memory per upload in flight stays small; larger buffers measured no
    // faster. It leaves room above `max_header_bytes` so the framing layer answers with JSON.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_READ_BUF.max(2 * limits.max_header_bytes));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024);
    b
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    on_shutdown: impl FnOnce(),
) {
    let graceful = GracefulShutdown::new();
    let cut = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(max_connections(&limits)));
    let builder = Arc::new(builder(&limits));
    tokio::pin!(shutdown);
    loop {
        // At the connection cap, stop accepting: new connections wait in the listen backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
            limits,
            builder: builder.clone(),
            activity: Arc::new(Activity::new()),
            _slot: slot,
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
    limits: ConnectionLimits,
    builder: Arc<auto::Builder<TokioExecutor>>,
    activity: Arc<Activity>,
    /// One of the `max_connections` slots, released when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Completes the TLS handshake if there is one, then serves HTTP/1.1 or HTTP/2 until the
    /// connection ends (or the graceful shutdown closes it, or a timeout of the watchdog).
    async fn run(self, stream: TcpStream, tls: Option<Tls>) {
        let remote = self.remote;
        let watchdog = watchdog(self.activity.clone(), self.limits);
        let serve = async move {
            let Some(tls) = tls else {
                return self.serve_http(stream).await;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
                Ok(Ok(s)) => self.serve_http(s).await,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        };
        tokio::select! {
            () = serve => {}
            why = watchdog => tracing::debug!(%remote, why, "closing the connection"),
        }
    }

    async fn serve_http<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            remote,
            cut,
            watcher,
            limits,
            builder,
            activity,
            _slot,
        } = self;
        let io = Tracked {
            inner: io,
            activity: activity.clone(),
        };
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = InFlight::start(activity.clone());
            let (mut parts, inner) = req.into_parts();
            parts.extensions.insert(ConnectInfo(remote));
            let body = Body::new(Cuttable {
                inner,
                cut: Box::pin(cut.clone().cancelled_owned()),
                stall: limits.body_timeout.map(Stall::new),
            });
            let answer = app.clone().oneshot(hyper::Request::from_parts(parts, body));
            async move {
                let resp = answer.await?;
                // The request counts as in flight until its response body is sent or dropped.
                Ok::<_, std::convert::Infallible>(resp.map(|inner| {
                    Body::new(Guarded {
                        inner,
                        _guard: guard,
                    })
                }))
            }
        });
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

/// What the watchdog of a connection knows: when bytes last moved, how many requests are in
/// flight and whether one has started yet.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Resolves when the connection should be closed: no request head within
/// `header_read_timeout` of the accept (TLS handshake and protocol detection included), or no
/// request in flight and no bytes moving for `idle_timeout`. Sleeps until the next possible
/// deadline, so an idle connection costs one timer wake-up per period.
async fn watchdog(activity: Arc<Activity>, limits: ConnectionLimits) -> &'static str {
    loop {
        let mut wait: Option<Duration> = None;
        if activity.requests.load(Ordering::Relaxed) == 0 {
            if let Some(first) = limits.header_read_timeout {
                let elapsed = activity.start.elapsed();
                if elapsed >= first {
                    return "no request head within the header read timeout";
                }
                wait = Some(first - elapsed);
            }
        }
        if let Some(idle) = limits.idle_timeout {
            let next = if activity.in_flight.load(Ordering::Relaxed) > 0 {
                idle
            } else {
                let quiet = activity.idle_for();
                if quiet >= idle {
                    return "idle timeout";
                }
                idle - quiet
            };
            wait = Some(wait.map_or(next, |w| w.min(next)));
        }
        match wait {
            Some(w) => tokio::time::sleep(w).await,
            None => return std::future::pending().await,
        }
    }
}

/// Counts a request in flight on its connection until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO, noting every read and write in its [`Activity`].
struct Tracked<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `http.bodytimeout`: how long a request body may deliver nothing while it is polled.
struct Stall {
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Whether `sleep` runs for the current wait (re-armed after every frame).
    armed: bool,
}

impl Stall {
    fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }
}

/// A request body that fails once the drain deadline passes, or when it stalls longer than
/// `http.bodytimeout` (both look to the handler like a client that went away).
struct Cuttable {
    inner: Incoming,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    stall: Option<Stall>,
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
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {}
            ready => {
                if let Some(s) = &mut this.stall {
                    s.armed = false;
                }
                return ready.map_err(|e| Box::new(e) as Self::Error);
            }
        }
        if let Some(s) = &mut this.stall {
            if !s.armed {
                let deadline = tokio::time::Instant::now() + s.limit;
                s.sleep.as_mut().reset(deadline);
                s.armed = true;
            }
            if s.sleep.as_mut().poll(cx).is_ready() {
                let msg = format!(
                    "the request body sent nothing for {}s (http.bodytimeout)",
                    s.limit.as_secs()
                );
                tracing::info!("{msg}");
                return Poll::Ready(Some(Err(msg.into())));
            }
        }
        Poll::Pending
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
