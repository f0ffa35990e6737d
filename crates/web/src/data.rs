//! The data API (`/data/:doctype/…`, spec core-api B.6): CouchDB-style documents,
//! `_all_docs`, `_normal_docs`, Mango `_find` and `_index`, `_changes`, `_bulk_docs`.
//! Errors are CouchDB-shaped ([`CouchError`]).

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::{
    AllDocsQuery, BulkResult, ChangesQuery, GetOptions, Since,
    mango::{FindQuery, IndexDef, Selector},
};
use serde_json::{Value, json};

use crate::{AppState, Inst, Perm, error::CouchError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/data/{doctype}/", post(create_doc))
        .route(
            "/data/{doctype}/_all_docs",
            get(all_docs_get).post(all_docs_post),
        )
        .route("/data/{doctype}/_normal_docs", get(normal_docs))
        .route("/data/{doctype}/_design_docs", get(design_docs))
        .route("/data/{doctype}/_find", post(find))
        .route("/data/{doctype}/_index", post(create_index))
        .route("/data/{doctype}/_changes", get(changes).post(changes))
        .route("/data/{doctype}/_bulk_docs", post(bulk_docs))
        .route(
            "/data/{doctype}/{id}",
            get(get_doc).put(put_doc).delete(delete_doc),
        )
}

type Res = Result<Response, CouchError>;

fn bad(reason: impl Into<String>) -> CouchError {
    CouchError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
}

fn forbidden() -> CouchError {
    CouchError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "code=403, message=Forbidden",
    )
}

/// Doctypes no client may read through `/data`, and those it may only read.
const UNREADABLE: [&str; 11] = [
    "io.cozy.instances",
    "io.cozy.instances.domains",
    "io.cozy.sessions",
    "io.cozy.permissions",
    "io.cozy.intents",
    "io.cozy.oauth.clients",
    "io.cozy.oauth.access_codes",
    "io.cozy.sharings",
    "io.cozy.shared",
    "io.cozy.files.thumbnails",
    "io.cozy.files.sizes",
];
const READ_ONLY: [&str; 9] = [
    "io.cozy.files",
    "io.cozy.files.versions",
    "io.cozy.jobs",
    "io.cozy.triggers",
    "io.cozy.apps",
    "io.cozy.konnectors",
    "io.cozy.notifications",
    "io.cozy.sessions.logins",
    "io.cozy.settings",
];

/// Validates a doctype for a read (`write` false) or a write.
fn doctype(name: &str, write: bool) -> Result<Doctype, CouchError> {
    let dt = Doctype::new(name).map_err(|_| {
        CouchError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{name} is not a valid doctype name"),
        )
    })?;
    if UNREADABLE.contains(&name) {
        return Err(CouchError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("reserved doctype {name} unreadable"),
        ));
    }
    if write && READ_ONLY.contains(&name) {
        return Err(CouchError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("reserved doctype {name} unwritable"),
        ));
    }
    Ok(dt)
}

fn parse_json(raw: &[u8]) -> Result<Value, CouchError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(raw).map_err(|e| bad(format!("invalid JSON: {e}")))
}

fn object(v: Value) -> Result<JsonMap, CouchError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(bad("the document must be a JSON object")),
    }
}

fn with_type(mut doc: JsonMap, dt: &Doctype) -> JsonMap {
    doc.insert("_type".into(), Value::String(dt.to_string()));
    doc
}

fn inst_id(i: &Inst) -> InstanceId {
    i.0.instance_id()
}

