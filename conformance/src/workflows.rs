//! The checks, grouped by the spec's workflow categories, plus the setup that
//! stores the test content and the cleanup that removes it.
//!
//! Order: base, push (blobs), setup of blobs, push (manifests), setup of
//! manifests, pull, content discovery, content management, cleanup. Setup
//! only pushes what is missing, so the later workflows also run when push
//! checks are skipped or fail.

use crate::client::{Client, Resp};
use crate::fixtures::{
    sha256_digest, Blob, Manifest, ACCEPT_MANIFESTS, AT_SBOM, AT_SIGNATURE, FIXTURE_ANNOTATION,
    MT_INDEX,
};
use crate::{CheckResult, Outcome, Runner};
use reqwest::{Method, Url};
use serde_json::Value;

const OCTET: (&str, &str) = ("Content-Type", "application/octet-stream");
const ACCEPT: (&str, &str) = ("Accept", ACCEPT_MANIFESTS);
/// Not a valid digest (the encoded part is not hex).
const INVALID_DIGEST: &str =
    "sha256:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";

pub fn run_all(r: &mut Runner) {
    base(r);
    if r.cfg.push {
        push_blobs(r);
    }
    setup_blobs(r);
    if r.cfg.push {
        push_manifests(r);
    }
    if r.cfg.pull || r.cfg.discovery || r.cfg.management {
        setup_manifests(r);
    }
    if r.cfg.pull {
        pull(r);
    }
    if r.cfg.discovery {
        discovery(r);
    }
    if r.cfg.management {
        management(r);
    }
    cleanup(r);
}

fn fail<T>(reason: impl Into<String>) -> Result<T, Outcome> {
    Err(Outcome::Fail(reason.into()))
}

/// The value a previous check produced, or a skip naming that check.
fn need<T: Clone>(value: &Option<T>, check: &str) -> Result<T, Outcome> {
    value
        .clone()
        .ok_or_else(|| Outcome::Skip(format!("needs {check}, which did not pass")))
}

fn with_query(url: &Url, pairs: &[(&str, &str)]) -> Url {
    let mut url = url.clone();
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    url
}

/// A 400 or 405 to a DELETE means the registry disabled deletion (allowed).
fn deletion_disabled(resp: &Resp) -> CheckResult {
    if matches!(resp.status, 400 | 405) {
        return Err(Outcome::Skip(resp.fail(
            "this kind of deletion is disabled on the registry (the spec allows 400 or 405 for that)",
        )));
    }
    Ok(())
}

impl Runner {
    fn ns(&self) -> String {
        self.cfg.namespace.clone()
    }

    fn repo_url(&self, ns: &str, rest: &str) -> Url {
        self.c.url(&format!("/v2/{ns}/{rest}"))
    }

    fn blob_url(&self, digest: &str) -> Url {
        self.repo_url(&self.cfg.namespace, &format!("blobs/{digest}"))
    }

    fn manifest_url(&self, reference: &str) -> Url {
        self.repo_url(&self.cfg.namespace, &format!("manifests/{reference}"))
    }

    fn uploads_url(&self, ns: &str) -> Url {
        self.repo_url(ns, "blobs/uploads/")
    }

    fn referrers_url(&self, digest: &str) -> Url {
        self.repo_url(&self.cfg.namespace, &format!("referrers/{digest}"))
    }

    fn send(
        &mut self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        self.c.send(method, url, headers, body)
    }

    fn manifest(&mut self, method: Method, reference: &str) -> Result<Resp, String> {
        let url = self.manifest_url(reference);
        self.send(method, &url, &[ACCEPT], None)
    }

    fn blob(&mut self, method: Method, digest: &str) -> Result<Resp, String> {
        let url = self.blob_url(digest);
        self.send(method, &url, &[], None)
    }

    fn put_manifest(&mut self, reference: &str, m: &Manifest) -> Result<Resp, String> {
        let url = self.manifest_url(reference);
        self.send(
            Method::PUT,
            &url,
            &[("Content-Type", m.media_type)],
            Some(&m.body),
        )
    }
}

// ----- shared building blocks -------------------------------------------

/// `POST <uploads>` -> 202 with a `Location`.
fn start_upload(c: &mut Client, uploads: &Url) -> Result<(Resp, Url), String> {
    let resp = c.send(Method::POST, uploads, &[], Some(&[]))?;
    resp.expect_status(&[202])?;
    let location = resp.location()?;
    Ok((resp, location))
}

/// `PUT <location>?digest=` with the whole blob -> 201 with a `Location`.
fn finish_upload(c: &mut Client, location: &Url, blob: &Blob) -> Result<Resp, String> {
    let url = with_query(location, &[("digest", &blob.digest)]);
    let resp = c.send(Method::PUT, &url, &[OCTET], Some(&blob.data))?;
    check_blob_created(&resp, &blob.digest)?;
    Ok(resp)
}

fn check_blob_created(resp: &Resp, digest: &str) -> Result<(), String> {
    resp.expect_status(&[201])?;
    resp.location()?;
    resp.check_digest_header(digest)
}

fn upload_blob(c: &mut Client, uploads: &Url, blob: &Blob) -> Result<(), String> {
    let (_, location) = start_upload(c, uploads)?;
    finish_upload(c, &location, blob).map(drop)
}

/// Best-effort `DELETE` of an upload session.
fn cancel_upload(c: &mut Client, location: &Url) {
    let _ = c.send(Method::DELETE, location, &[], None);
}

/// `PATCH` one chunk starting at byte `start` of the blob.
fn patch_chunk(c: &mut Client, location: &Url, chunk: &[u8], start: usize) -> Result<Resp, String> {
    let range = format!("{start}-{}", start + chunk.len() - 1);
    c.send(
        Method::PATCH,
        location,
        &[OCTET, ("Content-Range", &range)],
        Some(chunk),
    )
}

