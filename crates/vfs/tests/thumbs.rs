//! Thumbnails on a real SQLite store and real files on disk: sizes, orientation,
//! transparency, what is not an image, corrupt and oversized images, and their removal
//! with the file or its content.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hearth_instances::Instance;
use hearth_store::StoreError;
use hearth_vfs::{FileDoc, LocalBlobStore, NewDir, NewFile, Overwrite, Vfs, VfsError};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use tokio::io::AsyncReadExt;

struct Env {
    vfs: Vfs,
    inst: Instance,
    files: PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let support::Base {
        store,
        inst,
        files,
        dir,
    } = support::instance("a.localhost").await;
    let vfs = Vfs::new(store, Arc::new(LocalBlobStore::new(&files)));
    Env {
        vfs,
        inst,
        files,
        _dir: dir,
    }
}

impl Env {
    async fn upload(&self, name: &str, mime: &str, content: Vec<u8>) -> FileDoc {
        let f = NewFile {
            name: name.into(),
            content_type: Some(mime.into()),
            ..Default::default()
        };
        let body = futures_util::stream::iter([Ok(Bytes::from(content))]);
        self.vfs.upload(&self.inst, "", f, body).await.unwrap()
    }

    async fn thumb(&self, id: &str, format: &str) -> Vec<u8> {
        let t = self
            .vfs
            .open_thumbnail(&self.inst, id, format)
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut r = t.reader;
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len() as u64, t.size);
        out
    }

    async fn dims(&self, id: &str, format: &str) -> (u32, u32) {
        let bytes = self.thumb(id, format).await;
        assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Jpeg);
        let img = image::load_from_memory(&bytes).unwrap();
        (img.width(), img.height())
    }

    fn thumbs_dir(&self) -> PathBuf {
        self.files.join("a.localhost").join(".cozy_thumbs")
    }

    /// The thumbnail files stored (temporary ones included).
    fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.thumbs_dir()) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    async fn make(&self, id: &str) -> Result<bool, VfsError> {
        self.vfs.make_thumbnails(&self.inst, id).await
    }
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn gradient(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    }))
}

fn png(w: u32, h: u32) -> Vec<u8> {
    encode(gradient(w, h), ImageFormat::Png)
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode(gradient(w, h), ImageFormat::Jpeg)
}

