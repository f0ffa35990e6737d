//! The settings page every instance serves to its owner (`GET /settings`, session
//! cookie): export the data and download the parts, import from the link of an export
//! mail (precheck, then a confirmation that everything will be replaced), and start a
//! move (a form posted to `/move/initialize`, which sends the browser to the wizard).
//!
//! The forms carry a CSRF token bound to the session (an HMAC of its id keyed with the
//! instance's session secret), so no extra cookie is needed.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use hearth_instances::{Instance, Session, passphrase::constant_time_eq};
use hearth_move::{ExportDoc, ExportOptions, ImportError, ImportOptions, client::Reach};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    AppState, Inst,
    auth::request_domain,
    error::{ApiError, html_escape},
    instance::scheme_for,
    moves,
    pages::{self, no_store, see_other},
    wizard::{human_size, now_secs},
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(settings_page))
        .route("/settings/export", post(start_export))
        .route("/settings/exports", get(exports_json))
        .route("/settings/import/precheck", post(import_precheck))
        .route("/settings/import", post(start_import))
}

// ---------------------------------------------------------------------------------------
// Sessions and CSRF
// ---------------------------------------------------------------------------------------

/// The owner's live session, from the `cozysessid` cookie.
async fn session(state: &AppState, i: &Instance, headers: &HeaderMap) -> Option<Session> {
    match crate::auth::current_session(state, i, headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "settings page: cannot read a session");
            None
        }
    }
}

/// HMAC-SHA256 of the session id keyed with the instance's session secret.
fn csrf_token(i: &Instance, session_id: &str) -> String {
    let key = i.session_secret.as_bytes();
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(b"hearth settings page|");
    inner.update(session_id.as_bytes());
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(outer.finalize())
}

/// The owner's request: the instance, the session and the page language.
struct Owner {
    i: std::sync::Arc<Instance>,
    csrf: String,
    locale: &'static str,
    headers: HeaderMap,
}

impl Owner {
    /// The owner of a page request, else the 303 to the login page.
    async fn of(state: &AppState, i: Inst, headers: HeaderMap) -> Result<Self, Box<Response>> {
        let Inst(i) = i;
        let Some(s) = session(state, &i, &headers).await else {
            let location = crate::auth::login_then(&i, &headers, "/settings");
            return Err(Box::new(see_other(&location)));
        };
        Ok(Self {
            csrf: csrf_token(&i, &s.id),
            locale: i.page_locale(),
            i,
            headers,
        })
    }

    /// The owner of a form's request, whose `csrf_token` must be this session's.
    async fn of_form(
        state: &AppState,
        i: Inst,
        headers: HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<Self, Box<Response>> {
        let owner = Self::of(state, i, headers).await?;
        owner.check(form)?;
        Ok(owner)
    }

    /// The form's `csrf_token` must be this session's.
    fn check(&self, form: &HashMap<String, String>) -> Result<(), Box<Response>> {
        let given = form.get("csrf_token").map(String::as_str).unwrap_or("");
        if !given.is_empty() && constant_time_eq(given.as_bytes(), self.csrf.as_bytes()) {
            return Ok(());
        }
        tracing::warn!("settings page: a form came without this session's CSRF token");
        Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                pages::page(
                    self.locale,
                    t(self.locale, "csrf_title"),
                    &[t(self.locale, "csrf_body")],
                ),
            )
                .into_response(),
        ))
    }

    fn t(&self, key: &str) -> &'static str {
        t(self.locale, key)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{path}",
            scheme_for(&self.i.domain),
            request_domain(&self.i, &self.headers)
        )
    }
}

