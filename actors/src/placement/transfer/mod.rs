//! Model files between nodes (`golek-model/1`, over the cluster's QUIC with mutual TLS).
//!
//! One bidi stream per request, a frame each way: `Manifest` answers the file's size and a
//! digest of each chunk (the sender hashes its whole file first, so it only vouches for a file
//! whose hash is the one asked for): BLAKE3 to `ManifestBlake3` (version 2; checking a chunk
//! then costs a fifth of what SHA-256 does), SHA-256 to `Manifest` (version 1, which a node
//! still serves and, from a peer that does not know version 2, still fetches with); `Range` answers a header frame and then the bytes; `Have`
//! answers which chunks the node can send, and, from a node with the whole file, which chunks
//! it recently sent to which other nodes.
//!
//! The fetcher takes the manifest from one peer, then pulls chunks from several peers at once
//! (`pull`): the nodes that have the whole file and the nodes fetching it too, which send the
//! chunks they already hold (`serve`). Chunks a seed already sent to another fetcher are taken
//! from that fetcher rather than from the seed, so that nodes fetching one file at once share
//! it between them. Each chunk is checked against the manifest (a bad chunk is fetched again
//! from another peer, and the peer that sent it is dropped) and written into `<sha>.partial`
//! at its offset; the file moves into the store once every chunk is here. It is not hashed
//! again as a whole: the manifest comes from a cluster member (mutual TLS) that hashed its own
//! whole copy before it vouched for it, and every byte was checked against that manifest. An
//! interrupted fetch resumes: chunks already in the partial file that match are kept. Peers
//! that start to have the file during the fetch are added as they appear.

mod pull;
mod serve;
mod write;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_protocol::cluster::decode_frame;
use serde::{Deserialize, Serialize};

pub use serve::{serve, FileServer, Partial};

use super::store::{hash_bytes, ModelStore};
use crate::cluster::transport::QuicNode;

