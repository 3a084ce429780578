//! The import rules of the crate, checked on its own source (a test, no runtime code):
//!
//! 1. Every top-level module uses only the modules its row in [`ALLOWED`] names (`crate::x` paths
//!    and `use crate::x`); a new module must add its row.
//! 2. No cycle among sibling files of a folder (`super::x` / `crate::folder::x` between them);
//!    a parent `mod.rs` and its children may use each other.
//! 3. No storage path is spelled outside `storage/layout.rs` (no string literal with a layout
//!    folder name), and no OCI error code is spelled outside `http/error.rs` (codes are compared
//!    as `ErrorCode` values, never as strings).
//!
//! Test code (`#[cfg(test)]` modules and the files they name) is exempt from 3.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the top-level modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("oci", &[]),
    ("config", &[]),
    ("net", &["config"]),
    ("storage", &["oci", "config", "net"]),
    ("registry", &["oci", "storage", "config"]),
    ("auth", &["oci", "config", "net"]),
    ("ops", &["storage", "config"]),
    ("http", &["registry", "auth", "oci", "ops", "config"]),
    ("layers", &["http", "auth", "ops", "oci", "config"]),
    ("upstream", &["registry", "oci", "config", "net"]),
    ("events", &["registry", "oci", "config", "net", "ops"]),
    ("imagestreams", &["registry", "auth", "oci", "config"]),
    ("app", &["*"]),
    ("cli", &["*"]),
    ("layering", &[]),
    ("lifecycle", &["oci", "storage", "config"]),
];

/// Fragments of the storage layout that only `storage/layout.rs` may write in a string.
const LAYOUT_WORDS: &[&str] = &[
    "docker/registry",
    "/_manifests",
    "_manifests/",
    "/_layers",
    "_layers/",
    "/_uploads",
    "_uploads/",
    "/_referrers",
    "_referrers/",
    "/link\"",
    "/data\"",
    "hashstates/",
    "/startedat",
];

struct Source {
    /// Path below `src/`, e.g. `storage/object.rs`.
    rel: String,
    /// The text, without `#[cfg(test)]` parts (from the attribute to the end of the file; test
    /// modules sit at the end by convention here) and without comments.
    code: String,
    is_test_file: bool,
}

fn sources() -> Vec<Source> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let test_files = test_module_files(&root, &files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            let non_test = match text.find("#[cfg(test)]") {
                Some(i) => &text[..i],
                None => &text[..],
            };
            let code = non_test
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            Source {
                is_test_file: test_files.contains(&rel),
                rel,
                code,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Files declared as `#[cfg(test)] mod x;` (`x.rs` beside the declaring file, or in its folder).
fn test_module_files(root: &Path, files: &[PathBuf]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(2) {
            if w[0].trim() != "#[cfg(test)]" {
                continue;
            }
            let Some(name) = w[1]
                .trim()
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
            else {
                continue;
            };
            let rel = f.strip_prefix(root).unwrap().to_string_lossy().to_string();
            // `a/mod.rs` and the crate root declare children beside them; `a/b.rs` in `a/b/`.
            let folder = match rel.rsplit_once('/') {
                Some((dir, "mod.rs")) => format!("{dir}/"),
                Some((dir, file)) => format!("{dir}/{}/", file.trim_end_matches(".rs")),
                None if rel == "lib.rs" || rel == "main.rs" => String::new(),
                None => format!("{}/", rel.trim_end_matches(".rs")),
            };
            out.insert(format!("{folder}{name}.rs"));
        }
    }
    out
}

/// The top-level module a file belongs to (`lib.rs`/`main.rs` are the crate root: `None`).
fn top(rel: &str) -> Option<&str> {
    let first = rel.split('/').next()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    (m != "lib" && m != "main").then_some(m)
}

/// Every `crate::<x>` a text names, `<x>` being the identifier after it.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a, b::c}`: take each head of the group.
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let head = part.trim().split("::").next().unwrap_or("").trim();
                if !head.is_empty() {
                    out.insert(head.to_owned());
                }
            }
        } else {
            let ident: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                out.insert(ident);
            }
        }
        rest = after;
    }
    out
}

