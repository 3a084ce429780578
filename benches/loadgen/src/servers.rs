//! Starting the registries under test: our server (a release build) and CNCF distribution 2.8
//! (`docker-registry`), each on a fresh folder of the same filesystem and a free loopback port.

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
pub async fn start(kind: Kind, label: &str, binary: &Path, work: &Path) -> Result<Server> {
    let port = free_port()?;
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
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{extra}http:\n  addr: 127.0.0.1:{port}\n  secret: loadgen-bench-secret\n",
            data.display()
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
