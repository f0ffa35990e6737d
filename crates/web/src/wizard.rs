//! The move wizard (Hearth's cozy-move, spec move 3.2–3.4), served by this server on
//! its own host (`move.domain`) before any instance routing.
//!
//! Steps: `GET /` asks the current address and starts workflow B (the browser goes to
//! `<source>/move/authorize`, which comes back to `/callback/source`); `POST
//! /initialize` is where a source's `/move/initialize` sends the browser (workflow
//! A: the code is exchanged for a source token here). Both lead to `/target` (the new
//! address: a client is registered there and the browser goes to its
//! `/auth/authorize/move`, which comes back to `/callback/target`), then `/summary`:
//! sizes, the vault step, and the form the browser posts to `<source>/move/request`.
//!
//! A person's progress lives in the global store (`io.hearth.move.wizard`, one
//! document per attempt, kept an hour), named by a random id in a cookie, so any node
//! serves any step. The callbacks' `state` must be that cookie's value.

use std::collections::HashMap;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hearth_core::{Doctype, InstanceId};
use hearth_move::client::{self, FetchError, PostBody, Reach};
use hearth_store::{GetOptions, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    AppState,
    error::html_escape,
    instance::scheme_for,
    pages::{self, see_other},
};

/// The doctype of the wizard's states, in the global store.
pub const WIZARD_DOCTYPE: &str = "io.hearth.move.wizard";
/// The cookie naming a person's state.
pub const WIZARD_COOKIE: &str = "hearth_move_wizard";
/// How long a state lives, in seconds.
const STATE_TTL: u64 = 3600;
/// Forms posted to the wizard are small.
const MAX_FORM: usize = 64 * 1024;

/// Serves the wizard's host; every other request goes on.
pub(crate) async fn front(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(domain) = state.move_settings.wizard_domain.clone() else {
        return next.run(req).await;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .trim()
        .trim_end_matches('.');
    if !host.eq_ignore_ascii_case(&domain) {
        return next.run(req).await;
    }
    let mut res = serve(&state, &domain, req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; form-action *; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn serve(state: &AppState, domain: &str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let w = Wizard {
        state,
        locale: pages::locale_from(&parts.headers),
        base: wizard_base(state, domain),
        headers: &parts.headers,
    };
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let result = match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/") => Ok(w.start_page(StatusCode::OK, None, "")),
        (&Method::POST, "/start") => match read_form(body).await {
            Ok(form) => w.start(&form).await,
            Err(e) => Err(e),
        },
        (&Method::POST, "/initialize") => w.initialize(&query).await,
        (&Method::GET, "/callback/source") => w.callback_source(&query).await,
        (&Method::GET, "/target") => w.target_page(None).await,
        (&Method::POST, "/target") => match read_form(body).await {
            Ok(form) => w.choose_target(&form).await,
            Err(e) => Err(e),
        },
        (&Method::GET, "/callback/target") => w.callback_target(&query).await,
        (&Method::GET, "/summary") => w.summary().await,
        (&Method::POST, "/forget") => match read_form(body).await {
            Ok(form) => w.forget(&form).await,
            Err(e) => Err(e),
        },
        (_, "/" | "/start" | "/initialize" | "/callback/source" | "/target")
        | (_, "/callback/target" | "/summary" | "/forget") => Err(Failure::BadMethod),
        _ => Err(Failure::NotFound),
    };
    result.unwrap_or_else(|f| w.failure(f))
}

/// The wizard's own address, without a trailing slash: `move.url` when set, else
/// `<scheme>://<move.domain>`.
fn wizard_base(state: &AppState, domain: &str) -> String {
    match state.move_settings.wizard_url.as_deref() {
        Some(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
        _ => format!("{}://{domain}", scheme_for(domain)),
    }
}

async fn read_form(body: Body) -> Result<HashMap<String, String>, Failure> {
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| Failure::BadInput("form"))?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| Failure::BadInput("form"))
}

/// One person's progress through the wizard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Flow {
    #[serde(rename = "_id", skip_serializing_if = "String::is_empty")]
    id: String,
    #[serde(rename = "_rev", skip_serializing_if = "String::is_empty")]
    rev: String,
    /// Seconds since the epoch after which the state is refused and deleted.
    expires_at: u64,
    /// The source instance's URL (`scheme://host[:port]`).
    source_url: String,
    /// Workflow B: the `move` code of `/move/authorize`, for `/move/request`.
    source_code: Option<String>,
    /// Workflow A: the source token and the client it was issued to.
    source_token: Option<String>,
    source_client_id: Option<String>,
    source_client_secret: Option<String>,
    /// The source has a password vault (export it first).
    vault: bool,
    /// Bytes used on the source (files and versions).
    used: Option<u64>,
    target_url: Option<String>,
    target_client_id: Option<String>,
    target_client_secret: Option<String>,
    target_token: Option<String>,
    /// The target's disk quota; `None` is unlimited.
    target_quota: Option<u64>,
}

