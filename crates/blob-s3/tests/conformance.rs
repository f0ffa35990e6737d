//! The same behaviours on the local disk, on S3 and on Swift: every test of the suite
//! runs once over [`LocalBlobStore`] (the reference), once over [`S3BlobStore`] on a
//! real S3 server on loopback (`s3s-fs`, see `support`) and once over
//! [`ObjectBlobStore::swift`] on a real single-node OpenStack Swift on loopback
//! (Debian's packages, see `support::swift`), through the whole files service (`Vfs` on
//! a real SQLite store) and through the `BlobStore` trait directly.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

mod support;
/// The files service's own test setup: one instance on SQLite.
#[path = "../../vfs/tests/support/mod.rs"]
mod vfs_support;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hearth_blob_s3::{ObjectBlobStore, S3BlobStore, S3Config, SwiftAuth, SwiftConfig};
use hearth_instances::Instance;
use hearth_vfs::{
    BlobRef, BlobStore, FileDoc, LocalBlobStore, NewDir, NewFile, Overwrite, Patch, Problem,
    TRASH_DIR_ID, Vfs, VfsError,
};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use support::S3Server;

const DOMAIN: &str = "a.localhost";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Local,
    S3,
    Swift,
}

struct Env {
    kind: Kind,
    vfs: Vfs,
    blobs: Arc<dyn BlobStore>,
    inst: Instance,
    s3: Option<S3Server>,
    /// Swift's container for this test.
    container: Option<String>,
    #[allow(dead_code)] // kept for debugging failures on the local disk
    files: PathBuf,
    _dir: tempfile::TempDir,
}

fn s3_store(server: &S3Server) -> S3BlobStore {
    let mut c = S3Config::new(support::BUCKET);
    c.endpoint = Some(server.endpoint.clone());
    c.access_key_id = Some(support::ACCESS_KEY.into());
    c.secret_access_key = Some(support::SECRET_KEY.into());
    // A prefix, as a bucket shared with something else would have.
    c.prefix = "node/".into();
    S3BlobStore::new(c).unwrap()
}

async fn env(kind: Kind) -> Env {
    let vfs_support::Base {
        store,
        inst,
        files,
        dir,
    } = vfs_support::instance(DOMAIN).await;
    let mut container = None;
    let (blobs, s3): (Arc<dyn BlobStore>, _) = match kind {
        Kind::Local => (Arc::new(LocalBlobStore::new(&files)), None),
        Kind::S3 => {
            let server = S3Server::start();
            let store = s3_store(&server);
            store.check().await.unwrap();
            (Arc::new(store), Some(server))
        }
        Kind::Swift => {
            let swift = support::swift::swift().unwrap();
            let name = swift.container().await;
            let mut c = SwiftConfig::new(
                name.clone(),
                SwiftAuth::new(
                    swift.auth_url.clone(),
                    support::swift::USER,
                    support::swift::KEY,
                ),
            );
            c.prefix = "node/".into();
            let store = ObjectBlobStore::swift(c).await.unwrap();
            store.check().await.unwrap();
            container = Some(name);
            (Arc::new(store), None)
        }
    };
    let vfs = Vfs::new(store, blobs.clone());
    Env {
        kind,
        vfs,
        blobs,
        inst,
        s3,
        container,
        files,
        _dir: dir,
    }
}

fn body(content: &[u8]) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin {
    // In pieces, as a request body arrives.
    let chunks: Vec<std::io::Result<Bytes>> = content
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks)
}

fn md5_b64(content: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(content))
}

/// Bytes that differ at every position (so a misplaced range shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + i / 251) as u8).wrapping_add(seed))
        .collect()
}

impl Env {
    async fn upload_in(&self, dir_id: &str, name: &str, content: &[u8]) -> FileDoc {
        let f = NewFile {
            name: name.into(),
            ..Default::default()
        };
        self.vfs
            .upload(&self.inst, dir_id, f, body(content))
            .await
            .unwrap()
    }

    /// An upload to the root with these attributes.
    async fn try_upload(&self, f: NewFile, content: &[u8]) -> Result<FileDoc, VfsError> {
        self.vfs.upload(&self.inst, "", f, body(content)).await
    }

