//! The admin API as the command line sees it: one typed request per route, the typed
//! answers, and [`AdminClient`], which sends them over plain HTTP/1.1 (spec instances 5.2).
//!
//! Nothing here prints; errors come back as [`ApiError`], whose `Display` is the text
//! that follows `Error: ` on stderr.

use std::cell::OnceCell;
use std::fmt;
use std::io;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// What can go wrong talking to the admin API (or, for `set-passphrase`, the public
/// server).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing answered: refused, unknown host, timeout before any answer.
    #[error("cannot reach {service} at {url}: {reason} (is `hearth serve` running?)")]
    Unreachable {
        service: Service,
        url: String,
        reason: String,
    },
    /// 401 or 403 from the admin API without a JSON:API body: the passphrase.
    #[error("the admin API refused the passphrase ({status} {message})")]
    Refused { status: u16, message: String },
    /// An error answer: a JSON:API error object, or the status and body of any other
    /// non-2xx answer. Displays as `Title: Detail`, or the title alone.
    #[error("{}", title_detail(title, detail))]
    Server {
        status: u16,
        title: String,
        detail: String,
    },
    /// A 2xx answer the client cannot read.
    #[error("unexpected answer from {service} ({status}): {reason}")]
    BadResponse {
        service: Service,
        status: u16,
        reason: String,
    },
    /// The connection broke after it was made, or the request could not be built.
    #[error("{service} at {url}: {reason}")]
    Transport {
        service: Service,
        url: String,
        reason: String,
    },
    /// No passphrase in the environment and no terminal to ask on.
    #[error(
        "no admin passphrase: set HEARTH_ADMIN_PASSPHRASE (or COZY_ADMIN_PASSPHRASE), or run \
         the command from a terminal to be asked for it"
    )]
    NoPassphrase,
    /// The terminal prompt failed.
    #[error("cannot read the admin passphrase: {0}")]
    Prompt(io::Error),
}

fn title_detail(title: &str, detail: &str) -> String {
    if detail.is_empty() || detail.eq_ignore_ascii_case(title) {
        title.to_owned()
    } else {
        format!("{title}: {detail}")
    }
}

/// Which server a request went to, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Admin,
    Public,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Admin => "the admin API",
            Self::Public => "the server",
        })
    }
}

/// Where the admin passphrase comes from; asked for at the first request only, so a
/// command refused on the client side never prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// From the environment.
    Given(String),
    /// An interactive `Password:` prompt without echo.
    Prompt,
    /// Neither: requests fail with [`ApiError::NoPassphrase`].
    Missing,
}

/// The two base URLs, `http://host:port` without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub admin: String,
    pub public: String,
}

impl Endpoints {
    pub fn new(admin_host: &str, admin_port: u16, host: &str, port: u16) -> Self {
        Self {
            admin: base_url(admin_host, admin_port),
            public: base_url(host, port),
        }
    }
}

fn base_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// `GET /instances/<domain>/move/usage`: bytes used by files and versions, and the
/// quota (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct MoveUsage {
    pub used: u64,
    #[serde(default)]
    pub quota: Option<u64>,
}

/// The credentials of a target (`POST /instances/<domain>/move/token`). No `Debug`:
/// they are secrets and never printed.
#[derive(Clone, Deserialize)]
pub struct MoveToken {
    pub client_id: String,
    pub client_secret: String,
    pub token: String,
    #[serde(default)]
    pub used: u64,
    #[serde(default)]
    pub quota: Option<u64>,
}

/// `GET /instances/<domain>/move/status`: `idle`, `waiting` (the source exports),
/// `importing`, `done` (with the import's report) or `errored` (with its error);
/// `job_id` names the newest import.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MoveStatus {
    pub state: String,
    #[serde(default)]
    pub moved_from: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub report: Option<Value>,
}

/// The target of a move as the operator typed it, `http(s)://host[:port][/]`: the
/// URL without a trailing slash, and the domain it names (`host[:port]`), lowercase.
pub fn parse_move_target(url: &str) -> Result<(String, String), String> {
    let bad = || format!("{url:?} is not the URL of an instance (such as https://bob.example.net)");
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    crate::check_domain(&authority).map_err(|_| bad())?;
    Ok((format!("{scheme}://{authority}"), authority))
}

/// The body of the source's `POST /instances/<domain>/move`.
#[derive(Clone)]
pub struct MoveRequest {
    pub target_url: String,
    pub token: MoveToken,
    pub ignore_vault: bool,
}

impl MoveRequest {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "target_url": self.target_url,
            "target_token": self.token.token,
            "target_client_id": self.token.client_id,
            "target_client_secret": self.token.client_secret,
            "ignore_vault": self.ignore_vault,
        })
        .to_string()
    }
}

/// The HTTP client of the admin API.
pub struct AdminClient {
    agent: ureq::Agent,
    endpoints: Endpoints,
    source: PassphraseSource,
    authorization: OnceCell<String>,
}

/// Admin calls can be long (a destroy waits for every cleanup): 30 minutes, like the
/// original's client.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Answers are read whole; a listing of many instances can be large.
const BODY_LIMIT: u64 = 1 << 30;

impl AdminClient {
    pub fn new(endpoints: Endpoints, source: PassphraseSource) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            // Error statuses are answers to read, not transport failures.
            .http_status_as_error(false)
            // Loopback only: an HTTP_PROXY meant for the outside must not apply.
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("hearth-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            endpoints,
            source,
            authorization: OnceCell::new(),
        }
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// `POST /instances`: 201 with the new instance.
    pub fn create_instance(&self, req: &NewInstance) -> Result<Created, ApiError> {
        let url = self.admin_url("/instances", &req.query());
        let answer = self.send(Method::Post, &url)?;
        let doc: CreatedDocument = answer.json(201)?;
        let mut apps_not_installed = doc.data.meta.apps_not_installed.clone();
        for slug in doc.meta.apps_not_installed {
            if !apps_not_installed.contains(&slug) {
                apps_not_installed.push(slug);
            }
        }
        Ok(Created {
            instance: doc.data,
            apps_not_installed,
        })
    }

    /// `GET /instances`, following `links.next` when the server pages the answer.
    pub fn list_instances(&self) -> Result<Vec<Instance>, ApiError> {
        let mut url = self.admin_url("/instances", &[]);
        let mut all = Vec::new();
        loop {
            let page: InstanceList = self.send(Method::Get, &url)?.json(200)?;
            all.extend(page.data);
            match page.links.next {
                Some(next) if !next.is_empty() => {
                    url = format!("{}{}", self.endpoints.admin, next);
                }
                _ => return Ok(all),
            }
        }
    }

