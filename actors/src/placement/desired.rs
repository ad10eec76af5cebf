//! The cluster's desired state: every run-time deployment this node knows, as versioned records
//! (tombstones included), stored in sled and gossiped whole by every node.
//!
//! chitchat drops a node's keys when the node dies, so no record lives only under its writer's
//! key: every node republishes the merged set it knows, and a deployment outlives the node it
//! was made on. Two records of one name merge to the later version (hybrid logical clock, then
//! node id), the same everywhere, so concurrent deploys converge. A record is stored (flushed)
//! before it is acknowledged or takes effect.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golek_protocol::deploy::DESIRED_VERSION;
use golek_protocol::deploy::{DeploymentSpec, DesiredList, DesiredRecord, Hlc, Version};
use golek_protocol::{ErrorCode, ErrorInfo};
use ractor::ActorRef;
use tokio::sync::watch;

use crate::registry::RegistryMsg;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Inner {
    records: BTreeMap<String, DesiredRecord>,
    clock: Hlc,
    /// The gossip value, remade when a record changes.
    published: Option<String>,
}

/// This node's copy of the desired state.
pub struct Desired {
    node_id: String,
    registry: ActorRef<RegistryMsg>,
    inner: Mutex<Inner>,
    /// One writer at a time (a local change or a merge), each stored before it applies.
    write: tokio::sync::Mutex<()>,
    /// Bumped on every change (the placement loop wakes on it).
    changed: watch::Sender<u64>,
}

fn store_error(e: impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new(
        ErrorCode::Internal,
        format!("cannot store the deployment: {e}"),
    )
}

async fn ask<T: Send + 'static>(
    registry: &ActorRef<RegistryMsg>,
    msg: impl FnOnce(ractor::RpcReplyPort<crate::Result<T>>) -> RegistryMsg,
) -> Result<T, ErrorInfo> {
    ractor::call!(registry, msg)
        .map_err(store_error)?
        .map_err(store_error)
}

impl Desired {
    /// The records stored on this node.
    pub async fn load(
        node_id: String,
        registry: ActorRef<RegistryMsg>,
    ) -> Result<Desired, ErrorInfo> {
        let records = ask(&registry, RegistryMsg::ListDesired).await?;
        let clock = records
            .iter()
            .map(|r| r.version.hlc)
            .max()
            .unwrap_or_default();
        let records = records.into_iter().map(|r| (r.name.clone(), r)).collect();
        Ok(Desired {
            node_id,
            registry,
            inner: Mutex::new(Inner {
                records,
                clock,
                published: None,
            }),
            write: tokio::sync::Mutex::new(()),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_version(&self) -> Version {
        let mut inner = self.lock();
        inner.clock = inner.clock.tick(now_ms());
        Version {
            hlc: inner.clock,
            node: self.node_id.clone(),
        }
    }

    fn apply(&self, records: Vec<DesiredRecord>) {
        let mut inner = self.lock();
        for r in records {
            inner.clock = inner.clock.observe(r.version.hlc);
            inner.records.insert(r.name.clone(), r);
        }
        inner.published = None;
        drop(inner);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records a deployment (a new one, or a new version of one), stored before it returns.
    pub async fn deploy(
        &self,
        spec: DeploymentSpec,
        model_bytes: u64,
    ) -> Result<DesiredRecord, ErrorInfo> {
        let _one = self.write.lock().await;
        let record = DesiredRecord {
            name: spec.name.clone(),
            version: self.next_version(),
            spec: Some(spec),
            model_bytes,
        };
        ask(&self.registry, |r| {
            RegistryMsg::PutDesired(vec![record.clone()], r)
        })
        .await?;
        self.apply(vec![record.clone()]);
        Ok(record)
    }

    /// Replaces a deployment by a tombstone, stored before it returns.
    pub async fn undeploy(&self, name: &str) -> Result<DesiredRecord, ErrorInfo> {
        let _one = self.write.lock().await;
        if self.get(name).is_none() {
            return Err(ErrorInfo::new(
                ErrorCode::NotFound,
                format!("no run-time deployment is named {name:?}"),
            ));
        }
        let record = DesiredRecord {
            name: name.to_string(),
            version: self.next_version(),
            spec: None,
            model_bytes: 0,
        };
        ask(&self.registry, |r| {
            RegistryMsg::PutDesired(vec![record.clone()], r)
        })
        .await?;
        self.apply(vec![record.clone()]);
        Ok(record)
    }

    /// Merges what a peer published: records newer than ours are stored, then take effect.
    /// Returns how many changed.
    pub async fn merge(&self, records: Vec<DesiredRecord>) -> Result<usize, ErrorInfo> {
        let _one = self.write.lock().await;
        let newer: Vec<DesiredRecord> = {
            let inner = self.lock();
            records
                .into_iter()
                .filter(|r| {
                    inner
                        .records
                        .get(&r.name)
                        .is_none_or(|mine| mine.superseded_by(r))
                })
                .collect()
        };
        if newer.is_empty() {
            return Ok(0);
        }
        ask(&self.registry, |r| {
            RegistryMsg::PutDesired(newer.clone(), r)
        })
        .await?;
        let n = newer.len();
        self.apply(newer);
        Ok(n)
    }

    /// Forgets tombstones older than `ttl` (a node away longer than that may bring the
    /// deployment back).
    pub async fn expire(&self, ttl: Duration) -> Result<usize, ErrorInfo> {
        let _one = self.write.lock().await;
        let cutoff = now_ms().saturating_sub(ttl.as_millis() as u64);
        let old: Vec<String> = self
            .lock()
            .records
            .values()
            .filter(|r| r.spec.is_none() && r.version.hlc.ms < cutoff)
            .map(|r| r.name.clone())
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        ask(&self.registry, |r| {
            RegistryMsg::RemoveDesired(old.clone(), r)
        })
        .await?;
        let mut inner = self.lock();
        for name in &old {
            inner.records.remove(name);
        }
        inner.published = None;
        Ok(old.len())
    }

    /// A live deployment by name (not a tombstone).
    pub fn get(&self, name: &str) -> Option<DesiredRecord> {
        self.lock()
            .records
            .get(name)
            .filter(|r| r.spec.is_some())
            .cloned()
    }

    /// The live deployments, by name.
    pub fn live(&self) -> Vec<DesiredRecord> {
        self.lock()
            .records
            .values()
            .filter(|r| r.spec.is_some())
            .cloned()
            .collect()
    }

    /// The gossip value: every record, tombstones included.
    pub fn published(&self) -> String {
        let mut inner = self.lock();
        if let Some(p) = &inner.published {
            return p.clone();
        }
        let list = DesiredList {
            version: DESIRED_VERSION,
            records: inner.records.values().cloned().collect(),
        };
        let text = serde_json::to_string(&list).unwrap_or_default();
        inner.published = Some(text.clone());
        text
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
