//! Browser sessions of an instance's owner (spec core-api B.4): one `io.cozy.sessions`
//! document per session, the signed cookie value that names it, and the login history
//! (`io.cozy.sessions.logins`).
//!
//! The cookie carries the session id and an HMAC-SHA256 of it keyed with the instance's
//! session key (`2:` + `session_secret`, as for `app` tokens). A new `session_secret` (a
//! password change) therefore invalidates every cookie at once, even before the session
//! documents are removed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hearth_core::{JsonMap, new_doc_id, now_rfc3339, parse_rfc3339};
use hearth_store::{GetOptions, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::{Instance, InstanceError, InstanceResult, Instances, doctype};

/// The doctype of sessions.
pub const SESSIONS: &str = "io.cozy.sessions";
/// The doctype of the login history.
pub const LOGINS: &str = "io.cozy.sessions.logins";
/// Sessions older than this are refused and removed (spec core-api B.4).
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// `last_seen` is written again only when it is older than this: reading a page
/// should not cost a write every time.
const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(5 * 60);

/// One session document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_rev", default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub created_at: String,
    pub last_seen: String,
    /// A "stay logged in" session: its cookie outlives the browser session.
    #[serde(default)]
    pub long_run: bool,
}

/// What the login history records of one login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginEntry {
    /// The client's address, as the request gave it.
    pub ip: String,
    pub user_agent: String,
    /// `password` for a login, `registration` for the first password.
    pub kind: &'static str,
}

fn session_key(instance: &Instance) -> Vec<u8> {
    let mut key = b"2:".to_vec();
    key.extend(instance.session_secret.as_bytes());
    key
}

fn mac(instance: &Instance, id: &str) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&session_key(instance)) else {
        return Vec::new();
    };
    mac.update(b"cozysessid|");
    mac.update(id.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The value of the session cookie: `<session id>.<base64url MAC>`.
pub fn cookie_value(instance: &Instance, session_id: &str) -> String {
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac(instance, session_id));
    format!("{session_id}.{sig}")
}

