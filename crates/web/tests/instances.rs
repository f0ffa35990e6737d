//! The admin API's instance routes and the `Host` routing of the public server, on a
//! real SQLite store and files directory (requests go through the whole router).

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use base64::Engine;
use hearth_instances::{Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::{AdminAuth, AppState};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Env {
    public: Router,
    admin: Router,
    _dir: tempfile::TempDir,
}

const PASS: &str = "s3cret";

async fn env_with(auth: impl FnOnce(&std::path::Path) -> AdminAuth) -> Env {
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
    let state = AppState::new(store, instances).with_admin_auth(auth(dir.path()));
    Env {
        public: hearth_web::router(state.clone()),
        admin: hearth_web::admin_router(state),
        _dir: dir,
    }
}

async fn env() -> Env {
    env_with(|_| AdminAuth::new(Some(PASS.into()), vec![])).await
}

struct Res {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(router: &Router, method: Method, uri: &str, headers: &[(&str, &str)]) -> Res {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
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

fn basic(pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{pass}"))
    )
}

impl Env {
    async fn admin(&self, method: Method, uri: &str) -> Res {
        call(&self.admin, method, uri, &[("authorization", &basic(PASS))]).await
    }

    async fn host(&self, host: &str, uri: &str, extra: &[(&str, &str)]) -> Res {
        let mut headers = vec![("host", host)];
        headers.extend_from_slice(extra);
        call(&self.public, Method::GET, uri, &headers).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_passphrase_is_required() {
    let e = env().await;
    let none = call(
        &e.admin,
        Method::GET,
        "/instances",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.json(), json!({"error": "missing basic auth"}));
    let wrong = call(
        &e.admin,
        Method::GET,
        "/instances/count",
        &[("authorization", &basic("nope"))],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.json(), json!({"error": "bad passphrase"}));
    let version = call(&e.admin, Method::GET, "/version", &[]).await;
    assert_eq!(
        version.status,
        StatusCode::UNAUTHORIZED,
        "every admin route is guarded"
    );
    assert_eq!(
        e.admin(Method::GET, "/instances/count").await.json(),
        json!({"count": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_passphrase_from_a_hash_file() {
    let e = env_with(|dir| {
        let file = dir.join("hearth-admin-passphrase");
        let hash = hearth_instances::passphrase::hash(PASS, ScryptCost::FAST).unwrap();
        std::fs::write(&file, format!("{hash}\n")).unwrap();
        AdminAuth::new(None, vec![dir.join("missing"), file])
    })
    .await;
    assert_eq!(
        e.admin(Method::GET, "/instances/count").await.status,
        StatusCode::OK
    );
    let wrong = call(
        &e.admin,
        Method::GET,
        "/instances/count",
        &[("authorization", &basic("nope"))],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let nothing = env_with(|_| AdminAuth::new(None, vec![])).await;
    let res = nothing.admin(Method::GET, "/instances/count").await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.body.contains("hearth config passwd"), "{}", res.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_show_list_modify_destroy() {
    let e = env().await;
    let res = e.admin(Method::POST, "/instances?Domain=Alice.localhost:8080&Locale=fr&DomainAliases=alias.localhost&DiskQuota=5000000000&Email=alice@example.net&Apps=drive,photos").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(
        res.headers[header::CONTENT_TYPE],
        "application/vnd.api+json"
    );
    let body = res.json();
    let data = &body["data"];
    assert_eq!(data["type"], "instances");
    assert_eq!(data["attributes"]["domain"], "alice.localhost:8080");
    assert_eq!(data["attributes"]["locale"], "fr");
    assert_eq!(data["attributes"]["disk_quota"], "5000000000");
    assert_eq!(
        data["attributes"]["domain_aliases"],
        json!(["alias.localhost"])
    );
    assert_eq!(data["attributes"]["password_defined"], false);
    assert!(data["attributes"]["register_token"].is_string());
    for secret in [
        "session_secret",
        "oauth_secret",
        "cli_secret",
        "passphrase_hash",
    ] {
        assert!(
            data["attributes"].get(secret).is_none(),
            "{secret} is never shown"
        );
    }
    assert_eq!(
        body["meta"]["apps_not_installed"],
        json!(["drive", "photos"])
    );

    // Conflicts and bad domains.
    for (uri, status) in [
        (
            "/instances?Domain=alice.localhost:8080",
            StatusCode::CONFLICT,
        ),
        ("/instances?Domain=alias.localhost", StatusCode::CONFLICT),
        (
            "/instances?Domain=bob.localhost&DomainAliases=ALIAS.localhost",
            StatusCode::CONFLICT,
        ),
        ("/instances?Domain=a%20b", StatusCode::UNPROCESSABLE_ENTITY),
        ("/instances?Domain=.bad", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/instances?Domain=c.localhost&KdfIterations=10",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let res = e.admin(Method::POST, uri).await;
        assert_eq!(res.status, status, "{uri}: {}", res.body);
        assert_eq!(
            res.json()["errors"][0]["status"],
            status.as_u16().to_string()
        );
    }
    let illegal = e
        .admin(Method::POST, "/instances?Domain=a%20b")
        .await
        .json();
    assert_eq!(
        illegal["errors"][0],
        json!({"status": "422", "title": "Invalid Parameter", "detail": "Domain name contains illegal characters", "source": {"parameter": "domain"}})
    );
    assert_eq!(
        e.admin(Method::GET, "/instances/count").await.json(),
        json!({"count": 1})
    );

    // Show by domain and by alias; unknown is 404.
    assert_eq!(
        e.admin(Method::GET, "/instances/alias.localhost")
            .await
            .json()["data"]["attributes"]["domain"],
        "alice.localhost:8080"
    );
    let unknown = e.admin(Method::GET, "/instances/nobody.localhost").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["errors"][0]["detail"], "Instance not found");
    assert_eq!(
        e.admin(Method::GET, "/instances/alice.localhost:8080/prefix")
            .await
            .json()
            .as_str()
            .map(|p| p.starts_with("cozy")),
        Some(true)
    );

    // Pagination.
    for n in 0..3 {
        assert_eq!(
            e.admin(Method::POST, &format!("/instances?Domain=p{n}.localhost"))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let mut seen = 0;
    let mut uri = "/instances?page[limit]=3".to_owned();
    loop {
        let page = e.admin(Method::GET, &uri).await.json();
        seen += page["data"].as_array().unwrap().len();
        assert_eq!(
            page["meta"]["count"],
            page["data"].as_array().unwrap().len()
        );
        match page["links"]["next"].as_str() {
            Some(next) => uri = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 4);
    assert_eq!(
        e.admin(Method::GET, "/instances").await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Modify: block, then unblock (the reason goes too); bad TOS is 400.
    let blocked = e
        .admin(
            Method::PATCH,
            "/instances/alice.localhost:8080?Blocked=true&BlockingReason=PAYMENT_FAILED",
        )
        .await
        .json();
    assert_eq!(blocked["data"]["attributes"]["blocked"], true);
    assert_eq!(
        blocked["data"]["attributes"]["blocking_reason"],
        "PAYMENT_FAILED"
    );
    assert!(
        blocked["data"]["attributes"].get("cli_secret").is_none(),
        "PATCH does not leak secrets either"
    );
    let unblocked = e
        .admin(
            Method::PATCH,
            "/instances/alice.localhost:8080?Blocked=false",
        )
        .await
        .json();
    assert!(unblocked["data"]["attributes"].get("blocked").is_none());
    assert!(
        unblocked["data"]["attributes"]
            .get("blocking_reason")
            .is_none()
    );
    let quota = e
        .admin(
            Method::PATCH,
            "/instances/alice.localhost:8080?DiskQuota=-1",
        )
        .await
        .json();
    assert!(quota["data"]["attributes"].get("disk_quota").is_none());
    assert_eq!(
        e.admin(
            Method::PATCH,
            "/instances/alice.localhost:8080?TOSSigned=nope"
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        e.admin(Method::PATCH, "/instances/nobody.localhost?Locale=fr")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Destroy: refused while the deleting flag is set, then done, then 404.
    e.admin(
        Method::PATCH,
        "/instances/alice.localhost:8080?Deleting=true",
    )
    .await;
    let refused = e
        .admin(Method::DELETE, "/instances/alice.localhost:8080")
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.json()["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("--deleting=false")
    );
    e.admin(
        Method::PATCH,
        "/instances/alice.localhost:8080?Deleting=false",
    )
    .await;
    assert_eq!(
        e.admin(Method::DELETE, "/instances/alice.localhost:8080")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        e.admin(Method::DELETE, "/instances/alice.localhost:8080")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        e.admin(Method::GET, "/instances/alias.localhost")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        e.admin(Method::DELETE, "/instances/p0.localhost/sessions")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routing_and_blocking() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost&Locale=fr&DomainAliases=a2.localhost&OldDomain=old.localhost").await;
    e.admin(Method::POST, "/instances?Domain=b.localhost").await;

    // Known hosts, aliases, old domains, unknown hosts.
    let ok = e.host("a.localhost", "/data/", &[]).await;
    assert_eq!(
        (ok.status, ok.json()),
        (StatusCode::OK, json!({"message": "welcome to a cozy API"}))
    );
    assert_eq!(
        e.host("A2.Localhost", "/data/", &[]).await.status,
        StatusCode::OK
    );
    let moved = e.host("old.localhost", "/data/?x=1", &[]).await;
    assert_eq!(moved.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        moved.headers[header::LOCATION],
        "http://a.localhost/data/?x=1"
    );
    let unknown = e
        .host(
            "nobody.localhost",
            "/data/",
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "Instance not found"})
        )
    );
    let page = e
        .host(
            "nobody.localhost",
            "/",
            &[("accept", "text/html"), ("accept-language", "fr-FR")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("Instance introuvable"));
    assert_eq!(
        e.host("nobody.localhost", "/", &[("accept", "text/plain")])
            .await
            .body,
        "Instance not found"
    );
    let home = e.host("a.localhost", "/", &[("accept", "text/html")]).await;
    assert!(home.body.contains("pas encore activé"), "{}", home.body);

    // Blocked for payment: 402, a JSON warning for clients, a page in French for browsers.
    e.admin(
        Method::PATCH,
        "/instances/a.localhost?Blocked=true&BlockingReason=PAYMENT_FAILED",
    )
    .await;
    let api = e
        .host("a.localhost", "/data/", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        api.json(),
        json!([{"status": "402", "title": "Blocked", "code": "PAYMENT_FAILED", "detail": "Votre Hearth nécessite un paiement.", "source": {}}])
    );
    let browser = e.host("a.localhost", "/", &[("accept", "text/html")]).await;
    assert_eq!(browser.status, StatusCode::PAYMENT_REQUIRED);
    assert!(browser.body.contains("Votre Hearth est bloqué"));
    // A CLI token of this instance passes; one of another instance does not.
    let token_a = e
        .admin(
            Method::POST,
            "/instances/token?Domain=a.localhost&Audience=cli&Scope=io.cozy.files",
        )
        .await;
    assert_eq!(
        token_a.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let token_b = e
        .admin(
            Method::POST,
            "/instances/token?Domain=b.localhost&Audience=cli",
        )
        .await
        .body;
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        e.host(
            "a.localhost",
            "/data/",
            &[("authorization", &bearer(&token_a.body))]
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        e.host(
            "a.localhost",
            "/data/",
            &[("authorization", &bearer(&token_b))]
        )
        .await
        .status,
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(
        e.admin(
            Method::POST,
            "/instances/token?Domain=a.localhost&Audience=nope"
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        e.admin(
            Method::POST,
            "/instances/token?Domain=zz.localhost&Audience=cli"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Too many logins: the page, even for JSON clients; other reasons: 503.
    e.admin(
        Method::PATCH,
        "/instances/a.localhost?BlockingReason=LOGIN_FAILED",
    )
    .await;
    let login = e
        .host("a.localhost", "/data/", &[("accept", "application/json")])
        .await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(login.body.contains("trop nombreux essais"));
    e.admin(
        Method::PATCH,
        "/instances/a.localhost?BlockingReason=MAINTENANCE",
    )
    .await;
    let custom = e.host("a.localhost", "/data/", &[]).await;
    assert_eq!(custom.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(custom.json()[0]["detail"], "MAINTENANCE");
    e.admin(Method::PATCH, "/instances/a.localhost?Blocked=false")
        .await;
    assert_eq!(
        e.host("a.localhost", "/data/", &[]).await.status,
        StatusCode::OK,
        "unblocked at once"
    );

    // Deleting: pages answer as if the instance did not exist, the API still serves.
    e.admin(Method::PATCH, "/instances/b.localhost?Deleting=true")
        .await;
    assert_eq!(
        e.host("b.localhost", "/", &[("accept", "text/html")])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        e.host("b.localhost", "/data/", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_clients_from_the_admin_api() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    let created = e.admin(Method::POST, "/instances/oauth_client?Domain=a.localhost&RedirectURI=http://localhost/cb&ClientName=Drive&SoftwareID=io.drive&AllowLoginScope=true").await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let client = created.json();
    assert_eq!(client["client_id"].as_str().map(str::len), Some(32));
    assert_eq!(client["client_name"], "Drive");
    assert_eq!(client["redirect_uris"], json!(["http://localhost/cb"]));
    assert!(client["client_secret"].is_string() && client["registration_access_token"].is_string());
    let again = e.admin(Method::POST, "/instances/oauth_client?Domain=a.localhost&RedirectURI=http://localhost/cb&ClientName=Drive&SoftwareID=io.drive2").await.json();
    assert_eq!(again["client_name"], "Drive-2", "a taken name is numbered");
    let found = e
        .admin(
            Method::GET,
            "/instances/oauth_client?domain=a.localhost&software_id=io.drive",
        )
        .await
        .json();
    assert_eq!(found["client_id"], client["client_id"]);
    let bad = e
        .admin(
            Method::POST,
            "/instances/oauth_client?Domain=a.localhost&RedirectURI=nope&ClientName=X&SoftwareID=y",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("nope is invalid"), "{}", bad.body);
    assert_eq!(
        e.admin(
            Method::GET,
            "/instances/oauth_client?domain=a.localhost&software_id=none"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        e.admin(
            Method::GET,
            "/instances/oauth_client?domain=zz.localhost&software_id=io.drive"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

async fn send_json(
    router: &Router,
    method: Method,
    host: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Res {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_client_registration() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    e.admin(Method::POST, "/instances?Domain=b.localhost").await;
    let json_headers = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    let body = r#"{"redirect_uris":["http://localhost:4000/cb"],"client_name":"Notes","software_id":"github.com/example/notes","client_kind":"desktop"}"#;
    let res = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/auth/register",
        &json_headers,
        body,
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let client = res.json();
    for k in ["client_id", "client_secret", "registration_access_token"] {
        assert!(client[k].is_string(), "{k}: {client}");
    }
    assert_eq!(client["client_secret_expires_at"], 0);
    assert_eq!(
        client["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(client["response_types"], json!(["code"]));
    let id = client["client_id"].as_str().unwrap();
    let reg = format!(
        "Bearer {}",
        client["registration_access_token"].as_str().unwrap()
    );
    let path = format!("/auth/register/{id}");

    // Header and metadata checks.
    let bad_ct = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/auth/register",
        &[("accept", "application/json")],
        body,
    )
    .await;
    assert_eq!(
        (bad_ct.status, bad_ct.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_content_type"})
        )
    );
    let bad_accept = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/auth/register",
        &[
            ("content-type", "application/json"),
            ("accept", "text/html"),
        ],
        body,
    )
    .await;
    assert_eq!(bad_accept.json(), json!({"error": "bad_accept_header"}));
    let no_uri = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/auth/register",
        &json_headers,
        r#"{"client_name":"x","software_id":"y"}"#,
    )
    .await;
    assert_eq!(no_uri.json()["error"], "invalid_redirect_uri");
    let garbage = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/auth/register",
        &json_headers,
        "{nope",
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);

    // Read with the registration token; not with another, nor on another instance.
    let read = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        &path,
        &[
            ("authorization", reg.as_str()),
            ("accept", "application/json"),
        ],
        "",
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["client_name"], "Notes");
    let wrong = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        &path,
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.json()),
        (StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"}))
    );
    let elsewhere = send_json(
        &e.public,
        Method::GET,
        "b.localhost",
        &path,
        &[("authorization", reg.as_str())],
        "",
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);

    // Update rotates the secret when the current one is given.
    let secret = client["client_secret"].as_str().unwrap();
    let update = format!(
        r#"{{"redirect_uris":["http://localhost:4000/cb"],"client_name":"Notes 2","software_id":"github.com/example/notes","client_secret":"{secret}"}}"#
    );
    let updated = send_json(
        &e.public,
        Method::PUT,
        "a.localhost",
        &path,
        &[
            ("authorization", reg.as_str()),
            ("content-type", "application/json"),
        ],
        &update,
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.json()["client_name"], "Notes 2");
    assert_ne!(updated.json()["client_secret"], secret);

    // Delete: 204, and again 204.
    for _ in 0..2 {
        let gone = send_json(
            &e.public,
            Method::DELETE,
            "a.localhost",
            &path,
            &[("authorization", reg.as_str())],
            "",
        )
        .await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
    }
    let after = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        &path,
        &[("authorization", reg.as_str())],
        "",
    )
    .await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_and_permissions_self() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    e.admin(Method::POST, "/instances?Domain=b.localhost").await;
    let token = |domain: &'static str, aud: &'static str, scope: &'static str| {
        let e = &e;
        async move {
            let uri = format!(
                "/instances/token?Domain={domain}&Audience={aud}&Scope={scope}&Subject=sub"
            );
            e.admin(Method::POST, &uri).await.body
        }
    };
    let json = ("accept", "application/json");
    let cli_a = token("a.localhost", "cli", "io.cozy.files:GET%20io.cozy.contacts").await;
    let ok = e
        .host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &format!("Bearer {cli_a}"))],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["data"]["attributes"]["type"], "cli");
    assert_eq!(
        ok.json()["data"]["attributes"]["permissions"],
        json!({"rule0": {"type": "io.cozy.files", "verbs": ["GET"]}, "rule1": {"type": "io.cozy.contacts"}})
    );
    // The same token in the query string, and as a Basic password.
    assert_eq!(
        e.host(
            "a.localhost",
            &format!("/permissions/self?bearer_token={cli_a}"),
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{cli_a}"))
    );
    assert_eq!(
        e.host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &basic)]
        )
        .await
        .status,
        StatusCode::OK
    );

    // No token: 401. Client noise is no token.
    let none = e.host("a.localhost", "/permissions/self", &[json]).await;
    assert_eq!(
        (none.status, none.json()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "No token in request"})
        )
    );
    assert_eq!(
        e.host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", "Bearer null")]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // A token of another instance, a tampered one: 400 with WWW-Authenticate.
    let cli_b = token("b.localhost", "cli", "io.cozy.files").await;
    let other = e
        .host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &format!("Bearer {cli_b}")), json],
        )
        .await;
    assert_eq!(
        (other.status, other.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Invalid JWT token"})
        )
    );
    assert_eq!(
        other.headers[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    let tampered = format!("Bearer {}x", cli_a.trim());
    assert_eq!(
        e.host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &tampered)]
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    // Expired (issued with an expiry of 0 seconds).
    let expired = e
        .admin(
            Method::POST,
            "/instances/token?Domain=a.localhost&Audience=cli&Scope=io.cozy.files&Expire=1",
        )
        .await
        .body;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = e
        .host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &format!("Bearer {expired}")), json],
        )
        .await;
    assert_eq!(
        (res.status, res.json()),
        (StatusCode::BAD_REQUEST, json!({"error": "Expired token"}))
    );
    assert!(
        res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("The access token expired")
    );
    // Wrong audience: a refresh token is not an API token.
    let refresh = token("a.localhost", "refresh", "io.cozy.files").await;
    let res = e
        .host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &format!("Bearer {refresh}")), json],
        )
        .await;
    assert_eq!(
        res.json(),
        json!({"error": "Invalid audience for JWT token"})
    );
    // An access token only lives as long as its OAuth client.
    let client = e.admin(Method::POST, "/instances/oauth_client?Domain=a.localhost&RedirectURI=http://localhost/cb&ClientName=C&SoftwareID=s").await.json();
    let id = client["client_id"].as_str().unwrap().to_owned();
    let access = e.admin(Method::POST, &format!("/instances/token?Domain=a.localhost&Audience=access&Scope=io.cozy.notes&Subject={id}")).await.body;
    let res = e
        .host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(res.json()["data"]["attributes"]["type"], "oauth");
    assert_eq!(res.json()["data"]["attributes"]["source_id"], id);
    let orphan = e.admin(Method::POST, "/instances/token?Domain=a.localhost&Audience=access&Scope=io.cozy.notes&Subject=deleted-client").await.body;
    assert_eq!(
        e.host(
            "a.localhost",
            "/permissions/self",
            &[("authorization", &format!("Bearer {orphan}"))]
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_api() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    e.admin(Method::POST, "/instances?Domain=b.localhost").await;
    let t = e.admin(Method::POST, "/instances/token?Domain=a.localhost&Audience=cli&Scope=io.cozy.notes%20io.cozy.files:GET").await.body;
    let t_b = e
        .admin(
            Method::POST,
            "/instances/token?Domain=b.localhost&Audience=cli&Scope=io.cozy.notes",
        )
        .await
        .body;
    let auth = format!("Bearer {t}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let call = |m: Method, uri: &'static str, body: &'static str| {
        let e = &e;
        async move { send_json(&e.public, m, "a.localhost", uri, &h, body).await }
    };

    // Create (201), read (with _type), update (stale rev 409), delete (needs rev).
    let created = call(
        Method::POST,
        "/data/io.cozy.notes/",
        r#"{"title":"hello","n":1}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let c = created.json();
    assert_eq!(c["ok"], true);
    assert_eq!(c["type"], "io.cozy.notes");
    assert_eq!(c["data"]["title"], "hello");
    let id = c["id"].as_str().unwrap().to_owned();
    let rev1 = c["rev"].as_str().unwrap().to_owned();
    let path = format!("/data/io.cozy.notes/{id}");
    let got = send_json(&e.public, Method::GET, "a.localhost", &path, &h, "").await;
    assert_eq!(got.json()["_type"], "io.cozy.notes");
    assert_eq!(got.json()["_rev"], rev1);
    let update = format!(r#"{{"_id":"{id}","_rev":"{rev1}","title":"v2"}}"#);
    let updated = send_json(&e.public, Method::PUT, "a.localhost", &path, &h, &update).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let stale = send_json(&e.public, Method::PUT, "a.localhost", &path, &h, &update).await;
    assert_eq!(
        (
            stale.status,
            stale.json()["error"].clone(),
            stale.json()["reason"].clone()
        ),
        (
            StatusCode::CONFLICT,
            json!("conflict"),
            json!("Document update conflict.")
        )
    );
    let fixed = call(
        Method::PUT,
        "/data/io.cozy.notes/my-note",
        r#"{"title":"fixed id"}"#,
    )
    .await;
    assert_eq!(
        fixed.status,
        StatusCode::OK,
        "creating with a fixed id answers 200"
    );
    assert_eq!(
        call(
            Method::PUT,
            "/data/io.cozy.notes/my-note",
            r#"{"title":"again"}"#
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        call(Method::POST, "/data/io.cozy.notes/", r#"{"_id":"x"}"#)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(Method::POST, "/data/io.cozy.notes/", "{not json")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let no_rev = send_json(&e.public, Method::DELETE, "a.localhost", &path, &h, "").await;
    assert_eq!(
        (no_rev.status, no_rev.json()["reason"].clone()),
        (StatusCode::BAD_REQUEST, json!("delete without revision"))
    );
    let rev2 = updated.json()["rev"].as_str().unwrap().to_owned();
    let del = send_json(
        &e.public,
        Method::DELETE,
        "a.localhost",
        &format!("{path}?rev={rev2}"),
        &h,
        "",
    )
    .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(del.json()["deleted"], true);
    let gone = send_json(&e.public, Method::GET, "a.localhost", &path, &h, "").await;
    assert_eq!(
        (
            gone.status,
            gone.json()["error"].clone(),
            gone.json()["reason"].clone()
        ),
        (StatusCode::NOT_FOUND, json!("not_found"), json!("deleted"))
    );

    // Bulk, _all_docs, _normal_docs, _find with an index, _changes.
    let bulk = call(
        Method::POST,
        "/data/io.cozy.notes/_bulk_docs",
        r#"{"docs":[{"_id":"b1","n":3},{"_id":"b2","n":2},{"_id":"my-note"}]}"#,
    )
    .await;
    assert_eq!(bulk.status, StatusCode::CREATED);
    assert_eq!(bulk.json()[2]["error"], "conflict");
    let all = call(
        Method::GET,
        "/data/io.cozy.notes/_all_docs?include_docs=true",
        "",
    )
    .await
    .json();
    assert_eq!(all["total_rows"], 3);
    assert_eq!(all["rows"][0]["id"], "b1");
    assert_eq!(all["rows"][0]["doc"]["n"], 3);
    let keyed = call(
        Method::POST,
        "/data/io.cozy.notes/_all_docs",
        r#"{"keys":["b2","nope"]}"#,
    )
    .await
    .json();
    assert_eq!(
        keyed["rows"][1],
        json!({"key": "nope", "error": "not_found"})
    );
    let normal = call(Method::GET, "/data/io.cozy.notes/_normal_docs?limit=2", "")
        .await
        .json();
    assert_eq!(normal["rows"].as_array().unwrap().len(), 2);
    assert_eq!(normal["total_rows"], 3);
    let index = call(
        Method::POST,
        "/data/io.cozy.notes/_index",
        r#"{"index":{"fields":["n"]}}"#,
    )
    .await
    .json();
    assert_eq!(
        index,
        json!({"result": "created", "id": "_design/by_n", "name": "by_n"})
    );
    assert_eq!(
        call(
            Method::POST,
            "/data/io.cozy.notes/_index",
            r#"{"index":{"fields":["n"]}}"#
        )
        .await
        .json()["result"],
        "exists"
    );
    let found = call(
        Method::POST,
        "/data/io.cozy.notes/_find",
        r#"{"selector":{"n":{"$gt":0}},"sort":["n"],"limit":1}"#,
    )
    .await
    .json();
    assert_eq!(found["docs"][0]["_id"], "b2");
    assert_eq!(
        (found["limit"].clone(), found["next"].clone()),
        (json!(1), json!(true))
    );
    assert!(found["bookmark"].as_str().is_some_and(|b| !b.is_empty()));
    assert_eq!(
        call(
            Method::POST,
            "/data/io.cozy.notes/_find",
            r#"{"selector":{"n":{"$bogus":1}}}"#
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    let feed = call(
        Method::GET,
        "/data/io.cozy.notes/_changes?include_docs=true",
        "",
    )
    .await
    .json();
    let ids: Vec<&str> = feed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["my-note", id.as_str(), "b1", "b2"],
        "in sequence order, once each"
    );
    assert_eq!(feed["results"][1]["deleted"], true);
    assert!(feed["last_seq"].is_string());
    assert_eq!(
        call(
            Method::GET,
            "/data/io.cozy.notes/_changes?style=x&bogus=1",
            ""
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );

    // Permissions, reserved doctypes, isolation.
    let files = call(Method::POST, "/data/io.cozy.files/", r#"{}"#).await;
    assert_eq!(
        files.status,
        StatusCode::FORBIDDEN,
        "io.cozy.files is written through /files only"
    );
    assert_eq!(
        call(Method::GET, "/data/io.cozy.contacts/_all_docs", "")
            .await
            .status,
        StatusCode::FORBIDDEN,
        "not in the token's scope"
    );
    assert_eq!(
        call(Method::GET, "/data/io.cozy.oauth.clients/_all_docs", "")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(Method::GET, "/data/Bad..Doctype/_all_docs", "")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let other = send_json(
        &e.public,
        Method::GET,
        "b.localhost",
        "/data/io.cozy.notes/b1",
        &[("authorization", &format!("Bearer {t_b}"))],
        "",
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "B does not see A's documents"
    );
    let a_token_on_b = send_json(
        &e.public,
        Method::GET,
        "b.localhost",
        "/data/io.cozy.notes/b1",
        &h,
        "",
    )
    .await;
    assert_eq!(a_token_on_b.status, StatusCode::BAD_REQUEST);
    let no_token = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/data/io.cozy.notes/b1",
        &[],
        "",
    )
    .await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_errors() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (body, error) in [
        ("", "the grant_type parameter is mandatory"),
        (
            "grant_type=authorization_code",
            "the client_id parameter is mandatory",
        ),
        (
            "grant_type=authorization_code&client_id=x",
            "the client_secret parameter is mandatory",
        ),
        (
            "grant_type=authorization_code&client_id=x&client_secret=y",
            "the code parameter is mandatory",
        ),
        (
            "grant_type=authorization_code&client_id=x&client_secret=y&code=z",
            "the client must be registered",
        ),
        (
            "grant_type=password&client_id=x&client_secret=y",
            "invalid grant type",
        ),
    ] {
        let res = send_json(
            &e.public,
            Method::POST,
            "a.localhost",
            "/auth/access_token",
            &form,
            body,
        )
        .await;
        assert_eq!(
            (res.status, res.json()),
            (StatusCode::BAD_REQUEST, json!({"error": error})),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_on_the_admin_api() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    e.host("a.localhost", "/data/", &[]).await;
    e.host("nobody.localhost", "/data/", &[]).await;
    let m = e.admin(Method::GET, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        m.body
            .contains("hearth_http_requests_total{status=\"2xx\"} 1"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("hearth_http_requests_total{status=\"4xx\"} 1"),
        "{}",
        m.body
    );
    assert!(m.body.contains("hearth_instances 1"), "{}", m.body);
    assert!(m.body.contains("process_resident_memory_bytes "));
    assert_eq!(
        call(&e.admin, Method::GET, "/metrics", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_by_link_permissions() {
    let e = env().await;
    e.admin(Method::POST, "/instances?Domain=a.localhost").await;
    let t = e
        .admin(
            Method::POST,
            "/instances/token?Domain=a.localhost&Audience=cli&Scope=io.cozy.todos",
        )
        .await
        .body;
    let owner = format!("Bearer {t}");
    let json_h = [
        ("authorization", owner.as_str()),
        ("content-type", "application/json"),
    ];
    let doc = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/data/io.cozy.todos/",
        &json_h,
        r#"{"label":"shared"}"#,
    )
    .await
    .json();
    let id = doc["id"].as_str().unwrap().to_owned();
    send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/data/io.cozy.todos/",
        &json_h,
        r#"{"label":"private"}"#,
    )
    .await;
    let other = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/data/io.cozy.todos/_all_docs",
        &json_h,
        "",
    )
    .await
    .json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .find(|x| *x != id)
        .unwrap();

    let body = format!(
        r#"{{"data":{{"type":"io.cozy.permissions","attributes":{{"permissions":{{"todo":{{"type":"io.cozy.todos","verbs":["GET"],"values":["{id}"]}}}}}}}}}}"#
    );
    let created = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/permissions?codes=bob,carol",
        &json_h,
        &body,
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let perm = created.json();
    assert_eq!(perm["data"]["attributes"]["type"], "share");
    let code = perm["data"]["attributes"]["codes"]["bob"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(perm["data"]["attributes"]["codes"]["carol"].is_string());
    let bob = format!("Bearer {code}");
    let bob_h = [("authorization", bob.as_str())];
    assert_eq!(
        send_json(
            &e.public,
            Method::GET,
            "a.localhost",
            &format!("/data/io.cozy.todos/{id}"),
            &bob_h,
            ""
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send_json(
            &e.public,
            Method::GET,
            "a.localhost",
            &format!("/data/io.cozy.todos/{other}"),
            &bob_h,
            ""
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send_json(
            &e.public,
            Method::GET,
            "a.localhost",
            "/data/io.cozy.todos/_all_docs",
            &bob_h,
            ""
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let me = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/permissions/self",
        &bob_h,
        "",
    )
    .await
    .json();
    assert_eq!(me["data"]["attributes"]["type"], "share");

    // Larger than the creator's, created by a share token, without a token, expired.
    let larger = r#"{"data":{"type":"io.cozy.permissions","attributes":{"permissions":{"x":{"type":"io.cozy.contacts"}}}}}"#;
    let res = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/permissions?codes=x",
        &json_h,
        larger,
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        res.json()["errors"][0]["detail"],
        "Attempt to create a larger permission set"
    );
    assert_eq!(
        send_json(
            &e.public,
            Method::POST,
            "a.localhost",
            "/permissions?codes=x",
            &[("authorization", bob.as_str())],
            &body
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send_json(
            &e.public,
            Method::POST,
            "a.localhost",
            "/permissions?codes=x",
            &[],
            &body
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let short = send_json(
        &e.public,
        Method::POST,
        "a.localhost",
        "/permissions?codes=x&ttl=1s",
        &json_h,
        &body,
    )
    .await
    .json();
    let expired = format!(
        "Bearer {}",
        short["data"]["attributes"]["codes"]["x"].as_str().unwrap()
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        send_json(
            &e.public,
            Method::GET,
            "a.localhost",
            &format!("/data/io.cozy.todos/{id}"),
            &[("authorization", expired.as_str())],
            ""
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_answers_ndjson() {
    let e = env().await;
    let created = e
        .admin(Method::POST, "/instances?Domain=fsck.localhost")
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let clean = e.admin(Method::GET, "/instances/fsck.localhost/fsck").await;
    assert_eq!(clean.status, StatusCode::OK, "{}", clean.body);
    assert_eq!(clean.headers[header::CONTENT_TYPE], "application/x-ndjson");
    assert_eq!(clean.body, "", "nothing to report on a new instance");

    // Content no document describes: one problem, one line. The original's flags are
    // accepted.
    std::fs::write(
        e._dir.path().join("files/fsck.localhost/stray.txt"),
        b"stray",
    )
    .unwrap();
    let found = e
        .admin(
            Method::GET,
            "/instances/fsck.localhost/fsck?FilesConsistency=true&FailFast=false",
        )
        .await;
    assert_eq!(found.status, StatusCode::OK);
    let lines: Vec<Value> = found
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", found.body);
    assert_eq!(lines[0]["type"], "orphan_file");
    assert!(found.body.ends_with('\n'));

    let unknown = e
        .admin(Method::GET, "/instances/nobody.localhost/fsck")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_routes() {
    let e = env().await;
    e.admin(
        Method::POST,
        "/instances?Domain=a.localhost&Locale=fr&Email=alice@example.net&PublicName=Alice",
    )
    .await;
    let t = e
        .admin(
            Method::POST,
            "/instances/token?Domain=a.localhost&Audience=cli&Scope=io.cozy.settings",
        )
        .await
        .body;
    let weak = e
        .admin(
            Method::POST,
            "/instances/token?Domain=a.localhost&Audience=cli&Scope=io.cozy.files",
        )
        .await
        .body;
    let auth = format!("Bearer {t}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];

    let caps = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/settings/capabilities",
        &h,
        "",
    )
    .await;
    assert_eq!(caps.status, StatusCode::OK);
    assert_eq!(caps.json()["data"]["attributes"]["file_versioning"], true);
    let inst = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/settings/instance",
        &h,
        "",
    )
    .await
    .json();
    let attrs = &inst["data"]["attributes"];
    assert_eq!(
        (
            attrs["email"].clone(),
            attrs["public_name"].clone(),
            attrs["locale"].clone()
        ),
        (json!("alice@example.net"), json!("Alice"), json!("fr"))
    );
    assert_eq!(attrs["auth_mode"], "basic");
    let rev = inst["data"]["meta"]["rev"].as_str().unwrap().to_owned();

    // PUT with the current revision; a stale one is 409.
    let body = format!(
        r#"{{"data":{{"type":"io.cozy.settings","id":"io.cozy.settings.instance","meta":{{"rev":"{rev}"}},"attributes":{{"email":"alice@example.net","public_name":"Alice B.","locale":"en"}}}}}}"#
    );
    let put = send_json(
        &e.public,
        Method::PUT,
        "a.localhost",
        "/settings/instance",
        &h,
        &body,
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.json()["data"]["attributes"]["public_name"], "Alice B.");
    assert_eq!(
        send_json(
            &e.public,
            Method::PUT,
            "a.localhost",
            "/settings/instance",
            &h,
            &body
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let weak_h = [("authorization", format!("Bearer {weak}"))];
    let weak_h: Vec<(&str, &str)> = weak_h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        send_json(
            &e.public,
            Method::PUT,
            "a.localhost",
            "/settings/instance",
            &weak_h,
            &body
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    // The passphrase parameters, and the settings served even when blocked.
    let params = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/settings/passphrase",
        &h,
        "",
    )
    .await
    .json();
    assert_eq!(params["data"]["attributes"]["salt"], "me@a.localhost");
    assert_eq!(params["data"]["attributes"]["kdf"], 0);
    assert!(params["data"]["attributes"]["iterations"].as_u64().unwrap() >= 50_000);
    e.admin(
        Method::PATCH,
        "/instances/a.localhost?Blocked=true&BlockingReason=PAYMENT_FAILED",
    )
    .await;
    let blocked = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/settings/capabilities",
        &weak_h,
        "",
    )
    .await;
    assert_eq!(
        blocked.status,
        StatusCode::OK,
        "settings are not blocked: {}",
        blocked.body
    );
    let usage = send_json(
        &e.public,
        Method::GET,
        "a.localhost",
        "/settings/disk-usage",
        &h,
        "",
    )
    .await;
    assert_eq!(
        usage.status,
        StatusCode::OK,
        "disk usage is a setting too: {}",
        usage.body
    );
    assert_eq!(
        send_json(&e.public, Method::GET, "a.localhost", "/data/", &[], "")
            .await
            .status,
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(
        send_json(
            &e.public,
            Method::GET,
            "a.localhost",
            "/settings/context",
            &h,
            ""
        )
        .await
        .json()["data"]["attributes"]["name"],
        "default"
    );
}
