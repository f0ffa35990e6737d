//! OAuth clients of an instance (`io.cozy.oauth.clients`): registration with the
//! metadata checks of spec core-api B.5, and lookup by software id. The OAuth flows
//! themselves (authorize, tokens, revocation) belong to the auth service.

use hearth_core::{JsonMap, random_hex};
use hearth_store::{StoreError, mango::FindQuery};
use serde_json::{Value, json};

use crate::{Audience, InstanceError, InstanceResult, Instances, doctype, token};

pub(crate) const CLIENTS: &str = "io.cozy.oauth.clients";

/// What a client registers with.
#[derive(Debug, Clone, Default)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub client_name: String,
    pub software_id: String,
    pub client_kind: Option<String>,
    pub client_uri: Option<String>,
    pub software_version: Option<String>,
    /// Admin-created clients may ask for the login scope.
    pub allow_login_scope: bool,
}

/// Why a registration was refused (`error` is OAuth's code, `description` for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError {
    pub error: &'static str,
    pub description: String,
}

fn check(meta: &ClientMetadata, instance_host: &str) -> Result<(), RegistrationError> {
    let invalid_uri = |d: String| RegistrationError {
        error: "invalid_redirect_uri",
        description: d,
    };
    if meta.redirect_uris.is_empty() {
        return Err(invalid_uri("redirect_uris is mandatory".into()));
    }
    for uri in &meta.redirect_uris {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(invalid_uri(format!("{uri} is invalid")));
        };
        if scheme.is_empty()
            || rest.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(invalid_uri(format!("{uri} is invalid")));
        }
        if uri.contains('#') {
            return Err(invalid_uri(format!("{uri} contains a fragment")));
        }
        let host = rest.split(['/', '?']).next().unwrap_or("");
        if host.eq_ignore_ascii_case(instance_host) {
            return Err(invalid_uri(format!("{uri} points to the instance itself")));
        }
    }
    let invalid = |d: &str| RegistrationError {
        error: "invalid_client_metadata",
        description: d.into(),
    };
    if meta.client_name.trim().is_empty() {
        return Err(invalid("client_name is mandatory"));
    }
    if meta.software_id.trim().is_empty() {
        return Err(invalid("software_id is mandatory"));
    }
    Ok(())
}

/// The client as the API shows it.
fn public(doc: &JsonMap) -> Value {
    let mut out = doc.clone();
    if let Some(id) = out.shift_remove("_id") {
        out.insert("client_id".into(), id);
    }
    out.shift_remove("_rev");
    Value::Object(out)
}