    /// `GET /instances/count`.
    pub fn count_instances(&self) -> Result<u64, ApiError> {
        let url = self.admin_url("/instances/count", &[]);
        let count: Count = self.send(Method::Get, &url)?.json(200)?;
        Ok(count.count)
    }

    /// `GET /instances/<domain>`.
    pub fn get_instance(&self, domain: &str) -> Result<Instance, ApiError> {
        let url = self.admin_url(&instance_path(domain, ""), &[]);
        let doc: InstanceDocument = self.send(Method::Get, &url)?.json(200)?;
        Ok(doc.data)
    }

    /// `PATCH /instances/<domain>` with only the parameters set in `patch`.
    pub fn modify_instance(
        &self,
        domain: &str,
        patch: &InstancePatch,
    ) -> Result<Instance, ApiError> {
        let url = self.admin_url(&instance_path(domain, ""), &patch.query());
        let doc: InstanceDocument = self.send(Method::Patch, &url)?.json(200)?;
        Ok(doc.data)
    }

    /// `DELETE /instances/<domain>`: 204 once everything is gone.
    pub fn destroy_instance(&self, domain: &str) -> Result<(), ApiError> {
        let url = self.admin_url(&instance_path(domain, ""), &[]);
        self.send(Method::Delete, &url)?.empty()
    }

    /// `DELETE /instances/<domain>/sessions`.
    pub fn clean_sessions(&self, domain: &str) -> Result<(), ApiError> {
        let url = self.admin_url(&instance_path(domain, "/sessions"), &[]);
        self.send(Method::Delete, &url)?.empty()
    }

    /// `GET /instances/<domain>/fsck`: the NDJSON lines of the problems found, each
    /// without its line end (none when all is well).
    pub fn fsck(&self, domain: &str, query: &[(&str, String)]) -> Result<Vec<String>, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/fsck"), query);
        let answer = self.send(Method::Get, &url)?;
        Ok(answer
            .text(200)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `POST /instances/token`: the token, without surrounding white space.
    pub fn issue_token(&self, req: &TokenRequest) -> Result<String, ApiError> {
        let url = self.admin_url("/instances/token", &req.query());
        let answer = self.send(Method::Post, &url)?;
        let text = answer.text(200)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(answer.bad("empty token".into()));
        }
        Ok(token.to_owned())
    }

    /// `POST /instances/oauth_client`: the registered client as the server sent it.
    pub fn create_oauth_client(&self, req: &OAuthClientRequest) -> Result<OAuthClient, ApiError> {
        let url = self.admin_url("/instances/oauth_client", &req.query());
        self.send(Method::Post, &url)?.json(200)
    }

    /// `GET /instances/oauth_client?domain=&software_id=`.
    pub fn find_oauth_client(
        &self,
        domain: &str,
        software_id: &str,
    ) -> Result<OAuthClient, ApiError> {
        let query = [
            ("domain", domain.to_owned()),
            ("software_id", software_id.to_owned()),
        ];
        let url = self.admin_url("/instances/oauth_client", &query);
        self.send(Method::Get, &url)?.json(200)
    }

    /// `POST /instances/<domain>/jobs/queue/<worker>[?wait=true]` with `arguments` (raw
    /// JSON) as the body: 202 with the job, once it is done or errored when `wait`.
    pub fn push_job(
        &self,
        domain: &str,
        worker: &str,
        arguments: &str,
        wait: bool,
    ) -> Result<Job, ApiError> {
        let path = instance_path(domain, &format!("/jobs/queue/{}", encode_component(worker)));
        let query = if wait {
            vec![("wait", "true".to_owned())]
        } else {
            Vec::new()
        };
        let url = self.admin_url(&path, &query);
        self.send_json(Method::Post, &url, Some(arguments))?
            .json(202)
    }

    /// `GET /instances/<domain>/triggers`: the trigger documents, each with its
    /// `current_state`, as the server sent them.
    pub fn list_triggers(&self, domain: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/triggers"), &[]);
        self.send(Method::Get, &url)?.json(200)
    }

    /// `POST /instances/<domain>/triggers/<id>/launch`: 201 with the job pushed.
    pub fn launch_trigger(&self, domain: &str, id: &str) -> Result<Job, ApiError> {
        let path = instance_path(
            domain,
            &format!("/triggers/{}/launch", encode_component(id)),
        );
        let url = self.admin_url(&path, &[]);
        self.send(Method::Post, &url)?.json(201)
    }

    /// `POST /instances/<domain>/apps/<slug>?Kind=&Source=`: installs, answers the
    /// installed app's document.
    pub fn install_app(
        &self,
        domain: &str,
        kind: AppKind,
        slug: &str,
        source: Option<&str>,
    ) -> Result<AppDoc, ApiError> {
        let url = self.admin_url(&app_path(domain, slug), &kind.query(source));
        self.send(Method::Post, &url)?.json_doc()
    }

    /// `PUT /instances/<domain>/apps/<slug>?Kind=[&Source=]`: updates, answers the
    /// app's document.
    pub fn update_app(
        &self,
        domain: &str,
        kind: AppKind,
        slug: &str,
        source: Option<&str>,
    ) -> Result<AppDoc, ApiError> {
        let url = self.admin_url(&app_path(domain, slug), &kind.query(source));
        self.send(Method::Put, &url)?.json_doc()
    }

    /// `DELETE /instances/<domain>/apps/<slug>?Kind=`: the removed app's document,
    /// when the server sends one.
    pub fn uninstall_app(
        &self,
        domain: &str,
        kind: AppKind,
        slug: &str,
    ) -> Result<Option<AppDoc>, ApiError> {
        let url = self.admin_url(&app_path(domain, slug), &kind.query(None));
        let answer = self.send(Method::Delete, &url)?;
        if answer.body.trim().is_empty() {
            return Ok(None);
        }
        answer.json_doc().map(Some)
    }

    /// `GET /instances/<domain>/apps/<slug>?Kind=`.
    pub fn get_app(&self, domain: &str, kind: AppKind, slug: &str) -> Result<AppDoc, ApiError> {
        let url = self.admin_url(&app_path(domain, slug), &kind.query(None));
        self.send(Method::Get, &url)?.json_doc()
    }

