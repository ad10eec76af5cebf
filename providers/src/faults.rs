//! The one per-deployment fault switch (reached only when `debug.fault_injection` is on): makes
//! a worker, its queue or the link serving it fail for real, so that tests and the soak drive
//! the real breakers, retries and continuations. One-shot faults (crash, hang, refusals, a cut)
//! disarm as they fire; lasting ones (added latency, an error rate) hold until changed.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use golek_protocol::ErrorCode;

/// Error rates are kept in parts per million.
const PPM: u32 = 1_000_000;

#[derive(Debug, Default)]
pub struct Faults {
    crash_next_batch: AtomicBool,
    hang_next_batch_ms: AtomicU64,
    /// The next requests submitted are refused with this code (a target that answers errors
    /// while its worker lives).
    refuse_next: Mutex<Option<(u32, ErrorCode)>>,
    /// This share of requests (parts per million) is refused with a provider error (5xx).
    error_ppm: AtomicU32,
    /// Each event of an answer is held back this long (a slow target).
    delay_ms: AtomicU64,
    /// The next stream served to a peer is cut (its link reset) after this many events.
    cut_after_events: AtomicU32,
}

impl Faults {
    /// The worker will panic when it next takes work from its queue (a loop, at its next
    /// [`Faults::trip`]).
    pub fn crash_next_batch(&self) {
        self.crash_next_batch.store(true, Ordering::SeqCst);
    }

    /// The worker will block for `ms` milliseconds, holding work, when it next takes a job:
    /// a worker that stops making progress.
    pub fn hang_next_batch(&self, ms: u64) {
        self.hang_next_batch_ms.store(ms, Ordering::SeqCst);
    }

    /// The next `n` requests submitted to the model are refused with `code`.
    pub fn refuse_next(&self, n: u32, code: ErrorCode) {
        *self.refuse_next.lock().unwrap_or_else(|p| p.into_inner()) = (n > 0).then_some((n, code));
    }

    /// From now on a `rate` share (0 to 1) of requests is refused with a provider error.
    pub fn set_error_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * f64::from(PPM)).round() as u32;
        self.error_ppm.store(ppm, Ordering::SeqCst);
    }

    /// From now on every event of an answer is held back `ms` milliseconds.
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The next stream this node serves to a peer is cut after `events` events (0 disarms).
    pub fn cut_next_stream(&self, events: u32) {
        self.cut_after_events.store(events, Ordering::SeqCst);
    }

    /// The code to refuse this request with, if refusals are armed (counts one down) or the
    /// error rate draws it.
    pub fn take_refusal(&self) -> Option<ErrorCode> {
        {
            let mut armed = self.refuse_next.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((left, code)) = *armed {
                *armed = (left > 1).then_some((left - 1, code));
                return Some(code);
            }
        }
        let ppm = self.error_ppm.load(Ordering::SeqCst);
        (ppm > 0 && fastrand::u32(0..PPM) < ppm).then_some(ErrorCode::ProviderError)
    }

    /// How long each event is held back (zero: not at all).
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    /// After how many events the stream now starting is cut, if a cut is armed (once).
    pub fn take_cut(&self) -> Option<u32> {
        match self.cut_after_events.swap(0, Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// Panics if a crash is armed (once).
    pub fn trip(&self, what: &str) {
        if self.crash_next_batch.swap(false, Ordering::SeqCst) {
            panic!("fault injection: {what} crash requested");
        }
    }

    /// The hang armed for the next job, if any (once).
    pub(crate) fn take_hang(&self) -> Option<Duration> {
        match self.hang_next_batch_ms.swap(0, Ordering::SeqCst) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_refusals_count_down_and_rates_draw() {
        let faults = Faults::default();
        assert_eq!(faults.take_refusal(), None);
        faults.refuse_next(2, ErrorCode::Overloaded);
        assert_eq!(faults.take_refusal(), Some(ErrorCode::Overloaded));
        assert_eq!(faults.take_refusal(), Some(ErrorCode::Overloaded));
        assert_eq!(faults.take_refusal(), None);

        faults.set_error_rate(1.0);
        assert!((0..100).all(|_| faults.take_refusal() == Some(ErrorCode::ProviderError)));
        faults.set_error_rate(0.5);
        let refused = (0..2000)
            .filter(|_| faults.take_refusal().is_some())
            .count();
        assert!(
            (700..1300).contains(&refused),
            "{refused} of 2000 at rate 0.5"
        );
        faults.set_error_rate(0.0);
        assert_eq!(faults.take_refusal(), None);
    }

    #[test]
    fn a_cut_fires_once() {
        let faults = Faults::default();
        assert_eq!(faults.take_cut(), None);
        faults.cut_next_stream(3);
        assert_eq!(faults.take_cut(), Some(3));
        assert_eq!(faults.take_cut(), None);
    }
}
