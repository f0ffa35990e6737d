//! Import into an instance (spec move 2.3, 2.4, 3.6 step 3, 3.11):
//! `POST /move/imports/precheck`, `POST /move/imports`, `POST /move/importing` (a
//! move's source announces itself: the target is blocked `MOVING`), the waiting page
//! `GET /move/importing` and its websocket `GET /move/importing/realtime`, and the
//! move watchdog ([`move_watchdog`]). These routes are served while the instance is
//! blocked for the import. The work is the `import` job of `hearth-move`.

use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use hearth_jobs::JobRequest;
use hearth_move::{ImportError, ImportOptions, client::Reach, manifest_url_of};
use serde_json::{Value, json};

use crate::{
    AppState, Inst, Perm,
    error::{ApiError, ErrorSource},
    instance::scheme_for,
    pages,
};

const IMPORTS: &str = "io.cozy.imports";
/// The blocking reason of a target waiting for a move's data.
const MOVING: &str = hearth_move::moving::BLOCK_MOVING;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/move/imports/precheck", post(precheck))
        .route("/move/imports", post(import))
        .route("/move/importing", get(waiting_page).post(start_moving))
        .route("/move/importing/realtime", get(waiting_socket))
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Precondition(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, m)
                .with_source(ErrorSource::Parameter("url".into())),
            e @ ImportError::TooBig { .. } => ApiError::payload_too_large(e.to_string()),
            ImportError::Archive(m) => ApiError::bad_request(m),
            ImportError::Move(m) => m.into(),
        }
    }
}

/// `data.attributes` of a body (or the body itself).
fn attributes(raw: &[u8]) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(body.pointer("/data/attributes").cloned().unwrap_or(body))
}

/// The token may POST `io.cozy.imports` (imports, and the target's calls of a move).
pub(crate) fn check_perm(perm: &Perm) -> Result<(), ApiError> {
    if perm.set.allows_whole_type("POST", IMPORTS) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the token cannot POST {IMPORTS} documents"
        )))
    }
}

fn url_of(attrs: &Value) -> Result<&str, ApiError> {
    attrs
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "the export link is missing",
            )
            .with_source(ErrorSource::Parameter("url".into()))
        })
}

