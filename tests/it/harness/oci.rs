//! OCI vocabulary for the tests: media types, digests, descriptors and manifests, and the pushes
//! (blobs, uploads, manifests, images) most tests start with.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::http::{header, json_body, strings, with_query};
use super::server::TestServer;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// The hex part of a digest.
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').expect("algorithm:hex").1
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A descriptor.
pub fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An OCI image manifest's bytes.
pub fn oci_manifest(config: &Value, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

/// The uuid path segment of an upload's `Location`.
pub fn uuid_of(location: &str) -> String {
    let path = location.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

impl TestServer {
    // ----- blobs -------------------------------------------------------------------------------

    /// `POST /v2/<repo>/blobs/uploads/?digest=` with the whole blob, as `authorization` (None:
    /// anonymous); returns the answer and the digest.
    async fn monolithic_post(
        &self,
        repo: &str,
        data: &[u8],
        authorization: Option<&str>,
    ) -> (Response, String) {
        let digest = sha256(data);
        let resp = self
            .request_as(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                authorization,
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("monolithic upload");
        (resp, digest)
    }

    /// A monolithic push as `authorization`, asserting nothing: (status, digest).
    pub async fn post_blob(
        &self,
        repo: &str,
        data: &[u8],
        authorization: Option<&str>,
    ) -> (StatusCode, String) {
        let (resp, digest) = self.monolithic_post(repo, data, authorization).await;
        (resp.status(), digest)
    }

    /// A monolithic push; asserts 201 and the digest header. Returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let (resp, digest) = self.monolithic_post(repo, data, None).await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "monolithic push to {repo}"
        );
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        digest
    }

    /// Starts an upload session; asserts 202 and returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("POST upload");
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "start upload in {repo}"
        );
        header(&resp, "location")
    }

    /// One `PATCH` with `Content-Range: <start>-<end>`; returns the response.
    pub async fn patch_chunk(&self, location: &str, start: u64, chunk: &[u8]) -> Response {
        self.request(Method::PATCH, location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() as u64 - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    /// `PUT <location>&digest=<digest>` with an optional final body.
    pub async fn finish_upload(
        &self,
        location: &str,
        digest: &str,
        body: Option<&[u8]>,
    ) -> Response {
        let mut req = self.request(Method::PUT, &with_query(location, "digest", digest));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/octet-stream")
                .body(b.to_vec());
        }
        req.send().await.expect("PUT upload")
    }

    /// POST, then PATCH in chunks of `chunk` bytes with `Content-Range`, then PUT without body;
    /// asserts every status. Returns the digest.
    pub async fn push_blob_chunked(&self, repo: &str, data: &[u8], chunk: usize) -> String {
        let digest = sha256(data);
        let mut location = self.start_upload(repo).await;
        let mut offset = 0u64;
        for piece in data.chunks(chunk.max(1)) {
            let resp = self.patch_chunk(&location, offset, piece).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "PATCH at {offset}");
            offset += piece.len() as u64;
            assert_eq!(header(&resp, "range"), format!("0-{}", offset - 1));
            location = header(&resp, "location");
        }
        let resp = self.finish_upload(&location, &digest, None).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT completing upload");
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        digest
    }

    // ----- manifests ---------------------------------------------------------------------------

    /// `PUT /v2/<repo>/manifests/<reference>` with a Content-Type, as `authorization`; returns the
    /// response.
    pub async fn put_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
        authorization: Option<&str>,
    ) -> Response {
        self.request_as(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            authorization,
        )
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("PUT manifest")
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with a Content-Type; returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.put_manifest_as(repo, reference, media_type, body, None)
            .await
    }

    /// Pushes a manifest and asserts 201 with the right digest. Returns the digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self.put_manifest(repo, reference, media_type, body).await;
        let status = resp.status();
        let digest = sha256(body);
        if status != StatusCode::CREATED {
            let text = resp.text().await.unwrap_or_default();
            panic!("PUT manifest {repo}:{reference}: {status} {text}");
        }
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(
            header(&resp, "location"),
            format!("/v2/{repo}/manifests/{digest}")
        );
        digest
    }

    /// Pushes a config and one layer (`seed` makes them unique) and returns an OCI image
    /// manifest referencing them (not pushed).
    pub async fn oci_image(&self, repo: &str, seed: &str) -> Vec<u8> {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed:?}}}"#);
        let layer = format!("layer bytes of {seed}").into_bytes();
        let c = self.push_blob(repo, config.as_bytes()).await;
        let l = self.push_blob(repo, &layer).await;
        oci_manifest(
            &descriptor(OCI_CONFIG, &c, config.len()),
            &[descriptor(OCI_LAYER, &l, layer.len())],
        )
    }

    /// Like [`oci_image`](Self::oci_image), pushed under `reference`. Returns (digest, bytes).
    pub async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> (String, Vec<u8>) {
        let m = self.oci_image(repo, seed).await;
        let d = self.push_manifest(repo, reference, OCI_MANIFEST, &m).await;
        (d, m)
    }

    /// Pushes a Docker schema2 image (config and layer blobs too). Returns (digest, bytes).
    pub async fn push_docker_image(
        &self,
        repo: &str,
        reference: &str,
        seed: &str,
    ) -> (String, Vec<u8>) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","docker":{seed:?}}}"#);
        let layer = format!("docker layer of {seed}").into_bytes();
        let c = self.push_blob(repo, config.as_bytes()).await;
        let l = self.push_blob(repo, &layer).await;
        let m = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, &c, config.len()),
            "layers": [descriptor(DOCKER_LAYER, &l, layer.len())],
        }))
        .unwrap();
        let d = self
            .push_manifest(repo, reference, DOCKER_MANIFEST, &m)
            .await;
        (d, m)
    }

    /// `GET /v2/<repo>/tags/list`, asserting 200; returns the tags.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let resp = self.get(&format!("/v2/{repo}/tags/list")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v = json_body(resp).await;
        assert_eq!(v["name"], repo);
        strings(&v["tags"])
    }
}
