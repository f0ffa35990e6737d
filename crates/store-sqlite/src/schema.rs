//! The SQLite schema: connection setup, the doctype tables and the Mango index table.
//!
//! Each doctype gets its own table `dt_<n>` (`seq` is the rowid, so the changes feed is
//! a rowid range); its name is registered in `doctypes`, so doctype strings never reach
//! SQL text. Mango indexes are expression indexes over `couch_key(...)`, a function
//! that maps a JSON value to its CouchDB collation key.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
};

use hearth_core::{Doctype, JsonMap};
use hearth_store::{
    StoreError, StoreResult, collate,
    mango::{FieldPath, IndexDef},
};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, functions::FunctionFlags, types::ValueRef,
};

pub(crate) fn err(e: rusqlite::Error) -> StoreError {
    StoreError::internal(e)
}

/// The pragmas of every connection: WAL (readers never wait for the writer), the
/// chosen durability, and reads through a memory map (no copy per page read; the map
/// only reserves address space).
pub fn pragmas(synchronous_full: bool) -> String {
    let sync = if synchronous_full { "FULL" } else { "NORMAL" };
    format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; \
         PRAGMA mmap_size=268435456; PRAGMA cache_size=-16384;"
    )
}

/// Opens a connection with Hearth's pragmas and the `couch_key` function.
pub(crate) fn open(path: &Path, synchronous_full: bool) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err)?;
    conn.execute_batch(&pragmas(synchronous_full))
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    register_functions(&conn)?;
    Ok(conn)
}

/// `couch_key(json_text)`: the collation key of a JSON value given as JSON text (what
/// `data -> '$.path'` returns), or the "missing" key for SQL NULL (an absent field).
pub(crate) fn register_functions(conn: &Connection) -> StoreResult<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("couch_key", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Text(t) => match serde_json::from_slice::<serde_json::Value>(t) {
                Ok(v) => collate::sort_key(&v),
                Err(_) => collate::MISSING_KEY.to_vec(),
            },
            _ => collate::MISSING_KEY.to_vec(),
        })
    })
    .map_err(err)
}

/// Creates the tables every instance database has.
pub(crate) fn init(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS doctypes (
            n INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            last_seq INTEGER NOT NULL DEFAULT 0,
            live INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS mango_indexes (
            doctype TEXT NOT NULL,
            ddoc TEXT NOT NULL,
            name TEXT NOT NULL,
            def TEXT NOT NULL,
            sql_name TEXT NOT NULL UNIQUE,
            PRIMARY KEY (doctype, ddoc)
        );",
    )
    .map_err(err)
}

/// A doctype's table.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub n: i64,
    pub last_seq: u64,
    pub live: u64,
}

impl Table {
    pub fn name(&self) -> String {
        format!("dt_{}", self.n)
    }
}

pub(crate) fn table(conn: &Connection, dt: &Doctype) -> StoreResult<Option<Table>> {
    conn.prepare_cached("SELECT n, last_seq, live FROM doctypes WHERE name = ?1")
        .and_then(|mut s| {
            s.query_row([dt.as_str()], |r| {
                Ok(Table {
                    n: r.get(0)?,
                    last_seq: r.get::<_, i64>(1)? as u64,
                    live: r.get::<_, i64>(2)? as u64,
                })
            })
            .optional()
        })
        .map_err(err)
}

/// The doctype's table, created when missing (call inside a write transaction).
pub(crate) fn ensure_table(conn: &Connection, dt: &Doctype) -> StoreResult<Table> {
    if let Some(t) = table(conn, dt)? {
        return Ok(t);
    }
    conn.execute("INSERT INTO doctypes (name) VALUES (?1)", [dt.as_str()])
        .map_err(err)?;
    let t = Table {
        n: conn.last_insert_rowid(),
        last_seq: 0,
        live: 0,
    };
    conn.execute_batch(&format!(
        "CREATE TABLE {} (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            rev TEXT NOT NULL,
            deleted INTEGER NOT NULL,
            data TEXT NOT NULL,
            revs TEXT NOT NULL
        )",
        t.name()
    ))
    .map_err(err)?;
    Ok(t)
}

pub(crate) fn doctypes(conn: &Connection) -> StoreResult<Vec<Doctype>> {
    let mut s = conn
        .prepare_cached("SELECT name FROM doctypes ORDER BY name")
        .map_err(err)?;
    let names = s.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
    names
        .map(|n| {
            n.map_err(err)
                .and_then(|n| Doctype::new(n).map_err(StoreError::internal))
        })
        .collect()
}

/// A declared Mango index and the name of its SQLite index.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub def: IndexDef,
    pub sql_name: String,
}

