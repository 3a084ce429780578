//! Webhook notifications in CNCF distribution's format, delivered at least once.
//!
//! The registry domain emits [`Event`]s through its [`EventSink`] trait; [`Notifier`] is that sink.
//! It turns each event into distribution's JSON (`id`, `timestamp`, `action`, `target`,
//! `request`, `actor`, `source`), appends it to the local [`journal`] — for pushes, mounts and
//! deletes durably before the domain returns, so before the write is acknowledged — and one
//! [`delivery`] task per endpoint posts `{"events":[...]}` envelopes from the journal, in order,
//! with distribution's `timeout`, `threshold` and `backoff`.
//!
//! Depends on `registry` (the trait it implements, the event type), `oci`, `config`, `net`
//! (outbound HTTP clients) and `ops` (metrics). Nothing depends on it but `app`.

pub mod delivery;
pub mod journal;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, StorageKind};
use crate::net::outbound::Outbound;
use crate::oci::{Digest, RepositoryName};
use crate::ops::metrics::{Metrics, NotificationMetrics};
use crate::registry::events::{
    Action, Event, EventError, EventSink, Kind, PendingEvent, WriteCheck,
};
use journal::{Check, Entry, Journal};

/// Content types of the envelope.
pub const MEDIA_TYPE_V1: &str = "application/vnd.docker.distribution.events.v1+json";
pub const MEDIA_TYPE_V2: &str = "application/vnd.docker.distribution.events.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("notifications.spool.path {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("notifications.endpoints: {0}")]
    Endpoint(String),
}

/// distribution's `source`: this instance.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(rename = "instanceID", skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

/// The event sink: journal + delivery tasks.
pub struct Notifier {
    journal: Journal,
    source: Source,
    include_references: bool,
    /// Asked about intents nobody resolved (see [`Notifier::set_write_check`]).
    check: Arc<std::sync::OnceLock<Arc<dyn WriteCheck>>>,
}

/// The spool folder config names, or the default: `<root>/notifications` of a filesystem
/// storage, else `<temp>/image-registry-notifications`.
pub fn spool_path(config: &Config) -> PathBuf {
    if let Some(p) = &config.notifications.spool.path {
        return PathBuf::from(p);
    }
    match config.storage_kind() {
        Ok(StorageKind::Filesystem { root }) => root.join("notifications"),
        _ => std::env::temp_dir().join("image-registry-notifications"),
    }
}

/// `host:port` of this instance, as distribution reports it: the host name and the port of
/// `http.addr`.
fn source_addr(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok());
    let port = config.listen_addr().ok().map(|a| a.port());
    match (host, port) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h,
        (None, _) => config.http.addr.clone(),
    }
}

impl Notifier {
    /// Opens the spool and starts one delivery task per active endpoint; `None` when no endpoint
    /// is active. Must run inside a tokio runtime.
    pub fn start(
        config: &Config,
        outbound: &Outbound,
        metrics: &Metrics,
    ) -> Result<Option<Arc<Notifier>>, StartError> {
        let n = &config.notifications;
        if n.active_endpoints().next().is_none() {
            return Ok(None);
        }
        let path = spool_path(config);
        let journal =
            Journal::open(&path, n.spool.maxsize()).map_err(|source| StartError::Spool {
                path: path.clone(),
                source,
            })?;
        let nm = NotificationMetrics::register(metrics);
        let media_type = if n.v2() { MEDIA_TYPE_V2 } else { MEDIA_TYPE_V1 };
        for ep in n.active_endpoints() {
            let cursor = journal
                .shared
                .cursor(&ep.name)
                .map_err(|source| StartError::Spool {
                    path: path.clone(),
                    source,
                })?;
            let d = delivery::Delivery::new(
                ep,
                outbound,
                media_type,
                journal.shared.clone(),
                cursor,
                nm.clone(),
            )
            .map_err(StartError::Endpoint)?;
            tokio::spawn(d.run());
        }
        tracing::info!(
            spool = %path.display(),
            endpoints = n.active_endpoints().count(),
            last_seq = journal.shared.written(),
            "notifications on"
        );
        Ok(Some(Arc::new(Notifier {
            journal,
            source: Source {
                addr: source_addr(config),
                instance_id: uuid::Uuid::new_v4().to_string(),
            },
            include_references: n.events.includereferences,
            check: Arc::default(),
        })))
    }

