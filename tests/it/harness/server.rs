//! Starting the registry in-process, the way the `image-registry` binary does: YAML -> `Config`
//! -> `app::build_server` -> `Tls::from_config` -> `server::serve` on `127.0.0.1:<ephemeral>`.
//! This is the only place in the tests that builds a server, so the tests exercise the production
//! wiring (auth, metrics guard, limits, health, access log) and follow it when it changes.
//!
//! [`TestServer::builder`] writes the YAML from a few switches (storage kind, read-only, deletes,
//! secret, auth section, metrics, extra sections); [`TestServer::from_yaml`] takes a whole config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_registry::app::build_server;
use image_registry::config::Config;
use image_registry::net::server;
use image_registry::net::tls::Tls;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::http::client;

/// The default upload secret (`http.secret`), shared by servers started on the same folder.
pub const SECRET: &str = "integration-test-secret";

/// Where a server keeps its data.
#[derive(Debug, Clone)]
enum Storage {
    /// `storage.filesystem` in a fresh temporary folder (the default).
    TempDir,
    /// `storage.filesystem` in an existing folder (another server's, or a tree written by hand).
    Root(PathBuf),
    /// `storage.inmemory`.
    InMemory,
}

/// Switches for [`TestServer::builder`]; each becomes a config key.
pub struct ServerBuilder {
    storage: Storage,
    read_only: bool,
    delete_disabled: bool,
    secret: String,
    metrics: Option<Option<String>>,
    auth: Option<String>,
    extra: String,
    /// Keys below `storage:` (indented by two spaces).
    storage_extra: String,
    /// More `http:` keys, each line indented by two spaces.
    http: String,
    /// Config files the test writes before the start (htpasswd, key sets, tokens).
    files: TempDir,
}

impl ServerBuilder {
    /// `storage.inmemory` instead of the filesystem.
    pub fn in_memory(mut self) -> Self {
        self.storage = Storage::InMemory;
        self
    }

    /// Serve an existing folder (another server's: same secret unless changed).
    pub fn root(mut self, root: &Path) -> Self {
        self.storage = Storage::Root(root.to_owned());
        self
    }

    /// `readOnly: true`.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// `storage.delete.enabled: false`.
    pub fn delete_disabled(mut self) -> Self {
        self.delete_disabled = true;
        self
    }

    /// `http.secret` (default [`SECRET`]).
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = secret.to_owned();
        self
    }

    /// `metrics: {enabled: true, secret}`; without a secret the endpoint is guarded only by what
    /// the auth mode adds (open when there is no auth).
    pub fn metrics(mut self, secret: Option<&str>) -> Self {
        self.metrics = Some(secret.map(str::to_owned));
        self
    }

    /// The `auth:` section: its body, indented by two spaces.
    pub fn auth(mut self, body: &str) -> Self {
        self.auth = Some(body.to_owned());
        self
    }

    /// More top-level YAML (`requests:`, `health:`, ...), appended as given.
    /// Keys below `storage:` besides the driver and `delete` (each line indented by two spaces).
    pub fn storage_config(mut self, yaml: &str) -> Self {
        self.storage_extra.push_str(yaml);
        self
    }

    pub fn config(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self
    }

    /// More `http:` keys (`"headerreadtimeout: 1s"`), one per line.
    pub fn http(mut self, lines: &str) -> Self {
        for l in lines.lines() {
            self.http.push_str(&format!("  {l}\n"));
        }
        self
    }

    /// Writes a file next to the config (it lives as long as the server) and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.files.path().join(name);
        std::fs::write(&p, contents).expect("write a config file");
        p
    }

    /// The config as YAML; `root` is the storage folder (None: in memory).
    fn yaml(&self, root: Option<&Path>) -> String {
        let mut y = String::from("version: 0.1\nlog:\n  level: error\nstorage:\n");
        match root {
            Some(r) => y.push_str(&format!(
                "  filesystem:\n    rootdirectory: {:?}\n",
                r.display().to_string()
            )),
            None => y.push_str("  inmemory: {}\n"),
        }
        y.push_str(&format!(
            "  delete:\n    enabled: {}\n",
            !self.delete_disabled
        ));
        y.push_str(&self.storage_extra);
        y.push_str(&format!(
            "http:\n  addr: 127.0.0.1:0\n  secret: {:?}\n",
            self.secret
        ));
        y.push_str(&self.http);
        if self.read_only {
            y.push_str("readOnly: true\n");
        }
        if let Some(secret) = &self.metrics {
            y.push_str("metrics:\n  enabled: true\n");
            if let Some(s) = secret {
                y.push_str(&format!("  secret: {s:?}\n"));
            }
        }
        if let Some(a) = &self.auth {
            y.push_str("auth:\n");
            y.push_str(a);
        }
        y.push_str(&self.extra);
        y
    }

    pub async fn start(self) -> TestServer {
        let (dir, root) = match &self.storage {
            Storage::InMemory => (None, None),
            Storage::Root(r) => (None, Some(r.clone())),
            Storage::TempDir => {
                let d = tempfile::tempdir().expect("temporary folder");
                let r = d.path().to_owned();
                (Some(d), Some(r))
            }
        };
        let config = config_from_yaml(&self.yaml(root.as_deref()));
        assert_eq!(config.read_only(), self.read_only);
        let mut s = TestServer::start_config(config).await;
        s.root = root;
        s._dirs.extend(dir);
        s._dirs.push(self.files);
        s
    }
}

