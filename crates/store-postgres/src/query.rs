//! Reads: single documents, `_all_docs`, the changes feed and Mango `find`.

use std::time::Instant;

use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::{
    AllDocs, AllDocsQuery, AllDocsRow, Change, Changes, ChangesQuery, ExecutionStats, FindResult,
    GetOptions, NotFoundReason, Since, StoreError, StoreResult, collate,
    mango::{Bookmark, Cond, Direction, FindQuery, Selector, project},
};
use serde_json::Value;
use tokio_postgres::{Client, Row, types::ToSql};

use crate::{
    filter::{self, Args},
    pool::{Conn, Exec, err},
    schema::{self, Index, Loc, parse_doc},
};

const NO_DATABASE: StoreError = StoreError::NotFound(NotFoundReason::NoDatabase);

fn parse_rev(rev: &str) -> StoreResult<Rev> {
    rev.parse().map_err(StoreError::internal)
}

async fn loc_or_404(
    x: &mut Exec<'_, Client>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
) -> StoreResult<Loc> {
    schema::locate(x, base, inst, dt, false)
        .await?
        .ok_or(NO_DATABASE)
}

/// Where a doctype's table is, for reads that need nothing else from `doctypes`.
pub(crate) async fn table_of(
    conn: &mut Conn,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
) -> StoreResult<String> {
    Ok(loc_or_404(&mut conn.exec(), base, inst, dt)
        .await?
        .table(base))
}

