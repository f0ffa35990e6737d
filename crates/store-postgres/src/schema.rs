//! The PostgreSQL schema: the registry tables, the collation-key functions, per-instance
//! schemas and per-doctype tables, and the lookups every call starts with.
//!
//! Names are built from numbers only (`<base>_<instance n>.d_<doctype n>`, `ix_<k>`):
//! instance ids, doctypes and design documents never reach SQL text. Field names of
//! Mango indexes do, as string literals, once [`key_expr`] has refused quotes and
//! control characters (as the SQLite store does).

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_store::{
    StoreError, StoreResult,
    mango::{FieldPath, IndexDef},
};
use tokio_postgres::GenericClient;

use crate::pool::Exec;

/// The registry tables and the `couch_key` functions of a base schema `{b}`.
///
/// `couch_key(jsonb)` is [`hearth_store::collate::sort_key`] written in SQL: bytes whose
/// order is CouchDB's collation, so a btree over them sorts as CouchDB does. Strings
/// are lowercased character by character (ICU's root rules when the server has ICU)
/// and uppercase is "changes when lowercased, not when uppercased"; for ASCII, Latin,
/// Greek and Cyrillic text this is exactly what the Rust function computes (a test
/// compares them), and range bounds and bookmarks are computed by this same function,
/// so an index and the values compared with it always agree.
fn init_sql(b: &str, icu: &str) -> String {
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS {b};
CREATE TABLE IF NOT EXISTS {b}.instances (
    n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS {b}.doctypes (
    n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inst bigint NOT NULL,
    name text COLLATE "C" NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0,
    live bigint NOT NULL DEFAULT 0,
    UNIQUE (inst, name)
);
CREATE TABLE IF NOT EXISTS {b}.mango_indexes (
    k bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inst bigint NOT NULL,
    dt bigint NOT NULL,
    ddoc text COLLATE "C" NOT NULL,
    def text NOT NULL,
    UNIQUE (dt, ddoc)
);
CREATE INDEX IF NOT EXISTS mango_indexes_inst ON {b}.mango_indexes (inst);

CREATE OR REPLACE FUNCTION {b}.couch_key_str(s text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
DECLARE
    prim text;
    tert text;
BEGIN
    IF s ~ '^[\x01-\x7f]*$' THEN
        prim := lower(s COLLATE "C");
        tert := regexp_replace(regexp_replace(s COLLATE "C", '[^A-Z]', E'\x01', 'g'),
                               '[A-Z]', E'\x02', 'g');
    ELSE
        SELECT coalesce(string_agg(lower(c COLLATE {icu}), '' ORDER BY n), ''),
               coalesce(string_agg(CASE WHEN lower(c COLLATE {icu}) <> c
                                         AND upper(c COLLATE {icu}) = c
                                        THEN E'\x02' ELSE E'\x01' END, '' ORDER BY n), '')
        INTO prim, tert
        FROM unnest(string_to_array(s, NULL)) WITH ORDINALITY AS t(c, n);
    END IF;
    RETURN '\x40'::bytea || convert_to(prim, 'UTF8') || '\x0001'::bytea
        || convert_to(tert, 'UTF8') || '\x00'::bytea
        || convert_to(s, 'UTF8') || '\x0001'::bytea;
END
$f$;

CREATE OR REPLACE FUNCTION {b}.couch_key(v jsonb) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $f$
DECLARE
    out bytea;
    item jsonb;
    k text;
    f float8;
    bits int8;
BEGIN
    IF v IS NULL THEN
        RETURN '\x01'::bytea;
    END IF;
    CASE jsonb_typeof(v)
    WHEN 'null' THEN
        RETURN '\x10'::bytea;
    WHEN 'boolean' THEN
        RETURN CASE WHEN v = 'true'::jsonb THEN '\x21'::bytea ELSE '\x20'::bytea END;
    WHEN 'number' THEN
        f := v::float8;
        IF f = 0 THEN
            f := 0;
        END IF;
        bits := ('x' || encode(float8send(f), 'hex'))::bit(64)::int8;
        IF bits < 0 THEN
            bits := ~bits;
        ELSE
            bits := bits # (-9223372036854775807 - 1);
        END IF;
        RETURN '\x30'::bytea || int8send(bits);
    WHEN 'string' THEN
        RETURN {b}.couch_key_str(v #>> '{{}}');
    WHEN 'array' THEN
        out := '\x50'::bytea;
        FOR item IN SELECT e FROM jsonb_array_elements(v) WITH ORDINALITY AS t(e, n) ORDER BY n LOOP
            out := out || {b}.couch_key(item);
        END LOOP;
        RETURN out || '\x00'::bytea;
    ELSE
        out := '\x60'::bytea;
        FOR k, item IN SELECT key, value FROM jsonb_each(v) WITH ORDINALITY AS t(key, value, n) ORDER BY n LOOP
            out := out || {b}.couch_key_str(k) || {b}.couch_key(item);
        END LOOP;
        RETURN out || '\x00'::bytea;
    END CASE;
END
$f$;
"#
    )
}

/// Creates the base schema, once per store and process (the advisory lock keeps
/// several nodes starting together from racing on `CREATE … IF NOT EXISTS`).
pub(crate) async fn init(conn: &mut crate::pool::Conn, base: &str) -> StoreResult<()> {
    let (client, cache) = conn.parts();
    let tx = client.transaction().await.map_err(crate::pool::err)?;
    let mut x = Exec {
        c: &tx,
        cache: &mut *cache,
    };
    let lock = format!("SELECT pg_advisory_xact_lock(hashtext('hearth:{base}'))");
    x.batch(&lock).await?;
    let encoding: String = x.one("SHOW server_encoding", &[]).await?.get(0);
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(StoreError::invalid(format!(
            "the PostgreSQL database must use the UTF8 encoding, not {encoding}"
        )));
    }
    let icu = x
        .opt(
            "SELECT collname::text FROM pg_collation WHERE collname = 'und-x-icu' \
             UNION ALL SELECT 'default' LIMIT 1",
            &[],
        )
        .await?
        .map_or_else(|| "default".to_owned(), |r| r.get(0));
    let icu = format!("\"{icu}\"");
    x.batch(&init_sql(base, &icu)).await?;
    tx.commit().await.map_err(crate::pool::err)
}

/// Where a doctype of an instance lives, and its counters.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub inst: i64,
    pub n: i64,
    pub last_seq: i64,
    pub live: i64,
}

