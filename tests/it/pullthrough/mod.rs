//! The pull-through cache against real upstreams on loopback: our own server (anonymous, and in
//! htpasswd mode: the Docker token flow) and CNCF distribution 2.8 with htpasswd (Basic), each
//! behind [`proxy::FaultProxy`], which counts the upstream requests and injects 429/503/outages.

mod proxy;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::harness::*;
use proxy::FaultProxy;

const PREFIX: &str = "up.local";

/// A cache mirroring `url` under [`PREFIX`], with extra keys for the upstream entry.
async fn cache(url: &str, extra: &str, ttl: &str) -> TestServer {
    TestServer::builder()
        .metrics(None)
        .config(&format!(
            "proxy:\n  upstreams:\n    - prefix: {PREFIX}\n      url: {url}\n      ttl: {ttl}\n{extra}"
        ))
        .start()
        .await
}

/// Pushes an image with a layer of `size` bytes; returns (manifest digest, manifest, layer digest,
/// layer bytes, config digest).
async fn push_big(
    up: &TestServer,
    repo: &str,
    tag: &str,
    size: usize,
    seed: u64,
) -> (String, Vec<u8>, String, Vec<u8>, String) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let layer = bytes(size, seed);
    // Chunked: distribution 2.8 takes no monolithic POST.
    let c = up.push_blob_chunked(repo, config.as_bytes(), 1 << 20).await;
    let l = up.push_blob_chunked(repo, &layer, 1 << 20).await;
    let m = oci_manifest(
        &descriptor(OCI_CONFIG, &c, config.len()),
        &[descriptor(OCI_LAYER, &l, layer.len())],
    );
    let d = up.push_manifest(repo, tag, OCI_MANIFEST, &m).await;
    (d, m, l, layer, c)
}

async fn get_ok(reg: &TestServer, path: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let r = reg.get(path).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    let h = r.headers().clone();
    (h, r.bytes().await.unwrap().to_vec())
}

