//! Request limits (`requests.read` / `requests.write`), with the OpenShift registry's
//! `maxconnections` semantics:
//!
//! - Two independent limiters: read = `GET`, `HEAD`, `OPTIONS`; write = every other method.
//! - Each has `maxRunning` slots, a queue of `maxInQueue` places and a `maxWaitInQueue` deadline
//!   (0 = wait forever). `maxRunning <= 0` turns that limiter off.
//! - A request takes a free slot at once; else it joins the queue; a full queue (or a zero-sized
//!   one) rejects it at once; a queued request is rejected when its wait expires or its client goes
//!   away (its future is dropped: nothing can be answered then, but it leaves the queue and counts).
//! - Rejection: `429 TOOMANYREQUESTS` with `Retry-After: 1`.
//! - The slot is held until the response body has been written (or dropped), so a long download
//!   counts for its whole length, as in the Go registry where the handler writes the body.
//! - Exempt paths ([`super::is_exempt`]): `/`, `/healthz`, readiness and metrics.
//!
//! Waiters are served first in, first out (tokio's semaphore is fair). Gauges
//! `imageregistry_http_limiter_{running,queued}_requests{limiter}` and the counter
//! `imageregistry_http_limiter_rejected_requests_total{limiter,reason}` follow every change.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body::Body as _;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::body::Observed;
use crate::config::{LimitConfig, RequestsConfig};
use crate::http::ApiError;
use crate::ops::metrics::Metrics;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    QueueFull,
    Timeout,
    Canceled,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::Timeout => "timeout",
            Rejection::Canceled => "canceled",
        }
    }
}

/// One limiter (read or write).
pub struct Limiter {
    name: &'static str,
    slots: Arc<Semaphore>,
    max_queue: usize,
    queued: AtomicUsize,
    max_wait: Option<Duration>,
    running_gauge: IntGauge,
    queued_gauge: IntGauge,
    metrics: Arc<Metrics>,
}

/// A running slot; released on drop.
pub struct Permit {
    _slot: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Limiter {
    /// A limiter, or `None` when `maxRunning <= 0` (off).
    pub fn new(name: &'static str, c: &LimitConfig, metrics: Arc<Metrics>) -> Option<Arc<Limiter>> {
        if c.maxrunning <= 0 {
            return None;
        }
        let running = usize::try_from(c.maxrunning)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Some(Arc::new(Limiter {
            name,
            slots: Arc::new(Semaphore::new(running)),
            max_queue: usize::try_from(c.maxinqueue.max(0)).unwrap_or(usize::MAX),
            queued: AtomicUsize::new(0),
            max_wait: (!c.maxwaitinqueue.is_zero()).then_some(c.maxwaitinqueue),
            running_gauge: metrics.limiter_running.with_label_values(&[name]),
            queued_gauge: metrics.limiter_queued.with_label_values(&[name]),
            metrics,
        }))
    }

    fn rejected(&self, r: Rejection) -> IntCounter {
        self.metrics
            .limiter_rejected
            .with_label_values(&[self.name, r.label()])
    }

    fn permit(&self, slot: OwnedSemaphorePermit) -> Permit {
        self.running_gauge.inc();
        Permit {
            _slot: slot,
            gauge: self.running_gauge.clone(),
        }
    }

    /// Waits for a running slot as the module docs say.
    pub async fn acquire(&self) -> Result<Permit, Rejection> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(self.permit(slot));
        }
        // Join the queue if there is a place.
        let mut n = self.queued.load(Ordering::Acquire);
        loop {
            if n >= self.max_queue {
                self.rejected(Rejection::QueueFull).inc();
                return Err(Rejection::QueueFull);
            }
            match self
                .queued
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        self.queued_gauge.inc();
        let mut place = QueuePlace {
            limiter: self,
            outcome: None,
        };
        let wait = self.slots.clone().acquire_owned();
        let got = match self.max_wait {
            Some(d) => tokio::time::timeout(d, wait).await.ok(),
            None => Some(wait.await),
        };
        match got {
            Some(Ok(slot)) => {
                place.outcome = Some(Ok(()));
                Ok(self.permit(slot))
            }
            // Timed out (the semaphore is never closed).
            _ => {
                place.outcome = Some(Err(Rejection::Timeout));
                Err(Rejection::Timeout)
            }
        }
    }
}

