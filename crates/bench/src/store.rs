//! The document store against raw `rusqlite` doing the same work: the same JSON
//! documents serialized or parsed, the same pragmas (WAL, synchronous=FULL, mmap, page
//! cache), the same disk. Each scenario alternates baseline and Hearth runs and keeps
//! the median of each, so that a noisy neighbour hurts both sides alike.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_store::{
    DocStore, GetOptions,
    mango::{FindQuery, IndexDef},
};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::{Row, print_table};

pub(crate) const REPS: usize = 5;
pub(crate) const SINGLE_INSERTS: usize = 500;
pub(crate) const GETS: usize = 20_000;
const FINDS: usize = 500;

pub(crate) fn finds() -> usize {
    std::env::var("BENCH_FINDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FINDS)
}
/// Distinct values of the indexed field: an indexed find returns docs/GROUPS documents.
pub(crate) const GROUPS: usize = 1_000;

pub(crate) fn doc(n: usize) -> JsonMap {
    let v = json!({
        "_id": format!("{n:08x}"),
        "name": format!("photo-{n}.jpg"),
        "group": format!("g{:04}", n % GROUPS),
        "size": n * 37 % 100_000,
        "tags": ["family", "summer"],
        "metadata": {"width": 4000, "height": 3000, "datetime": "2024-07-01T12:00:00Z"},
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

fn raw_open(path: &std::path::Path) -> anyhow::Result<Connection> {
    let c = Connection::open(path)?;
    // The same pragmas as Hearth's connections, so the ratio is Hearth's own overhead.
    c.execute_batch(&hearth_store_sqlite::pragmas(true))?;
    c.execute_batch("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, data TEXT NOT NULL)")?;
    Ok(c)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `baseline(rep)` and `ours(rep)` alternately `REPS` times; the medians.
pub(crate) fn measure(
    mut baseline: impl FnMut(usize) -> anyhow::Result<()>,
    mut ours: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut b, mut o) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        let start = Instant::now();
        baseline(rep)?;
        b.push(start.elapsed());
        let start = Instant::now();
        ours(rep)?;
        o.push(start.elapsed());
    }
    Ok((median(o), median(b)))
}

pub(crate) fn run(n_docs: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let store: Arc<dyn DocStore> = Arc::new(SqliteStore::open(
        dir.path().join("hearth"),
        SqliteOptions::default(),
    )?);
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    let inst = InstanceId::new("bench")?;
    let mut rows = Vec::new();

    // 1. Single-document inserts, one transaction (one fsync) each.
    let docs: Vec<JsonMap> = (0..SINGLE_INSERTS).map(doc).collect();
    // One file for all repetitions, as Hearth uses one file per instance: a fresh file's
    // first commits cost more (the WAL grows), which would favour one side.
    let raw_single = raw_open(&raw_dir.join("single.sqlite"))?;
    for rep in 0..REPS {
        raw_single.execute_batch(&format!(
            "CREATE TABLE single{rep} (id TEXT PRIMARY KEY, data TEXT NOT NULL)"
        ))?;
    }
    let (ours, baseline) = measure(
        |rep| {
            let mut stmt = raw_single.prepare(&format!(
                "INSERT INTO single{rep} (id, data) VALUES (?1, ?2)"
            ))?;
            for d in &docs {
                let id = d["_id"].as_str().unwrap_or_default();
                stmt.execute(params![id, serde_json::to_string(d)?])?;
            }
            Ok(())
        },
        |rep| {
            let dt = Doctype::new(format!("io.cozy.single{rep}"))?;
            rt.block_on(async {
                for d in &docs {
                    store.put(&inst, &dt, d.clone()).await?;
                }
                Ok(())
            })
        },
    )?;
    rows.push(Row {
        scenario: "insert one document (own transaction)".into(),
        ops: SINGLE_INSERTS,
        ours,
        baseline,
    });

    // 2. Bulk insert of n_docs in one transaction. Both sides receive the documents and
    // are done with them (freeing them) in the timed region, as a server would be.
    let template: Vec<JsonMap> = (0..n_docs).map(doc).collect();
    let mut raw_batches: Vec<Vec<JsonMap>> = (0..REPS).map(|_| template.clone()).collect();
    let mut our_batches = raw_batches.clone();
    let mut raw_bulk = (0..REPS)
        .map(|rep| raw_open(&raw_dir.join(format!("bulk{rep}.sqlite"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (ours, baseline) = measure(
        |rep| {
            let raw = &mut raw_bulk[rep];
            let tx = raw.transaction()?;
            {
                let mut stmt = tx.prepare("INSERT INTO docs (id, data) VALUES (?1, ?2)")?;
                for d in raw_batches.pop().unwrap_or_default() {
                    let id = d["_id"].as_str().unwrap_or_default();
                    stmt.execute(params![id, serde_json::to_string(&d)?])?;
                }
            }
            tx.commit()?;
            Ok(())
        },
        |rep| {
            let dt = Doctype::new(format!("io.cozy.bulk{rep}"))?;
            let docs = our_batches.pop().unwrap_or_default();
            let results = rt.block_on(store.bulk(&inst, &dt, docs, true))?;
            anyhow::ensure!(
                results.len() == n_docs,
                "bulk wrote {} documents",
                results.len()
            );
            Ok(())
        },
    )?;
    rows.push(Row {
        scenario: format!("bulk insert {n_docs} documents"),
        ops: n_docs,
        ours,
        baseline,
    });

    // The read scenarios use the first bulk-loaded table on each side, caches warmed by
    // one untimed pass, as in a server's steady state.
    drop(raw_single);
    let raw = raw_bulk.swap_remove(0);
    drop(raw_bulk);
    let dt = Doctype::new("io.cozy.bulk0")?;

    // 3. Get by id (spread ids, parsed JSON out).
    let ids: Vec<String> = (0..GETS)
        .map(|i| format!("{:08x}", (i * 7919) % n_docs))
        .collect();
    let raw_get = |_| {
        let mut stmt = raw.prepare_cached("SELECT data FROM docs WHERE id = ?1")?;
        for id in &ids {
            let data: String = stmt.query_row([id], |r| r.get(0))?;
            let v: JsonMap = serde_json::from_str(&data)?;
            anyhow::ensure!(!v.is_empty());
        }
        Ok(())
    };
    let our_get = |_| {
        rt.block_on(async {
            for id in &ids {
                let d = store.get(&inst, &dt, id, GetOptions::default()).await?;
                anyhow::ensure!(!d.is_empty());
            }
            Ok(())
        })
    };
    raw_get(0)?;
    our_get(0)?;
    let (ours, baseline) = measure(raw_get, our_get)?;
    rows.push(Row {
        scenario: "get one document by id".into(),
        ops: GETS,
        ours,
        baseline,
    });

    // 4. Indexed find: equality on an indexed field, sorted by id, docs/GROUPS results.
    raw.execute_batch(
        "CREATE INDEX IF NOT EXISTS docs_group ON docs (json_extract(data, '$.group'))",
    )?;
    rt.block_on(store.create_index(
        &inst,
        &dt,
        IndexDef::parse(&json!({"index": {"fields": ["group"]}}))?,
    ))?;
    let groups: Vec<String> = (0..finds())
        .map(|i| format!("g{:04}", (i * 31) % GROUPS))
        .collect();
    let per_query = n_docs / GROUPS;
    let raw_find = |_| {
        let mut stmt = raw.prepare_cached(
            "SELECT id, data FROM docs WHERE json_extract(data, '$.group') = ?1 ORDER BY id",
        )?;
        for g in &groups {
            let mut found = 0;
            let mut rows = stmt.query([g])?;
            while let Some(r) = rows.next()? {
                let _id: String = r.get(0)?;
                let v: JsonMap = serde_json::from_str(r.get_ref(1)?.as_str()?)?;
                found += usize::from(!v.is_empty());
            }
            anyhow::ensure!(found == per_query, "raw find returned {found}");
        }
        Ok(())
    };
    let our_find = |_| {
        rt.block_on(async {
            for g in &groups {
                let q = FindQuery::parse(&json!({"selector": {"group": g}}))?;
                let r = store.find(&inst, &dt, &q).await?;
                anyhow::ensure!(r.docs.len() == per_query, "find returned {}", r.docs.len());
                anyhow::ensure!(r.index.is_some(), "find did not use the index");
            }
            Ok(())
        })
    };
    raw_find(0)?;
    our_find(0)?;
    let (ours, baseline) = measure(raw_find, our_find)?;
    rows.push(Row {
        scenario: format!("indexed find ({per_query} of {n_docs} documents)"),
        ops: finds(),
        ours,
        baseline,
    });

    print_table(
        &format!(
            "Document store: Hearth SQLite store vs raw rusqlite (median of {REPS}, {} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        "raw rusqlite",
        &rows,
    );
    Ok(())
}
