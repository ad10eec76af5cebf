//! Tenants and their keys: who a request is for, and the limits that hold wherever it is
//! served. Keys are stored hashed in sled on every node and spread by gossip ([`keys`]); each
//! node enforces a tenant's limits on the requests it serves ([`bucket`] for the per-minute
//! budgets, a count for concurrency); a model's queue serves its tenants in turn
//! (`golek_providers` keeps one line per tenant).

pub mod bucket;
pub mod keys;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use golek_protocol::{ErrorCode, ErrorInfo};

pub use bucket::Bucket;
pub use keys::{KeyRecord, TenantLimits};
pub use store::KeyStore;

use crate::metrics as m;

/// Who a request is for, from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Arc<str>,
    pub admin: bool,
    pub key_id: String,
}

/// What a tenant is using on this node.
struct Usage {
    in_flight: Arc<AtomicU32>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The limits the buckets were made for (remade when the tenant's limits change).
    limits: TenantLimits,
}

#[derive(Default)]
struct Keys {
    by_id: BTreeMap<String, KeyRecord>,
    /// Live keys' hashes to their ids.
    live: HashMap<String, String>,
    /// Each tenant with a live key, and the limits of its newest one (derived from `by_id`
    /// when a key changes, so a request looks its tenant up once).
    tenants: HashMap<String, TenantLimits>,
}

impl Keys {
    fn derive_tenants(&mut self) {
        let mut newest: HashMap<&str, &KeyRecord> = HashMap::new();
        for r in self.by_id.values().filter(|r| r.live()) {
            let entry = newest.entry(r.tenant.as_str()).or_insert(r);
            if (r.created_unix_ms, &r.id) > (entry.created_unix_ms, &entry.id) {
                *entry = r;
            }
        }
        self.tenants = newest
            .into_iter()
            .map(|(t, r)| (t.to_string(), r.limits))
            .collect();
    }
}

/// Every key this node knows and every tenant's usage here.
#[derive(Default)]
pub struct Tenants {
    keys: RwLock<Keys>,
    usage: Mutex<HashMap<Arc<str>, Usage>>,
    /// Bumped whenever a key record changes (what gossip publishes is remade only then).
    version: AtomicU64,
}

/// A request admitted for a tenant: it counts against the tenant's concurrency until dropped.
pub struct TenantPermit {
    in_flight: Arc<AtomicU32>,
}

impl Drop for TenantPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn rate_limited(tenant: &str, what: &str, wait: std::time::Duration) -> ErrorInfo {
    let seconds = wait.as_secs_f64().ceil().clamp(1.0, 3600.0) as u32;
    ErrorInfo::new(
        ErrorCode::RateLimited,
        format!("tenant {tenant:?} is over its {what}; retry in {seconds} s"),
    )
    .with_retry_after(seconds)
}

impl Tenants {
    /// Takes records (from the store or a peer); returns those that changed or are new, for
    /// the store. Malformed ones are skipped with a warning.
    pub fn merge(&self, records: &[KeyRecord]) -> Vec<KeyRecord> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::new();
        for r in records {
            if let Err(e) = r.check() {
                tracing::warn!("ignoring a key record: {e}");
                continue;
            }
            let updated = match keys.by_id.get_mut(&r.id) {
                Some(mine) => mine.merge(r).then(|| mine.clone()),
                None => {
                    keys.by_id.insert(r.id.clone(), r.clone());
                    Some(r.clone())
                }
            };
            if let Some(now) = updated {
                if now.live() {
                    keys.live.insert(now.hash.clone(), now.id.clone());
                } else {
                    keys.live.remove(&now.hash);
                }
                changed.push(now);
            }
        }
        if !changed.is_empty() {
            keys.derive_tenants();
            self.version.fetch_add(1, Ordering::SeqCst);
        }
        changed
    }

