//! A token bucket per minute budget (requests or tokens), pure and tested with explicit time.
//! Requests take one unit up front; tokens are charged as usage is known and may leave the
//! bucket in debt, which refuses the tenant's next requests until it refills.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Bucket {
    per_minute: u64,
    /// Balance in thousandths of a unit (negative: in debt).
    balance: i64,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `per_minute` units.
    pub fn new(per_minute: u32, now: Instant) -> Self {
        Bucket {
            per_minute: u64::from(per_minute),
            balance: i64::from(per_minute).saturating_mul(1000),
            last: now,
        }
    }

    fn capacity(&self) -> i64 {
        (self.per_minute as i64).saturating_mul(1000)
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.last).as_millis() as u64;
        if ms > 0 {
            // per_minute units a minute: per_minute / 60 000 units (per_minute / 60 milli) a ms.
            let add = ms.saturating_mul(self.per_minute) / 60;
            self.balance = self
                .balance
                .saturating_add(i64::try_from(add).unwrap_or(i64::MAX))
                .min(self.capacity());
            self.last = now;
        }
    }

    /// How long until the balance reaches `milli` thousandths of a unit.
    fn wait_for(&self, milli: i64) -> Duration {
        let missing = milli.saturating_sub(self.balance).max(0) as u64;
        let per_ms_milli = self.per_minute.max(1); // milli-units per 60 ms
        Duration::from_millis(missing.saturating_mul(60).div_ceil(per_ms_milli))
    }

    /// Takes `n` units now, or says how long until they are there.
    pub fn take(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let need = i64::from(n).saturating_mul(1000);
        if self.balance >= need {
            self.balance -= need;
            Ok(())
        } else {
            Err(self.wait_for(need))
        }
    }

    /// Admits a request while the bucket is not in debt (or says how long until it is not).
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.balance > 0 {
            Ok(())
        } else {
            Err(self.wait_for(1))
        }
    }

    /// Charges `n` units that were used (the balance may go into debt, at most one minute's).
    pub fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        let cost = i64::try_from(n.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.balance = self.balance.saturating_sub(cost).max(-self.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_refill_steadily() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60, t0);
        for _ in 0..60 {
            assert!(b.take(1, t0).is_ok());
        }
        let wait = b.take(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "one a second at 60 a minute");
        assert!(b.take(1, t0 + Duration::from_millis(999)).is_err());
        assert!(b.take(1, t0 + Duration::from_millis(1000)).is_ok());
        // Never more than a minute's worth saved up.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..60 {
            assert!(b.take(1, later).is_ok());
        }
        assert!(b.take(1, later).is_err());
    }

    #[test]
    fn tokens_charged_after_the_fact_put_the_tenant_in_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100, t0);
        assert!(b.admit(t0).is_ok());
        b.charge(150, t0);
        let wait = b.admit(t0).unwrap_err();
        // 50 tokens of debt at 100 a minute: 30 s (and a little for the first token).
        assert!(
            wait >= Duration::from_secs(30) && wait < Duration::from_secs(31),
            "{wait:?}"
        );
        assert!(b.admit(t0 + Duration::from_secs(31)).is_ok());
        // Debt is capped at a minute's budget, whatever is charged.
        b.charge(u64::MAX, t0 + Duration::from_secs(31));
        let wait = b.admit(t0 + Duration::from_secs(31)).unwrap_err();
        assert!(wait <= Duration::from_secs(61), "{wait:?}");
        let mut zero = Bucket::new(0, t0);
        assert!(zero.take(1, t0).is_err() && zero.admit(t0).is_err());
    }
}