/// A chunk was accepted: 202, `Location`, `Range: 0-<end>`; returns the location.
fn chunk_accepted(resp: &Resp, end: usize) -> Result<Url, String> {
    resp.expect_status(&[202])?;
    resp.expect_header_eq("Range", &format!("0-{end}"))?;
    resp.location()
}

/// `GET` of a blob returns exactly its bytes.
fn check_blob_get(resp: &Resp, blob: &Blob) -> Result<(), String> {
    resp.expect_status(&[200])?;
    if resp.body != blob.data {
        return Err(resp.fail(format!(
            "body differs from the pushed blob ({} bytes received, {} expected)",
            resp.body.len(),
            blob.data.len()
        )));
    }
    let got = sha256_digest(&resp.body);
    if got != blob.digest {
        return Err(resp.fail(format!("body digest is {got}, expected {}", blob.digest)));
    }
    resp.check_digest_header(&blob.digest)
}

/// A HEAD answered 200 with `Content-Length: len` and no body.
fn check_head(resp: &Resp, len: usize, digest: &str) -> Result<(), String> {
    resp.expect_status(&[200])?;
    resp.expect_header_eq("Content-Length", &len.to_string())?;
    if !resp.body.is_empty() {
        return Err(resp.fail("a HEAD response must not have a body"));
    }
    resp.check_digest_header(digest)
}

fn check_manifest_put(resp: &Resp, m: &Manifest) -> Result<(), String> {
    resp.expect_status(&[201])?;
    resp.location()?;
    resp.expect_header_eq("Docker-Content-Digest", &m.digest)
}

fn check_manifest_get(resp: &Resp, m: &Manifest) -> Result<(), String> {
    resp.expect_status(&[200])?;
    let content_type = resp.content_type().unwrap_or_default();
    if content_type != m.media_type {
        return Err(resp.fail(format!(
            "expected Content-Type: {}, got {content_type:?}",
            m.media_type
        )));
    }
    if resp.body != m.body {
        return Err(resp.fail(format!(
            "body is not byte-identical to the pushed {} manifest ({} bytes received, {} pushed)",
            m.label,
            resp.body.len(),
            m.body.len()
        )));
    }
    resp.check_digest_header(&m.digest)
}

// ----- base --------------------------------------------------------------

fn base(r: &mut Runner) {
    r.check("base/api-version", |r| {
        let url = r.c.url("/v2/");
        let anonymous = r.c.send_anonymous(Method::GET, &url)?;
        anonymous.expect_status(&[200, 401])?;
        if anonymous.status == 401 {
            anonymous.expect_header("WWW-Authenticate")?;
            let resp = r.send(Method::GET, &url, &[], None)?;
            resp.expect_status(&[200])?;
        }
        Ok(())
    });
    r.check("base/api-version-header-should", |r| {
        let url = r.c.url("/v2/");
        let resp = r.send(Method::GET, &url, &[], None)?;
        resp.expect_header_eq("Docker-Distribution-API-Version", "registry/2.0")?;
        Ok(())
    });
}

// ----- push: blobs ---------------------------------------------------------

