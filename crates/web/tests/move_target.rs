//! The target side of a move (spec move 3.4, 3.6 step 3, 3.7, 3.9–3.11): the password
//! page that gives the wizard a code, `POST /move/importing`, the watchdog, a move's
//! import calling finalize or abort on a stand-in source, and share links made on the
//! source still working on the target.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use hearth_instances::Audience;
use serde_json::{Value, json};
use support::{Env, Res, docs, eventually, settings, started_env};

const A: &str = "alice.localhost";
const B: &str = "bob.localhost";
const PASSWORD: &str = "correct horse battery staple";
const MOVE_SCOPE: &str = "io.cozy.exports.requests io.cozy.imports";
const WIZARD_CALLBACK: &str = "https://move.example.net/callback/target";

async fn env() -> Env {
    started_env(|state| {
        state
            .imports
            .set_move_watchdog(Duration::from_millis(1500), Duration::from_millis(200));
        state
    })
    .await
}

async fn target(e: &Env) {
    e.create_instance(
        B,
        &format!(
            "&Email=bob@target.example&PublicName=Bob%20Target&Passphrase={}&KdfIterations=50000",
            PASSWORD.replace(' ', "%20")
        ),
    )
    .await;
}

/// `POST /move/importing` on B with this token.
async fn importing(e: &Env, token: Option<&str>, path: &str) -> Res {
    e.call(B, token, Method::POST, path, &[], Body::empty())
        .await
}

