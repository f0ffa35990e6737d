//! The source side of a move (spec move 3.2–3.8): the credentials the wizard gets,
//! the move requests confirmed by mail, starting the move (the target blocked, then
//! the export job with `move_to`), the calls to the target, and what finalize and
//! abort change.
//!
//! Fixes of the reference's leaky paths (spec move 5, 6.20): a request secret is
//! consumed on first use; the target must answer 204 to `/move/importing` before
//! anything changes here; `moved_to` is only set at finalize (`moving_to` keeps the
//! target meanwhile, and abort clears it); a failed export or notification aborts the
//! target and mails the owner.

use std::time::Duration;

use hearth_core::{InstanceId, JsonMap, random_hex};
use hearth_instances::{
    Audience, Instance, InstanceError, Instances, oauth::ClientMetadata, passphrase, token,
};
use hearth_jobs::{Jobs, JobsError};
use hearth_mail::Mailer;
use hearth_store::{DocStore, GetOptions, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::client::{self, FetchError, PostBody, Reach};
use crate::{ExportOptions, dt};

/// The scope of the source and target tokens of a move.
pub const MOVE_SCOPE: &str = "io.cozy.exports.requests io.cozy.imports";
/// The blocking reason of an instance a move is going to.
pub const BLOCK_MOVING: &str = "MOVING";
/// Move requests waiting for their confirmation (global store).
pub const REQUESTS: &str = "io.hearth.move.requests";
/// How long the confirmation link of a request works.
pub const REQUEST_TTL_SECS: u64 = 5 * 60;
/// The fake client of the codes `/move/authorize` gives the wizard.
pub const MOVE_CLIENT_ID: &str = "move";
/// The scope of those codes.
pub const MOVE_CODE_SCOPE: &str = "io.cozy.exports.requests";
/// How long such a code can be used (single use).
pub const MOVE_CODE_TTL_SECS: u64 = 10 * 60;
/// The settings key holding the target while a move runs (Hearth's; becomes
/// `moved_to` at finalize, removed by abort).
pub const MOVING_TO: &str = "moving_to";
/// The wizard of the Cozy stack, when this server names none.
pub const DEFAULT_WIZARD_URL: &str = "https://move.cozycloud.cc/";

const SETTINGS: &str = "io.cozy.settings";
const SETTINGS_ID: &str = "io.cozy.settings.instance";
const BITWARDEN_ID: &str = "io.cozy.settings.bitwarden";
const ACCESS_CODES: &str = "io.cozy.oauth.access_codes";

/// The target of a move as the source knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MoveTo {
    /// The target instance's URL, e.g. `http://bob.localhost:8081`.
    pub url: String,
    pub token: String,
    pub client_id: String,
    pub client_secret: String,
}

impl MoveTo {
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }
}

