//! `image-registry serve`: the registry server (also what runs without a subcommand).

use anyhow::Context;

use super::{init_server_logging, ConfigArg};
use crate::app::{build_server, SecretSource};
use crate::config::{Config, StorageKind};
use crate::net::server;
use crate::net::tls::Tls;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (config, warnings) = args.config.load()?;
    let _log = init_server_logging(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let built = build_server(&config)?;
    match config.storage_kind()? {
        StorageKind::Filesystem { root } => {
            let shown = std::fs::canonicalize(&root).unwrap_or(root);
            tracing::info!(root = %shown.display(), "storing data on the filesystem");
        }
        StorageKind::InMemory => {
            tracing::warn!("storing data in memory: it is lost when the process exits")
        }
        _ => tracing::info!(
            driver = built.driver.name(),
            "storing data in object storage"
        ),
    }
    built
        .driver
        .check()
        .await
        .map_err(|e| anyhow::anyhow!("storage {}: {e}", built.driver.name()))?;
    if let SecretSource::Kept { path, created } = &built.secret {
        tracing::info!(
            path = %path.display(),
            created,
            "no http.secret configured: using the one kept in the data folder (0600), so uploads \
             survive a restart. Set REGISTRY_HTTP_SECRET to share it between replicas."
        );
    }
    if built.secret_generated {
        tracing::warn!(
            "no http.secret configured: generated a random one; uploads cannot continue on another \
             replica or after a restart. Set REGISTRY_HTTP_SECRET (the same on every replica)."
        );
    }
    match built.auth_mode {
        Some(mode) => tracing::info!(mode, "authentication on"),
        None => {
            tracing::warn!("auth mode none: anyone who reaches the port may pull, push and delete")
        }
    }
    let metrics = config.metrics();
    if metrics.enabled && metrics.secret.is_none() && built.auth_mode.is_none() {
        tracing::warn!(
            "metrics are enabled without metrics.secret: /extensions/v2/metrics is open to anyone"
        );
    }
    let tls = Tls::from_config(&config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        read_only = config.read_only(),
        metrics = metrics.enabled,
        version = env!("CARGO_PKG_VERSION"),
        "image-registry listening"
    );
    let health = built.health.clone();
    let gc_scheduler = built.gc_scheduler;
    let signalled = std::sync::Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let signalled = signalled.clone();
        async move {
            shutdown_signal().await;
            let _ = signalled.set(std::time::Instant::now());
        }
    };
    server::serve(
        listener,
        built.router,
        tls,
        config.connection_limits(),
        shutdown,
        config.http.draintimeout,
        move || health.set_shutting_down(),
    )
    .await;
    if let Some(s) = gc_scheduler {
        s.stop().await;
    }
    if let Some(n) = &built.notifier {
        // The drain timeout bounds the whole shutdown: the journal gets what is left of it.
        let spent = signalled
            .get()
            .map(std::time::Instant::elapsed)
            .unwrap_or_default();
        let left = config
            .http
            .draintimeout
            .saturating_sub(spent)
            .max(std::time::Duration::from_secs(1));
        match tokio::time::timeout(left, n.flush()).await {
            Ok(Ok(())) => tracing::info!("notifications: queued events written to the journal"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "notifications: writing the queued events failed")
            }
            Err(_) => tracing::warn!(
                timeout = ?left,
                "notifications: the journal did not take the queued events in time; pull events still queued are lost"
            ),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
