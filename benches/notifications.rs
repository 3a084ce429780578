//! Cost of notifications on the write path: manifest PUT latency (p50/p99) and blob push
//! throughput through the registry domain, with no endpoint vs one endpoint (a live local
//! receiver), plus the spool under a receiver outage (events queued, resident memory before and
//! after). The two registries run the same operations interleaved one by one. Plain-line
//! output; `cargo bench --bench notifications`.
//!
//! The domain is driven directly (no HTTP): what is measured is exactly what notifications add —
//! building the event, the journal's group-committed fsync, and delivery running beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image_registry::config::Config;
use image_registry::events::Notifier;
use image_registry::net::outbound::Outbound;
use image_registry::oci::{Digest, Reference, RepositoryName};
use image_registry::ops::metrics::Metrics;
use image_registry::registry::{Registry, RegistryOptions, UploadSecret};
use image_registry::storage::fs::FsDriver;

const PUTS: usize = 2000;
const BLOBS: usize = 200;
const BLOB_SIZE: usize = 1 << 20;
const OUTAGE_EVENTS: usize = 10_000;

fn registry(root: &std::path::Path, endpoint: Option<&str>) -> Registry {
    let driver = Arc::new(FsDriver::new(root).expect("storage folder"));
    let r = Registry::new(
        driver,
        RegistryOptions::new(UploadSecret::new(b"bench".to_vec())),
    );
    let Some(url) = endpoint else {
        return r;
    };
    let yaml = format!(
        "storage:\n  filesystem:\n    rootdirectory: {:?}\nnotifications:\n  endpoints:\n    - name: bench\n      url: {url}\n      backoff: 200ms\n",
        root.display().to_string()
    );
    let (config, _) = Config::from_yaml(&yaml, &[]).expect("config");
    let outbound = Outbound::from_config(&config, &[]).expect("outbound");
    let n = Notifier::start(&config, &outbound, &Metrics::new())
        .expect("notifier")
        .expect("an endpoint");
    r.with_events(n)
}

/// A receiver that answers 200 to everything.
async fn receiver() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "" });
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}/events")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One 1 MiB blob push (`i` makes it unique); its time.
async fn push_blob(reg: &Registry, name: &RepositoryName, i: usize) -> (Duration, Digest) {
    let mut data = vec![(i % 251) as u8; BLOB_SIZE];
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let d = Digest::sha256_of(&data);
    let body: image_registry::registry::ByteStream =
        Box::pin(futures::stream::once(async move { Ok(Bytes::from(data)) }));
    let t = Instant::now();
    reg.put_blob(name, &d, body).await.expect("blob");
    (t.elapsed(), d)
}

/// One manifest PUT naming `layer` (`i` makes it unique, 50 tags reused); its latency.
async fn put_manifest(reg: &Registry, name: &RepositoryName, layer: &Digest, i: usize) -> Duration {
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{layer}","size":{BLOB_SIZE}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{BLOB_SIZE}}}],"annotations":{{"i":"{i}"}}}}"#
    );
    let tag = Reference::Tag(format!("t{}", i % 50).parse().unwrap());
    let t = Instant::now();
    reg.put_manifest(
        name,
        &tag,
        Some("application/vnd.oci.image.manifest.v1+json"),
        Bytes::from(m),
    )
    .await
    .expect("manifest");
    t.elapsed()
}

/// Drives both registries through the same operations, interleaved one by one (the order of the
/// pair alternates), so drift of the disk over the run weighs on both sides alike. Returns, per
/// registry, manifest PUT p50 and p99 and blob push MiB/s (bytes over the summed push times).
async fn run(regs: [&Registry; 2]) -> [(Duration, Duration, f64); 2] {
    let name: RepositoryName = "bench/app".parse().unwrap();
    let mut push_time = [Duration::ZERO; 2];
    let mut layer = None;
    for i in 0..BLOBS {
        for k in [i % 2, 1 - i % 2] {
            let (t, d) = push_blob(regs[k], &name, i).await;
            push_time[k] += t;
            layer.get_or_insert(d);
        }
    }
    let layer = layer.unwrap();
    let mut lat = [Vec::with_capacity(PUTS), Vec::with_capacity(PUTS)];
    for i in 0..PUTS {
        for k in [i % 2, 1 - i % 2] {
            lat[k].push(put_manifest(regs[k], &name, &layer, i).await);
        }
        if i % 500 == 499 {
            println!("{} manifest PUTs on each", i + 1);
        }
    }
    let mib = (BLOBS * BLOB_SIZE) as f64 / (1 << 20) as f64;
    [0, 1].map(|k| {
        lat[k].sort();
        (
            percentile(&lat[k], 0.5),
            percentile(&lat[k], 0.99),
            mib / push_time[k].as_secs_f64(),
        )
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = receiver().await;
        let a = tempfile::tempdir().unwrap();
        let none = registry(a.path(), None);
        let b = tempfile::tempdir().unwrap();
        let one = registry(b.path(), Some(&url));
        let [(p50a, p99a, tpa), (p50b, p99b, tpb)] = run([&none, &one]).await;
        println!("manifest PUT p50/p99: none {p50a:?}/{p99a:?}, one endpoint {p50b:?}/{p99b:?}");
        println!("blob push 1 MiB x {BLOBS}: none {tpa:.0} MiB/s, one endpoint {tpb:.0} MiB/s ({:+.1} %)", (tpb / tpa - 1.0) * 100.0);

        // Outage: the receiver is a port nobody listens on; events pile up in the spool.
        let c = tempfile::tempdir().unwrap();
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/events", l.local_addr().unwrap())
        };
        let down = registry(c.path(), Some(&dead));
        let name: RepositoryName = "bench/outage".parse().unwrap();
        let data = vec![1u8; 16];
        let d = Digest::sha256_of(&data);
        let body: image_registry::registry::ByteStream =
            Box::pin(futures::stream::once(async move { Ok(Bytes::from(data)) }));
        down.put_blob(&name, &d, body).await.unwrap();
        let rss0 = rss_kib();
        let start = Instant::now();
        for i in 0..OUTAGE_EVENTS {
            // Mounts are durable events without blob bytes.
            down.mount_blob(&name, &d, None).await.unwrap();
            if i % 2500 == 2499 {
                println!("outage: {} events queued, RSS {} KiB", i + 1, rss_kib());
            }
        }
        println!(
            "outage: {OUTAGE_EVENTS} events in {:.2}s, RSS {rss0} KiB -> {} KiB",
            start.elapsed().as_secs_f64(),
            rss_kib()
        );
    });
}
