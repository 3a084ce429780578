//! S3 multipart uploads: a writer session's parts streamed with a few in flight ([`S3Parts`]),
//! and server-side assembly by multipart copy (`UploadPartCopy` in ranges of at most 1 GiB, so
//! objects above 5 GiB are moved without passing through the registry).
//!
//! Depends on the SDK and the backend's client, settings and error mapping (`client.rs`). Contract: nothing is
//! visible under the target key before `CompleteMultipartUpload`; any failure aborts the upload
//! (an abort that fails is logged, and the bucket's lifecycle rule for incomplete multipart
//! uploads cleans what is left).

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as AwsStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinSet;

use super::client::{backend_err, map_err, S3Backend};
use crate::storage::object::{PartPermit, PartSink};
use crate::storage::{Result, StorageError};

/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 3;
/// Largest range copied by one `UploadPartCopy` (S3 allows 5 GiB).
const COPY_PART: u64 = 1 << 30;

/// Cuts `sources` (key, size) into copy ranges `[a, b)` of at most [`COPY_PART`], each source in
/// near-equal pieces; an empty source is one empty range.
fn copy_ranges(sources: &[(String, u64)]) -> Vec<(String, u64, u64)> {
    let mut ranges = Vec::new();
    for (key, size) in sources {
        let n = size.div_ceil(COPY_PART).max(1);
        let piece = size.div_ceil(n).max(1);
        let mut a = 0;
        while a < *size || (a == 0 && *size == 0) {
            let b = (a + piece).min(*size);
            ranges.push((key.clone(), a, b));
            if b == a {
                break;
            }
            a = b;
        }
    }
    ranges
}

impl S3Backend {
    pub(super) async fn create_multipart(&self, key: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.kms_key.clone())
            .send()
            .await
            .map_err(|e| backend_err("create multipart upload", key, e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Backend(format!("s3 gave no upload id for {key}")))
    }

    /// Copies `[a, b)` of `from` as part `part` of the upload of `to`.
    async fn copy_part(
        &self,
        to: &str,
        upload_id: &str,
        part: i32,
        (from, a, b): (String, u64, u64),
    ) -> Result<CompletedPart> {
        let mut req = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(to)
            .upload_id(upload_id)
            .part_number(part)
            .copy_source(self.copy_source(&from));
        if b > a {
            req = req.copy_source_range(format!("bytes={a}-{}", b - 1));
        }
        let out = req
            .send()
            .await
            .map_err(|e| map_err("upload part copy from", &from, e))?;
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .unwrap_or_default()
            .to_owned();
        Ok(CompletedPart::builder()
            .part_number(part)
            .e_tag(etag)
            .build())
    }

    /// Multipart copy of `sources` into `to`: each source in ranges of at most [`COPY_PART`],
    /// a few at a time.
    pub(super) async fn multipart_copy(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        let ranges = copy_ranges(sources);
        let upload_id = self.create_multipart(to).await?;
        let results: Vec<Result<CompletedPart>> =
            futures::stream::iter(ranges.into_iter().enumerate())
                .map(|(i, range)| {
                    let upload_id = &upload_id;
                    async move {
                        let part = i32::try_from(i + 1)
                            .map_err(|_| StorageError::Backend("too many parts".into()))?;
                        self.copy_part(to, upload_id, part, range).await
                    }
                })
                .buffer_unordered(PARTS_IN_FLIGHT + 1)
                .collect()
                .await;
        let mut parts = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(p) => parts.push(p),
                Err(e) => {
                    abort(&self.client, &self.bucket, to, &upload_id).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = complete(&self.client, &self.bucket, to, &upload_id, parts).await {
            abort(&self.client, &self.bucket, to, &upload_id).await;
            return Err(e);
        }
        Ok(())
    }
}

/// `CompleteMultipartUpload` with `parts` in part-number order.
async fn complete(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    mut parts: Vec<CompletedPart>,
) -> Result<()> {
    parts.sort_by_key(|p| p.part_number());
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| backend_err("complete multipart upload", key, e))?;
    Ok(())
}

/// `AbortMultipartUpload`; a failure is logged (the lifecycle rule cleans up).
async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    if let Err(e) = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        tracing::warn!(key, error = %DisplayErrorContext(&e), "s3: aborting a multipart upload failed");
    }
}

/// One S3 multipart upload: parts go out on tasks, at most [`PARTS_IN_FLIGHT`] at a time.
pub(super) struct S3Parts {
    pub client: Client,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// The next part number.
    pub next: i32,
    pub inflight: JoinSet<Result<CompletedPart>>,
    pub done: Vec<CompletedPart>,
}

impl S3Parts {
    async fn reap_one(&mut self) -> Result<()> {
        if let Some(r) = self.inflight.join_next().await {
            let part = r.map_err(|e| StorageError::Backend(format!("s3 part task: {e}")))??;
            self.done.push(part);
        }
        Ok(())
    }

    async fn abort_now(&mut self) {
        self.inflight.abort_all();
        abort(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }

    fn spawn(&mut self, data: Bytes, permit: Option<PartPermit>) {
        let part = self.next;
        self.next += 1;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(part)
            .body(AwsStream::from(data));
        let key = self.key.clone();
        self.inflight.spawn(async move {
            let out = req
                .send()
                .await
                .map_err(|e| backend_err("upload part of", &key, e))?;
            drop(permit);
            Ok(CompletedPart::builder()
                .part_number(part)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build())
        });
    }
}

#[async_trait::async_trait]
impl PartSink for S3Parts {
    async fn put_part(&mut self, data: Bytes, permit: PartPermit) -> Result<()> {
        while self.inflight.len() >= PARTS_IN_FLIGHT {
            if let Err(e) = self.reap_one().await {
                self.abort_now().await;
                return Err(e);
            }
        }
        self.spawn(data, Some(permit));
        Ok(())
    }

    async fn finish(mut self: Box<Self>, last: Bytes) -> Result<()> {
        if !last.is_empty() {
            self.spawn(last, None);
        }
        while !self.inflight.is_empty() {
            if let Err(e) = self.reap_one().await {
                self.abort_now().await;
                return Err(e);
            }
        }
        let parts = std::mem::take(&mut self.done);
        if let Err(e) = complete(
            &self.client,
            &self.bucket,
            &self.key,
            &self.upload_id,
            parts,
        )
        .await
        {
            self.abort_now().await;
            return Err(e);
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.abort_now().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_cut_sources_in_near_equal_pieces_of_at_most_1_gib() {
        let gib = COPY_PART;
        let r = copy_ranges(&[("a".into(), 0), ("b".into(), 10), ("c".into(), 2 * gib + 1)]);
        let piece = (2 * gib + 1).div_ceil(3);
        assert_eq!(
            r,
            vec![
                ("a".into(), 0, 0),
                ("b".into(), 0, 10),
                ("c".into(), 0, piece),
                ("c".into(), piece, 2 * piece),
                ("c".into(), 2 * piece, 2 * gib + 1),
            ]
        );
    }
}