/// Reads a document from a doctype's table (`NoDatabase` if the table is gone).
pub(crate) async fn get(
    conn: &mut Conn,
    table: &str,
    id: &str,
    opts: GetOptions,
) -> StoreResult<JsonMap> {
    let mut x = conn.exec();
    let sql = format!("SELECT rev, deleted, data::text, revs FROM {table} WHERE id = $1");
    let row = x
        .opt(&sql, &[&id])
        .await?
        .ok_or(StoreError::NotFound(NotFoundReason::Missing))?;
    let (rev, deleted, data, revs): (String, bool, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if deleted {
        return Err(StoreError::NotFound(NotFoundReason::Deleted));
    }
    let mut doc = parse_doc(id, &rev, &data, false)?;
    if opts.revs {
        let rev = parse_rev(&rev)?;
        let ids: Vec<Value> = std::iter::once(rev.hash.as_str())
            .chain(revs.split(' ').filter(|h| !h.is_empty()))
            .map(|h| Value::String(h.to_owned()))
            .collect();
        doc.insert(
            "_revisions".into(),
            serde_json::json!({"start": rev.generation, "ids": ids}),
        );
    }
    Ok(doc)
}

fn all_docs_row(row: &Row, include_docs: bool) -> StoreResult<AllDocsRow> {
    let id: String = row.get(0);
    let rev = parse_rev(row.get(1))?;
    let deleted: bool = row.get(2);
    let doc = if include_docs && !deleted {
        Some(parse_doc(&id, &rev.to_string(), row.get(3), false)?)
    } else {
        None
    };
    Ok(AllDocsRow {
        id,
        rev: Some(rev),
        deleted,
        doc,
    })
}

pub(crate) async fn all_docs(
    conn: &mut Conn,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    q: &AllDocsQuery,
) -> StoreResult<AllDocs> {
    let mut x = conn.exec();
    let loc = loc_or_404(&mut x, base, inst, dt).await?;
    let table = loc.table(base);
    // Without include_docs the bodies are not read at all.
    let data = if q.include_docs { "data::text" } else { "''" };
    let mut rows = Vec::new();
    if let Some(keys) = &q.keys {
        let wanted: Vec<String> = keys
            .iter()
            .skip(q.skip)
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        let sql = format!("SELECT id, rev, deleted, {data} FROM {table} WHERE id = ANY($1)");
        let found = x.query(&sql, &[&wanted]).await?;
        let mut by_id = std::collections::HashMap::with_capacity(found.len());
        for row in &found {
            let r = all_docs_row(row, q.include_docs)?;
            by_id.insert(r.id.clone(), r);
        }
        for key in wanted {
            rows.push(match by_id.get(&key) {
                Some(r) => r.clone(),
                None => AllDocsRow {
                    id: key,
                    rev: None,
                    deleted: false,
                    doc: None,
                },
            });
        }
    } else {
        let (low, high) = if q.descending {
            (&q.end_key, &q.start_key)
        } else {
            (&q.start_key, &q.end_key)
        };
        let mut args = Args::default();
        let mut sql = format!("SELECT id, rev, deleted, {data} FROM {table} WHERE NOT deleted");
        if let Some(low) = low {
            let inclusive = !q.descending || q.inclusive_end;
            let op = if inclusive { ">=" } else { ">" };
            sql.push_str(&format!(" AND id {op} {}", args.push(low.clone())));
        }
        if let Some(high) = high {
            let inclusive = q.descending || q.inclusive_end;
            let op = if inclusive { "<=" } else { "<" };
            sql.push_str(&format!(" AND id {op} {}", args.push(high.clone())));
        }
        sql.push_str(if q.descending {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id"
        });
        if let Some(limit) = q.limit {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            sql.push_str(&format!(" LIMIT {}", args.push(limit)));
        }
        let skip = i64::try_from(q.skip).unwrap_or(i64::MAX);
        sql.push_str(&format!(" OFFSET {}", args.push(skip)));
        for row in x.query(&sql, &args.refs()).await? {
            rows.push(all_docs_row(&row, q.include_docs)?);
        }
    }
    Ok(AllDocs {
        total_rows: loc.live as u64,
        offset: q.skip,
        rows,
    })
}

pub(crate) async fn changes(
    conn: &mut Conn,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    q: &ChangesQuery,
) -> StoreResult<Changes> {
    let mut x = conn.exec();
    let loc = loc_or_404(&mut x, base, inst, dt).await?;
    let table = loc.table(base);
    let last_seq = loc.last_seq as u64;
    let since = match q.since {
        Since::Beginning => 0,
        Since::Seq(n) => n,
        Since::Now => last_seq,
    };
    let since_i = i64::try_from(since).unwrap_or(i64::MAX);
    let order = if q.descending { "DESC" } else { "ASC" };
    let data = if q.include_docs { "data::text" } else { "''" };
    let limit = q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let sql = format!(
        "SELECT seq, id, rev, deleted, {data} FROM {table} WHERE seq > $1 ORDER BY seq {order} LIMIT $2"
    );
    let rows = x.query(&sql, &[&since_i, &limit]).await?;
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.get(0);
        let id: String = row.get(1);
        let rev = parse_rev(row.get(2))?;
        let deleted: bool = row.get(3);
        let doc = if q.include_docs {
            Some(parse_doc(&id, &rev.to_string(), row.get(4), deleted)?)
        } else {
            None
        };
        results.push(Change {
            id,
            seq: seq as u64,
            rev,
            deleted,
            doc,
        });
    }
    let (last_seq, pending) = if q.descending {
        (results.first().map_or(last_seq, |c| c.seq), 0)
    } else {
        let last = results.last().map_or(last_seq.max(since), |c| c.seq);
        let sql = format!("SELECT count(*) FROM {table} WHERE seq > $1");
        let last_i = i64::try_from(last).unwrap_or(i64::MAX);
        let pending: i64 = x.one(&sql, &[&last_i]).await?.get(0);
        (last, pending as u64)
    };
    Ok(Changes {
        results,
        last_seq,
        pending,
    })
}

/// How a `find` reads its candidates.
struct Plan {
    sql: String,
    args: Args,
    /// Candidates come unordered and must be sorted by the query's sort keys.
    sort_in_memory: bool,
    /// The SQL conditions are exactly the selector: every row is a match.
    exact: bool,
    index: Option<Index>,
    warning: Option<String>,
}