impl Loc {
    pub fn table(&self, base: &str) -> String {
        format!("{base}_{}.d_{}", self.inst, self.n)
    }

    pub fn schema(&self, base: &str) -> String {
        format!("{base}_{}", self.inst)
    }
}

fn loc_of(r: &tokio_postgres::Row) -> Loc {
    Loc {
        inst: r.get(0),
        n: r.get(1),
        last_seq: r.get(2),
        live: r.get(3),
    }
}

/// Finds a doctype (`FOR UPDATE` locks its row: writers of one doctype take turns,
/// which keeps sequence numbers in commit order).
pub(crate) async fn locate<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
    for_update: bool,
) -> StoreResult<Option<Loc>> {
    let sql = format!(
        "SELECT d.inst, d.n, d.last_seq, d.live FROM {base}.doctypes d \
         JOIN {base}.instances i ON i.n = d.inst WHERE i.name = $1 AND d.name = $2{}",
        if for_update { " FOR UPDATE OF d" } else { "" }
    );
    Ok(x.opt(&sql, &[&inst.as_str(), &dt.as_str()])
        .await?
        .as_ref()
        .map(loc_of))
}

/// A declared Mango index.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub def: IndexDef,
}

/// Finds a doctype with its Mango indexes, in one round trip.
pub(crate) async fn locate_with_indexes<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
) -> StoreResult<Option<(Loc, Vec<Index>)>> {
    let sql = format!(
        "SELECT d.inst, d.n, d.last_seq, d.live, \
           ARRAY(SELECT m.def FROM {base}.mango_indexes m WHERE m.dt = d.n ORDER BY m.ddoc) \
         FROM {base}.doctypes d JOIN {base}.instances i ON i.n = d.inst \
         WHERE i.name = $1 AND d.name = $2"
    );
    let Some(row) = x.opt(&sql, &[&inst.as_str(), &dt.as_str()]).await? else {
        return Ok(None);
    };
    let defs: Vec<String> = row.get(4);
    let indexes = defs
        .iter()
        .map(|def| {
            Ok(Index {
                def: def_from_json(def)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some((loc_of(&row), indexes)))
}

/// The instance's number, its schema created with it when `create` is set.
async fn instance<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
) -> StoreResult<i64> {
    let select = format!("SELECT n FROM {base}.instances WHERE name = $1");
    if let Some(r) = x.opt(&select, &[&inst.as_str()]).await? {
        return Ok(r.get(0));
    }
    let insert = format!(
        "INSERT INTO {base}.instances (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING n"
    );
    if let Some(r) = x.opt(&insert, &[&inst.as_str()]).await? {
        let n: i64 = r.get(0);
        x.batch(&format!("CREATE SCHEMA {base}_{n}")).await?;
        return Ok(n);
    }
    // Another transaction registered it meanwhile (and committed: the insert waited).
    Ok(x.one(&select, &[&inst.as_str()]).await?.get(0))
}

/// The doctype's location, its table created when missing; its row is locked either
/// way (call inside a write transaction).
pub(crate) async fn ensure<C: GenericClient + Sync>(
    x: &mut Exec<'_, C>,
    base: &str,
    inst: &InstanceId,
    dt: &Doctype,
) -> StoreResult<Loc> {
    if let Some(loc) = locate(x, base, inst, dt, true).await? {
        return Ok(loc);
    }
    let i = instance(x, base, inst).await?;
    let insert = format!(
        "INSERT INTO {base}.doctypes (inst, name) VALUES ($1, $2) \
         ON CONFLICT (inst, name) DO NOTHING RETURNING n"
    );
    if let Some(r) = x.opt(&insert, &[&i, &dt.as_str()]).await? {
        let loc = Loc {
            inst: i,
            n: r.get(0),
            last_seq: 0,
            live: 0,
        };
        let table = loc.table(base);
        x.batch(&format!(
            "CREATE TABLE {table} (
                id text COLLATE \"C\" PRIMARY KEY,
                seq bigint NOT NULL,
                rev text NOT NULL,
                deleted boolean NOT NULL,
                data jsonb NOT NULL,
                revs text NOT NULL
            );
            CREATE UNIQUE INDEX d_{n}_seq ON {table} (seq);",
            n = loc.n
        ))
        .await?;
        return Ok(loc);
    }
    locate(x, base, inst, dt, true)
        .await?
        .ok_or_else(|| StoreError::internal(Vanished))
}

#[derive(Debug)]
struct Vanished;

impl std::fmt::Display for Vanished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a doctype registered by another transaction vanished")
    }
}