fn push_blobs(r: &mut Runner) {
    let ns = r.ns();
    let uploads = r.uploads_url(&ns);

    // POST then PUT.
    let mut session = None;
    r.check("push/blob-monolithic-post", |r| {
        session = Some(start_upload(&mut r.c, &uploads)?.1);
        Ok(())
    });
    r.check("push/blob-monolithic-put", |r| {
        let location = need(&session, "push/blob-monolithic-post")?;
        let blob = r.fx.layer_a.clone();
        finish_upload(&mut r.c, &location, &blob)?;
        check_head(
            &r.blob(Method::HEAD, &blob.digest)?,
            blob.data.len(),
            &blob.digest,
        )?;
        Ok(())
    });

    // Single POST; a 202 is the spec's fallback, completed with a PUT.
    r.check("push/blob-single-post", |r| {
        let blob = r.fx.single_post.clone();
        let url = with_query(&uploads, &[("digest", &blob.digest)]);
        let resp = r.send(Method::POST, &url, &[OCTET], Some(&blob.data))?;
        resp.expect_status(&[201, 202])?;
        if resp.status == 201 {
            check_blob_created(&resp, &blob.digest)?;
        } else {
            finish_upload(&mut r.c, &resp.location()?, &blob)?;
        }
        check_blob_get(&r.blob(Method::GET, &blob.digest)?, &blob)?;
        Ok(())
    });

    // Chunked: POST, PATCH, GET status, PATCH, then PUT with the last chunk.
    let mut chunk = 1024usize;
    let mut location = None;
    r.check("push/blob-chunked-post", |r| {
        let (resp, loc) = start_upload(&mut r.c, &uploads)?;
        if let Some(min) = resp.header("OCI-Chunk-Min-Length") {
            let min: usize = min
                .trim()
                .parse()
                .map_err(|_| resp.fail(format!("OCI-Chunk-Min-Length {min:?} is not a number")))?;
            chunk = chunk.max(min.min(64 << 20));
        }
        location = Some(loc);
        Ok(())
    });
    let blob = r.fx.chunked_blob("chunked-a", chunk);
    r.extra_blobs.push(blob.digest.clone());
    let (first, second, last) = (
        &blob.data[..chunk],
        &blob.data[chunk..2 * chunk],
        &blob.data[2 * chunk..],
    );
    let mut after_first = None;
    r.check("push/blob-chunked-patch", |r| {
        let loc = need(&location, "push/blob-chunked-post")?;
        let resp = patch_chunk(&mut r.c, &loc, first, 0)?;
        after_first = Some(chunk_accepted(&resp, chunk - 1)?);
        Ok(())
    });
    r.check("push/blob-chunked-status", |r| {
        let loc = need(&after_first, "push/blob-chunked-patch")?;
        let resp = r.send(Method::GET, &loc, &[], None)?;
        resp.expect_status(&[204])?;
        resp.expect_header_eq("Range", &format!("0-{}", chunk - 1))?;
        after_first = Some(resp.location()?);
        Ok(())
    });
    let mut after_second = None;
    r.check("push/blob-chunked-patch-next", |r| {
        let loc = need(&after_first, "push/blob-chunked-patch")?;
        let resp = patch_chunk(&mut r.c, &loc, second, chunk)?;
        after_second = Some(chunk_accepted(&resp, 2 * chunk - 1)?);
        Ok(())
    });
    r.check("push/blob-chunked-put-last-chunk", |r| {
        let loc = need(&after_second, "push/blob-chunked-patch-next")?;
        let url = with_query(&loc, &[("digest", &blob.digest)]);
        let range = format!("{}-{}", 2 * chunk, blob.data.len() - 1);
        let resp = r.send(
            Method::PUT,
            &url,
            &[OCTET, ("Content-Range", &range)],
            Some(last),
        )?;
        check_blob_created(&resp, &blob.digest)?;
        check_blob_get(&r.blob(Method::GET, &blob.digest)?, &blob)?;
        Ok(())
    });

    // A chunk that does not start where the previous one ended: 416, and the
    // session stays usable (its status still reports the accepted range).
    let mut rejected_at = None;
    r.check("push/blob-chunked-out-of-order", |r| {
        let (_, loc) = start_upload(&mut r.c, &uploads)?;
        let resp = patch_chunk(&mut r.c, &loc, first, 0)?;
        let loc = chunk_accepted(&resp, chunk - 1)?;
        let resp = patch_chunk(&mut r.c, &loc, last, 2 * chunk)?;
        if resp.status != 416 {
            cancel_upload(&mut r.c, &loc);
        }
        resp.expect_status(&[416])?;
        resp.check_error_body_if_json()?;
        rejected_at = Some(loc);
        Ok(())
    });
    r.check("push/blob-chunked-status-after-416", |r| {
        let loc = need(&rejected_at, "push/blob-chunked-out-of-order")?;
        let resp = r.send(Method::GET, &loc, &[], None)?;
        cancel_upload(&mut r.c, &loc);
        resp.expect_status(&[204])?;
        resp.expect_header_eq("Range", &format!("0-{}", chunk - 1))?;
        resp.location()?;
        Ok(())
    });

    // Chunked with every chunk PATCHed, closed by an empty PUT.
    let blob = r.fx.chunked_blob("chunked-b", chunk);
    r.extra_blobs.push(blob.digest.clone());
    r.check("push/blob-chunked-put-empty", |r| {
        let (_, mut loc) = start_upload(&mut r.c, &uploads)?;
        for (i, piece) in blob.data.chunks(chunk).enumerate() {
            let start = i * chunk;
            let resp = patch_chunk(&mut r.c, &loc, piece, start)?;
            loc = chunk_accepted(&resp, start + piece.len() - 1)?;
        }
        let url = with_query(&loc, &[("digest", &blob.digest)]);
        let resp = r.send(Method::PUT, &url, &[], Some(&[]))?;
        check_blob_created(&resp, &blob.digest)?;
        check_blob_get(&r.blob(Method::GET, &blob.digest)?, &blob)?;
        Ok(())
    });

    r.check("push/blob-put-digest-mismatch", |r| {
        let (_, loc) = start_upload(&mut r.c, &uploads)?;
        let url = with_query(&loc, &[("digest", &r.fx.unknown_digest)]);
        let resp =
            r.c.send(Method::PUT, &url, &[OCTET], Some(&r.fx.layer_b.data))?;
        cancel_upload(&mut r.c, &loc);
        resp.expect_error(&[400], "DIGEST_INVALID")?;
        Ok(())
    });

    r.check("push/blob-empty", |r| {
        let blob = r.fx.empty.clone();
        upload_blob(&mut r.c, &uploads, &blob)?;
        check_head(&r.blob(Method::HEAD, &blob.digest)?, 0, &blob.digest)?;
        Ok(())
    });

    // Cross-repository mount.
    let cross = r.cfg.crossmount_namespace.clone();
    r.check("push/blob-mount", |r| {
        let blob = r.fx.mount.clone();
        let cross_uploads = r.uploads_url(&cross);
        upload_blob(&mut r.c, &cross_uploads, &blob)
            .map_err(|e| format!("pushing the blob to {cross} first failed: {e}"))?;
        let url = with_query(&uploads, &[("mount", &blob.digest), ("from", &cross)]);
        let resp = r.send(Method::POST, &url, &[], Some(&[]))?;
        if resp.status == 202 {
            if let Ok(loc) = resp.location() {
                cancel_upload(&mut r.c, &loc);
            }
            return fail(resp.fail(
                "expected 201 (blob mounted), got 202: an upload session was started instead \
                 (the spec allows this only if cross-repository mounting is unsupported)",
            ));
        }
        check_blob_created(&resp, &blob.digest)?;
        check_head(
            &r.blob(Method::HEAD, &blob.digest)?,
            blob.data.len(),
            &blob.digest,
        )?;
        Ok(())
    });
    r.check("push/blob-mount-unknown-should", |r| {
        let digest = r.fx.unknown_digest.clone();
        let url = with_query(&uploads, &[("mount", &digest), ("from", &cross)]);
        let resp = r.send(Method::POST, &url, &[], Some(&[]))?;
        resp.expect_status(&[202])?;
        let loc = resp.location()?;
        cancel_upload(&mut r.c, &loc);
        Ok(())
    });

    r.check("push/blob-upload-cancel-should", |r| {
        let (_, loc) = start_upload(&mut r.c, &uploads)?;
        let resp = r.send(Method::DELETE, &loc, &[], None)?;
        resp.expect_status(&[204])?;
        let resp = r.send(Method::GET, &loc, &[], None)?;
        resp.expect_status(&[404])?;
        resp.check_error_body_if_json()?;
        Ok(())
    });
}

