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

/// Log lines the server's writer thread may hold while stderr is slow (a few hundred bytes
/// each): beyond them a logging task waits, as with a direct write, so memory stays bounded.
const LOG_QUEUE_LINES: usize = 8192;

/// Keeps the server's log writer thread; dropping it writes what is queued (at most ~1 s).
pub struct LogGuard {
    _worker: tracing_appender::non_blocking::WorkerGuard,
}

/// Logging as configured (`log.level`, `log.format`, `log.fields`, `log.accesslog`; `RUST_LOG`
/// wins over the level), to stderr, each line written when it is logged: for the CLI's jobs,
/// whose progress lines share stderr and must stay in order.
pub fn init_logging(config: &Config) {
    init(config, Out::Stderr);
}

/// Logging for `serve`: as [`init_logging`], but the lines go to stderr from a thread of their
/// own, many per `write(2)` under load. Without it every request's access-log line was a
/// `write(2)` on a runtime thread: ~7 % of the server's CPU at 40,000 requests/s, and a slow
/// reader of stderr (a container runtime's log pipe) stalled every connection of that thread.
/// Lines are never dropped: past `LOG_QUEUE_LINES` the logging task waits.
pub fn init_server_logging(config: &Config) -> LogGuard {
    let (queue, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stderr(),
        ));
    init(config, Out::Queue(queue));
    LogGuard { _worker: guard }
}

fn init(config: &Config, out: Out) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log_filter()));
    let json = config.log.format == LogFormat::Json;
    let writer = FieldsWriter::new(&config.log.fields, json, out);
    // Colours only for a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}

/// Where log lines go: stderr at once, or the queue of the writer thread.
#[derive(Clone)]
enum Out {
    Stderr,
    Queue(tracing_appender::non_blocking::NonBlocking),
}

impl Out {
    /// Writes one whole line.
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match self {
            Out::Stderr => std::io::stderr().write_all(line),
            Out::Queue(q) => q.write_all(line),
        }
    }
}

/// Writes log lines with `log.fields` added to each: inside the JSON object, or as
/// `key=value` pairs at the end of a text line. The fmt layer formats an event whole and hands
/// it over in one `write_all`, so each writer sees exactly one line.
#[derive(Clone)]
struct FieldsWriter {
    /// `"k":"v",` (JSON) or ` k=v` (text); empty without fields.
    extra: std::sync::Arc<str>,
    json: bool,
    out: Out,
}

impl FieldsWriter {
    fn new(
        fields: &std::collections::BTreeMap<String, String>,
        json: bool,
        out: Out,
    ) -> FieldsWriter {
        let extra: String = fields
            .iter()
            .map(|(k, v)| {
                if json {
                    format!("{}:{},", serde_json::json!(k), serde_json::json!(v))
                } else if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"') {
                    format!(" {k}={v:?}")
                } else {
                    format!(" {k}={v}")
                }
            })
            .collect();
        FieldsWriter {
            extra: extra.into(),
            json,
            out,
        }
    }

    /// `line` with the fields added.
    fn decorate(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len() + self.extra.len());
        if self.json {
            match line.split_first() {
                Some((b'{', rest)) if rest.first() != Some(&b'}') => {
                    out.push(b'{');
                    out.extend_from_slice(self.extra.as_bytes());
                    out.extend_from_slice(rest);
                }
                _ => out.extend_from_slice(line),
            }
        } else {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            out.extend_from_slice(body);
            out.extend_from_slice(self.extra.as_bytes());
            if body.len() < line.len() {
                out.push(b'\n');
            }
        }
        out
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for FieldsWriter {
    type Writer = FieldsLine;
    fn make_writer(&'a self) -> FieldsLine {
        FieldsLine {
            with: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// One line on its way out (written when flushed or dropped).
struct FieldsLine {
    with: FieldsWriter,
    buf: Vec<u8>,
}

impl std::io::Write for FieldsLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.with.extra.is_empty() {
            self.with.out.line(b)?;
        } else {
            self.buf.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let line = self.with.decorate(&std::mem::take(&mut self.buf));
            self.with.out.line(&line)?;
        }
        Ok(())
    }
}

impl Drop for FieldsLine {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = self.flush();
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

#[cfg(test)]
mod tests {
    use super::{FieldsWriter, Out};

    #[test]
    fn log_fields_go_into_each_line() {
        let fields = [("service", "registry"), ("note", "two words")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let text = FieldsWriter::new(&fields, false, Out::Stderr);
        assert_eq!(
            text.decorate(b"2026-12-03T12:00:00Z  INFO image_registry: started\n"),
            b"2026-12-03T12:00:00Z  INFO image_registry: started note=\"two words\" service=registry\n"
        );
        let json = FieldsWriter::new(&fields, true, Out::Stderr);
        let line = json.decorate(b"{\"level\":\"INFO\",\"fields\":{\"message\":\"started\"}}\n");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["service"], "registry");
        assert_eq!(v["note"], "two words");
        assert_eq!(v["level"], "INFO");
        assert!(line.ends_with(b"}\n"));
        // An empty object or a line that is not one stays as it is.
        assert_eq!(json.decorate(b"{}\n"), b"{}\n");
        assert_eq!(json.decorate(b"plain\n"), b"plain\n");
    }
}
