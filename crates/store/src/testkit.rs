//! The conformance suite every [`DocStore`] backend must pass, and a naive Mango
//! evaluator used as the oracle of the property tests.
//!
//! A backend's `tests/conformance.rs` calls [`conformance_tests!`] with an expression
//! that makes a fresh, empty store; each case becomes its own `#[tokio::test]`.

// Test-support code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, sync::Arc};

use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{
    AllDocsQuery, BulkResult, ChangesQuery, DocStore, GetOptions, NotFoundReason, Since,
    StoreError, collate,
    mango::{Direction, FindQuery, IndexDef},
};

/// Expands to one `#[tokio::test]` per conformance case; `$make` builds a fresh store
/// (an expression evaluating to `Arc<dyn DocStore>`, or a value convertible into it).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            put_then_get, update_needs_current_rev, delete_leaves_tombstone, revision_history,
            fixed_ids_and_reserved_ids, bulk_writes, bulk_all_or_nothing, all_docs_order_and_ranges,
            changes_feed, find_operators, find_sort_limit_skip_bookmark, find_uses_index_same_results,
            find_fields_projection, find_collation_order, create_index_idempotent,
            instances_are_isolated, missing_doctype, delete_doctype_and_destroy_instance,
            bad_input_is_refused, bulk_many_and_create_indexes_are_atomic,
            restore_keeps_revisions
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::DocStore> = $make;
                $crate::testkit::$case(store).await;
            }
        )*
    };
}

pub type Store = Arc<dyn DocStore>;

pub fn inst(name: &str) -> InstanceId {
    InstanceId::new(name).expect("valid instance id")
}

pub fn dt(name: &str) -> Doctype {
    Doctype::new(name).expect("valid doctype")
}