/// The bytes one chunk holds (the last may hold fewer).
pub const CHUNK_BYTES: u64 = 4 << 20;
pub const FILE_PROTOCOL_VERSION: u16 = 2;
/// Peers pulled from at once.
const MAX_SOURCES: usize = 8;
/// Chunks in flight at once from a node with the whole file, and from a node fetching it, so
/// that the network, the disk and hashing overlap.
const IN_FLIGHT_WHOLE: usize = 4;
const IN_FLIGHT_PARTIAL: usize = 2;
/// A fetch with no source left waits this long for one to appear before it gives up.
const NO_SOURCE_GRACE: Duration = Duration::from_secs(3);
/// A fetch in which no chunk arrived for this long gives up (its sources may be waiting on
/// each other for a seed that died); it is tried again later and resumes.
const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileRequest {
    Manifest {
        version: u16,
        sha256: String,
    },
    Range {
        version: u16,
        sha256: String,
        offset: u64,
        len: u64,
    },
    /// Which chunks can you send?
    Have {
        version: u16,
        sha256: String,
    },
    /// The manifest with BLAKE3 chunk digests (version 2; a node of version 1 refuses it).
    ManifestBlake3 {
        version: u16,
        sha256: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileReply {
    Manifest {
        size: u64,
        chunk_bytes: u64,
        chunks: Vec<String>,
    },
    /// `len` bytes follow on the stream.
    Range {
        len: u64,
    },
    Refused(String),
    /// The chunks this node can send; from a node with the whole file, `pending` are the
    /// chunks it sent to `holders` (other nodes) lately.
    Have {
        map: ChunkMap,
        holders: Vec<String>,
    },
    /// The node is fetching the file and does not have this chunk yet.
    Missing,
    /// The answer to `ManifestBlake3`.
    ManifestBlake3 {
        size: u64,
        chunk_bytes: u64,
        chunks: Vec<String>,
    },
}

/// How a manifest's chunk digests are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Sha256,
    Blake3,
}

impl Digest {
    /// The digest of `bytes`, as lowercase hex.
    pub fn of(self, bytes: &[u8]) -> String {
        match self {
            Digest::Sha256 => hash_bytes(bytes),
            Digest::Blake3 => blake3::hash(bytes).to_hex().to_string(),
        }
    }
}

/// Which chunks of a file a node has, and which are on their way to it (or, from a node with
/// the whole file, to others): one bit per chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMap {
    pub chunks: u64,
    have: Vec<u8>,
    pending: Vec<u8>,
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn set_bit(bits: &mut [u8], i: usize) {
    if let Some(b) = bits.get_mut(i / 8) {
        *b |= 1 << (i % 8);
    }
}

impl ChunkMap {
    pub fn empty(chunks: usize) -> Self {
        let bytes = chunks.div_ceil(8);
        ChunkMap {
            chunks: chunks as u64,
            have: vec![0; bytes],
            pending: vec![0; bytes],
        }
    }

    pub fn full(chunks: usize) -> Self {
        let mut map = ChunkMap::empty(chunks);
        (0..chunks).for_each(|i| map.set_have(i));
        map
    }

    /// Whether a map a peer sent fits a file of `chunks` chunks.
    pub fn fits(&self, chunks: usize) -> bool {
        let bytes = chunks.div_ceil(8);
        self.chunks == chunks as u64 && self.have.len() == bytes && self.pending.len() == bytes
    }

    fn inside(&self, i: usize) -> bool {
        (i as u64) < self.chunks
    }

    pub fn set_have(&mut self, i: usize) {
        if self.inside(i) {
            set_bit(&mut self.have, i);
        }
    }

    pub fn set_pending(&mut self, i: usize) {
        if self.inside(i) {
            set_bit(&mut self.pending, i);
        }
    }

    pub fn has(&self, i: usize) -> bool {
        self.inside(i) && bit(&self.have, i)
    }

    pub fn pending(&self, i: usize) -> bool {
        self.inside(i) && bit(&self.pending, i)
    }
}

/// The length of chunk `i` of a file of `size` bytes.
pub fn chunk_len(size: u64, i: usize) -> u64 {
    let offset = i as u64 * CHUNK_BYTES;
    size.saturating_sub(offset).min(CHUNK_BYTES)
}

/// A stored file's size and the digests of each of its chunks, both ways.
#[derive(Debug)]
pub struct Manifest {
    pub size: u64,
    pub sha256: Vec<String>,
    pub blake3: Vec<String>,
}

/// What a peer has of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Has {
    /// The whole file (in its store).
    Whole,
    /// Part of it: it is fetching it too.
    Part,
    /// Nothing known (a live peer, used when a seed names it as holding chunks).
    Unknown,
}

/// A peer to fetch from.
#[derive(Debug, Clone)]
pub struct Source {
    pub node: String,
    pub addr: SocketAddr,
    pub has: Has,
}

/// The peers to fetch from, read again while a fetch runs (peers start to have the file).
pub type Sources = Arc<dyn Fn() -> Vec<Source> + Send + Sync>;

/// How far a fetch is.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

async fn connect(quic: &QuicNode, source: &Source) -> Result<quinn::Connection, String> {
    let (connection, id) = quic
        .connect(source.addr, &quic.model_client())
        .await
        .map_err(|e| e.to_string())?;
    if id != source.node {
        return Err(format!("{} answered as {id}", source.addr));
    }
    Ok(connection)
}

async fn ask(
    connection: &quinn::Connection,
    request: &FileRequest,
) -> Result<(FileReply, quinn::RecvStream), String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let body = crate::cluster::frames::exchange(&mut send, &mut recv, request)
        .await?
        .ok_or("the peer closed the stream")?;
    Ok((decode_frame(&body)?, recv))
}

