//! Export of an instance (spec move 1.8, 1.10): `POST /move/exports`,
//! `GET /move/exports/:mac` and `GET /move/exports/data/:mac?cursor=` (the MAC of
//! spec move 1.9 is the capability: no session, no token). The work is in
//! `hearth-move`; this maps it onto HTTP. Parts are written by their own task into a
//! pipe whose other end is the response body: nothing is kept on disk or in memory.

use std::collections::HashMap;
use std::io;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_instances::Instance;
use hearth_jobs::Job;
use hearth_move::{EXPORTS, ExportDoc, ExportOptions, Exports, MoveError, Part};
use serde_json::{Value, json};

use crate::{AppState, Inst, Perm, error::ApiError};

/// Exports, `/move/initialize` and `/move/authorize` per instance and 24 h (one
/// count for the three).
pub(crate) const EXPORTS_PER_DAY: usize = 5;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/move/exports", post(create_export))
        .route("/move/exports/{id}", get(show_export))
        .route("/move/exports/data/{id}", get(export_data))
}

impl AppState {
    /// The export service over this state's backends.
    pub fn exports(&self) -> Exports {
        Exports::new(self.store.clone(), self.instances.clone(), self.vfs.clone())
            .with_min_parts_size(self.export_min_parts_size)
    }
}

impl From<MoveError> for ApiError {
    fn from(e: MoveError) -> Self {
        match e {
            MoveError::NotFound | MoveError::Expired => ApiError::not_found(e.to_string()),
            MoveError::BadCursor | MoveError::Invalid(_) => ApiError::bad_request(e.to_string()),
            MoveError::Conflict => ApiError::conflict(e.to_string()),
            MoveError::Mac(hearth_move::mac::MacError::BadEncoding) => {
                ApiError::bad_request(e.to_string())
            }
            MoveError::Mac(hearth_move::mac::MacError::Invalid) => {
                ApiError::unauthorized(e.to_string())
            }
            MoveError::Store(s) => s.into(),
            MoveError::Vfs(v) => ApiError::internal(&v),
            MoveError::Io(io) => ApiError::internal(&io),
        }
    }
}

/// An export document as JSON:API (spec move 1.2).
pub(crate) fn export_resource(doc: &ExportDoc) -> Value {
    json!({
        "type": EXPORTS,
        "id": doc.id,
        "attributes": doc.attributes(),
        "meta": {"rev": doc.rev},
    })
}

/// The options of a user's export: `data.attributes` (or a bare object).
fn options_of(raw: &[u8]) -> Result<ExportOptions, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(ExportOptions::default());
    }
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let attrs = body.pointer("/data/attributes").cloned().unwrap_or(body);
    let attrs = match attrs {
        Value::Null => return Ok(ExportOptions::default()),
        Value::Object(m) => m,
        _ => return Err(ApiError::bad_request("data.attributes must be an object")),
    };
    let int = |k: &str| -> Result<i64, ApiError> {
        match attrs.get(k) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::invalid_attribute(k, "must be a non-negative integer")),
        }
    };
    let with_doctypes = match attrs.get("with_doctypes") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            ApiError::invalid_attribute("with_doctypes", "must be a list of doctypes")
        })?,
    };
    Ok(ExportOptions {
        parts_size: int("parts_size")?,
        max_age: int("max_age")?,
        with_doctypes,
        // Only the server sets these (spec move 1.10, with the [rec]).
        contextual_domain: None,
        admin_req: false,
        ..Default::default()
    })
}

