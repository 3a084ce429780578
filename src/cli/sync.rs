//! `image-registry sync [--config FILE] [--once]`: mirror the `proxy.upstreams[].sync` tags ahead
//! of time. A progress bar per image on a terminal (plain lines otherwise), a summary at the end;
//! the exit status is non-zero when an image failed. Without `--once` it runs again every smallest
//! `sync.interval`. Interrupted, the next run skips the images the interrupted one completed (its
//! state file in storage) and says so, and continues with the rest.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::ConfigArg;
use crate::upstream::sync::{SyncProgress, SyncSummary};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// One run, then exit (default: repeat every `sync.interval`).
    #[arg(long)]
    pub once: bool,
}

/// A bar per image on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<Vec<(String, ProgressBar)>>,
}

impl SyncProgress for Bars {
    fn image_started(&self, image: &str, blobs: usize) {
        let style = ProgressStyle::with_template("{prefix:40!} [{bar:30}] {pos}/{len} blobs {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let b = self.multi.add(ProgressBar::new(blobs as u64));
        b.set_style(style);
        b.set_prefix(image.to_owned());
        if let Ok(mut v) = self.bars.lock() {
            v.push((image.to_owned(), b));
        }
    }
    fn blob_done(&self, image: &str, _size: u64, _fetched: bool) {
        if let Ok(v) = self.bars.lock() {
            if let Some((_, b)) = v.iter().find(|(i, _)| i == image) {
                b.inc(1);
            }
        }
    }
    fn image_done(&self, image: &str, result: &Result<(), String>) {
        if let Ok(v) = self.bars.lock() {
            match v.iter().find(|(i, _)| i == image) {
                Some((_, b)) => match result {
                    Ok(()) => b.finish_with_message("done"),
                    Err(e) => b.abandon_with_message(format!("failed: {e}")),
                },
                None => {
                    if let Err(e) = result {
                        let _ = self.multi.println(format!("{image}: failed: {e}"));
                    }
                }
            }
        }
    }
    fn resuming(&self, prefix: &str, started: &str, done: usize) {
        self.note(resuming_line(prefix, started, done));
    }
    fn image_skipped(&self, image: &str, at: &str) {
        let b = self.multi.add(ProgressBar::new(1));
        b.set_style(
            ProgressStyle::with_template("{prefix:40!} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_prefix(image.to_owned());
        b.finish_with_message(format!("skipped: done by the interrupted run at {at}"));
    }
}

fn resuming_line(prefix: &str, started: &str, done: usize) -> String {
    let what = if prefix.is_empty() {
        "the upstream".to_owned()
    } else {
        format!("upstream {prefix}")
    };
    format!(
        "{what}: resuming the run interrupted after starting at {started}: {done} images it completed are skipped"
    )
}

impl Bars {
    fn note(&self, line: String) {
        let _ = self.multi.println(line);
    }
}

/// Plain lines when not on a terminal.
struct Lines;

impl SyncProgress for Lines {
    fn image_started(&self, image: &str, blobs: usize) {
        eprintln!("{image}: {blobs} blobs");
    }
    fn blob_done(&self, image: &str, size: u64, fetched: bool) {
        if fetched {
            eprintln!("{image}: fetched a blob of {size} bytes");
        }
    }
    fn image_done(&self, image: &str, result: &Result<(), String>) {
        match result {
            Ok(()) => eprintln!("{image}: done"),
            Err(e) => eprintln!("{image}: failed: {e}"),
        }
    }
    fn resuming(&self, prefix: &str, started: &str, done: usize) {
        eprintln!("{}", resuming_line(prefix, started, done));
    }
    fn image_skipped(&self, image: &str, at: &str) {
        eprintln!("{image}: skipped (done by the interrupted run at {at})");
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (config, warnings) = args.config.load()?;
    super::init_logging(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (registry, upstreams) = crate::app::build_sync(&config)?;
        if !upstreams.has_sync() {
            anyhow::bail!("no upstream has a sync section (proxy.upstreams[].sync)");
        }
        let interval = upstreams.sync_interval();
        if !args.once && interval.is_none() {
            anyhow::bail!("no sync.interval is set: run with --once, or set an interval");
        }
        let progress: Box<dyn SyncProgress> = if std::io::stderr().is_terminal() {
            Box::new(Bars {
                multi: MultiProgress::new(),
                bars: Mutex::new(Vec::new()),
            })
        } else {
            Box::new(Lines)
        };
        loop {
            let s: SyncSummary = upstreams.sync_once(&registry, progress.as_ref()).await;
            println!("sync: {s}");
            for f in &s.failures {
                println!("  failed: {f}");
            }
            match (args.once, interval) {
                (false, Some(i)) => tokio::time::sleep(i).await,
                _ => {
                    if s.images_failed > 0 {
                        anyhow::bail!("{} images failed", s.images_failed);
                    }
                    return Ok(());
                }
            }
        }
    })
}
