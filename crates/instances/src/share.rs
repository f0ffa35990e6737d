//! Share-by-link permissions (spec core-api B.11): `io.cozy.permissions` documents of
//! type `share` whose codes are tokens of audience `share`.

use std::time::Duration;

use hearth_core::{JsonMap, now_rfc3339};
use hearth_store::{GetOptions, StoreError};
use serde_json::{Value, json};

use crate::{
    Audience, Claims, InstanceResult, Instances, doctype, permission::PermissionSet, token,
};

pub(crate) const PERMISSIONS: &str = "io.cozy.permissions";

/// Why a share permission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareError {
    /// The rules are not a subset of the creator's (403).
    Larger,
    /// The rules cannot be read (422).
    Invalid(String),
}

impl Instances {
    /// Creates a `share` permission with one token per code name.
    pub async fn create_share(
        &self,
        domain: &str,
        parent: &PermissionSet,
        source_id: &str,
        rules: &Value,
        codes: &[String],
        ttl: Option<Duration>,
    ) -> InstanceResult<Result<JsonMap, ShareError>> {
        let instance = self.get_str(domain).await?;
        let set = match PermissionSet::from_json(rules) {
            Ok(s) if !s.rules.is_empty() => s,
            Ok(_) => {
                return Ok(Err(ShareError::Invalid(
                    "permissions must not be empty".into(),
                )));
            }
            Err(e) => return Ok(Err(ShareError::Invalid(e.to_string()))),
        };
        if !set.is_subset_of(parent) {
            return Ok(Err(ShareError::Larger));
        }
        let id = hearth_core::new_doc_id();
        let tokens: JsonMap = codes
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    Value::String(token::issue(&instance, Audience::Share, &id, "", None)),
                )
            })
            .collect();
        let mut doc = match json!({
            "_id": id,
            "type": "share",
            "source_id": source_id,
            "permissions": rules,
            "codes": tokens,
            "cozyMetadata": {"createdAt": now_rfc3339()},
        }) {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        };
        if let Some(ttl) = ttl {
            doc.insert("expires_at".into(), json!(token::now() + ttl.as_secs()));
        }
        let written = self
            .store
            .put(&instance.instance_id(), &doctype(PERMISSIONS), doc.clone())
            .await?;
        doc.insert("_rev".into(), Value::String(written.rev.to_string()));
        Ok(Ok(doc))
    }

    /// The rules of a share token's permission document, if it still exists, holds
    /// this token and has not expired.
    pub async fn share_permission(
        &self,
        domain: &str,
        permission_id: &str,
        raw_token: &str,
    ) -> InstanceResult<Option<PermissionSet>> {
        // A link made before a move keeps working: the old token is kept under
        // `moved_codes` when the permission is imported (spec move 2.7).
        self.share_rules(domain, permission_id, raw_token, &["codes", "moved_codes"])
            .await
    }

    /// The rules of the permission document `permission_id` if one of its `fields`
    /// (objects of tokens) holds this token and it has not expired.
    async fn share_rules(
        &self,
        domain: &str,
        permission_id: &str,
        raw_token: &str,
        fields: &[&str],
    ) -> InstanceResult<Option<PermissionSet>> {
        let instance = self.get_str(domain).await?;
        let doc = match self
            .store
            .get(
                &instance.instance_id(),
                &doctype(PERMISSIONS),
                permission_id,
                GetOptions::default(),
            )
            .await
        {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let holds = fields.iter().any(|k| {
            doc.get(*k)
                .and_then(Value::as_object)
                .is_some_and(|c| c.values().any(|t| t.as_str() == Some(raw_token)))
        });
        let expired = doc
            .get("expires_at")
            .and_then(Value::as_u64)
            .is_some_and(|t| t <= token::now());
        if !holds || expired {
            return Ok(None);
        }
        Ok(doc
            .get("permissions")
            .and_then(|p| PermissionSet::from_json(p).ok()))
    }

    /// The claims and rules of a share token signed by the instance this one moved
    /// from, which its own keys cannot verify: its `sub` is read without checking the
    /// signature, and the token is accepted only if that permission document keeps
    /// this exact string in `moved_codes` (and has not expired).
    pub async fn moved_share_permission(
        &self,
        domain: &str,
        raw_token: &str,
    ) -> InstanceResult<Option<(Claims, PermissionSet)>> {
        let Some(claims) = unverified_share_claims(raw_token) else {
            return Ok(None);
        };
        Ok(self
            .share_rules(domain, &claims.sub, raw_token, &["moved_codes"])
            .await?
            .map(|set| (claims, set)))
    }
}

/// The claims of a JWT of audience `share`, read WITHOUT checking its signature:
/// only for a lookup that then requires the exact token to be stored.
pub fn unverified_share_claims(raw: &str) -> Option<Claims> {
    use base64::Engine;
    let mut parts = raw.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    (claims.audience() == Some(Audience::Share) && !claims.sub.is_empty()).then_some(claims)
}

/// Re-mints the codes of a share permission imported by a move (spec move 2.7): each
/// code gets a token of this instance (subject: the permission id, as
/// [`Instances::create_share`] makes them), and the old tokens are kept under
/// `moved_codes` (name → old token) so that links made before the move keep working.
/// Codes of an earlier move stay in `moved_codes`.
pub fn remint_moved_codes(instance: &crate::Instance, doc: &mut JsonMap) {
    let Some(id) = doc.get("_id").and_then(Value::as_str).map(str::to_owned) else {
        return;
    };
    let Some(codes) = doc.get("codes").and_then(Value::as_object).cloned() else {
        return;
    };
    let mut moved = doc
        .get("moved_codes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut fresh = JsonMap::new();
    for (name, old) in codes {
        if let Some(old) = old.as_str().filter(|t| !t.is_empty()) {
            // Several moves: an older link under the same name is kept beside it.
            let key = if moved.contains_key(&name) {
                format!("{name}-{}", hearth_core::random_hex(4))
            } else {
                name.clone()
            };
            moved.insert(key, Value::String(old.to_owned()));
        }
        fresh.insert(
            name,
            Value::String(token::issue(instance, Audience::Share, &id, "", None)),
        );
    }
    doc.insert("codes".into(), Value::Object(fresh));
    if !moved.is_empty() {
        doc.insert("moved_codes".into(), Value::Object(moved));
    }
}
