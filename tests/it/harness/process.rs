//! The real `image-registry` binary as a child process, configured by `REGISTRY_*` variables only
//! (for what needs a process: signals, exit status, restarts). Everything else uses
//! [`TestServer`](super::server::TestServer) in-process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use super::http::client;

/// A running `image-registry serve`; killed (by its pid) when dropped.
pub struct Process {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        // Only the child this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    /// Starts the binary with only `env` for configuration (every `REGISTRY_*` variable of the
    /// test's environment removed) plus `REGISTRY_HTTP_ADDR`, its stderr in `log`; returns once
    /// `GET /v2/` answers 200.
    pub async fn spawn(env: &[(&str, &str)], log: &Path) -> Process {
        Process::spawn_in(env, log, None).await
    }

    /// [`Process::spawn`] with `cwd` as the working folder (for the embedded default's
    /// `./registry-data`).
    pub async fn spawn_in(env: &[(&str, &str)], log: &Path, cwd: Option<&Path>) -> Process {
        Process::spawn_with(None, env, log, cwd).await
    }

    /// [`Process::spawn_in`] run through `wrapper` (a program and its arguments; the binary's path
    /// follows them, then `serve`), e.g. `unshare -m sh -c 'mount ... && exec "$0" "$@"'`.
    pub async fn spawn_with(
        wrapper: Option<&[&str]>,
        env: &[(&str, &str)],
        log: &Path,
        cwd: Option<&Path>,
    ) -> Process {
        let stderr = Stdio::from(std::fs::File::create(log).unwrap());
        Process::start(wrapper, env, log, cwd, stderr).await
    }

    /// [`Process::spawn`] with stderr a pipe that nobody reads (it stays open while the returned
    /// end lives): a log reader that has stopped.
    pub async fn spawn_unread_stderr(env: &[(&str, &str)]) -> (Process, std::process::ChildStderr) {
        let mut p = Process::start(None, env, Path::new("/dev/null"), None, Stdio::piped()).await;
        let pipe = p.child.stderr.take().unwrap();
        (p, pipe)
    }

    async fn start(
        wrapper: Option<&[&str]>,
        env: &[(&str, &str)],
        log: &Path,
        cwd: Option<&Path>,
        stderr: Stdio,
    ) -> Process {
        let port = free_port();
        let bin = env!("CARGO_BIN_EXE_image-registry");
        let mut cmd = match wrapper {
            Some([program, args @ ..]) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            _ => Command::new(bin),
        };
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        // NO_COLOR first, so that a test can unset it (an empty value).
        cmd.arg("serve")
            .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        let p = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            log: log.to_owned(),
        };
        let c = client();
        for _ in 0..300 {
            if let Ok(r) = c.get(format!("{}/v2/", p.base)).send().await {
                if r.status() == StatusCode::OK {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start:\n{}", p.log());
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (with kill(1), to this child's pid only).
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits up to `secs` seconds for the process to exit.
    pub async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        for _ in 0..secs * 20 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not exit within {secs}s:\n{}", self.log());
    }
}
