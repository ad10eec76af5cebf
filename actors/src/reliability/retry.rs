//! Retries: a budget that caps them to a fraction of recent requests (so a sick cluster is
//! not hammered by its own retries), and exponential backoff with full jitter between them.

use std::time::{Duration, Instant};

/// Retries may be at most `ratio` of the requests seen, plus `min_per_s` a second so that a
/// quiet node can still retry. Balance is kept in thousandths of a retry.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio_permille: u64,
    min_per_s: u64,
    /// At most this many retries saved up.
    cap: u64,
    balance: u64,
    last_refill: Instant,
    /// Retries refused for want of budget.
    pub refused: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_s: u32, now: Instant) -> Self {
        let ratio_permille = (ratio.clamp(0.0, 10.0) * 1000.0) as u64;
        RetryBudget {
            ratio_permille,
            min_per_s: u64::from(min_per_s),
            cap: 100 * 1000,
            balance: u64::from(min_per_s) * 1000,
            last_refill: now,
            refused: 0,
        }
    }

    /// A new ratio and floor; what was saved up stays.
    pub fn set_policy(&mut self, ratio: f64, min_per_s: u32) {
        self.ratio_permille = (ratio.clamp(0.0, 10.0) * 1000.0) as u64;
        self.min_per_s = u64::from(min_per_s);
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.last_refill).as_millis() as u64;
        if ms > 0 {
            let add = ms.saturating_mul(self.min_per_s);
            self.balance = self.balance.saturating_add(add).min(self.cap);
            self.last_refill = now;
        }
    }

    /// A request was made (first attempts only).
    pub fn on_request(&mut self, now: Instant) {
        self.refill(now);
        self.balance = self
            .balance
            .saturating_add(self.ratio_permille)
            .min(self.cap);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.balance >= 1000 {
            self.balance -= 1000;
            true
        } else {
            self.refused = self.refused.saturating_add(1);
            false
        }
    }
}

/// The wait before retry number `attempt` (1 for the first retry): a random duration up to
/// `base * 2^(attempt-1)`, capped at `max` ("full jitter"), so retries from many clients
/// spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let ceiling = base.saturating_mul(1 << exp).min(max);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(if ms == 0 { 0 } else { fastrand::u64(0..=ms) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_their_share_of_requests() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(0.2, 0, t0);
        for _ in 0..100 {
            budget.on_request(t0);
        }
        let granted = (0..100).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 20);
        assert_eq!(budget.refused, 80);
    }

    #[test]
    fn a_quiet_node_still_gets_its_minimum_a_second() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(0.0, 2, t0);
        assert!(budget.try_retry(t0));
        assert!(budget.try_retry(t0));
        assert!(!budget.try_retry(t0));
        assert!(budget.try_retry(t0 + Duration::from_millis(500)));
        assert!(!budget.try_retry(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(100);
        for _ in 0..200 {
            assert!(backoff(1, base, max) <= base);
            assert!(backoff(3, base, max) <= Duration::from_millis(40));
            assert!(backoff(40, base, max) <= max);
        }
        assert_eq!(backoff(1, Duration::ZERO, max), Duration::ZERO);
    }
}
