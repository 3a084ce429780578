//! `loadgen`: a load generator for OCI registries, modelled on zot's `zb`.
//!
//! - `loadgen run --url http://127.0.0.1:5000 [--pid PID]` measures any registry.
//! - `loadgen compare` starts our server (release build) and CNCF distribution 2.8
//!   (`docker-registry`) on fresh folders of the same filesystem, runs every scenario on each in
//!   turn and prints a side-by-side markdown table with ratios.
//!
//! See `benches/README.md` for the scenarios and how to read the numbers.

mod client;
mod payload;
mod procstat;
mod relay;
mod scenario;
mod servers;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use client::Registry;
use scenario::{Outcome, Scenario};
use servers::Kind;

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for OCI registries")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure one registry at a URL.
    Run {
        /// Base URL, e.g. http://127.0.0.1:5000
        #[arg(long)]
        url: String,
        /// The server's process id, for peak RSS and CPU seconds from /proc.
        #[arg(long)]
        pid: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Relay TCP on 127.0.0.1 to a target, delaying what it sends back (a store a few
    /// milliseconds away); runs until killed.
    Relay {
        /// Port to listen on (127.0.0.1).
        #[arg(long)]
        listen: u16,
        /// HOST:PORT to relay to.
        #[arg(long)]
        target: String,
        /// Milliseconds every byte from the target waits before it is sent on.
        #[arg(long, default_value_t = 5)]
        delay_ms: u64,
    },
    /// Start our server and distribution 2.8 and print a side-by-side table.
    Compare {
        /// Our server's binary.
        #[arg(long, default_value = "target/release/image-registry")]
        ours: PathBuf,
        /// CNCF distribution's binary (Debian `docker-registry`).
        #[arg(long, default_value = "docker-registry")]
        distribution: PathBuf,
        /// Which servers to run, in this column order (comma separated): `distribution`, `ours`,
        /// or `LABEL=PATH` for another build of our server (e.g. `before=/tmp/old/image-registry`
        /// for a before/after comparison).
        #[arg(long, default_value = "distribution,ours", value_delimiter = ',')]
        servers: Vec<String>,
        /// Folder for the servers' data (a fresh subfolder each); default the system temp folder.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Wait until the 1-minute load average is below this before starting (0: do not wait).
        #[arg(long, default_value_t = 0.0)]
        wait_load: f64,
        /// Give up waiting for a quiet machine after this many seconds (and run anyway).
        #[arg(long, default_value_t = 1800)]
        wait_max: u64,
        /// Keep one process per server for all scenarios (default: a fresh one per scenario).
        #[arg(long)]
        reuse_servers: bool,
        /// Also write the table to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Before each server's turn at a scenario, write and delete this many MiB in the work
        /// folder (0: never). On VMs whose first touch of fresh guest memory is expensive (~1.5 s
        /// per GiB here), it keeps the order of the servers from deciding large-blob results.
        #[arg(long, default_value_t = 0)]
        prewarm_mib: u64,
        /// Where both servers keep their data: `filesystem` (fresh folders under --workdir) or
        /// `s3=http://HOST:PORT` (moto: a fresh bucket per server and scenario, redirects off for
        /// both, the store reset between scenarios; adds the `push-100M-x32`/`-x64` scenarios), or
        /// `s3-redirect=http://HOST:PORT`: the same with redirects on (both servers' default), which
        /// adds `blob-redirect-4K` (the `307` of a blob GET, not followed); or, our server only,
        /// `azure=http://HOST:PORT/devstoreaccount1` (Azurite) or `gcs=http://HOST:PORT`
        /// (fake-gcs-server): a fresh container or bucket per scenario, redirects off.
        #[arg(long, default_value = "filesystem")]
        storage: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Blob sizes for push and pull (K, M, G suffixes).
    #[arg(long, default_value = "1M,10M,100M,1G", value_delimiter = ',')]
    sizes: Vec<String>,
    /// `PATCH` size of the chunked pushes (K, M, G suffixes).
    #[arg(long, default_value = "64M")]
    chunk: String,
    /// Seconds each time-based scenario runs (large blobs run at least 3 operations).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Connections of the small-request scenarios (manifest and small blob GET/HEAD).
    #[arg(long, default_value_t = 64)]
    conc: usize,
    /// Run only scenarios whose name starts with one of these (comma separated).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Exactly this many operations per scenario, whatever the duration (e.g. `--ops 1` to count
    /// the storage calls of one push).
    #[arg(long)]
    ops: Option<u64>,
    /// Exit with an error if any operation failed (for smoke tests).
    #[arg(long)]
    fail_on_errors: bool,
}

impl Common {
    fn scenarios(&self, object_store: bool, redirects: bool) -> Result<Vec<Scenario>> {
        let mut sizes = Vec::new();
        for s in &self.sizes {
            sizes.push(scenario::parse_size(s).with_context(|| format!("bad size {s:?}"))?);
        }
        if sizes.is_empty() {
            bail!("no sizes");
        }
        let chunk = scenario::parse_size(&self.chunk)
            .filter(|&c| c > 0)
            .with_context(|| format!("bad --chunk {:?}", self.chunk))?;
        let all = scenario::standard(
            &sizes,
            Duration::from_secs_f64(self.duration),
            self.conc,
            chunk,
            object_store,
            redirects,
        );
        Ok(all
            .into_iter()
            .filter(|s| {
                self.scenarios.is_empty() || self.scenarios.iter().any(|p| s.name.starts_with(p))
            })
            .map(|mut s| {
                if let Some(n) = self.ops {
                    (s.min_ops, s.max_ops) = (n, n);
                }
                s
            })
            .collect())
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Cmd::Run { url, pid, common } => run_one(&url, pid, &common).await,
            Cmd::Relay {
                listen,
                target,
                delay_ms,
            } => relay::run(listen, target, Duration::from_millis(delay_ms)).await,
            Cmd::Compare {
                ours,
                distribution,
                servers,
                workdir,
                wait_load,
                wait_max,
                reuse_servers,
                out,
                prewarm_mib,
                storage,
                common,
            } => {
                let storage = servers::Storage::parse(&storage)?;
                let mut kinds = Vec::new();
                for s in &servers {
                    kinds.push(match s.as_str() {
                        "distribution" => (
                            Kind::Distribution,
                            "distribution".into(),
                            distribution.clone(),
                        ),
                        "ours" | "image-registry" => {
                            (Kind::Ours, "image-registry".into(), ours.clone())
                        }
                        other => match other.split_once('=') {
                            Some((label, path)) => {
                                (Kind::Ours, label.to_owned(), PathBuf::from(path))
                            }
                            None => {
                                bail!("unknown server {other:?} (distribution, ours, LABEL=PATH)")
                            }
                        },
                    });
                }
                let pacing = Pacing {
                    wait_load,
                    wait_max,
                    reuse_servers,
                    prewarm_mib,
                };
                let (table, errors) = compare(&kinds, workdir, &pacing, &storage, &common).await?;
                print!("{table}");
                if let Some(out) = out {
                    std::fs::write(&out, &table)?;
                }
                if common.fail_on_errors && errors > 0 {
                    bail!("{errors} operations failed");
                }
                Ok(())
            }
        }
    })
}

