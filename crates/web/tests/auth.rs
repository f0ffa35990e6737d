//! The browser side of authentication through the whole router, on a real SQLite store:
//! onboarding with the register token, login and logout with sessions and CSRF,
//! password changes, forced passphrases with CLI tokens, and the `LOGIN_FAILED` block
//! (spec instances 3, core-api B.4, B.5).

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use base64::Engine;
use hearth_core::{Doctype, InstanceId};
use hearth_instances::{Instances, InstancesConfig, ScryptCost, passphrase::client_hash};
use hearth_store::{AllDocsQuery, DocStore};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::{AdminAuth, AppState};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "s3cret";
/// The lowest iterations allowed: hashing stays fast in tests.
const ITERATIONS: u32 = 50_000;
const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
const JSON: (&str, &str) = ("accept", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON_BODY: (&str, &str) = ("content-type", "application/json");

struct Env {
    public: Router,
    admin: Router,
    store: Arc<dyn DocStore>,
    _dir: tempfile::TempDir,
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn location(&self) -> &str {
        self.headers[header::LOCATION].to_str().unwrap()
    }

    /// The `Set-Cookie` line of `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// `name=value` of a cookie set by this answer, for the next request.
    fn cookie(&self, name: &str) -> String {
        let line = self
            .set_cookie(name)
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", self.headers));
        line.split(';').next().unwrap().to_owned()
    }

    /// The value of a hidden input of the page.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_owned()
    }
}