// ----- setup -----------------------------------------------------------------

/// Stores the blobs the manifests reference, unless already present.
fn setup_blobs(r: &mut Runner) {
    r.check("setup/blobs", |r| {
        let uploads = r.uploads_url(&r.ns());
        let blobs = [
            r.fx.config.clone(),
            r.fx.layer_a.clone(),
            r.fx.layer_b.clone(),
            r.fx.single_post.clone(),
            r.fx.empty_json.clone(),
        ];
        for blob in &blobs {
            if r.blob(Method::HEAD, &blob.digest)?.status != 200 {
                upload_blob(&mut r.c, &uploads, blob)
                    .map_err(|e| format!("could not store a test blob: {e}"))?;
            }
        }
        Ok(())
    });
}

/// Stores the test manifests under their tags or digests, unless present.
fn setup_manifests(r: &mut Runner) {
    r.check("setup/manifests", |r| {
        let fx = &r.fx;
        let mut wanted: Vec<(String, Manifest)> = fx
            .image_tags
            .iter()
            .map(|tag| (tag.clone(), fx.image.clone()))
            .collect();
        wanted.push((fx.image2.digest.clone(), fx.image2.clone()));
        wanted.push((fx.doomed_tag.clone(), fx.doomed.clone()));
        wanted.push((fx.index_tag.clone(), fx.index.clone()));
        wanted.push((fx.sbom.digest.clone(), fx.sbom.clone()));
        wanted.push((fx.signature.digest.clone(), fx.signature.clone()));
        for (reference, m) in &wanted {
            let head = r.manifest(Method::HEAD, reference)?;
            if head.status == 200
                && head.header("Docker-Content-Digest").as_deref() == Some(m.digest.as_str())
            {
                continue;
            }
            let resp = r.put_manifest(reference, m)?;
            resp.expect_status(&[201])
                .map_err(|e| format!("could not store the {} manifest: {e}", m.label))?;
        }
        Ok(())
    });
}

// ----- push: manifests ---------------------------------------------------------

fn push_manifests(r: &mut Runner) {
    r.check("push/manifest-put-tag", |r| {
        let m = r.fx.image.clone();
        for tag in r.fx.image_tags.clone() {
            check_manifest_put(&r.put_manifest(&tag, &m)?, &m)?;
        }
        Ok(())
    });
    r.check("push/manifest-put-digest", |r| {
        let m = r.fx.image2.clone();
        check_manifest_put(&r.put_manifest(&m.digest, &m)?, &m)?;
        Ok(())
    });
    r.check("push/index-put", |r| {
        let (tag, m) = (r.fx.index_tag.clone(), r.fx.index.clone());
        check_manifest_put(&r.put_manifest(&tag, &m)?, &m)?;
        Ok(())
    });

    let mut subject_header = None;
    r.check("push/artifact-put", |r| {
        let (sbom, signature) = (r.fx.sbom.clone(), r.fx.signature.clone());
        let resp = r.put_manifest(&sbom.digest, &sbom)?;
        check_manifest_put(&resp, &sbom)?;
        subject_header = Some(resp.expect_header_eq("OCI-Subject", &r.fx.image.digest));
        check_manifest_put(&r.put_manifest(&signature.digest, &signature)?, &signature)?;
        Ok(())
    });
    r.check("push/artifact-oci-subject", |_| {
        need(&subject_header, "push/artifact-put")??;
        Ok(())
    });
    r.check("push/artifact-subject-missing", |r| {
        let m = r.fx.orphan.clone();
        check_manifest_put(&r.put_manifest(&m.digest, &m)?, &m)?;
        Ok(())
    });

    let mut rejection = None;
    r.check("push/manifest-missing-blob-should", |r| {
        let m = r.fx.missing_blob.clone();
        let resp = r.put_manifest(&m.digest, &m)?;
        if resp.status == 201 {
            return fail(resp.fail(
                "the registry accepted a manifest referencing a blob that was never uploaded",
            ));
        }
        if !(400..500).contains(&resp.status) {
            return fail(resp.fail("expected a 4xx rejection"));
        }
        rejection = Some(resp);
        Ok(())
    });
    r.check("push/manifest-missing-blob-code", |_| {
        let resp = rejection.take().ok_or_else(|| {
            Outcome::Skip(
                "the manifest was not rejected (see push/manifest-missing-blob-should)".into(),
            )
        })?;
        resp.expect_error(&[400], "MANIFEST_BLOB_UNKNOWN")?;
        Ok(())
    });
}

// ----- pull --------------------------------------------------------------------