#[test]
fn top_level_modules_use_only_what_their_row_allows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for s in sources() {
        let Some(me) = top(&s.rel) else { continue };
        let Some(ok) = allowed.get(me) else {
            problems.push(format!("{}: module `{me}` has no row in ALLOWED", s.rel));
            continue;
        };
        if ok.contains(&"*") {
            continue;
        }
        for used in crate_refs(&s.code) {
            if used != me && !ok.contains(&used.as_str()) {
                problems.push(format!("{}: `{me}` may not use `crate::{used}`", s.rel));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn sibling_files_form_no_cycle() {
    let srcs = sources();
    // folder -> file stem -> stems of siblings it uses.
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let stems_of = |folder: &str| -> BTreeSet<String> {
        srcs.iter()
            .filter_map(|s| {
                let (dir, file) = s.rel.rsplit_once('/')?;
                (dir == folder && file != "mod.rs").then(|| file.trim_end_matches(".rs").to_owned())
            })
            .collect()
    };
    for s in &srcs {
        let Some((folder, file)) = s.rel.rsplit_once('/') else {
            continue;
        };
        if file == "mod.rs" {
            continue;
        }
        let me = file.trim_end_matches(".rs").to_owned();
        let siblings = stems_of(folder);
        let module = folder.replace('/', "::");
        let mut uses = BTreeSet::new();
        for sib in &siblings {
            if *sib == me {
                continue;
            }
            let named = [
                format!("super::{sib}::"),
                format!("super::{sib};"),
                format!("super::{sib},"),
                format!("super::{sib}}}"),
                format!("crate::{module}::{sib}::"),
                format!("crate::{module}::{sib};"),
            ];
            let grouped = s.code.contains("use super::{") && {
                // `use super::{a, b}`: a sibling named directly in a group.
                s.code.split("use super::{").skip(1).any(|g| {
                    g.split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .any(|p| p.trim().split("::").next() == Some(sib.as_str()))
                })
            };
            if grouped || named.iter().any(|n| s.code.contains(n.as_str())) {
                uses.insert(sib.clone());
            }
        }
        graph.entry(folder.to_owned()).or_default().insert(me, uses);
    }
    let mut cycles = Vec::new();
    for (folder, g) in &graph {
        // Depth-first search for a back edge.
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            cycles: &mut Vec<String>,
        ) {
            if let Some(i) = path.iter().position(|p| p == n) {
                cycles.push(format!("{} -> {n}", path[i..].join(" -> ")));
                return;
            }
            if !done.insert(n.to_owned()) {
                return;
            }
            path.push(n.to_owned());
            for m in g.get(n).into_iter().flatten() {
                visit(m, g, path, done, cycles);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for n in g.keys() {
            let mut found = Vec::new();
            visit(n, g, &mut Vec::new(), &mut done, &mut found);
            cycles.extend(found.into_iter().map(|c| format!("{folder}/: {c}")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn storage_paths_and_error_codes_are_spelled_in_one_place() {
    let codes: Vec<String> = crate::http::error::ErrorCode::ALL
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect();
    let mut problems = Vec::new();
    for s in sources() {
        if s.is_test_file || s.rel == "layering.rs" {
            continue;
        }
        for (i, line) in s.code.lines().enumerate() {
            if s.rel != "storage/layout.rs" {
                if let Some(w) = LAYOUT_WORDS.iter().find(|w| line.contains(**w)) {
                    problems.push(format!(
                        "{}: a storage path ({w:?}) outside storage/layout.rs: {}",
                        s.rel,
                        line.trim()
                    ));
                }
            }
            if s.rel != "http/error.rs" {
                if let Some(c) = codes.iter().find(|c| line.contains(c.as_str())) {
                    problems.push(format!(
                        "{}:{}: error code {c} as a string outside http/error.rs",
                        s.rel,
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // The scanners themselves: a rule that finds nothing because it reads nothing cannot fail.
    let srcs = sources();
    assert!(srcs.iter().any(|s| s.rel == "storage/layout.rs"));
    assert!(srcs
        .iter()
        .any(|s| s.rel == "registry/manifests.rs" && s.code.contains("layout::")));
    let refs = crate_refs("use crate::{oci::Digest, storage::layout};\nlet x = crate::config::X;");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["config", "oci", "storage"]
    );
    assert!(test_module_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/registry/mod.rs")]
    )
    .contains("registry/tests.rs"));
}
