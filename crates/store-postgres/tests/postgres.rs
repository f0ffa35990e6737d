//! What only the PostgreSQL store has to prove: concurrent writers, the collation
//! function in SQL agreeing with Rust's, real index use, and its own layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use hearth_store::{
    DocStore, GetOptions, StoreError, collate,
    mango::{FindQuery, IndexDef},
    testkit::{dt, inst, obj},
};
use serde_json::{Value, json};
use support::fresh_store;

async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&support::url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_rev_updates_conflict_exactly_once() {
    let s = Arc::new(fresh_store());
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let first = s
        .put(&i, &t, obj(json!({"_id": "n", "v": 0})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for v in 1..=8 {
        let (s, i, t, rev) = (s.clone(), i.clone(), t.clone(), first.rev.to_string());
        tasks.push(tokio::spawn(async move {
            s.put(&i, &t, obj(json!({"_id": "n", "_rev": rev, "v": v})))
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(w) => {
                ok += 1;
                assert_eq!(w.rev.generation, 2);
            }
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer wins");
    // Concurrent creations of one id in a doctype (and instance) that does not exist yet.
    let (j, u) = (inst("bob"), dt("io.cozy.fresh"));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (s, j, u) = (s.clone(), j.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            s.put(&j, &u, obj(json!({"_id": "same"}))).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(s.count(&j, &u).await.unwrap(), 1);
    let changes = s.changes(&j, &u, &Default::default()).await.unwrap();
    assert_eq!(changes.results.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_collation_keys_match_rust() {
    let s = fresh_store();
    s.health().await.unwrap();
    let client = raw_client().await;
    let sql = format!("SELECT {}.couch_key($1::text::jsonb)", s.schema());
    let strings = [
        "",
        "a",
        "A",
        "aB",
        "Ab",
        "abc",
        "ABC",
        "a b",
        "a\tb",
        "z~",
        "Élodie",
        "élodie",
        "école",
        "Ecole",
        "ÉCOLE",
        "ß",
        "straße",
        "İstanbul",
        "ıi",
        "Ωμέγα",
        "ΣΊΣΥΦΟΣ",
        "σ",
        "ς",
        "Дом",
        "дом",
        "Ǆ",
        "ǅ",
        "ǆ",
        "Ⓐ",
        "ⓐ",
        "Ⅻ",
        "ﬃ",
        "日本語",
        "emoji 🎉",
        "ÀÉÎÕÜ àéîõü",
    ];
    let mut values: Vec<Value> = strings.iter().map(|s| json!(s)).collect();
    values.extend([
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-0.0),
        json!(1),
        json!(-1),
        json!(2.5),
        json!(-2.5),
        json!(1e300),
        json!(-1e-300),
        json!(9007199254740993u64),
        json!(i64::MIN),
        json!([]),
        json!([1, "a", [null]]),
        json!({}),
        json!({"k": 1, "Éé": ["x", {"y": false}]}),
    ]);
    for v in values {
        // The server stores objects in jsonb's member order: compare on that order.
        let text = v.to_string();
        let stored: Value = {
            let row = client
                .query_one("SELECT $1::text::jsonb::text", &[&text])
                .await
                .unwrap();
            serde_json::from_str(row.get(0)).unwrap()
        };
        let row = client.query_one(&sql, &[&text]).await.unwrap();
        let got: Vec<u8> = row.get(0);
        assert_eq!(got, collate::sort_key(&stored), "key of {v}");
    }
    let missing: Option<String> = None;
    let row = client.query_one(&sql, &[&missing]).await.unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), collate::MISSING_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_find_uses_the_expression_index() {
    let s = fresh_store();
    let (i, t) = (inst("alice"), dt("io.cozy.files"));
    let docs: Vec<_> = (0..2000)
        .map(|n| {
            obj(json!({"_id": format!("f{n:05}"), "meta": {"n": n}, "name": format!("file {n}")}))
        })
        .collect();
    s.bulk(&i, &t, docs, true).await.unwrap();
    let def = IndexDef::parse(&json!({"index": {"fields": ["meta.n"]}})).unwrap();
    s.create_index(&i, &t, def).await.unwrap();
    let q = FindQuery::parse(&json!({
        "selector": {"meta.n": {"$gte": 1990}},
        "sort": ["meta.n"],
        "limit": 3
    }))
    .unwrap();
    let plan = s.explain_find(&i, &t, &q).await.unwrap();
    assert!(plan.contains("Index Scan using ix_"), "{plan}");
    let r = s.find(&i, &t, &q).await.unwrap();
    let ids: Vec<&str> = r.docs.iter().map(|d| d["_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["f01990", "f01991", "f01992"]);
    assert_eq!(r.index.unwrap().0, "_design/by_meta_n");
    // The next page, through the bookmark.
    let next = FindQuery {
        bookmark: Some(r.bookmark),
        ..q
    };
    let r = s.find(&i, &t, &next).await.unwrap();
    let ids: Vec<&str> = r.docs.iter().map(|d| d["_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["f01993", "f01994", "f01995"]);
    // A selector the SQL cannot fully express still pages correctly (rows re-checked).
    let q = FindQuery::parse(&json!({
        "selector": {"meta.n": {"$gt": 100}, "name": {"$regex": "9$"}},
        "sort": ["meta.n"],
        "limit": 2,
        "skip": 1
    }))
    .unwrap();
    let r = s.find(&i, &t, &q).await.unwrap();
    let ids: Vec<&str> = r.docs.iter().map(|d| d["_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["f00119", "f00129"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_one_schema_per_instance() {
    let s = fresh_store();
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    s.put(&i, &t, obj(json!({"_id": "a"}))).await.unwrap();
    let client = raw_client().await;
    let pattern = format!("{}\\_%", s.schema());
    let sql = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1";
    let count: i64 = client.query_one(sql, &[&pattern]).await.unwrap().get(0);
    assert_eq!(count, 1);
    s.destroy_instance(&i).await.unwrap();
    let count: i64 = client.query_one(sql, &[&pattern]).await.unwrap().get(0);
    assert_eq!(count, 0, "the instance schema is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_input_and_unreachable_server() {
    let s = fresh_store();
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let nul = s
        .put(&i, &t, obj(json!({"_id": "x", "text": "a\u{0}b"})))
        .await;
    assert!(matches!(nul, Err(StoreError::InvalidInput(_))), "{nul:?}");
    assert!(s.get(&i, &t, "x", GetOptions::default()).await.is_err());
    let bad = hearth_store_postgres::PostgresStore::new(
        "postgres://nobody@127.0.0.1:1/x",
        Default::default(),
    )
    .unwrap();
    assert!(matches!(bad.health().await, Err(StoreError::Internal(_))));
    assert!(
        hearth_store_postgres::PostgresStore::new(
            "postgres://x/y",
            hearth_store_postgres::PgOptions {
                schema: "Bad-Name".into(),
                ..Default::default()
            }
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_others_schema_changes() {
    let a = fresh_store();
    let b = hearth_store_postgres::PostgresStore::new(
        &support::url(),
        hearth_store_postgres::PgOptions {
            schema: a.schema().to_owned(),
            max_connections: 2,
        },
    )
    .unwrap();
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    a.put(&i, &t, obj(json!({"_id": "x", "v": 1})))
        .await
        .unwrap();
    assert_eq!(
        b.get(&i, &t, "x", GetOptions::default()).await.unwrap()["v"],
        1
    );
    // Node a drops the doctype: node b, which knows its table, must not serve it.
    a.delete_doctype(&i, &t).await.unwrap();
    assert!(matches!(
        b.get(&i, &t, "x", GetOptions::default()).await,
        Err(StoreError::NotFound(
            hearth_store::NotFoundReason::NoDatabase
        ))
    ));
    a.put(&i, &t, obj(json!({"_id": "x", "v": 2})))
        .await
        .unwrap();
    assert_eq!(
        b.get(&i, &t, "x", GetOptions::default()).await.unwrap()["v"],
        2
    );
    a.destroy_instance(&i).await.unwrap();
    assert!(b.get(&i, &t, "x", GetOptions::default()).await.is_err());
    b.put(&i, &t, obj(json!({"_id": "y"}))).await.unwrap();
    assert_eq!(a.count(&i, &t).await.unwrap(), 1);
    assert!(a.get(&i, &t, "y", GetOptions::default()).await.is_ok());
}
