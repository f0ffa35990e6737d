//! JWTs signed with the instance's secrets (HS512), as the Cozy stack issues them
//! (spec instances 1.3): audiences `app`/`konn` use the session key, `access`,
//! `refresh`, `share` the OAuth secret, `cli` the CLI secret. Tokens carry `iat` and the
//! verifier derives their lifetime from the audience.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha512;

use crate::{error::InstanceError, model::Instance};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    App,
    Konnector,
    Access,
    Refresh,
    Share,
    Cli,
    /// The registration access token of an OAuth client.
    Registration,
}

impl Audience {
    /// Parses the names the admin API accepts (`app`/`webapp`, `konn`/`konnector`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "app" | "webapp" => Self::App,
            "konn" | "konnector" => Self::Konnector,
            "access" | "access-token" => Self::Access,
            "refresh" | "refresh-token" => Self::Refresh,
            "share" => Self::Share,
            "cli" => Self::Cli,
            "registration" => Self::Registration,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Konnector => "konn",
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Share => "share",
            Self::Cli => "cli",
            Self::Registration => "registration",
        }
    }

    /// How long a token of this audience is valid after `iat` (None: forever).
    pub fn lifetime(self) -> Option<Duration> {
        match self {
            Self::App => Some(Duration::from_secs(24 * 3600)),
            Self::Konnector | Self::Cli => Some(Duration::from_secs(30 * 60)),
            Self::Access => Some(Duration::from_secs(7 * 24 * 3600)),
            Self::Refresh | Self::Share | Self::Registration => None,
        }
    }
}

/// The claims Hearth reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub aud: Value,
    pub iss: String,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl Claims {
    pub fn audience(&self) -> Option<Audience> {
        match &self.aud {
            Value::String(s) => Audience::parse(s),
            Value::Array(a) => a.first().and_then(Value::as_str).and_then(Audience::parse),
            _ => None,
        }
    }
}

fn key(instance: &Instance, aud: Audience) -> Vec<u8> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_default()
    };
    match aud {
        Audience::App | Audience::Konnector => {
            let mut k = b"2:".to_vec();
            k.extend(instance.session_secret.as_bytes());
            k
        }
        Audience::Access | Audience::Refresh | Audience::Share | Audience::Registration => {
            b64(&instance.oauth_secret)
        }
        Audience::Cli => b64(&instance.cli_secret),
    }
}

/// Unix seconds now: the one clock of token lifetimes, access codes and share links.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Issues a token for `instance`. `expire` shortens or lengthens its validity by
/// moving `iat` (as the Cozy stack does).
pub fn issue(
    instance: &Instance,
    aud: Audience,
    subject: &str,
    scope: &str,
    expire: Option<Duration>,
) -> String {
    issue_claims(instance, aud, subject, scope, expire, None)
}

/// An app token bound to the browser session it was made for (spec core-api B.3):
/// valid 24 hours, and only while that session exists.
pub fn issue_for_session(instance: &Instance, slug: &str, session_id: &str) -> String {
    issue_claims(
        instance,
        Audience::App,
        slug,
        "",
        None,
        Some(session_id.to_owned()),
    )
}

