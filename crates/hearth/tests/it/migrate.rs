//! `hearth migrate-storage`: an instance made on SQLite and the local disk is copied to
//! PostgreSQL and S3 (`s3s-fs` on loopback), checked, and served from there.
//!
//! Needs PostgreSQL and `s3s-fs`, as `two_nodes.rs` does (same helpers).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::two_nodes::{
    DOMAIN, Database, Node, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server, bytes, ok,
    raw_request,
};
use crate::{hearth, stderr, stdout};

/// `hearth migrate-storage` in `home` with `config`.
fn migrate(home: &Path, config: &Path, args: &[&str]) -> Output {
    hearth(home)
        .env("HEARTH_TO_S3_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("HEARTH_TO_S3_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .arg("--config")
        .arg(config)
        .arg("migrate-storage")
        .args(args)
        .output()
        .expect("run hearth migrate-storage")
}

/// Uploads `content` as `name` into the directory `dir_id`; the new file's id.
fn upload_into(node: &Node, token: &str, dir_id: &str, name: &str, content: &[u8]) -> String {
    let head = format!(
        "POST /files/{dir_id}?Type=file&Name={name} HTTP/1.1\r\nHost: {DOMAIN}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let (status, body) = raw_request(node.port, head.as_bytes(), content);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 201, "{body}\n{}", node.log());
    body["data"]["id"].as_str().unwrap().to_owned()
}

fn overwrite(node: &Node, token: &str, id: &str, content: &[u8]) {
    let head = format!(
        "PUT /files/{id} HTTP/1.1\r\nHost: {DOMAIN}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let (status, body) = raw_request(node.port, head.as_bytes(), content);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn migrate_storage_sqlite_and_disk_to_postgres_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s3 = S3Server::start(d);
    let db = Database::create();
    let old_config = d.join("old.yaml");
    std::fs::write(
        &old_config,
        "data_dir: data\nlog:\n  level: info\nauth:\n  scrypt_log_n: 4\n",
    )
    .unwrap();
    let old_home = d.join("old");
    let node = Node::start(d, &old_config, "old");

    // An instance with folders, files, an old version and documents.
    ok(&node.cli(d, &["add", DOMAIN, "--email", "owner@example.net"]));
    let token = ok(&node.cli(d, &["token-cli", DOMAIN, "io.cozy.files io.cozy.todos"]));
    let token = token.trim().to_owned();
    let (status, photos) = node.api("POST", "/files/?Type=directory&Name=Albums", &token, "");
    assert_eq!(status, 201, "{photos}");
    let photos = photos["data"]["id"].as_str().unwrap().to_owned();
    let (status, inner) = node.api(
        "POST",
        &format!("/files/{photos}?Type=directory&Name=2024"),
        &token,
        "",
    );
    assert_eq!(status, 201, "{inner}");
    let inner = inner["data"]["id"].as_str().unwrap().to_owned();
    let first = bytes(100_000, 1);
    let (status, created) = node.upload(&token, "notes.bin", &first);
    assert_eq!(status, 201, "{created}");
    let notes = created["data"]["id"].as_str().unwrap().to_owned();
    let second = bytes(120_003, 2);
    overwrite(&node, &token, &notes, &second);
    let big = bytes(3 * 1024 * 1024 + 5, 3);
    let big_id = upload_into(&node, &token, &inner, "big.bin", &big);
    let empty_id = upload_into(&node, &token, &photos, "empty.txt", b"");
    let mut todos = Vec::new();
    for title in ["one", "two", "three"] {
        let (status, doc) = node.api(
            "POST",
            "/data/io.cozy.todos/",
            &token,
            &format!(r#"{{"title":"{title}"}}"#),
        );
        assert_eq!(status, 201, "{doc}");
        todos.push((
            doc["id"].as_str().unwrap().to_owned(),
            doc["rev"].as_str().unwrap().to_owned(),
        ));
    }
    let (status, updated) = node.api(
        "PUT",
        &format!("/data/io.cozy.todos/{}", todos[0].0),
        &token,
        &format!(
            r#"{{"_id":"{}","_rev":"{}","title":"one, edited"}}"#,
            todos[0].0, todos[0].1
        ),
    );
    assert_eq!(status, 200, "{updated}");
    todos[0].1 = updated["rev"].as_str().unwrap().to_owned();
    let (status, _) = node.api(
        "DELETE",
        &format!("/data/io.cozy.todos/{}?rev={}", todos[2].0, todos[2].1),
        &token,
        "",
    );
    assert_eq!(status, 200);
    let (status, index) = node.api(
        "POST",
        "/data/io.cozy.todos/_index",
        &token,
        r#"{"index":{"fields":["title"]},"ddoc":"by-title"}"#,
    );
    assert_eq!(status, 200, "{index}");

    let target = [
        "--to-database",
        db.url.as_str(),
        "--to-fs",
        &format!("s3://{S3_BUCKET}?endpoint={}", s3.endpoint),
    ]
    .map(str::to_owned);
    let target: Vec<&str> = target.iter().map(String::as_str).collect();

    // Refused while the instance is not blocked: nothing is copied.
    let out = migrate(
        &old_home,
        &old_config,
        &[&["--domain", DOMAIN][..], &target].concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("Error: the instance twonodes.localhost is not blocked"),
        "{}",
        stderr(&out)
    );
    assert!(!s3.bucket_dir.join(DOMAIN).exists());
    node.kill();

    // An unknown domain.
    let out = migrate(
        &old_home,
        &old_config,
        &[&["--domain", "nobody.localhost", "--block"][..], &target].concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("Error: there is no instance \"nobody.localhost\""),
        "{}",
        stderr(&out)
    );
    // No target at all is a usage error.
    let out = migrate(&old_home, &old_config, &["--domain", DOMAIN]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("Error: nothing to do"),
        "{}",
        stderr(&out)
    );

    // The server stopped: the command blocks the instance itself, copies, checks,
    // unblocks it, and copies the registry (--global).
    let args = [&["--domain", DOMAIN, "--block", "--global"][..], &target].concat();
    let out = migrate(&old_home, &old_config, &args);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    assert!(report.contains("check: OK"), "{report}");
    assert!(report.contains("copied 3 files and 1 versions"), "{report}");
    assert!(report.contains("io.cozy.todos"), "{report}");
    assert!(
        report.contains("contents read back from the target: 4 of 4 files and versions"),
        "{report}"
    );
    assert!(!report.contains(S3_SECRET_KEY) && !stderr(&out).contains(S3_SECRET_KEY));

    // Again: everything is there already, and the check still passes.
    let out = migrate(&old_home, &old_config, &args);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    assert!(
        report.contains("copied 0 files and 0 versions (0 bytes), 0 thumbnails; 3 files and 1 versions were there already"),
        "{report}"
    );
    assert!(report.contains("check: OK"), "{report}");

    // A server on the new backends serves the same instance, documents and bytes.
    let new_config = d.join("new.yaml");
    std::fs::write(
        &new_config,
        format!(
            "data_dir: data\nlog:\n  level: info\nauth:\n  scrypt_log_n: 4\n\
             database:\n  url: {db}\n\
             fs:\n  url: s3://{S3_BUCKET}?endpoint={endpoint}\n  \
             s3_access_key_id: {S3_ACCESS_KEY}\n  s3_secret_access_key: {S3_SECRET_KEY}\n",
            db = db.url,
            endpoint = s3.endpoint,
        ),
    )
    .unwrap();
    let node = Node::start(d, &new_config, "new");
    let token = ok(&node.cli(d, &["token-cli", DOMAIN, "io.cozy.files io.cozy.todos"]));
    let token = token.trim().to_owned();
    for (id, content) in [(&notes, &second), (&big_id, &big), (&empty_id, &Vec::new())] {
        let (status, got) = node.download(&token, id);
        assert_eq!(status, 200, "{}", node.log());
        assert!(
            got == *content,
            "{id}: other bytes ({} vs {})",
            got.len(),
            content.len()
        );
    }
    let (status, meta) = node.api(
        "GET",
        "/files/metadata?Path=/Albums/2024/big.bin",
        &token,
        "",
    );
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["data"]["id"], big_id.as_str());
    for (id, rev) in &todos[..2] {
        let (status, doc) = node.api("GET", &format!("/data/io.cozy.todos/{id}"), &token, "");
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["_rev"], rev.as_str(), "{doc}");
    }
    let (status, _) = node.api(
        "GET",
        &format!("/data/io.cozy.todos/{}", todos[2].0),
        &token,
        "",
    );
    assert_eq!(status, 404);
    let (status, found) = node.api(
        "POST",
        "/data/io.cozy.todos/_find",
        &token,
        r#"{"selector":{"title":{"$gt":""}},"sort":[{"title":"asc"}],"use_index":"by-title"}"#,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["docs"].as_array().map(Vec::len), Some(2), "{found}");
    // The old version's content is in the bucket.
    let versions = s3.bucket_dir.join(DOMAIN).join("versions").join(&notes);
    assert_eq!(
        std::fs::read_dir(&versions).map(|d| d.count()).unwrap_or(0),
        1
    );
    drop(node);
    drop(db);
}
