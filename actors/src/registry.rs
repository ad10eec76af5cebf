//! ServiceRegistry: the node's persistent registry in sled.
//!
//! Trees: `meta` (store format version, node id, the run-time configuration layer as TOML),
//! `deployments` (one JSON record per served
//! model), `keys` (API key records, hashed secrets only, by key id) and `desired` (the
//! cluster's run-time deployments, tombstones included, one JSON record by name). Every write is flushed to disk before it is acknowledged. The store is opened once
//! per process, by this actor.

use std::path::{Path, PathBuf};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use golek_protocol::deploy::DesiredRecord;

use crate::tenants::KeyRecord;
use crate::{ActorError, Result};

/// The on-disk format this build reads and writes.
pub const STORE_FORMAT_VERSION: u32 = 1;

const FORMAT_KEY: &[u8] = b"format_version";
const NODE_ID_KEY: &[u8] = b"node_id";
const RUNTIME_CONFIG_KEY: &[u8] = b"runtime_config";

/// A deployment as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub name: String,
    pub provider: String,
    /// Where the deployment came from (`config` for now).
    pub source: String,
    /// The provider's parameters, as JSON.
    pub params: serde_json::Value,
    /// Unix seconds of the first time this deployment was recorded.
    pub created_unix_s: u64,
}

