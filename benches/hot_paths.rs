//! Criterion benches for the hot paths that do not need a server: digest computation (the
//! resumable SHA-256 used by uploads against the `sha2` crate's own), manifest parsing and
//! validation, and name/reference parsing. The side-by-side load benchmark against distribution
//! lives beside this file (see benches/README.md).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use image_registry::oci::{Digest, ParsedManifest, RepositoryName, Tag};
use image_registry::registry::hasher::ResumableSha256;
use sha2::Digest as _;

fn digests(c: &mut Criterion) {
    let data = vec![0x5au8; 8 << 20];
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function(BenchmarkId::new("resumable", "8MiB"), |b| {
        b.iter(|| {
            let mut h = ResumableSha256::new();
            for chunk in data.chunks(64 << 10) {
                h.update(chunk);
            }
            black_box(h.finish())
        })
    });
    g.bench_function(BenchmarkId::new("sha2", "8MiB"), |b| {
        b.iter(|| black_box(sha2::Sha256::digest(&data)))
    });
    g.finish();
}

fn manifests(c: &mut Criterion) {
    let layer = |i: u8| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
            Digest::sha256_of(&[i]),
            1000 + u32::from(i)
        )
    };
    let layers: Vec<String> = (0..20).map(layer).collect();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},"layers":[{}]}}"#,
        Digest::sha256_of(b"config"),
        layers.join(",")
    );
    c.bench_function("manifest_parse_20_layers", |b| {
        b.iter(|| black_box(ParsedManifest::parse(body.as_bytes(), None).ok()))
    });
}

fn references(c: &mut Criterion) {
    let d = Digest::sha256_of(b"x").to_string();
    c.bench_function("parse_name_tag_digest", |b| {
        b.iter(|| {
            black_box("openshift/ruby-27-ubi8".parse::<RepositoryName>().ok());
            black_box("v1.2.3-rc1".parse::<Tag>().ok());
            black_box(d.parse::<Digest>().ok())
        })
    });
}

criterion_group!(benches, digests, manifests, references);
criterion_main!(benches);
