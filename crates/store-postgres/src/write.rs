//! Writes: documents (single and bulk), indexes and doctypes, each in one transaction.
//!
//! A write transaction first locks its doctype's row in `doctypes` (`FOR UPDATE`), so
//! writers of one doctype take turns: a revision check can never race another write,
//! and sequence numbers are handed out in commit order, which is what lets a changes
//! feed reader trust `seq > since`. The documents a batch touches are read in one
//! query, every decision is taken in Rust, and the final state of each id is written
//! by one `INSERT … ON CONFLICT DO UPDATE` over arrays.

use std::collections::{BTreeMap, HashMap};

use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::{
    BulkResult, IndexCreated, NotFoundReason, Restored, StoreError, StoreResult, StoredRev,
    Written, aborted, mango::IndexDef, put_all, split_put, split_restored,
};
use tokio_postgres::GenericClient;

use crate::{
    pool::Exec,
    schema::{self, Loc},
};

/// The row a batch will write for an id.
struct Pending {
    seq: i64,
    rev: String,
    deleted: bool,
    body: String,
    revs: String,
}

/// One doctype during a write transaction.
pub(crate) struct Batch {
    loc: Loc,
    table: String,
    /// `<base>.doctypes`, where the counters go.
    doctypes: String,
    seq: i64,
    live: i64,
    /// What is known of ids (stored, or written earlier in the batch): `None` for an
    /// id read and found absent.
    known: HashMap<String, Option<StoredRev>>,
    pending: BTreeMap<String, Pending>,
}

impl Batch {
    pub async fn start<C: GenericClient + Sync>(
        x: &mut Exec<'_, C>,
        base: &str,
        inst: &InstanceId,
        dt: &Doctype,
    ) -> StoreResult<Self> {
        let loc = schema::ensure(x, base, inst, dt).await?;
        Ok(Self {
            table: loc.table(base),
            doctypes: format!("{base}.doctypes"),
            seq: loc.last_seq,
            live: loc.live,
            loc,
            known: HashMap::new(),
            pending: BTreeMap::new(),
        })
    }

    /// Reads the stored state of the ids of these documents that the batch does not
    /// know yet, in one query.
    pub async fn prefetch<C: GenericClient + Sync>(
        &mut self,
        x: &mut Exec<'_, C>,
        docs: &[JsonMap],
    ) -> StoreResult<()> {
        let ids: Vec<String> = docs
            .iter()
            .filter_map(|d| d.get("_id").and_then(|v| v.as_str()))
            .map(str::to_owned)
            .collect();
        self.prefetch_ids(x, ids).await
    }

