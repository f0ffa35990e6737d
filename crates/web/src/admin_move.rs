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
        .route("/instances/{domain}/import", post(import))
        .route("/instances/{domain}/imports/{id}", get(show_import))
}

/// `POST /instances/:domain/import?manifest_url=` → 204 (spec move 1.8): queues an
/// import of that manifest, no precheck. Hearth adds `Location:` the record of the
/// import (`GET /instances/:domain/imports/:job`); with `wait=true` it answers 200
/// with that record once the job has ended (the CLI).
async fn import(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let url = q
        .get("manifest_url")
        .map(|u| u.trim())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| {
            ApiError::invalid_parameter("manifest_url", "an http(s) URL of an export is required")
        })?;
    if !url.contains("/move/exports/") {
        return Err(ApiError::invalid_parameter(
            "manifest_url",
            "not the URL of an export (…/move/exports/<mac>)",
        ));
    }
    let opts = hearth_move::ImportOptions {
        manifest_url: url.to_owned(),
        admin_req: true,
        ..Default::default()
    };
    let message = serde_json::to_value(&opts)
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))?;
    hearth_move::set_settings_flag(&state.imports, &i, "importing", Some(Value::Bool(true)))
        .await?;
    let job = state
        .jobs
        .push(
            &i,
            JobRequest {
                worker: "import".into(),
                message,
                manual: true,
                ..Default::default()
            },
        )
        .await;
    let job = match job {
        Ok(j) => j,
        Err(e) => {
            let _ = hearth_move::set_settings_flag(&state.imports, &i, "importing", None).await;
            return Err(e.into());
        }
    };
    if flag(&q, "wait") {
        state
            .jobs
            .wait(&i, &job.id, std::time::Duration::from_secs(3 * 3600 + 60))
            .await?;
        return show_import(State(state), Path((domain, job.id))).await;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::LOCATION,
            format!("/instances/{}/imports/{}", i.domain, job.id),
        )],
    )
        .into_response())
}

/// `GET /instances/:domain/imports/:job` → `{"state", "report", "error", …}`; a job
/// not started yet is `queued`.
async fn show_import(
    State(state): State<AppState>,
    Path((domain, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    if let Some(doc) = hearth_move::import_record(&state.imports, &id).await?
        && doc.get("domain").and_then(Value::as_str) == Some(i.domain.as_str())
    {
        return Ok(json_response(StatusCode::OK, Value::Object(doc)));
    }
    let job = state.jobs.get_job(&i, &id).await?;
    if job.worker != "import" {
        return Err(ApiError::not_found("no such import"));
    }
    let state_name = serde_json::to_value(job.state).unwrap_or(Value::Null);
    Ok(json_response(
        StatusCode::OK,
        json!({"_id": job.id, "domain": i.domain, "state": state_name, "error": job.error}),
    ))
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
