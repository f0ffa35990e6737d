//! The realtime websocket (spec core-api B.13) on a real loopback socket: AUTH,
//! SUBSCRIBE, events from the data and files APIs, errors, the frame limit and the
//! isolation of instances.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode},
};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hearth_instances::{Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::{AdminAuth, AppState};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt;

const PASS: &str = "s3cret";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Env {
    public: Router,
    admin: Router,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
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
    let state =
        AppState::new(store, instances).with_admin_auth(AdminAuth::new(Some(PASS.into()), vec![]));
    let public = hearth_web::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(hearth_web::serve(listener, public.clone(), async {
        let _ = rx.await;
    }));
    Env {
        public,
        admin: hearth_web::admin_router(state),
        addr,
        _shutdown: tx,
        _dir: dir,
    }
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

impl Env {
    async fn admin(&self, uri: &str) -> (StatusCode, Value) {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{PASS}"))
        );
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        call(&self.admin, req).await
    }

    /// Creates an instance and returns a CLI token for todos and files.
    async fn instance(&self, domain: &str) -> String {
        let (status, body) = self.admin(&format!("/instances?Domain={domain}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, token) = self
            .admin(&format!(
                "/instances/token?Domain={domain}&Audience=cli&Scope=io.cozy.todos%20io.cozy.files"
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        token.as_str().unwrap().to_owned()
    }

    async fn api(
        &self,
        host: &str,
        token: &str,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        call(&self.public, req.body(body.into()).unwrap()).await
    }

    async fn data(&self, host: &str, token: &str, method: Method, uri: &str, body: Value) -> Value {
        let (status, res) = self
            .api(
                host,
                token,
                method,
                uri,
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert!(status.is_success(), "{status} {res}");
        res
    }

    /// Opens `/realtime/` for `host`, checking the subprotocol is echoed.
    async fn connect(&self, host: &str, path: &str) -> Ws {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("host", host.parse().unwrap());
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "io.cozy.websocket".parse().unwrap(),
        );
        let (ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(res.headers()["sec-websocket-protocol"], "io.cozy.websocket");
        ws
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next frame that is not a ping or pong (5 s at most).
async fn next(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
            return msg;
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Commands are handled in order and none is acknowledged: an unknown method's error
/// frame proves the ones before it were applied.
async fn barrier(ws: &mut Ws) {
    send(ws, json!({"method": "SYNC"})).await;
    let err = next_json(ws).await;
    assert_eq!(err["event"], "error", "{err}");
    assert_eq!(err["payload"]["status"], "405 Method Not Allowed");
}

async fn expect_closed(ws: &mut Ws) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("closed within 5 s")
        {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_files_events() {
    let e = env().await;
    let token = e.instance("a.localhost").await;
    let mut ws = e.connect("a.localhost", "/realtime/").await;
    // Method names are case-insensitive.
    send(&mut ws, json!({"method": "auth", "payload": token})).await;
    send(
        &mut ws,
        json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.todos"}}),
    )
    .await;
    send(
        &mut ws,
        json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.files"}}),
    )
    .await;
    barrier(&mut ws).await;

    // Create, update, delete through /data.
    let created = e
        .data(
            "a.localhost",
            &token,
            Method::POST,
            "/data/io.cozy.todos/",
            json!({"title": "write tests"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event"], "CREATED", "{ev}");
    assert_eq!(ev["payload"]["type"], "io.cozy.todos");
    assert_eq!(ev["payload"]["id"], id.as_str());
    assert_eq!(ev["payload"]["doc"]["_id"], id.as_str());
    assert_eq!(ev["payload"]["doc"]["_rev"], created["rev"]);
    assert_eq!(ev["payload"]["doc"]["title"], "write tests");
    assert!(ev["payload"]["doc"].get("_type").is_none());

    let updated = e
        .data(
            "a.localhost",
            &token,
            Method::PUT,
            &format!("/data/io.cozy.todos/{id}"),
            json!({"_id": id, "_rev": created["rev"], "title": "done", "done": true}),
        )
        .await;
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event"], "UPDATED", "{ev}");
    assert_eq!(ev["payload"]["doc"]["_rev"], updated["rev"]);
    assert_eq!(ev["payload"]["doc"]["done"], true);

    let rev = updated["rev"].as_str().unwrap();
    let deleted = e
        .data(
            "a.localhost",
            &token,
            Method::DELETE,
            &format!("/data/io.cozy.todos/{id}?rev={rev}"),
            json!({}),
        )
        .await;
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event"], "DELETED", "{ev}");
    assert_eq!(ev["payload"]["id"], id.as_str());
    assert_eq!(ev["payload"]["doc"]["_rev"], deleted["rev"]);
    // The last body, with the tombstone's revision.
    assert_eq!(ev["payload"]["doc"]["title"], "done");

    // An upload through /files: an io.cozy.files event with the stored document.
    let content = b"Hello world!";
    let (status, file) = e
        .api(
            "a.localhost",
            &token,
            Method::POST,
            "/files/?Type=file&Name=hello.txt",
            &[
                ("content-type", "text/plain"),
                ("content-length", &content.len().to_string()),
            ],
            content.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let file_id = file["data"]["id"].as_str().unwrap();
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event"], "CREATED", "{ev}");
    assert_eq!(ev["payload"]["type"], "io.cozy.files");
    assert_eq!(ev["payload"]["id"], file_id);
    assert_eq!(ev["payload"]["doc"]["_id"], file_id);
    assert_eq!(ev["payload"]["doc"]["name"], "hello.txt");
    assert!(ev["payload"]["doc"].get("attributes").is_none(), "{ev}");

    // UNSUBSCRIBE stops the todos; a single-document subscription filters by id.
    send(
        &mut ws,
        json!({"method": "UNSUBSCRIBE", "payload": {"type": "io.cozy.todos"}}),
    )
    .await;
    send(
        &mut ws,
        json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.todos", "id": "watched"}}),
    )
    .await;
    barrier(&mut ws).await;
    for id in ["other", "watched"] {
        e.data(
            "a.localhost",
            &token,
            Method::PUT,
            &format!("/data/io.cozy.todos/{id}"),
            json!({"n": 1}),
        )
        .await;
    }
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["event"].as_str(), ev["payload"]["id"].as_str()),
        (Some("CREATED"), Some("watched")),
        "{ev}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_isolated() {
    let e = env().await;
    let token_a = e.instance("a.localhost").await;
    let token_b = e.instance("b.localhost").await;

    // A token of another instance is refused, and the session ends.
    let mut ws = e.connect("a.localhost", "/realtime").await;
    let auth = json!({"method": "AUTH", "payload": token_b});
    send(&mut ws, auth.clone()).await;
    let err = next_json(&mut ws).await;
    assert_eq!(
        err,
        json!({"event": "error", "payload": {
            "status": "401 Unauthorized",
            "code": "unauthorized",
            "title": "The authentication has failed",
            "source": auth,
        }})
    );
    expect_closed(&mut ws).await;

    // Anything but AUTH first: an error, then the end.
    let mut ws = e.connect("a.localhost", "/realtime/").await;
    send(
        &mut ws,
        json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.todos"}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["payload"]["status"],
        "405 Method Not Allowed"
    );
    expect_closed(&mut ws).await;

    // B's events never reach A's socket: the first event A sees is its own.
    let mut ws = e.connect("a.localhost", "/realtime/").await;
    send(&mut ws, json!({"method": "AUTH", "payload": token_a})).await;
    send(
        &mut ws,
        json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.todos"}}),
    )
    .await;
    barrier(&mut ws).await;
    e.data(
        "b.localhost",
        &token_b,
        Method::PUT,
        "/data/io.cozy.todos/from-b",
        json!({"who": "b"}),
    )
    .await;
    e.data(
        "a.localhost",
        &token_a,
        Method::PUT,
        "/data/io.cozy.todos/from-a",
        json!({"who": "a"}),
    )
    .await;
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["payload"]["id"], "from-a", "{ev}");
    assert_eq!(ev["payload"]["doc"]["who"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_frame_limit() {
    let e = env().await;
    let token = e.instance("a.localhost").await;
    let mut ws = e.connect("a.localhost", "/realtime/").await;
    send(&mut ws, json!({"method": "AUTH", "payload": token})).await;

    // Outside the token's scope: 403, and the session goes on.
    let sub = json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.contacts"}});
    send(&mut ws, sub.clone()).await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["event"], "error");
    assert_eq!(err["payload"]["status"], "403 Forbidden");
    assert_eq!(err["payload"]["code"], "forbidden");
    assert_eq!(err["payload"]["source"], sub);
    assert!(err["payload"]["title"].is_string());
    // A missing type: 404.
    send(&mut ws, json!({"method": "SUBSCRIBE", "payload": {}})).await;
    assert_eq!(
        next_json(&mut ws).await["payload"]["status"],
        "404 Page Not Found"
    );
    barrier(&mut ws).await;

    // A frame over 1 KiB closes the connection with "message too big".
    let big = json!({"method": "SUBSCRIBE", "payload": {"type": "x".repeat(1100)}});
    send(&mut ws, big).await;
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a close frame, got {other:?}"),
    }
}