/// `GET /data/:doctype/:id` — the document with `_type`; `?revs=true` adds history.
async fn get_doc(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path((dt, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let dt = doctype(&dt, false)?;
    let revs = q.get("revs").is_some_and(|v| v == "true");
    let doc = state
        .store
        .get(&inst_id(&inst), &dt, &id, GetOptions { revs })
        .await?;
    check_doc(&perm, "GET", &dt, &id, &doc)?;
    Ok(Json(with_type(doc, &dt)).into_response())
}

/// The answer of a single-document write.
fn written(status: StatusCode, dt: &Doctype, doc: JsonMap, w: hearth_store::Written) -> Response {
    let mut data = doc;
    data.insert("_id".into(), Value::String(w.id.clone()));
    data.insert("_rev".into(), Value::String(w.rev.to_string()));
    let data = with_type(data, dt);
    (status, Json(json!({"ok": true, "id": w.id, "rev": w.rev.to_string(), "type": dt.as_str(), "data": data}))).into_response()
}

/// `POST /data/:doctype/` — creates a document with a generated id (201).
async fn create_doc(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    raw: Bytes,
) -> Res {
    let dt = doctype(&dt, true)?;
    let doc = object(parse_json(&raw)?)?;
    if doc.contains_key("_id") {
        return Err(CouchError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "defined_id",
        ));
    }
    check_doc(&perm, "POST", &dt, "", &doc)?;
    let w = state.store.put(&inst_id(&inst), &dt, doc.clone()).await?;
    Ok(written(StatusCode::CREATED, &dt, doc, w))
}

/// `PUT /data/:doctype/:id` — updates (`_id` and `_rev` in the body) or creates with
/// this id (neither; answers 200, as the original).
async fn put_doc(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path((dt, id)): Path<(String, String)>,
    raw: Bytes,
) -> Res {
    let dt = doctype(&dt, true)?;
    let mut doc = object(parse_json(&raw)?)?;
    match (doc.get("_id"), doc.get("_rev")) {
        (Some(Value::String(body_id)), Some(_)) if *body_id != id => {
            return Err(bad("The _id in the body does not match the URL"));
        }
        (Some(_), Some(_)) | (None, None) => {}
        _ => return Err(bad("An update needs both _id and _rev; a creation neither")),
    }
    doc.insert("_id".into(), Value::String(id.clone()));
    let verb = if doc.contains_key("_rev") {
        "PUT"
    } else {
        "POST"
    };
    check_doc(&perm, verb, &dt, &id, &doc)?;
    let w = state.store.put(&inst_id(&inst), &dt, doc.clone()).await?;
    doc.shift_remove("_rev");
    Ok(written(StatusCode::OK, &dt, doc, w))
}

/// `DELETE /data/:doctype/:id?rev=` (or `If-Match`) — leaves a tombstone.
async fn delete_doc(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path((dt, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Res {
    let dt = doctype(&dt, true)?;
    let from_query = q.get("rev").filter(|r| !r.is_empty()).cloned();
    let from_header = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty());
    let rev = match (from_query, from_header) {
        (Some(a), Some(b)) if a != b => return Err(bad("rev and If-Match differ")),
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => return Err(bad("delete without revision")),
    };
    let rev: Rev = rev
        .parse()
        .map_err(|e: hearth_core::InvalidRev| bad(e.to_string()))?;
    if !perm.set.allows_doc("DELETE", dt.as_str(), &id, None)
        && !perm.set.allows_whole_type("DELETE", dt.as_str())
    {
        return Err(forbidden());
    }
    let tomb = state.store.delete(&inst_id(&inst), &dt, &id, &rev).await?;
    Ok(Json(json!({"ok": true, "id": id, "rev": tomb.to_string(), "type": dt.as_str(), "deleted": true})).into_response())
}

/// `verb` on one document, judged on its id and fields.
fn check_doc(
    perm: &Perm,
    verb: &str,
    dt: &Doctype,
    id: &str,
    doc: &JsonMap,
) -> Result<(), CouchError> {
    let doc = Value::Object(doc.clone());
    if perm.set.allows_doc(verb, dt.as_str(), id, Some(&doc)) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

fn whole_type(perm: &Perm, verb: &str, dt: &Doctype) -> Result<(), CouchError> {
    if perm.set.allows_whole_type(verb, dt.as_str()) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// A `startkey`-style parameter: JSON (`"abc"`) or a bare string.
fn key_param(q: &HashMap<String, String>, names: &[&str]) -> Option<String> {
    let raw = names.iter().find_map(|n| q.get(*n))?;
    Some(match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) => s,
        _ => raw.clone(),
    })
}

fn count(q: &HashMap<String, String>, name: &str) -> Result<Option<usize>, CouchError> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| bad(format!("{name} must be a number")))
        })
        .transpose()
}