fn pull(r: &mut Runner) {
    let image = r.fx.image.clone();
    let tag = r.fx.image_tags[0].clone();
    for (name, reference) in [("tag", &tag), ("digest", &image.digest)] {
        r.check(&format!("pull/manifest-get-{name}"), |r| {
            check_manifest_get(&r.manifest(Method::GET, reference)?, &image)?;
            Ok(())
        });
        r.check(&format!("pull/manifest-head-{name}"), |r| {
            let resp = r.manifest(Method::HEAD, reference)?;
            check_head(&resp, image.body.len(), &image.digest)?;
            Ok(())
        });
    }
    r.check("pull/index-get", |r| {
        let (tag, m) = (r.fx.index_tag.clone(), r.fx.index.clone());
        check_manifest_get(&r.manifest(Method::GET, &tag)?, &m)?;
        Ok(())
    });
    r.check("pull/artifact-get", |r| {
        let m = r.fx.sbom.clone();
        check_manifest_get(&r.manifest(Method::GET, &m.digest)?, &m)?;
        Ok(())
    });

    let blob = r.fx.layer_a.clone();
    r.check("pull/blob-get", |r| {
        check_blob_get(&r.blob(Method::GET, &blob.digest)?, &blob)?;
        Ok(())
    });
    r.check("pull/blob-head", |r| {
        check_head(
            &r.blob(Method::HEAD, &blob.digest)?,
            blob.data.len(),
            &blob.digest,
        )?;
        Ok(())
    });
    r.check("pull/blob-get-range-should", |r| {
        let url = r.blob_url(&blob.digest);
        let resp = r.send(Method::GET, &url, &[("Range", "bytes=10-109")], None)?;
        resp.expect_status(&[206])?;
        let want = format!("bytes 10-109/{}", blob.data.len());
        resp.expect_header_eq("Content-Range", &want)?;
        if resp.body != blob.data[10..110] {
            return fail(resp.fail("body is not bytes 10-109 of the blob"));
        }
        Ok(())
    });
    r.check("pull/digest-header-should", |r| {
        r.manifest(Method::GET, &tag)?
            .expect_header_eq("Docker-Content-Digest", &image.digest)?;
        r.blob(Method::GET, &blob.digest)?
            .expect_header_eq("Docker-Content-Digest", &blob.digest)?;
        Ok(())
    });

    let unknown = r.fx.unknown_digest.clone();
    r.check("pull/manifest-unknown-digest", |r| {
        let resp = r.manifest(Method::GET, &unknown)?;
        resp.expect_error(&[404], "MANIFEST_UNKNOWN")?;
        Ok(())
    });
    r.check("pull/manifest-unknown-tag", |r| {
        let resp = r.manifest(Method::GET, "conformance-no-such-tag")?;
        resp.expect_error(&[404], "MANIFEST_UNKNOWN")?;
        Ok(())
    });
    r.check("pull/manifest-head-unknown", |r| {
        r.manifest(Method::HEAD, &unknown)?.expect_status(&[404])?;
        Ok(())
    });
    r.check("pull/blob-unknown", |r| {
        r.blob(Method::GET, &unknown)?
            .expect_error(&[404], "BLOB_UNKNOWN")?;
        Ok(())
    });
    r.check("pull/blob-head-unknown", |r| {
        r.blob(Method::HEAD, &unknown)?.expect_status(&[404])?;
        Ok(())
    });
    r.check("pull/manifest-invalid-tag", |r| {
        let resp = r.manifest(Method::GET, "-not.a.valid.tag")?;
        resp.expect_status(&[400, 404])?;
        resp.check_error_body_if_json()?;
        Ok(())
    });
    r.check("pull/manifest-invalid-digest", |r| {
        let resp = r.manifest(Method::GET, INVALID_DIGEST)?;
        resp.expect_status(&[400, 404])?;
        resp.check_error_body_if_json()?;
        Ok(())
    });
    r.check("pull/blob-invalid-digest", |r| {
        let resp = r.blob(Method::GET, INVALID_DIGEST)?;
        resp.expect_status(&[400, 404])?;
        resp.check_error_body_if_json()?;
        Ok(())
    });
    r.check("pull/repository-unknown", |r| {
        let ns = format!("{}-no-such-repository", r.cfg.namespace);
        let url = r.repo_url(&ns, &format!("manifests/{tag}"));
        let resp = r.send(Method::GET, &url, &[ACCEPT], None)?;
        resp.expect_status(&[404])?;
        let codes = resp.error_codes()?;
        if !codes
            .iter()
            .any(|c| c == "NAME_UNKNOWN" || c == "MANIFEST_UNKNOWN")
        {
            return fail(resp.fail(format!(
                "expected error code NAME_UNKNOWN or MANIFEST_UNKNOWN, got {codes:?}"
            )));
        }
        Ok(())
    });
}

// ----- content discovery ---------------------------------------------------------

/// Parses a tags list response: `{"name": <ns>, "tags": [...]}`.
fn parse_tags(resp: &Resp, ns: &str) -> Result<Vec<String>, String> {
    resp.expect_status(&[200])?;
    let json = resp.json()?;
    if json["name"].as_str() != Some(ns) {
        return Err(resp.fail(format!("expected \"name\": {ns:?}, got {}", json["name"])));
    }
    let tags = match &json["tags"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| resp.fail("\"tags\" holds a non-string"))?,
        other => return Err(resp.fail(format!("\"tags\" is not an array: {other}"))),
    };
    Ok(tags)
}

/// Lexical (case-insensitive) order, or the historical ASCII order.
fn is_sorted(tags: &[String]) -> bool {
    tags.windows(2).all(|w| w[0] < w[1])
        || tags
            .windows(2)
            .all(|w| w[0].to_lowercase() <= w[1].to_lowercase())
}

/// One page of the referrers API: an image index; returns its descriptors.
fn referrers_page(resp: &Resp) -> Result<Vec<Value>, String> {
    resp.expect_status(&[200])?;
    let content_type = resp.content_type().unwrap_or_default();
    if content_type != MT_INDEX {
        return Err(resp.fail(format!(
            "expected Content-Type: {MT_INDEX}, got {content_type:?}"
        )));
    }
    let json = resp.json()?;
    if json["schemaVersion"].as_u64() != Some(2) {
        return Err(resp.fail("the index's schemaVersion is not 2"));
    }
    if let Some(media_type) = json.get("mediaType") {
        if media_type.as_str() != Some(MT_INDEX) {
            return Err(resp.fail(format!("the index's mediaType is {media_type}")));
        }
    }
    json["manifests"]
        .as_array()
        .cloned()
        .ok_or_else(|| resp.fail("the index has no \"manifests\" array"))
}

/// All descriptors of a referrers listing, following `Link` pages; also
/// returns the first response (for its headers).
fn fetch_referrers(c: &mut Client, url: &Url) -> Result<(Vec<Value>, Resp), String> {
    let first = c.send(Method::GET, url, &[], None)?;
    let mut descriptors = referrers_page(&first)?;
    let mut next = first.next_link()?;
    let mut pages = 1;
    while let Some(url) = next {
        pages += 1;
        if pages > 100 {
            return Err(first.fail("more than 100 pages of referrers"));
        }
        let resp = c.send(Method::GET, &url, &[], None)?;
        descriptors.extend(referrers_page(&resp)?);
        next = resp.next_link()?;
    }
    Ok((descriptors, first))
}

