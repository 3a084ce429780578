//! Scheduled collection (`storage.maintenance.gc.enabled`) in real `serve` processes: two
//! replicas on one storage take turns through the lease while pushes run, the lifecycle metrics
//! move, `gc` honours the same lease, and SIGTERM stops the scheduler.

use std::process::Command;

use super::*;

/// Env of a replica on `root` collecting every second (delay `delay`, untagged manifests too).
fn replica_env(root: &Path, delay: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            root.display().to_string(),
        ),
        ("REGISTRY_HTTP_SECRET", "replicas-share-this".to_owned()),
        ("REGISTRY_STORAGE_CACHE_LINKTTL", "0s".to_owned()),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_ENABLED", "true".to_owned()),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "1s".to_owned()),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_DELAY", delay.to_owned()),
        (
            "REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED",
            "true".to_owned(),
        ),
        ("REGISTRY_METRICS_ENABLED", "true".to_owned()),
        ("REGISTRY_LOG_LEVEL", "info".to_owned()),
    ]
}

async fn spawn(env: &[(&'static str, String)], log: &Path) -> Process {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::spawn(&env, log).await
}

/// The (taken, released) times of the lease in a process's log, as RFC 3339 strings (one clock,
/// one format: they compare as strings).
fn lease_intervals(log: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut taken = None;
    for l in log.lines() {
        let t = l.split_whitespace().next().unwrap_or("").to_owned();
        if l.contains("collection lease taken") {
            assert!(taken.is_none(), "taken twice without release:\n{log}");
            taken = Some(t);
        } else if l.contains("collection lease released") {
            out.push((taken.take().expect("released without taking"), t));
        }
    }
    out
}

/// Pushes an image to `app:tag`; a refusal fails the test with both replicas' logs.
async fn push_or_show(s: &TestServer, tag: &str, seed: &str, logs: impl Fn() -> String) -> String {
    let m = s.oci_image("app", seed).await;
    let r = s.put_manifest("app", tag, OCI_MANIFEST, &m).await;
    let status = r.status();
    if status != StatusCode::CREATED {
        let body = r.text().await.unwrap_or_default();
        panic!("PUT app:{tag}: {status} {body}\n{}", logs());
    }
    sha256(&m)
}

fn metric_sum(scrapes: &[String], series: &str) -> f64 {
    scrapes.iter().filter_map(|s| sample(s, series)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_take_turns_while_pushes_run_and_every_tag_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let env = replica_env(&root, "2s");
    let mut a = spawn(&env, &dir.path().join("a.log")).await;
    let mut b = spawn(&env, &dir.path().join("b.log")).await;
    let servers = [TestServer::at(&a.base, None), TestServer::at(&b.base, None)];

    // Each round: a new image under `latest` (the previous one becomes untagged garbage) and one
    // under its own tag, alternating replicas; rounds run while both replicas collect.
    let mut kept = Vec::new();
    let started = std::time::Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(14) {
        let s = &servers[round % 2];
        let logs = || format!("a:\n{}\nb:\n{}", a.log(), b.log());
        push_or_show(s, "latest", &format!("moving {round}"), logs).await;
        let tag = format!("r{round}");
        let d = push_or_show(s, &tag, &format!("kept {round}"), logs).await;
        kept.push((tag, d));
        round += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(round >= 10, "only {round} rounds");

    // Both replicas ran (or tried); untagged manifests went.
    let scrapes = eventually(60, "runs that deleted the moved images", || async {
        let s = vec![servers[0].scrape().await, servers[1].scrape().await];
        let ok = metric_sum(&s, "imageregistry_gc_runs_total{result=\"success\"}");
        let gone = metric_sum(&s, "imageregistry_gc_deleted_total{kind=\"manifest\"}");
        (ok >= 3.0 && gone >= (round - 2) as f64).then_some(s)
    })
    .await;
    assert!(metric_sum(&scrapes, "imageregistry_gc_deleted_total{kind=\"blob\"}") >= 2.0);
    assert!(metric_sum(&scrapes, "imageregistry_gc_reclaimed_bytes_total") > 0.0);
    assert_eq!(
        metric_sum(&scrapes, "imageregistry_gc_runs_total{result=\"failure\"}"),
        0.0,
        "{}\n{}",
        a.log(),
        b.log()
    );
    let last = scrapes
        .iter()
        .filter_map(|s| sample(s, "imageregistry_gc_last_success_timestamp_seconds"))
        .fold(0.0, f64::max);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(now - last < 120.0, "last success {last}, now {now}");

    // Every acknowledged tag pulls intact from both replicas.
    for s in &servers {
        for (tag, d) in &kept {
            assert_eq!(&pull_intact(s, "app", tag).await[0], d, "{tag}");
        }
        pull_intact(s, "app", "latest").await;
    }

    // Graceful shutdown stops the schedulers; the lease is not left behind.
    a.sigterm();
    b.sigterm();
    assert!(a.wait_exit(30).await.success(), "{}", a.log());
    assert!(b.wait_exit(30).await.success(), "{}", b.log());
    let (la, lb) = (a.log(), b.log());
    for l in [&la, &lb] {
        assert!(l.contains("scheduled gc stopped"), "{l}");
    }
    assert!(
        !root.join("docker/registry/v2/_lifecycle/gclease").exists(),
        "lease left behind"
    );

    // The lease intervals of the two processes never overlap, and both took it at some point
    // or one was refused (skipped) while the other held it.
    let (ia, ib) = (lease_intervals(&la), lease_intervals(&lb));
    assert!(ia.len() + ib.len() >= 3, "{ia:?} {ib:?}");
    for (s1, e1) in &ia {
        for (s2, e2) in &ib {
            assert!(
                e1 < s2 || e2 < s1,
                "runs overlap: a {s1}..{e1}, b {s2}..{e2}"
            );
        }
    }
}

#[tokio::test]
async fn gc_refuses_to_run_while_another_process_holds_the_lease() {
    let s = server("1h").await;
    let root = s.root.clone().unwrap();
    let orphan = s.push_blob("app", b"an orphan").await;
    age_everything(&root, Duration::from_secs(7200));
    let lease = root.join("docker/registry/v2/_lifecycle/gclease");
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    let until = SystemTime::now() + Duration::from_secs(600);
    let ms = until
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(
        &lease,
        format!(r#"{{"owner":"other-replica/1/abc","expires":{ms}}}"#),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {:?}\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let gc = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_image-registry"))
            .arg("gc")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("REGISTRY_CONFIGURATION_PATH")
            .output()
            .expect("run gc")
    };
    let out = gc(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("holds the lease") && err.contains("other-replica/1/abc"),
        "{err}"
    );
    assert!(blob_on_disk(&root, &orphan), "nothing deleted");
    // A dry run needs no lease.
    assert!(gc(&["--dry-run"]).status.success());
    // Once the lease expired, gc takes it, collects and releases it.
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 1;
    std::fs::write(
        &lease,
        format!(r#"{{"owner":"other-replica/1/abc","expires":{ms}}}"#),
    )
    .unwrap();
    let out = gc(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!blob_on_disk(&root, &orphan));
    assert!(!lease.exists());
}

#[test]
fn scheduled_gc_keys_default_and_are_checked() {
    use image_registry::config::Config;
    let (c, _) = Config::from_yaml("storage:\n  inmemory: {}\n", &[]).unwrap();
    let g = &c.storage.maintenance.gc;
    assert!(!g.enabled && !g.deleteuntagged && !g.dryrun);
    assert_eq!(g.interval, Duration::from_secs(24 * 3600));
    let e = Config::from_yaml(
        "storage:\n  inmemory: {}\n  maintenance:\n    gc:\n      enabled: true\n      interval: 0s\n",
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("gc.interval"), "{e}");
    let e = Config::from_yaml(
        "storage:\n  inmemory: {}\n  maintenance:\n    gc:\n      intervall: 1h\n",
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("intervall"), "{e}");
}
