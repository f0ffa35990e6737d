//! Thumbnails of images (spec core-api B.8.2, B.8.4): three JPEG previews of a JPEG or
//! PNG file, `small` (fits 640×480), `medium` (1280×720) and `large` (1920×1080), with
//! the aspect ratio kept, never enlarged, the EXIF orientation applied and
//! transparency flattened on white.
//!
//! They are made outside of any request ([`Vfs::make_thumbnails`], for the job system),
//! decoded on a blocking thread one image at a time, under [`image::Limits`] and a
//! pixel cap so that a decompression bomb is an error, not an exhausted memory. They
//! are stored beside the instance's files ([`crate::BlobStore::put_thumb`]), written
//! only if the content they were made from is still the file's content, removed when
//! the content is replaced or the file destroyed.
//!
//! They are served without a token: the links of a file's JSON:API resource carry a
//! secret, an HMAC (key derived from the instance's `session_secret`) of the file id,
//! its MD5 and an expiry ([`thumbnail_secret`], [`check_thumbnail_secret`]). Nothing is
//! stored for it; a link stops working when it expires (10 to 20 minutes after it was
//! made, spec: "secret valid 10 min"), when the content changes and when the
//! passphrase changes (which renews `session_secret`).

use std::io::{self, Cursor};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hearth_instances::Instance;
use hearth_store::StoreError;
use hmac::{Hmac, Mac};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageFormat, ImageReader, Limits};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use crate::blob::ThumbBlob;
use crate::write::md5_b64;
use crate::{FileDoc, Vfs, VfsError, VfsResult};

/// The stored formats, smallest first.
pub const FORMATS: [&str; 3] = ["small", "medium", "large"];

/// The box each format fits in, largest first (each is made from the previous one).
const BOXES: [(&str, u32, u32); 3] = [
    ("large", 1920, 1080),
    ("medium", 1280, 720),
    ("small", 640, 480),
];

/// The largest image decoded, in pixels (100 megapixels).
pub const MAX_PIXELS: u64 = 100_000_000;
/// The most memory a decoder may allocate (the decoded image included).
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// The largest width or height a decoder accepts (refused before any allocation).
const MAX_SIDE: u32 = 100_000;
/// The largest file read to make thumbnails of.
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;
/// JPEG quality of the thumbnails.
const QUALITY: u8 = 80;
/// A thumbnail link is valid for one to two of these periods (seconds).
pub const SECRET_PERIOD: u64 = 600;

/// One image decoded at a time in the whole process: memory stays bounded by one
/// decoder's limit whatever the number of instances and jobs.
static DECODING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Whether thumbnails can be made of content of this mime type.
pub fn can_thumbnail(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/jpg" | "image/png")
}

/// Whether thumbnails can be made of a file: not a directory, a JPEG or PNG, not
/// end-to-end encrypted (`encrypted: true`: the server cannot read it).
pub fn can_thumbnail_file(doc: &FileDoc) -> bool {
    !doc.is_dir()
        && can_thumbnail(doc.mime())
        && doc
            .body
            .get("encrypted")
            .and_then(serde_json::Value::as_bool)
            != Some(true)
}

