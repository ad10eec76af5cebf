//! Model files between nodes (`golek-model/1`, over the cluster's QUIC with mutual TLS).
//!
//! One bidi stream per request, a frame each way: `Manifest` answers the file's size and the
//! sha256 of each chunk (the sender hashes its whole file first, so it only vouches for a file
//! whose hash is the one asked for); `Range` answers a header frame and then the bytes. The
//! fetcher takes the manifest from one peer, then pulls chunks from every peer that has the
//! file at once, checks each chunk against the manifest (a bad chunk is fetched again from
//! another peer, and the peer that sent it is dropped), writes them into `<sha>.partial` at
//! their offsets, and moves the file into the store only once its whole hash matches. An
//! interrupted fetch resumes: chunks already in the partial file that match are kept.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use golek_protocol::cluster::{decode_frame, encode_frame};
use serde::{Deserialize, Serialize};

use super::store::{hash_bytes, ModelStore};
use crate::cluster::frames::read_frame;
use crate::cluster::transport::QuicNode;

/// The bytes one chunk holds (the last may hold fewer).
pub const CHUNK_BYTES: u64 = 4 << 20;
pub const FILE_PROTOCOL_VERSION: u16 = 1;
/// Peers pulled from at once.
const MAX_SOURCES: usize = 4;
/// Chunks in flight at once (spread over the sources), so that the network, the disk and
/// hashing overlap.
const IN_FLIGHT: usize = 4;

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
}

/// A file's size and the sha256 of each of its chunks.
type Manifest = Arc<(u64, Vec<String>)>;

/// What a node serves from its store, with the manifests it computed.
pub struct FileServer {
    pub store: Arc<ModelStore>,
    manifests: Mutex<HashMap<String, Manifest>>,
}

impl FileServer {
    pub fn new(store: Arc<ModelStore>) -> Self {
        FileServer {
            store,
            manifests: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest of `sha` (hashed once, and only for a file whose whole hash is `sha`).
    fn manifest(&self, sha: &str) -> Result<Manifest, String> {
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha)
        {
            return Ok(m.clone());
        }
        let path = self.store.path(sha).ok_or("not a sha256")?;
        let file = std::fs::File::open(&path).map_err(|_| "this node does not have it")?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
        let mut chunks = Vec::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK_BYTES as usize];
        while offset < size {
            let n = (size - offset).min(CHUNK_BYTES) as usize;
            file.read_exact_at(&mut buf[..n], offset)
                .map_err(|e| e.to_string())?;
            whole.update(&buf[..n]);
            chunks.push(hash_bytes(&buf[..n]));
            offset += n as u64;
        }
        if super::store::hex(whole.finish().as_ref()) != sha {
            return Err("its copy does not match its sha256".into());
        }
        let m = Arc::new((size, chunks));
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha.to_string(), m.clone());
        Ok(m)
    }
}

async fn send_frame(send: &mut quinn::SendStream, reply: &FileReply) -> Result<(), String> {
    let frame = encode_frame(reply)?;
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Serves one connection's file requests.
pub async fn serve(server: Arc<FileServer>, connection: quinn::Connection, peer: String) {
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let server = server.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            let request = match read_frame(&mut recv).await {
                Ok(Some(body)) => decode_frame::<FileRequest>(&body),
                _ => return,
            };
            let outcome = match request {
                Ok(FileRequest::Manifest { sha256, .. }) => {
                    let s = server.clone();
                    let made = tokio::task::spawn_blocking(move || s.manifest(&sha256)).await;
                    let reply = match made {
                        Ok(Ok(m)) => FileReply::Manifest {
                            size: m.0,
                            chunk_bytes: CHUNK_BYTES,
                            chunks: m.1.clone(),
                        },
                        Ok(Err(e)) => FileReply::Refused(e),
                        Err(e) => FileReply::Refused(e.to_string()),
                    };
                    send_frame(&mut send, &reply).await
                }
                Ok(FileRequest::Range {
                    sha256,
                    offset,
                    len,
                    ..
                }) => send_range(&server, &mut send, &sha256, offset, len, &peer).await,
                Err(e) => send_frame(&mut send, &FileReply::Refused(e)).await,
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, "model file request ended: {e}");
            }
            let _ = send.finish();
        });
    }
}

