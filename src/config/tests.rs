use std::time::Duration;

use super::*;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The config `yaml` and `env` give, or the error's text (for the section modules' tests).
pub(super) fn load(yaml: &str, env_pairs: &[(&str, &str)]) -> Result<Config, String> {
    Config::from_yaml(yaml, &env(env_pairs))
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

#[test]
fn defaults_without_any_config() {
    let (c, w) = Config::from_yaml("", &[]).unwrap();
    assert!(w.is_empty());
    assert_eq!(c.listen_addr().unwrap().to_string(), "0.0.0.0:5000");
    assert_eq!(
        c.storage_kind().unwrap(),
        StorageKind::Filesystem {
            root: DEFAULT_ROOT.into()
        }
    );
    assert!(c.storage.delete.enabled);
    assert!(!c.read_only());
}

#[test]
fn file_keys_are_case_insensitive() {
    let y = "version: 0.1\nreadOnly: true\nstorage:\n  emptyDir: {}\n  delete:\n    enabled: false\nhttp:\n  addr: ':5001'\n  secret: s3cr3t\nrequests:\n  read:\n    maxRunning: 10\n    maxInQueue: 5\n    maxWaitInQueue: 1m30s\n";
    let (c, _) = Config::from_yaml(y, &[]).unwrap();
    assert!(c.read_only());
    assert!(!c.storage.delete.enabled);
    assert_eq!(c.listen_addr().unwrap().port(), 5001);
    assert_eq!(c.http.secret.as_deref(), Some("s3cr3t"));
    assert_eq!(c.requests.read.maxrunning, 10);
    assert_eq!(c.requests.read.maxwaitinqueue, Duration::from_secs(90));
    assert_eq!(
        c.storage_kind().unwrap(),
        StorageKind::Filesystem {
            root: DEFAULT_ROOT.into()
        }
    );
}

#[test]
fn env_overrides_every_level() {
    let e = env(&[
        ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
        ("REGISTRY_HTTP_SECRET", "12345"),
        ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/tmp/x"),
        ("REGISTRY_READONLY", "true"),
        ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
        ("REGISTRY_OPENSHIFT_REQUESTS_READ_MAXRUNNING", "3"),
        ("REGISTRY_LOG_LEVEL", "debug"),
        ("PATH", "/usr/bin"),
    ]);
    // emptyDir from the file plus filesystem from the environment is two drivers: refused.
    let err = Config::from_yaml("storage:\n  emptydir: {}\n", &e).unwrap_err();
    assert!(err.to_string().contains("storage"), "{err}");
    let (c, _) = Config::from_yaml("", &e).unwrap();
    assert_eq!(c.listen_addr().unwrap().to_string(), "127.0.0.1:6000");
    assert_eq!(c.http.secret.as_deref(), Some("12345"));
    assert_eq!(
        c.storage_kind().unwrap(),
        StorageKind::Filesystem {
            root: "/tmp/x".into()
        }
    );
    assert!(c.read_only());
    assert!(!c.storage.delete.enabled);
    assert_eq!(c.request_limits().read.maxrunning, 3);
    assert_eq!(c.log.level, "debug");
}

#[test]
fn registry_storage_selects_driver() {
    let e = env(&[("REGISTRY_STORAGE", "inmemory")]);
    let (c, _) = Config::from_yaml("storage:\n  filesystem:\n    rootdirectory: /x\n", &e).unwrap();
    assert_eq!(c.storage_kind().unwrap(), StorageKind::InMemory);
}

#[test]
fn unknown_file_keys_fail_naming_the_key() {
    let err = Config::from_yaml("http:\n  adress: ':5000'\n", &[]).unwrap_err();
    assert!(err.to_string().contains("http.adress"), "{err}");
    let err = Config::from_yaml("bogus: 1\n", &[]).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = Config::from_yaml("storage:\n  filesystem:\n    rootdir: /x\n", &[]).unwrap_err();
    assert!(
        err.to_string().contains("storage.filesystem.rootdir"),
        "{err}"
    );
}

#[test]
fn bad_values_fail_naming_the_key() {
    let err = Config::from_yaml("readonly: maybe\n", &[]).unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    let err = Config::from_yaml("http:\n  addr: nowhere\n", &[]).unwrap_err();
    assert!(err.to_string().contains("http.addr"), "{err}");
    let e = env(&[("REGISTRY_REQUESTS_WRITE_MAXINQUEUE", "lots")]);
    let err = Config::from_yaml("", &e).unwrap_err();
    let s = err.to_string();
    assert!(
        s.contains("requests.write.maxinqueue") && s.contains("REGISTRY_REQUESTS_WRITE_MAXINQUEUE"),
        "{s}"
    );
    let err = Config::from_yaml("log:\n  level: loud\n", &[]).unwrap_err();
    assert!(err.to_string().contains("log.level"), "{err}");
    let err = Config::from_yaml("storage:\n  filesystem: {}\n  inmemory: {}\n", &[]).unwrap_err();
    assert!(err.to_string().contains("storage"), "{err}");
}

#[test]
fn unknown_env_keys_are_ignored_with_a_warning() {
    // Kubernetes injects REGISTRY_PORT etc. for a Service named "registry".
    let e = env(&[
        ("REGISTRY_PORT", "tcp://10.0.0.1:5000"),
        ("REGISTRY_SERVICE_HOST", "10.0.0.1"),
        ("REGISTRY_HTTP_ADDR", "127.0.0.1:5002"),
    ]);
    let (c, w) = Config::from_yaml("", &e).unwrap();
    assert_eq!(c.listen_addr().unwrap().port(), 5002);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w.iter().any(|m| m.contains("REGISTRY_PORT")));
}

