//! What the web integration tests share: a server over a real SQLite store and
//! real files in a temporary directory, requests through the whole router, and
//! test data (a real PNG). Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode},
};
use base64::Engine;
use hearth_core::{Doctype, JsonMap};
use hearth_instances::{Instances, InstancesConfig, ScryptCost};
use hearth_store::{AllDocsQuery, DocStore, GetOptions};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::{AdminAuth, AppState};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const PASS: &str = "s3cret";

/// A server's state and routers, and the directory holding its data.
pub struct Env {
    pub public: Router,
    pub admin: Router,
    pub state: AppState,
    /// The public server, also served on this loopback address (websockets).
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A server whose state is built by `configure` (jobs settings, mailer…), with its
/// background jobs started.
pub async fn started_env(configure: impl FnOnce(AppState) -> AppState) -> Env {
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
    let state = configure(
        AppState::new(store, instances).with_admin_auth(AdminAuth::new(Some(PASS.into()), vec![])),
    );
    state.start().await.unwrap();
    let public = hearth_web::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hearth_web::serve(listener, public.clone(), async {
        let _ = rx.await;
    }));
    Env {
        public,
        admin: hearth_web::admin_router(state.clone()),
        state,
        addr,
        dir,
        _shutdown: tx,
    }
}

/// A response, read whole.
pub struct Res {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of a cookie this answer sets, for the next request.
    pub fn cookie(&self, name: &str) -> String {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", self.headers))
            .to_owned()
    }
}

pub async fn send(router: &Router, req: Request<Body>) -> Res {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Res {
        status,
        headers,
        body,
    }
}

impl Env {
    /// A request to the admin API with the passphrase.
    pub async fn admin(&self, method: Method, uri: &str, body: impl Into<Body>) -> Res {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{PASS}"))
        );
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", auth)
            .body(body.into())
            .unwrap();
        send(&self.admin, req).await
    }

    /// Creates an instance (extra query parameters such as `&Locale=fr&Email=…`).
    pub async fn create_instance(&self, domain: &str, params: &str) {
        let res = self
            .admin(
                Method::POST,
                &format!("/instances?Domain={domain}{params}"),
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    }

    /// Logs in to the instance at `host` as a browser does: the login page, then its
    /// form with the password hashed as the page's script would and the page's CSRF
    /// token (create the instance with `&Passphrase=…&KdfIterations=50000`). Returns
    /// the answer (303 to `redirect`, or home) and its `cozysessid=…` cookie.
    pub async fn login(&self, host: &str, password: &str, redirect: Option<&str>) -> (Res, String) {
        let html = [("accept", "text/html")];
        let page = self
            .call(host, None, Method::GET, "/auth/login", &html, Body::empty())
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let body = page.text();
        let attr = |marker: &str| {
            let start = body
                .find(marker)
                .unwrap_or_else(|| panic!("no {marker} in {body}"))
                + marker.len();
            body[start..start + body[start..].find('"').unwrap()].to_owned()
        };
        let iterations: u32 = attr("data-iterations=\"").parse().unwrap();
        let csrf_token = attr("name=\"csrf_token\" value=\"");
        let salt = format!("me@{}", host.split(':').next().unwrap());
        let hash = hearth_instances::passphrase::client_hash(password, &salt, iterations);
        let mut fields = vec![
            ("passphrase", hash.as_str()),
            ("csrf_token", csrf_token.as_str()),
        ];
        if let Some(r) = redirect {
            fields.push(("redirect", r));
        }
        let form = serde_urlencoded::to_string(&fields).unwrap();
        let csrf_cookie = page.cookie("_csrf");
        let res = self
            .call(
                host,
                None,
                Method::POST,
                "/auth/login",
                &[
                    ("accept", "text/html"),
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", &csrf_cookie),
                ],
                form,
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let session = res.cookie("cozysessid");
        (res, session)
    }

    /// A CLI token of an instance for these space-separated scopes.
    pub async fn token(&self, domain: &str, scopes: &str) -> String {
        let res = self
            .admin(
                Method::POST,
                &format!(
                    "/instances/token?Domain={domain}&Audience=cli&Scope={}",
                    scopes.replace(' ', "%20")
                ),
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.text().trim().to_owned()
    }

    /// A request to the public server as `host`, with a bearer token if any.
    pub async fn call(
        &self,
        host: &str,
        token: Option<&str>,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Res {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            req = req.header("accept", "application/vnd.api+json");
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(&self.public, req.body(body.into()).unwrap()).await
    }
}

pub fn dt(s: &str) -> Doctype {
    Doctype::new(s).unwrap()
}

/// The instance settings document of `domain` (empty when absent).
pub async fn settings(e: &Env, domain: &str) -> JsonMap {
    let inst = e.state.instances.get_str(domain).await.unwrap();
    e.state
        .store
        .get(
            &inst.instance_id(),
            &dt("io.cozy.settings"),
            "io.cozy.settings.instance",
            GetOptions::default(),
        )
        .await
        .unwrap_or_default()
}

/// Every live document of a doctype (design documents left out), by id.
pub async fn docs(e: &Env, domain: &str, doctype: &str) -> BTreeMap<String, JsonMap> {
    let inst = e.state.instances.get_str(domain).await.unwrap();
    let q = AllDocsQuery {
        include_docs: true,
        ..Default::default()
    };
    let rows = match e
        .state
        .store
        .all_docs(&inst.instance_id(), &dt(doctype), &q)
        .await
    {
        Ok(r) => r.rows,
        Err(_) => Vec::new(),
    };
    rows.into_iter()
        .filter(|r| !r.id.starts_with("_design/"))
        .filter_map(|r| r.doc)
        .map(|d| (d["_id"].as_str().unwrap().to_owned(), d))
        .collect()
}

/// Polls `check` every 50 ms until it gives a value, or panics after `secs` seconds
/// saying `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real PNG of `w`×`h` (an RGB gradient), written by hand: zlib with stored blocks.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend([(x % 256) as u8, (y % 256) as u8, 128]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        z.extend(len.to_le_bytes());
        z.extend((!len).to_le_bytes());
        z.extend(*block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}