pub fn obj(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn rev_of(doc: &JsonMap) -> Rev {
    doc["_rev"]
        .as_str()
        .expect("_rev")
        .parse()
        .expect("valid _rev")
}

fn ids(docs: &[JsonMap]) -> Vec<String> {
    docs.iter()
        .map(|d| d["_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub async fn put_then_get(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let w = s
        .put(&i, &t, obj(json!({"title": "hello", "n": 1})))
        .await
        .unwrap();
    assert_eq!(w.id.len(), 32, "generated ids are 32 hex characters");
    assert_eq!(w.rev.generation, 1);
    let doc = s.get(&i, &t, &w.id, GetOptions::default()).await.unwrap();
    assert_eq!(
        Value::Object(doc),
        json!({"_id": w.id, "_rev": w.rev.to_string(), "title": "hello", "n": 1})
    );
    assert!(matches!(
        s.get(&i, &t, "nope", GetOptions::default()).await,
        Err(StoreError::NotFound(NotFoundReason::Missing))
    ));
    assert_eq!(s.count(&i, &t).await.unwrap(), 1);
}

pub async fn update_needs_current_rev(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let w1 = s
        .put(&i, &t, obj(json!({"_id": "n1", "v": 1})))
        .await
        .unwrap();
    let w2 = s
        .put(
            &i,
            &t,
            obj(json!({"_id": "n1", "_rev": w1.rev.to_string(), "v": 2})),
        )
        .await
        .unwrap();
    assert_eq!(w2.rev.generation, 2);
    // A stale revision, and a missing one, are conflicts; nothing changes.
    let stale = s
        .put(
            &i,
            &t,
            obj(json!({"_id": "n1", "_rev": w1.rev.to_string(), "v": 3})),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    let missing = s.put(&i, &t, obj(json!({"_id": "n1", "v": 4}))).await;
    assert!(matches!(missing, Err(StoreError::Conflict)), "{missing:?}");
    let doc = s.get(&i, &t, "n1", GetOptions::default()).await.unwrap();
    assert_eq!(doc["v"], 2);
    assert_eq!(rev_of(&doc), w2.rev);
    // A revision on a document that never existed is a conflict too.
    let ghost = s
        .put(
            &i,
            &t,
            obj(json!({"_id": "ghost", "_rev": w1.rev.to_string()})),
        )
        .await;
    assert!(matches!(ghost, Err(StoreError::Conflict)));
}

pub async fn delete_leaves_tombstone(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let w = s
        .put(&i, &t, obj(json!({"_id": "d1", "v": 1})))
        .await
        .unwrap();
    let stale = Rev::next(None, false, b"other");
    assert!(matches!(
        s.delete(&i, &t, "d1", &stale).await,
        Err(StoreError::Conflict)
    ));
    let tomb = s.delete(&i, &t, "d1", &w.rev).await.unwrap();
    assert_eq!(tomb.generation, 2);
    assert!(matches!(
        s.get(&i, &t, "d1", GetOptions::default()).await,
        Err(StoreError::NotFound(NotFoundReason::Deleted))
    ));
    assert_eq!(s.count(&i, &t).await.unwrap(), 0);
    let ch = s
        .changes(
            &i,
            &t,
            &ChangesQuery {
                include_docs: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ch.results.len(), 1);
    assert!(ch.results[0].deleted);
    assert_eq!(ch.results[0].rev, tomb);
    assert_eq!(ch.results[0].doc.as_ref().unwrap()["_deleted"], true);
    // Deleting again: not found. Creating the id again revives it with a new generation.
    assert!(matches!(
        s.delete(&i, &t, "d1", &tomb).await,
        Err(StoreError::NotFound(NotFoundReason::Deleted))
    ));
    let again = s
        .put(&i, &t, obj(json!({"_id": "d1", "v": 2})))
        .await
        .unwrap();
    assert_eq!(again.rev.generation, 3);
    assert_eq!(s.count(&i, &t).await.unwrap(), 1);
    assert!(matches!(
        s.delete(&i, &t, "never", &tomb).await,
        Err(StoreError::Conflict | StoreError::NotFound(_))
    ));
}

pub async fn revision_history(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let mut rev = s
        .put(&i, &t, obj(json!({"_id": "h", "v": 0})))
        .await
        .unwrap()
        .rev;
    let mut hashes = vec![rev.hash.clone()];
    for v in 1..5 {
        rev = s
            .put(
                &i,
                &t,
                obj(json!({"_id": "h", "_rev": rev.to_string(), "v": v})),
            )
            .await
            .unwrap()
            .rev;
        hashes.push(rev.hash.clone());
    }
    hashes.reverse();
    let doc = s.get(&i, &t, "h", GetOptions { revs: true }).await.unwrap();
    assert_eq!(doc["_revisions"], json!({"start": 5, "ids": hashes}));
    let plain = s.get(&i, &t, "h", GetOptions::default()).await.unwrap();
    assert!(!plain.contains_key("_revisions"));
}

pub async fn fixed_ids_and_reserved_ids(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    s.put(&i, &t, obj(json!({"_id": "fixed"}))).await.unwrap();
    assert!(matches!(
        s.put(&i, &t, obj(json!({"_id": "fixed"}))).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        s.put(&i, &t, obj(json!({"_id": "_bad"}))).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(
        s.put(&i, &t, obj(json!({"_id": "_design/ok"})))
            .await
            .is_ok()
    );
    // `_type` is a response decoration, never stored.
    s.put(
        &i,
        &t,
        obj(json!({"_id": "typed", "_type": "io.cozy.notes", "a": 1})),
    )
    .await
    .unwrap();
    assert!(
        !s.get(&i, &t, "typed", GetOptions::default())
            .await
            .unwrap()
            .contains_key("_type")
    );
}

pub async fn bulk_writes(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let first = s
        .put(&i, &t, obj(json!({"_id": "b1", "v": 1})))
        .await
        .unwrap();
    let docs = vec![
        obj(json!({"_id": "b1", "_rev": first.rev.to_string(), "v": 2})),
        obj(json!({"_id": "b1", "v": 3})),
        obj(json!({"v": 4})),
        obj(json!({"_id": "b2", "_rev": "1-0123456789abcdef0123456789abcdef"})),
    ];
    let res = s.bulk(&i, &t, docs, false).await.unwrap();
    assert_eq!(res.len(), 4);
    assert!(matches!(&res[0], BulkResult::Ok(w) if w.id == "b1" && w.rev.generation == 2));
    assert!(matches!(
        &res[1],
        BulkResult::Err {
            error: "conflict",
            ..
        }
    ));
    assert!(matches!(&res[2], BulkResult::Ok(_)));
    assert!(matches!(
        &res[3],
        BulkResult::Err {
            error: "conflict",
            ..
        }
    ));
    assert_eq!(s.count(&i, &t).await.unwrap(), 2);
    let deleted = s.bulk(&i, &t, vec![obj(json!({"_id": "b1", "_rev": match &res[0] { BulkResult::Ok(w) => w.rev.to_string(), _ => unreachable!() }, "_deleted": true}))], false).await.unwrap();
    assert!(matches!(&deleted[0], BulkResult::Ok(w) if w.rev.generation == 3));
    assert_eq!(s.count(&i, &t).await.unwrap(), 1);
}

pub async fn bulk_all_or_nothing(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    s.put(&i, &t, obj(json!({"_id": "x"}))).await.unwrap();
    let res = s
        .bulk(
            &i,
            &t,
            vec![obj(json!({"_id": "y"})), obj(json!({"_id": "x"}))],
            true,
        )
        .await
        .unwrap();
    assert!(matches!(
        &res[0],
        BulkResult::Err {
            error: "aborted",
            ..
        }
    ));
    assert!(matches!(
        &res[1],
        BulkResult::Err {
            error: "conflict",
            ..
        }
    ));
    assert!(
        matches!(
            s.get(&i, &t, "y", GetOptions::default()).await,
            Err(StoreError::NotFound(_))
        ),
        "nothing was written"
    );
    let ok = s
        .bulk(
            &i,
            &t,
            vec![obj(json!({"_id": "y"})), obj(json!({"_id": "z"}))],
            true,
        )
        .await
        .unwrap();
    assert!(ok.iter().all(|r| matches!(r, BulkResult::Ok(_))));
}

pub async fn all_docs_order_and_ranges(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    for id in ["c", "a", "e", "b", "d"] {
        s.put(&i, &t, obj(json!({"_id": id, "name": id})))
            .await
            .unwrap();
    }
    let w = s.get(&i, &t, "e", GetOptions::default()).await.unwrap();
    s.delete(&i, &t, "e", &rev_of(&w)).await.unwrap();
    let all = s
        .all_docs(
            &i,
            &t,
            &AllDocsQuery {
                inclusive_end: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.total_rows, 4);
    assert_eq!(
        all.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    assert!(all.rows.iter().all(|r| r.doc.is_none()));
    let q = AllDocsQuery {
        start_key: Some("b".into()),
        end_key: Some("d".into()),
        inclusive_end: false,
        include_docs: true,
        ..Default::default()
    };
    let range = s.all_docs(&i, &t, &q).await.unwrap();
    assert_eq!(
        range.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(range.rows[0].doc.as_ref().unwrap()["name"], "b");
    let q = AllDocsQuery {
        descending: true,
        limit: Some(2),
        skip: 1,
        inclusive_end: true,
        ..Default::default()
    };
    let desc = s.all_docs(&i, &t, &q).await.unwrap();
    assert_eq!(
        desc.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c", "b"]
    );
    assert_eq!(desc.offset, 1);
    let q = AllDocsQuery {
        keys: Some(vec!["d".into(), "zz".into(), "e".into()]),
        include_docs: true,
        ..Default::default()
    };
    let keyed = s.all_docs(&i, &t, &q).await.unwrap();
    assert_eq!(keyed.rows.len(), 3);
    assert!(keyed.rows[1].rev.is_none(), "unknown key has no revision");
    assert!(keyed.rows[2].deleted && keyed.rows[2].doc.is_none());
}

pub async fn changes_feed(s: Store) {
    let (i, t, other) = (inst("alice"), dt("io.cozy.notes"), dt("io.cozy.todos"));
    let a = s.put(&i, &t, obj(json!({"_id": "a"}))).await.unwrap();
    s.put(&i, &t, obj(json!({"_id": "b"}))).await.unwrap();
    s.put(&i, &other, obj(json!({"_id": "elsewhere"})))
        .await
        .unwrap();
    let now = s
        .changes(
            &i,
            &t,
            &ChangesQuery {
                since: Since::Now,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(now.results.is_empty());
    s.put(
        &i,
        &t,
        obj(json!({"_id": "a", "_rev": a.rev.to_string(), "v": 2})),
    )
    .await
    .unwrap();
    s.put(&i, &t, obj(json!({"_id": "c"}))).await.unwrap();
    let all = s.changes(&i, &t, &ChangesQuery::default()).await.unwrap();
    // One entry per document (its latest change), in sequence order, only this doctype.
    assert_eq!(
        all.results
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["b", "a", "c"]
    );
    assert!(all.results.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all.pending, 0);
    let after = s
        .changes(
            &i,
            &t,
            &ChangesQuery {
                since: Since::Seq(now.last_seq),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        after
            .results
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    let page = s
        .changes(
            &i,
            &t,
            &ChangesQuery {
                limit: Some(1),
                include_docs: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.results.len(), 1);
    assert_eq!(page.pending, 2);
    assert_eq!(page.last_seq, page.results[0].seq);
    assert_eq!(page.results[0].doc.as_ref().unwrap()["_id"], "b");
    let desc = s
        .changes(
            &i,
            &t,
            &ChangesQuery {
                descending: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(desc.results.first().unwrap().id, "c");
}

/// Documents used by the find cases.
async fn people(s: &Store, i: &InstanceId, t: &Doctype) {
    let docs = vec![
        json!({"_id": "p1", "name": "alice", "age": 31, "tags": ["a", "b"], "meta": {"city": "Paris"}}),
        json!({"_id": "p2", "name": "Bob", "age": 25, "tags": ["b"], "meta": {"city": "Lyon"}}),
        json!({"_id": "p3", "name": "carol", "age": 42, "tags": [], "meta": {"city": "Paris"}}),
        json!({"_id": "p4", "name": "dave", "age": null}),
        json!({"_id": "p5", "name": "Eve", "age": "unknown", "tags": ["a"]}),
        json!({"_id": "p6", "age": 25}),
    ];
    s.bulk(i, t, docs.into_iter().map(obj).collect(), true)
        .await
        .unwrap();
}

async fn find_ids(s: &Store, i: &InstanceId, t: &Doctype, q: Value) -> Vec<String> {
    let q = FindQuery::parse(&q).unwrap();
    ids(&s.find(i, t, &q).await.unwrap().docs)
}

pub async fn find_operators(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.people"));
    people(&s, &i, &t).await;
    let cases = [
        (json!({"name": "alice"}), vec!["p1"]),
        (json!({"age": {"$gt": 30}}), vec!["p1", "p3", "p5"]),
        (
            json!({"age": {"$gte": 25, "$lt": 40}}),
            vec!["p1", "p2", "p6"],
        ),
        (
            json!({"age": {"$gt": null}}),
            vec!["p1", "p2", "p3", "p5", "p6"],
        ),
        (json!({"age": {"$type": "null"}}), vec!["p4"]),
        (json!({"name": {"$exists": false}}), vec!["p6"]),
        (json!({"name": {"$in": ["Bob", "Eve"]}}), vec!["p2", "p5"]),
        (
            json!({"name": {"$nin": ["Bob", "Eve"]}}),
            vec!["p1", "p3", "p4"],
        ),
        (json!({"tags": {"$size": 0}}), vec!["p3"]),
        (json!({"tags": {"$all": ["a", "b"]}}), vec!["p1"]),
        (
            json!({"tags": {"$elemMatch": {"$eq": "a"}}}),
            vec!["p1", "p5"],
        ),
        (json!({"meta.city": "Paris"}), vec!["p1", "p3"]),
        (json!({"name": {"$regex": "^[A-Z]"}}), vec!["p2", "p5"]),
        (
            json!({"$or": [{"age": 25}, {"name": "carol"}]}),
            vec!["p2", "p3", "p6"],
        ),
        (
            json!({"$not": {"meta.city": "Paris"}}),
            vec!["p2", "p4", "p5", "p6"],
        ),
        (json!({"age": {"$mod": [5, 0]}}), vec!["p2", "p6"]),
        (json!({"_id": {"$gt": "p4"}}), vec!["p5", "p6"]),
    ];
    for (sel, expect) in cases {
        let got = find_ids(&s, &i, &t, json!({"selector": sel.clone()})).await;
        assert_eq!(got, expect, "selector {sel}");
    }
}

pub async fn find_sort_limit_skip_bookmark(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.people"));
    people(&s, &i, &t).await;
    // Sorted by name: documents without a name are not returned; collation is
    // case-insensitive first.
    let sorted = find_ids(&s, &i, &t, json!({"selector": {}, "sort": ["name"]})).await;
    assert_eq!(sorted, ["p1", "p2", "p3", "p4", "p5"]);
    let desc = find_ids(
        &s,
        &i,
        &t,
        json!({"selector": {}, "sort": [{"name": "desc"}]}),
    )
    .await;
    assert_eq!(desc, ["p5", "p4", "p3", "p2", "p1"]);
    let page = find_ids(
        &s,
        &i,
        &t,
        json!({"selector": {}, "sort": ["name"], "limit": 2, "skip": 1}),
    )
    .await;
    assert_eq!(page, ["p2", "p3"]);
    // Following bookmarks walks the whole result once, with or without an index.
    for with_index in [false, true] {
        if with_index {
            s.create_index(
                &i,
                &t,
                IndexDef::parse(&json!({"index": {"fields": ["name"]}})).unwrap(),
            )
            .await
            .unwrap();
        }
        let mut seen = Vec::new();
        let mut bookmark = String::new();
        for _ in 0..10 {
            let q = FindQuery::parse(&json!({"selector": {"name": {"$gt": null}}, "sort": ["name"], "limit": 2, "bookmark": bookmark})).unwrap();
            let r = s.find(&i, &t, &q).await.unwrap();
            if r.docs.is_empty() {
                break;
            }
            seen.extend(ids(&r.docs));
            bookmark = r.bookmark;
        }
        assert_eq!(
            seen,
            ["p1", "p2", "p3", "p4", "p5"],
            "with index: {with_index}"
        );
    }
    // Paging without sort (id order) works too.
    let q = FindQuery::parse(&json!({"selector": {"age": {"$gt": null}}, "limit": 3})).unwrap();
    let first = s.find(&i, &t, &q).await.unwrap();
    let q2 = FindQuery {
        bookmark: Some(first.bookmark.clone()),
        ..q
    };
    let second = s.find(&i, &t, &q2).await.unwrap();
    assert_eq!(
        [ids(&first.docs), ids(&second.docs)].concat(),
        ["p1", "p2", "p3", "p5", "p6"]
    );
}

pub async fn find_uses_index_same_results(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.people"));
    people(&s, &i, &t).await;
    let queries = [
        json!({"selector": {"age": {"$gt": 20}}, "sort": ["age"]}),
        json!({"selector": {"age": {"$lt": 30}}, "sort": [{"age": "desc"}]}),
        json!({"selector": {"age": 25}}),
        json!({"selector": {"age": {"$gte": 25, "$lte": 31}, "name": {"$exists": true}}}),
        json!({"selector": {"meta.city": "Paris"}, "sort": ["meta.city"]}),
    ];
    let mut before = Vec::new();
    for q in &queries {
        before.push(find_ids(&s, &i, &t, q.clone()).await);
    }
    s.create_index(
        &i,
        &t,
        IndexDef::parse(&json!({"index": {"fields": ["age"]}})).unwrap(),
    )
    .await
    .unwrap();
    s.create_index(
        &i,
        &t,
        IndexDef::parse(&json!({"index": {"fields": ["meta.city"]}})).unwrap(),
    )
    .await
    .unwrap();
    for (q, expect) in queries.iter().zip(before) {
        let parsed = FindQuery::parse(q).unwrap();
        let r = s.find(&i, &t, &parsed).await.unwrap();
        assert!(r.index.is_some(), "query {q} should use an index");
        let (mut got, mut expect) = (ids(&r.docs), expect);
        if parsed.sort.is_empty() {
            // Without a sort, the order is the index's: compare as sets.
            got.sort();
            expect.sort();
        }
        assert_eq!(got, expect, "query {q}");
    }
    assert_eq!(
        find_ids(&s, &i, &t, queries[0].clone()).await,
        ["p2", "p6", "p1", "p3", "p5"]
    );
}

pub async fn find_fields_projection(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.people"));
    people(&s, &i, &t).await;
    let q = FindQuery::parse(
        &json!({"selector": {"_id": "p1"}, "fields": ["_id", "meta.city", "nope"]}),
    )
    .unwrap();
    let r = s.find(&i, &t, &q).await.unwrap();
    assert_eq!(
        Value::Object(r.docs[0].clone()),
        json!({"_id": "p1", "meta": {"city": "Paris"}})
    );
}

pub async fn find_collation_order(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.mixed"));
    let values = [
        json!(null),
        json!(false),
        json!(true),
        json!(-1),
        json!(2.5),
        json!("a"),
        json!("B"),
        json!("c"),
        json!([1]),
        json!({"k": 1}),
    ];
    let docs: Vec<JsonMap> = values
        .iter()
        .enumerate()
        .rev()
        .map(|(n, v)| obj(json!({"_id": format!("m{n}"), "v": v})))
        .collect();
    s.bulk(&i, &t, docs, true).await.unwrap();
    let expect: Vec<String> = (0..values.len()).map(|n| format!("m{n}")).collect();
    assert_eq!(
        find_ids(&s, &i, &t, json!({"selector": {}, "sort": ["v"]})).await,
        expect
    );
    s.create_index(
        &i,
        &t,
        IndexDef::parse(&json!({"index": {"fields": ["v"]}})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        find_ids(&s, &i, &t, json!({"selector": {}, "sort": ["v"]})).await,
        expect
    );
    assert_eq!(
        find_ids(
            &s,
            &i,
            &t,
            json!({"selector": {"v": {"$gt": 2.5}}, "sort": ["v"]})
        )
        .await,
        expect[5..]
    );
}

pub async fn create_index_idempotent(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.fresh"));
    let def = IndexDef::parse(&json!({"index": {"fields": ["a", "b"]}, "ddoc": "mine"})).unwrap();
    let first = s.create_index(&i, &t, def.clone()).await.unwrap();
    assert!(first.created);
    assert_eq!(first.ddoc, "mine");
    assert!(!s.create_index(&i, &t, def.clone()).await.unwrap().created);
    assert_eq!(s.list_indexes(&i, &t).await.unwrap(), vec![def]);
    assert_eq!(
        s.doctypes(&i).await.unwrap(),
        vec![t.clone()],
        "creating an index creates the doctype"
    );
    s.delete_index(&i, &t, "mine").await.unwrap();
    assert!(s.list_indexes(&i, &t).await.unwrap().is_empty());
    assert!(matches!(
        s.delete_index(&i, &t, "mine").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn instances_are_isolated(s: Store) {
    let (a, b, t) = (inst("alice"), inst("bob"), dt("io.cozy.notes"));
    s.put(&a, &t, obj(json!({"_id": "same", "owner": "alice"})))
        .await
        .unwrap();
    s.put(&b, &t, obj(json!({"_id": "same", "owner": "bob"})))
        .await
        .unwrap();
    assert_eq!(
        s.get(&a, &t, "same", GetOptions::default()).await.unwrap()["owner"],
        "alice"
    );
    assert_eq!(
        s.get(&b, &t, "same", GetOptions::default()).await.unwrap()["owner"],
        "bob"
    );
    s.destroy_instance(&a).await.unwrap();
    assert!(s.get(&a, &t, "same", GetOptions::default()).await.is_err());
    assert_eq!(
        s.get(&b, &t, "same", GetOptions::default()).await.unwrap()["owner"],
        "bob"
    );
}

pub async fn missing_doctype(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.nothing"));
    let nodb = |r: Result<(), StoreError>| {
        assert!(
            matches!(r, Err(StoreError::NotFound(NotFoundReason::NoDatabase))),
            "{r:?}"
        )
    };
    nodb(s.get(&i, &t, "x", GetOptions::default()).await.map(drop));
    nodb(
        s.find(&i, &t, &FindQuery::parse(&json!({"selector": {}})).unwrap())
            .await
            .map(drop),
    );
    nodb(s.changes(&i, &t, &ChangesQuery::default()).await.map(drop));
    nodb(s.all_docs(&i, &t, &AllDocsQuery::default()).await.map(drop));
    assert_eq!(s.count(&i, &t).await.unwrap(), 0);
    assert!(s.doctypes(&i).await.unwrap().is_empty());
}

pub async fn delete_doctype_and_destroy_instance(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    s.put(&i, &t, obj(json!({"_id": "a"}))).await.unwrap();
    s.delete_doctype(&i, &t).await.unwrap();
    assert!(matches!(
        s.get(&i, &t, "a", GetOptions::default()).await,
        Err(StoreError::NotFound(NotFoundReason::NoDatabase))
    ));
    assert!(matches!(
        s.delete_doctype(&i, &t).await,
        Err(StoreError::NotFound(_))
    ));
    s.put(&i, &t, obj(json!({"_id": "a"}))).await.unwrap();
    // Recreated, the doctype is empty but for the new document (no stale cached schema).
    assert_eq!(
        s.get(&i, &t, "a", GetOptions::default()).await.unwrap()["_id"],
        "a"
    );
    assert_eq!(s.count(&i, &t).await.unwrap(), 1);
    s.destroy_instance(&i).await.unwrap();
    s.destroy_instance(&i).await.unwrap();
    assert!(s.doctypes(&i).await.unwrap().is_empty());
    s.health().await.unwrap();
}

pub async fn bad_input_is_refused(s: Store) {
    let (i, t) = (inst("alice"), dt("io.cozy.notes"));
    let bad =
        |r: Result<(), StoreError>| assert!(matches!(r, Err(StoreError::InvalidInput(_))), "{r:?}");
    bad(s
        .put(&i, &t, obj(json!({"_id": "x", "_rev": "banana"})))
        .await
        .map(drop));
    bad(s.put(&i, &t, obj(json!({"_id": 12}))).await.map(drop));
    s.put(&i, &t, obj(json!({"_id": "x"}))).await.unwrap();
    let q = FindQuery {
        bookmark: Some("garbage!".into()),
        ..FindQuery::parse(&json!({"selector": {}})).unwrap()
    };
    bad(s.find(&i, &t, &q).await.map(drop));
    let quote = IndexDef::parse(&json!({"index": {"fields": ["a\"b"]}})).unwrap();
    bad(s.create_index(&i, &t, quote).await.map(drop));
    assert_eq!(
        s.count(&i, &t).await.unwrap(),
        1,
        "nothing else was written"
    );
}

pub async fn bulk_many_and_create_indexes_are_atomic(s: Store) {
    let (i, a, b) = (inst("alice"), dt("io.cozy.a"), dt("io.cozy.b"));
    s.put(&i, &b, obj(json!({"_id": "taken"}))).await.unwrap();
    let groups = vec![
        (a.clone(), vec![obj(json!({"_id": "x"}))]),
        (b.clone(), vec![obj(json!({"_id": "taken"}))]),
    ];
    let res = s.bulk_many(&i, groups).await.unwrap();
    assert!(matches!(&res[1][0], BulkResult::Err { .. }));
    assert!(
        s.get(&i, &a, "x", GetOptions::default()).await.is_err(),
        "nothing written when one fails"
    );
    let groups = vec![
        (a.clone(), vec![obj(json!({"_id": "x"}))]),
        (b.clone(), vec![obj(json!({"_id": "y"}))]),
    ];
    let res = s.bulk_many(&i, groups).await.unwrap();
    assert!(res.iter().flatten().all(|r| matches!(r, BulkResult::Ok(_))));
    assert_eq!(s.count(&i, &a).await.unwrap(), 1);
    let defs = vec![
        (
            a.clone(),
            IndexDef::parse(&json!({"index": {"fields": ["f"]}})).unwrap(),
        ),
        (
            b.clone(),
            IndexDef::parse(&json!({"index": {"fields": ["g"]}})).unwrap(),
        ),
    ];
    let created = s.create_indexes(&i, defs).await.unwrap();
    assert!(created.iter().all(|c| c.created));
    assert_eq!(s.list_indexes(&i, &b).await.unwrap().len(), 1);
    let bad = vec![
        (
            a.clone(),
            IndexDef::parse(&json!({"index": {"fields": ["h"]}})).unwrap(),
        ),
        (
            b.clone(),
            IndexDef::parse(&json!({"index": {"fields": ["q\"uote"]}})).unwrap(),
        ),
    ];
    assert!(s.create_indexes(&i, bad).await.is_err());
    assert_eq!(
        s.list_indexes(&i, &a).await.unwrap().len(),
        1,
        "no index of a failed batch is kept"
    );
}

// ---------------------------------------------------------------------------------
// Property tests: revisions against a model, Mango against a naive evaluator.
// ---------------------------------------------------------------------------------

pub async fn restore_keeps_revisions(s: Store) {
    let (from, to, t) = (inst("alice"), inst("bob"), dt("io.cozy.notes"));
    let mut rev = s
        .put(&from, &t, obj(json!({"_id": "a", "v": 0})))
        .await
        .unwrap()
        .rev;
    for v in 1..3 {
        rev = s
            .put(
                &from,
                &t,
                obj(json!({"_id": "a", "_rev": rev.to_string(), "v": v})),
            )
            .await
            .unwrap()
            .rev;
    }
    let original = s
        .get(&from, &t, "a", GetOptions { revs: true })
        .await
        .unwrap();
    let tomb_rev = "2-0123456789abcdef0123456789abcdef";
    let tomb = obj(json!({"_id": "gone", "_rev": tomb_rev, "_deleted": true}));
    let plain = obj(json!({"_id": "b", "_rev": "7-00000000000000000000000000000007", "w": 1}));
    s.restore(&to, &t, vec![original.clone(), tomb.clone(), plain.clone()])
        .await
        .unwrap();
    // The same revision and history, not a new one.
    let copy = s
        .get(&to, &t, "a", GetOptions { revs: true })
        .await
        .unwrap();
    assert_eq!(copy, original);
    let b = s
        .get(&to, &t, "b", GetOptions { revs: true })
        .await
        .unwrap();
    assert_eq!(b["_rev"], json!("7-00000000000000000000000000000007"));
    assert_eq!(b["w"], json!(1));
    assert_eq!(
        b["_revisions"],
        json!({"start": 7, "ids": ["00000000000000000000000000000007"]})
    );
    assert!(matches!(
        s.get(&to, &t, "gone", GetOptions::default()).await,
        Err(StoreError::NotFound(NotFoundReason::Deleted))
    ));
    assert_eq!(s.count(&to, &t).await.unwrap(), 2);
    let changes = s.changes(&to, &t, &ChangesQuery::default()).await.unwrap();
    assert_eq!(changes.results.len(), 3);
    assert!(changes.results.iter().any(|c| c.id == "gone" && c.deleted));

    // Again: nothing is written.
    s.restore(&to, &t, vec![original.clone(), tomb, plain])
        .await
        .unwrap();
    let again = s.changes(&to, &t, &ChangesQuery::default()).await.unwrap();
    assert_eq!(again.last_seq, changes.last_seq);
    assert_eq!(s.count(&to, &t).await.unwrap(), 2);

    // A later revision replaces the copy; the copy accepts ordinary writes after it.
    let newer = s
        .put(
            &from,
            &t,
            obj(json!({"_id": "a", "_rev": rev.to_string(), "v": 9})),
        )
        .await
        .unwrap()
        .rev;
    let newer_doc = s
        .get(&from, &t, "a", GetOptions { revs: true })
        .await
        .unwrap();
    s.restore(&to, &t, vec![newer_doc]).await.unwrap();
    let copy = s.get(&to, &t, "a", GetOptions::default()).await.unwrap();
    assert_eq!(rev_of(&copy), newer);
    let next = s
        .put(
            &to,
            &t,
            obj(json!({"_id": "a", "_rev": newer.to_string(), "v": 10})),
        )
        .await
        .unwrap();
    assert_eq!(next.rev.generation, 5);
    assert!(matches!(
        s.put(
            &to,
            &t,
            obj(json!({"_id": "a", "_rev": rev.to_string(), "v": 0}))
        )
        .await,
        Err(StoreError::Conflict)
    ));
    let history = s
        .get(&to, &t, "a", GetOptions { revs: true })
        .await
        .unwrap();
    assert_eq!(history["_revisions"]["ids"].as_array().unwrap().len(), 5);

    // A live document over a tombstone, and a tombstone over a live document.
    s.restore(
        &to,
        &t,
        vec![
            obj(json!({"_id": "gone", "_rev": "3-0123456789abcdef0123456789abcdef", "back": true})),
            obj(
                json!({"_id": "b", "_rev": "8-00000000000000000000000000000008", "_deleted": true}),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        s.get(&to, &t, "gone", GetOptions::default()).await.unwrap()["back"],
        json!(true)
    );
    assert!(matches!(
        s.get(&to, &t, "b", GetOptions::default()).await,
        Err(StoreError::NotFound(NotFoundReason::Deleted))
    ));
    assert_eq!(s.count(&to, &t).await.unwrap(), 2);

    // Bad input writes nothing, even the valid documents of the call.
    let before = s.changes(&to, &t, &ChangesQuery::default()).await.unwrap();
    for bad in [
        obj(json!({"_id": "x"})),
        obj(json!({"_rev": "1-0123456789abcdef0123456789abcdef"})),
        obj(
            json!({"_id": "x", "_rev": "2-0123456789abcdef0123456789abcdef",
                   "_revisions": {"start": 2, "ids": ["ffffffffffffffffffffffffffffffff"]}}),
        ),
        obj(
            json!({"_id": "x", "_rev": "2-0123456789abcdef0123456789abcdef",
                   "_revisions": {"start": 2, "ids": ["0123456789abcdef0123456789abcdef", "nothex"]}}),
        ),
        obj(json!({"_id": "_x", "_rev": "1-0123456789abcdef0123456789abcdef"})),
    ] {
        let valid = obj(json!({"_id": "y", "_rev": "1-0123456789abcdef0123456789abcdef"}));
        assert!(
            matches!(
                s.restore(&to, &t, vec![valid, bad.clone()]).await,
                Err(StoreError::InvalidInput(_))
            ),
            "{bad:?}"
        );
    }
    let after = s.changes(&to, &t, &ChangesQuery::default()).await.unwrap();
    assert_eq!(after.last_seq, before.last_seq);
    assert!(matches!(
        s.get(&to, &t, "y", GetOptions::default()).await,
        Err(StoreError::NotFound(_))
    ));
    // The source instance is untouched.
    assert_eq!(s.count(&from, &t).await.unwrap(), 1);
}

/// The naive evaluator: filter every document with the matcher, drop those lacking a
/// sort field, order by collation keys then id, then skip and limit.
pub fn naive_find(docs: &[JsonMap], q: &FindQuery) -> Vec<JsonMap> {
    let mut hits: Vec<(Vec<Vec<u8>>, &JsonMap)> = docs
        .iter()
        .filter(|d| q.selector.matches(&Value::Object((*d).clone())))
        .filter_map(|d| q.sort_keys(d).map(|k| (k, d)))
        .collect();
    hits.sort_by(|(ka, a), (kb, b)| {
        ka.cmp(kb)
            .then_with(|| a["_id"].as_str().cmp(&b["_id"].as_str()))
    });
    if q.direction == Direction::Desc {
        hits.reverse();
    }
    hits.into_iter()
        .skip(q.skip)
        .take(q.limit.unwrap_or(usize::MAX))
        .map(|(_, d)| d.clone())
        .collect()
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..3).prop_map(|n| json!(n)),
        (-2i64..2).prop_map(|n| json!(n as f64 + 0.5)),
        "[aB]{0,1}".prop_map(Value::String),
        prop::collection::vec((-1i64..1).prop_map(|n| json!(n)), 0..2).prop_map(Value::Array),
    ]
}

fn arb_doc() -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::btree_map(
        prop_oneof![Just("a".to_owned()), Just("b".to_owned())],
        arb_value(),
        0..3,
    )
}

fn arb_selector() -> impl Strategy<Value = Value> {
    let field = prop_oneof![Just("a"), Just("b")];
    let op = prop_oneof![
        Just("$eq"),
        Just("$ne"),
        Just("$gt"),
        Just("$gte"),
        Just("$lt"),
        Just("$lte")
    ];
    let leaf = prop_oneof![
        (field.clone(), op, arb_value()).prop_map(|(f, op, v)| json!({f: {op: v}})),
        (field.clone(), any::<bool>()).prop_map(|(f, e)| json!({f: {"$exists": e}})),
        (field.clone(), prop::collection::vec(arb_value(), 0..3))
            .prop_map(|(f, v)| json!({f: {"$in": v}})),
        Just(json!({})),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$and": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$or": v})),
            inner.prop_map(|v| json!({"$not": v})),
        ]
    })
}

fn arb_query() -> impl Strategy<Value = (Value, Vec<&'static str>, bool, usize)> {
    let field = prop_oneof![Just("a"), Just("b")];
    let op = prop_oneof![
        Just("$eq"),
        Just("$gt"),
        Just("$gte"),
        Just("$lt"),
        Just("$lte"),
        Just("$exists")
    ];
    // Half of the selectors start with a range condition on a field, the kind an index serves.
    let ranged = (field, op, arb_value(), arb_selector()).prop_map(|(f, op, v, rest)| {
        let v = if op == "$exists" { json!(true) } else { v };
        json!({"$and": [{f: {op: v}}, rest]})
    });
    (
        prop_oneof![ranged, arb_selector()],
        prop_oneof![
            Just(vec![]),
            Just(vec!["a"]),
            Just(vec!["b"]),
            Just(vec!["a", "b"])
        ],
        any::<bool>(),
        1usize..6,
    )
}

/// Mango on the store agrees with the naive evaluator, for random documents, selectors
/// and sorts, with and without indexes, through bookmark pagination.
pub fn mango_matches_naive_evaluator(make: impl Fn() -> Store) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (
        prop::collection::vec(arb_doc(), 0..25),
        any::<bool>(),
        prop::collection::vec(arb_query(), 1..10),
    );
    runner
        .run(&strategy, |(docs, indexed, queries)| {
            let store = make();
            let (i, t) = (inst("prop"), dt("io.cozy.prop"));
            let docs: Vec<JsonMap> = docs
                .into_iter()
                .enumerate()
                .map(|(n, d)| {
                    let mut m = JsonMap::new();
                    m.insert("_id".into(), Value::String(format!("d{n:02}")));
                    m.extend(d);
                    m
                })
                .collect();
            let stored: Vec<JsonMap> = rt.block_on(async {
                store.bulk(&i, &t, docs, true).await.expect("bulk");
                if indexed {
                    for fields in [json!(["a"]), json!(["b"]), json!(["a", "b"])] {
                        let def =
                            IndexDef::parse(&json!({"index": {"fields": fields}})).expect("def");
                        store.create_index(&i, &t, def).await.expect("index");
                    }
                }
                let all = store
                    .all_docs(
                        &i,
                        &t,
                        &AllDocsQuery {
                            include_docs: true,
                            inclusive_end: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("all_docs");
                all.rows.into_iter().filter_map(|r| r.doc).collect()
            });
            for (selector, sort, desc, page) in queries {
                let sort_json: Vec<Value> = sort
                    .iter()
                    .map(|f| json!({*f: if desc { "desc" } else { "asc" }}))
                    .collect();
                let q = FindQuery::parse(&json!({"selector": selector, "sort": sort_json}))
                    .expect("query parses");
                let (got, index) = rt.block_on(async {
                    let mut all = Vec::new();
                    let mut bookmark = None;
                    let mut index;
                    loop {
                        let page_q = FindQuery {
                            limit: Some(page),
                            bookmark: bookmark.clone(),
                            ..q.clone()
                        };
                        let r = store.find(&i, &t, &page_q).await.expect("find");
                        let n = r.docs.len();
                        all.extend(r.docs);
                        index = r.index;
                        if n < page {
                            break;
                        }
                        bookmark = Some(r.bookmark);
                    }
                    (all, index)
                });
                let mut expect = ids(&naive_find(&stored, &q));
                let mut got = ids(&got);
                if sort.is_empty() {
                    // Without a sort, the order depends on the index used: compare as sets.
                    expect.sort();
                    got.sort();
                }
                prop_assert_eq!(
                    got,
                    expect,
                    "selector {} sort {:?} desc {} index {:?}",
                    q_sel(&q),
                    sort,
                    desc,
                    index
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

fn q_sel(q: &FindQuery) -> String {
    format!("{:?}", q.selector)
}

#[derive(Debug, Clone)]
enum RevOp {
    Create(u8),
    UpdateCurrent(u8),
    UpdateStale(u8),
    Delete(u8),
}

/// Random sequences of creates, updates (current and stale revisions) and deletes
/// agree with a model of what CouchDB revisions mean.
pub fn revisions_match_model(make: impl Fn() -> Store) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let op = prop_oneof![
        (0u8..4).prop_map(RevOp::Create),
        (0u8..4).prop_map(RevOp::UpdateCurrent),
        (0u8..4).prop_map(RevOp::UpdateStale),
        (0u8..4).prop_map(RevOp::Delete),
    ];
    runner
        .run(&prop::collection::vec(op, 1..30), |ops| {
            let store = make();
            let (i, t) = (inst("revs"), dt("io.cozy.revs"));
            // Model: id -> (current rev, deleted, all revs seen).
            let mut model: BTreeMap<String, (Rev, bool, Vec<Rev>)> = BTreeMap::new();
            rt.block_on(async {
                for op in ops {
                    match op {
                        RevOp::Create(n) => {
                            let id = format!("k{n}");
                            let r = store.put(&i, &t, obj(json!({"_id": id, "v": 0}))).await;
                            match model.get(&id) {
                                Some((_, false, _)) => assert!(matches!(r, Err(StoreError::Conflict)), "create over live doc"),
                                prev => {
                                    let w = r.expect("create");
                                    let generation = prev.map_or(1, |(rev, _, _)| rev.generation + 1);
                                    assert_eq!(w.rev.generation, generation);
                                    let mut seen = prev.map(|p| p.2.clone()).unwrap_or_default();
                                    seen.push(w.rev.clone());
                                    model.insert(id, (w.rev, false, seen));
                                }
                            }
                        }
                        RevOp::UpdateCurrent(n) | RevOp::UpdateStale(n) => {
                            let id = format!("k{n}");
                            let stale = matches!(op, RevOp::UpdateStale(_));
                            let Some((cur, deleted, seen)) = model.get(&id).cloned() else { continue };
                            if stale && seen.len() < 2 {
                                continue;
                            }
                            let rev = if stale { seen[seen.len() - 2].clone() } else { cur.clone() };
                            let r = store.put(&i, &t, obj(json!({"_id": id, "_rev": rev.to_string(), "v": seen.len()}))).await;
                            if stale {
                                assert!(matches!(r, Err(StoreError::Conflict)), "stale rev must conflict");
                            } else {
                                let w = r.expect("update");
                                assert_eq!(w.rev.generation, cur.generation + 1);
                                let mut seen = seen;
                                seen.push(w.rev.clone());
                                let _ = deleted;
                                model.insert(id, (w.rev, false, seen));
                            }
                        }
                        RevOp::Delete(n) => {
                            let id = format!("k{n}");
                            let Some((cur, deleted, seen)) = model.get(&id).cloned() else { continue };
                            let r = store.delete(&i, &t, &id, &cur).await;
                            if deleted {
                                assert!(r.is_err(), "deleting a tombstone fails");
                            } else {
                                let rev = r.expect("delete");
                                let mut seen = seen;
                                seen.push(rev.clone());
                                model.insert(id, (rev, true, seen));
                            }
                        }
                    }
                }
                for (id, (rev, deleted, seen)) in &model {
                    match store.get(&i, &t, id, GetOptions { revs: true }).await {
                        Ok(doc) => {
                            assert!(!deleted);
                            assert_eq!(&rev_of(&doc), rev);
                            let history: Vec<String> = seen.iter().rev().map(|r| r.hash.clone()).collect();
                            assert_eq!(doc["_revisions"]["ids"], json!(history));
                        }
                        Err(StoreError::NotFound(NotFoundReason::Deleted)) => assert!(deleted),
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                let live = model.values().filter(|(_, d, _)| !d).count() as u64;
                if !model.is_empty() {
                    assert_eq!(store.count(&i, &t).await.expect("count"), live);
                }
            });
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Keeps `collate` referenced from the testkit's public surface for backends' tests.
pub fn sort_key(v: &Value) -> Vec<u8> {
    collate::sort_key(v)
}
