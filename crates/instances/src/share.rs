//! Share-by-link permissions (spec core-api B.11): `io.cozy.permissions` documents of
//! type `share` whose codes are tokens of audience `share`.

use std::time::Duration;

use hearth_core::{JsonMap, now_rfc3339};
use hearth_store::{GetOptions, StoreError};
use serde_json::{Value, json};

use crate::{Audience, InstanceResult, Instances, doctype, permission::PermissionSet, token};

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
        let holds = doc
            .get("codes")
            .and_then(Value::as_object)
            .is_some_and(|c| c.values().any(|t| t.as_str() == Some(raw_token)));
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
}
