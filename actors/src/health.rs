//! The node's own health, beside its models' readiness: hung workers that were abandoned
//! (their threads cannot be killed and keep their memory) count here, and past
//! `supervision.max_hung_workers` the node reports itself unhealthy (`/healthz` 503) so that
//! its process supervisor restarts it.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct Health {
    abandoned_workers: AtomicU32,
    max_hung_workers: AtomicU32,
}

impl Health {
    pub fn new(max_hung_workers: u32) -> Self {
        Health {
            abandoned_workers: AtomicU32::new(0),
            max_hung_workers: AtomicU32::new(max_hung_workers),
        }
    }

    /// A changed `supervision.max_hung_workers` (run time).
    pub fn set_max_hung_workers(&self, max: u32) {
        self.max_hung_workers.store(max, Ordering::SeqCst);
    }

    /// A hung worker was given up on; returns the count so far.
    pub fn abandon_worker(&self) -> u32 {
        self.abandoned_workers
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1)
    }

    pub fn abandoned_workers(&self) -> u32 {
        self.abandoned_workers.load(Ordering::SeqCst)
    }

    /// False once `max_hung_workers` workers were abandoned.
    pub fn healthy(&self) -> bool {
        self.abandoned_workers() < self.max_hung_workers.load(Ordering::SeqCst).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_unhealthy_once_enough_workers_hung() {
        let health = Health::new(2);
        assert!(health.healthy());
        assert_eq!(health.abandon_worker(), 1);
        assert!(health.healthy());
        assert_eq!(health.abandon_worker(), 2);
        assert!(!health.healthy());
    }
}
