//! Starting the registries under test: our server (a release build) and CNCF distribution 2.8
//! (`docker-registry`), each on a free loopback port and fresh storage: a new folder of the same
//! filesystem, or a new bucket of one S3 endpoint (moto; [`Storage::S3`]) with redirects off for
//! both, so every byte passes the registry (or on, to time the redirects themselves). On Azurite
//! and fake-gcs-server ([`Storage::Azure`], [`Storage::Gcs`]) only our server runs: distribution
//! 2.8 cannot address them (its azure driver builds `https://ACCOUNT.blob.REALM`, its gcs driver
//! has no endpoint setting).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Distribution,
    Ours,
}

/// Where the servers keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A fresh folder under the work folder.
    Filesystem,
    /// A fresh bucket (created here, unsigned: moto checks no signature) at this S3 endpoint;
    /// blob GETs redirected to the store when `redirects`, else every byte through the registry.
    S3 { endpoint: String, redirects: bool },
    /// A fresh container of Azurite's well-known development account at this blob endpoint
    /// (`http://HOST:PORT/devstoreaccount1`); redirects off.
    Azure { endpoint: String },
    /// A fresh bucket of fake-gcs-server at this endpoint (no credentials); redirects off.
    Gcs { endpoint: String },
}

/// Azurite's development account and its published key (no secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Storage {
    /// `filesystem`, `s3=http://HOST:PORT`, `s3-redirect=http://HOST:PORT`,
    /// `azure=http://HOST:PORT/devstoreaccount1` or `gcs=http://HOST:PORT`.
    pub fn parse(s: &str) -> Result<Storage> {
        let (kind, ep) = match s.split_once('=') {
            None if s == "filesystem" => return Ok(Storage::Filesystem),
            Some((kind, ep)) if ep.starts_with("http://") => {
                (kind, ep.trim_end_matches('/').to_owned())
            }
            _ => ("", String::new()),
        };
        Ok(match kind {
            "s3" | "s3-redirect" => Storage::S3 {
                endpoint: ep,
                redirects: kind == "s3-redirect",
            },
            "azure" => Storage::Azure { endpoint: ep },
            "gcs" => Storage::Gcs { endpoint: ep },
            _ => bail!(
                "--storage: filesystem, s3=http://HOST:PORT, s3-redirect=http://HOST:PORT, \
                 azure=http://HOST:PORT/ACCOUNT or gcs=http://HOST:PORT, not {s:?}"
            ),
        })
    }

    /// Whether CNCF distribution 2.8 can run on this storage (see the module doc).
    pub fn distribution_can(&self) -> bool {
        matches!(self, Storage::Filesystem | Storage::S3 { .. })
    }

    /// Whether blob GETs are answered with a redirect to the store.
    pub fn redirects(&self) -> bool {
        matches!(
            self,
            Storage::S3 {
                redirects: true,
                ..
            }
        )
    }

    pub fn is_object(&self) -> bool {
        !matches!(self, Storage::Filesystem)
    }

    pub fn describe(&self, work: &Path) -> String {
        match self {
            Storage::Filesystem => format!("filesystem folders under {}", work.display()),
            Storage::S3 {
                endpoint,
                redirects,
            } => format!(
                "S3 at {endpoint}, a fresh bucket per server and scenario, redirects {} for both",
                if *redirects { "on" } else { "off" }
            ),
            Storage::Azure { endpoint } => format!(
                "Azure (Azurite) at {endpoint}, a fresh container per scenario, redirects off"
            ),
            Storage::Gcs { endpoint } => format!(
                "GCS (fake-gcs-server) at {endpoint}, a fresh bucket per scenario, redirects off"
            ),
        }
    }

    /// The `storage:` section's backend lines for a server with data in `data` (a folder) or
    /// bucket `bucket` (created here).
    async fn section(&self, data: &Path, bucket: &str) -> Result<String> {
        Ok(match self {
            Storage::Filesystem => {
                format!("  filesystem:\n    rootdirectory: {}\n", data.display())
            }
            Storage::S3 {
                endpoint,
                redirects,
            } => {
                let http = reqwest::Client::new();
                let r = http.put(format!("{endpoint}/{bucket}")).send().await?;
                if !r.status().is_success() {
                    bail!(
                        "creating bucket {bucket} at {endpoint}: HTTP {}",
                        r.status()
                    );
                }
                format!(
                    "  s3:\n    bucket: {bucket}\n    region: us-east-1\n    regionendpoint: {endpoint}\n    accesskey: test\n    secretkey: test\n  redirect:\n    disable: {}\n",
                    !redirects
                )
            }
            Storage::Azure { endpoint } => {
                // The repository's one SharedKey signer for creating containers.
                let script = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../tests/e2e/azure-container.sh"
                );
                let out = tokio::process::Command::new("bash")
                    .args([script, endpoint, AZURITE_ACCOUNT, AZURITE_KEY, bucket])
                    .output()
                    .await?;
                if !out.status.success() {
                    bail!(
                        "creating container {bucket} at {endpoint}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                format!(
                    "  azure:\n    accountname: {AZURITE_ACCOUNT}\n    accountkey: {AZURITE_KEY}\n    container: {bucket}\n    endpoint: {endpoint}\n  redirect:\n    disable: true\n"
                )
            }
            Storage::Gcs { endpoint } => {
                let r = reqwest::Client::new()
                    .post(format!("{endpoint}/storage/v1/b?project=loadgen"))
                    .header("content-type", "application/json")
                    .body(serde_json::json!({ "name": bucket }).to_string())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!(
                        "creating bucket {bucket} at {endpoint}: HTTP {}",
                        r.status()
                    );
                }
                format!(
                    "  gcs:\n    bucket: {bucket}\n    endpoint: {endpoint}\n    noauth: true\n  redirect:\n    disable: true\n"
                )
            }
        })
    }

    /// Empties the store between scenarios (moto: `POST /moto-api/reset` drops every bucket), so
    /// that a long run does not pile gigabytes up in the emulator.
    pub async fn reset(&self) -> Result<()> {
        if let Storage::S3 { endpoint, .. } = self {
            let r = reqwest::Client::new()
                .post(format!("{endpoint}/moto-api/reset"))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("resetting moto at {endpoint}: HTTP {}", r.status());
            }
        }
        Ok(())
    }
}