/// Registers the wizard's client on B: `(client_id, client_secret)`.
async fn register_wizard(e: &Env) -> (String, String) {
    let body = json!({
        "client_name": "Cozy Move",
        "client_kind": "web",
        "client_uri": "https://move.example.net/",
        "redirect_uris": [WIZARD_CALLBACK],
        "software_id": "github.com/cozy/cozy-move",
        "software_version": "1.0",
    });
    let res = e
        .call(
            B,
            None,
            Method::POST,
            "/auth/register",
            &[
                ("accept", "application/json"),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let j = res.json();
    (
        j["client_id"].as_str().unwrap().to_owned(),
        j["client_secret"].as_str().unwrap().to_owned(),
    )
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

fn attr(body: &str, marker: &str) -> String {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

/// Posts the page's form as its script does, with `password` hashed.
async fn post_password(e: &Env, page: &Res, client_id: &str, password: &str) -> Res {
    let body = page.text();
    let iterations: u32 = attr(&body, "data-kdf-iterations=\"").parse().unwrap();
    let salt = attr(&body, "data-kdf-salt=\"");
    let csrf = attr(&body, "name=\"csrf_token\" value=\"");
    let hash = hearth_instances::passphrase::client_hash(password, &salt, iterations);
    let form = serde_urlencoded::to_string([
        ("passphrase", hash.as_str()),
        ("state", "st4te"),
        ("client_id", client_id),
        ("redirect", WIZARD_CALLBACK),
        ("csrf_token", csrf.as_str()),
    ])
    .unwrap();
    e.call(
        B,
        None,
        Method::POST,
        "/auth/authorize/move",
        &[
            ("accept", "application/json"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &page.cookie("_csrf")),
        ],
        form,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_page_gives_the_wizard_a_move_token() {
    let e = env().await;
    target(&e).await;
    let (client_id, secret) = register_wizard(&e).await;
    let html = [("accept", "text/html")];

    // Refusals: 400 pages, nothing else.
    for (query, what) in [
        (
            format!(
                "client_id={client_id}&redirect_uri={}",
                enc(WIZARD_CALLBACK)
            ),
            "state",
        ),
        (
            format!("state=s&redirect_uri={}", enc(WIZARD_CALLBACK)),
            "client_id",
        ),
        (format!("state=s&client_id={client_id}"), "redirect_uri"),
        (
            format!(
                "state=s&client_id=nobody&redirect_uri={}",
                enc(WIZARD_CALLBACK)
            ),
            "registered",
        ),
        (
            format!(
                "state=s&client_id={client_id}&redirect_uri={}",
                enc("https://evil.example/cb")
            ),
            "return address",
        ),
    ] {
        let res = e
            .call(
                B,
                None,
                Method::GET,
                &format!("/auth/authorize/move?{query}"),
                &html,
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(res.header("content-type").starts_with("text/html"));
        assert!(res.text().contains(what), "{what}: {}", res.text());
    }

    // The form, even for someone logged in.
    let (_, session) = e.login(B, PASSWORD, None).await;
    let page = e
        .call(
            B,
            None,
            Method::GET,
            &format!(
                "/auth/authorize/move?state=st4te&client_id={client_id}&redirect_uri={}",
                enc(WIZARD_CALLBACK)
            ),
            &[("accept", "text/html"), ("cookie", &session)],
            Body::empty(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let body = page.text();
    assert!(body.contains("Bob Target"), "public name: {body}");
    assert!(body.contains(B), "domain");
    assert!(body.contains("type=\"password\""));
    assert!(body.contains("hearthPassphrase"), "the hashing script");

    // A wrong password: 401 JSON, counted by the login throttle.
    let res = post_password(&e, &page, &client_id, "wrong").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    assert!(res.json()["error"].as_str().unwrap().contains("Incorrect"));
    // No CSRF cookie: refused.
    let res = e
        .call(
            B,
            None,
            Method::POST,
            "/auth/authorize/move",
            &[
                ("accept", "application/json"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            format!(
                "passphrase=x&state=s&client_id={client_id}&redirect={}&csrf_token=abc",
                enc(WIZARD_CALLBACK)
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());

    // The right one: the redirect with a code the wizard exchanges for a move token.
    let res = post_password(&e, &page, &client_id, PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let redirect = res.json()["redirect"].as_str().unwrap().to_owned();
    let (base, query) = redirect.split_once('?').unwrap();
    assert_eq!(base, WIZARD_CALLBACK);
    let q: BTreeMap<String, String> = serde_urlencoded::from_str(query).unwrap();
    assert_eq!(q["state"], "st4te");
    assert_eq!(q["vault"], "false");
    assert_eq!(q["used"], "0");
    assert!(!q.contains_key("quota"), "no quota on B");
    let exchange = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("client_id", client_id.as_str()),
        ("client_secret", secret.as_str()),
    ])
    .unwrap();
    let res = e
        .call(
            B,
            None,
            Method::POST,
            "/auth/access_token",
            &[
                ("accept", "application/json"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            exchange,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["scope"], MOVE_SCOPE);
    let token = res.json()["access_token"].as_str().unwrap().to_owned();

    // That token starts the move on B.
    let res = importing(&e, Some(&token), "/move/importing?source=alice.example.net").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_blocks_the_target_and_ends_its_sessions() {
    let e = env().await;
    target(&e).await;
    let (_, session) = e.login(B, PASSWORD, None).await;
    assert_eq!(docs(&e, B, "io.cozy.sessions").await.len(), 1);

    // Without the scope: 403, nothing changes.
    let files_only = e.token(B, "io.cozy.files").await;
    let res = importing(
        &e,
        Some(&files_only),
        "/move/importing?source=alice.example.net",
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    assert!(!e.state.instances.get_str(B).await.unwrap().blocked);

    let token = e.token(B, "io.cozy.imports").await;
    // No source: 400.
    let res = importing(&e, Some(&token), "/move/importing").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());

    let res = importing(&e, Some(&token), "/move/importing?source=alice.example.net").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let b = e.state.instances.get_str(B).await.unwrap();
    assert!(b.blocked);
    assert_eq!(b.blocking_reason.as_deref(), Some("MOVING"));
    assert!(docs(&e, B, "io.cozy.sessions").await.is_empty());
    let s = settings(&e, B).await;
    assert_eq!(s["moved_from"], "alice.example.net");
    assert!(s["moving_since"].is_string());

    // The old session opens nothing: the browser is sent to the waiting page, which
    // names both ends of the move.
    let res = e
        .call(
            B,
            None,
            Method::GET,
            "/",
            &[("accept", "text/html"), ("cookie", &session)],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(res.header("location").ends_with("/move/importing"));
    let page = e
        .call(
            B,
            None,
            Method::GET,
            "/move/importing",
            &[("accept", "text/html")],
            Body::empty(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    assert!(text.contains("Moving in progress"), "{text}");
    assert!(
        text.contains("alice.example.net") && text.contains(B),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_unblocks_a_move_that_never_comes() {
    let e = env().await;
    target(&e).await;
    let token = e.token(B, "io.cozy.imports").await;
    let res = importing(&e, Some(&token), "/move/importing?source=alice.example.net").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(e.state.instances.get_str(B).await.unwrap().blocked);
    eventually(15, "the watchdog to unblock B", || async {
        let b = e.state.instances.get_str(B).await.unwrap();
        (!b.blocked).then_some(())
    })
    .await;
    let s = settings(&e, B).await;
    assert!(s.get("moved_from").is_none(), "{s:?}");
    assert!(s.get("moving_since").is_none(), "{s:?}");
    // The person can log in again.
    e.login(B, PASSWORD, None).await;
}

// ---- A stand-in source: an archive, and `/move/finalize` and `/move/abort` ----

type Calls = Arc<Mutex<Vec<String>>>;

/// [`stand_in_with`] for parts that do not name the source.
async fn stand_in(parts: Vec<Vec<u8>>) -> (String, String, Calls) {
    stand_in_with(|_| parts).await
}

/// Serves the manifest and parts of an export (`build` makes them from the source's
/// URL), and records the calls to finalize and abort (`"<path>?<query>
/// <authorization>"`). Answers the settings link of the export, the source's URL,
/// and the calls.
async fn stand_in_with(build: impl FnOnce(&str) -> Vec<Vec<u8>>) -> (String, String, Calls) {
    use axum::extract::{OriginalUri, Query, State};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    #[derive(Clone)]
    struct S {
        parts: Arc<Vec<Vec<u8>>>,
        calls: Calls,
    }
    async fn manifest(State(s): State<S>) -> axum::Json<Value> {
        let cursors: Vec<String> = (1..s.parts.len()).map(|i| format!("c{i}")).collect();
        axum::Json(
            json!({"data": {"type": "io.cozy.exports", "id": "x1", "attributes": {
            "domain": "src.example", "state": "done", "parts_cursors": cursors, "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z", "total_size": 100, "parts_size": 1 << 30}}}),
        )
    }
    async fn data(State(s): State<S>, Query(q): Query<BTreeMap<String, String>>) -> Vec<u8> {
        let i = q
            .get("cursor")
            .map_or(0, |c| c.trim_start_matches('c').parse().unwrap());
        s.parts[i].clone()
    }
    async fn record(State(s): State<S>, uri: OriginalUri, h: HeaderMap) -> StatusCode {
        let auth = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        s.calls.lock().unwrap().push(format!("{} {auth}", uri.0));
        StatusCode::NO_CONTENT
    }
    let calls: Calls = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let source_url = format!("http://src.localhost:{port}/");
    let parts = build(&source_url);
    let app = axum::Router::new()
        .route("/move/exports/x1", get(manifest))
        .route("/move/exports/data/x1", get(data))
        .route("/move/finalize", post(record))
        .route("/move/abort", post(record))
        .with_state(S {
            parts: Arc::new(parts),
            calls: calls.clone(),
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://settings.src.localhost:{port}/#/exports/x1"),
        source_url,
        calls,
    )
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in entries {
            z.start_file(name.as_str(), opts).unwrap();
            z.write_all(body).unwrap();
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

fn data_entry(doctype: &str, doc: Value) -> (String, Vec<u8>) {
    let id = doc["_id"].as_str().unwrap().to_owned();
    (
        format!("My Cozy/Data/{doctype}/{id}.json"),
        serde_json::to_vec(&doc).unwrap(),
    )
}

/// Asks B to import from the stand-in as the source does at the end of its export.
async fn notify_target(e: &Env, link: &str, source_url: &str) {
    let token = e.token(B, "io.cozy.imports").await;
    let res = importing(e, Some(&token), "/move/importing?source=src.example").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let body = json!({"data": {"attributes": {
        "url": link, "vault": true,
        "move_from": {"url": source_url, "token": "source-token"},
    }}});
    let res = e
        .call(
            B,
            Some(&token),
            Method::POST,
            "/move/imports",
            &[("content-type", "application/vnd.api+json")],
            body.to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_import_finalizes_the_source_and_keeps_share_links() {
    let e = env().await;
    target(&e).await;
    // The source's share link: a token signed by another instance (A).
    e.create_instance(A, "&Email=alice@example.net").await;
    let a = e.state.instances.get_str(A).await.unwrap();
    let old_code = hearth_instances::token::issue(&a, Audience::Share, "perm1", "", None);
    let forged = hearth_instances::token::issue(&a, Audience::Share, "perm1", "x", None);

    let (link, source_url, calls) = stand_in_with(|src| {
        vec![zip_of(&[
            (
                "My Cozy/Data/instance.json".into(),
                serde_json::to_vec(&json!({"domain": "src.example"})).unwrap(),
            ),
            data_entry(
                "io.cozy.permissions",
                json!({"_id": "perm1", "_rev": "1-a", "type": "share", "source_id": "io.cozy.apps/drive",
                    "permissions": {"files": {"type": "io.cozy.files", "verbs": ["GET"]}},
                    "codes": {"email": old_code}}),
            ),
            data_entry(
                "io.cozy.permissions",
                json!({"_id": "perm2", "type": "app", "source_id": "io.cozy.apps/drive",
                    "permissions": {"all": {"type": "io.cozy.files"}}}),
            ),
            data_entry(
                "io.cozy.sharings",
                json!({"_id": "sh1", "owner": true, "initial_sync": true,
                    "initial_number_of_files_to_sync": 12,
                    "members": [{"instance": src.trim_end_matches('/')}, {"instance": "https://peer.example"}],
                    "rules": [{"doctype": "io.cozy.files", "values": ["d1"]}]}),
            ),
            data_entry(
                "io.cozy.sharings",
                json!({"_id": "sh2",
                    "members": [{"instance": "https://owner.example"}, {"instance": src}],
                    "rules": [{"doctype": "io.cozy.files", "values": ["d2"]}]}),
            ),
            data_entry(
                "io.cozy.sharings",
                json!({"_id": "sh3", "owner": true, "members": [{"instance": src}],
                    "rules": [{"doctype": "com.bitwarden.organizations", "values": ["o"]}]}),
            ),
            data_entry(
                "io.cozy.shared",
                json!({"_id": "io.cozy.files/f1", "infos": {"sh1": {"rule": 0}}}),
            ),
        ])]
    })
    .await;

    notify_target(&e, &link, &source_url).await;
    let host = source_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    eventually(30, "moved_from to be the source host", || async {
        (settings(&e, B)
            .await
            .get("moved_from")
            .and_then(Value::as_str)
            == Some(host.as_str()))
        .then_some(())
    })
    .await;
    let b = e.state.instances.get_str(B).await.unwrap();
    assert!(!b.blocked, "unblocked after the move");
    let s = settings(&e, B).await;
    assert_eq!(s["import_vault"], true);
    assert!(s.get("moving_since").is_none());
    assert!(s.get("importing").is_none());
    let got = calls.lock().unwrap().clone();
    assert_eq!(
        got,
        vec!["/move/finalize?subdomain=nested Bearer source-token".to_owned()]
    );

    // Sharings rewritten for the new address (spec move 3.10.1).
    let sharings = docs(&e, B, "io.cozy.sharings").await;
    let target_url = format!("http://{B}");
    let src = source_url.trim_end_matches('/');
    assert_eq!(
        sharings["sh1"]["members"][0]["instance"],
        target_url.as_str()
    );
    assert_eq!(
        sharings["sh1"]["members"][1]["instance"],
        "https://peer.example"
    );
    assert_eq!(sharings["sh1"]["moved_from"], src);
    assert_eq!(sharings["sh1"]["initial_sync"], false);
    assert_eq!(sharings["sh1"]["initial_number_of_files_to_sync"], 0);
    assert_eq!(
        sharings["sh2"]["members"][0]["instance"],
        "https://owner.example"
    );
    assert_eq!(
        sharings["sh2"]["members"][1]["instance"],
        target_url.as_str()
    );
    assert_eq!(sharings["sh2"]["moved_from"], source_url.as_str());
    assert!(!sharings.contains_key("sh3"), "a shared vault stays behind");
    assert!(
        docs(&e, B, "io.cozy.shared")
            .await
            .contains_key("io.cozy.files/f1")
    );

    // Share links: the permission came with new codes, the old one kept.
    let perms = docs(&e, B, "io.cozy.permissions").await;
    assert!(
        !perms.contains_key("perm2"),
        "app permissions come from manifests"
    );
    let perm = &perms["perm1"];
    assert_eq!(perm["moved_codes"]["email"], old_code.as_str());
    let new_code = perm["codes"]["email"].as_str().unwrap().to_owned();
    assert_ne!(new_code, old_code);
    for code in [&old_code, &new_code] {
        let res = e
            .call(
                B,
                Some(code),
                Method::GET,
                "/permissions/self",
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(res.json()["data"]["attributes"]["type"], "share");
        let rules = res.json()["data"]["attributes"]["permissions"].to_string();
        assert!(rules.contains("io.cozy.files"), "{rules}");
    }
    // Another token of the old instance for that permission is not one of its codes.
    let res = e
        .call(
            B,
            Some(&forged),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());

    // The one-time notice goes away with the session's DELETE; the vault page once.
    let (logged_in, session) = e.login(B, PASSWORD, None).await;
    // The first login after the move goes to the vault instructions.
    assert_eq!(
        logged_in.header("location"),
        format!("http://{B}/move/vault")
    );
    let res = e
        .call(
            B,
            None,
            Method::GET,
            "/move/vault",
            &[("accept", "text/html")],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.header("location").starts_with("/auth/login?redirect="));
    let res = e
        .call(
            B,
            None,
            Method::GET,
            "/move/vault",
            &[("accept", "text/html"), ("cookie", &session)],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text().matches("<li>").count(), 5);
    assert!(settings(&e, B).await.get("import_vault").is_none());
    let res = e
        .call(
            B,
            None,
            Method::DELETE,
            "/settings/instance/moved_from",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    let res = e
        .call(
            B,
            None,
            Method::DELETE,
            "/settings/instance/moved_from",
            &[("cookie", &session)],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(settings(&e, B).await.get("moved_from").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_import_aborts_the_source() {
    let e = env().await;
    target(&e).await;
    let (link, source_url, calls) = stand_in(vec![b"not a zip".to_vec()]).await;
    notify_target(&e, &link, &source_url).await;
    eventually(30, "the abort call", || async {
        let got = calls.lock().unwrap().clone();
        (!got.is_empty()).then_some(got)
    })
    .await;
    eventually(10, "moved_from cleared", || async {
        settings(&e, B)
            .await
            .get("moved_from")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        calls.lock().unwrap().clone(),
        vec!["/move/abort Bearer source-token".to_owned()]
    );
    let b = e.state.instances.get_str(B).await.unwrap();
    assert!(!b.blocked, "never left blocked");
    e.login(B, PASSWORD, None).await;
}
