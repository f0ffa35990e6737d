//! Blocking HTTP GETs (ureq) for registries and tarballs, with size and time
//! limits. Callers run these inside `spawn_blocking`.
//! `https://` goes through rustls with the Mozilla roots.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{AppsError, AppsResult};

/// Registry answers (version documents) are small: they carry one manifest.
pub(crate) const MAX_DOC_BYTES: u64 = 4 << 20;
/// Time for one registry request, connection included.
const DOC_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for one tarball download, connection included.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a GET returned.
pub(crate) enum Got<T> {
    Found(T),
    NotFound,
    /// Another status, with the start of the body for the error message.
    Status(u16, String),
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        // Statuses are answers to interpret (404 moves to the next registry).
        .http_status_as_error(false)
        // No proxy configuration in Hearth: an HTTP_PROXY meant for something else
        // must not reroute a loopback registry.
        .proxy(None)
        .max_redirects(5)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Refuses what this client cannot fetch.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{url}: not an http(s):// URL"))
    }
}

fn transport(url: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("{url}: timed out ({t})"),
        other => format!("{url}: {other}"),
    }
}

/// GETs a small document (at most `MAX_DOC_BYTES`).
pub(crate) fn get_doc(url: &str) -> Result<Got<Vec<u8>>, String> {
    check_url(url)?;
    let mut resp = agent(DOC_TIMEOUT)
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| transport(url, e))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOC_BYTES)
        .read_to_vec()
        .map_err(|e| transport(url, e))?;
    Ok(match status {
        200 => Got::Found(body),
        404 => Got::NotFound,
        s => Got::Status(
            s,
            String::from_utf8_lossy(&body).chars().take(200).collect(),
        ),
    })
}

/// Downloads `url` into the new file `dest`, at most `limit` bytes; returns the
/// sha256 (hex) of what was written.
pub(crate) fn download(url: &str, dest: &Path, limit: u64) -> AppsResult<Got<String>> {
    check_url(url).map_err(AppsError::Fetch)?;
    let resp = agent(DOWNLOAD_TIMEOUT)
        .get(url)
        .call()
        .map_err(|e| AppsError::Fetch(transport(url, e)))?;
    let status = resp.status().as_u16();
    match status {
        200 => {}
        404 => return Ok(Got::NotFound),
        s => return Ok(Got::Status(s, String::new())),
    }
    if resp.body().content_length().is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    // ureq's own limit is set above ours so that ours is the one that reports.
    let mut body = resp
        .into_body()
        .into_with_config()
        .limit(limit.saturating_add(1))
        .reader();
    let mut file = File::create_new(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| AppsError::Fetch(format!("{url}: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(too_large(limit));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
    }
    file.sync_all()?;
    Ok(Got::Found(hex(&hasher.finalize())))
}

pub(crate) fn too_large(limit: u64) -> AppsError {
    AppsError::BadArchive(format!("the package is larger than {} MiB", limit >> 20))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