#[test]
fn storage_cache_takes_distribution_keys_and_link_ttl() {
    let (c, _) = Config::from_yaml("storage:\n  inmemory: {}\n", &[]).unwrap();
    assert_eq!(c.storage.cache.linkttl, super::DEFAULT_LINK_TTL);
    let y = "storage:\n  inmemory: {}\n  cache:\n    blobdescriptor: inmemory\n    blobdescriptorsize: 10000\n    linkTTL: 250ms\n";
    let (c, _) = Config::from_yaml(y, &[]).unwrap();
    assert_eq!(
        c.storage.cache.linkttl,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(c.storage.cache.blobdescriptor.as_deref(), Some("inmemory"));
    let e = env(&[("REGISTRY_STORAGE_CACHE_LINKTTL", "0")]);
    let (c, _) = Config::from_yaml("storage:\n  inmemory: {}\n", &e).unwrap();
    assert!(c.storage.cache.linkttl.is_zero());
    let err = Config::from_yaml(
        "storage:\n  inmemory: {}\n  cache:\n    linkTTL: soon\n",
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("linkttl"), "{err}");
}

#[test]
fn pull_through_keys_sit_beside_the_outbound_proxy() {
    // distribution's form, from the environment, next to the outbound proxy keys.
    let e = env(&[
        ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io"),
        ("REGISTRY_PROXY_USERNAME", "u"),
        ("REGISTRY_PROXY_PASSWORD", "p"),
        ("REGISTRY_PROXY_TTL", "1h"),
    ]);
    let (c, w) = Config::from_yaml("proxy:\n  http: http://squid:3128\n", &e).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.proxy.http.as_deref(), Some("http://squid:3128"));
    let all = c.proxy.all_upstreams();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, "proxy.remoteurl");
    assert_eq!(all[0].1.prefix, "");
    assert_eq!(all[0].1.ttl, std::time::Duration::from_secs(3600));
    assert_eq!(all[0].1.password.as_ref().map(|p| p.0.as_str()), Some("p"));
    // Ours: defaults.
    let (c, _) = Config::from_yaml(
        "proxy:\n  upstreams:\n    - prefix: quay.io\n      url: https://quay.io\n      tlsVerify: false\n",
        &[],
    )
    .unwrap();
    let u = &c.proxy.upstreams[0];
    assert_eq!(u.ttl, super::upstream::DEFAULT_UPSTREAM_TTL);
    assert!(!u.tlsverify);
    assert!(Config::default().proxy.all_upstreams().is_empty());
}