    /// A PNG uploaded to the root.
    async fn upload_png(&self, name: &str, png: &[u8]) -> FileDoc {
        let f = NewFile {
            name: name.into(),
            content_type: Some("image/png".into()),
            ..Default::default()
        };
        self.try_upload(f, png).await.unwrap()
    }

    async fn upload(&self, name: &str, content: &[u8]) -> FileDoc {
        self.upload_in("", name, content).await
    }

    async fn read(&self, doc: &FileDoc, offset: u64, len: Option<u64>) -> Vec<u8> {
        let mut r = self.vfs.open(&self.inst, doc, offset, len).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    async fn content(&self, id: &str) -> Vec<u8> {
        let doc = self.vfs.get(&self.inst, id).await.unwrap();
        self.read(&doc, 0, None).await
    }

    async fn overwrite(&self, id: &str, content: &[u8]) -> FileDoc {
        self.vfs
            .overwrite(&self.inst, id, Overwrite::default(), body(content))
            .await
            .unwrap()
    }

    async fn read_version(&self, file_id: &str, version: &str) -> std::io::Result<Vec<u8>> {
        let mut r = self.blobs.open_version(DOMAIN, file_id, version).await?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn temps(&self) -> usize {
        self.blobs.temp_count(DOMAIN).await.unwrap()
    }

    async fn stored(&self, doc: &FileDoc) -> Option<u64> {
        self.blobs.stat(doc.blob(DOMAIN)).await.unwrap()
    }

    /// Sealed content of a temporary blob.
    async fn sealed(&self, content: &[u8]) -> hearth_vfs::Sealed {
        let mut t = self.blobs.create_temp(DOMAIN).await.unwrap();
        for c in content.chunks(100_000) {
            t.write(c).await.unwrap();
        }
        t.seal().await.unwrap()
    }

    /// What the S3 server holds on its disk, or every object of the Swift container
    /// (nothing for the local store).
    async fn server_files(&self) -> Vec<String> {
        if let Some(c) = &self.container {
            return support::swift::swift().unwrap().objects(c).await;
        }
        self.s3
            .as_ref()
            .map(S3Server::files_on_disk)
            .unwrap_or_default()
    }
}

async fn read_all(mut r: hearth_vfs::BlobReader) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    }));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Each test of the suite, once per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::env(super::Kind::Local).await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::env(super::Kind::S3).await).await;
                }
            )*
        }
        mod swift {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if crate::support::swift::swift().is_none() {
                        return;
                    }
                    super::$name(super::env(super::Kind::Swift).await).await;
                }
            )*
        }
    };
}

suite!(
    upload_and_download,
    large_upload_in_parts,
    overwrite_keeps_versions,
    moves_trash_and_restore,
    destroy_and_empty_trash,
    quota,
    refused_uploads_leave_nothing,
    thumbnails,
    import_files_and_versions,
    clear_removes_everything,
    fsck,
    commit_new_refuses_existing_content,
    open_ranges,
    temp_dropped_before_seal_leaves_nothing,
    versions_through_the_trait,
    replace_and_restore,
);

async fn upload_and_download(e: Env) {
    let doc = e.upload("hello.txt", b"hello, world").await;
    assert_eq!(doc.size(), 12);
    assert_eq!(doc.md5sum(), md5_b64(b"hello, world"));
    assert_eq!(e.content(&doc.id).await, b"hello, world");
    assert_eq!(e.read(&doc, 7, Some(5)).await, b"world");
    assert_eq!(e.stored(&doc).await, Some(12));
    // An empty file.
    let empty = e.upload("empty", b"").await;
    assert_eq!(e.content(&empty.id).await, b"");
    assert_eq!(e.stored(&empty).await, Some(0));
    // The same name again is refused, and nothing is left of the refused upload.
    let err = e
        .try_upload(
            NewFile {
                name: "hello.txt".into(),
                ..Default::default()
            },
            b"other",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::Exists), "{err:?}");
    assert_eq!(e.temps().await, 0);
    assert_eq!(e.content(&doc.id).await, b"hello, world");
    assert_eq!(e.vfs.usage(&e.inst).await.unwrap().total(), 12);
}