/// `POST /move/exports` → 201, empty (spec move 1.10): rate limit (404 beyond), then
/// whole-type POST on `io.cozy.exports` (403).
async fn create_export(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if exports_since(&state, &i, now).await? >= EXPORTS_PER_DAY {
        return Err(ApiError::not_found("Not found"));
    }
    if !perm.set.allows_whole_type("POST", EXPORTS) {
        return Err(ApiError::forbidden(format!(
            "the token cannot POST {EXPORTS} documents"
        )));
    }
    let mut opts = options_of(&raw)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .map_or_else(|| i.domain.clone(), str::to_owned);
    opts.contextual_domain = Some(host);
    push_export(&state, &i, &opts).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// How many exports of the instance were made in the 24 hours before `now` (the
/// limit `EXPORTS_PER_DAY` counts them; `/move/initialize` and `/move/authorize` too).
pub(crate) async fn exports_since(
    state: &AppState,
    i: &Instance,
    now: u64,
) -> Result<usize, MoveError> {
    Ok(state
        .exports()
        .list(&i.domain)
        .await?
        .iter()
        .filter(|d| {
            hearth_core::parse_rfc3339(&d.created_at)
                .is_some_and(|t| now.saturating_sub(t) < 24 * 3600)
        })
        .count())
}

/// Pushes the `export` job of a person's export with these options.
pub(crate) async fn push_export(
    state: &AppState,
    i: &Instance,
    opts: &ExportOptions,
) -> Result<(), ApiError> {
    push_export_job(state, i, opts, false).await?;
    Ok(())
}

/// Pushes an `export` job with these options (`manual`: the operator's).
pub(crate) async fn push_export_job(
    state: &AppState,
    i: &Instance,
    opts: &ExportOptions,
    manual: bool,
) -> Result<Job, ApiError> {
    let req = opts
        .job(manual)
        .map_err(|e| ApiError::internal(&io::Error::other(e.to_string())))?;
    Ok(state.jobs.push(i, req).await?)
}

/// `GET /move/exports/:mac` → the document (400 bad encoding, 401 wrong or stale
/// MAC, 404 unknown, another instance's or expired). The MAC is the capability.
async fn show_export(
    State(state): State<AppState>,
    Inst(i): Inst,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let doc = state.exports().get_by_mac(&i, &id).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::error::JSON_API)],
        json!({"data": export_resource(&doc)}).to_string(),
    )
        .into_response())
}

/// `GET /move/exports/data/:mac?cursor=` → one zip part, streamed.
async fn export_data(
    State(state): State<AppState>,
    Inst(i): Inst,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let exports = state.exports();
    let doc = exports.get_by_mac(&i, &id).await?;
    let part = exports
        .open_part(&i, &doc, q.get("cursor").map(String::as_str))
        .await?;
    let name = hearth_move::part_file_name("My Cozy", &doc, part.index);
    let mut res = zip_response(part, &name);
    // The settings app downloads through an iframe (spec move 1.8).
    let domain = &i.domain;
    let csp = format!(
        "frame-ancestors {}://settings.{domain}/",
        crate::instance::scheme_for(domain)
    );
    if let Ok(v) = header::HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(res)
}

/// A part as a streamed `application/zip` answer named `file_name`. Status 200 is
/// sent first: an error later truncates the body (and is logged).
pub(crate) fn zip_response(part: Part, file_name: &str) -> Response {
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<bool>();
    tokio::spawn(async move {
        let ok = match part.write(writer).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "an export part stopped before its end");
                false
            }
        };
        let _ = done_tx.send(ok);
    });
    // At the end of the pipe, a failed writer turns into an error of the body, so
    // the connection is cut rather than ended as if the zip were whole.
    // One buffer for the whole part; each chunk is copied out at its exact size. (A
    // fresh 64 KiB buffer per read, truncated, kept its capacity: small reads of zip
    // headers queued in the connection's write buffer held 64 KiB each.)
    let stream = futures_util::stream::try_unfold(
        (reader, Some(done_rx), vec![0u8; 64 * 1024]),
        |(mut r, done, mut buf)| async move {
            use tokio::io::AsyncReadExt;
            let n = r.read(&mut buf).await?;
            if n == 0 {
                let ok = match done {
                    Some(rx) => rx.await.unwrap_or(false),
                    None => true,
                };
                if !ok {
                    return Err(io::Error::other("the export part failed"));
                }
                return Ok::<_, io::Error>(None);
            }
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            Ok(Some((chunk, (r, done, buf))))
        },
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name.replace(['"', '\\', '\r', '\n'], "_")
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
