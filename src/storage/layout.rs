//! The storage layout of CNCF distribution, drawn once. Nothing else in the crate formats a storage
//! path. Data written by distribution 2.x is read unchanged, and the other way round.
//!
//! ```text
//! /docker/registry/v2/
//!   blobs/<alg>/<first two hex>/<hex>/data                         blob and manifest bytes
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

use crate::oci::{Digest, RepositoryName, Tag};

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

pub fn blob_data(d: &Digest) -> String {
    format!("{}/data", blob_dir(d))
}

pub fn repositories_root() -> String {
    format!("{ROOT}/repositories")
}

pub fn repo_root(name: &RepositoryName) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The folders whose presence makes `repositories/<name>` a repository (and not just a folder
/// above one): what the catalog and the tags list go by.
pub fn repo_content_dirs(name: &RepositoryName) -> [String; 2] {
    let root = repo_root(name);
    [format!("{root}/_manifests"), format!("{root}/_layers")]
}

pub fn layer_link(name: &RepositoryName, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}/link",
        repo_root(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn manifest_revision_link(name: &RepositoryName, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}/link",
        repo_root(name),
        d.algorithm().as_str(),
        d.hex()
    )
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

pub fn upload_dir(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/_uploads/{uuid}", repo_root(name))
}

pub fn upload_data(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/data", upload_dir(name, uuid))
}

pub fn upload_started_at(name: &RepositoryName, uuid: &str) -> String {
    format!("{}/startedat", upload_dir(name, uuid))
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

pub fn referrer_link(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}/{}/link",
        referrers_dir(name, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

/// Parses a link file's content.
pub fn parse_link(content: &[u8]) -> Option<Digest> {
    std::str::from_utf8(content).ok()?.trim().parse().ok()
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
            upload_hashstate(&n, "u", 42),
            "/docker/registry/v2/repositories/ns/app/_uploads/u/hashstates/sha256/42"
        );
    }
}
