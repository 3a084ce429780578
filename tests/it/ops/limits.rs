//! Request limits under a real burst, over real connections: slow requests (PATCH bodies the test
//! holds open) keep slots busy deterministically, so the 429 counts are exact with no sleeps.

use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use reqwest::StatusCode;

use crate::harness::*;

type Chunk = Result<Bytes, std::io::Error>;

/// A server with metrics on and `requests.write` / `requests.read` as given (flow YAML).
async fn limited(write: &str, read: &str) -> TestServer {
    TestServer::builder()
        .in_memory()
        .metrics(None)
        .config(&format!("requests:\n  write: {write}\n  read: {read}\n"))
        .start()
        .await
}

async fn gauge(s: &TestServer, series: &str) -> f64 {
    sample(&s.scrape().await, series).unwrap_or(-1.0)
}

/// Starts an upload in `burst/app`; its absolute URL.
async fn start_upload(s: &TestServer) -> String {
    s.url(&s.start_upload("burst/app").await)
}

/// A PATCH whose body the test holds open: the sender sends more bytes or is dropped to finish.
fn held_patch(
    c: &reqwest::Client,
    url: String,
    done: tokio::sync::mpsc::UnboundedSender<(usize, StatusCode, Option<String>, String)>,
    i: usize,
) -> mpsc::UnboundedSender<Chunk> {
    let (tx, rx) = mpsc::unbounded::<Chunk>();
    let _ = tx.unbounded_send(Ok(Bytes::from_static(b"first bytes ")));
    let req = c
        .patch(url)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(rx));
    tokio::spawn(async move {
        let (status, retry, body) = match req.send().await {
            Ok(r) => {
                let st = r.status();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (st, retry, r.text().await.unwrap_or_default())
            }
            Err(e) => (StatusCode::IM_A_TEAPOT, None, e.to_string()),
        };
        let _ = done.send((i, status, retry, body));
    });
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_max_running_plus_queue_gets_exactly_the_excess_429s() {
    // maxRunning 2 + maxInQueue 3 = 5 admitted; a burst of 12 writes -> exactly 7 refused.
    const RUNNING: usize = 2;
    const QUEUE: usize = 3;
    const BURST: usize = 12;
    let s = limited(
        "{maxRunning: 2, maxInQueue: 3, maxWaitInQueue: 0}",
        "{maxRunning: 1, maxInQueue: 0}",
    )
    .await;
    let c = client();
    let mut urls = Vec::new();
    for _ in 0..BURST {
        urls.push(start_upload(&s).await);
    }
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let senders: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(i, u)| held_patch(&c, u, done_tx.clone(), i))
        .collect();

    // Every refusal comes back at once; nothing else can finish while the bodies are held.
    let mut refused = Vec::new();
    for _ in 0..BURST - RUNNING - QUEUE {
        let (i, status, retry, body) = tokio::time::timeout(Duration::from_secs(30), done.recv())
            .await
            .expect("a refusal within 30 s")
            .expect("channel open");
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "request {i}: {body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("TOOMANYREQUESTS"), "{body}");
        refused.push(i);
    }
    assert_eq!(
        gauge(
            &s,
            "imageregistry_http_limiter_running_requests{limiter=\"write\"}"
        )
        .await,
        RUNNING as f64
    );
    assert_eq!(
        gauge(
            &s,
            "imageregistry_http_limiter_queued_requests{limiter=\"write\"}"
        )
        .await,
        QUEUE as f64
    );
    let text = s.scrape().await;
    assert_eq!(
        sample(
            &text,
            "imageregistry_http_limiter_rejected_requests_total{limiter=\"write\",reason=\"queue_full\"}"
        ),
        Some((BURST - RUNNING - QUEUE) as f64)
    );
    assert_eq!(
        sample(
            &text,
            "imageregistry_http_requests_total{code=\"429\",method=\"PATCH\"}"
        ),
        Some((BURST - RUNNING - QUEUE) as f64)
    );
    assert!(done.try_recv().is_err(), "only refusals may have finished");

    // Reads have their own limiter; probes and the base path are never limited.
    assert_eq!(
        c.get(s.url("/v2/")).send().await.unwrap().status(),
        StatusCode::OK
    );
    for p in ["/", "/healthz", "/healthz/ready"] {
        assert_eq!(
            c.get(s.url(p)).send().await.unwrap().status(),
            StatusCode::OK,
            "{p}"
        );
    }

    // Release every body: the admitted five finish, queued ones after running ones.
    for (i, tx) in senders.into_iter().enumerate() {
        if !refused.contains(&i) {
            let _ = tx.unbounded_send(Ok(Bytes::from_static(b"and the rest")));
        }
        drop(tx);
    }
    let mut ok = 0;
    for _ in 0..RUNNING + QUEUE {
        let (i, status, _, body) = tokio::time::timeout(Duration::from_secs(30), done.recv())
            .await
            .expect("the admitted requests finish")
            .expect("channel open");
        assert_eq!(status, StatusCode::ACCEPTED, "request {i}: {body}");
        ok += 1;
    }
    assert_eq!(ok, RUNNING + QUEUE);
    eventually(10, "limiter drains", || async {
        let t = s.scrape().await;
        (sample(
            &t,
            "imageregistry_http_limiter_running_requests{limiter=\"write\"}",
        ) == Some(0.0)
            && sample(
                &t,
                "imageregistry_http_limiter_queued_requests{limiter=\"write\"}",
            ) == Some(0.0))
        .then_some(())
    })
    .await;
    println!(
        "burst: {BURST} concurrent PATCHes, maxRunning {RUNNING}, maxInQueue {QUEUE}: {} x 429, {ok} x 202",
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_give_up_after_max_wait() {
    let s = limited(
        "{maxRunning: 1, maxInQueue: 5, maxWaitInQueue: 300ms}",
        "{maxRunning: 0}",
    )
    .await;
    let c = client();
    let hold_url = start_upload(&s).await;
    let wait_url = start_upload(&s).await;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let hold = held_patch(&c, hold_url, done_tx.clone(), 0);
    eventually(10, "the first PATCH runs", || async {
        (gauge(
            &s,
            "imageregistry_http_limiter_running_requests{limiter=\"write\"}",
        )
        .await
            == 1.0)
            .then_some(())
    })
    .await;
    let waiter = held_patch(&c, wait_url, done_tx, 1);
    let (i, status, retry, _) = tokio::time::timeout(Duration::from_secs(30), done.recv())
        .await
        .expect("the waiter gives up")
        .expect("open");
    assert_eq!(
        (i, status, retry.as_deref()),
        (1, StatusCode::TOO_MANY_REQUESTS, Some("1"))
    );
    assert_eq!(
        gauge(
            &s,
            "imageregistry_http_limiter_rejected_requests_total{limiter=\"write\",reason=\"timeout\"}"
        )
        .await,
        1.0
    );
    drop(waiter);
    drop(hold);
    let (i, status, _, _) = done.recv().await.expect("open");
    assert_eq!((i, status), (0, StatusCode::ACCEPTED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_leaves_the_queue() {
    let s = limited("{maxRunning: 1, maxInQueue: 1}", "{maxRunning: 0}").await;
    let c = client();
    let hold_url = start_upload(&s).await;
    let gone_url = start_upload(&s).await;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let hold = held_patch(&c, hold_url, done_tx, 0);
    eventually(10, "the first PATCH runs", || async {
        (gauge(
            &s,
            "imageregistry_http_limiter_running_requests{limiter=\"write\"}",
        )
        .await
            == 1.0)
            .then_some(())
    })
    .await;
    // A queued request whose client disconnects (its own client: dropping it closes the socket).
    let gone_client = client();
    let (tx, rx) = mpsc::unbounded::<Chunk>();
    let _ = tx.unbounded_send(Ok(Bytes::from_static(b"x")));
    let gone = tokio::spawn(
        gone_client
            .patch(gone_url)
            .body(reqwest::Body::wrap_stream(rx))
            .send(),
    );
    eventually(10, "the second PATCH is queued", || async {
        (gauge(
            &s,
            "imageregistry_http_limiter_queued_requests{limiter=\"write\"}",
        )
        .await
            == 1.0)
            .then_some(())
    })
    .await;
    gone.abort();
    let _ = gone.await;
    drop(tx);
    drop(gone_client);
    eventually(10, "the queue empties", || async {
        let t = s.scrape().await;
        (sample(&t, "imageregistry_http_limiter_queued_requests{limiter=\"write\"}") == Some(0.0)
            && sample(
                &t,
                "imageregistry_http_limiter_rejected_requests_total{limiter=\"write\",reason=\"canceled\"}",
            ) == Some(1.0))
        .then_some(())
    })
    .await;
    drop(hold);
    let (_, status, _, _) = done.recv().await.expect("open");
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_holds_its_read_slot_until_the_body_is_sent() {
    let s = limited("{maxRunning: 0}", "{maxRunning: 1, maxInQueue: 0}").await;
    let c = client();
    // A blob bigger than the socket buffers, so an unread download stays in flight.
    let blob: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&blob);
    let r = c
        .post(s.url(&format!("/v2/big/blob/blobs/uploads/?digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let slow = c
        .get(s.url(&format!("/v2/big/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::OK);
    // Headers are in, the body is not read: the slot is still taken.
    let r = c.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = c
        .head(s.url(&format!("/v2/big/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    for p in [
        "/",
        "/healthz",
        "/healthz/ready",
        "/readyz",
        "/extensions/v2/metrics",
    ] {
        assert_eq!(
            c.get(s.url(p)).send().await.unwrap().status(),
            StatusCode::OK,
            "{p} is never limited"
        );
    }
    let body = slow.bytes().await.unwrap();
    assert_eq!(body.len(), 32 << 20);
    eventually(10, "the slot is free again", || async {
        let r = c.get(s.url("/v2/")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}
