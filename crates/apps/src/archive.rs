//! Packages on disk: extracting tarballs safely, copying folders, finding the
//! package root and reading its manifest.
//!
//! Extraction refuses (as [`AppsError::BadArchive`]) absolute paths, `..`, links,
//! devices and FIFOs, and archives past the entry or size limits. Files are written
//! with default permissions (modes in the archive are ignored). Gzip is detected by
//! its magic bytes, so a plain `.tar` works too.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::http::hex;
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::{AppsError, AppsResult};

/// What a package may hold once unpacked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

pub(crate) const LIMITS: Limits = Limits {
    max_entries: 100_000,
    max_bytes: 1 << 30,
};

/// The sha256 (hex) of a file.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Extracts the tarball at `archive` into `dest` (an existing, empty directory).
pub(crate) fn extract(archive: &Path, dest: &Path, limits: Limits) -> AppsResult<()> {
    let corrupt = |e: io::Error| AppsError::BadArchive(format!("unreadable archive: {e}"));
    let mut input = BufReader::new(File::open(archive)?);
    let mut magic = [0u8; 2];
    let n = read_full(&mut input, &mut magic)?;
    let gzipped = n == 2 && magic == [0x1f, 0x8b];
    let chained: Box<dyn Read> = Box::new(io::Cursor::new(magic[..n].to_vec()).chain(input));
    let reader: Box<dyn Read> = if gzipped {
        Box::new(GzDecoder::new(chained))
    } else {
        chained
    };
    let mut tar = tar::Archive::new(reader);
    let mut entries_seen = 0u64;
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(AppsError::BadArchive(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let raw_path = entry.path().map_err(corrupt)?.into_owned();
        let kind = entry.header().entry_type();
        // A pax global header (`git archive` writes one) describes the archive.
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        let Some(rel) = clean_path(&raw_path)? else {
            continue;
        };
        let target = dest.join(&rel);
        match kind {
            EntryType::Directory => {
                fs::create_dir_all(&target).map_err(|e| write_error(&rel, e))?
            }
            EntryType::Regular | EntryType::Continuous => {
                let declared = entry.header().size().map_err(corrupt)?;
                if bytes.saturating_add(declared) > limits.max_bytes {
                    return Err(too_big(limits));
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(|e| write_error(&rel, e))?;
                }
                let mut file = File::create(&target).map_err(|e| write_error(&rel, e))?;
                loop {
                    let n = entry.read(&mut buf).map_err(corrupt)?;
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                    if bytes > limits.max_bytes {
                        return Err(too_big(limits));
                    }
                    file.write_all(&buf[..n])?;
                }
                files += 1;
            }
            EntryType::Symlink | EntryType::Link => {
                return Err(AppsError::BadArchive(format!(
                    "{} is a link, which packages may not hold",
                    raw_path.display()
                )));
            }
            other => {
                return Err(AppsError::BadArchive(format!(
                    "{} is a {}, which packages may not hold",
                    raw_path.display(),
                    entry_kind_name(other)
                )));
            }
        }
    }
    if files == 0 {
        return Err(AppsError::BadArchive("the archive holds no file".into()));
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn entry_kind_name(t: EntryType) -> &'static str {
    match t {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

fn too_big(limits: Limits) -> AppsError {
    AppsError::BadArchive(format!(
        "the package unpacks to more than {} MiB",
        limits.max_bytes >> 20
    ))
}

/// A failure to create a file from an entry: the archive's fault when a path goes
/// through a file or is too long, the server's otherwise.
fn write_error(rel: &Path, e: io::Error) -> AppsError {
    match e.kind() {
        io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::AlreadyExists
        | io::ErrorKind::InvalidInput => {
            AppsError::BadArchive(format!("{} cannot be created: {e}", rel.display()))
        }
        _ => AppsError::Io(e),
    }
}

/// The longest path and file name an entry may have.
const MAX_PATH_BYTES: usize = 1024;
const MAX_NAME_BYTES: usize = 255;

/// A relative path without `.` parts; `None` for the archive root itself.
fn clean_path(path: &Path) -> AppsResult<Option<PathBuf>> {
    if path.as_os_str().len() > MAX_PATH_BYTES {
        return Err(AppsError::BadArchive(format!(
            "a path is longer than {MAX_PATH_BYTES} bytes"
        )));
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) if part.len() > MAX_NAME_BYTES => {
                return Err(AppsError::BadArchive(format!(
                    "a file name is longer than {MAX_NAME_BYTES} bytes"
                )));
            }
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(AppsError::BadArchive(format!(
                    "{} goes up with `..`",
                    path.display()
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(AppsError::BadArchive(format!(
                    "{} is an absolute path",
                    path.display()
                )));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Copies the folder `src` into `dest` (which must not exist), skipping `.git`
/// directories; returns a sha256 of the copied tree (paths, sizes and contents, in
/// name order). Links and special files are refused.
pub(crate) fn copy_folder(src: &Path, dest: &Path, limits: Limits) -> AppsResult<String> {
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    let mut bytes = 0u64;
    fs::create_dir(dest)?;
    copy_dir(
        src,
        dest,
        Path::new(""),
        limits,
        &mut hasher,
        &mut count,
        &mut bytes,
    )?;
    Ok(hex(&hasher.finalize()))
}

fn copy_dir(
    src: &Path,
    dest: &Path,
    rel: &Path,
    limits: Limits,
    hasher: &mut Sha256,
    count: &mut u64,
    bytes: &mut u64,
) -> AppsResult<()> {
    let mut names: Vec<_> = fs::read_dir(src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut buf = vec![0u8; 64 * 1024];
    for name in names {
        let from = src.join(&name);
        let to = dest.join(&name);
        let rel = rel.join(&name);
        let meta = fs::symlink_metadata(&from)?;
        *count += 1;
        if *count > limits.max_entries {
            return Err(AppsError::BadArchive(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        if meta.is_dir() {
            if name == ".git" {
                continue;
            }
            fs::create_dir(&to)?;
            copy_dir(&from, &to, &rel, limits, hasher, count, bytes)?;
        } else if meta.is_file() {
            let mut input = File::open(&from)?;
            let mut output = File::create_new(&to)?;
            hasher.update(rel.to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(meta.len().to_le_bytes());
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                *bytes += n as u64;
                if *bytes > limits.max_bytes {
                    return Err(too_big(limits));
                }
                hasher.update(&buf[..n]);
                output.write_all(&buf[..n])?;
            }
        } else {
            return Err(AppsError::BadArchive(format!(
                "{} is a link or a special file, which packages may not hold",
                rel.display()
            )));
        }
    }
    Ok(())
}

/// The directory of an unpacked archive that holds the package: `tar_prefix` when
/// given; else the root if the manifest is there; else the single top-level
/// directory (tarballs made as `tar czf x.tgz my-app/`, npm's `package/`).
pub(crate) fn package_root(
    unpacked: &Path,
    manifest_name: &str,
    tar_prefix: Option<&str>,
) -> AppsResult<PathBuf> {
    if let Some(prefix) = tar_prefix {
        let root = unpacked.join(prefix);
        return match fs::symlink_metadata(&root) {
            Ok(m) if m.is_dir() => Ok(root),
            _ => Err(AppsError::BadArchive(format!(
                "tar_prefix {prefix:?} is not a directory of the archive"
            ))),
        };
    }
    if fs::symlink_metadata(unpacked.join(manifest_name)).is_ok() {
        return Ok(unpacked.to_owned());
    }
    let entries: Vec<_> = fs::read_dir(unpacked)?.collect::<Result<_, _>>()?;
    if let [only] = entries.as_slice()
        && only.file_type()?.is_dir()
    {
        return Ok(only.path());
    }
    Ok(unpacked.to_owned())
}

/// The manifest file at the root of a package, if there is one.
pub(crate) fn read_manifest(root: &Path, manifest_name: &str) -> AppsResult<Option<Vec<u8>>> {
    let path = root.join(manifest_name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() {
        return Err(AppsError::BadManifest(format!(
            "{manifest_name} is not a file"
        )));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(AppsError::BadManifest(format!(
            "{manifest_name} is larger than {} MiB",
            MAX_MANIFEST_BYTES >> 20
        )));
    }
    Ok(Some(fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_paths() {
        let ok = |p: &str| clean_path(Path::new(p)).unwrap();
        assert_eq!(ok("a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(ok("./a/./b/"), Some(PathBuf::from("a/b")));
        assert_eq!(ok("./"), None);
        for bad in ["../a", "a/../../b", "/etc/passwd", "a/.."] {
            assert!(
                matches!(clean_path(Path::new(bad)), Err(AppsError::BadArchive(_))),
                "{bad}"
            );
        }
    }
}
