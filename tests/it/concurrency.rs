//! Concurrent clients: the same blob pushed at once, one tag pushed at once, chunked uploads side by
//! side. The server runs on a multi-threaded runtime so requests really overlap.

use std::sync::Arc;

use futures::future::join_all;
use reqwest::{Method, StatusCode};

use crate::harness::*;

const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn same_blob_pushed_by_16_clients_at_once() {
    let s = Arc::new(TestServer::start().await);
    let data = Arc::new(bytes(1 << 20, 42));
    let d = sha256(&data);
    let tasks = (0..CLIENTS).map(|i| {
        let (s, data, d) = (s.clone(), data.clone(), d.clone());
        tokio::spawn(async move {
            // Half monolithic, half chunked, on one repository and on several.
            let repo = if i % 4 == 0 {
                format!("r{i}")
            } else {
                "shared".to_owned()
            };
            let client = client();
            if i % 2 == 0 {
                let resp = client
                    .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
                    .body(data.to_vec())
                    .send()
                    .await
                    .unwrap();
                (repo, resp.status(), header(&resp, "docker-content-digest"))
            } else {
                let resp = client
                    .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::ACCEPTED);
                let mut loc = header(&resp, "location");
                let mut off = 0;
                for piece in data.chunks(300_000) {
                    let resp = client
                        .patch(s.url(&loc))
                        .header("content-range", format!("{off}-{}", off + piece.len() - 1))
                        .body(piece.to_vec())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), StatusCode::ACCEPTED);
                    loc = header(&resp, "location");
                    off += piece.len();
                }
                let resp = client
                    .put(s.url(&with_query(&loc, "digest", &d)))
                    .send()
                    .await
                    .unwrap();
                (repo, resp.status(), header(&resp, "docker-content-digest"))
            }
        })
    });
    let results = join_all(tasks).await;
    for r in results {
        let (repo, status, digest) = r.expect("client task");
        assert_eq!(status, StatusCode::CREATED, "{repo}");
        assert_eq!(digest, d);
        let resp = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.len(), data.len());
        assert_eq!(sha256(&body), d, "blob intact in {repo}");
    }
    // One copy of the bytes, intact; no upload left over.
    let root = s.root().join("docker/registry/v2");
    let blob = std::fs::read(root.join(format!(
        "blobs/sha256/{}/{}/data",
        &hex_of(&d)[..2],
        hex_of(&d)
    )))
    .unwrap();
    assert_eq!(sha256(&blob), d);
    let leftovers: Vec<String> = files_under(&root.join("repositories"))
        .into_iter()
        .filter(|f| f.contains("/_uploads/"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn sixteen_manifests_pushed_to_one_tag_at_once() {
    let s = Arc::new(TestServer::start().await);
    let mut manifests = Vec::new();
    for i in 0..CLIENTS {
        manifests.push(s.oci_image("race", &format!("image {i}")).await);
    }
    let manifests = Arc::new(manifests);
    let tasks = (0..CLIENTS).map(|i| {
        let (s, manifests) = (s.clone(), manifests.clone());
        tokio::spawn(async move {
            let resp = client()
                .put(s.url("/v2/race/manifests/latest"))
                .header("content-type", OCI_MANIFEST)
                .body(manifests[i].clone())
                .send()
                .await
                .unwrap();
            (resp.status(), header(&resp, "docker-content-digest"))
        })
    });
    let results = join_all(tasks).await;
    let mut pushed = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let (status, digest) = r.expect("client task");
        assert_eq!(status, StatusCode::CREATED, "push {i}");
        assert_eq!(digest, sha256(&manifests[i]));
        pushed.push(digest);
    }
    // The tag resolves to one of them, whose bytes are intact.
    let resp = s.get("/v2/race/manifests/latest").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let d = header(&resp, "docker-content-digest");
    let body = resp.bytes().await.unwrap();
    let i = pushed
        .iter()
        .position(|p| *p == d)
        .expect("the tag names a pushed manifest");
    assert_eq!(body.as_ref(), &manifests[i][..]);
    assert_eq!(sha256(&body), d);
    // Every one of them is reachable by digest.
    for (i, p) in pushed.iter().enumerate() {
        let resp = s.get(&format!("/v2/race/manifests/{p}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &manifests[i][..]);
    }
    assert_eq!(s.tags("race").await, vec!["latest"]);
    // The tag's link file holds exactly one digest.
    let link = std::fs::read_to_string(
        s.root()
            .join("docker/registry/v2/repositories/race/_manifests/tags/latest/current/link"),
    )
    .unwrap();
    assert_eq!(link, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_chunked_uploads() {
    let s = Arc::new(TestServer::start().await);
    let tasks = (0..CLIENTS).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let data = bytes(100_000 + i * 1013, i as u64);
            let d = sha256(&data);
            let repo = format!("ns/app{}", i % 3);
            let client = client();
            let resp = client
                .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            let mut loc = header(&resp, "location");
            let mut off = 0usize;
            for piece in data.chunks(7_000 + i * 100) {
                let resp = client
                    .request(Method::PATCH, s.url(&loc))
                    .header("content-range", format!("{off}-{}", off + piece.len() - 1))
                    .body(piece.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::ACCEPTED);
                off += piece.len();
                assert_eq!(header(&resp, "range"), format!("0-{}", off - 1));
                loc = header(&resp, "location");
            }
            let resp = client
                .put(s.url(&with_query(&loc, "digest", &d)))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            (repo, d, data)
        })
    });
    for r in join_all(tasks).await {
        let (repo, d, data) = r.expect("client task");
        let resp = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_pushes_and_pulls_of_many_tags() {
    let s = Arc::new(TestServer::builder().in_memory().start().await);
    let tasks = (0..CLIENTS).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let (d, m) = s
                .push_image("many", &format!("t{i:02}"), &format!("m{i}"))
                .await;
            let resp = s.get(&format!("/v2/many/manifests/t{i:02}")).await;
            assert_eq!(header(&resp, "docker-content-digest"), d);
            assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
        })
    });
    for r in join_all(tasks).await {
        r.expect("client task");
    }
    let want: Vec<String> = (0..CLIENTS).map(|i| format!("t{i:02}")).collect();
    assert_eq!(s.tags("many").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn same_blob_pushed_at_once_on_the_in_memory_driver() {
    let s = Arc::new(TestServer::builder().in_memory().start().await);
    let data = Arc::new(bytes(256 * 1024, 7));
    let d = sha256(&data);
    let tasks = (0..CLIENTS).map(|_| {
        let (s, data, d) = (s.clone(), data.clone(), d.clone());
        tokio::spawn(async move {
            let resp = client()
                .post(s.url(&format!("/v2/mem/blobs/uploads/?digest={d}")))
                .body(data.to_vec())
                .send()
                .await
                .unwrap();
            resp.status()
        })
    });
    for r in join_all(tasks).await {
        assert_eq!(r.expect("client task"), StatusCode::CREATED);
    }
    let resp = s.get(&format!("/v2/mem/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sha256(&resp.bytes().await.unwrap()), d);
}