async fn env_with(failures_per_hour: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DocStore> = Arc::new(
        SqliteStore::open(
            dir.path().join("db"),
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let config = InstancesConfig {
        fs_root: dir.path().join("files"),
        scrypt: ScryptCost::FAST,
    };
    let instances = Arc::new(Instances::open(store.clone(), config).await.unwrap());
    let state = AppState::new(store.clone(), instances)
        .with_admin_auth(AdminAuth::new(Some(ADMIN.into()), vec![]))
        .with_login_failures_per_hour(failures_per_hour);
    Env {
        public: hearth_web::router(state.clone()),
        admin: hearth_web::admin_router(state),
        store,
        _dir: dir,
    }
}

async fn env() -> Env {
    env_with(1000).await
}

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Res {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Res {
        status,
        headers,
        body,
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Env {
    async fn admin(&self, method: Method, uri: &str) -> Res {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{ADMIN}"))
        );
        call(
            &self.admin,
            method,
            uri,
            &[("authorization", &basic)],
            String::new(),
        )
        .await
    }

    /// Creates an instance whose browsers hash with [`ITERATIONS`]; with a
    /// passphrase, it is onboarded already.
    async fn create(&self, domain: &str, passphrase: Option<&str>) -> Value {
        let pass = passphrase
            .map(|p| format!("&Passphrase={}", p.replace(' ', "%20")))
            .unwrap_or_default();
        let res = self
            .admin(
                Method::POST,
                &format!("/instances?Domain={domain}&KdfIterations={ITERATIONS}{pass}"),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.json()["data"]["attributes"].clone()
    }

    async fn show(&self, domain: &str) -> Value {
        self.admin(Method::GET, &format!("/instances/{domain}"))
            .await
            .json()["data"]["attributes"]
            .clone()
    }

    async fn get(&self, host: &str, uri: &str, extra: &[(&str, &str)]) -> Res {
        self.send(host, Method::GET, uri, extra, String::new())
            .await
    }

    async fn send(
        &self,
        host: &str,
        method: Method,
        uri: &str,
        extra: &[(&str, &str)],
        body: String,
    ) -> Res {
        let mut headers = vec![("host", host)];
        headers.extend_from_slice(extra);
        call(&self.public, method, uri, &headers, body).await
    }

    /// Loads the login page and posts the form with `password`, as the page's script
    /// would (the login hash, the CSRF token of the page and its cookie).
    async fn login(&self, host: &str, password: &str, extra: &[(&str, &str)]) -> Res {
        let page = self.get(host, "/auth/login", &[HTML]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let salt = format!("me@{}", host.split(':').next().unwrap());
        let iterations: u32 = attr(&page.body, "data-iterations").parse().unwrap();
        let csrf = page.cookie("_csrf");
        let hash = client_hash(password, &salt, iterations);
        let token = page.hidden("csrf_token");
        let mut fields = vec![
            ("passphrase", hash.as_str()),
            ("csrf_token", token.as_str()),
        ];
        fields.extend_from_slice(extra);
        self.send(
            host,
            Method::POST,
            "/auth/login",
            &[HTML, FORM, ("cookie", &csrf)],
            form(&fields),
        )
        .await
    }

    /// Whether this `cozysessid=…` cookie opens the home page.
    async fn logged_in(&self, host: &str, cookie: &str) -> bool {
        let res = self.get(host, "/", &[HTML, ("cookie", cookie)]).await;
        match res.status {
            StatusCode::OK => {
                assert!(res.body.contains("logged in to"), "{}", res.body);
                true
            }
            StatusCode::SEE_OTHER => {
                assert_eq!(res.location(), "/auth/login");
                false
            }
            other => panic!("{other}: {}", res.body),
        }
    }

    async fn docs(&self, domain: &str, doctype: &str) -> Vec<Value> {
        let prefix = self.show(domain).await["prefix"]
            .as_str()
            .unwrap()
            .to_owned();
        let q = AllDocsQuery {
            include_docs: true,
            ..Default::default()
        };
        match self
            .store
            .all_docs(
                &InstanceId::new(prefix).unwrap(),
                &Doctype::new(doctype).unwrap(),
                &q,
            )
            .await
        {
            Ok(r) => r
                .rows
                .into_iter()
                .filter_map(|r| r.doc.map(Value::Object))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// An attribute of the page's password form.
fn attr(body: &str, name: &str) -> String {
    let marker = format!("{name}=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + marker.len();
    let end = body[start..].find('"').unwrap();
    body[start..start + end].to_owned()
}

fn register_hex(attributes: &Value) -> String {
    let b64 = attributes["register_token"].as_str().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_with_the_register_token() {
    let e = env().await;
    let created = e.create("a.localhost", None).await;
    let hex = register_hex(&created);
    let host = "a.localhost";

    // GET /: the token goes on to the password choice; anything else, the waiting page.
    let go = e
        .get(host, &format!("/?registerToken={hex}"), &[HTML])
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER);
    assert_eq!(
        go.location(),
        format!("/auth/passphrase?registerToken={hex}")
    );
    for uri in [
        "/",
        "/?registerToken=00112233445566778899aabbccddeeff",
        "/?registerToken=zz",
    ] {
        let res = e.get(host, uri, &[HTML]).await;
        assert_eq!(res.status, StatusCode::OK, "{uri}");
        assert!(
            res.body.contains("not activated yet"),
            "{uri}: {}",
            res.body
        );
    }
    let wrong = e
        .get(host, "/auth/passphrase?registerToken=00", &[HTML])
        .await;
    assert!(wrong.body.contains("not activated yet"));
    let login = e.get(host, "/auth/login", &[HTML]).await;
    assert!(login.body.contains("not activated yet"), "login waits too");

    // The password page: salt, iterations and token for the script.
    let page = e
        .get(
            host,
            &format!("/auth/passphrase?registerToken={hex}"),
            &[HTML],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(attr(&page.body, "data-salt"), "me@a.localhost");
    assert_eq!(attr(&page.body, "data-iterations"), ITERATIONS.to_string());
    assert_eq!(page.hidden("register_token"), hex);
    assert_eq!(page.hidden("iterations"), ITERATIONS.to_string());
    assert!(
        page.body.contains("<script>"),
        "the hashing script is inline"
    );
    assert!(page.body.contains("crypto.subtle"));
    assert!(!page.body.contains("<script src"), "no external script");
    assert!(
        page.body
            .contains("id=\"password\" autocomplete=\"new-password\""),
        "the clear password field has no name: {}",
        page.body
    );

    // Refusals, with the original's messages (spec instances 3.3).
    let hash = client_hash("first password", "me@a.localhost", ITERATIONS);
    let iterations = ITERATIONS.to_string();
    let post = |body: Value| {
        e.send(
            host,
            Method::POST,
            "/settings/passphrase",
            &[JSON, JSON_BODY],
            body.to_string(),
        )
    };
    let cases = [
        (
            json!({"register_token": "zz", "passphrase": hash, "iterations": ITERATIONS}),
            400,
            "encoding/hex: invalid byte: U+007A 'z'",
        ),
        (
            json!({"register_token": "00112233445566778899aabbccddeeff", "passphrase": hash, "iterations": ITERATIONS}),
            400,
            "Invalid register token",
        ),
        (
            json!({"register_token": hex, "passphrase": "", "iterations": ITERATIONS}),
            400,
            "Missing new passphrase",
        ),
        (
            json!({"register_token": hex, "passphrase": hash, "iterations": 1000}),
            422,
            "The KdfIterations number is too low",
        ),
        (
            json!({"register_token": hex, "passphrase": hash, "iterations": 5_000_001}),
            422,
            "The KdfIterations number is too high",
        ),
    ];
    for (body, status, detail) in cases {
        let res = post(body.clone()).await;
        assert_eq!(res.status.as_u16(), status, "{body}: {}", res.body);
        assert_eq!(res.json()["errors"][0]["detail"], detail, "{body}");
        if status == 422 {
            assert_eq!(
                res.json()["errors"][0]["source"],
                json!({"parameter": "KdfIterations"})
            );
        }
    }
    // A browser sees a page.
    let bad = e
        .send(
            host,
            Method::POST,
            "/settings/passphrase",
            &[HTML, FORM],
            form(&[
                ("register_token", "00112233445566778899aabbccddeeff"),
                ("passphrase", &hash),
                ("iterations", &iterations),
            ]),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("This link is not valid"), "{}", bad.body);

    // The form as the page posts it: 303 home with a session.
    let ok = e
        .send(
            host,
            Method::POST,
            "/settings/passphrase",
            &[
                HTML,
                FORM,
                ("user-agent", "TestBrowser/1.0"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            form(&[
                ("register_token", &hex),
                ("passphrase", &hash),
                ("iterations", &iterations),
            ]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), "http://a.localhost/");
    let set = ok.set_cookie("cozysessid").unwrap();
    assert!(
        set.ends_with("; Path=/; Domain=a.localhost; Max-Age=315360000; HttpOnly; SameSite=Lax"),
        "a long-run session, not Secure over http: {set}"
    );
    let session = ok.cookie("cozysessid");
    assert!(e.logged_in(host, &session).await);
    let home = e.get(host, "/", &[HTML, ("cookie", &session)]).await;
    assert!(
        home.body
            .contains("<strong id=\"domain\">a.localhost</strong>")
    );
    assert!(home.set_cookie("_csrf").is_some(), "for the logout button");

    // The instance: onboarded, password defined, token consumed.
    let shown = e.show(host).await;
    assert_eq!(shown["onboarding_finished"], true);
    assert_eq!(shown["password_defined"], true);
    assert!(shown.get("register_token").is_none(), "{shown}");
    let logins = e.docs(host, "io.cozy.sessions.logins").await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["kind"], "registration");
    assert_eq!(logins[0]["ip"], "203.0.113.7");
    assert_eq!(logins[0]["user_agent"], "TestBrowser/1.0");
    let sessions = e.docs(host, "io.cozy.sessions").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["long_run"], true);
    assert!(sessions[0]["created_at"].as_str().unwrap().ends_with('Z'));

    // The token is used: JSON and page say so; the page links to the login.
    let again =
        post(json!({"register_token": hex, "passphrase": hash, "iterations": ITERATIONS})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.json()["errors"][0]["detail"], "Empty register token");
    let again = e
        .send(
            host,
            Method::POST,
            "/settings/passphrase",
            &[HTML, FORM],
            form(&[
                ("register_token", &hex),
                ("passphrase", &hash),
                ("iterations", &iterations),
            ]),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("already chosen"), "{}", again.body);
    assert!(again.body.contains("href=\"/auth/login\""));
    // The old link now leads home.
    let link = e
        .get(
            host,
            &format!("/auth/passphrase?registerToken={hex}"),
            &[HTML],
        )
        .await;
    assert_eq!(link.status, StatusCode::SEE_OTHER);
    assert_eq!(link.location(), "http://a.localhost/");

    // And the password logs in.
    let res = e.login(host, "first password", &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_for_clients_and_in_clear_text() {
    let e = env().await;
    let hex = register_hex(&e.create("b.localhost", None).await);
    // JSON clients get the redirection as JSON; iterations 0 is clear text.
    let res = e
        .send(
            "b.localhost",
            Method::POST,
            "/settings/passphrase",
            &[JSON, JSON_BODY],
            json!({"register_token": hex, "passphrase": "clear text", "iterations": 0, "hint": "the usual"}).to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json(), json!({"redirect": "http://b.localhost/"}));
    assert!(res.set_cookie("cozysessid").is_some());
    let page = e.get("b.localhost", "/auth/login", &[HTML]).await;
    assert_eq!(
        attr(&page.body, "data-iterations"),
        "650000",
        "the emulated iterations"
    );
    let settings = e.docs("b.localhost", "io.cozy.settings").await;
    let bitwarden = settings
        .iter()
        .find(|d| d["_id"] == "io.cozy.settings.bitwarden")
        .unwrap();
    assert_eq!(bitwarden["passphrase_kdf_iterations"], 650_000);
    assert_eq!(bitwarden["passphrase_hint"], "the usual");
    assert_eq!(
        e.login("b.localhost", "clear text", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_csrf() {
    let e = env().await;
    e.create("c.localhost", Some("right")).await;
    let host = "c.localhost";

    // Not logged in: the home page sends to the login page.
    let home = e.get(host, "/", &[HTML]).await;
    assert_eq!(
        (home.status, home.location()),
        (StatusCode::SEE_OTHER, "/auth/login")
    );

    // The page: salt and iterations for the script, a CSRF token in a cookie and a field.
    let page = e.get(host, "/auth/login?redirect=/settings", &[HTML]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(attr(&page.body, "data-salt"), "me@c.localhost");
    assert_eq!(attr(&page.body, "data-iterations"), ITERATIONS.to_string());
    assert_eq!(page.hidden("redirect"), "http://c.localhost/settings");
    let csrf = page.hidden("csrf_token");
    let set = page.set_cookie("_csrf").unwrap();
    assert_eq!(
        set,
        format!("_csrf={csrf}; Path=/auth; Max-Age=3600; HttpOnly; SameSite=Strict")
    );
    let csrf_cookie = format!("_csrf={csrf}");
    let hash = client_hash("right", "me@c.localhost", ITERATIONS);

    // CSRF: field missing 400, cookie missing or different 403.
    let post = |headers: Vec<(&'static str, String)>, fields: Vec<(&'static str, String)>| {
        let e = &e;
        async move {
            let mut h: Vec<(&str, &str)> = vec![FORM];
            h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.send(host, Method::POST, "/auth/login", &h, form(&f))
                .await
        }
    };
    let no_field = post(
        vec![
            ("accept", "application/json".into()),
            ("cookie", csrf_cookie.clone()),
        ],
        vec![("passphrase", hash.clone())],
    )
    .await;
    assert_eq!(no_field.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        no_field.json(),
        json!({"error": "missing csrf token in the form parameter"})
    );
    let no_cookie = post(
        vec![("accept", "application/json".into())],
        vec![("passphrase", hash.clone()), ("csrf_token", csrf.clone())],
    )
    .await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert_eq!(no_cookie.json(), json!({"error": "invalid csrf token"}));
    let other = post(
        vec![
            ("accept", "text/plain".into()),
            ("cookie", "_csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ],
        vec![("passphrase", hash.clone()), ("csrf_token", csrf.clone())],
    )
    .await;
    assert_eq!(
        (other.status, other.body.as_str()),
        (StatusCode::FORBIDDEN, "invalid csrf token")
    );
    let expired = post(
        vec![("accept", HTML.1.into())],
        vec![("passphrase", hash.clone()), ("csrf_token", csrf.clone())],
    )
    .await;
    assert_eq!(expired.status, StatusCode::FORBIDDEN);
    assert!(
        expired.body.contains("This page had expired"),
        "{}",
        expired.body
    );
    assert!(
        expired.set_cookie("_csrf").is_some(),
        "a fresh token to try again"
    );

    // A wrong password: 401, the form again with a message, or JSON.
    let wrong = e.login(host, "wrong", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Incorrect password"), "{}", wrong.body);
    assert!(wrong.body.contains("data-salt=\"me@c.localhost\""));
    let wrong_json = post(
        vec![
            ("accept", "application/json".into()),
            ("cookie", csrf_cookie.clone()),
        ],
        vec![
            ("passphrase", "bm9wZQ==".into()),
            ("csrf_token", csrf.clone()),
        ],
    )
    .await;
    assert_eq!(wrong_json.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_json.json(),
        json!({"error": "Incorrect password. Try again."})
    );
    assert!(wrong_json.set_cookie("cozysessid").is_none());

    // Redirects stay on the instance.
    let evil = e
        .login(host, "right", &[("redirect", "https://evil.example/")])
        .await;
    assert_eq!(evil.status, StatusCode::BAD_REQUEST);
    assert!(evil.set_cookie("cozysessid").is_none());
    assert_eq!(
        e.get(host, "/auth/login?redirect=//evil.example", &[HTML])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // The right password: a browser-session cookie and 303 home or to `redirect`.
    let ok = e.login(host, "right", &[]).await;
    assert_eq!(
        (ok.status, ok.location()),
        (StatusCode::SEE_OTHER, "http://c.localhost/")
    );
    let set = ok.set_cookie("cozysessid").unwrap();
    assert!(!set.contains("Max-Age"), "a browser session: {set}");
    let session = ok.cookie("cozysessid");
    assert!(e.logged_in(host, &session).await);
    let to = e
        .login(
            host,
            "right",
            &[
                ("redirect", "/settings#/profile"),
                ("long-run-session", "1"),
            ],
        )
        .await;
    assert_eq!(to.location(), "http://c.localhost/settings#/profile");
    assert!(
        to.set_cookie("cozysessid")
            .unwrap()
            .contains("; Max-Age=315360000;")
    );
    let sessions = e.docs(host, "io.cozy.sessions").await;
    assert_eq!(sessions.iter().filter(|s| s["long_run"] == true).count(), 1);
    assert_eq!(e.docs(host, "io.cozy.sessions.logins").await.len(), 2);

    // `Accept: application/json` exactly: the redirection as JSON.
    let as_json = post(
        vec![
            ("accept", "application/json".into()),
            ("cookie", csrf_cookie.clone()),
        ],
        vec![("passphrase", hash.clone()), ("csrf_token", csrf.clone())],
    )
    .await;
    assert_eq!(as_json.status, StatusCode::OK, "{}", as_json.body);
    assert_eq!(as_json.json(), json!({"redirect": "http://c.localhost/"}));

    // Logged in: the login page sends on.
    let again = e
        .get(host, "/auth/login", &[HTML, ("cookie", &session)])
        .await;
    assert_eq!(
        (again.status, again.location()),
        (StatusCode::SEE_OTHER, "http://c.localhost/")
    );

    // A cookie of another instance, or forged, opens nothing.
    e.create("d.localhost", Some("right")).await;
    assert!(!e.logged_in("d.localhost", &session).await);
    let forged = format!("{}x", session);
    assert!(!e.logged_in(host, &forged).await);

    // DELETE /auth/login: 204, the cookie cleared, the session gone.
    let out = e
        .send(
            host,
            Method::DELETE,
            "/auth/login",
            &[JSON, ("cookie", &session)],
            String::new(),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let cleared = out.set_cookie("cozysessid").unwrap();
    assert!(
        cleared.starts_with("cozysessid=; Path=/; Domain=c.localhost; Max-Age=0"),
        "{cleared}"
    );
    assert!(!e.logged_in(host, &session).await);
    let none = e
        .send(
            host,
            Method::DELETE,
            "/auth/login",
            &[JSON, ("cookie", &session)],
            String::new(),
        )
        .await;
    assert_eq!(
        (none.status, none.json()),
        (StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}))
    );

    // The logout button: CSRF checked, then 303 to the login page.
    let other_session = to.cookie("cozysessid");
    let home = e.get(host, "/", &[HTML, ("cookie", &other_session)]).await;
    let token = home.hidden("csrf_token");
    let both = format!("{other_session}; {}", home.cookie("_csrf"));
    let refused = e
        .send(
            host,
            Method::POST,
            "/auth/logout",
            &[FORM, JSON, ("cookie", &other_session)],
            form(&[("csrf_token", &token)]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(e.logged_in(host, &other_session).await);
    let bye = e
        .send(
            host,
            Method::POST,
            "/auth/logout",
            &[FORM, HTML, ("cookie", &both)],
            form(&[("csrf_token", &token)]),
        )
        .await;
    assert_eq!(
        (bye.status, bye.location()),
        (StatusCode::SEE_OTHER, "/auth/login")
    );
    assert!(bye.set_cookie("cozysessid").unwrap().contains("Max-Age=0"));
    assert!(!e.logged_in(host, &other_session).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_instances_get_secure_cookies() {
    let e = env().await;
    e.create("alice.example.net", Some("pw")).await;
    let page = e.get("alice.example.net", "/auth/login", &[HTML]).await;
    assert!(page.set_cookie("_csrf").unwrap().ends_with("; Secure"));
    let ok = e.login("alice.example.net", "pw", &[]).await;
    assert_eq!(ok.location(), "https://alice.example.net/");
    assert!(
        ok.set_cookie("cozysessid")
            .unwrap()
            .ends_with("; SameSite=Lax; Secure")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_ends_every_session() {
    let e = env().await;
    let host = "e.localhost";
    e.create(host, Some("old one")).await;
    let first = e.login(host, "old one", &[]).await.cookie("cozysessid");
    let second = e.login(host, "old one", &[]).await.cookie("cozysessid");
    let salt = "me@e.localhost";
    let change = |cookie: Option<String>, body: Value| {
        let e = &e;
        async move {
            let mut h = vec![JSON, JSON_BODY];
            let c;
            if let Some(cookie) = cookie {
                c = cookie;
                h.push(("cookie", c.as_str()));
            }
            e.send(
                host,
                Method::PUT,
                "/settings/passphrase",
                &h,
                body.to_string(),
            )
            .await
        }
    };
    let new_hash = client_hash("new one", salt, ITERATIONS);

    // Without a session, or with a wrong current password: refused.
    let anonymous = change(None, json!({"current_passphrase": client_hash("old one", salt, ITERATIONS), "new_passphrase": new_hash})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong = change(Some(first.clone()), json!({"current_passphrase": client_hash("nope", salt, ITERATIONS), "new_passphrase": new_hash})).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json()["errors"][0]["detail"], "Invalid passphrase");
    let low = change(Some(first.clone()), json!({"current_passphrase": client_hash("old one", salt, ITERATIONS), "new_passphrase": new_hash, "iterations": 10})).await;
    assert_eq!(low.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.logged_in(host, &first).await);

    // Changed: 204 with a new session for the caller; every other session ends.
    let ok = change(Some(first.clone()), json!({"current_passphrase": client_hash("old one", salt, ITERATIONS), "new_passphrase": new_hash})).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    let third = ok.cookie("cozysessid");
    assert!(!e.logged_in(host, &first).await);
    assert!(!e.logged_in(host, &second).await);
    assert!(e.logged_in(host, &third).await);
    assert_eq!(e.docs(host, "io.cozy.sessions").await.len(), 1);
    assert_eq!(
        e.login(host, "old one", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        e.login(host, "new one", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_a_passphrase_needs_a_cli_token() {
    let e = env().await;
    let host = "f.localhost";
    e.create(host, None).await;
    let token = |audience: &str, scope: &str| {
        let uri = format!("/instances/token?Domain={host}&Audience={audience}&Scope={scope}");
        let e = &e;
        async move { e.admin(Method::POST, &uri).await.body }
    };
    let force = |auth: Option<String>, body: Value| {
        let e = &e;
        async move {
            let mut h = vec![JSON, JSON_BODY];
            let a;
            if let Some(auth) = auth {
                a = format!("Bearer {auth}");
                h.push(("authorization", a.as_str()));
            }
            e.send(
                host,
                Method::PUT,
                "/settings/passphrase",
                &h,
                body.to_string(),
            )
            .await
        }
    };
    let body = json!({"new_passphrase": "forced", "force": true});
    let none = force(None, body.clone()).await;
    assert_eq!(
        (none.status, none.json()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "No token in request"})
        )
    );
    let garbage = force(Some("not.a.token".into()), body.clone()).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    // The token of an app that is not installed is no token at all.
    let app = force(Some(token("app", "").await), body.clone()).await;
    assert_eq!(
        (app.status, app.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Invalid JWT token"})
        )
    );
    let files_only = force(Some(token("cli", "io.cozy.files").await), body.clone()).await;
    assert_eq!(files_only.status, StatusCode::FORBIDDEN);
    assert_eq!(
        e.show(host).await["onboarding_finished"],
        Value::Null,
        "nothing changed"
    );

    // A CLI token for settings: clear text, hashed as a client would; onboarding done.
    let cli = token("cli", "io.cozy.settings").await;
    let ok = force(Some(cli.clone()), body).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    assert!(
        ok.set_cookie("cozysessid").is_none(),
        "no session for the CLI"
    );
    let shown = e.show(host).await;
    assert_eq!(shown["onboarding_finished"], true);
    assert!(shown.get("register_token").is_none());
    assert_eq!(
        e.login(host, "forced", &[]).await.status,
        StatusCode::SEE_OTHER
    );

    // With iterations, the passphrase is a client hash made with them.
    let hash = client_hash("hashed", "me@f.localhost", ITERATIONS);
    let ok = force(
        Some(cli),
        json!({"new_passphrase": hash, "force": true, "iterations": ITERATIONS}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        e.login(host, "hashed", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_failed_logins_block_the_instance() {
    let e = env_with(3).await;
    let host = "g.localhost";
    e.create(host, Some("right")).await;
    e.create("h.localhost", Some("right")).await;
    for _ in 0..2 {
        assert_eq!(
            e.login(host, "wrong", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Failures are counted per instance.
    assert_eq!(
        e.login("h.localhost", "wrong", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let third = e.login(host, "wrong", &[]).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        third.body.contains("too many login attempts"),
        "{}",
        third.body
    );
    let shown = e.show(host).await;
    assert_eq!(
        (shown["blocked"].clone(), shown["blocking_reason"].clone()),
        (json!(true), json!("LOGIN_FAILED"))
    );
    // Blocked: even the right password cannot get past the page now.
    let page = e.get(host, "/auth/login", &[HTML]).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("too many login attempts"));
    // The other instance is untouched; an operator unblocks.
    assert_eq!(
        e.login("h.localhost", "right", &[]).await.status,
        StatusCode::SEE_OTHER
    );
    e.admin(Method::PATCH, &format!("/instances/{host}?Blocked=false"))
        .await;
    assert_eq!(
        e.login(host, "right", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_speak_the_instance_language() {
    let e = env().await;
    let created = e
        .admin(
            Method::POST,
            &format!("/instances?Domain=fr.localhost&Locale=fr&KdfIterations={ITERATIONS}"),
        )
        .await
        .json();
    let hex = register_hex(&created["data"]["attributes"]);
    let page = e
        .get(
            "fr.localhost",
            &format!("/auth/passphrase?registerToken={hex}"),
            &[HTML],
        )
        .await;
    assert!(page.body.contains("<html lang=\"fr\">"));
    assert!(
        page.body.contains("Choisissez votre mot de passe"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-msg-mismatch=\"Les deux mots de passe sont différents.\"")
    );
    let hash = client_hash("mot de passe", "me@fr.localhost", ITERATIONS);
    let iterations = ITERATIONS.to_string();
    let done = e
        .send(
            "fr.localhost",
            Method::POST,
            "/settings/passphrase",
            &[HTML, FORM],
            form(&[
                ("register_token", &hex),
                ("passphrase", &hash),
                ("iterations", &iterations),
            ]),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let home = e
        .get(
            "fr.localhost",
            "/",
            &[HTML, ("cookie", &done.cookie("cozysessid"))],
        )
        .await;
    assert!(home.body.contains("Vous êtes connecté à"), "{}", home.body);
    assert!(home.body.contains("Se déconnecter"));
    let wrong = e.login("fr.localhost", "faux", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("Mot de passe incorrect"),
        "{}",
        wrong.body
    );
}

/// The whole OAuth flow of spec core-api B.5: register, authorize in the browser
/// session (login first), exchange the code, use and refresh the token, revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_authorization_code_flow() {
    let e = env().await;
    let host = "alice.localhost";
    e.create(host, Some("cozy")).await;
    let reg = e
        .send(host, Method::POST, "/auth/register", &[JSON_BODY, JSON], r#"{"redirect_uris":["http://localhost:4000/cb"],"client_name":"Notes","software_id":"io.notes"}"#.into())
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    let client = reg.json();
    let id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let reg_token = format!(
        "Bearer {}",
        client["registration_access_token"].as_str().unwrap()
    );
    let query = format!(
        "client_id={id}&redirect_uri=http%3A%2F%2Flocalhost%3A4000%2Fcb&state=xyz&response_type=code&scope=io.cozy.notes%20io.cozy.contacts%3AGET"
    );
    let authorize = format!("/auth/authorize?{query}");

    // Not logged in: the login page first, coming back here.
    let first = e.get(host, &authorize, &[HTML]).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert!(
        first
            .location()
            .starts_with("/auth/login?redirect=http%3A%2F%2Falice.localhost%2Fauth%2Fauthorize"),
        "{}",
        first.location()
    );
    let logged = e.login(host, "cozy", &[]).await;
    let session = logged.cookie("cozysessid");

    // Bad requests are refused with a page saying why.
    for bad in [
        format!(
            "/auth/authorize?client_id={id}&redirect_uri=http%3A%2F%2Flocalhost%3A4000%2Fcb&response_type=code&scope=io.cozy.notes"
        ),
        format!(
            "/auth/authorize?client_id={id}&redirect_uri=http%3A%2F%2Fevil%2Fcb&state=s&response_type=code&scope=io.cozy.notes"
        ),
        "/auth/authorize?client_id=nope&redirect_uri=http%3A%2F%2Flocalhost%3A4000%2Fcb&state=s&response_type=code&scope=io.cozy.notes".to_owned(),
        format!(
            "/auth/authorize?client_id={id}&redirect_uri=http%3A%2F%2Flocalhost%3A4000%2Fcb&state=s&response_type=token&scope=io.cozy.notes"
        ),
        format!(
            "/auth/authorize?client_id={id}&redirect_uri=http%3A%2F%2Flocalhost%3A4000%2Fcb&state=s&response_type=code&scope="
        ),
    ] {
        assert_eq!(
            e.get(host, &bad, &[HTML, ("cookie", &session)])
                .await
                .status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // The consent page lists the scope in words.
    let page = e.get(host, &authorize, &[HTML, ("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Notes")
            && page.body.contains("io.cozy.contacts")
            && page.body.contains("read"),
        "{}",
        page.body
    );
    let cookies = format!("{session}; {}", page.cookie("_csrf"));
    let fields = |csrf: &str| {
        form(&[
            ("csrf_token", csrf),
            ("client_id", &id),
            ("redirect_uri", "http://localhost:4000/cb"),
            ("state", "xyz"),
            ("response_type", "code"),
            ("scope", "io.cozy.notes io.cozy.contacts:GET"),
        ])
    };
    let forged = e
        .send(
            host,
            Method::POST,
            "/auth/authorize",
            &[FORM, ("cookie", &cookies)],
            fields("forged-token-forged-token-forged"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "CSRF");
    let no_session = e
        .send(
            host,
            Method::POST,
            "/auth/authorize",
            &[FORM, ("cookie", &page.cookie("_csrf"))],
            fields(&page.hidden("csrf_token")),
        )
        .await;
    assert_eq!(no_session.status, StatusCode::UNAUTHORIZED);
    let accepted = e
        .send(
            host,
            Method::POST,
            "/auth/authorize",
            &[FORM, ("cookie", &cookies)],
            fields(&page.hidden("csrf_token")),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::FOUND, "{}", accepted.body);
    let location = accepted.location().to_owned();
    assert!(
        location.starts_with("http://localhost:4000/cb?access_code=")
            && location.ends_with("&state=xyz#"),
        "{location}"
    );
    let code = location
        .split("code=")
        .nth(2)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let deeplink = e
        .send(
            host,
            Method::POST,
            "/auth/authorize",
            &[FORM, ("accept", "application/json"), ("cookie", &cookies)],
            fields(&page.hidden("csrf_token")),
        )
        .await;
    assert!(
        deeplink.json()["deeplink"]
            .as_str()
            .unwrap()
            .contains("access_code=")
    );

    // Exchange the code (once), use the token, refresh it.
    let exchange = |code: String| {
        form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", &code),
        ])
    };
    let tokens = e
        .send(
            host,
            Method::POST,
            "/auth/access_token",
            &[FORM],
            exchange(code.clone()),
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let tokens = tokens.json();
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["scope"], "io.cozy.notes io.cozy.contacts:GET");
    let access = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let me = e
        .get(host, "/permissions/self", &[("authorization", &access)])
        .await;
    assert_eq!(me.json()["data"]["attributes"]["type"], "oauth");
    let created = e
        .send(
            host,
            Method::POST,
            "/data/io.cozy.notes/",
            &[("authorization", &access), JSON_BODY],
            r#"{"t":1}"#.into(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let outside = e
        .send(
            host,
            Method::POST,
            "/data/io.cozy.contacts/",
            &[("authorization", &access), JSON_BODY],
            r#"{}"#.into(),
        )
        .await;
    assert_eq!(
        outside.status,
        StatusCode::FORBIDDEN,
        "contacts are read-only for this client"
    );
    let reused = e
        .send(
            host,
            Method::POST,
            "/auth/access_token",
            &[FORM],
            exchange(code),
        )
        .await;
    assert_eq!(reused.json(), serde_json::json!({"error": "invalid code"}));
    let refresh = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
    ]);
    let refreshed = e
        .send(
            host,
            Method::POST,
            "/auth/access_token",
            &[FORM],
            refresh.clone(),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK);
    assert!(refreshed.json().get("refresh_token").is_none());

    // Revoking the client kills its tokens.
    assert_eq!(
        e.send(
            host,
            Method::DELETE,
            &format!("/auth/register/{id}"),
            &[("authorization", &reg_token)],
            String::new()
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        e.get(host, "/permissions/self", &[("authorization", &access)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let after = e
        .send(host, Method::POST, "/auth/access_token", &[FORM], refresh)
        .await;
    assert_eq!(
        after.json(),
        serde_json::json!({"error": "the client must be registered"})
    );
}
