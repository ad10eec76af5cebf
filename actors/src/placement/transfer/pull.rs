//! The workers of one fetch: each pulls chunks from one source until every chunk is here.
//!
//! Which chunk a worker takes: from a node fetching the file too, a chunk that node has; from a
//! node with the whole file (a seed), a chunk that neither that seed sent to another fetcher
//! lately nor a fetcher this node pulls from has or is fetching, so that the seed's bytes go
//! to one fetcher each and the fetchers pass them on. A seed worker that finds nothing it may
//! take for [`PATIENCE`] takes any chunk still to fetch, so a slow or dead fetcher never holds
//! the others up. Each fetch starts at its own random chunk, so fetchers that start at once
//! ask the seed for different chunks before they know of each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::write::ChunkWriter;
use super::{
    ask, chunk_len, connect, ChunkMap, FileReply, FileRequest, Has, Partial, Progress, Source,
    CHUNK_BYTES, FILE_PROTOCOL_VERSION,
};
use crate::cluster::transport::QuicNode;

/// How often a worker asks its source again which chunks it has.
const REFRESH: Duration = Duration::from_millis(200);
/// A worker with nothing to take waits this long before it looks again.
const IDLE: Duration = Duration::from_millis(25);
/// A seed worker with nothing it may take for this long takes any chunk still to fetch.
const PATIENCE: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the workers of one fetch share.
pub struct Job {
    quic: Arc<QuicNode>,
    sha: String,
    pub partial: Arc<Partial>,
    progress: Arc<Progress>,
    /// Where this fetch starts taking chunks.
    start: usize,
    /// The latest map of each node fetching the file that this fetch pulls from.
    maps: Mutex<HashMap<String, ChunkMap>>,
    /// Per seed, the chunks it sent to other fetchers lately.
    seeded: Mutex<HashMap<String, ChunkMap>>,
    /// The fetchers seeds named as holding chunks.
    holders: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    /// Writes the chunks into the partial file.
    writer: ChunkWriter,
    /// Told each time a chunk arrives.
    pub arrived: tokio::sync::Notify,
}

impl Job {
    pub fn new(
        quic: Arc<QuicNode>,
        sha: String,
        partial: Arc<Partial>,
        progress: Arc<Progress>,
        writer: ChunkWriter,
    ) -> Self {
        let start = fastrand::usize(..partial.chunk_count().max(1));
        Job {
            quic,
            sha,
            partial,
            progress,
            start,
            maps: Mutex::new(HashMap::new()),
            seeded: Mutex::new(HashMap::new()),
            holders: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            writer,
            arrived: tokio::sync::Notify::new(),
        }
    }

    /// The fetchers seeds named as holding chunks (sources worth adding).
    pub fn holders(&self) -> Vec<String> {
        lock(&self.holders).clone()
    }

    pub fn failures(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.failures))
    }

    /// Whether chunk `i` is better taken from elsewhere than from the seed `seed`: the seed
    /// sent it to another fetcher lately, or a fetcher this fetch pulls from has it or is
    /// getting it.
    fn elsewhere(&self, seed: &str, i: usize) -> bool {
        if lock(&self.seeded).get(seed).is_some_and(|m| m.pending(i)) {
            return true;
        }
        lock(&self.maps).values().any(|m| m.has(i) || m.pending(i))
    }

    fn note_map(&self, source: &Source, map: &ChunkMap, holders: Vec<String>) {
        if source.has == Has::Whole {
            lock(&self.seeded).insert(source.node.clone(), map.clone());
            let mut known = lock(&self.holders);
            for h in holders {
                if !known.contains(&h) {
                    known.push(h);
                }
            }
        } else {
            lock(&self.maps).insert(source.node.clone(), map.clone());
        }
    }

    fn forget(&self, source: &Source) {
        lock(&self.maps).remove(&source.node);
        lock(&self.seeded).remove(&source.node);
    }
}

/// What came of asking for one chunk.
enum Got {
    /// It arrived, matched the manifest and is written at its offset.
    Written,
    /// It arrived and does not match the manifest.
    Corrupt,
    /// The source does not have it yet.
    Missing,
}

