//! Wiring: builds the storage driver and registry from config and composes the HTTP stack — every
//! cross-cutting layer in one place, in one commented order.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};

use crate::auth::{Auth, MetricsAccess};
use crate::config::{Config, RequestsConfig, StorageKind};
use crate::http::metrics::METRICS_PATH;
use crate::http::{self, dispatch, AppState, Route, API_VERSION, API_VERSION_HEADER};
use crate::layers::access_log::access_log;
use crate::layers::framing::{framing, FramingLimits};
use crate::layers::headers::ExtraHeaders;
use crate::layers::limits::LimitLayer;
use crate::layers::metrics::{track, RouteKind};
use crate::layers::readonly::read_only;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::registry::{Registry, RegistryOptions, UploadSecret};
use crate::storage::fs::FsDriver;
use crate::storage::instrumented::Instrumented;
use crate::storage::memory::MemoryDriver;
use crate::storage::StorageDriver;

/// Switches for the HTTP stack. `Default` is a plain writable registry: no limits, metrics
/// collected but not served, always ready.
#[derive(Clone, Default)]
pub struct AppOptions {
    pub read_only: bool,
    /// Request limits (`requests`); off unless `maxRunning > 0`.
    pub limits: RequestsConfig,
    /// Metric families; a fresh set when `None`.
    pub metrics: Option<Arc<Metrics>>,
    /// Serve `/extensions/v2/metrics` to scrapes this check allows (`None`: not served).
    pub metrics_access: Option<MetricsAccess>,
    /// Readiness state; always ready when `None`.
    pub health: Option<Arc<Health>>,
    /// Authentication and authorization; `None` is auth mode `none`.
    pub auth: Option<Arc<Auth>>,
    /// Prefixes of pull-through upstreams named by a host: containerd's `?ns=<host>` on a request
    /// selects the upstream whose prefix is that host.
    pub mirror_namespaces: Vec<String>,
    /// `http.host`: the base of URLs in events (else the request's scheme and `Host`).
    pub public_url: Option<String>,
    /// Whether the server speaks TLS (the scheme of URLs in events).
    pub tls: bool,
    /// Framing checks (Host, Transfer-Encoding, target and header sizes).
    pub framing: FramingLimits,
    /// `http.headers`: added to every response that does not set the header itself.
    pub extra_headers: Arc<ExtraHeaders>,
}

/// A server built from config: the router and the handles `main` and tests need.
pub struct Built {
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Whether `http.secret` was missing and a random one was made (in memory only).
    pub secret_generated: bool,
    /// Where the upload secret came from.
    pub secret: SecretSource,
    /// The storage driver (instrumented), for the start-up check.
    pub driver: Arc<dyn StorageDriver>,
    /// The auth mode in force (`None`: mode `none`).
    pub auth_mode: Option<&'static str>,
    /// Scheduled garbage collection (`storage.maintenance.gc.enabled`); stop it on shutdown.
    pub gc_scheduler: Option<crate::lifecycle::schedule::Scheduler>,
    /// The notifications sink, when an endpoint is on (drained into its journal on shutdown).
    pub notifier: Option<Arc<crate::events::Notifier>>,
}