/// A JPEG with an EXIF orientation (APP1 right after SOI).
fn jpeg_with_orientation(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    let plain = jpeg(w, h);
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes()); // first IFD
    tiff.extend(1u16.to_le_bytes()); // one entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = plain[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend(app1);
    out.extend(&plain[2..]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A PNG whose header claims `w`×`h` (RGB, 8 bits per sample; RGBA 16 bits with
/// `deep`) with almost no data: what a decompression bomb starts with.
fn png_header_only(w: u32, h: u32, deep: bool) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend(if deep {
        [16, 6, 0, 0, 0]
    } else {
        [8, 2, 0, 0, 0]
    });
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib of nothing much: a stored empty final block.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_png_and_small_jpeg() {
    let e = env().await;
    let big = e.upload("big.png", "image/png", png(3000, 2000)).await;
    assert!(!e.vfs.has_thumbnails(&e.inst, &big.id).await.unwrap());
    assert!(e.make(&big.id).await.unwrap());
    assert!(e.vfs.has_thumbnails(&e.inst, &big.id).await.unwrap());
    assert_eq!(e.dims(&big.id, "large").await, (1620, 1080));
    assert_eq!(e.dims(&big.id, "medium").await, (1080, 720));
    assert_eq!(e.dims(&big.id, "small").await, (640, 427));
    assert_eq!(
        e.thumb(&big.id, "tiny").await,
        e.thumb(&big.id, "small").await
    );
    // The picture survives: the top-left corner is dark, the bottom-right is not.
    let small = image::load_from_memory(&e.thumb(&big.id, "small").await)
        .unwrap()
        .to_rgb8();
    assert!(small.get_pixel(0, 0).0.iter().all(|c| *c < 40));
    assert_eq!(
        e.stored(),
        [
            format!("{}-large.jpg", big.id),
            format!("{}-medium.jpg", big.id),
            format!("{}-small.jpg", big.id)
        ]
    );

    // Never enlarged.
    let tiny = e.upload("tiny.jpg", "image/jpeg", jpeg(100, 50)).await;
    assert!(e.make(&tiny.id).await.unwrap());
    for format in ["small", "medium", "large"] {
        assert_eq!(e.dims(&tiny.id, format).await, (100, 50), "{format}");
    }
    // Made again: replaced in place, nothing else left.
    assert!(e.make(&tiny.id).await.unwrap());
    assert_eq!(e.stored().len(), 6, "{:?}", e.stored());

    assert!(matches!(
        e.vfs.open_thumbnail(&e.inst, &tiny.id, "huge").await,
        Err(VfsError::NotFound(_))
    ));
    assert!(matches!(
        e.vfs.open_thumbnail(&e.inst, &tiny.id, "../x").await,
        Err(VfsError::NotFound(_))
    ));

    // Hearth's own directory: invisible to fsck, and its name is not for users.
    assert_eq!(e.vfs.fsck(&e.inst).await.unwrap(), []);
    let clash = e
        .vfs
        .create_dir(
            &e.inst,
            "",
            NewDir {
                name: ".cozy_thumbs".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(clash, Err(VfsError::Invalid { field: "name", .. })),
        "{clash:?}"
    );
    let f = NewFile {
        name: ".cozy_thumbs".into(),
        ..Default::default()
    };
    let body = futures_util::stream::iter([Ok(Bytes::from_static(b"x"))]);
    assert!(e.vfs.upload(&e.inst, "", f, body).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orientation_and_transparency() {
    let e = env().await;
    // EXIF 6: the camera was turned; the picture is shown rotated 90° clockwise.
    let turned = e
        .upload(
            "turned.jpg",
            "image/jpeg",
            jpeg_with_orientation(2000, 1000, 6),
        )
        .await;
    assert!(e.make(&turned.id).await.unwrap());
    assert_eq!(e.dims(&turned.id, "large").await, (540, 1080));
    assert_eq!(e.dims(&turned.id, "small").await, (240, 480));

    // Transparent pixels become white, not black.
    let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0])));
    let clear = e
        .upload("clear.png", "image/png", encode(clear, ImageFormat::Png))
        .await;
    assert!(e.make(&clear.id).await.unwrap());
    let small = image::load_from_memory(&e.thumb(&clear.id, "small").await)
        .unwrap()
        .to_rgb8();
    assert!(small.pixels().all(|p| p.0.iter().all(|c| *c > 245)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_an_image() {
    let e = env().await;
    let text = e.upload("a.txt", "text/plain", b"hello".to_vec()).await;
    assert!(!e.make(&text.id).await.unwrap());
    let dir = e
        .vfs
        .create_dir(
            &e.inst,
            "",
            NewDir {
                name: "Dir".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!e.make(&dir.id).await.unwrap());
    // A GIF is an image, but not one Hearth makes thumbnails of.
    let gif = e.upload("a.gif", "image/gif", b"GIF89a".to_vec()).await;
    assert!(!e.make(&gif.id).await.unwrap());
    // End-to-end encrypted: the server cannot read it.
    let f = NewFile {
        name: "secret.png".into(),
        content_type: Some("image/png".into()),
        encrypted: true,
        ..Default::default()
    };
    let body = futures_util::stream::iter([Ok(Bytes::from(png(10, 10)))]);
    let encrypted = e.vfs.upload(&e.inst, "", f, body).await.unwrap();
    assert!(!e.make(&encrypted.id).await.unwrap());
    assert!(matches!(e.make("nope").await, Err(VfsError::NotFound(_))));
    assert!(e.stored().is_empty());
    // Removing what does not exist is fine.
    e.vfs.remove_thumbnails(&e.inst, &text.id).await.unwrap();
    assert!(!e.vfs.has_thumbnails(&e.inst, &text.id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_oversized_images_write_nothing() {
    let e = env().await;
    let garbage = e
        .upload("bad.png", "image/png", b"this is not a PNG at all".to_vec())
        .await;
    let err = e.make(&garbage.id).await.unwrap_err();
    assert!(matches!(err, VfsError::BadImage(_)), "{err:?}");

    let mut cut = png(300, 200);
    cut.truncate(cut.len() / 2);
    let cut = e.upload("cut.png", "image/png", cut).await;
    let err = e.make(&cut.id).await.unwrap_err();
    assert!(matches!(err, VfsError::BadImage(_)), "{err:?}");

    // Decompression bombs: refused from their header, before any allocation.
    for (name, w, h, deep, why) in [
        ("wide.png", 20_000, 20_000, false, "pixels"), // 400 megapixels
        ("huge.png", 60_000, 60_000, false, "pixels"), // 3.6 gigapixels
        ("deep.png", 9_000, 9_000, true, "bytes"),     // 81 megapixels, 648 MB decoded
        ("long.png", 200_000, 1, false, "limit"),      // too long a side
        ("max.png", u32::MAX >> 1, u32::MAX >> 1, false, "limit"),
    ] {
        let doc = e
            .upload(name, "image/png", png_header_only(w, h, deep))
            .await;
        let err = e.make(&doc.id).await.unwrap_err();
        assert!(matches!(err, VfsError::BadImage(_)), "{name}: {err:?}");
        assert!(err.to_string().contains(why), "{name}: {err}");
    }
    // A JPEG sent as `image/png`: the content decides.
    let liar = e.upload("liar.png", "image/png", jpeg(64, 32)).await;
    assert!(e.make(&liar.id).await.unwrap());
    assert_eq!(e.dims(&liar.id, "small").await, (64, 32));
    assert_eq!(e.stored().len(), 3, "{:?}", e.stored());
    assert!(!e.stored().iter().any(|n| n.ends_with(".tmp")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_go_with_the_file_and_its_content() {
    let e = env().await;
    let a = e.upload("a.png", "image/png", png(800, 600)).await;
    let b = e.upload("b.png", "image/png", png(800, 600)).await;
    let c = e.upload("c.png", "image/png", png(800, 600)).await;
    for d in [&a, &b, &c] {
        assert!(e.make(&d.id).await.unwrap());
    }
    assert_eq!(e.stored().len(), 9);

    // Destroyed: gone.
    e.vfs.trash(&e.inst, &a.id, None).await.unwrap();
    assert!(
        e.vfs.has_thumbnails(&e.inst, &a.id).await.unwrap(),
        "kept in the trash"
    );
    e.vfs.destroy(&e.inst, &a.id, None, true).await.unwrap();
    assert!(!e.vfs.has_thumbnails(&e.inst, &a.id).await.unwrap());
    assert!(!e.thumbs_dir().join(format!("{}-large.jpg", a.id)).exists());

    // The trash emptied: gone.
    e.vfs.trash(&e.inst, &b.id, None).await.unwrap();
    e.vfs.empty_trash(&e.inst).await.unwrap();
    assert!(!e.vfs.has_thumbnails(&e.inst, &b.id).await.unwrap());

    // New content: the old thumbnails are never served for it.
    let body = futures_util::stream::iter([Ok(Bytes::from(png(200, 100)))]);
    let c2 = e
        .vfs
        .overwrite(
            &e.inst,
            &c.id,
            Overwrite {
                content_type: Some("image/png".into()),
                ..Default::default()
            },
            body,
        )
        .await
        .unwrap();
    assert!(!e.vfs.has_thumbnails(&e.inst, &c.id).await.unwrap());
    assert!(e.make(&c2.id).await.unwrap());
    assert_eq!(e.dims(&c.id, "large").await, (200, 100));
    assert_eq!(e.stored().len(), 3);

    // Content changed behind Hearth's back (it no longer has its MD5): refused.
    std::fs::write(e.files.join("a.localhost").join("c.png"), png(10, 10)).unwrap();
    e.vfs.remove_thumbnails(&e.inst, &c.id).await.unwrap();
    let err = e.make(&c.id).await.unwrap_err();
    assert!(
        matches!(err, VfsError::Store(StoreError::Conflict)),
        "{err:?}"
    );
    assert!(e.stored().is_empty());
}
