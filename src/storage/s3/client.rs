//! The S3 client of one bucket, built from `storage.s3`: the [`S3Backend`] value itself, the
//! bucket, region, endpoint and addressing style, credentials (static keys or the standard AWS
//! chain, built on first use), part size and server-side encryption, the SDK client on the
//! crate's HTTPS stack, and the mapping of SDK errors.
//!
//! Depends on the config and the SDK only (the other files of `s3/` build on it). Contract:
//! [`S3Backend::new`] does no I/O (credentials and the bucket are probed by `check` at start)
//! and fails only on a config that cannot work, with a message naming the key or variable to
//! set. A 404 maps to `NotFound`, every other SDK failure to `Backend`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, ProvideCredentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, SharedCredentialsProvider, SharedHttpClient,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::S3Config;
use crate::storage::StorageError;

/// S3's smallest part (all but the last).
pub const MIN_PART: usize = 5 << 20;

/// Attempts per SDK call (the first and two retries) and the first backoff.
const MAX_ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters kept as they are in a `CopySource` key.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The S3 backend of one bucket.
pub struct S3Backend {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) part_size: usize,
    pub(super) sse: Option<ServerSideEncryption>,
    pub(super) kms_key: Option<String>,
    /// Whether credentials came from config (then start-up skips the chain probe).
    pub(super) static_credentials: bool,
    /// The AWS chain, when no keys are configured (probed at start-up).
    pub(super) chain: Option<SharedCredentialsProvider>,
}

pub(super) fn backend_err<E, R>(what: &str, key: &str, e: SdkError<E, R>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    SdkError<E, R>: std::error::Error,
{
    StorageError::Backend(format!("s3 {what} {key}: {}", DisplayErrorContext(&e)))
}

/// Maps a 404 to NotFound.
pub(super) fn map_err<E>(
    what: &str,
    key: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    if status_of(&e) == Some(404) {
        return StorageError::NotFound(key.to_owned());
    }
    backend_err(what, key, e)
}

/// The HTTP status of a failed call, if it got a response.
pub(super) fn status_of<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The SDK's HTTPS client, on rustls with ring (the crate's one crypto provider; see Cargo.toml).
/// It is what the SDK's `default-https-client` feature builds, with `CryptoMode::Ring` in place of
/// aws-lc: each SDK client's connector settings (timeouts) and sleep, the platform's roots, and
/// proxies from the environment (the SDK's default since behaviour version 2025-08-07).
/// `build_with_connector_fn` is what that default uses too; `build_https` would drop the proxies.
pub(super) fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut b = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.set_proxy_config(Some(ProxyConfig::from_env()));
        b.build()
    })
}

/// How the client authenticates.
struct CredentialSource {
    /// Keys from config (then start-up skips the chain probe).
    static_keys: bool,
    /// The AWS chain, when no keys are configured.
    chain: Option<SharedCredentialsProvider>,
}

impl S3Backend {
    /// `CopySource` of `key` in this bucket.
    pub(super) fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, utf8_percent_encode(key, KEY_SET))
    }

    /// Builds the client from config (installing the process's TLS provider first, as the
    /// Azure backend does). Fails when required keys are missing.
    pub fn new(cfg: &S3Config) -> anyhow::Result<S3Backend> {
        crate::net::tls::install_default_provider();
        let bucket = required_bucket(cfg)?;
        let region = region(cfg);
        let b = with_endpoint(sdk_builder(&region), cfg);
        let (b, creds) = with_credentials(b, cfg, &region)?;
        let part_size = part_size(cfg)?;
        let (sse, kms_key) = encryption(cfg);
        Ok(S3Backend {
            client: Client::from_conf(b.build()),
            bucket,
            part_size,
            sse,
            kms_key,
            static_credentials: creds.static_keys,
            chain: creds.chain,
        })
    }
}

fn required_bucket(cfg: &S3Config) -> anyhow::Result<String> {
    cfg.bucket.clone().filter(|b| !b.is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "storage.s3.bucket is not set: set it in the config or REGISTRY_STORAGE_S3_BUCKET"
        )
    })
}

/// `storage.s3.region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
fn region(cfg: &S3Config) -> Region {
    let region = cfg
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    Region::new(region)
}

/// The SDK settings every S3 client gets: retries, timeouts, checksums only where required
/// (S3-compatible stores do not all support the newer defaults), the HTTPS client.
fn sdk_builder(region: &Region) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(region.clone())
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF),
        )
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build(),
        )
        .http_client(http_client())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
}