    /// Gives the notifier storage's answer to "did this write happen?" and resolves the intents
    /// a crash left without a marker: delivered if storage shows the write, dropped if not.
    /// Until then delivery waits before the first of them.
    pub fn set_write_check(&self, check: Arc<dyn WriteCheck>) {
        let _ = self.check.set(check.clone());
        let replayed = self.journal.replayed.clone();
        if replayed.is_empty() {
            return;
        }
        let tx = self.journal.tx.clone();
        tokio::spawn(async move {
            for (seq, c) in replayed {
                let ok = resolve_by_storage(check.as_ref(), &c).await;
                tracing::info!(seq, ok, kind = %c.kind, repository = %c.repository, digest = %c.digest,
                    "notifications: resolved an unfinished write's event from storage");
                if tx.send(Entry::Resolve { seq, ok }).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Writes and syncs everything queued so far (pull events included); the shutdown drain.
    pub async fn flush(&self) -> Result<(), EventError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let closed = || EventError("the notifications journal stopped".into());
        self.journal
            .tx
            .send(Entry::Flush(tx))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?.map_err(EventError)
    }

    /// The journal record (without its seq) for an event.
    fn record(&self, e: &Event, check: Option<&Check>) -> Result<String, EventError> {
        let event = self.to_json(e);
        #[derive(Serialize)]
        struct Body<'a> {
            action: &'a str,
            #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
            media_type: Option<&'a str>,
            at: i64,
            event: &'a EventJson<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            check: Option<&'a Check>,
        }
        let body = Body {
            action: e.action.as_str(),
            media_type: e.media_type.as_deref(),
            at: chrono::Utc::now().timestamp_millis(),
            event: &event,
            check,
        };
        let s = serde_json::to_string(&body).map_err(|e| EventError(e.to_string()))?;
        // The writer wraps it as `{"seq":N,<body>}`.
        Ok(s[1..s.len() - 1].to_owned())
    }

    /// distribution's JSON for an event.
    fn to_json<'a>(&'a self, e: &'a Event) -> EventJson<'a> {
        let digest = e.digest.as_ref().map(|d| d.to_string());
        let url = match (e.kind, &digest, e.action == Action::Delete) {
            (Kind::Manifest, Some(d), false) => Some(format!(
                "{}/v2/{}/manifests/{d}",
                e.request.base_url, e.repository
            )),
            (Kind::Blob, Some(d), false) => Some(format!(
                "{}/v2/{}/blobs/{d}",
                e.request.base_url, e.repository
            )),
            _ => None,
        };
        let length = match e.kind {
            Kind::Tag => None,
            _ => e.size,
        };
        EventJson {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            action: e.action.as_str(),
            target: TargetJson {
                media_type: e.media_type.as_deref(),
                size: e.size.filter(|s| *s > 0),
                digest,
                length: length.filter(|s| *s > 0),
                repository: e.repository.as_str(),
                from_repository: e.from_repository.as_deref(),
                url,
                tag: e.tag.as_deref(),
                references: if self.include_references {
                    e.references
                        .iter()
                        .map(|d| RefJson {
                            media_type: &d.media_type,
                            size: d.size,
                            digest: d.digest.to_string(),
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            },
            request: RequestJson {
                id: &e.request.id,
                addr: &e.request.addr,
                host: &e.request.host,
                method: &e.request.method,
                useragent: &e.request.user_agent,
            },
            actor: ActorJson {
                name: e.request.actor.as_deref(),
            },
            source: &self.source,
        }
    }
}

/// distribution's `Event` (field names and `omitempty` as its Go struct tags).
#[derive(Serialize)]
struct EventJson<'a> {
    id: String,
    timestamp: String,
    action: &'a str,
    target: TargetJson<'a>,
    request: RequestJson<'a>,
    actor: ActorJson<'a>,
    source: &'a Source,
}

#[derive(Serialize)]
struct TargetJson<'a> {
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: &'a str,
    #[serde(rename = "fromRepository", skip_serializing_if = "Option::is_none")]
    from_repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    references: Vec<RefJson<'a>>,
}

#[derive(Serialize)]
struct RefJson<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: String,
}

#[derive(Serialize)]
struct RequestJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    addr: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'a str,
    method: &'a str,
    useragent: &'a str,
}

#[derive(Serialize)]
struct ActorJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[async_trait::async_trait]
impl EventSink for Notifier {
    async fn emit(&self, event: Event) -> Result<(), EventError> {
        let body = self.record(&event, None)?;
        let closed = || EventError("the notifications journal stopped".into());
        if event.action.is_write() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.journal
                .tx
                .send(Entry::Append {
                    body,
                    intent: false,
                    done: Some(tx),
                })
                .await
                .map_err(|_| closed())?;
            rx.await.map_err(|_| closed())?.map_err(EventError)?;
            Ok(())
        } else {
            self.journal
                .tx
                .send(Entry::Append {
                    body,
                    intent: false,
                    done: None,
                })
                .await
                .map_err(|_| closed())
        }
    }