fn config_from_yaml(yaml: &str) -> Config {
    let (config, warnings) = Config::from_yaml(yaml, &[])
        .unwrap_or_else(|e| panic!("invalid test config ({e}):\n{yaml}"));
    assert!(warnings.is_empty(), "{warnings:?}\n{yaml}");
    config
}

/// A registry serving on `127.0.0.1:<ephemeral>` for the lifetime of the value.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// `http://127.0.0.1:<port>` (`https://` with TLS).
    pub base: String,
    pub client: reqwest::Client,
    /// Storage folder (None for in-memory or object storage).
    pub root: Option<PathBuf>,
    _dirs: Vec<TempDir>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Filesystem storage in a fresh temporary folder, deletes enabled, writable, no auth.
    pub async fn start() -> TestServer {
        TestServer::builder().start().await
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            storage: Storage::TempDir,
            read_only: false,
            delete_disabled: false,
            secret: SECRET.to_owned(),
            metrics: None,
            auth: None,
            extra: String::new(),
            storage_extra: String::new(),
            http: String::new(),
            files: tempfile::tempdir().expect("temporary folder"),
        }
    }

    /// A server from a whole YAML config (`http.addr` is ignored: the port is ephemeral).
    pub async fn from_yaml(yaml: &str) -> TestServer {
        TestServer::start_config(config_from_yaml(yaml)).await
    }

    /// A server from a config, built as `main` builds it.
    pub async fn start_config(config: Config) -> TestServer {
        let built = build_server(&config).expect("server builds");
        assert!(
            !built.secret_generated,
            "test configs set http.secret, so servers on one folder can share uploads"
        );
        let tls = Tls::from_config(&config).expect("TLS config loads");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(server::serve(
            listener,
            built.router,
            tls,
            config.connection_limits(),
            std::future::pending(),
            Duration::from_secs(1),
            || {},
        ));
        TestServer {
            addr,
            base: format!("{scheme}://{addr}"),
            client: client(),
            root: None,
            _dirs: Vec::new(),
            task,
        }
    }

    /// A handle on a registry this harness did not start (distribution 2.8 in a child process),
    /// so the push and pull helpers work against it; every request carries `authorization`.
    pub fn at(base: &str, authorization: Option<String>) -> TestServer {
        image_registry::net::tls::install_default_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert(
                "authorization",
                reqwest::header::HeaderValue::from_str(&a).expect("header value"),
            );
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("http client");
        TestServer {
            addr: base
                .trim_start_matches("http://")
                .parse()
                .expect("http://ip:port"),
            base: base.to_owned(),
            client,
            root: None,
            _dirs: Vec::new(),
            task: tokio::spawn(async {}),
        }
    }

    /// The storage folder (panics for in-memory servers).
    pub fn root(&self) -> &Path {
        self.root.as_deref().expect("a filesystem server")
    }
}