#[test]
fn bad_pull_through_config_names_the_key() {
    let bad = |y: &str, key: &str| {
        let e = Config::from_yaml(y, &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{key} not in {e}");
    };
    bad(
        "proxy:\n  upstreams:\n    - {prefix: docker.io, url: 'https://a'}\n    - {prefix: docker.io/library, url: 'https://b'}\n",
        "proxy.upstreams[1].prefix",
    );
    bad(
        "proxy:\n  remoteurl: https://a\n  upstreams:\n    - {prefix: quay.io, url: 'https://b'}\n",
        "proxy.upstreams[0].prefix",
    );
    bad(
        "proxy:\n  upstreams:\n    - {prefix: q, url: 'not a url'}\n",
        "proxy.upstreams[0].url",
    );
    bad("proxy:\n  remoteurl: ftp://x\n", "proxy.remoteurl");
    bad(
        "proxy:\n  upstreams:\n    - {prefix: q, url: 'https://q', authFile: /nonexistent/auth.json}\n",
        "proxy.upstreams[0].authfile",
    );
    bad(
        "proxy:\n  upstreams:\n    - {prefix: '', url: 'https://q'}\n",
        "proxy.upstreams[0].prefix",
    );
    bad(
        "proxy:\n  upstreams:\n    - {prefix: q, url: 'https://q', username: u}\n",
        "proxy.upstreams[0]",
    );
    bad(
        "proxy:\n  upstreams:\n    - {prefix: q, url: 'https://q', sync: {repositories: [a], tags: '('}}\n",
        "proxy.upstreams[0].sync.tags",
    );
    bad(
        "proxy:\n  upstreams:\n    - {prefix: q, url: 'https://q', sync: {interval: 1h}}\n",
        "proxy.upstreams[0].sync.repositories",
    );
    // `docker.io` and `docker.iox` do not overlap.
    Config::from_yaml(
        "proxy:\n  upstreams:\n    - {prefix: docker.io, url: 'https://a'}\n    - {prefix: docker.iox, url: 'https://b'}\n",
        &[],
    )
    .unwrap();
}

#[test]
fn storage_maintenance_gc_delay_defaults_to_an_hour_and_takes_the_env() {
    let (c, _) = Config::from_yaml("storage:\n  inmemory: {}\n", &[]).unwrap();
    assert_eq!(c.storage.maintenance.gc.delay, super::DEFAULT_GC_DELAY);
    let e = env(&[("REGISTRY_STORAGE_MAINTENANCE_GC_DELAY", "90s")]);
    let (c, w) = Config::from_yaml("storage:\n  inmemory: {}\n", &e).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        c.storage.maintenance.gc.delay,
        std::time::Duration::from_secs(90)
    );
    let err = Config::from_yaml(
        "storage:\n  inmemory: {}\n  maintenance:\n    gc:\n      delay: later\n",
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("gc.delay"), "{err}");
}

#[test]
fn connection_limits_from_file_and_env() {
    let (c, _) = Config::from_yaml("", &[]).unwrap();
    let l = c.connection_limits();
    assert_eq!(l.header_read_timeout, Some(Duration::from_secs(30)));
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(l.body_timeout, Some(Duration::from_secs(60)));
    assert_eq!(l.max_connections, None);
    assert_eq!(l.max_header_bytes, 64 << 10);
    assert_eq!(l.h2_max_concurrent_streams, 100);
    let y = "http:\n  headerReadTimeout: 5s\n  idletimeout: 0\n  maxconnections: 100\n  http2:\n    maxConcurrentStreams: 10\n";
    let e = env(&[
        ("REGISTRY_HTTP_BODYTIMEOUT", "2m"),
        ("REGISTRY_HTTP_MAXHEADERBYTES", "8192"),
        ("REGISTRY_HTTP_HTTP2_MAXHEADERLISTSIZE", "16384"),
    ]);
    let (c, w) = Config::from_yaml(y, &e).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let l = c.connection_limits();
    assert_eq!(l.header_read_timeout, Some(Duration::from_secs(5)));
    assert_eq!(l.idle_timeout, None);
    assert_eq!(l.body_timeout, Some(Duration::from_secs(120)));
    assert_eq!(l.max_connections, Some(100));
    assert_eq!(l.max_header_bytes, 8192);
    assert_eq!(l.h2_max_concurrent_streams, 10);
    assert_eq!(l.h2_max_header_list_size, 16384);
    for (yaml, key) in [
        ("http:\n  maxconnections: -1\n", "http.maxconnections"),
        ("http:\n  maxheaderbytes: 10\n", "http.maxheaderbytes"),
        (
            "http:\n  http2:\n    maxconcurrentstreams: 0\n",
            "http.http2.maxconcurrentstreams",
        ),
        (
            "http:\n  http2:\n    maxheaderlistsize: 1\n",
            "http.http2.maxheaderlistsize",
        ),
        ("http:\n  bodytimeout: soon\n", "http.bodytimeout"),
    ] {
        let err = Config::from_yaml(yaml, &[]).unwrap_err();
        assert!(err.to_string().contains(key), "{yaml}: {err}");
    }
}

