//! Black-box tests of the public router over real TCP: system routes, request ids,
//! error bodies, the body limit and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::mango::{FindQuery, IndexDef};
use hearth_store::{
    AllDocs, AllDocsQuery, BulkResult, Changes, ChangesQuery, DocStore, FindResult, GetOptions,
    IndexCreated, StoreError, StoreResult, Written,
};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::AppState;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// The application state over `store`, with an instances service that has not touched it.
fn state_for(store: Arc<dyn hearth_store::DocStore>) -> AppState {
    let config = hearth_instances::InstancesConfig {
        fs_root: std::env::temp_dir().join("hearth-web-tests-files"),
        scrypt: hearth_instances::ScryptCost::FAST,
    };
    let instances = hearth_instances::Instances::new(store.clone(), config);
    AppState::new(store, Arc::new(instances))
}

struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts the real router over a SQLite store in a fresh directory.
    async fn sqlite(tweak: impl FnOnce(AppState) -> AppState) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("db"), SqliteOptions::default())
            .expect("open sqlite store");
        let state = tweak(state_for(Arc::new(store)));
        let mut server = Self::start(hearth_web::router(state)).await;
        server._dir = Some(dir);
        server
    }

    async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hearth_web::serve(listener, router, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            task,
            _dir: None,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, Vec::new()).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        send(self.addr, method, path, headers, body).await
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let res = client().request(req).await.expect("response");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

#[tokio::test]
async fn version() {
    let server = TestServer::sqlite(|s| s).await;
    let res = server.get("/version", &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), "application/json");
    let body = res.json();
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["version", "build_mode", "build_time", "runtime_version"]
    );
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let mode = if cfg!(debug_assertions) {
        "development"
    } else {
        "production"
    };
    assert_eq!(body["build_mode"], mode);
    assert!(
        body["runtime_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("rustc "))
    );
}

#[tokio::test]
async fn status_healthy() {
    let server = TestServer::sqlite(|s| s).await;
    let res = server.get("/status", &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.json(),
        json!({"cache": "healthy", "couchdb": "healthy", "fs": "healthy", "status": "OK", "message": "OK"})
    );
}

#[tokio::test]
async fn status_with_a_broken_store() {
    let server = TestServer::start(hearth_web::router(state_for(Arc::new(BrokenStore)))).await;
    let res = server.get("/status", &[]).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.json(),
        json!({"cache": "healthy", "couchdb": "unhealthy", "fs": "healthy", "status": "KO", "message": "KO"})
    );
    assert!(
        !res.text().contains("disk"),
        "internal details must not leak"
    );
}

#[tokio::test]
async fn request_ids() {
    let server = TestServer::sqlite(|s| s).await;

    let generated = server.get("/version", &[]).await;
    let id = generated.header("x-request-id");
    assert_eq!(id.len(), 36, "a UUID is generated: {id:?}");

    let reused = server
        .get("/version", &[("x-request-id", "client-chosen.id_1")])
        .await;
    assert_eq!(reused.header("x-request-id"), "client-chosen.id_1");

    let replaced = server
        .get("/nowhere", &[("x-request-id", "not valid!")])
        .await;
    assert_eq!(replaced.status, StatusCode::NOT_FOUND);
    let id = replaced.header("x-request-id");
    assert!(
        id.len() == 36 && id != "not valid!",
        "invalid ids are replaced: {id:?}"
    );
}

#[tokio::test]
async fn unknown_routes() {
    let server = TestServer::sqlite(|s| s).await;

    let res = server
        .get("/nowhere", &[("accept", "application/json")])
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("content-type"), "application/json");
    assert_eq!(res.json(), json!({"error": "Not Found"}));

    let res = server.get("/nowhere", &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(res.text(), "Not Found");

    let res = server
        .get("/nowhere", &[("accept", "text/html,*/*;q=0.8")])
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.text().contains("<h1>Not Found</h1>"), "{}", res.text());

    let res = server
        .send(
            Method::HEAD,
            "/nowhere",
            &[("accept", "application/json")],
            vec![],
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.is_empty());
}

#[tokio::test]
async fn wrong_method() {
    let server = TestServer::sqlite(|s| s).await;
    let res = server
        .send(
            Method::DELETE,
            "/version",
            &[(ACCEPT.as_str(), "application/json")],
            vec![],
        )
        .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.header(ALLOW.as_str()), "GET,HEAD");
    assert_eq!(res.json(), json!({"error": "Method Not Allowed"}));
}

