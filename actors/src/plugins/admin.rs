//! What the admin API asks of the PluginManager: an upload (checked, then written into the
//! plugin folder and started), a removal, the listing.

use ractor::ActorRef;

use super::instance::{PluginMsg, Status};
use super::load::{self, Source, Wanted};
use super::manager::{Listing, ManagerState, PluginManagerMsg};
use super::{valid_name, PluginState};

impl ManagerState {
    pub(super) async fn upload(
        &mut self,
        myself: &ActorRef<PluginManagerMsg>,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<Status, String> {
        if !valid_name(&name) {
            return Err(format!(
                "name: plugin names use letters, digits, '-' and '_' (1 to 64 characters), got {name:?}"
            ));
        }
        if self
            .config
            .plugins
            .get(&name)
            .is_some_and(|p| p.kind.is_some())
        {
            return Err(format!(
                "{name:?} is a built-in plugin in the configuration; choose another name"
            ));
        }
        let config = self
            .config
            .plugins
            .get(&name)
            .cloned()
            .unwrap_or_else(load::default_config);
        let dir = self.dir();
        // Checked before it is written: a bad upload leaves the running version alone.
        let staged = dir.join(format!(".{name}.wasm.upload"));
        let target = dir.join(format!("{name}.wasm"));
        let check = Wanted {
            name: name.clone(),
            source: Source::Wasm {
                path: staged.clone(),
            },
            config,
        };
        let data_dir = self.config.node.data_dir.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
            std::fs::write(&staged, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
            let checked = load::load(&check, &data_dir).map(|_| ());
            match checked {
                Ok(()) => {
                    let file = std::fs::File::open(&staged).map_err(|e| e.to_string())?;
                    file.sync_all().map_err(|e| e.to_string())?;
                    std::fs::rename(&staged, &target)
                        .map_err(|e| format!("cannot store the plugin: {e}"))
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        outcome?;
        self.rescan(myself).await;
        let entry = self.entries.get(&name).ok_or("the plugin was not loaded")?;
        let status = crate::system::call(&entry.actor, "PluginActor", PluginMsg::Status)
            .await
            .map_err(|e| e.to_string())?;
        match status.state {
            PluginState::Started => Ok(status),
            _ => Err(format!(
                "it is stored in the plugin folder but did not start: {}",
                status.last_failure.as_deref().unwrap_or("no reason given")
            )),
        }
    }

    pub(super) async fn remove(
        &mut self,
        myself: &ActorRef<PluginManagerMsg>,
        name: &str,
    ) -> Result<(), String> {
        let Some(e) = self.entries.get(name) else {
            return Err(format!("there is no plugin {name:?}"));
        };
        match &e.source {
            Source::Native { .. } => Err(format!(
                "{name:?} is a built-in plugin: remove or disable [plugins.{name}] in the configuration"
            )),
            Source::Wasm { path } => {
                let path = path.clone();
                std::fs::remove_file(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                self.rescan(myself).await;
                Ok(())
            }
        }
    }

    pub(super) async fn listing(&self) -> Listing {
        let mut plugins = Vec::new();
        for e in self.entries.values() {
            if let Ok(s) = crate::system::call(&e.actor, "PluginActor", PluginMsg::Status).await {
                plugins.push(s);
            }
        }
        Listing {
            plugin_dir: self.dir(),
            chain: self
                .chain
                .chain()
                .plugins
                .iter()
                .map(|p| p.name.clone())
                .collect(),
            plugins,
        }
    }
}