#[test]
fn upstreams_and_their_sync_lists_take_the_environment() {
    // Indexed fields on a file without upstreams, the list form of sync.repositories.
    let c = load(
        "",
        &[
            ("REGISTRY_PROXY_UPSTREAMS_0_PREFIX", "docker.io"),
            (
                "REGISTRY_PROXY_UPSTREAMS_0_URL",
                "https://registry-1.docker.io",
            ),
            ("REGISTRY_PROXY_UPSTREAMS_0_TTL", "30m"),
            ("REGISTRY_PROXY_UPSTREAMS_0_TLSVERIFY", "false"),
            ("REGISTRY_PROXY_UPSTREAMS_0_SYNC_INTERVAL", "6h"),
            (
                "REGISTRY_PROXY_UPSTREAMS_0_SYNC_REPOSITORIES",
                "library/alpine, library/nginx",
            ),
            ("REGISTRY_PROXY_UPSTREAMS_1_PREFIX", "quay.io"),
            ("REGISTRY_PROXY_UPSTREAMS_1_URL", "https://quay.io"),
        ],
    )
    .unwrap();
    let u = &c.proxy.upstreams;
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].prefix, "docker.io");
    assert_eq!(u[0].ttl, std::time::Duration::from_secs(1800));
    assert!(!u[0].tlsverify);
    let s = u[0].sync.as_ref().unwrap();
    assert_eq!(s.interval, std::time::Duration::from_secs(6 * 3600));
    assert_eq!(s.repositories, ["library/alpine", "library/nginx"]);
    assert_eq!(u[1].url, "https://quay.io");
    assert!(u[1].tlsverify);
    // On a file's list: a field of element 0 overridden, element 1 added.
    let c = load(
        "proxy:\n  upstreams:\n    - prefix: docker.io\n      url: https://a\n      sync:\n        repositories: [x/y]\n",
        &[
            ("REGISTRY_PROXY_UPSTREAMS_0_URL", "https://b"),
            ("REGISTRY_PROXY_UPSTREAMS_0_SYNC_REPOSITORIES", "p/q,r/s"),
            ("REGISTRY_PROXY_UPSTREAMS_1_PREFIX", "ghcr.io"),
            ("REGISTRY_PROXY_UPSTREAMS_1_URL", "https://ghcr.io"),
        ],
    )
    .unwrap();
    let u = &c.proxy.upstreams;
    assert_eq!(
        (u[0].prefix.as_str(), u[0].url.as_str()),
        ("docker.io", "https://b")
    );
    assert_eq!(u[0].sync.as_ref().unwrap().repositories, ["p/q", "r/s"]);
    assert_eq!(u[1].prefix, "ghcr.io");
    // The whole list in one variable, YAML or JSON, with the file's key spelling.
    let c = load(
        "",
        &[(
            "REGISTRY_PROXY_UPSTREAMS",
            r#"[{"prefix": "docker.io", "url": "https://registry-1.docker.io", "tlsVerify": false, "sync": {"repositories": ["library/alpine"]}}]"#,
        )],
    )
    .unwrap();
    assert_eq!(c.proxy.upstreams[0].prefix, "docker.io");
    assert!(!c.proxy.upstreams[0].tlsverify);
    // Validation names the key for env-made upstreams too; a gap in the indexes is refused.
    let e = load(
        "",
        &[
            ("REGISTRY_PROXY_UPSTREAMS_0_PREFIX", "a"),
            ("REGISTRY_PROXY_UPSTREAMS_0_URL", "ftp://x"),
        ],
    )
    .unwrap_err();
    assert!(e.contains("`proxy.upstreams[0].url`"), "{e}");
    let e = load(
        "",
        &[
            ("REGISTRY_PROXY_UPSTREAMS_0_PREFIX", "a"),
            ("REGISTRY_PROXY_UPSTREAMS_0_URL", "https://a"),
            ("REGISTRY_PROXY_UPSTREAMS_2_PREFIX", "b"),
            ("REGISTRY_PROXY_UPSTREAMS_2_URL", "https://b"),
        ],
    )
    .unwrap_err();
    assert!(e.contains("proxy.upstreams"), "{e}");
}