async fn all_docs(
    state: &AppState,
    inst: &Inst,
    perm: &Perm,
    dt: String,
    q: HashMap<String, String>,
    body_keys: Option<Vec<String>>,
) -> Res {
    let dt = doctype(&dt, false)?;
    whole_type(perm, "GET", &dt)?;
    let keys = match (body_keys, q.get("keys")) {
        (Some(k), _) => Some(k),
        (None, Some(k)) => {
            Some(serde_json::from_str(k).map_err(|_| bad("keys must be a JSON array of ids"))?)
        }
        (None, None) => None,
    };
    let query = AllDocsQuery {
        keys,
        start_key: key_param(&q, &["startkey", "start_key"]),
        end_key: key_param(&q, &["endkey", "end_key"]),
        inclusive_end: q.get("inclusive_end").is_none_or(|v| v != "false"),
        descending: q.get("descending").is_some_and(|v| v == "true"),
        limit: count(&q, "limit")?,
        skip: count(&q, "skip")?.unwrap_or(0),
        include_docs: q.get("include_docs").is_some_and(|v| v == "true"),
    };
    let fields: Option<Vec<hearth_store::mango::FieldPath>> = q
        .get("Fields")
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.split(',')
                .map(hearth_store::mango::FieldPath::parse)
                .collect::<Result<_, _>>()
        })
        .transpose()?;
    let res = state.store.all_docs(&inst_id(inst), &dt, &query).await?;
    let rows: Vec<Value> = res
        .rows
        .into_iter()
        .map(|r| match r.rev {
            None => json!({"key": r.id, "error": "not_found"}),
            Some(rev) => {
                let mut value = json!({"rev": rev.to_string()});
                if r.deleted {
                    value["deleted"] = Value::Bool(true);
                }
                let mut row = json!({"id": r.id, "key": r.id, "value": value});
                if query.include_docs {
                    row["doc"] = match (r.doc, &fields) {
                        (Some(d), Some(f)) => Value::Object(hearth_store::mango::project(d, f)),
                        (Some(d), None) => Value::Object(d),
                        (None, _) => Value::Null,
                    };
                }
                row
            }
        })
        .collect();
    Ok(
        Json(json!({"total_rows": res.total_rows, "offset": res.offset, "rows": rows}))
            .into_response(),
    )
}

/// `GET /data/:doctype/_all_docs`.
async fn all_docs_get(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    all_docs(&state, &inst, &perm, dt, q, None).await
}

/// `POST /data/:doctype/_all_docs` with `{"keys": [...]}`.
async fn all_docs_post(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    raw: Bytes,
) -> Res {
    let body = parse_json(&raw)?;
    let keys = body
        .get("keys")
        .map(|k| serde_json::from_value(k.clone()).map_err(|_| bad("keys must be an array of ids")))
        .transpose()?;
    all_docs(&state, &inst, &perm, dt, q, keys).await
}

/// The API's page size: 100 by default, over 1000 forced back to 100.
fn page_limit(limit: Option<usize>) -> usize {
    match limit {
        Some(l) if l > 0 && l <= 1000 => l,
        _ => 100,
    }
}

/// `GET /data/:doctype/_normal_docs` — documents in id order, design docs excluded.
async fn normal_docs(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let dt = doctype(&dt, false)?;
    whole_type(&perm, "GET", &dt)?;
    let mut query = FindQuery::new(Selector::parse(
        &json!({"$not": {"_id": {"$regex": "^_design/"}}}),
    )?);
    query.limit = Some(page_limit(count(&q, "limit")?));
    query.skip = count(&q, "skip")?.unwrap_or(0);
    query.bookmark = q.get("bookmark").filter(|b| !b.is_empty()).cloned();
    let res = state.store.find(&inst_id(&inst), &dt, &query).await?;
    let total = state.store.count(&inst_id(&inst), &dt).await?;
    let mut body = json!({"rows": res.docs, "total_rows": total, "bookmark": res.bookmark});
    if q.get("execution_stats").is_some_and(|v| v == "true") {
        body["execution_stats"] = stats(&res.stats);
    }
    Ok(Json(body).into_response())
}

fn stats(s: &hearth_store::ExecutionStats) -> Value {
    json!({
        "total_keys_examined": s.total_keys_examined,
        "total_docs_examined": s.total_docs_examined,
        "total_quorum_docs_examined": 0,
        "results_returned": s.results_returned,
        "execution_time_ms": s.execution_time_ms,
    })
}

/// `POST /data/:doctype/_find` — Mango (spec core-api B.7).
async fn find(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    raw: Bytes,
) -> Res {
    let dt = doctype(&dt, false)?;
    whole_type(&perm, "GET", &dt)?;
    let body = parse_json(&raw)?;
    let mut query = FindQuery::parse(&body)?;
    let limit = page_limit(query.limit);
    query.limit = Some(limit);
    let res = state.store.find(&inst_id(&inst), &dt, &query).await?;
    let next = res.docs.len() >= limit;
    let mut out = json!({"docs": res.docs, "limit": limit, "next": next, "bookmark": res.bookmark});
    if body.get("execution_stats").and_then(Value::as_bool) == Some(true) {
        out["execution_stats"] = stats(&res.stats);
    }
    if let Some(w) = res.warning {
        out["warning"] = Value::String(w);
    }
    Ok(Json(out).into_response())
}

