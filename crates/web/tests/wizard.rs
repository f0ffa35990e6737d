//! The move wizard (spec move 3.2–3.4) on its own host, driven as a browser would,
//! against stand-in source and target servers on loopback; and the settings page of
//! an instance (export, import from a link, move).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{
    Json, Router,
    body::Body,
    extract::{Form, Query, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use hearth_web::MoveSettings;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::{Env, Res, eventually, started_env};

const WIZARD: &str = "move.localhost";
const ALICE: &str = "alice.localhost";
const PASSWORD: &str = "correct horse";

async fn env() -> Env {
    started_env(|s| {
        s.with_move_settings(MoveSettings {
            wizard_domain: Some(WIZARD.into()),
            ..MoveSettings::default()
        })
    })
    .await
}

/// What a stand-in server was sent.
#[derive(Default)]
struct Seen {
    registrations: Vec<Value>,
    exchanges: Vec<HashMap<String, String>>,
}

type Shared = Arc<Mutex<Seen>>;

/// A stand-in instance on loopback, reachable as `<name>.localhost:<port>`: the
/// source's `/move/authorize`, the target's `/auth/register`, and a token endpoint
/// that accepts the codes `good` and `tcode`.
async fn stand_in(name: &str) -> (String, Shared) {
    async fn authorize(Query(q): Query<HashMap<String, String>>) -> Response {
        let back = format!(
            "{}?{}#",
            q["redirect_uri"],
            serde_urlencoded::to_string([
                ("state", q["state"].as_str()),
                ("code", "src-code"),
                ("vault", "true"),
                ("used", "1000"),
            ])
            .unwrap()
        );
        Redirect::to(&back).into_response()
    }
    async fn register(State(seen): State<Shared>, Json(body): Json<Value>) -> Response {
        seen.lock().unwrap().registrations.push(body);
        (
            StatusCode::CREATED,
            Json(json!({"client_id": "cid-1", "client_secret": "csecret-1"})),
        )
            .into_response()
    }
    async fn token(State(seen): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
        seen.lock().unwrap().exchanges.push(f.clone());
        let token = match f.get("code").map(String::as_str) {
            Some("good") => "src-token",
            Some("tcode") => "tgt-token",
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
        };
        Json(json!({"access_token": token, "token_type": "bearer"})).into_response()
    }
    let seen = Shared::default();
    let app = Router::new()
        .route("/move/authorize", get(authorize))
        .route("/auth/register", post(register))
        .route("/auth/access_token", post(token))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{name}.localhost:{port}"), seen)
}

/// A browser on the wizard's host: its cookie goes with every request.
struct Browser<'a> {
    e: &'a Env,
    cookie: String,
}

impl Browser<'_> {
    async fn get(&mut self, uri: &str) -> Res {
        self.send(Method::GET, uri, &[], Body::empty()).await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Res {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(
            Method::POST,
            uri,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.into(),
        )
        .await
    }

    async fn send(&mut self, method: Method, uri: &str, extra: &[(&str, &str)], body: Body) -> Res {
        let mut headers = vec![("accept", "text/html"), ("accept-language", "en")];
        headers.extend_from_slice(extra);
        let cookie = self.cookie.clone();
        if !cookie.is_empty() {
            headers.push(("cookie", cookie.as_str()));
        }
        let res = self.e.call(WIZARD, None, method, uri, &headers, body).await;
        if res.header("set-cookie").starts_with("hearth_move_wizard=") {
            self.cookie = res.cookie("hearth_move_wizard");
        }
        res
    }
}

fn query_of(location: &str) -> HashMap<String, String> {
    let q = location.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(q.split('#').next().unwrap()).unwrap()
}

/// The `value` of the input named `name` in a page.
fn input(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    Some(page[start..start + page[start..].find('"')?].to_owned())
}

