//! Registries: finding the version document of an app.
//!
//! A registry is an HTTP base URL (`GET <base>/registry/<slug>/<channel>/latest`,
//! `GET <base>/registry/<slug>/<version>`) or a `file:///dir` holding the same paths
//! as files (`<dir>/registry/<slug>/<channel>/latest`, `<dir>/registry/<slug>/<version>`,
//! each a JSON version document). Registries are asked in order; a 404 (a missing
//! file) moves on to the next one, any other failure stops the search.
//!
//! Version document: `{slug, version, url, sha256, type, manifest, tar_prefix?}`;
//! Hearth reads `version`, `url`, `sha256`, `type` and `tar_prefix` (the manifest
//! installed is the package's own). A `url` without a scheme is a path relative to the
//! registry base, so a directory registry can hold its tarballs; an HTTP registry
//! may not point at `file://` URLs.

use std::io::Read;
use std::path::PathBuf;

use hearth_core::JsonMap;
use serde_json::Value;

use crate::http::{self, Got};
use crate::manifest::relative_path_is_safe;
use crate::source::{Channel, file_url_path, is_sha256_hex, is_version};
use crate::{AppKind, AppsError, AppsResult};

/// Where a package's tarball is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Http(String),
    File(PathBuf),
}

/// The useful part of a registry's version document.
#[derive(Debug, Clone)]
pub(crate) struct VersionDoc {
    pub version: String,
    pub location: Location,
    pub sha256: Option<String>,
    pub tar_prefix: Option<String>,
}

/// Looks `slug` up in `bases`, in order.
pub(crate) fn lookup(
    bases: &[String],
    kind: AppKind,
    slug: &str,
    channel: Channel,
    version: Option<&str>,
) -> AppsResult<VersionDoc> {
    let path = match version {
        Some(v) => format!("registry/{slug}/{v}"),
        None => format!("registry/{slug}/{}/latest", channel.as_str()),
    };
    for base in bases {
        let base = base.trim_end_matches('/');
        let got = if base.starts_with("file:") {
            let dir = file_url_path(base)
                .map_err(|e| AppsError::Fetch(format!("registry {base}: {e}")))?;
            read_file(&dir.join(&path))?
        } else {
            let url = format!("{base}/{path}");
            http::get_doc(&url).map_err(|e| AppsError::Fetch(format!("registry {e}")))?
        };
        match got {
            Got::Found(bytes) => return parse(base, kind, slug, &bytes),
            Got::NotFound => continue,
            Got::Status(status, body) => {
                return Err(AppsError::Fetch(format!(
                    "registry {base} answered HTTP {status} for {path}: {body}"
                )));
            }
        }
    }
    let which = version.map_or_else(
        || format!("channel {}", channel.as_str()),
        |v| format!("version {v}"),
    );
    Err(AppsError::SourceNotFound(if bases.is_empty() {
        format!("Application manifest is not reachable: no registry is configured to find {slug}")
    } else {
        format!("Application manifest is not reachable: no registry has {slug} ({which})")
    }))
}

fn read_file(path: &std::path::Path) -> AppsResult<Got<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Got::NotFound),
        Err(e) => {
            return Err(AppsError::Fetch(format!(
                "registry file {}: {e}",
                path.display()
            )));
        }
    };
    if !file.metadata()?.is_file() {
        return Ok(Got::NotFound);
    }
    let mut bytes = Vec::new();
    file.take(http::MAX_DOC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AppsError::Fetch(format!("registry file {}: {e}", path.display())))?;
    if bytes.len() as u64 > http::MAX_DOC_BYTES {
        return Err(AppsError::Fetch(format!(
            "registry file {} is too large",
            path.display()
        )));
    }
    Ok(Got::Found(bytes))
}

