//! Scenarios (what zot's `zb` measures) and the runner that times them.
//!
//! Workers claim operation numbers from one counter until the scenario's duration has passed and
//! its minimum count is reached (or its maximum is). Push payloads are generated and hashed before
//! the clock starts; blobs that pulls need are pushed before it too.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::client::{manifest, Registry};
use crate::payload::Payload;
use crate::procstat;

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;
pub const GIB: usize = 1 << 30;
/// Above this many bytes of distinct payloads a scenario's blobs share their tail (see
/// [`Payload::many_shared`]).
const DISTINCT_BYTES: usize = GIB;
/// Size of the "small blob" of the small-request scenarios.
pub const SMALL_BLOB: usize = 4 * KIB;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    PushMonolithic,
    PushChunked,
    Pull,
    /// Even operations pull, odd ones push (monolithic).
    Mixed,
    ManifestGet,
    ManifestHead,
    BlobGet,
    BlobHead,
    /// `GET` of the small blob answered `307` (redirects on), not followed.
    BlobRedirect,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub op: Op,
    pub size: usize,
    pub conc: usize,
    pub duration: Duration,
    pub min_ops: u64,
    pub max_ops: u64,
    /// Distinct push payloads (each a different blob).
    pub distinct: usize,
    /// `PATCH` size of chunked pushes.
    pub chunk: usize,
}

pub fn size_label(n: usize) -> String {
    if n >= GIB && n % GIB == 0 {
        format!("{}G", n / GIB)
    } else if n >= MIB && n % MIB == 0 {
        format!("{}M", n / MIB)
    } else {
        format!("{}K", n / KIB)
    }
}

pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], KIB),
        'M' | 'm' => (&s[..s.len() - 1], MIB),
        'G' | 'g' => (&s[..s.len() - 1], GIB),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

/// The standard set: per size, monolithic push, chunked push (`PATCH`es of `chunk`) and pull
/// (one stream); mixed pull/push; the small requests at `small_conc` connections; concurrent
/// 8 MiB pushes; and with `object_store`, one round of 32 and of 64 concurrent 100 MiB pushes
/// (memory with concurrency); with `redirects`, the `307` of a small blob GET at `small_conc`.
pub fn standard(
    sizes: &[usize],
    duration: Duration,
    small_conc: usize,
    chunk: usize,
    object_store: bool,
    redirects: bool,
) -> Vec<Scenario> {
    let mut v = Vec::new();
    let sc = |name: String, op, size, conc, min_ops, distinct| Scenario {
        name,
        op,
        size,
        conc,
        duration,
        min_ops,
        max_ops: u64::MAX,
        distinct,
        chunk,
    };
    for &(op, prefix) in &[
        (Op::PushMonolithic, "push-mono"),
        (Op::PushChunked, "push-chunked"),
        (Op::Pull, "pull"),
    ] {
        for &size in sizes {
            // At least 3 operations (the large sizes take longer than the duration).
            v.push(sc(
                format!("{prefix}-{}", size_label(size)),
                op,
                size,
                1,
                3,
                1,
            ));
        }
    }
    let mixed = sizes
        .iter()
        .copied()
        .find(|&s| s >= 10 * MIB)
        .unwrap_or(sizes[0]);
    v.push(sc(
        format!("mixed-{}", size_label(mixed)),
        Op::Mixed,
        mixed,
        8,
        8,
        4,
    ));
    for &(op, name) in &[
        (Op::ManifestGet, "manifest-get"),
        (Op::ManifestHead, "manifest-head"),
        (Op::BlobGet, "blob-get-4K"),
        (Op::BlobHead, "blob-head-4K"),
    ] {
        v.push(sc(name.into(), op, SMALL_BLOB, small_conc, 1, 1));
    }
    if redirects {
        v.push(sc(
            "blob-redirect-4K".into(),
            Op::BlobRedirect,
            SMALL_BLOB,
            small_conc,
            1,
            1,
        ));
    }
    let cs = 8 * MIB;
    for conc in [32, 64] {
        // Rounds of `conc` pushes of distinct blobs; the time to complete is what counts.
        v.push(Scenario {
            name: format!("push-8M-x{conc}"),
            op: Op::PushMonolithic,
            size: cs,
            conc,
            duration: Duration::ZERO,
            min_ops: 3 * conc as u64,
            max_ops: 3 * conc as u64,
            distinct: conc,
            chunk,
        });
    }
    if object_store {
        for conc in [32, 64] {
            // One round: every push a distinct blob, all in flight at once.
            v.push(Scenario {
                name: format!("push-100M-x{conc}"),
                op: Op::PushMonolithic,
                size: 100 * MIB,
                conc,
                duration: Duration::ZERO,
                min_ops: conc as u64,
                max_ops: conc as u64,
                distinct: conc,
                chunk,
            });
        }
    }
    v
}

