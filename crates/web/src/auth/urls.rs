//! The URLs the auth pages send people to: the domain the request used, the home
//! page, and the `redirect` parameter, kept on the instance (spec instances 1.7,
//! core-api B.5).

use axum::http::{HeaderMap, header};
use hearth_instances::Instance;

use crate::instance::scheme_for;

/// The domain the request used when it is one of the instance's (an alias), else the
/// main domain: generated URLs stay on the domain the person typed (spec 1.7).
pub(crate) fn request_domain(i: &Instance, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if i.all_domains().any(|d| d == host) {
        host
    } else {
        i.domain.clone()
    }
}

/// The login page (a relative URL) that comes back to `path_and_query` on the domain
/// the request used.
pub(crate) fn login_then(i: &Instance, headers: &HeaderMap, path_and_query: &str) -> String {
    let here = format!(
        "{}://{}{path_and_query}",
        scheme_for(&i.domain),
        request_domain(i, headers)
    );
    format!("/auth/login?redirect={}", urlencode(&here))
}

/// Percent-encoding of everything but the unreserved characters (RFC 3986), for a
/// value in a query.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The home page of the instance: where a login or a registration leads by default.
pub(super) fn home_url(i: &Instance, headers: &HeaderMap) -> String {
    format!(
        "{}://{}/",
        scheme_for(&i.domain),
        request_domain(i, headers)
    )
}

/// A `redirect` is acceptable when it stays on the instance: a path (`/…`, not `//…`),
/// or an http(s) URL whose host is one of its domains or a subdomain of one (its
/// apps). `Ok(None)` when empty; the absolute URL otherwise.
pub(super) fn checked_redirect(
    i: &Instance,
    headers: &HeaderMap,
    raw: &str,
) -> Result<Option<String>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.starts_with('/') {
        if raw.starts_with("//") || raw.starts_with("/\\") || raw.contains(['\r', '\n']) {
            return Err(());
        }
        let base = home_url(i, headers);
        return Ok(Some(format!("{}{raw}", base.trim_end_matches('/'))));
    }
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or(())?;
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if authority.contains(['@', '\\']) || raw.contains(['\r', '\n', ' ']) {
        return Err(());
    }
    let ours = i
        .all_domains()
        .any(|d| authority == d || authority.ends_with(&format!(".{d}")));
    if ours {
        Ok(Some(raw.to_owned()))
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn inst() -> Instance {
        Instance {
            domain: "alice.localhost:8080".into(),
            domain_aliases: vec!["alias.localhost:8080".into()],
            ..Default::default()
        }
    }

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn redirects_stay_on_the_instance() {
        let (i, h) = (inst(), host("alias.localhost:8080"));
        assert_eq!(checked_redirect(&i, &h, ""), Ok(None));
        assert_eq!(
            checked_redirect(&i, &h, "/settings?x=1"),
            Ok(Some("http://alias.localhost:8080/settings?x=1".into()))
        );
        for ok in [
            "http://alice.localhost:8080/",
            "https://drive.alice.localhost:8080/#/folder",
        ] {
            assert_eq!(checked_redirect(&i, &h, ok), Ok(Some(ok.into())), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "https://alice.localhost:8080@evil.example/",
            "https://evilalice.localhost:8080/",
            "javascript:alert(1)",
        ] {
            assert_eq!(checked_redirect(&i, &h, bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn home_follows_the_requested_domain() {
        let i = inst();
        assert_eq!(
            home_url(&i, &host("ALIAS.localhost:8080")),
            "http://alias.localhost:8080/"
        );
        assert_eq!(home_url(&i, &host("other")), "http://alice.localhost:8080/");
    }
}
