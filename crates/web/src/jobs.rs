//! Jobs and triggers (spec core-api B.12): `/jobs/queue/:worker`, `/jobs/:id`,
//! `/jobs/triggers…` and `/jobs/webhooks/:id`. The work is in `hearth-jobs`; this
//! maps it onto JSON:API and checks permissions.

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_jobs::{Job, JobOptions, JobRequest, JobState, JobsError, Trigger, TriggerRequest};
use serde_json::{Value, json};

use crate::{AppState, Inst, Perm, error::ApiError, error::jsonapi};

const JOBS: &str = "io.cozy.jobs";
const TRIGGERS: &str = "io.cozy.triggers";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs/queue/{worker}", post(push_job).get(queued_jobs))
        .route("/jobs/triggers", post(create_trigger).get(list_triggers))
        .route(
            "/jobs/triggers/{id}",
            get(get_trigger).delete(delete_trigger).patch(patch_trigger),
        )
        .route("/jobs/triggers/{id}/state", get(trigger_state))
        .route("/jobs/triggers/{id}/jobs", get(trigger_jobs))
        .route("/jobs/triggers/{id}/launch", post(launch_trigger))
        .route("/jobs/webhooks/{id}", post(webhook))
        .route("/jobs/{id}", get(get_job).patch(patch_job))
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::UnknownWorker(_) | JobsError::NotFound => ApiError::not_found(e.to_string()),
            JobsError::ReservedWorker(_) => ApiError::forbidden(e.to_string()),
            JobsError::Invalid(m) => ApiError::bad_request(m),
            JobsError::BadDebounce(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            JobsError::Store(s) => s.into(),
            JobsError::Internal(m) => ApiError::internal(&std::io::Error::other(m)),
        }
    }
}

/// Jobs as a JSON:API collection with `meta.count`.
fn job_list(jobs: &[Job]) -> Response {
    let data: Vec<Value> = jobs.iter().map(job_resource).collect();
    jsonapi(
        StatusCode::OK,
        json!({"data": data, "meta": {"count": data.len()}}),
    )
}

/// A job as a JSON:API resource.
pub(crate) fn job_resource(job: &Job) -> Value {
    json!({
        "type": JOBS,
        "id": job.id,
        "attributes": job.attributes(),
        "meta": {"rev": job.rev},
        "links": {"self": format!("/jobs/{}", job.id)},
    })
}

fn trigger_resource(t: &Trigger, state: Option<Value>) -> Value {
    let mut attributes = t.attributes();
    if let Some(state) = state {
        attributes.insert("current_state".into(), state);
    }
    let mut links = json!({"self": format!("/jobs/triggers/{}", t.id)});
    if t.kind == "@webhook" {
        links["webhook"] = json!(format!("/jobs/webhooks/{}", t.id));
    }
    json!({
        "type": TRIGGERS,
        "id": t.id,
        "attributes": attributes,
        "meta": {"rev": t.rev},
        "links": links,
    })
}

/// The `data.attributes` of a JSON:API body (a bare object is accepted too).
fn attributes(raw: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let attrs = body.pointer("/data/attributes").cloned().unwrap_or(body);
    match attrs {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(ApiError::bad_request("data.attributes must be an object")),
    }
}

fn options_of(attrs: &serde_json::Map<String, Value>) -> Result<Option<JobOptions>, ApiError> {
    match attrs.get("options") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::invalid_attribute("options", e.to_string())),
    }
}

fn allowed(perm: &Perm, verb: &str, doctype: &str, id: &str, doc: &Value) -> bool {
    perm.set.allows_whole_type(verb, doctype) || perm.set.allows_doc(verb, doctype, id, Some(doc))
}

fn check(perm: &Perm, verb: &str, doctype: &str, id: &str, doc: &Value) -> Result<(), ApiError> {
    if allowed(perm, verb, doctype, id, doc) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the token cannot {verb} this {doctype} document"
        )))
    }
}

/// `POST /jobs/queue/:worker` → 202.
async fn push_job(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(worker): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    check(&perm, "POST", JOBS, "", &json!({"worker": worker}))?;
    let attrs = attributes(&raw)?;
    // Reserved workers are for the server and the admin API, never for tokens.
    state.jobs.check_worker(&worker, false)?;
    let req = JobRequest {
        worker,
        message: attrs.get("arguments").cloned().unwrap_or(json!({})),
        options: options_of(&attrs)?,
        manual: attrs
            .get("manual")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ..Default::default()
    };
    let job = state.jobs.push(&i, req).await?;
    Ok(jsonapi(
        StatusCode::ACCEPTED,
        json!({"data": job_resource(&job)}),
    ))
}

/// `GET /jobs/queue/:worker`: jobs queued or running.
async fn queued_jobs(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(worker): Path<String>,
) -> Result<Response, ApiError> {
    check(&perm, "GET", JOBS, "", &json!({"worker": worker}))?;
    state.jobs.check_worker(&worker, true)?;
    let jobs = state.jobs.queued_jobs(&i, &worker).await?;
    Ok(job_list(&jobs))
}

/// `GET /jobs/:id`.
async fn get_job(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.jobs.get_job(&i, &id).await?;
    check(&perm, "GET", JOBS, &id, &job_doc(&job))?;
    Ok(jsonapi(StatusCode::OK, json!({"data": job_resource(&job)})))
}

fn job_doc(job: &Job) -> Value {
    Value::Object(job.to_doc())
}

