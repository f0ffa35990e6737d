//! Raw documents for operators (issue #11): with the embedded store there is no CouchDB
//! console, so the admin API reads and writes any doctype of an instance, including
//! the ones `/data` refuses (`io.cozy.oauth.clients`, `io.cozy.sharings`…):
//! `GET /instances/:domain/raw/:doctype/_all_docs[?include_docs=true]`,
//! `POST /instances/:domain/raw/:doctype/_find`, and
//! `GET|PUT|DELETE /instances/:domain/raw/:doctype/:id`. Answers are CouchDB-shaped,
//! as the documents are. The admin passphrase is the only permission.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::mango::FindQuery;
use hearth_store::{AllDocsQuery, GetOptions};
use serde_json::{Value, json};

use crate::{AppState, error::CouchError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instances/{domain}/raw/{doctype}/_all_docs", get(all_docs))
        .route("/instances/{domain}/raw/{doctype}/_find", post(find))
        .route(
            "/instances/{domain}/raw/{doctype}/{id}",
            get(get_doc).put(put_doc).delete(delete_doc),
        )
}

type Res = Result<Response, CouchError>;

fn bad(reason: impl Into<String>) -> CouchError {
    CouchError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
}

fn couch(e: hearth_store::StoreError) -> CouchError {
    CouchError::from(e)
}

/// The instance's store key and the doctype, both checked.
async fn target(
    state: &AppState,
    domain: &str,
    doctype: &str,
) -> Result<(InstanceId, Doctype), CouchError> {
    let inst = state.instances.get_str(domain).await.map_err(|e| match e {
        hearth_instances::InstanceError::NotFound => {
            CouchError::new(StatusCode::NOT_FOUND, "not_found", "Instance not found")
        }
        e @ hearth_instances::InstanceError::IllegalDomain { .. } => {
            CouchError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        e => {
            tracing::error!(domain, error = %e, "instance lookup failed");
            CouchError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                crate::error::INTERNAL_DETAIL,
            )
        }
    })?;
    let dt = Doctype::new(doctype).map_err(|e| bad(e.to_string()))?;
    Ok((inst.instance_id(), dt))
}

fn json_body(raw: &[u8]) -> Result<Value, CouchError> {
    serde_json::from_slice(raw).map_err(|e| bad(format!("invalid JSON: {e}")))
}

async fn all_docs(
    State(state): State<AppState>,
    Path((domain, doctype)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let (inst, dt) = target(&state, &domain, &doctype).await?;
    let limit = match q.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| bad("limit must be a number"))?,
        ),
        None => None,
    };
    let query = AllDocsQuery {
        start_key: q
            .get("startkey")
            .or(q.get("start_key"))
            .map(|k| k.trim_matches('"').to_owned()),
        limit,
        include_docs: q.get("include_docs").is_some_and(|v| v == "true"),
        inclusive_end: true,
        ..Default::default()
    };
    let res = state
        .store
        .all_docs(&inst, &dt, &query)
        .await
        .map_err(couch)?;
    let rows: Vec<Value> = res
        .rows
        .into_iter()
        .filter_map(|r| {
            let rev = r.rev?;
            let mut row = json!({"id": r.id, "key": r.id, "value": {"rev": rev.to_string()}});
            if let Some(doc) = r.doc {
                row["doc"] = Value::Object(doc);
            }
            Some(row)
        })
        .collect();
    Ok(
        Json(json!({"total_rows": res.total_rows, "offset": res.offset, "rows": rows}))
            .into_response(),
    )
}

async fn find(
    State(state): State<AppState>,
    Path((domain, doctype)): Path<(String, String)>,
    raw: Bytes,
) -> Res {
    let (inst, dt) = target(&state, &domain, &doctype).await?;
    let query = FindQuery::parse(&json_body(&raw)?).map_err(couch)?;
    let res = state.store.find(&inst, &dt, &query).await.map_err(couch)?;
    Ok(Json(json!({"docs": res.docs, "bookmark": res.bookmark})).into_response())
}

async fn get_doc(
    State(state): State<AppState>,
    Path((domain, doctype, id)): Path<(String, String, String)>,
) -> Res {
    let (inst, dt) = target(&state, &domain, &doctype).await?;
    let doc = state
        .store
        .get(&inst, &dt, &id, GetOptions::default())
        .await
        .map_err(couch)?;
    Ok(Json(doc).into_response())
}

/// Creates (no `_rev`) or updates (current `_rev`) a document with this id.
async fn put_doc(
    State(state): State<AppState>,
    Path((domain, doctype, id)): Path<(String, String, String)>,
    raw: Bytes,
) -> Res {
    let (inst, dt) = target(&state, &domain, &doctype).await?;
    let mut doc: JsonMap = match json_body(&raw)? {
        Value::Object(m) => m,
        _ => return Err(bad("the document must be a JSON object")),
    };
    if doc
        .get("_id")
        .is_some_and(|v| v.as_str() != Some(id.as_str()))
    {
        return Err(bad("The _id in the body does not match the URL"));
    }
    doc.insert("_id".into(), Value::String(id.clone()));
    let w = state.store.put(&inst, &dt, doc).await.map_err(couch)?;
    Ok((
        StatusCode::OK,
        Json(json!({"ok": true, "id": w.id, "rev": w.rev.to_string()})),
    )
        .into_response())
}

async fn delete_doc(
    State(state): State<AppState>,
    Path((domain, doctype, id)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let (inst, dt) = target(&state, &domain, &doctype).await?;
    let rev: Rev = q
        .get("rev")
        .ok_or_else(|| bad("delete without revision: pass ?rev="))?
        .parse()
        .map_err(|e: hearth_core::InvalidRev| bad(e.to_string()))?;
    let tomb = state
        .store
        .delete(&inst, &dt, &id, &rev)
        .await
        .map_err(couch)?;
    Ok(Json(json!({"ok": true, "id": id, "rev": tomb.to_string()})).into_response())
}
