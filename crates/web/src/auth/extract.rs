//! What the auth handlers read of a request: its headers and peer ([`RequestInfo`]),
//! and form fields sent as a form or as JSON ([`Fields`]), with the lenient numbers
//! and booleans forms need.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use hearth_instances::auth::PassphraseError;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use super::wants_html;
use crate::error::{ApiError, PlainError};

/// What handlers read of a request besides its body.
pub(super) struct RequestInfo {
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    pub(super) query: Option<String>,
    pub(super) peer: Option<SocketAddr>,
}

impl RequestInfo {
    pub(super) fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The client's address for the login history: the first `X-Forwarded-For` entry,
    /// else `X-Real-IP`, else the peer (a reverse proxy in front of Hearth sets those).
    pub(super) fn client_ip(&self) -> String {
        let forwarded = self
            .header(header::HeaderName::from_static("x-forwarded-for"))
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if !forwarded.is_empty() {
            return forwarded;
        }
        let real = self
            .header(header::HeaderName::from_static("x-real-ip"))
            .trim();
        if !real.is_empty() {
            return real.to_owned();
        }
        self.peer.map(|p| p.ip().to_string()).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            query: parts.uri.query().map(str::to_owned),
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        })
    }
}

/// A body of form fields, as `application/x-www-form-urlencoded` or as JSON (by its
/// `Content-Type`). A body that cannot be read is 400.
pub(super) struct Fields<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Fields<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (method, headers) = (req.method().clone(), req.headers().clone());
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.trim_start().starts_with("application/json"));
        let parsed = if is_json {
            axum::Json::<T>::from_request(req, state)
                .await
                .map(|axum::Json(v)| v)
                .map_err(|e| e.body_text())
        } else {
            axum::Form::<T>::from_request(req, state)
                .await
                .map(|axum::Form(v)| v)
                .map_err(|e| e.body_text())
        };
        parsed.map(Fields).map_err(|message| {
            if wants_html(&headers) || !is_json {
                PlainError::new(StatusCode::BAD_REQUEST, message).render(&method, &headers)
            } else {
                ApiError::bad_request(message).into_response()
            }
        })
    }
}

/// Iterations from the request: negative is too low, beyond `u32` too high.
pub(super) fn iterations(n: i64) -> Result<u32, PassphraseError> {
    if n < 0 {
        return Err(PassphraseError::IterationsTooLow);
    }
    u32::try_from(n).map_err(|_| PassphraseError::IterationsTooHigh)
}

/// A number given as a JSON number or as text (forms send text); empty is 0.
pub(super) fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Float(f) if f.fract() == 0.0 => Ok(f as i64),
        Raw::Float(_) => Err(serde::de::Error::custom("iterations must be an integer")),
        Raw::Text(s) if s.trim().is_empty() => Ok(0),
        Raw::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("iterations must be an integer")),
    }
}

/// A boolean given as JSON or as text (`true`, `1`, `on`).
pub(super) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Bool(b) => b,
        Raw::Text(s) => matches!(s.trim(), "true" | "1" | "on" | "yes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_numbers() {
        #[derive(Deserialize)]
        struct F {
            #[serde(deserialize_with = "lenient_int")]
            n: i64,
        }
        let n = |body: &str| serde_json::from_str::<F>(body).map(|f| f.n).ok();
        assert_eq!(n(r#"{"n": 650000}"#), Some(650_000));
        assert_eq!(n(r#"{"n": "650000"}"#), Some(650_000));
        assert_eq!(n(r#"{"n": ""}"#), Some(0));
        assert_eq!(n(r#"{"n": "x"}"#), None);
        assert!(matches!(
            iterations(-1),
            Err(PassphraseError::IterationsTooLow)
        ));
        assert!(matches!(
            iterations(1 << 40),
            Err(PassphraseError::IterationsTooHigh)
        ));
    }
}
