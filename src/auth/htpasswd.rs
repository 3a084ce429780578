//! bcrypt htpasswd users (`user:$2y$...` lines, as `htpasswd -B` writes them).
//!
//! The file is re-read when its modification time or size changes (checked at most once a
//! second). Lines that are not bcrypt entries are skipped with a warning naming the line number,
//! never its content. bcrypt runs on the blocking pool; a successful check is remembered for a
//! minute by the hash of `user:password` (a new file forgets them all), so a client sending Basic
//! on every request does not pay bcrypt on every request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::hash_secret;

#[derive(Default)]
struct State {
    users: Arc<HashMap<String, String>>,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
    verified: HashMap<[u8; 32], Instant>,
}

pub struct Htpasswd {
    path: PathBuf,
    state: Mutex<State>,
}

const RECHECK: Duration = Duration::from_secs(1);
const REMEMBER: Duration = Duration::from_secs(60);

impl Htpasswd {
    /// Loads the file now; an unreadable one (a folder, no permission) is an error at start. A
    /// missing one is provisioned as distribution does: user `docker` with a random password,
    /// logged once at `warn` (the only way the operator learns it), the file made mode 0600.
    pub fn open(path: impl Into<PathBuf>) -> anyhow::Result<Htpasswd> {
        let h = Htpasswd {
            path: path.into(),
            state: Mutex::new(State::default()),
        };
        if matches!(std::fs::symlink_metadata(&h.path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            let password = h.provision()?;
            tracing::warn!(path = %h.path.display(), user = "docker", password = %password, "htpasswd is missing, provisioning with default user");
        }
        h.reload(true)?;
        Ok(h)
    }

    /// Writes a new file with the default user (see [`open`](Self::open)); its password.
    fn provision(&self) -> anyhow::Result<String> {
        use base64::Engine;
        use rand::RngCore;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let hash = bcrypt::hash(&password, bcrypt::DEFAULT_COST)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| {
                anyhow::anyhow!("cannot create htpasswd file {}: {e}", self.path.display())
            })?;
        f.write_all(format!("docker:{hash}\n").as_bytes())?;
        f.sync_all()?;
        Ok(password)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the file if it changed. With `force`, errors are returned; otherwise a broken
    /// file keeps the last good user list (and is logged).
    fn reload(&self, force: bool) -> anyhow::Result<()> {
        {
            let st = self.lock();
            if !force && st.checked.is_some_and(|c| c.elapsed() < RECHECK) {
                return Ok(());
            }
        }
        let meta = std::fs::metadata(&self.path);
        let stamp = meta
            .as_ref()
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        {
            let mut st = self.lock();
            st.checked = Some(Instant::now());
            if !force && stamp.is_some() && st.stamp == stamp {
                return Ok(());
            }
        }
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                if force {
                    anyhow::bail!("cannot read htpasswd file {}: {e}", self.path.display());
                }
                tracing::warn!(path = %self.path.display(), error = %e, "cannot re-read the htpasswd file; keeping the users loaded before");
                return Ok(());
            }
        };
        let users = parse(&text, &self.path.display().to_string());
        tracing::info!(path = %self.path.display(), users = users.len(), "loaded htpasswd users");
        let mut st = self.lock();
        st.users = Arc::new(users);
        st.stamp = stamp;
        st.verified.clear();
        Ok(())
    }

    /// Whether `user` / `password` match an entry.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        if let Err(e) = self.reload(false) {
            tracing::warn!(error = %e, "htpasswd reload failed");
        }
        let key = hash_secret(&format!("{user}\0{password}"));
        let users = {
            let mut st = self.lock();
            if let Some(at) = st.verified.get(&key) {
                if at.elapsed() < REMEMBER {
                    return true;
                }
                st.verified.remove(&key);
            }
            st.users.clone()
        };
        let Some(hash) = users.get(user).cloned() else {
            // Spend the same time as a real check so user names cannot be probed by timing.
            let pw = password.to_owned();
            let cost = users
                .values()
                .next()
                .and_then(|h| h.get(4..6))
                .and_then(|c| c.parse::<u32>().ok())
                .unwrap_or(5);
            let _ = tokio::task::spawn_blocking(move || bcrypt::hash(pw, cost)).await;
            return false;
        };
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            let mut st = self.lock();
            if st.verified.len() > 10_000 {
                st.verified.clear();
            }
            st.verified.insert(key, Instant::now());
        }
        ok
    }
}

/// The users of an htpasswd text (`user:bcrypt-hash` lines; comments, blanks and malformed or
/// non-bcrypt lines skipped with a warning naming `source` and the line).
pub fn parse(text: &str, source: &str) -> HashMap<String, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, h))
                if !u.is_empty()
                    && (h.starts_with("$2y$")
                        || h.starts_with("$2a$")
                        || h.starts_with("$2b$")) =>
            {
                users.insert(u.to_owned(), h.to_owned());
            }
            _ => tracing::warn!(
                file = source,
                line = i + 1,
                "skipping an htpasswd line that is not a bcrypt entry (use htpasswd -B)"
            ),
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("htpasswd");
        let h1 = bcrypt::hash("pw1", 4).unwrap();
        std::fs::write(&p, format!("# users\nalice:{h1}\nbob:plaintext\n")).unwrap();
        let h = Htpasswd::open(&p).unwrap();
        assert!(h.verify("alice", "pw1").await);
        assert!(h.verify("alice", "pw1").await, "remembered");
        assert!(!h.verify("alice", "nope").await);
        assert!(
            !h.verify("bob", "plaintext").await,
            "non-bcrypt lines are skipped"
        );
        assert!(!h.verify("carol", "x").await);

        let h2 = bcrypt::hash("pw2", 4).unwrap();
        std::fs::write(&p, format!("carol:{h2}\n")).unwrap();
        // Make sure the change is seen even on coarse mtime filesystems (the size differs).
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert!(h.verify("carol", "pw2").await);
        assert!(!h.verify("alice", "pw1").await, "alice was removed");
    }

    /// As distribution: a missing file is made with user `docker` and a random password; an
    /// existing one is never replaced; a folder is an error.
    #[tokio::test]
    async fn a_missing_file_is_provisioned_with_the_default_user() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth/htpasswd");
        let h = Htpasswd::open(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("docker:$2"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!h.verify("docker", "").await);
        // The password it makes lets `docker` in.
        let q = Htpasswd {
            path: dir.path().join("other"),
            state: Mutex::new(State::default()),
        };
        let pw = q.provision().unwrap();
        assert!(pw.len() >= 40);
        q.reload(true).unwrap();
        assert!(q.verify("docker", &pw).await);
        assert!(q.provision().is_err(), "never over an existing file");
        Htpasswd::open(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert!(Htpasswd::open(dir.path()).is_err());
    }
}
