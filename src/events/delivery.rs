//! One endpoint's delivery: reads the journal after its cursor, skips what the endpoint ignores,
//! posts the rest as one envelope (at most [`MAX_EVENTS`] events), and moves the cursor when the
//! receiver answers 2xx or 3xx. Order is the journal's. A failure is retried at once until
//! `threshold` failures in a row, then every `backoff` (distribution's retrying sink), forever:
//! the spool's bound, not the retries, limits what waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::journal::{ReadPos, Record, Shared};
use crate::config::notifications::EndpointConfig;
use crate::net::outbound::Outbound;
use crate::ops::metrics::NotificationMetrics;

/// Events in one envelope at most.
pub const MAX_EVENTS: usize = 32;
/// Pause between attempts below the threshold (keeps a refused connection from spinning).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

pub struct Delivery {
    name: String,
    url: String,
    client: reqwest::Client,
    /// `headers` of the endpoint (set per request: default headers keep one value per name).
    headers: HeaderMap,
    media_type: &'static str,
    threshold: u32,
    backoff: Duration,
    ignored_media_types: Vec<String>,
    ignored_actions: Vec<String>,
    shared: Arc<Shared>,
    cursor: Arc<AtomicU64>,
    metrics: NotificationMetrics,
}

impl Delivery {
    pub fn new(
        ep: &EndpointConfig,
        outbound: &Outbound,
        media_type: &'static str,
        shared: Arc<Shared>,
        cursor: Arc<AtomicU64>,
        metrics: NotificationMetrics,
    ) -> Result<Delivery, String> {
        let url = url::Url::parse(&ep.url).map_err(|e| format!("{}: {e}", ep.name))?;
        let mut headers = HeaderMap::new();
        for (k, vs) in &ep.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("{}: header {k}: {e}", ep.name))?;
            for v in vs {
                let v = HeaderValue::from_str(v)
                    .map_err(|e| format!("{}: header {k}: {e}", ep.name))?;
                headers.append(name.clone(), v);
            }
        }
        let client = outbound
            .client_builder_for(url.host_str().unwrap_or_default(), url.port())
            .timeout(ep.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("{}: {e}", ep.name))?;
        let mut ignored_media_types = ep.ignoredmediatypes.clone();
        ignored_media_types.extend(ep.ignore.mediatypes.iter().cloned());
        for r in ["delivered", "failed", "dropped"] {
            metrics.events.with_label_values(&[&ep.name, r]).inc_by(0);
        }
        Ok(Delivery {
            name: ep.name.clone(),
            url: ep.url.clone(),
            client,
            headers,
            media_type,
            threshold: ep.threshold(),
            backoff: ep.backoff(),
            ignored_media_types,
            ignored_actions: ep.ignore.actions.clone(),
            shared,
            cursor,
            metrics,
        })
    }

    fn ignored(&self, r: &Record) -> bool {
        self.ignored_actions.contains(&r.action)
            || r.media_type
                .as_ref()
                .is_some_and(|m| self.ignored_media_types.iter().any(|i| i == m))
    }

    fn set_pending(&self, cursor: u64) {
        let pending = self.shared.pending_after(cursor);
        self.metrics
            .pending
            .with_label_values(&[&self.name])
            .set(pending.min(i64::MAX as u64) as i64);
    }

    fn save(&self, value: u64) {
        if let Err(e) = self.shared.save_cursor(&self.name, &self.cursor, value) {
            tracing::warn!(endpoint = %self.name, error = %e, "cannot save the notifications cursor");
        }
    }

    /// Delivers forever.
    pub async fn run(self) {
        let mut pos = ReadPos::default();
        let mut failures: u32 = 0;
        loop {
            let cursor = self.cursor.load(Ordering::Acquire);
            self.set_pending(cursor);
            if self.shared.written() <= cursor {
                self.shared.wait_after(cursor).await;
                continue;
            }
            let shared = self.shared.clone();
            let read = tokio::task::spawn_blocking(move || {
                let r = shared.read_after(cursor, MAX_EVENTS, &mut pos);
                (r, pos)
            })
            .await;
            let batch = match read {
                Ok((Ok(b), p)) => {
                    pos = p;
                    b
                }
                Ok((Err(e), _)) => {
                    tracing::error!(endpoint = %self.name, error = %e, "cannot read the notifications journal");
                    tokio::time::sleep(self.backoff).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(endpoint = %self.name, error = %e, "journal reader failed");
                    tokio::time::sleep(self.backoff).await;
                    continue;
                }
            };
            if batch.dropped > 0 {
                tracing::warn!(endpoint = %self.name, dropped = batch.dropped, "events dropped undelivered (notifications.spool.maxsize)");
                self.metrics
                    .events
                    .with_label_values(&[&self.name, "dropped"])
                    .inc_by(batch.dropped);
                // Everything up to the oldest kept record is gone: count it once.
                self.save(cursor + batch.dropped);
            }
            let Some(last) = batch.last else {
                continue;
            };
            let send: Vec<&Record> = batch.records.iter().filter(|r| !self.ignored(r)).collect();
            if send.is_empty() {
                self.save(last);
                continue;
            }
            let body = envelope(&send);
            let result = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, self.media_type)
                .body(body)
                .send()
                .await;
            let n = send.len() as u64;
            match result {
                Ok(resp) if resp.status().is_success() || resp.status().is_redirection() => {
                    failures = 0;
                    let now = chrono::Utc::now().timestamp_millis();
                    let h = self.metrics.latency.with_label_values(&[&self.name]);
                    for r in &send {
                        h.observe(now.saturating_sub(r.at).max(0) as f64 / 1000.0);
                    }
                    self.metrics
                        .events
                        .with_label_values(&[&self.name, "delivered"])
                        .inc_by(n);
                    self.save(last);
                }
                other => {
                    let why = match other {
                        Ok(resp) => format!("status {}", resp.status()),
                        Err(e) => e.to_string(),
                    };
                    self.metrics
                        .events
                        .with_label_values(&[&self.name, "failed"])
                        .inc_by(n);
                    failures = failures.saturating_add(1);
                    if failures >= self.threshold {
                        if failures == self.threshold {
                            tracing::warn!(endpoint = %self.name, error = %why, failures, "notification endpoint failing; retrying every backoff");
                        }
                        tokio::time::sleep(self.backoff).await;
                    } else {
                        tracing::debug!(endpoint = %self.name, error = %why, "notification delivery failed");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        }
    }
}

/// `{"events":[...]}` from the journal's stored JSON, byte for byte.
fn envelope(records: &[&Record]) -> String {
    let mut s = String::with_capacity(
        records
            .iter()
            .map(|r| r.event.as_ref().map_or(0, |e| e.get().len()) + 1)
            .sum::<usize>()
            + 16,
    );
    s.push_str("{\"events\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if let Some(e) = &r.event {
            s.push_str(e.get());
        }
    }
    s.push_str("]}");
    s
}
