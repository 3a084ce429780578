//! Object storage sections of the config: `storage.s3`, `storage.gcs`, `storage.azure`, with the
//! OpenShift operator's field names (and distribution's, which it passes through). Keys are
//! lowercase here as everywhere in the config (`regionEndpoint` = `regionendpoint` =
//! `REGISTRY_STORAGE_S3_REGIONENDPOINT`). Secrets come from the environment the operator sets:
//! `REGISTRY_STORAGE_S3_ACCESSKEY`/`SECRETKEY`, `REGISTRY_STORAGE_GCS_KEYFILE`,
//! `REGISTRY_STORAGE_AZURE_ACCOUNTKEY`. Keys distribution accepts that have no meaning here are
//! accepted and ignored (so existing configs load).

use serde::Deserialize;

use super::flex;

fn yes() -> bool {
    true
}

/// `storage.s3`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    #[serde(deserialize_with = "flex::opt_string")]
    pub bucket: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible service (path-style addressing unless `virtualHostedStyle`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub regionendpoint: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub accesskey: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub secretkey: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub sessiontoken: Option<String>,
    /// A shared AWS credentials file (the operator mounts one and names it here).
    #[serde(deserialize_with = "flex::opt_string")]
    pub credentialsconfigpath: Option<String>,
    /// Server-side encryption: SSE-KMS with `keyID`, else SSE-S3 (AES256).
    #[serde(deserialize_with = "flex::bool")]
    pub encrypt: bool,
    /// KMS key for SSE-KMS; ignored unless `encrypt`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub keyid: Option<String>,
    /// Use `https` for a `regionEndpoint` given without a scheme.
    #[serde(deserialize_with = "flex::bool")]
    pub secure: bool,
    #[serde(deserialize_with = "flex::bool")]
    pub virtualhostedstyle: bool,
    #[serde(deserialize_with = "flex::bool")]
    pub forcepathstyle: bool,
    /// The operator's part size in MiB (5..5120).
    #[serde(deserialize_with = "flex::i64")]
    pub chunksizemib: i64,
    /// distribution's part size in bytes (used when `chunkSizeMiB` is not set).
    #[serde(deserialize_with = "flex::i64")]
    pub chunksize: i64,
    #[serde(deserialize_with = "flex::opt_string")]
    pub rootdirectory: Option<String>,
    // Accepted for compatibility, unused:
    pub v4auth: Option<serde_yaml::Value>,
    pub skipverify: Option<serde_yaml::Value>,
    pub storageclass: Option<serde_yaml::Value>,
    pub useragent: Option<serde_yaml::Value>,
    pub usedualstack: Option<serde_yaml::Value>,
    pub accelerate: Option<serde_yaml::Value>,
    pub objectacl: Option<serde_yaml::Value>,
    pub loglevel: Option<serde_yaml::Value>,
    pub multipartcopychunksize: Option<serde_yaml::Value>,
    pub multipartcopymaxconcurrency: Option<serde_yaml::Value>,
    pub multipartcopythresholdsize: Option<serde_yaml::Value>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: None,
            region: None,
            regionendpoint: None,
            accesskey: None,
            secretkey: None,
            sessiontoken: None,
            credentialsconfigpath: None,
            encrypt: false,
            keyid: None,
            secure: yes(),
            virtualhostedstyle: false,
            forcepathstyle: false,
            chunksizemib: 0,
            chunksize: 0,
            rootdirectory: None,
            v4auth: None,
            skipverify: None,
            storageclass: None,
            useragent: None,
            usedualstack: None,
            accelerate: None,
            objectacl: None,
            loglevel: None,
            multipartcopychunksize: None,
            multipartcopymaxconcurrency: None,
            multipartcopythresholdsize: None,
        }
    }
}

/// Default multipart part size (distribution's default chunk size).
pub const DEFAULT_CHUNK_MIB: i64 = 10;

impl S3Config {
    /// The part size in MiB: `chunkSizeMiB`, else `chunksize` (bytes, rounded up), else 10.
    pub fn part_size_mib(&self) -> i64 {
        if self.chunksizemib > 0 {
            self.chunksizemib
        } else if self.chunksize > 0 {
            (self.chunksize + (1 << 20) - 1) >> 20
        } else {
            DEFAULT_CHUNK_MIB
        }
    }
}

/// `storage.gcs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    #[serde(deserialize_with = "flex::opt_string")]
    pub bucket: Option<String>,
    /// Accepted (the bucket's location is fixed when it is created).
    #[serde(deserialize_with = "flex::opt_string")]
    pub region: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub projectid: Option<String>,
    /// Customer-managed encryption key (`projects/.../cryptoKeys/...`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub keyid: Option<String>,
    /// A service-account JSON key file; else application default credentials.
    #[serde(deserialize_with = "flex::opt_string")]
    pub keyfile: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub rootdirectory: Option<String>,
    /// Part size in bytes of resumable uploads (a multiple of 256 KiB; default 16 MiB).
    #[serde(deserialize_with = "flex::i64")]
    pub chunksize: i64,
    /// (ours) Base URL of the JSON API, for emulators; default `https://storage.googleapis.com`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub endpoint: Option<String>,
    /// (ours) Send no credentials (emulators only). A `keyFile` still signs redirect URLs.
    #[serde(deserialize_with = "flex::bool")]
    pub noauth: bool,
    pub credentials: Option<serde_yaml::Value>,
}

/// `storage.azure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    #[serde(deserialize_with = "flex::opt_string")]
    pub accountname: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub accountkey: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub container: Option<String>,
    /// `AzurePublicCloud` (default), `AzureUSGovernmentCloud`, `AzureChinaCloud`,
    /// `AzureGermanCloud`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub cloudname: Option<String>,
    /// distribution's name for the blob endpoint suffix (`core.windows.net`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub realm: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub rootdirectory: Option<String>,
    /// (ours) Full blob service URL, e.g. `http://127.0.0.1:10000/devstoreaccount1` (Azurite).
    #[serde(deserialize_with = "flex::opt_string")]
    pub endpoint: Option<String>,
}

impl AzureConfig {
    /// Blob service endpoint suffix for `cloudName` / `realm`.
    pub fn endpoint_suffix(&self) -> Result<String, String> {
        if let Some(r) = self.realm.as_deref().filter(|r| !r.is_empty()) {
            return Ok(r.to_owned());
        }
        let name = self.cloudname.as_deref().unwrap_or("AzurePublicCloud");
        Ok(match name.to_ascii_lowercase().as_str() {
            "" | "azurepubliccloud" | "azurecloud" => "core.windows.net",
            "azureusgovernmentcloud" | "azureusgovernment" => "core.usgovcloudapi.net",
            "azurechinacloud" => "core.chinacloudapi.cn",
            "azuregermancloud" => "core.cloudapi.de",
            other => {
                return Err(format!(
                    "unknown cloud {other:?} (AzurePublicCloud, AzureUSGovernmentCloud, \
                     AzureChinaCloud, AzureGermanCloud)"
                ))
            }
        }
        .to_owned())
    }
}