/// Builds everything from config: storage (instrumented), registry, metrics, health checks and the
/// HTTP stack. Must run inside a tokio runtime (it starts the storage health check).
pub fn build_server(config: &Config) -> anyhow::Result<Built> {
    // Every outbound client (cluster API, object stores) takes the process-wide provider: ring.
    crate::net::tls::install_default_provider();
    let metrics = Arc::new(Metrics::new());
    let env: Vec<(String, String)> = std::env::vars().collect();
    let auth = Auth::from_config(config, &env)?.map(Arc::new);
    let auth_mode = auth.as_ref().map(|a| a.mode_name());
    let metrics_access = MetricsAccess::from_config(config.metrics(), auth.clone());
    let driver = Instrumented::wrap(build_driver(config)?, metrics.clone());
    let health = Health::start(
        &config.health.storagedriver,
        driver.clone(),
        metrics.clone(),
    );
    let (mut registry, secret) = build_registry(config, driver.clone());
    let secret_generated = secret == SecretSource::Generated;
    let lifecycle_metrics = Arc::new(crate::ops::metrics::LifecycleMetrics::register(&metrics));
    let purging = &config.storage.maintenance.uploadpurging;
    if purging.enabled && !config.read_only() {
        tokio::spawn(crate::lifecycle::purge_loop(
            driver.clone(),
            purging.age,
            purging.interval,
            purging.dryrun,
            lifecycle_metrics.clone(),
        ));
    }
    let gc = &config.storage.maintenance.gc;
    let gc_scheduler = if gc.enabled && config.read_only() {
        tracing::warn!("storage.maintenance.gc.enabled is ignored in read-only mode");
        None
    } else if gc.enabled {
        Some(crate::lifecycle::schedule::Scheduler::start(
            driver.clone(),
            crate::lifecycle::GcOptions {
                dry_run: gc.dryrun,
                delete_untagged: gc.deleteuntagged,
                delay: gc.delay,
                grace: crate::lifecycle::GcOptions::grace_for(config.storage.cache.linkttl),
            },
            crate::lifecycle::Retention::from_config(&config.storage.maintenance.retention)?,
            gc.interval,
            lifecycle_metrics.clone(),
        ))
    } else {
        None
    };
    let outbound = crate::net::outbound::Outbound::from_config(config, &env)?;
    let notifier = crate::events::Notifier::start(config, &outbound, &metrics)?;
    if let Some(n) = &notifier {
        n.set_write_check(registry.write_check());
        registry = registry.with_events(n.clone());
    }
    if let Some(o) = auth.as_ref().and_then(|a| a.openshift()) {
        if config.imagestreams_enabled() {
            registry =
                registry.with_image_metadata(Arc::new(crate::imagestreams::ImageStreams::new(
                    o.service_account_api(),
                    config.openshift_server_addr(),
                )));
        }
    }
    // The pull-through cache (`proxy.remoteurl`, `proxy.upstreams`): its clients go through the
    // outbound proxy and trust the configured CAs.
    let mut mirror_namespaces = Vec::new();
    let registry = match crate::upstream::Upstreams::from_config(config, &outbound)? {
        Some(u) => {
            mirror_namespaces = u.prefixes();
            let u = Arc::new(u.with_metrics(Arc::new(
                crate::ops::metrics::PullThroughMetrics::new(&metrics),
            )));
            let registry = if config.read_only() {
                registry.with_read_only_pull_through(u.clone())
            } else {
                registry.with_pull_through(u.clone())
            };
            // `proxy.upstreams[].sync.interval`: mirror ahead of time while serving (it writes:
            // not in read-only mode).
            if config.read_only() {
                if u.sync_interval().is_some() {
                    tracing::warn!("read-only mode: the periodic sync (proxy.upstreams[].sync.interval) does not run");
                }
            } else {
                u.start_periodic_sync(&registry);
            }
            registry
        }
        None => registry,
    };
    let router = build_app(
        registry,
        AppOptions {
            read_only: config.read_only(),
            limits: config.request_limits().clone(),
            metrics: Some(metrics.clone()),
            metrics_access,
            health: Some(health.clone()),
            auth,
            mirror_namespaces,
            public_url: config.http.host.clone(),
            tls: config.tls_enabled(),
            framing: FramingLimits {
                max_header_bytes: config.connection_limits().max_header_bytes,
            },
            extra_headers: Arc::new(ExtraHeaders::new(&config.http.headers)),
        },
    );
    Ok(Built {
        router,
        metrics,
        health,
        secret_generated,
        secret,
        driver,
        auth_mode,
        gc_scheduler,
        notifier,
    })
}

/// Builds the storage driver a config names.
pub fn build_driver(config: &Config) -> anyhow::Result<Arc<dyn StorageDriver>> {
    Ok(match config.storage_kind()? {
        StorageKind::Filesystem { root } => {
            Arc::new(
                FsDriver::new(&root)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot use storage folder {}: {e}", root.display())
                    })?
                    // A writable registry is unready when its volume takes no writes.
                    .with_write_probe(!config.read_only()),
            )
        }
        StorageKind::InMemory => Arc::new(MemoryDriver::new()),
        kind => {
            crate::storage::cloud::build_object_driver(&kind, !config.storage.redirect.disable)?
                .ok_or_else(|| anyhow::anyhow!("unsupported storage"))?
        }
    })
}

/// Where the upload secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `http.secret`.
    Configured,
    /// The embedded default keeps a generated secret in its data folder (`created`: made now).
    Kept {
        path: std::path::PathBuf,
        created: bool,
    },
    /// Random, in memory only (uploads do not survive a restart).
    Generated,
}

/// The file the embedded default keeps its generated `http.secret` in (inside the data folder).
pub const SECRET_FILE: &str = "http.secret";