/// `PATCH /jobs/:id`: a client reports the state of its `@client` job.
async fn patch_job(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let job = state.jobs.get_job(&i, &id).await?;
    check(&perm, "PATCH", JOBS, &id, &job_doc(&job))?;
    let attrs = attributes(&raw)?;
    let new_state: JobState = attrs
        .get("state")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            ApiError::invalid_attribute("state", "must be queued, running, done or errored")
        })?;
    let error = attrs
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let job = state
        .jobs
        .patch_client_job(&i, &id, new_state, error)
        .await?;
    Ok(jsonapi(StatusCode::OK, json!({"data": job_resource(&job)})))
}

/// `POST /jobs/triggers` → 201.
async fn create_trigger(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let attrs = attributes(&raw)?;
    let text = |k: &str| -> Result<String, ApiError> {
        match attrs.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::invalid_attribute(
                k,
                format!("{k} must be a string"),
            )),
        }
    };
    let req = TriggerRequest {
        kind: text("type")?,
        arguments: text("arguments")?,
        worker: text("worker")?,
        message: attrs
            .get("message")
            .or_else(|| attrs.get("worker_arguments"))
            .cloned()
            .unwrap_or(json!({})),
        options: options_of(&attrs)?,
        debounce: Some(text("debounce")?).filter(|d| !d.is_empty()),
    };
    if req.worker.is_empty() {
        return Err(ApiError::invalid_attribute(
            "worker",
            "a trigger needs a worker",
        ));
    }
    check(
        &perm,
        "POST",
        TRIGGERS,
        "",
        &json!({"worker": req.worker, "type": req.kind}),
    )?;
    let trigger = state.jobs.add_trigger(&i, req, false).await?;
    Ok(jsonapi(
        StatusCode::CREATED,
        json!({"data": trigger_resource(&trigger, None)}),
    ))
}

fn list_param(q: &HashMap<String, String>, key: &str) -> Vec<String> {
    q.get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /jobs/triggers?Worker=a,b&Type=@cron,@in`, with `current_state`.
async fn list_triggers(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let workers = list_param(&q, "Worker");
    let types = list_param(&q, "Type");
    let whole = perm.set.allows_whole_type("GET", TRIGGERS);
    let mut data = Vec::new();
    for t in state.jobs.list_triggers(&i, &workers, &types).await? {
        if !whole
            && !perm
                .set
                .allows_doc("GET", TRIGGERS, &t.id, Some(&Value::Object(t.to_doc())))
        {
            continue;
        }
        let current = state.jobs.trigger_state(&i, &t.id).await?;
        data.push(trigger_resource(&t, Some(current)));
    }
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": data, "meta": {"count": data.len()}}),
    ))
}

async fn load_trigger(
    state: &AppState,
    i: &hearth_instances::Instance,
    perm: &Perm,
    verb: &str,
    id: &str,
) -> Result<Trigger, ApiError> {
    let t = state.jobs.get_trigger(i, id).await?;
    check(perm, verb, TRIGGERS, id, &Value::Object(t.to_doc()))?;
    Ok(t)
}

/// `GET /jobs/triggers/:id`.
async fn get_trigger(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = load_trigger(&state, &i, &perm, "GET", &id).await?;
    let current = state.jobs.trigger_state(&i, &id).await?;
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": trigger_resource(&t, Some(current))}),
    ))
}

/// `GET /jobs/triggers/:id/state`.
async fn trigger_state(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    load_trigger(&state, &i, &perm, "GET", &id).await?;
    let current = state.jobs.trigger_state(&i, &id).await?;
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": {
            "type": "io.cozy.triggers.state",
            "id": id,
            "attributes": current,
            "links": {"self": format!("/jobs/triggers/{id}/state")},
        }}),
    ))
}

/// `GET /jobs/triggers/:id/jobs?Limit=n`, newest first.
async fn trigger_jobs(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    load_trigger(&state, &i, &perm, "GET", &id).await?;
    let limit = match q.get("Limit").map(String::as_str) {
        None | Some("") => 100,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_parameter("Limit", "Limit must be a number"))?,
    };
    let jobs = state.jobs.trigger_jobs(&i, &id, limit).await?;
    Ok(job_list(&jobs))
}

/// `DELETE /jobs/triggers/:id` → 204.
async fn delete_trigger(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    load_trigger(&state, &i, &perm, "DELETE", &id).await?;
    state.jobs.delete_trigger(&i, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /jobs/triggers/:id`: `arguments` (of `@cron` triggers) and `message`.
async fn patch_trigger(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    load_trigger(&state, &i, &perm, "PATCH", &id).await?;
    let attrs = attributes(&raw)?;
    let arguments = match attrs.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid_attribute(
                "arguments",
                "arguments must be a string",
            ));
        }
    };
    let message = attrs.get("message").cloned();
    let t = state
        .jobs
        .patch_trigger(&i, &id, arguments, message)
        .await?;
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": trigger_resource(&t, None)}),
    ))
}

/// `POST /jobs/triggers/:id/launch` → 201 with the job.
async fn launch_trigger(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = state.jobs.get_trigger(&i, &id).await?;
    check(&perm, "POST", TRIGGERS, &id, &Value::Object(t.to_doc()))?;
    let job = state.jobs.launch_trigger(&i, &id).await?;
    Ok(jsonapi(
        StatusCode::CREATED,
        json!({"data": job_resource(&job)}),
    ))
}

/// `POST /jobs/webhooks/:id` (no token: the trigger id is the secret) → 204.
async fn webhook(
    State(state): State<AppState>,
    Inst(i): Inst,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let payload = if raw.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?
    };
    state.jobs.webhook(&i, &id, payload).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
