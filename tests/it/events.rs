//! Webhook notifications against a real receiver: every event kind with distribution's fields,
//! endpoint options (headers, ignores, references, media type), the spool's bound, delivery of
//! everything acknowledged across kill -9 and SIGTERM while the receiver is down, the replay of
//! writes a crash left unfinished (announced only if storage has them), and SIGTERM draining the
//! queued pull events.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::*;

fn endpoint_yaml(receiver: &Receiver, extra: &str) -> String {
    format!(
        "notifications:\n  endpoints:\n    - name: recv\n      url: {}\n      timeout: 2s\n      threshold: 2\n      backoff: 100ms\n{extra}",
        receiver.url()
    )
}

/// Waits until `n` events arrived (or panics, listing what did).
async fn wait_events(r: &Receiver, n: usize) -> Vec<Value> {
    eventually(20, &format!("{n} events at the receiver"), || async {
        let ev = r.events();
        (ev.len() >= n).then_some(ev)
    })
    .await
}

fn find<'a>(events: &'a [Value], action: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action && pred(&e["target"]))
        .unwrap_or_else(|| panic!("no {action} event matching in {events:#?}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_event_kind_is_delivered_with_distributions_fields() {
    let r = Receiver::start().await;
    let s = TestServer::builder()
        .config(&endpoint_yaml(&r, ""))
        .start()
        .await;
    let host = s.addr.to_string();
    // Blob push (monolithic), then a chunked one.
    let layer = bytes(3000, 7);
    let layer_d = s.push_blob("ns/app", &layer).await;
    let chunked = bytes(5000, 8);
    let chunked_d = s.push_blob_chunked("ns/app", &chunked, 2048).await;
    // Mount into another repository.
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/ns/other/blobs/uploads/?mount={layer_d}&from=ns/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Manifest push by tag, with a request id of ours.
    let m = s.oci_image("ns/app", "events").await;
    let resp = s
        .request(Method::PUT, "/v2/ns/app/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .header("x-request-id", "push-request-1")
        .header("user-agent", "events-test/1.0")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let md = sha256(&m);
    // Pulls: manifest by tag, blob; a HEAD of a blob (announced as a pull, as distribution does).
    let resp = s
        .request(Method::GET, "/v2/ns/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let pull_id = header(&resp, "x-request-id");
    assert_eq!(
        s.get(&format!("/v2/ns/app/blobs/{layer_d}")).await.status(),
        200
    );
    assert_eq!(
        s.head(&format!("/v2/ns/app/blobs/{chunked_d}"))
            .await
            .status(),
        200
    );
    // Tag delete, then a manifest delete by digest (which also removes tag v2).
    s.push_manifest("ns/app", "v2", OCI_MANIFEST, &m).await;
    assert_eq!(s.delete("/v2/ns/app/manifests/v1").await.status(), 202);
    assert_eq!(
        s.delete(&format!("/v2/ns/app/manifests/{md}"))
            .await
            .status(),
        202
    );
    assert_eq!(
        s.delete(&format!("/v2/ns/app/blobs/{chunked_d}"))
            .await
            .status(),
        202
    );

    // 2 layer pushes + mount + 2 image blobs + manifest + 3 pulls + manifest again + 4 deletes.
    let events = wait_events(&r, 14).await;
    for env in r.envelopes() {
        assert_eq!(
            env.content_type,
            "application/vnd.docker.distribution.events.v1+json"
        );
        assert_eq!(keys(&env.body), set(&["events"]));
    }
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    let instance = &events[0]["source"]["instanceID"];
    for e in &events {
        assert_eq!(
            keys(e),
            set(&[
                "id",
                "timestamp",
                "action",
                "target",
                "request",
                "actor",
                "source"
            ]),
            "{e}"
        );
        assert!(chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).is_ok());
        assert_eq!(&e["source"]["instanceID"], instance);
        // distribution's: the host name and the port of `http.addr` (0 here: any port).
        assert!(e["source"]["addr"].as_str().unwrap().ends_with(":0"), "{e}");
        assert_eq!(e["actor"], serde_json::json!({}), "no auth: an empty actor");
        assert_eq!(e["request"]["host"], host.as_str());
        assert!(e["request"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        assert!(!e["request"]["id"].as_str().unwrap().is_empty());
    }
    // Blob push: octet-stream, size = length, url of the blob, no tag.
    let b = find(&events, "push", |t| t["digest"] == layer_d.as_str());
    assert_eq!(
        keys(&b["target"]),
        set(&["mediaType", "size", "digest", "length", "repository", "url"])
    );
    assert_eq!(b["target"]["mediaType"], "application/octet-stream");
    assert_eq!(b["target"]["size"], 3000);
    assert_eq!(b["target"]["length"], 3000);
    assert_eq!(b["target"]["repository"], "ns/app");
    assert_eq!(
        b["target"]["url"],
        format!("http://{host}/v2/ns/app/blobs/{layer_d}")
    );
    assert_eq!(b["request"]["method"], "POST");
    let c = find(&events, "push", |t| t["digest"] == chunked_d.as_str());
    assert_eq!(c["target"]["size"], 5000);
    assert_eq!(c["request"]["method"], "PUT");
    // Mount: fromRepository.
    let mt = find(&events, "mount", |_| true);
    assert_eq!(mt["target"]["repository"], "ns/other");
    assert_eq!(mt["target"]["fromRepository"], "ns/app");
    assert_eq!(mt["target"]["digest"], layer_d.as_str());
    assert_eq!(mt["target"]["size"], 3000);
    // Manifest push: media type, size, url by digest, tag, the request as sent.
    let p = find(&events, "push", |t| {
        t["digest"] == md.as_str() && t["tag"] == "v1"
    });
    assert_eq!(
        keys(&p["target"]),
        set(&[
            "mediaType",
            "size",
            "digest",
            "length",
            "repository",
            "url",
            "tag"
        ])
    );
    assert_eq!(p["target"]["mediaType"], OCI_MANIFEST);
    assert_eq!(p["target"]["size"], m.len());
    assert_eq!(p["target"]["length"], m.len());
    assert_eq!(
        p["target"]["url"],
        format!("http://{host}/v2/ns/app/manifests/{md}")
    );
    assert_eq!(p["request"]["id"], "push-request-1");
    assert_eq!(p["request"]["method"], "PUT");
    assert_eq!(p["request"]["useragent"], "events-test/1.0");
    // Pulls: the manifest by tag (request id = the response's X-Request-Id), the blob, the HEAD.
    let pm = find(&events, "pull", |t| t["digest"] == md.as_str());
    assert_eq!(pm["target"]["tag"], "v1");
    assert_eq!(pm["request"]["id"], pull_id.as_str());
    assert_eq!(pm["request"]["method"], "GET");
    find(&events, "pull", |t| t["digest"] == layer_d.as_str());
    let ph = find(&events, "pull", |t| t["digest"] == chunked_d.as_str());
    assert_eq!(ph["request"]["method"], "HEAD");
    assert_eq!(ph["target"]["size"], 5000);
    // Deletes: tag delete {repository, tag}; manifest delete {digest, repository} and its tag.
    let td = find(&events, "delete", |t| t["tag"] == "v1");
    assert_eq!(keys(&td["target"]), set(&["repository", "tag"]));
    let mdel = find(&events, "delete", |t| t["digest"] == md.as_str());
    assert_eq!(keys(&mdel["target"]), set(&["digest", "repository"]));
    find(&events, "delete", |t| t["tag"] == "v2");
    let bdel = find(&events, "delete", |t| t["digest"] == chunked_d.as_str());
    assert_eq!(keys(&bdel["target"]), set(&["digest", "repository"]));
    // Order is kept: the manifest push comes before its pull, the pull before the deletes.
    let pos = |e: &Value| events.iter().position(|x| x["id"] == e["id"]).unwrap();
    assert!(pos(p) < pos(pm) && pos(pm) < pos(td) && pos(td) < pos(mdel));
}

#[tokio::test]
async fn endpoint_options_headers_ignores_references_and_v2() {
    let r = Receiver::start().await;
    let extra = "      headers:\n        Authorization: [\"Bearer sekrit\"]\n        X-Multi: [a, b]\n      ignore:\n        actions: [pull]\n        mediatypes: [application/octet-stream]\n  events:\n    includereferences: true\n  mediaType: v2\n";
    let s = TestServer::builder()
        .config(&endpoint_yaml(&r, extra))
        .start()
        .await;
    let (md, m) = s.push_image("ns/app", "v1", "opts").await;
    assert_eq!(s.get("/v2/ns/app/manifests/v1").await.status(), 200);
    s.push_image("ns/app", "v2", "opts2").await;
    // Only the two manifest pushes: blobs (octet-stream) and pulls are ignored.
    let events = wait_events(&r, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events_now = r.events();
    assert_eq!(events_now.len(), 2, "{events_now:#?}");
    assert!(events.iter().all(|e| e["action"] == "push"));
    let env = &r.envelopes()[0];
    assert_eq!(
        env.content_type,
        "application/vnd.docker.distribution.events.v2+json"
    );
    let auth: Vec<&str> = env
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, ["Bearer sekrit"]);
    let multi: Vec<&str> = env
        .headers
        .iter()
        .filter(|(k, _)| k == "x-multi")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(multi, ["a", "b"]);
    let first = find(&events, "push", |t| t["digest"] == md.as_str());
    let parsed: Value = serde_json::from_slice(&m).unwrap();
    let refs = first["target"]["references"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["digest"], parsed["config"]["digest"]);
    assert_eq!(refs[1]["digest"], parsed["layers"][0]["digest"]);
    assert_eq!(refs[1]["mediaType"], OCI_LAYER);
}

#[tokio::test]
async fn a_failing_receiver_gets_everything_in_order_once_it_recovers() {
    let r = Receiver::start().await;
    r.answer(503);
    let s = TestServer::builder()
        .metrics(None)
        .config(&endpoint_yaml(
            &r,
            "      ignore:\n        actions: [pull]\n",
        ))
        .start()
        .await;
    let mut digests = Vec::new();
    for i in 0..5 {
        digests.push(s.push_blob("ns/app", &bytes(100 + i, i as u64)).await);
    }
    eventually(10, "failed deliveries counted", || async {
        let t = s.scrape().await;
        (sample(
            &t,
            r#"imageregistry_notifications_events_total{endpoint="recv",result="failed"}"#,
        )
        .unwrap_or(0.0)
            > 0.0)
            .then_some(())
    })
    .await;
    eventually(10, "5 pending", || async {
        let t = s.scrape().await;
        (sample(
            &t,
            r#"imageregistry_notifications_pending{endpoint="recv"}"#,
        ) == Some(5.0))
        .then_some(())
    })
    .await;
    assert!(r.events().is_empty());
    r.answer(200);
    let events = wait_events(&r, 5).await;
    let got: Vec<&str> = events
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(got, digests.iter().map(String::as_str).collect::<Vec<_>>());
    let t = eventually(10, "pending back to 0", || async {
        let t = s.scrape().await;
        (sample(
            &t,
            r#"imageregistry_notifications_pending{endpoint="recv"}"#,
        ) == Some(0.0))
        .then_some(t)
    })
    .await;
    assert_eq!(
        sample(
            &t,
            r#"imageregistry_notifications_events_total{endpoint="recv",result="delivered"}"#
        ),
        Some(5.0)
    );
    assert!(
        sample(
            &t,
            "imageregistry_notifications_delivery_duration_seconds_count{endpoint=\"recv\"}"
        ) == Some(5.0),
        "{t}"
    );
}

#[tokio::test]
async fn past_maxsize_the_oldest_events_are_dropped_and_counted() {
    let r = Receiver::down().await;
    let spool = tempfile::tempdir().unwrap();
    let extra = format!(
        "  spool:\n    path: {:?}\n    maxsize: 32KiB\n",
        spool.path().display().to_string()
    );
    let s = TestServer::builder()
        .metrics(None)
        .config(&endpoint_yaml(&r, &extra))
        .start()
        .await;
    let mut digests = Vec::new();
    for i in 0..200u64 {
        digests.push(s.push_blob("ns/app", &bytes(64, 1000 + i)).await);
    }
    let on_disk: u64 = std::fs::read_dir(spool.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 40 << 10, "spool holds {on_disk} bytes");
    let mut r = r;
    r.resume().await;
    let t = eventually(20, "every event delivered or dropped", || async {
        let t = s.scrape().await;
        let d = sample(
            &t,
            r#"imageregistry_notifications_events_total{endpoint="recv",result="delivered"}"#,
        )
        .unwrap_or(0.0);
        let x = sample(
            &t,
            r#"imageregistry_notifications_events_total{endpoint="recv",result="dropped"}"#,
        )
        .unwrap_or(0.0);
        (d + x == 200.0).then_some(t)
    })
    .await;
    let dropped = sample(
        &t,
        r#"imageregistry_notifications_events_total{endpoint="recv",result="dropped"}"#,
    )
    .unwrap();
    assert!(dropped > 0.0, "{t}");
    // What arrived is the newest events, in order.
    let got: Vec<String> = r
        .events()
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got.len() as f64, 200.0 - dropped);
    assert_eq!(got[..], digests[200 - got.len()..]);
}

/// Env for a real process with one endpoint (the indexed environment form).
fn process_env<'a>(root: &'a str, url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root),
        ("REGISTRY_HTTP_SECRET", "s"),
        ("REGISTRY_LOG_LEVEL", "info"),
        ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "recv"),
        ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", url),
        ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_TIMEOUT", "1s"),
        ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_THRESHOLD", "1"),
        ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_BACKOFF", "100ms"),
    ]
}

