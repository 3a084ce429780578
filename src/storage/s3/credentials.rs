//! The standard AWS credential chain (environment, shared profile and `credentialsConfigPath`,
//! web identity, SSO, process, container and instance metadata), built on first use.
//!
//! Depends on aws-config and `client.rs`'s HTTPS client. Contract: building the chain is async
//! and may read files, so it happens on the first request for credentials, once per backend; a
//! chain with no source answers `CredentialsError::not_loaded`, which `check` reports at start
//! with the variables to set.

use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, ProvideCredentials, Region, SharedCredentialsProvider};

use super::client::http_client;

/// The AWS chain, built on the first call of `provide_credentials`.
#[derive(Debug, Clone)]
pub(super) struct LazyChain {
    pub region: Region,
    /// A shared credentials file to read besides the default ones.
    pub credentials_file: Option<String>,
    pub chain: Arc<tokio::sync::OnceCell<Option<SharedCredentialsProvider>>>,
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