/// A place in the queue: leaving it (admitted, timed out, or dropped because the client went away)
/// updates the count and the metrics exactly once.
struct QueuePlace<'a> {
    limiter: &'a Limiter,
    outcome: Option<Result<(), Rejection>>,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.limiter.queued.fetch_sub(1, Ordering::AcqRel);
        self.limiter.queued_gauge.dec();
        match self.outcome {
            Some(Ok(())) => {}
            Some(Err(r)) => self.limiter.rejected(r).inc(),
            None => self.limiter.rejected(Rejection::Canceled).inc(),
        }
    }
}

/// The tower layer: picks the limiter by method, skips exempt paths.
#[derive(Clone, Default)]
pub struct LimitLayer {
    read: Option<Arc<Limiter>>,
    write: Option<Arc<Limiter>>,
}

impl LimitLayer {
    pub fn new(c: &RequestsConfig, metrics: &Arc<Metrics>) -> LimitLayer {
        LimitLayer {
            read: Limiter::new("read", &c.read, metrics.clone()),
            write: Limiter::new("write", &c.write, metrics.clone()),
        }
    }

    /// Whether any limiter is on.
    pub fn is_active(&self) -> bool {
        self.read.is_some() || self.write.is_some()
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            inner,
            read: self.read.clone(),
            write: self.write.clone(),
        }
    }
}

/// The service [`LimitLayer`] makes.
#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    read: Option<Arc<Limiter>>,
    write: Option<Arc<Limiter>>,
}

/// Whether a method is a read for the limiters.
pub fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S> Service<Request> for Limit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let limiter = if super::is_exempt(req.uri().path()) {
            None
        } else if is_read(req.method()) {
            self.read.clone()
        } else {
            self.write.clone()
        };
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Some(limiter) = limiter else {
                return inner.call(req).await;
            };
            let (parts, mut body) = req.into_parts();
            let mut early = Vec::new();
            let admitted = acquire_watching(&limiter, &mut body, &mut early).await;
            let req = Request::from_parts(parts, rebuild_body(early, body));
            match admitted {
                Ok(permit) => {
                    let resp = inner.call(req).await?;
                    Ok(resp.map(|b| Observed::wrap(b, move |_, _| drop(permit))))
                }
                Err(r) => {
                    tracing::debug!(
                        limiter = limiter.name,
                        reason = r.label(),
                        "request refused"
                    );
                    Ok(ApiError::too_many_requests().into_response())
                }
            }
        })
    }
}

/// How much of a queued request's body may be read ahead while it waits (per request).
const READ_AHEAD: usize = 64 * 1024;

/// Waits for a slot while watching the request body: HTTP/1 servers notice a client that went away
/// only by reading its socket, so while queued the body is read ahead (at most [`READ_AHEAD`] bytes,
/// kept in `early`); a broken body means the client is gone and the wait ends as `Canceled`.
/// Requests without a body are not watched (their client is noticed when the answer is written).
async fn acquire_watching(
    limiter: &Limiter,
    body: &mut Body,
    early: &mut Vec<Bytes>,
) -> Result<Permit, Rejection> {
    use http_body_util::BodyExt as _;
    let acquire = limiter.acquire();
    tokio::pin!(acquire);
    let mut watching = !body.is_end_stream();
    let mut buffered = 0usize;
    loop {
        tokio::select! {
            biased;
            r = &mut acquire => return r,
            frame = body.frame(), if watching => match frame {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        buffered += d.len();
                        early.push(d);
                    }
                    watching = buffered < READ_AHEAD;
                }
                // Dropping `acquire` here leaves the queue and counts the request as canceled.
                Some(Err(_)) => return Err(Rejection::Canceled),
                None => watching = false,
            },
        }
    }
}

