//! API keys: the secret is shown once and stored only as its SHA-256. A key is made once and
//! later maybe revoked, never changed otherwise, so records from several nodes merge without a
//! clock: the union of what each node knows, a revocation winning.

use serde::{Deserialize, Serialize};

/// What a tenant may use, per node that serves it (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (prompt and generated) per minute.
    pub tpm: Option<u32>,
    /// Requests running or queued at once.
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id (`key-…`): what lists show and revocation names.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    pub tenant: String,
    /// An admin key may use the admin routes.
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub limits: TenantLimits,
    pub created_unix_ms: u64,
    #[serde(default)]
    pub revoked_unix_ms: Option<u64>,
}

/// The prefix every secret starts with (so a leaked one is recognisable).
pub const SECRET_PREFIX: &str = "gk_";

/// SHA-256 of a secret, hex.
pub fn hash(secret: &str) -> String {
    crate::cluster::tls::hex(
        ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref(),
    )
}

/// A fresh secret (256 random bits) and its record's id.
pub fn new_secret() -> (String, String) {
    let mut bytes = [0u8; 38];
    // The system's CSPRNG; on the impossible failure, uuids (also from the OS) stand in.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        bytes[..16].copy_from_slice(a.as_bytes());
        bytes[16..32].copy_from_slice(b.as_bytes());
        bytes[32..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..6]);
    }
    let hex = crate::cluster::tls::hex(&bytes);
    (
        format!("{SECRET_PREFIX}{}", &hex[..64]),
        format!("key-{}", &hex[64..]),
    )
}

/// Tenant names: letters, digits, `-`, `_`, `.` (1 to 64), so they are safe as metric labels.
pub fn valid_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl KeyRecord {
    pub fn live(&self) -> bool {
        self.revoked_unix_ms.is_none()
    }

    /// Takes what `other` (the same key as another node knows it) adds: a revocation, the
    /// earliest one. True when this record changed.
    pub fn merge(&mut self, other: &KeyRecord) -> bool {
        match (self.revoked_unix_ms, other.revoked_unix_ms) {
            (None, Some(at)) => {
                self.revoked_unix_ms = Some(at);
                true
            }
            (Some(mine), Some(theirs)) if theirs < mine => {
                self.revoked_unix_ms = Some(theirs);
                true
            }
            _ => false,
        }
    }

    /// A record from a peer or the store is taken only when well formed.
    pub fn check(&self) -> Result<(), String> {
        let hex_id = self.id.strip_prefix("key-").unwrap_or("");
        if hex_id.len() != 12 || !hex_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "key id {:?} is not key- and 12 hex digits",
                self.id
            ));
        }
        if self.hash.len() != 64 || !self.hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("key {}: its hash is not 64 hex digits", self.id));
        }
        if !valid_tenant(&self.tenant) {
            return Err(format!(
                "key {}: tenant {:?} is not a valid name",
                self.id, self.tenant
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, revoked: Option<u64>) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            hash: "ab".repeat(32),
            tenant: "t".into(),
            admin: false,
            limits: TenantLimits::default(),
            created_unix_ms: 1,
            revoked_unix_ms: revoked,
        }
    }

    #[test]
    fn secrets_are_fresh_and_only_their_hash_is_kept() {
        let (a, id_a) = new_secret();
        let (b, _) = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == 67, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        let mut r = record(&id_a, None);
        r.hash = hash(&a);
        assert_eq!(r.check(), Ok(()));
        assert!(record("key-zz", None).check().is_err());
        let mut bad = record("key-0123456789ab", None);
        bad.tenant = "a b".into();
        assert!(bad.check().is_err());
    }

    #[test]
    fn revocation_wins_and_merging_is_idempotent() {
        let mut live = record("key-0123456789ab", None);
        assert!(!live.merge(&record("key-0123456789ab", None)));
        assert!(live.merge(&record("key-0123456789ab", Some(9))));
        assert!(live.merge(&record("key-0123456789ab", Some(5))));
        assert!(!live.merge(&record("key-0123456789ab", Some(7))));
        assert!(
            !live.merge(&record("key-0123456789ab", None)),
            "a revoked key stays revoked"
        );
        assert_eq!(live.revoked_unix_ms, Some(5));
    }
}