/// `GET /data/:doctype/_design_docs` — the Mango indexes as CouchDB design documents.
async fn design_docs(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let dt = doctype(&dt, false)?;
    whole_type(&perm, "GET", &dt)?;
    let include = q.get("include_docs").is_some_and(|v| v == "true");
    let defs = state.store.list_indexes(&inst_id(&inst), &dt).await?;
    let rows: Vec<Value> = defs
        .iter()
        .map(|d| {
            let id = format!("_design/{}", d.ddoc);
            let mut row = json!({"id": id, "key": id, "value": {"rev": "1-0"}});
            if include {
                let mut doc = d.design_doc();
                doc["_id"] = Value::String(id);
                row["doc"] = doc;
            }
            row
        })
        .collect();
    Ok(Json(json!({"total_rows": rows.len(), "offset": 0, "rows": rows})).into_response())
}

/// `POST /data/:doctype/_index` — declares a Mango index.
async fn create_index(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    raw: Bytes,
) -> Res {
    let dt = doctype(&dt, false)?;
    whole_type(&perm, "GET", &dt)?;
    let def = IndexDef::parse(&parse_json(&raw)?)?;
    let created = state.store.create_index(&inst_id(&inst), &dt, def).await?;
    let result = if created.created { "created" } else { "exists" };
    Ok(Json(
        json!({"result": result, "id": format!("_design/{}", created.ddoc), "name": created.name}),
    )
    .into_response())
}

/// `GET|POST /data/:doctype/_changes` — `since` (a sequence, `0` or `now`), `limit`,
/// `include_docs`, `descending`; other parameters are refused as in the original.
async fn changes(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let dt = doctype(&dt, false)?;
    whole_type(&perm, "GET", &dt)?;
    const KNOWN: [&str; 12] = [
        "since",
        "limit",
        "include_docs",
        "descending",
        "feed",
        "style",
        "timeout",
        "heartbeat",
        "seq_interval",
        "_nonce",
        "filter",
        "conflicts",
    ];
    if let Some(p) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!("Unsupported query parameter '{p}'")));
    }
    let since = match q.get("since").map(String::as_str) {
        None | Some("") | Some("0") => Since::Beginning,
        Some("now") => Since::Now,
        Some(s) => Since::Seq(
            s.split('-')
                .next()
                .unwrap_or(s)
                .parse()
                .map_err(|_| bad("since must be a sequence, 0 or now"))?,
        ),
    };
    let query = ChangesQuery {
        since,
        limit: count(&q, "limit")?,
        include_docs: q.get("include_docs").is_some_and(|v| v == "true"),
        descending: q.get("descending").is_some_and(|v| v == "true"),
    };
    let res = state.store.changes(&inst_id(&inst), &dt, &query).await?;
    let results: Vec<Value> = res
        .results
        .into_iter()
        .map(|c| {
            let mut r = json!({"id": c.id, "seq": c.seq.to_string(), "changes": [{"rev": c.rev.to_string()}]});
            if c.deleted {
                r["deleted"] = Value::Bool(true);
            }
            if let Some(d) = c.doc {
                r["doc"] = Value::Object(d);
            }
            r
        })
        .collect();
    Ok(Json(
        json!({"results": results, "last_seq": res.last_seq.to_string(), "pending": res.pending}),
    )
    .into_response())
}

/// `POST /data/:doctype/_bulk_docs` — `{docs: [...]}` (201 with one entry per doc).
async fn bulk_docs(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dt): Path<String>,
    raw: Bytes,
) -> Res {
    let dt = doctype(&dt, true)?;
    whole_type(&perm, "POST", &dt)?;
    let body = parse_json(&raw)?;
    let docs = match body.get("docs") {
        Some(Value::Array(docs)) => docs
            .iter()
            .cloned()
            .map(object)
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("docs must be an array")),
    };
    let all_or_nothing = body
        .get("all_or_nothing")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let results = state
        .store
        .bulk(&inst_id(&inst), &dt, docs, all_or_nothing)
        .await?;
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            BulkResult::Ok(w) => json!({"ok": true, "id": w.id, "rev": w.rev.to_string()}),
            BulkResult::Err { id, error, reason } => {
                json!({"id": id, "error": error, "reason": reason})
            }
        })
        .collect();
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
