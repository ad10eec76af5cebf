//! Reliability decisions as pure state machines, unit-tested with explicit time: a breaker per
//! target driven by request outcomes ([`breaker`]), which outcomes count ([`outcome`]), and a
//! retry budget with backoff ([`retry`]). The request path holds them in [`Reliability`]
//! behind a lock it takes for a moment; nothing there waits or does I/O. The
//! [`ReliabilityManager`] actor owns that state in the supervision tree.

pub mod breaker;
pub mod manager;
pub mod outcome;
pub mod retry;
pub mod state;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use manager::{ReliabilityManager, ReliabilityMsg};
pub use outcome::Outcome;
pub use retry::{backoff, RetryBudget};
pub use state::{Reliability, Target};
