//! The catalog: every repository under `repositories/`, found by walking the tree the way
//! distribution does (a folder holding `_manifests` or `_layers` is a repository; folders starting
//! with `_` are never names). A page (`n`) on a backend that lists the folders holding layout
//! children directly (S3: one `ListObjectsV2` with the delimiter `/_`) reads only that page's
//! window of the bucket; elsewhere the tree is walked and the page cut from it.

use super::{Registry, Result};
use crate::storage::{layout, NamePage};

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

    /// The repository names after `after`, sorted, at most `limit`, and whether more follow.
    ///
    /// Through a backend's listing of layout folders a folder counts as a repository when it
    /// holds any `_` child (`_layers`, `_manifests`, or only `_uploads`: a first push in
    /// progress, an abandoned upload until it is purged); the walk needs `_manifests` or `_layers`.
    pub async fn catalog_page(&self, after: Option<&str>, limit: usize) -> Result<NamePage> {
        let root = layout::repositories_subdir("");
        match self
            .driver
            .list_layout_folders_page(&root, after, limit)
            .await
        {
            Ok(Some(mut page)) => {
                page.names
                    .retain(|n| n.parse::<crate::oci::RepositoryName>().is_ok());
                Ok(page)
            }
            Ok(None) => Ok(NamePage::of(self.catalog().await?, after, limit)),
            Err(e) if e.is_not_found() => Ok(NamePage::default()),
            Err(e) => Err(e.into()),
        }
    }
}