/// The sled store, used by the registry actor (and directly by tests).
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    deployments: sled::Tree,
    keys: sled::Tree,
    desired: sled::Tree,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store under `dir`; refuses a store written in another format.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ActorError::Corrupt(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join("registry");
        let db = sled::open(&path)?;
        let meta = db.open_tree("meta")?;
        let deployments = db.open_tree("deployments")?;
        let keys = db.open_tree("keys")?;
        let desired = db.open_tree("desired")?;
        match meta.get(FORMAT_KEY)? {
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| ActorError::Corrupt("format_version is not 4 bytes".into()))?;
                if found != STORE_FORMAT_VERSION {
                    return Err(ActorError::FormatVersion {
                        found,
                        supported: STORE_FORMAT_VERSION,
                    });
                }
            }
            None => {
                meta.insert(FORMAT_KEY, &STORE_FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        Ok(Store {
            db,
            meta,
            deployments,
            keys,
            desired,
            path,
        })
    }

    /// Opens the store, waiting up to `wait` while another handle (a process that is still
    /// exiting, or sled's own background threads of a store just closed) holds its lock.
    pub async fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Store> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Store::open(dir) {
                // sled reports the held lock as an I/O error of kind Other with this text.
                Err(ActorError::Store(sled::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock") =>
                {
                    if std::time::Instant::now() >= deadline {
                        return Err(ActorError::Locked(dir.to_path_buf()));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's id, made on first start and kept across restarts.
    pub fn node_id(&self) -> Result<String> {
        if let Some(raw) = self.meta.get(NODE_ID_KEY)? {
            return String::from_utf8(raw.to_vec())
                .map_err(|_| ActorError::Corrupt("node_id is not UTF-8".into()));
        }
        let id = format!("node-{}", uuid::Uuid::new_v4().simple());
        self.meta.insert(NODE_ID_KEY, id.as_bytes())?;
        self.db.flush()?;
        Ok(id)
    }

    /// Replaces the node's id (flushed before it returns).
    pub async fn set_node_id(&self, id: &str) -> Result<()> {
        if self.meta.get(NODE_ID_KEY)?.as_deref() != Some(id.as_bytes()) {
            self.meta.insert(NODE_ID_KEY, id.as_bytes())?;
            self.db.flush_async().await?;
        }
        Ok(())
    }

    /// Stores run-time deployment records (replacing those of the same names), flushed.
    pub async fn put_desired(&self, records: &[DesiredRecord]) -> Result<()> {
        for r in records {
            let bytes = serde_json::to_vec(r)
                .map_err(|e| ActorError::Corrupt(format!("cannot encode deployment: {e}")))?;
            self.desired.insert(r.name.as_bytes(), bytes)?;
        }
        self.db.flush_async().await?;
        Ok(())
    }

    /// Forgets run-time deployment records (expired tombstones), flushed.
    pub async fn remove_desired(&self, names: &[String]) -> Result<()> {
        for n in names {
            self.desired.remove(n.as_bytes())?;
        }
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn desired(&self) -> Result<Vec<DesiredRecord>> {
        let mut out = Vec::new();
        for item in self.desired.iter() {
            let (name, raw) = item?;
            let name = String::from_utf8_lossy(&name).to_string();
            out.push(serde_json::from_slice(&raw).map_err(|e| {
                ActorError::Corrupt(format!("run-time deployment {name:?} cannot be read: {e}"))
            })?);
        }
        Ok(out)
    }

    /// Records a deployment (keeping the creation time of an existing one) and flushes.
    pub async fn put_deployment(&self, mut record: DeploymentRecord) -> Result<DeploymentRecord> {
        if let Some(existing) = self.deployment(&record.name)? {
            record.created_unix_s = existing.created_unix_s;
        }
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| ActorError::Corrupt(format!("cannot encode deployment: {e}")))?;
        self.deployments.insert(record.name.as_bytes(), bytes)?;
        self.db.flush_async().await?;
        Ok(record)
    }

    pub fn deployment(&self, name: &str) -> Result<Option<DeploymentRecord>> {
        self.deployments
            .get(name.as_bytes())?
            .map(|raw| decode(name, &raw))
            .transpose()
    }

    pub fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let mut out = Vec::new();
        for item in self.deployments.iter() {
            let (key, raw) = item?;
            out.push(decode(&String::from_utf8_lossy(&key), &raw)?);
        }
        Ok(out)
    }

    /// Removes a deployment and flushes; true if it existed.
    pub async fn remove_deployment(&self, name: &str) -> Result<bool> {
        let existed = self.deployments.remove(name.as_bytes())?.is_some();
        self.db.flush_async().await?;
        Ok(existed)
    }

    /// Writes key records (new or revoked) and flushes before returning.
    pub async fn put_keys(&self, records: &[KeyRecord]) -> Result<()> {
        for r in records {
            let bytes = serde_json::to_vec(r)
                .map_err(|e| ActorError::Corrupt(format!("cannot encode key {}: {e}", r.id)))?;
            self.keys.insert(r.id.as_bytes(), bytes)?;
        }
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn keys(&self) -> Result<Vec<KeyRecord>> {
        let mut out = Vec::new();
        for item in self.keys.iter() {
            let (id, raw) = item?;
            let record: KeyRecord = serde_json::from_slice(&raw).map_err(|e| {
                ActorError::Corrupt(format!(
                    "key {:?} cannot be read: {e}",
                    String::from_utf8_lossy(&id)
                ))
            })?;
            out.push(record);
        }
        Ok(out)
    }

    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The run-time configuration layer (TOML text), if any change was made.
    pub fn runtime_config(&self) -> Result<Option<String>> {
        self.meta
            .get(RUNTIME_CONFIG_KEY)?
            .map(|raw| {
                String::from_utf8(raw.to_vec())
                    .map_err(|_| ActorError::Corrupt("runtime_config is not UTF-8".into()))
            })
            .transpose()
    }

    /// Replaces the run-time configuration layer (empty text removes it); flushed.
    pub async fn set_runtime_config(&self, toml_text: &str) -> Result<()> {
        if toml_text.trim().is_empty() {
            self.meta.remove(RUNTIME_CONFIG_KEY)?;
        } else {
            self.meta.insert(RUNTIME_CONFIG_KEY, toml_text.as_bytes())?;
        }
        self.db.flush_async().await?;
        Ok(())
    }
}

/// Reads the run-time configuration layer from the store under `data_dir` before the node
/// starts (the store is closed again; the registry opens it for the node).
pub async fn read_runtime_config(data_dir: &Path) -> Result<Option<String>> {
    if !data_dir.join("registry").exists() {
        return Ok(None);
    }
    let store = Store::open_waiting(data_dir, std::time::Duration::from_secs(5)).await?;
    store.runtime_config()
}

fn decode(name: &str, raw: &[u8]) -> Result<DeploymentRecord> {
    serde_json::from_slice(raw)
        .map_err(|e| ActorError::Corrupt(format!("deployment {name:?} cannot be read: {e}")))
}

/// The registry actor. Arguments: the data dir.
pub struct ServiceRegistry;

pub enum RegistryMsg {
    NodeId(RpcReplyPort<String>),
    /// In a cluster the node is known by the id its certificate names: store that one (flushed).
    AdoptNodeId(String, RpcReplyPort<Result<()>>),
    PutDeployment(DeploymentRecord, RpcReplyPort<Result<DeploymentRecord>>),
    /// Removes deployments not in the list (the config no longer has them).
    Retain(Vec<String>, RpcReplyPort<Result<()>>),
    ListDeployments(RpcReplyPort<Result<Vec<DeploymentRecord>>>),
    /// Stores key records (flushed before the reply).
    PutKeys(Vec<KeyRecord>, RpcReplyPort<Result<()>>),
    ListKeys(RpcReplyPort<Result<Vec<KeyRecord>>>),
    /// Stores the run-time configuration layer (flushed before the reply).
    PutRuntimeConfig(String, RpcReplyPort<Result<()>>),
    /// Stores run-time deployment records (flushed before the reply).
    PutDesired(Vec<DesiredRecord>, RpcReplyPort<Result<()>>),
    RemoveDesired(Vec<String>, RpcReplyPort<Result<()>>),
    ListDesired(RpcReplyPort<Result<Vec<DesiredRecord>>>),
    Flush(RpcReplyPort<Result<()>>),
}

pub struct RegistryState {
    store: Store,
    node_id: String,
}

impl Actor for ServiceRegistry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = PathBuf;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        data_dir: PathBuf,
    ) -> Result<Self::State, ActorProcessingErr> {
        let store = Store::open_waiting(&data_dir, std::time::Duration::from_secs(5)).await?;
        let node_id = store.node_id()?;
        tracing::info!(node_id, path = %store.path().display(), "registry opened");
        Ok(RegistryState { store, node_id })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let s = &state.store;
        match message {
            RegistryMsg::NodeId(reply) => {
                let _ = reply.send(state.node_id.clone());
            }
            RegistryMsg::AdoptNodeId(id, reply) => {
                let stored = s.set_node_id(&id).await;
                if stored.is_ok() && state.node_id != id {
                    tracing::info!(old = %state.node_id, new = %id, "registry: the node takes the id its certificate names");
                    state.node_id = id;
                }
                let _ = reply.send(stored);
            }
            RegistryMsg::PutDeployment(record, reply) => {
                let _ = reply.send(s.put_deployment(record).await);
            }
            RegistryMsg::Retain(names, reply) => {
                let outcome = async {
                    for record in s.deployments()? {
                        if !names.contains(&record.name) {
                            s.remove_deployment(&record.name).await?;
                        }
                    }
                    Ok::<_, ActorError>(())
                }
                .await;
                let _ = reply.send(outcome);
            }
            RegistryMsg::ListDeployments(reply) => {
                let _ = reply.send(s.deployments());
            }
            RegistryMsg::PutKeys(records, reply) => {
                let _ = reply.send(s.put_keys(&records).await);
            }
            RegistryMsg::ListKeys(reply) => {
                let _ = reply.send(s.keys());
            }
            RegistryMsg::PutRuntimeConfig(text, reply) => {
                let _ = reply.send(s.set_runtime_config(&text).await);
            }
            RegistryMsg::PutDesired(records, reply) => {
                let _ = reply.send(s.put_desired(&records).await);
            }
            RegistryMsg::RemoveDesired(names, reply) => {
                let _ = reply.send(s.remove_desired(&names).await);
            }
            RegistryMsg::ListDesired(reply) => {
                let _ = reply.send(s.desired());
            }
            RegistryMsg::Flush(reply) => {
                let _ = reply.send(s.flush().await);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.store.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> DeploymentRecord {
        DeploymentRecord {
            name: name.into(),
            provider: "onnx".into(),
            source: "config".into(),
            params: serde_json::json!({"model_path": "/m.onnx"}),
            created_unix_s: 1,
        }
    }

    #[tokio::test]
    async fn node_id_and_deployments_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = Store::open(dir.path()).unwrap();
            store.put_deployment(record("a")).await.unwrap();
            store.put_deployment(record("b")).await.unwrap();
            assert!(store.remove_deployment("b").await.unwrap());
            store.node_id().unwrap()
        };
        assert!(id.starts_with("node-"));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.node_id().unwrap(), id);
        assert_eq!(store.deployments().unwrap(), vec![record("a")]);
        assert_eq!(store.runtime_config().unwrap(), None);
        store
            .set_runtime_config("[log]\nfilter = \"debug\"\n")
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.runtime_config().unwrap().unwrap().contains("debug"));
        store.set_runtime_config("").await.unwrap();
        assert_eq!(store.runtime_config().unwrap(), None);
        // Re-recording keeps the creation time.
        let mut again = record("a");
        again.created_unix_s = 99;
        assert_eq!(store.put_deployment(again).await.unwrap().created_unix_s, 1);
    }

    #[tokio::test]
    async fn a_data_dir_in_use_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        match Store::open_waiting(dir.path(), std::time::Duration::from_millis(100)).await {
            Err(err @ ActorError::Locked(_)) => assert!(err.to_string().contains("in use")),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a locked store must not open twice"),
        }
    }

    #[test]
    fn a_store_in_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("registry")).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, &7u32.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        match Store::open(dir.path()) {
            Err(ActorError::FormatVersion {
                found: 7,
                supported: 1,
            }) => {}
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a version 7 store must be refused"),
        }
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .deployments
            .insert(b"x", b"not json".to_vec())
            .unwrap();
        let err = store.deployments().unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }
}
