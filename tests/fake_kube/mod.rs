//! A fake Kubernetes/OpenShift API server for the auth tests.
//!
//! It is a fake because the real authentication and authorization APIs (a kube-apiserver with
//! OpenShift's RBAC roles) cannot run on the test machines. It is faithful to the API's JSON and
//! status codes for the four calls the registry makes, as the Kubernetes API reference documents
//! them:
//!
//! - `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (Bearer = the user's token) ->
//!   201 `{"apiVersion","kind":"SelfSubjectReview","status":{"userInfo":{username,uid,groups}}}`;
//!   401 `Status` for an unknown token. Can be switched off (404) to test the TokenReview fallback.
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews` (Bearer = a service-account token) ->
//!   201 with `status.authenticated` and `status.user`.
//! - `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` (Bearer = the user's token) ->
//!   201 with the request echoed and `status: {allowed, reason}`; 401 for an unknown token; 403
//!   without a token (anonymous may not create it).
//! - `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` (Bearer = the registry's
//!   service-account token) -> 201 with `status.allowed` for `spec.user`/`spec.groups`.
//!
//! - `POST /apis/image.openshift.io/v1/namespaces/<ns>/imagestreammappings` (Bearer = the
//!   registry's service account, which needs `create imagestreammappings`) -> 201 `Status`
//!   Success, the body recorded; 404 `Status` NotFound with `details {name, group, kind:
//!   "imagestreams"}` while the stream does not exist (streams exist only once created or added);
//!   403 Forbidden "... exceeded quota: ..." while [`FakeKube::set_quota_exceeded`] is on; any
//!   status set by [`FakeKube::fail_mappings`]; 400/422 for a wrong kind or a missing field,
//!   422 for an `image.dockerImageManifests` entry (a manifest list's child) without `digest`,
//!   `mediaType`, `manifestSize`, `architecture` or `os`, or a list sent with layers.
//! - `POST /apis/image.openshift.io/v1/namespaces/<ns>/imagestreams` -> 201 with the stream
//!   (uid, creationTimestamp added); 409 AlreadyExists.
//!
//! Decisions come from a table of users (token, name, groups) and role bindings (user or group,
//! role, namespace or cluster), with the rules of OpenShift's roles (`registry-viewer`,
//! `system:image-puller`, `registry-editor`, `system:image-pusher`, `system:image-builder`,
//! `system:image-pruner`, `prometheus-scraper`). Every call is counted per endpoint; the server
//! can be told to hang (never answer) to test the registry's deadline.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

pub const SSR: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
pub const TR: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
pub const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// Counted under these names (the real paths carry the namespace).
pub const ISM: &str = "imagestreammappings";
pub const IS: &str = "imagestreams";

#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Who {
    User(String),
    Group(String),
}

#[derive(Debug, Clone)]
pub struct RoleBinding {
    pub who: Who,
    pub role: &'static str,
    /// `None` = a ClusterRoleBinding.
    pub namespace: Option<String>,
}

impl RoleBinding {
    pub fn user(name: &str, role: &'static str, ns: Option<&str>) -> RoleBinding {
        RoleBinding {
            who: Who::User(name.into()),
            role,
            namespace: ns.map(str::to_owned),
        }
    }

    pub fn group(name: &str, role: &'static str, ns: Option<&str>) -> RoleBinding {
        RoleBinding {
            who: Who::Group(name.into()),
            role,
            namespace: ns.map(str::to_owned),
        }
    }
}

/// One rule of a role: verbs on `group` / `resource[/subresource]`.
struct Rule {
    verbs: &'static [&'static str],
    group: &'static str,
    resources: &'static [&'static str],
}

const IMG: &str = "image.openshift.io";