/// A failure of a service for a person: the message of a client error, a generic one
/// (the cause logged) for a server error.
fn error_text(locale: &str, e: ApiError) -> String {
    if e.status.is_server_error() {
        t(locale, "internal").to_owned()
    } else {
        e.detail
    }
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

/// A message at the top of a section.
struct Notice {
    /// `export`, `import` or `move`.
    section: &'static str,
    error: bool,
    text: String,
}

/// `GET /settings`: the page (303 to the login page without a session).
async fn settings_page(
    State(state): State<AppState>,
    inst: Inst,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let owner = match Owner::of(&state, inst, headers).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let notice = match q.get("export").map(String::as_str) {
        Some("started") => Some(Notice {
            section: "export",
            error: false,
            text: owner.t("export_started").to_owned(),
        }),
        _ => None,
    };
    render(&state, &owner, StatusCode::OK, notice, "").await
}

async fn render(
    state: &AppState,
    owner: &Owner,
    status: StatusCode,
    notice: Option<Notice>,
    import_url: &str,
) -> Response {
    let (list, exporting) = exports_html(state, owner).await;
    let note = |section: &str| match &notice {
        Some(n) if n.section == section => format!(
            "<p id=\"{section}-{kind}\" class=\"{class}\" role=\"{role}\">{}</p>\n",
            html_escape(&n.text),
            kind = if n.error { "error" } else { "notice" },
            class = if n.error { "error" } else { "info" },
            role = if n.error { "alert" } else { "status" },
        ),
        _ => String::new(),
    };
    let csrf = html_escape(&owner.csrf);
    let move_section = if state.move_settings.wizard_url.is_some()
        || state.move_settings.wizard_domain.is_some()
    {
        format!(
            "<p>{}</p>\n<form id=\"move-form\" method=\"post\" action=\"/move/initialize\">\n\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
             <button type=\"submit\" id=\"move-start\">{}</button>\n</form>\n",
            html_escape(owner.t("move_intro")),
            html_escape(owner.t("move_start")),
        )
    } else {
        format!(
            "<p id=\"move-disabled\" class=\"info\">{}</p>\n",
            html_escape(owner.t("move_disabled"))
        )
    };
    let body = format!(
        "<p>{domain_label} <strong id=\"domain\">{domain}</strong></p>\n\
         <section id=\"export-section\">\n<h2>{export_title}</h2>\n<p>{export_intro}</p>\n{export_note}\
         <form method=\"post\" action=\"/settings/export\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
         <button type=\"submit\" id=\"export-start\">{export_start}</button>\n</form>\n\
         <div id=\"exports\" data-exporting=\"{exporting}\">\n{list}</div>\n</section>\n\
         <section id=\"import-section\">\n<h2>{import_title}</h2>\n<p>{import_intro}</p>\n{import_note}\
         <form method=\"post\" action=\"/settings/import/precheck\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
         <label for=\"import-url\">{import_label}</label>\n\
         <input type=\"url\" id=\"import-url\" name=\"url\" value=\"{import_url}\" required \
         style=\"width:100%;padding:.5rem;box-sizing:border-box\">\n\
         <button type=\"submit\" id=\"import-precheck\">{import_check}</button>\n</form>\n</section>\n\
         <section id=\"move-section\">\n<h2>{move_title}</h2>\n{move_note}{move_section}</section>\n\
         <p><a href=\"/\">{home}</a></p>\n\
         <script>\n(function () {{\n  var box = document.getElementById('exports');\n  \
         function poll() {{\n    if (box.dataset.exporting !== 'true') return;\n    \
         fetch('/settings/exports', {{credentials: 'same-origin', headers: {{Accept: 'application/json'}}}})\n      \
         .then(function (r) {{ return r.ok ? r.json() : null; }})\n      \
         .then(function (j) {{ if (j) {{ box.innerHTML = j.html; box.dataset.exporting = j.exporting ? 'true' : 'false'; }} }})\n      \
         .catch(function () {{}})\n      .then(function () {{ setTimeout(poll, 2000); }});\n  }}\n  \
         setTimeout(poll, 2000);\n}})();\n</script>\n",
        domain_label = html_escape(owner.t("domain")),
        domain = html_escape(&request_domain(&owner.i, &owner.headers)),
        export_title = html_escape(owner.t("export_title")),
        export_intro = html_escape(owner.t("export_intro")),
        export_note = note("export"),
        export_start = html_escape(owner.t("export_start")),
        import_title = html_escape(owner.t("import_title")),
        import_intro = html_escape(owner.t("import_intro")),
        import_note = note("import"),
        import_label = html_escape(owner.t("import_label")),
        import_url = html_escape(import_url),
        import_check = html_escape(owner.t("import_check")),
        move_title = html_escape(owner.t("move_title")),
        move_note = note("move"),
        home = html_escape(owner.t("home")),
    );
    let page = pages::layout(owner.locale, owner.t("title"), &body, false);
    no_store((status, page).into_response())
}

/// The list of exports, and whether one is being made.
async fn exports_html(state: &AppState, owner: &Owner) -> (String, bool) {
    let docs = match state.exports().list(&owner.i.domain).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "settings page: cannot list the exports");
            return (
                format!(
                    "<p class=\"error\">{}</p>\n",
                    html_escape(owner.t("internal"))
                ),
                false,
            );
        }
    };
    let exporting = docs.iter().any(|d| d.state == hearth_move::STATE_EXPORTING);
    if docs.is_empty() {
        return (
            format!(
                "<p id=\"no-exports\" class=\"info\">{}</p>\n",
                html_escape(owner.t("no_exports"))
            ),
            false,
        );
    }
    let now = now_secs();
    let mut out = String::from("<ul>\n");
    for doc in docs.iter().filter(|d| !d.expired()) {
        out.push_str(&export_item(owner, doc, now));
    }
    out.push_str("</ul>\n");
    (out, exporting)
}

