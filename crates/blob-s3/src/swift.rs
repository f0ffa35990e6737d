//! OpenStack Swift: logging in, and the token on every request.
//!
//! OpenDAL's Swift service takes a storage URL and a token made beforehand. Here the
//! store logs in itself, with TempAuth v1 (`GET <auth_url>` with `X-Auth-User` and
//! `X-Auth-Key`: the storage URL and the token come back as headers) or Keystone v3
//! passwords (`POST <auth_url>/auth/tokens`: the token in `X-Subject-Token`, the storage
//! URL from the catalog's public `object-store` endpoint), chosen by the URL (`…/v3` is
//! Keystone). Tokens expire: [`SwiftTransport`], the HTTP transport given to OpenDAL,
//! puts the current token on every request, logs in again ahead of the expiry TempAuth
//! announces (Keystone's: every 50 minutes, its default lifetime being one hour), and,
//! when Swift answers 401 anyway (a token revoked, a proxy's cache lost), logs in again
//! once and sends the request a second time. Concurrent requests share one login.
//!
//! The key or password never leaves this module: not in `Debug`, not in errors.

use std::fmt;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use opendal::{Buffer, HttpBody, HttpTransport};
use opendal_http_transport_reqwest::ReqwestTransport;

/// Tokens of unknown lifetime (Keystone's) are renewed this often.
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(50 * 60);

/// How to log in to Swift.
#[derive(Clone)]
pub struct SwiftAuth {
    /// TempAuth's `…/auth/v1.0`, or Keystone's `…/v3`.
    pub auth_url: String,
    /// TempAuth's `account:user`, or Keystone's user name.
    pub user: String,
    /// TempAuth's key, or Keystone's password.
    pub key: String,
    /// Keystone: the project the token is scoped to (the user's default one when
    /// `None`).
    pub project: Option<String>,
    /// Keystone: the domain of the user and of the project (`Default`).
    pub domain: String,
    /// Keystone: the region whose `object-store` endpoint is used (the first one when
    /// `None`).
    pub region: Option<String>,
}

impl SwiftAuth {
    /// TempAuth or Keystone v3, by the URL.
    pub fn new(
        auth_url: impl Into<String>,
        user: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            auth_url: auth_url.into(),
            user: user.into(),
            key: key.into(),
            project: None,
            domain: "Default".into(),
            region: None,
        }
    }

    fn is_keystone(&self) -> bool {
        let u = self.auth_url.trim_end_matches('/');
        u.ends_with("/v3")
    }
}

impl fmt::Debug for SwiftAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftAuth")
            .field("auth_url", &self.auth_url)
            .field("user", &self.user)
            .field("key", &"…")
            .field("project", &self.project)
            .field("domain", &self.domain)
            .field("region", &self.region)
            .finish()
    }
}

/// A token and where it works.
pub(crate) struct Token {
    value: HeaderValue,
    pub(crate) storage_url: String,
    renew_at: Instant,
}

