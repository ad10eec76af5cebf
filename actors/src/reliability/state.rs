//! The reliability state the request path reads and feeds: an outcome breaker per target (a
//! model on this node, a peer) and the retry budget. The ReliabilityManager owns it; the router
//! and the peer links share it and take its lock for a moment per decision, never waiting on a
//! mailbox. The decisions themselves are the pure state machines of this module's siblings.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use golek_config::ReliabilityConfig;
use serde_json::{json, Value};

use super::{Breaker, BreakerConfig, BreakerState, Outcome, RetryBudget};
use crate::metrics as m;

/// Where a request can be sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A model served by this node's own worker (or its remote provider).
    Local(String),
    /// Another node of the cluster.
    Peer(String),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Local(_) => "model",
            Target::Peer(_) => "peer",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Local(n) | Target::Peer(n) => n,
        }
    }
}

pub struct Reliability {
    /// Changes at run time ([`Reliability::reconfigure`]).
    config: Mutex<ReliabilityConfig>,
    breaker_config: Mutex<BreakerConfig>,
    breakers: Mutex<BTreeMap<Target, Breaker>>,
    budget: Mutex<RetryBudget>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reliability {
    pub fn new(config: &ReliabilityConfig) -> Self {
        Reliability {
            config: Mutex::new(config.clone()),
            breaker_config: Mutex::new(BreakerConfig::from(config)),
            breakers: Mutex::new(BTreeMap::new()),
            budget: Mutex::new(RetryBudget::new(
                config.retry_budget_ratio,
                config.retry_budget_min_per_s,
                Instant::now(),
            )),
        }
    }

    /// Times one stream may move to another replica.
    pub fn max_continuations(&self) -> u32 {
        lock(&self.config).max_continuations
    }

    /// Applies a changed `[reliability]`: every breaker (open ones keep their state and count)
    /// and the retry budget (keeping what it has saved) take the new policy at once.
    pub fn reconfigure(&self, config: &ReliabilityConfig) {
        let breaker_config = BreakerConfig::from(config);
        for breaker in lock(&self.breakers).values_mut() {
            breaker.set_config(breaker_config.clone());
        }
        *lock(&self.breaker_config) = breaker_config;
        lock(&self.budget).set_policy(config.retry_budget_ratio, config.retry_budget_min_per_s);
        *lock(&self.config) = config.clone();
    }

    /// Taken with `breakers` held (the order `reconfigure` keeps too).
    fn new_breaker(&self) -> Breaker {
        Breaker::new(lock(&self.breaker_config).clone())
    }

    /// Whether `target`'s breaker lets a request through now (a half-open one lets one probe).
    pub fn allow(&self, target: &Target) -> bool {
        let mut breakers = lock(&self.breakers);
        breakers
            .entry(target.clone())
            .or_insert_with(|| self.new_breaker())
            .allow(Instant::now())
    }

    /// Whether `target`'s breaker is open now (half-open is not).
    pub fn is_open(&self, target: &Target) -> bool {
        lock(&self.breakers)
            .get(target)
            .is_some_and(|b| b.state(Instant::now()) == BreakerState::Open)
    }

    /// Feeds one request's outcome to `target`'s breaker.
    pub fn record(&self, target: &Target, outcome: Outcome) {
        let now = Instant::now();
        let mut breakers = lock(&self.breakers);
        let breaker = breakers
            .entry(target.clone())
            .or_insert_with(|| self.new_breaker());
        match outcome {
            Outcome::Success => breaker.on_success(now),
            Outcome::Failure => {
                if breaker.on_failure(now) {
                    tracing::warn!(
                        target = target.name(),
                        kind = target.kind(),
                        "outcome breaker open: too many failed requests"
                    );
                    match target {
                        Target::Peer(peer) => {
                            metrics::counter!(m::CLUSTER_PEER_BREAKER_OPEN_TOTAL, "peer" => peer.clone())
                                .increment(1)
                        }
                        Target::Local(model) => {
                            metrics::counter!(m::MODEL_BREAKER_OPEN_TOTAL, "model" => model.clone())
                                .increment(1)
                        }
                    }
                }
            }
            Outcome::Neutral => breaker.on_neutral(now),
        }
    }

    /// Forgets `target`'s breaker: the cause of its failures is gone (a peer that was dead is
    /// alive again, a new incarnation).
    pub fn reset(&self, target: &Target) {
        lock(&self.breakers).remove(target);
    }

    /// A request starts: its retries draw on the budget it adds to.
    pub fn on_request(&self) {
        lock(&self.budget).on_request(Instant::now());
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self) -> bool {
        lock(&self.budget).try_retry(Instant::now())
    }

    pub fn retries_refused(&self) -> u64 {
        lock(&self.budget).refused
    }

    /// `target`'s breaker state and how often it opened.
    pub fn breaker(&self, target: &Target) -> (BreakerState, u64) {
        lock(&self.breakers)
            .get(target)
            .map_or((BreakerState::Closed, 0), |b| {
                (b.state(Instant::now()), b.opened)
            })
    }

    /// The peers that have a breaker (every peer a request went to).
    pub fn peers(&self) -> Vec<String> {
        lock(&self.breakers)
            .keys()
            .filter_map(|t| match t {
                Target::Peer(p) => Some(p.clone()),
                Target::Local(_) => None,
            })
            .collect()
    }

    /// Every target's breaker and the budget, for `/admin/reliability` and the actor tree.
    pub fn report(&self) -> Value {
        let now = Instant::now();
        let targets: Vec<Value> = lock(&self.breakers)
            .iter()
            .map(|(t, b)| {
                json!({"kind": t.kind(), "name": t.name(), "breaker": b.state(now).as_str(),
                       "opened": b.opened})
            })
            .collect();
        let config = lock(&self.config).clone();
        json!({
            "targets": targets,
            "retries_refused": self.retries_refused(),
            "config": {
                "max_continuations": config.max_continuations,
                "breaker_failures": config.breaker_failures,
                "breaker_window_ms": config.breaker_window.as_millis() as u64,
                "breaker_cooldown_ms": config.breaker_cooldown.as_millis() as u64,
                "retry_budget_ratio": config.retry_budget_ratio,
                "retry_budget_min_per_s": config.retry_budget_min_per_s,
            },
        })
    }
}
