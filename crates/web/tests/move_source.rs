//! The source side of a move (spec move 3.3, 3.5–3.8) through the whole router, with
//! a real SMTP receiver for the confirmation mail and a stand-in target server on
//! loopback that records what the source asks it.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_core::{Doctype, InstanceId};
use hearth_jobs::JobsConfig;
use hearth_mail::testkit::TestSmtpServer;
use hearth_mail::{MailConfig, Mailer};
use hearth_store::{AllDocsQuery, GetOptions};
use hearth_web::MoveSettings;
use http_body_util::BodyExt;
use serde_json::Value;
use support::{Env, PASS, eventually, started_env};

/// The source's name; its domain carries the server's port (`src.localhost:<port>`),
/// so that the target can reach the links it is given.
const SRC: &str = "src.localhost";
const T_TOKEN: &str = "target-token";

/// What the stand-in target received: method, path and query, `Authorization`, body.
type Calls = Arc<Mutex<Vec<(Method, String, String, Vec<u8>)>>>;

#[derive(Clone)]
struct Target {
    /// The status of `POST /move/importing`.
    importing: Arc<AtomicU16>,
    /// The status of `POST /move/imports` (303 by default).
    imports: Arc<AtomicU16>,
    calls: Calls,
    url: String,
}

impl Target {
    fn posts(&self, path: &str) -> Vec<(String, String, Vec<u8>)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _, _)| *m == Method::POST && p.split('?').next() == Some(path))
            .map(|(_, p, a, b)| (p.clone(), a.clone(), b.clone()))
            .collect()
    }
}