    /// Reads the stored state of these ids that the batch does not know yet.
    pub async fn prefetch_ids<C: GenericClient + Sync>(
        &mut self,
        x: &mut Exec<'_, C>,
        mut ids: Vec<String>,
    ) -> StoreResult<()> {
        ids.retain(|id| !self.known.contains_key(id));
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT id, rev, deleted, revs FROM {} WHERE id = ANY($1)",
            self.table
        );
        for row in x.query(&sql, &[&ids]).await? {
            let id: String = row.get(0);
            let rev: String = row.get(1);
            let existing = StoredRev {
                rev: rev.parse().map_err(StoreError::internal)?,
                deleted: row.get(2),
                revs: row.get(3),
            };
            self.known.insert(id, Some(existing));
        }
        for id in ids {
            self.known.entry(id).or_insert(None);
        }
        Ok(())
    }

    /// Decides one document's write, as `DocStore::put` describes (the batch must have
    /// prefetched its id).
    pub fn put(&mut self, doc: JsonMap) -> StoreResult<Written> {
        let doc = split_put(doc)?;
        let out = doc.decide(self.known.get(&doc.id).and_then(Option::as_ref))?;
        self.live += out.live;
        self.record(
            doc.id.clone(),
            out.rev.clone(),
            doc.deleted,
            doc.body,
            out.revs,
        );
        Ok(Written {
            id: doc.id,
            rev: out.rev,
        })
    }

    /// Decides the write of a restored document (`DocStore::restore`): its revision
    /// and history as given, nothing when the id holds that revision already (the
    /// batch must have prefetched its id).
    pub fn restore(&mut self, doc: Restored) {
        let Some(live) = doc.decide(self.known.get(&doc.id).and_then(Option::as_ref)) else {
            return;
        };
        self.live += live;
        self.record(doc.id, doc.rev, doc.deleted, doc.body, doc.history);
    }

    /// Records the new state of an id, to be written by [`Batch::finish`].
    fn record(&mut self, id: String, rev: Rev, deleted: bool, body: String, revs: String) {
        self.seq += 1;
        self.pending.insert(
            id.clone(),
            Pending {
                seq: self.seq,
                rev: rev.to_string(),
                deleted,
                body,
                revs: revs.clone(),
            },
        );
        self.known
            .insert(id, Some(StoredRev { rev, deleted, revs }));
    }

    /// Writes the batch's rows and counters (nothing when nothing was decided).
    pub async fn finish<C: GenericClient + Sync>(self, x: &mut Exec<'_, C>) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = self.pending.len();
        let (mut ids, mut seqs, mut revs, mut dels, mut bodies, mut hists) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (id, p) in self.pending {
            ids.push(id);
            seqs.push(p.seq);
            revs.push(p.rev);
            dels.push(p.deleted);
            bodies.push(p.body);
            hists.push(p.revs);
        }
        // One statement (one round trip) for the rows and the counters.
        let sql = format!(
            "WITH up AS (INSERT INTO {} (id, seq, rev, deleted, data, revs) \
             SELECT u.id, u.seq, u.rev, u.deleted, u.data::jsonb, u.revs \
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::bool[], $5::text[], $6::text[]) \
                  AS u(id, seq, rev, deleted, data, revs) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, rev = excluded.rev, \
                deleted = excluded.deleted, data = excluded.data, revs = excluded.revs) \
             UPDATE {} SET last_seq = $7, live = $8 WHERE n = $9",
            self.table, self.doctypes
        );
        x.execute(
            &sql,
            &[
                &ids,
                &seqs,
                &revs,
                &dels,
                &bodies,
                &hists,
                &self.seq,
                &self.live,
                &self.loc.n,
            ],
        )
        .await?;
        Ok(())
    }
}

pub(crate) async fn put<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    doc: JsonMap,
) -> StoreResult<Written> {
    let mut batch = Batch::start(x, base, inst, dt).await?;
    batch.prefetch(x, std::slice::from_ref(&doc)).await?;
    let written = batch.put(doc)?;
    batch.finish(x).await?;
    Ok(written)
}

/// Writes documents with their own revisions (`DocStore::restore`).
pub(crate) async fn restore<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    docs: Vec<JsonMap>,
) -> StoreResult<()> {
    let docs = docs
        .into_iter()
        .map(split_restored)
        .collect::<StoreResult<Vec<_>>>()?;
    let mut batch = Batch::start(x, base, inst, dt).await?;
    batch
        .prefetch_ids(x, docs.iter().map(|d| d.id.clone()).collect())
        .await?;
    for doc in docs {
        batch.restore(doc);
    }
    batch.finish(x).await
}

/// A bulk write; `Ok((results, commit))` where `commit` says whether to commit.
pub(crate) async fn bulk<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    docs: Vec<JsonMap>,
    all_or_nothing: bool,
) -> StoreResult<(Vec<BulkResult>, bool)> {
    let mut batch = Batch::start(x, base, inst, dt).await?;
    batch.prefetch(x, &docs).await?;
    let mut results = Vec::with_capacity(docs.len());
    let ok = put_all(docs, &mut results, false, |doc| batch.put(doc))?;
    if !ok && all_or_nothing {
        return Ok((aborted(results), false));
    }
    batch.finish(x).await?;
    Ok((results, true))
}