/// GET of a manifest with the usual Accept header.
async fn manifest(reg: &TestServer, path: &str) -> reqwest::Response {
    reg.request(Method::GET, path)
        .header(
            "accept",
            format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}"),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pulls_through_a_token_upstream_and_serves_locally_after() {
    // Content pushed to an open server, then served by one in htpasswd mode on the same folder:
    // the cache has to do the Docker token flow with its credentials.
    let open = TestServer::start().await;
    let (md, m, ld, layer, cd) = push_big(&open, "library/app", "v1", 300_000, 1).await;
    let root = open.root().to_owned();
    let b = TestServer::builder().root(&root);
    let pw = b.write_file(
        "htpasswd",
        &format!("puller:{}\n", bcrypt::hash("pull-pw", 4).unwrap()),
    );
    let up = b
        .auth(&format!(
            "  htpasswd:\n    path: {:?}\n  bindings:\n    - role: registry-viewer\n      namespaces: [\"*\"]\n      users: [puller]\n",
            pw.display().to_string()
        ))
        .start()
        .await;
    let px = FaultProxy::start(&up.base).await;
    let c = cache(
        &px.url,
        "      username: puller\n      password: pull-pw\n",
        "1h",
    )
    .await;
    let r = manifest(&c, &format!("/v2/{PREFIX}/library/app/manifests/v1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), md);
    assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    // The first upstream request was challenged (401), the retry carried the token.
    assert_eq!(
        px.count("GET /v2/library/app/manifests/v1"),
        2,
        "{:?}",
        px.log()
    );
    let (h, body) = get_ok(&c, &format!("/v2/{PREFIX}/library/app/blobs/{ld}")).await;
    assert_eq!(body, layer);
    assert_eq!(header_of(&h, "content-length"), layer.len().to_string());
    let (_, cfg) = get_ok(&c, &format!("/v2/{PREFIX}/library/app/blobs/{cd}")).await;
    assert_eq!(sha256(&cfg), cd);
    // Everything again: served from storage, nothing asked upstream (the tag is fresh).
    px.clear();
    let r = manifest(&c, &format!("/v2/{PREFIX}/library/app/manifests/v1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = manifest(&c, &format!("/v2/{PREFIX}/library/app/manifests/{md}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get_ok(&c, &format!("/v2/{PREFIX}/library/app/blobs/{ld}"))
            .await
            .1,
        layer
    );
    let r = c
        .request(Method::GET, &format!("/v2/{PREFIX}/library/app/blobs/{ld}"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), layer[10..20].to_vec());
    assert_eq!(px.log(), Vec::<String>::new());
    // Cached content is normal content: tags and catalog list it.
    assert_eq!(c.tags(&format!("{PREFIX}/library/app")).await, vec!["v1"]);
    let cat = json_body(c.get("/v2/_catalog").await).await;
    assert!(strings(&cat["repositories"]).contains(&format!("{PREFIX}/library/app")));
    // Unknown upstream: 404 with the OCI shape.
    assert_error(
        manifest(&c, &format!("/v2/{PREFIX}/library/app/manifests/nope")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let missing = sha256(b"never pushed");
    assert_error(
        c.get(&format!("/v2/{PREFIX}/library/app/blobs/{missing}"))
            .await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    let text = c.scrape().await;
    assert!(
        sample(
            &text,
            "imageregistry_pullthrough_blobstore_cache_requests_total{type=\"Miss\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "imageregistry_pullthrough_upstream_bytes_total"),
        Some((layer.len() + cfg.len()) as f64)
    );
}

#[tokio::test]
async fn wrong_upstream_credentials_answer_502_not_500() {
    let open = TestServer::start().await;
    open.push_image("library/app", "v1", "creds").await;
    let b = TestServer::builder().root(open.root());
    let pw = b.write_file(
        "htpasswd",
        &format!("puller:{}\n", bcrypt::hash("pull-pw", 4).unwrap()),
    );
    let up = b
        .auth(&format!(
            "  htpasswd:\n    path: {:?}\n",
            pw.display().to_string()
        ))
        .start()
        .await;
    let c = cache(
        &up.base,
        "      username: puller\n      password: wrong\n",
        "1h",
    )
    .await;
    assert_error(
        manifest(&c, &format!("/v2/{PREFIX}/library/app/manifests/v1")).await,
        StatusCode::BAD_GATEWAY,
        "UNAVAILABLE",
    )
    .await;
}

#[tokio::test]
async fn credentials_come_from_a_pull_secret() {
    use base64::Engine as _;
    let open = TestServer::start().await;
    let (d, _) = open.push_image("library/app", "v1", "secret").await;
    let b = TestServer::builder().root(open.root());
    let pw = b.write_file(
        "htpasswd",
        &format!("puller:{}\n", bcrypt::hash("pull-pw", 4).unwrap()),
    );
    let up = b
        .auth(&format!(
            "  htpasswd:\n    path: {:?}\n  bindings:\n    - role: registry-viewer\n      namespaces: [\"*\"]\n      users: [puller]\n",
            pw.display().to_string()
        ))
        .start()
        .await;
    // A Kubernetes `.dockerconfigjson` with an entry for another host too.
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:pull-pw");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".dockerconfigjson");
    std::fs::write(
        &file,
        format!(
            r#"{{"auths":{{"quay.io":{{"auth":"eDp5"}},"{}":{{"auth":"{auth}","email":""}}}}}}"#,
            up.addr
        ),
    )
    .unwrap();
    let c = cache(
        &up.base,
        &format!("      authFile: {:?}\n", file.display().to_string()),
        "1h",
    )
    .await;
    let r = manifest(&c, &format!("/v2/{PREFIX}/library/app/manifests/v1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), d);
}

#[tokio::test]
async fn sixteen_cold_pulls_share_one_upstream_fetch() {
    let up = TestServer::start().await;
    let (_, _, ld, layer, _) = push_big(&up, "team/big", "v1", 4 << 20, 7).await;
    let px = FaultProxy::start(&up.base).await;
    // Hold the upstream's answer so every client is waiting before the first byte.
    px.delay_blobs(Duration::from_millis(400));
    let c = cache(&px.url, "", "1h").await;
    let path = format!("/v2/{PREFIX}/team/big/blobs/{ld}");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = c.client.clone();
        let url = c.url(&path);
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.bytes().await.unwrap().to_vec()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap() == layer, "a client got other bytes");
    }
    assert_eq!(
        px.count(&format!("GET /v2/team/big/blobs/{ld}")),
        1,
        "{:?}",
        px.log()
    );
    // Stored: the next pull asks nothing upstream.
    px.clear();
    assert!(get_ok(&c, &path).await.1 == layer);
    assert_eq!(px.log(), Vec::<String>::new());
}

#[tokio::test]
async fn concurrent_manifest_misses_and_revalidations_ask_upstream_once() {
    let up = TestServer::start().await;
    let (d, _) = up.push_image("team/app", "v1", "gate").await;
    let px = FaultProxy::start(&up.base).await;
    px.delay_manifests(Duration::from_millis(300));
    let c = cache(&px.url, "", "1").await;
    let path = format!("/v2/{PREFIX}/team/app/manifests/v1");
    let burst = |c: &TestServer| {
        (0..16)
            .map(|_| {
                let req = c.request(Method::GET, &path).header("accept", OCI_MANIFEST);
                tokio::spawn(async move {
                    let r = req.send().await.unwrap();
                    (r.status(), header(&r, "docker-content-digest"))
                })
            })
            .collect::<Vec<_>>()
    };
    for t in burst(&c) {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, d.clone()));
    }
    assert_eq!(
        px.count("GET /v2/team/app/manifests/v1"),
        1,
        "{:?}",
        px.log()
    );
    // Stale: one HEAD for the burst.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for t in burst(&c) {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, d.clone()));
    }
    assert_eq!(
        px.count("HEAD /v2/team/app/manifests/v1"),
        1,
        "{:?}",
        px.log()
    );
    // Stale with the upstream failing: one attempt, every client served the cached tag.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    px.fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
    // A client reaching the gate after a failed attempt makes its own: keep the attempt long
    // enough for every client of the burst to be waiting.
    px.delay_manifests(Duration::from_millis(1500));
    px.clear();
    for t in burst(&c) {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, d.clone()));
    }
    assert_eq!(px.log().len(), 1, "{:?}", px.log());
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_abort_the_fetch() {
    let up = TestServer::start().await;
    let (_, _, ld, layer, _) = push_big(&up, "team/big", "v1", 8 << 20, 9).await;
    let px = FaultProxy::start(&up.base).await;
    let c = cache(&px.url, "", "1h").await;
    let path = format!("/v2/{PREFIX}/team/big/blobs/{ld}");
    let mut r = c.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    let _first = r.chunk().await.unwrap();
    drop(r);
    // The fetch goes on without the client and ends with the blob stored.
    let root = c.root().to_owned();
    let hex = hex_of(&ld).to_owned();
    eventually(20, "the blob to be stored", || {
        let root = root.clone();
        let hex = hex.clone();
        async move {
            // Stored = the bytes and the repository's link (the link is written, synced, after
            // the data is renamed in place: waiting for the data only races with it).
            let files = files_under(&root);
            (files.iter().any(|f| f.ends_with(&format!("{hex}/data")))
                && files
                    .iter()
                    .any(|f| f.ends_with(&format!("_layers/sha256/{hex}/link"))))
            .then_some(())
        }
    })
    .await;
    px.clear();
    assert!(get_ok(&c, &path).await.1 == layer);
    assert_eq!(px.log(), Vec::<String>::new());
}

#[tokio::test]
async fn pushes_into_a_mirrored_prefix_are_refused_others_work() {
    let up = TestServer::start().await;
    let c = cache(&up.base, "", "1h").await;
    assert_error(
        c.request(
            Method::POST,
            &format!("/v2/{PREFIX}/library/app/blobs/uploads/"),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
    )
    .await;
    let m = oci_manifest(&descriptor(OCI_CONFIG, &sha256(b"{}"), 2), &[]);
    assert_error(
        c.request(
            Method::PUT,
            &format!("/v2/{PREFIX}/library/app/manifests/v1"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(m)
        .send()
        .await
        .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
    )
    .await;
    // One registry can host and cache.
    c.push_image("mine/app", "v1", "local").await;
    assert_eq!(c.tags("mine/app").await, vec!["v1"]);
}

#[tokio::test]
async fn tags_are_revalidated_with_head_after_ttl() {
    let up = TestServer::start().await;
    let (d1, _) = up.push_image("team/app", "latest", "one").await;
    let px = FaultProxy::start(&up.base).await;
    let c = cache(&px.url, "", "1").await;
    let path = format!("/v2/{PREFIX}/team/app/manifests/latest");
    let mpath = "/v2/team/app/manifests/latest";
    assert_eq!(
        header(&manifest(&c, &path).await, "docker-content-digest"),
        d1
    );
    assert_eq!(px.count(&format!("GET {mpath}")), 1);
    // Fresh: served without asking.
    assert_eq!(
        header(&manifest(&c, &path).await, "docker-content-digest"),
        d1
    );
    assert_eq!(px.log().len(), 1, "{:?}", px.log());
    // Stale and unchanged: one HEAD, no GET.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        header(&manifest(&c, &path).await, "docker-content-digest"),
        d1
    );
    assert_eq!(px.count(&format!("HEAD {mpath}")), 1, "{:?}", px.log());
    assert_eq!(px.count(&format!("GET {mpath}")), 1);
    // The HEAD restarted the clock.
    assert_eq!(
        header(&manifest(&c, &path).await, "docker-content-digest"),
        d1
    );
    assert_eq!(px.count(&format!("HEAD {mpath}")), 1);
    // Moved upstream: after the ttl, HEAD sees it and the new manifest is fetched.
    let (d2, _) = up.push_image("team/app", "latest", "two").await;
    assert_ne!(d1, d2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = manifest(&c, &path).await;
    assert_eq!(header(&r, "docker-content-digest"), d2);
    assert_eq!(px.count(&format!("HEAD {mpath}")), 2);
    assert_eq!(px.count(&format!("GET {mpath}")), 2);
    // The old one is still there by digest.
    let r = manifest(&c, &format!("/v2/{PREFIX}/team/app/manifests/{d1}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Deleted upstream: the revalidating HEAD gets 404, the cached tag stays served, and that
    // answer restarts the clock (one HEAD per ttl, not one per pull).
    let r = up
        .request(Method::DELETE, "/v2/team/app/manifests/latest")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        up.request(Method::HEAD, mpath)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    px.clear();
    let r = manifest(&c, &path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), d2);
    assert_eq!(px.log(), vec![format!("HEAD {mpath}")]);
    let r = manifest(&c, &path).await;
    assert_eq!(header(&r, "docker-content-digest"), d2);
    assert_eq!(px.log().len(), 1, "{:?}", px.log());
    assert!(tags_of(&c, &format!("{PREFIX}/team/app"))
        .await
        .contains(&"latest".to_owned()));
    // Deleted here too: a miss, and the upstream's 404.
    let r = c
        .request(
            Method::DELETE,
            &format!("/v2/{PREFIX}/team/app/manifests/latest"),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(manifest(&c, &path).await.status(), StatusCode::NOT_FOUND);
}

async fn tags_of(reg: &TestServer, repo: &str) -> Vec<String> {
    let r = reg.get(&format!("/v2/{repo}/tags/list")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn upstream_trouble_serves_what_is_cached_and_fails_fast_otherwise() {
    let up = TestServer::start().await;
    let (d1, _, ld, layer, _) = push_big(&up, "team/app", "v1", 100_000, 3).await;
    let (_, _, ld2, _, _) = push_big(&up, "team/other", "v1", 1000, 4).await;
    let px = FaultProxy::start(&up.base).await;
    let c = cache(&px.url, "", "1").await;
    let tag = format!("/v2/{PREFIX}/team/app/manifests/v1");
    assert_eq!(
        header(&manifest(&c, &tag).await, "docker-content-digest"),
        d1
    );
    get_ok(&c, &format!("/v2/{PREFIX}/team/app/blobs/{ld}")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (status, code) in [
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
    ] {
        px.fail_with(Some(status));
        // The stale tag is served (stale-if-error), blobs too.
        let r = manifest(&c, &tag).await;
        assert_eq!(r.status(), StatusCode::OK, "stale tag under {status}");
        assert_eq!(header(&r, "docker-content-digest"), d1);
        assert!(
            get_ok(&c, &format!("/v2/{PREFIX}/team/app/blobs/{ld}"))
                .await
                .1
                == layer
        );
        // Nothing cached: the upstream's trouble, as OCI error JSON.
        let r = manifest(&c, &format!("/v2/{PREFIX}/team/other/manifests/v1")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(header(&r, "retry-after"), "7");
        }
        assert_error(r, status, code).await;
        let r = c.get(&format!("/v2/{PREFIX}/team/other/blobs/{ld2}")).await;
        assert_error(r, status, code).await;
    }
    px.fail_with(None);
    // An outage: the port is closed.
    px.outage(true).await;
    let r = manifest(&c, &tag).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = Instant::now();
    let r = manifest(&c, &format!("/v2/{PREFIX}/team/other/manifests/v1")).await;
    assert_error(r, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    px.outage(false).await;
    let r = manifest(&c, &format!("/v2/{PREFIX}/team/other/manifests/v1")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn containerd_ns_parameter_selects_the_upstream() {
    let up = TestServer::start().await;
    let (d, _) = up.push_image("library/app", "v1", "ns").await;
    let c = cache(&up.base, "", "1h").await;
    let r = manifest(&c, &format!("/v2/library/app/manifests/v1?ns={PREFIX}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), d);
    // Stored under the prefixed name.
    assert_eq!(c.tags(&format!("{PREFIX}/library/app")).await, vec!["v1"]);
    // Another `ns` names no upstream: the name is served as it is (here: unknown).
    assert_error(
        manifest(&c, "/v2/library/app/manifests/v1?ns=quay.io").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn distributions_one_upstream_form_mirrors_everything() {
    let up = TestServer::start().await;
    let (d, _) = up.push_image("any/name", "v1", "remoteurl").await;
    let c = TestServer::builder()
        .config(&format!("proxy:\n  remoteurl: {}\n", up.base))
        .start()
        .await;
    let r = manifest(&c, "/v2/any/name/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_error(
        c.request(Method::POST, "/v2/any/name/blobs/uploads/")
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
    )
    .await;
}

/// CNCF distribution 2.8 (`docker-registry`) with htpasswd as the upstream: Basic auth.
#[tokio::test]
async fn distribution_with_htpasswd_is_an_upstream() {
    if std::process::Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !e2e_required(),
            "docker-registry (distribution 2.8) is missing"
        );
        eprintln!("skipped: docker-registry is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("dist:{}\n", bcrypt::hash("dist-pw", 5).unwrap()),
    )
    .unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {:?}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: s\n  relativeurls: true\nauth:\n  htpasswd:\n    realm: dist\n    path: {:?}\n",
            dir.path().join("data").display().to_string(),
            htpasswd.display().to_string()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let dist = TestServer::at(&base, Some(basic("dist", "dist-pw")));
    eventually(20, "distribution to listen", || async {
        dist.request(Method::GET, "/v2/")
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let (md, m, ld, layer, _) = push_big(&dist, "team/app", "v1", 200_000, 5).await;
    let px = FaultProxy::start(&base).await;
    let c = cache(
        &px.url,
        "      username: dist\n      password: dist-pw\n",
        "1h",
    )
    .await;
    let r = manifest(&c, &format!("/v2/{PREFIX}/team/app/manifests/v1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), md);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    assert!(
        get_ok(&c, &format!("/v2/{PREFIX}/team/app/blobs/{ld}"))
            .await
            .1
            == layer
    );
    // Basic was asked for once, then sent up front.
    assert_eq!(
        px.count("GET /v2/team/app/manifests/v1"),
        2,
        "{:?}",
        px.log()
    );
    assert_eq!(px.count(&format!("GET /v2/team/app/blobs/{ld}")), 1);
    child.kill().await.ok();
}

/// `image-registry sync --config FILE --once`: (exit success, stdout).
async fn run_sync(config: &std::path::Path) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-registry"))
        .args(["sync", "--once", "--config"])
        .arg(config)
        .env_remove("REGISTRY_CONFIGURATION_PATH")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.success(),
        format!("{stdout}\n--- stderr:\n{stderr}"),
    )
}

#[tokio::test]
async fn sync_mirrors_matching_tags_ahead_of_time_and_resumes() {
    let up = TestServer::start().await;
    for (tag, seed) in [("v1", 11), ("v2", 12), ("dev", 13)] {
        push_big(&up, "team/app", tag, 50_000, seed).await;
    }
    up.push_image("team/lib", "v1", "not synced").await;
    let px = FaultProxy::start(&up.base).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let cfg = dir.path().join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {:?}\nhttp:\n  secret: {}\nproxy:\n  upstreams:\n    - prefix: {PREFIX}\n      url: {}\n      ttl: 1h\n      sync:\n        repositories: [team/app]\n        tags: '^v'\n",
        root.display().to_string(),
        crate::harness::server::SECRET,
        px.url
    );
    std::fs::write(&cfg, &yaml).unwrap();
    let (ok, out) = run_sync(&cfg).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("sync: 2 images (0 failed), 4 blobs fetched (100"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{PREFIX}/team/app:v1: done")),
        "{out}"
    );
    let fetched = px.count("GET /v2/team/app/blobs/");
    assert_eq!(fetched, 4, "{:?}", px.log());
    // Again: nothing is fetched.
    let (ok, out) = run_sync(&cfg).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("0 blobs fetched (0 bytes), 4 already present"),
        "{out}"
    );
    assert_eq!(px.count("GET /v2/team/app/blobs/"), 4);
    // An interrupted run (a blob missing) continues with only what is missing.
    let data: Vec<String> = files_under(&root)
        .into_iter()
        .filter(|f| f.contains("/blobs/sha256/") && f.ends_with("/data"))
        .collect();
    assert!(!data.is_empty());
    let victim = data
        .iter()
        .find(|f| {
            std::fs::metadata(root.join(f.trim_start_matches('/')))
                .map(|m| m.len() == 50_000)
                .unwrap_or(false)
        })
        .cloned()
        .unwrap_or_else(|| panic!("no layer among {data:?}"));
    std::fs::remove_file(root.join(victim.trim_start_matches('/'))).unwrap();
    let (ok, out) = run_sync(&cfg).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("1 blobs fetched (50000 bytes), 3 already present"),
        "{out}"
    );
    // Served by a registry on the same storage: the synced tags, no upstream request for them.
    px.clear();
    let c = TestServer::from_yaml(&yaml).await;
    assert_eq!(
        c.tags(&format!("{PREFIX}/team/app")).await,
        vec!["v1", "v2"]
    );
    let r = manifest(&c, &format!("/v2/{PREFIX}/team/app/manifests/v2")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(px.log(), Vec::<String>::new());
    // A failing upstream fails the run, with the reason.
    px.fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
    let (ok, out) = run_sync(&cfg).await;
    assert!(!ok, "{out}");
    assert!(out.contains("cannot list tags"), "{out}");
}

/// Reads `r` until it has at least `n` bytes (or it ends).
async fn read_at_least(r: &mut reqwest::Response, got: &mut Vec<u8>, n: usize) {
    while got.len() < n {
        match r.chunk().await.unwrap() {
            Some(c) => got.extend_from_slice(&c),
            None => break,
        }
    }
}

async fn read_rest(mut r: reqwest::Response, mut got: Vec<u8>) -> Vec<u8> {
    while let Some(c) = r.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    got
}

#[tokio::test]
async fn a_late_joiner_streams_the_spooled_part_then_tails_the_fetch() {
    let up = TestServer::start().await;
    let size = 8 << 20;
    let (_, _, ld, layer, _) = push_big(&up, "team/big", "v1", size, 21).await;
    let px = FaultProxy::start(&up.base).await;
    let c = cache(&px.url, "", "1h").await;
    let path = format!("/v2/{PREFIX}/team/big/blobs/{ld}");
    // The upstream sends 3 MiB and then holds the rest.
    let held = 3u64 << 20;
    px.hold_blobs_after(Some(held));
    let mut a = c.get(&path).await;
    assert_eq!(a.status(), StatusCode::OK);
    let mut got_a = Vec::new();
    read_at_least(&mut a, &mut got_a, 1 << 20).await;
    // B arrives after the fetch's first byte: it gets what is spooled at once, from byte 0,
    // while the upstream still holds the rest of the blob.
    let mut b = c.get(&path).await;
    assert_eq!(b.status(), StatusCode::OK);
    assert_eq!(
        b.headers().get("content-length").unwrap(),
        &size.to_string()
    );
    let mut got_b = Vec::new();
    // Bounded: a cache that made B wait for the whole blob would wait here for good.
    tokio::time::timeout(
        Duration::from_secs(30),
        read_at_least(&mut b, &mut got_b, 2 << 20),
    )
    .await
    .expect("B's first bytes arrive while the upstream holds the rest");
    assert!(
        px.blob_bytes() <= held,
        "B's first bytes came before the upstream sent more than {held}: {}",
        px.blob_bytes()
    );
    assert_eq!(&got_b[..], &layer[..got_b.len()]);
    px.hold_blobs_after(None);
    let (got_a, got_b) = tokio::join!(read_rest(a, got_a), read_rest(b, got_b));
    assert_eq!(sha256(&got_a), ld);
    assert_eq!(got_a, layer);
    assert_eq!(got_b, layer);
    assert_eq!(px.count(&format!("GET /v2/team/big/blobs/{ld}")), 1);
    assert_eq!(px.blob_bytes(), size as u64, "the blob was fetched once");
}

#[tokio::test]
async fn a_slow_subscriber_holds_up_no_one() {
    let up = TestServer::start().await;
    let size = 32 << 20;
    let (_, _, ld, layer, _) = push_big(&up, "team/big", "v1", size, 22).await;
    let px = FaultProxy::start(&up.base).await;
    let c = cache(&px.url, "", "1h").await;
    let path = format!("/v2/{PREFIX}/team/big/blobs/{ld}");
    px.hold_blobs_after(Some(1 << 20));
    // The slow client reads a little and then nothing while the fetch goes on.
    let mut slow = c.get(&path).await;
    assert_eq!(slow.status(), StatusCode::OK);
    let mut got_slow = Vec::new();
    read_at_least(&mut slow, &mut got_slow, 1).await;
    px.hold_blobs_after(None);
    let fast = c.get(&path).await;
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(read_rest(fast, Vec::new()).await, layer);
    // The fetch finished and stored the blob without the slow client reading on.
    let root = c.root().to_owned();
    let hex = hex_of(&ld).to_owned();
    eventually(20, "the blob to be stored", || {
        let root = root.clone();
        let hex = hex.clone();
        async move {
            files_under(&root)
                .iter()
                .any(|f| f.ends_with(&format!("_layers/sha256/{hex}/link")))
                .then_some(())
        }
    })
    .await;
    assert_eq!(px.blob_bytes(), size as u64);
    // The slow client then reads all of it, not cut off.
    assert_eq!(read_rest(slow, got_slow).await, layer);
    assert_eq!(px.count(&format!("GET /v2/team/big/blobs/{ld}")), 1);
}

#[tokio::test]
async fn read_only_mode_serves_through_and_writes_nothing() {
    let up = TestServer::start().await;
    let (md, m, ld, layer, _) = push_big(&up, "team/app", "v1", 300_000, 23).await;
    let px = FaultProxy::start(&up.base).await;
    let c = TestServer::builder()
        .metrics(None)
        .read_only()
        .config(&format!(
            "proxy:\n  upstreams:\n    - prefix: {PREFIX}\n      url: {}\n      ttl: 1h\n",
            px.url
        ))
        .start()
        .await;
    let before = files_under(c.root());
    let r = manifest(&c, &format!("/v2/{PREFIX}/team/app/manifests/v1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("docker-content-digest").unwrap(), &md);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    let blob = format!("/v2/{PREFIX}/team/app/blobs/{ld}");
    assert_eq!(get_ok(&c, &blob).await.1, layer);
    // A range on a blob it does not have: the whole blob (200), streamed through.
    let r = c
        .request(Method::GET, &blob)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), layer);
    let r = c.request(Method::HEAD, &blob).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers().get("content-length").unwrap(),
        &layer.len().to_string()
    );
    // Nothing was stored: each pull goes to the upstream again.
    assert_eq!(files_under(c.root()), before);
    assert_eq!(px.count(&format!("GET /v2/team/app/blobs/{ld}")), 2);
    assert_eq!(get_ok(&c, &blob).await.1, layer);
    assert_eq!(px.count(&format!("GET /v2/team/app/blobs/{ld}")), 3);
    assert_eq!(files_under(c.root()), before);
    // A blob the upstream does not have: 404, as without read-only mode.
    let unknown = format!("/v2/{PREFIX}/team/app/blobs/{}", sha256(b"nope"));
    assert_eq!(c.get(&unknown).await.status(), StatusCode::NOT_FOUND);
    // Writes are refused as in any read-only registry.
    let r = c
        .request(Method::POST, "/v2/mine/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn an_interrupted_sync_resumes_where_it_stopped() {
    let up = TestServer::start().await;
    push_big(&up, "team/app", "v1", 50_000, 31).await;
    let (_, _, big, big_layer, _) = push_big(&up, "team/app", "v2", 3 << 20, 32).await;
    push_big(&up, "team/app", "v3", 50_000, 33).await;
    let px = FaultProxy::start(&up.base).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let cfg = dir.path().join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {:?}\nhttp:\n  secret: {}\nproxy:\n  upstreams:\n    - prefix: {PREFIX}\n      url: {}\n      ttl: 1h\n      sync:\n        repositories: [team/app]\n",
        root.display().to_string(),
        crate::harness::server::SECRET,
        px.url
    );
    std::fs::write(&cfg, &yaml).unwrap();
    // v1 goes through; v2's big layer stalls after 1 MiB, and the run is killed there.
    px.hold_blobs_after(Some(1 << 20));
    let log = dir.path().join("first.log");
    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-registry"))
        .args(["sync", "--once", "--config"])
        .arg(&cfg)
        .env_remove("REGISTRY_CONFIGURATION_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let big_get = format!("GET /v2/team/app/blobs/{big}");
    eventually(30, "the first run to stall on v2's layer", || {
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        let stalled = px.count(&big_get) == 1;
        async move { (out.contains(&format!("{PREFIX}/team/app:v1: done")) && stalled).then_some(()) }
    })
    .await;
    first.kill().await.unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        !out.contains("v2: done") && !out.contains("sync: "),
        "{out}"
    );
    assert!(
        files_under(&root)
            .iter()
            .any(|f| f.contains("/_sync/state-")),
        "a state file is left"
    );
    // The next run says it resumes, skips v1 without asking the upstream about it, syncs the rest.
    px.hold_blobs_after(None);
    px.clear();
    let (ok, out) = run_sync(&cfg).await;
    assert!(ok, "{out}");
    assert!(out.contains("resuming the run interrupted"), "{out}");
    assert!(
        out.contains(&format!(
            "{PREFIX}/team/app:v1: skipped (done by the interrupted run at"
        )),
        "{out}"
    );
    assert!(
        out.contains("sync: 3 images (0 failed, 1 skipped: done by the interrupted run)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{PREFIX}/team/app:v3: done")),
        "{out}"
    );
    assert!(
        px.log().iter().all(|l| !l.contains("/manifests/v1")),
        "{:?}",
        px.log()
    );
    // The big layer is fetched again in full (a partial fetch is not kept).
    assert_eq!(px.count(&big_get), 1);
    // The run got to its end: no state is left, and the next run starts afresh.
    assert!(!files_under(&root).iter().any(|f| f.contains("/_sync/")));
    let (ok, out) = run_sync(&cfg).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("sync: 3 images (0 failed), 0 blobs fetched (0 bytes), 6 already present"),
        "{out}"
    );
    let c = TestServer::from_yaml(&yaml).await;
    assert_eq!(
        get_ok(&c, &format!("/v2/{PREFIX}/team/app/blobs/{big}"))
            .await
            .1,
        big_layer
    );
}