#[tokio::test]
async fn body_limit() {
    let server = TestServer::sqlite(|s| s.with_body_limit(1024)).await;
    let res = server
        .send(Method::POST, "/status", &[], vec![b'x'; 4096])
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.header(CONTENT_TYPE.as_str()),
        "application/vnd.api+json"
    );
    assert_eq!(
        res.json(),
        json!({"errors": [{
            "status": "413",
            "title": "Request Entity Too Large",
            "detail": "The request body is larger than the limit of 1024 bytes.",
            "source": {},
        }]})
    );
    assert_eq!(res.header("x-request-id").len(), 36);

    // Under the limit the request goes on to routing (here: a GET-only route).
    let res = server
        .send(Method::POST, "/status", &[], vec![b'x'; 1000])
        .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let started = Arc::new(Notify::new());
    let slow = {
        let started = started.clone();
        get(move || async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        })
    };
    let router = Router::new()
        .route("/slow", slow)
        .merge(hearth_web::router(state_for(Arc::new(BrokenStore))));
    let mut server = TestServer::start(router).await;
    let addr = server.addr;

    let in_flight =
        tokio::spawn(async move { send(addr, Method::GET, "/slow", &[], vec![]).await });
    started.notified().await;
    server
        .shutdown
        .take()
        .expect("sender")
        .send(())
        .expect("server still running");

    let res = in_flight.await.expect("request task");
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text(), "done");
    let served = tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("server stops once the request is done");
    served.expect("server task").expect("serve result");

    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

/// A store whose every call fails, as a dead database would.
struct BrokenStore;

fn broken<T>() -> StoreResult<T> {
    Err(StoreError::internal(std::io::Error::other(
        "disk unplugged",
    )))
}

#[async_trait]
impl DocStore for BrokenStore {
    async fn get(
        &self,
        _: &InstanceId,
        _: &Doctype,
        _: &str,
        _: GetOptions,
    ) -> StoreResult<JsonMap> {
        broken()
    }
    async fn put(&self, _: &InstanceId, _: &Doctype, _: JsonMap) -> StoreResult<Written> {
        broken()
    }
    async fn delete(&self, _: &InstanceId, _: &Doctype, _: &str, _: &Rev) -> StoreResult<Rev> {
        broken()
    }
    async fn bulk(
        &self,
        _: &InstanceId,
        _: &Doctype,
        _: Vec<JsonMap>,
        _: bool,
    ) -> StoreResult<Vec<BulkResult>> {
        broken()
    }
    async fn all_docs(
        &self,
        _: &InstanceId,
        _: &Doctype,
        _: &AllDocsQuery,
    ) -> StoreResult<AllDocs> {
        broken()
    }
    async fn restore(&self, _: &InstanceId, _: &Doctype, _: Vec<JsonMap>) -> StoreResult<()> {
        broken()
    }
    async fn changes(&self, _: &InstanceId, _: &Doctype, _: &ChangesQuery) -> StoreResult<Changes> {
        broken()
    }
    async fn find(&self, _: &InstanceId, _: &Doctype, _: &FindQuery) -> StoreResult<FindResult> {
        broken()
    }
    async fn create_index(
        &self,
        _: &InstanceId,
        _: &Doctype,
        _: IndexDef,
    ) -> StoreResult<IndexCreated> {
        broken()
    }
    async fn list_indexes(&self, _: &InstanceId, _: &Doctype) -> StoreResult<Vec<IndexDef>> {
        broken()
    }
    async fn delete_index(&self, _: &InstanceId, _: &Doctype, _: &str) -> StoreResult<()> {
        broken()
    }
    async fn count(&self, _: &InstanceId, _: &Doctype) -> StoreResult<u64> {
        broken()
    }
    async fn doctypes(&self, _: &InstanceId) -> StoreResult<Vec<Doctype>> {
        broken()
    }
    async fn delete_doctype(&self, _: &InstanceId, _: &Doctype) -> StoreResult<()> {
        broken()
    }
    async fn destroy_instance(&self, _: &InstanceId) -> StoreResult<()> {
        broken()
    }
    async fn health(&self) -> StoreResult<()> {
        broken()
    }
    fn kind(&self) -> &'static str {
        "broken"
    }
}
