//! Certificates renewed without downtime: the node watches its `tls_dir` (and SIGHUP), loads
//! the certificate, key and CA again when they change, and new connections use them; open
//! connections keep theirs. A certificate that does not load, or names another node, is
//! refused with a warning and the current one stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::tls;
use super::transport::QuicNode;
use crate::loops::{loop_fn, LoopFn};

/// Records when the certificate in use expires (`golek_cluster_certificate_expiry_seconds`).
pub fn note_expiry(expires: SystemTime) {
    let secs = expires
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(crate::metrics::CLUSTER_CERT_EXPIRY).set(secs);
}

fn days_left(expires: SystemTime) -> i64 {
    match expires.duration_since(SystemTime::now()) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs() / 86_400).unwrap_or(i64::MAX),
    }
}

fn is_identity_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| [tls::NODE_CERT, tls::NODE_KEY, tls::CA_CERT].contains(&n))
}

/// The supervised loop that reloads the identity in `dir` when its files change or on SIGHUP.
pub fn reload_loop(quic: Arc<QuicNode>, dir: PathBuf) -> LoopFn {
    loop_fn(move |_token| {
        let quic = quic.clone();
        let dir = dir.clone();
        async move {
            if let Ok(expires) = tls::not_after(&dir.join(tls::NODE_CERT)) {
                note_expiry(expires);
            }
            let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel::<()>();
            let watcher = crate::watch::watch_dir(&dir, is_identity_file, move || {
                let _ = tx.send(());
            });
            let _watcher = match watcher {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the certificate folder; SIGHUP reloads it");
                    None
                }
            };
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                let why = tokio::select! {
                    Some(()) = changed.recv() => "file change",
                    Some(()) = hangup => "SIGHUP",
                    else => return,
                };
                // A renewal writes several files: let them all land, then load once.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while changed.try_recv().is_ok() {}
                match quic.reload_identity(&dir) {
                    Ok(expires) => {
                        note_expiry(expires);
                        tracing::info!(
                            why,
                            days_left = days_left(expires),
                            "cluster: certificate reloaded; new connections use it"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(why, error = %e, "cluster: certificate not reloaded; the current one stays")
                    }
                }
            }
        }
    })
}