/// Builds the registry and says where its upload secret came from: `http.secret`; else, for the
/// embedded default (no storage section), the secret kept in `<data folder>/http.secret` (made
/// on first start, 0600), so uploads survive a restart; else a random one.
pub fn build_registry(config: &Config, driver: Arc<dyn StorageDriver>) -> (Registry, SecretSource) {
    let kept = || -> Option<(UploadSecret, SecretSource)> {
        if !config.storage_is_embedded_default() {
            return None;
        }
        let Ok(StorageKind::Filesystem { root }) = config.storage_kind() else {
            return None;
        };
        let path = root.join(SECRET_FILE);
        match UploadSecret::load_or_create(&path) {
            Ok((secret, created)) => Some((secret, SecretSource::Kept { path, created })),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the generated http.secret");
                None
            }
        }
    };
    let (secret, source) = match &config.http.secret {
        Some(s) => (
            UploadSecret::new(s.as_bytes().to_vec()),
            SecretSource::Configured,
        ),
        None => kept().unwrap_or_else(|| (UploadSecret::random(), SecretSource::Generated)),
    };
    let registry = Registry::new(
        driver,
        RegistryOptions {
            delete_enabled: config.storage.delete.enabled,
            secret,
            link_cache_ttl: config.storage.cache.linkttl,
            refresh_after: config.storage.maintenance.gc.delay / 4,
        },
    );
    (registry, source)
}

/// The whole HTTP application with the given authentication (`None`: auth mode `none`).
pub fn build_app_with_auth(
    registry: Registry,
    options: AppOptions,
    auth: Option<Arc<Auth>>,
) -> Router {
    build_app(registry, AppOptions { auth, ..options })
}

/// The whole HTTP application.
pub fn build_app(registry: Registry, options: AppOptions) -> Router {
    let with_events = registry.has_events();
    let state = AppState { registry };
    let metrics = options.metrics.clone().unwrap_or_default();
    let health = options.health.clone().unwrap_or_else(Health::always_ready);
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/healthz/ready", get(readiness))
        .route("/readyz", get(readiness))
        .route("/", get(|| async { "" }))
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .route("/admin/blobs/{digest}", any(dispatch))
        .route("/extensions/v2/{*rest}", any(dispatch));
    if let Some(access) = options.metrics_access.clone() {
        let m = metrics.clone();
        router = router.route(
            METRICS_PATH,
            get(move |headers: HeaderMap| http::metrics::serve(m.clone(), access.clone(), headers)),
        );
    }
    let auth = options.auth.clone();
    if let Some((path, a)) = auth
        .as_ref()
        .and_then(|a| a.token_path().map(|p| (p, a.clone())))
    {
        router = router.route(
            path,
            get(move |req: Request| crate::layers::auth::token_endpoint(a.clone(), req)),
        );
    }
    // Layers run outermost first:
    //   access log -> metrics -> `http.headers` -> API version header -> framing (Host, Transfer-Encoding, sizes)
    //   -> limits -> classify (URL -> Route)
    //   -> auth (401/403/503; grants into extensions) -> read-only -> handler.
    // The access log and metrics see every answer, 429s included, and measure to the last body
    // byte. Limits come before classification so a refused request costs no parsing.
    // Classification comes before every policy layer that needs the typed Route; auth comes before
    // read-only so an unauthenticated write learns it must log in, not that the registry is
    // read-only.
    // Innermost: who asked, for the events the domain emits (after auth has named the user).
    if with_events {
        let base = EventBase {
            public_url: options.public_url.clone(),
            tls: options.tls,
        };
        router = router.layer(middleware::from_fn_with_state(Arc::new(base), request_info));
    }
    router = router.layer(middleware::from_fn_with_state(options.read_only, read_only));
    if let Some(auth) = auth {
        router = router.layer(middleware::from_fn_with_state(
            auth,
            crate::layers::auth::authorize,
        ));
    }
    let namespaces = Arc::new(options.mirror_namespaces.clone());
    router
        .layer(middleware::from_fn_with_state(namespaces, classify))
        .layer(LimitLayer::new(&options.limits, &metrics))
        .layer(middleware::from_fn_with_state(options.framing, framing))
        .layer(middleware::map_response(api_version))
        .layer(middleware::map_response_with_state(
            options.extra_headers.clone(),
            crate::layers::headers::add,
        ))
        .layer(middleware::from_fn_with_state(metrics, track))
        .layer(middleware::from_fn(access_log))
        .layer(Extension(health))
        .with_state(state)
}

async fn readiness(Extension(health): Extension<Arc<Health>>) -> Response {
    health.readiness_response()
}