async fn target_handler(State(t): State<Target>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    t.calls
        .lock()
        .unwrap()
        .push((method.clone(), path.clone(), auth, body));
    match (method, path.split('?').next().unwrap_or("")) {
        (Method::POST, "/move/importing") => {
            StatusCode::from_u16(t.importing.load(Ordering::SeqCst))
                .unwrap()
                .into_response()
        }
        // As the Cozy stack does: 303 to the waiting page, which answers 200.
        (Method::POST, "/move/imports") => match t.imports.load(Ordering::SeqCst) {
            303 => (StatusCode::SEE_OTHER, [("location", "/move/importing")]).into_response(),
            s => StatusCode::from_u16(s).unwrap().into_response(),
        },
        (Method::GET, "/move/importing") => "waiting".into_response(),
        (Method::POST, "/move/abort") => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_target() -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = Target {
        importing: Arc::new(AtomicU16::new(204)),
        imports: Arc::new(AtomicU16::new(303)),
        calls: Arc::default(),
        url: format!("http://target.localhost:{port}"),
    };
    let app = axum::Router::new()
        .fallback(target_handler)
        .with_state(t.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    t
}

struct Fixture {
    e: Env,
    smtp: TestSmtpServer,
    target: Target,
    /// `src.localhost:<port>`: the source's domain.
    host: String,
    session: String,
}

async fn fixture() -> Fixture {
    let smtp = TestSmtpServer::start().await.unwrap();
    let mail = MailConfig { ..smtp.config() };
    let e = started_env(|state| {
        let outbox = state.instances.fs_root().join("outbox");
        state
            .with_jobs(JobsConfig::default(), Mailer::new(mail, outbox).unwrap())
            .with_move_settings(MoveSettings {
                wizard_url: Some("http://wizard.localhost/".into()),
                ..MoveSettings::default()
            })
    })
    .await;
    let host = format!("{SRC}:{}", e.addr.port());
    e.create_instance(
        &host,
        &format!("&Passphrase={PASS}&KdfIterations=50000&Email=alice@src.example&PublicName=Alice"),
    )
    .await;
    let (_, session) = e.login(&host, PASS, None).await;
    let target = start_target().await;
    Fixture {
        e,
        smtp,
        target,
        host,
        session,
    }
}

impl Fixture {
    async fn get(&self, path: &str, session: bool) -> support::Res {
        let mut headers = vec![("accept", "text/html")];
        if session {
            headers.push(("cookie", self.session.as_str()));
        }
        self.e
            .call(&self.host, None, Method::GET, path, &headers, Body::empty())
            .await
    }

    /// A code of `/move/authorize` (as the wizard gets it).
    async fn code(&self) -> String {
        let res = self
            .get(
                "/move/authorize?state=s1&redirect_uri=http%3A%2F%2Fwizard.localhost%2Fcallback%2Fsource",
                true,
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let to = res.header("location").to_owned();
        assert!(
            to.starts_with("http://wizard.localhost/callback/source?state=s1&code="),
            "{to}"
        );
        assert!(
            to.contains("&vault=false&used=") && to.ends_with('#'),
            "{to}"
        );
        to.split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned()
    }

    async fn request(&self, fields: &[(&str, &str)]) -> support::Res {
        let form = serde_urlencoded::to_string(fields).unwrap();
        self.e
            .call(
                &self.host,
                None,
                Method::POST,
                "/move/request",
                &[
                    ("accept", "text/html"),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                form,
            )
            .await
    }

    /// A request made with a fresh code; answers the secret of the mailed link.
    async fn requested(&self) -> String {
        let code = self.code().await;
        let res = self
            .request(&[
                ("code", &code),
                ("target_url", &format!("{}/", self.target.url)),
                ("target_token", T_TOKEN),
                ("target_client_id", "tc"),
                ("target_client_secret", "ts"),
            ])
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert!(res.text().contains("alice@src.example"), "{}", res.text());
        // A code is used once.
        let again = self
            .request(&[
                ("code", &code),
                ("target_url", &self.target.url),
                ("target_token", T_TOKEN),
                ("target_client_id", "tc"),
                ("target_client_secret", "ts"),
            ])
            .await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
        let mail = self
            .smtp
            .next_message(Duration::from_secs(10))
            .await
            .expect("the confirmation mail");
        assert_eq!(mail.to, vec!["alice@src.example".to_owned()]);
        let msg = mail_parser::MessageParser::default()
            .parse(&mail.data)
            .unwrap();
        let text = msg.body_text(0).unwrap().into_owned();
        let link_start = format!("http://{}/move/go?secret=", self.host);
        let at = text
            .find(&link_start)
            .unwrap_or_else(|| panic!("no link in {text}"));
        let secret: String = text[at + link_start.len()..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        assert_eq!(secret.len(), 16, "{text}");
        assert!(
            msg.subject().unwrap().contains("target.localhost"),
            "{:?}",
            msg.subject()
        );
        secret
    }

    async fn settings(&self) -> serde_json::Map<String, Value> {
        let inst = self.e.state.instances.get_str(&self.host).await.unwrap();
        self.e
            .state
            .store
            .get(
                &inst.instance_id(),
                &Doctype::new("io.cozy.settings").unwrap(),
                "io.cozy.settings.instance",
                GetOptions::default(),
            )
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_move_runs_once_and_the_moved_source_points_to_the_target() {
    let f = fixture().await;
    // Without a session, the wizard's entry and the mail link go through the login.
    let res = f
        .get("/move/authorize?state=a&redirect_uri=http://w/", false)
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(
        res.header("location")
            .contains("/auth/login?redirect=%2Fmove%2Fauthorize%3Fstate%3Da"),
        "{}",
        res.header("location")
    );
    let res = f
        .get("/move/authorize?state=a&redirect_uri=javascript:x", true)
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    let secret = f.requested().await;
    let go = format!("/move/go?secret={secret}");
    let res = f.get(&go, false).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.header("location").contains("/auth/login?redirect="));
    assert!(f.target.posts("/move/importing").is_empty());

    let res = f.get(&go, true).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(
        res.header("location"),
        format!("{}/move/importing", f.target.url)
    );
    let importing = f.target.posts("/move/importing");
    assert_eq!(importing.len(), 1);
    assert_eq!(
        importing[0].0,
        format!("/move/importing?source={SRC}%3A{}", f.e.addr.port())
    );
    assert_eq!(importing[0].1, format!("Bearer {T_TOKEN}"));
    // `moved_to` waits for the end of the move.
    let settings = f.settings().await;
    assert!(settings.get("moved_to").is_none());
    assert_eq!(settings["moving_to"], Value::String(f.target.url.clone()));

    // The export runs, then the target is told where to import from.
    let imports = eventually(20, "the target told to import", || async {
        f.target.posts("/move/imports").into_iter().next()
    })
    .await;
    assert_eq!(imports.1, format!("Bearer {T_TOKEN}"));
    let body: Value = serde_json::from_slice(&imports.2).unwrap();
    let attrs = &body["data"]["attributes"];
    assert!(
        attrs["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://settings.{}/#/exports/", f.host)),
        "{attrs}"
    );
    assert_eq!(attrs["vault"], Value::Bool(false));
    assert_eq!(attrs["move_from"]["url"], format!("http://{}/", f.host));
    let source_token = attrs["move_from"]["token"].as_str().unwrap().to_owned();
    // No archive mail for a move.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.smtp.messages().len() == 1, "only the confirmation mail");
    assert!(f.target.posts("/move/abort").is_empty());

    // A second click changes nothing.
    let res = f.get(&go, true).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("Invalid secret"), "{}", res.text());
    assert_eq!(f.target.posts("/move/importing").len(), 1);

    // The source token works until the move is finalized.
    let me =
        f.e.call(
            &f.host,
            Some(&source_token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let warnings = |token: String| {
        let (e, host) = (&f.e, f.host.clone());
        async move {
            e.call(
                &host,
                Some(&token),
                Method::GET,
                "/settings/warnings",
                &[],
                Body::empty(),
            )
            .await
        }
    };
    let none = warnings(source_token.clone()).await;
    assert_eq!(none.status, StatusCode::NO_CONTENT, "{}", none.text());
    let res =
        f.e.call(
            &f.host,
            Some(&source_token),
            Method::POST,
            "/move/finalize?subdomain=nested",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let inst = f.e.state.instances.get_str(&f.host).await.unwrap();
    assert!(inst.moved);
    let deletion = inst.deletion_scheduled_at.clone().expect("a deletion date");
    let in_days = (hearth_core::parse_rfc3339(&deletion).unwrap()
        - hearth_core::parse_rfc3339(&hearth_core::now_rfc3339()).unwrap())
        / 86_400;
    assert!((29..=30).contains(&in_days), "{deletion}");
    let settings = f.settings().await;
    assert_eq!(settings["moved_to"], Value::String(f.target.url.clone()));
    assert_eq!(settings["moved_to_subdomain_type"], "nested");
    assert!(settings.get("moving_to").is_none());

    // OAuth clients now get 410 with the new address.
    let gone =
        f.e.call(
            &f.host,
            Some(&source_token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.text());
    let err = &gone.json()["errors"][0];
    assert_eq!(err["status"], "410");
    assert_eq!(err["code"], "moved");
    assert_eq!(err["title"], "Cozy has been moved");
    assert_eq!(err["links"]["related"], Value::String(f.target.url.clone()));
    // `/settings/warnings` tells the same, even to the token it refuses elsewhere.
    let listed = warnings(source_token.clone()).await;
    assert_eq!(
        listed.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        listed.text()
    );
    assert_eq!(listed.json()["errors"][0], *err);

    // Pages without a session send people to the same page on the new address.
    let app_host = format!("drive.{}", f.host);
    let res =
        f.e.call(
            &app_host,
            None,
            Method::GET,
            "/folder/1?sharecode=abc",
            &[("accept", "text/html")],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::GONE, "{}", res.text());
    let target_host = f.target.url.trim_start_matches("http://");
    let link = format!("http://drive.{target_host}/folder/1?sharecode=abc");
    assert!(res.text().contains(&link), "{}", res.text());
    assert!(
        res.text().contains("Alice changed the address"),
        "{}",
        res.text()
    );
    let res = f.get("/auth/login", false).await;
    assert_eq!(res.status, StatusCode::GONE);
    assert!(
        res.text().contains(&format!("{}/auth/login", f.target.url)),
        "{}",
        res.text()
    );
    // The owner's session still works on the old address.
    let res = f.get("/", true).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

/// The stored requests (global store).
async fn requests(e: &Env) -> Vec<serde_json::Map<String, Value>> {
    let q = AllDocsQuery {
        include_docs: true,
        ..Default::default()
    };
    match e
        .state
        .store
        .all_docs(
            &InstanceId::global(),
            &Doctype::new("io.hearth.move.requests").unwrap(),
            &q,
        )
        .await
    {
        Ok(r) => r.rows.into_iter().filter_map(|r| r.doc).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_changes_nothing() {
    let f = fixture().await;
    let secret = f.requested().await;
    let stored = requests(&f.e).await;
    assert_eq!(stored.len(), 1);
    assert!(
        !serde_json::to_string(&stored[0]).unwrap().contains(&secret),
        "the secret itself is not stored"
    );
    let mut doc = stored[0].clone();
    doc.insert("expires_at".into(), Value::from(1_000u64));
    f.e.state
        .store
        .put(
            &InstanceId::global(),
            &Doctype::new("io.hearth.move.requests").unwrap(),
            doc,
        )
        .await
        .unwrap();
    let res = f.get(&format!("/move/go?secret={secret}"), true).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("Invalid secret"), "{}", res.text());
    assert!(f.target.calls.lock().unwrap().is_empty());
    assert!(f.settings().await.get("moving_to").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_refusing_the_move_changes_nothing() {
    let f = fixture().await;
    f.target.importing.store(401, Ordering::SeqCst);
    let secret = f.requested().await;
    let res = f.get(&format!("/move/go?secret={secret}"), true).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
    assert!(res.text().contains("refused"), "{}", res.text());
    assert_eq!(f.target.posts("/move/importing").len(), 1);
    assert!(f.settings().await.get("moving_to").is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(f.e.state.exports().list(&f.host).await.unwrap().is_empty());
    assert!(f.target.posts("/move/imports").is_empty());
    let inst = f.e.state.instances.get_str(&f.host).await.unwrap();
    assert!(!inst.moved && !inst.blocked);

    // Nothing changed, so the mail's link works again once the target accepts.
    f.target.importing.store(204, Ordering::SeqCst);
    let res = f.get(&format!("/move/go?secret={secret}"), true).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(f.target.posts("/move/importing").len(), 2);
    let res = f.get(&format!("/move/go?secret={secret}"), true).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "used once it worked");

    // Bad input is refused with a page, and nothing is stored.
    for fields in [
        vec![("token", "x"), ("client_id", "y"), ("client_secret", "z")],
        vec![
            ("token", "x"),
            ("client_id", "y"),
            ("client_secret", "z"),
            ("target_url", "http://src.localhost/"),
            ("target_token", "t"),
            ("target_client_id", "c"),
            ("target_client_secret", "s"),
        ],
        vec![
            ("token", "not-a-token"),
            ("client_id", "y"),
            ("client_secret", "z"),
            ("target_url", "http://elsewhere.localhost/"),
            ("target_token", "t"),
            ("target_client_id", "c"),
            ("target_client_secret", "s"),
        ],
    ] {
        let res = f.request(&fields).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
        assert!(res.header("content-type").starts_with("text/html"));
    }
    assert!(requests(&f.e).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_move_refused_at_import_is_aborted_and_mailed() {
    let f = fixture().await;
    f.target.imports.store(500, Ordering::SeqCst);
    let body = serde_json::json!({
        "target_url": f.target.url,
        "target_token": T_TOKEN,
        "target_client_id": "tc",
        "target_client_secret": "ts",
    });
    let bad =
        f.e.admin(
            Method::POST,
            &format!("/instances/{}/move", f.host),
            serde_json::json!({"target_url": f.target.url}).to_string(),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad.text()
    );
    assert!(f.target.calls.lock().unwrap().is_empty());
    let res =
        f.e.admin(
            Method::POST,
            &format!("/instances/{}/move", f.host),
            body.to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert!(res.json()["job_id"].as_str().is_some_and(|j| !j.is_empty()));
    // The target refuses the import: it is given back, the owner is told.
    eventually(20, "the target aborted", || async {
        (!f.target.posts("/move/abort").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        f.target.posts("/move/abort")[0].1,
        format!("Bearer {T_TOKEN}")
    );
    let mail = f
        .smtp
        .next_message(Duration::from_secs(10))
        .await
        .expect("the export_error mail");
    let msg = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .unwrap();
    assert!(
        msg.subject().unwrap().contains("failed"),
        "{:?}",
        msg.subject()
    );
    assert!(f.settings().await.get("moving_to").is_none());
    assert!(!f.e.state.instances.get_str(&f.host).await.unwrap().moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_unblocks_a_target_waiting_for_its_import() {
    let f = fixture().await;
    let st = &f.e.state;
    let inst = st
        .instances
        .set_blocked(&f.host, Some("MOVING"))
        .await
        .unwrap();
    hearth_move::set_settings_flag(
        &st.imports,
        &inst,
        "moved_from",
        Some(Value::String("old.example".into())),
    )
    .await
    .unwrap();
    let no_perm = f.e.token(&f.host, "io.cozy.files").await;
    let res =
        f.e.call(
            &f.host,
            Some(&no_perm),
            Method::POST,
            "/move/abort",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    assert!(st.instances.get_str(&f.host).await.unwrap().blocked);
    let token = f.e.token(&f.host, "io.cozy.imports").await;
    let res =
        f.e.call(
            &f.host,
            Some(&token),
            Method::POST,
            "/move/abort",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let inst = st.instances.get_str(&f.host).await.unwrap();
    assert!(!inst.blocked && inst.blocking_reason.is_none());
    assert!(f.settings().await.get("moved_from").is_none());
}