#[test]
fn retention_policies_take_the_environment() {
    const P: &str = "REGISTRY_STORAGE_MAINTENANCE_RETENTION_POLICIES";
    let v = |s: &str| format!("{P}_{s}");
    let file = "storage:\n  maintenance:\n    retention:\n      policies:\n        - repositories: [team/*]\n          keepTags: [latest]\n          keepTagRevisions: 1\n";
    // On a file's list: a field of policy 0 overridden (the others kept), policy 1 added.
    let (k0, k1, k2, k3, k4, k5) = (
        v("0_KEEPTAGS"),
        v("0_KEEPYOUNGERTHAN"),
        v("1_REPOSITORIES"),
        v("1_MOSTRECENTLYPUSHEDCOUNT"),
        v("1_DELETEUNTAGGED"),
        v("1_KEEPTAGREVISIONS"),
    );
    let c = load(
        file,
        &[
            (&k0, "latest, regex:v[0-9]+"),
            (&k1, "72h"),
            (&k2, "a/*,b/**"),
            (&k3, "5"),
            (&k4, "true"),
            (&k5, "3"),
        ],
    )
    .unwrap();
    let p = &c.storage.maintenance.retention.policies;
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].repositories, ["team/*"]);
    assert_eq!(p[0].keeptags, ["latest", "regex:v[0-9]+"]);
    assert_eq!(p[0].keeptagrevisions, 1);
    assert_eq!(p[0].keepyoungerthan, Duration::from_secs(72 * 3600));
    assert_eq!(p[1].repositories, ["a/*", "b/**"]);
    assert_eq!(
        (p[1].mostrecentlypushedcount, p[1].keeptagrevisions),
        (5, 3)
    );
    assert!(p[1].deleteuntagged && !p[0].deleteuntagged);
    let compiled = c.storage.maintenance.retention.compile().unwrap();
    assert!(compiled[0].keep_tags[1].matches("v12"));
    // No file: indexed variables alone make the list.
    let c = load(
        "",
        &[(&v("0_REPOSITORIES"), "x/*"), (&v("0_KEEPTAGS"), "v*")],
    )
    .unwrap();
    let p = &c.storage.maintenance.retention.policies;
    assert_eq!(
        (p.len(), p[0].keeptags.as_slice()),
        (1, &["v*".to_owned()][..])
    );
    // The whole list in one variable (the way to write a pattern with a comma).
    let c = load(
        "",
        &[(
            P,
            r#"[{"repositories": ["a/*"], "keepTags": ["regex:v{1,3}"], "keepYoungerThan": "1h"}]"#,
        )],
    )
    .unwrap();
    let p = &c.storage.maintenance.retention.policies;
    assert_eq!(p[0].keeptags, ["regex:v{1,3}"]);
    assert_eq!(p[0].keepyoungerthan, Duration::from_secs(3600));
    // Bad duration and bad number name the key and the variable, on a file's list or without.
    for (yaml, var, val, key) in [
        (
            file,
            v("0_KEEPYOUNGERTHAN"),
            "soon",
            "policies[0].keepyoungerthan",
        ),
        (
            file,
            v("0_KEEPTAGREVISIONS"),
            "three",
            "policies[0].keeptagrevisions",
        ),
        (
            "",
            v("0_KEEPYOUNGERTHAN"),
            "soon",
            "policies.0.keepyoungerthan",
        ),
        (
            "",
            v("0_MOSTRECENTLYPUSHEDCOUNT"),
            "ten",
            "policies.0.mostrecentlypushedcount",
        ),
    ] {
        let e = load(yaml, &[(&v("0_REPOSITORIES"), "a/*"), (&var, val)]).unwrap_err();
        assert!(e.contains(key) && e.contains(&var), "{var}={val}: {e}");
    }
    // Checked as the file's are: a negative count, a bad pattern, a policy without repositories.
    let e = load(file, &[(&v("0_KEEPTAGREVISIONS"), "-1")]).unwrap_err();
    assert!(e.contains("policies[0].keepTagRevisions"), "{e}");
    let e = load(file, &[(&v("1_KEEPTAGS"), "latest")]).unwrap_err();
    assert!(e.contains("policies[1].repositories"), "{e}");
    // A gap in the indexes is refused; an unknown field is ignored with a warning.
    let e = load(
        "",
        &[(&v("0_REPOSITORIES"), "a"), (&v("2_REPOSITORIES"), "b")],
    )
    .unwrap_err();
    assert!(e.contains("without gaps"), "{e}");
    for yaml in [file, ""] {
        let (c, w) = Config::from_yaml(
            yaml,
            &env(&[(&v("0_REPOSITORIES"), "a/*"), (&v("0_KEEPTAG"), "latest")]),
        )
        .unwrap();
        assert_eq!(
            c.storage.maintenance.retention.policies[0].repositories,
            ["a/*"]
        );
        assert!(w.iter().any(|m| m.contains(&v("0_KEEPTAG"))), "{w:?}");
    }
}

