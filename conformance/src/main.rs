//! `oci-conformance`: a conformance runner for the OCI distribution-spec v1.1.
//!
//! It talks HTTP to any registry and checks the spec's requirements for the
//! four workflow categories — pull, push, content discovery and content
//! management — using deterministic test content that it pushes itself and
//! deletes again at the end (best effort).
//!
//! # Running
//!
//! ```text
//! OCI_ROOT_URL=http://127.0.0.1:5000 OCI_NAMESPACE=myorg/myrepo \
//!     cargo run -p oci-conformance
//! ```
//!
//! Configuration is read from the environment:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `OCI_ROOT_URL` | registry base URL (required), e.g. `http://127.0.0.1:5000` |
//! | `OCI_NAMESPACE` | repository to test in (default `oci-conformance/test`) |
//! | `OCI_CROSSMOUNT_NAMESPACE` | second repository for blob mounts (default `<OCI_NAMESPACE>-mount`) |
//! | `OCI_USERNAME`, `OCI_PASSWORD` | credentials for basic auth or the bearer-token flow |
//! | `OCI_TEST_PULL`, `OCI_TEST_PUSH`, `OCI_TEST_CONTENT_DISCOVERY`, `OCI_TEST_CONTENT_MANAGEMENT` | `1` enables a workflow; when none is set all four run |
//! | `OCI_SKIP` | comma-separated check names to skip; a trailing `*` matches a prefix (`discovery/referrers*`) |
//! | `OCI_REPORT` | path of a JSON report of every check |
//! | `OCI_SEED` | seed of the generated content (default `oci-conformance`) |
//! | `OCI_CLEANUP` | `0` keeps the pushed content |
//! | `OCI_TLS_INSECURE` | `1` accepts invalid TLS certificates |
//!
//! `oci-conformance --list` prints the names of all checks without contacting
//! the registry.
//!
//! # Output
//!
//! One line per check — `PASS name`, `FAIL name: reason`, `SKIP name: reason`,
//! or `WARN name: reason` for a check whose name ends in `-should` (a SHOULD of
//! the spec: reported, never counted as a failure) — then the summary line
//! `N passed, M failed, K skipped`. The exit status is 0 iff nothing failed.

#![forbid(unsafe_code)]

mod client;
mod fixtures;
mod workflows;

use client::Client;
use fixtures::Fixtures;
use serde_json::json;
use std::io::Write as _;
use std::process::ExitCode;

pub struct Config {
    pub root_url: String,
    pub namespace: String,
    pub crossmount_namespace: String,
    pub pull: bool,
    pub push: bool,
    pub discovery: bool,
    pub management: bool,
    pub skip: Vec<String>,
    pub report: Option<String>,
    pub cleanup: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn env_flag(name: &str) -> bool {
    env(name).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

impl Config {
    fn from_env(list_only: bool) -> Result<Self, String> {
        let root_url = match env("OCI_ROOT_URL") {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if list_only => "http://127.0.0.1:5000".to_string(),
            None => return Err("OCI_ROOT_URL is not set".to_string()),
        };
        let namespace = env("OCI_NAMESPACE").unwrap_or_else(|| "oci-conformance/test".into());
        let crossmount_namespace =
            env("OCI_CROSSMOUNT_NAMESPACE").unwrap_or_else(|| format!("{namespace}-mount"));
        if crossmount_namespace == namespace {
            return Err("OCI_CROSSMOUNT_NAMESPACE must differ from OCI_NAMESPACE".to_string());
        }
        let (pull, push, discovery, management) = (
            env_flag("OCI_TEST_PULL"),
            env_flag("OCI_TEST_PUSH"),
            env_flag("OCI_TEST_CONTENT_DISCOVERY"),
            env_flag("OCI_TEST_CONTENT_MANAGEMENT"),
        );
        let all = !(pull || push || discovery || management);
        Ok(Config {
            root_url,
            namespace,
            crossmount_namespace,
            pull: pull || all,
            push: push || all,
            discovery: discovery || all,
            management: management || all,
            skip: env("OCI_SKIP")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            report: env("OCI_REPORT"),
            cleanup: env("OCI_CLEANUP").is_none_or(|v| v != "0" && v != "false"),
        })
    }

    fn skips(&self, name: &str) -> bool {
        self.skip
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Skip => "SKIP",
        }
    }
}

struct Record {
    name: String,
    status: Status,
    reason: String,
}

/// Why a check did not pass.
pub enum Outcome {
    Fail(String),
    Skip(String),
}

impl From<String> for Outcome {
    fn from(reason: String) -> Self {
        Outcome::Fail(reason)
    }
}

pub type CheckResult = Result<(), Outcome>;

/// Runs checks, prints one line per check, and remembers the results.
pub struct Runner {
    pub c: Client,
    pub cfg: Config,
    pub fx: Fixtures,
    /// Blobs generated during the run (chunked uploads), deleted at cleanup.
    pub extra_blobs: Vec<String>,
    list_only: bool,
    records: Vec<Record>,
}

impl Runner {
    /// Runs the check `name` unless it is skipped; returns whether it passed.
    /// Names ending in `-should` test a SHOULD: their failures are warnings.
    pub fn check(&mut self, name: &str, f: impl FnOnce(&mut Runner) -> CheckResult) -> bool {
        if self.list_only {
            say(name);
            return false;
        }
        let (status, reason) = if self.cfg.skips(name) {
            (Status::Skip, "listed in OCI_SKIP".to_string())
        } else {
            match f(self) {
                Ok(()) => (Status::Pass, String::new()),
                Err(Outcome::Skip(reason)) => (Status::Skip, reason),
                Err(Outcome::Fail(reason)) if name.ends_with("-should") => (Status::Warn, reason),
                Err(Outcome::Fail(reason)) => (Status::Fail, reason),
            }
        };
        let reason = reason.replace(['\n', '\r'], " ");
        if reason.is_empty() {
            say(&format!("{} {name}", status.word()));
        } else {
            say(&format!("{} {name}: {reason}", status.word()));
        }
        self.records.push(Record {
            name: name.to_string(),
            status,
            reason,
        });
        status == Status::Pass
    }