async fn large_upload_in_parts(e: Env) {
    // Larger than one 8 MiB part: a multipart upload on S3.
    let content = pattern(9 * 1024 * 1024 + 12_345, 7);
    let doc = e.upload("big.bin", &content).await;
    assert_eq!(doc.size(), content.len() as u64);
    assert_eq!(doc.md5sum(), md5_b64(&content));
    assert!(e.content(&doc.id).await == content);
    // A range across the boundary of the parts.
    let start = 8 * 1024 * 1024 - 100;
    assert!(e.read(&doc, start as u64, Some(300)).await == content[start..start + 300]);
    assert_eq!(e.temps().await, 0);
    // Overwritten by large content too: the former one becomes a version.
    let next = pattern(9 * 1024 * 1024, 9);
    let new = e.overwrite(&doc.id, &next).await;
    assert!(e.content(&new.id).await == next);
    assert!(e.read_version(&doc.id, &doc.rev).await.unwrap() == content);
    assert!(e.vfs.fsck(&e.inst).await.unwrap().is_empty());
    if e.kind == Kind::Swift {
        // Committed as plain objects: no segment stays.
        let left = e.server_files().await;
        assert!(
            left.iter().all(|f| !f.starts_with(".segments/")),
            "{left:?}"
        );
    }
}

async fn overwrite_keeps_versions(e: Env) {
    let v1 = e.upload("notes.txt", b"one").await;
    let v2 = e.overwrite(&v1.id, b"two!").await;
    let v3 = e.overwrite(&v1.id, b"three").await;
    assert_eq!(e.content(&v1.id).await, b"three");
    assert_eq!(v3.size(), 5);
    let versions = e.vfs.versions_of(&e.inst, &v1.id).await.unwrap();
    let ids: Vec<&str> = versions
        .iter()
        .map(|v| v["_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            format!("{}/{}", v1.id, v1.rev),
            format!("{}/{}", v1.id, v2.rev)
        ]
    );
    assert_eq!(e.read_version(&v1.id, &v1.rev).await.unwrap(), b"one");
    assert_eq!(e.read_version(&v1.id, &v2.rev).await.unwrap(), b"two!");
    let usage = e.vfs.usage(&e.inst).await.unwrap();
    assert_eq!((usage.files, usage.versions), (5, 7));
    // A stale If-Match is refused and changes nothing.
    let err = e
        .vfs
        .overwrite(
            &e.inst,
            &v1.id,
            Overwrite {
                if_match: Some(v1.rev.clone()),
                ..Default::default()
            },
            body(b"stale"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::RevMismatch), "{err:?}");
    assert_eq!(e.content(&v1.id).await, b"three");
    assert_eq!(e.temps().await, 0);
    // The usage recounted from scratch agrees.
    e.vfs.forget_usage(&e.inst);
    let usage = e.vfs.usage(&e.inst).await.unwrap();
    assert_eq!((usage.files, usage.versions), (5, 7));
}