fn export_item(owner: &Owner, doc: &ExportDoc, now: u64) -> String {
    let state_text = match doc.state.as_str() {
        hearth_move::STATE_DONE => owner.t("state_done"),
        hearth_move::STATE_ERROR => owner.t("state_error"),
        _ => owner.t("state_exporting"),
    };
    let mut item = format!(
        "<li class=\"export\" data-id=\"{id}\" data-state=\"{state}\">{created} — \
         <span class=\"export-state\">{state_text}</span>",
        id = html_escape(&doc.id),
        state = html_escape(&doc.state),
        created = html_escape(&doc.created_at),
        state_text = html_escape(state_text),
    );
    if doc.state == hearth_move::STATE_DONE {
        let mac = hearth_move::mac::encode(&owner.i.session_secret, &doc.id, now);
        let mut cursors: Vec<Option<&str>> = vec![None];
        cursors.extend(doc.parts_cursors.iter().flatten().map(|c| Some(c.as_str())));
        let count = cursors.len();
        item.push_str(&format!(
            " ({}, {} {})<br>\n",
            html_escape(&human_size(doc.files_size.max(0) as u64)),
            html_escape(owner.t("expires")),
            html_escape(&doc.expires_at),
        ));
        for (n, cursor) in cursors.into_iter().enumerate() {
            let mut href = format!("/move/exports/data/{mac}");
            if let Some(c) = cursor {
                href.push('?');
                href.push_str(&serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default());
            }
            let label = if count == 1 {
                owner.t("download").to_owned()
            } else {
                format!("{} {}/{count}", owner.t("part"), n + 1)
            };
            item.push_str(&format!(
                "<a class=\"export-part\" href=\"{}\" download>{}</a>\n",
                html_escape(&href),
                html_escape(&label)
            ));
        }
    } else if doc.state == hearth_move::STATE_ERROR && !doc.error.is_empty() {
        item.push_str(&format!(
            ": <span class=\"export-error\">{}</span>",
            html_escape(&doc.error)
        ));
    }
    item.push_str("</li>\n");
    item
}

// ---------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------

/// `POST /settings/export` (`csrf_token`): pushes the `export` job as
/// `POST /move/exports` does, then 303 back to the page.
async fn start_export(
    State(state): State<AppState>,
    inst: Inst,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let owner = match Owner::of_form(&state, inst, headers, &form).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match push_export(&state, &owner).await {
        Ok(()) => see_other("/settings?export=started#exports"),
        Err(e) => {
            let status = e.status;
            let text = if status == StatusCode::TOO_MANY_REQUESTS {
                owner.t("too_many_exports").to_owned()
            } else {
                error_text(owner.locale, e)
            };
            let notice = Notice {
                section: "export",
                error: true,
                text,
            };
            render(&state, &owner, status, Some(notice), "").await
        }
    }
}

