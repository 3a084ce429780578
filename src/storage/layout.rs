//! The storage layout of CNCF distribution, drawn once. Nothing else in the crate formats a storage
//! path. Data written by distribution 2.x is read unchanged, and the other way round.
//!
//! ```text
//! /docker/registry/v2/
//!   blobs/<alg>/<first two hex>/<hex>/data                         blob and manifest bytes
//!   blobs/<alg>/<first two hex>/<hex>/gcpending                    (ours) garbage collection means
//!                                                                  to delete it: the blob counts as
//!                                                                  absent for pushes
//!   blobs/<alg>/<first two hex>/<hex>/lastused                     (ours) a push found it: its age
//!   blobs/<alg>/<first two hex>/<hex>/gctrash                      (ours) the bytes, hidden while
//!                                                                  collection makes sure
//!   _lifecycle/gclease                                             (ours) who collects garbage now
//!   _lifecycle/gclastrun                                           (ours) when the last run ended
//!   repositories/<name>/
//!     _layers/<alg>/<hex>/link                                     repo may serve this blob
//!     _manifests/revisions/<alg>/<hex>/link                        manifest revision in this repo
//!     _manifests/tags/<tag>/current/link                           what the tag points at now
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link                 every digest the tag pointed at
//!     _uploads/<uuid>/data                                         upload in progress
//!     _uploads/<uuid>/startedat                                    RFC 3339 start time
//!     _uploads/<uuid>/hashstates/<alg>/<offset>                    resumable hash state (Go format)
//!     _referrers/<alg>/<subject hex>/<alg>/<hex>/link              (ours) manifests whose subject
//!                                                                  is <subject>; distribution
//!                                                                  ignores `_` folders it does not know
//! ```
//! Every link file holds a digest string (`sha256:...`) without a newline.

use crate::oci::{Algorithm, Digest, RepositoryName, Tag};

/// Root of the tree.
pub const ROOT: &str = "/docker/registry/v2";

pub fn blobs_root() -> String {
    format!("{ROOT}/blobs")
}

pub fn blob_dir(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

/// The folder of the blobs whose hex starts like `d`'s (`blobs/<alg>/<first two hex>`).
pub fn blob_prefix_dir(d: &Digest) -> String {
    format!("{ROOT}/blobs/{}/{}", d.algorithm().as_str(), &d.hex()[..2])
}

pub fn blob_data(d: &Digest) -> String {
    format!("{}/data", blob_dir(d))
}

/// The tombstone of a blob: garbage collection's "about to delete" mark (see `lifecycle`).
/// Distribution reads only `data` in a blob folder, so these files are invisible to it.
pub fn blob_tombstone(d: &Digest) -> String {
    format!("{}/gcpending", blob_dir(d))
}

/// Written when a push finds an old blob (HEAD, mount, manifest): the blob's age counts from it.
pub fn blob_last_used(d: &Digest) -> String {
    format!("{}/lastused", blob_dir(d))
}

/// Where garbage collection moves a blob's bytes before its last check.
pub fn blob_trash(d: &Digest) -> String {
    format!("{}/gctrash", blob_dir(d))
}

/// (ours) The garbage collection lease: who runs collection now, until when (see
/// `lifecycle::lease`). Outside `blobs/` and `repositories/`, so distribution never sees it.
pub fn gc_lease() -> String {
    format!("{ROOT}/_lifecycle/gclease")
}

/// (ours) When the last successful collection run ended (scheduled runs start one `interval`
/// after it, whichever replica ran it).
pub fn gc_last_run() -> String {
    format!("{ROOT}/_lifecycle/gclastrun")
}

/// A file in the blob store, as a walk of [`blobs_root`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFile {
    Data,
    Tombstone,
    LastUsed,
    Trash,
}