/// The rules of the roles the registry cares about (as OpenShift's bootstrap policy has them).
fn rules(role: &str) -> Vec<Rule> {
    match role {
        "registry-viewer" | "system:image-puller" => vec![Rule {
            verbs: &["get"],
            group: IMG,
            resources: &["imagestreams/layers"],
        }],
        "registry-editor" | "system:image-pusher" => vec![Rule {
            verbs: &["get", "update"],
            group: IMG,
            resources: &["imagestreams/layers"],
        }],
        "system:image-builder" => vec![
            Rule {
                verbs: &["get", "update"],
                group: IMG,
                resources: &["imagestreams/layers"],
            },
            Rule {
                verbs: &["create"],
                group: IMG,
                resources: &["imagestreams"],
            },
        ],
        "system:image-pruner" => vec![
            Rule {
                verbs: &["delete", "get", "list", "watch"],
                group: IMG,
                resources: &["images"],
            },
            Rule {
                verbs: &["get", "list", "watch"],
                group: IMG,
                resources: &["imagestreams"],
            },
        ],
        "system:registry" => vec![Rule {
            verbs: &["create"],
            group: IMG,
            resources: &["imagestreammappings", "imagestreams"],
        }],
        "prometheus-scraper" => vec![Rule {
            verbs: &["get"],
            group: IMG,
            resources: &["registry/metrics"],
        }],
        "system:auth-delegator" => vec![
            Rule {
                verbs: &["create"],
                group: "authorization.k8s.io",
                resources: &["subjectaccessreviews"],
            },
            Rule {
                verbs: &["create"],
                group: "authentication.k8s.io",
                resources: &["tokenreviews"],
            },
        ],
        _ => Vec::new(),
    }
}

#[derive(Default)]
pub struct Table {
    pub users: Vec<User>,
    pub bindings: Vec<RoleBinding>,
}