async fn push_export(state: &AppState, owner: &Owner) -> Result<(), ApiError> {
    if moves::exports_since(state, &owner.i, now_secs()).await? >= moves::EXPORTS_PER_DAY {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many exports today",
        ));
    }
    let opts = ExportOptions {
        contextual_domain: Some(request_domain(&owner.i, &owner.headers)),
        ..ExportOptions::default()
    };
    moves::push_export(state, &owner.i, &opts).await?;
    tracing::info!(domain = %owner.i.domain, "settings page: export requested");
    Ok(())
}

/// `GET /settings/exports` (session): `{"exporting": bool, "html": <the list>}`, for
/// the page's script while an export is being made.
async fn exports_json(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
) -> Response {
    let Some(s) = session(&state, &i, &headers).await else {
        return ApiError::unauthorized("a session is required").into_response();
    };
    let owner = Owner {
        csrf: csrf_token(&i, &s.id),
        locale: i.page_locale(),
        i,
        headers,
    };
    let (html, exporting) = exports_html(&state, &owner).await;
    no_store(Json(json!({"exporting": exporting, "html": html})).into_response())
}

// ---------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------

/// A refused link in words.
fn import_refusal(owner: &Owner, e: ImportError) -> (StatusCode, String) {
    match e {
        ImportError::Precondition(detail) => (
            StatusCode::PRECONDITION_FAILED,
            format!("{} ({detail})", owner.t("bad_link")),
        ),
        ImportError::TooBig { need, quota } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            owner
                .t("too_big")
                .replace("{need}", &human_size(need))
                .replace("{quota}", &human_size(quota)),
        ),
        e => {
            let api = ApiError::from(e);
            (api.status, error_text(owner.locale, api))
        }
    }
}

/// The page again, with why the link was refused.
async fn import_refused(state: &AppState, owner: &Owner, e: ImportError, url: &str) -> Response {
    let (status, text) = import_refusal(owner, e);
    let notice = Notice {
        section: "import",
        error: true,
        text,
    };
    render(state, owner, status, Some(notice), url).await
}

/// `POST /settings/import/precheck` (`csrf_token`, `url`): the link is checked on the
/// server; a usable one gets the confirmation step, a refused one the page with why.
async fn import_precheck(
    State(state): State<AppState>,
    inst: Inst,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let owner = match Owner::of_form(&state, inst, headers, &form).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let url = form.get("url").map(|u| u.trim()).unwrap_or("");
    match state.imports.precheck(&owner.i, url, Reach::Public).await {
        Ok(doc) => confirm_page(&owner, url, &doc, None),
        Err(e) => import_refused(&state, &owner, e, url).await,
    }
}