    /// Changes with every key record that changes.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// The principal a secret stands for, if it is a live key.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let hash = keys::hash(secret);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let record = keys.live.get(&hash).and_then(|id| keys.by_id.get(id))?;
        Some(Principal {
            tenant: record.tenant.as_str().into(),
            admin: record.admin,
            key_id: record.id.clone(),
        })
    }

    pub fn has_admin_key(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.live
            .values()
            .any(|id| keys.by_id.get(id).is_some_and(|r| r.admin))
    }

    /// Every key record (revoked ones too), by id.
    pub fn list(&self) -> Vec<KeyRecord> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.by_id.values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.by_id.get(id).cloned()
    }

    /// Whether `tenant` has a live key (metric labels take only those).
    pub fn knows(&self, tenant: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.tenants.contains_key(tenant)
    }

    /// A metric label for a tenant: its name when it has a live key here, else `unknown`
    /// (the label set stays bounded whatever a peer sends).
    fn label(&self, tenant: &str) -> String {
        if self.knows(tenant) {
            tenant.to_string()
        } else {
            "unknown".to_string()
        }
    }

    /// A tenant's limits: those of its newest live key.
    pub fn limits(&self, tenant: &str) -> TenantLimits {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.tenants.get(tenant).copied().unwrap_or_default()
    }

    /// Admits one request for `tenant` on this node, or refuses it (429, with when to retry)
    /// when the tenant is over its concurrency or its requests or tokens per minute.
    pub fn admit(&self, tenant: &Arc<str>) -> Result<TenantPermit, ErrorInfo> {
        let (limits, label) = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            match keys.tenants.get(&**tenant) {
                Some(l) => (*l, tenant.to_string()),
                None => (TenantLimits::default(), "unknown".to_string()),
            }
        };
        let now = Instant::now();
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let u = usage.entry(tenant.clone()).or_insert_with(|| Usage {
            in_flight: Arc::new(AtomicU32::new(0)),
            requests: None,
            tokens: None,
            limits: TenantLimits::default(),
        });
        if u.limits != limits || (u.requests.is_none() != limits.rpm.is_none()) {
            u.requests = limits.rpm.map(|n| Bucket::new(n, now));
            u.tokens = limits.tpm.map(|n| Bucket::new(n, now));
            u.limits = limits;
        }
        let refuse = |e: ErrorInfo, why: &'static str| {
            metrics::counter!(m::TENANT_REJECTED_TOTAL, "tenant" => label.clone(), "reason" => why)
                .increment(1);
            e
        };
        if let Some(max) = limits.max_concurrency {
            if u.in_flight.load(Ordering::SeqCst) >= max {
                return Err(refuse(
                    rate_limited(
                        tenant,
                        &format!("concurrency limit ({max} requests at once)"),
                        std::time::Duration::from_secs(1),
                    ),
                    "concurrency",
                ));
            }
        }
        if let Some(tokens) = u.tokens.as_mut() {
            if let Err(wait) = tokens.admit(now) {
                return Err(refuse(
                    rate_limited(tenant, "tokens-per-minute budget", wait),
                    "tpm",
                ));
            }
        }
        if let Some(requests) = u.requests.as_mut() {
            if let Err(wait) = requests.take(1, now) {
                return Err(refuse(
                    rate_limited(tenant, "requests-per-minute budget", wait),
                    "rpm",
                ));
            }
        }
        u.in_flight.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(m::TENANT_REQUESTS_TOTAL, "tenant" => label).increment(1);
        Ok(TenantPermit {
            in_flight: u.in_flight.clone(),
        })
    }

    /// Charges tokens a tenant's request used (prompt and generated) here.
    pub fn charge(&self, tenant: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        metrics::counter!(m::TENANT_TOKENS_TOTAL, "tenant" => self.label(tenant)).increment(tokens);
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = usage.get_mut(tenant).and_then(|u| u.tokens.as_mut()) {
            bucket.charge(tokens, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, limits: TenantLimits, created: u64) -> (String, KeyRecord) {
        let (secret, id) = keys::new_secret();
        let record = KeyRecord {
            id,
            hash: keys::hash(&secret),
            tenant: tenant.into(),
            admin: false,
            limits,
            created_unix_ms: created,
            revoked_unix_ms: None,
        };
        (secret, record)
    }

    #[test]
    fn keys_authenticate_until_revoked_and_limits_hold() {
        let tenants = Tenants::default();
        let limits = TenantLimits {
            rpm: Some(3),
            tpm: None,
            max_concurrency: Some(2),
        };
        let (secret, record) = key("acme", limits, 1);
        assert_eq!(tenants.merge(std::slice::from_ref(&record)).len(), 1);
        assert!(
            tenants.merge(std::slice::from_ref(&record)).is_empty(),
            "idempotent"
        );
        let who = tenants.authenticate(&secret).unwrap();
        assert_eq!(&*who.tenant, "acme");
        assert!(tenants.authenticate("gk_wrong").is_none());
        assert!(!tenants.has_admin_key());

        let a = tenants.admit(&who.tenant).unwrap();
        let _b = tenants.admit(&who.tenant).unwrap();
        let e = tenants.admit(&who.tenant).err().unwrap();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("concurrency"), "{e:?}");
        drop(a);
        let _c = tenants.admit(&who.tenant).unwrap();
        drop(_c);
        // Three requests a minute: the fourth is refused, saying when to retry.
        let e = tenants.admit(&who.tenant).err().unwrap();
        assert!(e.message.contains("requests-per-minute"), "{e:?}");
        assert!(
            e.retry_after_s.is_some_and(|s| (1..=20).contains(&s)),
            "{e:?}"
        );

        let mut revoked = record.clone();
        revoked.revoked_unix_ms = Some(5);
        assert_eq!(tenants.merge(&[revoked]).len(), 1);
        assert!(tenants.authenticate(&secret).is_none());
        assert!(!tenants.knows("acme"));
    }

    #[test]
    fn the_newest_key_sets_the_limits_and_tokens_are_charged() {
        let tenants = Tenants::default();
        let (_, old) = key(
            "t",
            TenantLimits {
                rpm: Some(1),
                ..Default::default()
            },
            1,
        );
        let (_, new) = key(
            "t",
            TenantLimits {
                tpm: Some(10),
                ..Default::default()
            },
            2,
        );
        tenants.merge(&[old, new]);
        assert_eq!(tenants.limits("t").tpm, Some(10));
        let t: Arc<str> = "t".into();
        drop(tenants.admit(&t).unwrap());
        tenants.charge("t", 25);
        let e = tenants.admit(&t).err().unwrap();
        assert!(e.message.contains("tokens-per-minute"), "{e:?}");
    }
}
