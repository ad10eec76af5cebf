//! Errors as OpenAI-style JSON with the status their code maps to.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use golek_protocol::openai::ErrorBody;
use golek_protocol::{ErrorCode, ErrorInfo};

/// An error answer: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub info: ErrorInfo,
    /// Seconds for `Retry-After`, sent with 429 and 503.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn retry_after(mut self, seconds: u32) -> Self {
        if matches!(
            self.info.code,
            ErrorCode::Overloaded | ErrorCode::Unavailable
        ) && self.retry_after_s.is_none()
        {
            self.retry_after_s = Some(seconds);
        }
        self
    }
}

impl From<ErrorInfo> for ApiError {
    fn from(info: ErrorInfo) -> Self {
        ApiError {
            retry_after_s: info.retry_after_s,
            info,
        }
    }
}

impl From<golek_actors::ActorError> for ApiError {
    fn from(err: golek_actors::ActorError) -> Self {
        ApiError::from(ErrorInfo::new(ErrorCode::Unavailable, err.to_string()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.info.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(ErrorBody::from(&self.info))).into_response();
        if self.info.code == ErrorCode::PayloadTooLarge {
            // The rest of the body was not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after_s {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}