impl std::error::Error for Vanished {}

pub(crate) fn def_to_json(def: &IndexDef) -> String {
    serde_json::json!({
        "ddoc": def.ddoc,
        "name": def.name,
        "fields": def.fields.iter().map(FieldPath::dotted).collect::<Vec<_>>(),
        "partial_filter_selector": def.partial_filter_selector,
    })
    .to_string()
}

pub(crate) fn def_from_json(s: &str) -> StoreResult<IndexDef> {
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
/// the very same text, which is what lets PostgreSQL match them.
pub(crate) fn key_expr(base: &str, path: &FieldPath) -> StoreResult<String> {
    if path.0.len() == 1 && path.0[0] == "_id" {
        return Ok(format!("{base}.couch_key_str(id)"));
    }
    let mut expr = String::from("data");
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
        expr.push_str(" -> '");
        expr.push_str(&part.replace('\'', "''"));
        expr.push('\'');
    }
    Ok(format!("{base}.couch_key({expr})"))
}

/// The JSON of a document as clients see it: the stored body (jsonb's text) with `_id`
/// and `_rev` first (and `_deleted` for a tombstone), spliced as text so it is parsed
/// only once.
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

/// Parses a stored row into the document clients see.
pub(crate) fn parse_doc(id: &str, rev: &str, body: &str, deleted: bool) -> StoreResult<JsonMap> {
    serde_json::from_str(&doc_json(id, rev, body, deleted)?).map_err(StoreError::internal)
}
