//! Where an app comes from: the parsed forms of a source string.
//!
//! - `registry://<slug>[/<channel>][/<version>]`: `<channel>` is `stable` (default),
//!   `beta` or `dev`; a single segment starting with a digit is a version of the
//!   stable channel; `latest` as the version means the channel's latest. The slug
//!   looked up in the registries is the URL's host, whatever the installed slug.
//! - `http://…`: a tarball (gzipped or not); a `#<sha256 hex>` fragment is the
//!   expected checksum.
//! - `file:///abs/path`: a tarball when the path is a file, a folder to copy when it
//!   is a directory (decided when fetching).

use std::path::PathBuf;

use crate::manifest::validate_slug;
use crate::{AppsError, AppsResult};

/// A registry channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Stable,
    Beta,
    Dev,
}

impl Channel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Beta => "beta",
            Self::Dev => "dev",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "stable" => Some(Self::Stable),
            "beta" => Some(Self::Beta),
            "dev" => Some(Self::Dev),
            _ => None,
        }
    }
}

/// A parsed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Registry {
        slug: String,
        channel: Channel,
        /// `None`: the channel's latest version.
        version: Option<String>,
    },
    /// An HTTP tarball URL (without its fragment) and the expected checksum.
    Http { url: String, sha256: Option<String> },
    /// A local tarball or folder.
    File(PathBuf),
}

/// The source used when none is given: `registry://<slug>/stable`.
pub(crate) fn default_source(slug: &str) -> String {
    format!("registry://{slug}/stable")
}

impl Source {
    pub(crate) fn parse(source: &str) -> AppsResult<Self> {
        let invalid =
            |why: &str| AppsError::InvalidInput(format!("Invalid source {source:?}: {why}"));
        if source.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains spaces or control characters"));
        }
        if let Some(rest) = source.strip_prefix("registry://") {
            return Self::parse_registry(rest).map_err(|why| invalid(&why));
        }
        if let Some(rest) = source
            .strip_prefix("http://")
            .or_else(|| source.strip_prefix("https://"))
        {
            let (url, fragment) = match source.split_once('#') {
                Some((u, f)) => (u, Some(f)),
                None => (source, None),
            };
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return Err(invalid("the URL has no host"));
            }
            let sha256 = match fragment {
                None | Some("") => None,
                Some(f) if is_sha256_hex(f) => Some(f.to_ascii_lowercase()),
                Some(_) => {
                    return Err(invalid(
                        "the fragment of a tarball URL must be its sha256 in hex",
                    ));
                }
            };
            return Ok(Self::Http {
                url: url.to_owned(),
                sha256,
            });
        }
        if source.starts_with("file:") {
            return file_url_path(source)
                .map(Self::File)
                .map_err(|why| invalid(&why));
        }
        Err(AppsError::InvalidInput(format!(
            "Invalid or not supported source scheme: {source:?} (registry://, http://, file://)"
        )))
    }

    fn parse_registry(rest: &str) -> Result<Self, String> {
        if rest.contains(['?', '#']) {
            return Err("a registry source has no query or fragment".into());
        }
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let slug = parts.next().ok_or("no app slug")?.to_owned();
        validate_slug(&slug).map_err(|e| e.to_string())?;
        let segments: Vec<&str> = parts.collect();
        let channel_of = |s: &str| {
            Channel::parse(s).ok_or_else(|| format!("unknown channel {s:?} (stable, beta, dev)"))
        };
        let (channel, version) = match segments.as_slice() {
            [] => (Channel::Stable, None),
            [one] if one.starts_with(|c: char| c.is_ascii_digit()) => (Channel::Stable, Some(*one)),
            [one] => (channel_of(one)?, None),
            [channel, "latest"] => (channel_of(channel)?, None),
            [channel, version] => (channel_of(channel)?, Some(*version)),
            _ => return Err("expected registry://<slug>[/<channel>][/<version>]".into()),
        };
        if let Some(v) = version
            && !is_version(v)
        {
            return Err(format!("{v:?} is not a version"));
        }
        Ok(Self::Registry {
            slug,
            channel,
            version: version.map(str::to_owned),
        })
    }
}

/// A version as registries name them (`1.2.3`, `1.2.3-beta.4`, `1.2.3-dev.abc`):
/// safe as a path segment.
pub(crate) fn is_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-_".contains(&b))
        && !v.contains("..")
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The absolute path of a `file:///…` (or `file://localhost/…`) URL, percent-decoded.
pub(crate) fn file_url_path(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("file://")
        .ok_or("a file URL starts with file:///")?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err("a file URL needs an absolute path (file:///…)".into());
    }
    if path.contains(['?', '#']) {
        return Err("a file URL has no query or fragment".into());
    }
    let decoded = percent_decode(path).ok_or("bad percent-encoding")?;
    if decoded.contains('\0') {
        return Err("bad path".into());
    }
    Ok(PathBuf::from(decoded))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(slug: &str, channel: Channel, version: Option<&str>) -> Source {
        Source::Registry {
            slug: slug.into(),
            channel,
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn registry_sources() {
        let cases = [
            ("registry://drive", reg("drive", Channel::Stable, None)),
            ("registry://drive/", reg("drive", Channel::Stable, None)),
            (
                "registry://drive/stable",
                reg("drive", Channel::Stable, None),
            ),
            ("registry://drive/beta", reg("drive", Channel::Beta, None)),
            (
                "registry://drive/dev/latest",
                reg("drive", Channel::Dev, None),
            ),
            (
                "registry://drive/1.2.3",
                reg("drive", Channel::Stable, Some("1.2.3")),
            ),
            (
                "registry://drive/beta/1.2.3-beta.1",
                reg("drive", Channel::Beta, Some("1.2.3-beta.1")),
            ),
        ];
        for (s, expected) in cases {
            assert_eq!(Source::parse(s).unwrap(), expected, "{s}");
        }
        for bad in [
            "registry://",
            "registry://Drive",
            "registry://drive/nightly",
            "registry://drive/stable/1.0/x",
            "registry://drive/stable/..",
            "registry://drive/1.0?x=1",
            "registry://drive/stable/a%2f",
        ] {
            assert!(
                matches!(Source::parse(bad), Err(AppsError::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_sources() {
        let sha = "ab".repeat(32);
        assert_eq!(
            Source::parse(&format!("http://127.0.0.1:8080/a.tar.gz#{sha}")).unwrap(),
            Source::Http {
                url: "http://127.0.0.1:8080/a.tar.gz".into(),
                sha256: Some(sha.clone())
            }
        );
        assert_eq!(
            Source::parse("http://h/a.tgz").unwrap(),
            Source::Http {
                url: "http://h/a.tgz".into(),
                sha256: None
            }
        );
        assert_eq!(
            Source::parse("file:///srv/my%20app").unwrap(),
            Source::File("/srv/my app".into())
        );
        assert_eq!(
            Source::parse("file://localhost/srv/a.tar.gz").unwrap(),
            Source::File("/srv/a.tar.gz".into())
        );
        for bad in [
            "http://",
            "http://h/a.tgz#nothex",
            "https://",
            "file://relative/path",
            "file:relative",
            "git://github.com/cozy/drive",
            "ftp://h/a",
            "drive",
            "http://h/a b",
        ] {
            assert!(
                matches!(Source::parse(bad), Err(AppsError::InvalidInput(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Source::parse("https://h/a.tgz").unwrap(),
            Source::Http { url, sha256: None } if url == "https://h/a.tgz"
        ));
    }
}
