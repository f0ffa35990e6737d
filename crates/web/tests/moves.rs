//! Exports through the whole router (spec move 1.8, 1.10): the user's route and its
//! job, the mail with the link, the document, every part unzipped and compared with
//! the instance; the admin routes; bad input.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Read;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use hearth_vfs::{NewDir, NewFile, Overwrite};
use serde_json::Value;
use support::{Env, eventually, started_env};

const A: &str = "a.localhost";
const B: &str = "b.localhost";

fn stream(b: &[u8]) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin + Send {
    futures_util::stream::iter([Ok(Bytes::from(b.to_vec()))])
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            (f.name().to_owned(), out)
        })
        .collect()
}

/// Nested folders, four files (one with an old version) and a custom document;
/// answers the current contents by path and the old version's content.
async fn fill(env: &Env) -> (BTreeMap<String, Vec<u8>>, Vec<u8>) {
    let state = &env.state;
    let inst = state.instances.get_str(A).await.unwrap();
    let mkdir = |parent: String, name: &'static str| async move {
        let d = NewDir {
            name: name.into(),
            ..Default::default()
        };
        state
            .vfs
            .create_dir(&inst_of(env).await, &parent, d)
            .await
            .unwrap()
            .id
    };
    let a = mkdir(String::new(), "Docs").await;
    let b = mkdir(a.clone(), "Deep").await;
    let mut contents = BTreeMap::new();
    for (dir, path, name, size) in [
        ("", "/root.bin", "root.bin", 3000usize),
        (a.as_str(), "/Docs/one.bin", "one.bin", 2000),
        (b.as_str(), "/Docs/Deep/two.bin", "two.bin", 5000),
        (b.as_str(), "/Docs/Deep/note.txt", "note.txt", 12),
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 241) as u8).collect();
        let f = NewFile {
            name: name.into(),
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        };
        state
            .vfs
            .upload(&inst, dir, f, stream(&data))
            .await
            .unwrap();
        contents.insert(path.to_owned(), data);
    }
    let note = state
        .vfs
        .get_by_path(&inst, "/Docs/Deep/note.txt")
        .await
        .unwrap();
    let newer = b"second".to_vec();
    state
        .vfs
        .overwrite(&inst, &note.id, Overwrite::default(), stream(&newer))
        .await
        .unwrap();
    let old = contents
        .insert("/Docs/Deep/note.txt".into(), newer)
        .unwrap();
    let token = env.token(A, "com.example.things").await;
    let res = env
        .call(
            A,
            Some(&token),
            Method::POST,
            "/data/com.example.things/",
            &[("content-type", "application/json")],
            r#"{"title":"custom"}"#,
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    (contents, old)
}

async fn inst_of(env: &Env) -> hearth_instances::Instance {
    (*env.state.instances.get_str(A).await.unwrap()).clone()
}

