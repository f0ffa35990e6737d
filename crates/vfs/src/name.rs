//! File names and paths (what is allowed, spec core-api B.8.1), and the mime type and
//! class of an upload (B.8.3).

use crate::error::{VfsError, VfsResult};

/// Names Hearth keeps for itself at the root of an instance's directory: the trash,
/// old versions, uploads in progress and thumbnails.
pub const TRASH_NAME: &str = hearth_instances::tree::TRASH_DIR_NAME;
pub const VERSIONS_NAME: &str = ".cozy_versions";
pub const UPLOADS_NAME: &str = ".cozy_uploads";
pub const THUMBS_NAME: &str = ".cozy_thumbs";

/// The longest name, in bytes (what common file systems accept).
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a file or directory name: not empty, not `.` or `..`, no `/`, no control
/// character, at most 255 bytes.
pub fn check_name(name: &str) -> VfsResult<()> {
    let bad = |why: &str| {
        Err(VfsError::invalid(
            "name",
            format!("Invalid file name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("a name cannot be empty");
    }
    if name == "." || name == ".." {
        return bad("\".\" and \"..\" are not allowed");
    }
    if name.contains('/') {
        return bad("a name cannot contain \"/\"");
    }
    if name.chars().any(char::is_control) {
        return bad("a name cannot contain control characters (new lines, tabs, NUL…)");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad("a name can have at most 255 bytes");
    }
    Ok(())
}

/// Checks a name for a new entry of the root directory, where Hearth's own
/// directories live.
pub fn check_root_name(name: &str) -> VfsResult<()> {
    if [TRASH_NAME, VERSIONS_NAME, UPLOADS_NAME, THUMBS_NAME].contains(&name) {
        return Err(VfsError::invalid(
            "name",
            format!("The name {name:?} is reserved at the root; choose another"),
        ));
    }
    Ok(())
}

/// Splits an absolute path into checked names: `/a/b/` → `["a", "b"]`, `/` → `[]`.
pub fn split_path(path: &str) -> VfsResult<Vec<&str>> {
    if !path.starts_with('/') {
        return Err(VfsError::BadRequest(format!(
            "The path {path:?} is not absolute: it must start with \"/\""
        )));
    }
    let names: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for n in &names {
        check_name(n).map_err(|_| {
            VfsError::invalid(
                "path",
                format!("Invalid path {path:?}: {n:?} is not a valid name"),
            )
        })?;
    }
    if names.len() >= 512 {
        return Err(VfsError::invalid("path", "The path is too deep"));
    }
    Ok(names)
}

/// `parent` + `/` + `name`.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" || parent.is_empty() {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The mime type of an upload: the `Content-Type` given (parameters stripped), or a
/// guess from the extension when it is absent or `application/octet-stream`.
pub fn mime_of(content_type: Option<&str>, name: &str) -> String {
    let given = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty() && c.contains('/'));
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "url" {
        return "application/internet-shortcut".into();
    }
    match given {
        Some(m) if m != "application/octet-stream" => m,
        _ => guess(&ext).unwrap_or("application/octet-stream").into(),
    }
}

fn guess(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "heic" => "image/heic",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "7z" => "application/x-7z-compressed",
        "rar" => "application/vnd.rar",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "odp" => "application/vnd.oasis.opendocument.presentation",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "exe" => "application/x-msdownload",
        "dmg" => "application/x-apple-diskimage",
        _ => return None,
    })
}

/// The class of a mime type (spec core-api B.8.3).
pub fn class_of(mime: &str) -> String {
    let m = mime;
    let class = if m == "application/octet-stream" {
        "files"
    } else if m == "application/pdf" {
        "pdf"
    } else if m == "application/internet-shortcut" {
        "shortcut"
    } else if [
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
    ]
    .contains(&m)
    {
        "zip"
    } else if m.contains("presentation") || m == "application/vnd.ms-powerpoint" {
        "slide"
    } else if m.contains("spreadsheet") || m == "application/vnd.ms-excel" || m == "text/csv" {
        "spreadsheet"
    } else if m.contains("wordprocessing")
        || m.contains("opendocument.text")
        || m == "application/msword"
        || m == "application/rtf"
    {
        "text"
    } else if [
        "text/html",
        "text/css",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/json",
        "text/x-c",
        "text/x-go",
        "text/x-python",
        "text/x-ruby",
    ]
    .contains(&m)
    {
        "code"
    } else if m == "application/x-apple-diskimage" || m == "application/x-msdownload" {
        "binary"
    } else {
        return m.split('/').next().unwrap_or("files").to_owned();
    };
    class.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "été.txt", ".hidden", "a b", &"x".repeat(255)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/",
            "a\nb",
            "a\rb",
            "nul\0",
            "tab\t",
            &"x".repeat(256),
        ] {
            assert!(
                matches!(
                    check_name(bad),
                    Err(VfsError::Invalid { field: "name", .. })
                ),
                "{bad:?}"
            );
        }
        assert!(check_root_name(".cozy_versions").is_err());
        assert!(check_root_name(".cozy_thumbs").is_err());
        assert!(check_root_name("Photos").is_ok());
    }

    #[test]
    fn paths() {
        assert_eq!(split_path("/").unwrap(), Vec::<&str>::new());
        assert_eq!(split_path("/a/b/").unwrap(), ["a", "b"]);
        assert!(matches!(split_path("a"), Err(VfsError::BadRequest(_))));
        assert!(matches!(
            split_path("/a/../b"),
            Err(VfsError::Invalid { field: "path", .. })
        ));
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }

    #[test]
    fn mimes_and_classes() {
        assert_eq!(
            mime_of(Some("text/plain; charset=utf-8"), "a"),
            "text/plain"
        );
        assert_eq!(
            mime_of(Some("application/octet-stream"), "a.pdf"),
            "application/pdf"
        );
        assert_eq!(mime_of(None, "x.JPG"), "image/jpeg");
        assert_eq!(mime_of(None, "x"), "application/octet-stream");
        assert_eq!(
            mime_of(Some("text/plain"), "a.url"),
            "application/internet-shortcut"
        );
        assert_eq!(class_of("image/png"), "image");
        assert_eq!(class_of("application/pdf"), "pdf");
        assert_eq!(class_of("application/octet-stream"), "files");
        assert_eq!(class_of("application/zip"), "zip");
        assert_eq!(class_of("text/html"), "code");
        assert_eq!(class_of("text/plain"), "text");
        assert_eq!(
            class_of("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            "spreadsheet"
        );
    }
}