/// Workflow B: the start page, the source's authorize and its callback, the target
/// with a registered client, its callback, and the summary's form for the source.
#[tokio::test]
async fn workflow_b_from_the_address_to_the_move_form() {
    let e = env().await;
    let (source, _) = stand_in("src").await;
    let (target, target_seen) = stand_in("tgt").await;
    let mut b = Browser {
        e: &e,
        cookie: String::new(),
    };

    let start = b.get("/").await;
    assert_eq!(start.status, StatusCode::OK);
    assert!(
        start.text().contains("Move your Hearth") && start.text().contains("id=\"source-url\"")
    );
    let fr = e
        .call(
            WIZARD,
            None,
            Method::GET,
            "/",
            &[("accept", "text/html"), ("accept-language", "fr-FR")],
            Body::empty(),
        )
        .await;
    assert!(
        fr.text().contains("Déménagez votre Hearth"),
        "{}",
        fr.text()
    );

    // A typo is said, nothing is started.
    let bad = b.post("/start", &[("source_url", "not an address")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("not the address of a Hearth"));
    assert!(b.cookie.is_empty());

    let go = b
        .post(
            "/start",
            &[("source_url", source.trim_start_matches("http://"))],
        )
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.text());
    let location = go.header("location").to_owned();
    assert!(
        location.starts_with(&format!("{source}/move/authorize?")),
        "{location}"
    );
    let q = query_of(&location);
    assert_eq!(q["redirect_uri"], "http://move.localhost/callback/source");
    let state = q["state"].clone();
    assert_eq!(b.cookie, format!("hearth_move_wizard={state}"));

    // The browser follows it to the stand-in source, which sends it back.
    let back = ureq_get_location(&location).await;
    let back_path = back.trim_start_matches("http://move.localhost");
    let res = b.get(back_path.trim_end_matches('#')).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(res.header("location"), "/target");

    let page = b.get("/target").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("id=\"target-url\""));
    assert_eq!(
        input(&page.text(), "state").as_deref(),
        Some(state.as_str())
    );

    // The same address as the source is refused.
    let same = b
        .post("/target", &[("state", &state), ("target_url", &source)])
        .await;
    assert_eq!(same.status, StatusCode::BAD_REQUEST);
    assert!(same.text().contains("another one than the current one"));

    let chosen = b
        .post("/target", &[("state", &state), ("target_url", &target)])
        .await;
    assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.text());
    let location = chosen.header("location").to_owned();
    assert!(
        location.starts_with(&format!("{target}/auth/authorize/move?")),
        "{location}"
    );
    let q = query_of(&location);
    assert_eq!(q["state"], state);
    assert_eq!(q["client_id"], "cid-1");
    assert_eq!(q["redirect_uri"], "http://move.localhost/callback/target");
    let reg = target_seen.lock().unwrap().registrations[0].clone();
    assert_eq!(reg["client_name"], "Hearth move");
    assert_eq!(reg["client_kind"], "web");
    assert_eq!(reg["software_id"], "github.com/cozy/cozy-move");
    assert_eq!(
        reg["redirect_uris"],
        json!(["http://move.localhost/callback/target"])
    );

    let cb = b
        .get(&format!(
            "/callback/target?state={state}&code=tcode&used=0&quota=5000"
        ))
        .await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.text());
    assert_eq!(cb.header("location"), "/summary");
    let exchange = target_seen.lock().unwrap().exchanges[0].clone();
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert_eq!(exchange["client_id"], "cid-1");
    assert_eq!(exchange["client_secret"], "csecret-1");

    let summary = b.get("/summary").await;
    assert_eq!(summary.status, StatusCode::OK);
    let html = summary.text();
    assert!(
        html.contains(&format!("action=\"{source}/move/request\"")),
        "{html}"
    );
    assert!(html.contains("id=\"move-submit\""));
    assert!(!html.contains("quota-too-small"));
    for (name, value) in [
        ("code", "src-code"),
        ("target_url", target.as_str()),
        ("target_token", "tgt-token"),
        ("target_client_id", "cid-1"),
        ("target_client_secret", "csecret-1"),
    ] {
        assert_eq!(input(&html, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(
        input(&html, "token"),
        None,
        "workflow B sends the code only"
    );
    // The source has a vault: export it, or skip (ignore_vault).
    assert!(html.contains("id=\"vault-skip\" name=\"ignore_vault\" value=\"true\""));
    assert!(html.contains("1.0 KB") && html.contains("5.0 KB"), "{html}");

    // Once the form is sent, the state is forgotten.
    let forget = b.post("/forget", &[("state", &state)]).await;
    assert_eq!(forget.status, StatusCode::NO_CONTENT);
    let gone = b.get("/summary").await;
    assert_eq!(gone.status, StatusCode::BAD_REQUEST);
    assert!(gone.text().contains("id=\"wizard-error\""));
}

/// The stand-in source's answer to the browser's GET (its `Location`).
async fn ureq_get_location(url: &str) -> String {
    let (host_port, path) = url
        .trim_start_matches("http://")
        .split_once('/')
        .map(|(h, p)| (h.to_owned(), format!("/{p}")))
        .unwrap();
    let port = host_port.rsplit_once(':').unwrap().1.to_owned();
    let mut stream = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out.lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or_else(|| panic!("no location in {out}"))
        .trim()
        .to_owned()
}

/// Workflow A: the source's 307 lands on `/initialize`, whose code is exchanged for
/// a source token; a target too small gets no move button.
#[tokio::test]
async fn workflow_a_and_a_target_too_small() {
    let e = env().await;
    let (source, source_seen) = stand_in("src").await;
    let (target, _) = stand_in("tgt").await;
    let mut b = Browser {
        e: &e,
        cookie: String::new(),
    };

    // A refused code: said, nothing kept.
    let q = |code: &str| {
        serde_urlencoded::to_string([
            ("client_id", "src-client"),
            ("client_secret", "src-secret"),
            ("code", code),
            ("vault", "false"),
            ("used", "9000"),
            ("cozy_url", &format!("{source}/")),
        ])
        .unwrap()
    };
    let refused = b.post(&format!("/initialize?{}", q("wrong")), &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(
        refused.text().contains("refused the request") && refused.text().contains("id=\"restart\"")
    );
    assert!(b.cookie.is_empty());

    let init = b
        .post(
            &format!("/initialize?{}", q("good")),
            &[("csrf_token", "x")],
        )
        .await;
    assert_eq!(init.status, StatusCode::SEE_OTHER, "{}", init.text());
    assert_eq!(init.header("location"), "/target");
    assert!(!b.cookie.is_empty());
    let ex = source_seen
        .lock()
        .unwrap()
        .exchanges
        .last()
        .cloned()
        .unwrap();
    assert_eq!(ex["client_id"], "src-client");
    assert_eq!(ex["code"], "good");

    let page = b.get("/target").await;
    let state = input(&page.text(), "state").unwrap();
    let chosen = b
        .post("/target", &[("state", &state), ("target_url", &target)])
        .await;
    assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.text());
    let cb = b
        .get(&format!(
            "/callback/target?state={state}&code=tcode&quota=5000"
        ))
        .await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.text());
    let summary = b.get("/summary").await;
    let html = summary.text();
    assert!(html.contains("id=\"quota-too-small\""), "{html}");
    assert!(html.contains("9.0 KB") && html.contains("5.0 KB"), "{html}");
    assert!(
        !html.contains("move-submit") && !html.contains("/move/request"),
        "{html}"
    );

    // With enough space, the form carries the source token and its client.
    let cb = b
        .get(&format!(
            "/callback/target?state={state}&code=tcode&quota=20000"
        ))
        .await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER);
    let html = b.get("/summary").await.text();
    assert!(html.contains("id=\"move-submit\""), "{html}");
    assert_eq!(input(&html, "token").as_deref(), Some("src-token"));
    assert_eq!(input(&html, "client_id").as_deref(), Some("src-client"));
    assert_eq!(input(&html, "client_secret").as_deref(), Some("src-secret"));
    assert_eq!(input(&html, "code"), None);
    assert!(!html.contains("ignore_vault"), "no vault, no vault step");
}

