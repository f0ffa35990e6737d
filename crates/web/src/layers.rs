//! The middleware stack every router shares: request ids, tracing, panics and the body limit.
//!
//! From the outside in: invalid incoming `X-Request-Id` values are dropped, a fresh id
//! is generated when none is left, the id is copied onto the response, a tracing span
//! wraps the request, panics become 500 JSON:API errors, and request bodies are capped.

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderName;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::error::{ApiError, INTERNAL_DETAIL};

/// The header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming request id that is reused rather than replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

pub(crate) fn with_common_layers(router: Router, body_limit: usize) -> Router {
    router
        // Extractors see the body already limited below; a second cap would only
        // reintroduce axum's 2 MB default.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(body_limit, limit_body))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_response(|res: &Response, latency: Duration, _span: &Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "response"
                    );
                }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
        .layer(middleware::map_request(drop_invalid_request_id))
}

/// Whether an incoming request id is safe to reuse in logs and responses.
pub(crate) fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

async fn drop_invalid_request_id(mut req: Request) -> Request {
    let invalid = req
        .headers()
        .get_all(&REQUEST_ID_HEADER)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !is_valid_request_id(v.as_bytes()));
    if invalid {
        req.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    req
}

/// The span of one request. Only the path is recorded: query strings may carry tokens
/// (`bearer_token=`), and headers (`Authorization`, `Cookie`) are never logged.
fn make_span(req: &Request) -> Span {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        id,
        method = %req.method(),
        path = req.uri().path(),
        domain = tracing::field::Empty
    )
}

/// Whether a request streams file content: uploads (`POST /files/…`, `PUT /files/:id`)
/// are bounded by the instance's quota, checked by the VFS while it streams them to
/// disk, not by the body limit meant for JSON.
fn is_upload(req: &Request) -> bool {
    let path = req.uri().path();
    (req.method() == axum::http::Method::POST || req.method() == axum::http::Method::PUT)
        && path.starts_with("/files/")
        && !path.starts_with("/files/_")
        && !path.contains("/relationships/")
        && !path.starts_with("/files/trash")
}

async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if is_upload(&req) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return ApiError::payload_too_large(format!(
            "The request body is larger than the limit of {limit} bytes."
        ))
        .into_response();
    }
    // Bodies without a length (chunked) are cut while they are read: extractors then
    // answer 413 themselves.
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic payload)");
    tracing::error!(panic = message, "request handler panicked");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        INTERNAL_DETAIL,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::{get, post};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn test_router(limit: usize) -> Router {
        let routes = Router::new()
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .route("/panic", get(boom));
        with_common_layers(routes, limit)
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    async fn call(router: Router, req: Request) -> (StatusCode, HeaderMap, String) {
        let res = router.oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn bodies_without_length_are_cut() {
        // No Content-Length header: the limit applies while the body is read.
        let req = Request::post("/echo")
            .body(Body::from(vec![0u8; 100]))
            .expect("request");
        let (status, _, _) = call(test_router(16), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

        let req = Request::post("/echo")
            .body(Body::from(vec![0u8; 16]))
            .expect("request");
        let (status, _, body) = call(test_router(16), req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "16"));
    }

    #[tokio::test]
    async fn panics_become_json_api_errors() {
        let mut req = Request::get("/panic").body(Body::empty()).expect("request");
        req.headers_mut()
            .insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc"));
        let (status, headers, body) = call(test_router(16), req).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(headers[CONTENT_TYPE], "application/vnd.api+json");
        assert_eq!(headers[REQUEST_ID_HEADER], "abc");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"status": "500", "title": "Internal Server Error",
                "detail": INTERNAL_DETAIL, "source": {}}]})
        );
    }

    #[test]
    fn request_id_validation() {
        assert!(is_valid_request_id(b"3f2a-01_x.y:z"));
        assert!(!is_valid_request_id(b""));
        assert!(!is_valid_request_id(b"has space"));
        assert!(!is_valid_request_id(b"line\nbreak"));
        assert!(!is_valid_request_id("é".as_bytes()));
        assert!(is_valid_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_valid_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
    }
}
