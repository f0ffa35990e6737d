//! The instance document of the registry (spec instances 1.2), and its derived values.

use base64::Engine;
use hearth_core::{InstanceId, JsonMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::Domain;

/// The version of the per-instance index set this code defines (spec 1.6).
pub const INDEXES_VERSION: u32 = 1;

/// One instance, as stored in the global registry (`io.cozy.instances`).
///
/// Field names are the Cozy stack's. Byte secrets are standard base64 with padding.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "_rev", default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_domain: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    pub locale: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub franceconnect_id: Option<String>,
    #[serde(rename = "context", default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sponsorships: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_sets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_latest: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auth_mode: u8,
    #[serde(default, skip_serializing_if = "is_false")]
    pub magic_link: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleting: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub moved: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking_reason: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_auto_update: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub onboarding_finished: bool,
    /// `null` when unknown (legacy); never omitted.
    #[serde(default)]
    pub password_defined: Option<bool>,
    /// Bytes; a JSON string on the wire, absent for unlimited.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "quota_string"
    )]
    pub disk_quota: Option<u64>,
    #[serde(default)]
    pub indexes_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_reset_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_reset_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_token: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_secret: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oauth_secret: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cli_secret: String,
    /// Hearth: when the instance moved away, the date after which it is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_scheduled_at: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

mod quota_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("disk_quota")),
            Some(_) => Err(serde::de::Error::custom("disk_quota must be a string")),
        }
    }
}

/// The secrets an API response never shows.
const SECRET_FIELDS: [&str; 4] = [
    "session_secret",
    "oauth_secret",
    "cli_secret",
    "passphrase_hash",
];

impl Instance {
    /// The store key of this instance's documents.
    pub fn instance_id(&self) -> InstanceId {
        InstanceId::new(self.prefix.clone()).unwrap_or_else(|_| {
            InstanceId::new(prefix_for(self.domain.as_str()))
                .unwrap_or_else(|_| InstanceId::global())
        })
    }

    /// The document for API responses: secrets removed, `_id`/`_rev` removed.
    pub fn public_attributes(&self) -> JsonMap {
        let mut v = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        };
        for k in SECRET_FIELDS.iter().chain(&["_id", "_rev"]) {
            v.shift_remove(*k);
        }
        v
    }

    /// The register token as 32 lowercase hex characters, if onboarding is pending.
    pub fn register_token_hex(&self) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.register_token.as_deref()?)
            .ok()?;
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The salt clients use for PBKDF2: `me@<host>` (old domain first, port stripped).
    pub fn passphrase_salt(&self) -> String {
        let host = self.old_domain.as_deref().unwrap_or(&self.domain);
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        format!("me@{host}")
    }

    /// Every domain this instance answers on.
    pub fn all_domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.domain.as_str()).chain(self.domain_aliases.iter().map(String::as_str))
    }

    /// The language of pages: `fr` or `en` (every other locale falls back to English).
    pub fn page_locale(&self) -> &'static str {
        if self.locale.starts_with("fr") {
            "fr"
        } else {
            "en"
        }
    }
}

/// The database prefix of a new instance: `cozy` + the first 16 bytes of
/// SHA-256(domain) in hex (spec 1.1), which also names its SQLite file.
pub fn prefix_for(domain: &str) -> String {
    let digest = Sha256::digest(domain.as_bytes());
    let mut out = String::from("cozy");
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `n` random bytes as standard base64.
pub fn random_b64(n: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes(n))
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // No random source means no secrets: nothing sensible can continue.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

impl From<&Domain> for Instance {
    fn from(d: &Domain) -> Self {
        Instance {
            domain: d.as_str().to_owned(),
            prefix: prefix_for(d.as_str()),
            locale: "en".into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_cozy_and_32_hex() {
        let p = prefix_for("alice.example.net");
        assert_eq!(p.len(), 36);
        assert!(p.starts_with("cozy"));
        assert!(InstanceId::new(p).is_ok());
    }

    #[test]
    fn wire_shape() {
        let mut i = Instance::from(&Domain::parse("alice.localhost:8080").unwrap());
        i.disk_quota = Some(5_000_000_000);
        i.session_secret = "c2VjcmV0".into();
        i.register_token = Some(random_b64(16));
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["disk_quota"], "5000000000");
        assert_eq!(v["password_defined"], Value::Null);
        assert!(v.get("blocked").is_none());
        let back: Instance = serde_json::from_value(v).unwrap();
        assert_eq!(back, i);
        let public = i.public_attributes();
        assert!(!public.contains_key("session_secret"));
        assert!(public.contains_key("register_token"));
        assert_eq!(i.register_token_hex().unwrap().len(), 32);
        assert_eq!(i.passphrase_salt(), "me@alice.localhost");
    }
}
