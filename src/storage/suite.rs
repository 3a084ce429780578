//! The one driver test suite: every backend runs the same checks of the contract in `storage/mod.rs`.

use bytes::Bytes;
use futures::TryStreamExt;

use super::{StorageDriver, StorageError};

pub async fn read_all(d: &dyn StorageDriver, path: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
    let s = d.read(path, offset, len).await.unwrap();
    let chunks: Vec<Bytes> = s.try_collect().await.unwrap();
    chunks.concat()
}

/// Runs every check against `d`, which must be empty.
pub async fn run_all(d: &dyn StorageDriver) {
    content_round_trip(d).await;
    not_found(d).await;
    ranged_reads(d).await;
    writer_append_and_resume(d).await;
    listing(d).await;
    rename_replaces(d).await;
    delete_tree(d).await;
    invalid_paths(d).await;
    small_appends(d).await;
    large_writes_and_rename(d).await;
    empty_writer(d).await;
    walk_and_prune(d).await;
    delete_and_move_files(d).await;
    paged_listings(d).await;
    direct_writes(d).await;
}

/// `delete_files` deletes exactly the files named (a missing one is no error; other files in
/// their folders stay); `rename_files` moves whole files of known size, replacing targets, says
/// which sources were there, and moves a file still in segments too.
async fn delete_and_move_files(d: &dyn StorageDriver) {
    for (p, data) in [
        ("/f/a/link", &b"a"[..]),
        ("/f/b/link", b"bb"),
        ("/f/b/other", b"keep"),
        ("/f/c", b"ccc"),
        ("/f/dst/old", b"old"),
        ("/f/e", b""),
    ] {
        d.put_content(p, Bytes::copy_from_slice(data))
            .await
            .unwrap();
    }
    d.delete_files(&[]).await.unwrap();
    let gone = ["/f/a/link", "/f/b/link", "/f/missing", "/f/nodir/x"];
    d.delete_files(&gone.map(String::from)).await.unwrap();
    for p in gone {
        assert!(d.stat(p).await.unwrap_err().is_not_found(), "{p}");
    }
    assert_eq!(&d.get_content("/f/b/other").await.unwrap()[..], b"keep");
    // Again: nothing there any more is still no error.
    d.delete_files(&gone.map(String::from)).await.unwrap();
    // `files_exist` answers in order; a folder, a missing file or one below a file is absent.
    assert!(d.files_exist(&[]).await.unwrap().is_empty());
    let asked = [
        "/f/b/other",
        "/f/a/link",
        "/f/b",
        "/f/e",
        "/f/c/below",
        "/f/c",
    ];
    assert_eq!(
        d.files_exist(&asked.map(String::from)).await.unwrap(),
        [true, false, false, true, false, true]
    );

    // `put_empty_files_unsynced`: new files (parents made), one replacing a file with content.
    d.put_empty_files_unsynced(&[]).await.unwrap();
    let marks = ["/f/m/one/tomb", "/f/m/two/tomb", "/f/b/other"];
    d.put_empty_files_unsynced(&marks.map(String::from))
        .await
        .unwrap();
    for p in marks {
        assert_eq!(d.stat_file(p).await.unwrap().size, 0, "{p}");
        assert!(d.get_content(p).await.unwrap().is_empty(), "{p}");
    }
    assert_eq!(
        d.files_exist(&marks.map(String::from)).await.unwrap(),
        [true, true, true]
    );
    d.put_content("/f/b/other", Bytes::from_static(b"keep"))
        .await
        .unwrap();
    d.delete_files(&["/f/m/one/tomb".into(), "/f/m/two/tomb".into()])
        .await
        .unwrap();
    d.prune_empty_dirs("/f/m").await.unwrap();

    let mut w = d.writer("/f/seg/data", true).await.unwrap();
    w.write(Bytes::from_static(b"12345")).await.unwrap();
    w.commit().await.unwrap();
    assert!(d.rename_files(&[]).await.unwrap().is_empty());
    let moves = [
        ("/f/c", "/f/dst/old", 3),
        ("/f/missing", "/f/x", 1),
        ("/f/seg/data", "/f/seg2/data", 5),
        ("/f/e", "/f/e2", 0),
    ]
    .map(|(a, b, n)| (a.to_owned(), b.to_owned(), n));
    assert_eq!(
        d.rename_files(&moves).await.unwrap(),
        [true, false, true, true]
    );
    assert_eq!(&d.get_content("/f/dst/old").await.unwrap()[..], b"ccc");
    assert_eq!(read_all(d, "/f/seg2/data", 0, None).await, b"12345");
    assert_eq!(d.stat("/f/e2").await.unwrap().size, 0);
    for p in ["/f/c", "/f/x", "/f/seg/data", "/f/e"] {
        assert!(d.stat(p).await.unwrap_err().is_not_found(), "{p}");
    }
    d.delete("/f").await.unwrap();
    assert!(d.walk("/f").await.unwrap().is_empty());
}