fn fmt_opt_mib(v: Option<u64>) -> String {
    v.map_or("-".into(), |b| {
        format!("{:.0}", b as f64 / (1 << 20) as f64)
    })
}

fn fmt_opt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |c| format!("{c:.1}"))
}

fn headline(o: &Outcome) -> String {
    if o.bulk {
        format!("{:.0} MiB/s", o.mib_s())
    } else {
        format!("{:.0} req/s", o.req_s())
    }
}

fn headline_value(o: &Outcome) -> f64 {
    if o.bulk {
        o.mib_s()
    } else {
        o.req_s()
    }
}

fn lat(o: &Outcome) -> String {
    format!("{:.1} / {:.1} / {:.1}", o.p50, o.p90, o.p99)
}

fn report_error(label: &str, o: &Outcome) {
    if let Some(e) = &o.first_error {
        eprintln!("  {label} {}: {} errors, first: {e}", o.name, o.errors);
    }
}

async fn run_one(url: &str, pid: Option<u32>, common: &Common) -> Result<()> {
    let reg = Registry::new(url)?;
    reg.ping().await.context("GET /v2/")?;
    let mut t = String::new();
    writeln!(
        t,
        "| scenario | conc | ops | errors | throughput | req/s | p50 / p90 / p99 ms | peak RSS MiB | CPU s |"
    )?;
    writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut errors = 0;
    for (i, s) in common.scenarios(false, false)?.iter().enumerate() {
        let o = scenario::run(&reg, s, pid, i as u64 * 1000).await?;
        errors += o.errors;
        report_error("", &o);
        eprintln!("  {}: {} ({:.1} s)", o.name, headline(&o), o.wall);
        writeln!(
            t,
            "| {} | {} | {} | {} | {:.0} MiB/s | {:.0} | {} | {} | {} |",
            o.name,
            o.conc,
            o.ops,
            o.errors,
            o.mib_s(),
            o.req_s(),
            lat(&o),
            fmt_opt_mib(o.peak_rss),
            fmt_opt_s(o.cpu)
        )?;
    }
    print!("{t}");
    if common.fail_on_errors && errors > 0 {
        bail!("{errors} operations failed");
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| format!(", {} GiB RAM", kb >> 20));
    format!("{cpu}, {cores} cores{mem}, Linux {kernel}")
}

/// Writes `mib` MiB of zeros into a file in `dir`, then deletes it (see `--prewarm-mib`).
async fn prewarm(dir: &std::path::Path, mib: u64) -> Result<()> {
    let path = dir.join(format!(".loadgen-prewarm-{}", std::process::id()));
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let block = vec![0u8; 1 << 20];
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..mib {
            f.write_all(&block)?;
        }
        drop(f);
        std::fs::remove_file(&path)
    })
    .await??;
    Ok(())
}

