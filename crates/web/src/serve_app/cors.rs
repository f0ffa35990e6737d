//! CORS for the instance's own web apps (spec core-api B.4): the app served at
//! `http://drive.alice.localhost:8080` calls the API of `http://alice.localhost:8080`
//! with its token and the session cookie (`credentials: "include"`). Only origins that
//! are app hosts of the very instance the request is for are answered; `/auth/*` never
//! is. Other origins see the server as if CORS did not exist: browsers then refuse.

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hearth_instances::Instance;

use crate::instance::scheme_for;

const METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE";
const DEFAULT_HEADERS: &str = "Accept, Authorization, Content-Type, Content-Length, If-Match, If-None-Match, X-Requested-With";
/// Preflights are remembered for 12 hours, as in the original.
const MAX_AGE: &str = "43200";

/// Whether `origin` is an app origin of `inst`: the instance's scheme and an app host
/// of one of its domains (with the same port).
pub(crate) fn allowed_origin(inst: &Instance, origin: &str, flat: bool) -> bool {
    let scheme = scheme_for(&inst.domain);
    let Some(host) = origin
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
    else {
        return false;
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', '\\', ' ']) {
        return false;
    }
    let host = host.to_ascii_lowercase();
    match super::split_app_host(&host, flat) {
        Some((parent, _slug)) => inst.all_domains().any(|d| d == parent),
        None => false,
    }
}

fn is_auth_path(path: &str) -> bool {
    path == "/auth" || path.starts_with("/auth/")
}

/// Answers a preflight of an app origin, or runs the request and adds the CORS
/// headers to its response.
pub(super) async fn handle(inst: &Instance, flat: bool, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| !is_auth_path(req.uri().path()) && allowed_origin(inst, o, flat))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let requested = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_HEADERS));
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        allow(h, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
        return res;
    }
    let mut res = next.run(req).await;
    allow(res.headers_mut(), origin);
    res
}

fn allow(h: &mut HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_app_origins_of_the_instance() {
        let i = Instance {
            domain: "alice.localhost:8080".into(),
            domain_aliases: vec!["alias.localhost:8080".into()],
            ..Default::default()
        };
        for ok in [
            "http://drive.alice.localhost:8080",
            "http://DRIVE.alias.localhost:8080",
        ] {
            assert!(allowed_origin(&i, ok, false), "{ok}");
        }
        for bad in [
            "http://alice.localhost:8080",
            "https://drive.alice.localhost:8080",
            "http://drive.alice.localhost",
            "http://evil.localhost:8080",
            "http://a.b.alice.localhost:8080",
            "http://drive.alice.localhost:8080/x",
            "http://x@drive.alice.localhost:8080",
            "null",
        ] {
            assert!(!allowed_origin(&i, bad, false), "{bad}");
        }
        let flat = Instance {
            domain: "alice.example.net".into(),
            ..Default::default()
        };
        assert!(allowed_origin(
            &flat,
            "https://alice-drive.example.net",
            true
        ));
        assert!(!allowed_origin(
            &flat,
            "https://bob-drive.example.net",
            true
        ));
    }
}