    /// `GET /instances/<domain>/apps?Kind=`: the installed apps' documents.
    pub fn list_apps(&self, domain: &str, kind: AppKind) -> Result<Vec<AppDoc>, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/apps"), &kind.query(None));
        let answer = self.send(Method::Get, &url)?;
        let value: Value = answer.json(200)?;
        let items = match value {
            Value::Array(items) => items,
            // A JSON:API list: `{"data": [...]}`.
            Value::Object(mut m) => match m.remove("data") {
                Some(Value::Array(items)) => items,
                _ => return Err(answer.bad("expected a list of apps".into())),
            },
            _ => return Err(answer.bad("expected a list of apps".into())),
        };
        items
            .into_iter()
            .map(|item| {
                AppDoc::from_value(item).ok_or_else(|| answer.bad("an app is not an object".into()))
            })
            .collect()
    }

    /// `POST /instances/<domain>/checks/<name>` (`triggers`, `shared`): the problems
    /// found, none when all is well.
    pub fn check(&self, domain: &str, name: &str) -> Result<Vec<Value>, ApiError> {
        let path = instance_path(domain, &format!("/checks/{}", encode_component(name)));
        let url = self.admin_url(&path, &[]);
        self.send(Method::Post, &url)?.json(200)
    }

    /// `GET /instances/<domain>/raw/<doctype>/_all_docs?include_docs=true`: every
    /// document of the doctype, in id order.
    pub fn raw_all_docs(&self, domain: &str, doctype: &str) -> Result<Vec<Value>, ApiError> {
        let url = self.admin_url(
            &raw_path(domain, doctype, "_all_docs"),
            &[("include_docs", "true".to_owned())],
        );
        let answer = self.send(Method::Get, &url)?;
        let listing: Value = answer.json(200)?;
        let rows = listing
            .get("rows")
            .and_then(Value::as_array)
            .ok_or_else(|| answer.bad("no rows in the answer".into()))?;
        Ok(rows.iter().filter_map(|r| r.get("doc").cloned()).collect())
    }

    /// `GET /instances/<domain>/raw/<doctype>/<id>`.
    pub fn raw_get(&self, domain: &str, doctype: &str, id: &str) -> Result<Value, ApiError> {
        let url = self.admin_url(&raw_path(domain, doctype, id), &[]);
        self.send(Method::Get, &url)?.json(200)
    }

    /// `PUT /instances/<domain>/raw/<doctype>/<id>` with the document: `{ok, id, rev}`.
    pub fn raw_put(
        &self,
        domain: &str,
        doctype: &str,
        id: &str,
        doc: &str,
    ) -> Result<Value, ApiError> {
        let url = self.admin_url(&raw_path(domain, doctype, id), &[]);
        self.send_json(Method::Put, &url, Some(doc))?.json(200)
    }

    /// `DELETE /instances/<domain>/raw/<doctype>/<id>?rev=`: `{ok, id, rev}`.
    pub fn raw_delete(
        &self,
        domain: &str,
        doctype: &str,
        id: &str,
        rev: &str,
    ) -> Result<Value, ApiError> {
        let url = self.admin_url(&raw_path(domain, doctype, id), &[("rev", rev.to_owned())]);
        self.send(Method::Delete, &url)?.json(200)
    }

    /// `POST /instances/<domain>/raw/<doctype>/_find` with a Mango query: the documents.
    pub fn raw_find(
        &self,
        domain: &str,
        doctype: &str,
        query: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let url = self.admin_url(&raw_path(domain, doctype, "_find"), &[]);
        let answer = self.send_json(Method::Post, &url, Some(query))?;
        let found: Value = answer.json(200)?;
        found
            .get("docs")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| answer.bad("no docs in the answer".into()))
    }

    /// `PUT /settings/passphrase` on the public server, as the instance `domain`, with a
    /// `cli` token carrying the `io.cozy.settings` scope: 204 when changed.
    pub fn set_passphrase(
        &self,
        domain: &str,
        token: &str,
        passphrase: &str,
    ) -> Result<(), ApiError> {
        let url = format!("{}/settings/passphrase", self.endpoints.public);
        let body = serde_json::json!({ "new_passphrase": passphrase, "force": true }).to_string();
        let request = Request {
            method: Method::Put,
            url: &url,
            service: Service::Public,
            host: Some(domain),
            authorization: format!("Bearer {token}"),
            json_body: Some(&body),
        };
        self.execute(&request)?.empty()
    }

    /// `POST /instances/<domain>/export?admin-req=&wait=`: 202 with the job (ended
    /// when `wait`).
    pub fn start_export(&self, domain: &str, admin_req: bool, wait: bool) -> Result<Job, ApiError> {
        let query = [
            ("admin-req", admin_req.to_string()),
            ("wait", wait.to_string()),
        ];
        let url = self.admin_url(&instance_path(domain, "/export"), &query);
        self.send(Method::Post, &url)?.json(202)
    }

    /// `POST /instances/<domain>/import?manifest_url=&wait=true`: the import's
    /// record (`state`, `report`, `error`) once it has ended.
    pub fn import(&self, domain: &str, manifest_url: &str) -> Result<Map<String, Value>, ApiError> {
        let query = [
            ("manifest_url", manifest_url.to_owned()),
            ("wait", "true".to_owned()),
        ];
        let url = self.admin_url(&instance_path(domain, "/import"), &query);
        self.send(Method::Post, &url)?.json(200)
    }

    /// `GET /instances/<domain>/move/usage`: the bytes of the instance's files and
    /// versions, and its quota.
    pub fn move_usage(&self, domain: &str) -> Result<MoveUsage, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/move/usage"), &[]);
        self.send(Method::Get, &url)?.json(200)
    }

    /// `POST /instances/<domain>/move/token` (target): a new OAuth client of the
    /// instance and an access token with the move scope.
    pub fn move_token(&self, domain: &str) -> Result<MoveToken, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/move/token"), &[]);
        self.send(Method::Post, &url)?.json(200)
    }

    /// `GET /instances/<domain>/move/status` (target): where the move is.
    pub fn move_status(&self, domain: &str) -> Result<MoveStatus, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/move/status"), &[]);
        self.send(Method::Get, &url)?.json(200)
    }

    /// `POST /instances/<domain>/move` (source): blocks the target and starts the
    /// export; answers the export job's id.
    pub fn start_move(&self, domain: &str, req: &MoveRequest) -> Result<String, ApiError> {
        #[derive(Deserialize)]
        struct Started {
            job_id: String,
        }
        let url = self.admin_url(&instance_path(domain, "/move"), &[]);
        let body = req.to_json();
        let started: Started = self.send_json(Method::Post, &url, Some(&body))?.json(202)?;
        Ok(started.job_id)
    }

    /// A client of another server's admin API with the same passphrase (already
    /// asked for, if it was asked: the operator types it once).
    pub fn sibling(&self, endpoints: Endpoints) -> AdminClient {
        let client = AdminClient::new(endpoints, self.source.clone());
        if let Some(value) = self.authorization.get() {
            let _ = client.authorization.set(value.clone());
        }
        client
    }

    /// `GET /instances/<domain>/exports`: the export documents, newest first.
    pub fn list_exports(&self, domain: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
        let url = self.admin_url(&instance_path(domain, "/exports"), &[]);
        self.send(Method::Get, &url)?.json(200)
    }

    /// `GET /instances/<domain>/exports/<id>/data[?cursor=]`: the part streamed into
    /// `dest`, `progress` told the bytes received so far; answers the total.
    pub fn download_export_part(
        &self,
        domain: &str,
        id: &str,
        cursor: Option<&str>,
        dest: &mut dyn io::Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ApiError> {
        let query: Vec<(&str, String)> = cursor
            .map(|c| vec![("cursor", c.to_owned())])
            .unwrap_or_default();
        let path = instance_path(domain, &format!("/exports/{}/data", encode_component(id)));
        let url = self.admin_url(&path, &query);
        let base = self.endpoints.admin.clone();
        let sent = self
            .agent
            .get(&url)
            .header("Authorization", self.authorization()?)
            .call();
        let mut response = sent.map_err(|e| transport_error(e, Service::Admin, &base))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            return Err(error_from_answer(Service::Admin, status, &body));
        }
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let broken = |reason: String| ApiError::Transport {
            service: Service::Admin,
            url: url.clone(),
            reason,
        };
        loop {
            let n = io::Read::read(&mut reader, &mut buf).map_err(|e| broken(e.to_string()))?;
            if n == 0 {
                break;
            }
            dest.write_all(&buf[..n])
                .map_err(|e| broken(format!("cannot write the part: {e}")))?;
            total += n as u64;
            progress(total);
        }
        Ok(total)
    }

    fn admin_url(&self, path: &str, query: &[(&str, String)]) -> String {
        format!("{}{}{}", self.endpoints.admin, path, query_string(query))
    }

    fn send(&self, method: Method, url: &str) -> Result<Answer, ApiError> {
        self.send_json(method, url, None)
    }

    /// An admin request, with a JSON body when there is one.
    fn send_json(
        &self,
        method: Method,
        url: &str,
        json_body: Option<&str>,
    ) -> Result<Answer, ApiError> {
        let request = Request {
            method,
            url,
            service: Service::Admin,
            host: None,
            authorization: self.authorization()?.to_owned(),
            json_body,
        };
        self.execute(&request)
    }

    /// `Basic base64(":" + passphrase)`: the user name is empty.
    fn authorization(&self) -> Result<&str, ApiError> {
        if let Some(value) = self.authorization.get() {
            return Ok(value);
        }
        let passphrase = match &self.source {
            PassphraseSource::Given(p) => p.clone(),
            PassphraseSource::Prompt => {
                rpassword::prompt_password("Password: ").map_err(ApiError::Prompt)?
            }
            PassphraseSource::Missing => return Err(ApiError::NoPassphrase),
        };
        let value = basic_authorization(&passphrase);
        Ok(self.authorization.get_or_init(|| value))
    }

    fn execute(&self, req: &Request<'_>) -> Result<Answer, ApiError> {
        let sent = match req.method {
            Method::Get => with_headers(self.agent.get(req.url), req).call(),
            Method::Delete => with_headers(self.agent.delete(req.url), req).call(),
            Method::Post => send_with_body(with_headers(self.agent.post(req.url), req), req),
            Method::Patch => send_with_body(with_headers(self.agent.patch(req.url), req), req),
            Method::Put => send_with_body(with_headers(self.agent.put(req.url), req), req),
        };
        let base = match req.service {
            Service::Admin => &self.endpoints.admin,
            Service::Public => &self.endpoints.public,
        };
        let mut response = sent.map_err(|e| transport_error(e, req.service, base))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(|e| transport_error(e, req.service, base))?;
        let answer = Answer {
            service: req.service,
            status,
            body,
        };
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(answer.into_error())
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

struct Request<'a> {
    method: Method,
    url: &'a str,
    service: Service,
    /// A `Host` header other than the URL's: the instance on the public server.
    host: Option<&'a str>,
    authorization: String,
    json_body: Option<&'a str>,
}

