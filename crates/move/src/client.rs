//! Hearth's outgoing HTTP client for imports and moves (blocking ureq; callers run
//! it in `spawn_blocking`).
//!
//! - `localhost` and `*.localhost` resolve to loopback (RFC 6761), so an export link of
//!   another instance on this machine works without touching `/etc/hosts`.
//! - Unless the operator asked (admin API), other names must resolve to public
//!   addresses on ports 80 and 443: a person cannot make the server fetch from its own
//!   network (SSRF).

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Manifests are small JSON documents.
const MAX_MANIFEST: u64 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Who asked for the request: a person (public addresses only) or the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Public,
    Any,
}

fn is_local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

#[derive(Debug)]
struct HearthResolver {
    reach: Reach,
}

impl Resolver for HearthResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or("");
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        if is_local_name(host) {
            let mut out = self.empty();
            out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
            out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
            return Ok(out);
        }
        let found = DefaultResolver::default().resolve(uri, config, timeout)?;
        if self.reach == Reach::Any {
            return Ok(found);
        }
        if port != 80 && port != 443 {
            return Err(ureq::Error::BadUri(format!(
                "{host}:{port}: only ports 80 and 443 can be reached"
            )));
        }
        let mut out = self.empty();
        for a in found.iter().filter(|a| is_public(a.ip())) {
            out.push(*a);
        }
        if out.is_empty() {
            return Err(ureq::Error::BadUri(format!(
                "{host} is not a public address"
            )));
        }
        Ok(out)
    }
}

fn agent(reach: Reach, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(5)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::new(), HearthResolver { reach })
}

/// Why a request failed.
#[derive(Debug)]
pub enum FetchError {
    /// The server answered with another status than 200.
    Status(u16),
    /// No answer (DNS, connection, TLS, timeout, refused address) or a bad body.
    Transport(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "the server answered {s}"),
            Self::Transport(m) => f.write_str(m),
        }
    }
}

/// GETs a JSON document (at most 1 MiB).
pub fn get_json(url: &str, reach: Reach) -> Result<serde_json::Value, FetchError> {
    let mut resp = agent(reach, Duration::from_secs(60))
        .get(url)
        .header("Accept", "application/vnd.api+json, application/json")
        .call()
        .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_MANIFEST)
        .read_to_vec()
        .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| FetchError::Transport(format!("{url}: not JSON: {e}")))
}

/// GETs a body into `out` (a temporary file); answers its length.
pub fn download(url: &str, reach: Reach, out: &mut impl Write) -> Result<u64, FetchError> {
    let mut resp = agent(reach, Duration::from_secs(3 * 3600))
        .get(url)
        .call()
        .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n: u64 = 0;
    loop {
        let k = reader
            .read(&mut buf)
            .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
        if k == 0 {
            break;
        }
        out.write_all(&buf[..k])
            .map_err(|e| FetchError::Transport(format!("cannot write the download: {e}")))?;
        n += k as u64;
    }
    Ok(n)
}

/// The body of a [`post`].
#[derive(Debug, Clone)]
pub enum PostBody {
    None,
    /// `application/json` (JSON:API bodies too).
    Json(serde_json::Value),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
}

/// The answer to a [`post`]: the final status (after redirects, which are followed
/// with GET as browsers do for 303) and the body (at most 1 MiB).
#[derive(Debug, Clone)]
pub struct PostAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl PostAnswer {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// POSTs to another server (a move's source or target, a wizard's call) with an
/// optional bearer token; any status is an answer, only a transport failure is an
/// error.
pub fn post(
    url: &str,
    reach: Reach,
    bearer: Option<&str>,
    body: PostBody,
) -> Result<PostAnswer, FetchError> {
    let mut req = agent(reach, Duration::from_secs(120))
        .post(url)
        .header("Accept", "application/vnd.api+json, application/json");
    if let Some(t) = bearer {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let sent = match body {
        PostBody::None => req.send_empty(),
        PostBody::Json(v) => req
            .header("Content-Type", "application/json")
            .send(v.to_string().as_bytes()),
        PostBody::Form(fields) => req.send_form(fields),
    };
    let mut resp = sent.map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_MANIFEST)
        .read_to_vec()
        .unwrap_or_default();
    Ok(PostAnswer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "100.64.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
        assert!(is_local_name("alice.localhost"));
        assert!(is_local_name("LOCALHOST."));
        assert!(!is_local_name("localhost.example.com"));
    }
}
