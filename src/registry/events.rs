//! What the domain tells the outside about what happened: an [`Event`] per manifest or blob push,
//! mount, pull and delete, handed to an [`EventSink`]. The domain knows nothing of delivery
//! (`crate::events` implements the sink: journal, webhooks); it only says what happened, to what.
//!
//! Who asked is not the domain's business either, but an event carries it: the HTTP stack runs
//! each request inside [`with_request`], and the domain copies that [`RequestInfo`] into the
//! events it emits (empty outside a request: tests, tools).
//!
//! Contract of [`EventSink::emit`]: for a push, mount or delete the future resolves only once the
//! event is recorded durably (the domain returns after it, so the response that acknowledges the
//! write follows it); an error fails the operation. For a pull it resolves once the event is
//! queued.

use std::future::Future;

use crate::oci::{Descriptor, Digest, RepositoryName};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Push,
    Pull,
    Mount,
    Delete,
}

impl Action {
    /// distribution's action names.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Mount => "mount",
            Action::Delete => "delete",
        }
    }

    /// Whether the event must be durable before the write is acknowledged.
    pub fn is_write(self) -> bool {
        !matches!(self, Action::Pull)
    }
}

/// What the event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Blob,
    /// A tag removed (by a tag delete, or as part of a manifest delete).
    Tag,
}

/// Who asked, as the HTTP stack saw it.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The access log's request id.
    pub id: String,
    /// The client's address.
    pub addr: String,
    /// The `Host` the client addressed.
    pub host: String,
    pub method: String,
    pub user_agent: String,
    /// The authenticated user, if any.
    pub actor: Option<String>,
    /// `scheme://host` the registry is reached at (for the target's `url`).
    pub base_url: String,
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: Action,
    pub kind: Kind,
    pub repository: RepositoryName,
    pub media_type: Option<String>,
    pub digest: Option<Digest>,
    pub size: Option<u64>,
    pub tag: Option<String>,
    /// A mount's source repository.
    pub from_repository: Option<String>,
    /// A manifest's references (config, layers, child manifests).
    pub references: Vec<Descriptor>,
    pub request: RequestInfo,
}

impl Event {
    /// An event about `repository` for the request being served.
    pub fn new(action: Action, kind: Kind, repository: &RepositoryName) -> Event {
        Event {
            action,
            kind,
            repository: repository.clone(),
            media_type: None,
            digest: None,
            size: None,
            tag: None,
            from_repository: None,
            references: Vec::new(),
            request: current_request(),
        }
    }
}

/// Recording an event failed (the operation then fails: the write would go unannounced).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

/// Where the domain sends its events.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// See the module docs for when this resolves.
    async fn emit(&self, event: Event) -> Result<(), EventError>;

    /// For a push or mount whose storage commit comes next: records `event` as an intent and
    /// returns at once (once it is queued); the domain commits, then calls
    /// [`PendingEvent::committed`] (which resolves once the intent is durable, so the
    /// acknowledgement still follows it) or [`PendingEvent::failed`]. Dropped unresolved (the
    /// request was cancelled), the sink asks storage whether the write happened.
    async fn begin(&self, event: Event) -> Result<Box<dyn PendingEvent>, EventError>;
}

/// A write's event recorded before its storage commit (see [`EventSink::begin`]).
#[async_trait::async_trait]
pub trait PendingEvent: Send {
    /// The write happened: resolves once the event is durable.
    async fn committed(self: Box<Self>) -> Result<(), EventError>;
    /// The write failed: its event is never delivered.
    async fn failed(self: Box<Self>);
}

/// Whether a write an event announces happened, as storage shows it: the blob (push, mount) or
/// manifest (push) linked in the repository. Sinks ask it about intents left unresolved by a
/// crash or a cancelled request.
#[async_trait::async_trait]
pub trait WriteCheck: Send + Sync {
    async fn happened(
        &self,
        kind: Kind,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, EventError>;
}

/// [`WriteCheck`] over the registry's storage.
pub(crate) struct StorageCheck {
    pub(crate) driver: std::sync::Arc<dyn crate::storage::StorageDriver>,
}

#[async_trait::async_trait]
impl WriteCheck for StorageCheck {
    async fn happened(
        &self,
        kind: Kind,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, EventError> {
        use crate::storage::layout;
        let link = match kind {
            Kind::Blob => layout::layer_link(repository, digest),
            Kind::Manifest => layout::manifest_revision_link(repository, digest),
            Kind::Tag => return Ok(true),
        };
        for path in [link, layout::blob_data(digest)] {
            match self.driver.stat(&path).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(EventError(e.to_string())),
            }
        }
        Ok(true)
    }
}

tokio::task_local! {
    static REQUEST: RequestInfo;
}

/// Runs `f` (a request's handling) with `info` as the request events are attributed to.
pub async fn with_request<F: Future>(info: RequestInfo, f: F) -> F::Output {
    REQUEST.scope(info, f).await
}

fn current_request() -> RequestInfo {
    REQUEST.try_with(RequestInfo::clone).unwrap_or_default()
}