/// The listing has a correct descriptor for the referrer `m`.
fn check_referrer(
    descriptors: &[Value],
    m: &Manifest,
    artifact_type: &str,
    resp: &Resp,
) -> Result<(), String> {
    let found: Vec<&str> = descriptors
        .iter()
        .filter_map(|d| d["digest"].as_str())
        .collect();
    let d = descriptors
        .iter()
        .find(|d| d["digest"].as_str() == Some(m.digest.as_str()))
        .ok_or_else(|| {
            resp.fail(format!(
                "no descriptor for the {} referrer {} (listed: {found:?})",
                m.label, m.digest
            ))
        })?;
    let mismatch = |field: &str, want: &str| {
        resp.fail(format!(
            "descriptor of the {} referrer: expected {field} {want}, got {}",
            m.label, d[field]
        ))
    };
    if d["mediaType"].as_str() != Some(m.media_type) {
        return Err(mismatch("mediaType", m.media_type));
    }
    if d["size"].as_u64() != Some(m.body.len() as u64) {
        return Err(mismatch("size", &m.body.len().to_string()));
    }
    if d["artifactType"].as_str() != Some(artifact_type) {
        return Err(mismatch("artifactType", artifact_type));
    }
    if d["annotations"][FIXTURE_ANNOTATION].as_str() != Some(m.label) {
        return Err(resp.fail(format!(
            "descriptor of the {} referrer lacks the manifest's annotations: {}",
            m.label, d["annotations"]
        )));
    }
    Ok(())
}

fn discovery(r: &mut Runner) {
    let ns = r.ns();
    let tags_url = r.repo_url(&ns, "tags/list");
    let tags_page =
        |r: &mut Runner, query: &[(&str, &str)]| -> Result<(Vec<String>, Resp), String> {
            let resp = r.send(Method::GET, &with_query(&tags_url, query), &[], None)?;
            Ok((parse_tags(&resp, &ns)?, resp))
        };

    // `all`: the full list, in the order pages must follow.
    let mut all = None;
    let mut listed = None;
    r.check("discovery/tags-list", |r| {
        let (tags, resp) = tags_page(r, &[])?;
        let fx = &r.fx;
        let expected = fx.image_tags.iter().chain([&fx.index_tag, &fx.doomed_tag]);
        let missing: Vec<&String> = expected.filter(|t| !tags.contains(t)).collect();
        if !missing.is_empty() {
            return fail(resp.fail(format!("pushed tags missing from the list: {missing:?}")));
        }
        let mut sorted = tags.clone();
        if !is_sorted(&sorted) {
            sorted.sort();
        }
        all = Some(sorted);
        listed = Some((tags, resp));
        Ok(())
    });
    r.check("discovery/tags-list-order", |_| {
        let (tags, resp) = listed
            .take()
            .ok_or_else(|| Outcome::Skip("needs discovery/tags-list, which did not pass".into()))?;
        if !is_sorted(&tags) {
            return fail(resp.fail(format!("tags are not in lexical order: {tags:?}")));
        }
        Ok(())
    });
    r.check("discovery/tags-list-n", |r| {
        let all = need(&all, "discovery/tags-list")?;
        let (tags, resp) = tags_page(r, &[("n", "2")])?;
        if tags.len() > 2 {
            return fail(resp.fail(format!("n=2 returned {} tags", tags.len())));
        }
        if tags.len() < 2 && resp.next_link()?.is_none() {
            return fail(resp.fail(format!(
                "n=2 returned {} tag(s) and no Link header, but the repository has {}",
                tags.len(),
                all.len()
            )));
        }
        if tags[..] != all[..tags.len()] {
            return fail(resp.fail(format!(
                "expected the first tags {:?}, got {tags:?}",
                &all[..tags.len()]
            )));
        }
        Ok(())
    });
    r.check("discovery/tags-list-n-link-should", |r| {
        need(&all, "discovery/tags-list")?;
        let (_, resp) = tags_page(r, &[("n", "2")])?;
        if resp.next_link()?.is_none() {
            return fail(
                resp.fail("more tags remain but there is no Link header with rel=\"next\""),
            );
        }
        Ok(())
    });
    r.check("discovery/tags-list-last", |r| {
        let all = need(&all, "discovery/tags-list")?;
        let (tags, resp) = tags_page(r, &[("n", "2"), ("last", &all[1])])?;
        let want = &all[2..all.len().min(4)];
        if tags[..] != want[..] && !(resp.next_link()?.is_some() && want.starts_with(&tags)) {
            return fail(resp.fail(format!("expected {want:?}, got {tags:?}")));
        }
        Ok(())
    });
    r.check("discovery/tags-list-last-without-n", |r| {
        let all = need(&all, "discovery/tags-list")?;
        let (tags, resp) = tags_page(r, &[("last", &all[0])])?;
        let want = &all[1..];
        if tags[..] != want[..] && !(resp.next_link()?.is_some() && want.starts_with(&tags)) {
            return fail(resp.fail(format!("expected {want:?}, got {tags:?}")));
        }
        Ok(())
    });
    r.check("discovery/tags-list-n-zero", |r| {
        let (tags, resp) = tags_page(r, &[("n", "0")])?;
        if !tags.is_empty() || resp.header("Link").is_some() {
            return fail(resp.fail("n=0 must return an empty list and no Link header"));
        }
        Ok(())
    });
    r.check("discovery/tags-list-pagination", |r| {
        let all = need(&all, "discovery/tags-list")?;
        let (mut collected, first) = tags_page(r, &[("n", "2")])?;
        let Some(mut next) = first.next_link()? else {
            return Err(Outcome::Skip(first.fail("no Link header to follow")));
        };
        for _ in 0..100 {
            let resp = r.send(Method::GET, &next, &[], None)?;
            collected.extend(parse_tags(&resp, &ns)?);
            match resp.next_link()? {
                Some(url) => next = url,
                None if collected == all => return Ok(()),
                None => {
                    return fail(resp.fail(format!(
                        "following Link headers gave {collected:?}, the full list is {all:?}"
                    )))
                }
            }
        }
        fail(first.fail("more than 100 pages"))
    });

    let (image, sbom, signature) = (
        r.fx.image.clone(),
        r.fx.sbom.clone(),
        r.fx.signature.clone(),
    );
    r.check("discovery/referrers", |r| {
        let url = r.referrers_url(&image.digest);
        let (descriptors, resp) = fetch_referrers(&mut r.c, &url)?;
        check_referrer(&descriptors, &sbom, AT_SBOM, &resp)?;
        check_referrer(&descriptors, &signature, AT_SIGNATURE, &resp)?;
        let orphan = &r.fx.orphan.digest;
        if descriptors
            .iter()
            .any(|d| d["digest"].as_str() == Some(orphan))
        {
            return fail(resp.fail("lists a manifest whose subject is another digest"));
        }
        Ok(())
    });
    let mut filtered = None;
    r.check("discovery/referrers-filter", |r| {
        let url = with_query(
            &r.referrers_url(&image.digest),
            &[("artifactType", AT_SBOM)],
        );
        let (descriptors, resp) = fetch_referrers(&mut r.c, &url)?;
        check_referrer(&descriptors, &sbom, AT_SBOM, &resp)?;
        let applied = resp
            .header("OCI-Filters-Applied")
            .is_some_and(|h| h.split(',').any(|f| f.trim() == "artifactType"));
        if applied
            && descriptors
                .iter()
                .any(|d| d["artifactType"].as_str() != Some(AT_SBOM))
        {
            return fail(resp.fail(
                "OCI-Filters-Applied says artifactType, yet other artifact types are listed",
            ));
        }
        filtered = Some(if applied {
            Ok(())
        } else {
            Err(resp
                .fail("no OCI-Filters-Applied: artifactType header (results were not filtered)"))
        });
        Ok(())
    });
    r.check("discovery/referrers-filter-applied-should", |_| {
        need(&filtered, "discovery/referrers-filter")??;
        Ok(())
    });
    r.check("discovery/referrers-subject-missing", |r| {
        let orphan = r.fx.orphan.clone();
        if r.manifest(Method::HEAD, &orphan.digest)?.status != 200 {
            check_manifest_put(&r.put_manifest(&orphan.digest, &orphan)?, &orphan)?;
        }
        let url = r.referrers_url(&r.fx.orphan_subject());
        let (descriptors, resp) = fetch_referrers(&mut r.c, &url)?;
        check_referrer(&descriptors, &r.fx.orphan, AT_SBOM, &resp)?;
        Ok(())
    });
    r.check("discovery/referrers-unknown", |r| {
        let url = r.referrers_url(&r.fx.unknown_digest);
        let (descriptors, resp) = fetch_referrers(&mut r.c, &url)?;
        if !descriptors.is_empty() {
            return fail(resp.fail("expected an empty \"manifests\" list"));
        }
        Ok(())
    });
    r.check("discovery/referrers-invalid-digest", |r| {
        let url = r.referrers_url(INVALID_DIGEST);
        let resp = r.send(Method::GET, &url, &[], None)?;
        resp.expect_status(&[400])?;
        resp.check_error_body_if_json()?;
        Ok(())
    });
}