async fn classify(
    axum::extract::State(namespaces): axum::extract::State<Arc<Vec<String>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let parsed = Route::parse(req.method(), req.uri().path(), req.uri().query()).map(|r| {
        // containerd mirrors: `?ns=docker.io` pulls `docker.io/<name>` when an upstream has
        // that prefix; any other `ns` is ignored (the name is served as it is).
        match http::route::mirror_namespace(req.uri().query()) {
            Some(ns) if namespaces.contains(&ns) => r.and_then(|r| r.in_namespace(&ns)),
            _ => r,
        }
    });
    match parsed {
        Some(Ok(route)) => {
            let kind = RouteKind(route.kind());
            req.extensions_mut().insert(route);
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(kind);
            resp
        }
        Some(Err(e)) => e.into_response(),
        None => next.run(req).await,
    }
}

async fn api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(API_VERSION_HEADER, API_VERSION);
    resp
}

impl crate::lifecycle::Observer for crate::ops::metrics::LifecycleMetrics {
    fn gc_run(&self, outcome: crate::lifecycle::RunOutcome<'_>) {
        use crate::lifecycle::RunOutcome;
        match outcome {
            RunOutcome::Done(r) => {
                self.gc_runs.with_label_values(&["success"]).inc();
                if !r.dry_run {
                    for d in &r.deletions {
                        self.gc_deleted.with_label_values(&[d.kind]).inc();
                    }
                    self.gc_reclaimed_bytes.inc_by(r.bytes_reclaimed);
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                self.gc_last_success.set(now);
            }
            RunOutcome::Failed => self.gc_runs.with_label_values(&["failure"]).inc(),
            RunOutcome::Skipped => self.gc_runs.with_label_values(&["skipped"]).inc(),
        }
    }

    fn uploads_purged(&self, n: u64) {
        self.uploads_purged.inc_by(n);
    }
}

impl crate::upstream::PullMetrics for crate::ops::metrics::PullThroughMetrics {
    fn observe(&self, kind: &'static str, hit: bool, err: bool, elapsed: std::time::Duration) {
        crate::ops::metrics::PullThroughMetrics::observe(self, kind, hit, err, elapsed);
    }

    fn bytes(&self, n: u64) {
        self.upstream_bytes.inc_by(n);
    }
}

/// The registry and upstreams `image-registry sync` works with: the storage and pull-through
/// cache `serve` would use, without the HTTP stack. Must run inside a tokio runtime.
pub fn build_sync(config: &Config) -> anyhow::Result<(Registry, Arc<crate::upstream::Upstreams>)> {
    crate::net::tls::install_default_provider();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let driver = build_driver(config)?;
    let (registry, _) = build_registry(config, driver);
    let outbound = crate::net::outbound::Outbound::from_config(config, &env)?;
    let u = crate::upstream::Upstreams::from_config(config, &outbound)?
        .ok_or_else(|| anyhow::anyhow!("no upstreams configured (proxy.upstreams)"))?;
    if config.read_only() {
        anyhow::bail!("the registry is in read-only mode (readOnly): sync stores what it fetches and cannot run");
    }
    let u = Arc::new(u);
    Ok((registry.with_pull_through(u.clone()), u))
}

/// How URLs in events start.
struct EventBase {
    public_url: Option<String>,
    tls: bool,
}

/// Runs the request inside `registry::events::with_request`, with the access log's request id,
/// the client address (`X-Forwarded-For` first, as distribution), `Host`, method, user agent and
/// the authenticated user.
async fn request_info(
    axum::extract::State(base): axum::extract::State<Arc<EventBase>>,
    req: Request,
    next: Next,
) -> Response {
    use crate::layers::access_log::{AccessUser, RequestId};
    use axum::http::header;
    let h = req.headers();
    let text = |name: &header::HeaderName| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let host = text(&header::HOST);
    let forwarded = h
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let addr = forwarded.unwrap_or_else(|| {
        req.extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.to_string())
            .unwrap_or_default()
    });
    let base_url = match &base.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let scheme = h
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .filter(|p| *p == "http" || *p == "https")
                .unwrap_or(if base.tls { "https" } else { "http" });
            format!("{scheme}://{host}")
        }
    };
    let info = crate::registry::events::RequestInfo {
        id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        addr,
        host,
        method: req.method().to_string(),
        user_agent: text(&header::USER_AGENT),
        actor: req
            .extensions()
            .get::<crate::auth::RequestAuth>()
            .and_then(|a| a.subject.name.clone())
            .or_else(|| {
                req.extensions()
                    .get::<AccessUser>()
                    .and_then(|u| u.get().map(str::to_owned))
            }),
        base_url,
    };
    crate::registry::events::with_request(info, next.run(req)).await
}
