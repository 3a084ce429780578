//! The deployment artifacts in `config/kubernetes/`: every manifest parses; the objects the
//! operator's layout names exist; the Deployment's config file plus its environment load with
//! `Config::from_yaml` without a warning; the secret-wired storage variables name storage keys;
//! every metric the Grafana dashboard queries is exported.

use std::collections::BTreeSet;
use std::path::PathBuf;

use image_registry::config::Config;
use serde_yaml::Value;

use crate::harness::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/kubernetes")
}

fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if v.is_null() {
                continue;
            }
            for k in ["apiVersion", "kind", "metadata"] {
                assert!(v.get(k).is_some(), "{}: no {k}", f.display());
            }
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out
}

use serde::Deserialize as _;

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_operators_objects_exist_with_their_names() {
    let docs = documents();
    find(&docs, "Namespace", "openshift-image-registry");
    for (_, v) in &docs {
        let kind = v["kind"].as_str().unwrap();
        if !["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&kind) {
            assert_eq!(
                v["metadata"]["namespace"], "openshift-image-registry",
                "{kind} {:?}",
                v["metadata"]["name"]
            );
        }
    }
    let svc = find(&docs, "Service", "image-registry");
    assert_eq!(svc["spec"]["ports"][0]["port"], 5000);
    let pvc = find(&docs, "PersistentVolumeClaim", "image-registry-storage");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "100Gi");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");
    find(&docs, "Secret", "image-registry-private-configuration-user");
    let role = find(&docs, "ClusterRole", "prometheus-scraper");
    assert_eq!(role["rules"][0]["resources"][0], "registry/metrics");
    assert_eq!(role["rules"][0]["apiGroups"][0], "image.openshift.io");
    let sm = find(&docs, "ServiceMonitor", "image-registry");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/extensions/v2/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["scheme"], "https");
    let d = find(&docs, "Deployment", "image-registry");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 5000);
    for probe in ["livenessProbe", "readinessProbe"] {
        let p = &c[probe]["httpGet"];
        assert_eq!(p["scheme"], "HTTPS", "{probe}");
        assert!(
            p["path"].as_str().unwrap().starts_with("/healthz"),
            "{probe}"
        );
    }
    assert!(d["spec"]["replicas"].as_u64().is_some());
    // Graceful shutdown fits in the pod's grace period.
    assert!(
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            > 29
    );
}

/// The Deployment's environment: literal values as given, secret references as placeholders.
/// Returns (always-set variables, optional secret-sourced variables).
fn deployment_env(docs: &[(String, Value)]) -> (Vec<(String, String)>, Vec<String>) {
    let d = find(docs, "Deployment", "image-registry");
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    let mut set = Vec::new();
    let mut optional = Vec::new();
    for e in env {
        let name = e["name"].as_str().unwrap().to_owned();
        if name == "REGISTRY_CONFIGURATION_PATH" {
            continue;
        }
        if let Some(v) = e.get("value") {
            set.push((name, v.as_str().unwrap().to_owned()));
        } else if e["valueFrom"]["secretKeyRef"]["optional"] == true {
            optional.push(name);
        } else {
            set.push((name, "placeholder-from-secret".to_owned()));
        }
    }
    (set, optional)
}

fn config_file(docs: &[(String, Value)]) -> String {
    find(docs, "ConfigMap", "image-registry-config")["data"]["config.yml"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_deployments_config_and_environment_are_accepted() {
    let docs = documents();
    let (env, _) = deployment_env(&docs);
    let (cfg, warnings) = Config::from_yaml(&config_file(&docs), &env)
        .unwrap_or_else(|e| panic!("the deployed config is refused: {e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(cfg.tls_enabled());
    assert!(cfg.metrics().enabled && cfg.metrics().secret.is_some());
    assert_eq!(cfg.listen_addr().unwrap().port(), 5000);
    assert_eq!(cfg.http.draintimeout.as_secs(), 29);
    // The mounted paths agree with the config.
    let d = find(&docs, "Deployment", "image-registry");
    let mounts: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for path in ["/registry", "/etc/secrets", "/etc/image-registry"] {
        assert!(mounts.contains(&path), "{path} not mounted");
    }
}

/// Storage drivers other than the filesystem ones arrive with the object-storage issue; until it is
/// merged their variables are reported as unknown keys (and ignored). This test accepts exactly
/// that, and nothing else.
#[test]
fn the_secret_wired_storage_variables_name_storage_keys() {
    let docs = documents();
    let (_, optional) = deployment_env(&docs);
    let wanted = [
        "REGISTRY_STORAGE_S3_ACCESSKEY",
        "REGISTRY_STORAGE_S3_SECRETKEY",
        "REGISTRY_STORAGE_GCS_KEYFILE",
        "REGISTRY_STORAGE_AZURE_ACCOUNTKEY",
    ];
    assert_eq!(optional, wanted);
    let driver_of = |var: &str| var.split('_').nth(2).unwrap().to_ascii_lowercase();
    for var in wanted {
        let driver = driver_of(var);
        // A config that uses that driver, as the operator writes it for that backend.
        let yaml = format!("storage:\n  {driver}: {{}}\n");
        match Config::from_yaml(&yaml, &[(var.to_owned(), "x".to_owned())]) {
            Ok((_, warnings)) => assert!(warnings.is_empty(), "{var}: {warnings:?}"),
            Err(e) => {
                // Pending the object-storage drivers: the section itself is unknown here.
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("unknown field `{driver}`")),
                    "{var}: {msg}"
                );
            }
        }
    }
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if token.starts_with("imageregistry_") || token.starts_with("process_") {
            out.insert(token.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let text = std::fs::read_to_string(dir().join("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut wanted = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            wanted.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    assert!(wanted.len() > 10, "{wanted:?}");

    let s = TestServer::builder()
        .in_memory()
        .metrics(None)
        .config("requests:\n  read:\n    maxRunning: 5\n")
        .start()
        .await;
    let _ = s.get("/v2/").await;
    let _ = s.get("/v2/a/manifests/missing").await;
    let _ = s
        .request(reqwest::Method::POST, "/v2/a/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let scrape = s.scrape().await;
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = wanted.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries unexported metrics: {missing:?}"
    );
}