fn with_headers<B>(builder: ureq::RequestBuilder<B>, req: &Request<'_>) -> ureq::RequestBuilder<B> {
    let builder = builder.header("Authorization", &req.authorization).header(
        "Accept",
        "application/vnd.api+json, application/json, text/plain",
    );
    match req.host {
        Some(host) => builder.header("Host", host),
        None => builder,
    }
}

fn send_with_body(
    builder: ureq::RequestBuilder<ureq::typestate::WithBody>,
    req: &Request<'_>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    match req.json_body {
        Some(body) => builder
            .header("Content-Type", "application/json")
            .send(body),
        None => builder.send_empty(),
    }
}

/// An answer read whole: its status and body.
#[derive(Debug)]
struct Answer {
    service: Service,
    status: u16,
    body: String,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self, expected: u16) -> Result<T, ApiError> {
        self.expect(expected)?;
        serde_json::from_str(&self.body).map_err(|e| self.bad(format!("invalid JSON: {e}")))
    }

    /// An app's document from any 2xx answer (the install answers 201 or 202).
    fn json_doc(&self) -> Result<AppDoc, ApiError> {
        let value: Value =
            serde_json::from_str(&self.body).map_err(|e| self.bad(format!("invalid JSON: {e}")))?;
        AppDoc::from_value(value).ok_or_else(|| self.bad("expected an app document".into()))
    }

    fn text(&self, expected: u16) -> Result<&str, ApiError> {
        self.expect(expected)?;
        Ok(&self.body)
    }

    fn empty(&self) -> Result<(), ApiError> {
        // 204 is the contract; any 2xx means done.
        Ok(())
    }

    fn expect(&self, expected: u16) -> Result<(), ApiError> {
        // Any 2xx is accepted, but a body is only read from the documented status or 200.
        if self.status == expected || self.status == 200 {
            Ok(())
        } else {
            Err(self.bad(format!("expected status {expected}")))
        }
    }

    fn bad(&self, reason: String) -> ApiError {
        ApiError::BadResponse {
            service: self.service,
            status: self.status,
            reason,
        }
    }

    fn into_error(self) -> ApiError {
        error_from_answer(self.service, self.status, &self.body)
    }
}