/// The manifest of `sha` from the first of `sources` that sends one: its size, how its chunk
/// digests are made, and those digests. A peer of version 1 is asked again for SHA-256 ones.
async fn manifest_of(
    quic: &QuicNode,
    sha: &str,
    sources: &[Source],
) -> Result<(u64, Digest, Vec<String>), String> {
    let mut errors = Vec::new();
    for s in sources.iter().filter(|s| s.has != Has::Unknown) {
        let connection = match connect(quic, s).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{}: {e}", s.node));
                continue;
            }
        };
        let blake3 = FileRequest::ManifestBlake3 {
            version: FILE_PROTOCOL_VERSION,
            sha256: sha.to_string(),
        };
        let asked = match ask(&connection, &blake3).await {
            // A version 1 node cannot read the request, and says so.
            Ok((FileReply::Refused(e), _)) if e.starts_with("malformed") => {
                let sha256 = FileRequest::Manifest {
                    version: FILE_PROTOCOL_VERSION,
                    sha256: sha.to_string(),
                };
                ask(&connection, &sha256).await
            }
            other => other,
        };
        let (digest, size, chunk_bytes, chunks) = match asked {
            Ok((
                FileReply::ManifestBlake3 {
                    size,
                    chunk_bytes,
                    chunks,
                },
                _,
            )) => (Digest::Blake3, size, chunk_bytes, chunks),
            Ok((
                FileReply::Manifest {
                    size,
                    chunk_bytes,
                    chunks,
                },
                _,
            )) => (Digest::Sha256, size, chunk_bytes, chunks),
            Ok((FileReply::Refused(e), _)) => {
                errors.push(format!("{}: {e}", s.node));
                continue;
            }
            Ok(_) => {
                errors.push(format!("{}: an unexpected answer", s.node));
                continue;
            }
            Err(e) => {
                errors.push(format!("{}: {e}", s.node));
                continue;
            }
        };
        if chunk_bytes != CHUNK_BYTES || chunks.len() as u64 != size.div_ceil(CHUNK_BYTES) {
            errors.push(format!(
                "{}: the manifest lists {} chunks of {chunk_bytes} bytes for {size} bytes",
                s.node,
                chunks.len()
            ));
            continue;
        }
        return Ok((size, digest, chunks));
    }
    Err(format!(
        "no peer sent the file's manifest ({})",
        errors.join("; ")
    ))
}

/// Which chunks of the partial file (`resumed` bytes long before this try) match.
async fn kept_chunks(
    file: Arc<std::fs::File>,
    digest: Digest,
    chunks: Vec<String>,
    size: u64,
    resumed: u64,
) -> Result<Vec<bool>, String> {
    tokio::task::spawn_blocking(move || {
        (0..chunks.len())
            .map(|i| {
                let offset = i as u64 * CHUNK_BYTES;
                if offset >= resumed {
                    return false;
                }
                let mut buf = vec![0u8; chunk_len(size, i) as usize];
                file.read_exact_at(&mut buf, offset).is_ok() && digest.of(&buf) == chunks[i]
            })
            .collect()
    })
    .await
    .map_err(|e| e.to_string())
}

