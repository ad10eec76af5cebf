//! Reliability decisions as pure state machines, unit-tested with explicit time: a breaker per
//! target driven by request outcomes ([`breaker`]), which outcomes count ([`outcome`]), and a
//! retry budget with backoff ([`retry`]). The request path holds them behind a lock it takes
//! for a moment; nothing here waits or does I/O.

pub mod breaker;
pub mod outcome;
pub mod retry;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use outcome::Outcome;
pub use retry::{backoff, RetryBudget};