/// The error for a non-2xx answer: the first JSON:API error object when there is one;
/// for 401/403 from the admin API, the passphrase; else the status and what the body
/// says (`{"error": "…"}` or plain text; HTML is left out).
pub fn error_from_answer(service: Service, status: u16, body: &str) -> ApiError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if let Some(first) = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        let field = |name: &str| {
            first
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let title = match field("title") {
            t if t.is_empty() => status_text(status),
            t => t,
        };
        return ApiError::Server {
            status,
            title,
            detail: field("detail"),
        };
    }
    let message = match &parsed {
        Some(Value::Object(map)) => match map.get("error") {
            // CouchDB-style errors (raw documents): the reason says more than the name.
            Some(Value::String(s)) => match map.get("reason") {
                Some(Value::String(reason)) if !reason.is_empty() => reason.clone(),
                _ => s.clone(),
            },
            Some(other) => other.to_string(),
            None => body.trim().to_owned(),
        },
        Some(Value::String(s)) => s.clone(),
        _ if body.trim_start().starts_with('<') => String::new(),
        _ => body.trim().chars().take(500).collect(),
    };
    if service == Service::Admin && (status == 401 || status == 403) {
        let message = if message.is_empty() {
            status_text(status).to_lowercase()
        } else {
            message
        };
        return ApiError::Refused { status, message };
    }
    ApiError::Server {
        status,
        title: status_text(status),
        detail: message,
    }
}

fn status_text(status: u16) -> String {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"))
}

fn transport_error(err: ureq::Error, service: Service, base: &str) -> ApiError {
    let unreachable = |reason: &str| ApiError::Unreachable {
        service,
        url: base.to_owned(),
        reason: reason.to_owned(),
    };
    match err {
        ureq::Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => unreachable("connection refused"),
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                unreachable("unreachable")
            }
            io::ErrorKind::AddrNotAvailable => unreachable("address not available"),
            _ => ApiError::Transport {
                service,
                url: base.to_owned(),
                reason: e.to_string(),
            },
        },
        ureq::Error::HostNotFound => unreachable("host not found"),
        ureq::Error::ConnectionFailed => unreachable("connection failed"),
        ureq::Error::Timeout(t) => ApiError::Transport {
            service,
            url: base.to_owned(),
            reason: format!("timed out ({t})"),
        },
        other => ApiError::Transport {
            service,
            url: base.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// The `Authorization` value for a passphrase: Basic with an empty user name.
pub fn basic_authorization(passphrase: &str) -> String {
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(":{passphrase}"));
    format!("Basic {credentials}")
}

/// `/instances/<domain><suffix>`, the domain percent-encoded as one path segment.
pub fn instance_path(domain: &str, suffix: &str) -> String {
    format!("/instances/{}{suffix}", encode_component(domain))
}

/// `/instances/<domain>/apps/<slug>`, both percent-encoded.
pub fn app_path(domain: &str, slug: &str) -> String {
    instance_path(domain, &format!("/apps/{}", encode_component(slug)))
}

/// `/instances/<domain>/raw/<doctype>/<rest>`, each part percent-encoded.
pub fn raw_path(domain: &str, doctype: &str, rest: &str) -> String {
    instance_path(
        domain,
        &format!(
            "/raw/{}/{}",
            encode_component(doctype),
            encode_component(rest)
        ),
    )
}

/// `?k=v&…` (empty for no parameters), keys and values percent-encoded.
pub fn query_string(params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    format!("?{}", pairs.join("&"))
}

/// Percent-encodes everything but the unreserved characters of RFC 3986, so `+`, `,`,
/// `&`, `/` and spaces reach the server as they were typed.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// `POST /instances` parameters. Only what is set is sent, except `Domain` and `Locale`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewInstance {
    pub domain: String,
    pub locale: String,
    pub domain_aliases: Vec<String>,
    pub old_domain: Option<String>,
    pub uuid: Option<String>,
    pub oidc_id: Option<String>,
    pub franceconnect_id: Option<String>,
    pub tos_signed: Option<String>,
    pub timezone: Option<String>,
    pub context_name: Option<String>,
    pub email: Option<String>,
    pub public_name: Option<String>,
    pub phone: Option<String>,
    pub settings: Option<String>,
    pub passphrase: Option<String>,
    /// Bytes; `None` is unlimited.
    pub disk_quota: Option<u64>,
    pub apps: Vec<String>,
    pub sponsorships: Vec<String>,
    pub magic_link: Option<bool>,
    pub swift_layout: Option<i64>,
    pub couch_cluster: Option<i64>,
    pub trace: bool,
    /// PBKDF2 iterations browsers hash the password with (`KdfIterations`).
    pub kdf_iterations: Option<u32>,
}

impl NewInstance {
    /// The query parameters, in a fixed order. `sponsorships` is sent under both
    /// spellings: the original's create handler reads the lowercase one.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("Domain", self.domain.clone()),
            ("Locale", self.locale.clone()),
        ];
        let text = [
            ("OldDomain", &self.old_domain),
            ("UUID", &self.uuid),
            ("OIDCID", &self.oidc_id),
            ("FranceConnectID", &self.franceconnect_id),
            ("TOSSigned", &self.tos_signed),
            ("Timezone", &self.timezone),
            ("ContextName", &self.context_name),
            ("Email", &self.email),
            ("PublicName", &self.public_name),
            ("Phone", &self.phone),
            ("Settings", &self.settings),
            ("Passphrase", &self.passphrase),
        ];
        for (key, value) in text {
            if let Some(v) = value {
                q.push((key, v.clone()));
            }
        }
        if !self.domain_aliases.is_empty() {
            q.push(("DomainAliases", self.domain_aliases.join(",")));
        }
        if let Some(bytes) = self.disk_quota.filter(|b| *b > 0) {
            q.push(("DiskQuota", bytes.to_string()));
        }
        if !self.apps.is_empty() {
            q.push(("Apps", self.apps.join(",")));
        }
        if !self.sponsorships.is_empty() {
            let list = self.sponsorships.join(",");
            q.push(("sponsorships", list.clone()));
            q.push(("Sponsorships", list));
        }
        if let Some(v) = self.magic_link {
            q.push(("MagicLink", v.to_string()));
        }
        if let Some(v) = self.swift_layout {
            q.push(("SwiftLayout", v.to_string()));
        }
        if let Some(v) = self.couch_cluster {
            q.push(("CouchCluster", v.to_string()));
        }
        if self.trace {
            q.push(("Trace", "true".into()));
        }
        if let Some(n) = self.kdf_iterations.filter(|n| *n > 0) {
            q.push(("KdfIterations", n.to_string()));
        }
        q
    }
}

