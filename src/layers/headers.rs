//! `http.headers` (distribution's key): operator-chosen headers such as
//! `X-Content-Type-Options: nosniff` on every response, errors and 429s included. A response that
//! sets a header itself keeps its own value. Depends on nothing but `http` types.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// The configured headers, converted once.
#[derive(Debug, Default)]
pub struct ExtraHeaders(Vec<(HeaderName, Vec<HeaderValue>)>);

impl ExtraHeaders {
    /// From `http.headers` (name -> values). The config loader refused invalid names and values;
    /// one that still does not convert is left out.
    pub fn new(headers: &BTreeMap<String, Vec<String>>) -> ExtraHeaders {
        ExtraHeaders(
            headers
                .iter()
                .filter_map(|(k, vs)| {
                    let name = HeaderName::try_from(k.as_str()).ok()?;
                    let values = vs
                        .iter()
                        .filter_map(|v| HeaderValue::from_str(v).ok())
                        .collect();
                    Some((name, values))
                })
                .collect(),
        )
    }
}

/// The response mapper (`middleware::map_response_with_state`).
pub async fn add(State(extra): State<Arc<ExtraHeaders>>, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, values) in &extra.0 {
        if !h.contains_key(name) {
            for v in values {
                h.append(name.clone(), v.clone());
            }
        }
    }
    resp
}
