//! What follows the configuration in the shell: the log filter, SIGHUP and edits of the
//! configuration file. SIGHUP and a file change are one reload: the file is read again and the
//! change goes through the ConfigManager like any other (validated whole, refused whole).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use golek_actors::{ConfigChange, ConfigHandle};
use golek_config::NodeConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The tasks started for a node; aborted at shutdown.
pub struct Followers {
    tasks: JoinSet<()>,
    /// Kept alive while the node runs (dropping it stops the watch).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Followers {
    pub fn abort(mut self) {
        self.tasks.abort_all();
    }
}

pub fn start(
    handle: ConfigHandle,
    config: Arc<NodeConfig>,
    updates: watch::Receiver<Arc<NodeConfig>>,
    file: Option<PathBuf>,
) -> Followers {
    let mut tasks = JoinSet::new();
    tasks.spawn(follow_log_filter(config.log.filter.clone(), updates));
    let (reload_tx, reload_rx) = mpsc::unbounded_channel::<&'static str>();
    #[cfg(unix)]
    {
        let tx = reload_tx.clone();
        tasks.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with `golek config reload`");
                return;
            };
            while hup.recv().await.is_some() {
                let _ = tx.send("SIGHUP");
            }
        });
    }
    let watcher = file.and_then(|file| watch_file(&file, reload_tx));
    tasks.spawn(reload_on_request(handle, reload_rx));
    Followers {
        tasks,
        _watcher: watcher,
    }
}

/// Applies `log.filter` whenever it changes.
async fn follow_log_filter(mut filter: String, mut updates: watch::Receiver<Arc<NodeConfig>>) {
    while updates.changed().await.is_ok() {
        let next = updates.borrow_and_update().log.filter.clone();
        if next == filter {
            continue;
        }
        match crate::logging::control().set_filter(&next) {
            Ok(()) => tracing::info!(filter = %next, "log filter changed"),
            Err(err) => tracing::warn!(filter = %next, %err, "cannot change the log filter"),
        }
        filter = next;
    }
}

/// Reads the file again for each request (a burst of file events is one reload).
async fn reload_on_request(
    handle: ConfigHandle,
    mut requests: mpsc::UnboundedReceiver<&'static str>,
) {
    while let Some(why) = requests.recv().await {
        // Editors write a file in several steps: let them finish, then take the burst as one.
        tokio::time::sleep(Duration::from_millis(150)).await;
        while requests.try_recv().is_ok() {}
        match handle.change(ConfigChange::ReloadFile).await {
            Ok(Ok(report)) => {
                tracing::info!(
                    via = why,
                    changed = report.changed.len(),
                    applied = report.applied.len(),
                    pending = report.pending.len(),
                    "configuration file read again"
                )
            }
            Ok(Err(refused)) => {
                tracing::warn!(via = why, errors = ?refused.errors, "the configuration file was not applied")
            }
            Err(err) => tracing::warn!(via = why, %err, "cannot reload the configuration"),
        }
    }
}

/// Watches the folder of `file` (editors replace files by renaming) for changes to it.
fn watch_file(
    file: &Path,
    reload: mpsc::UnboundedSender<&'static str>,
) -> Option<notify::RecommendedWatcher> {
    let dir = file.parent()?.to_path_buf();
    let name = file.file_name()?.to_os_string();
    let watched = file.to_path_buf();
    let outcome = golek_actors::watch::watch_dir(
        &dir,
        move |p| p.file_name() == Some(name.as_os_str()),
        move || {
            let _ = reload.send("file");
        },
    );
    match outcome {
        Ok(watcher) => {
            tracing::info!(file = %watched.display(), "watching the configuration file");
            Some(watcher)
        }
        Err(err) => {
            tracing::warn!(file = %watched.display(), %err, "cannot watch the configuration file; SIGHUP reloads it");
            None
        }
    }
}
