//! Reads: single documents, `_all_docs`, the changes feed and Mango `find`.

use std::time::Instant;

use hearth_core::{Doctype, JsonMap, Rev};
use hearth_store::{
    AllDocs, AllDocsQuery, AllDocsRow, Change, Changes, ChangesQuery, ExecutionStats, FindResult,
    GetOptions, NotFoundReason, Since, StoreError, StoreResult, collate,
    mango::{Bookmark, Cond, Direction, FindQuery, Selector, project},
};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, types::Value as SqlValue};
use serde_json::Value;

use crate::schema::{self, Index, MetaCache, Table, err};

const NO_DATABASE: StoreError = StoreError::NotFound(NotFoundReason::NoDatabase);

fn table_or_404(conn: &Connection, dt: &Doctype) -> StoreResult<Table> {
    schema::table(conn, dt)?.ok_or(NO_DATABASE)
}

fn table_name_or_404(conn: &Connection, cache: &MetaCache, dt: &Doctype) -> StoreResult<String> {
    cache.table_name(conn, dt)?.ok_or(NO_DATABASE)
}

/// Parses a stored row into the document clients see.
fn parse_doc(id: &str, rev: &str, body: &str, deleted: bool) -> StoreResult<JsonMap> {
    serde_json::from_str(&schema::doc_json(id, rev, body, deleted)?).map_err(StoreError::internal)
}

fn parse_rev(rev: &str) -> StoreResult<Rev> {
    rev.parse().map_err(StoreError::internal)
}

pub(crate) fn get(
    conn: &Connection,
    cache: &MetaCache,
    dt: &Doctype,
    id: &str,
    opts: GetOptions,
) -> StoreResult<JsonMap> {
    let table = table_name_or_404(conn, cache, dt)?;
    let sql = format!("SELECT rev, deleted, data, revs FROM {table} WHERE id = ?1");
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()
        })
        .map_err(err)?;
    let (rev, deleted, data, revs) = row.ok_or(StoreError::NotFound(NotFoundReason::Missing))?;
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

pub(crate) fn all_docs(conn: &Connection, dt: &Doctype, q: &AllDocsQuery) -> StoreResult<AllDocs> {
    let table = table_or_404(conn, dt)?;
    let name = table.name();
    let mut rows = Vec::new();
    let read = |r: &Row<'_>| -> rusqlite::Result<(String, String, bool, String)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    let to_row =
        |(id, rev, deleted, data): (String, String, bool, String)| -> StoreResult<AllDocsRow> {
            let rev = parse_rev(&rev)?;
            let doc = if q.include_docs && !deleted {
                Some(parse_doc(&id, &rev.to_string(), &data, false)?)
            } else {
                None
            };
            Ok(AllDocsRow {
                id,
                rev: Some(rev),
                deleted,
                doc,
            })
        };
    if let Some(keys) = &q.keys {
        let sql = format!("SELECT id, rev, deleted, data FROM {name} WHERE id = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        for key in keys.iter().skip(q.skip).take(q.limit.unwrap_or(usize::MAX)) {
            match stmt.query_row([key], read).optional().map_err(err)? {
                Some(found) => rows.push(to_row(found)?),
                None => rows.push(AllDocsRow {
                    id: key.clone(),
                    rev: None,
                    deleted: false,
                    doc: None,
                }),
            }
        }
    } else {
        let (low, high) = if q.descending {
            (&q.end_key, &q.start_key)
        } else {
            (&q.start_key, &q.end_key)
        };
        let mut sql = format!("SELECT id, rev, deleted, data FROM {name} WHERE deleted = 0");
        let mut args: Vec<&dyn ToSql> = Vec::new();
        if let Some(low) = low {
            let inclusive = !q.descending || q.inclusive_end;
            sql.push_str(if inclusive {
                " AND id >= ?"
            } else {
                " AND id > ?"
            });
            args.push(low);
        }
        if let Some(high) = high {
            let inclusive = q.descending || q.inclusive_end;
            sql.push_str(if inclusive {
                " AND id <= ?"
            } else {
                " AND id < ?"
            });
            args.push(high);
        }
        let limit = q.limit.map_or(-1, |l| l as i64);
        let skip = q.skip as i64;
        sql.push_str(if q.descending {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id"
        });
        sql.push_str(" LIMIT ? OFFSET ?");
        args.push(&limit);
        args.push(&skip);
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let found = stmt.query_map(args.as_slice(), read).map_err(err)?;
        for f in found {
            rows.push(to_row(f.map_err(err)?)?);
        }
    }
    Ok(AllDocs {
        total_rows: table.live,
        offset: q.skip,
        rows,
    })
}

