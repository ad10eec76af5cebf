//! The node's one file-watching facility (`notify`): the configuration file, the plugin folder.

use std::path::Path;

/// Watches the folder `dir` (not its subfolders) and calls `changed` for each event that
/// creates, changes or removes a path `wanted` accepts. Editors and uploads replace files by
/// renaming, so a folder is watched rather than a file. Dropping the watcher stops it.
pub fn watch_dir(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool + Send + 'static,
    changed: impl Fn() + Send + 'static,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = event.kind.is_modify() || event.kind.is_create() || event.kind.is_remove();
        if relevant && event.paths.iter().any(|p| wanted(p)) {
            changed();
        }
    })
    .map_err(|e| e.to_string())?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| e.to_string())?;
    Ok(watcher)
}
