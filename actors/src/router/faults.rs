//! Fault switches (`debug.fault_injection` only): the one per-deployment fault type, reached
//! through the routing table.

use golek_protocol::{ErrorCode, ErrorInfo};

use super::{ModelState, RouterHandle};

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