/// Debian's `docker-registry` package ships this `/etc/docker/registry/config.yml`: a server
/// replacing distribution must take it as it is.
const DEBIAN_STOCK_CONFIG: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

#[test]
fn debian_stock_distribution_config_loads() {
    let c = load(DEBIAN_STOCK_CONFIG, &[]).unwrap();
    assert_eq!(c.log.fields["service"], "registry");
    assert_eq!(c.http.headers["x-content-type-options"], ["nosniff"]);
    assert_eq!(c.listen_addr().unwrap().port(), 5000);
    assert!(!c.log.accesslog.disabled);
    assert!(!c.log_filter().contains("access"));
}

#[test]
fn log_and_header_keys_of_distribution() {
    let y = "log:\n  accesslog:\n    disabled: true\n  fields:\n    service: registry\n    port: 5000\n  hooks: []\nhttp:\n  headers:\n    X-Frame-Options: DENY\n    Cache-Control: [no-store, private]\n";
    let c = load(y, &[]).unwrap();
    assert!(c.log.accesslog.disabled);
    assert!(c.log_filter().ends_with(",image_registry::access=off"));
    assert_eq!(c.log.fields["port"], "5000");
    assert_eq!(c.http.headers["x-frame-options"], ["DENY"]);
    assert_eq!(c.http.headers["cache-control"], ["no-store", "private"]);
    // The environment reaches the same keys.
    let c = load(
        "",
        &[
            ("REGISTRY_LOG_ACCESSLOG_DISABLED", "true"),
            ("REGISTRY_LOG_FIELDS_SERVICE", "registry"),
            ("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS", "DENY"),
        ],
    )
    .unwrap();
    assert!(c.log.accesslog.disabled);
    assert_eq!(c.log.fields["service"], "registry");
    assert_eq!(c.http.headers["x-frame-options"], ["DENY"]);
    // Mail hooks are refused, not ignored; so are headers no HTTP stack could send.
    let e = load(
        "log:\n  hooks:\n    - type: mail\n      levels: [panic]\n",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("log.hooks"), "{e}");
    let e = load("http:\n  headers:\n    \"Bad Name\": [x]\n", &[]).unwrap_err();
    assert!(e.contains("http.headers.bad name"), "{e}");
    let e = load("http:\n  headers:\n    X-Ok: [\"a\\nb\"]\n", &[]).unwrap_err();
    assert!(e.contains("not a valid header value"), "{e}");
}
