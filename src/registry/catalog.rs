//! The catalog: every repository under `repositories/`, found by walking the tree the way
//! distribution does (a folder holding `_manifests` or `_layers` is a repository; folders starting
//! with `_` are never names).

use super::{Registry, Result};
use crate::storage::layout;

impl Registry {
    /// All repository names, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let children = match self.driver.list(&layout::repositories_subdir(&rel)).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if !rel.is_empty()
                && children
                    .iter()
                    .any(|c| layout::REPOSITORY_MARKERS.contains(&c.as_str()))
            {
                out.push(rel.clone());
            }
            for c in children
                .into_iter()
                .filter(|c| layout::is_name_component(c))
            {
                stack.push(if rel.is_empty() {
                    c
                } else {
                    format!("{rel}/{c}")
                });
            }
        }
        out.retain(|n| n.parse::<crate::oci::RepositoryName>().is_ok());
        out.sort();
        Ok(out)
    }
}
