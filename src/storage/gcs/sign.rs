//! V4 signed GET URLs for GCS (`GOOG4-RSA-SHA256`): what blob GETs are redirected to when a
//! service-account key is configured.
//!
//! Depends on the service account of `auth.rs` (its RS256 key) and the URL encoding of `api.rs`.
//! Contract: a pure function of the endpoint, bucket, key, expiry and the clock; path-style URLs
//! (`<endpoint>/<bucket>/<key>`) that sign only the `host` header, the endpoint's host and port,
//! so they verify against private endpoints too; at most 7 days (GCS's limit).
//!
//! Why hand-written: object_store's GCS signer (object_store serves Azure here) signs the host
//! `storage.googleapis.com` whatever the endpoint, requires `private_key_id` in the key, and comes
//! with its GCS client's credential handling. The signature itself is jsonwebtoken's RS256 (ring);
//! only the canonical request is composed here, as
//! <https://cloud.google.com/storage/docs/access-control/signing-urls-manually> describes.

use std::time::Duration;

use chrono::Utc;
use percent_encoding::utf8_percent_encode;
use sha2::{Digest as _, Sha256};

use super::api::{enc, COMPONENT, PATH};
use super::auth::ServiceAccount;
use crate::storage::{Result, StorageError};

/// The longest validity GCS accepts.
const MAX_EXPIRY_SECS: u64 = 604_800;

/// A V4 signed URL that lets anyone GET `key` of `bucket` for `expires`.
pub(super) fn signed_get_url(
    sa: &ServiceAccount,
    endpoint: &str,
    bucket: &str,
    key: &str,
    expires: Duration,
) -> Result<String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| StorageError::Backend(format!("gcs endpoint: {e}")))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return Err(StorageError::Backend("gcs endpoint has no host".into())),
    };
    let now = Utc::now();
    let date = now.format("%Y%m%d").to_string();
    let ts = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/auto/storage/goog4_request");
    let canonical_uri = format!(
        "/{}/{}",
        utf8_percent_encode(bucket, COMPONENT),
        utf8_percent_encode(key, PATH)
    );
    let query = format!(
        "X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential={}&X-Goog-Date={ts}&X-Goog-Expires={}&X-Goog-SignedHeaders=host",
        enc(&format!("{}/{scope}", sa.email)),
        expires.as_secs().min(MAX_EXPIRY_SECS)
    );
    let canonical = format!("GET\n{canonical_uri}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "GOOG4-RSA-SHA256\n{ts}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let sig = hex::encode(sa.sign(to_sign.as_bytes())?);
    Ok(format!(
        "{}://{host}{canonical_uri}?{query}&X-Goog-Signature={sig}",
        url.scheme()
    ))
}
