//! The command line: one file per subcommand, each thin over the library (parse its flags, load
//! the config the way `serve` does, call the library, print). `main.rs` only dispatches.
//!
//! Config loading is shared: `--config FILE` (or `REGISTRY_CONFIGURATION_PATH`), then every
//! `REGISTRY_*` variable as an override, exactly as `serve` reads it.

pub mod check_config;
pub mod gc;
pub mod serve;
pub mod sync;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// `image-registry`: the top-level parser.
#[derive(Parser)]
#[command(
    name = "image-registry",
    version,
    about = "An OCI distribution registry server",
    after_help = "Examples:\n  image-registry serve --config /etc/image-registry/config.yml\n  \
                  REGISTRY_HTTP_ADDR=:5000 image-registry          (serve with defaults)\n  \
                  image-registry check-config --config config.yml\n  \
                  image-registry gc --config config.yml --dry-run --delete-untagged"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Serve the registry (the default).
    ///
    /// Example: image-registry serve --config config.yml
    Serve(serve::Args),
    /// Load and validate the config, print the effective settings, and exit.
    ///
    /// Example: image-registry check-config --config config.yml
    CheckConfig(check_config::Args),
    /// Mirror the tags `proxy.upstreams[].sync` names into local storage ahead of time.
    ///
    /// Example: image-registry sync --config config.yml --once
    Sync(sync::Args),
    /// Collect garbage in the storage once (safe while servers run), print a summary, and exit.
    ///
    /// Example: image-registry gc --config config.yml --dry-run --delete-untagged --json
    Gc(gc::Args),
}

/// The `--config` flag every subcommand takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArg {
    /// YAML config file; without one, defaults plus REGISTRY_* variables apply.
    #[arg(long, short, env = "REGISTRY_CONFIGURATION_PATH")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The config as `serve` reads it (file, then `REGISTRY_*` overrides) and its warnings.
    pub fn load(&self) -> anyhow::Result<(Config, Vec<String>)> {
        load(self.config.as_deref())
    }
}

/// The `REGISTRY_*` variables of the environment (the config path variable excepted).
pub fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("REGISTRY_") && k != "REGISTRY_CONFIGURATION_PATH")
        .collect()
}

fn load(config: Option<&Path>) -> anyhow::Result<(Config, Vec<String>)> {
    Config::load(config, &env_vars()).context("invalid configuration")
}

/// Logging as configured (`log.level`, `log.format`; `RUST_LOG` wins), to stderr.
pub fn init_logging(config: &Config) {
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

/// Runs the command line (`main` calls this).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // One crypto provider (ring) for every TLS client and server of the process.
    crate::net::tls::install_default_provider();
    match cli.command {
        Some(Command::CheckConfig(args)) => check_config::run(&args),
        Some(Command::Serve(args)) => serve::run(&args),
        Some(Command::Sync(args)) => sync::run(&args),
        Some(Command::Gc(args)) => gc::run(&args),
        // No subcommand: serve, with the config file `REGISTRY_CONFIGURATION_PATH` names.
        None => serve::run(&serve::Args {
            config: ConfigArg {
                config: std::env::var_os("REGISTRY_CONFIGURATION_PATH").map(PathBuf::from),
            },
        }),
    }
}