/// Pushes `n` blobs and an image concurrently-ish into a process; returns every acknowledged
/// digest (blob pushes and the manifest push).
async fn push_into(base: &str, tag: &str, n: usize, seed: u64) -> Vec<String> {
    let c = client();
    let mut acked = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        let base = base.to_owned();
        tasks.spawn(async move {
            let data = bytes(200, seed * 1000 + i as u64);
            let d = sha256(&data);
            let resp = c
                .post(format!("{base}/v2/ns/app/blobs/uploads/?digest={d}"))
                .body(data)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            d
        });
    }
    while let Some(d) = tasks.join_next().await {
        acked.push(d.unwrap());
    }
    // A manifest over the first two blobs.
    let m = oci_manifest(
        &descriptor(OCI_CONFIG, &acked[0], 200),
        &[descriptor(OCI_LAYER, &acked[1], 200)],
    );
    let resp = c
        .put(format!("{base}/v2/ns/app/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    acked.push(sha256(&m));
    acked
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_across_kill_9_and_sigterm_during_an_outage() {
    let mut r = Receiver::down().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root_s = root.display().to_string();
    let url = r.url();
    let env = process_env(&root_s, &url);
    let mut acked = Vec::new();

    // 1: push while the receiver is down, then kill -9 with more pushes in flight.
    let mut p = Process::spawn(&env, &dir.path().join("p1.log")).await;
    acked.extend(push_into(&p.base, "one", 20, 1).await);
    let in_flight = push_in_flight(&p.base, 40, 9);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    p.child.kill().unwrap(); // SIGKILL
    p.wait_exit(10).await;
    let in_flight = in_flight.await.unwrap();
    acked.extend(in_flight.iter().cloned());
    // 2: again, then SIGTERM.
    let mut p = Process::spawn(&env, &dir.path().join("p2.log")).await;
    acked.extend(push_into(&p.base, "two", 20, 2).await);
    p.sigterm();
    assert!(p.wait_exit(40).await.success(), "{}", p.log());
    // 3: the receiver comes back, so does the registry: everything acknowledged arrives.
    r.resume().await;
    let p3 = Process::spawn(&env, &dir.path().join("p3.log")).await;
    let want: BTreeSet<String> = acked.iter().cloned().collect();
    let events = eventually(30, "every acknowledged push delivered", || async {
        let got: BTreeSet<String> = r
            .events()
            .iter()
            .filter(|e| e["action"] == "push")
            .map(|e| {
                e["target"]["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        want.is_subset(&got).then(|| r.events())
    })
    .await;
    // Events of the first two processes carry their own instance ids; ids are unique per event.
    let instances: BTreeSet<&str> = events
        .iter()
        .map(|e| e["source"]["instanceID"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), 2, "two processes made the events");
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "each event once here (at least once in general)"
    );
    // Pushes the kill cut off may be announced too (their storage commit finished, the 201 did
    // not go out), never more than were started.
    assert!(events.len() >= acked.len() && events.len() <= 20 + 1 + 40 + 20 + 1);
    // The spool lives beside the data, as the README says.
    assert!(root.join("notifications").is_dir());
    // No event for a write that did not happen: every announced blob is in storage (pushes cut
    // off by the kill left intents that replay resolved from storage).
    let c = client();
    for e in events.iter().filter(|e| e["action"] == "push") {
        let d = e["target"]["digest"].as_str().unwrap();
        let what = if e["target"]["mediaType"] == OCI_MANIFEST {
            "manifests"
        } else {
            "blobs"
        };
        let resp = c
            .head(format!("{}/v2/ns/app/{what}/{d}", p3.base))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "announced {d} is stored");
    }
}

/// Starts `n` blob pushes at once; resolves to the digests acknowledged with 201 (the others
/// were cut off).
fn push_in_flight(base: &str, n: usize, seed: u64) -> tokio::task::JoinHandle<Vec<String>> {
    let base = base.to_owned();
    tokio::spawn(async move {
        let c = client();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let c = c.clone();
            let base = base.clone();
            tasks.spawn(async move {
                let data = bytes(64 << 10, seed * 1000 + i as u64);
                let d = sha256(&data);
                let resp = c
                    .post(format!("{base}/v2/ns/app/blobs/uploads/?digest={d}"))
                    .body(data)
                    .send()
                    .await
                    .ok()?;
                (resp.status() == StatusCode::CREATED).then_some(d)
            });
        }
        let mut acked = Vec::new();
        while let Some(d) = tasks.join_next().await {
            if let Ok(Some(d)) = d {
                acked.push(d);
            }
        }
        acked
    })
}

/// The journal record of a write's event whose storage commit was under way when the process
/// died: an intent (the event plus what storage shows once the write happened) with no marker.
fn unfinished_intent(seq: u64, id: &str, digest: &str) -> String {
    let event = serde_json::json!({
        "id": id,
        "timestamp": "2026-12-02T04:00:00Z",
        "action": "push",
        "target": {"mediaType": "application/octet-stream", "digest": digest, "size": 200,
                   "length": 200, "repository": "ns/app",
                   "url": format!("http://127.0.0.1/v2/ns/app/blobs/{digest}")},
        "request": {"id": "r", "method": "PUT", "useragent": "test"},
        "actor": {},
        "source": {"instanceID": "crashed"},
    });
    serde_json::json!({
        "seq": seq, "action": "push", "mediaType": "application/octet-stream", "at": 0,
        "event": event,
        "check": {"kind": "blob", "repository": "ns/app", "digest": digest},
    })
    .to_string()
}

#[tokio::test]
async fn after_a_crash_an_unfinished_write_is_announced_only_if_storage_has_it() {
    let mut r = Receiver::down().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root_s = root.display().to_string();
    let url = r.url();
    let env = process_env(&root_s, &url);
    let c = client();
    let push = |base: String, data: Vec<u8>| {
        let c = c.clone();
        async move {
            let d = sha256(&data);
            let resp = c
                .post(format!("{base}/v2/ns/app/blobs/uploads/?digest={d}"))
                .body(data)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            d
        }
    };
    // A process with the endpoint makes the spool and one durable event, then is killed.
    let mut p = Process::spawn(&env, &dir.path().join("p1.log")).await;
    let a = push(p.base.clone(), bytes(200, 1)).await;
    p.child.kill().unwrap();
    p.wait_exit(10).await;
    // Blob B is stored (by a process without notifications), blob C never is; the journal ends
    // with an intent for each and no marker, as a kill -9 between an intent's sync and its
    // marker leaves it.
    let plain = [
        ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root_s.as_str()),
        ("REGISTRY_HTTP_SECRET", "s"),
    ];
    let mut p = Process::spawn(&plain, &dir.path().join("p2.log")).await;
    let b = push(p.base.clone(), bytes(200, 2)).await;
    p.sigterm();
    assert!(p.wait_exit(40).await.success());
    let cdig = sha256(&bytes(200, 3));
    let spool = root.join("notifications");
    let seg = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let text = std::fs::read_to_string(&seg).unwrap();
    let last: u64 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .max()
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    use std::io::Write as _;
    writeln!(f, "{}", unfinished_intent(last + 1, "intent-b", &b)).unwrap();
    writeln!(f, "{}", unfinished_intent(last + 2, "intent-c", &cdig)).unwrap();
    drop(f);
    // Back up: A is delivered, B's intent is delivered (storage has B), C's is dropped; a push
    // made afterwards arrives after them, so C had its turn.
    r.resume().await;
    let p = Process::spawn(&env, &dir.path().join("p3.log")).await;
    let d = push(p.base.clone(), bytes(200, 4)).await;
    let events = eventually(30, "the push after the restart delivered", || async {
        let ev = r.events();
        ev.iter()
            .any(|e| e["target"]["digest"] == d.as_str())
            .then_some(ev)
    })
    .await;
    let got: Vec<&str> = events
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(got, [a.as_str(), b.as_str(), d.as_str()], "{events:#?}");
    assert_eq!(
        events[1]["id"], "intent-b",
        "the intent's own event, ids stable"
    );
    let log = p.log();
    assert!(
        log.contains("resolved an unfinished write's event from storage"),
        "{log}"
    );
}

#[tokio::test]
async fn sigterm_drains_queued_pull_events_into_the_journal() {
    let mut r = Receiver::down().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root_s = root.display().to_string();
    let url = r.url();
    let env = process_env(&root_s, &url);
    let mut p = Process::spawn(&env, &dir.path().join("p1.log")).await;
    let pushed = push_into(&p.base, "pulled", 4, 5).await;
    // Pulls in flight when SIGTERM arrives: every GET answered 200 is a pull event to deliver.
    let c = client();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let c = c.clone();
        let done = done.clone();
        let base = p.base.clone();
        let pushed = pushed.clone();
        tasks.spawn(async move {
            // Each worker pulls in a loop until the server stops answering.
            let mut ok = 0;
            for j in 0..1000 {
                let url = format!("{base}/v2/ns/app/blobs/{}", pushed[(i + j) % 4]);
                match c.get(url).send().await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        if resp.bytes().await.is_err() {
                            break;
                        }
                        ok += 1;
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
            ok
        });
    }
    eventually(20, "pulls served", || async {
        (done.load(std::sync::atomic::Ordering::SeqCst) >= 100).then_some(())
    })
    .await;
    p.sigterm();
    let mut answered = 0;
    while let Some(ok) = tasks.join_next().await {
        answered += ok.unwrap();
    }
    assert!(p.wait_exit(40).await.success(), "{}", p.log());
    assert!(answered > 0, "some pulls were served before the shutdown");
    let log = p.log();
    assert!(
        log.contains("queued events written to the journal"),
        "{log}"
    );
    // Receiver and registry back: every answered pull arrives.
    r.resume().await;
    let _p = Process::spawn(&env, &dir.path().join("p2.log")).await;
    eventually(30, "every answered pull delivered", || async {
        let pulls = r.events().iter().filter(|e| e["action"] == "pull").count();
        (pulls >= answered).then_some(())
    })
    .await;
}

#[tokio::test]
async fn actor_is_the_authenticated_user() {
    let r = Receiver::start().await;
    let spool = tempfile::tempdir().unwrap();
    let b = TestServer::builder();
    let line = format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap());
    let p = b.write_file("htpasswd", &line);
    let auth = format!(
        "  htpasswd:\n    path: {:?}\n  bindings:\n    - role: registry-editor\n      namespaces: [\"team-*\"]\n      users: [alice]\n",
        p.display().to_string()
    );
    let extra = format!(
        "  spool:\n    path: {:?}\n",
        spool.path().display().to_string()
    );
    let s = b
        .auth(&auth)
        .config(&endpoint_yaml(&r, &extra))
        .start()
        .await;
    let (status, d) = s
        .post_blob("team-a/app", b"by alice", Some(&basic("alice", "alice-pw")))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let events = wait_events(&r, 1).await;
    assert_eq!(events[0]["target"]["digest"], d.as_str());
    assert_eq!(events[0]["actor"], serde_json::json!({"name": "alice"}));
}