/// Several doctypes in one transaction; `commit` is false when any document failed.
pub(crate) async fn bulk_many<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    groups: Vec<(Doctype, Vec<JsonMap>)>,
) -> StoreResult<(Vec<Vec<BulkResult>>, bool)> {
    // Lock the doctypes in name order, so two bulk writes never wait for each other in
    // a cycle.
    let mut batches: BTreeMap<Doctype, Batch> = BTreeMap::new();
    let mut names: Vec<&Doctype> = groups.iter().map(|(dt, _)| dt).collect();
    names.sort_unstable();
    names.dedup();
    for dt in names {
        let batch = Batch::start(x, base, inst, dt).await?;
        batches.insert(dt.clone(), batch);
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut ok = true;
    for (dt, docs) in groups {
        let batch = batches
            .get_mut(&dt)
            .ok_or_else(|| StoreError::invalid("doctype missing from the batch"))?;
        batch.prefetch(x, &docs).await?;
        let mut results = Vec::with_capacity(docs.len());
        ok &= put_all(docs, &mut results, true, |doc| batch.put(doc))?;
        out.push(results);
    }
    if !ok {
        return Ok((out, false));
    }
    for batch in batches.into_values() {
        batch.finish(x).await?;
    }
    Ok((out, true))
}

/// Declares one index (inside the caller's transaction).
pub(crate) async fn create_index<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    def: IndexDef,
) -> StoreResult<IndexCreated> {
    let exprs = def
        .fields
        .iter()
        .map(|f| schema::key_expr(base, f))
        .collect::<StoreResult<Vec<_>>>()?;
    let loc = schema::ensure(x, base, inst, dt).await?;
    let created = IndexCreated {
        created: true,
        ddoc: def.ddoc.clone(),
        name: def.name.clone(),
    };
    let select = format!("SELECT k, def FROM {base}.mango_indexes WHERE dt = $1 AND ddoc = $2");
    if let Some(row) = x.opt(&select, &[&loc.n, &def.ddoc]).await? {
        let k: i64 = row.get(0);
        let old: String = row.get(1);
        if schema::def_from_json(&old)? == def {
            return Ok(IndexCreated {
                created: false,
                ..created
            });
        }
        // Same design document, new definition: replace it, as CouchDB would.
        drop_index(x, base, &loc, k).await?;
    }
    let insert = format!(
        "INSERT INTO {base}.mango_indexes (inst, dt, ddoc, def) VALUES ($1, $2, $3, $4) RETURNING k"
    );
    let k: i64 = x
        .one(
            &insert,
            &[&loc.inst, &loc.n, &def.ddoc, &schema::def_to_json(&def)],
        )
        .await?
        .get(0);
    x.batch(&format!(
        "CREATE INDEX ix_{k} ON {} ({}, id) WHERE NOT deleted",
        loc.table(base),
        exprs.join(", ")
    ))
    .await?;
    Ok(created)
}

async fn drop_index<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    loc: &Loc,
    k: i64,
) -> StoreResult<()> {
    x.batch(&format!("DROP INDEX IF EXISTS {}.ix_{k}", loc.schema(base)))
        .await?;
    let delete = format!("DELETE FROM {base}.mango_indexes WHERE k = $1");
    x.execute(&delete, &[&k]).await?;
    Ok(())
}

pub(crate) async fn delete_index<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    ddoc: &str,
) -> StoreResult<()> {
    let ddoc = ddoc.trim_start_matches("_design/");
    let missing = StoreError::NotFound(NotFoundReason::Missing);
    let loc = schema::locate(x, base, inst, dt, true)
        .await?
        .ok_or(missing)?;
    let select = format!("SELECT k FROM {base}.mango_indexes WHERE dt = $1 AND ddoc = $2");
    let k: i64 = x
        .opt(&select, &[&loc.n, &ddoc])
        .await?
        .ok_or(StoreError::NotFound(NotFoundReason::Missing))?
        .get(0);
    drop_index(x, base, &loc, k).await
}

pub(crate) async fn delete_doctype<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
) -> StoreResult<()> {
    let loc = schema::locate(x, base, inst, dt, true)
        .await?
        .ok_or(StoreError::NotFound(NotFoundReason::NoDatabase))?;
    x.batch(&format!("DROP TABLE IF EXISTS {}", loc.table(base)))
        .await?;
    let indexes = format!("DELETE FROM {base}.mango_indexes WHERE dt = $1");
    x.execute(&indexes, &[&loc.n]).await?;
    let doctype = format!("DELETE FROM {base}.doctypes WHERE n = $1");
    x.execute(&doctype, &[&loc.n]).await?;
    Ok(())
}

pub(crate) async fn destroy_instance<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
) -> StoreResult<()> {
    let delete = format!("DELETE FROM {base}.instances WHERE name = $1 RETURNING n");
    let Some(row) = x.opt(&delete, &[&inst.as_str()]).await? else {
        return Ok(());
    };
    let n: i64 = row.get(0);
    let doctypes = format!("DELETE FROM {base}.doctypes WHERE inst = $1");
    x.execute(&doctypes, &[&n]).await?;
    let indexes = format!("DELETE FROM {base}.mango_indexes WHERE inst = $1");
    x.execute(&indexes, &[&n]).await?;
    x.batch(&format!("DROP SCHEMA IF EXISTS {base}_{n} CASCADE"))
        .await
}
