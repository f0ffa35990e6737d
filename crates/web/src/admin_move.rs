//! Exports on the admin API (spec move 1.8, instances 5): `POST
//! /instances/:domain/export?admin-req=` (202 with the job; `wait=true` answers when
//! the job has ended), `GET /instances/:domain/exports` (the instance's exports,
//! newest first: how the CLI finds the one its job made) and
//! `GET /instances/:domain/exports/:id/data?cursor=` (a part, named after the domain);
//! `POST /instances/:domain/move` starts a move as the operator.

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_move::ExportOptions;
use serde_json::{Value, json};

use crate::{AppState, error::ApiError, move_source, moves};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instances/{domain}/export", post(export))
        .route("/instances/{domain}/exports", get(list_exports))
        .route("/instances/{domain}/exports/{id}/data", get(export_data))
        .route("/instances/{domain}/import", post(import))
        .route("/instances/{domain}/imports/{id}", get(show_import))
        .route("/instances/{domain}/move", post(start_move))
}

/// `POST /instances/:domain/move` with `{"target_url", "target_token",
/// "target_client_id", "target_client_secret", "ignore_vault"?}` → 202
/// `{"job_id"}`: the operator moves an instance as `/move/go` does (the target must
/// accept it), with source credentials minted here, to a target on any address.
async fn start_move(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let body: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let text = |k: &str| -> Result<String, ApiError> {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ApiError::invalid_attribute(k, format!("{k} is required")))
    };
    let target_url = text("target_url")?;
    let Some((url, host)) = move_source::target_base(&target_url) else {
        return Err(ApiError::invalid_attribute(
            "target_url",
            "target_url must be an http(s) URL",
        ));
    };
    if move_source::is_own(&i, &host) {
        return Err(ApiError::invalid_attribute(
            "target_url",
            "the target cannot be the instance itself",
        ));
    }
    let target = hearth_move::moving::MoveTo {
        url,
        token: text("target_token")?,
        client_id: text("target_client_id")?,
        client_secret: text("target_client_secret")?,
    };
    let ignore_vault = match body.get("ignore_vault") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_attribute(
                "ignore_vault",
                "ignore_vault must be a boolean",
            ));
        }
    };
    let wizard = move_source::wizard_url(&state)
        .unwrap_or_else(|| hearth_move::moving::DEFAULT_WIZARD_URL.to_owned());
    let creds = hearth_move::moving::mint_source_credentials(&state.instances, &i, &wizard).await?;
    let start = hearth_move::moving::MoveStart {
        target: &target,
        source_token: &creds.token,
        ignore_vault,
        contextual_domain: &i.domain,
        reach: hearth_move::client::Reach::Any,
    };
    match hearth_move::moving::start_move(&state.jobs, &state.instances, &i, start).await {
        Ok(job_id) => Ok(json_response(
            StatusCode::ACCEPTED,
            json!({"job_id": job_id}),
        )),
        Err(e) => {
            // The client minted for this move is of no use now.
            if let Err(de) = state
                .instances
                .delete_client(&i.domain, &creds.client_id)
                .await
            {
                tracing::warn!(domain = %i.domain, error = %de, "cannot delete the client of a failed move");
            }
            Err(e.into())
        }
    }
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
    let job = crate::imports::push_import_job(&state, &i, &opts, true).await?;
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
    let mut job = moves::push_export_job(&state, &i, &opts, true).await?;
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

/// `GET /instances/:domain/exports` → `[{"_id", "_rev", …, "link"}]`, newest first;
/// `link` is the manifest URL to import the export elsewhere.
async fn list_exports(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let docs = state.exports().list(&i.domain).await?;
    let now = crate::wizard::now_secs();
    // Hearth adds `link`: the manifest URL an import of that export is given.
    let list: Vec<Value> = docs
        .iter()
        .map(|d| {
            let mut doc = d.to_doc();
            let mac = hearth_move::mac::encode(&i.session_secret, &d.id, now);
            doc.insert(
                "link".into(),
                Value::String(format!(
                    "{}://{}/move/exports/{mac}",
                    crate::instance::scheme_for(&i.domain),
                    i.domain
                )),
            );
            Value::Object(doc)
        })
        .collect();
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
