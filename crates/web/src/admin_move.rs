//! Exports on the admin API (spec move 1.8, instances 5): `POST
//! /instances/:domain/export?admin-req=` (202 with the job; `wait=true` answers when
//! the job has ended), `GET /instances/:domain/exports` (the instance's exports,
//! newest first: how the CLI finds the one its job made) and
//! `GET /instances/:domain/exports/:id/data?cursor=` (a part, named after the domain).

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_jobs::JobRequest;
use hearth_move::ExportOptions;
use serde_json::{Value, json};

use crate::{AppState, error::ApiError, moves};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instances/{domain}/export", post(export))
        .route("/instances/{domain}/exports", get(list_exports))
        .route("/instances/{domain}/exports/{id}/data", get(export_data))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// `POST /instances/:domain/export` → 202 with the queued job (or the ended one with
/// `wait=true`). The body may carry the export options (`parts_size`, `max_age`,
/// `with_doctypes`).
async fn export(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let mut opts: ExportOptions = if raw.iter().all(u8::is_ascii_whitespace) {
        ExportOptions::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("invalid export options: {e}")))?
    };
    opts.admin_req = flag(&q, "admin-req");
    opts.contextual_domain = None;
    let message = serde_json::to_value(&opts)
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))?;
    let mut job = state
        .jobs
        .push(
            &i,
            JobRequest {
                worker: "export".into(),
                message,
                manual: true,
                ..Default::default()
            },
        )
        .await?;
    if flag(&q, "wait") {
        job = state
            .jobs
            .wait(&i, &job.id, std::time::Duration::from_secs(3600))
            .await?;
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        Value::Object(job.to_doc()),
    ))
}

/// `GET /instances/:domain/exports` → `[{"_id", "_rev", …}]`, newest first.
async fn list_exports(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let docs = state.exports().list(&i.domain).await?;
    let list: Vec<Value> = docs.iter().map(|d| Value::Object(d.to_doc())).collect();
    Ok(json_response(StatusCode::OK, json!(list)))
}

/// `GET /instances/:domain/exports/:id/data?cursor=` → a part, `"<domain>.zip"` or
/// `"<domain> - partNNN.zip"`.
async fn export_data(
    State(state): State<AppState>,
    Path((domain, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let exports = state.exports();
    let doc = exports.get_for(&i.domain, &id).await?;
    let part = exports
        .open_part(&i, &doc, q.get("cursor").map(String::as_str))
        .await?;
    let name = hearth_move::part_file_name(&i.domain, &doc, part.index);
    Ok(moves::zip_response(part, &name))
}