/// `PATCH /instances/<domain>` parameters: `None` is "not given, not sent".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstancePatch {
    pub locale: Option<String>,
    pub blocked: Option<bool>,
    pub blocking_reason: Option<String>,
    pub deleting: Option<bool>,
    pub domain_aliases: Option<String>,
    /// Bytes; `-1` removes the quota.
    pub disk_quota: Option<i64>,
    pub old_domain: Option<String>,
    pub uuid: Option<String>,
    pub oidc_id: Option<String>,
    pub franceconnect_id: Option<String>,
    pub context_name: Option<String>,
    pub email: Option<String>,
    pub public_name: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub settings: Option<String>,
    pub tos_signed: Option<String>,
    pub tos_latest: Option<String>,
    pub onboarding_finished: Option<bool>,
    pub magic_link: Option<bool>,
    pub sponsorships: Option<String>,
}

impl InstancePatch {
    /// The query parameters of the fields that are set, in a fixed order.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let mut text = |key: &'static str, value: &Option<String>| {
            if let Some(v) = value {
                q.push((key, v.clone()));
            }
        };
        text("Locale", &self.locale);
        text("BlockingReason", &self.blocking_reason);
        text("DomainAliases", &self.domain_aliases);
        text("OldDomain", &self.old_domain);
        text("UUID", &self.uuid);
        text("OIDCID", &self.oidc_id);
        text("FranceConnectID", &self.franceconnect_id);
        text("ContextName", &self.context_name);
        text("Email", &self.email);
        text("PublicName", &self.public_name);
        text("Phone", &self.phone);
        text("Timezone", &self.timezone);
        text("Settings", &self.settings);
        text("TOSSigned", &self.tos_signed);
        text("TOSLatest", &self.tos_latest);
        text("Sponsorships", &self.sponsorships);
        let flags = [
            ("Blocked", self.blocked),
            ("Deleting", self.deleting),
            ("OnboardingFinished", self.onboarding_finished),
            ("MagicLink", self.magic_link),
        ];
        for (key, value) in flags {
            if let Some(v) = value {
                q.push((key, v.to_string()));
            }
        }
        if let Some(bytes) = self.disk_quota {
            q.push(("DiskQuota", bytes.to_string()));
        }
        q
    }

    /// Whether anything other than `Deleting` is set (the server ignores the rest when
    /// `Deleting` is sent).
    pub fn has_more_than_deleting(&self) -> bool {
        let without = Self {
            deleting: None,
            ..self.clone()
        };
        without != Self::default()
    }
}

/// The `Audience` of `POST /instances/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Cli,
    App,
    Konnector,
    Access,
    Refresh,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::App => "app",
            Self::Konnector => "konn",
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

/// `POST /instances/token` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub domain: String,
    pub audience: Audience,
    /// Sent space-separated.
    pub scopes: Vec<String>,
    pub subject: Option<String>,
    /// A duration as the server parses it (`30m`, `2h`); `None` is the default.
    pub expire: Option<String>,
}

impl TokenRequest {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("Domain", self.domain.clone()),
            ("Audience", self.audience.as_str().to_owned()),
        ];
        if !self.scopes.is_empty() {
            q.push(("Scope", self.scopes.join(" ")));
        }
        if let Some(s) = &self.subject {
            q.push(("Subject", s.clone()));
        }
        if let Some(e) = &self.expire {
            q.push(("Expire", e.clone()));
        }
        q
    }
}

/// `POST /instances/oauth_client` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthClientRequest {
    pub domain: String,
    pub redirect_uri: String,
    pub client_name: String,
    pub software_id: String,
    pub allow_login_scope: bool,
    /// Accepted for compatibility; the server ignores them.
    pub onboarding_app: Option<String>,
    pub onboarding_permissions: Option<String>,
    pub onboarding_secret: Option<String>,
    pub onboarding_state: Option<String>,
}

impl OAuthClientRequest {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("Domain", self.domain.clone()),
            ("RedirectURI", self.redirect_uri.clone()),
            ("ClientName", self.client_name.clone()),
            ("SoftwareID", self.software_id.clone()),
            ("AllowLoginScope", self.allow_login_scope.to_string()),
        ];
        let optional = [
            ("OnboardingApp", &self.onboarding_app),
            ("OnboardingPermissions", &self.onboarding_permissions),
            ("OnboardingSecret", &self.onboarding_secret),
            ("OnboardingState", &self.onboarding_state),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                q.push((key, v.clone()));
            }
        }
        q
    }
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

/// One JSON:API instance object (`type: "instances"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Instance {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: ObjectMeta,
    pub attributes: InstanceAttributes,
}

/// `meta` of an instance object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ObjectMeta {
    #[serde(deserialize_with = "nullable")]
    pub rev: String,
    /// Hearth extension on `POST /instances` with `Apps`.
    #[serde(deserialize_with = "nullable")]
    pub apps_not_installed: Vec<String>,
}