// ----- content management ----------------------------------------------------------

fn management(r: &mut Runner) {
    let mut tag_deleted = None;
    r.check("management/tag-delete", |r| {
        let tag = r.fx.doomed_tag.clone();
        let resp = r.manifest(Method::DELETE, &tag)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[202])?;
        tag_deleted = Some(());
        Ok(())
    });
    r.check("management/tag-delete-gone", |r| {
        need(&tag_deleted, "management/tag-delete")?;
        let tag = r.fx.doomed_tag.clone();
        r.manifest(Method::GET, &tag)?
            .expect_error(&[404], "MANIFEST_UNKNOWN")?;
        Ok(())
    });

    let mut referrer_deleted = None;
    r.check("management/artifact-delete", |r| {
        let m = r.fx.sbom.clone();
        let resp = r.manifest(Method::DELETE, &m.digest)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[202])?;
        r.manifest(Method::GET, &m.digest)?.expect_status(&[404])?;
        referrer_deleted = Some(());
        Ok(())
    });
    r.check("management/referrers-after-delete", |r| {
        need(&referrer_deleted, "management/artifact-delete")?;
        let url = r.referrers_url(&r.fx.image.digest);
        let (descriptors, resp) = fetch_referrers(&mut r.c, &url)?;
        let gone = &r.fx.sbom.digest;
        if descriptors
            .iter()
            .any(|d| d["digest"].as_str() == Some(gone))
        {
            return fail(resp.fail("the deleted referrer is still listed"));
        }
        check_referrer(&descriptors, &r.fx.signature, AT_SIGNATURE, &resp)?;
        Ok(())
    });

    r.check("management/index-delete", |r| {
        let (m, tag) = (r.fx.index.clone(), r.fx.index_tag.clone());
        let resp = r.manifest(Method::DELETE, &m.digest)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[202])?;
        r.manifest(Method::GET, &m.digest)?.expect_status(&[404])?;
        r.manifest(Method::GET, &tag)?.expect_status(&[404])?;
        Ok(())
    });

    let mut manifest_deleted = None;
    r.check("management/manifest-delete", |r| {
        let digest = r.fx.image.digest.clone();
        let resp = r.manifest(Method::DELETE, &digest)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[202])?;
        manifest_deleted = Some(());
        Ok(())
    });
    r.check("management/manifest-delete-gone", |r| {
        need(&manifest_deleted, "management/manifest-delete")?;
        let digest = r.fx.image.digest.clone();
        r.manifest(Method::GET, &digest)?
            .expect_error(&[404], "MANIFEST_UNKNOWN")?;
        for tag in r.fx.image_tags.clone() {
            r.manifest(Method::GET, &tag)?.expect_status(&[404])?;
        }
        Ok(())
    });
    r.check("management/manifest-delete-unknown-should", |r| {
        let digest = r.fx.unknown_digest.clone();
        let resp = r.manifest(Method::DELETE, &digest)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[404])?;
        Ok(())
    });

    let mut blob_deleted = None;
    r.check("management/blob-delete", |r| {
        let digest = r.fx.layer_a.digest.clone();
        let resp = r.blob(Method::DELETE, &digest)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[202])?;
        blob_deleted = Some(());
        Ok(())
    });
    r.check("management/blob-delete-gone", |r| {
        need(&blob_deleted, "management/blob-delete")?;
        let digest = r.fx.layer_a.digest.clone();
        r.blob(Method::GET, &digest)?
            .expect_error(&[404], "BLOB_UNKNOWN")?;
        r.blob(Method::HEAD, &digest)?.expect_status(&[404])?;
        Ok(())
    });
    r.check("management/blob-delete-unknown", |r| {
        let digest = r.fx.unknown_digest.clone();
        let resp = r.blob(Method::DELETE, &digest)?;
        deletion_disabled(&resp)?;
        resp.expect_status(&[404])?;
        Ok(())
    });
}