async fn moves_trash_and_restore(e: Env) {
    let dir = e
        .vfs
        .create_dir(
            &e.inst,
            "",
            NewDir {
                name: "docs".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sub = e
        .vfs
        .create_dir(
            &e.inst,
            &dir.id,
            NewDir {
                name: "sub".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let a = e.upload_in(&sub.id, "a.txt", b"aaa").await;
    let b = e.upload("b.txt", b"bbbb").await;
    // Rename and move: the content follows.
    let b = e
        .vfs
        .patch(
            &e.inst,
            &b.id,
            Patch {
                name: Some("b2.txt".into()),
                dir_id: Some(dir.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(b.path, "/docs/b2.txt");
    assert_eq!(e.content(&b.id).await, b"bbbb");
    let renamed = e
        .vfs
        .patch(
            &e.inst,
            &dir.id,
            Patch {
                name: Some("papers".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.path, "/papers");
    let got = e
        .vfs
        .get_by_path(&e.inst, "/papers/sub/a.txt")
        .await
        .unwrap();
    assert_eq!(got.id, a.id);
    assert_eq!(e.read(&got, 0, None).await, b"aaa");
    // The trash: a directory with what is inside.
    let trashed = e.vfs.trash(&e.inst, &dir.id, None).await.unwrap();
    assert_eq!(trashed.dir_id(), TRASH_DIR_ID);
    let in_trash = e.vfs.get(&e.inst, &a.id).await.unwrap();
    assert!(in_trash.in_trash());
    assert_eq!(e.read(&in_trash, 0, None).await, b"aaa");
    assert!(e.vfs.fsck(&e.inst).await.unwrap().is_empty());
    let restored = e.vfs.restore(&e.inst, &dir.id).await.unwrap();
    assert_eq!(restored.path, "/papers");
    let back = e.vfs.get(&e.inst, &a.id).await.unwrap();
    assert!(!back.in_trash());
    assert_eq!(back.path, "/papers/sub/a.txt");
    assert_eq!(e.read(&back, 0, None).await, b"aaa");
    // A file alone.
    e.vfs.trash(&e.inst, &b.id, None).await.unwrap();
    let b = e.vfs.restore(&e.inst, &b.id).await.unwrap();
    assert_eq!(b.path, "/papers/b2.txt");
    assert_eq!(e.content(&b.id).await, b"bbbb");
    assert!(e.vfs.fsck(&e.inst).await.unwrap().is_empty());
}

async fn destroy_and_empty_trash(e: Env) {
    let f = e.upload("f.txt", b"first").await;
    e.overwrite(&f.id, b"second").await;
    let dir = e
        .vfs
        .create_dir(
            &e.inst,
            "",
            NewDir {
                name: "d".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let g = e.upload_in(&dir.id, "g.txt", b"gg").await;
    let h = e.upload("h.txt", b"hhh").await;
    // Destroying needs the trash first when asked.
    let err = e.vfs.destroy(&e.inst, &f.id, None, true).await.unwrap_err();
    assert!(matches!(err, VfsError::BadRequest(_)), "{err:?}");
    e.vfs.trash(&e.inst, &f.id, None).await.unwrap();
    e.vfs.destroy(&e.inst, &f.id, None, true).await.unwrap();
    assert_eq!(e.stored(&f).await, None);
    assert!(e.read_version(&f.id, &f.rev).await.is_err());
    assert!(e.vfs.versions_of(&e.inst, &f.id).await.unwrap().is_empty());
    // Emptying the trash removes what is below a trashed directory too.
    e.vfs.trash(&e.inst, &dir.id, None).await.unwrap();
    e.vfs.trash(&e.inst, &h.id, None).await.unwrap();
    e.vfs.empty_trash(&e.inst).await.unwrap();
    assert_eq!(e.stored(&g).await, None);
    assert_eq!(e.stored(&h).await, None);
    assert!(matches!(
        e.vfs.get(&e.inst, &g.id).await,
        Err(VfsError::NotFound(_))
    ));
    assert_eq!(e.vfs.usage(&e.inst).await.unwrap().total(), 0);
    e.vfs.forget_usage(&e.inst);
    assert_eq!(e.vfs.usage(&e.inst).await.unwrap().total(), 0);
    assert!(e.vfs.fsck(&e.inst).await.unwrap().is_empty());
    assert_eq!(
        e.blobs
            .list(DOMAIN)
            .await
            .unwrap()
            .iter()
            .filter(|x| !x.is_dir)
            .count(),
        0
    );
}

async fn quota(mut e: Env) {
    e.inst.disk_quota = Some(100);
    e.upload("sixty", &[1u8; 60]).await;
    // Announced too large: refused before reading.
    let err = e
        .try_upload(
            NewFile {
                name: "announced".into(),
                size: Some(50),
                ..Default::default()
            },
            &[2u8; 50],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::QuotaExceeded), "{err:?}");
    // Too large while streaming.
    let err = e
        .try_upload(
            NewFile {
                name: "streamed".into(),
                ..Default::default()
            },
            &[3u8; 41],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::QuotaExceeded), "{err:?}");
    // Fits exactly.
    e.upload("forty", &[4u8; 40]).await;
    assert_eq!(e.vfs.usage(&e.inst).await.unwrap().total(), 100);
    assert_eq!(e.temps().await, 0);
    assert_eq!(
        e.blobs
            .list(DOMAIN)
            .await
            .unwrap()
            .iter()
            .filter(|x| !x.is_dir)
            .count(),
        2
    );
}

async fn refused_uploads_leave_nothing(e: Env) {
    let err = e
        .try_upload(
            NewFile {
                name: "x".into(),
                md5: Some(Md5::digest(b"something else").into()),
                ..Default::default()
            },
            b"content",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::Md5Mismatch), "{err:?}");
    let err = e
        .try_upload(
            NewFile {
                name: "y".into(),
                size: Some(3),
                ..Default::default()
            },
            b"content",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::SizeMismatch { .. }), "{err:?}");
    let f = e.upload("z", b"zzz").await;
    let err = e
        .vfs
        .overwrite(
            &e.inst,
            &f.id,
            Overwrite {
                md5: Some([0; 16]),
                ..Default::default()
            },
            body(b"new"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::Md5Mismatch), "{err:?}");
    assert_eq!(e.content(&f.id).await, b"zzz");
    assert!(e.vfs.versions_of(&e.inst, &f.id).await.unwrap().is_empty());
    assert_eq!(e.temps().await, 0);
    let files: Vec<_> = e
        .blobs
        .list(DOMAIN)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| !x.is_dir)
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

async fn thumbnails(e: Env) {
    let f = e.upload_png("pic.png", &png(1200, 800)).await;
    assert!(!e.vfs.has_thumbnails(&e.inst, &f.id).await.unwrap());
    assert!(e.vfs.make_thumbnails(&e.inst, &f.id).await.unwrap());
    for (format, width) in [("small", 640), ("medium", 1200), ("large", 1200)] {
        let t = e.vfs.open_thumbnail(&e.inst, &f.id, format).await.unwrap();
        let size = t.size;
        let bytes = read_all(t.reader).await;
        assert_eq!(bytes.len() as u64, size);
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!(
            image::guess_format(&bytes).unwrap(),
            image::ImageFormat::Jpeg
        );
        assert!(img.width() <= width, "{format}: {}", img.width());
    }
    // Replaced atomically when made again.
    assert!(e.vfs.make_thumbnails(&e.inst, &f.id).await.unwrap());
    // New content: the old thumbnails go.
    e.vfs
        .overwrite(
            &e.inst,
            &f.id,
            Overwrite {
                content_type: Some("image/png".into()),
                ..Default::default()
            },
            body(&png(300, 200)),
        )
        .await
        .unwrap();
    assert!(!e.vfs.has_thumbnails(&e.inst, &f.id).await.unwrap());
    assert!(e.vfs.make_thumbnails(&e.inst, &f.id).await.unwrap());
    assert!(e.vfs.has_thumbnails(&e.inst, &f.id).await.unwrap());
    // Destroyed with the file.
    e.vfs.destroy(&e.inst, &f.id, None, false).await.unwrap();
    assert!(!e.vfs.has_thumbnails(&e.inst, &f.id).await.unwrap());
    let err = e
        .blobs
        .open_thumb(DOMAIN, &f.id, "small")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

fn object(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap()
}

async fn import_files_and_versions(e: Env) {
    let before = e.upload("before.txt", b"gone after the clear").await;
    e.vfs.clear(&e.inst).await.unwrap();
    // The content goes; the documents are the caller's to delete.
    assert_eq!(e.stored(&before).await, None);
    e.vfs
        .import_dir(
            &e.inst,
            object(json!({"_id": "dir1", "type": "directory", "name": "Imported"})),
        )
        .await
        .unwrap();
    let content = b"imported content";
    let doc = object(json!({
        "_id": "file1", "type": "file", "name": "f.txt", "dir_id": "dir1",
        "size": content.len(), "md5sum": md5_b64(content), "mime": "text/plain",
        "class": "text",
    }));
    let mut batch = hearth_vfs::ImportBatch::default();
    e.vfs
        .import_file(&e.inst, doc.clone(), body(content), &mut batch)
        .await
        .unwrap();
    // The content is in place; the document waits for the batch to be written.
    assert_eq!(batch.len(), 1);
    // The same id again, before the flush: refused, the content unchanged.
    let mut again = doc.clone();
    again.insert("name".into(), json!("other.txt"));
    let err = e
        .vfs
        .import_file(&e.inst, again.clone(), body(content), &mut batch)
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::Exists), "{err:?}");
    assert_eq!(e.vfs.flush_import(&e.inst, &mut batch).await.unwrap(), 1);
    let f = e.vfs.get(&e.inst, "file1").await.unwrap();
    assert_eq!(f.path, "/Imported/f.txt");
    assert_eq!(e.content("file1").await, content);
    // And after it: refused, by the store keyed by id at once, by the local disk
    // (keyed by path) when the batch is written.
    match e
        .vfs
        .import_file(&e.inst, again, body(content), &mut batch)
        .await
    {
        Err(VfsError::Exists) => {}
        Err(other) => panic!("{other:?}"),
        Ok(()) => {
            let err = e.vfs.flush_import(&e.inst, &mut batch).await.unwrap_err();
            assert!(matches!(err, VfsError::BadRequest(_)), "{err:?}");
        }
    }
    assert_eq!(e.content("file1").await, content);
    e.vfs.sync_imported(&e.inst).await.unwrap();
    // Content that does not match the document: refused.
    let err = e
        .vfs
        .import_file(
            &e.inst,
            object(json!({
                "_id": "file2", "type": "file", "name": "g.txt", "dir_id": "dir1",
                "size": 3, "md5sum": md5_b64(b"abc"),
            })),
            body(b"xyz"),
            &mut batch,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::Md5Mismatch), "{err:?}");
    // Old versions with their content.
    let old = b"older content";
    let v = object(json!({
        "_id": "file1/1-aaaa", "size": old.len(), "md5sum": md5_b64(old),
    }));
    e.vfs
        .import_version(&e.inst, v.clone(), body(old))
        .await
        .unwrap();
    assert_eq!(e.read_version("file1", "1-aaaa").await.unwrap(), old);
    let err = e
        .vfs
        .import_version(&e.inst, v, body(old))
        .await
        .unwrap_err();
    assert!(matches!(err, VfsError::Exists), "{err:?}");
    assert_eq!(e.vfs.versions_of(&e.inst, "file1").await.unwrap().len(), 1);
    let usage = e.vfs.usage(&e.inst).await.unwrap();
    assert_eq!(
        (usage.files, usage.versions),
        (before.size() + content.len() as u64, old.len() as u64)
    );
    // The refused version's temporary blob is gone too.
    assert_eq!(e.temps().await, 0);
}

async fn clear_removes_everything(e: Env) {
    let f = e.upload_png("p.png", &png(64, 64)).await;
    let f2 = e.overwrite(&f.id, &png(80, 80)).await;
    assert!(e.vfs.make_thumbnails(&e.inst, &f.id).await.unwrap());
    // An upload in progress.
    let sealed = e.sealed(b"pending").await;
    assert_eq!(e.temps().await, 1);
    e.vfs.clear(&e.inst).await.unwrap();
    assert_eq!(e.temps().await, 0);
    assert_eq!(e.stored(&f2).await, None);
    assert!(e.read_version(&f.id, &f.rev).await.is_err());
    assert!(e.blobs.open_thumb(DOMAIN, &f.id, "small").await.is_err());
    let left: Vec<_> = e
        .blobs
        .list(DOMAIN)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.path != hearth_vfs::TRASH_PATH)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    e.blobs.discard(DOMAIN, sealed).await;
    if e.kind != Kind::Local {
        assert!(e.server_files().await.iter().all(|p| !p.contains("files/")));
    }
}

async fn fsck(e: Env) {
    let a = e.upload("a.txt", b"aaaa").await;
    let b = e.upload("b.txt", b"bbbb").await;
    e.overwrite(&b.id, b"bbbbbb").await;
    assert_eq!(e.vfs.fsck(&e.inst).await.unwrap(), Vec::<Problem>::new());
    // Content no document describes.
    let sealed = e.sealed(b"stray").await;
    e.blobs
        .commit_new(
            sealed,
            BlobRef {
                domain: DOMAIN,
                file_id: "stray-id",
                path: "/stray",
            },
        )
        .await
        .unwrap();
    // A document whose content is missing.
    e.blobs.remove(a.blob(DOMAIN)).await.unwrap();
    let problems = e.vfs.fsck(&e.inst).await.unwrap();
    let mut kinds: Vec<&str> = problems.iter().map(Problem::kind).collect();
    kinds.sort();
    assert_eq!(kinds, ["missing_content", "orphan_file"], "{problems:?}");
    for p in &problems {
        match p {
            Problem::MissingContent { id, path } => {
                assert_eq!((id.as_str(), path.as_str()), (a.id.as_str(), "/a.txt"));
            }
            Problem::OrphanFile { path, size } => {
                // The path on the local disk, the id on a store keyed by id.
                let expected = if e.blobs.keyed_by_id() {
                    "stray-id"
                } else {
                    "/stray"
                };
                assert_eq!((path.as_str(), *size), (expected, 5));
            }
            p => panic!("{p:?}"),
        }
    }
}

async fn commit_new_refuses_existing_content(e: Env) {
    let at = BlobRef {
        domain: DOMAIN,
        file_id: "f1",
        path: "/f1",
    };
    let first = e.sealed(b"first").await;
    assert_eq!(first.size, 5);
    e.blobs.commit_new(first, at).await.unwrap();
    let second = e.sealed(b"second").await;
    let err = e.blobs.commit_new(second, at).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(
        read_all(e.blobs.open(at, 0, None).await.unwrap()).await,
        b"first"
    );
    // The refused temporary blob is gone.
    assert_eq!(e.temps().await, 0);
    // Discarding a sealed blob removes it.
    let third = e.sealed(b"third").await;
    e.blobs.discard(DOMAIN, third).await;
    assert_eq!(e.temps().await, 0);
    // Missing content.
    let missing = BlobRef {
        domain: DOMAIN,
        file_id: "nothing",
        path: "/nothing",
    };
    assert_eq!(e.blobs.stat(missing).await.unwrap(), None);
    let err = e.blobs.open(missing, 0, None).await.err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    e.blobs.remove(missing).await.unwrap();
}

async fn open_ranges(e: Env) {
    let content = pattern(100_000, 3);
    let at = BlobRef {
        domain: DOMAIN,
        file_id: "r1",
        path: "/r1",
    };
    let sealed = e.sealed(&content).await;
    e.blobs.commit_new(sealed, at).await.unwrap();
    let read = |offset: u64, len: Option<u64>| {
        let blobs = e.blobs.clone();
        async move { read_all(blobs.open(at, offset, len).await.unwrap()).await }
    };
    assert!(read(0, None).await == content);
    assert!(read(10, Some(20)).await == content[10..30]);
    assert!(read(99_990, None).await == content[99_990..]);
    // A length past the end stops at the end; an offset past it reads nothing.
    assert!(read(99_990, Some(1000)).await == content[99_990..]);
    assert!(read(100_000, None).await.is_empty());
    assert!(read(200_000, Some(5)).await.is_empty());
    assert!(read(5, Some(0)).await.is_empty());
    assert_eq!(e.blobs.stat(at).await.unwrap(), Some(100_000));
}

async fn temp_dropped_before_seal_leaves_nothing(e: Env) {
    // Small: nothing sent yet on S3.
    let mut t = e.blobs.create_temp(DOMAIN).await.unwrap();
    t.write(b"abandoned").await.unwrap();
    drop(t);
    assert_eq!(e.temps().await, 0);
    // Larger than two parts: a multipart upload has begun (OpenDAL sends a part once
    // the next one is full), and is aborted.
    let mut t = e.blobs.create_temp(DOMAIN).await.unwrap();
    let chunk = pattern(1024 * 1024, 1);
    for _ in 0..17 {
        t.write(&chunk).await.unwrap();
    }
    if e.kind != Kind::Local {
        // The first part (S3) or segment (Swift) reaches the server (sent in the
        // background).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !e
            .server_files()
            .await
            .iter()
            .any(|f| f.contains("part") || f.starts_with(".segments/"))
        {
            assert!(Instant::now() < deadline, "no part on the server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(t);
    assert_eq!(e.temps().await, 0);
    if e.kind != Kind::Local {
        // The abort runs in the background: the server's disk empties soon.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = e.server_files().await;
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "left on the server: {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn versions_through_the_trait(e: Env) {
    let sealed = e.sealed(b"version one").await;
    e.blobs
        .commit_version(sealed, DOMAIN, "vf", "1-abc")
        .await
        .unwrap();
    assert_eq!(e.read_version("vf", "1-abc").await.unwrap(), b"version one");
    let again = e.sealed(b"other").await;
    let err = e
        .blobs
        .commit_version(again, DOMAIN, "vf", "1-abc")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(e.read_version("vf", "1-abc").await.unwrap(), b"version one");
    let sealed = e.sealed(b"version two").await;
    e.blobs
        .commit_version(sealed, DOMAIN, "vf", "2-def")
        .await
        .unwrap();
    let err = e.read_version("vf", "3-nope").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    e.blobs
        .remove_versions(DOMAIN, "vf", Some("1-abc"))
        .await
        .unwrap();
    assert!(e.read_version("vf", "1-abc").await.is_err());
    assert_eq!(e.read_version("vf", "2-def").await.unwrap(), b"version two");
    e.blobs.remove_versions(DOMAIN, "vf", None).await.unwrap();
    assert!(e.read_version("vf", "2-def").await.is_err());
    // Removing what is not there is fine.
    e.blobs.remove_versions(DOMAIN, "vf", None).await.unwrap();
    e.blobs
        .remove_versions(DOMAIN, "vf", Some("9-x"))
        .await
        .unwrap();
    // Bad names are refused, not turned into other keys.
    for bad in ["..", "a/b", ""] {
        let s = e.sealed(b"x").await;
        assert!(e.blobs.commit_version(s, DOMAIN, "vf", bad).await.is_err());
    }
}

async fn replace_and_restore(e: Env) {
    let at = BlobRef {
        domain: DOMAIN,
        file_id: "rf",
        path: "/rf",
    };
    // Replacing missing content keeps nothing.
    let s = e.sealed(b"v1").await;
    assert!(!e.blobs.commit_replace(s, at, Some("1-a")).await.unwrap());
    let s = e.sealed(b"v2").await;
    assert!(e.blobs.commit_replace(s, at, Some("2-b")).await.unwrap());
    assert_eq!(
        read_all(e.blobs.open(at, 0, None).await.unwrap()).await,
        b"v2"
    );
    assert_eq!(e.read_version("rf", "2-b").await.unwrap(), b"v1");
    // Without keeping.
    let s = e.sealed(b"v3").await;
    assert!(!e.blobs.commit_replace(s, at, None).await.unwrap());
    assert_eq!(
        read_all(e.blobs.open(at, 0, None).await.unwrap()).await,
        b"v3"
    );
    // Undo: the version is the content again, and is no more a version.
    e.blobs.restore_version(at, "2-b").await.unwrap();
    assert_eq!(
        read_all(e.blobs.open(at, 0, None).await.unwrap()).await,
        b"v1"
    );
    assert!(e.read_version("rf", "2-b").await.is_err());
    assert_eq!(e.temps().await, 0);
    // Directories and renames exist on the local disk only; both stores accept them.
    e.blobs.mkdir(DOMAIN, "/somewhere").await.unwrap();
    e.blobs
        .rename(DOMAIN, "/somewhere", "/elsewhere")
        .await
        .unwrap();
    e.blobs.remove_dir(DOMAIN, "/elsewhere").await.unwrap();
    assert_eq!(
        read_all(e.blobs.open(at, 0, None).await.unwrap()).await,
        b"v1"
    );
}

/// Tokens expire (after [`support::swift::TOKEN_LIFE_SECS`] here): the store logs in
/// again when Swift answers 401, during an upload too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_logs_in_again_when_the_token_expires() {
    if support::swift::swift().is_none() {
        return;
    }
    let e = env(Kind::Swift).await;
    let doc = e.upload("a.txt", b"before").await;
    let wait = Duration::from_secs(support::swift::TOKEN_LIFE_SECS + 1);
    tokio::time::sleep(wait).await;
    assert_eq!(e.content(&doc.id).await, b"before");
    let mut t = e.blobs.create_temp(DOMAIN).await.unwrap();
    let chunk = pattern(1024 * 1024, 3);
    for _ in 0..9 {
        t.write(&chunk).await.unwrap();
    }
    tokio::time::sleep(wait).await;
    for _ in 0..9 {
        t.write(&chunk).await.unwrap();
    }
    let sealed = t.seal().await.unwrap();
    assert_eq!(sealed.size, 18 * 1024 * 1024);
    e.blobs
        .commit_new(
            sealed,
            BlobRef {
                domain: DOMAIN,
                file_id: "big",
                path: "/big",
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(wait).await;
    let r = e
        .blobs
        .open(
            BlobRef {
                domain: DOMAIN,
                file_id: "big",
                path: "/big",
            },
            0,
            None,
        )
        .await
        .unwrap();
    assert_eq!(read_all(r).await.len(), 18 * 1024 * 1024);
    assert!(
        e.server_files()
            .await
            .iter()
            .all(|f| !f.starts_with(".segments/"))
    );
}