/// The session id a cookie value names, if its MAC is right for this instance.
pub fn session_id_from_cookie(instance: &Instance, value: &str) -> Option<String> {
    let (id, sig) = value.rsplit_once('.')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .ok()?;
    crate::passphrase::constant_time_eq(&mac(instance, id), &sig).then(|| id.to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_map(value: impl Serialize) -> InstanceResult<JsonMap> {
    match serde_json::to_value(value).map_err(InstanceError::internal)? {
        Value::Object(m) => Ok(m),
        _ => Err(InstanceError::internal("not a JSON object")),
    }
}

impl Instances {
    /// Opens a session for the owner of `instance`.
    pub async fn create_session(
        &self,
        instance: &Instance,
        long_run: bool,
    ) -> InstanceResult<Session> {
        let now = now_rfc3339();
        let mut session = Session {
            id: new_doc_id(),
            rev: None,
            created_at: now.clone(),
            last_seen: now,
            long_run,
        };
        let written = self
            .store
            .put(
                &instance.instance_id(),
                &doctype(SESSIONS),
                to_map(&session)?,
            )
            .await?;
        session.rev = Some(written.rev.to_string());
        Ok(session)
    }

    /// The live session named by a cookie value: signed for this instance, stored, and
    /// younger than [`SESSION_MAX_AGE`] (an expired one is removed). Refreshes
    /// `last_seen` now and then.
    pub async fn session_from_cookie(
        &self,
        instance: &Instance,
        cookie: &str,
    ) -> InstanceResult<Option<Session>> {
        let Some(id) = session_id_from_cookie(instance, cookie) else {
            return Ok(None);
        };
        let (inst, dt) = (instance.instance_id(), doctype(SESSIONS));
        let doc = match self.store.get(&inst, &dt, &id, GetOptions::default()).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut session: Session =
            serde_json::from_value(Value::Object(doc)).map_err(InstanceError::internal)?;
        let now = unix_now();
        let created = parse_rfc3339(&session.created_at).unwrap_or(0);
        if created + SESSION_MAX_AGE.as_secs() <= now {
            self.delete_session(instance, &session.id).await?;
            return Ok(None);
        }
        let seen = parse_rfc3339(&session.last_seen).unwrap_or(0);
        if seen + LAST_SEEN_GRANULARITY.as_secs() <= now {
            session.last_seen = now_rfc3339();
            // Losing this race to another request of the same session is harmless.
            match self.store.put(&inst, &dt, to_map(&session)?).await {
                Ok(w) => session.rev = Some(w.rev.to_string()),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(session))
    }

    /// Whether a session still exists and has not expired (app tokens bound to it
    /// die with it: a logout ends them).
    pub async fn session_exists(&self, instance: &Instance, id: &str) -> InstanceResult<bool> {
        let (inst, dt) = (instance.instance_id(), doctype(SESSIONS));
        match self.store.get(&inst, &dt, id, GetOptions::default()).await {
            Ok(doc) => {
                let created = doc
                    .get("created_at")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339)
                    .unwrap_or(0);
                Ok(created + SESSION_MAX_AGE.as_secs() > unix_now())
            }
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends one session (already gone is fine).
    pub async fn delete_session(&self, instance: &Instance, id: &str) -> InstanceResult<()> {
        let (inst, dt) = (instance.instance_id(), doctype(SESSIONS));
        let doc = match self.store.get(&inst, &dt, id, GetOptions::default()).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Some(rev) = doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
        else {
            return Err(InstanceError::internal("session without a revision"));
        };
        match self.store.delete(&inst, &dt, id, &rev).await {
            Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the sessions older than [`SESSION_MAX_AGE`] (the `clean-sessions` job);
    /// returns how many.
    pub async fn clean_expired_sessions(&self, instance: &Instance) -> InstanceResult<usize> {
        let (inst, dt) = (instance.instance_id(), doctype(SESSIONS));
        let oldest = hearth_core::rfc3339(unix_now().saturating_sub(SESSION_MAX_AGE.as_secs()));
        let q = hearth_store::mango::FindQuery::parse(&serde_json::json!({
            "selector": {"created_at": {"$lt": oldest}},
            "fields": ["_id"],
        }))
        .map_err(InstanceError::internal)?;
        let docs = match self.store.find(&inst, &dt, &q).await {
            Ok(found) => found.docs,
            Err(StoreError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut n = 0;
        for doc in docs {
            if let Some(id) = doc.get("_id").and_then(Value::as_str) {
                self.delete_session(instance, id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ends every session of an instance (after a password change).
    pub(crate) async fn delete_all_sessions(&self, instance: &Instance) -> InstanceResult<()> {
        match self
            .store
            .delete_doctype(&instance.instance_id(), &doctype(SESSIONS))
            .await
        {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a line to the login history.
    pub async fn record_login(&self, instance: &Instance, entry: LoginEntry) -> InstanceResult<()> {
        let doc = serde_json::json!({
            "_id": new_doc_id(),
            "ip": entry.ip,
            "user_agent": entry.user_agent,
            "kind": entry.kind,
            "created_at": now_rfc3339(),
        });
        self.store
            .put(&instance.instance_id(), &doctype(LOGINS), to_map(doc)?)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random_b64;

    #[test]
    fn cookies_are_signed_per_secret() {
        let mut i = Instance {
            session_secret: random_b64(64),
            ..Default::default()
        };
        let value = cookie_value(&i, "abc123");
        assert_eq!(
            session_id_from_cookie(&i, &value).as_deref(),
            Some("abc123")
        );
        assert_eq!(session_id_from_cookie(&i, "abc124.x"), None);
        let forged = value.replacen("abc123", "abc124", 1);
        assert_eq!(session_id_from_cookie(&i, &forged), None);
        assert_eq!(session_id_from_cookie(&i, "garbage"), None);
        i.session_secret = random_b64(64);
        assert_eq!(session_id_from_cookie(&i, &value), None, "new secret");
    }
}