fn issue_claims(
    instance: &Instance,
    aud: Audience,
    subject: &str,
    scope: &str,
    expire: Option<Duration>,
    session_id: Option<String>,
) -> String {
    let mut iat = now();
    if let (Some(expire), Some(life)) = (expire, lifetime(aud, session_id.is_some())) {
        iat = (iat + expire.as_secs()).saturating_sub(life.as_secs());
    }
    let claims = Claims {
        aud: Value::Array(vec![Value::String(aud.as_str().to_owned())]),
        iss: instance.domain.clone(),
        iat,
        sub: subject.to_owned(),
        scope: scope.to_owned(),
        session_id,
    };
    let header = b64url(br#"{"alg":"HS512","typ":"JWT"}"#);
    let payload = b64url(
        serde_json::to_string(&claims)
            .unwrap_or_default()
            .as_bytes(),
    );
    let signing_input = format!("{header}.{payload}");
    format!(
        "{signing_input}.{}",
        b64url(&sign(&key(instance, aud), signing_input.as_bytes()))
    )
}

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The lifetime of an app token not bound to a session.
pub const APP_TOKEN_WITHOUT_SESSION: Duration = Duration::from_secs(30 * 60);

/// How long a token of `aud` lives: an app token without a session lives 30 minutes,
/// not 24 hours.
fn lifetime(aud: Audience, with_session: bool) -> Option<Duration> {
    match (aud, with_session) {
        (Audience::App, false) => Some(APP_TOKEN_WITHOUT_SESSION),
        _ => aud.lifetime(),
    }
}

/// Verifies a token for `instance`: signature with the key of its audience, issuer,
/// and lifetime. The error names what failed (`Invalid JWT token`, `Expired token`).
pub fn verify(instance: &Instance, token: &str) -> Result<Claims, InstanceError> {
    let invalid = InstanceError::InvalidToken("Invalid JWT token");
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid);
    };
    let decode = |x: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| InstanceError::InvalidToken("Invalid JWT token"))
    };
    let header: Value = serde_json::from_slice(&decode(h)?)
        .map_err(|_| InstanceError::InvalidToken("Invalid JWT token"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS512") {
        return Err(invalid);
    }
    let claims: Claims = serde_json::from_slice(&decode(p)?)
        .map_err(|_| InstanceError::InvalidToken("Invalid JWT token"))?;
    let aud = claims.audience().ok_or(InstanceError::InvalidToken(
        "Invalid audience for JWT token",
    ))?;
    let expected = sign(&key(instance, aud), format!("{h}.{p}").as_bytes());
    if !crate::passphrase::constant_time_eq(&expected, &decode(s)?) {
        return Err(invalid);
    }
    if claims.iss != instance.domain && !instance.domain_aliases.contains(&claims.iss) {
        return Err(InstanceError::InvalidToken("Invalid JWT token"));
    }
    if let Some(life) = lifetime(aud, claims.session_id.is_some())
        && claims.iat + life.as_secs() <= now()
    {
        return Err(InstanceError::InvalidToken("Expired token"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random_b64;

    fn inst(domain: &str) -> Instance {
        Instance {
            domain: domain.into(),
            session_secret: random_b64(64),
            oauth_secret: random_b64(128),
            cli_secret: random_b64(128),
            ..Default::default()
        }
    }

    #[test]
    fn app_tokens_live_24_hours_with_a_session_and_30_minutes_without() {
        let i = inst("a.example");
        let t = issue(
            &i,
            Audience::App,
            "demo",
            "",
            Some(Duration::from_secs(1800)),
        );
        assert!(
            verify(&i, &t).is_ok(),
            "asked for exactly the 30 minutes allowed"
        );
        let gone = issue(&i, Audience::App, "demo", "", Some(Duration::ZERO));
        assert!(matches!(
            verify(&i, &gone),
            Err(InstanceError::InvalidToken("Expired token"))
        ));
        let bound = issue_for_session(&i, "demo", "s1");
        let claims = verify(&i, &bound).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.session_id.as_deref(), Some("s1"));
        assert_eq!(claims.sub, "demo");
    }

    #[test]
    fn round_trip_and_isolation() {
        let (a, b) = (inst("a.localhost"), inst("b.localhost"));
        let t = issue(&a, Audience::Cli, "", "io.cozy.settings", None);
        let c = verify(&a, &t).unwrap();
        assert_eq!(c.audience(), Some(Audience::Cli));
        assert_eq!(c.scope, "io.cozy.settings");
        assert!(matches!(
            verify(&b, &t),
            Err(InstanceError::InvalidToken("Invalid JWT token"))
        ));
        let mut tampered = t.clone();
        tampered.insert(t.len() / 2, 'x');
        assert!(verify(&a, &tampered).is_err());
        let expired = issue(&a, Audience::Cli, "", "", Some(Duration::from_secs(0)));
        assert!(matches!(
            verify(&a, &expired),
            Err(InstanceError::InvalidToken("Expired token"))
        ));
    }
}
