//! How an [`ApiError`] becomes an HTTP answer, decided once: its status and
//! the JSON API's error code. HTML pages use the same status with a page
//! (`pages::error_page`); the JSON API answers
//! `{"error":{"code":…,"message":…}}`.

use crate::api::ApiError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The status and JSON error code of `e`.
pub fn status_of(e: &ApiError) -> (StatusCode, &'static str) {
    match e {
        ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        ApiError::Exists(_) => (StatusCode::CONFLICT, "precondition"),
        ApiError::Precondition(_) => (StatusCode::CONFLICT, "precondition"),
        ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        ApiError::Denied(_) => (StatusCode::FORBIDDEN, "denied"),
        ApiError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many"),
        ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        // The events asked for are gone for good.
        ApiError::Pruned { .. } => (StatusCode::GONE, "precondition"),
        ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// An error of the JSON API.
#[derive(Debug)]
pub struct JsonError(pub ApiError);

impl From<ApiError> for JsonError {
    fn from(e: ApiError) -> Self {
        JsonError(e)
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let (status, code) = status_of(&self.0);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "API request failed");
        }
        let body = serde_json::json!({"error": {"code": code, "message": self.0.to_string()}});
        json_response(status, &body)
    }
}

/// `value` as a JSON body with `status`.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                "{{\"error\":{{\"code\":\"internal\",\"message\":{:?}}}}}",
                e.to_string()
            ),
        )
            .into_response(),
    }
}
