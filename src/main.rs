//! The `image-registry` binary: `serve`, `check-config`, `--version`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use image_registry::app::build_server;
use image_registry::config::{Config, LogFormat, StorageKind};
use image_registry::net::server;
use image_registry::net::tls::Tls;

#[derive(Parser)]
#[command(
    name = "image-registry",
    version,
    about = "An OCI distribution registry server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (the default).
    Serve {
        /// YAML config file; without one, defaults plus REGISTRY_* variables apply.
        #[arg(long, short, env = "REGISTRY_CONFIGURATION_PATH")]
        config: Option<PathBuf>,
    },
    /// Load and validate the config, print the effective settings, and exit.
    CheckConfig {
        #[arg(long, short, env = "REGISTRY_CONFIGURATION_PATH")]
        config: Option<PathBuf>,
    },
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("REGISTRY_") && k != "REGISTRY_CONFIGURATION_PATH")
        .collect()
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<(Config, Vec<String>)> {
    Config::load(config.map(PathBuf::as_path), &env_vars()).context("invalid configuration")
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log_filter()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text | LogFormat::Logstash => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image-registry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { config }) => {
            let (c, warnings) = load(config.as_ref())?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("listen: {}", c.listen_addr()?);
            println!("storage: {:?}", c.storage_kind()?);
            println!("readOnly: {}", c.read_only());
            println!("tls: {}", c.tls_enabled());
            println!("metrics enabled: {}", c.metrics().enabled);
            println!("drain timeout: {:?}", c.http.draintimeout);
            println!("delete enabled: {}", c.storage.delete.enabled);
            println!("link cache TTL: {:?}", c.storage.cache.linkttl);
            println!("auth: {:?}", c.auth.mode().map_err(anyhow::Error::msg)?);
            println!(
                "http.secret: {}",
                if c.http.secret.is_some() {
                    "set"
                } else {
                    "not set (random)"
                }
            );
            println!("config OK");
            Ok(())
        }
        Some(Command::Serve { config }) => serve(config),
        None => serve(std::env::var_os("REGISTRY_CONFIGURATION_PATH").map(PathBuf::from)),
    }
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, warnings) = load(config.as_ref())?;
    init_logging(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
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
    server::serve(
        listener,
        built.router,
        tls,
        shutdown_signal(),
        config.http.draintimeout,
        move || health.set_shutting_down(),
    )
    .await;
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