fn parse(base: &str, kind: AppKind, slug: &str, bytes: &[u8]) -> AppsResult<VersionDoc> {
    let invalid = |why: String| {
        AppsError::Fetch(format!(
            "registry {base}: invalid version document for {slug}: {why}"
        ))
    };
    let doc: JsonMap = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let string = |k: &str| doc.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let version = string("version").ok_or_else(|| invalid("no \"version\"".into()))?;
    if !is_version(version) {
        return Err(invalid(format!("{version:?} is not a version")));
    }
    if let Some(t) = string("type") {
        let ok = match kind {
            AppKind::Webapp => t == "webapp",
            AppKind::Konnector => t == "konnector" || t == "node",
        };
        if !ok {
            return Err(AppsError::BadManifest(match kind {
                AppKind::Webapp => format!(
                    "[{slug}] Manifest type is not valid for a webapp. Maybe you want to install a konnector?"
                ),
                AppKind::Konnector => format!(
                    "[{slug}] Manifest type is not valid for a konnector. Maybe you want to install a webapp?"
                ),
            }));
        }
    }
    let url = string("url").ok_or_else(|| invalid("no \"url\"".into()))?;
    let location = resolve(base, url).map_err(invalid)?;
    let sha256 = match string("sha256") {
        None => None,
        Some(s) if is_sha256_hex(s) => Some(s.to_ascii_lowercase()),
        Some(s) => return Err(invalid(format!("sha256 {s:?} is not 64 hex digits"))),
    };
    let tar_prefix =
        match string("tar_prefix").map(|p| p.trim_start_matches("./").trim_end_matches('/')) {
            None | Some("") => None,
            Some(p) if relative_path_is_safe(p) => Some(p.to_owned()),
            Some(p) => return Err(invalid(format!("tar_prefix {p:?} is not a relative path"))),
        };
    Ok(VersionDoc {
        version: version.to_owned(),
        location,
        sha256,
        tar_prefix,
    })
}

/// The tarball of a version document: an absolute `http(s)://` URL, a `file://` URL in
/// a directory registry, or a path relative to the registry base.
fn resolve(base: &str, url: &str) -> Result<Location, String> {
    let from_file_registry = base.starts_with("file:");
    if url.starts_with("http://") || url.starts_with("https://") {
        http::check_url(url)?;
        return Ok(Location::Http(url.to_owned()));
    }
    if url.starts_with("file:") {
        if !from_file_registry {
            return Err(format!("an HTTP registry cannot point at {url}"));
        }
        return file_url_path(url).map(Location::File);
    }
    if url.contains("://")
        || url.contains(['?', '#'])
        || !relative_path_is_safe(url.trim_start_matches("./"))
    {
        return Err(format!(
            "url {url:?} is neither absolute nor a safe relative path"
        ));
    }
    let rel = url.trim_start_matches("./");
    if from_file_registry {
        Ok(Location::File(file_url_path(base)?.join(rel)))
    } else {
        Ok(Location::Http(format!("{base}/{rel}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolving() {
        assert_eq!(
            resolve("http://r:1/base", "tarballs/a.tar.gz"),
            Ok(Location::Http("http://r:1/base/tarballs/a.tar.gz".into()))
        );
        assert_eq!(
            resolve("http://r:1", "http://cdn/a.tgz"),
            Ok(Location::Http("http://cdn/a.tgz".into()))
        );
        assert_eq!(
            resolve("http://r", "https://x/a.tgz"),
            Ok(Location::Http("https://x/a.tgz".into()))
        );
        assert_eq!(
            resolve("file:///srv/reg", "./t/a.tar.gz"),
            Ok(Location::File("/srv/reg/t/a.tar.gz".into()))
        );
        assert_eq!(
            resolve("file:///srv/reg", "file:///other/a.tgz"),
            Ok(Location::File("/other/a.tgz".into()))
        );
        for (base, bad) in [
            ("http://r", "file:///etc/passwd"),
            ("http://r", "../a.tgz"),
            ("file:///srv/reg", "/etc/a.tgz"),
            ("file:///srv/reg", "t/../../a.tgz"),
            ("http://r", "ftp://x/a"),
        ] {
            assert!(resolve(base, bad).is_err(), "{base} {bad}");
        }
    }
}