/// A logged-in Swift account: the token shared by every request of a store.
pub(crate) struct Session {
    client: reqwest::Client,
    auth: SwiftAuth,
    current: RwLock<Arc<Token>>,
    login: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn auth_error(auth: &SwiftAuth, kind: io::ErrorKind, why: impl fmt::Display) -> io::Error {
    io::Error::new(
        kind,
        format!(
            "Swift: cannot log in at {} as {:?}: {why}",
            auth.auth_url, auth.user
        ),
    )
}

impl Session {
    /// Logs in a first time.
    pub(crate) async fn connect(client: reqwest::Client, auth: SwiftAuth) -> io::Result<Self> {
        let token = login(&client, &auth).await?;
        Ok(Self {
            client,
            auth,
            current: RwLock::new(Arc::new(token)),
            login: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Arc<Token> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The token to use now (renewed first when it is about to expire; if that login
    /// fails, the old token is tried: it may still work).
    pub(crate) async fn token(&self) -> io::Result<Arc<Token>> {
        let t = self.current();
        if Instant::now() < t.renew_at {
            return Ok(t);
        }
        match self.renew(&t).await {
            Ok(n) => Ok(n),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the Swift token before it expires");
                Ok(t)
            }
        }
    }

    /// Logs in again unless another request did since `stale` was handed out.
    pub(crate) async fn renew(&self, stale: &Arc<Token>) -> io::Result<Arc<Token>> {
        let _one_login = self.login.lock().await;
        let cur = self.current();
        if !Arc::ptr_eq(&cur, stale) {
            return Ok(cur);
        }
        let fresh = Arc::new(login(&self.client, &self.auth).await?);
        if fresh.storage_url != stale.storage_url {
            tracing::warn!(
                old = %stale.storage_url,
                new = %fresh.storage_url,
                "the Swift storage URL changed at a new login; the store keeps the first one"
            );
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    pub(crate) fn storage_url(&self) -> String {
        self.current().storage_url.clone()
    }

    /// One request of the store's own (outside OpenDAL), with the token, again after
    /// a new login on 401.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> io::Result<reqwest::Response> {
        let mut token = self.token().await?;
        for attempt in 0..2 {
            let resp = self
                .client
                .request(method.clone(), url)
                .header("X-Auth-Token", token.value.clone())
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| io::Error::other(format!("Swift: {method} failed: {e}")))?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            token = self.renew(&token).await?;
        }
        unreachable!("the loop returns on its second attempt")
    }
}

async fn login(client: &reqwest::Client, auth: &SwiftAuth) -> io::Result<Token> {
    if auth.is_keystone() {
        keystone_login(client, auth).await
    } else {
        tempauth_login(client, auth).await
    }
}

fn sensitive(value: &str, auth: &SwiftAuth) -> io::Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        auth_error(
            auth,
            io::ErrorKind::InvalidData,
            "the token is not a header value",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn status_error(auth: &SwiftAuth, status: reqwest::StatusCode) -> io::Error {
    let kind = match status {
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            io::ErrorKind::PermissionDenied
        }
        _ => io::ErrorKind::Other,
    };
    auth_error(auth, kind, format!("the server answered {status}"))
}

async fn tempauth_login(client: &reqwest::Client, auth: &SwiftAuth) -> io::Result<Token> {
    let mut key = HeaderValue::from_str(&auth.key).map_err(|_| {
        auth_error(
            auth,
            io::ErrorKind::InvalidInput,
            "the key is not a header value",
        )
    })?;
    key.set_sensitive(true);
    let resp = client
        .get(&auth.auth_url)
        .header("X-Auth-User", &auth.user)
        .header("X-Auth-Key", key)
        .send()
        .await
        .map_err(|e| auth_error(auth, io::ErrorKind::Other, e))?;
    if !resp.status().is_success() {
        return Err(status_error(auth, resp.status()));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (Some(url), Some(token)) = (header("x-storage-url"), header("x-auth-token")) else {
        return Err(auth_error(
            auth,
            io::ErrorKind::InvalidData,
            "no X-Storage-Url or X-Auth-Token in the answer",
        ));
    };
    // Renewed 5 minutes before the announced expiry (at least a minute from now).
    let life = header("x-auth-token-expires")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_TOKEN_LIFE, |s| {
            Duration::from_secs(s.saturating_sub(300).max(60))
        });
    Ok(Token {
        value: sensitive(&token, auth)?,
        storage_url: url.trim_end_matches('/').to_owned(),
        renew_at: Instant::now() + life,
    })
}

/// The request body of a Keystone v3 password login.
fn keystone_body(auth: &SwiftAuth) -> serde_json::Value {
    let domain = serde_json::json!({ "name": auth.domain });
    let mut body = serde_json::json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": { "name": auth.user, "domain": domain, "password": auth.key }
                }
            }
        }
    });
    if let Some(project) = &auth.project {
        body["auth"]["scope"] = serde_json::json!({
            "project": { "name": project, "domain": domain }
        });
    }
    body
}

/// The public `object-store` endpoint of a Keystone v3 token's catalog.
fn object_store_url(token: &serde_json::Value, region: Option<&str>) -> Option<String> {
    token["token"]["catalog"]
        .as_array()?
        .iter()
        .filter(|s| s["type"] == "object-store")
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find(|e| {
            e["interface"] == "public"
                && region.is_none_or(|r| e["region_id"] == r || e["region"] == r)
        })
        .and_then(|e| e["url"].as_str())
        .map(|u| u.trim_end_matches('/').to_owned())
}