/// How `compare` paces its turns (the options of the same names).
struct Pacing {
    wait_load: f64,
    wait_max: u64,
    reuse_servers: bool,
    prewarm_mib: u64,
}

async fn compare(
    kinds: &[(Kind, String, PathBuf)],
    workdir: Option<PathBuf>,
    pacing: &Pacing,
    storage: &servers::Storage,
    common: &Common,
) -> Result<(String, u64)> {
    let &Pacing {
        wait_load,
        wait_max,
        reuse_servers,
        prewarm_mib,
    } = pacing;
    let work = workdir.unwrap_or_else(std::env::temp_dir);
    let scenarios = common.scenarios(storage.is_object(), storage.redirects())?;
    if wait_load > 0.0 {
        let deadline = Instant::now() + Duration::from_secs(wait_max);
        while let Some(l) = procstat::load1() {
            if l < wait_load {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("load average still {l:.2} after {wait_max} s: running anyway");
                break;
            }
            eprintln!("load average {l:.2} >= {wait_load}: waiting");
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    }
    let load_before = procstat::load1();
    let started = Instant::now();
    // results[scenario][server]
    let mut results: Vec<Vec<Outcome>> = Vec::new();
    let mut kept: Vec<Option<servers::Server>> = kinds.iter().map(|_| None).collect();
    for (i, s) in scenarios.iter().enumerate() {
        let mut row = Vec::new();
        // Same payloads (same seed) for every server; servers take turns per scenario, so a
        // change in background load hits both alike. Each scenario gets a freshly started server
        // on empty storage (unless --reuse-servers): peak RSS then belongs to that scenario
        // alone, not to what earlier ones left in the heap.
        for ((kind, label, bin), slot) in kinds.iter().zip(kept.iter_mut()) {
            let server = match slot.take() {
                Some(server) => server,
                None => servers::start(*kind, label, bin, &work, storage).await?,
            };
            if prewarm_mib > 0 {
                prewarm(&work, prewarm_mib).await?;
            }
            let reg = Registry::new(&server.url)?;
            let o = scenario::run(&reg, s, Some(server.pid()), i as u64 * 1000)
                .await
                .with_context(|| format!("{} on {label}", s.name))?;
            if reuse_servers {
                *slot = Some(server);
            } else {
                drop(server);
                storage.reset().await?;
            }
            report_error(label, &o);
            eprintln!(
                "  {:<16} {:<14} {:>12}  p99 {:.1} ms  RSS {} MiB  CPU {} s",
                o.name,
                label,
                headline(&o),
                o.p99,
                fmt_opt_mib(o.peak_rss),
                fmt_opt_s(o.cpu)
            );
            row.push(o);
        }
        results.push(row);
    }
    let elapsed = started.elapsed().as_secs();
    let load_after = procstat::load1();
    drop(kept);

    let mut t = String::new();
    let fl = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    writeln!(t, "Machine: {}", machine())?;
    writeln!(
        t,
        "1-minute load average: {} at start, {} at end; run took {elapsed} s; loopback HTTP/1.1; \
         storage: {}; {}",
        fl(load_before),
        fl(load_after),
        storage.describe(&work),
        if reuse_servers {
            "one server process for all scenarios"
        } else {
            "a fresh server process per scenario"
        }
    )?;
    writeln!(t)?;
    let labels: Vec<&str> = kinds.iter().map(|(_, l, _)| l.as_str()).collect();
    let mut head = String::from("| scenario | conc |");
    let mut sep = String::from("|---|---:|");
    for l in &labels {
        let _ = write!(head, " {l} |");
        sep.push_str("---:|");
    }
    if labels.len() == 2 {
        head.push_str(" ratio |");
        sep.push_str("---:|");
    }
    for l in &labels {
        let _ = write!(
            head,
            " {l} p50/p90/p99 ms | {l} peak RSS MiB | {l} CPU s | {l} errors |"
        );
        sep.push_str("---:|---:|---:|---:|");
    }
    writeln!(t, "{head}")?;
    writeln!(t, "{sep}")?;
    for row in &results {
        let mut line = format!("| {} | {} |", row[0].name, row[0].conc);
        for o in row {
            let _ = write!(line, " {} |", headline(o));
        }
        if row.len() == 2 {
            let r = headline_value(&row[1]) / headline_value(&row[0]).max(1e-9);
            let _ = write!(line, " **{r:.2}x** |");
        }
        for o in row {
            let _ = write!(
                line,
                " {} | {} | {} | {} |",
                lat(o),
                fmt_opt_mib(o.peak_rss),
                fmt_opt_s(o.cpu),
                o.errors
            );
        }
        writeln!(t, "{line}")?;
    }
    if labels.len() == 2 {
        writeln!(t)?;
        writeln!(
            t,
            "ratio = {} / {} (throughput for blob scenarios, requests/s for the small requests; \
             higher is better for {}).",
            labels[1], labels[0], labels[1]
        )?;
    }
    let errors = results.iter().flatten().map(|o| o.errors).sum();
    Ok((t, errors))
}
