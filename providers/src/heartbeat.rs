//! The worker's sign of life, shared by a model's queue and its senders.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The worker's sign of life: when it last touched its queue and whether it holds work. A
/// worker that holds work and has not come back to its queue for long is hung.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    epoch: Instant,
    beat_ms: AtomicU64,
    pub(crate) busy: AtomicBool,
}

impl Heartbeat {
    pub(crate) fn new() -> Self {
        Heartbeat {
            epoch: Instant::now(),
            beat_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    pub(crate) fn beat(&self, busy: bool) {
        let ms = self.epoch.elapsed().as_millis().min(u64::MAX as u128) as u64;
        self.beat_ms.store(ms, Ordering::SeqCst);
        self.busy.store(busy, Ordering::SeqCst);
    }

    /// How long the worker has held work without coming back to its queue (`None` when idle).
    pub(crate) fn stalled_for(&self) -> Option<Duration> {
        if !self.busy.load(Ordering::SeqCst) {
            return None;
        }
        let now = self.epoch.elapsed();
        let beat = Duration::from_millis(self.beat_ms.load(Ordering::SeqCst));
        Some(now.saturating_sub(beat))
    }
}