async fn send_range(
    server: &FileServer,
    send: &mut quinn::SendStream,
    sha: &str,
    offset: u64,
    len: u64,
    peer: &str,
) -> Result<(), String> {
    let Some(path) = server.store.path(sha) else {
        return send_frame(send, &FileReply::Refused("not a sha256".into())).await;
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            return send_frame(
                send,
                &FileReply::Refused("this node does not have it".into()),
            )
            .await
        }
    };
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let end = offset
        .checked_add(len)
        .filter(|e| *e <= size && len <= CHUNK_BYTES);
    let Some(end) = end else {
        return send_frame(
            send,
            &FileReply::Refused(format!(
                "range {offset}+{len} is outside the file or over one chunk"
            )),
        )
        .await;
    };
    let n = (end - offset) as usize;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, offset).map(|_| buf)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    send_frame(send, &FileReply::Range { len: n as u64 }).await?;
    send.write_all(&bytes).await.map_err(|e| e.to_string())?;
    metrics::counter!(crate::metrics::MODEL_BYTES_SENT_TOTAL, "peer" => peer.to_string())
        .increment(n as u64);
    Ok(())
}

/// A peer that has the file.
#[derive(Debug, Clone)]
pub struct Source {
    pub node: String,
    pub addr: SocketAddr,
}

/// How far a fetch is.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

