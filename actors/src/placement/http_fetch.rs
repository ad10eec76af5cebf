//! A model file from its `model_url` (HTTP or HTTPS), when no peer has it: streamed into
//! `<sha>.partial`, resumed with a `Range` request after an interruption, and moved into the
//! store only once its whole sha256 matches (a mismatch removes it).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::transfer::Progress;
use super::ModelStore;

/// How long a download may stall (no bytes) before it is given up (and resumed later).
const STALL: Duration = Duration::from_secs(60);

/// Downloads `url` as the file of `sha` into `store`; returns its path there.
pub async fn download(
    url: &str,
    sha: &str,
    store: &Arc<ModelStore>,
    progress: &Progress,
) -> Result<PathBuf, String> {
    if let (Some(path), Some(_)) = (store.path(sha), store.size(sha)) {
        return Ok(path);
    }
    let partial = store.partial(sha).ok_or("not a sha256")?;
    fetch_into(url, &partial, progress).await?;
    let (store, sha) = (store.clone(), sha.to_string());
    tokio::task::spawn_blocking(move || store.commit(&sha, &partial))
        .await
        .map_err(|e| e.to_string())?
}

/// Downloads `url` into `store` whatever its hash (`golek model pull URL` without
/// `--sha256`); returns the hash it is stored under.
pub async fn download_any(
    url: &str,
    store: &Arc<ModelStore>,
    progress: &Progress,
) -> Result<String, String> {
    let incoming = store
        .dir()
        .join(format!("incoming-{}", uuid::Uuid::new_v4().simple()));
    let fetched = fetch_into(url, &incoming, progress).await;
    let outcome = match fetched {
        Ok(()) => {
            let (store, path) = (store.clone(), incoming.clone());
            tokio::task::spawn_blocking(move || store.adopt(&path))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&incoming);
    outcome
}

/// Streams `url` into `path`, resuming from what `path` already holds when the server takes a
/// range.
async fn fetch_into(
    url: &str,
    partial: &std::path::Path,
    progress: &Progress,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    for attempt in 0..2 {
        let have = std::fs::metadata(partial).map_or(0, |m| m.len());
        let mut request = client.get(url);
        if have > 0 && attempt == 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let (append, from) = match status.as_u16() {
            206 if have > 0 && attempt == 0 => (true, have),
            200 => (false, 0),
            // What the partial file holds is not a prefix of this one (or is whole): start over.
            416 => {
                let _ = std::fs::remove_file(partial);
                continue;
            }
            _ => return Err(format!("GET {url} answered HTTP {status}")),
        };
        let total = response.content_length().map(|n| n.saturating_add(from));
        progress.total.store(total.unwrap_or(0), Ordering::Relaxed);
        progress.done.store(from, Ordering::Relaxed);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        let mut body = response.bytes_stream();
        loop {
            let next = tokio::time::timeout(STALL, body.next())
                .await
                .map_err(|_| format!("GET {url}: no bytes for {} s", STALL.as_secs()))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| format!("GET {url}: {e}"))?;
            file.write_all(&chunk).map_err(|e| e.to_string())?;
            progress
                .done
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            metrics::counter!(crate::metrics::MODEL_BYTES_FETCHED_TOTAL, "source" => "url")
                .increment(chunk.len() as u64);
        }
        return file.sync_all().map_err(|e| e.to_string());
    }
    Err(format!("GET {url}: the server refused every range"))
}