/// Chooses an index for the query, or none ([`hearth_store::mango::choose_index`]).
fn choose_index(indexes: &[Index], q: &FindQuery) -> (Option<Index>, Option<String>) {
    let defs: Vec<&hearth_store::mango::IndexDef> = indexes.iter().map(|i| &i.def).collect();
    let (pos, warning) = hearth_store::mango::choose_index(&defs, q);
    (pos.and_then(|i| indexes.get(i).cloned()), warning)
}

fn has_object(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(has_object),
        _ => false,
    }
}

fn plan(base: &str, loc: &Loc, indexes: &[Index], q: &FindQuery) -> StoreResult<Plan> {
    let table = loc.table(base);
    let (index, warning) = choose_index(indexes, q);
    let bookmark = q.bookmark.as_deref().map(Bookmark::decode).transpose()?;
    let mut args = Args::default();
    let mut sql = format!("SELECT id, rev, data::text FROM {table} WHERE NOT deleted");
    let Some(index) = index else {
        let filter = filter::translate(&q.selector, &mut args);
        for c in &filter.conds {
            sql.push_str(" AND ");
            sql.push_str(c);
        }
        if !q.sort.is_empty() {
            // Documents lacking a sorted field are never returned.
            for f in &q.sort {
                let present = Selector::Field(f.clone(), Cond::Exists(true));
                for c in filter::translate(&present, &mut args).conds {
                    sql.push_str(" AND ");
                    sql.push_str(&c);
                }
            }
            return Ok(Plan {
                sql,
                args,
                sort_in_memory: true,
                exact: filter.exact,
                index: None,
                warning,
            });
        }
        if let Some(b) = bookmark {
            sql.push_str(&format!(" AND id > {}", args.push(b.id)));
        }
        sql.push_str(" ORDER BY id");
        return Ok(Plan {
            sql,
            args,
            sort_in_memory: false,
            exact: filter.exact,
            index: None,
            warning,
        });
    };

    let exprs = index
        .def
        .fields
        .iter()
        .map(|f| schema::key_expr(base, f))
        .collect::<StoreResult<Vec<_>>>()?;
    let conds = q.selector.required_conditions();
    for (i, (field, expr)) in index.def.fields.iter().zip(&exprs).enumerate() {
        let mut present = i < q.sort.len();
        for (_, c) in conds.iter().filter(|(p, _)| *p == field) {
            let (op, v) = match c {
                Cond::Eq(v) => ("=", v),
                Cond::Gt(v) => (">", v),
                Cond::Gte(v) => (">=", v),
                Cond::Lt(v) => ("<", v),
                Cond::Lte(v) => ("<=", v),
                Cond::Exists(true) => {
                    present = true;
                    continue;
                }
                _ => continue,
            };
            present = true;
            // Objects collate member by member in their order, which jsonb does not
            // keep: no bound, the matcher decides.
            if has_object(v) {
                continue;
            }
            let key = format!(
                "{base}.couch_key({}::text::jsonb)",
                args.push(v.to_string())
            );
            sql.push_str(&format!(" AND {expr} {op} {key}"));
        }
        // A sorted field, or one under a condition, must be present: above the
        // "missing" key.
        if present {
            sql.push_str(&format!(" AND {expr} > '\\x01'::bytea"));
        }
    }
    let filter = filter::translate(&q.selector, &mut args);
    for c in &filter.conds {
        sql.push_str(" AND ");
        sql.push_str(c);
    }
    let desc = q.direction == Direction::Desc;
    if let Some(b) = bookmark {
        if b.keys.len() != exprs.len() {
            return Err(StoreError::invalid(
                "invalid bookmark: it belongs to another query",
            ));
        }
        let mut placeholders: Vec<String> = b
            .keys
            .into_iter()
            .map(|k| format!("{}::bytea", args.push(k)))
            .collect();
        placeholders.push(format!("{}::text", args.push(b.id)));
        sql.push_str(&format!(
            " AND ({}, id) {} ({})",
            exprs.join(", "),
            if desc { "<" } else { ">" },
            placeholders.join(", ")
        ));
    }
    let dir = if desc { " DESC" } else { "" };
    let order: Vec<String> = exprs.iter().map(|e| format!("{e}{dir}")).collect();
    sql.push_str(&format!(" ORDER BY {}, id{dir}", order.join(", ")));
    Ok(Plan {
        sql,
        args,
        sort_in_memory: false,
        exact: filter.exact && index.def.partial_filter_selector.is_none(),
        index: Some(index),
        warning,
    })
}