pub(crate) fn changes(conn: &Connection, dt: &Doctype, q: &ChangesQuery) -> StoreResult<Changes> {
    let table = table_or_404(conn, dt)?;
    let since = match q.since {
        Since::Beginning => 0,
        Since::Seq(n) => n,
        Since::Now => table.last_seq,
    };
    let order = if q.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT seq, id, rev, deleted, data FROM {} WHERE seq > ?1 ORDER BY seq {order} LIMIT ?2",
        table.name()
    );
    let limit = q.limit.map_or(-1, |l| l as i64);
    let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
    let rows = stmt
        .query_map(rusqlite::params![since as i64, limit], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(err)?;
    let mut results = Vec::new();
    for row in rows {
        let (seq, id, rev, deleted, data) = row.map_err(err)?;
        let rev = parse_rev(&rev)?;
        let doc = if q.include_docs {
            Some(parse_doc(&id, &rev.to_string(), &data, deleted)?)
        } else {
            None
        };
        results.push(Change {
            id,
            seq,
            rev,
            deleted,
            doc,
        });
    }
    let (last_seq, pending) = if q.descending {
        (results.first().map_or(table.last_seq, |c| c.seq), 0)
    } else {
        let last = results.last().map_or(table.last_seq.max(since), |c| c.seq);
        let sql = format!("SELECT count(*) FROM {} WHERE seq > ?1", table.name());
        let pending: i64 = conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row([last as i64], |r| r.get(0)))
            .map_err(err)?;
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
    args: Vec<SqlValue>,
    /// Candidates come unordered and must be sorted by the query's sort keys.
    sort_in_memory: bool,
    index: Option<Index>,
    warning: Option<String>,
}

/// Chooses an index for the query, or none ([`hearth_store::mango::choose_index`]).
fn choose_index(indexes: &[Index], q: &FindQuery) -> (Option<Index>, Option<String>) {
    let defs: Vec<&hearth_store::mango::IndexDef> = indexes.iter().map(|i| &i.def).collect();
    let (pos, warning) = hearth_store::mango::choose_index(&defs, q);
    (pos.and_then(|i| indexes.get(i).cloned()), warning)
}

/// The key-space interval a condition implies: `(lower, upper)`, each `(key, inclusive)`.
type Bound = Option<(Vec<u8>, bool)>;

fn bounds_of(c: &Cond) -> Option<(Bound, Bound)> {
    let key = collate::sort_key;
    Some(match c {
        Cond::Eq(v) => (Some((key(v), true)), Some((key(v), true))),
        Cond::Gt(v) => (Some((key(v), false)), None),
        Cond::Gte(v) => (Some((key(v), true)), None),
        Cond::Lt(v) => (None, Some((key(v), false))),
        Cond::Lte(v) => (None, Some((key(v), true))),
        Cond::Exists(true) => (None, None),
        _ => return None,
    })
}

fn plan(conn: &Connection, cache: &MetaCache, dt: &Doctype, q: &FindQuery) -> StoreResult<Plan> {
    let name = table_name_or_404(conn, cache, dt)?;
    let (index, warning) = choose_index(&cache.indexes(conn, dt)?, q);
    let bookmark = q.bookmark.as_deref().map(Bookmark::decode).transpose()?;
    let Some(index) = index else {
        if !q.sort.is_empty() {
            let sql = format!("SELECT id, rev, data FROM {name} WHERE deleted = 0");
            return Ok(Plan {
                sql,
                args: Vec::new(),
                sort_in_memory: true,
                index: None,
                warning,
            });
        }
        let mut sql = format!("SELECT id, rev, data FROM {name} WHERE deleted = 0");
        let mut args = Vec::new();
        if let Some(b) = bookmark {
            sql.push_str(" AND id > ?");
            args.push(SqlValue::Text(b.id));
        }
        sql.push_str(" ORDER BY id");
        return Ok(Plan {
            sql,
            args,
            sort_in_memory: false,
            index: None,
            warning,
        });
    };

    let exprs = index
        .def
        .fields
        .iter()
        .map(schema::key_expr)
        .collect::<StoreResult<Vec<_>>>()?;
    let mut sql = format!(
        "SELECT id, rev, data FROM {name} INDEXED BY {} WHERE deleted = 0",
        index.sql_name
    );
    let mut args = Vec::new();
    let conds = q.selector.required_conditions();
    for (i, (field, expr)) in index.def.fields.iter().zip(&exprs).enumerate() {
        let mut lower: Bound = None;
        let mut upper: Bound = None;
        let mut present = i < q.sort.len();
        for (_, c) in conds.iter().filter(|(p, _)| *p == field) {
            if let Some((lo, hi)) = bounds_of(c) {
                present = true;
                lower = tighter(lower, lo, true);
                upper = tighter(upper, hi, false);
            }
        }
        // A sorted field, or one under a range condition, must be present: above the
        // "missing" key.
        if lower.is_none() && present {
            lower = Some((collate::MISSING_KEY.to_vec(), false));
        }
        if let Some((k, inclusive)) = lower {
            sql.push_str(&format!(
                " AND {expr} {} ?",
                if inclusive { ">=" } else { ">" }
            ));
            args.push(SqlValue::Blob(k));
        }
        if let Some((k, inclusive)) = upper {
            sql.push_str(&format!(
                " AND {expr} {} ?",
                if inclusive { "<=" } else { "<" }
            ));
            args.push(SqlValue::Blob(k));
        }
    }
    let desc = q.direction == Direction::Desc;
    if let Some(b) = bookmark {
        if b.keys.len() != exprs.len() {
            return Err(StoreError::invalid(
                "invalid bookmark: it belongs to another query",
            ));
        }
        let placeholders = vec!["?"; exprs.len() + 1].join(", ");
        sql.push_str(&format!(
            " AND ({}, id) {} ({placeholders})",
            exprs.join(", "),
            if desc { "<" } else { ">" }
        ));
        args.extend(b.keys.into_iter().map(SqlValue::Blob));
        args.push(SqlValue::Text(b.id));
    }
    let dir = if desc { " DESC" } else { "" };
    let order: Vec<String> = exprs.iter().map(|e| format!("{e}{dir}")).collect();
    sql.push_str(&format!(" ORDER BY {}, id{dir}", order.join(", ")));
    Ok(Plan {
        sql,
        args,
        sort_in_memory: false,
        index: Some(index),
        warning,
    })
}