/// Every page of `list_page` (and `list_layout_folders_page` where offered) of size `n`, joined.
async fn all_pages(d: &dyn StorageDriver, path: &str, n: usize, folders: bool) -> Vec<String> {
    let (mut out, mut after): (Vec<String>, Option<String>) = (Vec::new(), None);
    loop {
        let page = if folders {
            match d
                .list_layout_folders_page(path, after.as_deref(), n)
                .await
                .unwrap()
            {
                Some(p) => p,
                None => return Vec::new(),
            }
        } else {
            d.list_page(path, after.as_deref(), n).await.unwrap()
        };
        assert!(page.names.len() <= n, "{path} n={n}: {page:?}");
        out.extend(page.names.iter().cloned());
        match (page.more, page.names.last()) {
            (true, Some(l)) => after = Some(l.clone()),
            _ => return out,
        }
    }
}

/// `list_page` pages through a folder in byte order whatever the backend's key order (`v1-rc/`
/// sorts before `v1/` as keys); `list_layout_folders_page` finds the folders holding `_` children.
async fn paged_listings(d: &dyn StorageDriver) {
    let names = [
        "a", "a-b", "a.c", "b", "v1", "v1-rc", "v1-rc.2", "v1.0", "z",
    ];
    for n in names {
        let path = format!("/lp/{n}/current/link");
        d.put_content(&path, Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    d.put_content("/lp/file", Bytes::from_static(b"f"))
        .await
        .unwrap();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.push("file".into());
    want.sort();
    for n in [1, 2, 3, 100] {
        assert_eq!(all_pages(d, "/lp", n, false).await, want, "n={n}");
    }
    let page = d.list_page("/lp", Some("v1"), 2).await.unwrap();
    assert_eq!(page.names, ["v1-rc", "v1-rc.2"]);
    assert!(page.more);
    let page = d.list_page("/lp", Some("v1.0"), 5).await.unwrap();
    assert_eq!(
        (page.names.as_slice(), page.more),
        (&["z".to_string()][..], false)
    );
    assert!(d.list_page("/lp", None, 0).await.unwrap().names.is_empty());
    assert!(d
        .list_page("/nothing", None, 5)
        .await
        .is_err_and(|e| e.is_not_found()));

    for p in [
        "/lf/a/_manifests/x",
        "/lf/a-b/_layers/x",
        "/lf/a/b/_layers/x",
        "/lf/a/b/_manifests/tags/_t/current/link",
        "/lf/n/x",
        "/lf/n/m/_uploads/u/data",
        "/lf/z.z/_manifests/y",
    ] {
        d.put_content(p, Bytes::from_static(b"x")).await.unwrap();
    }
    let folders = ["a", "a-b", "a/b", "n/m", "z.z"];
    if d.list_layout_folders_page("/lf", None, 1)
        .await
        .unwrap()
        .is_some()
    {
        for n in [1, 2, 10] {
            assert_eq!(all_pages(d, "/lf", n, true).await, folders, "n={n}");
        }
        let page = d
            .list_layout_folders_page("/lf", Some("a"), 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.names, ["a-b", "a/b"]);
    }
    d.delete("/lp").await.unwrap();
    d.delete("/lf").await.unwrap();
}

/// `direct_writer`, where the backend offers one: nothing visible before `commit` (not by stat,
/// list, walk or read), then the whole file at once, replacing the old one; `cancel`, `close`
/// and a dropped writer leave the old file (or nothing) as it was. Several parts and a small file.
async fn direct_writes(d: &dyn StorageDriver) {
    let Some(mut w) = d.direct_writer("/direct/a/data").await.unwrap() else {
        return;
    };
    let big = pattern(11 << 20, 8);
    write_all(w.as_mut(), &big, 1 << 20).await;
    assert_eq!(w.size(), big.len() as u64);
    assert!(d.stat("/direct/a/data").await.unwrap_err().is_not_found());
    assert!(d.list("/direct").await.unwrap_err().is_not_found());
    assert!(d.walk("/direct").await.unwrap().is_empty());
    w.commit().await.unwrap();
    assert_eq!(
        d.stat("/direct/a/data").await.unwrap().size,
        big.len() as u64
    );
    assert!(read_all(d, "/direct/a/data", 0, None).await == big);
    assert_eq!(d.list("/direct/a").await.unwrap(), ["data"]);

    // Replaced whole by a small one (one PUT), visible only after commit.
    let mut w = d.direct_writer("/direct/a/data").await.unwrap().unwrap();
    w.write(Bytes::from_static(b"small")).await.unwrap();
    assert_eq!(
        d.stat("/direct/a/data").await.unwrap().size,
        big.len() as u64
    );
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/direct/a/data", 0, None).await, b"small");

    // Abandoned three ways, after parts went out: the file stays as it was.
    for how in ["cancel", "close", "drop"] {
        let mut w = d.direct_writer("/direct/a/data").await.unwrap().unwrap();
        write_all(w.as_mut(), &big, 1 << 20).await;
        match how {
            "cancel" => w.cancel().await.unwrap(),
            "close" => w.close().await.unwrap(),
            _ => drop(w),
        }
        assert_eq!(
            read_all(d, "/direct/a/data", 0, None).await,
            b"small",
            "{how}"
        );
    }
    let mut w = d.direct_writer("/direct/b/data").await.unwrap().unwrap();
    write_all(w.as_mut(), &big, 1 << 20).await;
    w.cancel().await.unwrap();
    assert!(d.stat("/direct/b/data").await.unwrap_err().is_not_found());
    // Two writers of one (content-addressed) file at once with the same bytes, as two clients
    // pushing one blob: both commits succeed in either order, also when one commits between the
    // other's parts, and the file is those bytes.
    let half = big.len() / 2;
    for order in ["first-first", "second-first", "between-parts"] {
        let mut a = d.direct_writer("/direct/d/data").await.unwrap().unwrap();
        let mut b = d.direct_writer("/direct/d/data").await.unwrap().unwrap();
        write_all(a.as_mut(), &big[..half], 1 << 20).await;
        write_all(b.as_mut(), &big, 1 << 20).await;
        if order == "between-parts" {
            b.commit().await.unwrap();
            write_all(a.as_mut(), &big[half..], 1 << 20).await;
            a.commit().await.unwrap();
        } else {
            write_all(a.as_mut(), &big[half..], 1 << 20).await;
            if order == "first-first" {
                a.commit().await.unwrap();
                b.commit().await.unwrap();
            } else {
                b.commit().await.unwrap();
                a.commit().await.unwrap();
            }
        }
        assert!(
            read_all(d, "/direct/d/data", 0, None).await == big,
            "{order}"
        );
        d.delete("/direct/d/data").await.unwrap();
    }
    // Empty file.
    let w = d.direct_writer("/direct/c/data").await.unwrap().unwrap();
    w.commit().await.unwrap();
    assert_eq!(d.stat("/direct/c/data").await.unwrap().size, 0);
    d.delete("/direct").await.unwrap();
    let _ = d
        .abort_stale_writes("/direct", std::time::Duration::ZERO)
        .await;
}

/// `walk` finds every file below a folder with its size and time (a file still being written as
/// one file); `prune_empty_dirs` leaves every file in place.
async fn walk_and_prune(d: &dyn StorageDriver) {
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    for (p, data) in [
        ("/k/a/1", &b"one"[..]),
        ("/k/a/b/2", b"two!"),
        ("/k/c", b""),
        ("/kk/x", b"not below /k"),
    ] {
        d.put_content(p, Bytes::copy_from_slice(data))
            .await
            .unwrap();
    }
    let mut w = d.writer("/k/up/data", true).await.unwrap();
    w.write(Bytes::from_static(b"12345")).await.unwrap();
    w.close().await.unwrap();
    let mut found = d.walk("/k").await.unwrap();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let got: Vec<(&str, u64)> = found.iter().map(|e| (e.path.as_str(), e.size)).collect();
    assert_eq!(
        got,
        [
            ("/k/a/1", 3),
            ("/k/a/b/2", 4),
            ("/k/c", 0),
            ("/k/up/data", 5)
        ]
    );
    assert!(found.iter().all(|e| e.modified.is_some_and(|m| m > before)));
    assert!(d.walk("/nothing/here").await.unwrap().is_empty());

    d.delete("/k/a/b/2").await.unwrap();
    d.prune_empty_dirs("/k").await.unwrap();
    let mut left: Vec<String> = d
        .walk("/k")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    left.sort();
    assert_eq!(left, ["/k/a/1", "/k/c", "/k/up/data"]);
    assert!(d.stat("/k/a/b").await.is_err_and(|e| e.is_not_found()));
    d.delete("/k/a/1").await.unwrap();
    d.delete("/k/c").await.unwrap();
    // The batch form: folders that hold a file stay, missing ones are no error.
    d.prune_empty_dirs_of(&["/k/a".into(), "/k/up".into(), "/k/none".into()])
        .await
        .unwrap();
    assert_eq!(read_all(d, "/k/up/data", 0, None).await, b"12345");
    assert!(d.stat("/k/a").await.is_err_and(|e| e.is_not_found()));
    d.delete("/k/up").await.unwrap();
    d.prune_empty_dirs_of(&["/k".into()]).await.unwrap();
    assert!(d.stat("/k").await.is_err_and(|e| e.is_not_found()));
    assert!(d.walk("/k").await.unwrap().is_empty());
    d.delete("/kk").await.unwrap();
}

/// A writer that writes nothing still leaves a (empty) file: the empty blob's upload.
async fn empty_writer(d: &dyn StorageDriver) {
    let w = d.writer("/e/data", true).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(d.stat("/e/data").await.unwrap().size, 0);
    d.rename("/e/data", "/e2/data").await.unwrap();
    assert_eq!(d.stat("/e2/data").await.unwrap().size, 0);
    assert!(read_all(d, "/e2/data", 0, None).await.is_empty());
    let _ = d.delete("/e").await;
    d.delete("/e2").await.unwrap();
}

/// Runs the checks that need two instances of one driver over the same storage (two processes).
pub async fn run_shared(a: &dyn StorageDriver, b: &dyn StorageDriver) {
    cross_instance_writer(a, b).await;
}

/// Deterministic pseudo-random bytes (no two MiB alike, so misplaced parts show).
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

async fn write_all(w: &mut dyn super::FileWriter, data: &[u8], chunk: usize) {
    for c in data.chunks(chunk) {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
}

/// Many writers in a row, each below any multipart minimum, each closed (as chunked PATCHes of
/// a few hundred KiB are); then reads across their boundaries and a rename.
async fn small_appends(d: &dyn StorageDriver) {
    let data = pattern(23 * 300_000 + 17, 1);
    let mut off = 0;
    for (i, piece) in data.chunks(300_000).enumerate() {
        let mut w = d.writer("/s/data", true).await.unwrap();
        assert_eq!(w.size(), off as u64, "writer {i} starts at the end");
        write_all(w.as_mut(), piece, 65_536).await;
        off += piece.len();
        assert_eq!(w.size(), off as u64);
        w.close().await.unwrap();
        assert_eq!(d.stat("/s/data").await.unwrap().size, off as u64);
    }
    assert_eq!(read_all(d, "/s/data", 0, None).await, data);
    assert_eq!(
        read_all(d, "/s/data", 299_990, Some(600_020)).await,
        &data[299_990..900_010]
    );
    let mut names = d.list("/s").await.unwrap();
    names.sort();
    assert_eq!(names, ["data"]);
    let w = d.writer("/s/data", true).await.unwrap();
    w.commit().await.unwrap();
    d.rename("/s/data", "/s2/blob").await.unwrap();
    assert!(d.stat("/s/data").await.unwrap_err().is_not_found());
    assert_eq!(read_all(d, "/s2/blob", 0, None).await, data);
    d.delete("/s2").await.unwrap();
    let _ = d.delete("/s").await;
}

/// Writes big enough for several multipart parts, in sessions of different sizes, then a rename
/// (server-side assembly on object stores).
async fn large_writes_and_rename(d: &dyn StorageDriver) {
    let a = pattern(12 << 20, 2);
    let b = pattern(7 << 20, 3);
    let c = pattern(100, 4);
    let mut w = d.writer("/big/data", false).await.unwrap();
    write_all(w.as_mut(), &a, 1 << 16).await;
    w.close().await.unwrap();
    let mut w = d.writer("/big/data", true).await.unwrap();
    write_all(w.as_mut(), &b, 1_000_000).await;
    w.close().await.unwrap();
    let mut w = d.writer("/big/data", true).await.unwrap();
    w.write(Bytes::from(c.clone())).await.unwrap();
    w.commit().await.unwrap();
    let total = a.len() + b.len() + c.len();
    assert_eq!(d.stat("/big/data").await.unwrap().size, total as u64);
    let all: Vec<u8> = [a.as_slice(), &b, &c].concat();
    let start = a.len() - 10;
    assert_eq!(
        read_all(d, "/big/data", start as u64, Some(20)).await,
        &all[start..start + 20]
    );
    d.rename("/big/data", "/big2/x/data").await.unwrap();
    assert_eq!(d.stat("/big2/x/data").await.unwrap().size, total as u64);
    let got = read_all(d, "/big2/x/data", 0, None).await;
    assert!(got == all, "renamed content differs");
    assert!(d.stat("/big/data").await.unwrap_err().is_not_found());
    // A rename of a large whole file (copy of a single object).
    d.rename("/big2/x/data", "/big3/data").await.unwrap();
    assert_eq!(d.stat("/big3/data").await.unwrap().size, total as u64);
    let _ = d.delete("/big").await;
    let _ = d.delete("/big2").await;
    d.delete("/big3").await.unwrap();
}

/// An upload begun by one instance, continued by another, finished by the first.
async fn cross_instance_writer(a: &dyn StorageDriver, b: &dyn StorageDriver) {
    let p1 = pattern(1_500_000, 5);
    let p2 = pattern(6 << 20, 6);
    let p3 = pattern(333, 7);
    let mut w = a.writer("/x/data", true).await.unwrap();
    write_all(w.as_mut(), &p1, 1 << 16).await;
    w.close().await.unwrap();
    let mut w = b.writer("/x/data", true).await.unwrap();
    assert_eq!(w.size(), p1.len() as u64);
    write_all(w.as_mut(), &p2, 1 << 16).await;
    w.close().await.unwrap();
    assert_eq!(
        a.stat("/x/data").await.unwrap().size,
        (p1.len() + p2.len()) as u64
    );
    let mut w = a.writer("/x/data", true).await.unwrap();
    w.write(Bytes::from(p3.clone())).await.unwrap();
    w.commit().await.unwrap();
    let all: Vec<u8> = [p1.as_slice(), &p2, &p3].concat();
    assert!(read_all(b, "/x/data", 0, None).await == all);
    b.rename("/x/data", "/x2/data").await.unwrap();
    assert!(read_all(a, "/x2/data", 0, None).await == all);
    a.delete("/x").await.ok();
    a.delete("/x2").await.unwrap();
}

async fn content_round_trip(d: &dyn StorageDriver) {
    d.put_content("/a/b/c", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/b/c").await.unwrap()[..], b"one");
    d.put_content("/a/b/c", Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/b/c").await.unwrap()[..], b"second");
    let st = d.stat("/a/b/c").await.unwrap();
    assert_eq!(st.size, 6);
    assert!(!st.is_dir);
    assert!(d.stat("/a/b").await.unwrap().is_dir);
    d.put_content("/a/empty", Bytes::new()).await.unwrap();
    assert_eq!(d.stat("/a/empty").await.unwrap().size, 0);
    // The unsynced form creates parents and replaces, like put_content, and leaves no temporary
    // file in listings.
    d.put_content_unsynced("/a/u/v", Bytes::from_static(b"bookkeeping"))
        .await
        .unwrap();
    d.put_content_unsynced("/a/u/v", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/u/v").await.unwrap()[..], b"kept");
    assert_eq!(d.list("/a/u").await.unwrap(), vec!["v".to_string()]);
    d.delete("/a").await.unwrap();
}

async fn not_found(d: &dyn StorageDriver) {
    assert!(d.get_content("/nope").await.unwrap_err().is_not_found());
    assert!(d.stat("/nope/x").await.unwrap_err().is_not_found());
    assert!(d.read("/nope", 0, None).await.err().unwrap().is_not_found());
    assert!(d.list("/nope").await.unwrap_err().is_not_found());
    assert!(d.rename("/nope", "/x").await.unwrap_err().is_not_found());
    assert!(d.delete("/nope").await.unwrap_err().is_not_found());
}

async fn ranged_reads(d: &dyn StorageDriver) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    d.put_content("/r/data", Bytes::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(read_all(d, "/r/data", 0, None).await, data);
    assert_eq!(read_all(d, "/r/data", 10, Some(5)).await, &data[10..15]);
    assert_eq!(
        read_all(d, "/r/data", 2_999_990, None).await,
        &data[2_999_990..]
    );
    assert_eq!(
        read_all(d, "/r/data", 1_000_000, Some(1_500_000)).await,
        &data[1_000_000..2_500_000]
    );
    d.delete("/r").await.unwrap();
}

async fn writer_append_and_resume(d: &dyn StorageDriver) {
    let mut w = d.writer("/w/data", false).await.unwrap();
    assert_eq!(w.size(), 0);
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w.write(Bytes::from(vec![b'x'; 2 << 20])).await.unwrap();
    assert_eq!(w.size(), 6 + (2 << 20));
    w.close().await.unwrap();
    assert_eq!(d.stat("/w/data").await.unwrap().size, 6 + (2 << 20));
    // A second writer (as another process would) continues the file.
    let mut w = d.writer("/w/data", true).await.unwrap();
    assert_eq!(w.size(), 6 + (2 << 20));
    w.write(Bytes::from_static(b"world")).await.unwrap();
    w.commit().await.unwrap();
    let all = read_all(d, "/w/data", 0, None).await;
    assert_eq!(all.len(), 11 + (2 << 20));
    assert!(all.starts_with(b"hello x"));
    assert!(all.ends_with(b"xworld"));
    // A cancelled writer leaves what earlier writers persisted.
    let mut w = d.writer("/w/data", true).await.unwrap();
    w.write(Bytes::from_static(b"discard me")).await.unwrap();
    w.cancel().await.unwrap();
    assert_eq!(d.stat("/w/data").await.unwrap().size, 11 + (2 << 20));
    // Truncating writer starts over.
    let mut w = d.writer("/w/data", false).await.unwrap();
    w.write(Bytes::from_static(b"new")).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/w/data", 0, None).await, b"new");
    d.delete("/w").await.unwrap();
}

async fn listing(d: &dyn StorageDriver) {
    for p in ["/l/a/1", "/l/a/2", "/l/b", "/l/c/d/e"] {
        d.put_content(p, Bytes::from_static(b"x")).await.unwrap();
    }
    let mut names = d.list("/l").await.unwrap();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    let mut names = d.list("/l/a").await.unwrap();
    names.sort();
    assert_eq!(names, ["1", "2"]);
    d.delete("/l").await.unwrap();
}

async fn rename_replaces(d: &dyn StorageDriver) {
    d.put_content("/m/src", Bytes::from_static(b"new"))
        .await
        .unwrap();
    d.put_content("/m/dst/file", Bytes::from_static(b"old"))
        .await
        .unwrap();
    d.rename("/m/src", "/m/dst/file").await.unwrap();
    assert_eq!(&d.get_content("/m/dst/file").await.unwrap()[..], b"new");
    assert!(d.stat("/m/src").await.unwrap_err().is_not_found());
    d.rename("/m/dst/file", "/m/other/deep/file").await.unwrap();
    assert_eq!(
        &d.get_content("/m/other/deep/file").await.unwrap()[..],
        b"new"
    );
    d.delete("/m").await.unwrap();
}

async fn delete_tree(d: &dyn StorageDriver) {
    d.put_content("/t/x/1", Bytes::from_static(b"1"))
        .await
        .unwrap();
    d.put_content("/t/x/y/2", Bytes::from_static(b"2"))
        .await
        .unwrap();
    d.put_content("/t/z", Bytes::from_static(b"3"))
        .await
        .unwrap();
    d.delete("/t/x").await.unwrap();
    assert!(d.stat("/t/x/y/2").await.unwrap_err().is_not_found());
    assert_eq!(&d.get_content("/t/z").await.unwrap()[..], b"3");
    d.delete("/t/z").await.unwrap();
}

async fn invalid_paths(d: &dyn StorageDriver) {
    for p in ["relative", "/a/../b", "/a//b", "/", "/a/./b", ""] {
        assert!(
            matches!(d.get_content(p).await, Err(StorageError::InvalidPath(_))),
            "{p}"
        );
    }
}

#[tokio::test]
async fn filesystem_driver() {
    let dir = tempfile::tempdir().unwrap();
    let d = super::fs::FsDriver::new(dir.path()).unwrap();
    run_all(&d).await;
    let d2 = super::fs::FsDriver::new(dir.path()).unwrap();
    run_shared(&d, &d2).await;
}

#[tokio::test]
async fn memory_driver() {
    let d = super::memory::MemoryDriver::new();
    run_all(&d).await;
    run_shared(&d, &d.clone()).await;
}