impl Instances {
    /// Registers an OAuth client for an instance (admin `POST /instances/oauth_client`).
    pub async fn register_client(
        &self,
        domain: &str,
        meta: ClientMetadata,
    ) -> InstanceResult<Result<Value, RegistrationError>> {
        let instance = self.get_str(domain).await?;
        if let Err(e) = check(&meta, &instance.domain) {
            return Ok(Err(e));
        }
        let id = instance.instance_id();
        let dt = doctype(CLIENTS);
        // A name already used gets a numbered suffix, as in the original.
        let mut name = meta.client_name.trim().to_owned();
        for n in 2.. {
            let q = FindQuery::parse(&json!({"selector": {"client_name": name}, "limit": 1}))?;
            match self.store.find(&id, &dt, &q).await {
                Ok(r) if !r.docs.is_empty() => name = format!("{}-{n}", meta.client_name.trim()),
                Ok(_) | Err(StoreError::NotFound(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let client_id = hearth_core::new_doc_id();
        let registration = token::issue(&instance, Audience::Registration, &client_id, "", None);
        let mut doc = match json!({
            "_id": client_id,
            "client_secret": random_hex(32),
            "client_secret_expires_at": 0,
            "registration_access_token": registration,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": meta.redirect_uris,
            "client_name": name,
            "software_id": meta.software_id,
        }) {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        };
        for (k, v) in [
            ("client_kind", &meta.client_kind),
            ("client_uri", &meta.client_uri),
            ("software_version", &meta.software_version),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                doc.insert(k.into(), Value::String(v.clone()));
            }
        }
        if meta.allow_login_scope {
            doc.insert("allow_login_scope".into(), Value::Bool(true));
        }
        let written = self.store.put(&id, &dt, doc.clone()).await?;
        doc.insert("_rev".into(), Value::String(written.rev.to_string()));
        Ok(Ok(public(&doc)))
    }

    /// The first client registered with this software id.
    pub async fn find_client(&self, domain: &str, software_id: &str) -> InstanceResult<Value> {
        let instance = self.get_str(domain).await?;
        let q = FindQuery::parse(&json!({"selector": {"software_id": software_id}, "limit": 1}))?;
        match self
            .store
            .find(&instance.instance_id(), &doctype(CLIENTS), &q)
            .await
        {
            Ok(r) => r
                .docs
                .first()
                .map(public)
                .ok_or(InstanceError::ClientNotFound),
            Err(StoreError::NotFound(_)) => Err(InstanceError::ClientNotFound),
            Err(e) => Err(e.into()),
        }
    }
}

impl Instances {
    /// A registered client by id, or `None`.
    pub async fn get_client(
        &self,
        domain: &str,
        client_id: &str,
    ) -> InstanceResult<Option<JsonMap>> {
        let instance = self.get_str(domain).await?;
        match self
            .store
            .get(
                &instance.instance_id(),
                &doctype(CLIENTS),
                client_id,
                hearth_store::GetOptions::default(),
            )
            .await
        {
            Ok(doc) => Ok(Some(doc)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `token` is the registration access token of `client_id`.
    pub async fn check_registration_token(
        &self,
        domain: &str,
        client_id: &str,
        token: &str,
    ) -> InstanceResult<bool> {
        let instance = self.get_str(domain).await?;
        Ok(token::verify(&instance, token)
            .is_ok_and(|c| c.audience() == Some(Audience::Registration) && c.sub == client_id))
    }

    /// Replaces a client's metadata (`PUT /auth/register/:id`); giving the current
    /// secret rotates it. `None` when the client does not exist.
    pub async fn update_client(
        &self,
        domain: &str,
        client_id: &str,
        meta: ClientMetadata,
        current_secret: Option<&str>,
    ) -> InstanceResult<Option<Result<Value, RegistrationError>>> {
        let instance = self.get_str(domain).await?;
        let Some(mut doc) = self.get_client(domain, client_id).await? else {
            return Ok(None);
        };
        if let Err(e) = check(&meta, &instance.domain) {
            return Ok(Some(Err(e)));
        }
        if let Some(given) = current_secret {
            let stored = doc
                .get("client_secret")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !crate::passphrase::constant_time_eq(given.as_bytes(), stored.as_bytes()) {
                return Ok(Some(Err(RegistrationError {
                    error: "invalid_client_metadata",
                    description: "client_secret is invalid".into(),
                })));
            }
            doc.insert("client_secret".into(), Value::String(random_hex(32)));
        }
        doc.insert("redirect_uris".into(), json!(meta.redirect_uris));
        doc.insert(
            "client_name".into(),
            Value::String(meta.client_name.trim().to_owned()),
        );
        doc.insert("software_id".into(), Value::String(meta.software_id));
        for (k, v) in [
            ("client_kind", meta.client_kind),
            ("client_uri", meta.client_uri),
            ("software_version", meta.software_version),
        ] {
            match v.filter(|v| !v.is_empty()) {
                Some(v) => doc.insert(k.into(), Value::String(v)),
                None => doc.shift_remove(k),
            };
        }
        let written = self
            .store
            .put(&instance.instance_id(), &doctype(CLIENTS), doc.clone())
            .await?;
        doc.insert("_rev".into(), Value::String(written.rev.to_string()));
        Ok(Some(Ok(public(&doc))))
    }

    /// Deletes a client (its tokens die with it: they are checked against it).
    pub async fn delete_client(&self, domain: &str, client_id: &str) -> InstanceResult<()> {
        let instance = self.get_str(domain).await?;
        if let Some(doc) = self.get_client(domain, client_id).await?
            && let Some(rev) = doc
                .get("_rev")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
        {
            match self
                .store
                .delete(&instance.instance_id(), &doctype(CLIENTS), client_id, &rev)
                .await
            {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The client as the API shows it (`client_id`, no `_id`/`_rev`).
pub fn client_json(doc: &JsonMap) -> Value {
    public(doc)
}

/// How long an access code can be exchanged (spec core-api B.5).
const ACCESS_CODE_LIFETIME_SECS: u64 = 5 * 60;
const ACCESS_CODES: &str = "io.cozy.oauth.access_codes";

/// The answer of `POST /auth/access_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub scope: String,
    pub access_token: String,
    /// Only for the `authorization_code` grant.
    pub refresh_token: Option<String>,
}

/// Why a token request was refused; the message is the wire's `error` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub &'static str);

/// `base64url(sha256(verifier))` without padding: the PKCE S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Instances {
    /// Records an access code for a client once the person accepted the scope
    /// (single use, 5 minutes).
    pub async fn create_access_code(
        &self,
        domain: &str,
        client_id: &str,
        scope: &str,
        challenge: Option<&str>,
    ) -> InstanceResult<String> {
        let instance = self.get_str(domain).await?;
        let code = random_hex(16);
        let mut doc = match json!({"_id": code, "client_id": client_id, "scope": scope, "created_at": token::now()})
        {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        };
        if let Some(c) = challenge.filter(|c| !c.is_empty()) {
            doc.insert("challenge".into(), Value::String(c.to_owned()));
        }
        self.store
            .put(&instance.instance_id(), &doctype(ACCESS_CODES), doc)
            .await?;
        Ok(code)
    }

    async fn client_with_secret(
        &self,
        domain: &str,
        client_id: &str,
        secret: &str,
    ) -> InstanceResult<Result<JsonMap, TokenError>> {
        let Some(client) = self.get_client(domain, client_id).await? else {
            return Ok(Err(TokenError("the client must be registered")));
        };
        let stored = client
            .get("client_secret")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !crate::passphrase::constant_time_eq(stored.as_bytes(), secret.as_bytes()) {
            return Ok(Err(TokenError("invalid client_secret")));
        }
        Ok(Ok(client))
    }

    /// The `authorization_code` grant: the code is consumed whatever the outcome.
    pub async fn exchange_code(
        &self,
        domain: &str,
        client_id: &str,
        secret: &str,
        code: &str,
        verifier: Option<&str>,
    ) -> InstanceResult<Result<Tokens, TokenError>> {
        let instance = self.get_str(domain).await?;
        if let Err(e) = self.client_with_secret(domain, client_id, secret).await? {
            return Ok(Err(e));
        }
        let id = instance.instance_id();
        let dt = doctype(ACCESS_CODES);
        let doc = match self
            .store
            .get(&id, &dt, code, hearth_store::GetOptions::default())
            .await
        {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Ok(Err(TokenError("invalid code"))),
            Err(e) => return Err(e.into()),
        };
        if let Some(rev) = doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
        {
            match self.store.delete(&id, &dt, code, &rev).await {
                Ok(_) => {}
                // Someone else used it first: single use.
                Err(StoreError::Conflict | StoreError::NotFound(_)) => {
                    return Ok(Err(TokenError("invalid code")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let created = doc.get("created_at").and_then(Value::as_u64).unwrap_or(0);
        if doc.get("client_id").and_then(Value::as_str) != Some(client_id)
            || created + ACCESS_CODE_LIFETIME_SECS < token::now()
        {
            return Ok(Err(TokenError("invalid code")));
        }
        if let Some(challenge) = doc.get("challenge").and_then(Value::as_str)
            && verifier.is_none_or(|v| pkce_challenge(v) != challenge)
        {
            return Ok(Err(TokenError("invalid code_verifier")));
        }
        let scope = doc
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok(Ok(Tokens {
            access_token: token::issue(&instance, Audience::Access, client_id, &scope, None),
            refresh_token: Some(token::issue(
                &instance,
                Audience::Refresh,
                client_id,
                &scope,
                None,
            )),
            scope,
        }))
    }

    /// The `refresh_token` grant: a new access token with the refresh token's scope.
    pub async fn refresh_tokens(
        &self,
        domain: &str,
        client_id: &str,
        secret: &str,
        refresh: &str,
    ) -> InstanceResult<Result<Tokens, TokenError>> {
        let instance = self.get_str(domain).await?;
        if let Err(e) = self.client_with_secret(domain, client_id, secret).await? {
            return Ok(Err(e));
        }
        match token::verify(&instance, refresh) {
            Ok(c) if c.audience() == Some(Audience::Refresh) && c.sub == client_id => {
                Ok(Ok(Tokens {
                    access_token: token::issue(
                        &instance,
                        Audience::Access,
                        client_id,
                        &c.scope,
                        None,
                    ),
                    refresh_token: None,
                    scope: c.scope,
                }))
            }
            _ => Ok(Err(TokenError("invalid refresh token"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uris: &[&str], name: &str, sw: &str) -> ClientMetadata {
        ClientMetadata {
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            client_name: name.into(),
            software_id: sw.into(),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_checks() {
        assert!(
            check(
                &meta(&["https://app.example/cb"], "App", "io.app"),
                "alice.example"
            )
            .is_ok()
        );
        assert!(
            check(
                &meta(&["cozy://callback"], "App", "io.app"),
                "alice.example"
            )
            .is_ok()
        );
        for (m, error) in [
            (meta(&[], "App", "sw"), "invalid_redirect_uri"),
            (meta(&["not a uri"], "App", "sw"), "invalid_redirect_uri"),
            (
                meta(&["https://x/cb#frag"], "App", "sw"),
                "invalid_redirect_uri",
            ),
            (
                meta(&["https://alice.example/cb"], "App", "sw"),
                "invalid_redirect_uri",
            ),
            (
                meta(&["https://x/cb"], " ", "sw"),
                "invalid_client_metadata",
            ),
            (
                meta(&["https://x/cb"], "App", ""),
                "invalid_client_metadata",
            ),
        ] {
            assert_eq!(
                check(&m, "alice.example").map_err(|e| e.error),
                Err(error),
                "{m:?}"
            );
        }
    }
}