/// The source's own credentials handed to the target (`move_from.token`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCredentials {
    pub token: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A request waiting for the click on its confirmation link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveRequest {
    pub domain: String,
    pub source_credentials: SourceCredentials,
    pub target: MoveTo,
    #[serde(default)]
    pub ignore_vault: bool,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Why a step of a move failed.
#[derive(Debug, thiserror::Error)]
pub enum MoveFlowError {
    /// No answer from the target (the cause is logged, not shown).
    #[error("Cannot reach the other Cozy")]
    Unreachable,
    /// The target answered, but not as expected.
    #[error("The other Cozy refused the move: {0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("cannot send the mail: {0}")]
    Mail(String),
}

fn now() -> u64 {
    crate::now_secs()
}

/// The document id of a request: a hash of its secret, so that reading the store
/// does not give working links.
fn request_id(secret: &str) -> String {
    let digest = Sha256::digest(format!("hearth-move-request:{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_secret(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Stores a request for 5 minutes; answers its secret (16 hex characters).
pub async fn store_request(
    store: &dyn DocStore,
    inst: &Instance,
    source_credentials: SourceCredentials,
    target: MoveTo,
    ignore_vault: bool,
) -> Result<String, StoreError> {
    let secret = random_hex(8);
    let req = MoveRequest {
        domain: inst.domain.clone(),
        source_credentials,
        target,
        ignore_vault,
        expires_at: now() + REQUEST_TTL_SECS,
    };
    let mut doc = match serde_json::to_value(&req) {
        Ok(Value::Object(m)) => m,
        _ => return Err(StoreError::Internal("cannot encode a move request".into())),
    };
    doc.insert("_id".into(), Value::String(request_id(&secret)));
    store.put(&InstanceId::global(), &dt(REQUESTS), doc).await?;
    Ok(secret)
}

/// Takes the request of a secret for this instance: it is deleted with its revision
/// first, so a second (or concurrent) click finds nothing. `None` when unknown,
/// already used, expired or another instance's.
pub async fn take_request(
    store: &dyn DocStore,
    inst: &Instance,
    secret: &str,
) -> Result<Option<MoveRequest>, StoreError> {
    let secret = secret.trim();
    if !is_secret(secret) {
        return Ok(None);
    }
    let id = request_id(&secret.to_ascii_lowercase());
    let global = InstanceId::global();
    let doc = match store
        .get(&global, &dt(REQUESTS), &id, GetOptions::default())
        .await
    {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(rev) = doc
        .get("_rev")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
    else {
        return Ok(None);
    };
    let Ok(req) = serde_json::from_value::<MoveRequest>(Value::Object(doc)) else {
        return Ok(None);
    };
    if req.domain != inst.domain {
        return Ok(None);
    }
    match store.delete(&global, &dt(REQUESTS), &id, &rev).await {
        Ok(_) => {}
        Err(StoreError::Conflict | StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok((req.expires_at > now()).then_some(req))
}

/// Puts back a request that [`take_request`] took, when the move could not start
/// and nothing changed (the target unreachable or refusing): the mail's link works
/// again until the request's own expiry.
pub async fn give_back(
    store: &dyn DocStore,
    secret: &str,
    req: &MoveRequest,
) -> Result<(), StoreError> {
    let secret = secret.trim().to_ascii_lowercase();
    if !is_secret(&secret) || req.expires_at <= now() {
        return Ok(());
    }
    let mut doc = match serde_json::to_value(req) {
        Ok(Value::Object(m)) => m,
        _ => return Err(StoreError::Internal("cannot encode a move request".into())),
    };
    doc.insert("_id".into(), Value::String(request_id(&secret)));
    store
        .put(&InstanceId::global(), &dt(REQUESTS), doc)
        .await
        .map(|_| ())
}

/// Deletes the documents of a global doctype whose `expires_at` (seconds since the
/// epoch) has passed: move requests nobody confirmed, the wizard's records of moves
/// left half-way. Answers how many were deleted.
pub async fn remove_expired(store: &dyn DocStore, doctype: &str) -> Result<usize, StoreError> {
    let global = InstanceId::global();
    let doctype = dt(doctype);
    let now = now();
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        let q = hearth_store::AllDocsQuery {
            include_docs: true,
            limit: Some(501),
            // The next page starts at the last id seen (kept, so seen again and
            // skipped; deleted, so not listed).
            start_key: after.clone(),
            ..Default::default()
        };
        let rows: Vec<_> = match store.all_docs(&global, &doctype, &q).await {
            Ok(r) => r.rows,
            Err(StoreError::NotFound(_)) => return Ok(removed),
            Err(e) => return Err(e),
        }
        .into_iter()
        .filter(|r| Some(&r.id) != after.as_ref())
        .collect();
        let Some(last) = rows.last().map(|r| r.id.clone()) else {
            return Ok(removed);
        };
        for row in rows {
            let Some(doc) = row.doc else { continue };
            let expired = doc
                .get("expires_at")
                .and_then(Value::as_u64)
                .is_some_and(|t| t <= now);
            if let (true, Some(rev)) = (expired, row.rev) {
                match store.delete(&global, &doctype, &row.id, &rev).await {
                    Ok(_) => removed += 1,
                    Err(StoreError::Conflict | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        after = Some(last);
    }
}

/// The instance settings document (empty when there is none).
pub async fn instance_settings(
    store: &dyn DocStore,
    inst: &Instance,
) -> Result<JsonMap, StoreError> {
    settings_doc(store, inst, SETTINGS_ID).await
}

async fn settings_doc(
    store: &dyn DocStore,
    inst: &Instance,
    id: &str,
) -> Result<JsonMap, StoreError> {
    match store
        .get(
            &inst.instance_id(),
            &dt(SETTINGS),
            id,
            GetOptions::default(),
        )
        .await
    {
        Ok(d) => Ok(d),
        Err(StoreError::NotFound(_)) => Ok(JsonMap::new()),
        Err(e) => Err(e),
    }
}

/// A non-empty text of the instance settings.
pub fn setting_text(settings: &JsonMap, key: &str) -> Option<String> {
    settings
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Changes the instance settings document with `change` (which answers whether it
/// changed anything), retrying on conflicts.
pub async fn update_settings(
    store: &dyn DocStore,
    inst: &Instance,
    mut change: impl FnMut(&mut JsonMap) -> bool,
) -> Result<(), StoreError> {
    for _ in 0..5 {
        let mut doc = instance_settings(store, inst).await?;
        if !change(&mut doc) {
            return Ok(());
        }
        doc.insert("_id".into(), Value::String(SETTINGS_ID.into()));
        match store.put(&inst.instance_id(), &dt(SETTINGS), doc).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict)
}

/// Whether the owner uses the vault extension (the `vault` the wizard and the target
/// are told).
pub async fn has_vault(store: &dyn DocStore, inst: &Instance) -> bool {
    settings_doc(store, inst, BITWARDEN_ID)
        .await
        .ok()
        .and_then(|d| d.get("extension_installed").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// The access code `/move/authorize` gives the wizard (fake client `move`, scope
/// `io.cozy.exports.requests`, single use, 10 minutes).
pub async fn create_move_code(
    instances: &Instances,
    inst: &Instance,
) -> Result<String, InstanceError> {
    instances
        .create_access_code(&inst.domain, MOVE_CLIENT_ID, MOVE_CODE_SCOPE, None)
        .await
}

/// Consumes a code of [`create_move_code`]: false when unknown, used, too old, or
/// not such a code.
pub async fn take_move_code(
    store: &dyn DocStore,
    inst: &Instance,
    code: &str,
) -> Result<bool, StoreError> {
    let code = code.trim();
    if code.is_empty() {
        return Ok(false);
    }
    let id = inst.instance_id();
    let doc = match store
        .get(&id, &dt(ACCESS_CODES), code, GetOptions::default())
        .await
    {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if doc.get("client_id").and_then(Value::as_str) != Some(MOVE_CLIENT_ID)
        || doc.get("scope").and_then(Value::as_str) != Some(MOVE_CODE_SCOPE)
    {
        return Ok(false);
    }
    let Some(rev) = doc
        .get("_rev")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
    else {
        return Ok(false);
    };
    match store.delete(&id, &dt(ACCESS_CODES), code, &rev).await {
        Ok(_) => {}
        Err(StoreError::Conflict | StoreError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    let created = doc.get("created_at").and_then(Value::as_u64).unwrap_or(0);
    Ok(created + MOVE_CODE_TTL_SECS >= now())
}

/// Registers the source's OAuth client of a move (`cozy-stack`, redirect
/// `<wizard>/fake`); answers its id and secret.
pub async fn register_move_client(
    instances: &Instances,
    inst: &Instance,
    wizard_url: &str,
) -> Result<(String, String), MoveFlowError> {
    let meta = ClientMetadata {
        redirect_uris: vec![format!("{}/fake", wizard_url.trim_end_matches('/'))],
        client_name: "cozy-stack".into(),
        software_id: "github.com/cozy/cozy-stack".into(),
        ..Default::default()
    };
    let client = instances
        .register_client(&inst.domain, meta)
        .await?
        .map_err(|e| MoveFlowError::Invalid(e.description))?;
    let text = |k: &str| {
        client
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (id, secret) = (text("client_id"), text("client_secret"));
    if id.is_empty() || secret.is_empty() {
        return Err(MoveFlowError::Invalid(
            "the client was not registered".into(),
        ));
    }
    Ok((id, secret))
}

/// A new client of the move and an access token with [`MOVE_SCOPE`] for it (the code
/// path of `/move/request`, and moves started by the operator).
pub async fn mint_source_credentials(
    instances: &Instances,
    inst: &Instance,
    wizard_url: &str,
) -> Result<SourceCredentials, MoveFlowError> {
    let (client_id, client_secret) = register_move_client(instances, inst, wizard_url).await?;
    let token = token::issue(inst, Audience::Access, &client_id, MOVE_SCOPE, None);
    Ok(SourceCredentials {
        token,
        client_id,
        client_secret,
    })
}

/// Checks the token credentials of `/move/request`: an access token of this
/// instance, not expired, for that client, whose secret matches.
pub async fn check_source_credentials(
    instances: &Instances,
    inst: &Instance,
    creds: SourceCredentials,
) -> Result<Result<SourceCredentials, &'static str>, InstanceError> {
    let claims = match token::verify(inst, creds.token.trim()) {
        Ok(c) if c.audience() == Some(Audience::Access) => c,
        _ => return Ok(Err("Invalid token")),
    };
    if claims.sub != creds.client_id {
        return Ok(Err("Invalid token"));
    }
    let Some(client) = instances.get_client(&inst.domain, &creds.client_id).await? else {
        return Ok(Err("Unknown client"));
    };
    let stored = client
        .get("client_secret")
        .and_then(Value::as_str)
        .unwrap_or("");
    if stored.is_empty()
        || !passphrase::constant_time_eq(stored.as_bytes(), creds.client_secret.as_bytes())
    {
        return Ok(Err("Invalid client_secret"));
    }
    Ok(Ok(creds))
}

/// Mails the owner the confirmation link of a request (`move_confirm`); answers the
/// address it went to.
pub async fn send_confirm_mail(
    instances: &Instances,
    mailer: &Mailer,
    inst: &Instance,
    confirm_link: &str,
    source: &str,
    target_host: &str,
) -> Result<String, MoveFlowError> {
    let settings = instance_settings(instances.store().as_ref(), inst).await?;
    let email = setting_text(&settings, "email")
        .ok_or_else(|| MoveFlowError::Mail("the instance has no email address".into()))?;
    let mut vars = Map::new();
    let s = |v: &str| Value::String(v.to_owned());
    vars.insert("ConfirmLink".into(), s(confirm_link));
    vars.insert("Source".into(), s(source));
    vars.insert("Target".into(), s(target_host));
    vars.insert("TargetDomain".into(), s(target_host));
    crate::worker::mail_owner(instances, mailer, inst, "move_confirm", vars)
        .await
        .map_err(|e| MoveFlowError::Mail(e.message))?;
    Ok(email)
}

/// What starting a move needs (from `/move/go` or the admin API).
#[derive(Debug, Clone, Copy)]
pub struct MoveStart<'a> {
    pub target: &'a MoveTo,
    /// The source's access token, handed to the target.
    pub source_token: &'a str,
    pub ignore_vault: bool,
    /// The domain the person used: the links given to the target are built on it.
    pub contextual_domain: &'a str,
    /// A person's move reaches public addresses only; the operator's any.
    pub reach: Reach,
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The message of a refusal: the JSON:API `detail`, `{"error"}`, or the status.
fn refusal(answer: &client::PostAnswer) -> String {
    let json = answer.json();
    let detail = json.as_ref().and_then(|j| {
        j.pointer("/errors/0/detail")
            .or_else(|| j.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    match detail {
        Some(d) if !d.is_empty() => format!("{d} ({})", answer.status),
        _ => format!("the server answered {}", answer.status),
    }
}

async fn post(
    url: String,
    reach: Reach,
    bearer: String,
    body: PostBody,
) -> Result<client::PostAnswer, FetchError> {
    match tokio::task::spawn_blocking(move || client::post(&url, reach, Some(&bearer), body)).await
    {
        Ok(r) => r,
        Err(e) => Err(FetchError::Transport(format!(
            "the request task failed: {e}"
        ))),
    }
}

/// Starts a move: the target must accept it (`POST <target>/move/importing` → 204:
/// it blocks itself), then the export job is queued with `move_to`. Nothing changes
/// here if the target does not accept. Answers the id of the export job.
pub async fn start_move(
    jobs: &Jobs,
    instances: &Instances,
    inst: &Instance,
    m: MoveStart<'_>,
) -> Result<String, MoveFlowError> {
    let url = m.target.endpoint(&format!(
        "/move/importing?source={}",
        encode_query(m.contextual_domain)
    ));
    match post(url, m.reach, m.target.token.clone(), PostBody::None).await {
        Ok(a) if a.status == 204 => {}
        Ok(a) => {
            let why = refusal(&a);
            tracing::warn!(domain = %inst.domain, target = %m.target.url, %why, "the target refused the move");
            return Err(MoveFlowError::Refused(why));
        }
        Err(e) => {
            tracing::warn!(domain = %inst.domain, target = %m.target.url, error = %e, "cannot reach the target of a move");
            return Err(MoveFlowError::Unreachable);
        }
    }
    let store = instances.store().as_ref();
    let opts = ExportOptions {
        contextual_domain: Some(m.contextual_domain.to_owned()),
        token_source: Some(m.source_token.to_owned()),
        ignore_vault: m.ignore_vault,
        move_to: Some(m.target.clone()),
        reach_any: m.reach == Reach::Any,
        ..Default::default()
    };
    let pushed = async {
        let target_url = m.target.url.clone();
        update_settings(store, inst, |doc| {
            doc.insert(MOVING_TO.into(), Value::String(target_url.clone()));
            true
        })
        .await?;
        let req = opts
            .job(true)
            .map_err(|e| MoveFlowError::Invalid(format!("cannot encode the export: {e}")))?;
        let job = jobs.push(inst, req).await?;
        Ok::<_, MoveFlowError>(job.id)
    }
    .await;
    match pushed {
        Ok(id) => {
            tracing::info!(domain = %inst.domain, target = %m.target.url, job = %id, "move started");
            Ok(id)
        }
        Err(e) => {
            // The target is blocked for us: give it back.
            abort_target(m.target, m.reach).await;
            let _ = update_settings(store, inst, |doc| doc.shift_remove(MOVING_TO).is_some()).await;
            Err(e)
        }
    }
}

/// `POST <target>/move/abort`: the target unblocks itself. Failures are logged.
pub async fn abort_target(target: &MoveTo, reach: Reach) {
    let url = target.endpoint("/move/abort");
    match post(url, reach, target.token.clone(), PostBody::None).await {
        Ok(a) if a.status == 204 => {
            tracing::info!(target = %target.url, "the target of a failed move was unblocked")
        }
        Ok(a) => {
            tracing::warn!(target = %target.url, status = a.status, "the target refused to abort the move")
        }
        Err(e) => {
            tracing::warn!(target = %target.url, error = %e, "cannot abort the move on the target")
        }
    }
}

/// `POST <target>/move/imports` at the end of a move's export (spec move 3.6 step 8):
/// 200, 204 and 303 (followed: 200) are success.
pub async fn notify_target(
    target: &MoveTo,
    reach: Reach,
    settings_link: &str,
    vault: bool,
    source_url: &str,
    source_token: &str,
) -> Result<(), String> {
    let body = serde_json::json!({"data": {"attributes": {
        "url": settings_link,
        "vault": vault,
        "move_from": {"url": source_url, "token": source_token},
    }}});
    let url = target.endpoint("/move/imports");
    match post(url, reach, target.token.clone(), PostBody::Json(body)).await {
        Ok(a) if matches!(a.status, 200 | 204 | 303) => Ok(()),
        Ok(a) => Err(format!("the target refused the import: {}", refusal(&a))),
        Err(e) => Err(format!("cannot reach the target: {e}")),
    }
}

/// Finalize, on the source (called by the target after its import): konnector
/// triggers removed, `moved_to` (from `moving_to`) and `moved_to_subdomain_type`
/// set, the instance marked moved with its deletion date, a `MOVING` block lifted.
pub async fn finalize(
    jobs: &Jobs,
    instances: &Instances,
    inst: &Instance,
    subdomain: Option<&str>,
    delete_after: Duration,
) -> Result<(), MoveFlowError> {
    let subdomain = match subdomain.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s @ ("flat" | "nested")) => Some(s.to_owned()),
        Some(_) => {
            return Err(MoveFlowError::Invalid(
                "subdomain must be flat or nested".into(),
            ));
        }
    };
    let triggers = jobs
        .list_triggers(inst, &["konnector".to_owned()], &[])
        .await?;
    for t in triggers {
        match jobs.delete_trigger(inst, &t.id).await {
            Ok(()) | Err(JobsError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let store = instances.store().as_ref();
    update_settings(store, inst, |doc| {
        let mut changed = false;
        match doc.shift_remove(MOVING_TO) {
            Some(to) => {
                doc.insert("moved_to".into(), to);
                changed = true;
            }
            None if !doc.contains_key("moved_to") => {
                tracing::warn!(domain = %inst.domain, "finalize of a move whose target is unknown");
            }
            None => {}
        }
        if let Some(s) = &subdomain {
            doc.insert("moved_to_subdomain_type".into(), Value::String(s.clone()));
            changed = true;
        }
        changed
    })
    .await?;
    let at = hearth_core::rfc3339(now() + delete_after.as_secs());
    instances
        .set_moved(&inst.domain, Some(at.clone()), BLOCK_MOVING)
        .await?;
    tracing::info!(domain = %inst.domain, deletion = %at, "the instance has moved");
    Ok(())
}

/// Abort, on either side: clears what a move set. On a source, `moving_to`; on a
/// target waiting for its import (blocked `MOVING`, no import running), the block,
/// `moved_from` and `importing`. An import that runs (`IMPORTING`, or the flag set)
/// is left to its job, which unblocks at its end.
pub async fn abort(instances: &Instances, inst: &Instance) -> Result<(), MoveFlowError> {
    let store = instances.store().as_ref();
    let blocked_moving = inst.blocked && inst.blocking_reason.as_deref() == Some(BLOCK_MOVING);
    let mut waiting = false;
    update_settings(store, inst, |doc| {
        let importing = doc
            .get("importing")
            .is_some_and(|v| !v.is_null() && *v != Value::Bool(false));
        waiting = blocked_moving && !importing;
        let mut changed = doc.shift_remove(MOVING_TO).is_some();
        if waiting {
            changed |= doc.shift_remove("moved_from").is_some();
            changed |= doc.shift_remove("importing").is_some();
        }
        changed
    })
    .await?;
    if waiting {
        instances.set_blocked(&inst.domain, None).await?;
        tracing::info!(domain = %inst.domain, "move aborted: the instance is unblocked");
    } else {
        tracing::info!(domain = %inst.domain, "move aborted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_ids() {
        let s = random_hex(8);
        assert!(is_secret(&s));
        assert!(!is_secret("xyz"));
        assert_ne!(request_id(&s), s);
        assert_eq!(request_id(&s).len(), 64);
        assert_eq!(encode_query("a.localhost:8080"), "a.localhost%3A8080");
    }

    #[tokio::test]
    async fn expired_records_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = hearth_store_sqlite::SqliteStore::open(
            dir.path().join("db"),
            hearth_store_sqlite::SqliteOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let global = InstanceId::global();
        // More than a page, so that paging is exercised: 1,200 expired, 3 alive.
        let mut docs = Vec::new();
        for i in 0..1203u64 {
            let expires_at = if i % 400 == 7 { now() + 300 } else { now() - 1 };
            let mut doc = JsonMap::new();
            doc.insert("_id".into(), Value::String(format!("{:064x}", i * 7919)));
            doc.insert("expires_at".into(), Value::from(expires_at));
            docs.push(doc);
        }
        store
            .bulk(&global, &dt(REQUESTS), docs, false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let removed = remove_expired(&store, REQUESTS)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(removed, 1200);
        let left = store
            .all_docs(
                &global,
                &dt(REQUESTS),
                &hearth_store::AllDocsQuery::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(left.total_rows, 3);
        // Nothing to do for a doctype that was never written.
        assert_eq!(remove_expired(&store, "io.hearth.none").await.ok(), Some(0));
    }
}
