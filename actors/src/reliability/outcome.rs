//! Which outcomes of a request count against its target. Connection failures, resets, timeouts
//! and the target's own failures (5xx-class) count; a client's mistakes (400, 404, 413) and
//! cancellations never do; an overloaded target is busy, not broken.

use golek_protocol::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Counts toward the target's breaker.
    Failure,
    /// Says nothing about the target's health (client errors, cancellations, overload).
    Neutral,
}

impl Outcome {
    /// The outcome of an answer that ended with `code`.
    pub fn of_error(code: ErrorCode) -> Outcome {
        match code {
            ErrorCode::Unavailable
            | ErrorCode::Timeout
            | ErrorCode::ProviderError
            | ErrorCode::Internal => Outcome::Failure,
            _ => Outcome::Neutral,
        }
    }

    /// Whether another target may take a request that got `code` before any output reached
    /// its client: overloaded, unavailable, or its provider failed (inference is idempotent;
    /// the retry budget bounds what a deterministic failure costs).
    pub fn retryable(code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::Overloaded | ErrorCode::Unavailable | ErrorCode::ProviderError
        )
    }

    /// Whether a fallback chain passes a request that got `code` from one target (before any
    /// output) to its next: the target is missing, down, busy or failing, not the request.
    pub fn falls_back(code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::NotFound
                | ErrorCode::Overloaded
                | ErrorCode::Unavailable
                | ErrorCode::ProviderError
                | ErrorCode::Internal
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_never_count_and_target_failures_do() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::NotFound,
            ErrorCode::Overloaded,
        ] {
            assert_eq!(Outcome::of_error(code), Outcome::Neutral, "{code:?}");
        }
        for code in [
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::ProviderError,
        ] {
            assert_eq!(Outcome::of_error(code), Outcome::Failure, "{code:?}");
        }
        assert!(Outcome::retryable(ErrorCode::Overloaded));
        assert!(Outcome::retryable(ErrorCode::Unavailable));
        assert!(Outcome::retryable(ErrorCode::ProviderError));
        assert!(!Outcome::retryable(ErrorCode::RateLimited));
        assert!(!Outcome::retryable(ErrorCode::InvalidRequest));
    }
}
