//! The PostgreSQL document store against raw `tokio-postgres` doing the same work on
//! the same server: the same JSON documents serialized or parsed, `jsonb` columns, an
//! expression index for the find. Scenarios and documents are those of `store.rs`.
//!
//! The server comes from `HEARTH_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); both sides work in schemas of their own,
//! dropped at the end.

use std::sync::Arc;

use hearth_core::{Doctype, InstanceId, JsonMap, random_hex};
use hearth_store::{
    DocStore, GetOptions,
    mango::{FindQuery, IndexDef},
};
use hearth_store_postgres::{PgOptions, PostgresStore};
use serde_json::json;

use crate::{
    Row, print_table,
    store::{GETS, GROUPS, REPS, SINGLE_INSERTS, doc, finds, measure},
};

fn url() -> String {
    std::env::var("HEARTH_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub(crate) fn run(n_docs: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = url();
    let suffix = random_hex(4);
    let (base, raw_schema) = (format!("bench_h{suffix}"), format!("bench_raw{suffix}"));
    let (raw, store) = rt.block_on(async {
        let (raw, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        raw.batch_execute(&format!("CREATE SCHEMA {raw_schema}"))
            .await?;
        let store = PostgresStore::connect(
            &url,
            PgOptions {
                schema: base.clone(),
                ..PgOptions::default()
            },
        )
        .await?;
        anyhow::Ok((raw, store))
    })?;
    let result = scenarios(&rt, &raw, &raw_schema, Arc::new(store), n_docs);
    rt.block_on(async {
        let schemas = raw
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname = $1 OR nspname = $2 \
                 OR nspname LIKE $1 || '\\_%'",
                &[&base, &raw_schema],
            )
            .await?;
        for s in schemas {
            raw.batch_execute(&format!("DROP SCHEMA {} CASCADE", s.get::<_, String>(0)))
                .await?;
        }
        anyhow::Ok(())
    })?;
    result
}

fn scenarios(
    rt: &tokio::runtime::Runtime,
    raw: &tokio_postgres::Client,
    rs: &str,
    store: Arc<dyn DocStore>,
    n_docs: usize,
) -> anyhow::Result<()> {
    let inst = InstanceId::new("bench")?;
    let mut rows = Vec::new();
    let create = |name: &str| {
        format!("CREATE TABLE {rs}.{name} (id text COLLATE \"C\" PRIMARY KEY, data jsonb NOT NULL)")
    };

    // 1. Single-document inserts, one transaction (one commit) each.
    let docs: Vec<JsonMap> = (0..SINGLE_INSERTS).map(doc).collect();
    rt.block_on(async {
        for rep in 0..REPS {
            raw.batch_execute(&create(&format!("single{rep}"))).await?;
        }
        anyhow::Ok(())
    })?;
    let (ours, baseline) = measure(
        |rep| {
            rt.block_on(async {
                let stmt = raw
                    .prepare(&format!(
                        "INSERT INTO {rs}.single{rep} (id, data) VALUES ($1, $2::text::jsonb)"
                    ))
                    .await?;
                for d in &docs {
                    let id = d["_id"].as_str().unwrap_or_default();
                    raw.execute(&stmt, &[&id, &serde_json::to_string(d)?])
                        .await?;
                }
                Ok(())
            })
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

    // 2. Bulk insert of n_docs in one transaction: the baseline sends them as arrays in
    // one statement, as the store does.
    let template: Vec<JsonMap> = (0..n_docs).map(doc).collect();
    let mut raw_batches: Vec<Vec<JsonMap>> = (0..REPS).map(|_| template.clone()).collect();
    let mut our_batches = raw_batches.clone();
    rt.block_on(async {
        for rep in 0..REPS {
            raw.batch_execute(&create(&format!("bulk{rep}"))).await?;
        }
        anyhow::Ok(())
    })?;
    let (ours, baseline) = measure(
        |rep| {
            let batch = raw_batches.pop().unwrap_or_default();
            rt.block_on(async {
                let mut ids = Vec::with_capacity(batch.len());
                let mut bodies = Vec::with_capacity(batch.len());
                for d in batch {
                    ids.push(d["_id"].as_str().unwrap_or_default().to_owned());
                    bodies.push(serde_json::to_string(&d)?);
                }
                raw.batch_execute("BEGIN").await?;
                raw.execute(
                    &format!(
                        "INSERT INTO {rs}.bulk{rep} (id, data) \
                         SELECT i, d::jsonb FROM unnest($1::text[], $2::text[]) AS u(i, d)"
                    ),
                    &[&ids, &bodies],
                )
                .await?;
                raw.batch_execute("COMMIT").await?;
                Ok(())
            })
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
    // one untimed pass.
    let dt = Doctype::new("io.cozy.bulk0")?;

    // 3. Get by id (spread ids, parsed JSON out).
    let ids: Vec<String> = (0..GETS)
        .map(|i| format!("{:08x}", (i * 7919) % n_docs))
        .collect();
    let get_sql = format!("SELECT data::text FROM {rs}.bulk0 WHERE id = $1");
    let raw_get = |_| {
        rt.block_on(async {
            let stmt = raw.prepare(&get_sql).await?;
            for id in &ids {
                let row = raw.query_one(&stmt, &[id]).await?;
                let v: JsonMap = serde_json::from_str(row.get(0))?;
                anyhow::ensure!(!v.is_empty());
            }
            Ok(())
        })
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
    rt.block_on(async {
        raw.batch_execute(&format!(
            "CREATE INDEX bulk0_group ON {rs}.bulk0 ((data -> 'group')); ANALYZE {rs}.bulk0"
        ))
        .await?;
        store
            .create_index(
                &inst,
                &dt,
                IndexDef::parse(&json!({"index": {"fields": ["group"]}}))?,
            )
            .await?;
        anyhow::Ok(())
    })?;
    let groups: Vec<String> = (0..finds())
        .map(|i| format!("g{:04}", (i * 31) % GROUPS))
        .collect();
    let per_query = n_docs / GROUPS;
    let find_sql = format!(
        "SELECT id, data::text FROM {rs}.bulk0 WHERE data -> 'group' = $1::text::jsonb ORDER BY id"
    );
    let raw_find = |_| {
        rt.block_on(async {
            let stmt = raw.prepare(&find_sql).await?;
            for g in &groups {
                let mut found = 0;
                for r in raw.query(&stmt, &[&json!(g).to_string()]).await? {
                    let _id: String = r.get(0);
                    let v: JsonMap = serde_json::from_str(r.get(1))?;
                    found += usize::from(!v.is_empty());
                }
                anyhow::ensure!(found == per_query, "raw find returned {found}");
            }
            Ok(())
        })
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
            "Document store: Hearth PostgreSQL store vs raw tokio-postgres (median of {REPS}, {} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        "raw tokio-postgres",
        &rows,
    );
    Ok(())
}
