//! The error families of the API and the one place that maps errors to HTTP (spec core-api B.2).
//!
//! - [`ApiError`]: JSON:API error objects, the default for every API route.
//! - [`CouchError`]: CouchDB-style bodies, used under `/data`.
//! - [`PlainError`]: framework-level errors (unknown route, bad method, missing token),
//!   rendered as JSON, HTML or text depending on `Accept`.
//!
//! A store failure never reaches a client with its details: [`StoreError::Internal`] is
//! logged with its source chain and answered with a generic message.

use std::fmt;

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_store::StoreError;
use serde::Serialize;
use serde_json::json;

/// The media type of every JSON:API response, whatever the request's `Accept` says.
pub const JSON_API: &str = "application/vnd.api+json";

/// What clients are told when the server failed on its own; the cause goes to the logs.
pub const INTERNAL_DETAIL: &str =
    "The server failed to handle this request; the cause is in the server logs.";

/// A JSON:API error object, answered as `{"errors": [ … ]}`.
///
/// `status` is rendered as a string and is also the HTTP status. `title` defaults to the
/// status' reason phrase; `source` is always rendered (`{}` when empty), as clients of
/// the original server expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    /// A stable machine-readable code, for errors that clients branch on.
    pub code: Option<String>,
    /// Which part of the request is wrong.
    pub source: Option<ErrorSource>,
}

/// The `source` member of a JSON:API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorSource {
    /// A JSON pointer into the request body, e.g. `/data/attributes/name`.
    Pointer(String),
    /// The name of the query parameter at fault.
    Parameter(String),
}

impl ApiError {
    /// An error whose title is the status' reason phrase.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: status_title(status).to_owned(),
            detail: detail.into(),
            code: None,
            source: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 422 `Invalid Parameter` naming the query parameter at fault.
    pub fn invalid_parameter(parameter: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
            .with_title("Invalid Parameter")
            .with_source(ErrorSource::Parameter(parameter.into()))
    }

    /// 422 `Invalid Attribute` pointing at `/data/attributes/<attribute>`.
    pub fn invalid_attribute(attribute: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
            .with_title("Invalid Attribute")
            .with_source(ErrorSource::Pointer(format!(
                "/data/attributes/{attribute}"
            )))
    }

    /// A 500 with a generic detail; `cause` and its source chain are logged.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_DETAIL)
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_source(mut self, source: ErrorSource) -> Self {
        self.source = Some(source);
        self
    }

    /// The JSON body, `{"errors": [ … ]}`.
    pub fn body(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("status".into(), self.status.as_u16().to_string().into());
        object.insert("title".into(), self.title.clone().into());
        object.insert("detail".into(), self.detail.clone().into());
        if let Some(code) = &self.code {
            object.insert("code".into(), code.clone().into());
        }
        let source = match &self.source {
            Some(source) => serde_json::to_value(source).unwrap_or_else(|_| json!({})),
            None => json!({}),
        };
        object.insert("source".into(), source);
        json!({ "errors": [object] })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.title,
            self.status.as_u16(),
            self.detail
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, JSON_API, &self.body())
    }
}

/// Outside `/data`, store errors become JSON:API errors titled with CouchDB's error name.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let couch = CouchError::from(err);
        if couch.status == StatusCode::INTERNAL_SERVER_ERROR {
            return Self::new(couch.status, couch.reason);
        }
        Self::new(couch.status, couch.reason).with_title(couch.error)
    }
}

/// A CouchDB-style error, answered under `/data` as
/// `{"ok": false, "status": "404", "error": "not_found", "reason": "missing"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouchError {
    pub status: StatusCode,
    /// CouchDB's error name: `not_found`, `conflict`, `bad_request`…
    pub error: String,
    pub reason: String,
}

impl CouchError {
    pub fn new(status: StatusCode, error: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            reason: reason.into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({
            "ok": false,
            "status": self.status.as_u16().to_string(),
            "error": self.error,
            "reason": self.reason,
        })
    }
}

impl fmt::Display for CouchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.error,
            self.status.as_u16(),
            self.reason
        )
    }
}

impl std::error::Error for CouchError {}

impl IntoResponse for CouchError {
    fn into_response(self) -> Response {
        json_response(self.status, "application/json", &self.body())
    }
}

impl From<StoreError> for CouchError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(reason) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", reason.as_str())
            }
            StoreError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "Document update conflict.",
            ),
            StoreError::InvalidInput(reason) => {
                Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
            }
            StoreError::Internal(_) => {
                tracing::error!(error = %ErrorChain(&err), "document store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    INTERNAL_DETAIL,
                )
            }
        }
    }
}