/// The `EXPLAIN` of the SQL a `find` would run (for tests and debugging).
pub(crate) async fn explain_find(
    conn: &mut Conn,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    q: &FindQuery,
) -> StoreResult<String> {
    let mut x = conn.exec();
    let (loc, indexes) = schema::locate_with_indexes(&mut x, base, inst, dt)
        .await?
        .ok_or(NO_DATABASE)?;
    let plan = plan(base, &loc, &indexes, q)?;
    let rows = x
        .query(&format!("EXPLAIN {}", plan.sql), &plan.args.refs())
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Rows are read in batches of this many when the SQL cannot apply the limit itself.
const BATCH: usize = 500;

/// Folds candidate rows into the answer; `true` once enough matches were found.
struct Collector<'q> {
    q: &'q FindQuery,
    partial: Option<Selector>,
    sort_in_memory: bool,
    limit: usize,
    skipped: usize,
    stats: ExecutionStats,
    /// (sort keys, document)
    matched: Vec<(Vec<Vec<u8>>, JsonMap)>,
}

impl Collector<'_> {
    fn done(&self) -> bool {
        !self.sort_in_memory && self.matched.len() >= self.limit
    }

    fn add(&mut self, row: &Row) -> StoreResult<()> {
        self.stats.total_keys_examined += 1;
        if self.done() {
            return Ok(());
        }
        let json = schema::doc_json(row.get(0), row.get(1), row.get(2), false)?;
        let doc: Value = serde_json::from_str(&json).map_err(StoreError::internal)?;
        self.stats.total_docs_examined += 1;
        if !self.q.selector.matches(&doc) || self.partial.as_ref().is_some_and(|p| !p.matches(&doc))
        {
            return Ok(());
        }
        let Value::Object(doc) = doc else {
            return Ok(());
        };
        let keys = if self.sort_in_memory {
            match self.q.sort_keys(&doc) {
                Some(k) => k,
                None => return Ok(()),
            }
        } else {
            Vec::new()
        };
        if !self.sort_in_memory && self.skipped < self.q.skip {
            self.skipped += 1;
            return Ok(());
        }
        self.matched.push((keys, doc));
        Ok(())
    }
}

