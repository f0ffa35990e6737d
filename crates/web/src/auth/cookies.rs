//! The cookies of the auth pages (spec core-api B.4): the session cookie `cozysessid`
//! and the double-submit CSRF cookie `_csrf`, read from `Cookie` headers and written
//! as `Set-Cookie` values. No cookie value is ever logged.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use hearth_instances::{Instance, passphrase::constant_time_eq, random_bytes};

use crate::instance::scheme_for;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "cozysessid";
/// The CSRF cookie's name.
pub(crate) const CSRF_COOKIE: &str = "_csrf";
/// A "stay logged in" cookie lasts ten years (the server ends the session earlier).
const LONG_RUN_MAX_AGE: u64 = 10 * 365 * 24 * 3600;
/// A CSRF token is good for an hour.
const CSRF_MAX_AGE: u64 = 3600;

/// Every value of the cookie `name` in the request (a parent domain's cookie may
/// come with the host's own, under the same name).
pub(crate) fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The host part of the domain the request used, for the cookie's `Domain`: the
/// `Host` when it is one of the instance's domains, else the main domain; no port.
/// `None` for IP addresses, which cannot be cookie domains.
fn cookie_domain(instance: &Instance, headers: &HeaderMap) -> Option<String> {
    let domain = super::request_domain(instance, headers);
    let host = match domain.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => domain.as_str(),
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    Some(host.to_owned())
}

/// The attributes shared by both cookies: `Secure` unless the instance is served
/// over plain HTTP (development names and explicit ports).
fn secure(instance: &Instance) -> &'static str {
    if scheme_for(&instance.domain) == "https" {
        "; Secure"
    } else {
        ""
    }
}

fn header_value(text: String) -> HeaderValue {
    // Cookie values here are base64url, hex and fixed words: always valid.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` for a session: `Max-Age` only for a long-run session.
pub(crate) fn session(
    instance: &Instance,
    headers: &HeaderMap,
    value: &str,
    long_run: bool,
) -> HeaderValue {
    let domain = cookie_domain(instance, headers)
        .map(|d| format!("; Domain={d}"))
        .unwrap_or_default();
    let max_age = if long_run {
        format!("; Max-Age={LONG_RUN_MAX_AGE}")
    } else {
        String::new()
    };
    header_value(format!(
        "{SESSION_COOKIE}={value}; Path=/{domain}{max_age}; HttpOnly; SameSite=Lax{}",
        secure(instance)
    ))
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_session(instance: &Instance, headers: &HeaderMap) -> HeaderValue {
    let domain = cookie_domain(instance, headers)
        .map(|d| format!("; Domain={d}"))
        .unwrap_or_default();
    header_value(format!(
        "{SESSION_COOKIE}=; Path=/{domain}; Max-Age=0; HttpOnly; SameSite=Lax{}",
        secure(instance)
    ))
}

/// The request's CSRF token if it has a well-formed one, else a new one: the token to
/// put in the page's form, and the `Set-Cookie` that (re)sets it for an hour.
pub(crate) fn csrf(instance: &Instance, headers: &HeaderMap) -> (String, HeaderValue) {
    let token = values(headers, CSRF_COOKIE)
        .find(|t| well_formed_csrf(t))
        .map(str::to_owned)
        .unwrap_or_else(new_csrf_token);
    let cookie = header_value(format!(
        "{CSRF_COOKIE}={token}; Path=/auth; Max-Age={CSRF_MAX_AGE}; HttpOnly; SameSite=Strict{}",
        secure(instance)
    ));
    (token, cookie)
}

fn new_csrf_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(24))
}

fn well_formed_csrf(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a form failed the double-submit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsrfFailure {
    /// The form has no `csrf_token` field (400).
    MissingField,
    /// No cookie, or a different value (403).
    Mismatch,
}

/// Checks a form's `csrf_token` field against the `_csrf` cookie.
pub(crate) fn check_csrf(headers: &HeaderMap, field: Option<&str>) -> Result<(), CsrfFailure> {
    let field = field
        .filter(|f| !f.is_empty())
        .ok_or(CsrfFailure::MissingField)?;
    if values(headers, CSRF_COOKIE)
        .any(|c| well_formed_csrf(c) && constant_time_eq(c.as_bytes(), field.as_bytes()))
    {
        Ok(())
    } else {
        Err(CsrfFailure::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    fn inst(domain: &str) -> Instance {
        Instance {
            domain: domain.into(),
            ..Default::default()
        }
    }

    #[test]
    fn reading_cookies() {
        let h = headers("a=1; cozysessid=x.y ;cozysessid=\"z\"", "h");
        assert_eq!(values(&h, SESSION_COOKIE).collect::<Vec<_>>(), ["x.y", "z"]);
        assert_eq!(values(&h, "b").count(), 0);
    }

    #[test]
    fn session_cookie_attributes() {
        let h = headers("", "alice.localhost:8080");
        let local = inst("alice.localhost:8080");
        assert_eq!(
            session(&local, &h, "id.sig", false),
            "cozysessid=id.sig; Path=/; Domain=alice.localhost; HttpOnly; SameSite=Lax"
        );
        let public = inst("alice.example.net");
        let h = headers("", "alice.example.net");
        assert_eq!(
            session(&public, &h, "v", true),
            "cozysessid=v; Path=/; Domain=alice.example.net; Max-Age=315360000; HttpOnly; \
             SameSite=Lax; Secure"
        );
        assert!(
            clear_session(&public, &h)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        let ip = inst("127.0.0.1:8080");
        let h = headers("", "127.0.0.1:8080");
        assert!(
            !session(&ip, &h, "v", false)
                .to_str()
                .unwrap()
                .contains("Domain")
        );
    }

    #[test]
    fn csrf_double_submit() {
        let i = inst("a.localhost");
        let (token, cookie) = csrf(&i, &HeaderMap::new());
        assert!(well_formed_csrf(&token), "{token}");
        assert!(
            cookie
                .to_str()
                .unwrap()
                .ends_with("; Path=/auth; Max-Age=3600; HttpOnly; SameSite=Strict")
        );
        let h = headers(&format!("_csrf={token}"), "a.localhost");
        assert_eq!(csrf(&i, &h).0, token, "an existing token is kept");
        assert_eq!(check_csrf(&h, Some(&token)), Ok(()));
        assert_eq!(check_csrf(&h, None), Err(CsrfFailure::MissingField));
        assert_eq!(check_csrf(&h, Some("x")), Err(CsrfFailure::Mismatch));
        assert_eq!(
            check_csrf(&HeaderMap::new(), Some(&token)),
            Err(CsrfFailure::Mismatch)
        );
    }
}