/// The newest export of a domain once it has ended, from the admin API.
async fn newest_export(env: &Env, domain: &str, not: &[String]) -> Value {
    eventually(30, "the export job", || async {
        let res = env
            .admin(
                Method::GET,
                &format!("/instances/{domain}/exports"),
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        let list = res.json();
        let first = list
            .as_array()
            .unwrap()
            .iter()
            .find(|d| !not.iter().any(|n| d["_id"] == n.as_str()))
            .cloned()?;
        (first["state"] != "exporting").then_some(first)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_through_the_routes() {
    let env = started_env(|s| s.with_export_min_parts_size(4096)).await;
    env.create_instance(A, "&Email=alice@example.com&PublicName=Alice&Locale=en")
        .await;
    env.create_instance(B, "&Email=bob@example.com").await;
    let (contents, old) = fill(&env).await;

    // A token without io.cozy.exports: 403.
    let weak = env.token(A, "io.cozy.files").await;
    let body = r#"{"data":{"attributes":{"parts_size":4096}}}"#;
    let json = [("content-type", "application/vnd.api+json")];
    let res = env
        .call(A, Some(&weak), Method::POST, "/move/exports", &json, body)
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    let token = env.token(A, "io.cozy.exports").await;
    let res = env
        .call(A, Some(&token), Method::POST, "/move/exports", &json, body)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert!(res.body.is_empty());

    let doc = newest_export(&env, A, &[]).await;
    assert_eq!(doc["state"], "done", "{doc}");
    assert_eq!(doc["parts_size"], 4096);
    let id = doc["_id"].as_str().unwrap().to_owned();
    let cursors: Vec<String> = serde_json::from_value(doc["parts_cursors"].clone()).unwrap();
    assert!(cursors.len() >= 2, "{cursors:?}");

    // The mail with the link to the settings app.
    let outbox = env.dir.path().join("mail").join("outbox");
    let mail = eventually(10, "the archiver mail", || async {
        let entries = std::fs::read_dir(&outbox).ok()?;
        entries
            .filter_map(Result::ok)
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|m| m.contains("alice@example.com"))
    })
    .await;
    let unfolded = mail.replace("=\r\n", "").replace("=3D", "=");
    let marker = "http://settings.a.localhost/#/exports/";
    let start = unfolded.find(marker).unwrap_or_else(|| panic!("{mail}")) + marker.len();
    let mac: String = unfolded[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_=".contains(*c))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let inst_a = env.state.instances.get_str(A).await.unwrap();
    assert_eq!(
        hearth_move::mac::decode(&inst_a.session_secret, &mac, now).unwrap(),
        id
    );

    // The document, JSON:API, by the link's MAC.
    let res = env
        .call(
            A,
            None,
            Method::GET,
            &format!("/move/exports/{mac}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let j = res.json();
    assert_eq!(j["data"]["type"], "io.cozy.exports");
    assert_eq!(j["data"]["id"], id.as_str());
    assert_eq!(j["data"]["attributes"]["domain"], A);
    assert_eq!(j["data"]["attributes"]["state"], "done");
    assert!(j["data"]["meta"]["rev"].as_str().unwrap().starts_with("2-"));

    // Every part.
    let mut all = Vec::new();
    for (n, c) in std::iter::once(None)
        .chain(cursors.iter().map(Some))
        .enumerate()
    {
        let uri = match c {
            None => format!("/move/exports/data/{mac}"),
            Some(c) => format!("/move/exports/data/{mac}?cursor={}", c.replace('/', "%2F")),
        };
        let res = env
            .call(A, None, Method::GET, &uri, &[], Body::empty())
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(res.header("content-type"), "application/zip");
        assert_eq!(
            res.header("content-security-policy"),
            "frame-ancestors http://settings.a.localhost/"
        );
        assert_eq!(
            res.header("content-disposition"),
            format!("attachment; filename=\"My Cozy - part{n:03}.zip\"")
        );
        all.extend(unzip(&res.body));
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "My Cozy/Data/instance.json");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("My Cozy/Data/com.example.things/") && n.ends_with(".json"))
    );
    assert!(names.contains(&"My Cozy/Data/io.cozy.files/io.cozy.files.root-dir.json"));
    let mut seen = BTreeMap::new();
    for (i, (name, bytes)) in all.iter().enumerate() {
        if name.starts_with("My Cozy/Data/io.cozy.files/") {
            let d: Value = serde_json::from_slice(bytes).unwrap();
            if d["type"] == "file" {
                let (next, content) = &all[i + 1];
                let path = next.strip_prefix("My Cozy/Files").unwrap();
                seen.insert(path.to_owned(), content.clone());
            }
        } else if name.starts_with("My Cozy/Data/io.cozy.files.versions/") {
            let (next, content) = &all[i + 1];
            assert!(next.starts_with("My Cozy/Files/"));
            assert_eq!(content, &old);
        }
    }
    assert_eq!(seen, contents);

    // Bad input: a bad encoding (400), a wrong MAC (401), an unknown id (404), a bad
    // cursor (400), another instance's export (401 with A's link, 404 with a valid
    // MAC of B).
    let env = &env;
    let call = |host: &'static str, uri: String| async move {
        env.call(host, None, Method::GET, &uri, &[], Body::empty())
            .await
            .status
    };
    assert_eq!(
        call(A, "/move/exports/!!!".into()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(A, "/move/exports/nope".into()).await,
        StatusCode::UNAUTHORIZED
    );
    let unknown = hearth_move::mac::encode(&inst_a.session_secret, "unknown", now);
    assert_eq!(
        call(A, format!("/move/exports/{unknown}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(A, format!("/move/exports/data/{unknown}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            A,
            format!("/move/exports/data/{mac}?cursor=io.cozy.files%2Fbogus")
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    let inst_b = env.state.instances.get_str(B).await.unwrap();
    let of_b = hearth_move::mac::encode(&inst_b.session_secret, &id, now);
    for (token, status) in [
        (&mac, StatusCode::UNAUTHORIZED),
        (&of_b, StatusCode::NOT_FOUND),
    ] {
        for uri in [
            format!("/move/exports/{token}"),
            format!("/move/exports/data/{token}"),
        ] {
            assert_eq!(call(B, uri.clone()).await, status, "{uri}");
        }
    }

    // The admin API: an export without mail, waited for, then its parts.
    let res = env
        .admin(
            Method::POST,
            &format!("/instances/{A}/export?admin-req=true&wait=true"),
            r#"{"parts_size": 1000000000000}"#,
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.json()["state"], "done", "{}", res.text());
    let doc = newest_export(env, A, std::slice::from_ref(&id)).await;
    assert_eq!(doc["parts_cursors"], serde_json::json!([]));
    let id2 = doc["_id"].as_str().unwrap();
    let res = env
        .admin(
            Method::GET,
            &format!("/instances/{A}/exports/{id2}/data"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        res.header("content-disposition"),
        "attachment; filename=\"a.localhost.zip\""
    );
    let whole = unzip(&res.body);
    let files: usize = whole
        .iter()
        .filter(|(n, _)| n.starts_with("My Cozy/Files/"))
        .count();
    assert_eq!(files, contents.len() + 1, "the files and the version");
    // The first export's archive went with the second export: its part 0 is gone.
    let res = env
        .call(
            A,
            None,
            Method::GET,
            &format!("/move/exports/data/{mac}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}