/// The stored format serving a format name of a link: `small`, `medium`, `large`, and
/// Cozy's `tiny`, served by `small`. `None` for anything else.
pub fn thumbnail_format(name: &str) -> Option<&'static str> {
    match name {
        "tiny" | "small" => Some("small"),
        "medium" => Some("medium"),
        "large" => Some("large"),
        _ => None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The MAC of a thumbnail link; `None` when the instance has no secret to sign with.
fn link_mac(inst: &Instance, file_id: &str, md5: &str, expires: u64) -> Option<Hmac<Sha256>> {
    if inst.session_secret.is_empty() {
        return None;
    }
    // A key of its own: nothing else signed with `session_secret` can pass for a link.
    let mut key = b"thumbs:".to_vec();
    key.extend(inst.session_secret.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    for part in [file_id, md5, &expires.to_string()] {
        mac.update(part.as_bytes());
        mac.update(b"|");
    }
    Some(mac)
}

/// The secret of the thumbnail links of a file (`/files/<id>/thumbnails/<secret>/…`),
/// valid until the end of the next [`SECRET_PERIOD`], so that links made in the same
/// period are the same URL (cached once by browsers). `None` when the instance has no
/// `session_secret`.
pub fn thumbnail_secret(inst: &Instance, doc: &FileDoc) -> Option<String> {
    thumbnail_secret_at(inst, &doc.id, doc.md5sum(), now_secs())
}

/// [`thumbnail_secret`] at a given time (seconds since the epoch).
pub fn thumbnail_secret_at(inst: &Instance, file_id: &str, md5: &str, now: u64) -> Option<String> {
    let expires = (now / SECRET_PERIOD + 2) * SECRET_PERIOD;
    let tag = link_mac(inst, file_id, md5, expires)?
        .finalize()
        .into_bytes();
    Some(format!(
        "{expires}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// Whether `secret` is a valid, unexpired thumbnail secret of this file and content;
/// answers the time it expires (seconds since the epoch).
pub fn check_thumbnail_secret(inst: &Instance, doc: &FileDoc, secret: &str) -> Option<u64> {
    check_thumbnail_secret_at(inst, &doc.id, doc.md5sum(), secret, now_secs())
}

/// [`check_thumbnail_secret`] at a given time (seconds since the epoch).
pub fn check_thumbnail_secret_at(
    inst: &Instance,
    file_id: &str,
    md5: &str,
    secret: &str,
    now: u64,
) -> Option<u64> {
    let (expires, tag) = secret.split_once('.')?;
    let expires: u64 = expires.parse().ok()?;
    if expires < now || expires > now.saturating_add(2 * SECRET_PERIOD) {
        return None;
    }
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tag)
        .ok()?;
    // `verify_slice` compares in constant time.
    link_mac(inst, file_id, md5, expires)?
        .verify_slice(&tag)
        .ok()
        .map(|()| expires)
}

impl Vfs {
    /// Makes the thumbnails of a file (for the job system, after an upload or an
    /// overwrite): `Ok(false)` when it is a directory, not a JPEG or PNG image, or
    /// encrypted; `Ok(true)` once the three are stored. An image that does not decode,
    /// or is too large to decode safely, is [`VfsError::BadImage`] and nothing is
    /// written.
    ///
    /// Decoding runs on a blocking thread, one image at a time in the process. The
    /// thumbnails are then written under the instance's lock, only if the file's
    /// content is still the one decoded (otherwise the new content is decoded, a few
    /// times at most): an overwrite meanwhile never leaves the old content's
    /// thumbnails behind.
    pub async fn make_thumbnails(&self, inst: &Instance, file_id: &str) -> VfsResult<bool> {
        for _ in 0..3 {
            let doc = self.get(inst, file_id).await?;
            if !can_thumbnail_file(&doc) {
                return Ok(false);
            }
            if doc.size() > MAX_SOURCE_BYTES {
                return Err(VfsError::BadImage(format!(
                    "the file has {} bytes, more than the {MAX_SOURCE_BYTES} read for thumbnails",
                    doc.size()
                )));
            }
            let permit = DECODING
                .acquire()
                .await
                .map_err(|e| VfsError::Io(io::Error::other(e)))?;
            let bytes = self.read_source(inst, &doc).await?;
            let md5 = md5_b64(&Md5::digest(&bytes));
            let mime = doc.mime().to_owned();
            // The permit goes with the work: were this future dropped, the decoding
            // would still hold it until it ends.
            let thumbs = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                render(&bytes, &mime)
            })
            .await
            .map_err(|e| VfsError::Io(io::Error::other(e)))??;

            let _guard = self.lock(inst).await;
            let current = self.get_raw(inst, file_id).await?;
            if current.md5sum() != md5 || !can_thumbnail_file(&current) {
                // Replaced while it was decoded (or its stored content is not what its
                // document says): try the current content.
                continue;
            }
            for (format, jpeg) in thumbs {
                if let Err(e) = self
                    .blobs
                    .put_thumb(&inst.domain, file_id, format, jpeg)
                    .await
                {
                    if let Err(re) = self.blobs.remove_thumbs(&inst.domain, file_id).await {
                        tracing::warn!(error = %re, file = file_id, "cannot remove partial thumbnails");
                    }
                    return Err(e.into());
                }
            }
            return Ok(true);
        }
        tracing::warn!(domain = %inst.domain, file = file_id, "the content kept changing, or does not match its MD5, while making thumbnails");
        Err(StoreError::Conflict.into())
    }

    /// Removes the thumbnails of a file (none is fine).
    pub async fn remove_thumbnails(&self, inst: &Instance, file_id: &str) -> VfsResult<()> {
        Ok(self.blobs.remove_thumbs(&inst.domain, file_id).await?)
    }

    /// Opens one thumbnail of a file to stream it: `format` is `small`, `medium`,
    /// `large` or `tiny` (served by `small`). [`VfsError::NotFound`] for another format
    /// or a thumbnail not made (yet). The file's document is not read: the caller
    /// checks that the file exists (and the link's secret).
    pub async fn open_thumbnail(
        &self,
        inst: &Instance,
        file_id: &str,
        format: &str,
    ) -> VfsResult<ThumbBlob> {
        let format =
            thumbnail_format(format).ok_or(VfsError::NotFound("unknown thumbnail format"))?;
        match self.blobs.open_thumb(&inst.domain, file_id, format).await {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(VfsError::NotFound("this file has no thumbnail (yet)"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the thumbnails of a file are stored (one file opened).
    pub async fn has_thumbnails(&self, inst: &Instance, file_id: &str) -> VfsResult<bool> {
        match self.open_thumbnail(inst, file_id, "small").await {
            Ok(_) => Ok(true),
            Err(VfsError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The whole content of a file, at most [`MAX_SOURCE_BYTES`].
    async fn read_source(&self, inst: &Instance, doc: &FileDoc) -> VfsResult<Vec<u8>> {
        let reader = self.open(inst, doc, 0, None).await?;
        let cap = usize::try_from(doc.size())
            .unwrap_or(0)
            .min(64 * 1024 * 1024);
        let mut bytes = Vec::with_capacity(cap);
        reader
            .take(MAX_SOURCE_BYTES + 1)
            .read_to_end(&mut bytes)
            .await?;
        if bytes.len() as u64 > MAX_SOURCE_BYTES {
            return Err(VfsError::BadImage(format!(
                "the file has more than the {MAX_SOURCE_BYTES} bytes read for thumbnails"
            )));
        }
        Ok(bytes)
    }
}

fn bad(e: image::ImageError) -> VfsError {
    VfsError::BadImage(e.to_string())
}

/// The largest size with the aspect ratio of `w`×`h` that fits in `bw`×`bh`; the size
/// itself when it fits already (never enlarged).
pub(crate) fn fit(w: u32, h: u32, bw: u32, bh: u32) -> (u32, u32) {
    if w <= bw && h <= bh {
        return (w, h);
    }
    let (w64, h64, bw64, bh64) = (u64::from(w), u64::from(h), u64::from(bw), u64::from(bh));
    let scaled = |num: u64, den: u64, bound: u64| {
        // round(num * bound / den), at least 1
        let v = (num * bound * 2 + den) / (den * 2);
        u32::try_from(v.max(1)).unwrap_or(u32::MAX)
    };
    if w64 * bh64 > h64 * bw64 {
        (bw, scaled(h64, w64, bw64))
    } else {
        (scaled(w64, h64, bh64), bh)
    }
}

/// Decodes an image and encodes its thumbnails, `(format, JPEG)` largest first. Runs on
/// a blocking thread.
fn render(bytes: &[u8], mime: &str) -> VfsResult<Vec<(&'static str, Vec<u8>)>> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    if reader.format().is_none() {
        reader.set_format(if mime == "image/png" {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg
        });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(VfsError::BadImage(format!(
            "the image is {w}×{h} pixels, more than the {MAX_PIXELS} decoded"
        )));
    }
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(VfsError::BadImage(format!(
            "the image would take {} bytes decoded, more than {MAX_DECODE_BYTES}",
            decoder.total_bytes()
        )));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    if img.color().has_alpha() {
        img = DynamicImage::ImageRgba8(flatten_on_white(img.into_rgba8()));
    }
    // The sizes are computed in the image's own orientation, which is applied to each
    // thumbnail (smaller than the image) rather than to the image.
    let swaps = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let mut out = Vec::with_capacity(BOXES.len());
    let mut previous: Option<DynamicImage> = None;
    for (format, bw, bh) in BOXES {
        let (bw, bh) = if swaps { (bh, bw) } else { (bw, bh) };
        let (tw, th) = fit(w, h, bw, bh);
        let source = previous.as_ref().unwrap_or(&img);
        let (sw, _) = source.dimensions();
        let thumb = if (tw, th) == source.dimensions() {
            source.clone()
        } else if sw >= tw.saturating_mul(2) {
            // Fast integer sampling, without a floating point copy of a large image.
            source.thumbnail_exact(tw, th)
        } else {
            source.resize_exact(tw, th, FilterType::Triangle)
        };
        let mut oriented = thumb.clone();
        oriented.apply_orientation(orientation);
        out.push((format, encode_jpeg(&oriented)?));
        previous = Some(thumb);
    }
    Ok(out)
}

/// Blends every pixel over white and makes it opaque (JPEG has no transparency).
fn flatten_on_white(mut rgba: image::RgbaImage) -> image::RgbaImage {
    for p in rgba.pixels_mut() {
        let a = u16::from(p[3]);
        for c in 0..3 {
            let v = (u16::from(p[c]) * a + 255 * (255 - a) + 127) / 255;
            p[c] = u8::try_from(v).unwrap_or(u8::MAX);
        }
        p[3] = 255;
    }
    rgba
}

fn encode_jpeg(img: &DynamicImage) -> VfsResult<Vec<u8>> {
    let rgb = img.to_rgb8();
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, QUALITY)
        .encode_image(&rgb)
        .map_err(bad)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_the_ratio_and_never_enlarges() {
        assert_eq!(fit(3000, 2000, 1920, 1080), (1620, 1080));
        assert_eq!(fit(3000, 2000, 1280, 720), (1080, 720));
        assert_eq!(fit(3000, 2000, 640, 480), (640, 427));
        assert_eq!(fit(100, 50, 640, 480), (100, 50));
        assert_eq!(fit(640, 480, 640, 480), (640, 480));
        assert_eq!(fit(100_000, 1, 640, 480), (640, 1));
        assert_eq!(fit(1, 100_000, 640, 480), (1, 480));
    }

    #[test]
    fn formats() {
        assert_eq!(thumbnail_format("tiny"), Some("small"));
        assert_eq!(thumbnail_format("large"), Some("large"));
        assert_eq!(thumbnail_format("huge"), None);
        assert_eq!(thumbnail_format("../x"), None);
        assert!(can_thumbnail("image/png") && !can_thumbnail("image/gif"));
    }

    #[test]
    fn secrets_are_bound_to_the_file_its_content_and_time() {
        let inst = Instance {
            session_secret: "c2VjcmV0".into(),
            ..Default::default()
        };
        let now = 1_700_000_000;
        let s = thumbnail_secret_at(&inst, "f1", "md5A", now).unwrap_or_default();
        let check = |id: &str, md5: &str, s: &str, at: u64| {
            check_thumbnail_secret_at(&inst, id, md5, s, at).is_some()
        };
        assert!(check("f1", "md5A", &s, now));
        assert!(
            check("f1", "md5A", &s, now + SECRET_PERIOD),
            "valid 10 min at least"
        );
        assert!(
            !check("f1", "md5A", &s, now + 2 * SECRET_PERIOD + 1),
            "expired"
        );
        assert!(!check("f2", "md5A", &s, now), "another file");
        assert!(!check("f1", "md5B", &s, now), "another content");
        assert!(!check("f1", "md5A", "nope", now));
        assert!(!check("f1", "md5A", "", now));
        // Same link for a whole period.
        assert_eq!(
            thumbnail_secret_at(&inst, "f1", "md5A", now - now % SECRET_PERIOD),
            thumbnail_secret_at(&inst, "f1", "md5A", now - now % SECRET_PERIOD + 599)
        );
        // The expiry cannot be moved: it is signed.
        let (_, tag) = s.split_once('.').unwrap_or_default();
        let later = format!("{}.{tag}", now + 2 * SECRET_PERIOD);
        assert!(!check("f1", "md5A", &later, now + SECRET_PERIOD));
        let other = Instance {
            session_secret: "b3RoZXI=".into(),
            ..Default::default()
        };
        assert!(check_thumbnail_secret_at(&other, "f1", "md5A", &s, now).is_none());
        let none = Instance::default();
        assert!(thumbnail_secret_at(&none, "f1", "md5A", now).is_none());
        assert!(check_thumbnail_secret_at(&none, "f1", "md5A", &s, now).is_none());
    }
}
