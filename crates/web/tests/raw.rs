//! The admin API's raw documents: any doctype of an instance, with the passphrase only.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use support::{send, started_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_and_write_any_doctype() {
    let e = started_env(|s| s).await;
    e.create_instance("a.localhost", "").await;
    e.create_instance("b.localhost", "").await;
    let base = "/instances/a.localhost/raw/io.cozy.oauth.clients";

    // Register a real client through the public API: it lands in a doctype /data refuses.
    let res = e
        .call(
            "a.localhost",
            None,
            Method::POST,
            "/auth/register",
            &[("content-type", "application/json"), ("accept", "application/json")],
            json!({"redirect_uris": ["http://localhost/cb"], "client_name": "Raw", "software_id": "raw"}).to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let client_id = res.json()["client_id"].as_str().unwrap().to_owned();

    let all = e
        .admin(
            Method::GET,
            &format!("{base}/_all_docs?include_docs=true"),
            Body::empty(),
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let rows = all.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], client_id.as_str());
    assert_eq!(rows[0]["doc"]["client_name"], "Raw");

    let doc = e
        .admin(Method::GET, &format!("{base}/{client_id}"), Body::empty())
        .await
        .json();
    assert_eq!(doc["_id"], client_id.as_str());
    let mut changed = doc.clone();
    changed["client_name"] = json!("Renamed");
    let put = e
        .admin(
            Method::PUT,
            &format!("{base}/{client_id}"),
            changed.to_string(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let new_rev = put.json()["rev"].as_str().unwrap().to_owned();
    assert!(new_rev.starts_with("2-"));
    // The old revision is now stale: a conflict, nothing changed.
    let stale = e
        .admin(Method::PUT, &format!("{base}/{client_id}"), doc.to_string())
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.text());

    let found = e
        .admin(
            Method::POST,
            &format!("{base}/_find"),
            json!({"selector": {"client_name": "Renamed"}}).to_string(),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text());
    assert_eq!(found.json()["docs"].as_array().unwrap().len(), 1);

    // Another instance does not see it.
    let other = e
        .admin(
            Method::GET,
            &format!("/instances/b.localhost/raw/io.cozy.oauth.clients/{client_id}"),
            Body::empty(),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);

    // Bad input changes nothing.
    for (method, uri, body, status) in [
        (
            Method::PUT,
            format!("{base}/x"),
            "{not json".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            format!("{base}/x"),
            "[1]".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            format!("{base}/x"),
            json!({"_id": "y"}).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/instances/a.localhost/raw/Bad Type/_all_docs".replace(' ', "%20"),
            String::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/instances/nope.localhost/raw/io.cozy.files/_all_docs".to_owned(),
            String::new(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            format!("{base}/{client_id}"),
            String::new(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let res = e.admin(method.clone(), &uri, body).await;
        assert_eq!(res.status, status, "{method} {uri}: {}", res.text());
    }
    let still = e
        .admin(Method::GET, &format!("{base}/{client_id}"), Body::empty())
        .await
        .json();
    assert_eq!(still["client_name"], "Renamed");

    // Without the passphrase: refused.
    let req = Request::builder()
        .uri(format!("{base}/_all_docs"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&e.admin, req).await.status, StatusCode::UNAUTHORIZED);

    let del = e
        .admin(
            Method::DELETE,
            &format!("{base}/{client_id}?rev={new_rev}"),
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text());
    let gone = e
        .admin(Method::GET, &format!("{base}/{client_id}"), Body::empty())
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let _: Value = gone.json();
}
