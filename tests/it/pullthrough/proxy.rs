//! A small HTTP proxy in front of an upstream registry: forwards every request (bodies streamed
//! both ways), records each as `METHOD /path`, and injects trouble on demand: a status for every
//! answer (429 with `Retry-After`, 503), a delay before blob bodies, or an outage (the port
//! closed: connections refused).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Shared {
    log: Vec<String>,
    /// Answer every request with this status (and `Retry-After: 7` for 429) instead of forwarding.
    fail: Option<StatusCode>,
    /// Wait this long before forwarding a blob `GET` (lets concurrent clients pile up).
    blob_delay: Duration,
    /// The same before every manifest request.
    manifest_delay: Duration,
    /// Blob `GET` bodies stop after this many bytes until it is lifted (`None`: no hold).
    hold_after: Option<u64>,
    /// Blob body bytes forwarded (what the cache fetched).
    blob_bytes: u64,
}

#[derive(Clone)]
struct Ctx {
    target: String,
    client: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub url: String,
    ctx: Ctx,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

async fn forward(State(ctx): State<Ctx>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (fail, delay, mdelay) = {
        let mut s = ctx.shared.lock().unwrap();
        s.log.push(format!("{} {}", req.method(), req.uri().path()));
        (s.fail, s.blob_delay, s.manifest_delay)
    };
    if req.uri().path().contains("/manifests/") && !mdelay.is_zero() {
        tokio::time::sleep(mdelay).await;
    }
    if let Some(status) = fail {
        let mut r = (
            status,
            [("content-type", "application/json")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}"#,
        )
            .into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("7"));
        }
        return r;
    }
    if req.method() == "GET" && req.uri().path().contains("/blobs/") && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = req.into_parts();
    let mut rb = ctx
        .client
        .request(parts.method.clone(), format!("{}{}", ctx.target, path));
    for (k, v) in &parts.headers {
        if k != "host" {
            rb = rb.header(k, v);
        }
    }
    rb = rb.body(reqwest::Body::wrap_stream(
        body.into_data_stream().map_err(std::io::Error::other),
    ));
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != "transfer-encoding" && k != "connection" {
            out = out.header(k, v);
        }
    }
    let blob = parts.method == "GET" && parts.uri.path().contains("/blobs/");
    if !blob {
        return out
            .body(Body::from_stream(resp.bytes_stream()))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    // Blob bodies: counted, in pieces of at most 64 KiB, each waiting while a hold is in place.
    let shared = ctx.shared.clone();
    let pieces = resp
        .bytes_stream()
        .map_ok(|b| {
            let n = b.len().div_ceil(64 << 10).max(1);
            futures::stream::iter(
                (0..n)
                    .map(|i| {
                        Ok::<_, reqwest::Error>(
                            b.slice(i * (64 << 10)..((i + 1) * (64 << 10)).min(b.len())),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .try_flatten();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body = pieces.and_then(move |piece| {
        let shared = shared.clone();
        let sent = sent.clone();
        async move {
            let at = sent.load(std::sync::atomic::Ordering::SeqCst);
            loop {
                let hold = shared.lock().unwrap().hold_after;
                match hold {
                    Some(h) if at + piece.len() as u64 > h => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    _ => break,
                }
            }
            sent.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::SeqCst);
            shared.lock().unwrap().blob_bytes += piece.len() as u64;
            Ok(piece)
        }
    });
    out.body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

impl FaultProxy {
    /// A proxy in front of `target` (`http://host:port`).
    pub async fn start(target: &str) -> FaultProxy {
        let ctx = Ctx {
            target: target.trim_end_matches('/').to_owned(),
            client: crate::harness::client(),
            shared: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let p = FaultProxy {
            addr,
            url: format!("http://{addr}"),
            ctx,
            task: Mutex::new(None),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(self.ctx.clone());
        // Connections live in a set owned by the accept loop: aborting the loop drops them all,
        // so an outage also cuts the kept-alive connections of the registry's client.
        let t = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                conns.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        *self.task.lock().unwrap() = Some(t);
    }

    /// The requests seen so far, as `METHOD /path`.
    pub fn log(&self) -> Vec<String> {
        self.ctx.shared.lock().unwrap().log.clone()
    }

    /// How many requests so far start with `prefix` (`GET /v2/a/blobs/`).
    pub fn count(&self, prefix: &str) -> usize {
        self.log().iter().filter(|l| l.starts_with(prefix)).count()
    }

    pub fn clear(&self) {
        self.ctx.shared.lock().unwrap().log.clear();
    }

    /// Answer everything with `status` (None: forward again).
    pub fn fail_with(&self, status: Option<StatusCode>) {
        self.ctx.shared.lock().unwrap().fail = status;
    }

    pub fn delay_blobs(&self, d: Duration) {
        self.ctx.shared.lock().unwrap().blob_delay = d;
    }

    /// Holds blob bodies after `n` bytes each (`None`: lets them go on).
    pub fn hold_blobs_after(&self, n: Option<u64>) {
        self.ctx.shared.lock().unwrap().hold_after = n;
    }

    /// Blob body bytes forwarded so far.
    pub fn blob_bytes(&self) -> u64 {
        self.ctx.shared.lock().unwrap().blob_bytes
    }

    pub fn delay_manifests(&self, d: Duration) {
        self.ctx.shared.lock().unwrap().manifest_delay = d;
    }

    /// Closes the port (`true`: connections are refused) or listens on it again.
    pub async fn outage(&self, down: bool) {
        if down {
            if let Some(t) = self.task.lock().unwrap().take() {
                t.abort();
            }
            // Let the aborted task drop its listener.
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
            self.serve(listener);
        }
    }
}