/// The instance fields the admin API sends (spec instances 1.2, secrets stripped).
/// Missing and `null` values read as empty; the empty value means "not set".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct InstanceAttributes {
    #[serde(deserialize_with = "nullable")]
    pub domain: String,
    #[serde(deserialize_with = "nullable")]
    pub domain_aliases: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub old_domain: String,
    #[serde(deserialize_with = "nullable")]
    pub prefix: String,
    #[serde(deserialize_with = "nullable")]
    pub locale: String,
    #[serde(deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(deserialize_with = "nullable")]
    pub oidc_id: String,
    #[serde(deserialize_with = "nullable")]
    pub context: String,
    #[serde(deserialize_with = "nullable")]
    pub sponsorships: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub feature_sets: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub tos: String,
    #[serde(deserialize_with = "nullable")]
    pub tos_latest: String,
    #[serde(deserialize_with = "nullable")]
    pub auth_mode: i64,
    #[serde(deserialize_with = "nullable")]
    pub no_auto_update: bool,
    #[serde(deserialize_with = "nullable")]
    pub blocked: bool,
    #[serde(deserialize_with = "nullable")]
    pub blocking_reason: String,
    #[serde(deserialize_with = "nullable")]
    pub deleting: bool,
    /// Hearth extension: when a requested deletion will run.
    pub deletion_scheduled_at: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub onboarding_finished: bool,
    /// `None` is the JSON `null` of legacy instances.
    pub password_defined: Option<bool>,
    #[serde(deserialize_with = "nullable")]
    pub magic_link: bool,
    /// Bytes, sent as a JSON string; 0 is unlimited.
    #[serde(deserialize_with = "quota")]
    pub disk_quota: u64,
    #[serde(deserialize_with = "nullable")]
    pub indexes_version: i64,
    #[serde(deserialize_with = "nullable")]
    pub couch_cluster: i64,
    #[serde(deserialize_with = "nullable")]
    pub swift_cluster: i64,
    /// Standard base64 of 16 bytes, until the password is registered.
    pub register_token: Option<String>,
    pub passphrase_reset_token: Option<String>,
    pub passphrase_reset_time: Option<String>,
}

impl InstanceAttributes {
    /// The register token as hex (what the onboarding URL carries), if there is one.
    pub fn register_token_hex(&self) -> Option<String> {
        let token = self.register_token.as_deref().filter(|t| !t.is_empty())?;
        match base64::engine::general_purpose::STANDARD.decode(token) {
            Ok(bytes) => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            // Not base64: shown as sent rather than hidden.
            Err(_) => Some(token.to_owned()),
        }
    }

    /// The effective database prefix, escaped like a database name: the prefix, or the
    /// domain for legacy instances without one; `.` and `:` become `-`, lowercase.
    pub fn db_prefix(&self) -> String {
        let raw = if self.prefix.is_empty() {
            &self.domain
        } else {
            &self.prefix
        };
        raw.replace(['.', ':'], "-").to_lowercase()
    }
}

/// The answer to `POST /instances`.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub instance: Instance,
    /// Slugs of the `--apps` the server could not install.
    pub apps_not_installed: Vec<String>,
}

/// An `io.cozy.jobs` document as the admin API sent it (`_id`, `domain`, `worker`,
/// `message`, `state`, `queued_at`, `started_at`, `finished_at`, `error`…), its fields
/// kept in their order for printing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Job(pub Map<String, Value>);

impl Job {
    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// `_id`, empty if missing.
    pub fn id(&self) -> &str {
        self.text("_id").unwrap_or_default()
    }

    /// `queued`, `running`, `done` or `errored`; empty if missing.
    pub fn state(&self) -> &str {
        self.text("state").unwrap_or_default()
    }

    /// Why the job errored, when it did and the server said.
    pub fn error(&self) -> Option<&str> {
        self.text("error").filter(|e| !e.is_empty())
    }
}

/// A web app or a konnector: the `Kind` of the apps routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Webapp,
    Konnector,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webapp => "webapp",
            Self::Konnector => "konnector",
        }
    }

    /// `Kind=<kind>`, then `Source=<source>` when given.
    fn query(self, source: Option<&str>) -> Vec<(&'static str, String)> {
        let mut q = vec![("Kind", self.as_str().to_owned())];
        if let Some(source) = source {
            q.push(("Source", source.to_owned()));
        }
        q
    }
}

/// An installed app's (or konnector's) document as the admin API sent it: the
/// manifest plus `slug`, `source`, `version`, `state`…, its fields kept in their order.
/// A JSON:API resource (`{"data": {"attributes": …}}` or `{"attributes": …}`) is read
/// as its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct AppDoc(pub Map<String, Value>);

impl AppDoc {
    pub fn from_value(value: Value) -> Option<Self> {
        let Value::Object(mut m) = value else {
            return None;
        };
        if let Some(Value::Object(_)) = m.get("data") {
            let Some(Value::Object(data)) = m.remove("data") else {
                return None;
            };
            return Self::from_value(Value::Object(data));
        }
        if let Some(Value::Object(_)) = m.get("attributes") {
            let Some(Value::Object(attributes)) = m.remove("attributes") else {
                return None;
            };
            return Some(Self(attributes));
        }
        Some(Self(m))
    }

    /// A text field, empty when missing.
    pub fn text(&self, name: &str) -> &str {
        self.0.get(name).and_then(Value::as_str).unwrap_or_default()
    }

    /// The slug: `slug`, else the end of `_id` (`io.cozy.apps/<slug>`).
    pub fn slug(&self) -> &str {
        match self.text("slug") {
            "" => self.text("_id").rsplit('/').next().unwrap_or_default(),
            slug => slug,
        }
    }
}

/// An OAuth client as the server sent it (`client_id`, `client_secret`, …).
pub type OAuthClient = Map<String, Value>;

#[derive(Deserialize)]
struct InstanceDocument {
    data: Instance,
}

#[derive(Deserialize)]
struct CreatedDocument {
    data: Instance,
    #[serde(default, deserialize_with = "nullable")]
    meta: ObjectMeta,
}

#[derive(Deserialize)]
struct InstanceList {
    #[serde(default, deserialize_with = "nullable")]
    data: Vec<Instance>,
    #[serde(default, deserialize_with = "nullable")]
    links: ListLinks,
}