/// What went wrong, for the error page.
#[derive(Debug)]
enum Failure {
    /// A field or parameter is missing or malformed (its name).
    BadInput(&'static str),
    /// An address the person typed is not an instance address.
    BadAddress(String),
    /// The wizard's state is unknown, expired, or not this browser's.
    Expired,
    /// A step was skipped (e.g. the summary before the target).
    OutOfOrder,
    /// A server could not be reached (its URL, the reason for the log).
    Unreachable(String, String),
    /// A server refused what was asked (its URL, the status).
    Refused(String, u16),
    /// The store failed.
    Internal,
    NotFound,
    BadMethod,
}

struct Wizard<'a> {
    state: &'a AppState,
    locale: &'static str,
    /// The wizard's address, without a trailing slash.
    base: String,
    headers: &'a HeaderMap,
}

fn dt() -> Result<Doctype, Failure> {
    Doctype::new(WIZARD_DOCTYPE).map_err(|_| Failure::Internal)
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn store_failure(e: StoreError) -> Failure {
    tracing::error!(error = %e, "move wizard: the store failed");
    Failure::Internal
}

/// `scheme://host[:port]` of an instance address as a person types it (`alice.example`,
/// `https://alice.example/`, `http://alice.localhost:8080/settings`); a scheme is
/// added as the instance would use (`http` for `*.localhost` and explicit ports).
pub(crate) fn instance_url(input: &str) -> Option<String> {
    let input = input.trim();
    let (scheme, rest) = match input.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, input),
    };
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let authority = authority.trim_end_matches('.');
    let valid = !authority.is_empty()
        && authority.len() <= 260
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !authority.starts_with(['.', '-', ':']);
    if !valid {
        return None;
    }
    let scheme = match scheme.as_deref() {
        Some(s @ ("http" | "https")) => s.to_owned(),
        Some(_) => return None,
        None => scheme_for(authority).to_owned(),
    };
    Some(format!("{scheme}://{authority}"))
}

/// The host (and port) of an instance URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, h)| h);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn number(q: &HashMap<String, String>, key: &str) -> Option<u64> {
    q.get(key).and_then(|v| v.trim().parse().ok())
}

fn field<'q>(q: &'q HashMap<String, String>, key: &'static str) -> Result<&'q str, Failure> {
    q.get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or(Failure::BadInput(key))
}

/// Sizes as people read them (`1.5 GB`).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A blocking outgoing call, run off the async workers.
async fn call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
    url: &str,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(FetchError::Status(s))) => Err(Failure::Refused(url.to_owned(), s)),
        Ok(Err(FetchError::Transport(m))) => Err(Failure::Unreachable(url.to_owned(), m)),
        Err(e) => Err(Failure::Unreachable(url.to_owned(), e.to_string())),
    }
}

