//! The tests' fake cluster API (`tests/fake_kube`) as a process, for `tests/e2e/auth.sh`: real
//! clients (podman, skopeo) against the registry in `openshift` mode. A fake because the real
//! authorization API cannot run on the test machines.
//!
//! Usage: `fake_kube PORT_FILE` — serves on 127.0.0.1:<ephemeral>, writes `http://127.0.0.1:PORT`
//! to PORT_FILE, and runs until killed. Its table:
//! - `e2e-sa-token`: the registry's service account (may create SubjectAccessReviews),
//! - `e2e-editor-token` (user `eddie`): `registry-editor` in `proj` and `public`,
//! - `e2e-viewer-token` (user `vera`): `registry-viewer` in `proj`,
//! - group `system:unauthenticated`: `system:image-puller` in `public`.

#[path = "../tests/fake_kube/mod.rs"]
mod fake_kube;

use fake_kube::{FakeKube, RoleBinding, Table, User};

fn user(token: &str, name: &str) -> User {
    User {
        token: token.into(),
        name: name.into(),
        groups: Vec::new(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(port_file) = std::env::args().nth(1) else {
        eprintln!("usage: fake_kube PORT_FILE");
        std::process::exit(2);
    };
    let table = Table {
        users: vec![
            user("e2e-sa-token", fake_kube::REGISTRY_SA),
            user("e2e-editor-token", "eddie"),
            user("e2e-viewer-token", "vera"),
        ],
        bindings: vec![
            RoleBinding::user(fake_kube::REGISTRY_SA, "system:auth-delegator", None),
            // The registry records pushed images (ImageStreamMappings) as its service account.
            RoleBinding::user(fake_kube::REGISTRY_SA, "system:registry", None),
            RoleBinding::user("eddie", "registry-editor", Some("proj")),
            RoleBinding::user("eddie", "registry-editor", Some("public")),
            RoleBinding::user("vera", "registry-viewer", Some("proj")),
            RoleBinding::group(
                "system:unauthenticated",
                "system:image-puller",
                Some("public"),
            ),
        ],
    };
    let kube = FakeKube::start(table).await;
    let tmp = format!("{port_file}.tmp");
    if std::fs::write(&tmp, &kube.base)
        .and_then(|_| std::fs::rename(&tmp, &port_file))
        .is_err()
    {
        eprintln!("cannot write {port_file}");
        std::process::exit(1);
    }
    eprintln!("fake cluster API at {}", kube.base);
    std::future::pending::<()>().await;
}