/// Narrows a bound: the larger lower bound, or the smaller upper bound.
fn tighter(current: Bound, new: Bound, lower: bool) -> Bound {
    match (current, new) {
        (None, b) | (b, None) => b,
        (Some(a), Some(b)) => {
            let a_wins = match a.0.cmp(&b.0) {
                std::cmp::Ordering::Equal => !a.1,
                o => (o == std::cmp::Ordering::Greater) == lower,
            };
            Some(if a_wins { a } else { b })
        }
    }
}

pub(crate) fn explain_find(
    conn: &Connection,
    cache: &MetaCache,
    dt: &Doctype,
    q: &FindQuery,
) -> StoreResult<String> {
    let plan = plan(conn, cache, dt, q)?;
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", plan.sql))
        .map_err(err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(plan.args.iter()), |r| {
            r.get::<_, String>(3)
        })
        .map_err(err)?;
    let lines = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
    Ok(lines.join("\n"))
}

pub(crate) fn find(
    conn: &Connection,
    cache: &MetaCache,
    dt: &Doctype,
    q: &FindQuery,
) -> StoreResult<FindResult> {
    let started = Instant::now();
    let plan = plan(conn, cache, dt, q)?;
    let partial = match plan
        .index
        .as_ref()
        .and_then(|i| i.def.partial_filter_selector.as_ref())
    {
        Some(s) => Some(Selector::parse(s)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut stats = ExecutionStats::default();
    let mut stmt = conn.prepare_cached(&plan.sql).map_err(err)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(plan.args.iter()))
        .map_err(err)?;
    // (sort keys, id, document)
    let mut matched: Vec<(Vec<Vec<u8>>, JsonMap)> = Vec::new();
    let mut skipped = 0;
    while let Some(row) = rows.next().map_err(err)? {
        stats.total_keys_examined += 1;
        if !plan.sort_in_memory && matched.len() >= limit {
            break;
        }
        let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(err);
        let json = schema::doc_json(text(0)?, text(1)?, text(2)?, false)?;
        let doc: Value = serde_json::from_str(&json).map_err(StoreError::internal)?;
        stats.total_docs_examined += 1;
        if !q.selector.matches(&doc) || partial.as_ref().is_some_and(|p| !p.matches(&doc)) {
            continue;
        }
        let Value::Object(doc) = doc else { continue };
        let keys = if plan.sort_in_memory {
            match q.sort_keys(&doc) {
                Some(k) => k,
                None => continue,
            }
        } else {
            // Index order: the keys are only needed for the last document's bookmark.
            Vec::new()
        };
        if !plan.sort_in_memory && skipped < q.skip {
            skipped += 1;
            continue;
        }
        matched.push((keys, doc));
    }
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
    let index_fields = plan
        .index
        .as_ref()
        .map(|i| i.def.fields.as_slice())
        .unwrap_or_default();
    let bookmark = matched.last().map_or_else(String::new, |(keys, doc)| {
        // `couch_key(data -> path)` is exactly the sort key of the value at `path`.
        let keys = if keys.is_empty() {
            index_fields
                .iter()
                .map(|f| collate::sort_key_opt(f.get_in(doc)))
                .collect()
        } else {
            keys.clone()
        };
        let id = doc
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Bookmark { keys, id }.encode()
    });
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