struct Shared {
    table: Table,
    calls: Mutex<HashMap<String, usize>>,
    hang: AtomicBool,
    no_ssr: AtomicBool,
    /// Every Authorization value seen (so tests can check what the registry sent).
    bearers: Mutex<Vec<String>>,
    /// Every access review received (SSAR and SAR), as (path, body sent).
    reviews: Mutex<Vec<(&'static str, Value)>>,
    /// Image streams that exist, as (namespace, name).
    streams: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Every ImageStreamMapping accepted, as sent.
    mappings: Mutex<Vec<Value>>,
    quota_exceeded: AtomicBool,
    /// A status every ImageStreamMapping is answered with (0: none).
    fail_mappings: std::sync::atomic::AtomicU16,
}

pub struct FakeKube {
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    pub async fn start(table: Table) -> FakeKube {
        let shared = Arc::new(Shared {
            table,
            calls: Mutex::new(HashMap::new()),
            hang: AtomicBool::new(false),
            no_ssr: AtomicBool::new(false),
            bearers: Mutex::new(Vec::new()),
            reviews: Mutex::new(Vec::new()),
            streams: Mutex::new(Default::default()),
            mappings: Mutex::new(Vec::new()),
            quota_exceeded: AtomicBool::new(false),
            fail_mappings: Default::default(),
        });
        let app = Router::new()
            .route(SSR, post(ssr))
            .route(TR, post(token_review))
            .route(SSAR, post(ssar))
            .route(SAR, post(sar))
            .route(
                "/apis/image.openshift.io/v1/namespaces/{ns}/imagestreammappings",
                post(image_stream_mapping),
            )
            .route(
                "/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams",
                post(image_stream),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeKube { base, shared, task }
    }

    /// Calls made to one endpoint path so far.
    pub fn calls(&self, path: &str) -> usize {
        *self.shared.calls.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn total_calls(&self) -> usize {
        self.shared.calls.lock().unwrap().values().sum()
    }

    pub fn reset_calls(&self) {
        self.shared.calls.lock().unwrap().clear();
        self.shared.reviews.lock().unwrap().clear();
    }

    /// The access reviews (SelfSubjectAccessReview, SubjectAccessReview) received since the start
    /// or the last `reset_calls`, as (path, JSON body as sent).
    pub fn reviews(&self) -> Vec<(&'static str, Value)> {
        self.shared.reviews.lock().unwrap().clone()
    }

    /// From now on, accept requests but never answer them.
    pub fn set_hang(&self, on: bool) {
        self.shared.hang.store(on, Ordering::SeqCst);
    }

    /// The ImageStreamMappings accepted so far, as sent.
    pub fn mappings(&self) -> Vec<Value> {
        self.shared.mappings.lock().unwrap().clone()
    }

    /// Whether the image stream `ns/name` exists.
    pub fn has_stream(&self, ns: &str, name: &str) -> bool {
        self.shared
            .streams
            .lock()
            .unwrap()
            .contains(&(ns.to_owned(), name.to_owned()))
    }

    /// Creates the image stream `ns/name` (as `oc create imagestream` would).
    pub fn add_stream(&self, ns: &str, name: &str) {
        self.shared
            .streams
            .lock()
            .unwrap()
            .insert((ns.to_owned(), name.to_owned()));
    }

    /// While on, ImageStreamMappings are refused by a quota (403).
    pub fn set_quota_exceeded(&self, on: bool) {
        self.shared.quota_exceeded.store(on, Ordering::SeqCst);
    }

    /// Answer every ImageStreamMapping with `status` (`None`: normally again).
    pub fn fail_mappings(&self, status: Option<u16>) {
        self.shared
            .fail_mappings
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Answer SelfSubjectReview with 404 (an older cluster), so TokenReview is used.
    pub fn disable_self_subject_review(&self) {
        self.shared.no_ssr.store(true, Ordering::SeqCst);
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code
        })
        .to_string(),
    )
        .into_response()
}

fn created(v: Value) -> Response {
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn enter(s: &Shared, path: &str, headers: &HeaderMap) -> Option<String> {
    *s.calls.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if let Some(b) = &bearer {
        s.bearers.lock().unwrap().push(b.clone());
    }
    if s.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    bearer
}

fn user_by_token<'a>(s: &'a Shared, token: &str) -> Option<&'a User> {
    s.table.users.iter().find(|u| u.token == token)
}

/// RBAC: does `user` in `groups` get `verb` on `attrs`?
fn allowed(s: &Shared, user: &str, groups: &[String], attrs: &Value) -> bool {
    let verb = attrs["verb"].as_str().unwrap_or("");
    let group = attrs["group"].as_str().unwrap_or("");
    let resource = match attrs["subresource"].as_str() {
        Some(sub) if !sub.is_empty() => {
            format!("{}/{sub}", attrs["resource"].as_str().unwrap_or(""))
        }
        _ => attrs["resource"].as_str().unwrap_or("").to_owned(),
    };
    let ns = attrs["namespace"].as_str().filter(|n| !n.is_empty());
    s.table.bindings.iter().any(|b| {
        let subject_ok = match &b.who {
            Who::User(n) => n == user,
            Who::Group(g) => groups.contains(g),
        };
        let scope_ok = match (&b.namespace, ns) {
            (None, _) => true,
            (Some(bns), Some(ns)) => bns == ns,
            (Some(_), None) => false,
        };
        subject_ok
            && scope_ok
            && rules(b.role).iter().any(|r| {
                r.verbs.contains(&verb)
                    && r.group == group
                    && r.resources.contains(&resource.as_str())
            })
    })
}

fn groups_of(u: &User) -> Vec<String> {
    let mut g = u.groups.clone();
    g.push("system:authenticated".into());
    g
}

fn check_kind(body: &Value, kind: &str, api: &str) -> Option<Response> {
    if body["kind"] != kind || body["apiVersion"] != api {
        return Some(status(400, "BadRequest", "wrong kind or apiVersion"));
    }
    None
}

async fn ssr(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let bearer = enter(&s, SSR, &headers).await;
    if s.no_ssr.load(Ordering::SeqCst) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(r) = check_kind(&body, "SelfSubjectReview", "authentication.k8s.io/v1") {
        return r;
    }
    match bearer.as_deref().and_then(|t| user_by_token(&s, t)) {
        Some(u) => created(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": { "creationTimestamp": null },
            "status": { "userInfo": {
                "username": u.name, "uid": format!("uid-{}", u.name), "groups": groups_of(u)
            }}
        })),
        None => status(401, "Unauthorized", "Unauthorized"),
    }
}

/// The service account that may create TokenReviews and SubjectAccessReviews.
pub const REGISTRY_SA: &str = "system:serviceaccount:openshift-image-registry:registry";