/// Exchanges an access code at `<instance>/auth/access_token` for a token.
async fn exchange_code(
    instance: &str,
    code: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<String, Failure> {
    let url = format!("{instance}/auth/access_token");
    let form = vec![
        ("grant_type".to_owned(), "authorization_code".to_owned()),
        ("code".to_owned(), code.to_owned()),
        ("client_id".to_owned(), client_id.to_owned()),
        ("client_secret".to_owned(), client_secret.to_owned()),
    ];
    let target = url.clone();
    let answer = call(
        move || client::post(&target, Reach::Public, None, PostBody::Form(form)),
        &url,
    )
    .await?;
    if answer.status != 200 {
        return Err(Failure::Refused(instance.to_owned(), answer.status));
    }
    answer
        .json()
        .and_then(|v| {
            v.get("access_token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::Refused(instance.to_owned(), answer.status))
}

impl Wizard<'_> {
    fn secure(&self) -> &'static str {
        if self.base.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }

    fn set_cookie(&self, res: &mut Response, id: &str) {
        let cookie = format!(
            "{WIZARD_COOKIE}={id}; Path=/; Max-Age={STATE_TTL}; HttpOnly; SameSite=Lax{}",
            self.secure()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    fn clear_cookie(&self, res: &mut Response) {
        let cookie = format!(
            "{WIZARD_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            self.secure()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// The state id of this browser's cookie, if well formed.
    fn cookie_id(&self) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k.trim() == WIZARD_COOKIE).then(|| v.trim().to_owned())
            })
            .find(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// A new state (not yet saved).
    fn new_flow(&self, source_url: String) -> Flow {
        Flow {
            id: hearth_core::random_hex(16),
            expires_at: now_secs() + STATE_TTL,
            source_url,
            ..Flow::default()
        }
    }

    async fn save(&self, flow: &mut Flow) -> Result<(), Failure> {
        let Ok(Value::Object(doc)) = serde_json::to_value(&*flow) else {
            return Err(Failure::Internal);
        };
        let written = self
            .state
            .store
            .put(&InstanceId::global(), &dt()?, doc)
            .await
            .map_err(store_failure)?;
        flow.id = written.id;
        flow.rev = written.rev.to_string();
        Ok(())
    }

    /// This browser's state; with `given` (a callback's `state`), it must be the one
    /// of the cookie. An expired state is deleted.
    async fn load(&self, given: Option<&str>) -> Result<Flow, Failure> {
        let id = self.cookie_id().ok_or(Failure::Expired)?;
        if let Some(given) = given
            && !hearth_instances::passphrase::constant_time_eq(given.as_bytes(), id.as_bytes())
        {
            return Err(Failure::Expired);
        }
        let doc = match self
            .state
            .store
            .get(&InstanceId::global(), &dt()?, &id, GetOptions::default())
            .await
        {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Err(Failure::Expired),
            Err(e) => return Err(store_failure(e)),
        };
        let flow: Flow =
            serde_json::from_value(Value::Object(doc)).map_err(|_| Failure::Expired)?;
        if flow.expires_at <= now_secs() {
            self.delete(&flow).await;
            return Err(Failure::Expired);
        }
        Ok(flow)
    }

    async fn delete(&self, flow: &Flow) {
        let (Ok(dt), Ok(rev)) = (dt(), flow.rev.parse()) else {
            return;
        };
        if let Err(e) = self
            .state
            .store
            .delete(&InstanceId::global(), &dt, &flow.id, &rev)
            .await
        {
            tracing::warn!(error = %e, "move wizard: cannot delete a state");
        }
    }

    /// Deletes the expired states (at most a page of them), when a new one is made.
    async fn purge_expired(&self) {
        let Ok(dt) = dt() else { return };
        let q = hearth_store::AllDocsQuery {
            include_docs: true,
            limit: Some(200),
            ..Default::default()
        };
        let rows = match self
            .state
            .store
            .all_docs(&InstanceId::global(), &dt, &q)
            .await
        {
            Ok(r) => r.rows,
            Err(_) => return,
        };
        let now = now_secs();
        for doc in rows.into_iter().filter_map(|r| r.doc) {
            if let Ok(flow) = serde_json::from_value::<Flow>(Value::Object(doc))
                && flow.expires_at <= now
            {
                self.delete(&flow).await;
            }
        }
    }

    // -----------------------------------------------------------------------------
    // Steps
    // -----------------------------------------------------------------------------

    /// `GET /`: "Move your Hearth", the current address.
    fn start_page(&self, status: StatusCode, error: Option<&str>, value: &str) -> Response {
        let t = |k| text(self.locale, k);
        let body = format!(
            "<p>{intro}</p>\n<ol>\n<li>{step1}</li>\n<li>{step2}</li>\n<li>{step3}</li>\n</ol>\n\
             <form id=\"source-form\" method=\"post\" action=\"/start\">\n\
             <label for=\"source-url\">{label}</label>\n\
             <input type=\"text\" id=\"source-url\" name=\"source_url\" value=\"{value}\" \
             placeholder=\"https://alice.example.net\" autocomplete=\"url\" required autofocus>\n\
             {status}<button type=\"submit\" id=\"source-submit\">{submit}</button>\n</form>\n",
            intro = html_escape(t("start_intro")),
            step1 = html_escape(t("start_step1")),
            step2 = html_escape(t("start_step2")),
            step3 = html_escape(t("start_step3")),
            label = html_escape(t("source_label")),
            value = html_escape(value),
            status = pages::status_line(error),
            submit = html_escape(t("next")),
        );
        (
            status,
            pages::layout(self.locale, t("start_title"), &body, false),
        )
            .into_response()
    }

    /// `POST /start` (`source_url`): workflow B, to `<source>/move/authorize`.
    async fn start(&self, form: &HashMap<String, String>) -> Result<Response, Failure> {
        let raw = form.get("source_url").map(String::as_str).unwrap_or("");
        let Some(source) = instance_url(raw) else {
            let msg = text(self.locale, "bad_address");
            return Ok(self.start_page(StatusCode::BAD_REQUEST, Some(msg), raw));
        };
        self.purge_expired().await;
        let mut flow = self.new_flow(source.clone());
        self.save(&mut flow).await?;
        tracing::info!(source = %host_of(&source), "move wizard: started from the wizard");
        let redirect_uri = format!("{}/callback/source", self.base);
        let location = format!(
            "{source}/move/authorize?{}",
            query_string(&[("state", &flow.id), ("redirect_uri", &redirect_uri)])
        );
        let mut res = see_other(&location);
        self.set_cookie(&mut res, &flow.id);
        Ok(res)
    }

    /// `POST /initialize?client_id&client_secret&code&vault&used&quota&cozy_url`
    /// (workflow A, re-posted by the browser after the source's 307).
    async fn initialize(&self, q: &HashMap<String, String>) -> Result<Response, Failure> {
        let cozy_url = field(q, "cozy_url")?;
        let source =
            instance_url(cozy_url).ok_or_else(|| Failure::BadAddress(cozy_url.to_owned()))?;
        let client_id = field(q, "client_id")?;
        let client_secret = field(q, "client_secret")?;
        let code = field(q, "code")?;
        let token = exchange_code(&source, code, client_id, client_secret).await?;
        self.purge_expired().await;
        let mut flow = self.new_flow(source);
        flow.source_token = Some(token);
        flow.source_client_id = Some(client_id.to_owned());
        flow.source_client_secret = Some(client_secret.to_owned());
        flow.vault = q.get("vault").is_some_and(|v| v == "true");
        flow.used = number(q, "used");
        self.save(&mut flow).await?;
        tracing::info!(source = %host_of(&flow.source_url), "move wizard: started from a source");
        let mut res = see_other("/target");
        self.set_cookie(&mut res, &flow.id);
        Ok(res)
    }

    /// `GET /callback/source?state&code&vault&used&quota` (workflow B).
    async fn callback_source(&self, q: &HashMap<String, String>) -> Result<Response, Failure> {
        let mut flow = self.load(Some(field(q, "state")?)).await?;
        flow.source_code = Some(field(q, "code")?.to_owned());
        flow.vault = q.get("vault").is_some_and(|v| v == "true");
        flow.used = number(q, "used");
        self.save(&mut flow).await?;
        Ok(see_other("/target"))
    }

    /// `GET /target`: the new address.
    async fn target_page(&self, error: Option<(&str, &str)>) -> Result<Response, Failure> {
        let flow = self.load(None).await?;
        if flow.source_code.is_none() && flow.source_token.is_none() {
            return Err(Failure::OutOfOrder);
        }
        let t = |k| text(self.locale, k);
        let (message, value) = error.unzip();
        let body = format!(
            "<p>{from} <strong id=\"source-host\">{source}</strong></p>\n\
             <p>{intro}</p>\n\
             <form id=\"target-form\" method=\"post\" action=\"/target\">\n\
             <input type=\"hidden\" name=\"state\" value=\"{state}\">\n\
             <label for=\"target-url\">{label}</label>\n\
             <input type=\"text\" id=\"target-url\" name=\"target_url\" value=\"{value}\" \
             placeholder=\"https://alice.other-host.net\" autocomplete=\"url\" required autofocus>\n\
             {status}<button type=\"submit\" id=\"target-submit\">{submit}</button>\n</form>\n",
            from = html_escape(t("from")),
            source = html_escape(host_of(&flow.source_url)),
            intro = html_escape(t("target_intro")),
            state = html_escape(&flow.id),
            label = html_escape(t("target_label")),
            value = html_escape(value.unwrap_or("")),
            status = pages::status_line(message),
            submit = html_escape(t("next")),
        );
        let status = if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            pages::layout(self.locale, t("target_title"), &body, false),
        )
            .into_response())
    }

    /// `POST /target` (`state`, `target_url`): registers a client on the target and
    /// sends the browser to its `/auth/authorize/move`.
    async fn choose_target(&self, form: &HashMap<String, String>) -> Result<Response, Failure> {
        let mut flow = self.load(Some(field(form, "state")?)).await?;
        let raw = form.get("target_url").map(String::as_str).unwrap_or("");
        let Some(target) = instance_url(raw) else {
            return self
                .target_page(Some((text(self.locale, "bad_address"), raw)))
                .await;
        };
        if host_of(&target) == host_of(&flow.source_url) {
            return self
                .target_page(Some((text(self.locale, "same_address"), raw)))
                .await;
        }
        let redirect_uri = format!("{}/callback/target", self.base);
        let url = format!("{target}/auth/register");
        let body = json!({
            "client_name": "Hearth move",
            "client_kind": "web",
            "client_uri": format!("{}/", self.base),
            "redirect_uris": [redirect_uri],
            "software_id": "github.com/cozy/cozy-move",
            "software_version": env!("CARGO_PKG_VERSION"),
        });
        let to = url.clone();
        let answer = call(
            move || client::post(&to, Reach::Public, None, PostBody::Json(body)),
            &url,
        )
        .await?;
        if !matches!(answer.status, 200 | 201) {
            return Err(Failure::Refused(target, answer.status));
        }
        let client = answer.json().unwrap_or(Value::Null);
        let get = |k: &str| {
            client
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (Some(client_id), Some(client_secret)) = (get("client_id"), get("client_secret"))
        else {
            return Err(Failure::Refused(target, answer.status));
        };
        flow.target_url = Some(target.clone());
        flow.target_client_id = Some(client_id.clone());
        flow.target_client_secret = Some(client_secret);
        flow.target_token = None;
        self.save(&mut flow).await?;
        let location = format!(
            "{target}/auth/authorize/move?{}",
            query_string(&[
                ("state", &flow.id),
                ("client_id", &client_id),
                ("redirect_uri", &redirect_uri),
            ])
        );
        Ok(see_other(&location))
    }

    /// `GET /callback/target?state&code&used&quota`: the target token.
    async fn callback_target(&self, q: &HashMap<String, String>) -> Result<Response, Failure> {
        let mut flow = self.load(Some(field(q, "state")?)).await?;
        let code = field(q, "code")?;
        let (Some(target), Some(id), Some(secret)) = (
            flow.target_url.clone(),
            flow.target_client_id.clone(),
            flow.target_client_secret.clone(),
        ) else {
            return Err(Failure::OutOfOrder);
        };
        let token = exchange_code(&target, code, &id, &secret).await?;
        flow.target_token = Some(token);
        flow.target_quota = number(q, "quota").filter(|q| *q > 0);
        self.save(&mut flow).await?;
        Ok(see_other("/summary"))
    }

    /// `GET /summary`: what will move where, and the confirmation form (posted by the
    /// browser to `<source>/move/request`) when the data fits.
    async fn summary(&self) -> Result<Response, Failure> {
        let flow = self.load(None).await?;
        let (Some(target), Some(target_token), Some(target_id), Some(target_secret)) = (
            flow.target_url.as_deref(),
            flow.target_token.as_deref(),
            flow.target_client_id.as_deref(),
            flow.target_client_secret.as_deref(),
        ) else {
            return Err(Failure::OutOfOrder);
        };
        let t = |k| text(self.locale, k);
        let used = flow.used.unwrap_or(0);
        let fits = flow.target_quota.is_none_or(|q| used <= q);
        let used_text = match flow.used {
            Some(u) => human_size(u),
            None => t("unknown").to_owned(),
        };
        let quota_text = match flow.target_quota {
            Some(q) => human_size(q),
            None => t("unlimited").to_owned(),
        };
        let mut body = format!(
            "<dl>\n<dt>{from}</dt><dd id=\"summary-source\">{source}</dd>\n\
             <dt>{to}</dt><dd id=\"summary-target\">{target_host}</dd>\n\
             <dt>{size}</dt><dd id=\"summary-used\" data-bytes=\"{used}\">{used_text}</dd>\n\
             <dt>{space}</dt><dd id=\"summary-quota\" data-bytes=\"{quota}\">{quota_text}</dd>\n</dl>\n",
            from = html_escape(t("from")),
            source = html_escape(host_of(&flow.source_url)),
            to = html_escape(t("to")),
            target_host = html_escape(host_of(target)),
            size = html_escape(t("size")),
            used_text = html_escape(&used_text),
            space = html_escape(t("space")),
            quota = flow.target_quota.map(|q| q.to_string()).unwrap_or_default(),
            quota_text = html_escape(&quota_text),
        );
        if !fits {
            body.push_str(&format!(
                "<p id=\"quota-too-small\" class=\"error\" role=\"alert\">{}</p>\n\
                 <p>{}</p>\n<p><a id=\"restart\" href=\"/\">{}</a></p>\n",
                html_escape(
                    &t("too_small")
                        .replace("{used}", &used_text)
                        .replace("{quota}", &quota_text)
                ),
                html_escape(t("nothing_changed")),
                html_escape(t("restart")),
            ));
            return Ok(pages::layout(self.locale, t("summary_title"), &body, false).into_response());
        }
        let mut hidden: Vec<(&str, &str)> = Vec::new();
        if let Some(code) = flow.source_code.as_deref() {
            hidden.push(("code", code));
        } else if let (Some(token), Some(id), Some(secret)) = (
            flow.source_token.as_deref(),
            flow.source_client_id.as_deref(),
            flow.source_client_secret.as_deref(),
        ) {
            hidden.extend([
                ("token", token),
                ("client_id", id),
                ("client_secret", secret),
            ]);
        } else {
            return Err(Failure::OutOfOrder);
        }
        hidden.extend([
            ("target_url", target),
            ("target_token", target_token),
            ("target_client_id", target_id),
            ("target_client_secret", target_secret),
        ]);
        let inputs: String = hidden
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{k}\" value=\"{}\">\n",
                    html_escape(v)
                )
            })
            .collect();
        let vault = if flow.vault {
            format!(
                "<fieldset id=\"vault-step\">\n<legend>{legend}</legend>\n<p>{explain}</p>\n\
                 <label><input type=\"radio\" id=\"vault-exported\" name=\"ignore_vault\" value=\"\" required> {exported}</label>\n\
                 <label><input type=\"radio\" id=\"vault-skip\" name=\"ignore_vault\" value=\"true\"> {skip}</label>\n\
                 </fieldset>\n",
                legend = html_escape(t("vault_legend")),
                explain = html_escape(t("vault_explain")),
                exported = html_escape(t("vault_exported")),
                skip = html_escape(t("vault_skip")),
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<p id=\"quota-ok\">{fits}</p>\n<p>{next}</p>\n\
             <form id=\"move-form\" method=\"post\" action=\"{action}\" data-state=\"{state}\">\n\
             {inputs}{vault}<button type=\"submit\" id=\"move-submit\">{submit}</button>\n</form>\n\
             <p><a id=\"restart\" href=\"/\">{restart}</a></p>\n\
             <script>\ndocument.getElementById('move-form').addEventListener('submit', function (e) {{\n  \
             var body = new URLSearchParams({{state: e.target.dataset.state}});\n  \
             try {{ fetch('/forget', {{method: 'POST', body: body, keepalive: true, credentials: 'same-origin'}}); }} catch (_) {{}}\n}});\n</script>\n",
            fits = html_escape(t("fits")),
            next = html_escape(t("mail_next")),
            action = html_escape(&format!("{}/move/request", flow.source_url)),
            state = html_escape(&flow.id),
            submit = html_escape(t("move_submit")),
            restart = html_escape(t("restart")),
        ));
        Ok(pages::layout(self.locale, t("summary_title"), &body, false).into_response())
    }

    /// `POST /forget` (`state`): the confirmation was sent; the state is deleted.
    async fn forget(&self, form: &HashMap<String, String>) -> Result<Response, Failure> {
        let flow = self.load(Some(field(form, "state")?)).await?;
        self.delete(&flow).await;
        let mut res = StatusCode::NO_CONTENT.into_response();
        self.clear_cookie(&mut res);
        Ok(res)
    }

    // -----------------------------------------------------------------------------
    // Errors
    // -----------------------------------------------------------------------------

    fn failure(&self, f: Failure) -> Response {
        let t = |k| text(self.locale, k);
        let (status, message) = match &f {
            Failure::BadInput(name) => (
                StatusCode::BAD_REQUEST,
                t("bad_input").replace("{name}", name),
            ),
            Failure::BadAddress(a) => (
                StatusCode::BAD_REQUEST,
                format!("{} ({a})", t("bad_address")),
            ),
            Failure::Expired => (StatusCode::BAD_REQUEST, t("expired").to_owned()),
            Failure::OutOfOrder => (StatusCode::BAD_REQUEST, t("out_of_order").to_owned()),
            Failure::Unreachable(url, why) => {
                tracing::warn!(server = %url, reason = %why, "move wizard: a server is unreachable");
                (
                    StatusCode::BAD_GATEWAY,
                    t("unreachable").replace("{server}", host_of(url)),
                )
            }
            Failure::Refused(url, status) => {
                tracing::warn!(server = %url, status, "move wizard: a server refused");
                (
                    StatusCode::BAD_GATEWAY,
                    t("refused")
                        .replace("{server}", host_of(url))
                        .replace("{status}", &status.to_string()),
                )
            }
            Failure::Internal => (StatusCode::INTERNAL_SERVER_ERROR, t("internal").to_owned()),
            Failure::NotFound => (StatusCode::NOT_FOUND, t("not_found").to_owned()),
            Failure::BadMethod => (StatusCode::METHOD_NOT_ALLOWED, t("not_found").to_owned()),
        };
        let body = format!(
            "<p id=\"wizard-error\" class=\"error\" role=\"alert\">{}</p>\n<p>{}</p>\n\
             <p><a id=\"restart\" href=\"/\">{}</a></p>\n",
            html_escape(&message),
            html_escape(t("nothing_changed")),
            html_escape(t("restart")),
        );
        (
            status,
            pages::layout(self.locale, t("error_title"), &body, false),
        )
            .into_response()
    }
}