#[derive(Default, Deserialize)]
struct ListLinks {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

/// `null` reads as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A quota sent as a string (the contract) or a number; negatives and `null` are 0.
fn quota<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|_| D::Error::custom(format!("disk_quota: not a number: {s:?}"))),
        Some(Value::Number(n)) => Ok(n.as_u64().unwrap_or(0)),
        Some(other) => Err(D::Error::custom(format!("disk_quota: unexpected {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_title_and_detail() {
        let body = r#"{"errors":[{"status":"409","title":"Conflict","detail":"Instance already exists","source":{}}]}"#;
        let err = error_from_answer(Service::Admin, 409, body);
        assert_eq!(err.to_string(), "Conflict: Instance already exists");

        let body = r#"{"errors":[{"status":"404","title":"Not Found"}]}"#;
        assert_eq!(
            error_from_answer(Service::Admin, 404, body).to_string(),
            "Not Found"
        );
    }

    #[test]
    fn refused_passphrase() {
        let err = error_from_answer(Service::Admin, 403, r#"{"error":"bad passphrase"}"#);
        assert_eq!(
            err.to_string(),
            "the admin API refused the passphrase (403 bad passphrase)"
        );
        let err = error_from_answer(Service::Admin, 401, "missing basic auth\n");
        assert_eq!(
            err.to_string(),
            "the admin API refused the passphrase (401 missing basic auth)"
        );
        let err = error_from_answer(Service::Admin, 401, "");
        assert_eq!(
            err.to_string(),
            "the admin API refused the passphrase (401 unauthorized)"
        );
        // The public server's 403 is an ordinary error.
        let err = error_from_answer(Service::Public, 403, r#"{"error":"nope"}"#);
        assert_eq!(err.to_string(), "Forbidden: nope");
    }

    #[test]
    fn other_error_bodies() {
        let err = error_from_answer(Service::Admin, 400, "invalid redirect_uri\n");
        assert_eq!(err.to_string(), "Bad Request: invalid redirect_uri");
        let err = error_from_answer(Service::Admin, 502, "<html><body>oops</body></html>");
        assert_eq!(err.to_string(), "Bad Gateway");
        let err = error_from_answer(Service::Admin, 500, "");
        assert_eq!(err.to_string(), "Internal Server Error");
        let err = error_from_answer(Service::Public, 404, "Not Found");
        assert_eq!(err.to_string(), "Not Found");
    }

    #[test]
    fn unreachable_message() {
        let err = ApiError::Unreachable {
            service: Service::Admin,
            url: Endpoints::new("localhost", 6060, "localhost", 8080).admin,
            reason: "connection refused".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot reach the admin API at http://localhost:6060: connection refused (is `hearth serve` running?)"
        );
        assert_eq!(
            Endpoints::new("::1", 6060, "127.0.0.1", 80).admin,
            "http://[::1]:6060"
        );
    }

    #[test]
    fn basic_auth_has_an_empty_user() {
        // base64(":secret")
        assert_eq!(basic_authorization("secret"), "Basic OnNlY3JldA==");
    }

    #[test]
    fn encoding() {
        assert_eq!(
            query_string(&[
                ("Scope", "io.cozy.files io.cozy.apps".into()),
                ("P", "a+b&c=d,é".into())
            ]),
            "?Scope=io.cozy.files%20io.cozy.apps&P=a%2Bb%26c%3Dd%2C%C3%A9"
        );
        assert_eq!(query_string(&[]), "");
        assert_eq!(
            instance_path("alice.localhost:8080", "/sessions"),
            "/instances/alice.localhost%3A8080/sessions"
        );
    }

    #[test]
    fn new_instance_sends_tos_and_both_sponsorships() {
        let req = NewInstance {
            domain: "a.example".into(),
            locale: "fr".into(),
            tos_signed: Some("1.0.0".into()),
            sponsorships: vec!["x".into(), "y".into()],
            disk_quota: Some(0),
            kdf_iterations: Some(0),
            ..NewInstance::default()
        };
        assert_eq!(
            req.query(),
            [
                ("Domain", "a.example".to_owned()),
                ("Locale", "fr".into()),
                ("TOSSigned", "1.0.0".into()),
                ("sponsorships", "x,y".into()),
                ("Sponsorships", "x,y".into()),
            ]
        );
    }

    #[test]
    fn token_query() {
        let req = TokenRequest {
            domain: "a.example".into(),
            audience: Audience::Access,
            scopes: vec!["io.cozy.files".into(), "io.cozy.contacts".into()],
            subject: Some("client-1".into()),
            expire: Some("30m".into()),
        };
        assert_eq!(
            query_string(&req.query()),
            "?Domain=a.example&Audience=access&Scope=io.cozy.files%20io.cozy.contacts&Subject=client-1&Expire=30m"
        );
    }

    #[test]
    fn attributes_are_lenient() {
        let instance: Instance = serde_json::from_str(
            r#"{"type":"instances","id":"abc","attributes":{"domain":"a.example","locale":null,
                "disk_quota":"5000000000","password_defined":null,"tos":null,"unknown":1,
                "register_token":"q83vEjRWeJCrze8SNFZ4kA=="},"meta":{"rev":"1-x"}}"#,
        )
        .expect("instance");
        assert_eq!(instance.attributes.disk_quota, 5_000_000_000);
        assert_eq!(instance.attributes.locale, "");
        assert_eq!(instance.attributes.password_defined, None);
        assert_eq!(instance.meta.rev, "1-x");
        assert_eq!(
            instance.attributes.register_token_hex().as_deref(),
            Some("abcdef1234567890abcdef1234567890")
        );
        let numeric: InstanceAttributes =
            serde_json::from_str(r#"{"disk_quota":42}"#).expect("attributes");
        assert_eq!(numeric.disk_quota, 42);
    }

    #[test]
    fn db_prefix_escapes() {
        let attrs = InstanceAttributes {
            domain: "Alice.Example.net:8080".into(),
            ..InstanceAttributes::default()
        };
        assert_eq!(attrs.db_prefix(), "alice-example-net-8080");
        let attrs = InstanceAttributes {
            prefix: "cozy0123".into(),
            ..attrs
        };
        assert_eq!(attrs.db_prefix(), "cozy0123");
    }

    #[test]
    fn move_targets() {
        assert_eq!(
            parse_move_target(" HTTPS://Bob.Example.net/ "),
            Ok(("https://bob.example.net".into(), "bob.example.net".into()))
        );
        assert_eq!(
            parse_move_target("http://bob.localhost:8081"),
            Ok((
                "http://bob.localhost:8081".into(),
                "bob.localhost:8081".into()
            ))
        );
        for bad in [
            "bob.example.net",
            "ftp://bob.example.net",
            "https://",
            "https://bob.example.net/path",
            "https://me@bob.example.net",
            "https://bob.example.net/?q",
        ] {
            assert!(parse_move_target(bad).is_err(), "{bad}");
        }
    }
}