async fn keystone_login(client: &reqwest::Client, auth: &SwiftAuth) -> io::Result<Token> {
    let url = format!("{}/auth/tokens", auth.auth_url.trim_end_matches('/'));
    let body = serde_json::to_vec(&keystone_body(auth)).map_err(io::Error::other)?;
    let resp = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| auth_error(auth, io::ErrorKind::Other, e))?;
    if !resp.status().is_success() {
        return Err(status_error(auth, resp.status()));
    }
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| auth_error(auth, io::ErrorKind::InvalidData, "no X-Subject-Token"))?;
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| auth_error(auth, io::ErrorKind::InvalidData, e))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| auth_error(auth, io::ErrorKind::InvalidData, e))?;
    let storage_url = object_store_url(&json, auth.region.as_deref()).ok_or_else(|| {
        auth_error(
            auth,
            io::ErrorKind::NotFound,
            "no public object-store endpoint in the token's catalog",
        )
    })?;
    Ok(Token {
        value: sensitive(&token, auth)?,
        storage_url,
        renew_at: Instant::now() + DEFAULT_TOKEN_LIFE,
    })
}

/// OpenDAL's HTTP transport for Swift: reqwest, with the session's current token on
/// every request (OpenDAL's own is a placeholder) and one new login on 401.
pub(crate) struct SwiftTransport {
    pub(crate) inner: ReqwestTransport,
    pub(crate) session: Arc<Session>,
}

fn with_token(parts: &http::request::Parts, body: Buffer, token: &Token) -> Request<Buffer> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req.headers_mut()
        .insert("x-auth-token", token.value.clone());
    req
}

fn opendal_error(e: io::Error) -> opendal::Error {
    let kind = match e.kind() {
        io::ErrorKind::PermissionDenied => opendal::ErrorKind::PermissionDenied,
        _ => opendal::ErrorKind::Unexpected,
    };
    opendal::Error::new(kind, e.to_string())
}

impl HttpTransport for SwiftTransport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let (parts, body) = req.into_parts();
        let token = self.session.token().await.map_err(opendal_error)?;
        let resp = self
            .inner
            .fetch(with_token(&parts, body.clone(), &token))
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        drop(resp);
        tracing::debug!("Swift answered 401: logging in again");
        let token = self.session.renew(&token).await.map_err(opendal_error)?;
        self.inner.fetch(with_token(&parts, body, &token)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_kind_by_url() {
        assert!(!SwiftAuth::new("http://h:8080/auth/v1.0", "a:u", "k").is_keystone());
        assert!(SwiftAuth::new("https://keystone.example/v3", "u", "k").is_keystone());
        assert!(SwiftAuth::new("https://keystone.example/identity/v3/", "u", "k").is_keystone());
    }

    #[test]
    fn secrets_stay_hidden() {
        let a = SwiftAuth::new("http://h/auth/v1.0", "test:tester", "s3cr3t-key");
        assert!(!format!("{a:?}").contains("s3cr3t-key"));
        let e = auth_error(&a, io::ErrorKind::Other, "x");
        assert!(!e.to_string().contains("s3cr3t-key"));
    }

    #[test]
    fn keystone_request_and_catalog() {
        let mut a = SwiftAuth::new("https://k/v3", "alice", "pw");
        a.project = Some("files".into());
        let b = keystone_body(&a);
        assert_eq!(b["auth"]["identity"]["password"]["user"]["name"], "alice");
        assert_eq!(b["auth"]["scope"]["project"]["name"], "files");
        assert_eq!(b["auth"]["scope"]["project"]["domain"]["name"], "Default");
        let token = serde_json::json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "url": "https://k/v3"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "internal", "region_id": "r1", "url": "http://int/v1/AUTH_x"},
                {"interface": "public", "region_id": "r1", "url": "https://one/v1/AUTH_x/"},
                {"interface": "public", "region_id": "r2", "url": "https://two/v1/AUTH_x"}
            ]}
        ]}});
        assert_eq!(
            object_store_url(&token, None).as_deref(),
            Some("https://one/v1/AUTH_x")
        );
        assert_eq!(
            object_store_url(&token, Some("r2")).as_deref(),
            Some("https://two/v1/AUTH_x")
        );
        assert_eq!(object_store_url(&token, Some("r3")), None);
    }
}
