//! Writes: documents (single and bulk), indexes and doctypes, each in one transaction.

use hearth_core::{Doctype, JsonMap};
use hearth_store::{
    BulkResult, IndexCreated, NotFoundReason, StoreError, StoreResult, StoredRev, Written, aborted,
    mango::IndexDef, put_all, split_put, split_restored,
};
use rusqlite::{
    CachedStatement, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
    params,
};

use crate::schema::{self, Table, err};

pub(crate) fn put(conn: &mut Connection, dt: &Doctype, doc: JsonMap) -> StoreResult<Written> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut batch = Batch::start(&tx, dt)?;
    let written = batch.put(doc)?;
    batch.finish(&tx)?;
    tx.commit().map_err(err)?;
    Ok(written)
}

pub(crate) fn bulk(
    conn: &mut Connection,
    dt: &Doctype,
    docs: Vec<JsonMap>,
    all_or_nothing: bool,
) -> StoreResult<Vec<BulkResult>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut batch = Batch::start(&tx, dt)?;
    let mut results = Vec::with_capacity(docs.len());
    let ok = put_all(docs, &mut results, false, |doc| batch.put(doc))?;
    if !ok && all_or_nothing {
        // Dropping the transaction rolls it back.
        drop(batch);
        drop(tx);
        return Ok(aborted(results));
    }
    batch.finish(&tx)?;
    tx.commit().map_err(err)?;
    Ok(results)
}

pub(crate) fn bulk_many(
    conn: &mut Connection,
    groups: Vec<(Doctype, Vec<JsonMap>)>,
) -> StoreResult<Vec<Vec<BulkResult>>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut out = Vec::with_capacity(groups.len());
    let mut failed = false;
    for (dt, docs) in groups {
        let mut batch = Batch::start(&tx, &dt)?;
        let mut results = Vec::with_capacity(docs.len());
        failed |= !put_all(docs, &mut results, true, |doc| batch.put(doc))?;
        batch.finish(&tx)?;
        out.push(results);
    }
    if !failed {
        tx.commit().map_err(err)?;
    }
    Ok(out)
}

/// Writes documents with their own revisions (`DocStore::restore`), in one transaction.
pub(crate) fn restore(conn: &mut Connection, dt: &Doctype, docs: Vec<JsonMap>) -> StoreResult<()> {
    let docs = docs
        .into_iter()
        .map(split_restored)
        .collect::<StoreResult<Vec<_>>>()?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut batch = Batch::start(&tx, dt)?;
    for doc in docs {
        let existing = batch.existing(&doc.id)?;
        let Some(live) = doc.decide(existing.as_ref()) else {
            continue;
        };
        match existing {
            Some(_) => {
                batch
                    .update
                    .execute(params![
                        (batch.seq + 1) as i64,
                        doc.rev.to_string(),
                        doc.deleted,
                        doc.body,
                        doc.history,
                        doc.id
                    ])
                    .map_err(err)?;
            }
            None => {
                tx.prepare_cached(&format!(
                    "INSERT INTO {} (seq, id, rev, deleted, data, revs) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    batch.table.name()
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        (batch.seq + 1) as i64,
                        doc.id,
                        doc.rev.to_string(),
                        doc.deleted,
                        doc.body,
                        doc.history
                    ])
                })
                .map_err(err)?;
            }
        }
        batch.seq += 1;
        batch.live += live;
    }
    batch.finish(&tx)?;
    tx.commit().map_err(err)
}

/// One doctype during a write transaction: its prepared statements, sequence and live
/// count (written back by [`Batch::finish`]).
struct Batch<'t> {
    table: Table,
    select: CachedStatement<'t>,
    insert: CachedStatement<'t>,
    update: CachedStatement<'t>,
    seq: u64,
    live: i64,
}

impl<'t> Batch<'t> {
    fn start(tx: &'t Transaction<'_>, dt: &Doctype) -> StoreResult<Self> {
        let table = schema::ensure_table(tx, dt)?;
        let name = table.name();
        let prepare = |sql: String| tx.prepare_cached(&sql).map_err(err);
        Ok(Self {
            select: prepare(format!(
                "SELECT rev, deleted, revs FROM {name} WHERE id = ?1"
            ))?,
            insert: prepare(format!(
                "INSERT INTO {name} (seq, id, rev, deleted, data, revs) VALUES (?1, ?2, ?3, 0, ?4, '')"
            ))?,
            update: prepare(format!(
                "UPDATE {name} SET seq = ?1, rev = ?2, deleted = ?3, data = ?4, revs = ?5 WHERE id = ?6"
            ))?,
            seq: table.last_seq,
            live: table.live as i64,
            table,
        })
    }

    fn finish(self, tx: &Transaction<'_>) -> StoreResult<()> {
        let Self {
            table, seq, live, ..
        } = self;
        if seq != table.last_seq || live != table.live as i64 {
            tx.prepare_cached("UPDATE doctypes SET last_seq = ?1, live = ?2 WHERE n = ?3")
                .and_then(|mut s| s.execute(params![seq as i64, live, table.n]))
                .map_err(err)?;
        }
        Ok(())
    }

