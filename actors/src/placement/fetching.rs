//! Model files a replica here needs and the store lacks: fetched from the peers that advertise
//! them (`golek.files`) and the peers fetching them too (`golek.fetching`), one fetch per file
//! however many deployments name it; a failed fetch is tried again a few seconds later (the
//! partial file is kept, so it resumes).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::transfer::{fetch, Has, Progress, Source, Sources};
use super::{ModelStore, PlacementMsg};
use crate::cluster::{ClusterHandle, ClusterView};
use crate::router::RouterHandle;

/// A failed fetch waits this long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Where a file stands.
pub enum Fetch {
    Ready(PathBuf),
    /// Bytes done, of the total (0 until the manifest came).
    Downloading(u64, u64),
    Failed(String),
}

struct Download {
    progress: Arc<Progress>,
    running: bool,
    failed: Option<(String, Instant)>,
}

#[derive(Default)]
pub struct Downloads {
    by_sha: HashMap<String, Download>,
}

impl Downloads {
    /// The stored file of `sha`, or where its fetch stands (started here when none runs).
    pub fn ensure(
        &mut self,
        sha: &str,
        store: &Arc<ModelStore>,
        router: &RouterHandle,
        view: &ClusterView,
        me: &ActorRef<PlacementMsg>,
        url: Option<&str>,
    ) -> Fetch {
        if let (Some(path), Some(_)) = (store.path(sha), store.size(sha)) {
            self.by_sha.remove(sha);
            return Fetch::Ready(path);
        }
        if let Some(d) = self.by_sha.get(sha) {
            if d.running {
                return Fetch::Downloading(
                    d.progress.done.load(Ordering::Relaxed),
                    d.progress.total.load(Ordering::Relaxed),
                );
            }
            if let Some((why, at)) = &d.failed {
                if at.elapsed() < RETRY_AFTER {
                    return Fetch::Failed(why.clone());
                }
            }
        }
        // Peers first; the deployment's URL when no peer has it.
        let peers = router
            .cluster()
            .filter(|_| has_source(view, sha))
            .map(|c| (c.links.quic.clone(), live_sources(c, sha)));
        if peers.is_none() && url.is_none() {
            return Fetch::Failed(format!(
                "no live peer has model file {sha}, and the deployment names no model_url"
            ));
        }
        let progress = Arc::new(Progress::default());
        self.by_sha.insert(
            sha.to_string(),
            Download {
                progress: progress.clone(),
                running: true,
                failed: None,
            },
        );
        let (store, sha, me, url) = (
            store.clone(),
            sha.to_string(),
            me.clone(),
            url.map(str::to_string),
        );
        tokio::spawn(async move {
            let outcome = match (peers, url) {
                (Some((quic, sources)), _) => {
                    tracing::info!(%sha, sources = sources().len(), "placement: fetching a model file from peers");
                    fetch(quic, store, sha.clone(), sources, progress).await
                }
                (None, Some(url)) => {
                    tracing::info!(%sha, %url, "placement: downloading a model file");
                    super::http_fetch::download(&url, &sha, &store, &progress).await
                }
                (None, None) => Err("no source".to_string()),
            };
            let _ = me.cast(PlacementMsg::Fetched {
                sha,
                outcome: outcome.map(|_| ()),
            });
        });
        Fetch::Downloading(0, 0)
    }

    /// A fetch ended.
    pub fn finished(&mut self, sha: &str, outcome: Result<(), String>) {
        if let Some(d) = self.by_sha.get_mut(sha) {
            d.running = false;
            match outcome {
                Ok(()) => {
                    tracing::info!(%sha, "placement: model file fetched and verified");
                }
                Err(e) => {
                    tracing::warn!(%sha, "placement: fetching a model file failed: {e}");
                    d.failed = Some((e, Instant::now()));
                }
            }
        }
    }
}

/// Fetches `sha` from the live peers that advertise it into `store` now (for `golek model
/// pull SHA256`); returns its path there.
pub async fn pull_from_peers(
    router: &RouterHandle,
    store: &Arc<ModelStore>,
    sha: &str,
    progress: Arc<Progress>,
) -> Result<PathBuf, String> {
    if let (Some(path), Some(_)) = (store.path(sha), store.size(sha)) {
        return Ok(path);
    }
    let cluster = router
        .cluster()
        .ok_or("this node is in no cluster: there is no peer to fetch from")?;
    if !has_source(&cluster.view(), sha) {
        return Err(format!("no live peer has model file {sha}"));
    }
    fetch(
        cluster.links.quic.clone(),
        store.clone(),
        sha.to_string(),
        live_sources(cluster, sha),
        progress,
    )
    .await
}

/// Whether a live peer has `sha`, whole or in part.
fn has_source(view: &ClusterView, sha: &str) -> bool {
    sources(view, sha).iter().any(|s| s.has != Has::Unknown)
}

/// The peers to fetch `sha` from, read from the cluster's view each time.
fn live_sources(cluster: &ClusterHandle, sha: &str) -> Sources {
    let (cluster, sha) = (cluster.clone(), sha.to_string());
    Arc::new(move || sources(&cluster.view(), &sha))
}

/// Every live peer, with what it has of `sha`: the ones with the whole file first.
fn sources(view: &ClusterView, sha: &str) -> Vec<Source> {
    let mut found: Vec<Source> = view
        .members
        .iter()
        .filter(|m| !m.is_self && m.alive)
        .filter_map(|m| {
            let addr = m.quic_addr.as_ref()?.parse().ok()?;
            let has = if m.files.iter().any(|f| f == sha) {
                Has::Whole
            } else if m.fetching.iter().any(|f| f == sha) {
                Has::Part
            } else {
                Has::Unknown
            };
            Some(Source {
                node: m.node_id.clone(),
                addr,
                has,
            })
        })
        .collect();
    found.sort_by_key(|s| match s.has {
        Has::Whole => 0,
        Has::Part => 1,
        Has::Unknown => 2,
    });
    found
}