    fn count(&self, status: Status) -> usize {
        self.records.iter().filter(|r| r.status == status).count()
    }

    fn write_report(&self, path: &str) -> Result<(), String> {
        let checks: Vec<_> = self
            .records
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "status": r.status.word().to_ascii_lowercase(),
                    "reason": r.reason,
                })
            })
            .collect();
        let report = json!({
            "spec": "OCI distribution-spec v1.1",
            "root_url": self.cfg.root_url,
            "namespace": self.cfg.namespace,
            "crossmount_namespace": self.cfg.crossmount_namespace,
            "workflows": {
                "pull": self.cfg.pull,
                "push": self.cfg.push,
                "content_discovery": self.cfg.discovery,
                "content_management": self.cfg.management,
            },
            "summary": {
                "passed": self.count(Status::Pass),
                "failed": self.count(Status::Fail),
                "skipped": self.count(Status::Skip),
                "warnings": self.count(Status::Warn),
            },
            "checks": checks,
        });
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        std::fs::write(path, text + "\n").map_err(|e| format!("writing OCI_REPORT {path}: {e}"))
    }
}

/// Prints a line of output and flushes it; a closed stdout is ignored.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn main() -> ExitCode {
    // HTTPS registries: rustls with ring (the registry's one provider); reqwest takes the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "oci-conformance: OCI distribution-spec v1.1 conformance runner\n\n\
             usage: OCI_ROOT_URL=http://127.0.0.1:5000 [OCI_NAMESPACE=myorg/myrepo] oci-conformance [--list]\n\n\
             Other variables: OCI_CROSSMOUNT_NAMESPACE, OCI_USERNAME, OCI_PASSWORD, OCI_TEST_PULL,\n\
             OCI_TEST_PUSH, OCI_TEST_CONTENT_DISCOVERY, OCI_TEST_CONTENT_MANAGEMENT (1 enables; none\n\
             set = all), OCI_SKIP (comma-separated check names, trailing * = prefix), OCI_REPORT\n\
             (JSON report path), OCI_SEED, OCI_CLEANUP=0, OCI_TLS_INSECURE=1.\n\
             --list prints every check name without contacting the registry."
        );
        return ExitCode::SUCCESS;
    }
    let list_only = args.iter().any(|a| a == "--list");
    if let Some(other) = args.iter().find(|a| *a != "--list") {
        eprintln!("oci-conformance: unknown argument {other:?} (try --help)");
        return ExitCode::from(2);
    }
    let cfg = match Config::from_env(list_only) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("oci-conformance: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    let client = match Client::new(
        &cfg.root_url,
        env("OCI_USERNAME"),
        env("OCI_PASSWORD"),
        env_flag("OCI_TLS_INSECURE"),
    ) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("oci-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let fx = Fixtures::new(&env("OCI_SEED").unwrap_or_else(|| "oci-conformance".into()));
    let mut runner = Runner {
        c: client,
        cfg,
        fx,
        extra_blobs: Vec::new(),
        list_only,
        records: Vec::new(),
    };
    if !list_only {
        say(&format!(
            "# OCI distribution-spec v1.1 conformance: {} namespace {} (cross-mount {})",
            runner.cfg.root_url, runner.cfg.namespace, runner.cfg.crossmount_namespace
        ));
    }
    workflows::run_all(&mut runner);
    if list_only {
        return ExitCode::SUCCESS;
    }

    let (passed, failed, skipped, warned) = (
        runner.count(Status::Pass),
        runner.count(Status::Fail),
        runner.count(Status::Skip),
        runner.count(Status::Warn),
    );
    if let Some(path) = runner.cfg.report.clone() {
        match runner.write_report(&path) {
            Ok(()) => say(&format!("# report written to {path}")),
            Err(e) => eprintln!("oci-conformance: {e}"),
        }
    }
    if warned > 0 {
        say(&format!(
            "# {warned} SHOULD-level check(s) did not hold (WARN lines; not counted as failures)"
        ));
    }
    say(&format!(
        "{passed} passed, {failed} failed, {skipped} skipped"
    ));
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