/// The wizard's words in English and French.
fn text(locale: &str, key: &str) -> &'static str {
    let fr = locale == "fr";
    match key {
        "start_title" if fr => "Déménagez votre Hearth",
        "start_title" => "Move your Hearth",
        "start_intro" if fr => {
            "Emportez toutes vos données vers un autre hébergeur : fichiers, contacts, \
             réglages et applications."
        }
        "start_intro" => "Take all your data to another host: files, contacts, settings and apps.",
        "start_step1" if fr => "Connectez-vous à votre Hearth actuel.",
        "start_step1" => "Log in to your current Hearth.",
        "start_step2" if fr => "Connectez-vous au nouveau Hearth, qui sera remplacé.",
        "start_step2" => "Log in to the new Hearth, whose content will be replaced.",
        "start_step3" if fr => "Confirmez avec le lien reçu par e-mail.",
        "start_step3" => "Confirm with the link you receive by e-mail.",
        "source_label" if fr => "Adresse de votre Hearth actuel",
        "source_label" => "Address of your current Hearth",
        "next" if fr => "Continuer",
        "next" => "Continue",
        "from" if fr => "Depuis",
        "from" => "From",
        "to" if fr => "Vers",
        "to" => "To",
        "target_title" if fr => "Où déménager ?",
        "target_title" => "Where to?",
        "target_intro" if fr => {
            "Saisissez l'adresse du nouveau Hearth. Tout ce qu'il contient sera remplacé \
             par vos données."
        }
        "target_intro" => {
            "Type the address of the new Hearth. Everything it holds will be replaced by \
             your data."
        }
        "target_label" if fr => "Adresse du nouveau Hearth",
        "target_label" => "Address of the new Hearth",
        "summary_title" if fr => "Récapitulatif",
        "summary_title" => "Summary",
        "size" if fr => "Taille de vos données",
        "size" => "Size of your data",
        "space" if fr => "Espace du nouveau Hearth",
        "space" => "Space on the new Hearth",
        "unknown" if fr => "inconnue",
        "unknown" => "unknown",
        "unlimited" if fr => "illimité",
        "unlimited" => "unlimited",
        "fits" if fr => "Vos données tiennent dans le nouveau Hearth.",
        "fits" => "Your data fits in the new Hearth.",
        "too_small" if fr => {
            "Vos données ({used}) ne tiennent pas dans l'espace du nouveau Hearth ({quota}). \
             Libérez de la place ou demandez plus d'espace au nouvel hébergeur, puis \
             recommencez."
        }
        "too_small" => {
            "Your data ({used}) does not fit in the space of the new Hearth ({quota}). Free \
             some space or ask the new host for more, then start again."
        }
        "mail_next" if fr => {
            "Après confirmation, votre Hearth actuel vous enverra un e-mail : le \
             déménagement commencera quand vous ouvrirez son lien."
        }
        "mail_next" => {
            "Once you confirm, your current Hearth sends you an e-mail: the move starts \
             when you open its link."
        }
        "vault_legend" if fr => "Vos mots de passe",
        "vault_legend" => "Your passwords",
        "vault_explain" if fr => {
            "Vos mots de passe sont chiffrés et ne peuvent pas être déménagés : exportez-les \
             d'abord depuis l'extension de votre navigateur (format JSON), vous les \
             importerez dans le nouveau Hearth."
        }
        "vault_explain" => {
            "Your passwords are encrypted and cannot be moved: export them first from your \
             browser extension (JSON format), and import them into the new Hearth."
        }
        "vault_exported" if fr => "J'ai exporté mes mots de passe",
        "vault_exported" => "I have exported my passwords",
        "vault_skip" if fr => "Ignorer : je n'ai pas besoin de mes mots de passe",
        "vault_skip" => "Skip: I do not need my passwords",
        "move_submit" if fr => "Déménager",
        "move_submit" => "Move my data",
        "restart" if fr => "Recommencer",
        "restart" => "Start again",
        "error_title" if fr => "Le déménagement n'a pas pu continuer",
        "error_title" => "The move could not go on",
        "nothing_changed" if fr => "Rien n'a été modifié sur vos Hearth.",
        "nothing_changed" => "Nothing was changed on your Hearths.",
        "bad_address" if fr => {
            "Cette adresse n'est pas celle d'un Hearth (par exemple https://alice.example.net)."
        }
        "bad_address" => "This is not the address of a Hearth (e.g. https://alice.example.net).",
        "same_address" if fr => "Le nouveau Hearth doit être différent de l'actuel.",
        "same_address" => "The new Hearth must be another one than the current one.",
        "bad_input" if fr => "Il manque une information ({name}) : recommencez depuis le début.",
        "bad_input" => "Some information ({name}) is missing: start again from the beginning.",
        "expired" if fr => {
            "Cette étape a expiré ou a été ouverte dans un autre navigateur (elle dure une \
             heure)."
        }
        "expired" => "This step has expired or was opened in another browser (it lasts an hour).",
        "out_of_order" if fr => "Une étape a été sautée.",
        "out_of_order" => "A step was skipped.",
        "unreachable" if fr => "{server} ne répond pas. Vérifiez l'adresse.",
        "unreachable" => "{server} does not answer. Check the address.",
        "refused" if fr => "{server} a refusé la demande (erreur {status}).",
        "refused" => "{server} refused the request (error {status}).",
        "internal" if fr => "Le serveur a rencontré un problème. Réessayez plus tard.",
        "internal" => "The server had a problem. Try again later.",
        "not_found" if fr => "Cette page n'existe pas.",
        "not_found" => "This page does not exist.",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_people_type_them() {
        for (input, url) in [
            ("alice.example.net", "https://alice.example.net"),
            (
                " https://Alice.Example.net/settings#/x ",
                "https://alice.example.net",
            ),
            ("alice.localhost:8080", "http://alice.localhost:8080"),
            (
                "http://alice.localhost:8080/",
                "http://alice.localhost:8080",
            ),
        ] {
            assert_eq!(instance_url(input).as_deref(), Some(url), "{input}");
        }
        for bad in [
            "",
            "ftp://a.net",
            "https://u@a.net",
            "a b.net",
            "https:///x",
            ".a.net",
        ] {
            assert_eq!(instance_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(human_size(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn every_text_in_both_languages() {
        for key in [
            "start_title",
            "too_small",
            "expired",
            "vault_skip",
            "unreachable",
        ] {
            assert!(
                !text("en", key).is_empty() && !text("fr", key).is_empty(),
                "{key}"
            );
            assert_ne!(text("en", key), text("fr", key), "{key}");
        }
    }
}