/// The body a handler sees: the bytes read ahead, then the rest.
fn rebuild_body(early: Vec<Bytes>, rest: Body) -> Body {
    if early.is_empty() {
        return rest;
    }
    let head = futures::stream::iter(early.into_iter().map(Ok::<_, axum::Error>));
    if rest.is_end_stream() {
        Body::from_stream(head)
    } else {
        Body::from_stream(head.chain(rest.into_data_stream()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(run: i64, queue: i64, wait_ms: u64) -> LimitConfig {
        LimitConfig {
            maxrunning: run,
            maxinqueue: queue,
            maxwaitinqueue: Duration::from_millis(wait_ms),
        }
    }

    #[test]
    fn off_when_max_running_is_not_positive() {
        let m = Arc::new(Metrics::new());
        assert!(Limiter::new("read", &cfg(0, 10, 0), m.clone()).is_none());
        assert!(Limiter::new("read", &cfg(-1, 10, 0), m.clone()).is_none());
        assert!(Limiter::new("read", &cfg(1, 0, 0), m).is_some());
    }

    #[tokio::test]
    async fn slots_then_queue_then_reject() {
        let m = Arc::new(Metrics::new());
        let l = Limiter::new("write", &cfg(2, 1, 0), m.clone()).unwrap();
        let a = l.acquire().await.unwrap();
        let _b = l.acquire().await.unwrap();
        assert_eq!(m.limiter_running.with_label_values(&["write"]).get(), 2);
        // The third waits in the queue; the fourth finds it full.
        let l2 = l.clone();
        let queued = tokio::spawn(async move { l2.acquire().await.map(|_| ()) });
        while m.limiter_queued.with_label_values(&["write"]).get() != 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(l.acquire().await.err(), Some(Rejection::QueueFull));
        drop(a);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert_eq!(m.limiter_queued.with_label_values(&["write"]).get(), 0);
        let rejected = |r| m.limiter_rejected.with_label_values(&["write", r]).get();
        assert_eq!(rejected("queue_full"), 1);
    }

    #[tokio::test]
    async fn zero_queue_rejects_at_once_and_wait_expires() {
        let m = Arc::new(Metrics::new());
        let l = Limiter::new("read", &cfg(1, 0, 0), m.clone()).unwrap();
        let _a = l.acquire().await.unwrap();
        assert_eq!(l.acquire().await.err(), Some(Rejection::QueueFull));

        let l = Limiter::new("write", &cfg(1, 5, 20), m.clone()).unwrap();
        let _a = l.acquire().await.unwrap();
        assert_eq!(l.acquire().await.err(), Some(Rejection::Timeout));
        assert_eq!(
            m.limiter_rejected
                .with_label_values(&["write", "timeout"])
                .get(),
            1
        );
        assert_eq!(m.limiter_queued.with_label_values(&["write"]).get(), 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let m = Arc::new(Metrics::new());
        let l = Limiter::new("write", &cfg(1, 1, 0), m.clone()).unwrap();
        let a = l.acquire().await.unwrap();
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire().await.map(|_| ()) });
        while m.limiter_queued.with_label_values(&["write"]).get() != 1 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(m.limiter_queued.with_label_values(&["write"]).get(), 0);
        assert_eq!(
            m.limiter_rejected
                .with_label_values(&["write", "canceled"])
                .get(),
            1
        );
        // The place is free again.
        let l3 = l.clone();
        let again = tokio::spawn(async move { l3.acquire().await.map(|_| ()) });
        while m.limiter_queued.with_label_values(&["write"]).get() != 1 {
            tokio::task::yield_now().await;
        }
        drop(a);
        assert_eq!(again.await.unwrap(), Ok(()));
    }
}
