//! Tag listing and the catalog, both with `n`/`last` pagination and a `Link` header; a tag's
//! history.

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{encode, ApiError, AppState, Page};
use crate::oci::{RepositoryName, Tag};

type Result<T> = std::result::Result<T, ApiError>;

/// Where the next page starts: the page size and the last entry served.
type NextPage = Option<(usize, String)>;

/// One page of a sorted list: entries after `last`, at most `n`; and whether more follow.
fn page(all: Vec<String>, page: &Page) -> (Vec<String>, NextPage) {
    let mut items: Vec<String> = match &page.last {
        Some(last) => all
            .into_iter()
            .filter(|t| t.as_str() > last.as_str())
            .collect(),
        None => all,
    };
    let mut next = None;
    if let Some(n) = page.n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                next = Some((n, last.clone()));
            }
        }
    }
    (items, next)
}

fn respond(body: serde_json::Value, link: Option<String>) -> Response {
    respond_text(body.to_string(), link)
}

fn respond_text(body: String, link: Option<String>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LINK, l);
    }
    (StatusCode::OK, h, body).into_response()
}

pub async fn tags(state: &AppState, name: &RepositoryName, p: &Page) -> Result<Response> {
    if let Some(n) = p.n {
        // A page reads only its window of the tags folder where the backend can.
        let page = state
            .registry
            .list_tags_page(name, p.last.as_deref(), n)
            .await?;
        let link = next_link(&page, n).map(|last| {
            format!(
                "</v2/{name}/tags/list?n={n}&last={}>; rel=\"next\"",
                encode(&last)
            )
        });
        return Ok(respond(
            json!({ "name": name.as_str(), "tags": page.names }),
            link,
        ));
    }
    let all = state.registry.list_tags(name).await?;
    // Paging and writing a large listing is CPU work: on a blocking thread (see list_tags).
    let (p, name) = (p.clone(), name.clone());
    let (body, link) = tokio::task::spawn_blocking(move || {
        let (tags, next) = page(all, &p);
        let link = next.map(|(n, last)| {
            format!(
                "</v2/{name}/tags/list?n={n}&last={}>; rel=\"next\"",
                encode(&last)
            )
        });
        (
            json!({ "name": name.as_str(), "tags": tags }).to_string(),
            link,
        )
    })
    .await
    .map_err(|e| {
        ApiError::from(crate::registry::RegistryError::Internal(format!(
            "tag listing task failed: {e}"
        )))
    })?;
    Ok(respond_text(body, link))
}

/// `GET /extensions/v2/<name>/tags/<tag>/history`: `[{"digest","time"}]`, newest first (`time`
/// RFC 3339, `null` where storage keeps none).
pub async fn tag_history(state: &AppState, name: &RepositoryName, tag: &Tag) -> Result<Response> {
    let entries = state.registry.tag_history(name, tag).await?;
    let list: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|(d, t)| {
            let time = t.map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            });
            json!({ "digest": d.to_string(), "time": time })
        })
        .collect();
    Ok(respond(serde_json::Value::Array(list), None))
}

/// The last name of a page that has more after it.
fn next_link(page: &crate::registry::NamePage, n: usize) -> Option<String> {
    if page.more && n > 0 {
        page.names.last().cloned()
    } else {
        None
    }
}

pub async fn catalog(state: &AppState, p: &Page, req: &Parts) -> Result<Response> {
    let visibility = req
        .extensions
        .get::<crate::auth::RequestAuth>()
        .and_then(|a| a.catalog.as_ref());
    if let (Some(n), None) = (p.n, visibility) {
        // Without a visibility filter a page reads only its window where the backend can.
        let page = state.registry.catalog_page(p.last.as_deref(), n).await?;
        let link = next_link(&page, n)
            .map(|last| format!("</v2/_catalog?n={n}&last={}>; rel=\"next\"", encode(&last)));
        return Ok(respond(json!({ "repositories": page.names }), link));
    }
    let mut all = state.registry.catalog().await?;
    // With auth on, the auth layer says which names the caller may see.
    if let Some(vis) = req
        .extensions
        .get::<crate::auth::RequestAuth>()
        .and_then(|a| a.catalog.as_ref())
    {
        all.retain(|n| vis.allows(n));
    }
    let (repos, next) = page(all, p);
    let link =
        next.map(|(n, last)| format!("</v2/_catalog?n={n}&last={}>; rel=\"next\"", encode(&last)));
    Ok(respond(json!({ "repositories": repos }), link))
}
