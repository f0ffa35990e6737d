//! The admin routes of a move driven by the operator (`hearth instances move`): the
//! usage of an instance, a move token of the target (checked through the target's own
//! permission check), and the target's status through a move's states.

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode};
use hearth_core::{Doctype, InstanceId};
use hearth_vfs::NewFile;
use serde_json::{Value, json};
use support::{Env, started_env};

const A: &str = "a.localhost";
const B: &str = "b.localhost";

fn stream(b: Vec<u8>) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin + Send {
    futures_util::stream::iter([Ok(Bytes::from(b))])
}

async fn get(e: &Env, path: &str) -> Value {
    let res = e.admin(Method::GET, path, Body::empty()).await;
    assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.text());
    res.json()
}

async fn status(e: &Env, domain: &str) -> Value {
    get(e, &format!("/instances/{domain}/move/status")).await
}

/// Writes an import record as the import worker does.
async fn record(e: &Env, id: &str, fields: Value) {
    let mut doc = hearth_move::import_record(&e.state.imports, id)
        .await
        .unwrap()
        .unwrap_or_default();
    doc.extend(fields.as_object().unwrap().clone());
    doc.insert("_id".into(), json!(id));
    e.state
        .instances
        .store()
        .put(
            &InstanceId::global(),
            &Doctype::new(hearth_move::IMPORTS).unwrap(),
            doc,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_token_and_status() {
    let e = started_env(|s| s).await;
    e.create_instance(A, "").await;
    e.create_instance(B, "&DiskQuota=1000000").await;
    let inst = e.state.instances.get_str(A).await.unwrap();
    e.state
        .vfs
        .upload(
            &inst,
            "",
            NewFile {
                name: "hello.txt".into(),
                ..Default::default()
            },
            stream(vec![b'x'; 1234]),
        )
        .await
        .unwrap();

    // Usage: the bytes of the files, the quota (null: unlimited).
    assert_eq!(
        get(&e, &format!("/instances/{A}/move/usage")).await,
        json!({"used": 1234, "quota": null})
    );
    assert_eq!(
        get(&e, &format!("/instances/{B}/move/usage")).await,
        json!({"used": 0, "quota": 1_000_000})
    );
    for (method, path) in [
        (Method::GET, "/instances/nobody.localhost/move/usage"),
        (Method::POST, "/instances/nobody.localhost/move/token"),
        (Method::GET, "/instances/nobody.localhost/move/status"),
    ] {
        let res = e.admin(method, path, Body::empty()).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(res.json()["errors"][0]["status"], "404", "{}", res.text());
    }
    // Without the passphrase, nothing.
    let res = support::send(
        &e.admin,
        axum::http::Request::post(format!("/instances/{B}/move/token"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // The token: a client of B, and an access token with the move scope, which B's
    // own permission check accepts.
    let res = e
        .admin(
            Method::POST,
            &format!("/instances/{B}/move/token"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let t = res.json();
    assert_eq!(
        (t["used"].clone(), t["quota"].clone()),
        (json!(0), json!(1_000_000))
    );
    let token = t["token"].as_str().unwrap();
    let client_id = t["client_id"].as_str().unwrap();
    assert!(!t["client_secret"].as_str().unwrap().is_empty());
    let client = e
        .state
        .instances
        .get_client(B, client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client["software_id"], "github.com/cozy/cozy-stack");
    assert_eq!(client["client_name"], "hearth instances move");
    let me = e
        .call(
            B,
            Some(token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let attrs = &me.json()["data"]["attributes"];
    assert_eq!(attrs["type"], "oauth", "{attrs}");
    assert_eq!(attrs["source_id"], client_id, "{attrs}");
    let mut types: Vec<&str> = attrs["permissions"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["io.cozy.exports.requests", "io.cozy.imports"]);
    // A's instance does not take B's token.
    let other = e
        .call(
            A,
            Some(token),
            Method::GET,
            "/permissions/self",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST, "{}", other.text());
    assert!(
        other.text().contains("Invalid JWT token"),
        "{}",
        other.text()
    );
    // Two operators' tokens are two clients.
    let again = e
        .admin(
            Method::POST,
            &format!("/instances/{B}/move/token"),
            Body::empty(),
        )
        .await;
    assert_ne!(again.json()["client_id"], t["client_id"]);

    // Status: idle, waiting while blocked MOVING, importing while blocked IMPORTING
    // or flagged, then the newest import record.
    assert_eq!(status(&e, B).await, json!({"state": "idle"}));
    let instances = &e.state.instances;
    instances.set_blocked(B, Some("MOVING")).await.unwrap();
    assert_eq!(status(&e, B).await["state"], "waiting");
    instances.set_blocked(B, Some("IMPORTING")).await.unwrap();
    assert_eq!(status(&e, B).await["state"], "importing");
    instances.set_blocked(B, None).await.unwrap();
    let b = instances.get_str(B).await.unwrap();
    hearth_move::set_settings_flag(&e.state.imports, &b, "importing", Some(json!(true)))
        .await
        .unwrap();
    hearth_move::set_settings_flag(&e.state.imports, &b, "moved_from", Some(json!(A)))
        .await
        .unwrap();
    let s = status(&e, B).await;
    assert_eq!(
        (s["state"].clone(), s["moved_from"].clone()),
        (json!("importing"), json!(A))
    );
    hearth_move::set_settings_flag(&e.state.imports, &b, "importing", None)
        .await
        .unwrap();
    // A record of another instance is not B's.
    record(
        &e,
        "j0",
        json!({"domain": A, "state": "errored", "error": "not B's",
        "started_at": "2030-01-01T00:00:00Z"}),
    )
    .await;
    record(
        &e,
        "j1",
        json!({"domain": B, "state": "running",
        "started_at": "2026-01-01T10:00:00Z"}),
    )
    .await;
    assert_eq!(
        status(&e, B).await,
        json!({"state": "importing", "job_id": "j1", "moved_from": A})
    );
    let report = json!({"doctypes": {"io.cozy.contacts": {"archive_docs": 1, "archive_bytes": 10,
        "imported_docs": 1, "imported_bytes": 10, "skipped": 0}}, "apps_not_installed": [],
        "parts": 1});
    record(
        &e,
        "j1",
        json!({"domain": B, "state": "done", "report": report,
        "started_at": "2026-01-01T10:00:00Z"}),
    )
    .await;
    assert_eq!(
        status(&e, B).await,
        json!({"state": "done", "job_id": "j1", "moved_from": A, "report": report})
    );
    // A newer import that failed wins over the older one.
    record(
        &e,
        "j2",
        json!({"domain": B, "state": "errored", "error": "part 1 is missing",
        "started_at": "2026-01-02T10:00:00.5Z"}),
    )
    .await;
    assert_eq!(
        status(&e, B).await,
        json!({"state": "errored", "job_id": "j2", "moved_from": A, "error": "part 1 is missing"})
    );
    // Blocked again for a new move: waiting, whatever the records say.
    instances.set_blocked(B, Some("MOVING")).await.unwrap();
    assert_eq!(status(&e, B).await["state"], "waiting");
}