/// Which blob, and which of its files, a path under [`blobs_root`] is.
pub fn parse_blob_path(path: &str) -> Option<(Digest, BlobFile)> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix("/blobs/")?;
    let mut parts = rest.split('/');
    let (alg, two, hex, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex.starts_with(two) || two.len() != 2 {
        return None;
    }
    let kind = match file {
        "data" => BlobFile::Data,
        "gcpending" => BlobFile::Tombstone,
        "lastused" => BlobFile::LastUsed,
        "gctrash" => BlobFile::Trash,
        _ => return None,
    };
    let d: Digest = format!("{alg}:{hex}").parse().ok()?;
    Some((d, kind))
}

/// A file in a repository, as a walk of [`repositories_root`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoFile {
    /// `_layers/<alg>/<hex>/link`
    Layer(Digest),
    /// `_manifests/revisions/<alg>/<hex>/link`
    Revision(Digest),
    /// `_manifests/tags/<tag>/current/link`
    TagCurrent(Tag),
    /// `_manifests/tags/<tag>/index/<alg>/<hex>/link`
    TagIndex(Tag, Digest),
    /// `_referrers/<alg>/<subject>/<alg>/<hex>/link`
    Referrer { subject: Digest, referrer: Digest },
    /// `_uploads/<uuid>/...`
    Upload { uuid: String, file: String },
}

/// The repository and the file a path under [`repositories_root`] is; `None` for anything else
/// (including files the layout does not know).
pub fn parse_repo_path(path: &str) -> Option<(RepositoryName, RepoFile)> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix("/repositories/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let at = parts.iter().position(|p| p.starts_with('_'))?;
    let name: RepositoryName = parts[..at].join("/").parse().ok()?;
    let digest = |alg: &str, hex: &str| -> Option<Digest> { format!("{alg}:{hex}").parse().ok() };
    let file = match &parts[at..] {
        ["_layers", alg, hex, "link"] => RepoFile::Layer(digest(alg, hex)?),
        ["_manifests", "revisions", alg, hex, "link"] => RepoFile::Revision(digest(alg, hex)?),
        ["_manifests", "tags", tag, "current", "link"] => RepoFile::TagCurrent(tag.parse().ok()?),
        ["_manifests", "tags", tag, "index", alg, hex, "link"] => {
            RepoFile::TagIndex(tag.parse().ok()?, digest(alg, hex)?)
        }
        ["_referrers", salg, shex, alg, hex, "link"] => RepoFile::Referrer {
            subject: digest(salg, shex)?,
            referrer: digest(alg, hex)?,
        },
        ["_uploads", uuid, file @ ..] if !file.is_empty() => RepoFile::Upload {
            uuid: (*uuid).to_owned(),
            file: file.join("/"),
        },
        _ => return None,
    };
    Some((name, file))
}

/// The repository and revision of a file in a manifest revision's folder other than its `link`
/// (stores of old distribution versions keep `signatures/` there); `None` for anything else.
pub fn parse_revision_extra(path: &str) -> Option<(RepositoryName, Digest)> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix("/repositories/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let at = parts.iter().position(|p| p.starts_with('_'))?;
    match &parts[at..] {
        ["_manifests", "revisions", alg, hex, more @ ..]
            if !more.is_empty() && more != ["link"] =>
        {
            let name = parts[..at].join("/").parse().ok()?;
            Some((name, format!("{alg}:{hex}").parse().ok()?))
        }
        _ => None,
    }
}

/// The name of an upload's start-time file inside its folder (see [`RepoFile::Upload`]).
pub const UPLOAD_STARTED_AT: &str = "startedat";

pub fn repositories_root() -> String {
    format!("{ROOT}/repositories")
}