/// What one scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub name: String,
    pub conc: usize,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub bytes: u64,
    pub wall: f64,
    /// Latency percentiles in milliseconds (p50, p90, p99).
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub peak_rss: Option<u64>,
    pub cpu: Option<f64>,
    /// Whether the operation moves blob bytes (throughput is the headline) or is a small request.
    pub bulk: bool,
}

impl Outcome {
    pub fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.wall.max(1e-9)
    }
    pub fn req_s(&self) -> f64 {
        self.ops as f64 / self.wall.max(1e-9)
    }
}

/// Fixtures of a scenario, prepared before timing.
struct Fixture {
    repo: String,
    payloads: Vec<Payload>,
    /// Blob the pulls read (pushed beforehand).
    pull_digest: String,
}

async fn prepare(reg: &Registry, s: &Scenario, seed: u64) -> Result<Fixture> {
    let repo = format!("bench/{}", s.name.to_lowercase());
    let payloads = tokio::task::spawn_blocking({
        let (n, size) = (s.distinct.max(1), s.size);
        move || {
            if n > 1 && n * size > DISTINCT_BYTES {
                Payload::many_shared(n, size, seed)
            } else {
                Payload::many(n, size, seed)
            }
        }
    })
    .await?;
    let mut pull_digest = String::new();
    match s.op {
        Op::Pull | Op::Mixed | Op::BlobGet | Op::BlobHead | Op::BlobRedirect => {
            let p = &payloads[0];
            reg.push_monolithic(&repo, p).await?;
            pull_digest = p.digest.clone();
        }
        Op::ManifestGet | Op::ManifestHead => {
            let config = Payload::from_bytes(bytes::Bytes::from_static(b"{}"));
            reg.push_monolithic(&repo, &config).await?;
            reg.push_monolithic(&repo, &payloads[0]).await?;
            reg.put_manifest(&repo, "latest", manifest(&config, &[&payloads[0]]))
                .await?;
        }
        Op::PushMonolithic | Op::PushChunked => {}
    }
    Ok(Fixture {
        repo,
        payloads,
        pull_digest,
    })
}

async fn one(reg: &Registry, s: &Scenario, f: &Fixture, i: u64) -> Result<u64> {
    let payload = &f.payloads[i as usize % f.payloads.len()];
    match s.op {
        Op::PushMonolithic => reg
            .push_monolithic(&f.repo, payload)
            .await
            .map(|()| payload.len() as u64),
        Op::PushChunked => reg
            .push_chunked(&f.repo, payload, s.chunk)
            .await
            .map(|()| payload.len() as u64),
        Op::Pull => reg.pull(&f.repo, &f.pull_digest).await,
        Op::Mixed if i % 2 == 0 => reg.pull(&f.repo, &f.pull_digest).await,
        Op::Mixed => reg
            .push_monolithic(&f.repo, payload)
            .await
            .map(|()| payload.len() as u64),
        Op::ManifestGet => reg.get_manifest(&f.repo, "latest", false).await,
        Op::ManifestHead => reg.get_manifest(&f.repo, "latest", true).await,
        Op::BlobGet => reg.pull(&f.repo, &f.pull_digest).await,
        Op::BlobHead => reg.head_blob(&f.repo, &f.pull_digest).await.map(|()| 0),
        Op::BlobRedirect => reg.blob_redirect(&f.repo, &f.pull_digest).await.map(|()| 0),
    }
}

/// Runs one scenario against `reg`; `pid` is the server's process for RSS and CPU.
pub async fn run(reg: &Registry, s: &Scenario, pid: Option<u32>, seed: u64) -> Result<Outcome> {
    let f = Arc::new(prepare(reg, s, seed).await?);
    if let Some(pid) = pid {
        procstat::reset_peak(pid);
    }
    let cpu0 = pid.and_then(procstat::cpu_seconds);
    let claimed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..s.conc {
        let (reg, s, f) = (reg.clone(), s.clone(), f.clone());
        let (claimed, errors, bytes) = (claimed.clone(), errors.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut first_error = None;
            loop {
                let i = claimed.fetch_add(1, Ordering::Relaxed);
                let timed_out = start.elapsed() >= s.duration;
                if i >= s.max_ops || (timed_out && i >= s.min_ops) {
                    break;
                }
                let t = Instant::now();
                match one(&reg, &s, &f, i).await {
                    Ok(n) => {
                        lat.push(t.elapsed());
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        // An erroring server must not turn into a busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (lat, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut first_error = None;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        if first_error.is_none() {
            first_error = e;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, pid.and_then(procstat::cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let idx = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[idx].as_secs_f64() * 1000.0
    };
    Ok(Outcome {
        name: s.name.clone(),
        conc: s.conc,
        ops: lat.len() as u64,
        errors: errors.load(Ordering::Relaxed) as u64,
        first_error,
        bytes: bytes.load(Ordering::Relaxed),
        wall,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        peak_rss: pid.and_then(procstat::peak_rss),
        cpu,
        bulk: !matches!(
            s.op,
            Op::ManifestGet | Op::ManifestHead | Op::BlobGet | Op::BlobHead | Op::BlobRedirect
        ),
    })
}