    async fn begin(&self, event: Event) -> Result<Box<dyn PendingEvent>, EventError> {
        let check = Check {
            kind: match event.kind {
                Kind::Manifest => "manifest",
                _ => "blob",
            }
            .to_owned(),
            repository: event.repository.to_string(),
            digest: event
                .digest
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
        };
        let body = self.record(&event, Some(&check))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.journal
            .tx
            .send(Entry::Append {
                body,
                intent: true,
                done: Some(tx),
            })
            .await
            .map_err(|_| EventError("the notifications journal stopped".into()))?;
        Ok(Box::new(Pending {
            tx: self.journal.tx.clone(),
            durable: Some(rx),
            check,
            checker: self.check.clone(),
        }))
    }
}

/// Storage's word on an intent; a check that keeps failing counts as "happened" after a while
/// (at least once: a duplicate rather than a loss).
async fn resolve_by_storage(check: &dyn WriteCheck, c: &Check) -> bool {
    let kind = match c.kind.as_str() {
        "manifest" => Kind::Manifest,
        _ => Kind::Blob,
    };
    let (Ok(repo), Ok(digest)) = (
        c.repository.parse::<RepositoryName>(),
        c.digest.parse::<Digest>(),
    ) else {
        return false;
    };
    for attempt in 0..30 {
        match check.happened(kind, &repo, &digest).await {
            Ok(ok) => return ok,
            Err(e) => {
                if attempt == 0 {
                    tracing::warn!(error = %e, "notifications: cannot check storage for an unfinished write; retrying");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    true
}

/// An intent in the journal, waiting for its write's outcome.
struct Pending {
    tx: tokio::sync::mpsc::Sender<Entry>,
    durable: Option<tokio::sync::oneshot::Receiver<Result<u64, String>>>,
    check: Check,
    checker: Arc<std::sync::OnceLock<Arc<dyn WriteCheck>>>,
}

impl Pending {
    /// The intent's seq once durable. The receiver stays in place while waited on: cancelled
    /// meanwhile, `Drop` still resolves the intent.
    async fn seq(&mut self) -> Result<u64, EventError> {
        let closed = || EventError("the notifications journal stopped".into());
        let r = match self.durable.as_mut() {
            Some(rx) => rx.await,
            None => return Err(closed()),
        };
        self.durable = None;
        r.map_err(|_| closed())?.map_err(EventError)
    }

    /// Sends the marker without waiting (on a task when the queue is full).
    fn resolve(&self, seq: u64, ok: bool) {
        use tokio::sync::mpsc::error::TrySendError;
        if let Err(TrySendError::Full(e)) = self.tx.try_send(Entry::Resolve { seq, ok }) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(e).await;
            });
        }
    }
}

#[async_trait::async_trait]
impl PendingEvent for Pending {
    async fn committed(mut self: Box<Self>) -> Result<(), EventError> {
        let seq = self.seq().await?;
        // The marker is not waited for: after a crash, storage shows the write.
        self.resolve(seq, true);
        Ok(())
    }

    async fn failed(mut self: Box<Self>) {
        // A failed journal write already counts as failed there.
        if let Ok(seq) = self.seq().await {
            self.resolve(seq, false);
        }
    }
}

impl Drop for Pending {
    /// Cancelled between intent and outcome: storage decides, on a task of its own.
    fn drop(&mut self) {
        let Some(rx) = self.durable.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tx = self.tx.clone();
        let check = self.check.clone();
        let checker = self.checker.clone();
        rt.spawn(async move {
            let Ok(Ok(seq)) = rx.await else {
                return;
            };
            let ok = match checker.get() {
                Some(c) => resolve_by_storage(c.as_ref(), &check).await,
                None => true,
            };
            let _ = tx.send(Entry::Resolve { seq, ok }).await;
        });
    }
}