pub fn repo_root(name: &RepositoryName) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The children whose presence makes `repositories/<name>` a repository (and not just a folder
/// above one): what the catalog and the tags list go by.
pub const REPOSITORY_MARKERS: [&str; 2] = ["_manifests", "_layers"];

/// The folders of [`REPOSITORY_MARKERS`] for `name`.
pub fn repo_content_dirs(name: &RepositoryName) -> [String; 2] {
    let root = repo_root(name);
    REPOSITORY_MARKERS.map(|m| format!("{root}/{m}"))
}

/// A folder under `repositories/` by its path relative to it (`""` is `repositories/` itself), for
/// walks that discover names component by component (the catalog). Children starting with `_`
/// are the layout's own folders, never name components ([`is_name_component`]).
pub fn repositories_subdir(relative: &str) -> String {
    if relative.is_empty() {
        repositories_root()
    } else {
        format!("{}/{relative}", repositories_root())
    }
}

/// Whether a child of a folder under `repositories/` can be a component of a repository name.
pub fn is_name_component(child: &str) -> bool {
    !child.starts_with('_')
}

/// The folder of one layer link; deleting it unlinks the blob from the repository.
pub fn layer_dir(name: &RepositoryName, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}",
        repo_root(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn layer_link(name: &RepositoryName, d: &Digest) -> String {
    format!("{}/link", layer_dir(name, d))
}

/// The folder of one manifest revision; deleting it removes the manifest from the repository.
pub fn manifest_revision_dir(name: &RepositoryName, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}",
        repo_root(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn manifest_revision_link(name: &RepositoryName, d: &Digest) -> String {
    format!("{}/link", manifest_revision_dir(name, d))
}

pub fn tags_dir(name: &RepositoryName) -> String {
    format!("{}/_manifests/tags", repo_root(name))
}

pub fn tag_dir(name: &RepositoryName, tag: &Tag) -> String {
    format!("{}/{tag}", tags_dir(name))
}

pub fn tag_current_link(name: &RepositoryName, tag: &Tag) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

pub fn tag_index_link(name: &RepositoryName, tag: &Tag, d: &Digest) -> String {
    format!(
        "{}/index/{}/{}/link",
        tag_dir(name, tag),
        d.algorithm().as_str(),
        d.hex()
    )
}

/// The folder of one tag history entry.
pub fn tag_index_dir(name: &RepositoryName, tag: &Tag, d: &Digest) -> String {
    tag_index_link(name, tag, d)
        .trim_end_matches("/link")
        .to_owned()
}

/// The folder of a tag's history.
pub fn tag_index_root(name: &RepositoryName, tag: &Tag) -> String {
    format!("{}/index", tag_dir(name, tag))
}

pub fn upload_dir(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/_uploads/{uuid}", repo_root(name))
}

pub fn upload_data(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/data", upload_dir(name, uuid))
}

pub fn upload_started_at(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/{UPLOAD_STARTED_AT}", upload_dir(name, uuid))
}

pub fn upload_hashstates_dir(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/hashstates/sha256", upload_dir(name, uuid))
}

pub fn upload_hashstate(name: &RepositoryName, uuid: &str, offset: u64) -> String {
    format!("{}/{offset}", upload_hashstates_dir(name, uuid))
}

pub fn referrers_dir(name: &RepositoryName, subject: &Digest) -> String {
    format!(
        "{}/_referrers/{}/{}",
        repo_root(name),
        subject.algorithm().as_str(),
        subject.hex()
    )
}

/// The folder of the referrers of `subject` made with `alg`: its children are the hex digests of
/// the referrers ([`digest_of_dir`] reads them back).
pub fn referrers_alg_dir(name: &RepositoryName, subject: &Digest, alg: Algorithm) -> String {
    format!("{}/{}", referrers_dir(name, subject), alg.as_str())
}

/// The folder of one referrer entry; deleting it drops the referrer from its subject's list.
pub fn referrer_dir(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}",
        referrers_alg_dir(name, subject, referrer.algorithm()),
        referrer.hex()
    )
}

pub fn referrer_link(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> String {
    format!("{}/link", referrer_dir(name, subject, referrer))
}

/// The digest a `<alg>/<hex>` folder stands for; `None` for a name that is no digest.
pub fn digest_of_dir(alg: Algorithm, hex: &str) -> Option<Digest> {
    format!("{}:{hex}", alg.as_str()).parse().ok()
}

/// Parses a link file's content.
pub fn parse_link(content: &[u8]) -> Option<Digest> {
    std::str::from_utf8(content).ok()?.trim().parse().ok()
}

/// The progress of a pull-through sync run for one upstream prefix (`image-registry sync`), so an
/// interrupted run can resume: outside `repositories/` and `blobs/`, where distribution never looks.
pub fn sync_state(prefix: &str) -> String {
    format!("{ROOT}/_sync/state-{}.json", hex::encode(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_distribution() {
        let n: RepositoryName = "ns/app".parse().unwrap();
        let t: Tag = "v1".parse().unwrap();
        let d = Digest::sha256_of(b"");
        let h = d.hex();
        assert_eq!(
            blob_data(&d),
            format!("/docker/registry/v2/blobs/sha256/e3/{h}/data")
        );
        assert_eq!(
            layer_link(&n, &d),
            format!("/docker/registry/v2/repositories/ns/app/_layers/sha256/{h}/link")
        );
        assert_eq!(
            manifest_revision_link(&n, &d),
            format!("/docker/registry/v2/repositories/ns/app/_manifests/revisions/sha256/{h}/link")
        );
        assert_eq!(
            tag_current_link(&n, &t),
            "/docker/registry/v2/repositories/ns/app/_manifests/tags/v1/current/link"
        );
        assert_eq!(
            tag_index_link(&n, &t, &d),
            format!(
                "/docker/registry/v2/repositories/ns/app/_manifests/tags/v1/index/sha256/{h}/link"
            )
        );
        assert_eq!(
            referrer_link(&n, &d, &d),
            format!(
                "/docker/registry/v2/repositories/ns/app/_referrers/sha256/{h}/sha256/{h}/link"
            )
        );
        assert_eq!(
            layer_dir(&n, &d),
            layer_link(&n, &d).trim_end_matches("/link")
        );
        assert_eq!(
            manifest_revision_dir(&n, &d),
            manifest_revision_link(&n, &d).trim_end_matches("/link")
        );
        assert_eq!(digest_of_dir(Algorithm::Sha256, h), Some(d.clone()));
        assert_eq!(digest_of_dir(Algorithm::Sha256, "nope"), None);
        assert_eq!(repositories_subdir(""), repositories_root());
        assert_eq!(
            parse_blob_path(&blob_data(&d)),
            Some((d.clone(), BlobFile::Data))
        );
        assert_eq!(
            parse_blob_path(&blob_tombstone(&d)),
            Some((d.clone(), BlobFile::Tombstone))
        );
        assert_eq!(parse_blob_path(&format!("{}/x", blob_dir(&d))), None);
        assert_eq!(
            parse_repo_path(&layer_link(&n, &d)),
            Some((n.clone(), RepoFile::Layer(d.clone())))
        );
        assert_eq!(
            parse_repo_path(&manifest_revision_link(&n, &d)),
            Some((n.clone(), RepoFile::Revision(d.clone())))
        );
        assert_eq!(
            parse_repo_path(&tag_current_link(&n, &t)),
            Some((n.clone(), RepoFile::TagCurrent(t.clone())))
        );
        assert_eq!(
            parse_repo_path(&tag_index_link(&n, &t, &d)),
            Some((n.clone(), RepoFile::TagIndex(t.clone(), d.clone())))
        );
        assert_eq!(
            parse_repo_path(&referrer_link(&n, &d, &d)),
            Some((
                n.clone(),
                RepoFile::Referrer {
                    subject: d.clone(),
                    referrer: d.clone()
                }
            ))
        );
        assert_eq!(
            parse_repo_path(&upload_started_at(&n, "u")),
            Some((
                n.clone(),
                RepoFile::Upload {
                    uuid: "u".into(),
                    file: UPLOAD_STARTED_AT.into()
                }
            ))
        );
        assert_eq!(
            parse_repo_path(&format!("{}/_layers/x", repo_root(&n))),
            None
        );
        assert_eq!(repositories_subdir("ns/app"), repo_root(&n));
        assert_eq!(
            upload_hashstate(&n, "u", 42),
            "/docker/registry/v2/repositories/ns/app/_uploads/u/hashstates/sha256/42"
        );
    }
}
