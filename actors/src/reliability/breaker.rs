//! A circuit breaker for one target (a peer, a model), driven by request outcomes.
//!
//! Closed: requests flow; failures within `window` are counted, and `failures` of them open
//! the breaker. Open: the target is skipped until `cooldown` has passed. Half-open: one probe
//! request is let through; its success closes the breaker, its failure opens it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker.
    pub failures: u32,
    pub window: Duration,
    /// How long an open breaker skips its target before one probe.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(10),
        }
    }
}

impl From<&golek_config::ReliabilityConfig> for BreakerConfig {
    fn from(r: &golek_config::ReliabilityConfig) -> Self {
        BreakerConfig {
            failures: r.breaker_failures,
            window: r.breaker_window,
            cooldown: r.breaker_cooldown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    failures: VecDeque<Instant>,
    opened_at: Option<Instant>,
    /// A half-open probe went out then and has not come back. A probe that never reports (its
    /// request was cancelled, or said nothing about the target) is given up after a cooldown,
    /// so the breaker can never stay half-open for good.
    probing: Option<Instant>,
    /// Times it opened, for the admin view.
    pub opened: u64,
}

impl Breaker {
    /// A new policy; the state and the failures seen so far stay.
    pub fn set_config(&mut self, config: BreakerConfig) {
        self.config = config;
    }

    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed,
            failures: VecDeque::new(),
            opened_at: None,
            probing: None,
            opened: 0,
        }
    }

    /// The state at `now` (an open breaker past its cooldown reads half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) if now.duration_since(at) >= self.config.cooldown => {
                BreakerState::HalfOpen
            }
            (state, _) => state,
        }
    }

    /// Whether a request may go to the target now; a half-open breaker lets one probe through
    /// (and counts it as sent).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                self.state = BreakerState::HalfOpen;
                match self.probing {
                    Some(sent) if now.saturating_duration_since(sent) < self.config.cooldown => {
                        false
                    }
                    _ => {
                        self.probing = Some(now);
                        true
                    }
                }
            }
        }
    }

    pub fn on_success(&mut self, _now: Instant) {
        if self.state != BreakerState::Closed {
            self.state = BreakerState::Closed;
            self.opened_at = None;
        }
        self.probing = None;
        self.failures.clear();
    }

    /// An outcome that says nothing about the target (an overload, a client's mistake, a
    /// cancellation): a probe that ends so lets the next request probe.
    pub fn on_neutral(&mut self, _now: Instant) {
        self.probing = None;
    }

    /// Records a failure; returns true when it opened the breaker.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        if matches!(self.state(now), BreakerState::HalfOpen) || self.probing.is_some() {
            self.open(now);
            return true;
        }
        if self.state == BreakerState::Open {
            return false;
        }
        self.failures.push_back(now);
        while let Some(&first) = self.failures.front() {
            if now.duration_since(first) > self.config.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        if self.failures.len() >= self.config.failures.max(1) as usize {
            self.open(now);
            return true;
        }
        false
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.probing = None;
        self.failures.clear();
        self.opened = self.opened.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }

    #[test]
    fn failures_in_the_window_open_it_and_old_ones_expire() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0 + Duration::from_secs(1)));
        // The first failure leaves the window before the third arrives.
        assert!(!b.on_failure(t0 + Duration::from_secs(11)));
        assert_eq!(b.state(t0 + Duration::from_secs(11)), BreakerState::Closed);
        // The second and the third are still in the window: a fourth opens it.
        assert!(b.on_failure(t0 + Duration::from_secs(11)));
        assert_eq!(b.state(t0 + Duration::from_secs(12)), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(13)));
        assert_eq!(b.opened, 1);
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allow(later), "one probe goes through");
        assert!(!b.allow(later), "and only one");
        // The probe fails: open again, for a new cooldown.
        assert!(b.on_failure(later));
        assert!(!b.allow(later + Duration::from_secs(1)));
        let again = later + Duration::from_secs(5);
        assert!(b.allow(again));
        b.on_success(again);
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.allow(again) && b.allow(again));
        assert_eq!(b.opened, 2);
    }

    #[test]
    fn a_probe_that_never_reports_does_not_hold_the_breaker_half_open() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let half = t0 + Duration::from_secs(5);
        assert!(b.allow(half));
        // Its request said nothing about the target: the next one probes.
        b.on_neutral(half);
        assert!(b.allow(half));
        // This probe is lost (cancelled, never recorded): after a cooldown another goes.
        assert!(!b.allow(half + Duration::from_secs(4)));
        assert!(b.allow(half + Duration::from_secs(5)));
        b.on_success(half + Duration::from_secs(5));
        assert_eq!(b.state(half + Duration::from_secs(5)), BreakerState::Closed);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success(t0);
        assert!(!b.on_failure(t0));
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