/// Unknown, foreign and expired states; unreachable servers; other hosts.
#[tokio::test]
async fn errors_offer_to_start_again() {
    let e = env().await;
    let mut b = Browser {
        e: &e,
        cookie: String::new(),
    };
    let unknown = b.get("/callback/source?state=nope&code=x").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.text().contains("has expired") && unknown.text().contains("href=\"/\""));

    let (source, _) = stand_in("src").await;
    let go = b.post("/start", &[("source_url", &source)]).await;
    let state = query_of(go.header("location"))["state"].clone();
    // Another browser's state (a forged callback) is refused.
    let forged = b
        .get("/callback/source?state=0123456789abcdef0123456789abcdef&code=x")
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    // An expired one too: its document says so.
    let dt = hearth_core::Doctype::new("io.hearth.move.wizard").unwrap();
    let global = hearth_core::InstanceId::global();
    let store = &e.state.store;
    let mut doc = store
        .get(&global, &dt, &state, hearth_store::GetOptions::default())
        .await
        .unwrap();
    doc.insert("expires_at".into(), json!(1));
    store.put(&global, &dt, doc).await.unwrap();
    let expired = b
        .get(&format!("/callback/source?state={state}&code=x"))
        .await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert!(expired.text().contains("has expired"));
    assert!(
        store
            .get(&global, &dt, &state, hearth_store::GetOptions::default())
            .await
            .is_err(),
        "an expired state is deleted"
    );

    // A target that does not answer.
    let mut b = Browser {
        e: &e,
        cookie: String::new(),
    };
    let go = b.post("/start", &[("source_url", &source)]).await;
    let state = query_of(go.header("location"))["state"].clone();
    b.get(&format!("/callback/source?state={state}&code=c&used=1"))
        .await;
    let down = b
        .post(
            "/target",
            &[("state", &state), ("target_url", "http://down.localhost:1")],
        )
        .await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    assert!(
        down.text().contains("down.localhost:1 does not answer"),
        "{}",
        down.text()
    );

    // Other hosts are not the wizard.
    let other = e
        .call(
            "nobody.localhost",
            None,
            Method::GET,
            "/",
            &[("accept", "text/html")],
            Body::empty(),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(!other.text().contains("Move your Hearth"));
}