pub(crate) async fn find(
    conn: &mut Conn,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    q: &FindQuery,
) -> StoreResult<FindResult> {
    let started = Instant::now();
    let (loc, indexes) = schema::locate_with_indexes(&mut conn.exec(), base, inst, dt)
        .await?
        .ok_or(NO_DATABASE)?;
    let mut plan = plan(base, &loc, &indexes, q)?;
    let partial = match plan
        .index
        .as_ref()
        .and_then(|i| i.def.partial_filter_selector.as_ref())
    {
        Some(s) => Some(Selector::parse(s)?),
        None => None,
    };
    let mut c = Collector {
        q,
        partial,
        sort_in_memory: plan.sort_in_memory,
        limit: q.limit.unwrap_or(usize::MAX),
        skipped: 0,
        stats: ExecutionStats::default(),
        matched: Vec::new(),
    };
    let wanted = q.limit.map(|l| l.saturating_add(q.skip));
    match wanted {
        Some(n) if !plan.sort_in_memory && plan.exact => {
            // Every row matches: the server stops after the page.
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            plan.sql.push_str(&format!(" LIMIT {}", plan.args.push(n)));
            for row in conn.exec().query(&plan.sql, &plan.args.refs()).await? {
                c.add(&row)?;
            }
        }
        Some(n) if !plan.sort_in_memory => {
            // Rows are re-checked in Rust: read them in batches through a portal until
            // the page is full.
            let (client, cache) = conn.parts();
            let tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(err)?;
            let stmt = Exec {
                c: &tx,
                cache: &mut *cache,
            }
            .prepared(&plan.sql)
            .await?;
            let portal = tx.bind(&stmt, &plan.args.refs()).await.map_err(err)?;
            let batch = i32::try_from(n.clamp(16, BATCH)).unwrap_or(16);
            loop {
                let rows = tx.query_portal(&portal, batch).await.map_err(err)?;
                for row in &rows {
                    c.add(row)?;
                }
                if rows.len() < batch as usize || c.done() {
                    break;
                }
            }
            tx.commit().await.map_err(err)?;
        }
        _ => {
            for row in conn.exec().query(&plan.sql, &plan.args.refs()).await? {
                c.add(&row)?;
            }
        }
    }
    let Collector {
        mut matched,
        mut stats,
        ..
    } = c;
    let limit = q.limit.unwrap_or(usize::MAX);
    if plan.sort_in_memory {
        let bookmark = q.bookmark.as_deref().map(Bookmark::decode).transpose()?;
        let id_of = |d: &JsonMap| {
            d.get("_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        matched.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| id_of(a).cmp(&id_of(b))));
        if q.direction == Direction::Desc {
            matched.reverse();
        }
        if let Some(b) = bookmark {
            matched.retain(|(k, d)| b.is_before(k, &id_of(d), q.direction));
        }
        matched = matched.into_iter().skip(q.skip).take(limit).collect();
    }
    let bookmark = match matched.last() {
        None => String::new(),
        Some((keys, doc)) => {
            let id = doc
                .get("_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let keys = match &plan.index {
                // Index order is the SQL function's: ask it for the keys.
                Some(index) if !plan.sort_in_memory => index_keys(conn, base, index, doc).await?,
                _ => keys.clone(),
            };
            Bookmark { keys, id }.encode()
        }
    };
    let docs: Vec<JsonMap> = match &q.fields {
        Some(fields) => matched
            .into_iter()
            .map(|(_, d)| project(d, fields))
            .collect(),
        None => matched.into_iter().map(|(_, d)| d).collect(),
    };
    stats.results_returned = docs.len() as u64;
    stats.execution_time_ms = started.elapsed().as_secs_f64() * 1000.0;
    let index = plan
        .index
        .map(|i| (format!("_design/{}", i.def.ddoc), i.def.name));
    Ok(FindResult {
        docs,
        bookmark,
        stats,
        warning: plan.warning,
        index,
    })
}

fn ascii_only(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_ascii(),
        Value::Array(items) => items.iter().all(ascii_only),
        Value::Object(m) => m.iter().all(|(k, v)| k.is_ascii() && ascii_only(v)),
        _ => true,
    }
}

/// The index keys of a document, as the server's `couch_key` computes them.
async fn index_keys(
    conn: &mut Conn,
    base: &str,
    index: &Index,
    doc: &JsonMap,
) -> StoreResult<Vec<Vec<u8>>> {
    let values: Vec<Option<&Value>> = index.def.fields.iter().map(|f| f.get_in(doc)).collect();
    // For ASCII text the SQL function is the Rust one by construction (and a test
    // checks it): no round trip.
    if values.iter().all(|v| v.is_none_or(ascii_only)) {
        return Ok(values.into_iter().map(collate::sort_key_opt).collect());
    }
    let values: Vec<Option<String>> = values
        .into_iter()
        .map(|v| v.map(Value::to_string))
        .collect();
    let cols: Vec<String> = (1..=values.len())
        .map(|n| format!("{base}.couch_key(${n}::text::jsonb)"))
        .collect();
    let sql = format!("SELECT {}", cols.join(", "));
    let params: Vec<&(dyn ToSql + Sync)> =
        values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let row = conn.exec().one(&sql, &params).await?;
    Ok((0..values.len()).map(|i| row.get(i)).collect())
}
