//! TLS: SNI picks each route's certificate, HTTP/2 by ALPN, minimum version, reload when the files
//! change, client certificates; and the outbound module: per-host CAs (`host..port`) and the proxy.
//! Certificates are generated here with rcgen.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names`; returns (cert PEM, key PEM, cert DER).
    fn leaf(&self, names: &[&str], client: bool) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn write_leaf(dir: &Path, name: &str, leaf: &(String, String, Vec<u8>)) {
    std::fs::write(dir.join(format!("{name}.crt")), &leaf.0).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &leaf.1).unwrap();
}

fn tls_client(ca: &Ca, addr: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .resolve("a.example.test", addr)
        .resolve("b.example.test", addr)
        .resolve("localhost", addr)
        .tls_info(true)
        .pool_max_idle_per_host(0)
}

fn peer_cert(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

fn yaml(dir: &Path, extra_tls: &str) -> String {
    let d = dir.display();
    format!(
        "storage:\n  inmemory: {{}}\nhttp:\n  secret: s\n  tls:\n    certificate: {d}/default.crt\n    key: {d}/default.key\n    reloadinterval: 100ms\n{extra_tls}routes:\n  - name: a\n    hostname: a.example.test\n    certificate: {d}/a.crt\n    key: {d}/a.key\n  - name: b\n    hostname: B.Example.Test\n    certificate: {d}/b.crt\n    key: {d}/b.key\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_each_routes_certificate_over_http2_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let default = ca.leaf(&["localhost", "127.0.0.1"], false);
    let a = ca.leaf(&["a.example.test"], false);
    let b = ca.leaf(&["b.example.test"], false);
    write_leaf(dir.path(), "default", &default);
    write_leaf(dir.path(), "a", &a);
    write_leaf(dir.path(), "b", &b);
    let s = TestServer::from_yaml(&yaml(dir.path(), "")).await;
    let port = s.addr.port();
    let c = tls_client(&ca, s.addr).build().unwrap();

    for (host, want) in [
        ("a.example.test", &a.2),
        ("b.example.test", &b.2),
        ("localhost", &default.2),
    ] {
        let r = c
            .get(format!("https://{host}:{port}/v2/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&peer_cert(&r), want, "{host} gets its own certificate");
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN h2");
    }
    // An HTTP/1.1-only client is served too.
    let h1 = tls_client(&ca, s.addr).http1_only().build().unwrap();
    let r = h1
        .get(format!("https://a.example.test:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // Plain HTTP on the TLS port fails.
    let plain = client();
    assert!(plain
        .get(format!("http://127.0.0.1:{port}/v2/"))
        .send()
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));

    // Renew route a's certificate on disk: new handshakes get it without a restart.
    let a2 = ca.leaf(&["a.example.test"], false);
    assert_ne!(a2.2, a.2);
    // Key first, then certificate: a half-written pair in between is refused and the old one stays.
    std::fs::write(dir.path().join("a.key"), &a2.1).unwrap();
    std::fs::write(dir.path().join("a.crt"), &a2.0).unwrap();
    eventually(10, "the renewed certificate is served", || async {
        // A new client each time: an HTTP/2 connection would be reused across requests.
        let r = tls_client(&ca, s.addr)
            .build()
            .ok()?
            .get(format!("https://a.example.test:{port}/v2/"))
            .send()
            .await
            .ok()?;
        (peer_cert(&r) == a2.2).then_some(())
    })
    .await;
    // The others are unchanged.
    let r = tls_client(&ca, s.addr)
        .build()
        .unwrap()
        .get(format!("https://b.example.test:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(peer_cert(&r), b.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_tls_version_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    for n in ["default", "a", "b"] {
        let host = match n {
            "a" => "a.example.test",
            "b" => "b.example.test",
            _ => "localhost",
        };
        write_leaf(dir.path(), n, &ca.leaf(&[host], false));
    }
    let s13 = TestServer::from_yaml(&yaml(dir.path(), "    minimumtls: tls1.3\n")).await;
    let s12 = TestServer::from_yaml(&yaml(dir.path(), "")).await;
    for (s, tls12_ok) in [(&s13, false), (&s12, true)] {
        let c = tls_client(&ca, s.addr)
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap();
        let r = c
            .get(format!("https://localhost:{}/v2/", s.addr.port()))
            .send()
            .await;
        assert_eq!(r.is_ok(), tls12_ok, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_client_cas_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    write_leaf(dir.path(), "default", &ca.leaf(&["localhost"], false));
    std::fs::write(dir.path().join("clients.pem"), client_ca.pem()).unwrap();
    let d = dir.path().display();
    let s = TestServer::from_yaml(&format!(
        "storage:\n  inmemory: {{}}\nhttp:\n  secret: s\n  tls:\n    certificate: {d}/default.crt\n    key: {d}/default.key\n    clientcas:\n      - {d}/clients.pem\n"
    ))
    .await;
    let url = format!("https://localhost:{}/v2/", s.addr.port());
    let anonymous = tls_client(&ca, s.addr).build().unwrap();
    assert!(anonymous.get(&url).send().await.is_err());
    let (cert, key, _) = client_ca.leaf(&["robot"], true);
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let with_cert = tls_client(&ca, s.addr).identity(identity).build().unwrap();
    let r = with_cert.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A certificate from another CA is refused.
    let (cert, key, _) = Ca::new("rogue").leaf(&["robot"], true);
    let rogue = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let c = tls_client(&ca, s.addr).identity(rogue).build().unwrap();
    assert!(c.get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_clients_trust_per_host_cas_and_folders() {
    use image_registry::config::Config;
    use image_registry::net::outbound::Outbound;

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    write_leaf(dir.path(), "default", &ca.leaf(&["localhost"], false));
    let d = dir.path().display();
    let s = TestServer::from_yaml(&format!(
        "storage:\n  inmemory: {{}}\nhttp:\n  secret: s\n  tls:\n    certificate: {d}/default.crt\n    key: {d}/default.key\n"
    ))
    .await;
    let port = s.addr.port();
    let url = format!("https://localhost:{port}/healthz");
    let get = |b: reqwest::ClientBuilder| {
        let url = url.clone();
        async move {
            b.resolve("localhost", s.addr)
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .map(|r| r.status())
        }
    };

    // Inline map keyed host..port.
    let pem = ca.pem().replace('\n', "\n      ");
    let (cfg, _) = Config::from_yaml(
        &format!("additionalTrustedCA:\n  certificates:\n    localhost..{port}: |\n      {pem}\n"),
        &[],
    )
    .unwrap();
    let o = Outbound::from_config(&cfg, &[]).unwrap();
    assert_eq!(
        get(o.client_builder_for("localhost", Some(port)))
            .await
            .unwrap(),
        StatusCode::OK
    );
    assert!(
        get(o.client_builder()).await.is_err(),
        "not trusted for other hosts"
    );
    assert!(get(o.client_builder_for("localhost", Some(port + 1)))
        .await
        .is_err());

    // A folder: a file named after the host (any port) and a global *.pem.
    let cas = tempfile::tempdir().unwrap();
    std::fs::write(cas.path().join("localhost"), ca.pem()).unwrap();
    let (cfg, _) = Config::from_yaml(
        &format!(
            "additionalTrustedCA:\n  directory: {}\n",
            cas.path().display()
        ),
        &[],
    )
    .unwrap();
    let o = Outbound::from_config(&cfg, &[]).unwrap();
    assert_eq!(
        get(o.client_builder_for("localhost", Some(port)))
            .await
            .unwrap(),
        StatusCode::OK
    );
    assert!(get(o.client_builder()).await.is_err());
    std::fs::remove_file(cas.path().join("localhost")).unwrap();
    std::fs::write(cas.path().join("corp-ca.pem"), ca.pem()).unwrap();
    let o = Outbound::from_config(&cfg, &[]).unwrap();
    assert_eq!(get(o.client_builder()).await.unwrap(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_go_through_the_configured_proxy() {
    use image_registry::config::Config;
    use image_registry::net::outbound::Outbound;

    // A minimal forward proxy that records the request line and answers itself.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let paddr = proxy.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut sock, _) = proxy.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut b).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&b[..n]);
        }
        sock.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nvia-proxy",
        )
        .await
        .unwrap();
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    });
    let (cfg, _) = Config::from_yaml(&format!("proxy:\n  http: {paddr}\n"), &[]).unwrap();
    // The environment says "no proxy for anything": config wins for the proxy, NO_PROXY still applies
    // from the environment, so point it elsewhere.
    let env = vec![("NO_PROXY".to_owned(), "internal.example".to_owned())];
    let o = Outbound::from_config(&cfg, &env).unwrap();
    let body = o
        .client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get("http://upstream.example.test/v2/")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "via-proxy");
    assert_eq!(
        seen.await.unwrap(),
        "GET http://upstream.example.test/v2/ HTTP/1.1"
    );
}