/// A framework-level error (unknown route, wrong method, missing token, CSRF…).
///
/// Its body depends on the request: `{"error": "<message>"}` when `Accept` mentions
/// JSON, a small HTML page when it mentions `text/html`, plain text otherwise, and
/// nothing for `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainError {
    pub status: StatusCode,
    pub message: String,
}

impl PlainError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// Renders the error for a request with this method and these headers.
    pub fn render(&self, method: &Method, headers: &HeaderMap) -> Response {
        if method == Method::HEAD {
            return self.status.into_response();
        }
        let accept = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("json") {
            json_response(
                self.status,
                "application/json",
                &json!({ "error": self.message }),
            )
        } else if accept.contains("text/html") {
            let text = html_escape(&self.message);
            let page = format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{text}</title></head>\n<body><h1>{text}</h1></body>\n</html>\n"
            );
            with_content_type(self.status, "text/html; charset=utf-8", page)
        } else {
            with_content_type(
                self.status,
                "text/plain; charset=utf-8",
                self.message.clone(),
            )
        }
    }
}

/// The fallback of every router: 404 `Not Found` in the requested flavour.
pub(crate) async fn route_not_found(method: Method, headers: HeaderMap) -> Response {
    PlainError::new(StatusCode::NOT_FOUND, "Not Found").render(&method, &headers)
}

/// Answers a known path called with the wrong method; axum keeps the `Allow` header.
pub(crate) async fn method_not_allowed(method: Method, headers: HeaderMap) -> Response {
    PlainError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").render(&method, &headers)
}

/// Formats an error with its whole source chain, `outer: inner: innermost`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

/// The title the original server gives a status (Go's `http.StatusText`), which
/// differs from the current reason phrases for a few codes.
fn status_title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        416 => "Requested Range Not Satisfiable",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// A JSON:API response (`application/vnd.api+json`).
pub(crate) fn jsonapi(
    status: StatusCode,
    body: impl std::borrow::Borrow<serde_json::Value>,
) -> Response {
    json_response(status, JSON_API, body.borrow())
}

fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: &serde_json::Value,
) -> Response {
    // Serializing a `Value` cannot fail; fall back to an empty object rather than panic.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    with_content_type(status, content_type, bytes)
}

fn with_content_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use hearth_store::NotFoundReason;

    use super::*;

    #[test]
    fn api_error_body() {
        let err = ApiError::not_found("Instance not found");
        assert_eq!(
            err.body(),
            json!({"errors": [{"status": "404", "title": "Not Found", "detail": "Instance not found", "source": {}}]})
        );
        let err = ApiError::invalid_parameter("domain", "bad domain").with_code("bad_domain");
        assert_eq!(
            err.body(),
            json!({"errors": [{"status": "422", "title": "Invalid Parameter", "detail": "bad domain",
                "code": "bad_domain", "source": {"parameter": "domain"}}]})
        );
        let err = ApiError::invalid_attribute("name", "empty");
        assert_eq!(
            err.body()["errors"][0]["source"],
            json!({"pointer": "/data/attributes/name"})
        );
        assert_eq!(
            ApiError::payload_too_large("x").title,
            "Request Entity Too Large"
        );
    }

    #[test]
    fn store_errors() {
        let cases = [
            (
                StoreError::NotFound(NotFoundReason::Missing),
                404,
                "not_found",
                "missing",
            ),
            (
                StoreError::NotFound(NotFoundReason::Deleted),
                404,
                "not_found",
                "deleted",
            ),
            (
                StoreError::Conflict,
                409,
                "conflict",
                "Document update conflict.",
            ),
            (
                StoreError::invalid("bad _rev"),
                400,
                "bad_request",
                "bad _rev",
            ),
            (
                StoreError::internal(std::io::Error::other("disk on fire")),
                500,
                "internal_server_error",
                INTERNAL_DETAIL,
            ),
        ];
        for (err, status, error, reason) in cases {
            let couch = CouchError::from(err);
            assert_eq!(
                couch.body(),
                json!({"ok": false, "status": status.to_string(), "error": error, "reason": reason})
            );
            assert_eq!(couch.status.as_u16(), status);
        }
        let api = ApiError::from(StoreError::Conflict);
        assert_eq!((api.status.as_u16(), api.title.as_str()), (409, "conflict"));
        let api = ApiError::from(StoreError::internal(std::io::Error::other("secret path")));
        assert_eq!(api.title, "Internal Server Error");
        assert!(!api.detail.contains("secret"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
