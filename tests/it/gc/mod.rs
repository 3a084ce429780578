//! Garbage collection (`image_registry::lifecycle`, `image-registry gc`): what is marked and
//! swept (`collect`), the command line (`cli`), and safety next to pushes (`online`).

mod cli;
mod collect;
mod online;
mod purge;
mod replicas;
mod retention;
mod schedule;

use std::path::Path;
use std::time::{Duration, SystemTime};

use image_registry::lifecycle::{self, GcOptions, GcReport, NoProgress, Progress};
use image_registry::storage::fs::FsDriver;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

/// `image-registry gc --config <config> <args>` as a process (the binary under test), its output.
pub fn gc_cmd(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_image-registry"))
        .arg("gc")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("REGISTRY_CONFIGURATION_PATH")
        .output()
        .expect("run image-registry gc")
}

/// A server on a fresh folder that reads storage on every request (linkTTL 0) and refreshes
/// blob ages as a server does for a `gc.delay` of `delay`.
pub async fn server(delay: &str) -> TestServer {
    TestServer::builder()
        .storage_config(&format!(
            "  cache:\n    linkTTL: 0s\n  maintenance:\n    gc:\n      delay: {delay}\n"
        ))
        .start()
        .await
}

pub fn opts(delete_untagged: bool, delay: Duration) -> GcOptions {
    GcOptions {
        dry_run: false,
        delete_untagged,
        delay,
        grace: Duration::from_millis(200),
    }
}

/// One run over the folder (as another process would).
pub async fn gc(root: &Path, o: &GcOptions) -> GcReport {
    gc_with(root, o, &NoProgress).await
}

pub async fn gc_with(root: &Path, o: &GcOptions, p: &dyn Progress) -> GcReport {
    let d = FsDriver::new(root).expect("storage folder");
    lifecycle::collect(&d, o, p).await.expect("gc run")
}

/// Makes every file below `root` look `age` old.
pub fn age_everything(root: &Path, age: Duration) {
    let t = SystemTime::now() - age;
    for f in files_under(root) {
        let p = root.join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.set_modified(t))
            .unwrap_or_else(|e| panic!("set time of {}: {e}", p.display()));
    }
}

/// Pulls `reference` from `repo` the way a client does, following an index to its children and
/// reading every blob; asserts every byte matches its digest. Returns the manifest digests seen.
pub async fn pull_intact(s: &TestServer, repo: &str, reference: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut queue = vec![reference.to_owned()];
    while let Some(r) = queue.pop() {
        let resp = s
            .request(reqwest::Method::GET, &format!("/v2/{repo}/manifests/{r}"))
            .header(
                "accept",
                format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
            )
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(resp.status(), StatusCode::OK, "manifest {repo}:{r}");
        let body = resp.bytes().await.expect("manifest body");
        let digest = sha256(&body);
        if r.contains(':') {
            assert_eq!(digest, r, "manifest bytes of {r}");
        }
        out.push(digest);
        let m: Value = serde_json::from_slice(&body).expect("manifest JSON");
        for child in m["manifests"].as_array().into_iter().flatten() {
            queue.push(child["digest"].as_str().expect("child digest").to_owned());
        }
        let blobs = m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(m.get("config"));
        for b in blobs {
            let d = b["digest"].as_str().expect("blob digest");
            let resp = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
            assert_eq!(resp.status(), StatusCode::OK, "blob {d} of {repo}:{r}");
            let bytes = resp.bytes().await.expect("blob body");
            assert_eq!(sha256(&bytes), d, "blob {d} of {repo}:{r} is intact");
        }
    }
    out
}

/// Whether the blob store holds `digest`'s bytes (looked at on disk).
pub fn blob_on_disk(root: &Path, digest: &str) -> bool {
    let hex = hex_of(digest);
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
    .exists()
}

/// An OCI index of `children` (digest, size).
pub fn index(children: &[(&str, usize)]) -> Vec<u8> {
    let ms: Vec<Value> = children
        .iter()
        .map(|(d, n)| {
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": n,
                   "platform": {"os": "linux", "architecture": "amd64"}})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ms}))
        .unwrap()
}

/// An artifact manifest whose subject is `subject` (its empty config is pushed to `repo`).
pub async fn push_referrer(
    s: &TestServer,
    repo: &str,
    subject: &str,
    size: usize,
    seed: &str,
) -> String {
    let cfg = b"{}";
    let c = s.push_blob(repo, cfg).await;
    let layer = format!("signature {seed}").into_bytes();
    let l = s.push_blob(repo, &layer).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": descriptor(OCI_EMPTY, &c, cfg.len()),
        "layers": [descriptor(OCI_LAYER, &l, layer.len())],
        "subject": descriptor(OCI_MANIFEST, subject, size),
    }))
    .unwrap();
    let d = sha256(&m);
    s.push_manifest(repo, &d, OCI_MANIFEST, &m).await
}