fn delegator(s: &Shared, bearer: Option<&str>, resource: &str, group: &str) -> Option<Response> {
    let Some(u) = bearer.and_then(|t| user_by_token(s, t)) else {
        return Some(status(401, "Unauthorized", "Unauthorized"));
    };
    let attrs = json!({"verb": "create", "group": group, "resource": resource});
    if !allowed(s, &u.name, &groups_of(u), &attrs) {
        return Some(status(403, "Forbidden", "forbidden"));
    }
    None
}

async fn token_review(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let bearer = enter(&s, TR, &headers).await;
    if let Some(r) = delegator(
        &s,
        bearer.as_deref(),
        "tokenreviews",
        "authentication.k8s.io",
    ) {
        return r;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(r) = check_kind(&body, "TokenReview", "authentication.k8s.io/v1") {
        return r;
    }
    let status_v = match body["spec"]["token"]
        .as_str()
        .and_then(|t| user_by_token(&s, t))
    {
        Some(u) => json!({"authenticated": true, "user": {
            "username": u.name, "uid": format!("uid-{}", u.name), "groups": groups_of(u)}}),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    let mut out = body.clone();
    out["status"] = status_v;
    created(out)
}

async fn ssar(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let bearer = enter(&s, SSAR, &headers).await;
    let Some(t) = bearer else {
        return status(
            403,
            "Forbidden",
            "selfsubjectaccessreviews.authorization.k8s.io is forbidden: User \"system:anonymous\" cannot create resource",
        );
    };
    let Some(u) = user_by_token(&s, &t) else {
        return status(401, "Unauthorized", "Unauthorized");
    };
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    s.reviews.lock().unwrap().push((SSAR, body.clone()));
    if let Some(r) = check_kind(&body, "SelfSubjectAccessReview", "authorization.k8s.io/v1") {
        return r;
    }
    let attrs = &body["spec"]["resourceAttributes"];
    if !attrs.is_object() {
        return status(400, "BadRequest", "spec.resourceAttributes is required");
    }
    let ok = allowed(&s, &u.name, &groups_of(u), attrs);
    let mut out = body.clone();
    out["status"] = if ok {
        json!({"allowed": true, "reason": "RBAC: allowed by a role binding"})
    } else {
        json!({"allowed": false})
    };
    created(out)
}

async fn sar(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let bearer = enter(&s, SAR, &headers).await;
    if let Some(r) = delegator(
        &s,
        bearer.as_deref(),
        "subjectaccessreviews",
        "authorization.k8s.io",
    ) {
        return r;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    s.reviews.lock().unwrap().push((SAR, body.clone()));
    if let Some(r) = check_kind(&body, "SubjectAccessReview", "authorization.k8s.io/v1") {
        return r;
    }
    let spec = &body["spec"];
    let user = spec["user"].as_str().unwrap_or("");
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let ok = allowed(&s, user, &groups, &spec["resourceAttributes"]);
    let mut out = body.clone();
    out["status"] = json!({"allowed": ok});
    created(out)
}

fn not_found(kind: &str, name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{kind}.image.openshift.io \"{name}\" not found"),
            "reason": "NotFound",
            "details": {"name": name, "group": IMG, "kind": kind},
            "code": 404
        })
        .to_string(),
    )
        .into_response()
}

/// The registry's service account may create `resource` in `ns`, else the error answer.
fn may_create(s: &Shared, bearer: Option<&str>, ns: &str, resource: &str) -> Option<Response> {
    let Some(u) = bearer.and_then(|t| user_by_token(s, t)) else {
        return Some(status(401, "Unauthorized", "Unauthorized"));
    };
    let attrs = json!({"verb": "create", "group": IMG, "resource": resource, "namespace": ns});
    if !allowed(s, &u.name, &groups_of(u), &attrs) {
        return Some(status(
            403,
            "Forbidden",
            &format!("{resource}.image.openshift.io is forbidden: User \"{}\" cannot create resource \"{resource}\" in API group \"{IMG}\" in the namespace \"{ns}\"", u.name),
        ));
    }
    None
}

