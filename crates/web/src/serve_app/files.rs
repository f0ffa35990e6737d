//! The files of an installed web app: request paths made safe, media types by
//! extension, and ETags computed from the content.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Why a request path cannot name a file of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// `..`, a NUL, a backslash or a broken percent-escape: refused (400).
    Refused,
}

/// Decodes a URL path (`%xx` escapes) into its segments, refusing anything that
/// could climb out of the app's directory (`..`, also as `%2e%2e`), NULs,
/// backslashes and escaped slashes. Empty and `.` segments are dropped, so
/// `//etc/passwd` stays inside the app.
pub(crate) fn segments(raw_path: &str) -> Result<Vec<String>, BadPath> {
    let mut out = Vec::new();
    for raw in raw_path.split('/') {
        let seg = percent_decode(raw).ok_or(BadPath::Refused)?;
        if seg.contains(['\0', '\\', '/']) || seg == ".." {
            return Err(BadPath::Refused);
        }
        if seg.is_empty() || seg == "." {
            continue;
        }
        out.push(seg);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file `folder/rest` of the app in `app_dir`, if it exists as a regular file
/// inside that directory once every link is followed.
pub(crate) async fn resolve(app_dir: &Path, folder: &[String], rest: &[String]) -> Option<PathBuf> {
    let mut path = app_dir.to_path_buf();
    for seg in folder.iter().chain(rest) {
        // `segments` already refused `..`; a manifest's folder is checked the same way.
        if Path::new(seg)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        path.push(seg);
    }
    let root = tokio::fs::canonicalize(app_dir).await.ok()?;
    let real = tokio::fs::canonicalize(&path).await.ok()?;
    if !real.starts_with(&root) {
        return None;
    }
    let meta = tokio::fs::metadata(&real).await.ok()?;
    meta.is_file().then_some(real)
}

/// The media type of a file name, by extension.
pub(crate) fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// Whether a file name carries a content hash (a run of 10+ hex digits between dots,
/// as bundlers write `app.3f2a9c81d0.js`): such files never change.
pub(crate) fn is_immutable(name: &str) -> bool {
    name.split('.')
        .skip(1)
        .any(|part| part.len() >= 10 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

type EtagKey = (PathBuf, u64, Option<SystemTime>);

/// ETags already computed, by path, size and modification time (apps are installed
/// by a rename, so a new version has new files).
fn cache() -> &'static Mutex<HashMap<EtagKey, String>> {
    static CACHE: OnceLock<Mutex<HashMap<EtagKey, String>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// A file's content and its strong ETag (from the SHA-256 of the content).
pub(crate) async fn read(path: &Path) -> std::io::Result<(Vec<u8>, String)> {
    let meta = tokio::fs::metadata(path).await?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let body = tokio::fs::read(path).await?;
    let known = cache().lock().ok().and_then(|c| c.get(&key).cloned());
    let etag = match known {
        Some(e) => e,
        None => {
            let e = etag_of(&body);
            if let Ok(mut c) = cache().lock() {
                if c.len() > 4096 {
                    c.clear();
                }
                c.insert(key, e.clone());
            }
            e
        }
    };
    Ok((body, etag))
}

/// `"<first 32 hex digits of the SHA-256>"`.
pub(crate) fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names this ETag (or `*`).
pub(crate) fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(segments("/a/b.js").unwrap(), ["a", "b.js"]);
        assert_eq!(segments("//etc/./passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(segments("/a%20b").unwrap(), ["a b"]);
        for bad in [
            "/../x",
            "/a/%2e%2e/x",
            "/a/%2E%2E",
            "/a%2f..%2fb",
            "/a\\..\\b",
            "/a%5c..",
            "/a%00",
            "/%zz",
        ] {
            assert_eq!(segments(bad), Err(BadPath::Refused), "{bad}");
        }
    }

    #[test]
    fn types_and_hashes() {
        assert_eq!(content_type("app.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
        assert!(is_immutable("app.0123456789ab.min.js"));
        assert!(!is_immutable("app.min.js"));
        assert!(
            !is_immutable("0123456789ab.js"),
            "the base name alone is no hash"
        );
        let e = etag_of(b"hello");
        assert_eq!(e.len(), 34);
        assert!(not_modified(Some(&format!("W/{e}, \"x\"")), &e));
        assert!(!not_modified(Some("\"x\""), &e));
        assert!(!not_modified(None, &e));
    }
}
