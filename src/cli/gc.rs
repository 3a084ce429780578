//! `image-registry gc`: one garbage collection run over the configured storage, then exit.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{init_logging, ConfigArg};
use crate::config::StorageKind;
use crate::lifecycle::{collect_leased, lease, GcOptions, GcReport, Progress, Retention};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// List what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (index children and referrers of kept manifests stay).
    #[arg(long)]
    pub delete_untagged: bool,
    /// Delete nothing younger than this (default: storage.maintenance.gc.delay, 1h). `0s` collects
    /// regardless of age: only while no server writes to the storage.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (config, warnings) = args.config.load()?;
    init_logging(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    if matches!(config.storage_kind()?, StorageKind::InMemory) {
        anyhow::bail!("storage is inmemory: a separate process cannot see a server's memory; nothing to collect");
    }
    let delay = args.delay.unwrap_or(config.storage.maintenance.gc.delay);
    let server_delay = config.storage.maintenance.gc.delay;
    if !delay.is_zero() && delay < server_delay {
        tracing::warn!(
            ?delay,
            ?server_delay,
            "--delay is shorter than storage.maintenance.gc.delay: servers refresh the age of blobs \
             pushes find at a quarter of the latter, so a push that reuses an old blob may have to \
             upload it again"
        );
    }
    if delay.is_zero() && !args.dry_run {
        tracing::warn!("--delay 0s: collecting regardless of age; safe only while no server writes to this storage");
    }
    let opts = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        delay,
        grace: GcOptions::grace_for(config.storage.cache.linkttl),
    };
    // storage.maintenance.retention applies to every run, as to the servers' scheduled ones.
    let retention = Retention::from_config(&config.storage.maintenance.retention)?;
    let driver = crate::app::build_driver(&config)?;
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            driver.check().await.map_err(|e| {
                anyhow::anyhow!("storage {}: {e}; nothing was deleted", driver.name())
            })?;
            let progress = ShowProgress::new();
            // The same lease as the servers' scheduled runs: one run at a time per storage.
            let r = collect_leased(
                driver.as_ref(),
                &opts,
                &retention,
                &progress,
                &lease::new_owner(),
            )
            .await;
            progress.finish();
            r.map_err(anyhow::Error::from)
        })?;
    print_report(&report, args.json)
}

fn print_report(r: &GcReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for d in &r.deletions {
        println!(
            "{verb} {} {}{}{}",
            d.kind,
            d.repository.as_deref().unwrap_or(""),
            d.tag
                .as_deref()
                .map(|t| format!(":{t}"))
                .unwrap_or_default(),
            d.digest
                .as_deref()
                .map(|x| if d.repository.is_some() {
                    format!("@{x}")
                } else {
                    x.to_owned()
                })
                .unwrap_or_default()
        );
    }
    for m in &r.unreadable_manifests {
        println!("warning: manifest {m} has no content; the blobs it referenced are unknown");
    }
    println!(
        "{}: {} repositories, {} tags, {} manifests, {} blobs; {verb} {} tags, {} manifests, {} blobs ({}), {} layer links, {} repositories; kept {} young, {} claimed by pushes; {:.1}s ({:.1}s of it safety waits)",
        if r.dry_run { "dry run" } else { "done" },
        r.repositories,
        r.tags,
        r.manifests,
        r.blobs,
        r.tags_deleted,
        r.manifests_deleted,
        r.blobs_deleted,
        human_bytes(r.bytes_reclaimed),
        r.layer_links_deleted,
        r.repositories_deleted,
        r.young_kept,
        r.reclaimed_by_pushes,
        r.seconds,
        r.waited_seconds
    );
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A bar per phase on a terminal (stderr), else a line every few seconds and at each phase end.
enum ShowProgress {
    Bar(Mutex<Option<indicatif::ProgressBar>>),
    Lines(Mutex<Lines>),
}

struct Lines {
    phase: &'static str,
    total: u64,
    done: u64,
    last: Instant,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl ShowProgress {
    fn new() -> ShowProgress {
        if std::io::stderr().is_terminal() {
            ShowProgress::Bar(Mutex::new(None))
        } else {
            ShowProgress::Lines(Mutex::new(Lines {
                phase: "",
                total: 0,
                done: 0,
                last: Instant::now(),
            }))
        }
    }

    fn finish(&self) {
        if let ShowProgress::Bar(b) = self {
            if let Some(bar) = b.lock().unwrap_or_else(|e| e.into_inner()).take() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Progress for ShowProgress {
    fn phase(&self, name: &'static str, total: u64) {
        match self {
            ShowProgress::Bar(b) => {
                let bar = indicatif::ProgressBar::new(total);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{prefix:>9} [{bar:40}] {pos}/{len} {elapsed}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(name);
                if let Some(old) = b.lock().unwrap_or_else(|e| e.into_inner()).replace(bar) {
                    old.finish();
                }
            }
            ShowProgress::Lines(l) => {
                let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                *l = Lines {
                    phase: name,
                    total,
                    done: 0,
                    last: Instant::now(),
                };
                eprintln!("gc: {name}: {total} steps");
            }
        }
    }

    fn step(&self, n: u64) {
        match self {
            ShowProgress::Bar(b) => {
                if let Some(bar) = b.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    bar.inc(n);
                }
            }
            ShowProgress::Lines(l) => {
                let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                l.done += n;
                if l.last.elapsed() >= LINE_EVERY {
                    l.last = Instant::now();
                    eprintln!("gc: {}: {}/{}", l.phase, l.done, l.total);
                }
            }
        }
    }

    fn done(&self) {
        match self {
            ShowProgress::Bar(b) => {
                if let Some(bar) = b.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    bar.finish();
                }
            }
            ShowProgress::Lines(l) => {
                let l = l.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!("gc: {}: done ({}/{})", l.phase, l.done, l.total);
            }
        }
    }
}
