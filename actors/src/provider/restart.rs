//! The restart policy, as a pure state machine: exponential backoff between restarts, and a
//! restart-intensity limit that opens the model's breaker for a cooldown.
//!
//! Intensity counts every failure in the window, whether or not the worker had come up in
//! between, so a worker that loads and then crashes at once still trips the breaker. After the
//! cooldown one restart is tried (half-open); a failure then, still inside the window, opens the
//! breaker again at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use golek_config::SupervisionConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_restarts: u32,
    pub window: Duration,
    pub breaker_cooldown: Duration,
}

impl From<&SupervisionConfig> for RestartPolicy {
    fn from(c: &SupervisionConfig) -> Self {
        RestartPolicy {
            backoff_initial: c.restart_backoff_initial,
            backoff_max: c.restart_backoff_max,
            max_restarts: c.max_restarts,
            window: c.restart_window,
            breaker_cooldown: c.breaker_cooldown,
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart the worker after this delay.
    Restart { after: Duration },
    /// Too many failures: refuse requests, try again after this delay.
    OpenBreaker { retry_after: Duration },
}

#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    failures: VecDeque<Instant>,
    /// Failures since the worker last came up; drives the backoff exponent.
    consecutive: u32,
}

impl RestartTracker {
    /// A new policy (run time); the failures seen so far still count.
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            failures: VecDeque::new(),
            consecutive: 0,
        }
    }

    pub fn on_failure(&mut self, now: Instant) -> Decision {
        self.failures.push_back(now);
        while let Some(&first) = self.failures.front() {
            if now.duration_since(first) > self.policy.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        if self.failures.len() > self.policy.max_restarts as usize {
            self.consecutive = 0;
            return Decision::OpenBreaker {
                retry_after: self.policy.breaker_cooldown,
            };
        }
        let exponent = self.consecutive.min(20);
        self.consecutive += 1;
        let after = self
            .policy
            .backoff_initial
            .saturating_mul(1u32 << exponent)
            .min(self.policy.backoff_max);
        Decision::Restart { after }
    }

    /// The worker came up: the next failure starts the backoff from the beginning.
    pub fn on_ready(&mut self) {
        self.consecutive = 0;
    }

    pub fn failures_in_window(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            max_restarts: 4,
            window: Duration::from_secs(60),
            breaker_cooldown: Duration::from_secs(30),
        }
    }

    fn restart_after(d: Decision) -> u128 {
        match d {
            Decision::Restart { after } => after.as_millis(),
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_when_ready() {
        let mut t = RestartTracker::new(RestartPolicy {
            max_restarts: 100,
            ..policy()
        });
        let now = Instant::now();
        let delays: Vec<u128> = (0..5).map(|_| restart_after(t.on_failure(now))).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        t.on_ready();
        assert_eq!(restart_after(t.on_failure(now)), 100);
    }

    #[test]
    fn too_many_failures_in_the_window_open_the_breaker() {
        let mut t = RestartTracker::new(policy());
        let start = Instant::now();
        for i in 0..4 {
            t.on_failure(start + Duration::from_secs(i));
            t.on_ready();
        }
        assert_eq!(
            t.on_failure(start + Duration::from_secs(5)),
            Decision::OpenBreaker {
                retry_after: Duration::from_secs(30)
            }
        );
        // Half-open probe fails inside the window: open again at once.
        assert!(matches!(
            t.on_failure(start + Duration::from_secs(36)),
            Decision::OpenBreaker { .. }
        ));
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut t = RestartTracker::new(policy());
        let start = Instant::now();
        for i in 0..4 {
            t.on_failure(start + Duration::from_secs(i));
        }
        let later = start + Duration::from_secs(120);
        assert!(matches!(t.on_failure(later), Decision::Restart { .. }));
        assert_eq!(t.failures_in_window(), 1);
    }
}