/// The confirmation step: what will be imported, and the domain to type.
fn confirm_page(owner: &Owner, url: &str, doc: &ExportDoc, error: Option<&str>) -> Response {
    let domain = request_domain(&owner.i, &owner.headers);
    let source = hearth_move::manifest_url_of(url)
        .and_then(|m| {
            m.split_once("://")
                .and_then(|(_, r)| r.split('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let size = doc.files_size.max(0) as u64 + doc.total_size.max(0) as u64;
    let body = format!(
        "<dl>\n<dt>{from}</dt><dd id=\"import-source\">{source}</dd>\n\
         <dt>{made}</dt><dd id=\"import-created\">{created}</dd>\n\
         <dt>{size_label}</dt><dd id=\"import-size\">{size}</dd>\n</dl>\n\
         <p id=\"import-warning\" class=\"error\"><strong>{warning}</strong></p>\n\
         <form method=\"post\" action=\"/settings/import\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"url\" value=\"{url}\">\n\
         <label for=\"import-confirm-domain\">{type_domain} <strong>{domain}</strong></label>\n\
         <input type=\"text\" id=\"import-confirm-domain\" name=\"confirm_domain\" \
         autocomplete=\"off\" required style=\"width:100%;padding:.5rem;box-sizing:border-box\">\n\
         {status}<button type=\"submit\" id=\"import-confirm\">{confirm}</button>\n</form>\n\
         <p><a id=\"import-cancel\" href=\"/settings\">{cancel}</a></p>\n",
        from = html_escape(owner.t("import_from")),
        source = html_escape(&source),
        made = html_escape(owner.t("import_made")),
        created = html_escape(&doc.created_at),
        size_label = html_escape(owner.t("import_size")),
        size = html_escape(&human_size(size)),
        warning = html_escape(&owner.t("import_warning").replace("{domain}", &domain)),
        csrf = html_escape(&owner.csrf),
        url = html_escape(url),
        type_domain = html_escape(owner.t("import_type_domain")),
        domain = html_escape(&domain),
        status = pages::status_line(error),
        confirm = html_escape(owner.t("import_confirm")),
        cancel = html_escape(owner.t("cancel")),
    );
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = pages::layout(owner.locale, owner.t("import_confirm_title"), &body, false);
    no_store((status, page).into_response())
}

/// `POST /settings/import` (`csrf_token`, `url`, `confirm_domain`): checks the typed
/// domain and the link again, then schedules the import as `POST /move/imports` does
/// and answers 303 to the waiting page.
async fn start_import(
    State(state): State<AppState>,
    inst: Inst,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let owner = match Owner::of_form(&state, inst, headers, &form).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let url = form.get("url").map(|u| u.trim()).unwrap_or("");
    let doc = match state.imports.precheck(&owner.i, url, Reach::Public).await {
        Ok(doc) => doc,
        Err(e) => return import_refused(&state, &owner, e, url).await,
    };
    let typed = form
        .get("confirm_domain")
        .map(|d| d.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if typed.is_empty() || !owner.i.all_domains().any(|d| d == typed) {
        return confirm_page(&owner, url, &doc, Some(owner.t("import_wrong_domain")));
    }
    match schedule_import(&state, &owner.i, url).await {
        Ok(()) => see_other(&owner.url("/move/importing")),
        Err(e) => {
            let notice = Notice {
                section: "import",
                error: true,
                text: error_text(owner.locale, e.clone()),
            };
            render(&state, &owner, e.status, Some(notice), url).await
        }
    }
}

/// The import of an export link, as `POST /move/imports` schedules it.
async fn schedule_import(state: &AppState, i: &Instance, url: &str) -> Result<(), ApiError> {
    let manifest_url = hearth_move::manifest_url_of(url)
        .ok_or_else(|| ApiError::new(StatusCode::PRECONDITION_FAILED, "not an export link"))?;
    let opts = ImportOptions {
        manifest_url,
        vault: false,
        move_from: None,
        admin_req: false,
    };
    crate::imports::schedule_import(state, i, &opts).await?;
    tracing::info!(domain = %i.domain, "settings page: import scheduled");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Words
// ---------------------------------------------------------------------------------------

fn t(locale: &str, key: &str) -> &'static str {
    let fr = locale == "fr";
    match key {
        "title" if fr => "Paramètres",
        "title" => "Settings",
        "domain" if fr => "Votre Hearth :",
        "domain" => "Your Hearth:",
        "home" if fr => "Retour à l'accueil",
        "home" => "Back to the home page",
        "export_title" if fr => "Exporter mes données",
        "export_title" => "Export my data",
        "export_intro" if fr => {
            "Préparez une copie de toutes vos données. Vous recevrez un e-mail quand elle \
             sera prête ; les liens de téléchargement durent 7 jours."
        }
        "export_intro" => {
            "Prepare a copy of all your data. You will get an e-mail when it is ready; the \
             download links last 7 days."
        }
        "export_start" if fr => "Préparer un export",
        "export_start" => "Prepare an export",
        "export_started" if fr => "L'export est en préparation.",
        "export_started" => "The export is being prepared.",
        "too_many_exports" if fr => {
            "Trop d'exports aujourd'hui : réessayez demain ou utilisez le dernier."
        }
        "too_many_exports" => "Too many exports today: try again tomorrow or use the last one.",
        "no_exports" if fr => "Aucun export pour l'instant.",
        "no_exports" => "No export yet.",
        "state_done" if fr => "prêt",
        "state_done" => "ready",
        "state_error" if fr => "échec",
        "state_error" => "failed",
        "state_exporting" if fr => "en préparation…",
        "state_exporting" => "being prepared…",
        "expires" if fr => "expire le",
        "expires" => "expires on",
        "download" if fr => "Télécharger",
        "download" => "Download",
        "part" if fr => "Partie",
        "part" => "Part",
        "import_title" if fr => "Importer des données",
        "import_title" => "Import data",
        "import_intro" if fr => {
            "Collez le lien de l'e-mail d'export d'un autre Hearth ou Cozy. Toutes les \
             données de ce Hearth seront remplacées."
        }
        "import_intro" => {
            "Paste the link of the export e-mail of another Hearth or Cozy. All the data of \
             this Hearth will be replaced."
        }
        "import_label" if fr => "Lien de l'export",
        "import_label" => "Export link",
        "import_check" if fr => "Vérifier le lien",
        "import_check" => "Check the link",
        "bad_link" if fr => {
            "Ce lien ne mène pas à un export terminé : il a peut-être expiré ou été mal copié."
        }
        "bad_link" => {
            "This link does not lead to a finished export: it may have expired or been \
             copied wrong."
        }
        "too_big" if fr => "L'export ({need}) ne tient pas dans votre espace ({quota}).",
        "too_big" => "The export ({need}) does not fit in your space ({quota}).",
        "import_confirm_title" if fr => "Confirmer l'import",
        "import_confirm_title" => "Confirm the import",
        "import_from" if fr => "Depuis",
        "import_from" => "From",
        "import_made" if fr => "Export du",
        "import_made" => "Exported on",
        "import_size" if fr => "Taille",
        "import_size" => "Size",
        "import_warning" if fr => {
            "Tout ce que contient {domain} sera supprimé et remplacé par cet export : \
             fichiers, contacts, applications, comptes. Votre mot de passe est conservé."
        }
        "import_warning" => {
            "Everything {domain} holds will be deleted and replaced by this export: files, \
             contacts, apps, accounts. Your password is kept."
        }
        "import_type_domain" if fr => "Pour confirmer, saisissez",
        "import_type_domain" => "To confirm, type",
        "import_wrong_domain" if fr => "Ce n'est pas l'adresse de ce Hearth.",
        "import_wrong_domain" => "This is not the address of this Hearth.",
        "import_confirm" if fr => "Tout remplacer par cet export",
        "import_confirm" => "Replace everything with this export",
        "cancel" if fr => "Annuler",
        "cancel" => "Cancel",
        "move_title" if fr => "Déménager",
        "move_title" => "Move",
        "move_intro" if fr => {
            "Emportez ce Hearth chez un autre hébergeur : l'assistant vous guide."
        }
        "move_intro" => "Take this Hearth to another host: the wizard guides you.",
        "move_start" if fr => "Déménager vers un autre Hearth",
        "move_start" => "Move to another Hearth",
        "move_disabled" if fr => "Votre hébergeur n'a pas activé les déménagements sur ce serveur.",
        "move_disabled" => "Your host has not enabled moves on this server.",
        "csrf_title" if fr => "Cette page avait expiré",
        "csrf_title" => "This page had expired",
        "csrf_body" if fr => "Rechargez la page des paramètres et recommencez.",
        "csrf_body" => "Reload the settings page and try again.",
        "internal" if fr => "Le serveur a rencontré un problème. Réessayez plus tard.",
        "internal" => "The server had a problem. Try again later.",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_the_secret() {
        let i = Instance {
            session_secret: "secret-a".into(),
            ..Default::default()
        };
        let other = Instance {
            session_secret: "secret-b".into(),
            ..Default::default()
        };
        let a = csrf_token(&i, "s1");
        assert_eq!(a, csrf_token(&i, "s1"));
        assert_ne!(a, csrf_token(&i, "s2"));
        assert_ne!(a, csrf_token(&other, "s1"));
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn words_in_both_languages() {
        for key in [
            "title",
            "bad_link",
            "too_big",
            "import_warning",
            "move_disabled",
        ] {
            assert!(
                !t("en", key).is_empty() && !t("fr", key).is_empty(),
                "{key}"
            );
            assert_ne!(t("en", key), t("fr", key), "{key}");
        }
    }
}
