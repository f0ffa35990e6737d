//! Apps through the whole router on a real SQLite store and real files: a web app
//! installed by hand (its files and documents, as `hearth_apps` lays them out) served
//! on its own origin, its token and permissions, CORS for its calls, the `/apps`
//! resources and the admin routes' errors.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

mod support;

use axum::{body::Body, http::Method, http::StatusCode};
use hearth_apps::AppKind;
use hearth_core::Doctype;
use serde_json::{Value, json};
use support::{Env, Res, started_env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "a.localhost";
const APP_HOST: &str = "demo.a.localhost";
const PASSWORD: &str = "correct horse";
const HTML: (&str, &str) = ("accept", "text/html");

const INDEX: &str = r#"<!DOCTYPE html>
<html lang="{{.Locale}}">
<head>
<meta charset="utf-8">
<title>{{.AppName}}</title>
{{.CozyBar}}{{.ThemeCSS}}{{.Favicon}}
</head>
<body>
<div role="application" data-cozy="{{.CozyData}}" data-token="{{.Token}}" data-domain="{{.Domain}}" data-slug="{{.AppSlug}}" data-editor="{{.AppEditor}}" data-unknown="{{.NoSuchValue}}"></div>
{{if .Token}}<p id="logged">yes</p>{{end}}
<script src="app.js"></script>
</body>
</html>
"#;

const APP_JS: &str = "console.log('demo');\n";

fn manifest() -> Value {
    json!({
        "name": "Demo",
        "slug": "demo",
        "editor": "Hearth",
        "version": "1.0.0",
        "icon": "icon.svg",
        "type": "webapp",
        "permissions": {
            "contacts": {"type": "io.cozy.contacts", "verbs": ["GET"], "description": "read"}
        }
    })
}

/// An instance whose owner has a password, so a browser can log in.
async fn env() -> Env {
    let e = started_env(|s| s).await;
    e.create_instance(
        DOMAIN,
        &format!(
            "&Passphrase={}&KdfIterations=50000",
            PASSWORD.replace(' ', "%20")
        ),
    )
    .await;
    e
}

/// Installs `slug` by hand: its files in `Apps::app_dir`, its document in
/// `io.cozy.apps` and its permissions in `io.cozy.permissions`, as `hearth_apps`
/// writes them.
async fn install_by_hand(e: &Env, slug: &str, manifest: Value, files: &[(&str, &[u8])]) {
    let inst = e.state.instances.get_str(DOMAIN).await.unwrap();
    let dir = e.state.apps.app_dir(&inst, AppKind::Webapp, slug);
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let id = AppKind::Webapp.doc_id(slug);
    let mut doc = manifest.as_object().unwrap().clone();
    for (k, v) in [
        ("_id", json!(id)),
        ("slug", json!(slug)),
        ("source", json!(format!("file://{}", dir.display()))),
        ("state", json!("ready")),
        ("checksum", json!("")),
        ("created_at", json!("2026-01-01T00:00:00Z")),
        ("updated_at", json!("2026-01-01T00:00:00Z")),
    ] {
        doc.insert(k.into(), v);
    }
    let iid = inst.instance_id();
    e.state
        .store
        .put(&iid, &Doctype::new("io.cozy.apps").unwrap(), doc)
        .await
        .unwrap();
    let perms = json!({
        "_id": id,
        "type": "app",
        "source_id": id,
        "permissions": manifest["permissions"],
    });
    e.state
        .store
        .put(
            &iid,
            &Doctype::new("io.cozy.permissions").unwrap(),
            perms.as_object().unwrap().clone(),
        )
        .await
        .unwrap();
}

async fn install_demo(e: &Env) {
    install_by_hand(
        e,
        "demo",
        manifest(),
        &[
            ("index.html", INDEX.as_bytes()),
            ("app.js", APP_JS.as_bytes()),
            ("icon.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            ("img/logo.0123456789abcdef.png", &support::png(2, 2)),
            ("sub/inner.txt", b"inner"),
        ],
    )
    .await;
    // Outside the app's directory: never served.
    let inst = e.state.instances.get_str(DOMAIN).await.unwrap();
    let dir = e.state.apps.app_dir(&inst, AppKind::Webapp, "demo");
    std::fs::write(dir.parent().unwrap().join("secret.txt"), "secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        dir.parent().unwrap().join("secret.txt"),
        dir.join("link.txt"),
    )
    .unwrap();
}

async fn get(e: &Env, host: &str, uri: &str, headers: &[(&str, &str)]) -> Res {
    e.call(host, None, Method::GET, uri, headers, Body::empty())
        .await
}

/// The value of `attr="…"` in a page.
fn attr(body: &str, name: &str) -> String {
    let marker = format!("{name}=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#43;", "+")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// One request over a real socket to the server, as a browser would send it.
async fn raw_get(e: &Env, host: &str, path: &str, cookie: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(e.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_app_on_its_own_origin() {
    let e = env().await;
    install_demo(&e).await;

    // No session: the index sends the person to the login page, back here after.
    let res = get(&e, APP_HOST, "/?x=1", &[HTML]).await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.text());
    assert_eq!(
        res.header("location"),
        "http://a.localhost/auth/login?redirect=http%3A%2F%2Fdemo.a.localhost%2F%3Fx%3D1"
    );
    assert!(
        res.header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );
    // Other files need the session too.
    let res = get(&e, APP_HOST, "/app.js", &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Logging in with that redirect comes back to the app with a cookie for the
    // instance's domain, which the app host receives.
    let (login, session) = e
        .login(DOMAIN, PASSWORD, Some("http://demo.a.localhost/"))
        .await;
    assert_eq!(login.header("location"), "http://demo.a.localhost/");
    assert!(
        login
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("Domain=a.localhost"))
    );
    let cookie = [HTML, ("cookie", session.as_str())];

    let res = get(&e, APP_HOST, "/", &cookie).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("content-type"), "text/html; charset=utf-8");
    assert!(res.header("cache-control").contains("no-store"));
    assert!(res.header("cache-control").contains("no-cache"));
    assert_eq!(res.header("x-frame-options"), "DENY");
    assert_eq!(res.header("x-content-type-options"), "nosniff");
    let csp = res.header("content-security-policy");
    for directive in [
        "default-src 'self' http://a.localhost ws://a.localhost",
        "connect-src 'self' blob: http://a.localhost ws://a.localhost",
        "img-src 'self' data: blob: http://a.localhost",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    let body = res.text();
    assert!(body.contains("<title>Demo</title>"), "{body}");
    assert!(body.contains("<html lang=\"en\">"), "{body}");
    assert!(body.contains("<p id=\"logged\">yes</p>"), "{body}");
    assert_eq!(attr(&body, "data-domain"), DOMAIN);
    assert_eq!(attr(&body, "data-slug"), "demo");
    assert_eq!(attr(&body, "data-editor"), "Hearth");
    assert_eq!(attr(&body, "data-unknown"), "");
    assert!(!body.contains("{{"), "{body}");
    let token = unescape(&attr(&body, "data-token"));
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let cozy: Value = serde_json::from_str(&unescape(&attr(&body, "data-cozy"))).unwrap();
    assert_eq!(cozy["token"], token);
    assert_eq!(cozy["domain"], DOMAIN);
    assert_eq!(cozy["locale"], "en");
    assert_eq!(cozy["subdomain"], "nested");
    assert_eq!(
        cozy["app"],
        json!({"editor": "Hearth", "name": "Demo", "prefix": "", "slug": "demo", "icon": "icon.svg"})
    );
    assert!(cozy["capabilities"].is_object() && cozy["flags"].is_object());

    // The token is the app's: its permissions are the manifest's.
    let me = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let attrs = &me.json()["data"]["attributes"];
    assert_eq!(attrs["type"], "app");
    assert_eq!(attrs["source_id"], "io.cozy.apps/demo");
    let rules: Vec<&Value> = attrs["permissions"].as_object().unwrap().values().collect();
    assert_eq!(rules.len(), 1, "{attrs}");
    assert_eq!(rules[0]["type"], "io.cozy.contacts");
    assert_eq!(rules[0]["verbs"], json!(["GET"]));
    let outside = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/data/io.cozy.notes/_all_docs",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN, "{}", outside.text());
    let inside = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/data/io.cozy.contacts/_all_docs",
            &[],
            Body::empty(),
        )
        .await;
    assert_ne!(inside.status, StatusCode::FORBIDDEN, "{}", inside.text());

    // The token is bound to the session it was made for: a logout ends it.
    let out = e
        .call(
            DOMAIN,
            None,
            Method::DELETE,
            "/auth/login",
            &[("accept", "application/json"), ("cookie", session.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    let after = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST, "{}", after.text());
    assert!(after.text().contains("Expired token"), "{}", after.text());
    let (_, session) = e.login(DOMAIN, PASSWORD, None).await;
    let cookie = [HTML, ("cookie", session.as_str())];

    // Files: their types, an ETag from the content, 304 when unchanged.
    let js = get(&e, APP_HOST, "/app.js", &cookie).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(js.text(), APP_JS);
    let etag = js.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert_ne!(etag, "\"d41d8cd98f00b204e9800998ecf8427e\"");
    let again = get(
        &e,
        APP_HOST,
        "/app.js",
        &[
            ("cookie", session.as_str()),
            ("if-none-match", etag.as_str()),
        ],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let svg = get(&e, APP_HOST, "/icon.svg", &cookie).await;
    assert_eq!(svg.header("content-type"), "image/svg+xml");
    assert_ne!(svg.header("etag"), etag);
    let png = get(&e, APP_HOST, "/img/logo.0123456789abcdef.png", &cookie).await;
    assert_eq!(png.header("content-type"), "image/png");
    assert!(png.header("cache-control").contains("immutable"));
    let inner = get(&e, APP_HOST, "/sub/inner.txt", &cookie).await;
    assert_eq!(inner.text(), "inner");
    // `/index.html` is the index too.
    let index = get(&e, APP_HOST, "/index.html", &cookie).await;
    assert!(index.text().contains("data-cozy="));

    // Nothing outside the app, no listings, no missing files.
    for (path, status) in [
        ("/../secret.txt", StatusCode::BAD_REQUEST),
        ("/sub/../../secret.txt", StatusCode::BAD_REQUEST),
        ("/%2e%2e/secret.txt", StatusCode::BAD_REQUEST),
        ("/%2E%2E/%2e%2e/secret.txt", StatusCode::BAD_REQUEST),
        ("/sub/..%2f..%2fsecret.txt", StatusCode::BAD_REQUEST),
        ("/..%5csecret.txt", StatusCode::BAD_REQUEST),
        ("//secret.txt", StatusCode::NOT_FOUND),
        ("/sub", StatusCode::NOT_FOUND),
        ("/sub/", StatusCode::NOT_FOUND),
        ("/missing.js", StatusCode::NOT_FOUND),
        ("/link.txt", StatusCode::NOT_FOUND),
    ] {
        let res = get(&e, APP_HOST, path, &cookie).await;
        assert_eq!(res.status, status, "{path}: {}", res.text());
        assert!(!res.text().contains("secret"), "{path}");
    }
    // Only reads.
    let post = e
        .call(
            APP_HOST,
            None,
            Method::POST,
            "/",
            &[("cookie", session.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

    // An app that is not installed, and a host of no instance.
    let nope = get(&e, "nope.a.localhost", "/", &cookie).await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND);
    assert!(nope.text().contains("Application not found"));
    let unknown = get(&e, "demo.b.localhost", "/", &cookie).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Over a real socket, as the browser sees it.
    let (status, head, body) = raw_get(&e, APP_HOST, "/", &session).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy:")
    );
    assert!(body.contains(&format!("data-domain=\"{DOMAIN}\"")));
    let (status, head, _) = raw_get(&e, APP_HOST, "/", "").await;
    assert_eq!(status, 302, "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_and_blocked_instances() {
    let e = env().await;
    let mut m = manifest();
    m["routes"] = json!({
        "/": {"folder": "/", "index": "index.html", "public": false},
        "/public": {"folder": "/pub", "index": "index.html", "public": true}
    });
    install_by_hand(
        &e,
        "demo",
        m,
        &[
            ("index.html", INDEX.as_bytes()),
            ("pub/index.html", b"<p>{{.AppName}} {{.Token}}!</p>"),
            ("pub/style.css", b"p{}"),
        ],
    )
    .await;
    // A public route needs no session; its index gets no token then.
    let res = get(&e, APP_HOST, "/public/", &[HTML]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.text(), "<p>Demo !</p>");
    let css = get(&e, APP_HOST, "/public/style.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    // The private route still redirects.
    let res = get(&e, APP_HOST, "/", &[HTML]).await;
    assert_eq!(res.status, StatusCode::FOUND);

    // A blocked instance blocks its apps.
    let res = e
        .admin(
            Method::PATCH,
            &format!("/instances/{DOMAIN}?Blocked=true&BlockingReason=PAYMENT_FAILED"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = get(&e, APP_HOST, "/public/", &[HTML]).await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_the_instance_apps_only() {
    let e = env().await;
    let preflight = |origin: &'static str, path: &'static str| {
        let e = &e;
        async move {
            e.call(
                DOMAIN,
                None,
                Method::OPTIONS,
                path,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization,content-type",
                    ),
                ],
                Body::empty(),
            )
            .await
        }
    };
    let ok = preflight("http://demo.a.localhost", "/data/io.cozy.contacts/_find").await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        "http://demo.a.localhost"
    );
    assert_eq!(ok.header("access-control-allow-credentials"), "true");
    assert!(ok.header("access-control-allow-methods").contains("POST"));
    assert_eq!(
        ok.header("access-control-allow-headers"),
        "authorization,content-type"
    );
    assert_eq!(ok.header("vary"), "Origin");
    assert_eq!(ok.header("access-control-max-age"), "43200");

    for (origin, path) in [
        ("http://evil.localhost", "/data/io.cozy.contacts/_find"),
        (
            "http://a.localhost.evil.localhost",
            "/data/io.cozy.contacts/_find",
        ),
        ("https://demo.a.localhost", "/data/io.cozy.contacts/_find"),
        ("http://demo.b.localhost", "/data/io.cozy.contacts/_find"),
        ("http://demo.a.localhost", "/auth/login"),
    ] {
        let res = preflight(origin, path).await;
        assert!(
            res.headers.get("access-control-allow-origin").is_none(),
            "{origin} {path}: {:?}",
            res.headers
        );
    }

    // The actual request carries the headers too, whatever its answer.
    let token = e.token(DOMAIN, "io.cozy.contacts").await;
    let res = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/permissions/self",
            &[("origin", "http://demo.a.localhost")],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.header("access-control-allow-origin"),
        "http://demo.a.localhost"
    );
    assert_eq!(res.header("access-control-allow-credentials"), "true");
    let res = e
        .call(
            DOMAIN,
            None,
            Method::GET,
            "/permissions/self",
            &[("origin", "http://demo.a.localhost")],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.header("access-control-allow-origin"),
        "http://demo.a.localhost"
    );
    let res = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/permissions/self",
            &[("origin", "http://evil.localhost")],
            Body::empty(),
        )
        .await;
    assert!(res.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_resources() {
    let e = env().await;
    install_demo(&e).await;
    let token = e.token(DOMAIN, "io.cozy.apps io.cozy.konnectors").await;
    let call = |method: Method, uri: &'static str, token: Option<String>| {
        let e = &e;
        async move {
            e.call(DOMAIN, token.as_deref(), method, uri, &[], Body::empty())
                .await
        }
    };

    let list = call(Method::GET, "/apps/", Some(token.clone())).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert_eq!(list.header("content-type"), "application/vnd.api+json");
    let body = list.json();
    assert_eq!(body["meta"]["count"], 1, "{body}");
    let app = &body["data"][0];
    assert_eq!(app["type"], "io.cozy.apps");
    assert_eq!(app["id"], "io.cozy.apps/demo");
    assert_eq!(app["attributes"]["slug"], "demo");
    assert_eq!(app["attributes"]["name"], "Demo");
    assert_eq!(app["attributes"]["state"], "ready");
    assert!(app["attributes"].get("_id").is_none());
    assert!(app["attributes"].get("_rev").is_none());
    assert!(app["meta"]["rev"].as_str().unwrap().starts_with("1-"));
    assert_eq!(app["links"]["self"], "/apps/demo");
    assert_eq!(app["links"]["related"], "http://demo.a.localhost/");
    assert_eq!(app["links"]["icon"], "/apps/demo/icon/1.0.0");

    let one = call(Method::GET, "/apps/demo", Some(token.clone())).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text());
    assert_eq!(one.json()["data"], *app);

    let konnectors = call(Method::GET, "/konnectors/", Some(token.clone())).await;
    assert_eq!(konnectors.status, StatusCode::OK);
    assert_eq!(konnectors.json()["data"], json!([]));

    let icon = call(Method::GET, "/apps/demo/icon/1.0.0", Some(token.clone())).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.header("content-type"), "image/svg+xml");
    assert!(icon.header("cache-control").contains("immutable"));

    // Refusals: no token, a token without the doctype, an app that is not there.
    let none = call(Method::GET, "/apps/", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let other = e.token(DOMAIN, "io.cozy.files").await;
    let denied = call(Method::GET, "/apps/", Some(other.clone())).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let denied = call(Method::POST, "/apps/drive", Some(other)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let missing = call(Method::GET, "/apps/missing", Some(token.clone())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json()["errors"][0]["detail"],
        "Application is not installed"
    );
    let missing = call(Method::DELETE, "/konnectors/missing", Some(token.clone())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    assert_eq!(missing.json()["errors"][0]["status"], "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_app_routes() {
    let e = env().await;
    let res = e
        .admin(
            Method::DELETE,
            &format!("/instances/{DOMAIN}/apps/missing"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    assert_eq!(res.json()["errors"][0]["status"], "404");
    let res = e
        .admin(
            Method::GET,
            &format!("/instances/{DOMAIN}/apps/missing?Kind=konnector"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = e
        .admin(
            Method::GET,
            &format!("/instances/{DOMAIN}/apps?Kind=bogus"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.json()["errors"][0]["source"]["parameter"], "Kind");
    let res = e
        .admin(
            Method::GET,
            "/instances/nobody.localhost/apps",
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = e
        .admin(
            Method::GET,
            &format!("/instances/{DOMAIN}/apps?Kind=konnector"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), json!([]));

    // Hand-installed, it is listed as its document.
    install_demo(&e).await;
    let res = e
        .admin(
            Method::GET,
            &format!("/instances/{DOMAIN}/apps"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let docs = res.json();
    assert_eq!(docs[0]["_id"], "io.cozy.apps/demo", "{docs}");
    assert_eq!(docs[0]["slug"], "demo");
    let res = e
        .admin(
            Method::GET,
            &format!("/instances/{DOMAIN}/apps/demo"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.json()["name"], "Demo");

    // Creation with apps no registry has: the instance exists, the apps are listed.
    let res = e
        .admin(
            Method::POST,
            "/instances?Domain=b.localhost&Apps=nothere,%20neither",
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(
        res.json()["meta"]["apps_not_installed"],
        json!(["nothere", "neither"])
    );
}

/// Writes an app's package (its manifest and files) in a folder, for `file://` sources.
fn package(
    e: &Env,
    name: &str,
    manifest_name: &str,
    manifest: &Value,
    files: &[(&str, &str)],
) -> String {
    let dir = e.dir.path().join("packages").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(manifest_name), manifest.to_string()).unwrap();
    for (f, content) in files {
        std::fs::write(dir.join(f), content).unwrap();
    }
    format!("file://{}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_serve_and_uninstall_from_folders() {
    let e = env().await;
    let cli = e.token(DOMAIN, "io.cozy.apps io.cozy.konnectors").await;
    let mut m = manifest();
    m["slug"] = json!("demo2");
    let source = package(
        &e,
        "demo2",
        "manifest.webapp",
        &m,
        &[
            ("index.html", INDEX),
            ("app.js", APP_JS),
            ("icon.svg", "<svg/>"),
        ],
    );

    // POST /apps/:slug installs: 202 with the resource (no `related` link there).
    let uri = format!("/apps/demo2?Source={source}");
    let res = e
        .call(DOMAIN, Some(&cli), Method::POST, &uri, &[], Body::empty())
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let data = &res.json()["data"];
    assert_eq!(data["id"], "io.cozy.apps/demo2");
    assert_eq!(data["type"], "io.cozy.apps");
    assert_eq!(data["attributes"]["slug"], "demo2");
    assert!(data["links"].get("related").is_none());
    // Twice: 409, also as an event stream.
    let again = e
        .call(DOMAIN, Some(&cli), Method::POST, &uri, &[], Body::empty())
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    let stream = e
        .call(
            DOMAIN,
            Some(&cli),
            Method::POST,
            &uri,
            &[("accept", "text/event-stream")],
            Body::empty(),
        )
        .await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.header("content-type"), "text/event-stream");
    assert!(
        stream.text().starts_with("event: error\r\ndata: \""),
        "{}",
        stream.text()
    );

    // Served, with a token carrying the manifest's permissions.
    let (_, session) = e.login(DOMAIN, PASSWORD, None).await;
    let page = get(&e, "demo2.a.localhost", "/", &[HTML, ("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let token = unescape(&attr(&page.text(), "data-token"));
    let me = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(
        me.json()["data"]["attributes"]["source_id"],
        "io.cozy.apps/demo2"
    );

    // A konnector through the admin API, with triggers: its own go with it.
    let mut konn = manifest();
    konn["type"] = json!("konnector");
    konn["slug"] = json!("demok");
    let ksource = package(
        &e,
        "demok",
        "manifest.konnector",
        &konn,
        &[("index.js", "")],
    );
    let res = e
        .admin(
            Method::POST,
            &format!("/instances/{DOMAIN}/apps/demok?Kind=konnector&Source={ksource}"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["_id"], "io.cozy.konnectors/demok");
    let inst = e.state.instances.get_str(DOMAIN).await.unwrap();
    let mut ids = Vec::new();
    for slug in ["demok", "other"] {
        let t = e
            .state
            .jobs
            .add_trigger(
                &inst,
                hearth_jobs::TriggerRequest {
                    kind: "@cron".into(),
                    arguments: "0 0 0 * * *".into(),
                    worker: "konnector".into(),
                    message: json!({"konnector": slug, "account": "acc"}),
                    options: None,
                    debounce: None,
                },
                true,
            )
            .await
            .unwrap();
        ids.push(t.id);
    }
    let res = e
        .call(
            DOMAIN,
            Some(&cli),
            Method::DELETE,
            "/konnectors/demok",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["data"]["id"], "io.cozy.konnectors/demok");
    let left: Vec<String> = e
        .state
        .jobs
        .list_triggers(&inst, &[], &[])
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, [ids[1].clone()]);

    // Uninstalled, the app is gone from its host and its tokens are no tokens.
    let res = e
        .call(
            DOMAIN,
            Some(&cli),
            Method::DELETE,
            "/apps/demo2",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["data"]["attributes"]["slug"], "demo2");
    let page = get(&e, "demo2.a.localhost", "/", &[HTML, ("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let me = e
        .call(
            DOMAIN,
            Some(&token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(me.status, StatusCode::BAD_REQUEST, "{}", me.text());
}
