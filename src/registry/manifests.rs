//! Manifests, tags and referrers.
//!
//! A manifest's bytes live in the blob store; a repository knows it through a revision link, a tag
//! through `tags/<tag>/current/link` (plus the `index/` history distribution keeps). Pushes verify
//! that every referenced blob and child manifest is in the repository first. A manifest with a
//! `subject` is also recorded under `_referrers/` of its subject, which answers the referrers API
//! without scanning.

use bytes::Bytes;
use futures::StreamExt;

use super::events::{Action, Event, Kind};
use super::{Registry, RegistryError, Result, MAX_MANIFEST_SIZE};
use crate::oci::{
    media, Algorithm, Descriptor, Digest, ParsedManifest, Reference, RepositoryName, Tag,
};
use crate::storage::layout;

/// What a manifest references, as distribution lists them in an event: its blobs (config first,
/// then layers) or its child manifests.
fn references(m: &ParsedManifest) -> Vec<Descriptor> {
    m.blobs.iter().chain(m.manifests.iter()).cloned().collect()
}

fn tag_of(r: &Reference) -> Option<String> {
    match r {
        Reference::Tag(t) => Some(t.to_string()),
        Reference::Digest(_) => None,
    }
}

/// A stored manifest as served.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
    pub parsed: ParsedManifest,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Registry {
    /// Resolves a reference to a digest the repository holds (read path: through the link cache).
    pub async fn resolve(&self, name: &RepositoryName, reference: &Reference) -> Result<Digest> {
        let digest = self.tag_or_digest(name, reference).await?;
        self.check_revision(name, &digest).await?;
        Ok(digest)
    }

    /// The digest a reference names: a tag's link (through the link cache), or the digest itself.
    async fn tag_or_digest(&self, name: &RepositoryName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => self
                .read_link_cached(name, &layout::tag_current_link(name, t))
                .await?
                .ok_or_else(|| RegistryError::ManifestUnknown(format!("unknown tag {t}"))),
        }
    }

    /// `ManifestUnknown` unless the repository holds the manifest `digest` (its revision link).
    async fn check_revision(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        let link = layout::manifest_revision_link(name, digest);
        if !self.link_exists_cached(name, &link, digest).await? {
            return Err(RegistryError::ManifestUnknown(format!(
                "unknown manifest {digest}"
            )));
        }
        Ok(())
    }

    /// Reads a manifest by tag or digest. By tag, the revision link and the bytes are read at
    /// once (when neither is cached, one round trip on an object store instead of two): a tag
    /// names what a manifest push wrote, so the bytes are a manifest's. By digest the link comes
    /// first, since a digest may name any blob (a layer read whole into memory as a manifest
    /// would be a way to exhaust it). The bytes of a manifest the repository does not hold are
    /// never served.
    pub async fn get_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Manifest> {
        if let Some(ttl) = self.proxied_ttl(name) {
            return self.get_manifest_proxied(name, reference, ttl).await;
        }
        let digest = self.tag_or_digest(name, reference).await?;
        if let Reference::Digest(_) = reference {
            self.check_revision(name, &digest).await?;
            return self.read_manifest(&digest).await;
        }
        let (held, manifest) = futures::future::join(
            self.check_revision(name, &digest),
            self.read_manifest(&digest),
        )
        .await;
        held?;
        manifest
    }

    /// Reads a manifest's bytes by digest: from the cache of digest-addressed content, else from
    /// the blob store (then parsed and cached).
    pub(super) async fn read_manifest(&self, digest: &Digest) -> Result<Manifest> {
        let cached = match self.manifests.get(digest) {
            Some(c) => c,
            None => {
                let body = match self.driver.get_content(&layout::blob_data(digest)).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => {
                        return Err(RegistryError::ManifestUnknown(format!(
                            "manifest {digest} has no content"
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                let parsed = ParsedManifest::parse(&body, None).map_err(|e| {
                    RegistryError::Internal(format!("stored manifest {digest} does not parse: {e}"))
                })?;
                let c = std::sync::Arc::new((body, parsed));
                // Count the parsed form as large as the bytes.
                self.manifests
                    .insert(digest.clone(), c.clone(), 2 * c.0.len() + 256);
                c
            }
        };
        Ok(Manifest {
            digest: digest.clone(),
            media_type: cached.1.media_type.clone(),
            body: cached.0.clone(),
            parsed: cached.1.clone(),
        })
    }

    /// Stores a manifest under a tag or digest.
    pub async fn put_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        self.refuse_push(name)?;
        self.store_manifest(name, reference, content_type, body, true)
            .await
    }

    /// Stores a manifest; with `check_refs`, only if every blob and child it references is in the
    /// repository (a push). The pull-through cache stores without: the references are fetched
    /// when a client asks for them.
    pub(super) async fn store_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        check_refs: bool,
    ) -> Result<PutManifest> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                limit: MAX_MANIFEST_SIZE,
            });
        }
        // Hashing and parsing a large manifest (up to 4 MiB, 10,000 layers) is CPU work: on a
        // blocking thread, so the async workers go on serving the other requests meanwhile.
        let (digest, parsed) = if body.len() > INLINE_PARSE_LIMIT {
            let (reference, content_type, body) = (
                reference.clone(),
                content_type.map(str::to_owned),
                body.clone(),
            );
            tokio::task::spawn_blocking(move || {
                digest_and_parse(&reference, content_type.as_deref(), &body)
            })
            .await
            .map_err(|e| RegistryError::Internal(format!("manifest parse task failed: {e}")))??
        } else {
            digest_and_parse(reference, content_type, &body)?
        };
        // Everything referenced is claimed from garbage collection first, then checked (see
        // `claim_blob`): a blob collected meanwhile is reported unknown, never tagged. The
        // references are checked a few at once (each check is round trips on an object store);
        // the first one missing, in the manifest's order, is the one reported.
        let blobs = parsed
            .blobs
            .iter()
            .filter(|b| check_refs && !b.is_foreign())
            .map(|b| (b.digest.clone(), layout::layer_link(name, &b.digest)));
        let children = parsed.manifests.iter().filter(|_| check_refs).map(|c| {
            (
                c.digest.clone(),
                layout::manifest_revision_link(name, &c.digest),
            )
        });
        let checks: Vec<_> = blobs
            .chain(children)
            .map(|(digest, link)| self.claim_reference(digest, link))
            .collect();
        let mut checks = futures::stream::iter(checks).buffered(REFERENCE_CHECKS_AT_ONCE);
        while let Some(checked) = checks.next().await {
            let (digest, present) = checked?;
            if !present {
                return Err(RegistryError::ManifestBlobUnknown(digest));
            }
        }
        let size = body.len() as u64;
        // The event's journal write runs beside the commit (an intent, resolved after it).
        let pending = self
            .begin_event(|| {
                let mut e = Event::new(Action::Push, Kind::Manifest, name);
                e.media_type = Some(parsed.media_type.clone());
                e.digest = Some(digest.clone());
                e.size = Some(size);
                e.tag = tag_of(reference);
                e.references = references(&parsed);
                e
            })
            .await?;
        let committed: Result<Option<Digest>> = async {
            let data = layout::blob_data(&digest);
            self.claim_blob(&digest).await?;
            if self.stat_global_blob(&digest).await? != Some(body.len() as u64) {
                self.driver.put_content(&data, body).await?;
            }
            self.write_link(&layout::manifest_revision_link(name, &digest), &digest)
                .await?;
            let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
            if let Some(subject) = &subject {
                self.write_link(&layout::referrer_link(name, subject, &digest), &digest)
                    .await?;
            }
            if let Reference::Tag(tag) = reference {
                self.write_link(&layout::tag_index_link(name, tag, &digest), &digest)
                    .await?;
                let moved = self
                    .write_link(&layout::tag_current_link(name, tag), &digest)
                    .await;
                // The tag may have moved (or be half-written, on an error): forget what was read.
                self.links.invalidate(name.as_str());
                moved?;
                // Garbage collection deletes an untagged revision first and reads the tags after; a
                // push writes the tag first and checks the revisions after: one of the two sees the
                // other, and a revision removed meanwhile is written again. Children only when they
                // were checked to be here: a pull-through index is stored before its children are
                // fetched, and a link to a child without content would claim it is cached.
                for d in parsed
                    .manifests
                    .iter()
                    .filter(|_| check_refs)
                    .map(|c| &c.digest)
                    .chain(std::iter::once(&digest))
                {
                    let rev = layout::manifest_revision_link(name, d);
                    if !self.exists(&rev).await? {
                        self.driver
                            .put_content(&rev, Bytes::from(d.to_string()))
                            .await?;
                    }
                }
            }
            self.record_image(name, reference, &digest, &parsed).await?;
            Ok(subject)
        }
        .await;
        let subject = self.finish_event(pending, committed).await?;
        Ok(PutManifest { digest, subject })
    }

    /// Claims a manifest's reference `digest` from garbage collection, then checks that it is
    /// stored and that `link` (its link in the repository) is there: whether both are.
    async fn claim_reference(&self, digest: Digest, link: String) -> Result<(Digest, bool)> {
        self.claim_blob(&digest).await?;
        let (linked, stored) =
            futures::future::join(self.exists(&link), self.stat_global_blob(&digest)).await;
        let present = linked? && stored?.is_some();
        Ok((digest, present))
    }

    /// Hands a stored manifest to the image-metadata hook, if any (see `image_metadata.rs`).
    async fn record_image(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        digest: &Digest,
        parsed: &ParsedManifest,
    ) -> Result<()> {
        use super::image_metadata::{ImageMetadataError, PushedImage, MAX_CONFIG_SIZE};
        let Some(hook) = &self.image_metadata else {
            return Ok(());
        };
        // An image manifest's blobs are its config, then its layers; an index has none.
        let (config, layers) = match parsed.blobs.split_first() {
            Some((c, l)) if parsed.manifests.is_empty() => (Some(c), l.to_vec()),
            _ => (None, Vec::new()),
        };
        let config = match config {
            Some(c) if c.size <= MAX_CONFIG_SIZE && !c.is_foreign() => {
                let bytes = self
                    .driver
                    .get_content(&layout::blob_data(&c.digest))
                    .await?;
                Some((c.clone(), bytes))
            }
            _ => None,
        };
        let image = PushedImage {
            repository: name.clone(),
            tag: tag_of(reference),
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            layers,
            manifests: parsed.manifests.clone(),
            config,
        };
        hook.image_pushed(image).await.map_err(|e| match e {
            ImageMetadataError::Denied(m) => RegistryError::Denied(m),
            ImageMetadataError::Failed(m) => RegistryError::ImageMetadataFailed(m),
        })
    }

    /// Deletes by digest (the revision and every tag pointing at it) or by tag (untag only).
    pub async fn delete_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        self.check_delete()?;
        let deleted = self.delete_manifest_links(name, reference).await;
        // Whatever was removed (also on a partial failure) must not be served from the cache.
        self.links.invalidate(name.as_str());
        let tags = deleted?;
        if let Reference::Digest(d) = reference {
            self.emit(|| {
                let mut e = Event::new(Action::Delete, Kind::Manifest, name);
                e.digest = Some(d.clone());
                e
            })
            .await?;
        }
        // distribution 2.8 announces every tag a delete removed, as `{repository, tag}`.
        for tag in tags {
            self.emit(|| {
                let mut e = Event::new(Action::Delete, Kind::Tag, name);
                e.tag = Some(tag.to_string());
                e
            })
            .await?;
        }
        Ok(())
    }

    /// Tells listeners that a manifest was served (a `GET` or a `HEAD`, as distribution announces both).
    pub async fn manifest_pulled(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        m: &Manifest,
    ) -> Result<()> {
        self.emit(|| {
            let mut e = Event::new(Action::Pull, Kind::Manifest, name);
            e.media_type = Some(m.media_type.clone());
            e.digest = Some(m.digest.clone());
            e.size = Some(m.body.len() as u64);
            e.tag = tag_of(reference);
            e.references = references(&m.parsed);
            e
        })
        .await
    }

    /// Removes the links; returns the tags removed.
    async fn delete_manifest_links(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Vec<Tag>> {
        match reference {
            Reference::Tag(tag) => {
                if self
                    .read_link(&layout::tag_current_link(name, tag))
                    .await?
                    .is_none()
                {
                    return Err(RegistryError::ManifestUnknown(format!("unknown tag {tag}")));
                }
                self.delete_if_exists(&layout::tag_dir(name, tag)).await?;
                Ok(vec![tag.clone()])
            }
            Reference::Digest(digest) => {
                if !self
                    .exists(&layout::manifest_revision_link(name, digest))
                    .await?
                {
                    return Err(RegistryError::ManifestUnknown(format!(
                        "unknown manifest {digest}"
                    )));
                }
                // Remove the referrers entry while the manifest can still be read.
                if let Ok(m) = self.read_manifest(digest).await {
                    if let Some(subject) = &m.parsed.subject {
                        let dir = layout::referrer_dir(name, &subject.digest, digest);
                        self.delete_if_exists(&dir).await?;
                    }
                }
                let mut removed = Vec::new();
                for tag in self.tags_maybe_at(name, digest).await? {
                    if self
                        .read_link(&layout::tag_current_link(name, &tag))
                        .await?
                        .as_ref()
                        == Some(digest)
                    {
                        self.delete_if_exists(&layout::tag_dir(name, &tag)).await?;
                        removed.push(tag);
                    }
                }
                self.delete_if_exists(&layout::manifest_revision_dir(name, digest))
                    .await?;
                Ok(removed)
            }
        }
    }

    /// The tags whose current link may name `digest`, from one walk of the tags folder (one flat
    /// listing on object stores): a tag is written index entry first, current link second (as
    /// distribution does), so a tag at `digest` has `index/<alg>/<hex>/` of it; tags without any
    /// index entry (written by other tools) are included too. The caller reads each current link.
    async fn tags_maybe_at(&self, name: &RepositoryName, digest: &Digest) -> Result<Vec<Tag>> {
        use std::collections::BTreeMap;
        let entries = match self.driver.walk(&layout::tags_dir(name)).await {
            Ok(e) => e,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        // tag -> (has a current link, has any index entry, has an index entry of `digest`)
        let mut tags: BTreeMap<Tag, (bool, bool, bool)> = BTreeMap::new();
        for e in entries {
            match layout::parse_repo_path(&e.path) {
                Some((n, layout::RepoFile::TagCurrent(t))) if &n == name => {
                    tags.entry(t).or_default().0 = true;
                }
                Some((n, layout::RepoFile::TagIndex(t, d))) if &n == name => {
                    let f = tags.entry(t).or_default();
                    f.1 = true;
                    f.2 |= &d == digest;
                }
                _ => {}
            }
        }
        Ok(tags
            .into_iter()
            .filter(|(_, (current, any_index, at))| *current && (*at || !*any_index))
            .map(|(t, _)| t)
            .collect())
    }

    /// Every digest `tag` pointed at, with when (the time of its history entry), newest first:
    /// the tag index distribution's layout keeps (`tags/<tag>/index/`).
    pub async fn tag_history(
        &self,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Result<Vec<(Digest, Option<std::time::SystemTime>)>> {
        let root = layout::tag_index_root(name, tag);
        let mut out = Vec::new();
        for e in match self.driver.walk(&root).await {
            Ok(e) => e,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        } {
            if let Some((_, layout::RepoFile::TagIndex(t, d))) = layout::parse_repo_path(&e.path) {
                if &t == tag {
                    out.push((d, e.modified));
                }
            }
        }
        if out.is_empty() {
            if !self.repository_exists(name).await? {
                return Err(RegistryError::NameUnknown(name.clone()));
            }
            return Err(RegistryError::ManifestUnknown(format!("unknown tag {tag}")));
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// All tags of a repository, sorted.
    pub async fn list_tags(&self, name: &RepositoryName) -> Result<Vec<String>> {
        let mut tags = match self.driver.list(&layout::tags_dir(name)).await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => {
                if self.repository_exists(name).await? {
                    Vec::new()
                } else {
                    return Err(RegistryError::NameUnknown(name.clone()));
                }
            }
            Err(e) => return Err(e.into()),
        };
        // 100,000 tags take a while to check and sort: off the async workers, so the other
        // requests go on meanwhile.
        tokio::task::spawn_blocking(move || {
            tags.retain(|t| t.parse::<Tag>().is_ok());
            tags.sort_unstable();
            tags
        })
        .await
        .map_err(|e| RegistryError::Internal(format!("tag listing task failed: {e}")))
    }

    /// One page of [`list_tags`](Self::list_tags): the tags after `after`, at most `limit`, and
    /// whether more follow; reads only that page's window of the tags folder where the backend
    /// can (S3), else the folder's names without checking or sorting every one of them twice.
    pub async fn list_tags_page(
        &self,
        name: &RepositoryName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::storage::NamePage> {
        let mut page = match self
            .driver
            .list_page(&layout::tags_dir(name), after, limit)
            .await
        {
            Ok(p) => p,
            Err(e) if e.is_not_found() => crate::storage::NamePage::default(),
            Err(e) => return Err(e.into()),
        };
        if page.names.is_empty() && !self.repository_exists(name).await? {
            return Err(RegistryError::NameUnknown(name.clone()));
        }
        page.names.retain(|t| t.parse::<Tag>().is_ok());
        Ok(page)
    }

    /// Manifests in `name` whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut digests = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = layout::referrers_alg_dir(name, subject, alg);
            match self.driver.list(&dir).await {
                Ok(hexes) => {
                    digests.extend(hexes.iter().filter_map(|h| layout::digest_of_dir(alg, h)))
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        digests.sort();
        let mut out = Vec::new();
        for d in digests {
            if !self
                .exists(&layout::manifest_revision_link(name, &d))
                .await?
            {
                continue;
            }
            let m = match self.read_manifest(&d).await {
                Ok(m) => m,
                Err(RegistryError::ManifestUnknown(_)) => continue,
                Err(e) => return Err(e),
            };
            if artifact_type.is_some_and(|t| m.parsed.artifact_type.as_deref() != Some(t)) {
                continue;
            }
            out.push(Descriptor {
                media_type: m.media_type.clone(),
                size: m.body.len() as u64,
                digest: d,
                artifact_type: m.parsed.artifact_type.clone(),
                annotations: m.parsed.annotations.clone(),
                urls: None,
                platform: None,
            });
        }
        Ok(out)
    }
}

/// Picks the child of an index for clients that cannot take an index: linux/amd64, as distribution
/// does for old clients.
pub fn default_platform_child(m: &ParsedManifest) -> Option<&Descriptor> {
    if !media::is_index(&m.media_type) {
        return None;
    }
    m.manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.get("os").and_then(|v| v.as_str()) == Some("linux")
                && p.get("architecture").and_then(|v| v.as_str()) == Some("amd64")
        })
    })
}

/// Manifests up to this size are hashed and parsed on the async worker; larger ones on a
/// blocking thread.
const INLINE_PARSE_LIMIT: usize = 64 << 10;

/// How many of a manifest's references a push checks at once.
const REFERENCE_CHECKS_AT_ONCE: usize = 8;

/// The digest a manifest PUT stores under (checked against a digest reference) and the parsed
/// manifest.
fn digest_and_parse(
    reference: &Reference,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Digest, ParsedManifest)> {
    let digest = match reference {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), body);
            if &actual != d {
                return Err(RegistryError::DigestInvalid(format!(
                    "manifest has digest {actual}, not {d}"
                )));
            }
            actual
        }
        Reference::Tag(_) => Digest::of(Algorithm::Sha256, body),
    };
    let parsed = ParsedManifest::parse(body, content_type)
        .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
    Ok((digest, parsed))
}