// ---------------------------------------------------------------------------------------
// The settings page
// ---------------------------------------------------------------------------------------

fn html_headers(cookie: &str) -> Vec<(&str, &str)> {
    vec![("accept", "text/html"), ("cookie", cookie)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_page_export_import_and_move() {
    let e = env().await;
    e.create_instance(
        ALICE,
        &format!(
            "&Passphrase={}&KdfIterations=50000&Email=alice@example.net",
            PASSWORD.replace(' ', "%20")
        ),
    )
    .await;
    let anon = e
        .call(
            ALICE,
            None,
            Method::GET,
            "/settings",
            &[("accept", "text/html")],
            Body::empty(),
        )
        .await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(
        anon.header("location"),
        "/auth/login?redirect=http%3A%2F%2Falice.localhost%2Fsettings"
    );
    let (_, session) = e.login(ALICE, PASSWORD, None).await;

    // The home page links to it.
    let home = e
        .call(
            ALICE,
            None,
            Method::GET,
            "/",
            &html_headers(&session),
            Body::empty(),
        )
        .await;
    assert!(
        home.text().contains("href=\"/settings\""),
        "{}",
        home.text()
    );

    let page = e
        .call(
            ALICE,
            None,
            Method::GET,
            "/settings",
            &html_headers(&session),
            Body::empty(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for id in [
        "export-start",
        "exports",
        "import-url",
        "import-precheck",
        "move-start",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("action=\"/move/initialize\""));
    assert!(html.contains("No export yet"));
    let csrf = input(&html, "csrf_token").unwrap();

    let form = |fields: &[(&str, &str)]| serde_urlencoded::to_string(fields).unwrap();
    let post = |uri: &'static str, body: String| {
        let session = session.clone();
        let e = &e;
        async move {
            e.call(
                ALICE,
                None,
                Method::POST,
                uri,
                &[
                    ("accept", "text/html"),
                    ("cookie", &session),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body,
            )
            .await
        }
    };

    // Without the token, nothing is done.
    let forged = post("/settings/export", form(&[("csrf_token", "forged")])).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let started = post("/settings/export", form(&[("csrf_token", &csrf)])).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text());
    let listed = eventually(20, "a finished export in the list", || async {
        let res = e
            .call(
                ALICE,
                None,
                Method::GET,
                "/settings/exports",
                &[("cookie", &session)],
                Body::empty(),
            )
            .await;
        let j = res.json();
        let html = j["html"].as_str().unwrap_or("").to_owned();
        (html.contains("data-state=\"done\"")).then_some(html)
    })
    .await;
    assert!(
        listed.contains("class=\"export-part\" href=\"/move/exports/data/"),
        "{listed}"
    );
    let href = listed
        .split("href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let part = e
        .call(ALICE, None, Method::GET, href, &[], Body::empty())
        .await;
    assert_eq!(part.status, StatusCode::OK);
    assert_eq!(part.header("content-type"), "application/zip");
    let json_anon = e
        .call(
            ALICE,
            None,
            Method::GET,
            "/settings/exports",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(json_anon.status, StatusCode::UNAUTHORIZED);

    // Import: refused links are explained in words.
    let bad = post(
        "/settings/import/precheck",
        form(&[
            ("csrf_token", &csrf),
            ("url", "http://down.localhost:1/#/exports/abc"),
        ]),
    )
    .await;
    assert_eq!(bad.status, StatusCode::PRECONDITION_FAILED);
    assert!(bad.text().contains("id=\"import-error\""), "{}", bad.text());
    assert!(bad.text().contains("does not lead to a finished export"));
    let not_a_link = post(
        "/settings/import/precheck",
        form(&[("csrf_token", &csrf), ("url", "hello")]),
    )
    .await;
    assert_eq!(not_a_link.status, StatusCode::PRECONDITION_FAILED);

    // A real export link of this very server is accepted, then the domain is asked.
    let inst = e.state.instances.get_str(ALICE).await.unwrap();
    let id = e.state.exports().list(ALICE).await.unwrap()[0].id.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mac = hearth_move::mac::encode(&inst.session_secret, &id, now);
    let link = format!("http://settings.{ALICE}:{}/#/exports/{mac}", e.addr.port());
    let ok = post(
        "/settings/import/precheck",
        form(&[("csrf_token", &csrf), ("url", &link)]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert!(ok.text().contains("id=\"import-confirm\"") && ok.text().contains("will be deleted"));
    let wrong = post(
        "/settings/import",
        form(&[
            ("csrf_token", &csrf),
            ("url", &link),
            ("confirm_domain", "other.localhost"),
        ]),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().contains("not the address of this Hearth"));
    let i = e.state.instances.get_str(ALICE).await.unwrap();
    assert!(!i.blocked, "nothing was scheduled");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
