//! Fault switches (`debug.fault_injection` only): the one per-deployment fault type, reached
//! through the routing table.

use std::time::Duration;

use golek_protocol::{ErrorCode, ErrorInfo};
use tokio::sync::mpsc;

use super::{EventRx, ModelState, RouterHandle};

/// The fault switches that last until changed (`POST /admin/debug/fault/{model}`).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Each event of an answer is held back this long.
    #[serde(default)]
    pub delay_ms: u64,
    /// This share (0 to 1) of requests gets a provider error (5xx) while the worker lives.
    #[serde(default)]
    pub error_rate: f64,
    /// The next stream served to a peer is cut after this many events (0: none).
    #[serde(default)]
    pub cut_after_events: u32,
}

/// `rx` with each event held back `delay` (the added-latency fault). The relay ends when
/// either side does; dropping its receiver cancels the work as dropping `rx` would.
pub(super) fn delayed(mut rx: EventRx, delay: Duration) -> EventRx {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                () = tx.closed() => return,
            };
            let Some(event) = next else { return };
            tokio::time::sleep(delay).await;
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    out
}

impl RouterHandle {
    /// Makes the model's worker panic when it next takes work (fault injection for tests).
    pub fn inject_crash(&self, model: &str) -> Result<(), ErrorInfo> {
        let entry = self.entry(model)?;
        match entry.faults {
            Some(faults) if entry.state == ModelState::Ready => {
                faults.crash_next_batch();
                Ok(())
            }
            _ => Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {model:?} has no running worker"),
            )),
        }
    }

    /// Makes the model's worker block, holding work, for `ms` when it next takes a job.
    pub fn inject_hang(&self, model: &str, ms: u64) -> Result<(), ErrorInfo> {
        let entry = self.entry(model)?;
        match entry.faults {
            Some(faults) if entry.state == ModelState::Ready => {
                faults.hang_next_batch(ms);
                Ok(())
            }
            _ => Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {model:?} has no running worker"),
            )),
        }
    }

    /// Sets the lasting faults of a model served here.
    pub fn set_faults(&self, model: &str, settings: FaultSettings) -> Result<(), ErrorInfo> {
        if !(settings.error_rate.is_finite() && (0.0..=1.0).contains(&settings.error_rate)) {
            return Err(ErrorInfo::invalid(
                "error_rate",
                format!(
                    "error_rate: must be between 0 and 1, got {}",
                    settings.error_rate
                ),
            ));
        }
        if settings.delay_ms > 60_000 {
            return Err(ErrorInfo::invalid(
                "delay_ms",
                format!("delay_ms: at most 60000, got {}", settings.delay_ms),
            ));
        }
        let entry = self.entry(model)?;
        let Some(faults) = entry.faults else {
            return Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {model:?} is not served on this node"),
            ));
        };
        faults.set_delay_ms(settings.delay_ms);
        faults.set_error_rate(settings.error_rate);
        faults.cut_next_stream(settings.cut_after_events);
        Ok(())
    }

    /// Makes the model refuse its next `n` requests with `code` (its worker stays up).
    pub fn inject_refusals(&self, model: &str, n: u32, code: ErrorCode) -> Result<(), ErrorInfo> {
        let entry = self.entry(model)?;
        match entry.faults {
            Some(faults) => {
                faults.refuse_next(n, code);
                Ok(())
            }
            None => Err(ErrorInfo::new(
                ErrorCode::Unavailable,
                format!("model {model:?} is not served on this node"),
            )),
        }
    }
}