/// A running server; stopped (killed) and its folder removed on drop.
pub struct Server {
    pub url: String,
    pub child: Child,
    dir: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a server of `kind` with `binary`, data and logs in a new folder under `work`.
pub async fn start(
    kind: Kind,
    label: &str,
    binary: &Path,
    work: &Path,
    storage: &Storage,
) -> Result<Server> {
    if kind == Kind::Distribution && !storage.distribution_can() {
        bail!(
            "distribution 2.8 cannot run on {} (see benches/loadgen/src/servers.rs)",
            storage.describe(work)
        );
    }
    let port = free_port()?;
    let bucket: String = format!("loadgen-{label}-{port}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let dir = work.join(format!("loadgen-{label}-{port}"));
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let config = dir.join("config.yml");
    // Both: info-level logs with access logs on (each one's default), deletes on, a fixed secret.
    // Distribution gets the in-memory blob descriptor cache its stock config enables.
    let extra = match kind {
        Kind::Distribution => "  cache:\n    blobdescriptor: inmemory\n",
        Kind::Ours => "",
    };
    let backend = storage.section(&data, &bucket).await?;
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n{backend}  delete:\n    enabled: true\n{extra}http:\n  addr: 127.0.0.1:{port}\n  secret: loadgen-bench-secret\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(binary);
    cmd.arg("serve");
    match kind {
        // `image-registry serve --config FILE`
        Kind::Ours => {
            cmd.arg("--config");
        }
        // distribution 2.8.2 panics at start when AWS_CA_BUNDLE is set.
        Kind::Distribution => {
            cmd.env_remove("AWS_CA_BUNDLE");
        }
    }
    // Loopback only: no proxy between a server and the emulator.
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let mut server = Server { url, child, dir };
    let reg = Registry::new(&server.url)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reg.ping().await.is_ok() {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "{} exited at start ({status}); log: {}",
                label,
                std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("{} did not answer GET /v2/ within 30 s", label);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