// ----- cleanup -------------------------------------------------------------

/// Deletes everything the run may have pushed; failures are ignored.
fn cleanup(r: &mut Runner) {
    if r.list_only || !r.cfg.cleanup {
        return;
    }
    let fx = &r.fx;
    let manifests: Vec<String> = [
        &fx.orphan,
        &fx.sbom,
        &fx.signature,
        &fx.missing_blob,
        &fx.index,
        &fx.image2,
        &fx.doomed,
        &fx.image,
    ]
    .iter()
    .map(|m| m.digest.clone())
    .collect();
    let mut blobs: Vec<String> = [
        &fx.config,
        &fx.layer_a,
        &fx.layer_b,
        &fx.single_post,
        &fx.mount,
        &fx.empty,
        &fx.empty_json,
    ]
    .iter()
    .map(|b| b.digest.clone())
    .collect();
    blobs.extend(r.extra_blobs.iter().cloned());
    // Only present if the registry wrongly accepted push/blob-put-digest-mismatch.
    blobs.push(fx.unknown_digest.clone());
    let (ns, cross) = (r.ns(), r.cfg.crossmount_namespace.clone());
    let mut targets: Vec<Url> = manifests.iter().map(|d| r.manifest_url(d)).collect();
    targets.extend(blobs.iter().map(|d| r.blob_url(d)));
    targets.push(r.repo_url(&cross, &format!("blobs/{}", fx.mount.digest)));
    let mut deleted = 0;
    for url in &targets {
        if let Ok(resp) = r.send(Method::DELETE, url, &[], None) {
            deleted += usize::from(resp.status == 202);
        }
    }
    crate::say(&format!(
        "# cleanup: deleted {deleted} of {} test objects in {ns} and {cross} \
         (the rest were already gone, or deletion is disabled)",
        targets.len()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Fixtures;
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn resp(status: u16, headers: &[(&'static str, &str)], body: Value) -> Resp {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        Resp {
            method: Method::GET,
            url: Url::parse("http://registry.test/v2/a/b/tags/list?n=2").unwrap(),
            status,
            headers: map,
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    #[test]
    fn tags_and_links() {
        let r = resp(
            200,
            &[("Link", "</v2/a/b/tags/list?n=2&last=b>; rel=\"next\"")],
            json!({"name": "a/b", "tags": ["a", "b"]}),
        );
        assert_eq!(parse_tags(&r, "a/b").unwrap(), ["a", "b"]);
        assert!(parse_tags(&r, "other").is_err());
        assert_eq!(
            r.next_link().unwrap().unwrap().as_str(),
            "http://registry.test/v2/a/b/tags/list?n=2&last=b"
        );
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_sorted(&strings(&["A", "b", "C"])));
        assert!(is_sorted(&strings(&["A", "C", "b"])));
        assert!(!is_sorted(&strings(&["b", "a"])));
    }

    #[test]
    fn referrer_descriptors() {
        let fx = Fixtures::new("t");
        let mut desc = fx.sbom.descriptor();
        desc["artifactType"] = json!(AT_SBOM);
        desc["annotations"] = json!({FIXTURE_ANNOTATION: "sbom"});
        let index = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc]});
        let r = resp(200, &[("Content-Type", MT_INDEX)], index);
        let descriptors = referrers_page(&r).unwrap();
        check_referrer(&descriptors, &fx.sbom, AT_SBOM, &r).unwrap();
        assert!(check_referrer(&descriptors, &fx.signature, AT_SIGNATURE, &r).is_err());
        assert!(check_referrer(&descriptors, &fx.sbom, AT_SIGNATURE, &r).is_err());
        let wrong_type = resp(200, &[("Content-Type", "application/json")], json!({}));
        assert!(referrers_page(&wrong_type).is_err());
    }

    #[test]
    fn error_bodies() {
        let r = resp(
            404,
            &[],
            json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "x"}]}),
        );
        r.expect_error(&[404], "MANIFEST_UNKNOWN").unwrap();
        assert!(r.expect_error(&[404], "BLOB_UNKNOWN").is_err());
        assert!(resp(404, &[], json!({"errors": []})).error_codes().is_err());
        assert!(resp(404, &[], json!({"errors": [{"code": "bad"}]}))
            .error_codes()
            .is_err());
        let custom = resp(400, &[], json!({"errors": [{"code": "TAG_INVALID"}]}));
        assert!(custom.check_error_body_if_json().is_err());
    }
}