pub(crate) fn indexes(conn: &Connection, dt: &Doctype) -> StoreResult<Vec<Index>> {
    let mut s = conn
        .prepare_cached("SELECT def, sql_name FROM mango_indexes WHERE doctype = ?1 ORDER BY ddoc")
        .map_err(err)?;
    let rows = s
        .query_map([dt.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        let (def, sql_name) = row.map_err(err)?;
        out.push(Index {
            def: def_from_json(&def)?,
            sql_name,
        });
    }
    Ok(out)
}

pub(crate) fn def_to_json(def: &IndexDef) -> String {
    serde_json::json!({
        "ddoc": def.ddoc,
        "name": def.name,
        "fields": def.fields.iter().map(FieldPath::dotted).collect::<Vec<_>>(),
        "partial_filter_selector": def.partial_filter_selector,
    })
    .to_string()
}

fn def_from_json(s: &str) -> StoreResult<IndexDef> {
    let v: serde_json::Value = serde_json::from_str(s).map_err(StoreError::internal)?;
    let mut body = JsonMap::new();
    let mut index = JsonMap::new();
    index.insert(
        "fields".into(),
        v.get("fields").cloned().unwrap_or_default(),
    );
    if let Some(p) = v.get("partial_filter_selector").filter(|p| !p.is_null()) {
        index.insert("partial_filter_selector".into(), p.clone());
    }
    body.insert("index".into(), index.into());
    body.insert("ddoc".into(), v.get("ddoc").cloned().unwrap_or_default());
    body.insert("name".into(), v.get("name").cloned().unwrap_or_default());
    IndexDef::parse(&body.into())
}

/// The SQL expression of a field's collation key. Index definitions and queries use
/// the very same text, which is what lets SQLite match them.
pub(crate) fn key_expr(path: &FieldPath) -> StoreResult<String> {
    if path.0.len() == 1 && path.0[0] == "_id" {
        return Ok("couch_key(json_quote(id))".to_owned());
    }
    let mut json_path = String::from("$");
    for part in &path.0 {
        if part.contains('"')
            || part.chars().any(char::is_control)
            || part.starts_with('_') && path.0.len() == 1
        {
            return Err(StoreError::invalid(format!(
                "field {:?} cannot be indexed",
                path.dotted()
            )));
        }
        json_path.push_str(".\"");
        json_path.push_str(&part.replace('\'', "''"));
        json_path.push('"');
    }
    Ok(format!("couch_key(data -> '{json_path}')"))
}

/// The JSON of a document as clients see it: the stored body with `_id` and `_rev`
/// first (and `_deleted` for a tombstone), spliced as text so it is parsed only once.
pub(crate) fn doc_json(id: &str, rev: &str, body: &str, deleted: bool) -> StoreResult<String> {
    let id = serde_json::to_string(id).map_err(StoreError::internal)?;
    let mut out = String::with_capacity(body.len() + id.len() + 64);
    out.push_str("{\"_id\":");
    out.push_str(&id);
    out.push_str(",\"_rev\":\"");
    out.push_str(rev);
    out.push('"');
    if deleted {
        out.push_str(",\"_deleted\":true}");
    } else if body.len() > 2 {
        out.push(',');
        out.push_str(&body[1..]);
    } else {
        out.push('}');
    }
    Ok(out)
}

/// What readers look up on every call, cached per database: doctype → table number,
/// doctype → Mango indexes. Schema changes call [`MetaCache::invalidate`] after they
/// commit; a generation number keeps a reader that looked up the old schema from
/// caching it after the invalidation. Table numbers are never reused (AUTOINCREMENT).
#[derive(Default)]
pub(crate) struct MetaCache {
    inner: Mutex<MetaInner>,
}

#[derive(Default)]
struct MetaInner {
    generation: u64,
    tables: HashMap<String, i64>,
    indexes: HashMap<String, Arc<Vec<Index>>>,
}

impl MetaCache {
    fn lock(&self) -> MutexGuard<'_, MetaInner> {
        // The maps stay consistent whatever panicked while the lock was held.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The table name of a doctype, if it exists.
    pub(crate) fn table_name(
        &self,
        conn: &Connection,
        dt: &Doctype,
    ) -> StoreResult<Option<String>> {
        let generation = {
            let inner = self.lock();
            if let Some(n) = inner.tables.get(dt.as_str()) {
                return Ok(Some(format!("dt_{n}")));
            }
            inner.generation
        };
        let Some(t) = table(conn, dt)? else {
            return Ok(None);
        };
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.tables.insert(dt.as_str().to_owned(), t.n);
        }
        Ok(Some(t.name()))
    }

    /// The Mango indexes of a doctype.
    pub(crate) fn indexes(&self, conn: &Connection, dt: &Doctype) -> StoreResult<Arc<Vec<Index>>> {
        let generation = {
            let inner = self.lock();
            if let Some(i) = inner.indexes.get(dt.as_str()) {
                return Ok(i.clone());
            }
            inner.generation
        };
        let found = Arc::new(indexes(conn, dt)?);
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.indexes.insert(dt.as_str().to_owned(), found.clone());
        }
        Ok(found)
    }

    /// Forgets everything; called after a schema change commits.
    pub(crate) fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.tables.clear();
        inner.indexes.clear();
    }
}
