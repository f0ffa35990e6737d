//! The decisions of a document write, shared by the backends: the checks of a
//! document given to `put` or `restore`, and what it does to its id given the id's
//! stored state (new revision, conflict, tombstone, live count). Pure: each backend
//! reads the stored state its own way and writes the outcome.

use hearth_core::{JsonMap, Rev, new_doc_id};
use serde_json::Value;

use crate::{BulkResult, NotFoundReason, StoreError, StoreResult, Written, split_doc};

/// How many revision hashes a stored history keeps besides the current one (CouchDB's
/// default `revs_limit` is 1000, the current revision included).
pub const REVS_HISTORY_LIMIT: usize = 999;

/// The stored state of an id, as a write decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRev {
    pub rev: Rev,
    pub deleted: bool,
    /// The hashes of the earlier revisions, newest first, separated by spaces (the
    /// stores' `revs` column).
    pub revs: String,
}

/// A document given to [`DocStore::put`](crate::DocStore::put), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutDoc {
    pub id: String,
    /// Whether the id was generated (the document had no `_id`).
    pub generated: bool,
    /// The revision the write is based on (`_rev`).
    pub base: Option<Rev>,
    pub deleted: bool,
    /// The body as JSON text (`{}` for a tombstone).
    pub body: String,
}

/// What a put writes: the new revision, its history, and the change of the live count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub rev: Rev,
    pub revs: String,
    pub live: i64,
}

/// Checks and splits a document for [`DocStore::put`](crate::DocStore::put); an id is
/// generated when it has none.
pub fn split_put(doc: JsonMap) -> StoreResult<PutDoc> {
    let (id, base, deleted, body) = split_doc(doc)?;
    let generated = id.is_none();
    let id = id.unwrap_or_else(new_doc_id);
    check_id(&id)?;
    Ok(PutDoc {
        id,
        generated,
        base,
        deleted,
        body: body_text(deleted, &body)?,
    })
}

impl PutDoc {
    /// Decides the put from the stored state of its id (`None`: never written), as
    /// [`DocStore::put`](crate::DocStore::put) describes: a conflict, a missing or
    /// deleted document, or the new revision.
    pub fn decide(&self, stored: Option<&StoredRev>) -> StoreResult<PutOutcome> {
        let prev = match (stored, &self.base) {
            (None, None) if !self.deleted => None,
            (None, None) => return Err(StoreError::NotFound(NotFoundReason::Missing)),
            (None, Some(_)) => return Err(StoreError::Conflict),
            (Some(e), None) if e.deleted && !self.deleted => Some(e),
            (Some(e), None) if e.deleted => {
                return Err(StoreError::NotFound(NotFoundReason::Deleted));
            }
            (Some(_), None) => return Err(StoreError::Conflict),
            (Some(e), Some(r)) if &e.rev == r => {
                if e.deleted && self.deleted {
                    return Err(StoreError::NotFound(NotFoundReason::Deleted));
                }
                Some(e)
            }
            (Some(_), Some(_)) => return Err(StoreError::Conflict),
        };
        Ok(PutOutcome {
            rev: Rev::next(prev.map(|p| &p.rev), self.deleted, self.body.as_bytes()),
            revs: prev.map_or_else(String::new, |p| history(&p.rev, &p.revs)),
            live: match prev {
                None => 1,
                Some(p) => i64::from(p.deleted) - i64::from(self.deleted),
            },
        })
    }
}

/// A document given to [`DocStore::restore`](crate::DocStore::restore), checked and
/// ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub id: String,
    pub rev: Rev,
    pub deleted: bool,
    /// The body as JSON text (`{}` for a tombstone).
    pub body: String,
    /// The hashes of the earlier revisions, newest first, separated by spaces (the
    /// stores' `revs` column).
    pub history: String,
}

impl Restored {
    /// Decides the restore from the stored state of its id: `None` when the id holds
    /// that revision already (nothing to write), else the change of the live count.
    pub fn decide(&self, stored: Option<&StoredRev>) -> Option<i64> {
        if stored.is_some_and(|e| e.rev == self.rev && e.deleted == self.deleted) {
            return None;
        }
        let was_live = stored.is_some_and(|e| !e.deleted);
        Some(i64::from(!self.deleted) - i64::from(was_live))
    }
}