    fn existing(&mut self, id: &str) -> StoreResult<Option<StoredRev>> {
        let row = self
            .select
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()
            .map_err(err)?;
        row.map(|(rev, deleted, revs)| {
            Ok(StoredRev {
                rev: rev.parse().map_err(StoreError::internal)?,
                deleted,
                revs,
            })
        })
        .transpose()
    }

    /// Writes one document, as `DocStore::put` describes.
    fn put(&mut self, doc: JsonMap) -> StoreResult<Written> {
        let doc = split_put(doc)?;
        // A new document without a revision: try the insert first, it is the common case.
        if doc.base.is_none() && !doc.deleted {
            let new = doc.decide(None)?;
            let inserted = self.insert.execute(params![
                (self.seq + 1) as i64,
                doc.id,
                new.rev.to_string(),
                doc.body
            ]);
            match inserted {
                Ok(_) => {
                    self.seq += 1;
                    self.live += new.live;
                    return Ok(Written {
                        id: doc.id,
                        rev: new.rev,
                    });
                }
                Err(e) if doc.generated || !is_unique_violation(&e) => return Err(err(e)),
                Err(_) => {} // The id exists: a tombstone may be revived below.
            }
        }
        // A put that creates its id was inserted above: what `decide` accepts here
        // updates the stored row.
        let existing = self.existing(&doc.id)?;
        let out = doc.decide(existing.as_ref())?;
        self.update
            .execute(params![
                (self.seq + 1) as i64,
                out.rev.to_string(),
                doc.deleted,
                doc.body,
                out.revs,
                doc.id
            ])
            .map_err(err)?;
        self.seq += 1;
        self.live += out.live;
        Ok(Written {
            id: doc.id,
            rev: out.rev,
        })
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

pub(crate) fn create_index(
    conn: &mut Connection,
    dt: &Doctype,
    def: IndexDef,
) -> StoreResult<IndexCreated> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let created = create_index_in(&tx, dt, def)?;
    tx.commit().map_err(err)?;
    Ok(created)
}

/// Declares many indexes in one transaction (all or none).
pub(crate) fn create_indexes(
    conn: &mut Connection,
    defs: Vec<(Doctype, IndexDef)>,
) -> StoreResult<Vec<IndexCreated>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let created = defs
        .into_iter()
        .map(|(dt, def)| create_index_in(&tx, &dt, def))
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().map_err(err)?;
    Ok(created)
}

fn create_index_in(tx: &Transaction<'_>, dt: &Doctype, def: IndexDef) -> StoreResult<IndexCreated> {
    let exprs = def
        .fields
        .iter()
        .map(schema::key_expr)
        .collect::<StoreResult<Vec<_>>>()?;
    let table = schema::ensure_table(tx, dt)?;
    let created = IndexCreated {
        created: true,
        ddoc: def.ddoc.clone(),
        name: def.name.clone(),
    };
    let existing = schema::indexes(tx, dt)?
        .into_iter()
        .find(|i| i.def.ddoc == def.ddoc);
    if let Some(old) = existing {
        if old.def == def {
            return Ok(IndexCreated {
                created: false,
                ..created
            });
        }
        // Same design document, new definition: replace it, as CouchDB would.
        tx.execute_batch(&format!("DROP INDEX IF EXISTS {}", old.sql_name))
            .map_err(err)?;
        tx.execute(
            "DELETE FROM mango_indexes WHERE doctype = ?1 AND ddoc = ?2",
            params![dt.as_str(), def.ddoc],
        )
        .map_err(err)?;
    }
    let next: i64 = tx
        .query_row(
            "SELECT coalesce(max(rowid), 0) + 1 FROM mango_indexes",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let sql_name = format!("ix_{}_{}", table.n, next);
    tx.execute(
        "INSERT INTO mango_indexes (doctype, ddoc, name, def, sql_name) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![dt.as_str(), def.ddoc, def.name, schema::def_to_json(&def), sql_name],
    )
    .map_err(err)?;
    tx.execute_batch(&format!(
        "CREATE INDEX {sql_name} ON {} ({}, id) WHERE deleted = 0",
        table.name(),
        exprs.join(", ")
    ))
    .map_err(err)?;
    Ok(created)
}

pub(crate) fn delete_index(conn: &mut Connection, dt: &Doctype, ddoc: &str) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let ddoc = ddoc.trim_start_matches("_design/");
    let index = schema::indexes(&tx, dt)?
        .into_iter()
        .find(|i| i.def.ddoc == ddoc)
        .ok_or(StoreError::NotFound(NotFoundReason::Missing))?;
    tx.execute_batch(&format!("DROP INDEX IF EXISTS {}", index.sql_name))
        .map_err(err)?;
    tx.execute(
        "DELETE FROM mango_indexes WHERE doctype = ?1 AND ddoc = ?2",
        params![dt.as_str(), ddoc],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

pub(crate) fn delete_doctype(conn: &mut Connection, dt: &Doctype) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let table = schema::table(&tx, dt)?.ok_or(StoreError::NotFound(NotFoundReason::NoDatabase))?;
    tx.execute_batch(&format!("DROP TABLE {}", table.name()))
        .map_err(err)?;
    tx.execute(
        "DELETE FROM mango_indexes WHERE doctype = ?1",
        [dt.as_str()],
    )
    .map_err(err)?;
    tx.execute("DELETE FROM doctypes WHERE n = ?1", [table.n])
        .map_err(err)?;
    tx.commit().map_err(err)
}
