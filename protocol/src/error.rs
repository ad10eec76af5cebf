//! The error codes every layer maps its failures to.
//!
//! One mapping, used everywhere: an error becomes an [`ErrorCode`], the code decides the HTTP
//! status and the stable snake_case `type` in the JSON error body.

use serde::{Deserialize, Serialize};

/// What kind of failure happened, independently of the layer that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be parsed or a field is invalid (400).
    InvalidRequest,
    /// The model, route or resource does not exist (404).
    NotFound,
    /// The request method is not allowed on this route (405).
    MethodNotAllowed,
    /// The request body exceeds the configured limit (413).
    PayloadTooLarge,
    /// The model's queue (its bulkhead) is full; retry later (429).
    Overloaded,
    /// The provider failed while running the request (502).
    ProviderError,
    /// The model is not ready, restarting, or its breaker is open (503).
    Unavailable,
    /// The request ran past its deadline (504).
    Timeout,
    /// A bug or an unexpected condition inside the node (500).
    Internal,
    /// No valid API key (401).
    Unauthorized,
    /// The key is valid but may not do this (a tenant's key on an admin route) (403).
    Forbidden,
    /// The tenant is over one of its limits (requests or tokens per minute, concurrency, its
    /// share of a model); retry after `Retry-After` (429). Unlike `Overloaded`, another replica
    /// is not tried.
    RateLimited,
}

impl ErrorCode {
    /// Every code, for metrics pre-registration and docs.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidRequest,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Overloaded,
        ErrorCode::ProviderError,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
    ];

    /// The HTTP status this code answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Overloaded => 429,
            ErrorCode::ProviderError => 502,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RateLimited => 429,
        }
    }

    /// The stable snake_case name used as the error `type` and as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request_error",
            ErrorCode::NotFound => "not_found_error",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Overloaded => "overloaded_error",
            ErrorCode::ProviderError => "provider_error",
            ErrorCode::Unavailable => "unavailable_error",
            ErrorCode::Timeout => "timeout_error",
            ErrorCode::Internal => "internal_error",
            ErrorCode::Unauthorized => "authentication_error",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::RateLimited => "rate_limit_error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it crosses a layer boundary: a code, a human message and, for validation
/// errors, the request field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    pub message: String,
    /// The request field the error is about (`input`, `input[2]`, `model`), when there is one.
    pub param: Option<String>,
    /// When to try again, in seconds, where the error knows (a tenant's budget refills).
    #[serde(default)]
    pub retry_after_s: Option<u32>,
}

impl ErrorInfo {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            retry_after_s: None,
        }
    }

    /// A validation error about one field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
            param: Some(param.into()),
            retry_after_s: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
}

impl std::fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(param) => write!(f, "{} ({}: {})", self.message, self.code, param),
            None => write!(f, "{} ({})", self.message, self.code),
        }
    }
}

impl std::error::Error for ErrorInfo {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_convention() {
        let statuses: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.http_status()).collect();
        assert_eq!(
            statuses,
            vec![400, 404, 405, 413, 429, 502, 503, 504, 500, 401, 403, 429]
        );
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "type names are unique");
    }
}
