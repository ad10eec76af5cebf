//! Keys as the admin API, the CLI and gossip change them: every change is stored (flushed) in
//! the registry before it is acknowledged, then applied to the in-memory [`Tenants`] that
//! requests read.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golek_protocol::{ErrorCode, ErrorInfo};
use ractor::ActorRef;

use super::keys::{self, KeyRecord, TenantLimits};
use super::Tenants;
use crate::registry::RegistryMsg;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The tenants' keys and the store that keeps them.
#[derive(Clone)]
pub struct KeyStore {
    pub tenants: Arc<Tenants>,
    registry: ActorRef<RegistryMsg>,
}

fn store_error(e: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::Internal, format!("the key store: {e}"))
}

impl KeyStore {
    pub fn new(tenants: Arc<Tenants>, registry: ActorRef<RegistryMsg>) -> Self {
        KeyStore { tenants, registry }
    }

    async fn put(&self, records: Vec<KeyRecord>) -> Result<(), ErrorInfo> {
        if records.is_empty() {
            return Ok(());
        }
        match self
            .registry
            .call(|r| RegistryMsg::PutKeys(records, r), Some(CALL_TIMEOUT))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(stored)) => stored.map_err(|e| store_error(&e)),
            _ => Err(store_error("the registry did not answer")),
        }
    }

    /// Loads the stored keys (at start).
    pub async fn load(&self) -> Result<usize, ErrorInfo> {
        match self
            .registry
            .call(RegistryMsg::ListKeys, Some(CALL_TIMEOUT))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(records))) => {
                Ok(self.tenants.merge(&records).len())
            }
            Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(store_error(&e)),
            _ => Err(store_error("the registry did not answer")),
        }
    }

    /// Makes a key for `tenant`; returns its secret (shown once) and its record.
    pub async fn create(
        &self,
        tenant: &str,
        admin: bool,
        limits: TenantLimits,
    ) -> Result<(String, KeyRecord), ErrorInfo> {
        if !keys::valid_tenant(tenant) {
            return Err(ErrorInfo::invalid(
                "tenant",
                format!(
                    "tenant: letters, digits, '-', '_', '.' (1 to 64 characters), got {tenant:?}"
                ),
            ));
        }
        for (name, value) in [
            ("rpm", limits.rpm),
            ("tpm", limits.tpm),
            ("max_concurrency", limits.max_concurrency),
        ] {
            if value == Some(0) {
                return Err(ErrorInfo::invalid(
                    name,
                    format!("{name}: must be at least 1 (leave it out for no limit)"),
                ));
            }
        }
        let (secret, id) = keys::new_secret();
        let record = KeyRecord {
            id,
            hash: keys::hash(&secret),
            tenant: tenant.to_string(),
            admin,
            limits,
            created_unix_ms: now_unix_ms(),
            revoked_unix_ms: None,
        };
        self.put(vec![record.clone()]).await?;
        self.tenants.merge(std::slice::from_ref(&record));
        Ok((secret, record))
    }

    /// Revokes a key by id (on every node within a gossip round or two).
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, ErrorInfo> {
        let Some(mut record) = self.tenants.get(id) else {
            return Err(
                ErrorInfo::new(ErrorCode::NotFound, format!("no key {id:?}")).with_param("id"),
            );
        };
        if record.revoked_unix_ms.is_none() {
            record.revoked_unix_ms = Some(now_unix_ms());
            self.put(vec![record.clone()]).await?;
            self.tenants.merge(std::slice::from_ref(&record));
        }
        Ok(record)
    }

    /// Takes what a peer knows: new keys and revocations are stored, then applied.
    pub async fn merge_from_peer(&self, records: &[KeyRecord]) -> Result<usize, ErrorInfo> {
        // Work out what is new without applying it, so a failed write leaves nothing half-done.
        let probe = Tenants::default();
        probe.merge(&self.tenants.list());
        let changed = probe.merge(records);
        if changed.is_empty() {
            return Ok(0);
        }
        self.put(changed.clone()).await?;
        Ok(self.tenants.merge(&changed).len())
    }
}