async fn image_stream_mapping(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(ns): axum::extract::Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let bearer = enter(&s, ISM, &headers).await;
    if let Some(r) = may_create(&s, bearer.as_deref(), &ns, "imagestreammappings") {
        return r;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(r) = check_kind(&body, "ImageStreamMapping", "image.openshift.io/v1") {
        return r;
    }
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if body["metadata"]["namespace"].as_str() != Some(ns.as_str()) {
        return status(
            400,
            "BadRequest",
            "the namespace of the object does not match the namespace on the request",
        );
    }
    let image = &body["image"];
    if name.is_empty()
        || image["metadata"]["name"].as_str().unwrap_or("").is_empty()
        || image["dockerImageReference"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    {
        return status(
            422,
            "Invalid",
            "ImageStreamMapping is invalid: metadata.name, image.metadata.name and image.dockerImageReference are required",
        );
    }
    if let Some(r) = check_image_manifests(image) {
        return r;
    }
    let code = s.fail_mappings.load(Ordering::SeqCst);
    if code != 0 {
        return status(
            code,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
        );
    }
    if !s
        .streams
        .lock()
        .unwrap()
        .contains(&(ns.clone(), name.clone()))
    {
        return not_found("imagestreams", &name);
    }
    if s.quota_exceeded.load(Ordering::SeqCst) {
        return status(
            403,
            "Forbidden",
            &format!("imagestreammappings.image.openshift.io \"{name}\" is forbidden: exceeded quota: image-quota, requested: openshift.io/images=1, used: openshift.io/images=10, limited: openshift.io/images=10"),
        );
    }
    s.mappings.lock().unwrap().push(body);
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
            .to_string(),
    )
        .into_response()
}

/// The API's rules for `image.dockerImageManifests` (a manifest list's children): each entry
/// needs `digest`, `mediaType`, `manifestSize`, `architecture` and `os` (`variant` optional), and
/// a list comes without `dockerImageLayers`.
fn check_image_manifests(image: &Value) -> Option<Response> {
    let list = image.get("dockerImageManifests")?;
    let invalid = |why: &str| {
        Some(status(
            422,
            "Invalid",
            &format!("ImageStreamMapping is invalid: image.dockerImageManifests: {why}"),
        ))
    };
    let Some(list) = list.as_array() else {
        return invalid("must be a list");
    };
    if image["dockerImageLayers"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        return invalid("dockerImageLayers must be empty for a manifest list");
    }
    for (i, m) in list.iter().enumerate() {
        for key in ["digest", "mediaType", "architecture", "os"] {
            if !m[key].is_string() || (key != "architecture" && key != "os" && m[key] == "") {
                return invalid(&format!("[{i}].{key}: Required value"));
            }
        }
        if !m["manifestSize"].is_u64() {
            return invalid(&format!("[{i}].manifestSize: Required value"));
        }
        if m.get("variant").is_some_and(|v| !v.is_string()) {
            return invalid(&format!("[{i}].variant: must be a string"));
        }
    }
    None
}

async fn image_stream(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(ns): axum::extract::Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let bearer = enter(&s, IS, &headers).await;
    if let Some(r) = may_create(&s, bearer.as_deref(), &ns, "imagestreams") {
        return r;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(r) = check_kind(&body, "ImageStream", "image.openshift.io/v1") {
        return r;
    }
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if name.is_empty() {
        return status(
            422,
            "Invalid",
            "ImageStream is invalid: metadata.name: Required value",
        );
    }
    if body["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the object does not match the namespace on the request",
        );
    }
    if !s.streams.lock().unwrap().insert((ns.clone(), name.clone())) {
        return (
            StatusCode::CONFLICT,
            [("content-type", "application/json")],
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("imagestreams.image.openshift.io \"{name}\" already exists"),
                "reason": "AlreadyExists",
                "details": {"name": name, "group": IMG, "kind": "imagestreams"},
                "code": 409
            })
            .to_string(),
        )
            .into_response();
    }
    let mut out = body.clone();
    out["metadata"]["namespace"] = json!(ns);
    out["metadata"]["uid"] = json!(format!("uid-is-{ns}-{name}"));
    out["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    out["spec"] = json!({"lookupPolicy": {"local": false}});
    out["status"] = json!({"dockerImageRepository": ""});
    created(out)
}