/// `regionEndpoint` (with `secure` choosing the scheme when it has none) and the addressing
/// style: path style for S3-compatible endpoints unless `virtualHostedStyle`.
fn with_endpoint(b: aws_sdk_s3::config::Builder, cfg: &S3Config) -> aws_sdk_s3::config::Builder {
    match cfg.regionendpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(ep) => {
            let ep = if ep.contains("://") {
                ep.to_owned()
            } else if cfg.secure {
                format!("https://{ep}")
            } else {
                format!("http://{ep}")
            };
            b.endpoint_url(ep).force_path_style(!cfg.virtualhostedstyle)
        }
        None => b.force_path_style(cfg.forcepathstyle && !cfg.virtualhostedstyle),
    }
}

/// Static keys when both are set; one without the other is an error; neither: the AWS chain.
fn with_credentials(
    b: aws_sdk_s3::config::Builder,
    cfg: &S3Config,
    region: &Region,
) -> anyhow::Result<(aws_sdk_s3::config::Builder, CredentialSource)> {
    match (&cfg.accesskey, &cfg.secretkey) {
        (Some(ak), Some(sk)) if !ak.is_empty() && !sk.is_empty() => {
            let keys = Credentials::new(
                ak.clone(),
                sk.clone(),
                cfg.sessiontoken.clone().filter(|t| !t.is_empty()),
                None,
                "registry-config",
            );
            let source = CredentialSource {
                static_keys: true,
                chain: None,
            };
            Ok((b.credentials_provider(keys), source))
        }
        (Some(a), _) | (_, Some(a)) if !a.is_empty() => anyhow::bail!(
            "storage.s3: set both accessKey and secretKey (REGISTRY_STORAGE_S3_ACCESSKEY, \
             REGISTRY_STORAGE_S3_SECRETKEY), or neither to use the AWS credential chain"
        ),
        _ => {
            let chain = SharedCredentialsProvider::new(LazyChain {
                region: region.clone(),
                // The operator mounts a shared credentials file and names it here.
                credentials_file: cfg.credentialsconfigpath.clone().filter(|p| !p.is_empty()),
                chain: Arc::new(tokio::sync::OnceCell::new()),
            });
            let source = CredentialSource {
                static_keys: false,
                chain: Some(chain.clone()),
            };
            Ok((b.credentials_provider(chain), source))
        }
    }
}

/// The multipart part size in bytes (`chunkSizeMiB`, 5..5120).
fn part_size(cfg: &S3Config) -> anyhow::Result<usize> {
    let part_mib = cfg.part_size_mib();
    if !(5..=5120).contains(&part_mib) {
        anyhow::bail!("storage.s3.chunkSizeMiB must be within 5..5120, not {part_mib}");
    }
    Ok((part_mib as usize) << 20)
}

/// `encrypt`: SSE-KMS with `keyID` when set, else SSE-S3.
fn encryption(cfg: &S3Config) -> (Option<ServerSideEncryption>, Option<String>) {
    if !cfg.encrypt {
        return (None, None);
    }
    match cfg.keyid.clone().filter(|k| !k.is_empty()) {
        Some(k) => (Some(ServerSideEncryption::AwsKms), Some(k)),
        None => (Some(ServerSideEncryption::Aes256), None),
    }
}

/// The standard AWS credential chain (environment, shared profile and `credentialsConfigPath`,
/// web identity, SSO, process, container and instance metadata), built on the first request for
/// credentials (building it is async and reads files), once per backend. With no source it
/// answers `CredentialsError::not_loaded`, which `check` reports at start with what to set.
#[derive(Debug, Clone)]
struct LazyChain {
    region: Region,
    /// A shared credentials file to read besides the default ones.
    credentials_file: Option<String>,
    chain: Arc<tokio::sync::OnceCell<Option<SharedCredentialsProvider>>>,
}

impl LazyChain {
    async fn build(&self) -> Option<SharedCredentialsProvider> {
        let mut b = aws_config::defaults(BehaviorVersion::latest())
            .region(self.region.clone())
            .http_client(http_client());
        if let Some(f) = &self.credentials_file {
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            b = b.profile_files(
                EnvConfigFiles::builder()
                    .with_file(EnvConfigFileKind::Credentials, f)
                    .include_default_config_file(true)
                    .build(),
            );
        }
        b.load().await.credentials_provider()
    }
}

impl ProvideCredentials for LazyChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            match self.chain.get_or_init(|| self.build()).await {
                Some(c) => c.provide_credentials().await,
                None => Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        "no credential source found",
                    ),
                ),
            }
        })
    }
}