/// Fetches `sha` from the peers `sources` names into the store; returns its path there.
pub async fn fetch(
    quic: Arc<QuicNode>,
    store: Arc<ModelStore>,
    sha: String,
    sources: Sources,
    progress: Arc<Progress>,
) -> Result<PathBuf, String> {
    if let Some(path) = store.path(&sha).filter(|p| p.exists()) {
        return Ok(path);
    }
    let began = Instant::now();
    let (size, digest, chunks) = manifest_of(&quic, &sha, &sources()).await?;
    let manifest_at = began.elapsed();
    progress.total.store(size, Ordering::Relaxed);
    let partial_path = store.partial(&sha).ok_or("not a sha256")?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial_path)
        .map_err(|e| format!("cannot write {}: {e}", partial_path.display()))?;
    let resumed = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.set_len(size).map_err(|e| e.to_string())?;
    let file = Arc::new(file);
    let kept = kept_chunks(file.clone(), digest, chunks.clone(), size, resumed).await?;
    let partial = Partial::new(size, digest, chunks, file.clone());
    for (i, _) in kept.iter().enumerate().filter(|(_, k)| **k) {
        partial.mark_here(i);
        progress
            .done
            .fetch_add(chunk_len(size, i), Ordering::Relaxed);
    }
    let server = quic.files.get().cloned();
    if let Some(server) = &server {
        server.begin_partial(&sha, partial.clone());
    }
    let writer = write::ChunkWriter::open(&partial_path, file.clone());
    let job = Arc::new(pull::Job::new(
        quic.clone(),
        sha.clone(),
        partial,
        progress,
        writer,
    ));
    let outcome = run_workers(&job, &sources).await;
    let moved_at = began.elapsed();
    let mut synced_at = moved_at;
    let committed = match outcome {
        Ok(()) => {
            let (store, sha, path) = (store.clone(), sha.clone(), partial_path.clone());
            match file.sync_all() {
                Ok(()) => {
                    synced_at = began.elapsed();
                    tokio::task::spawn_blocking(move || store.commit_checked(&sha, &path))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e),
    };
    if committed.is_ok() {
        let ms = |d: Duration| d.as_millis() as u64;
        let total = began.elapsed();
        tracing::info!(
            %sha,
            bytes = size,
            manifest_ms = ms(manifest_at),
            transfer_ms = ms(moved_at - manifest_at),
            sync_ms = ms(synced_at - moved_at),
            verify_ms = ms(total - synced_at),
            mb_per_s = (size as f64 / total.as_secs_f64().max(1e-9) / 1e6) as u64,
            "model file fetched from peers"
        );
    }
    if let Some(server) = &server {
        server.end_partial(&sha);
    }
    committed
}

/// Runs a worker set per source (sources that appear during the fetch included) until every
/// chunk is here, or no source is left.
async fn run_workers(job: &Arc<pull::Job>, sources: &Sources) -> Result<(), String> {
    let mut running: HashMap<String, Vec<tokio::task::JoinHandle<Result<(), String>>>> =
        HashMap::new();
    let mut dropped: HashSet<String> = HashSet::new();
    let mut failures: Vec<String> = Vec::new();
    let mut alone_since: Option<Instant> = None;
    let (mut missing, mut moved) = (job.partial.missing(), Instant::now());
    loop {
        let now_missing = job.partial.missing();
        if now_missing == 0 {
            break;
        }
        if now_missing != missing {
            (missing, moved) = (now_missing, Instant::now());
        } else if moved.elapsed() > STALL {
            failures.push(format!("no chunk arrived for {} s", STALL.as_secs()));
            for w in running.values().flatten() {
                w.abort();
            }
            break;
        }
        // A source whose workers all ended is done with (for this fetch).
        running.retain(|node, workers| {
            if workers.iter().all(|w| w.is_finished()) {
                dropped.insert(node.clone());
                false
            } else {
                true
            }
        });
        let holders = job.holders();
        for s in sources() {
            let wanted = s.has != Has::Unknown || holders.contains(&s.node);
            if !wanted || running.contains_key(&s.node) || dropped.contains(&s.node) {
                continue;
            }
            if running.len() >= MAX_SOURCES {
                break;
            }
            let n = if s.has == Has::Whole {
                IN_FLIGHT_WHOLE
            } else {
                IN_FLIGHT_PARTIAL
            };
            let workers = (0..n)
                .map(|_| {
                    let (job, s) = (job.clone(), s.clone());
                    tokio::spawn(async move { pull::pull(&job, &s).await })
                })
                .collect();
            running.insert(s.node.clone(), workers);
        }
        if running.is_empty() {
            let since = *alone_since.get_or_insert_with(Instant::now);
            if since.elapsed() > NO_SOURCE_GRACE {
                break;
            }
        } else {
            alone_since = None;
        }
        // Woken by each chunk that arrives, so the last one ends the fetch at once.
        let _ = tokio::time::timeout(Duration::from_millis(100), job.arrived.notified()).await;
    }
    for (_, workers) in running {
        for w in workers {
            if let Ok(Err(e)) = w.await {
                failures.push(e);
            }
        }
    }
    failures.extend(job.failures());
    match job.partial.missing() {
        0 => Ok(()),
        left => Err(format!(
            "{left} chunks could not be fetched ({}); the partial file is kept for a retry",
            failures.join("; ")
        )),
    }
}

#[cfg(test)]
mod tests;