async fn connect(quic: &QuicNode, source: &Source) -> Result<quinn::Connection, String> {
    let (connection, id) = quic
        .connect(source.addr, &quic.model_client)
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

/// Fetches `sha` from `sources` into the store; returns its path there.
pub async fn fetch(
    quic: Arc<QuicNode>,
    store: Arc<ModelStore>,
    sha: String,
    sources: Vec<Source>,
    progress: Arc<Progress>,
) -> Result<PathBuf, String> {
    if let Some(path) = store.path(&sha).filter(|p| p.exists()) {
        return Ok(path);
    }
    let mut manifest = None;
    let mut errors = Vec::new();
    for s in &sources {
        let request = FileRequest::Manifest {
            version: FILE_PROTOCOL_VERSION,
            sha256: sha.clone(),
        };
        let asked = match connect(&quic, s).await {
            Ok(c) => ask(&c, &request).await,
            Err(e) => Err(e),
        };
        match asked {
            Ok((
                FileReply::Manifest {
                    size,
                    chunk_bytes,
                    chunks,
                },
                _,
            )) if chunk_bytes == CHUNK_BYTES => {
                manifest = Some((size, chunks));
                break;
            }
            Ok((FileReply::Refused(e), _)) => errors.push(format!("{}: {e}", s.node)),
            Ok(_) => errors.push(format!("{}: an unexpected answer", s.node)),
            Err(e) => errors.push(format!("{}: {e}", s.node)),
        }
    }
    let (size, chunks) = manifest
        .ok_or_else(|| format!("no peer sent the file's manifest ({})", errors.join("; ")))?;
    let expected = size.div_ceil(CHUNK_BYTES);
    if chunks.len() as u64 != expected {
        return Err(format!(
            "the manifest lists {} chunks for {size} bytes",
            chunks.len()
        ));
    }
    progress.total.store(size, Ordering::Relaxed);
    let partial = store.partial(&sha).ok_or("not a sha256")?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let resumed = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.set_len(size).map_err(|e| e.to_string())?;
    let file = Arc::new(file);
    // Resume: chunks already there and matching are kept.
    let kept: Vec<bool> = {
        let file = file.clone();
        let chunks = chunks.clone();
        tokio::task::spawn_blocking(move || {
            (0..chunks.len())
                .map(|i| {
                    let offset = i as u64 * CHUNK_BYTES;
                    if offset >= resumed {
                        return false;
                    }
                    let n = (size - offset).min(CHUNK_BYTES) as usize;
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, offset).is_ok() && hash_bytes(&buf) == chunks[i]
                })
                .collect()
        })
        .await
        .map_err(|e| e.to_string())?
    };
    let mut todo = VecDeque::new();
    for (i, keep) in kept.iter().enumerate() {
        if *keep {
            let n = (size - i as u64 * CHUNK_BYTES).min(CHUNK_BYTES);
            progress.done.fetch_add(n, Ordering::Relaxed);
        } else {
            todo.push_back(i);
        }
    }
    // Chunks not yet written: a worker with nothing to take waits while others hold some (a
    // chunk another source fails on comes back to the queue).
    let remaining = Arc::new(AtomicUsize::new(todo.len()));
    let todo = Arc::new(Mutex::new(todo));
    let chunks = Arc::new(Work {
        chunks,
        remaining: remaining.clone(),
    });
    let mut workers = Vec::new();
    let sources: Vec<Source> = sources.into_iter().take(MAX_SOURCES).collect();
    let per_source = IN_FLIGHT.div_ceil(sources.len().max(1));
    let workers_of = sources
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.clone(), per_source));
    for s in workers_of {
        let (quic, todo, work, file, progress, sha) = (
            quic.clone(),
            todo.clone(),
            chunks.clone(),
            file.clone(),
            progress.clone(),
            sha.clone(),
        );
        workers.push(tokio::spawn(async move {
            pull(&quic, &s, &sha, size, &todo, &work, &file, &progress).await
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        if let Ok(Err(e)) = w.await {
            failures.push(e);
        }
    }
    let left = todo.lock().unwrap_or_else(|p| p.into_inner()).len();
    if left > 0 {
        return Err(format!(
            "{left} chunks could not be fetched ({}); the partial file is kept for a retry",
            failures.join("; ")
        ));
    }
    file.sync_all().map_err(|e| e.to_string())?;
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || store2.commit(&sha, &partial))
        .await
        .map_err(|e| e.to_string())?
}

/// The manifest's chunk hashes and how many chunks are still to be written.
struct Work {
    chunks: Vec<String>,
    remaining: Arc<AtomicUsize>,
}

/// One source's worker: takes chunks until all are written; a chunk it cannot deliver (or
/// delivers corrupt) goes back for another source, and this source stops.
#[allow(clippy::too_many_arguments)]
async fn pull(
    quic: &QuicNode,
    source: &Source,
    sha: &str,
    size: u64,
    todo: &Mutex<VecDeque<usize>>,
    work: &Work,
    file: &std::fs::File,
    progress: &Progress,
) -> Result<(), String> {
    let chunks = &work.chunks;
    let mut connection: Option<quinn::Connection> = None;
    loop {
        let next = todo.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(i) = next else {
            if work.remaining.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let offset = i as u64 * CHUNK_BYTES;
        let len = (size - offset).min(CHUNK_BYTES);
        let request = FileRequest::Range {
            version: FILE_PROTOCOL_VERSION,
            sha256: sha.to_string(),
            offset,
            len,
        };
        let got = async {
            let c = match &connection {
                Some(c) => c.clone(),
                None => {
                    let c = connect(quic, source).await?;
                    connection = Some(c.clone());
                    c
                }
            };
            let (reply, mut recv) = ask(&c, &request).await?;
            match reply {
                FileReply::Range { len: n } if n == len => {}
                FileReply::Refused(e) => return Err(e),
                _ => return Err("an unexpected answer".to_string()),
            }
            let mut buf = vec![0u8; len as usize];
            recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok(buf)
        }
        .await;
        let bytes = match got {
            Ok(b) if hash_bytes(&b) == chunks[i] => b,
            Ok(_) => {
                tracing::warn!(peer = %source.node, chunk = i, "model file: a corrupt chunk; fetching it from another peer");
                metrics::counter!(crate::metrics::MODEL_CORRUPT_CHUNKS_TOTAL, "peer" => source.node.clone()).increment(1);
                todo.lock().unwrap_or_else(|p| p.into_inner()).push_back(i);
                return Err(format!("{} sent a corrupt chunk", source.node));
            }
            Err(e) => {
                todo.lock().unwrap_or_else(|p| p.into_inner()).push_back(i);
                return Err(format!("{}: {e}", source.node));
            }
        };
        if let Err(e) = file.write_all_at(&bytes, offset) {
            todo.lock().unwrap_or_else(|p| p.into_inner()).push_back(i);
            return Err(format!("cannot write the partial file: {e}"));
        }
        work.remaining.fetch_sub(1, Ordering::SeqCst);
        progress.done.fetch_add(len, Ordering::Relaxed);
        metrics::counter!(crate::metrics::MODEL_BYTES_FETCHED_TOTAL, "source" => source.node.clone())
            .increment(len);
    }
}