/// `POST /move/imports/precheck` → 204, 412 (link), 413 (quota).
async fn precheck(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    raw: Bytes,
) -> Result<Response, ApiError> {
    check_perm(&perm)?;
    let attrs = attributes(&raw)?;
    state
        .imports
        .precheck(&i, url_of(&attrs)?, Reach::Public)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /move/imports` → 303 to the waiting page. The `importing` flag is set
/// before the job is queued, so the waiting page never bounces.
async fn import(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    raw: Bytes,
) -> Result<Response, ApiError> {
    check_perm(&perm)?;
    let attrs = attributes(&raw)?;
    let manifest_url = manifest_url_of(url_of(&attrs)?).ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "this is not an export link",
        )
        .with_source(ErrorSource::Parameter("url".into()))
    })?;
    let opts = ImportOptions {
        manifest_url,
        vault: attrs.get("vault").and_then(Value::as_bool).unwrap_or(false),
        move_from: attrs.get("move_from").cloned().filter(|v| !v.is_null()),
        admin_req: false,
    };
    schedule_import(&state, &i, &opts).await?;
    let location = format!("{}://{}/move/importing", scheme_for(&i.domain), i.domain);
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

/// The `importing` flag first (the waiting page never bounces), then the `import` job
/// with these options; the flag is cleared again if the job cannot be queued.
pub(crate) async fn schedule_import(
    state: &AppState,
    i: &hearth_instances::Instance,
    opts: &ImportOptions,
) -> Result<(), ApiError> {
    push_import_job(state, i, opts, false).await?;
    Ok(())
}

/// [`schedule_import`] with `manual` (the operator's job), answering the job.
pub(crate) async fn push_import_job(
    state: &AppState,
    i: &hearth_instances::Instance,
    opts: &ImportOptions,
    manual: bool,
) -> Result<hearth_jobs::Job, ApiError> {
    let message = serde_json::to_value(opts)
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))?;
    hearth_move::set_settings_flag(&state.imports, i, "importing", Some(Value::Bool(true))).await?;
    let pushed = state
        .jobs
        .push(
            i,
            JobRequest {
                worker: "import".into(),
                message,
                manual,
                ..Default::default()
            },
        )
        .await;
    match pushed {
        Ok(job) => Ok(job),
        Err(e) => {
            if let Err(e) =
                hearth_move::set_settings_flag(&state.imports, i, "importing", None).await
            {
                tracing::error!(error = %e, "cannot clear the importing flag");
            }
            Err(e.into())
        }
    }
}

/// A source's domain as `POST /move/importing?source=` gives it: a host name with an
/// optional port, nothing else.
fn checked_source(raw: Option<&String>) -> Result<String, ApiError> {
    let source = raw.map(|s| s.trim()).unwrap_or("");
    let host_ok = !source.is_empty()
        && source.len() <= 255
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
        && !source.starts_with(['.', ':', '-']);
    if host_ok {
        Ok(source.to_ascii_lowercase())
    } else {
        Err(
            ApiError::bad_request("source must be the domain of the instance moving here")
                .with_source(ErrorSource::Parameter("source".into())),
        )
    }
}

/// `POST /move/importing?source=<domain>` (spec move 3.6 step 3): the source of a
/// move, with a token of this instance allowed to POST `io.cozy.imports`, says the
/// move starts. Every session ends (the person logs in again with this instance's
/// password), `moved_from` and `moving_since` are stored, and the instance is
/// blocked `MOVING` → 204. Refused (409) while an import runs or when the instance
/// is blocked for another reason; the move watchdog unblocks it if no import comes.
async fn start_moving(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_perm(&perm)?;
    let source = checked_source(q.get("source"))?;
    if i.blocked && i.blocking_reason.as_deref() != Some(MOVING) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the instance is blocked; it cannot receive a move now",
        ));
    }
    if importing_flag(&state, &i).await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an import is already under way",
        ));
    }
    let sessions = hearth_core::Doctype::new("io.cozy.sessions")
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))?;
    match state
        .store
        .delete_doctype(&i.instance_id(), &sessions)
        .await
    {
        Ok(()) | Err(hearth_store::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    hearth_move::set_settings_flag(
        &state.imports,
        &i,
        "moved_from",
        Some(Value::String(source.clone())),
    )
    .await?;
    hearth_move::set_settings_flag(
        &state.imports,
        &i,
        hearth_move::MOVING_SINCE,
        Some(Value::String(hearth_core::now_rfc3339())),
    )
    .await?;
    state.instances.set_blocked(&i.domain, Some(MOVING)).await?;
    tracing::info!(domain = %i.domain, source = %source, "a move starts: instance blocked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The move watchdog (spec move 5, [rec]): a target is never left blocked `MOVING`.
/// Every few minutes, an instance blocked `MOVING` for longer than the timeout with
/// no import queued or running is unblocked and its `moved_from` / `moving_since`
/// cleared (timeout and period: `Imports::set_move_watchdog`). Spawned by
/// [`AppState::start`].
pub(crate) async fn move_watchdog(state: AppState) {
    loop {
        let (_, every) = state.imports.move_watchdog();
        tokio::time::sleep(every).await;
        match hearth_move::release_stale_moves(&state.imports).await {
            Ok(released) if !released.is_empty() => {
                tracing::info!(count = released.len(), "move watchdog: instances unblocked");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "move watchdog: cannot check the moves"),
        }
    }
}

/// The instance settings document, if any.
async fn instance_settings(
    state: &AppState,
    i: &hearth_instances::Instance,
) -> Option<hearth_core::JsonMap> {
    hearth_move::moving::instance_settings(state.store.as_ref(), i)
        .await
        .ok()
}

/// Whether the `importing` flag is set.
async fn importing_flag(state: &AppState, i: &hearth_instances::Instance) -> bool {
    instance_settings(state, i)
        .await
        .and_then(|d| d.get("importing").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// Whether an import is under way: the flag, or the instance blocked for it.
/// A move counts as unfinished from `POST /move/importing` (blocked `MOVING`) to the
/// end of its import (spec move 3.11, rec: no bounce between the waiting page and
/// the login page during the export).
async fn importing(state: &AppState, i: &hearth_instances::Instance) -> bool {
    if matches!(i.blocking_reason.as_deref(), Some("IMPORTING" | "MOVING")) && i.blocked {
        return true;
    }
    importing_flag(state, i).await
}

/// `GET /move/importing`: the page a person waits on; its script follows the
/// websocket and goes to the login page at the end. During a move (blocked
/// `MOVING`, or importing with `moved_from` set) it says "Moving in progress" with
/// where from and where to.
async fn waiting_page(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
) -> Response {
    let locale = match i.locale.as_str() {
        "fr" => "fr",
        _ => pages::locale_from(&headers),
    };
    let fr = locale == "fr";
    let settings = instance_settings(&state, &i).await.unwrap_or_default();
    let moved_from = settings
        .get("moved_from")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let moving = i.blocked
        && match i.blocking_reason.as_deref() {
            Some("MOVING") => true,
            // Hearth's fix of the reference's quirk: a move stays a move once its
            // import job has started (`moving_since` lasts until its end).
            Some("IMPORTING") => settings.contains_key(hearth_move::MOVING_SINCE),
            _ => false,
        };
    let title = match (moving, fr) {
        (true, true) => "Déménagement en cours",
        (true, false) => "Moving in progress",
        (false, true) => "Import en cours",
        (false, false) => "Import in progress",
    };
    let body = if fr {
        "Vos données arrivent. Vous pouvez fermer cette page : un e-mail vous préviendra à la fin."
    } else {
        "Your data is on its way. You can close this page: you will get an email when it is done."
    };
    let domain = crate::error::html_escape(&i.domain);
    let where_line = match (&moved_from, moving) {
        (Some(from), true) => format!(
            "<p id=\"move-route\">{from_word} <strong>{from}</strong> {to_word} <strong>{domain}</strong></p>",
            from_word = if fr { "De" } else { "From" },
            to_word = if fr { "vers" } else { "to" },
            from = crate::error::html_escape(from),
        ),
        _ => format!("<p><strong>{domain}</strong></p>"),
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\n\
         <body>\n<main>\n<h1>{title}</h1>\n<p>{body}</p>\n{where_line}\n</main>\n\
         <script>\n(function () {{\n  var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';\n  \
         var ws = new WebSocket(proto + '//' + location.host + '/move/importing/realtime', 'io.cozy.websocket');\n  \
         ws.onmessage = function (e) {{ try {{ var m = JSON.parse(e.data); if (m.redirect) location.href = m.redirect; }} catch (_) {{}} }};\n}})();\n\
         </script>\n</body>\n</html>\n",
    );
    let mut resp = Html(html).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /move/importing/realtime`: one message `{"redirect": <login URL>}` when the
/// import job ends (at once when no import is under way).
async fn waiting_socket(
    State(state): State<AppState>,
    Inst(i): Inst,
    ws: WebSocketUpgrade,
) -> Response {
    ws.protocols(["io.cozy.websocket"])
        .on_upgrade(move |socket| follow_import(state, i, socket))
}

async fn follow_import(
    state: AppState,
    i: std::sync::Arc<hearth_instances::Instance>,
    mut socket: WebSocket,
) {
    let redirect = json!({
        "redirect": format!("{}://{}/auth/login", scheme_for(&i.domain), i.domain)
    })
    .to_string();
    let mut events = state.events.subscribe(&i.instance_id());
    // Events wake the loop; a check every 2 s covers a missed one, and a ping every
    // 54 s keeps proxies from closing the connection.
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut ticks: u32 = 0;
    loop {
        // Checked on every wake-up: the end of the job and the unblock are writes.
        let current = state.instances.get_str(&i.domain).await;
        let busy = match &current {
            Ok(inst) => importing(&state, inst).await,
            Err(_) => false,
        };
        if !busy {
            let _ = socket.send(Message::Text(redirect.clone().into())).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        tokio::select! {
            ev = events.recv() => {
                match ev {
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    // An import writes thousands of documents: only the settings (the
                    // `importing` flag) and the jobs can mean it ended.
                    Ok(e) if !matches!(e.doctype.as_str(), "io.cozy.settings" | "io.cozy.jobs") => continue,
                    _ => {}
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(27) && socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => {
                match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
        }
    }
}