/// Asks `connection` for chunk `i` and, off the async threads, checks it against the manifest
/// and writes it into the partial file (so the connection keeps receiving meanwhile).
async fn chunk(connection: &quinn::Connection, job: &Arc<Job>, i: usize) -> Result<Got, String> {
    let offset = i as u64 * CHUNK_BYTES;
    let len = chunk_len(job.partial.size, i);
    let request = FileRequest::Range {
        version: FILE_PROTOCOL_VERSION,
        sha256: job.sha.clone(),
        offset,
        len,
    };
    let (reply, mut recv) = ask(connection, &request).await?;
    match reply {
        FileReply::Range { len: n } if n == len => {}
        FileReply::Missing => return Ok(Got::Missing),
        FileReply::Refused(e) => return Err(e),
        _ => return Err("an unexpected answer".to_string()),
    }
    let want = usize::try_from(len).map_err(|e| e.to_string())?;
    let mut buf = job.writer.buffer(want);
    let mut filled = 0;
    while filled < want {
        match recv.read_chunk(want - filled, true).await {
            Ok(Some(c)) => {
                let end = filled + c.bytes.len();
                buf.bytes_mut()[filled..end].copy_from_slice(&c.bytes);
                filled = end;
            }
            Ok(None) => return Err(format!("the chunk ended after {filled} bytes")),
            Err(e) => return Err(e.to_string()),
        }
    }
    let shared = job.clone();
    tokio::task::spawn_blocking(move || {
        let got = if shared.partial.digest.of(buf.bytes()) != shared.partial.chunks[i] {
            Ok(Got::Corrupt)
        } else {
            shared
                .writer
                .write(&buf, offset)
                .map(|_| Got::Written)
                .map_err(|e| {
                    let e = format!("cannot write the partial file: {e}");
                    lock(&shared.failures).push(e.clone());
                    e
                })
        };
        shared.writer.give_back(buf);
        got
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The source's map now; a seed of an older build that does not answer `Have` has it all.
async fn map_of(
    connection: &quinn::Connection,
    job: &Job,
    source: &Source,
) -> Result<ChunkMap, String> {
    let n = job.partial.chunk_count();
    let request = FileRequest::Have {
        version: FILE_PROTOCOL_VERSION,
        sha256: job.sha.clone(),
    };
    match ask(connection, &request).await? {
        (FileReply::Have { map, holders }, _) if map.fits(n) => {
            job.note_map(source, &map, holders);
            Ok(map)
        }
        (FileReply::Have { .. }, _) => Err("a chunk map of another size".into()),
        (FileReply::Refused(_), _) if source.has == Has::Whole => Ok(ChunkMap::full(n)),
        (FileReply::Refused(e), _) => Err(e),
        _ => Err("an unexpected answer".into()),
    }
}

/// One worker on `source`: takes chunks until all are here. A chunk it cannot deliver (or
/// delivers corrupt) goes back for another source, and this worker stops.
pub async fn pull(job: &Arc<Job>, source: &Source) -> Result<(), String> {
    let outcome = work(job, source).await;
    if outcome.is_err() {
        job.forget(source);
    }
    outcome
}

async fn work(job: &Arc<Job>, source: &Source) -> Result<(), String> {
    let connection = connect(&job.quic, source)
        .await
        .map_err(|e| format!("{}: {e}", source.node))?;
    let mut map: Option<(ChunkMap, Instant)> = None;
    let mut idle_since: Option<Instant> = None;
    let size = job.partial.size;
    loop {
        if job.partial.missing() == 0 {
            return Ok(());
        }
        if map.as_ref().is_none_or(|(_, at)| at.elapsed() > REFRESH) {
            let m = map_of(&connection, job, source)
                .await
                .map_err(|e| format!("{}: {e}", source.node))?;
            map = Some((m, Instant::now()));
        }
        let Some((m, _)) = &map else { continue };
        let pick = if source.has == Has::Whole {
            let patient = idle_since.is_some_and(|t| t.elapsed() > PATIENCE);
            job.partial
                .take(job.start, |i| patient || !job.elsewhere(&source.node, i))
        } else {
            job.partial.take(job.start, |i| m.has(i))
        };
        let Some(i) = pick else {
            idle_since.get_or_insert_with(Instant::now);
            tokio::time::sleep(IDLE).await;
            continue;
        };
        idle_since = None;
        let len = chunk_len(size, i);
        match chunk(&connection, job, i).await {
            Ok(Got::Written) => {}
            Ok(Got::Corrupt) => {
                job.partial.give_back(i);
                tracing::warn!(peer = %source.node, chunk = i, "model file: a corrupt chunk; fetching it from another peer");
                metrics::counter!(crate::metrics::MODEL_CORRUPT_CHUNKS_TOTAL, "peer" => source.node.clone()).increment(1);
                return Err(format!("{} sent a corrupt chunk", source.node));
            }
            Ok(Got::Missing) => {
                job.partial.give_back(i);
                map = None;
                continue;
            }
            Err(e) => {
                job.partial.give_back(i);
                return Err(format!("{}: {e}", source.node));
            }
        }
        job.partial.mark_here(i);
        job.arrived.notify_one();
        job.progress
            .done
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(crate::metrics::MODEL_BYTES_FETCHED_TOTAL, "source" => source.node.clone())
            .increment(len);
    }
}