/// Checks and splits a document for [`DocStore::restore`](crate::DocStore::restore):
/// `_id` and `_rev` are required; `_revisions`, when present, must be `{start, ids}`
/// starting with `_rev`.
pub fn split_restored(mut doc: JsonMap) -> StoreResult<Restored> {
    let revisions = doc.shift_remove("_revisions");
    let (id, rev, deleted, body) = split_doc(doc)?;
    let id = id.ok_or_else(|| StoreError::invalid("a restored document needs an _id"))?;
    check_id(&id)?;
    let rev = rev.ok_or_else(|| StoreError::invalid("a restored document needs a _rev"))?;
    let mut history = String::new();
    if let Some(revisions) = revisions.filter(|r| !r.is_null()) {
        let bad = || StoreError::invalid("_revisions must be {start, ids} ending at _rev");
        let start = revisions
            .get("start")
            .and_then(Value::as_u64)
            .ok_or_else(bad)?;
        let ids = revisions
            .get("ids")
            .and_then(Value::as_array)
            .ok_or_else(bad)?;
        let mut hashes = ids.iter().map(Value::as_str);
        if start != rev.generation || hashes.next() != Some(Some(rev.hash.as_str())) {
            return Err(bad());
        }
        for hash in hashes.take(REVS_HISTORY_LIMIT) {
            let hash = hash.ok_or_else(bad)?;
            let valid = hash.len() == 32
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !valid {
                return Err(bad());
            }
            if !history.is_empty() {
                history.push(' ');
            }
            history.push_str(hash);
        }
    }
    Ok(Restored {
        id,
        rev,
        deleted,
        body: body_text(deleted, &body)?,
        history,
    })
}

/// Only reserved ids (`_design/…`, `_local/…`) may start with an underscore.
fn check_id(id: &str) -> StoreResult<()> {
    if id.starts_with('_') && !id.starts_with("_design/") && !id.starts_with("_local/") {
        return Err(StoreError::invalid(
            "Only reserved document ids may start with underscore.",
        ));
    }
    Ok(())
}

/// The stored text of a body (`{}` for a tombstone).
fn body_text(deleted: bool, body: &JsonMap) -> StoreResult<String> {
    if deleted {
        Ok("{}".to_owned())
    } else {
        serde_json::to_string(body).map_err(StoreError::internal)
    }
}

/// The stored history of an updated document: the hashes of the revisions before the
/// new one, newest first (the new revision's own hash is in the `rev` column).
fn history(prev: &Rev, older: &str) -> String {
    let mut out = String::with_capacity(33 + older.len());
    out.push_str(&prev.hash);
    for h in older
        .split(' ')
        .filter(|h| !h.is_empty())
        .take(REVS_HISTORY_LIMIT - 1)
    {
        out.push(' ');
        out.push_str(h);
    }
    out
}

/// Puts the documents of a bulk write one by one with `put`, pushing each answer to
/// `results`; `Ok(false)` when one of them failed. An internal error stops at once.
/// With `as_conflicts` every failure is answered as a `conflict` (`bulk_many`).
pub fn put_all(
    docs: Vec<JsonMap>,
    results: &mut Vec<BulkResult>,
    as_conflicts: bool,
    mut put: impl FnMut(JsonMap) -> StoreResult<Written>,
) -> StoreResult<bool> {
    let mut ok = true;
    for doc in docs {
        let id = doc.get("_id").and_then(|v| v.as_str()).map(str::to_owned);
        match put(doc) {
            Ok(w) => results.push(BulkResult::Ok(w)),
            Err(StoreError::Internal(e)) => return Err(StoreError::Internal(e)),
            Err(e) => {
                ok = false;
                let (error, reason) = match &e {
                    _ if as_conflicts => ("conflict", e.to_string()),
                    StoreError::Conflict => ("conflict", e.to_string()),
                    StoreError::NotFound(r) => ("not_found", r.as_str().to_owned()),
                    _ => ("bad_request", e.to_string()),
                };
                results.push(BulkResult::Err { id, error, reason });
            }
        }
    }
    Ok(ok)
}

/// The answers of an all-or-nothing bulk write that failed: every written document
/// becomes `aborted`.
pub fn aborted(results: Vec<BulkResult>) -> Vec<BulkResult> {
    results
        .into_iter()
        .map(|r| match r {
            BulkResult::Ok(w) => BulkResult::Err {
                id: Some(w.id),
                error: "aborted",
                reason: "another document of the batch failed; nothing was written".into(),
            },
            e => e,
        })
        .collect()
}
