use super::*;

#[test]
fn scope_strings() {
    let s = scope_string(&[
        Access::push("a/b"),
        Access::pull("a/b"),
        Access::pull("c/d"),
        Access::Catalog,
        Access::Metrics,
    ]);
    assert_eq!(
        s,
        "repository:a/b:pull,push repository:c/d:pull registry:catalog:*"
    );
}

#[test]
fn parses_scope_requests() {
    let r = ScopeRequest::parse_all([
        "repository:a/b:pull,push",
        "repository:host:5000/x:pull registry:catalog:*",
        "junk",
    ]);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].name, "a/b");
    assert_eq!(r[0].actions, vec!["pull", "push"]);
    assert_eq!(r[1].name, "host:5000/x");
    assert_eq!(r[2].kind, "registry");
    assert_eq!(r[2].actions, vec!["*"]);
}

#[test]
fn credentials_parse_and_redact() {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode("u:s3cr3t:with:colons");
    let c = Credentials::parse(Some(&format!("Basic {b}"))).unwrap();
    assert_eq!(c.secret(), Some("s3cr3t:with:colons"));
    assert!(!format!("{c:?}").contains("s3cr3t"));
    let c = Credentials::parse(Some("Bearer tok3n")).unwrap();
    assert!(!format!("{c:?}").contains("tok3n"));
    assert_eq!(Credentials::parse(None).unwrap(), Credentials::None);
    assert!(Credentials::parse(Some("Digest x")).is_err());
    assert!(Credentials::parse(Some("Basic !!!")).is_err());
}
